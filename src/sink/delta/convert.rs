//! Turns PostgreSQL text renderings into Arrow arrays of the Delta column types.
//!
//! The replication session pins `DateStyle=ISO`, `TimeZone=UTC`, `extra_float_digits=3` and
//! `bytea_output=hex`, so each type has one text form to parse.

use std::sync::Arc;

use chrono::{NaiveDate, NaiveDateTime, NaiveTime};
use deltalake::arrow::array::{
    new_null_array, ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder,
    Float32Builder, Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray,
    MapBuilder, MapFieldNames, StringBuilder, TimestampMicrosecondBuilder,
};
use deltalake::arrow::buffer::OffsetBuffer;
use deltalake::arrow::datatypes::{DataType, FieldRef, TimeUnit};

#[derive(Debug, thiserror::Error)]
#[error("cannot convert '{value}' to {target}: {reason}")]
pub struct ConvertError {
    pub value: String,
    pub target: String,
    pub reason: String,
}

fn convert_error(value: &str, target: &DataType, reason: impl Into<String>) -> ConvertError {
    let mut shown: String = value.chars().take(200).collect();
    if shown.len() < value.len() {
        shown.push('…');
    }
    ConvertError {
        value: shown,
        target: target.to_string(),
        reason: reason.into(),
    }
}

/// Build one Arrow array of `target` type from text values (`None` = SQL NULL).
pub fn build_array(target: &DataType, values: &[Option<&str>]) -> Result<ArrayRef, ConvertError> {
    let mut builder = ColumnBuilder::new(target, values.len());
    for value in values {
        builder.append(*value)?;
    }
    builder.finish()
}

/// The columns of `types` for `rows` rows, converted row by row: `value(row, column)` is a
/// cell's text. The first value that does not convert (in row order; a column of a type
/// without a conversion fails once every row is read) comes back with its column's index.
pub fn build_columns<'t, 'a>(
    types: impl Iterator<Item = &'t DataType>,
    rows: usize,
    value: impl Fn(usize, usize) -> Option<&'a str>,
) -> Result<Vec<ArrayRef>, (usize, ConvertError)> {
    let mut builders: Vec<ColumnBuilder> = types.map(|t| ColumnBuilder::new(t, rows)).collect();
    for row in 0..rows {
        for (column, builder) in builders.iter_mut().enumerate() {
            builder
                .append(value(row, column))
                .map_err(|error| (column, error))?;
        }
    }
    builders
        .into_iter()
        .enumerate()
        .map(|(column, builder)| builder.finish().map_err(|error| (column, error)))
        .collect()
}

/// One Arrow column built from text values appended one at a time, so that a batch is
/// converted row by row: each row's cells are read once, where they lie in memory, instead
/// of once per column over every row (a wide batch no longer fits in the caches).
pub struct ColumnBuilder<'a> {
    target: DataType,
    values: Values<'a>,
}

enum Values<'a> {
    Boolean(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date32(Date32Builder),
    /// With the column's time zone.
    Timestamp(TimestampMicrosecondBuilder, Option<Arc<str>>),
    /// With the column's precision and scale.
    Decimal(Decimal128Builder, u8, i8),
    /// Nulls, lists, maps and types without a conversion: built from all values at once.
    Whole(Vec<Option<&'a str>>),
}

impl<'a> ColumnBuilder<'a> {
    pub fn new(target: &DataType, capacity: usize) -> Self {
        let values = match target {
            DataType::Boolean => Values::Boolean(BooleanBuilder::with_capacity(capacity)),
            DataType::Int16 => Values::Int16(Int16Builder::with_capacity(capacity)),
            DataType::Int32 => Values::Int32(Int32Builder::with_capacity(capacity)),
            DataType::Int64 => Values::Int64(Int64Builder::with_capacity(capacity)),
            DataType::Float32 => Values::Float32(Float32Builder::with_capacity(capacity)),
            DataType::Float64 => Values::Float64(Float64Builder::with_capacity(capacity)),
            DataType::Utf8 => Values::Utf8(StringBuilder::with_capacity(capacity, 0)),
            DataType::Binary => Values::Binary(BinaryBuilder::with_capacity(capacity, 0)),
            DataType::Date32 => Values::Date32(Date32Builder::with_capacity(capacity)),
            DataType::Timestamp(TimeUnit::Microsecond, zone) => Values::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity),
                zone.clone(),
            ),
            DataType::Decimal128(precision, scale) => Values::Decimal(
                Decimal128Builder::with_capacity(capacity),
                *precision,
                *scale,
            ),
            _ => Values::Whole(Vec::with_capacity(capacity)),
        };
        ColumnBuilder {
            target: target.clone(),
            values,
        }
    }

    /// Adds the next row's value (`None` = SQL NULL).
    pub fn append(&mut self, value: Option<&'a str>) -> Result<(), ConvertError> {
        let target = &self.target;
        macro_rules! parsed {
            ($builder:expr, $parse:expr) => {
                match value {
                    None => $builder.append_null(),
                    Some(text) => $builder.append_option($parse(text)?),
                }
            };
        }
        match &mut self.values {
            Values::Boolean(b) => parsed!(b, |t| parse_bool(t, target)),
            Values::Int16(b) => parsed!(b, |t: &str| parse_number(t, target)),
            Values::Int32(b) => parsed!(b, |t: &str| parse_number(t, target)),
            Values::Int64(b) => parsed!(b, |t: &str| parse_number(t, target)),
            Values::Float32(b) => parsed!(b, |t: &str| parse_number(t, target)),
            Values::Float64(b) => parsed!(b, |t: &str| parse_number(t, target)),
            Values::Utf8(b) => b.append_option(value),
            Values::Binary(b) => parsed!(b, |t| parse_bytea(t, target)),
            Values::Date32(b) => parsed!(b, |t| parse_date(t, target)),
            Values::Timestamp(b, _) => parsed!(b, |t| parse_timestamp(t, target)),
            Values::Decimal(b, _, scale) => parsed!(b, |t| parse_decimal(t, *scale, target)),
            Values::Whole(values) => values.push(value),
        }
        Ok(())
    }

    pub fn finish(self) -> Result<ArrayRef, ConvertError> {
        let target = &self.target;
        let array: ArrayRef = match self.values {
            Values::Boolean(mut b) => Arc::new(b.finish()),
            Values::Int16(mut b) => Arc::new(b.finish()),
            Values::Int32(mut b) => Arc::new(b.finish()),
            Values::Int64(mut b) => Arc::new(b.finish()),
            Values::Float32(mut b) => Arc::new(b.finish()),
            Values::Float64(mut b) => Arc::new(b.finish()),
            Values::Utf8(mut b) => Arc::new(b.finish()),
            Values::Binary(mut b) => Arc::new(b.finish()),
            Values::Date32(mut b) => Arc::new(b.finish()),
            Values::Timestamp(mut b, zone) => Arc::new(b.finish().with_timezone_opt(zone)),
            Values::Decimal(mut b, precision, scale) => {
                let array = b
                    .finish()
                    .with_precision_and_scale(precision, scale)
                    .map_err(|e| convert_error("", target, e.to_string()))?;
                Arc::new(array)
            }
            Values::Whole(values) => build_whole(target, &values)?,
        };
        Ok(array)
    }
}

fn build_whole(target: &DataType, values: &[Option<&str>]) -> Result<ArrayRef, ConvertError> {
    match target {
        DataType::Null => Ok(new_null_array(target, values.len())),
        DataType::List(element) => build_list(element, values, target),
        DataType::Map(entries, _) => build_hstore_map(entries, values, target),
        other => Err(convert_error(
            values.iter().flatten().next().unwrap_or(&""),
            other,
            "pgdelta has no conversion to this Arrow type",
        )),
    }
}

fn build_list(
    element: &FieldRef,
    values: &[Option<&str>],
    target: &DataType,
) -> Result<ArrayRef, ConvertError> {
    let mut lengths = Vec::with_capacity(values.len());
    let mut elements: Vec<Option<String>> = Vec::new();
    let mut validity = Vec::with_capacity(values.len());
    for value in values {
        match value {
            None => {
                lengths.push(0);
                validity.push(false);
            }
            Some(text) => {
                let items = parse_array_literal(text).ok_or_else(|| {
                    convert_error(text, target, "not a one-dimensional array literal")
                })?;
                lengths.push(items.len());
                elements.extend(items);
                validity.push(true);
            }
        }
    }
    let element_refs: Vec<Option<&str>> = elements.iter().map(|e| e.as_deref()).collect();
    let child = build_array(element.data_type(), &element_refs)?;
    let list = ListArray::try_new(
        element.clone(),
        OffsetBuffer::from_lengths(lengths),
        child,
        Some(validity.into()),
    )
    .map_err(|e| convert_error("", target, e.to_string()))?;
    Ok(Arc::new(list))
}

/// An `hstore` column as a Delta `map<string,string>`.
fn build_hstore_map(
    entries: &FieldRef,
    values: &[Option<&str>],
    target: &DataType,
) -> Result<ArrayRef, ConvertError> {
    let DataType::Struct(fields) = entries.data_type() else {
        return Err(convert_error("", target, "map entries are not a struct"));
    };
    let names = MapFieldNames {
        entry: entries.name().clone(),
        key: fields[0].name().clone(),
        value: fields[1].name().clone(),
    };
    let mut builder = MapBuilder::new(Some(names), StringBuilder::new(), StringBuilder::new())
        .with_keys_field(fields[0].clone())
        .with_values_field(fields[1].clone());
    for value in values {
        let Some(text) = value else {
            builder
                .append(false)
                .map_err(|e| convert_error("", target, e.to_string()))?;
            continue;
        };
        let pairs = parse_hstore(text)
            .ok_or_else(|| convert_error(text, target, "not an hstore literal"))?;
        for (key, value) in pairs {
            builder.keys().append_value(key);
            builder.values().append_option(value);
        }
        builder
            .append(true)
            .map_err(|e| convert_error(text, target, e.to_string()))?;
    }
    Ok(Arc::new(builder.finish()))
}

/// Parses hstore output such as `"a"=>"1", "b"=>NULL`.
pub fn parse_hstore(text: &str) -> Option<Vec<(String, Option<String>)>> {
    let mut chars = text.chars().peekable();
    let mut pairs = Vec::new();
    let skip_spaces = |chars: &mut std::iter::Peekable<std::str::Chars>| {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
    };
    let quoted = |chars: &mut std::iter::Peekable<std::str::Chars>| -> Option<String> {
        if chars.next()? != '"' {
            return None;
        }
        let mut out = String::new();
        loop {
            match chars.next()? {
                '\\' => out.push(chars.next()?),
                '"' => return Some(out),
                c => out.push(c),
            }
        }
    };
    loop {
        skip_spaces(&mut chars);
        if chars.peek().is_none() {
            return Some(pairs);
        }
        let key = quoted(&mut chars)?;
        skip_spaces(&mut chars);
        if chars.next()? != '=' || chars.next()? != '>' {
            return None;
        }
        skip_spaces(&mut chars);
        let value = if chars.peek() == Some(&'N') {
            let word: String = chars.by_ref().take(4).collect();
            (word == "NULL").then_some(())?;
            None
        } else {
            Some(quoted(&mut chars)?)
        };
        pairs.push((key, value));
        skip_spaces(&mut chars);
        match chars.next() {
            None => return Some(pairs),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

fn parse_bool(text: &str, target: &DataType) -> Result<Option<bool>, ConvertError> {
    match text {
        "t" | "true" => Ok(Some(true)),
        "f" | "false" => Ok(Some(false)),
        _ => Err(convert_error(text, target, "expected t or f")),
    }
}

fn parse_number<T: std::str::FromStr>(
    text: &str,
    target: &DataType,
) -> Result<Option<T>, ConvertError>
where
    T::Err: std::fmt::Display,
{
    text.parse::<T>()
        .map(Some)
        .map_err(|e| convert_error(text, target, e.to_string()))
}

fn parse_bytea(text: &str, target: &DataType) -> Result<Option<Vec<u8>>, ConvertError> {
    let hex_digits = text.strip_prefix("\\x").ok_or_else(|| {
        convert_error(text, target, "expected bytea in hex output format (\\x...)")
    })?;
    hex::decode(hex_digits)
        .map(Some)
        .map_err(|e| convert_error(text, target, e.to_string()))
}

/// Splits off PostgreSQL's ` BC` suffix, returning the text and the astronomical-year sign.
fn strip_era(text: &str) -> (&str, bool) {
    match text.strip_suffix(" BC") {
        Some(rest) => (rest, true),
        None => (text, false),
    }
}

/// `infinity` has no Delta counterpart: it is stored as NULL, with a warning.
fn is_infinite(text: &str) -> bool {
    if text == "infinity" || text == "-infinity" {
        tracing::warn!(value = text, "infinite date/time stored as NULL in Delta");
        return true;
    }
    false
}

/// The value of ASCII digits, if they all are.
fn digits(bytes: &[u8]) -> Option<u32> {
    bytes.iter().try_fold(0u32, |value, &byte| {
        byte.is_ascii_digit()
            .then(|| value * 10 + u32::from(byte - b'0'))
    })
}

/// `YYYY-MM-DD` read digit by digit: chrono's format strings were the largest single cost
/// of a table with several timestamp columns (profile of the wide benchmark). Anything else
/// (years past 9999, eras) is left to chrono.
fn plain_date(text: &str) -> Option<NaiveDate> {
    let b = text.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    NaiveDate::from_ymd_opt(digits(&b[..4])? as i32, digits(&b[5..7])?, digits(&b[8..])?)
}

/// `HH:MM:SS[.f]` (up to nine fraction digits) read digit by digit, as [`plain_date`].
fn plain_time(text: &str) -> Option<NaiveTime> {
    let b = text.as_bytes();
    if b.len() < 8 || b[2] != b':' || b[5] != b':' {
        return None;
    }
    let nanos = match &b[8..] {
        [] => 0,
        [b'.', fraction @ ..] if (1..=9).contains(&fraction.len()) => {
            digits(fraction)? * 10u32.pow(9 - fraction.len() as u32)
        }
        _ => return None,
    };
    NaiveTime::from_hms_nano_opt(
        digits(&b[..2])?,
        digits(&b[3..5])?,
        digits(&b[6..8])?,
        nanos,
    )
}

fn parse_naive_date(text: &str) -> Option<NaiveDate> {
    if let Some(date) = plain_date(text) {
        return Some(date);
    }
    let (text, bc) = strip_era(text);
    let date = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    if !bc {
        return Some(date);
    }
    use chrono::Datelike;
    date.with_year(1 - date.year())
}

fn parse_date(text: &str, target: &DataType) -> Result<Option<i32>, ConvertError> {
    if is_infinite(text) {
        return Ok(None);
    }
    let date =
        parse_naive_date(text).ok_or_else(|| convert_error(text, target, "expected YYYY-MM-DD"))?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    Ok(Some((date - epoch).num_days() as i32))
}

/// Parses `YYYY-MM-DD HH:MM:SS[.ffffff][+HH[:MM[:SS]]][ BC]` into microseconds since the epoch (UTC).
fn parse_timestamp(text: &str, target: &DataType) -> Result<Option<i64>, ConvertError> {
    if is_infinite(text) {
        return Ok(None);
    }
    let bad = || {
        convert_error(
            text,
            target,
            "expected YYYY-MM-DD HH:MM:SS[.ffffff][+HH:MM]",
        )
    };
    let (body, bc) = strip_era(text);
    let (date_part, time_part) = body.split_once(' ').ok_or_else(bad)?;
    let (time_part, offset_seconds) = split_utc_offset(time_part).ok_or_else(bad)?;
    let date = match bc {
        false => parse_naive_date(date_part),
        true => parse_naive_date(&format!("{date_part} BC")),
    }
    .ok_or_else(bad)?;
    let time = plain_time(time_part)
        .or_else(|| NaiveTime::parse_from_str(time_part, "%H:%M:%S%.f").ok())
        .ok_or_else(bad)?;
    let local = NaiveDateTime::new(date, time);
    let micros = local.and_utc().timestamp_micros() - offset_seconds * 1_000_000;
    Ok(Some(micros))
}

/// Splits `12:00:00.5+05:30` into the time and the offset in seconds (0 when absent).
fn split_utc_offset(time: &str) -> Option<(&str, i64)> {
    let Some(pos) = time.rfind(['+', '-']) else {
        return Some((time, 0));
    };
    let (clock, offset) = time.split_at(pos);
    let sign = if offset.starts_with('-') { -1 } else { 1 };
    let mut seconds = 0i64;
    for (i, part) in offset[1..].split(':').enumerate() {
        let unit = [3600, 60, 1].get(i)?;
        seconds += part.parse::<i64>().ok()? * unit;
    }
    Some((clock, sign * seconds))
}

/// Parses a decimal literal into an i128 scaled by `scale`; `NaN` becomes NULL with a warning.
fn parse_decimal(text: &str, scale: i8, target: &DataType) -> Result<Option<i128>, ConvertError> {
    if text == "NaN" {
        tracing::warn!("numeric NaN stored as NULL in a Delta decimal column");
        return Ok(None);
    }
    let bad = |why: &str| convert_error(text, target, why);
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (whole, fraction) = digits.split_once('.').unwrap_or((digits, ""));
    let scale = scale.max(0) as usize;
    if fraction.len() > scale {
        return Err(bad("more fractional digits than the column's scale"));
    }
    let padded = format!("{whole}{fraction}{}", "0".repeat(scale - fraction.len()));
    if padded.is_empty() || !padded.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    let magnitude: i128 = padded
        .parse()
        .map_err(|_| bad("out of range for a decimal"))?;
    Ok(Some(if negative { -magnitude } else { magnitude }))
}

/// Parses a one-dimensional PostgreSQL array literal such as `{1,NULL,"a b","x\"y"}`.
pub fn parse_array_literal(text: &str) -> Option<Vec<Option<String>>> {
    // Arrays with explicit bounds look like `[0:1]={1,2}`; the bounds carry no values.
    let body = match text.find("={") {
        Some(pos) if text.starts_with('[') => &text[pos + 1..],
        _ => text,
    };
    let inner = body.strip_prefix('{')?.strip_suffix('}')?;
    let mut items = Vec::new();
    if inner.is_empty() {
        return Some(items);
    }
    let mut chars = inner.chars().peekable();
    loop {
        let item = if chars.peek() == Some(&'"') {
            chars.next();
            let mut value = String::new();
            loop {
                match chars.next()? {
                    '\\' => value.push(chars.next()?),
                    '"' => break,
                    c => value.push(c),
                }
            }
            Some(value)
        } else {
            let mut value = String::new();
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                if c == '{' {
                    return None; // multi-dimensional: not supported as a Delta array
                }
                value.push(c);
                chars.next();
            }
            (value != "NULL").then_some(value)
        };
        items.push(item);
        match chars.next() {
            None => return Some(items),
            Some(',') => continue,
            Some(_) => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use deltalake::arrow::array::{Array, AsArray};
    use deltalake::arrow::datatypes::{
        Date32Type, Decimal128Type, Field, Int32Type, TimestampMicrosecondType,
    };

    #[test]
    fn parses_decimals_with_scale_and_sign() {
        let t = DataType::Decimal128(10, 2);
        assert_eq!(parse_decimal("12.5", 2, &t).unwrap(), Some(1250));
        assert_eq!(parse_decimal("-0.01", 2, &t).unwrap(), Some(-1));
        assert_eq!(parse_decimal("7", 2, &t).unwrap(), Some(700));
        assert_eq!(parse_decimal("NaN", 2, &t).unwrap(), None);
        assert!(parse_decimal("1.234", 2, &t).is_err());
        assert!(parse_decimal("abc", 2, &t).is_err());
        let array = build_array(&t, &[Some("1.10"), None]).unwrap();
        assert_eq!(array.as_primitive::<Decimal128Type>().value(0), 110);
        assert!(array.is_null(1));
    }

    #[test]
    fn parses_timestamps_with_offsets_and_eras() {
        let tz = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        assert_eq!(
            parse_timestamp("1970-01-01 00:00:01+00", &tz).unwrap(),
            Some(1_000_000)
        );
        assert_eq!(
            parse_timestamp("1970-01-01 05:30:00.5+05:30", &tz).unwrap(),
            Some(500_000)
        );
        assert_eq!(
            parse_timestamp("1969-12-31 23:59:59", &tz).unwrap(),
            Some(-1_000_000)
        );
        assert_eq!(parse_timestamp("infinity", &tz).unwrap(), None);
        let bc = parse_timestamp("0001-01-01 00:00:00 BC", &tz)
            .unwrap()
            .unwrap();
        assert!(
            bc < parse_timestamp("0001-01-01 00:00:00", &tz)
                .unwrap()
                .unwrap()
        );
        let array = build_array(&tz, &[Some("2024-02-29 12:00:00+00")]).unwrap();
        assert_eq!(
            array.as_primitive::<TimestampMicrosecondType>().value(0),
            1_709_208_000_000_000
        );
    }

    #[test]
    fn dates_and_times_read_digit_by_digit_agree_with_chrono() {
        for date in ["2024-02-29", "0001-01-01", "9999-12-31", "1970-01-01"] {
            let chrono = NaiveDate::parse_from_str(date, "%Y-%m-%d").unwrap();
            assert_eq!(plain_date(date), Some(chrono), "{date}");
        }
        for bad in ["2023-02-29", "2024-1-01", "12024-01-01", "2024-01-0x"] {
            assert_eq!(plain_date(bad), None, "{bad}");
        }
        for time in [
            "00:00:00",
            "23:59:59.999999",
            "12:30:05.5",
            "01:02:03.123456789",
        ] {
            let chrono = NaiveTime::parse_from_str(time, "%H:%M:%S%.f").unwrap();
            assert_eq!(plain_time(time), Some(chrono), "{time}");
        }
        for bad in [
            "24:00:00",
            "12:00",
            "12:00:00.",
            "12:00:00.1234567890",
            "1a:00:00",
        ] {
            assert_eq!(plain_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn parses_dates_and_bytea() {
        let array =
            build_array(&DataType::Date32, &[Some("1970-01-02"), Some("1969-12-31")]).unwrap();
        assert_eq!(array.as_primitive::<Date32Type>().value(0), 1);
        assert_eq!(array.as_primitive::<Date32Type>().value(1), -1);
        let bytes = build_array(&DataType::Binary, &[Some("\\xdeadbeef")]).unwrap();
        assert_eq!(bytes.as_binary::<i32>().value(0), &[0xde, 0xad, 0xbe, 0xef]);
        assert!(build_array(&DataType::Binary, &[Some("plain")]).is_err());
    }

    #[test]
    fn parses_array_literals() {
        assert_eq!(
            parse_array_literal(r#"{1,NULL,"a b","x\"y"}"#).unwrap(),
            vec![
                Some("1".into()),
                None,
                Some("a b".into()),
                Some("x\"y".into())
            ]
        );
        assert_eq!(parse_array_literal("{}").unwrap(), vec![]);
        assert_eq!(parse_array_literal("[0:1]={7,8}").unwrap().len(), 2);
        assert!(parse_array_literal("{{1,2},{3,4}}").is_none());
        let list_type = DataType::List(Arc::new(Field::new("element", DataType::Int32, true)));
        let array = build_array(&list_type, &[Some("{1,2}"), None, Some("{}")]).unwrap();
        let list = array.as_list::<i32>();
        assert_eq!(list.value(0).as_primitive::<Int32Type>().values(), &[1, 2]);
        assert!(list.is_null(1));
        assert_eq!(list.value(2).len(), 0);
    }

    #[test]
    fn parses_hstore_literals() {
        assert_eq!(
            parse_hstore(r#""a"=>"1", "b"=>NULL, "q\"k"=>"v\\w""#).unwrap(),
            vec![
                ("a".to_string(), Some("1".to_string())),
                ("b".to_string(), None),
                ("q\"k".to_string(), Some("v\\w".to_string()))
            ]
        );
        assert_eq!(parse_hstore("").unwrap(), vec![]);
        assert!(parse_hstore("a=>1").is_none());
    }

    #[test]
    fn columns_are_built_row_by_row_and_a_bad_value_names_its_column() {
        let types = [DataType::Int64, DataType::Utf8, DataType::Decimal128(5, 2)];
        let rows = [[Some("1"), Some("a"), Some("1.5")], [Some("2"), None, None]];
        let columns = build_columns(types.iter(), rows.len(), |r, c| rows[r][c]).unwrap();
        for (index, t) in types.iter().enumerate() {
            let values: Vec<Option<&str>> = rows.iter().map(|row| row[index]).collect();
            assert_eq!(
                columns[index].as_ref(),
                build_array(t, &values).unwrap().as_ref()
            );
        }
        let bad = [[Some("1"), Some("a"), Some("x")]];
        let (column, error) = build_columns(types.iter(), 1, |r, c| bad[r][c]).unwrap_err();
        assert_eq!(column, 2);
        assert_eq!(error.value, "x");
    }

    #[test]
    fn names_the_value_and_type_on_failure() {
        let err = build_array(&DataType::Int32, &[Some("12x")]).unwrap_err();
        assert!(err.to_string().contains("'12x'"), "{err}");
        assert!(err.to_string().contains("Int32"), "{err}");
    }
}
