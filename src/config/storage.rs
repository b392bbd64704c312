//! `[storage]`: object-store options for the Delta tables, by the names delta-rs uses for
//! `storage_options` (`aws_endpoint`, `aws_region`, `azure_storage_account_name`,
//! `google_service_account`, ...). Values may be secrets: they never appear in `Debug`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use serde::Deserialize;

/// Options passed to the object store; later layers (pipeline, table) override earlier ones.
#[derive(Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(try_from = "BTreeMap<String, toml::Value>")]
pub struct StorageOptions(BTreeMap<String, String>);

impl StorageOptions {
    /// These options with `over`'s on top, keys compared without case as delta-rs does.
    pub fn overridden_by(&self, over: &StorageOptions) -> StorageOptions {
        let mut merged = self.0.clone();
        for (key, value) in &over.0 {
            merged.retain(|k, _| !k.eq_ignore_ascii_case(key));
            merged.insert(key.clone(), value.clone());
        }
        StorageOptions(merged)
    }

    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<String>) {
        let key = key.into();
        self.0.retain(|k, _| !k.eq_ignore_ascii_case(&key));
        self.0.insert(key, value.into());
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The option names, for messages (never the values).
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.0.keys().map(String::as_str)
    }

    /// The map delta-rs takes.
    pub fn to_map(&self) -> HashMap<String, String> {
        self.0.clone().into_iter().collect()
    }
}

impl TryFrom<BTreeMap<String, toml::Value>> for StorageOptions {
    type Error = String;

    fn try_from(values: BTreeMap<String, toml::Value>) -> Result<Self, String> {
        let mut options = BTreeMap::new();
        for (key, value) in values {
            let text = match value {
                toml::Value::String(text) => text,
                toml::Value::Integer(n) => n.to_string(),
                toml::Value::Float(n) => n.to_string(),
                toml::Value::Boolean(b) => b.to_string(),
                _ => {
                    return Err(format!(
                        "storage option '{key}' must be a string, number or boolean"
                    ))
                }
            };
            options.insert(key, text);
        }
        Ok(StorageOptions(options))
    }
}

impl fmt::Debug for StorageOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.0.keys().map(|k| (k, "<redacted>")))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(pairs: &[(&str, &str)]) -> StorageOptions {
        let mut options = StorageOptions::default();
        for (k, v) in pairs {
            options.insert(*k, *v);
        }
        options
    }

    #[test]
    fn later_layers_override_earlier_ones_whatever_the_case_of_the_key() {
        let global = options(&[("aws_region", "us-east-1"), ("AWS_ENDPOINT", "http://a")]);
        let table = options(&[("aws_endpoint", "http://b")]);
        let merged = global.overridden_by(&table);
        assert_eq!(merged.get("AWS_ENDPOINT"), Some("http://b"));
        assert_eq!(merged.get("aws_region"), Some("us-east-1"));
        assert_eq!(merged.to_map().len(), 2);
    }

    #[test]
    fn debug_never_shows_values() {
        let secret = options(&[("aws_secret_access_key", "hunter2")]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("aws_secret_access_key"), "{shown}");
    }
}
