//! The HTTP endpoints: `/metrics`, `/health`, `/health/live`, `/health/ready`.

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;

use crate::observe::metrics::CONTENT_TYPE;
use crate::observe::Observer;

/// The address used when neither the config nor the command line names one.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:9187";

#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr} for the HTTP endpoints ([http] listen, --http-listen): {source}")]
pub struct BindError {
    pub addr: SocketAddr,
    #[source]
    pub source: std::io::Error,
}

/// A bound, not yet serving, HTTP server.
pub struct HttpServer {
    listener: TcpListener,
}

impl HttpServer {
    pub async fn bind(addr: SocketAddr) -> Result<HttpServer, BindError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| BindError { addr, source })?;
        Ok(HttpServer { listener })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves in the background until the process ends.
    pub fn spawn(self, observer: Arc<Observer>) -> tokio::task::JoinHandle<()> {
        tokio::spawn(async move {
            if let Err(error) = axum::serve(self.listener, router(observer)).await {
                tracing::error!(%error, "the HTTP server stopped");
            }
        })
    }
}

pub fn router(observer: Arc<Observer>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/health", get(health))
        .route("/health/live", get(live))
        .route("/health/ready", get(ready))
        .with_state(observer)
}

async fn metrics(State(observer): State<Arc<Observer>>) -> Response {
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        observer.encode_metrics(),
    )
        .into_response()
}

async fn health(State(observer): State<Arc<Observer>>) -> Response {
    let report = observer.health();
    let code = match report.is_ok() {
        true => StatusCode::OK,
        false => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(report)).into_response()
}

async fn live() -> Response {
    (StatusCode::OK, Json(json!({"status": "ok"}))).into_response()
}

async fn ready(State(observer): State<Arc<Observer>>) -> Response {
    match observer.readiness() {
        Ok(()) => (StatusCode::OK, Json(json!({"status": "ready"}))).into_response(),
        Err(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({"status": "not ready", "reason": reason})),
        )
            .into_response(),
    }
}
