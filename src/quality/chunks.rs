//! Key-range chunks: PostgreSQL orders the rows by key and cuts them every `chunk_rows` rows;
//! each Delta row goes to the chunk whose range holds its key. Comparing per-chunk sums names
//! the key ranges that differ; comparing per-row hashes inside them names the keys.

use std::cmp::Ordering;
use std::collections::HashMap;

use serde::Serialize;

use super::canonical::KeyOrder;

/// Canonical texts of a row's key columns (`\N` for a NULL key part).
pub type Key = Vec<String>;

/// Row count and exact sum of row hashes of one chunk.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ChunkSum {
    pub rows: u64,
    #[serde(serialize_with = "as_string")]
    pub hash_sum: i128,
}

fn as_string<S: serde::Serializer>(value: &i128, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(&value.to_string())
}

impl ChunkSum {
    pub fn add(&mut self, hash: i64) {
        self.rows += 1;
        self.hash_sum += i128::from(hash);
    }
}

/// The chunk boundaries: the key of the first row of each chunk, in key order.
#[derive(Debug, Clone)]
pub struct Chunking {
    orders: Vec<KeyOrder>,
    boundaries: Vec<Key>,
}

impl Chunking {
    pub fn new(orders: Vec<KeyOrder>, boundaries: Vec<Key>) -> Chunking {
        Chunking { orders, boundaries }
    }

    pub fn compare(&self, a: &Key, b: &Key) -> Ordering {
        self.orders
            .iter()
            .zip(a.iter().zip(b))
            .map(|(order, (x, y))| order.compare(x, y))
            .find(|o| o.is_ne())
            .unwrap_or(Ordering::Equal)
    }

    /// At least one chunk, so an empty source still has a chunk for stray Delta rows.
    pub fn chunk_count(&self) -> usize {
        self.boundaries.len().max(1)
    }

    /// The chunk holding `key`; keys below the first boundary belong to the first chunk.
    pub fn chunk_of(&self, key: &Key) -> usize {
        self.boundaries
            .partition_point(|b| self.compare(b, key) != Ordering::Greater)
            .saturating_sub(1)
    }

    /// `[from, to)` of chunk `index`; the first chunk is open below, the last open above.
    pub fn range(&self, index: usize) -> (Option<&Key>, Option<&Key>) {
        let from = (index > 0).then(|| &self.boundaries[index]);
        (from, self.boundaries.get(index + 1))
    }
}

/// Indexes of the chunks whose sums differ (a chunk missing on one side counts as empty).
pub fn differing_chunks(postgres: &[ChunkSum], delta: &[ChunkSum]) -> Vec<usize> {
    let count = postgres.len().max(delta.len());
    let at = |sums: &[ChunkSum], i: usize| sums.get(i).copied().unwrap_or_default();
    (0..count)
        .filter(|&i| at(postgres, i) != at(delta, i))
        .collect()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyDifference {
    MissingInDelta,
    ExtraInDelta,
    ValuesDiffer,
}

/// Keys whose row hashes differ between the sides, in key order.
pub fn differing_keys(
    chunking: &Chunking,
    postgres: &HashMap<Key, i64>,
    delta: &HashMap<Key, i64>,
) -> Vec<(Key, KeyDifference)> {
    let mut found: Vec<(Key, KeyDifference)> = Vec::new();
    for (key, hash) in postgres {
        match delta.get(key) {
            None => found.push((key.clone(), KeyDifference::MissingInDelta)),
            Some(other) if other != hash => found.push((key.clone(), KeyDifference::ValuesDiffer)),
            Some(_) => {}
        }
    }
    for key in delta.keys().filter(|k| !postgres.contains_key(*k)) {
        found.push((key.clone(), KeyDifference::ExtraInDelta));
    }
    found.sort_by(|a, b| chunking.compare(&a.0, &b.0));
    found
}

/// `id=5, region=eu`
pub fn describe_key(columns: &[String], key: &Key) -> String {
    columns
        .iter()
        .zip(key)
        .map(|(c, v)| format!("{c}={v}"))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(v: &str) -> Key {
        vec![v.to_string()]
    }

    fn int_chunks(boundaries: &[&str]) -> Chunking {
        Chunking::new(
            vec![KeyOrder::Integer],
            boundaries.iter().map(|b| key(b)).collect(),
        )
    }

    #[test]
    fn assigns_keys_to_chunks_by_numeric_order() {
        let chunking = int_chunks(&["1", "10", "100"]);
        assert_eq!(chunking.chunk_count(), 3);
        assert_eq!(chunking.chunk_of(&key("-5")), 0);
        assert_eq!(chunking.chunk_of(&key("1")), 0);
        assert_eq!(chunking.chunk_of(&key("9")), 0);
        assert_eq!(chunking.chunk_of(&key("10")), 1);
        assert_eq!(chunking.chunk_of(&key("99")), 1);
        assert_eq!(chunking.chunk_of(&key("100")), 2);
        assert_eq!(chunking.chunk_of(&key("100000")), 2);
        assert_eq!(chunking.range(0), (None, Some(&key("10"))));
        assert_eq!(chunking.range(2), (Some(&key("100")), None));
        let empty = int_chunks(&[]);
        assert_eq!(empty.chunk_count(), 1);
        assert_eq!(empty.chunk_of(&key("7")), 0);
    }

    #[test]
    fn compares_composite_keys_column_by_column() {
        let chunking = Chunking::new(
            vec![KeyOrder::Text, KeyOrder::Integer],
            vec![vec!["a".into(), "5".into()], vec!["b".into(), "1".into()]],
        );
        assert_eq!(chunking.chunk_of(&vec!["a".into(), "40".into()]), 0);
        assert_eq!(chunking.chunk_of(&vec!["b".into(), "0".into()]), 0);
        assert_eq!(chunking.chunk_of(&vec!["b".into(), "2".into()]), 1);
    }

    #[test]
    fn finds_differing_chunks_and_keys() {
        let mut a = ChunkSum::default();
        a.add(5);
        a.add(-3);
        let mut b = ChunkSum::default();
        b.add(5);
        b.add(-4);
        assert_eq!(a.hash_sum, 2);
        assert_eq!(differing_chunks(&[a, a], &[a, b]), vec![1]);
        assert_eq!(differing_chunks(&[a], &[a, b]), vec![1]);
        assert!(differing_chunks(&[a], &[a]).is_empty());

        let chunking = int_chunks(&["1"]);
        let postgres: HashMap<Key, i64> = [(key("1"), 10), (key("2"), 20), (key("10"), 30)].into();
        let delta: HashMap<Key, i64> = [(key("1"), 10), (key("2"), 21), (key("3"), 40)].into();
        assert_eq!(
            differing_keys(&chunking, &postgres, &delta),
            vec![
                (key("2"), KeyDifference::ValuesDiffer),
                (key("3"), KeyDifference::ExtraInDelta),
                (key("10"), KeyDifference::MissingInDelta),
            ]
        );
        assert_eq!(
            describe_key(&["id".into(), "r".into()], &vec!["5".into(), "eu".into()]),
            "id=5, r=eu"
        );
    }
}
