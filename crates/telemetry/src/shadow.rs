//! Shadow evaluation's counters: calls compared with the candidate policy, calls not compared
//! (queue full, candidate not loaded), and mismatches by the pair of reasons — never by tenant,
//! member or rule, which are unbounded and go to the decision log instead.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use rolegate_engine::Reason;

/// Reason labels: every [`Reason`], then `INVALID` for a call the candidate's schema rejects.
const REASONS: usize = Reason::ALL.len() + 1;

/// Why a call was not compared.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dropped {
    /// The shadow queue was full.
    QueueFull = 0,
    /// The candidate policy has not loaded yet.
    NotLoaded = 1,
}

const DROPPED: [&str; 2] = ["queue_full", "not_loaded"];

/// Counters of shadow evaluation.
#[derive(Debug, Default)]
pub struct ShadowMetrics {
    /// Calls decided on the candidate policy too and compared.
    pub compared: AtomicU64,
    dropped: [AtomicU64; DROPPED.len()],
    mismatches: [[AtomicU64; REASONS]; REASONS],
    /// Mismatch lines not logged because `--shadow-log-per-second` was reached.
    pub unlogged: AtomicU64,
}

fn label(reason: Option<Reason>) -> &'static str {
    reason.map_or("INVALID", Reason::as_str)
}

fn index(reason: Option<Reason>) -> usize {
    reason.and_then(|r| Reason::ALL.iter().position(|x| *x == r)).unwrap_or(Reason::ALL.len())
}

impl ShadowMetrics {
    /// Counts a call that was not compared.
    pub fn dropped(&self, why: Dropped) {
        self.dropped[why as usize].fetch_add(1, Relaxed);
    }

    /// Counts a mismatch: the live and the candidate reason (`None`: the call is invalid there).
    pub fn mismatch(&self, live: Option<Reason>, shadow: Option<Reason>) {
        self.mismatches[index(live)][index(shadow)].fetch_add(1, Relaxed);
    }

    /// Calls not compared so far, for any reason.
    pub fn dropped_total(&self) -> u64 {
        self.dropped.iter().map(|c| c.load(Relaxed)).sum()
    }

    /// Mismatches counted so far, over every reason pair.
    pub fn mismatches(&self) -> u64 {
        self.mismatches.iter().flatten().map(|c| c.load(Relaxed)).sum()
    }

    /// Appends the Prometheus text of these counters.
    pub fn render(&self, o: &mut String) -> std::fmt::Result {
        let name = "rolegate_shadow_compared_total";
        writeln!(o, "# HELP {name} Calls also decided on the shadow (candidate) policy and compared.")?;
        writeln!(o, "# TYPE {name} counter\n{name} {}", self.compared.load(Relaxed))?;
        let name = "rolegate_shadow_dropped_total";
        writeln!(
            o,
            "# HELP {name} Calls not compared with the shadow policy: its queue was full, or it had not loaded."
        )?;
        writeln!(o, "# TYPE {name} counter")?;
        for (i, why) in DROPPED.iter().enumerate() {
            writeln!(o, "{name}{{reason=\"{why}\"}} {}", self.dropped[i].load(Relaxed))?;
        }
        let name = "rolegate_shadow_unlogged_total";
        writeln!(o, "# HELP {name} Shadow mismatches not written to the decision log (over --shadow-log-per-second).")?;
        writeln!(o, "# TYPE {name} counter\n{name} {}", self.unlogged.load(Relaxed))?;
        let name = "rolegate_shadow_mismatches_total";
        writeln!(o, "# HELP {name} Calls the shadow policy answers differently, by live and shadow reason.")?;
        writeln!(o, "# TYPE {name} counter")?;
        let labels = Reason::ALL.iter().map(|r| Some(*r)).chain([None]);
        for (i, live) in labels.clone().enumerate() {
            for (j, shadow) in labels.clone().enumerate() {
                let v = self.mismatches[i][j].load(Relaxed);
                if v > 0 {
                    writeln!(o, "{name}{{live=\"{}\",shadow=\"{}\"}} {v}", label(live), label(shadow))?;
                }
            }
        }
        Ok(())
    }
}
