//! The test broker (tansu) behaves as pgdelta relies on: a consumer group resumes exactly at
//! the committed offset, and records of a partition arrive in offset order.
//!
//! tansu 0.6 cannot fetch from an offset inside a record batch (it returns nothing, or the next
//! batch, where Kafka returns the batch and the client skips the earlier records), so the test
//! producer sends one record per batch; this test fails if that workaround stops working.

mod harness;
mod support;

use std::time::Duration;

use harness::kafka::{Produce, Tansu};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

fn consumer(tansu: &Tansu, group: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", tansu.bootstrap())
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "6000")
        .set("max.poll.interval.ms", "10000")
        .create()
        .unwrap();
    consumer.subscribe(&["probe"]).unwrap();
    consumer
}

fn read(consumer: &BaseConsumer, count: usize) -> Vec<(i64, String)> {
    let mut out = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while out.len() < count && std::time::Instant::now() < deadline {
        if let Some(message) = consumer.poll(Duration::from_millis(200)) {
            let message = message.unwrap();
            let value = String::from_utf8(message.payload().unwrap().to_vec()).unwrap();
            out.push((message.offset(), value));
        }
    }
    out
}

#[test]
fn a_group_resumes_exactly_at_its_committed_offset() {
    let tansu = Tansu::start();
    tansu.create_topics(&["probe"], 1);
    let values: Vec<String> = (0..20).map(|i| format!("v{i}")).collect();
    let records: Vec<Produce> = values
        .iter()
        .map(|v| Produce {
            topic: "probe",
            key: Some("k"),
            value: Some(v),
        })
        .collect();
    tansu.produce(&records);
    let first = consumer(&tansu, "g");
    let seen = read(&first, 20);
    assert_eq!(seen.len(), 20, "{seen:?}");
    for (i, (offset, value)) in seen.iter().enumerate() {
        assert_eq!(*offset, i as i64);
        assert_eq!(value, &format!("v{i}"));
    }
    let mut list = TopicPartitionList::new();
    list.add_partition_offset("probe", 0, Offset::Offset(7))
        .unwrap();
    first.commit(&list, CommitMode::Sync).unwrap();
    let committed = first
        .committed(Duration::from_secs(10))
        .unwrap()
        .find_partition("probe", 0)
        .map(|p| p.offset());
    assert_eq!(committed, Some(Offset::Offset(7)));
    first.unsubscribe();
    drop(first);
    std::thread::sleep(Duration::from_secs(8));

    let fresh = consumer(&tansu, "h");
    let everything = read(&fresh, 20);
    assert_eq!(
        everything.len(),
        20,
        "a new group reads from the start: {everything:?}"
    );
    drop(fresh);
    let second = consumer(&tansu, "g");
    let resumed = read(&second, 13);
    assert_eq!(resumed.first().map(|r| r.0), Some(7), "{resumed:?}");
    assert_eq!(resumed.len(), 13, "{resumed:?}");
}
