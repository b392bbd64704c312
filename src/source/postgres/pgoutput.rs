//! Decoder for the row-level messages of PostgreSQL's `pgoutput` logical decoding plugin.
//!
//! Begin, Commit and logical messages are framed by `pgwire-replication`; everything else
//! (Relation, Type, Insert, Update, Delete, Truncate, Origin) arrives here as raw bytes.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::{Cell, ColumnSchema, TableName, TableSchema};

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error(
        "pgoutput message '{tag}' is truncated: needed {needed} more bytes at offset {offset}"
    )]
    Truncated {
        tag: char,
        offset: usize,
        needed: usize,
    },
    #[error("pgoutput message '{tag}' has an unexpected byte '{found}' at offset {offset}")]
    Unexpected {
        tag: char,
        found: char,
        offset: usize,
    },
    #[error("pgoutput message '{tag}' refers to relation {relid} that was never described")]
    UnknownRelation { tag: char, relid: u32 },
    #[error(
        "pgoutput message '{tag}' has a row of {found} columns, relation {table} has {expected}"
    )]
    ColumnCount {
        tag: char,
        table: TableName,
        expected: usize,
        found: usize,
    },
    #[error(
        "pgoutput message '{tag}' has a column in binary format; pgdelta requests text format"
    )]
    BinaryValue { tag: char },
    #[error("pgoutput message '{tag}' holds text that is not UTF-8 at offset {offset}")]
    NotUtf8 { tag: char, offset: usize },
    #[error("empty pgoutput message")]
    Empty,
}

/// A decoded row-level message.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    Insert {
        schema: Arc<TableSchema>,
        new: Vec<Cell>,
    },
    Update {
        schema: Arc<TableSchema>,
        old: Option<Vec<Cell>>,
        /// The old tuple is the whole row (REPLICA IDENTITY FULL), not only its key.
        old_is_whole_row: bool,
        new: Vec<Cell>,
    },
    Delete {
        schema: Arc<TableSchema>,
        old: Vec<Cell>,
        old_is_whole_row: bool,
    },
    Truncate {
        schemas: Vec<Arc<TableSchema>>,
    },
    /// A Relation message: the schema the following changes of that table use.
    Relation(Arc<TableSchema>),
    /// Type, Origin and messages pgdelta does not act on.
    Ignored,
}

/// Keeps the relations the server described, so row messages can be tied to their columns.
#[derive(Debug, Default)]
pub struct PgOutputDecoder {
    relations: HashMap<u32, Arc<TableSchema>>,
    /// Key columns per table when known better than the Relation message's flags (those
    /// flag every column under REPLICA IDENTITY FULL).
    key_overrides: HashMap<TableName, Vec<String>>,
    /// Names of the non-built-in types the server described in Type messages.
    type_names: HashMap<u32, String>,
}

struct Reader<'a> {
    tag: char,
    data: &'a [u8],
    offset: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let rest = &self.data[self.offset..];
        if rest.len() < n {
            return Err(DecodeError::Truncated {
                tag: self.tag,
                offset: self.offset,
                needed: n - rest.len(),
            });
        }
        self.offset += n;
        Ok(&rest[..n])
    }

    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.take(2)?.try_into().unwrap()))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.take(4)?.try_into().unwrap()))
    }

    fn i32(&mut self) -> Result<i32, DecodeError> {
        Ok(self.u32()? as i32)
    }

    fn utf8(&self, bytes: &[u8], offset: usize) -> Result<String, DecodeError> {
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8 {
            tag: self.tag,
            offset,
        })
    }

    fn cstring(&mut self) -> Result<String, DecodeError> {
        let start = self.offset;
        let rest = &self.data[start..];
        let len = rest
            .iter()
            .position(|&b| b == 0)
            .ok_or(DecodeError::Truncated {
                tag: self.tag,
                offset: start,
                needed: 1,
            })?;
        self.offset += len + 1;
        self.utf8(&rest[..len], start)
    }

    fn unexpected(&self, found: u8) -> DecodeError {
        DecodeError::Unexpected {
            tag: self.tag,
            found: found as char,
            offset: self.offset - 1,
        }
    }
}

impl PgOutputDecoder {
    pub fn new(key_overrides: HashMap<TableName, Vec<String>>) -> Self {
        PgOutputDecoder {
            relations: HashMap::new(),
            key_overrides,
            type_names: HashMap::new(),
        }
    }

    pub fn decode(&mut self, data: &[u8]) -> Result<Decoded, DecodeError> {
        let (&tag, _) = data.split_first().ok_or(DecodeError::Empty)?;
        let mut reader = Reader {
            tag: tag as char,
            data,
            offset: 1,
        };
        match tag {
            b'R' => self.relation(&mut reader),
            b'I' => self.insert(&mut reader),
            b'U' => self.update(&mut reader),
            b'D' => self.delete(&mut reader),
            b'T' => self.truncate(&mut reader),
            b'Y' => self.type_message(&mut reader),
            _ => Ok(Decoded::Ignored),
        }
    }

    /// pgoutput names each non-built-in type (an extension's, like `hstore`) before the
    /// first Relation message that uses it.
    fn type_message(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let type_oid = r.u32()?;
        let _namespace = r.cstring()?;
        let name = r.cstring()?;
        self.type_names.insert(type_oid, name);
        Ok(Decoded::Ignored)
    }

    fn relation(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let relid = r.u32()?;
        let namespace = r.cstring()?;
        let name = r.cstring()?;
        let _replica_identity = r.u8()?;
        let column_count = r.u16()?;
        let table = TableName::new(
            if namespace.is_empty() {
                "pg_catalog".to_string()
            } else {
                namespace
            },
            name,
        );
        let mut columns = Vec::with_capacity(column_count as usize);
        for _ in 0..column_count {
            let flags = r.u8()?;
            let name = r.cstring()?;
            let type_oid = r.u32()?;
            columns.push(ColumnSchema {
                name,
                type_oid,
                type_modifier: r.i32()?,
                type_name: self.type_names.get(&type_oid).cloned(),
                is_key: flags & 1 == 1,
            });
        }
        if let Some(keys) = self.key_overrides.get(&table) {
            for column in &mut columns {
                column.is_key = keys.contains(&column.name);
            }
        }
        let schema = Arc::new(TableSchema { table, columns });
        self.relations.insert(relid, schema.clone());
        Ok(Decoded::Relation(schema))
    }

    fn schema_of(&self, r: &mut Reader) -> Result<Arc<TableSchema>, DecodeError> {
        let relid = r.u32()?;
        self.relations
            .get(&relid)
            .cloned()
            .ok_or(DecodeError::UnknownRelation { tag: r.tag, relid })
    }

    fn insert(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let schema = self.schema_of(r)?;
        expect_byte(r, b'N')?;
        let new = tuple(r, &schema)?;
        Ok(Decoded::Insert { schema, new })
    }

    fn update(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let schema = self.schema_of(r)?;
        let mut old = None;
        let mut marker = r.u8()?;
        let old_is_whole_row = marker == b'O';
        if marker == b'K' || marker == b'O' {
            old = Some(tuple(r, &schema)?);
            marker = r.u8()?;
        }
        if marker != b'N' {
            return Err(r.unexpected(marker));
        }
        let new = tuple(r, &schema)?;
        Ok(Decoded::Update {
            schema,
            old,
            old_is_whole_row,
            new,
        })
    }

    fn delete(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let schema = self.schema_of(r)?;
        let marker = r.u8()?;
        if marker != b'K' && marker != b'O' {
            return Err(r.unexpected(marker));
        }
        let old = tuple(r, &schema)?;
        Ok(Decoded::Delete {
            schema,
            old,
            old_is_whole_row: marker == b'O',
        })
    }

    fn truncate(&mut self, r: &mut Reader) -> Result<Decoded, DecodeError> {
        let count = r.u32()?;
        let _options = r.u8()?;
        let schemas = (0..count)
            .map(|_| self.schema_of(r))
            .collect::<Result<_, _>>()?;
        Ok(Decoded::Truncate { schemas })
    }
}

fn expect_byte(r: &mut Reader, expected: u8) -> Result<(), DecodeError> {
    let found = r.u8()?;
    if found != expected {
        return Err(r.unexpected(found));
    }
    Ok(())
}

fn tuple(r: &mut Reader, schema: &TableSchema) -> Result<Vec<Cell>, DecodeError> {
    let count = r.u16()? as usize;
    if count != schema.columns.len() {
        return Err(DecodeError::ColumnCount {
            tag: r.tag,
            table: schema.table.clone(),
            expected: schema.columns.len(),
            found: count,
        });
    }
    let mut cells = Vec::with_capacity(count);
    for _ in 0..count {
        cells.push(cell(r)?);
    }
    Ok(cells)
}

fn cell(r: &mut Reader) -> Result<Cell, DecodeError> {
    match r.u8()? {
        b'n' => Ok(Cell::Null),
        b'u' => Ok(Cell::UnchangedToast),
        b't' => {
            let len = r.u32()? as usize;
            let offset = r.offset;
            let bytes = r.take(len)?;
            Ok(Cell::Text(r.utf8(bytes, offset)?))
        }
        b'b' => Err(DecodeError::BinaryValue { tag: r.tag }),
        other => Err(r.unexpected(other)),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Builds pgoutput messages byte by byte, as the server sends them.
    #[derive(Default)]
    pub(crate) struct MessageBuilder(pub Vec<u8>);

    impl MessageBuilder {
        pub fn tag(mut self, tag: u8) -> Self {
            self.0.push(tag);
            self
        }
        pub fn u8(mut self, v: u8) -> Self {
            self.0.push(v);
            self
        }
        pub fn u16(mut self, v: u16) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn u32(mut self, v: u32) -> Self {
            self.0.extend_from_slice(&v.to_be_bytes());
            self
        }
        pub fn cstr(mut self, s: &str) -> Self {
            self.0.extend_from_slice(s.as_bytes());
            self.0.push(0);
            self
        }
        pub fn text(self, s: &str) -> Self {
            let mut b = self.u8(b't').u32(s.len() as u32);
            b.0.extend_from_slice(s.as_bytes());
            b
        }
    }

    pub(crate) fn relation_message(relid: u32) -> Vec<u8> {
        MessageBuilder::default()
            .tag(b'R')
            .u32(relid)
            .cstr("public")
            .cstr("customers")
            .u8(b'd')
            .u16(2)
            .u8(1)
            .cstr("id")
            .u32(23)
            .u32(u32::MAX)
            .u8(0)
            .cstr("name")
            .u32(25)
            .u32(u32::MAX)
            .0
    }

    fn decoder_with_relation() -> PgOutputDecoder {
        let mut decoder = PgOutputDecoder::default();
        decoder.decode(&relation_message(16384)).unwrap();
        decoder
    }

    #[test]
    fn decodes_relation_columns_and_key_flags() {
        let mut decoder = PgOutputDecoder::default();
        let Decoded::Relation(schema) = decoder.decode(&relation_message(7)).unwrap() else {
            panic!("expected a relation");
        };
        assert_eq!(schema.table, TableName::new("public", "customers"));
        assert_eq!(schema.columns[0].name, "id");
        assert_eq!(schema.columns[0].type_oid, 23);
        assert_eq!(schema.columns[0].type_modifier, -1);
        assert_eq!(schema.key_indexes(), vec![0]);
    }

    #[test]
    fn relation_columns_carry_the_names_of_types_the_server_described() {
        let mut decoder = PgOutputDecoder::default();
        let hstore = MessageBuilder::default()
            .tag(b'Y')
            .u32(25)
            .cstr("public")
            .cstr("hstore")
            .0;
        assert!(matches!(decoder.decode(&hstore).unwrap(), Decoded::Ignored));
        let Decoded::Relation(schema) = decoder.decode(&relation_message(7)).unwrap() else {
            panic!("expected a relation");
        };
        assert_eq!(schema.columns[0].type_name, None);
        assert_eq!(schema.columns[1].type_name.as_deref(), Some("hstore"));
    }

    #[test]
    fn decodes_insert_update_with_old_key_and_delete() {
        let mut decoder = decoder_with_relation();
        let insert = MessageBuilder::default()
            .tag(b'I')
            .u32(16384)
            .u8(b'N')
            .u16(2)
            .text("1")
            .u8(b'n')
            .0;
        match decoder.decode(&insert).unwrap() {
            Decoded::Insert { new, .. } => {
                assert_eq!(new, vec![Cell::Text("1".into()), Cell::Null])
            }
            other => panic!("unexpected {other:?}"),
        }
        let update = MessageBuilder::default()
            .tag(b'U')
            .u32(16384)
            .u8(b'K')
            .u16(2)
            .text("1")
            .u8(b'n')
            .u8(b'N')
            .u16(2)
            .text("2")
            .u8(b'u')
            .0;
        match decoder.decode(&update).unwrap() {
            Decoded::Update { old, new, .. } => {
                assert_eq!(old.unwrap()[0], Cell::Text("1".into()));
                assert_eq!(new[1], Cell::UnchangedToast);
            }
            other => panic!("unexpected {other:?}"),
        }
        let delete = MessageBuilder::default()
            .tag(b'D')
            .u32(16384)
            .u8(b'K')
            .u16(2)
            .text("2")
            .u8(b'n')
            .0;
        assert!(matches!(
            decoder.decode(&delete).unwrap(),
            Decoded::Delete { .. }
        ));
    }

    #[test]
    fn decodes_truncate_of_known_relations() {
        let mut decoder = decoder_with_relation();
        let truncate = MessageBuilder::default()
            .tag(b'T')
            .u32(1)
            .u8(0)
            .u32(16384)
            .0;
        let Decoded::Truncate { schemas } = decoder.decode(&truncate).unwrap() else {
            panic!("expected truncate");
        };
        assert_eq!(schemas[0].table.name, "customers");
    }

    #[test]
    fn reports_truncated_and_unknown_input_without_panicking() {
        let mut decoder = decoder_with_relation();
        let short = MessageBuilder::default()
            .tag(b'I')
            .u32(16384)
            .u8(b'N')
            .u16(2)
            .0;
        assert!(matches!(
            decoder.decode(&short),
            Err(DecodeError::Truncated { .. })
        ));
        let unknown = MessageBuilder::default().tag(b'I').u32(99).u8(b'N').0;
        assert!(matches!(
            decoder.decode(&unknown),
            Err(DecodeError::UnknownRelation { relid: 99, .. })
        ));
        let wrong_count = MessageBuilder::default()
            .tag(b'I')
            .u32(16384)
            .u8(b'N')
            .u16(5)
            .0;
        assert!(matches!(
            decoder.decode(&wrong_count),
            Err(DecodeError::ColumnCount { .. })
        ));
        assert!(matches!(decoder.decode(&[]), Err(DecodeError::Empty)));
    }

    #[test]
    fn key_overrides_replace_replica_identity_full_flags() {
        let mut overrides = HashMap::new();
        overrides.insert(
            TableName::new("public", "customers"),
            vec!["name".to_string()],
        );
        let mut decoder = PgOutputDecoder::new(overrides);
        let Decoded::Relation(schema) = decoder.decode(&relation_message(1)).unwrap() else {
            panic!("expected a relation");
        };
        assert_eq!(schema.key_indexes(), vec![1]);
    }
}
