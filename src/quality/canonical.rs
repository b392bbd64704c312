//! The canonical text of a row, computed alike on both sides, and its hash.
//!
//! Rendering rules (the same text on the PostgreSQL side, in SQL, and on the Delta side, in Rust
//! from the Arrow values):
//! - a value is PostgreSQL's own text output under the settings the replication session pins
//!   (`DateStyle=ISO`, `TimeZone=UTC`, `extra_float_digits=3`, `bytea_output=hex`,
//!   `IntervalStyle=postgres`): integers `42`, booleans `true`/`false`, numeric with its scale
//!   `12.50`, floats in shortest round-trip form (`0.1`, `1e+20`), dates `2024-02-29`
//!   (`0044-03-15 BC`), timestamps `2024-02-29 12:00:00.5` (timestamptz with `+00`), bytea
//!   `\xdeadbeef`, arrays `{1,NULL,"a b"}`; columns Delta stores as text hold that text already;
//! - values Delta cannot hold are NULL on both sides: infinite dates and timestamps, numeric NaN
//!   in a decimal column;
//! - a row is the columns in table order, each as `<character count>:<text>` or `\N` for NULL,
//!   joined with `|` (the length prefix makes the concatenation unambiguous);
//! - a row's hash is the first 8 bytes of the MD5 of that text, as a big-endian signed 64-bit
//!   integer; a chunk's checksum is the row count and the exact sum of its rows' hashes, which
//!   does not depend on the order rows are read in.

use std::cmp::Ordering;

use deltalake::arrow::array::{Array, AsArray};
use deltalake::arrow::datatypes::{
    DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int16Type, Int32Type,
    Int64Type, Int8Type, TimeUnit, TimestampMicrosecondType, UInt32Type, UInt64Type,
};
use md5::{Digest, Md5};

use crate::event::quote_ident;
use crate::sink::delta::types::{decimal_precision_scale, oid};

/// The session settings under which PostgreSQL renders values canonically.
pub const SESSION_SETTINGS: &str = "SET DateStyle = ISO; SET TimeZone = 'UTC'; \
     SET extra_float_digits = 3; SET bytea_output = hex; SET IntervalStyle = postgres";

/// How key values order, so Rust assigns Delta rows to the chunks PostgreSQL ordered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyOrder {
    Integer,
    Decimal,
    Float,
    /// Byte order of the canonical text (`COLLATE "C"` on the PostgreSQL side).
    Text,
}

impl KeyOrder {
    pub fn for_type(type_oid: u32) -> KeyOrder {
        match type_oid {
            oid::INT2 | oid::INT4 | oid::INT8 | oid::OID => KeyOrder::Integer,
            oid::NUMERIC => KeyOrder::Decimal,
            oid::FLOAT4 | oid::FLOAT8 => KeyOrder::Float,
            _ => KeyOrder::Text,
        }
    }

    pub fn compare(self, a: &str, b: &str) -> Ordering {
        match self {
            KeyOrder::Integer => match (a.parse::<i128>(), b.parse::<i128>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => a.cmp(b),
            },
            KeyOrder::Decimal => compare_decimal_text(a, b),
            KeyOrder::Float => match (a.parse::<f64>(), b.parse::<f64>()) {
                (Ok(x), Ok(y)) => x.total_cmp(&y),
                _ => a.cmp(b),
            },
            KeyOrder::Text => a.as_bytes().cmp(b.as_bytes()),
        }
    }

    /// The `ORDER BY` item for a key column whose canonical expression is `canonical`.
    pub fn order_by(self, column: &str, canonical: &str) -> String {
        match self {
            KeyOrder::Text => format!("({canonical}) COLLATE \"C\""),
            _ => quote_ident(column),
        }
    }
}

/// Compares two decimal literals (`-12.50`, `7`) by value.
pub fn compare_decimal_text(a: &str, b: &str) -> Ordering {
    let parse = |s: &str| {
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
        let whole = whole.trim_start_matches('0');
        let fraction = fraction.trim_end_matches('0');
        let zero = whole.is_empty() && fraction.is_empty();
        (negative && !zero, whole.to_string(), fraction.to_string())
    };
    let (a_neg, a_whole, a_frac) = parse(a);
    let (b_neg, b_whole, b_frac) = parse(b);
    let magnitude = a_whole
        .len()
        .cmp(&b_whole.len())
        .then_with(|| a_whole.cmp(&b_whole))
        .then_with(|| a_frac.cmp(&b_frac));
    match (a_neg, b_neg) {
        (false, false) => magnitude,
        (true, true) => magnitude.reverse(),
        (true, false) => Ordering::Less,
        (false, true) => Ordering::Greater,
    }
}

/// The SQL expression giving a column's canonical text (NULL for NULL).
pub fn pg_expression(column: &str, type_oid: u32, type_modifier: i32) -> String {
    let c = quote_ident(column);
    match type_oid {
        oid::DATE | oid::TIMESTAMP | oid::TIMESTAMPTZ => {
            format!("CASE WHEN isfinite({c}) THEN {c}::text END")
        }
        oid::NUMERIC if decimal_precision_scale(type_modifier).is_some() => {
            format!("CASE WHEN {c} = 'NaN'::numeric THEN NULL ELSE {c}::text END")
        }
        _ => format!("{c}::text"),
    }
}

/// The SQL expression giving the canonical row text from the columns' canonical expressions.
pub fn pg_row_text(expressions: &[String]) -> String {
    let parts: Vec<String> = expressions
        .iter()
        .map(|e| format!("coalesce(length({e})::text || ':' || ({e}), '\\N')"))
        .collect();
    format!("concat_ws('|', {})", parts.join(", "))
}

/// The SQL expression giving a row's hash (see [`row_hash`]) from its canonical text.
pub fn pg_row_hash(row_text: &str) -> String {
    format!("('x' || left(md5({row_text}), 16))::bit(64)::bigint")
}

/// The canonical row text from each column's canonical text.
pub fn row_text(values: &[Option<String>]) -> String {
    let mut text = String::new();
    for (i, value) in values.iter().enumerate() {
        if i > 0 {
            text.push('|');
        }
        match value {
            None => text.push_str("\\N"),
            Some(v) => {
                text.push_str(&v.chars().count().to_string());
                text.push(':');
                text.push_str(v);
            }
        }
    }
    text
}

/// First 8 bytes of the MD5 of `text`, big-endian, signed.
pub fn row_hash(text: &str) -> i64 {
    let digest = Md5::digest(text.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest[..8]);
    i64::from_be_bytes(first)
}

/// The canonical text of `array[row]`, `None` for NULL.
pub fn render(array: &dyn Array, row: usize) -> Option<String> {
    if array.is_null(row) {
        return None;
    }
    Some(render_value(array, row, false))
}

fn render_value(array: &dyn Array, row: usize, in_array: bool) -> String {
    match array.data_type() {
        DataType::Boolean => {
            let value = array.as_boolean().value(row);
            match (in_array, value) {
                (true, true) => "t".into(),
                (true, false) => "f".into(),
                (false, true) => "true".into(),
                (false, false) => "false".into(),
            }
        }
        DataType::Int8 => array.as_primitive::<Int8Type>().value(row).to_string(),
        DataType::Int16 => array.as_primitive::<Int16Type>().value(row).to_string(),
        DataType::Int32 => array.as_primitive::<Int32Type>().value(row).to_string(),
        DataType::Int64 => array.as_primitive::<Int64Type>().value(row).to_string(),
        DataType::UInt32 => array.as_primitive::<UInt32Type>().value(row).to_string(),
        DataType::UInt64 => array.as_primitive::<UInt64Type>().value(row).to_string(),
        DataType::Float32 => {
            let v = array.as_primitive::<Float32Type>().value(row);
            pg_float(f64::from(v), &format!("{v:e}"), 6)
        }
        DataType::Float64 => {
            let v = array.as_primitive::<Float64Type>().value(row);
            pg_float(v, &format!("{v:e}"), 15)
        }
        DataType::Decimal128(_, scale) => {
            decimal_text(array.as_primitive::<Decimal128Type>().value(row), *scale)
        }
        DataType::Date32 => date_text(array.as_primitive::<Date32Type>().value(row)),
        DataType::Timestamp(TimeUnit::Microsecond, zone) => timestamp_text(
            array.as_primitive::<TimestampMicrosecondType>().value(row),
            zone.is_some(),
        ),
        DataType::Utf8 => array.as_string::<i32>().value(row).to_string(),
        DataType::LargeUtf8 => array.as_string::<i64>().value(row).to_string(),
        DataType::Utf8View => array.as_string_view().value(row).to_string(),
        DataType::Binary => bytea_text(array.as_binary::<i32>().value(row)),
        DataType::LargeBinary => bytea_text(array.as_binary::<i64>().value(row)),
        DataType::BinaryView => bytea_text(array.as_binary_view().value(row)),
        DataType::List(_) => list_text(array.as_list::<i32>().value(row).as_ref()),
        DataType::LargeList(_) => list_text(array.as_list::<i64>().value(row).as_ref()),
        other => {
            // Other Arrow types never come from pgdelta's type mapping; render something stable.
            let formatter = deltalake::arrow::util::display::ArrayFormatter::try_new(
                array,
                &Default::default(),
            );
            match formatter {
                Ok(f) => f.value(row).to_string(),
                Err(_) => format!("<{other}>"),
            }
        }
    }
}

fn list_text(elements: &dyn Array) -> String {
    let items: Vec<String> = (0..elements.len())
        .map(|i| match elements.is_null(i) {
            true => "NULL".to_string(),
            false => quote_array_element(&render_value(elements, i, true)),
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// PostgreSQL's `array_out` quoting of one element.
fn quote_array_element(text: &str) -> String {
    let needs_quotes = text.is_empty()
        || text.eq_ignore_ascii_case("NULL")
        || text.chars().any(|c| {
            matches!(
                c,
                '"' | '\\' | '{' | '}' | ',' | ' ' | '\t' | '\n' | '\r' | '\x0b' | '\x0c'
            )
        });
    if !needs_quotes {
        return text.to_string();
    }
    let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
    format!("\"{escaped}\"")
}

fn bytea_text(bytes: &[u8]) -> String {
    format!("\\x{}", hex::encode(bytes))
}

fn decimal_text(unscaled: i128, scale: i8) -> String {
    if scale <= 0 {
        let factor = 10i128.pow(u32::from(scale.unsigned_abs()));
        return (unscaled * factor).to_string();
    }
    let digits = unscaled.unsigned_abs().to_string();
    let scale = scale as usize;
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (whole, fraction) = padded.split_at(padded.len() - scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    format!("{sign}{whole}.{fraction}")
}

/// PostgreSQL's shortest-exact float output: fixed notation for decimal exponents from -4 up
/// to `fixed_limit` (exclusive), scientific (`1.5e+20`) otherwise.
fn pg_float(value: f64, scientific: &str, fixed_limit: i32) -> String {
    if value.is_nan() {
        return "NaN".into();
    }
    if value.is_infinite() {
        return if value > 0.0 { "Infinity" } else { "-Infinity" }.into();
    }
    let (mantissa, exponent) = scientific
        .split_once('e')
        .expect("Rust's {:e} always has an exponent");
    let exponent: i32 = exponent.parse().expect("exponent is an integer");
    let negative = mantissa.starts_with('-');
    let digits: String = mantissa.chars().filter(|c| c.is_ascii_digit()).collect();
    let sign = if negative { "-" } else { "" };
    if value == 0.0 {
        return format!("{sign}0");
    }
    if (-4..fixed_limit).contains(&exponent) {
        let body = if exponent >= 0 {
            let point = exponent as usize + 1;
            if digits.len() <= point {
                format!("{digits:0<point$}")
            } else {
                format!("{}.{}", &digits[..point], &digits[point..])
            }
        } else {
            format!("0.{}{digits}", "0".repeat((-exponent - 1) as usize))
        };
        return format!("{sign}{body}");
    }
    let mantissa = match digits.len() {
        1 => digits,
        _ => format!("{}.{}", &digits[..1], &digits[1..]),
    };
    let exponent_sign = if exponent < 0 { '-' } else { '+' };
    format!("{sign}{mantissa}e{exponent_sign}{:02}", exponent.abs())
}

fn date_text(days: i32) -> String {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("valid date");
    let date = epoch + chrono::Duration::days(i64::from(days));
    with_era(date, date.format("-%m-%d").to_string())
}

fn timestamp_text(micros: i64, with_zone: bool) -> String {
    let Some(moment) = chrono::DateTime::from_timestamp_micros(micros) else {
        return micros.to_string();
    };
    let naive = moment.naive_utc();
    let mut clock = naive.format("-%m-%d %H:%M:%S").to_string();
    let fraction = micros.rem_euclid(1_000_000);
    if fraction != 0 {
        let digits = format!("{fraction:06}");
        clock.push('.');
        clock.push_str(digits.trim_end_matches('0'));
    }
    if with_zone {
        clock.push_str("+00");
    }
    with_era(naive.date(), clock)
}

/// Prefixes the year (4 digits at least) and appends ` BC` for years before 1.
fn with_era(date: chrono::NaiveDate, rest: String) -> String {
    use chrono::Datelike;
    let year = date.year();
    if year >= 1 {
        format!("{year:04}{rest}")
    } else {
        format!("{:04}{rest} BC", 1 - year)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use deltalake::arrow::array::{
        ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array,
        Float64Array, Int32Array, ListArray, StringArray, StringViewArray,
        TimestampMicrosecondArray,
    };

    use super::*;

    fn rendered(array: ArrayRef) -> Vec<Option<String>> {
        (0..array.len())
            .map(|i| render(array.as_ref(), i))
            .collect()
    }

    fn some(values: &[&str]) -> Vec<Option<String>> {
        values.iter().map(|v| Some(v.to_string())).collect()
    }

    #[test]
    fn renders_scalars_as_postgres_prints_them() {
        let ints: ArrayRef = Arc::new(Int32Array::from(vec![Some(-7), None, Some(42)]));
        assert_eq!(
            rendered(ints),
            vec![Some("-7".into()), None, Some("42".into())]
        );
        let bools: ArrayRef = Arc::new(BooleanArray::from(vec![true, false]));
        assert_eq!(rendered(bools), some(&["true", "false"]));
        let decimals: ArrayRef = Arc::new(
            Decimal128Array::from(vec![1250, -1, 0, 100])
                .with_precision_and_scale(10, 2)
                .unwrap(),
        );
        assert_eq!(
            rendered(decimals),
            some(&["12.50", "-0.01", "0.00", "1.00"])
        );
        let text: ArrayRef = Arc::new(StringArray::from(vec!["héllo", ""]));
        assert_eq!(rendered(text), some(&["héllo", ""]));
        let view: ArrayRef = Arc::new(StringViewArray::from(vec!["a|b"]));
        assert_eq!(rendered(view), some(&["a|b"]));
        let bytes: ArrayRef = Arc::new(BinaryArray::from(vec![&[0xde, 0xad][..]]));
        assert_eq!(rendered(bytes), some(&["\\xdead"]));
    }

    #[test]
    fn renders_dates_and_timestamps_in_iso_form() {
        let dates: ArrayRef = Arc::new(Date32Array::from(vec![0, 19782, -719_163]));
        assert_eq!(
            rendered(dates),
            some(&["1970-01-01", "2024-02-29", "0001-12-31 BC"])
        );
        let plain: ArrayRef = Arc::new(TimestampMicrosecondArray::from(vec![
            1_709_208_000_000_000,
            1_709_208_000_500_000,
            1_709_208_000_000_123,
        ]));
        assert_eq!(
            rendered(plain),
            some(&[
                "2024-02-29 12:00:00",
                "2024-02-29 12:00:00.5",
                "2024-02-29 12:00:00.000123"
            ])
        );
        let zoned: ArrayRef =
            Arc::new(TimestampMicrosecondArray::from(vec![-1_500_000]).with_timezone("UTC"));
        assert_eq!(rendered(zoned), some(&["1969-12-31 23:59:58.5+00"]));
    }

    #[test]
    fn renders_floats_in_shortest_postgres_form() {
        let doubles: ArrayRef = Arc::new(Float64Array::from(vec![
            0.1,
            1.5,
            100.0,
            1e20,
            1.5e-5,
            0.0001,
            -2.25,
            123456789012345.0,
            1e15,
            f64::NAN,
            f64::NEG_INFINITY,
            0.0,
        ]));
        assert_eq!(
            rendered(doubles),
            some(&[
                "0.1",
                "1.5",
                "100",
                "1e+20",
                "1.5e-05",
                "0.0001",
                "-2.25",
                "123456789012345",
                "1e+15",
                "NaN",
                "-Infinity",
                "0"
            ])
        );
        let floats: ArrayRef = Arc::new(Float32Array::from(vec![1234567.0, 123456.0, 0.1]));
        assert_eq!(rendered(floats), some(&["1.234567e+06", "123456", "0.1"]));
    }

    #[test]
    fn renders_arrays_with_postgres_quoting() {
        let list: ArrayRef = Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
            Some(vec![Some(1), None, Some(3)]),
            Some(vec![]),
        ]));
        assert_eq!(rendered(list), some(&["{1,NULL,3}", "{}"]));
        assert_eq!(quote_array_element("a b"), "\"a b\"");
        assert_eq!(quote_array_element("x\"y"), "\"x\\\"y\"");
        assert_eq!(quote_array_element("null"), "\"null\"");
        assert_eq!(quote_array_element(""), "\"\"");
        assert_eq!(quote_array_element("plain"), "plain");
    }

    #[test]
    fn row_text_is_unambiguous_and_hash_matches_postgres() {
        assert_eq!(
            row_text(&[Some("1".into()), None, Some("a|b".into()), Some("".into())]),
            "1:1|\\N|3:a|b|0:"
        );
        assert_ne!(
            row_text(&[Some("a|1:b".into())]),
            row_text(&[Some("a".into()), Some("b".into())])
        );
        // SELECT ('x' || left(md5('1:1'), 16))::bit(64)::bigint  ->  md5('1:1') = 6c5f...
        let digest = format!("{:x}", Md5::digest(b"1:1"));
        let expected = u64::from_str_radix(&digest[..16], 16).unwrap() as i64;
        assert_eq!(row_hash("1:1"), expected);
    }

    #[test]
    fn orders_keys_like_postgres() {
        assert_eq!(KeyOrder::Integer.compare("9", "10"), Ordering::Less);
        assert_eq!(KeyOrder::Integer.compare("-5", "-10"), Ordering::Greater);
        assert_eq!(compare_decimal_text("9.5", "10.25"), Ordering::Less);
        assert_eq!(compare_decimal_text("-9.5", "-10"), Ordering::Greater);
        assert_eq!(compare_decimal_text("1.50", "1.5"), Ordering::Equal);
        assert_eq!(compare_decimal_text("-0.00", "0"), Ordering::Equal);
        assert_eq!(KeyOrder::Text.compare("B", "a"), Ordering::Less);
        assert_eq!(
            KeyOrder::Text.compare("2024-01-01 00:00:00", "2024-01-01 00:00:00.5"),
            Ordering::Less
        );
    }

    #[test]
    fn builds_postgres_expressions() {
        assert_eq!(pg_expression("id", oid::INT4, -1), "\"id\"::text");
        assert!(pg_expression("d", oid::DATE, -1).contains("isfinite(\"d\")"));
        let numeric_10_2 = ((10 << 16) | 2) + 4;
        assert!(pg_expression("n", oid::NUMERIC, numeric_10_2).contains("NaN"));
        assert_eq!(pg_expression("n", oid::NUMERIC, -1), "\"n\"::text");
        let row = pg_row_text(&["a::text".into()]);
        assert_eq!(
            row,
            "concat_ws('|', coalesce(length(a::text)::text || ':' || (a::text), '\\N'))"
        );
    }
}
