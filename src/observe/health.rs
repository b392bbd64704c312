//! Whether the pipeline can do its work: the source connection, the Delta sink, the last commit.

use chrono::{DateTime, Utc};
use serde::Serialize;

use crate::event::Lsn;

/// One part the pipeline depends on.
#[derive(Debug, Clone, Serialize)]
pub struct Component {
    pub status: ComponentStatus,
    /// Why the component is down.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When the status last changed.
    pub since: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ComponentStatus {
    Up,
    Down,
}

impl Component {
    pub fn down(reason: impl Into<String>) -> Component {
        Component {
            status: ComponentStatus::Down,
            reason: Some(reason.into()),
            since: Utc::now(),
        }
    }

    pub fn up() -> Component {
        Component {
            status: ComponentStatus::Up,
            reason: None,
            since: Utc::now(),
        }
    }

    pub fn is_up(&self) -> bool {
        self.status == ComponentStatus::Up
    }

    /// Changes the status; `since` moves only when the status itself changes.
    pub fn set(&mut self, next: Component) {
        if next.status == self.status {
            self.reason = next.reason;
        } else {
            *self = next;
        }
    }
}

/// The newest batch committed to Delta and confirmed to the source.
#[derive(Debug, Clone, Serialize)]
pub struct LastCommit {
    pub lsn: Option<Lsn>,
    pub at: Option<DateTime<Utc>>,
    pub age_seconds: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Components {
    pub source: Component,
    pub sink: Component,
    pub last_commit: LastCommit,
}

/// The body of `GET /health`.
#[derive(Debug, Clone, Serialize)]
pub struct HealthReport {
    /// `ok` when ready, `unavailable` otherwise.
    pub status: &'static str,
    pub pipeline: String,
    pub uptime_seconds: f64,
    pub components: Components,
}

impl HealthReport {
    pub fn is_ok(&self) -> bool {
        self.status == "ok"
    }
}

/// Mutable health state, kept by the observer.
#[derive(Debug, Clone)]
pub struct HealthState {
    pub source: Component,
    pub sink: Component,
    pub last_commit: Option<(Lsn, DateTime<Utc>)>,
}

impl Default for HealthState {
    fn default() -> Self {
        HealthState {
            source: Component::down("not connected yet"),
            sink: Component::down("Delta tables not opened yet"),
            last_commit: None,
        }
    }
}

impl HealthState {
    /// `Ok` when connected to the source and the sink is writable, else why not.
    pub fn readiness(&self) -> Result<(), String> {
        let reasons: Vec<String> = [("source", &self.source), ("sink", &self.sink)]
            .into_iter()
            .filter(|(_, component)| !component.is_up())
            .map(|(name, component)| {
                format!(
                    "{name}: {}",
                    component.reason.as_deref().unwrap_or("unavailable")
                )
            })
            .collect();
        match reasons.is_empty() {
            true => Ok(()),
            false => Err(reasons.join("; ")),
        }
    }

    pub fn report(&self, pipeline: &str, uptime_seconds: f64, now: DateTime<Utc>) -> HealthReport {
        let last_commit = LastCommit {
            lsn: self.last_commit.map(|(lsn, _)| lsn),
            at: self.last_commit.map(|(_, at)| at),
            age_seconds: self.last_commit.map(|(_, at)| seconds_between(at, now)),
        };
        HealthReport {
            status: if self.readiness().is_ok() {
                "ok"
            } else {
                "unavailable"
            },
            pipeline: pipeline.to_string(),
            uptime_seconds,
            components: Components {
                source: self.source.clone(),
                sink: self.sink.clone(),
                last_commit,
            },
        }
    }
}

/// `later - earlier` in seconds, never negative (clocks may disagree a little).
pub fn seconds_between(earlier: DateTime<Utc>, later: DateTime<Utc>) -> f64 {
    let micros = (later - earlier).num_microseconds().unwrap_or(i64::MAX);
    (micros.max(0) as f64) / 1e6
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_with_source_and_sink_up_and_says_why_not() {
        let mut state = HealthState::default();
        let reason = state.readiness().unwrap_err();
        assert!(reason.contains("source: not connected yet"), "{reason}");
        assert!(
            reason.contains("sink: Delta tables not opened yet"),
            "{reason}"
        );
        state.source.set(Component::up());
        state.sink.set(Component::up());
        assert!(state.readiness().is_ok());
        state.source.set(Component::down("connection refused"));
        assert_eq!(state.readiness().unwrap_err(), "source: connection refused");
        let report = state.report("shop", 1.0, Utc::now());
        assert_eq!(report.status, "unavailable");
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["components"]["source"]["status"], "down");
        assert_eq!(json["components"]["sink"]["status"], "up");
        assert!(json["components"]["last_commit"]["lsn"].is_null());
    }

    #[test]
    fn since_moves_only_when_the_status_changes() {
        let mut component = Component::down("a");
        let since = component.since;
        std::thread::sleep(std::time::Duration::from_millis(2));
        component.set(Component::down("b"));
        assert_eq!(component.since, since);
        assert_eq!(component.reason.as_deref(), Some("b"));
        component.set(Component::up());
        assert!(component.since > since);
        assert!(component.reason.is_none());
    }
}
