//! Figures of the PostgreSQL source for BENCHMARKS.md, against a real PostgreSQL
//! (`ROLEGATE_TEST_PG`; `scripts/bench-pg.sh` starts one):
//!
//! - `apply`: loading a 50k-member tenant (time, heap per member), then the sidecar CPU to apply
//!   one member change to it, and to reload it whole;
//! - `latency`: commit-to-decision latency of a revocation across two real sidecars;
//! - `fanout`: many followers LISTENing on one PostgreSQL, each applying every change;
//! - `nats`: the same changes fanned out through NATS JetStream by one real `rolegate publish`
//!   to many lightweight subscribers (an ordered consumer and a NATS connection each, decoding
//!   every change) beside two real sidecars (`serve --source nats://…`).
//!
//! - `ondemand`: tenants on demand (`support/ondemand.rs`).
//!
//! `cargo bench --bench postgres [-- apply latency fanout nats ondemand]`. Under `cargo test` it runs each part
//! once at a small size, so the bench keeps working.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rolegate::api::{self, attr_value::Kind};
use rolegate::source::postgres::follow::Session;
use rolegate::source::postgres::{Config, Follower, Health, migrate};
use rolegate::store::Store;

#[path = "support/alloc.rs"]
mod alloc;

#[global_allocator]
static ALLOC: alloc::Counting = alloc::Counting;

#[path = "support/measure.rs"]
mod measure;
use measure::{join_all, ms, percentiles, postgres_cpu, process_cpu, thread_cpu};

#[allow(dead_code)]
#[path = "../../../tests/support/pg.rs"]
mod pg;

#[allow(dead_code)]
#[path = "../../../tests/support/nats.rs"]
mod nats;

#[path = "support/ondemand.rs"]
mod ondemand;
use pg::{connect, with_db};

/// Runs `sql` in a transaction; returns tenant `bench`'s revision as the writer sees it.
async fn write(client: &mut tokio_postgres::Client, sql: &str) -> u64 {
    pg::write(client, "bench", sql).await
}

/// Sizes: full under `cargo bench`, small under `cargo test`.
#[derive(Clone, Copy)]
struct Sizes {
    members: usize,
    changes: usize,
    revocations: usize,
    fanout: &'static [usize],
    fanout_changes: usize,
    nats: &'static [usize],
    ondemand: ondemand::Sizes,
}

const BENCH: Sizes = Sizes {
    members: 50_000,
    changes: 200,
    revocations: 250,
    fanout: &[10, 50, 100, 200],
    fanout_changes: 30,
    nats: &[10, 100, 1000],
    ondemand: ondemand::Sizes { tenants: 100_000, working: 1000, big: 100, big_members: 1000, hits: 1000 },
};
const SMOKE: Sizes = Sizes {
    members: 500,
    changes: 5,
    revocations: 5,
    fanout: &[3],
    fanout_changes: 2,
    nats: &[3],
    ondemand: ondemand::Sizes { tenants: 200, working: 20, big: 5, big_members: 50, hits: 20 },
};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let sizes = if args.iter().any(|a| a == "--bench") { BENCH } else { SMOKE };
    let Ok(server) = std::env::var("ROLEGATE_TEST_PG") else {
        eprintln!("set ROLEGATE_TEST_PG (scripts/bench-pg.sh does) to run the PostgreSQL bench");
        return;
    };
    let parts: Vec<&str> = args.iter().map(String::as_str).filter(|a| !a.starts_with("--")).collect();
    let wants = |part: &str| parts.is_empty() || parts.contains(&part);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let (version, backend): (String, i32) = rt.block_on(async {
        let c = connect(&server).await;
        let row = c.query_one("SELECT current_setting('server_version'), pg_backend_pid()", &[]).await.unwrap();
        (row.get(0), row.get(1))
    });
    measure::count_postgres_of(backend as u32);
    println!("PostgreSQL {version}");
    let dsn = rt.block_on(bench_database(&server, "rolegate_bench", sizes.members));
    if wants("apply") {
        // One thread runs the follower and its connection, so the thread's CPU time is the
        // sidecar's cost of a change.
        let local = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        local.block_on(apply(&dsn, sizes));
    }
    if wants("latency") {
        rt.block_on(latency(&dsn, sizes));
    }
    if wants("nats") {
        let dsn = rt.block_on(bench_database(&server, "rolegate_bench_nats", 100));
        rt.block_on(nats_fanout(&dsn, sizes));
    }
    if wants("fanout") {
        let dsn = rt.block_on(bench_database(&server, "rolegate_bench_fanout", 100));
        rt.block_on(fanout(&dsn, sizes));
    }
    if wants("ondemand") {
        let memory = std::env::var("BENCH_TENANT_MEMORY").unwrap_or_else(|_| "64MiB".to_owned());
        rt.block_on(ondemand::run(&server, sizes.ondemand, &memory));
    }
}

const DOC: &str = "tenant: bench
schema:
  conversation: [view, reply, assign, transfer, close, export]
  customer: [view, edit, export]
  settings: [view, edit]
roles:
  agent: {allow: [conversation.view, conversation.reply, conversation.close, customer.view]}
  team_admin: {extends: [agent], allow: [conversation.assign, conversation.transfer, settings.view]}
  admin: {allow: [\"*\"], except: [settings.edit], requestable: [settings.edit, customer.export]}
  exporter: {allow: [customer.export]}
rules:
  - {id: outsourced-no-export, effect: deny, actions: [\"*.export\"], when: {principal: {employment: outsourced}}, alert: true}
  - {id: outsourced-mask, effect: mask, fields: [phone, email], actions: [customer.view, conversation.view], when: {principal: {employment: outsourced}}}
";

/// A migrated database holding tenant `bench`: 100 units, `members` members with one binding
/// each (the engine bench's service desk, as rows).
async fn bench_database(server: &str, db: &str, members: usize) -> String {
    let admin = connect(server).await;
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let dsn = with_db(server, db);
    let mut client = connect(&dsn).await;
    migrate::migrate(&mut client, &Default::default()).await.unwrap();
    let last = members as i64 - 1;
    client.execute("INSERT INTO rolegate.tenants (id, document) VALUES ('bench', $1)", &[&DOC]).await.unwrap();
    client
        .batch_execute(
            "INSERT INTO rolegate.units (tenant, id, parent)
             SELECT 'bench', 'u' || i, CASE WHEN i = 0 THEN NULL WHEN i < 10 THEN 'u0' ELSE 'u' || (i % 9 + 1) END
             FROM generate_series(0, 99) i;",
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO rolegate.members (tenant, id, units, attrs)
             SELECT 'bench', 'm' || i, ARRAY['u' || (i % 100)],
                    jsonb_build_object('employment', CASE WHEN i % 10 = 3 THEN 'outsourced' ELSE 'employee' END, 'level', i % 3)
             FROM generate_series(0, $1::int8) i",
            &[&last],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO rolegate.bindings (tenant, member, role, scope)
             SELECT 'bench', 'm' || i,
                    CASE i % 50 WHEN 0 THEN 'team_admin' WHEN 1 THEN 'admin' ELSE 'agent' END,
                    (CASE i % 50 WHEN 0 THEN '\"own_units\"' WHEN 1 THEN '\"tenant\"' ELSE '{\"relation\": \"assignee\"}' END)::jsonb
             FROM generate_series(0, $1::int8) i",
            &[&last],
        )
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    dsn
}

async fn apply(dsn: &str, sizes: Sizes) {
    let cfg = Config::from_dsn(dsn, Duration::from_secs(3600)).unwrap();
    let store = Arc::new(Store::default());
    let mut follower = Follower::new(cfg.clone(), store.clone(), Arc::new(Health::default()));
    let mut session = Session::open(&cfg).await.unwrap();
    let (heap, cpu, wall) = (alloc::live(), thread_cpu(), Instant::now());
    let report = follower.sync(&mut session, None).await.unwrap();
    let (wall, cpu) = (wall.elapsed(), thread_cpu() - cpu);
    assert_eq!(report.applied.len(), 1, "{:?}", report.errors);
    let heap = alloc::live().saturating_sub(heap);
    println!(
        "apply: loaded a {}-member tenant in {} ({} CPU); heap held: {} bytes per member",
        sizes.members,
        ms(wall),
        ms(cpu),
        heap / sizes.members
    );

    let mut writer = connect(dsn).await;
    let tenants = ["bench".to_owned()];
    let (mut cpus, mut walls) = (Vec::new(), Vec::new());
    for i in 0..sizes.changes {
        let m = (i * 7919) % sizes.members;
        // Disable, re-enable, grant a 24-hour export, revoke it: the changes a CRM makes.
        let sql = match i % 4 {
            0 => format!("UPDATE rolegate.members SET status = 'disabled' WHERE tenant = 'bench' AND id = 'm{m}'"),
            1 => format!(
                "UPDATE rolegate.members SET status = 'active' WHERE tenant = 'bench' AND id = 'm{}'",
                (i - 1) * 7919 % sizes.members
            ),
            2 => format!(
                "INSERT INTO rolegate.bindings (tenant, member, id, role, scope, until)
                 VALUES ('bench', 'm{m}', 'export-{i}', 'exporter', '\"tenant\"', now() + interval '24 hours')"
            ),
            _ => format!("DELETE FROM rolegate.bindings WHERE tenant = 'bench' AND id = 'export-{}'", i - 1),
        };
        let revision = write(&mut writer, &sql).await;
        let (cpu, wall) = (thread_cpu(), Instant::now());
        let report = follower.sync(&mut session, Some(&tenants)).await.unwrap();
        cpus.push(thread_cpu() - cpu);
        walls.push(wall.elapsed());
        assert_eq!(report.applied, [("bench".to_owned(), revision)], "{:?}", report.errors);
    }
    println!("apply: one member change, sidecar CPU: {}", percentiles(&mut cpus));
    println!("apply: one member change, wall (with 6 round trips): {}", percentiles(&mut walls));

    let revision = write(&mut writer, &format!("UPDATE rolegate.tenants SET document = $${DOC}# touched\n$$")).await;
    let (cpu, wall) = (thread_cpu(), Instant::now());
    let report = follower.sync(&mut session, Some(&tenants)).await.unwrap();
    assert_eq!(report.applied, [("bench".to_owned(), revision)]);
    println!(
        "apply: a tenant-document change reloads it whole: {} ({} CPU)",
        ms(wall.elapsed()),
        ms(thread_cpu() - cpu)
    );
}

/// A real `rolegate serve` on the database.
struct Sidecar {
    child: Child,
    addr: String,
}

impl Sidecar {
    fn start(dsn: &str) -> Sidecar {
        let mut child = Command::new(pg::rolegate_bin())
            .args(["serve", "--source", dsn, "--listen", "127.0.0.1:0", "--reload-poll", "60s"])
            .args(["--min-revision-wait", "900ms", "--decision-log", "off"])
            .env("ROLEGATE_LOG", "warn,rolegate::server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next().expect("the sidecar exited").unwrap();
            if let Some(addr) = line.split("listening on ").nth(1).filter(|_| !line.contains("admin")) {
                break addr.trim().to_owned();
            }
        };
        std::thread::spawn(move || lines.for_each(drop));
        Sidecar { child, addr }
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reply(who: &str, min_revision: u64) -> api::CheckRequest {
    let assignee = api::AttrValue { kind: Some(Kind::Text(who.into())) };
    api::CheckRequest {
        tenant: "bench".into(),
        principal: who.into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), assignee)].into(),
        }),
        context: None,
        min_revision,
    }
}

async fn latency(dsn: &str, sizes: Sizes) {
    let sidecars = [Sidecar::start(dsn), Sidecar::start(dsn)];
    let mut clients = Vec::new();
    for s in &sidecars {
        let mut c = api::authorizer_client::AuthorizerClient::new(rolegate::cli::connect(&s.addr).await.unwrap());
        // Ready once a check succeeds (UNAVAILABLE until the first load).
        while c.check(reply("m2", 0)).await.is_err() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        clients.push(c);
    }
    let mut writer = connect(dsn).await;
    let mut samples = Vec::new();
    for i in 0..sizes.revocations {
        // Agents m2, m102, …: disabled on even rounds, re-enabled on odd ones.
        let who = format!("m{}", (i / 2 % 40) * 100 + 2);
        let active = i % 2 == 1;
        let status = if active { "active" } else { "disabled" };
        let sql = format!("UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'bench' AND id = '{who}'");
        let revision = write(&mut writer, &sql).await;
        let committed = Instant::now();
        let checks = clients.iter().map(|c| {
            let (mut c, req) = (c.clone(), reply(&who, revision));
            async move {
                let r = c.check(req).await.expect("decided within the min_revision wait").into_inner();
                (committed.elapsed(), r.decision.unwrap().allowed)
            }
        });
        for (took, allowed) in join_all(checks).await {
            assert_eq!(allowed, active, "the decision reflects the change");
            samples.push(took);
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    println!(
        "latency: commit to decision across 2 sidecars, {} changes: {}",
        sizes.revocations,
        percentiles(&mut samples)
    );
}

async fn fanout(dsn: &str, sizes: Sizes) {
    let mut writer = connect(dsn).await;
    for &n in sizes.fanout {
        let cfg = Config::from_dsn(dsn, Duration::from_secs(3600)).unwrap();
        let mut stores = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let store = Arc::new(Store::default());
            let follower = Follower::new(cfg.clone(), store.clone(), Arc::new(Health::default()));
            tasks.push(tokio::spawn(follower.run(|_| {})));
            stores.push(store);
        }
        for s in &stores {
            while !s.is_loaded() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        let held = connections(&writer).await;
        let (pg_cpu, own_cpu) = (postgres_cpu(), process_cpu(std::process::id()));
        let mut samples = Vec::new();
        for i in 0..sizes.fanout_changes {
            let status = if i % 2 == 0 { "disabled" } else { "active" };
            let sql = format!("UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'bench' AND id = 'm7'");
            let revision = write(&mut writer, &sql).await;
            let committed = Instant::now();
            let waits = stores.iter().map(|s| {
                let s = s.clone();
                async move {
                    let mut rx = s.subscribe();
                    while s.load().and_then(|snap| snap.tenant("bench").map(|t| t.revision)) < Some(revision) {
                        let _ = rx.changed().await;
                    }
                    committed.elapsed()
                }
            });
            samples.extend(join_all(waits).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pg_cpu = postgres_cpu().saturating_sub(pg_cpu);
        let own_cpu = process_cpu(std::process::id()).saturating_sub(own_cpu);
        let changes = sizes.fanout_changes as u32;
        println!(
            "fanout: {n} followers LISTENing, {changes} changes, commit to every follower applied: {}",
            percentiles(&mut samples)
        );
        println!(
            "fanout: per change, PostgreSQL CPU {} ({} per follower; database connections held: {held}); followers' CPU {} ({} per follower)",
            ms(pg_cpu / changes),
            ms(pg_cpu / changes / n as u32),
            ms(own_cpu / changes),
            ms(own_cpu / changes / n as u32)
        );
        for t in tasks {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Connections the database serves to `dsn`'s database now.
async fn connections(client: &tokio_postgres::Client) -> i64 {
    let q = "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()";
    client.query_one(q, &[]).await.unwrap().get(0)
}

/// A lightweight follower: its own NATS connection and ordered consumer from the stream's end,
/// decoding every change and reporting the highest revision of tenant `bench` seen.
async fn subscriber(url: String, seen: tokio::sync::watch::Sender<i64>) {
    use rolegate::source::nats::{Change, STREAM, SUBJECTS};
    use tokio_stream::StreamExt;
    let client = async_nats::connect(url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let stream = js.get_stream(STREAM).await.unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::OrderedConfig {
            filter_subject: SUBJECTS.to_owned(),
            deliver_policy: async_nats::jetstream::consumer::DeliverPolicy::New,
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.messages().await.unwrap();
    seen.send_replace(0);
    while let Some(Ok(m)) = messages.next().await {
        if let Ok(change) = serde_json::from_slice::<Change>(&m.payload) {
            seen.send_modify(|r| *r = (*r).max(change.revision));
        }
    }
}

async fn nats_fanout(dsn: &str, sizes: Sizes) {
    let Some(server) = nats::Nats::start() else { return };
    let mut writer = connect(dsn).await;
    let _publisher = nats::Publisher::start(dsn, &server.url(), &[]);
    let sidecars: Vec<Child> = (0..2)
        .map(|_| {
            Command::new(pg::rolegate_bin())
                .args(["serve", "--source", &server.url(), "--snapshot-source", dsn, "--listen", "127.0.0.1:0"])
                .args(["--reload-poll", "60s", "--decision-log", "off"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // The sidecars apply changes as the subscribers do; their revision is read from the stream's
    // consumers below only through the subscribers, so wait for them to be up.
    tokio::time::sleep(Duration::from_secs(2)).await;
    for &n in sizes.nats {
        let mut watches = Vec::new();
        let mut tasks = Vec::new();
        for _ in 0..n {
            let (tx, rx) = tokio::sync::watch::channel(-1);
            tasks.push(tokio::spawn(subscriber(server.url(), tx)));
            watches.push(rx);
        }
        for w in &mut watches {
            while *w.borrow() < 0 {
                let _ = w.changed().await;
            }
        }
        let held = connections(&writer).await;
        let (pg_cpu, own_cpu) = (postgres_cpu(), process_cpu(std::process::id()));
        let mut samples = Vec::new();
        for i in 0..sizes.fanout_changes {
            let status = if i % 2 == 0 { "disabled" } else { "active" };
            let sql = format!("UPDATE rolegate.members SET status = '{status}' WHERE tenant = 'bench' AND id = 'm7'");
            let revision = write(&mut writer, &sql).await as i64;
            let committed = Instant::now();
            let waits = watches.iter().map(|w| {
                let mut w = w.clone();
                async move {
                    while *w.borrow_and_update() < revision {
                        let _ = w.changed().await;
                    }
                    committed.elapsed()
                }
            });
            samples.extend(join_all(waits).await);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let pg_cpu = postgres_cpu().saturating_sub(pg_cpu);
        let own_cpu = process_cpu(std::process::id()).saturating_sub(own_cpu);
        let changes = sizes.fanout_changes as u32;
        println!(
            "nats: {n} subscribers (+2 real sidecars), {changes} changes, commit to every subscriber received: {}",
            percentiles(&mut samples)
        );
        println!(
            "nats: per change, PostgreSQL CPU {} (database connections held: {held}, whatever the number of subscribers); subscribers' CPU {} ({} per subscriber)",
            ms(pg_cpu / changes),
            ms(own_cpu / changes),
            ms(own_cpu / changes / n as u32)
        );
        for t in tasks {
            t.abort();
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    for mut s in sidecars {
        let _ = s.kill();
        let _ = s.wait();
    }
}
