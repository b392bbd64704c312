//! Schema-qualified table names as the configuration (and everything after it) spells them.

use std::fmt;
use std::str::FromStr;

/// A schema-qualified table name such as `public.orders`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct TableName {
    pub schema: String,
    pub name: String,
}

#[derive(Debug, thiserror::Error)]
#[error("invalid table name '{0}': expected <schema>.<table>, e.g. public.orders")]
pub struct ParseTableNameError(String);

impl TableName {
    pub fn new(schema: impl Into<String>, name: impl Into<String>) -> Self {
        TableName {
            schema: schema.into(),
            name: name.into(),
        }
    }

    /// The name quoted for use in SQL, safe whatever characters it holds.
    pub fn quoted(&self) -> String {
        format!("{}.{}", quote_ident(&self.schema), quote_ident(&self.name))
    }
}

/// Quote an identifier for SQL: wraps it in double quotes and doubles inner ones.
pub fn quote_ident(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.schema, self.name)
    }
}

impl FromStr for TableName {
    type Err = ParseTableNameError;

    /// `orders` means `public.orders`; `sales.orders` names the schema.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseTableNameError(s.to_string());
        let (schema, name) = match s.split_once('.') {
            Some((schema, name)) => (schema, name),
            None => ("public", s),
        };
        if schema.is_empty() || name.is_empty() || name.contains('.') {
            return Err(err());
        }
        Ok(TableName::new(schema, name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_table_names_with_default_schema() {
        assert_eq!(
            "orders".parse::<TableName>().unwrap(),
            TableName::new("public", "orders")
        );
        assert_eq!(
            "s.o".parse::<TableName>().unwrap(),
            TableName::new("s", "o")
        );
        assert!("a.b.c".parse::<TableName>().is_err());
        assert!(".x".parse::<TableName>().is_err());
    }

    #[test]
    fn quotes_identifiers_against_injection() {
        let table = TableName::new("public", "x\"; DROP TABLE y; --");
        assert_eq!(table.quoted(), "\"public\".\"x\"\"; DROP TABLE y; --\"");
    }
}
