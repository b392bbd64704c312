//! A small client of the Kafka Connect REST API: register, inspect and delete a connector.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::connector::ConnectorConfig;

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("Kafka Connect URL '{url}' is not valid: {reason}")]
    BadUrl { url: String, reason: String },
    #[error(
        "cannot reach Kafka Connect at {url}: {reason} (is the Connect worker running there?)"
    )]
    Unreachable { url: String, reason: String },
    #[error("Kafka Connect rejected the connector config for '{name}' (400): {message}")]
    Rejected { name: String, message: String },
    #[error("Kafka Connect reports a conflict for '{name}' (409): {message}; it is probably rebalancing, try again shortly")]
    Conflict { name: String, message: String },
    #[error("Kafka Connect has no connector named '{name}' (404)")]
    NotFound { name: String },
    #[error("Kafka Connect answered {method} {path} with {status}: {message}")]
    Unexpected {
        method: String,
        path: String,
        status: u16,
        message: String,
    },
}

/// Whether `register` created the connector or updated an existing one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Registered {
    Created,
    Updated,
}

pub struct ConnectClient {
    base: url::Url,
    http: reqwest::Client,
}

struct Answer {
    status: StatusCode,
    body: Value,
}

impl ConnectClient {
    pub fn new(url: &str) -> Result<ConnectClient, ConnectError> {
        let bad = |reason: String| ConnectError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let base = url::Url::parse(url).map_err(|e| bad(e.to_string()))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(bad("expected http:// or https://".into()));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .build()
            .map_err(|e| bad(e.to_string()))?;
        Ok(ConnectClient { base, http })
    }

    /// Creates the connector (`POST /connectors`), or updates its config
    /// (`PUT /connectors/{name}/config`) when it already exists.
    pub async fn register(&self, connector: &ConnectorConfig) -> Result<Registered, ConnectError> {
        let body = serde_json::to_value(connector).expect("plain strings serialize");
        let answer = self.call(Method::POST, "connectors", Some(&body)).await?;
        match answer.status {
            s if s.is_success() => Ok(Registered::Created),
            StatusCode::CONFLICT if message(&answer.body).contains("already exists") => {
                let path = format!("connectors/{}/config", encode(&connector.name));
                let config = serde_json::to_value(&connector.config).expect("strings serialize");
                let answer = self.call(Method::PUT, &path, Some(&config)).await?;
                self.check(answer, "PUT", &path, &connector.name)?;
                Ok(Registered::Updated)
            }
            _ => self
                .check(answer, "POST", "connectors", &connector.name)
                .map(|_| Registered::Created),
        }
    }

    /// `GET /connectors/{name}/status`: the connector's and its tasks' states.
    pub async fn status(&self, name: &str) -> Result<Value, ConnectError> {
        let path = format!("connectors/{}/status", encode(name));
        let answer = self.call(Method::GET, &path, None).await?;
        self.check(answer, "GET", &path, name)
    }

    /// `DELETE /connectors/{name}`.
    pub async fn delete(&self, name: &str) -> Result<(), ConnectError> {
        let path = format!("connectors/{}", encode(name));
        let answer = self.call(Method::DELETE, &path, None).await?;
        self.check(answer, "DELETE", &path, name).map(|_| ())
    }

    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Answer, ConnectError> {
        let url = self.base.join(path).map_err(|e| ConnectError::BadUrl {
            url: self.base.to_string(),
            reason: e.to_string(),
        })?;
        let mut request = self
            .http
            .request(method, url)
            .header("Accept", "application/json");
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_string());
        }
        let unreachable = |e: reqwest::Error| ConnectError::Unreachable {
            url: self.base.to_string(),
            reason: describe_transport_error(&e),
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Ok(Answer { status, body })
    }

    fn check(
        &self,
        answer: Answer,
        method: &str,
        path: &str,
        name: &str,
    ) -> Result<Value, ConnectError> {
        let message = message(&answer.body);
        match answer.status {
            s if s.is_success() => Ok(answer.body),
            StatusCode::BAD_REQUEST => Err(ConnectError::Rejected {
                name: name.to_string(),
                message,
            }),
            StatusCode::CONFLICT => Err(ConnectError::Conflict {
                name: name.to_string(),
                message,
            }),
            StatusCode::NOT_FOUND => Err(ConnectError::NotFound {
                name: name.to_string(),
            }),
            other => Err(ConnectError::Unexpected {
                method: method.to_string(),
                path: format!("/{path}"),
                status: other.as_u16(),
                message,
            }),
        }
    }
}

/// Kafka Connect's error body is `{"error_code": n, "message": "..."}`.
fn message(body: &Value) -> String {
    match body {
        Value::Object(map) => map
            .get("message")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| body.to_string()),
        Value::String(text) if text.is_empty() => "(empty answer)".into(),
        Value::String(text) => text.chars().take(500).collect(),
        other => other.to_string(),
    }
}

fn encode(segment: &str) -> String {
    url::form_urlencoded::byte_serialize(segment.as_bytes())
        .collect::<String>()
        .replace('+', "%20")
}

/// "connection refused" rather than reqwest's nested wording.
fn describe_transport_error(error: &reqwest::Error) -> String {
    let mut source: Option<&dyn std::error::Error> = Some(error);
    let mut innermost = error.to_string();
    while let Some(current) = source {
        innermost = current.to_string();
        source = current.source();
    }
    if error.is_timeout() {
        return "timed out".into();
    }
    if innermost.to_ascii_lowercase().contains("refused") {
        return "connection refused".into();
    }
    innermost
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_non_http_urls() {
        assert!(matches!(
            ConnectClient::new("ftp://x"),
            Err(ConnectError::BadUrl { .. })
        ));
        assert!(ConnectClient::new("not a url").is_err());
        assert!(ConnectClient::new("http://localhost:8083").is_ok());
    }

    #[test]
    fn reads_connect_error_messages() {
        let body = serde_json::json!({"error_code": 409, "message": "Connector x already exists"});
        assert_eq!(message(&body), "Connector x already exists");
        assert_eq!(message(&Value::String(String::new())), "(empty answer)");
        assert_eq!(encode("a b/c"), "a%20b%2Fc");
    }
}
