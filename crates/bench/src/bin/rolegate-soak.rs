//! The soak: a real `rolegate serve` at about half its maximum Check rate for a set time, while
//! its policy directory is rewritten every second, valid and broken documents in turn, and the
//! decision log writes every decision to a file. Every answer is compared with the local engine
//! on the document that produced it; errors, wrong answers, p99 latency, resident memory and open
//! file descriptors are printed per window. Exits 1 on any error or wrong answer.
//!
//! Each valid document is a generation `N`: `rep`'s binding is `gN`, and on odd generations a
//! deny rule `gN-deny` forbids the reply. The deciding rule in an answer names its generation, so
//! the answer can be recomputed locally on exactly that document, whichever reload the server had
//! reached. Broken documents (an unknown action) must change nothing.
//!
//! ```text
//! rolegate-soak --rolegate target/release/rolegate --seconds 1800 --window 60
//! ```

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use hdrhistogram::Histogram;
use rolegate::api::{self, attr_value::Kind};
use rolegate::engine::{Attrs, Context, Query, Resource, Value};

#[derive(Parser)]
struct Args {
    /// The rolegate binary.
    #[arg(long, default_value = "target/release/rolegate")]
    rolegate: PathBuf,
    /// How long to soak, in seconds.
    #[arg(long, default_value_t = 60)]
    seconds: u64,
    /// Seconds per reported window.
    #[arg(long, default_value_t = 10)]
    window: u64,
    /// Concurrent callers.
    #[arg(long, default_value_t = 8)]
    callers: usize,
    /// Working directory (policies, decision log); a temporary one by default.
    #[arg(long)]
    work: Option<PathBuf>,
}

/// Generation `n` of tenant `desk`.
fn valid(n: u64) -> String {
    let deny = if n % 2 == 1 {
        format!("rules: [{{id: g{n}-deny, effect: deny, actions: [conversation.reply]}}]\n")
    } else {
        String::new()
    };
    format!(
        "tenant: desk\nschema: {{conversation: [view, reply]}}\nroles: {{agent: {{allow: [conversation.view, conversation.reply]}}}}\n\
         members:\n  - {{id: rep, bindings: [{{id: g{n}, role: agent, scope: {{relation: assignee}}}}]}}\n{deny}"
    )
}

/// A document the loader refuses: the last good generation stays served.
const BROKEN: &str =
    "tenant: desk\nschema: {conversation: [view, reply]}\nroles: {agent: {allow: [conversation.replay]}}\n";

/// Replaces `dir/desk.yaml` at once, as a ConfigMap update does.
fn publish(dir: &Path, text: &str) -> anyhow::Result<()> {
    let tmp = dir.with_extension("tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, dir.join("desk.yaml"))?;
    Ok(())
}

/// An answer: allowed, wire reason, deciding rule.
type Answer = (bool, i32, String);

/// The local engine's answer on each generation published so far.
type Expectations = HashMap<u64, Answer>;

/// The answer the local engine gives on generation `n`: (allowed, reason, rule).
fn expected(n: u64) -> anyhow::Result<Answer> {
    let (doc, diags) = rolegate::policy::parse_str("desk.yaml", &valid(n), None);
    let doc = doc.with_context(|| format!("generation {n} does not parse: {diags:?}"))?;
    let tenant = rolegate::policy::compile(&doc, None, 1).map_err(|d| anyhow::anyhow!("generation {n}: {d:?}"))?;
    let resource = Resource {
        kind: "conversation".into(),
        id: "c-1".into(),
        unit: String::new(),
        attrs: Attrs(vec![("assignee".into(), Value::Text("rep".into()))]),
    };
    let context = Context::default();
    let q = Query {
        tenant: "desk",
        principal: "rep",
        action: "conversation.reply",
        resource: &resource,
        context: &context,
    };
    let d = tenant.decide(&q, jiff::Timestamp::now()).map_err(|e| anyhow::anyhow!("{e}"))?;
    Ok((d.allowed, api::convert::reason(d.reason) as i32, d.rule.as_deref().unwrap_or_default().to_owned()))
}

fn request() -> api::CheckRequest {
    api::CheckRequest {
        tenant: "desk".into(),
        principal: "rep".into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text("rep".into())) })].into(),
        }),
        context: None,
        min_revision: 0,
    }
}

/// The generation an answer's deciding rule names.
fn generation(rule: &str) -> Option<u64> {
    rule.strip_prefix('g')?.trim_end_matches("-deny").parse().ok()
}

#[derive(Default)]
struct Window {
    calls: u64,
    errors: u64,
    wrong: u64,
    latency: Option<Histogram<u64>>,
    first_error: Option<String>,
}

fn start_server(args: &Args, dir: &Path, log: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(&args.rolegate)
        .args(["serve", "--policies"])
        .arg(dir)
        .args(["--listen", "127.0.0.1:0", "--reload-debounce", "50ms", "--reload-poll", "500ms"])
        .arg("--decision-log")
        .arg(log)
        .args(["--decision-log-allow-rate", "1"])
        .env("ROLEGATE_LOG", "warn,rolegate_server=info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot start {}", args.rolegate.display()))?;
    let stderr = child.stderr.take().context("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("panicked") {
                eprintln!("[server] {line}");
            }
            let _ = tx.send(line);
        }
    });
    let (mut addr, mut ready) = (None, false);
    while addr.is_none() || !ready {
        let line = rx.recv_timeout(Duration::from_secs(30)).context("the server did not start")?;
        ready |= line.contains("policy snapshot loaded");
        if let Some(rest) = line.split("listening on ").nth(1) {
            addr = Some(rest.trim().to_owned());
        }
    }
    // Keep draining the server's log so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    Ok((child, addr.unwrap_or_default()))
}

fn rss_mib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines().find_map(|l| l.strip_prefix("VmRSS:")).and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .unwrap_or(0)
        / 1024
}

fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, Iterator::count)
}

/// Closed-loop calls from `callers` tasks for `for_`: the answers per second.
async fn max_rate(addr: &str, callers: usize, for_: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let until = Instant::now() + for_;
    for _ in 0..callers {
        let mut client = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(addr).await?);
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            while Instant::now() < until {
                if client.check(request()).await.is_ok() {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    Ok(done.load(Ordering::Relaxed) as f64 / for_.as_secs_f64())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tmp = std::env::temp_dir().join(format!("rolegate-soak-{}", std::process::id()));
    let work = args.work.clone().unwrap_or(tmp);
    let dir = work.join("policies");
    std::fs::create_dir_all(&dir)?;
    publish(&dir, &valid(0))?;
    let log = work.join("decisions.log");
    let (mut server, addr) = start_server(&args, &dir, &log)?;
    let pid = server.id();

    let max = max_rate(&addr, args.callers, Duration::from_secs(3)).await?;
    let target = (max / 2.0).max(1.0);
    println!(
        "soak: {} s at {target:.0} checks/s (half of the {max:.0}/s measured), policy rewritten every second",
        args.seconds
    );

    let expectations: Arc<Mutex<Expectations>> = Arc::default();
    expectations.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(0, expected(0)?);
    let stop = Arc::new(AtomicBool::new(false));

    // The writer: valid generation, broken document, next generation, ...
    let writer = {
        let (dir, stop, expectations) = (dir.clone(), stop.clone(), expectations.clone());
        tokio::spawn(async move {
            let mut n = 0;
            let mut tick = tokio::time::interval(Duration::from_secs(1));
            let mut step = 0u64;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                step += 1;
                let result = if step % 2 == 1 {
                    publish(&dir, BROKEN)
                } else {
                    n += 1;
                    // Known before the file exists, so no answer can come first.
                    match expected(n) {
                        Ok(e) => {
                            if let Ok(mut m) = expectations.lock() {
                                m.insert(n, e);
                            }
                            publish(&dir, &valid(n))
                        }
                        Err(e) => Err(e),
                    }
                };
                if let Err(e) = result {
                    eprintln!("soak: writing the policy failed: {e}");
                }
            }
            n
        })
    };

    let window = Arc::new(Mutex::new(Window::default()));
    let mut callers = Vec::new();
    let per_caller = Duration::from_secs_f64(args.callers as f64 / target);
    for _ in 0..args.callers {
        let mut client = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(&addr).await?);
        let (stop, window, expectations) = (stop.clone(), window.clone(), expectations.clone());
        callers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_caller);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                let started = Instant::now();
                let answer = client.check(request()).await;
                let micros = started.elapsed().as_micros() as u64;
                let verdict = match answer {
                    Err(e) => Err(format!("{:?}: {}", e.code(), e.message())),
                    Ok(r) => {
                        let d = r.into_inner().decision.unwrap_or_default();
                        let want = generation(&d.rule).and_then(|n| expectations.lock().ok()?.get(&n).cloned());
                        match want {
                            Some(w) if w == (d.allowed, d.reason, d.rule.clone()) => Ok(true),
                            _ => Ok(false),
                        }
                    }
                };
                let Ok(mut w) = window.lock() else { return };
                w.calls += 1;
                match verdict {
                    Ok(true) => {}
                    Ok(false) => w.wrong += 1,
                    Err(e) => {
                        w.errors += 1;
                        w.first_error.get_or_insert(e);
                    }
                }
                let h = w.latency.get_or_insert_with(|| Histogram::new(3).expect("a histogram with 3 digits"));
                let _ = h.record(micros.max(1));
            }
        }));
    }

    println!(
        "{:>6} {:>8} {:>6} {:>6} {:>9} {:>8} {:>5}",
        "t(s)", "calls", "errors", "wrong", "p99(us)", "RSS(MiB)", "fds"
    );
    let started = Instant::now();
    let (mut errors, mut wrong, mut calls) = (0, 0, 0);
    let mut rss = Vec::new();
    while started.elapsed() < Duration::from_secs(args.seconds) {
        tokio::time::sleep(
            Duration::from_secs(args.window).min(Duration::from_secs(args.seconds).saturating_sub(started.elapsed())),
        )
        .await;
        let w = std::mem::take(&mut *window.lock().map_err(|_| anyhow::anyhow!("poisoned"))?);
        let p99 = w.latency.as_ref().map_or(0, |h| h.value_at_quantile(0.99));
        let mem = rss_mib(pid);
        rss.push(mem);
        println!(
            "{:>6} {:>8} {:>6} {:>6} {:>9} {:>8} {:>5}",
            started.elapsed().as_secs(),
            w.calls,
            w.errors,
            w.wrong,
            p99,
            mem,
            fds(pid)
        );
        if let Some(e) = w.first_error {
            println!("       first error: {e}");
        }
        (errors, wrong, calls) = (errors + w.errors, wrong + w.wrong, calls + w.calls);
        if server.try_wait()?.is_some() {
            bail!("the server exited during the soak");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let generations = writer.await?;
    for c in callers {
        c.await?;
    }
    let logged = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    let _ = server.kill();
    let _ = server.wait();
    let warm = rss.get(rss.len() / 4).copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    println!(
        "soak: {calls} calls, {errors} errors, {wrong} wrong answers, {generations} valid generations and as many broken documents, \
         {logged} decision-log lines, RSS {warm} MiB after warm-up and {last} MiB at the end"
    );
    if errors > 0 || wrong > 0 {
        bail!("{errors} errors and {wrong} wrong answers");
    }
    if args.work.is_none() {
        let _ = std::fs::remove_dir_all(&work);
    }
    Ok(())
}
