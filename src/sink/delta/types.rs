//! Which Delta type holds each PostgreSQL type.

use deltalake::kernel::{ArrayType, DataType, MapType};

pub use crate::event::decimal_precision_scale;

/// Type OIDs of the built-in PostgreSQL types pgdelta maps to something other than a string.
pub mod oid {
    pub const BOOL: u32 = 16;
    pub const BYTEA: u32 = 17;
    pub const INT8: u32 = 20;
    pub const INT2: u32 = 21;
    pub const INT4: u32 = 23;
    pub const OID: u32 = 26;
    pub const FLOAT4: u32 = 700;
    pub const FLOAT8: u32 = 701;
    pub const DATE: u32 = 1082;
    pub const TIMESTAMP: u32 = 1114;
    pub const TIMESTAMPTZ: u32 = 1184;
    pub const NUMERIC: u32 = 1700;
}

/// Element type OID of the one-dimensional array types pgdelta stores as Delta arrays.
fn array_element(type_oid: u32) -> Option<u32> {
    Some(match type_oid {
        1000 => oid::BOOL,
        1001 => oid::BYTEA,
        1005 => oid::INT2,
        1007 => oid::INT4,
        1016 => oid::INT8,
        1021 => oid::FLOAT4,
        1022 => oid::FLOAT8,
        1182 => oid::DATE,
        1115 => oid::TIMESTAMP,
        1185 => oid::TIMESTAMPTZ,
        1231 => oid::NUMERIC,
        // text[], varchar[], bpchar[], name[], uuid[], json[], jsonb[]
        1009 | 1015 | 1014 | 1003 | 2951 | 199 | 3807 => 25,
        _ => return None,
    })
}

/// Whether pgdelta stores this type as text because no Delta type fits it; such columns still
/// hold the exact PostgreSQL text rendering.
pub fn is_known_text_type(type_oid: u32) -> bool {
    matches!(
        type_oid,
        18 | 19 | 25 | 114 | 142 | 1042 | 1043 | 2950 | 3802 // char name text json xml bpchar varchar uuid jsonb
            | 1083 | 1266 | 1186 | 790 | 869 | 650 | 829 | 774 // time timetz interval money inet cidr macaddr(8)
            | 3614 | 3615 | 3220 | 1560 | 1562 | 600 | 601 | 602 | 603 | 604 | 628 | 718
    )
}

/// The Delta type for a PostgreSQL column; `None` means "unknown type, stored as text".
/// `type_name` recognizes extension types, whose OIDs differ between databases: `hstore`
/// becomes `map<string,string>`, whether or not the name carries its schema. The one mapping
/// used at table creation, at schema evolution and by `validate --check schema`.
pub fn delta_type(type_oid: u32, type_modifier: i32, type_name: Option<&str>) -> Option<DataType> {
    if type_name.map(unqualified) == Some("hstore") {
        return Some(DataType::Map(Box::new(MapType::new(
            DataType::STRING,
            DataType::STRING,
            true,
        ))));
    }
    let scalar = match type_oid {
        oid::BOOL => DataType::BOOLEAN,
        oid::BYTEA => DataType::BINARY,
        oid::INT2 => DataType::SHORT,
        oid::INT4 => DataType::INTEGER,
        oid::INT8 | oid::OID => DataType::LONG,
        oid::FLOAT4 => DataType::FLOAT,
        oid::FLOAT8 => DataType::DOUBLE,
        oid::DATE => DataType::DATE,
        oid::TIMESTAMP => DataType::TIMESTAMP_NTZ,
        oid::TIMESTAMPTZ => DataType::TIMESTAMP,
        oid::NUMERIC => match decimal_precision_scale(type_modifier) {
            Some((p, s)) => DataType::decimal(p, s).ok()?,
            None => DataType::STRING,
        },
        other if is_known_text_type(other) => DataType::STRING,
        other => {
            let element = array_element(other)?;
            let element_type = delta_type(element, type_modifier, None)?;
            return Some(DataType::Array(Box::new(ArrayType::new(
                element_type,
                true,
            ))));
        }
    };
    Some(scalar)
}

/// A type's name without its schema. The catalog's `format_type()` qualifies a type whose
/// schema is not on the search path (`ext.hstore`, `"My Ext".hstore`); pgoutput's Type
/// message names it bare (`hstore`).
fn unqualified(type_name: &str) -> &str {
    let mut quoted = false;
    let mut start = 0;
    for (i, c) in type_name.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => start = i + 1,
            _ => {}
        }
    }
    &type_name[start..]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_numeric_by_precision() {
        // numeric(10,2) has typmod ((10 << 16) | 2) + 4
        let typmod = ((10 << 16) | 2) + 4;
        assert_eq!(decimal_precision_scale(typmod), Some((10, 2)));
        assert_eq!(
            delta_type(oid::NUMERIC, typmod, None),
            DataType::decimal(10, 2).ok()
        );
        assert_eq!(delta_type(oid::NUMERIC, -1, None), Some(DataType::STRING));
        let too_wide = ((60 << 16) | 2) + 4;
        assert_eq!(
            delta_type(oid::NUMERIC, too_wide, None),
            Some(DataType::STRING)
        );
    }

    #[test]
    fn maps_arrays_and_unknown_types() {
        let int_array = delta_type(1007, -1, None).unwrap();
        assert_eq!(
            int_array,
            DataType::Array(Box::new(ArrayType::new(DataType::INTEGER, true)))
        );
        assert_eq!(delta_type(2950, -1, None), Some(DataType::STRING));
        assert_eq!(delta_type(999_999, -1, None), None);
    }

    #[test]
    fn hstore_is_a_map_whatever_its_oid() {
        let map = DataType::Map(Box::new(MapType::new(
            DataType::STRING,
            DataType::STRING,
            true,
        )));
        assert_eq!(delta_type(16_385, -1, Some("hstore")), Some(map.clone()));
        assert_eq!(delta_type(99_999, -1, Some("hstore")), Some(map));
        assert_eq!(delta_type(16_385, -1, None), None);
    }

    #[test]
    fn hstore_is_a_map_whatever_schema_the_catalog_names() {
        let bare = delta_type(16_385, -1, Some("hstore"));
        assert!(bare.is_some());
        for qualified in ["ext.hstore", "\"My Ext\".hstore", "\"a.b\".hstore"] {
            assert_eq!(delta_type(16_385, -1, Some(qualified)), bare, "{qualified}");
        }
        for other in [
            "hstore[]",
            "ext.hstore[]",
            "\"x.hstore\"",
            "myhstore",
            "hstore.other",
        ] {
            assert_eq!(delta_type(16_385, -1, Some(other)), None, "{other}");
        }
    }
}
