//! The decision log: one JSON line per decision — every deny and every alert, allows sampled at a
//! configured rate. Lines are written into a shared, bounded buffer that a writer thread swaps out
//! and writes; a full buffer drops the line and counts it, so logging never blocks a decision.
//! The two buffers are reused, so logging a decision allocates nothing once they have grown.

use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, SyncSender};
use std::sync::{Arc, Mutex};

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

/// Lines waiting for the writer.
#[derive(Debug, Default)]
struct Pending {
    /// The lines, each ending in `\n`.
    bytes: Vec<u8>,
    /// How many.
    lines: usize,
    /// The last whole second written, formatted once (`2026-12-03T14:53:08`): every line of
    /// that second reuses it.
    second: Option<(i64, String)>,
}

/// A handle to the decision log.
#[derive(Clone, Debug)]
pub struct DecisionLog {
    pending: Arc<Mutex<Pending>>,
    /// Lines waiting before new ones are dropped.
    queue: usize,
    /// Asks the writer to write what is pending and acknowledge; its closing stops the writer.
    flush: SyncSender<SyncSender<()>>,
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
    /// When it was decided: the call's own reading of the clock, so logging reads it no second
    /// time.
    pub time: jiff::Timestamp,
}

/// The writer thread's end: takes the pending lines and writes them, counting failures.
struct Writer {
    out: Box<dyn Write + Send>,
    /// Swapped with the pending buffer, so both keep their capacity.
    buf: Vec<u8>,
    pending: Arc<Mutex<Pending>>,
    metrics: Arc<Metrics>,
    /// Only the first failure is logged; every one is counted.
    failed_before: bool,
}

impl Writer {
    /// Writes every line pending now.
    fn write(&mut self) {
        self.buf.clear();
        match self.pending.lock() {
            Ok(mut p) => {
                std::mem::swap(&mut p.bytes, &mut self.buf);
                p.lines = 0;
            }
            // A thread panicked while appending: its line may be cut, the rest is whole.
            Err(poisoned) => {
                let mut p = poisoned.into_inner();
                std::mem::swap(&mut p.bytes, &mut self.buf);
                p.lines = 0;
            }
        }
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
    }

    /// Writes what is pending, answering flush requests; false once every handle is gone.
    fn run_once(&mut self, flushes: &mpsc::Receiver<SyncSender<()>>) -> bool {
        loop {
            match flushes.try_recv() {
                Ok(ack) => {
                    self.write();
                    let _ = ack.send(());
                }
                Err(mpsc::TryRecvError::Empty) => {
                    self.write();
                    return true;
                }
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.write();
                    return false;
                }
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
        let pending = Arc::new(Mutex::new(Pending { bytes: Vec::with_capacity(64 * 1024), ..Pending::default() }));
        let (flush, flushes) = mpsc::sync_channel::<SyncSender<()>>(16);
        let mut writer = Writer {
            out,
            buf: Vec::with_capacity(64 * 1024),
            pending: pending.clone(),
            metrics: metrics.clone(),
            failed_before: false,
        };
        std::thread::Builder::new().name("rolegate-decision-log".into()).spawn(move || {
            // Poll instead of being woken per line: waking this thread would cost a context
            // switch per logged decision on a busy core.
            loop {
                std::thread::sleep(std::time::Duration::from_millis(20));
                if !writer.run_once(&flushes) {
                    return;
                }
            }
        })?;
        Ok(DecisionLog { pending, queue: queue.max(1), flush, allow_rate: allow_rate.clamp(0.0, 1.0), metrics })
    }

    /// Writes every line pending so far, waiting up to `timeout` (at shutdown: pending lines
    /// would be lost with the process). Blocks the calling thread.
    pub fn flush(&self, timeout: std::time::Duration) {
        let (ack, done) = mpsc::sync_channel(1);
        if self.flush.send(ack).is_ok() && done.recv_timeout(timeout).is_err() {
            tracing::warn!("the decision log did not flush within {timeout:?}");
        }
    }

    /// The pending lines, or None (the line dropped and counted) when `queue` lines are
    /// already waiting.
    fn room(&self) -> Option<std::sync::MutexGuard<'_, Pending>> {
        match self.pending.lock() {
            Ok(p) if p.lines < self.queue => Some(p),
            _ => {
                self.metrics.log_lines_dropped.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }

    /// Appends one line serialised by serde, or drops and counts it.
    fn push(&self, line: &impl serde::Serialize) {
        let Some(mut p) = self.room() else { return };
        let start = p.bytes.len();
        if serde_json::to_writer(&mut p.bytes, line).is_err() {
            p.bytes.truncate(start);
            return;
        }
        p.bytes.push(b'\n');
        p.lines += 1;
    }

    /// Whether the policy logs this decision: every deny and alert, sampled allows (each call
    /// draws again). A caller asks before gathering what only a line needs.
    pub fn wants(&self, d: &Decision) -> bool {
        !d.allowed || d.alert || sampled(self.allow_rate)
    }

    /// Logs the decision, or drops and counts the line when the queue is full.
    pub fn write(&self, e: &Entry<'_>) {
        let Some(mut p) = self.room() else { return };
        let Pending { bytes, lines, second } = &mut *p;
        write_line(bytes, second, e.time, e);
        *lines += 1;
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
        self.push(&line);
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

/// Writes one decision line and its `\n` — by hand rather than through serde: a busy sidecar
/// logs tens of thousands of lines a second on the request threads, and this is about a fifth
/// of serde_json's cost for the same JSON. Keys, in order: `time` (RFC 3339, UTC, as jiff
/// prints it), `severity`, `trace_id`, `tenant`, `principal`, `action`, `resource` {`kind`,
/// `id`}, `allowed`, `reason`, `rule`, `mask`, `revision`.
fn write_line(out: &mut Vec<u8>, second: &mut Option<(i64, String)>, time: jiff::Timestamp, e: &Entry<'_>) {
    let (q, d) = (e.query, e.decision);
    out.extend_from_slice(b"{\"time\":\"");
    write_time(out, second, time);
    out.extend_from_slice(if d.alert {
        b"\",\"severity\":\"alert\",\"trace_id\":"
    } else {
        b"\",\"severity\":\"info\",\"trace_id\":"
    });
    write_opt_str(out, e.trace_id);
    out.extend_from_slice(b",\"tenant\":");
    write_str(out, q.tenant);
    out.extend_from_slice(b",\"principal\":");
    write_str(out, q.principal);
    out.extend_from_slice(b",\"action\":");
    write_str(out, q.action);
    out.extend_from_slice(b",\"resource\":{\"kind\":");
    write_str(out, &q.resource.kind);
    out.extend_from_slice(b",\"id\":");
    write_str(out, &q.resource.id);
    out.extend_from_slice(if d.allowed {
        b"},\"allowed\":true,\"reason\":"
    } else {
        b"},\"allowed\":false,\"reason\":"
    });
    // A reason's name is capitals and underscores: nothing to escape.
    out.push(b'"');
    out.extend_from_slice(d.reason.as_str().as_bytes());
    out.push(b'"');
    out.extend_from_slice(b",\"rule\":");
    write_opt_str(out, d.rule.as_deref());
    out.extend_from_slice(b",\"mask\":[");
    for (i, m) in d.mask.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, m);
    }
    out.extend_from_slice(b"],\"revision\":");
    write_u64(out, e.revision);
    out.extend_from_slice(b"}\n");
}

/// `time` as jiff prints it (`2026-12-03T14:53:08.957438Z`: the fraction with its trailing
/// zeros cut, none when it is zero), formatting the date and time of day once per second.
fn write_time(out: &mut Vec<u8>, second: &mut Option<(i64, String)>, time: jiff::Timestamp) {
    let (secs, nanos) = (time.as_second(), time.subsec_nanosecond());
    // Negative instants (before 1970) carry a negative fraction: rare enough to print whole.
    if nanos < 0 {
        out.extend_from_slice(time.to_string().as_bytes());
        return;
    }
    let prefix = match second {
        Some((s, p)) if *s == secs => p,
        _ => {
            let whole = jiff::Timestamp::from_second(secs).map(|t| t.to_string()).unwrap_or_default();
            let p = whole.trim_end_matches('Z').to_owned();
            &mut second.insert((secs, p)).1
        }
    };
    out.extend_from_slice(prefix.as_bytes());
    if nanos > 0 {
        // Nine digits: eight two at a time, then the first.
        let mut digits = *b".000000000";
        let mut n = nanos as usize;
        for at in [8, 6, 4, 2] {
            let pair = n % 100 * 2;
            n /= 100;
            digits[at..at + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
        }
        digits[1] = b'0' + n as u8;
        let len = digits.iter().rposition(|&b| b != b'0').map_or(0, |i| i + 1);
        out.extend_from_slice(&digits[..len]);
    }
    out.push(b'Z');
}

fn write_opt_str(out: &mut Vec<u8>, s: Option<&str>) {
    match s {
        Some(s) => write_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// A JSON string: `"` and `\` escaped, control characters as `\u00XX` (or their short
/// forms), everything else — UTF-8 included — copied as it is.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    let bytes = s.as_bytes();
    // Ids and names almost never need escaping: checked eight bytes at a time, copied whole.
    if needs_escape(bytes) {
        return write_escaped(out, bytes);
    }
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    out.extend_from_slice(bytes);
    out.push(b'"');
}

#[cold]
fn write_escaped(out: &mut Vec<u8>, bytes: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        if short.is_empty() {
            out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]);
        } else {
            out.extend_from_slice(short);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// True when `bytes` holds a control character, `"` or `\\`. Eight bytes at a time: a byte of a
/// word is below `n` (for `n` up to 128) exactly when `(w - n·ONES) & !w & HIGH` is not zero,
/// and equal to `c` when the word XOR `c·ONES` has a zero byte (below 1).
#[inline]
fn needs_escape(bytes: &[u8]) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGH != 0;
    let special =
        |w: u64| below(w, 0x20) || below(w ^ (ONES * u64::from(b'"')), 1) || below(w ^ (ONES * u64::from(b'\\')), 1);
    let mut words = bytes.chunks_exact(8);
    for word in &mut words {
        let mut w = [0; 8];
        w.copy_from_slice(word);
        if special(u64::from_le_bytes(w)) {
            return true;
        }
    }
    // The last bytes, padded with a letter.
    let rest = words.remainder();
    let mut w = [b'a'; 8];
    w[..rest.len()].copy_from_slice(rest);
    special(u64::from_le_bytes(w))
}

/// Every number below 100 as two digits, for printing two digits a step.
const PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
    2021222324252627282930313233343536373839\
    4041424344454647484950515253545556575859\
    6061626364656667686970717273747576777879\
    8081828384858687888990919293949596979899";

fn write_u64(out: &mut Vec<u8>, mut n: u64) {
    // Two digits a step: a revision (microseconds since 1970) has 16.
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    while n >= 100 {
        let pair = (n % 100) as usize * 2;
        n /= 100;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    }
    if n >= 10 {
        let pair = n as usize * 2;
        i -= 2;
        digits[i..i + 2].copy_from_slice(&PAIRS[pair..pair + 2]);
    } else {
        i -= 1;
        digits[i] = b'0' + n as u8;
    }
    out.extend_from_slice(&digits[i..]);
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

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rolegate_engine::{Context, Reason, Resource};

    /// Collects what the writer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    /// A log with no writer thread, and the writer to run by hand.
    fn log(queue: usize) -> (DecisionLog, Writer, Sink, mpsc::Receiver<SyncSender<()>>) {
        let metrics = Arc::new(Metrics::default());
        let pending = Arc::new(Mutex::new(Pending::default()));
        let (flush, flushes) = mpsc::sync_channel(1);
        let sink = Sink::default();
        let writer = Writer {
            out: Box::new(sink.clone()),
            buf: Vec::new(),
            pending: pending.clone(),
            metrics: metrics.clone(),
            failed_before: false,
        };
        (DecisionLog { pending, queue, flush, allow_rate: 0.0, metrics }, writer, sink, flushes)
    }

    fn deny(log: &DecisionLog, principal: &str) {
        let (resource, context) =
            (Resource { kind: "conversation".into(), id: "c1".into(), ..Resource::default() }, Context::default());
        let query =
            Query { tenant: "acme", principal, action: "conversation.view", resource: &resource, context: &context };
        let decision = Decision::deny(Reason::NoGrant);
        if log.wants(&decision) {
            log.write(&Entry {
                query: &query,
                decision: &decision,
                revision: 7,
                trace_id: None,
                time: jiff::Timestamp::now(),
            });
        }
    }

    /// The line as serde_json would write the same fields.
    fn expected(time: jiff::Timestamp, e: &Entry<'_>) -> serde_json::Value {
        let (q, d) = (e.query, e.decision);
        serde_json::json!({
            "time": time.to_string(),
            "severity": if d.alert { "alert" } else { "info" },
            "trace_id": e.trace_id,
            "tenant": q.tenant,
            "principal": q.principal,
            "action": q.action,
            "resource": {"kind": q.resource.kind, "id": q.resource.id},
            "allowed": d.allowed,
            "reason": d.reason.as_str(),
            "rule": d.rule.as_deref(),
            "mask": d.mask.iter().map(|m| m.to_string()).collect::<Vec<_>>(),
            "revision": e.revision,
        })
    }

    proptest::proptest! {
        /// The word-at-a-time check agrees with a byte-by-byte one on any bytes, of any length
        /// around the word size, with the special bytes anywhere or nowhere.
        #[test]
        fn needs_escape_agrees_with_a_byte_by_byte_check(
            bytes in proptest::collection::vec(
                proptest::prop_oneof![40 => 0x20u8..=0xff, 1 => Just(b'"'), 1 => Just(b'\\'), 1 => 0u8..0x20],
                0..40,
            ),
        ) {
            prop_assert_eq!(needs_escape(&bytes), bytes.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\'));
        }

        /// Any strings (quotes, backslashes, control characters, any Unicode), any instant:
        /// the hand-written line is one line of valid JSON with exactly the fields and values
        /// serde_json gives, keys in order, and the second's cache never leaks into the next.
        #[test]
        fn hand_written_lines_are_the_json_serde_would_write(
            texts in proptest::collection::vec(".*", 6),
            mask in proptest::collection::vec("[\\x00-\\x7f\\u{80}-\\u{10ffff}]{0,8}", 0..4),
            seconds in proptest::prop_oneof![0i64..4_000_000_000, -2_000_000_000i64..0],
            nanos in proptest::prop_oneof![Just(0i32), 0i32..1_000_000_000, (0i32..1000).prop_map(|n| n * 1_000_000)],
            revision: u64,
            allowed: bool,
            alert: bool,
        ) {
            let resource = Resource { kind: texts[3].clone(), id: texts[4].clone(), ..Resource::default() };
            let context = Context::default();
            let query = Query { tenant: &texts[0], principal: &texts[1], action: &texts[2], resource: &resource, context: &context };
            let mut decision = Decision::deny(Reason::DeniedByRule);
            decision.allowed = allowed;
            decision.alert = alert;
            decision.rule = (!texts[5].is_empty()).then(|| texts[5].as_str().into());
            decision.mask = mask.iter().map(|m| m.as_str().into()).collect();
            let trace_id = (revision % 2 == 0).then_some(texts[5].as_str());
            let time = jiff::Timestamp::new(seconds, if seconds < 0 { -nanos } else { nanos }).unwrap();
            let entry = Entry { query: &query, decision: &decision, revision, trace_id, time };
            // A stale cached second (one earlier) must be replaced, a matching one reused.
            for cached in [Some((seconds - 1, "stale".to_owned())), None] {
                let mut second = cached;
                let mut out = Vec::new();
                write_line(&mut out, &mut second, time, &entry);
                write_line(&mut out, &mut second, time, &entry);
                let text = String::from_utf8(out).unwrap();
                let lines: Vec<&str> = text.split_terminator('\n').collect();
                prop_assert_eq!(lines.len(), 2, "{}", text);
                prop_assert_eq!(lines[0], lines[1]);
                let parsed: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
                prop_assert_eq!(&parsed, &expected(time, &entry));
                // Keys in the documented order (an unescaped `"key":` only occurs as a key).
                let mut at = 0;
                for key in ["time", "severity", "trace_id", "tenant", "principal", "action", "resource", "kind", "id", "allowed", "reason", "rule", "mask", "revision"] {
                    let found = lines[0][at..].find(&format!("\"{key}\":"));
                    prop_assert!(found.is_some(), "{} missing after byte {} of {}", key, at, lines[0]);
                    at += found.unwrap_or_default() + 1;
                }
            }
        }
    }

    #[test]
    fn numbers_are_written_as_rust_prints_them() {
        for n in [0, 7, 9, 10, 42, 99, 100, 101, 999, 1000, 1_733_324_400_123_456, u64::MAX - 1, u64::MAX] {
            let mut out = Vec::new();
            write_u64(&mut out, n);
            assert_eq!(String::from_utf8(out).unwrap(), n.to_string());
        }
    }

    #[test]
    fn lines_beyond_the_queue_are_dropped_and_counted_and_the_rest_written_whole() {
        let (log, mut writer, sink, _flushes) = log(2);
        for p in ["m1", "m2", "m3", "m4", "m5"] {
            deny(&log, p);
        }
        assert_eq!(log.metrics.log_lines_dropped.load(Ordering::Relaxed), 3);
        writer.write();
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
        assert_eq!(lines.len(), 2, "{out}");
        assert_eq!(lines[0]["principal"], "m1");
        assert_eq!(lines[1]["principal"], "m2");
        assert_eq!(lines[1]["reason"], "NO_GRANT");
        assert_eq!(lines[1]["revision"], 7);
        // Written lines free their place in the queue.
        deny(&log, "m6");
        assert_eq!(log.pending.lock().unwrap().lines, 1);
        assert_eq!(log.metrics.log_lines_dropped.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn logging_reuses_the_buffers_once_they_have_grown() {
        let (log, mut writer, _sink, _flushes) = log(1000);
        let ptr = |log: &DecisionLog| log.pending.lock().unwrap().bytes.as_ptr();
        // Rounds 0 and 1 grow the two buffers; from round 2 on, lines land in a buffer that
        // already has room: filling it never moves it.
        for round in 0..4 {
            let empty = ptr(&log);
            for _ in 0..100 {
                deny(&log, "m1");
            }
            let filled = ptr(&log);
            if round >= 2 {
                assert_eq!(filled, empty, "round {round}: the buffer was reallocated");
            }
            writer.write();
            assert_ne!(ptr(&log), filled, "round {round}: the writer takes the filled buffer and leaves its own");
        }
    }

    #[test]
    fn flush_writes_what_is_pending_and_a_closed_log_stops_the_writer() {
        let (log, mut writer, sink, flushes) = log(10);
        deny(&log, "m1");
        let (ack, done) = mpsc::sync_channel(1);
        log.flush.send(ack).unwrap();
        assert!(writer.run_once(&flushes));
        done.recv().unwrap();
        assert_eq!(String::from_utf8(sink.0.lock().unwrap().clone()).unwrap().lines().count(), 1);
        deny(&log, "m2");
        drop(log);
        assert!(!writer.run_once(&flushes), "every handle is gone");
        assert_eq!(String::from_utf8(sink.0.lock().unwrap().clone()).unwrap().lines().count(), 2);
    }
}
