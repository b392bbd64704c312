//! Where a change came from in its source: a WAL position, or a record of a Kafka partition.

use std::fmt;

use super::Lsn;

/// One partition of a Kafka topic.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TopicPartition {
    pub topic: String,
    pub partition: i32,
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}[{}]", self.topic, self.partition)
    }
}

/// A record as read from a Kafka partition, owned so that it outlives the consumer's buffer.
#[derive(Debug, Clone)]
pub struct SourceRecord {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub value: Option<Vec<u8>>,
}

impl SourceRecord {
    pub fn topic_partition(&self) -> TopicPartition {
        TopicPartition {
            topic: self.topic.clone(),
            partition: self.partition,
        }
    }

    /// The record's key and value for a dead letter: text when UTF-8, else hex.
    pub fn raw_payload(&self) -> serde_json::Value {
        let render = |bytes: &Option<Vec<u8>>| match bytes {
            None => serde_json::Value::Null,
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => serde_json::Value::String(text.to_string()),
                Err(_) => serde_json::json!({ "hex": hex::encode(bytes) }),
            },
        };
        serde_json::json!({ "key": render(&self.key), "value": render(&self.value) })
    }
}

/// Where a delivered change came from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// A PostgreSQL transaction, by the end of its commit record.
    Wal(Lsn),
    /// A Kafka record (Debezium event), kept whole for dead letters.
    Record(SourceRecord),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dead_letter_payloads_keep_the_raw_record() {
        let record = SourceRecord {
            topic: "t".into(),
            partition: 0,
            offset: 7,
            key: Some(vec![0xff, 0x00]),
            value: Some(b"{not json".to_vec()),
        };
        let payload = record.raw_payload();
        assert_eq!(payload["value"], "{not json");
        assert_eq!(payload["key"]["hex"], "ff00");
        assert_eq!(record.topic_partition().to_string(), "t[0]");
    }
}
