//! The soak: a real `rolegate serve` at about half its maximum Check rate for a set time, while
//! its policies change every second and the decision log writes every decision to a file. Every
//! answer is compared with the local engine on the policy that produced it; errors, wrong answers,
//! p99 latency, resident memory and open file descriptors are printed per window. Exits 1 on any
//! error or wrong answer.
//!
//! `--source dir` (the default): the policy directory's tenant document is rewritten every
//! second, valid and broken documents in turn. Each valid document is a generation `N`: `rep`'s
//! binding is `gN`, and on odd generations a deny rule `gN-deny` forbids the reply. The deciding
//! rule in an answer names its generation, so the answer can be recomputed locally on exactly
//! that document, whichever reload the server had reached. Broken documents (an unknown action)
//! must change nothing.
//!
//! `--source pg --dsn DSN`: a fresh database `rolegate_soak` on that server, migrated, serves
//! tenant `desk` with five members; a writer commits one or two row changes every second
//! (a member suspended or restored, a binding added or removed). Before each commit it reads the
//! revision the transaction will publish and compiles the tenant it describes from its own model
//! of the rows, so every answer is judged on exactly the revision the server reports. Callers
//! ask every member about conversations assigned to each member; one call in four passes the
//! last committed revision as `min_revision`, which the answer must not be older than.
//!
//! ```text
//! rolegate-soak --rolegate target/release/rolegate --seconds 1800 --window 60
//! rolegate-soak --rolegate target/release/rolegate --source pg --dsn postgres://postgres@127.0.0.1:54329/postgres
//! ```

use std::collections::HashMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;
use rolegate::api::{self, attr_value::Kind};
use rolegate::engine::{Attrs, Context, Query, Resource, Tenant, Value};

#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Source {
    /// A policy directory, its document rewritten every second.
    Dir,
    /// PostgreSQL rows, changed every second.
    Pg,
}

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
    /// Where the policies come from.
    #[arg(long, value_enum, default_value_t = Source::Dir)]
    source: Source,
    /// `--source pg`: a PostgreSQL server the soak may create database `rolegate_soak` on.
    #[arg(long, required_if_eq("source", "pg"))]
    dsn: Option<String>,
}

/// What a soak asks and how it judges the answers.
trait Soaked: Send + Sync + 'static {
    /// The `k`th call of a caller.
    fn request(&self, k: u64) -> api::CheckRequest;
    /// `Err` describes a wrong answer.
    fn judge(&self, request: &api::CheckRequest, response: &api::CheckResponse) -> Result<(), String>;
}

/// An answer: allowed, wire reason, deciding rule.
type Answer = (bool, i32, String);

fn answer_of(d: &api::Decision) -> Answer {
    (d.allowed, d.reason, d.rule.clone())
}

/// `tenant`'s decision on `principal` replying to a conversation assigned to `assignee`.
fn decide(tenant: &Tenant, principal: &str, assignee: &str) -> Result<Answer, String> {
    let resource = Resource {
        kind: "conversation".into(),
        id: "c-1".into(),
        unit: String::new(),
        attrs: Attrs(vec![("assignee".into(), Value::Text(assignee.into()))]),
    };
    let context = Context::default();
    let q = Query { tenant: "desk", principal, action: "conversation.reply", resource: &resource, context: &context };
    let d = tenant.decide(&q, jiff::Timestamp::now()).map_err(|e| e.to_string())?;
    Ok((d.allowed, api::convert::reason(d.reason) as i32, d.rule.as_deref().unwrap_or_default().to_owned()))
}

/// `principal` replying to a conversation assigned to `assignee`.
fn reply(principal: &str, assignee: &str, min_revision: u64) -> api::CheckRequest {
    api::CheckRequest {
        tenant: "desk".into(),
        principal: principal.into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text(assignee.into())) })].into(),
        }),
        context: None,
        min_revision,
    }
}

/// Compiles a tenant document as a sidecar would.
fn compile(text: &str, revision: u64) -> anyhow::Result<Tenant> {
    let (doc, diags) = rolegate::policy::parse_str("desk.yaml", text, None);
    let doc = doc.with_context(|| format!("the document does not parse: {diags:?}\n{text}"))?;
    rolegate::policy::compile(&doc, None, revision).map_err(|d| anyhow::anyhow!("{d:?}\n{text}"))
}

/// The directory soak.
mod dir {
    use super::*;

    /// Generation `n` of tenant `desk`.
    pub fn valid(n: u64) -> String {
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
    pub fn publish(dir: &Path, text: &str) -> anyhow::Result<()> {
        let tmp = dir.with_extension("tmp");
        std::fs::write(&tmp, text)?;
        std::fs::rename(&tmp, dir.join("desk.yaml"))?;
        Ok(())
    }

    /// The local engine's answer on each generation published so far.
    #[derive(Default)]
    pub struct Generations(Mutex<HashMap<u64, Answer>>);

    /// The answer the local engine gives on generation `n`.
    fn expected(n: u64) -> anyhow::Result<Answer> {
        decide(&compile(&valid(n), 1)?, "rep", "rep").map_err(|e| anyhow::anyhow!("generation {n}: {e}"))
    }

    /// The generation an answer's deciding rule names.
    fn generation(rule: &str) -> Option<u64> {
        rule.strip_prefix('g')?.trim_end_matches("-deny").parse().ok()
    }

    impl Generations {
        pub fn add(&self, n: u64) -> anyhow::Result<()> {
            let e = expected(n)?;
            self.0.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(n, e);
            Ok(())
        }
    }

    impl Soaked for Generations {
        fn request(&self, _: u64) -> api::CheckRequest {
            reply("rep", "rep", 0)
        }

        fn judge(&self, _: &api::CheckRequest, response: &api::CheckResponse) -> Result<(), String> {
            let got = answer_of(&response.decision.clone().unwrap_or_default());
            let want = generation(&got.2).and_then(|n| self.0.lock().ok()?.get(&n).cloned());
            match want {
                Some(w) if w == got => Ok(()),
                w => Err(format!("got {got:?}, the local engine says {w:?}")),
            }
        }
    }

    /// Valid generation, broken document, next generation, ... every second until `stop`.
    pub async fn writer(dir: PathBuf, generations: Arc<Generations>, stop: Arc<AtomicBool>) -> anyhow::Result<String> {
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
                generations.add(n).and_then(|()| publish(&dir, &valid(n)))
            };
            if let Err(e) = result {
                eprintln!("soak: writing the policy failed: {e}");
            }
        }
        Ok(format!("{n} valid generations and as many broken documents"))
    }
}

/// The PostgreSQL soak.
mod pg {
    use super::*;

    /// Tenant `desk`'s document row: `agent` replies to conversations assigned to its member,
    /// `lead` to any.
    const DOC: &str = "tenant: desk\nschema: {conversation: [view, reply]}\nroles:\n  \
                       agent: {allow: [conversation.view, conversation.reply]}\n  lead: {allow: [conversation.reply]}\n";
    const MEMBERS: usize = 5;
    const MAX_BINDINGS: usize = 3;

    #[derive(Clone)]
    struct Member {
        active: bool,
        /// Binding id and whether it is a `lead` binding, in row order.
        bindings: Vec<(String, bool)>,
    }

    /// The writer's copy of the rows it wrote.
    #[derive(Clone)]
    struct Model {
        members: Vec<Member>,
        next_binding: u64,
        rng: u64,
    }

    impl Model {
        fn new() -> Model {
            let members =
                (0..MEMBERS).map(|i| Member { active: true, bindings: vec![(format!("b{i}"), false)] }).collect();
            Model { members, next_binding: MEMBERS as u64, rng: 0x9E37_79B9_7F4A_7C15 }
        }

        fn random(&mut self, below: usize) -> usize {
            // xorshift64: deterministic, so a run can be repeated.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % below as u64) as usize
        }

        /// The setup's rows.
        fn setup_sql(&self) -> String {
            let mut sql = format!("INSERT INTO rolegate.tenants (id, document) VALUES ('desk', '{DOC}');\n");
            for (i, m) in self.members.iter().enumerate() {
                sql += &format!("INSERT INTO rolegate.members (tenant, id) VALUES ('desk', 'm{i}');\n");
                for (id, lead) in &m.bindings {
                    sql += &binding_sql(i, id, *lead);
                }
            }
            sql
        }

        /// One random change: applied to the model, returned as SQL.
        fn change(&mut self) -> String {
            let i = self.random(MEMBERS);
            let op = self.random(4);
            let m = &self.members[i];
            let add = match op {
                0 => {
                    let active = !m.active;
                    self.members[i].active = active;
                    let status = if active { "active" } else { "disabled" };
                    return format!(
                        "UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'desk' AND id = 'm{i}';\n"
                    );
                }
                1 | 2 => m.bindings.len() < MAX_BINDINGS,
                _ => m.bindings.is_empty(),
            };
            if add {
                let id = format!("b{}", self.next_binding);
                self.next_binding += 1;
                let lead = self.random(2) == 0;
                self.members[i].bindings.push((id.clone(), lead));
                binding_sql(i, &id, lead)
            } else {
                let at = self.random(self.members[i].bindings.len());
                let (id, _) = self.members[i].bindings.remove(at);
                format!("DELETE FROM rolegate.bindings WHERE tenant = 'desk' AND id = '{id}';\n")
            }
        }

        /// The tenant document the rows describe, members and bindings inline.
        fn yaml(&self) -> String {
            let mut y = format!("{DOC}members:\n");
            for (i, m) in self.members.iter().enumerate() {
                let bindings: Vec<String> = m
                    .bindings
                    .iter()
                    .map(|(id, lead)| {
                        if *lead {
                            format!("{{id: {id}, role: lead, scope: tenant}}")
                        } else {
                            format!("{{id: {id}, role: agent, scope: {{relation: assignee}}}}")
                        }
                    })
                    .collect();
                let status = if m.active { "active" } else { "disabled" };
                y += &format!("  - {{id: m{i}, status: {status}, bindings: [{}]}}\n", bindings.join(", "));
            }
            y
        }
    }

    fn binding_sql(member: usize, id: &str, lead: bool) -> String {
        let (role, scope) = if lead { ("lead", r#""tenant""#) } else { ("agent", r#"{"relation": "assignee"}"#) };
        format!(
            "INSERT INTO rolegate.bindings (tenant, member, id, role, scope) VALUES ('desk', 'm{member}', '{id}', '{role}', '{scope}');\n"
        )
    }

    /// The tenant compiled locally at every revision the writer committed, and the last one.
    #[derive(Default)]
    pub struct Revisions {
        tenants: Mutex<HashMap<u64, Arc<Tenant>>>,
        committed: AtomicU64,
    }

    impl Soaked for Revisions {
        fn request(&self, k: u64) -> api::CheckRequest {
            let q = k as usize % (MEMBERS * MEMBERS);
            // One call in four reads its writes: at least the last committed revision.
            let min = if k % 4 == 3 { self.committed.load(Ordering::Acquire) } else { 0 };
            reply(&format!("m{}", q / MEMBERS), &format!("m{}", q % MEMBERS), min)
        }

        fn judge(&self, request: &api::CheckRequest, response: &api::CheckResponse) -> Result<(), String> {
            let revision = response.revision;
            if revision < request.min_revision {
                return Err(format!("answered at revision {revision}, below min_revision {}", request.min_revision));
            }
            let tenant = self.tenants.lock().ok().and_then(|t| t.get(&revision).cloned());
            let Some(tenant) = tenant else {
                return Err(format!("answered at revision {revision}, which was never committed"));
            };
            let assignee = match request.resource.as_ref().and_then(|r| r.attrs.get("assignee")?.kind.clone()) {
                Some(Kind::Text(a)) => a,
                _ => String::new(),
            };
            let got = answer_of(&response.decision.clone().unwrap_or_default());
            let want = decide(&tenant, &request.principal, &assignee)?;
            if got == want {
                Ok(())
            } else {
                Err(format!(
                    "{} replying to {assignee}'s conversation at revision {revision}: got {got:?}, the local engine says {want:?}",
                    request.principal
                ))
            }
        }
    }

    /// `dsn` with its database replaced by `db`.
    pub fn with_db(dsn: &str, db: &str) -> String {
        let (base, query) = dsn.split_once('?').map_or((dsn, None), |(b, q)| (b, Some(q)));
        let host_start = base.find("://").map_or(0, |i| i + 3);
        let base = base[host_start..].find('/').map_or(base, |i| &base[..host_start + i]);
        match query {
            Some(q) => format!("{base}/{db}?{q}"),
            None => format!("{base}/{db}"),
        }
    }

    async fn connect(dsn: &str) -> anyhow::Result<tokio_postgres::Client> {
        let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls)
            .await
            .with_context(|| format!("cannot connect to {dsn}"))?;
        tokio::spawn(connection);
        Ok(client)
    }

    /// Commits `sql` and `model`'s tenant at the revision it publishes, recorded before the commit
    /// so no answer can come first.
    async fn commit(
        client: &mut tokio_postgres::Client,
        sql: &str,
        model: &Model,
        revisions: &Revisions,
    ) -> anyhow::Result<u64> {
        let tx = client.transaction().await?;
        tx.batch_execute(sql).await.with_context(|| sql.to_owned())?;
        let revision: i64 = tx.query_one("SELECT rolegate.revision('desk')", &[]).await?.get(0);
        let revision = revision as u64;
        let tenant = compile(&model.yaml(), revision)?;
        revisions.tenants.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.insert(revision, Arc::new(tenant));
        tx.commit().await?;
        revisions.committed.store(revision, Ordering::Release);
        Ok(revision)
    }

    /// A fresh database `rolegate_soak` on `dsn`'s server, migrated with `rolegate`, holding the
    /// first revision; returns its DSN, the writer's connection and model.
    pub async fn setup(dsn: &str, rolegate: &Path, revisions: &Revisions) -> anyhow::Result<(String, Writer)> {
        let admin = connect(dsn).await?;
        admin.batch_execute("DROP DATABASE IF EXISTS rolegate_soak WITH (FORCE)").await?;
        admin.batch_execute("CREATE DATABASE rolegate_soak").await?;
        let db = with_db(dsn, "rolegate_soak");
        let out = Command::new(rolegate).args(["migrate", "--dsn", &db]).output()?;
        if !out.status.success() {
            bail!("rolegate migrate failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let mut client = connect(&db).await?;
        let model = Model::new();
        commit(&mut client, &model.setup_sql(), &model, revisions).await?;
        Ok((db, Writer { client, model }))
    }

    /// The writer's connection and model.
    pub struct Writer {
        client: tokio_postgres::Client,
        model: Model,
    }

    /// One transaction of one or two changes every second until `stop`.
    pub async fn writer(mut w: Writer, revisions: Arc<Revisions>, stop: Arc<AtomicBool>) -> anyhow::Result<String> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let (mut commits, mut changes, mut failed) = (0u64, 0u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            tick.tick().await;
            let before = w.model.clone();
            let n = 1 + w.model.random(2);
            let sql: String = (0..n).map(|_| w.model.change()).collect();
            match commit(&mut w.client, &sql, &w.model, &revisions).await {
                Ok(_) => (commits, changes) = (commits + 1, changes + n as u64),
                Err(e) => {
                    eprintln!("soak: the writer's commit failed: {e:#}");
                    w.model = before;
                    failed += 1;
                }
            }
        }
        if failed > 0 {
            bail!("{failed} of the writer's commits failed");
        }
        let disabled = w.model.members.iter().filter(|m| !m.active).count();
        let bindings: usize = w.model.members.iter().map(|m| m.bindings.len()).sum();
        Ok(format!(
            "{commits} commits of {changes} row changes (last revision {}; {disabled} members suspended, {bindings} bindings at the end)",
            revisions.committed.load(Ordering::Acquire)
        ))
    }
}

#[derive(Default)]
struct Window {
    calls: u64,
    errors: u64,
    wrong: u64,
    latency: Option<Histogram<u64>>,
    first_error: Option<String>,
    first_wrong: Option<String>,
}

fn start_server(args: &Args, source: &[OsString], log: &Path) -> anyhow::Result<(Child, String)> {
    let mut child = Command::new(&args.rolegate)
        .arg("serve")
        .args(source)
        .args(["--listen", "127.0.0.1:0"])
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
            if line.contains("panicked") || line.contains(" ERROR ") {
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
async fn max_rate(addr: &str, soaked: Arc<dyn Soaked>, callers: usize, for_: Duration) -> anyhow::Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    let until = Instant::now() + for_;
    for c in 0..callers {
        let mut client = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(addr).await?);
        let (done, soaked) = (done.clone(), soaked.clone());
        tasks.push(tokio::spawn(async move {
            let mut k = c as u64 * 7;
            while Instant::now() < until {
                k += 1;
                if client.check(soaked.request(k)).await.is_ok() {
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
    std::fs::create_dir_all(&work)?;
    let log = work.join("decisions.log");
    let stop = Arc::new(AtomicBool::new(false));

    let (soaked, writer, mut server, addr): (Arc<dyn Soaked>, _, _, _) = match args.source {
        Source::Dir => {
            let dir = work.join("policies");
            std::fs::create_dir_all(&dir)?;
            dir::publish(&dir, &dir::valid(0))?;
            let generations = Arc::new(dir::Generations::default());
            generations.add(0)?;
            let source: Vec<OsString> = vec![
                "--policies".into(),
                dir.clone().into(),
                "--reload-debounce".into(),
                "50ms".into(),
                "--reload-poll".into(),
                "500ms".into(),
            ];
            let (server, addr) = start_server(&args, &source, &log)?;
            let writer = tokio::spawn(dir::writer(dir, generations.clone(), stop.clone()));
            (generations as Arc<dyn Soaked>, writer, server, addr)
        }
        Source::Pg => {
            let dsn = args.dsn.as_deref().context("--source pg needs --dsn")?;
            let revisions = Arc::new(pg::Revisions::default());
            let (db, w) = pg::setup(dsn, &args.rolegate, &revisions).await?;
            // The decision cache is on, so its invalidation across revisions is judged too. A
            // caller naming the revision just committed waits up to 3 s for it: on a loaded
            // machine a notification can take longer than 500 ms to apply, and the soak judges
            // errors, not catch-up time (tests/pg_faults.rs measures that).
            let source: Vec<OsString> = [
                "--source",
                &db,
                "--min-revision-wait",
                "3s",
                "--request-timeout",
                "5s",
                "--cache-capacity",
                "10000",
                "--cache-ttl",
                "60s",
            ]
            .iter()
            .map(OsString::from)
            .collect();
            let (server, addr) = start_server(&args, &source, &log)?;
            let writer = tokio::spawn(pg::writer(w, revisions.clone(), stop.clone()));
            (revisions as Arc<dyn Soaked>, writer, server, addr)
        }
    };
    let pid = server.id();

    let max = max_rate(&addr, soaked.clone(), args.callers, Duration::from_secs(3)).await?;
    let target = (max / 2.0).max(1.0);
    let what = match args.source {
        Source::Dir => "policy directory rewritten every second",
        Source::Pg => "PostgreSQL rows changed every second",
    };
    println!("soak: {} s at {target:.0} checks/s (half of the {max:.0}/s measured), {what}", args.seconds);

    let window = Arc::new(Mutex::new(Window::default()));
    let mut callers = Vec::new();
    let per_caller = Duration::from_secs_f64(args.callers as f64 / target);
    for c in 0..args.callers {
        let mut client = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(&addr).await?);
        let (stop, window, soaked) = (stop.clone(), window.clone(), soaked.clone());
        callers.push(tokio::spawn(async move {
            let mut tick = tokio::time::interval(per_caller);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let mut k = c as u64 * 7;
            while !stop.load(Ordering::Relaxed) {
                tick.tick().await;
                k += 1;
                let request = soaked.request(k);
                let started = Instant::now();
                let answer = client.check(request.clone()).await;
                let micros = started.elapsed().as_micros() as u64;
                let verdict = match answer {
                    Err(e) => Err(format!("{:?}: {}", e.code(), e.message())),
                    Ok(r) => Ok(soaked.judge(&request, &r.into_inner())),
                };
                let Ok(mut w) = window.lock() else { return };
                w.calls += 1;
                match verdict {
                    Ok(Ok(())) => {}
                    Ok(Err(wrong)) => {
                        w.wrong += 1;
                        w.first_wrong.get_or_insert(wrong);
                    }
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
        if let Some(e) = w.first_wrong {
            println!("       first wrong answer: {e}");
        }
        (errors, wrong, calls) = (errors + w.errors, wrong + w.wrong, calls + w.calls);
        if server.try_wait()?.is_some() {
            bail!("the server exited during the soak");
        }
    }
    stop.store(true, Ordering::Relaxed);
    let written = writer.await??;
    for c in callers {
        c.await?;
    }
    let logged = std::fs::read_to_string(&log).map_or(0, |t| t.lines().count());
    let _ = server.kill();
    let _ = server.wait();
    let warm = rss.get(rss.len() / 4).copied().unwrap_or(0);
    let last = rss.last().copied().unwrap_or(0);
    println!(
        "soak: {calls} calls, {errors} errors, {wrong} wrong answers, {written}, \
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
