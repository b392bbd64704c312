//! The source URL, checked when the configuration loads and parsed again to connect.

/// Parses a `postgres://` URL (or `key=value` string) without connecting.
pub fn parse_url(url: &str) -> Result<tokio_postgres::Config, String> {
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err("expected a URL of the form postgres://user@host:port/database".into());
    }
    let config: tokio_postgres::Config = url
        .parse()
        .map_err(|e: tokio_postgres::Error| e.to_string())?;
    if config.get_hosts().is_empty() {
        return Err("the URL names no host".into());
    }
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_postgres_urls() {
        assert!(parse_url("http://x").is_err());
        assert!(parse_url("postgres://u@h/db").is_ok());
    }
}
