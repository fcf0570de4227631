//! The comparison table of one benchmark run: medians over the repetitions of every
//! (target, workload) cell, the ratios rolegate/limit and rolegate/Cerbos, and each target met or
//! missed. Input: the JSON lines of `run` plus the `rss`, `h2load` and `machine` lines that
//! `scripts/bench.sh` adds.

use std::fmt::Write as _;

use serde_json::Value;

const TARGETS: [&str; 3] = ["rolegate", "baseline", "cerbos"];
/// Rows of the table: the targets, plus rolegate with its default decision log on.
const ROWS: [&str; 4] = ["rolegate", "rolegate-decision-log", "baseline", "cerbos"];
const WORKLOADS: [&str; 3] = ["check", "batch10", "batch100"];

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

    fn p(&self, target: &str, workload: &str, phase: &str, q: &str) -> Option<f64> {
        self.med(target, workload, "rate", phase, |v| v["latency_us"][q].as_f64())
    }

    fn errors(&self, target: &str, workload: &str) -> u64 {
        self.0
            .iter()
            .filter(|v| v["kind"] == "run" && v["target"] == target && v["workload"] == workload)
            .filter_map(|v| v["errors"].as_u64())
            .sum()
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
        .chain([("rolegate", "check", "rate", "reload")])
        .chain([
            ("rolegate-decision-log", "check", "max", "steady"),
            ("rolegate-decision-log", "check", "rate", "steady"),
        ])
        .chain(
            WORKLOADS[1..]
                .iter()
                .flat_map(|w| [("rolegate", *w, "max", "allcores"), ("baseline", *w, "max", "allcores")]),
        )
    {
        if lines.runs(t, w, mode, phase).next().is_none() {
            out.push(format!("no {phase} {mode} run of {t} {w}"));
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
    ratios(&mut o, &lines);
    decision_log_and_all_cores(&mut o, &lines);
    reload_and_h2load(&mut o, &lines);
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

/// The table: one row per workload and server that ran.
fn table(o: &mut String, lines: &Lines) {
    let rate_of = |w: &str| {
        lines
            .0
            .iter()
            .find(|v| v["kind"] == "run" && v["workload"] == w && v["mode"] == "rate")
            .and_then(|v| v["rate"].as_f64())
    };
    o.push_str("| workload | server | max calls/s | max decisions/s | rate (calls/s) | p50 µs | p99 µs | p99.9 µs | peak RSS MiB | errors |\n");
    o.push_str("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|\n");
    for w in WORKLOADS {
        for t in ROWS {
            if lines.runs(t, w, "max", "steady").next().is_none() && lines.runs(t, w, "rate", "steady").next().is_none()
            {
                continue;
            }
            let calls = lines.med(t, w, "max", "steady", |v| v["calls_per_s"].as_f64());
            let rss = lines.of_kind("rss", t).and_then(|v| v["hwm_kib"].as_f64()).map(|k| k / 1024.0);
            let _ = writeln!(
                o,
                "| {w} | {t} | {} | {} | {} | {} | {} | {} | {} | {} |",
                num(calls),
                num(lines.max_rate(t, w)),
                num(rate_of(w)),
                num(lines.p(t, w, "steady", "p50")),
                num(lines.p(t, w, "steady", "p99")),
                num(lines.p(t, w, "steady", "p999")),
                num(rss),
                lines.errors(t, w)
            );
        }
    }
}

/// Per workload: rolegate against the empty server and against Cerbos.
fn ratios(o: &mut String, lines: &Lines) {
    for w in WORKLOADS {
        let (r, b, c) = (lines.max_rate("rolegate", w), lines.max_rate("baseline", w), lines.max_rate("cerbos", w));
        let (pr, pb, pc) = (
            lines.p("rolegate", w, "steady", "p99"),
            lines.p("baseline", w, "steady", "p99"),
            lines.p("cerbos", w, "steady", "p99"),
        );
        if r.is_none() && pr.is_none() {
            continue;
        }
        let pct = |x: Option<f64>| x.map_or("–".into(), |x| format!("{:.0}%", 100.0 * x));
        let times = |x: Option<f64>| x.map_or("–".into(), |x| format!("{x:.2}×"));
        let _ = writeln!(
            o,
            "- {w}: rolegate/limit throughput {}, p99 {}; rolegate/Cerbos throughput {}, p99 {}",
            pct(ratio(r, b)),
            times(ratio(pr, pb)),
            times(ratio(r, c)),
            times(ratio(pr, pc))
        );
    }
}

/// The decision-log control runs and the all-cores batch runs against the empty server.
fn decision_log_and_all_cores(o: &mut String, lines: &Lines) {
    let logged = lines.max_rate("rolegate-decision-log", "check");
    if logged.is_some() {
        let b = lines.max_rate("baseline", "check");
        let _ = writeln!(
            o,
            "- check with rolegate's default decision log on (every deny a JSON line): rolegate/limit throughput {}, p99 {}",
            ratio(logged, b).map_or("–".into(), |x| format!("{:.0}%", 100.0 * x)),
            ratio(
                lines.p("rolegate-decision-log", "check", "steady", "p99"),
                lines.p("baseline", "check", "steady", "p99")
            )
            .map_or("–".into(), |x| format!("{x:.2}×"))
        );
    }
    for w in &WORKLOADS[1..] {
        let (r, b) = (
            lines.med("rolegate", w, "max", "allcores", |v| v["decisions_per_s"].as_f64()),
            lines.med("baseline", w, "max", "allcores", |v| v["decisions_per_s"].as_f64()),
        );
        if r.is_some() {
            let _ = writeln!(
                o,
                "- {w} on all cores (servers unpinned, load generator sharing the cores): rolegate {} decisions/s, empty server {} ({})",
                num(r),
                num(b),
                ratio(r, b).map_or("–".into(), |x| format!("{:.0}%", 100.0 * x))
            );
        }
    }
}

/// Latency while reloading, and the h2load cross-check.
fn reload_and_h2load(o: &mut String, lines: &Lines) {
    let (steady, reload) = reload_p99(lines);
    if let Some(rl) = lines.runs("rolegate", "check", "rate", "reload").last() {
        let _ = writeln!(
            o,
            "- reload: check at {} calls/s, p99 steady {} µs vs {} µs while the policy directory is rewritten every 100 ms (revisions {}..{} seen)",
            num(rl["rate"].as_f64()),
            num(steady),
            num(reload),
            rl["revision_min"],
            rl["revision_max"]
        );
    }
    for t in TARGETS {
        if let Some(h) = lines.of_kind("h2load", t) {
            let _ = writeln!(
                o,
                "- h2load {} (Check, one request body, {}): {} req/s, mean {} µs, {} failed",
                t,
                h["shape"].as_str().unwrap_or(""),
                num(h["rps"].as_f64()),
                num(h["mean_us"].as_f64()),
                h["failed"]
            );
        }
    }
    let h2 = |t: &str| lines.of_kind("h2load", t).and_then(|h| h["rps"].as_f64());
    if let Some(x) = ratio(h2("rolegate"), h2("baseline")) {
        let _ = writeln!(o, "- h2load rolegate/limit: {:.0}%", 100.0 * x);
    }
}

/// rolegate's Check p99 at the reload rate, steady (the control runs right before each reloading
/// run, else the plain steady runs) and while reloading.
fn reload_p99(lines: &Lines) -> (Option<f64>, Option<f64>) {
    let steady = lines.p("rolegate", "check", "steady-reload", "p99").or(lines.p("rolegate", "check", "steady", "p99"));
    (steady, lines.p("rolegate", "check", "reload", "p99"))
}

/// Each target, met or missed (never judged on a quick run).
fn targets(o: &mut String, lines: &Lines, quick: bool) {
    let (r, b, c) =
        (lines.max_rate("rolegate", "check"), lines.max_rate("baseline", "check"), lines.max_rate("cerbos", "check"));
    let (pr, pb, pc) = (
        lines.p("rolegate", "check", "steady", "p99"),
        lines.p("baseline", "check", "steady", "p99"),
        lines.p("cerbos", "check", "steady", "p99"),
    );
    let (steady, reload) = reload_p99(lines);
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
    let targets = [
        ("rolegate ≥ 90% of the empty server's max Check throughput", ratio(r, b).map(|x| x >= 0.9)),
        ("rolegate p99 at the moderate rate ≤ 1.5× the empty server's", ratio(pr, pb).map(|x| x <= 1.5)),
        ("rolegate ≥ 10× Cerbos' Check throughput", ratio(r, c).map(|x| x >= 10.0)),
        ("rolegate p99 ≤ 1/10 of Cerbos' p99 at the same rate", ratio(pr, pc).map(|x| x <= 0.1)),
        ("CheckBatch ≥ 1,000,000 decisions/s on the whole machine", batch.map(|x| x >= 1_000_000.0)),
        ("p99 while reloading every 100 ms ≤ 2× steady", ratio(reload, steady).map(|x| x <= 2.0)),
    ];
    for (what, ok) in targets {
        let _ = writeln!(o, "- {what}: {}", if quick { "not judged on a quick run" } else { verdict(ok) });
    }
}
