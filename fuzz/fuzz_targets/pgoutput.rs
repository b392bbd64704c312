//! Feeds arbitrary bytes to the pgoutput decoder, as messages after a known relation.
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
#[path = "../../src/source/postgres/pgoutput.rs"]
mod pgoutput;

use libfuzzer_sys::fuzz_target;
use pgoutput::PgOutputDecoder;

/// Relation 16384 `public.t (id int4 key, name text)`, so row messages reach the tuple parser.
const RELATION: &[u8] = b"R\x00\x00\x40\x00public\x00t\x00d\x00\x02\x01id\x00\x00\x00\x00\x17\xff\xff\xff\xff\x00name\x00\x00\x00\x00\x19\xff\xff\xff\xff";

fuzz_target!(|data: &[u8]| {
    let mut decoder = PgOutputDecoder::default();
    decoder.decode(RELATION).expect("the seed relation decodes");
    for message in data.split(|&b| b == 0xFE) {
        let _ = decoder.decode(message);
    }
});
