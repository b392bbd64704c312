//! Feeds arbitrary bytes to the Debezium envelope parser as a record's key and value.
#![no_main]
#![allow(dead_code)]

/// `event` takes `TableName` from the config module; only that file of it is needed.
#[path = "../../src/config"]
mod config {
    #[path = "table_name.rs"]
    mod table_name;
    pub use table_name::{quote_ident, ParseTableNameError, TableName};
}
#[path = "../../src/event/mod.rs"]
mod event;

use event::debezium::{DebeziumParser, DebeziumRecord};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The first 0xFE splits key from value, so both reach the parser.
    let (key, value) = match data.iter().position(|&b| b == 0xFE) {
        Some(at) => (Some(&data[..at]), Some(&data[at + 1..])),
        None => (None, Some(data)),
    };
    let record = DebeziumRecord {
        topic: Some("fuzz.public.t"),
        key,
        value,
        ..DebeziumRecord::default()
    };
    let _ = DebeziumParser::new().parse(&record);
});
