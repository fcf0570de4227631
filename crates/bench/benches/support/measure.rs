//! Measuring for the PostgreSQL bench: CPU time of a thread, a process and the database
//! server, latency percentiles, and running futures as concurrent tasks.

use std::future::Future;
use std::time::Duration;

/// CPU time of the calling thread.
pub fn thread_cpu() -> Duration {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// CPU time of a process (user + system), from /proc.
pub fn process_cpu(pid: u32) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let fields: Vec<&str> = stat.rsplit_once(')').map_or("", |(_, rest)| rest).split_whitespace().collect();
    let ticks: u64 = fields.get(11..13).map_or(0, |f| f.iter().filter_map(|t| t.parse::<u64>().ok()).sum());
    Duration::from_millis(ticks * 10)
}

/// The bench's own PostgreSQL server (its postmaster), once known: other databases on the
/// machine are then left out of [`postgres_cpu`].
static POSTMASTER: std::sync::OnceLock<u32> = std::sync::OnceLock::new();

/// Counts only the PostgreSQL server that runs backend `backend` (its postmaster and that
/// postmaster's children).
pub fn count_postgres_of(backend: u32) {
    if let Some(parent) = parent_pid(backend) {
        let _ = POSTMASTER.set(parent);
    }
}

fn parent_pid(pid: u32) -> Option<u32> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find_map(|l| l.strip_prefix("PPid:")).and_then(|p| p.trim().parse().ok())
}

/// CPU time of the bench's PostgreSQL server processes (every `postgres` process on the
/// machine until [`count_postgres_of`] names the server). Processes that exited meanwhile are
/// not counted: the bench's connections stay open while it measures.
pub fn postgres_cpu() -> Duration {
    let mut total = Duration::ZERO;
    let ours = POSTMASTER.get().copied();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|p| p.parse::<u32>().ok()) else { continue };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        let counted = ours.is_none_or(|p| pid == p || parent_pid(pid) == Some(p));
        if comm.trim() == "postgres" && counted {
            total += process_cpu(pid);
        }
    }
    total
}

/// `d` in milliseconds, for a report line.
pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// p50, p90, p99 and max of `samples`.
pub fn percentiles(samples: &mut [Duration]) -> String {
    samples.sort();
    let at = |q: f64| samples[((samples.len() as f64 * q).ceil() as usize).clamp(1, samples.len()) - 1];
    format!(
        "p50 {} · p90 {} · p99 {} · max {} (n = {})",
        ms(at(0.5)),
        ms(at(0.9)),
        ms(at(0.99)),
        ms(at(1.0)),
        samples.len()
    )
}

/// Runs futures as tasks and collects their outputs in order.
pub async fn join_all<F>(futures: impl IntoIterator<Item = F>) -> Vec<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let handles: Vec<_> = futures.into_iter().map(tokio::spawn).collect();
    let mut out = Vec::with_capacity(handles.len());
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}
