//! Who may ask: TLS handshakes that failed, credential and callers files that could not be
//! reloaded, and calls refused to a caller, by API group (never by caller or tenant: both are
//! unbounded and go to the log instead).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// The API groups a callers file grants, plus `unknown` for a path in none of them.
pub const API_GROUPS: [&str; 4] = ["check", "plan", "inspect", "unknown"];

/// Counters of the TLS listeners and the callers check.
#[derive(Debug, Default)]
pub struct AccessMetrics {
    /// TLS handshakes that failed or timed out (no certificate, an untrusted or expired one, a
    /// plaintext client).
    pub tls_handshake_failures: AtomicU64,
    /// Certificate, key or client-CA files that changed but could not be loaded; the previous
    /// credentials kept serving.
    pub tls_reload_failures: AtomicU64,
    /// Callers files that changed but could not be loaded; the previous table kept applying.
    pub callers_reload_failures: AtomicU64,
    /// Connections open on the gRPC and AuthZEN listeners.
    pub connections_open: AtomicU64,
    /// Connections closed on accept because `--max-connections` were open.
    pub connections_refused: AtomicU64,
    denied: [AtomicU64; API_GROUPS.len()],
}

impl AccessMetrics {
    /// Counts a call refused with `PERMISSION_DENIED` in API group `api` (one of
    /// [`API_GROUPS`]; anything else counts as `unknown`).
    pub fn denied(&self, api: &str) {
        let i = API_GROUPS.iter().position(|g| *g == api).unwrap_or(API_GROUPS.len() - 1);
        self.denied[i].fetch_add(1, Relaxed);
    }

    /// Appends the Prometheus text of these counters.
    pub fn render(&self, o: &mut String) -> std::fmt::Result {
        let name = "rolegate_tls_handshake_failures_total";
        writeln!(o, "# HELP {name} TLS handshakes that failed or timed out on a gRPC listener.")?;
        writeln!(o, "# TYPE {name} counter\n{name} {}", self.tls_handshake_failures.load(Relaxed))?;
        let name = "rolegate_connections_open";
        writeln!(o, "# HELP {name} Connections open on the gRPC and AuthZEN listeners.")?;
        writeln!(o, "# TYPE {name} gauge\n{name} {}", self.connections_open.load(Relaxed))?;
        let name = "rolegate_connections_refused_total";
        writeln!(o, "# HELP {name} Connections closed on accept because --max-connections were open.")?;
        writeln!(o, "# TYPE {name} counter\n{name} {}", self.connections_refused.load(Relaxed))?;
        let name = "rolegate_credential_reload_failures_total";
        writeln!(o, "# HELP {name} Changed TLS or callers files that could not be loaded (the previous ones kept).")?;
        writeln!(o, "# TYPE {name} counter")?;
        writeln!(o, "{name}{{file=\"tls\"}} {}", self.tls_reload_failures.load(Relaxed))?;
        writeln!(o, "{name}{{file=\"callers\"}} {}", self.callers_reload_failures.load(Relaxed))?;
        let name = "rolegate_caller_denied_total";
        writeln!(o, "# HELP {name} Calls refused with PERMISSION_DENIED by the callers file, by API group.")?;
        writeln!(o, "# TYPE {name} counter")?;
        for (i, api) in API_GROUPS.iter().enumerate() {
            writeln!(o, "{name}{{api=\"{api}\"}} {}", self.denied[i].load(Relaxed))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_denial_outside_the_known_groups_counts_as_unknown() {
        let m = AccessMetrics::default();
        m.denied("plan");
        m.denied("export");
        let mut text = String::new();
        m.render(&mut text).unwrap();
        assert!(text.contains("rolegate_caller_denied_total{api=\"plan\"} 1\n"), "{text}");
        assert!(text.contains("rolegate_caller_denied_total{api=\"unknown\"} 1\n"), "{text}");
        assert!(text.contains("rolegate_caller_denied_total{api=\"check\"} 0\n"), "{text}");
    }
}
