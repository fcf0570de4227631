//! The decision log: one JSON line per decision — every deny and every alert, allows sampled at a
//! configured rate. Lines go through a bounded queue to a writer thread; a full queue drops the
//! line and counts it, so logging never blocks a decision.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender, TrySendError};

use super::Metrics;
use rolegate_engine::{Decision, Query};

/// Where lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard output.
    Stdout,
    /// Append to a file.
    File(PathBuf),
}

impl LogTarget {
    /// Parses `stdout`, `off` (None) or a path.
    pub fn parse(s: &str) -> Option<LogTarget> {
        match s {
            "off" | "" => None,
            "stdout" | "-" => Some(LogTarget::Stdout),
            path => Some(LogTarget::File(PathBuf::from(path))),
        }
    }
}

/// What the writer thread receives.
#[derive(Debug)]
enum Msg {
    /// One JSON line.
    Line(String),
    /// Write everything queued so far, then acknowledge.
    Flush(SyncSender<()>),
}

/// A handle to the decision log.
#[derive(Clone, Debug)]
pub struct DecisionLog {
    tx: SyncSender<Msg>,
    /// Probability of logging an allow that raised no alert, in [0, 1].
    allow_rate: f64,
    metrics: Arc<Metrics>,
}

/// One decision as it is logged.
pub struct Entry<'a> {
    /// The request.
    pub query: &'a Query<'a>,
    /// The answer.
    pub decision: &'a Decision,
    /// The tenant's revision it was decided on.
    pub revision: u64,
    /// The caller's trace id (from `traceparent`), if any.
    pub trace_id: Option<&'a str>,
}

/// The writer thread's end: buffers lines and writes them, counting failures.
struct Writer {
    out: Box<dyn Write + Send>,
    buf: Vec<u8>,
    metrics: Arc<Metrics>,
    /// Only the first failure is logged; every one is counted.
    failed_before: bool,
}

impl Writer {
    fn write(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        if let Err(e) = self.out.write_all(&self.buf).and_then(|()| self.out.flush()) {
            self.metrics.log_write_errors.fetch_add(1, Ordering::Relaxed);
            if !std::mem::replace(&mut self.failed_before, true) {
                tracing::error!(
                    "cannot write the decision log: {e}; lines are lost (counted in rolegate_decision_log_write_errors_total)"
                );
            }
        }
        self.buf.clear();
    }

    /// Drains the queue; false once every sender is gone.
    fn drain(&mut self, rx: &mpsc::Receiver<Msg>) -> bool {
        loop {
            match rx.try_recv() {
                Ok(Msg::Line(line)) => {
                    self.buf.extend_from_slice(line.as_bytes());
                    self.buf.push(b'\n');
                }
                Ok(Msg::Flush(ack)) => {
                    self.write();
                    let _ = ack.send(());
                }
                Err(mpsc::TryRecvError::Empty) => return true,
                Err(mpsc::TryRecvError::Disconnected) => return false,
            }
        }
    }
}

impl DecisionLog {
    /// Starts the writer thread.
    pub fn start(target: LogTarget, queue: usize, allow_rate: f64, metrics: Arc<Metrics>) -> std::io::Result<Self> {
        let out: Box<dyn Write + Send> = match &target {
            LogTarget::Stdout => Box::new(std::io::stdout()),
            LogTarget::File(p) => Box::new(std::fs::OpenOptions::new().create(true).append(true).open(p)?),
        };
        let (tx, rx) = mpsc::sync_channel::<Msg>(queue.max(1));
        let mut writer =
            Writer { out, buf: Vec::with_capacity(64 * 1024), metrics: metrics.clone(), failed_before: false };
        std::thread::Builder::new().name("rolegate-decision-log".into()).spawn(move || {
            // Poll instead of blocking in `recv`: a sender then never has to wake this thread,
            // which would cost a context switch per logged decision on a busy core.
            loop {
                std::thread::sleep(std::time::Duration::from_millis(20));
                let open = writer.drain(&rx);
                writer.write();
                if !open {
                    return;
                }
            }
        })?;
        Ok(DecisionLog { tx, allow_rate: allow_rate.clamp(0.0, 1.0), metrics })
    }

    /// Writes every line queued so far, waiting up to `timeout` (at shutdown: queued lines
    /// would be lost with the process). Blocks the calling thread.
    pub fn flush(&self, timeout: std::time::Duration) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.tx.send(Msg::Flush(ack)).is_ok() && done.recv_timeout(timeout).is_err() {
            tracing::warn!("the decision log did not flush within {timeout:?}");
        }
    }

    /// Logs the decision when the policy says so: every deny and alert, sampled allows.
    pub fn record(&self, e: &Entry<'_>) {
        let d = e.decision;
        if d.allowed && !d.alert && !sampled(self.allow_rate) {
            return;
        }
        let line = Line {
            time: jiff::Timestamp::now(),
            severity: if d.alert { "alert" } else { "info" },
            trace_id: e.trace_id,
            tenant: e.query.tenant,
            principal: e.query.principal,
            action: e.query.action,
            resource: LineResource { kind: &e.query.resource.kind, id: &e.query.resource.id },
            allowed: d.allowed,
            reason: d.reason.as_str(),
            rule: d.rule.as_deref(),
            mask: &d.mask,
            revision: e.revision,
        };
        let Ok(line) = serde_json::to_string(&line) else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(Msg::Line(line)) {
            self.metrics.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A call the shadow (candidate) policy answers differently from the live one.
pub struct ShadowEntry<'a> {
    /// The request.
    pub query: &'a Query<'a>,
    /// The live answer, which the caller got.
    pub live: &'a Decision,
    /// The live tenant revision.
    pub live_revision: u64,
    /// The candidate's answer, or why the call is a caller error there.
    pub shadow: Result<&'a Decision, String>,
    /// The candidate tenant's revision (0 when it has no such tenant).
    pub shadow_revision: u64,
}

impl DecisionLog {
    /// Logs a shadow mismatch with both answers (the caller bounds how many).
    pub fn record_shadow(&self, e: &ShadowEntry<'_>) {
        let q = e.query;
        let shadow = match &e.shadow {
            Ok(d) => answer(d, e.shadow_revision),
            Err(why) => Answer {
                allowed: false,
                reason: "INVALID",
                rule: None,
                mask: &[],
                review: false,
                revision: e.shadow_revision,
                error: Some(why),
            },
        };
        let line = ShadowLine {
            time: jiff::Timestamp::now(),
            severity: "shadow_mismatch",
            tenant: q.tenant,
            principal: q.principal,
            action: q.action,
            resource: LineResource { kind: &q.resource.kind, id: &q.resource.id },
            live: answer(e.live, e.live_revision),
            shadow,
        };
        let Ok(line) = serde_json::to_string(&line) else { return };
        if let Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) = self.tx.try_send(Msg::Line(line)) {
            self.metrics.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn answer(d: &Decision, revision: u64) -> Answer<'_> {
    Answer {
        allowed: d.allowed,
        reason: d.reason.as_str(),
        rule: d.rule.as_deref(),
        mask: &d.mask,
        review: d.review,
        revision,
        error: None,
    }
}

#[derive(serde::Serialize)]
struct ShadowLine<'a> {
    #[serde(serialize_with = "rfc3339")]
    time: jiff::Timestamp,
    severity: &'static str,
    tenant: &'a str,
    principal: &'a str,
    action: &'a str,
    resource: LineResource<'a>,
    live: Answer<'a>,
    shadow: Answer<'a>,
}

#[derive(serde::Serialize)]
struct Answer<'a> {
    allowed: bool,
    reason: &'static str,
    rule: Option<&'a str>,
    mask: &'a [Arc<str>],
    review: bool,
    revision: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<&'a str>,
}

/// One log line; serialised straight from borrowed fields.
#[derive(serde::Serialize)]
struct Line<'a> {
    #[serde(serialize_with = "rfc3339")]
    time: jiff::Timestamp,
    severity: &'static str,
    trace_id: Option<&'a str>,
    tenant: &'a str,
    principal: &'a str,
    action: &'a str,
    resource: LineResource<'a>,
    allowed: bool,
    reason: &'static str,
    rule: Option<&'a str>,
    mask: &'a [Arc<str>],
    revision: u64,
}

#[derive(serde::Serialize)]
struct LineResource<'a> {
    kind: &'a str,
    id: &'a str,
}

fn rfc3339<S: serde::Serializer>(t: &jiff::Timestamp, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(t)
}

fn sampled(rate: f64) -> bool {
    if rate <= 0.0 {
        return false;
    }
    if rate >= 1.0 {
        return true;
    }
    super::random_unit() < rate
}
