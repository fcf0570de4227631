//! How current the PostgreSQL source is, for `/metrics` (as a [`SourceHealth`]) and logs. A snapshot that did not change
//! is still current while the follower hears from the database; what goes stale is the
//! knowledge that nothing changed, so the age counts from the last round that confirmed it.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::{MetricKind, SourceHealth, SourceMetric};

/// Connection state and freshness of the source.
#[derive(Debug)]
pub struct Health {
    /// The `source` label of its metrics.
    label: &'static str,
    start: Instant,
    /// Milliseconds after `start` of the last round that confirmed every committed change was
    /// applied; 0 before the first.
    synced: AtomicU64,
    connected: AtomicBool,
    connects: AtomicU64,
}

impl Default for Health {
    fn default() -> Self {
        Health::labelled("postgres")
    }
}

impl Health {
    /// A health whose metrics carry `source="label"`.
    pub fn labelled(label: &'static str) -> Health {
        Health {
            label,
            start: Instant::now(),
            synced: AtomicU64::new(0),
            connected: AtomicBool::new(false),
            connects: AtomicU64::new(0),
        }
    }

    /// Records that every change committed so far is applied.
    pub fn synced(&self) {
        self.synced.store((self.start.elapsed().as_millis() as u64).max(1), Relaxed);
    }

    /// Time since the source last knew it held every committed change; `None` before the first
    /// load.
    pub fn age(&self) -> Option<Duration> {
        let at = self.synced.load(Relaxed);
        (at > 0).then(|| self.start.elapsed().saturating_sub(Duration::from_millis(at)))
    }

    /// Records the connection going up or down; true when it came up.
    pub fn set_connected(&self, up: bool) -> bool {
        let was = self.connected.swap(up, Relaxed);
        if up && !was {
            self.connects.fetch_add(1, Relaxed);
        }
        up && !was
    }

    /// True while connected.
    pub fn is_connected(&self) -> bool {
        self.connected.load(Relaxed)
    }
}

impl SourceHealth for Health {
    fn label(&self) -> &'static str {
        self.label
    }

    fn age(&self) -> Option<Duration> {
        Health::age(self)
    }

    /// The connection (the snapshot age is rendered with the other snapshot metrics).
    fn metrics(&self) -> Vec<SourceMetric> {
        vec![
            SourceMetric {
                name: "rolegate_source_connected",
                help: "1 while the source's database connection is up.",
                kind: MetricKind::Gauge,
                value: u64::from(self.is_connected()),
            },
            SourceMetric {
                name: "rolegate_source_connects_total",
                help: "Connections established to the source's database.",
                kind: MetricKind::Counter,
                value: self.connects.load(Relaxed),
            },
        ]
    }
}
