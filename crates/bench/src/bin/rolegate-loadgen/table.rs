//! The comparison table of one benchmark run: every figure in one table — medians over the
//! repetitions of every (target, workload) cell over TCP and the Unix socket, on one core and on
//! the whole machine, while reloading, and h2load's cross-check — each beside its ratio to the
//! limit (the empty server on the same transport and cores) and to Cerbos; then each target met or
//! missed. Input: the JSON lines of `run` plus the `rss`, `h2load` and `machine` lines that
//! `scripts/bench.sh` adds.

use std::fmt::Write as _;

use serde_json::Value;

const TARGETS: [&str; 3] = ["rolegate", "baseline", "cerbos"];
/// The servers measured over the Unix socket (a sidecar's usual path), beside their TCP rows.
const UNIX: [&str; 2] = ["rolegate-unix", "baseline-unix"];
const WORKLOADS: [&str; 3] = ["check", "batch10", "batch100"];
/// The servers of `scripts/bench.sh`'s paired capacity rounds (phase `capacity`).
const CAPACITY: [&str; 3] = ["rolegate", "baseline", "rolegate-decision-log"];

/// One row of the table: a server on a workload in one phase, and what its ratios compare with.
struct Row {
    workload: &'static str,
    /// The server as the table names it.
    label: &'static str,
    target: &'static str,
    /// The phase of its closed-loop (max) runs; `None` for a row with latency only.
    max_phase: Option<&'static str>,
    /// The phase of its open-loop (rate) runs; `None` for a row with throughput only.
    rate_phase: Option<&'static str>,
    /// The empty server it is compared with (same transport, same cores), if it is not one.
    limit: Option<(&'static str, &'static str)>,
    /// Compared with Cerbos (one core, TCP).
    cerbos: bool,
}

/// Every row, in order.
fn rows() -> Vec<Row> {
    let row = |workload, label, target, max: Option<&'static str>, rate: Option<&'static str>, limit, cerbos| Row {
        workload,
        label,
        target,
        max_phase: max,
        rate_phase: rate,
        limit,
        cerbos,
    };
    let steady = Some("steady");
    let mut rows = Vec::new();
    for w in WORKLOADS {
        rows.push(row(w, "rolegate", "rolegate", steady, steady, Some(("baseline", "steady")), true));
        if w == "check" {
            rows.push(row(
                w,
                "rolegate, decision log at its default",
                "rolegate-decision-log",
                steady,
                steady,
                Some(("baseline", "steady")),
                true,
            ));
            rows.push(row(
                w,
                "rolegate while reloading every 100 ms",
                "rolegate",
                None,
                Some("reload"),
                Some(("baseline", "steady")),
                true,
            ));
        }
        rows.push(row(w, "baseline (the limit)", "baseline", steady, steady, None, false));
        rows.push(row(w, "cerbos", "cerbos", steady, steady, None, false));
        if w == "check" {
            rows.push(row(
                w,
                "rolegate, Unix socket",
                "rolegate-unix",
                steady,
                steady,
                Some(("baseline-unix", "steady")),
                true,
            ));
            rows.push(row(w, "baseline, Unix socket", "baseline-unix", steady, steady, None, false));
        } else {
            let all = Some("allcores");
            rows.push(row(w, "rolegate, all cores", "rolegate", all, None, Some(("baseline", "allcores")), false));
            rows.push(row(w, "baseline, all cores", "baseline", all, None, None, false));
        }
    }
    rows
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 { v[n / 2] } else { (v[n / 2 - 1] + v[n / 2]) / 2.0 })
}

struct Lines(Vec<Value>);

impl Lines {
    fn runs<'a>(
        &'a self,
        target: &'a str,
        workload: &'a str,
        mode: &'a str,
        phase: &'a str,
    ) -> impl Iterator<Item = &'a Value> {
        self.0.iter().filter(move |v| {
            v["kind"] == "run"
                && v["target"] == target
                && v["workload"] == workload
                && v["mode"] == mode
                && v["phase"] == phase
        })
    }

    fn med(
        &self,
        target: &str,
        workload: &str,
        mode: &str,
        phase: &str,
        pick: impl Fn(&Value) -> Option<f64>,
    ) -> Option<f64> {
        median(self.runs(target, workload, mode, phase).filter_map(pick).collect())
    }

    fn max_rate(&self, target: &str, workload: &str) -> Option<f64> {
        self.med(target, workload, "max", "steady", |v| v["decisions_per_s"].as_f64())
    }

    /// The server's CPU per decision in its max runs (µs), when it was measured.
    fn cpu(&self, target: &str, workload: &str, phase: &str) -> Option<f64> {
        self.med(target, workload, "max", phase, |v| v["server_cpu_us_per_decision"].as_f64())
    }

    /// What one core of `target` serves against one core of its limit: the limit's CPU per
    /// decision over the target's, from the same max runs.
    fn capacity(&self, target: &str, limit: &str, workload: &str) -> Option<f64> {
        ratio(self.cpu(limit, workload, "steady"), self.cpu(target, workload, "steady"))
    }

    /// `target` against `limit` repetition by repetition: for each repetition holding a steady
    /// max run of both, the ratio of `field` (the limit's over the target's when `inverse`, for
    /// CPU per decision), in repetition order. The machine's speed drifts by ±10% over tens of
    /// seconds, and a repetition's runs are close together in time, so the median of these
    /// ratios weighs the servers against each other more fairly than a ratio of medians.
    /// With `phase` "capacity", the repetitions are `scripts/bench.sh`'s paired rounds.
    fn paired(&self, target: &str, limit: &str, workload: &str, phase: &str, field: &str, inverse: bool) -> Vec<f64> {
        let value = |t: &str, r: u64| self.run_at(t, workload, "max", phase, r).and_then(|v| v[field].as_f64());
        self.repeats(target, workload, "max", phase)
            .into_iter()
            .filter_map(|r| {
                let (t, l) = (value(target, r), value(limit, r));
                if inverse { ratio(l, t) } else { ratio(t, l) }
            })
            .collect()
    }

    /// The phase whose max Check runs the capacity targets judge: the paired rounds when the run
    /// has them, else the repetitions.
    fn judged_phase(&self) -> &'static str {
        if self.runs("baseline", "check", "max", "capacity").next().is_some() { "capacity" } else { "steady" }
    }

    /// The repetitions holding a run of `target`, in order.
    fn repeats(&self, target: &str, workload: &str, mode: &str, phase: &str) -> Vec<u64> {
        let mut repeats: Vec<u64> =
            self.runs(target, workload, mode, phase).filter_map(|v| v["repeat"].as_u64()).collect();
        repeats.sort_unstable();
        repeats.dedup();
        repeats
    }

    /// The run of `target` in repetition `repeat`.
    fn run_at<'a>(
        &'a self,
        target: &'a str,
        workload: &'a str,
        mode: &'a str,
        phase: &'a str,
        repeat: u64,
    ) -> Option<&'a Value> {
        self.runs(target, workload, mode, phase).find(|v| v["repeat"].as_u64() == Some(repeat))
    }

    fn p(&self, target: &str, workload: &str, phase: &str, q: &str) -> Option<f64> {
        self.med(target, workload, "rate", phase, |v| v["latency_us"][q].as_f64())
    }

    fn of_kind<'a>(&'a self, kind: &'a str, target: &'a str) -> Option<&'a Value> {
        self.0.iter().rfind(|v| v["kind"] == kind && v["target"] == target)
    }
}

fn num(v: Option<f64>) -> String {
    match v {
        None => "–".into(),
        Some(x) if x >= 100.0 => {
            let s = format!("{:.0}", x);
            let mut out = String::new();
            for (i, c) in s.chars().enumerate() {
                if i > 0 && (s.len() - i) % 3 == 0 {
                    out.push(',');
                }
                out.push(c);
            }
            out
        }
        Some(x) => format!("{x:.1}"),
    }
}

fn ratio(a: Option<f64>, b: Option<f64>) -> Option<f64> {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn verdict(ok: Option<bool>) -> &'static str {
    match ok {
        Some(true) => "met",
        Some(false) => "MISSED",
        None => "not measured",
    }
}

/// What makes a run unusable: a failed call, or a server/workload/mode that did not run.
pub fn problems(results: &str) -> Vec<String> {
    let lines = Lines(results.lines().filter_map(|l| serde_json::from_str(l).ok()).collect());
    let mut out = Vec::new();
    for v in lines.0.iter().filter(|v| v["kind"] == "run") {
        if v["errors"].as_u64() != Some(0) || v["calls"].as_u64().unwrap_or(0) == 0 {
            out.push(format!(
                "{} {} {}: {} calls, {} failed ({})",
                v["target"], v["workload"], v["mode"], v["calls"], v["errors"], v["first_error"]
            ));
        }
    }
    for (t, w, mode, phase) in TARGETS
        .iter()
        .flat_map(|t| WORKLOADS.iter().flat_map(move |w| [(*t, *w, "max", "steady"), (*t, *w, "rate", "steady")]))
        .chain([("rolegate", "check", "rate", "reload"), ("rolegate", "check", "rate", "rewrite-elsewhere")])
        .chain([
            ("rolegate-decision-log", "check", "max", "steady"),
            ("rolegate-decision-log", "check", "rate", "steady"),
        ])
        .chain(
            WORKLOADS[1..]
                .iter()
                .flat_map(|w| [("rolegate", *w, "max", "allcores"), ("baseline", *w, "max", "allcores")]),
        )
        .chain(UNIX.iter().flat_map(|t| [(*t, "check", "max", "steady"), (*t, "check", "rate", "steady")]))
        .chain(CAPACITY.iter().map(|t| (*t, "check", "max", "capacity")))
    {
        if lines.runs(t, w, mode, phase).next().is_none() {
            out.push(format!("no {phase} {mode} run of {t} {w}"));
        }
    }
    // The capacity figures need the servers' CPU time over every max run of the check workload.
    for t in ["rolegate", "rolegate-decision-log", "baseline", "rolegate-unix", "baseline-unix"] {
        if lines
            .runs(t, "check", "max", "steady")
            .chain(lines.runs(t, "check", "max", "capacity"))
            .any(|v| v["server_cpu_us_per_decision"].as_f64().is_none())
        {
            out.push(format!("a max check run of {t} has no server CPU time (was --server-pid given?)"));
        }
    }
    for t in TARGETS {
        match lines.of_kind("h2load", t) {
            None => out.push(format!("no h2load run of {t}")),
            Some(h) if h["failed"].as_u64() != Some(0) || h["succeeded"].as_u64() == Some(0) => {
                out.push(format!("h2load against {t}: {} succeeded, {} failed", h["succeeded"], h["failed"]))
            }
            Some(_) => {}
        }
    }
    out
}

/// Renders the table and the targets as Markdown.
pub fn render(results: &str) -> String {
    let lines = Lines(results.lines().filter_map(|l| serde_json::from_str(l).ok()).collect());
    let mut o = String::new();
    let quick = machine(&mut o, &lines);
    table(&mut o, &lines);
    o.push('\n');
    notes(&mut o, &lines);
    o.push_str("\nTargets:\n");
    targets(&mut o, &lines, quick);
    o
}

/// The machine line, and the warning for a quick run; true for a quick run.
fn machine(o: &mut String, lines: &Lines) -> bool {
    if let Some(m) = lines.0.iter().rfind(|v| v["kind"] == "machine") {
        let _ = writeln!(
            o,
            "Machine: {} ({} cores); servers on CPU {}, load generator on CPU {}; {}; {}.\n",
            m["cpu"].as_str().unwrap_or("?"),
            m["nproc"],
            m["server_cpus"].as_str().unwrap_or("?"),
            m["client_cpus"].as_str().unwrap_or("?"),
            m["repeats"].as_str().map_or(String::new(), |r| format!("median of {r} interleaved repetitions")),
            m["commit"].as_str().unwrap_or("?")
        );
    }
    let quick = lines.0.iter().any(|v| v["kind"] == "machine" && v["quick"] == 1);
    if quick {
        o.push_str("Quick run (debug build, seconds per step): it proves the harness works; its numbers are not measurements.\n\n");
    }
    quick
}

fn times(x: Option<f64>) -> String {
    x.map_or("–".into(), |x| format!("{x:.2}×"))
}

/// The table: one row per workload, server and phase that ran, then h2load's rows.
fn table(o: &mut String, lines: &Lines) {
    let rate_of = |w: &str| {
        lines
            .0
            .iter()
            .find(|v| v["kind"] == "run" && v["workload"] == w && v["mode"] == "rate")
            .and_then(|v| v["rate"].as_f64())
    };
    o.push_str(
        "| workload | server | max calls/s | max decisions/s | × limit | server CPU µs/decision | capacity × limit \
         | × Cerbos | rate (calls/s) | p50 µs | p99 µs | p99.9 µs | p99 × limit | p99 × Cerbos | peak RSS MiB | errors |\n",
    );
    o.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for r in rows() {
        let w = r.workload;
        let ran = |phase: Option<&str>, mode| phase.is_some_and(|p| lines.runs(r.target, w, mode, p).next().is_some());
        if !ran(r.max_phase, "max") && !ran(r.rate_phase, "rate") {
            continue;
        }
        let max = |t: &str, phase: &str, field: &str| lines.med(t, w, "max", phase, |v| v[field].as_f64());
        let p = |t: &str, phase: &str, q: &str| lines.p(t, w, phase, q);
        let (calls, decisions) = match r.max_phase {
            Some(ph) => (max(r.target, ph, "calls_per_s"), max(r.target, ph, "decisions_per_s")),
            None => (None, None),
        };
        let q = |q: &str| r.rate_phase.and_then(|ph| p(r.target, ph, q));
        let limit_max = r.limit.and_then(|(t, ph)| max(t, ph, "decisions_per_s"));
        let cpu = r.max_phase.and_then(|ph| max(r.target, ph, "server_cpu_us_per_decision"));
        let limit_cpu = r.limit.and_then(|(t, ph)| max(t, ph, "server_cpu_us_per_decision"));
        let limit_p99 = r.limit.and_then(|(t, _)| p(t, "steady", "p99"));
        let cerbos = |v: Option<f64>, f: &dyn Fn() -> Option<f64>| if r.cerbos { ratio(v, f()) } else { None };
        // The RSS of the one-core servers; the Unix-socket and all-cores servers are others.
        let rss = match r.max_phase.or(r.rate_phase) {
            Some("steady" | "reload") => {
                lines.of_kind("rss", r.target).and_then(|v| v["hwm_kib"].as_f64()).map(|k| k / 1024.0)
            }
            _ => None,
        };
        let errors: u64 = lines
            .0
            .iter()
            .filter(|v| v["kind"] == "run" && v["target"] == r.target && v["workload"] == w)
            .filter(|v| [r.max_phase, r.rate_phase].contains(&v["phase"].as_str()))
            .filter_map(|v| v["errors"].as_u64())
            .sum();
        let _ = writeln!(
            o,
            "| {w} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            r.label,
            num(calls),
            num(decisions),
            times(ratio(decisions, limit_max)),
            cpu.map_or("–".into(), |c| format!("{c:.2}")),
            times(ratio(limit_cpu, cpu)),
            times(cerbos(decisions, &|| max("cerbos", "steady", "decisions_per_s"))),
            num(r.rate_phase.and(rate_of(w))),
            num(q("p50")),
            num(q("p99")),
            num(q("p999")),
            times(ratio(q("p99"), limit_p99)),
            times(cerbos(q("p99"), &|| p("cerbos", "steady", "p99"))),
            num(rss),
            errors
        );
    }
    let h2 = |t: &str| lines.of_kind("h2load", t).and_then(|h| h["rps"].as_f64());
    for t in TARGETS {
        if let Some(h) = lines.of_kind("h2load", t) {
            let (limit, cerbos) =
                if t == "rolegate" { (ratio(h2(t), h2("baseline")), ratio(h2(t), h2("cerbos"))) } else { (None, None) };
            let _ = writeln!(
                o,
                "| check, h2load {} | {t} | {} | {} | {} | – | – | {} | – | mean {} | – | – | – | – | – | {} |",
                h["shape"].as_str().unwrap_or(""),
                num(h["rps"].as_f64()),
                num(h["rps"].as_f64()),
                times(limit),
                times(cerbos),
                num(h["mean_us"].as_f64()),
                h["failed"]
            );
        }
    }
}

/// What the table's rows mean together: the Unix socket against TCP, and the reloads seen.
fn notes(o: &mut String, lines: &Lines) {
    let max = |t: &str| lines.max_rate(t, "check");
    let p = |t: &str, q: &str| lines.p(t, "check", "steady", q);
    for (unix, tcp) in [("rolegate-unix", "rolegate"), ("baseline-unix", "baseline")] {
        if max(unix).is_none() {
            continue;
        }
        let _ = writeln!(
            o,
            "- {tcp} over the Unix socket against TCP (check): max throughput {}, server CPU per decision {} \
             (capacity {}), p50 {} µs vs {} µs, p99 {} µs vs {} µs",
            times(ratio(max(unix), max(tcp))),
            ratio(lines.cpu(unix, "check", "steady"), lines.cpu(tcp, "check", "steady"))
                .map_or("–".into(), |x| format!("{x:.2}×")),
            times(lines.capacity(unix, tcp, "check")),
            num(p(unix, "p50")),
            num(p(tcp, "p50")),
            num(p(unix, "p99")),
            num(p(tcp, "p99")),
        );
    }
    let busy = |t: &str, field: &str| lines.med(t, "check", "max", "steady", |v| v[field].as_f64());
    if let (Some(base), Some(rg)) = (busy("baseline", "client_busy"), busy("rolegate", "client_busy")) {
        let _ = writeln!(
            o,
            "- check at max, TCP: the load generator was {:.0}% busy on its core against the empty server ({:.0}% for the \
             server) and {:.0}% against rolegate ({:.0}% for the server); a load generator near 100% sets the pace, so \
             max calls/s can understate a server, and the server's CPU per decision (capacity × limit) says what one \
             core of it serves",
            base * 100.0,
            busy("baseline", "server_busy").unwrap_or(0.0) * 100.0,
            rg * 100.0,
            busy("rolegate", "server_busy").unwrap_or(0.0) * 100.0,
        );
    }
    let judged = lines.judged_phase();
    for t in ["rolegate", "rolegate-decision-log"] {
        for (phase, how) in [("steady", "repetition by repetition"), ("capacity", "paired round by round")] {
            let (cpu, rate) = (
                lines.paired(t, "baseline", "check", phase, CPU, true),
                lines.paired(t, "baseline", "check", phase, RATE, false),
            );
            if cpu.is_empty() && rate.is_empty() {
                continue;
            }
            let list = |v: &[f64]| v.iter().map(|x| format!("{x:.2}")).collect::<Vec<_>>().join(", ");
            let _ = writeln!(
                o,
                "- {t} against the limit, check at max, {how}: capacity {} (median {}), throughput {} (median {}){}",
                list(&cpu),
                times(median(cpu.clone())),
                list(&rate),
                times(median(rate.clone())),
                if phase == judged { "; the targets take these medians" } else { "" },
            );
        }
    }
    let (steady, reload) = reload_p99(lines);
    if let Some(rl) = lines.runs("rolegate", "check", "rate", "reload").last() {
        let _ = writeln!(
            o,
            "- reload: check at {} calls/s, p99 {} µs while the policy directory is rewritten every 100 ms vs {} µs steady \
             ({}; revisions {}..{} seen)",
            num(rl["rate"].as_f64()),
            num(reload),
            num(steady),
            times(ratio(reload, steady)),
            rl["revision_min"],
            rl["revision_max"]
        );
    }
    let pairs = reload_pairs(lines);
    if !pairs.is_empty() {
        let list = pairs.iter().map(|(x, lag)| format!("{x:.2}× (pacer lag p99 {lag:.0} µs)")).collect::<Vec<_>>();
        let _ = writeln!(
            o,
            "- reload, repetition by repetition (reloading p99 over the steady run's just before it): {}; median {}",
            list.join(", "),
            times(median(pairs.iter().map(|(x, _)| *x).collect())),
        );
    }
    let control = lines.p("rolegate", "check", "rewrite-elsewhere", "p99");
    if control.is_some() {
        let _ = writeln!(
            o,
            "- reload control: p99 {} µs while the same rewriter replaces a file outside the policy directory (no \
             reload; {} of steady): the share of the reload figure that is the rewriter's own CPU",
            num(control),
            times(ratio(control, steady)),
        );
    }
}

/// rolegate's Check p99 at the reload rate, steady (the control runs right before each reloading
/// run, else the plain steady runs) and while reloading.
fn reload_p99(lines: &Lines) -> (Option<f64>, Option<f64>) {
    let steady = lines.p("rolegate", "check", "steady-reload", "p99").or(lines.p("rolegate", "check", "steady", "p99"));
    (steady, lines.p("rolegate", "check", "reload", "p99"))
}

/// Per repetition, the reloading run's p99 over the steady run's just before it, and the worst
/// pacer lag (p99, µs) of the two: a load generator that fell behind its schedule by milliseconds
/// was not given its core, and the latencies of that repetition say more of the machine than of
/// the server.
fn reload_pairs(lines: &Lines) -> Vec<(f64, f64)> {
    let run = |phase: &str, r: u64| {
        let v = lines.run_at("rolegate", "check", "rate", phase, r)?;
        Some((v["latency_us"]["p99"].as_f64()?, v["pacer_lag_p99_us"].as_f64().unwrap_or(0.0)))
    };
    (lines.repeats("rolegate", "check", "rate", "reload").into_iter())
        .filter_map(|r| {
            let ((steady, lag_s), (reload, lag_r)) = (run("steady-reload", r)?, run("reload", r)?);
            Some((reload / steady, lag_s.max(lag_r)))
        })
        .collect()
}

/// The fields the paired ratios compare.
const CPU: &str = "server_cpu_us_per_decision";
const RATE: &str = "decisions_per_s";
/// The pacer lag (p99) above which a repetition's latencies are the machine's, not the server's.
const MAX_PACER_LAG_US: f64 = 1000.0;

/// Each target, met or missed (never judged on a quick run).
fn targets(o: &mut String, lines: &Lines, quick: bool) {
    let (r, c) = (lines.max_rate("rolegate", "check"), lines.max_rate("cerbos", "check"));
    let (pr, pb, pc) = (
        lines.p("rolegate", "check", "steady", "p99"),
        lines.p("baseline", "check", "steady", "p99"),
        lines.p("cerbos", "check", "steady", "p99"),
    );
    let batch = WORKLOADS[1..]
        .iter()
        .flat_map(|w| {
            [
                lines.max_rate("rolegate", w),
                lines.med("rolegate", w, "max", "allcores", |v| v["decisions_per_s"].as_f64()),
            ]
        })
        .flatten()
        .reduce(f64::max);
    let judged = lines.judged_phase();
    let over = if judged == "capacity" { "paired rounds" } else { "repetitions" };
    let capacity = |t: &str, field: &str, inverse: bool| {
        median(lines.paired(t, "baseline", "check", judged, field, inverse)).map(|x| x >= 0.9)
    };
    let mut targets = Vec::new();
    for (t, label) in [("rolegate-decision-log", "decision log at its default"), ("rolegate", "decision log off")] {
        targets.push((
            format!(
                "rolegate, {label}, ≥ 0.9× the empty server's Check capacity (server CPU per decision, median of the \
                 {over}' ratios)"
            ),
            capacity(t, CPU, true),
        ));
    }
    for (t, label) in [("rolegate-decision-log", "decision log at its default"), ("rolegate", "decision log off")] {
        targets.push((
            format!("rolegate, {label}, ≥ 0.9× the empty server's max Check throughput (median of the {over}' ratios)"),
            capacity(t, RATE, false),
        ));
    }
    targets.extend([
        ("rolegate p99 at the moderate rate ≤ 1.5× the empty server's".to_owned(), ratio(pr, pb).map(|x| x <= 1.5)),
        ("rolegate ≥ 10× Cerbos' Check throughput".to_owned(), ratio(r, c).map(|x| x >= 10.0)),
        ("rolegate p99 ≤ 1/10 of Cerbos' p99 at the same rate".to_owned(), ratio(pr, pc).map(|x| x <= 0.1)),
        ("CheckBatch ≥ 1,000,000 decisions/s on the whole machine".to_owned(), batch.map(|x| x >= 1_000_000.0)),
    ]);
    for (what, ok) in targets {
        let _ = writeln!(o, "- {what}: {}", if quick { "not judged on a quick run" } else { verdict(ok) });
    }
    let pairs = reload_pairs(lines);
    let worst_lag = pairs.iter().map(|(_, lag)| *lag).fold(0.0, f64::max);
    let reload = median(pairs.iter().map(|(x, _)| *x).collect()).map(|x| x <= 2.0);
    let _ = writeln!(
        o,
        "- p99 while reloading every 100 ms ≤ 2× steady (median of the repetitions' ratios): {}",
        if quick {
            "not judged on a quick run".to_owned()
        } else if worst_lag > MAX_PACER_LAG_US {
            format!(
                "not judged: the load generator fell {worst_lag:.0} µs behind its schedule (p99) in a reload \
                 repetition, over the {MAX_PACER_LAG_US:.0} µs a quiet machine allows; run again on a quiet machine"
            )
        } else {
            verdict(reload).to_owned()
        }
    );
}
