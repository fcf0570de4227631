//! Part `ondemand` of the PostgreSQL bench: tenants on demand against every tenant resident.
//! A database of many small tenants (a two-member desk each) and a few 1,000-member tenants; a
//! real sidecar with `--tenants on-demand` serves a working set of them, another with
//! `--tenants all` holds every one. Reports resident memory (VmRSS) of each, the cold-load
//! latency of a 1,000-member tenant, and a resident tenant's Check latency on both, side by side.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rolegate::api::{self, attr_value::Kind};

use super::measure::{join_all, percentiles};
use super::pg;

type Client = api::authorizer_client::AuthorizerClient<tonic::transport::Channel>;

/// How many of what.
#[derive(Clone, Copy)]
pub struct Sizes {
    /// Small tenants in the database.
    pub tenants: usize,
    /// Of those, how many the on-demand sidecar's callers name.
    pub working: usize,
    /// Large tenants, each loaded once cold.
    pub big: usize,
    /// Members of each large tenant.
    pub big_members: usize,
    /// Checks per round of the hit-path comparison.
    pub hits: usize,
}

const DOC: &str = "\nschema: {conversation: [view, reply], customer: [export]}\nroles:\n  agent: {allow: [conversation.view, conversation.reply]}\n  exporter: {allow: [customer.export]}\n";

async fn database(server: &str, s: Sizes) -> String {
    let admin = pg::connect(server).await;
    let db = "rolegate_bench_ondemand";
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.unwrap();
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.unwrap();
    let dsn = pg::with_db(server, db);
    let mut client = pg::connect(&dsn).await;
    rolegate::source::postgres::migrate::migrate(&mut client, &Default::default()).await.unwrap();
    let started = Instant::now();
    let (n, big, members) = (s.tenants as i64 - 1, s.big as i64 - 1, s.big_members as i64 - 1);
    let sql = [
        "INSERT INTO rolegate.tenants (id, document) SELECT 't' || i, 'tenant: t' || i || $1 FROM generate_series(0, $2::int8) i",
        "INSERT INTO rolegate.tenants (id, document) SELECT 'big' || i, 'tenant: big' || i || $1 FROM generate_series(0, $2::int8) i",
    ];
    client.execute(sql[0], &[&DOC, &n]).await.unwrap();
    client.execute(sql[1], &[&DOC, &big]).await.unwrap();
    client
        .execute(
            "INSERT INTO rolegate.members (tenant, id) SELECT 't' || i, m FROM generate_series(0, $1::int8) i, unnest(ARRAY['rep', 'other']) m",
            &[&n],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO rolegate.bindings (tenant, member, role, scope) SELECT 't' || i, m, 'agent', '{\"relation\": \"assignee\"}'
             FROM generate_series(0, $1::int8) i, unnest(ARRAY['rep', 'other']) m",
            &[&n],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO rolegate.members (tenant, id) SELECT 'big' || i, CASE WHEN j = 0 THEN 'rep' ELSE 'm' || j END
             FROM generate_series(0, $1::int8) i, generate_series(0, $2::int8) j",
            &[&big, &members],
        )
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO rolegate.bindings (tenant, member, role, scope) SELECT 'big' || i, CASE WHEN j = 0 THEN 'rep' ELSE 'm' || j END,
                    'agent', '{\"relation\": \"assignee\"}' FROM generate_series(0, $1::int8) i, generate_series(0, $2::int8) j",
            &[&big, &members],
        )
        .await
        .unwrap();
    client.batch_execute("VACUUM ANALYZE").await.unwrap();
    println!(
        "ondemand: database of {} two-member tenants and {} tenants of {} members, written in {:.1} s",
        s.tenants,
        s.big,
        s.big_members,
        started.elapsed().as_secs_f64()
    );
    dsn
}

struct Sidecar {
    child: Child,
    client: Client,
    admin: String,
}

impl Sidecar {
    async fn start(dsn: &str, extra: &[&str]) -> Sidecar {
        let mut child = Command::new(pg::rolegate_bin())
            .args(["serve", "--source", dsn, "--listen", "127.0.0.1:0", "--admin-listen", "127.0.0.1:0"])
            .args(["--reload-poll", "60s", "--decision-log", "off", "--request-timeout", "30s"])
            .args(["--min-revision-wait", "100ms"])
            .args(extra)
            .env("ROLEGATE_LOG", "warn,rolegate::server=info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let (mut addr, mut admin) = (None, None);
        while addr.is_none() || admin.is_none() {
            let line = lines.next().expect("the sidecar exited").unwrap();
            let Some(at) = line.split("listening on ").nth(1).map(|a| a.trim().to_owned()) else { continue };
            if line.contains("admin") { admin = Some(at) } else { addr = Some(at) }
        }
        std::thread::spawn(move || lines.for_each(drop));
        let client = Client::new(rolegate::cli::connect(&addr.unwrap()).await.unwrap());
        Sidecar { child, client, admin: admin.unwrap() }
    }

    /// Resident memory of the sidecar process, in MiB.
    fn rss_mib(&self) -> f64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0.0);
        kb / 1024.0
    }

    async fn metric(&self, name: &str) -> f64 {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut conn = tokio::net::TcpStream::connect(&self.admin).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n").await.unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        let prefix = format!("{name} ");
        body.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    }
}

impl Drop for Sidecar {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn reply(tenant: &str) -> api::CheckRequest {
    let assignee = api::AttrValue { kind: Some(Kind::Text("rep".into())) };
    api::CheckRequest {
        tenant: tenant.into(),
        principal: "rep".into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), assignee)].into(),
        }),
        context: None,
        min_revision: 0,
    }
}

async fn allowed(client: &mut Client, tenant: &str) {
    let r = client.check(reply(tenant)).await.unwrap_or_else(|e| panic!("{tenant}: {e}")).into_inner();
    assert!(r.decision.is_some_and(|d| d.allowed), "rep replies in {tenant}");
}

/// Waits until the sidecar answers for `tenant`.
async fn until_serving(client: &mut Client, tenant: &str, within: Duration) -> Duration {
    let started = Instant::now();
    loop {
        if client.check(reply(tenant)).await.is_ok_and(|r| r.into_inner().decision.is_some_and(|d| d.allowed)) {
            return started.elapsed();
        }
        assert!(started.elapsed() < within, "no answer for {tenant} within {within:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Per-call latency of `n` sequential Checks of one resident tenant.
async fn hits(client: &mut Client, tenant: &str, n: usize) -> Vec<Duration> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let t = Instant::now();
        allowed(client, tenant).await;
        out.push(t.elapsed());
    }
    out
}

pub async fn run(server: &str, s: Sizes, memory: &str) {
    let dsn = database(server, s).await;
    let stride = s.tenants / s.working;
    let working: Vec<String> = (0..s.working).map(|i| format!("t{}", i * stride)).collect();

    let mut on_demand = Sidecar::start(&dsn, &["--tenants", "on-demand", "--tenant-memory", memory]).await;
    until_serving(&mut on_demand.client, "t0", Duration::from_secs(60)).await;
    let idle = on_demand.rss_mib();
    for _ in 0..3 {
        for chunk in working.chunks(16) {
            join_all(chunk.iter().map(|t| {
                let (mut c, t) = (on_demand.client.clone(), t.clone());
                async move { allowed(&mut c, &t).await }
            }))
            .await;
        }
    }
    let (resident, bytes) = (
        on_demand.metric("rolegate_tenants_resident").await,
        on_demand.metric("rolegate_tenants_resident_bytes").await,
    );
    println!(
        "ondemand: --tenant-memory {memory}, working set of {} of {} tenants called 3 times: RSS {:.1} MiB (started at {idle:.1} MiB); {resident} resident, estimated {:.2} MiB",
        s.working,
        s.tenants + s.big,
        on_demand.rss_mib(),
        bytes / 1048576.0
    );

    let mut cold = Vec::new();
    for i in 0..s.big {
        let t = Instant::now();
        allowed(&mut on_demand.client, &format!("big{i}")).await;
        cold.push(t.elapsed());
    }
    let big_bytes = on_demand.metric("rolegate_tenants_resident_bytes").await;
    let evictions = on_demand.metric("rolegate_tenant_evictions_total").await;
    println!(
        "ondemand: cold load of a {}-member tenant (first Check, {} tenants): {}",
        s.big_members,
        s.big,
        percentiles(&mut cold)
    );
    println!(
        "ondemand: after the large tenants: RSS {:.1} MiB, estimated {:.2} MiB resident, {evictions} evictions",
        on_demand.rss_mib(),
        big_bytes / 1048576.0
    );

    let started = Instant::now();
    let mut all = Sidecar::start(&dsn, &[]).await;
    let load = until_serving(&mut all.client, "t0", Duration::from_secs(1800)).await;
    println!(
        "ondemand: every tenant resident (--tenants all): first answer after {:.1} s, RSS {:.1} MiB",
        started.elapsed().as_secs_f64().max(load.as_secs_f64()),
        all.rss_mib()
    );

    // Hit path: the same resident tenant on both sidecars, rounds alternating.
    allowed(&mut on_demand.client, "t0").await;
    let (mut od, mut every) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        every.extend(hits(&mut all.client, "t0", s.hits).await);
        od.extend(hits(&mut on_demand.client, "t0", s.hits).await);
    }
    println!("ondemand: Check of a resident tenant, sequential, on-demand sidecar: {}", percentiles(&mut od));
    println!("ondemand: Check of a resident tenant, sequential, all-resident sidecar: {}", percentiles(&mut every));
}
