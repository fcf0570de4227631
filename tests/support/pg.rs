//! A real PostgreSQL for tests: `ROLEGATE_TEST_PG` names a server (scripts/test.sh starts one
//! with scripts/pg.sh); every test gets a database of its own. Without the variable a test
//! fails, unless it is skipped explicitly with `ROLEGATE_SKIP_PG=1` (scripts/test.sh never does).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

/// The server's DSN, or `None` when PostgreSQL tests are skipped.
pub fn server() -> Option<String> {
    match std::env::var("ROLEGATE_TEST_PG") {
        Ok(dsn) if !dsn.is_empty() => Some(dsn),
        _ if std::env::var("ROLEGATE_SKIP_PG").as_deref() == Ok("1") => {
            eprintln!("skipped: ROLEGATE_SKIP_PG=1");
            None
        }
        _ => panic!(
            "ROLEGATE_TEST_PG is unset: start a server with `scripts/pg.sh start` and \
             `eval \"$(scripts/pg.sh env)\"`, or skip these tests explicitly with ROLEGATE_SKIP_PG=1"
        ),
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

/// Connects with tokio-postgres, driving the connection on a task.
pub async fn connect(dsn: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(dsn, tokio_postgres::NoTls).await.expect("connect to postgres");
    tokio::spawn(connection);
    client
}

/// A fresh, migrated database named `rolegate_test_<name>` on the test server; `None` when
/// PostgreSQL tests are skipped.
pub async fn database(name: &str) -> Option<String> {
    let server = server()?;
    Some(fresh(&server, name).await)
}

/// A fresh, migrated database on `server`.
pub async fn fresh(server: &str, name: &str) -> String {
    let admin = connect(server).await;
    let db = format!("rolegate_test_{name}");
    admin.batch_execute(&format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)")).await.expect("drop database");
    admin.batch_execute(&format!("CREATE DATABASE {db}")).await.expect("create database");
    let dsn = with_db(server, &db);
    rolegate(&["migrate", "--dsn", &dsn]);
    dsn
}

/// Runs the `rolegate` binary and expects success; returns its standard output.
pub fn rolegate(args: &[&str]) -> String {
    let out = Command::new(rolegate_bin()).args(args).output().expect("run rolegate");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "rolegate {args:?} failed:\n{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    stdout
}

/// Imports a policy directory.
pub fn import(dir: &Path, dsn: &str) {
    rolegate(&["import", dir.to_str().unwrap(), "--to", dsn]);
}

/// `who` replies to conversation `c-1` of [`desk`] assigned to them.
pub fn reply(tenant: &str, who: &str, min_revision: u64) -> rolegate::api::CheckRequest {
    let assignee = rolegate::api::AttrValue { kind: Some(rolegate::api::attr_value::Kind::Text(who.into())) };
    rolegate::api::CheckRequest {
        tenant: tenant.into(),
        principal: who.into(),
        action: "conversation.reply".into(),
        resource: Some(rolegate::api::Resource {
            kind: "conversation".into(),
            id: "c-1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), assignee)].into(),
        }),
        context: None,
        min_revision,
    }
}

/// A one-tenant desk: `rep` and `other` reply to conversations assigned to them.
pub async fn desk(client: &tokio_postgres::Client, tenant: &str) {
    let doc = format!(
        "tenant: {tenant}\nschema: {{conversation: [view, reply], customer: [export]}}\n\
         roles:\n  agent: {{allow: [conversation.view, conversation.reply]}}\n  exporter: {{allow: [customer.export]}}\n"
    );
    client
        .execute("INSERT INTO rolegate.tenants (id, document) VALUES ($1, $2)", &[&tenant, &doc])
        .await
        .expect("insert tenant");
    for member in ["rep", "other"] {
        client
            .execute("INSERT INTO rolegate.members (tenant, id) VALUES ($1, $2)", &[&tenant, &member])
            .await
            .expect("insert member");
        client
            .execute(
                "INSERT INTO rolegate.bindings (tenant, member, role, scope) VALUES ($1, $2, 'agent', '{\"relation\": \"assignee\"}')",
                &[&tenant, &member],
            )
            .await
            .expect("insert binding");
    }
}

/// Runs `sql` in a transaction and returns the tenant's revision as the writer sees it.
pub async fn write(client: &mut tokio_postgres::Client, tenant: &str, sql: &str) -> u64 {
    let tx = client.transaction().await.expect("begin");
    tx.batch_execute(sql).await.unwrap_or_else(|e| panic!("{sql}: {e}"));
    let revision: i64 = tx.query_one("SELECT rolegate.revision($1)", &[&tenant]).await.expect("revision").get(0);
    tx.commit().await.expect("commit");
    revision as u64
}

/// A TCP proxy in front of PostgreSQL that a test can cut: closed, it drops every connection
/// it holds and every new one, as an unreachable database would.
pub struct Proxy {
    /// The proxy's port on 127.0.0.1.
    pub port: u16,
    open: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Proxy {
    /// Listens on an ephemeral port and forwards to `target` while open.
    pub async fn start(target: SocketAddr, open: bool) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let open = Arc::new(AtomicBool::new(open));
        let links: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (is_open, held) = (open.clone(), links.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !is_open.load(Ordering::SeqCst) {
                    continue;
                }
                let link = tokio::spawn(async move {
                    if let Ok(mut outbound) = TcpStream::connect(target).await {
                        let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                    }
                });
                held.lock().await.push(link);
            }
        });
        Proxy { port, open, links }
    }

    /// Opens or cuts the proxy.
    pub async fn set_open(&self, open: bool) {
        self.open.store(open, Ordering::SeqCst);
        if !open {
            for link in self.links.lock().await.drain(..) {
                link.abort();
            }
        }
    }

    /// A DSN through the proxy for `dsn`'s user and database.
    pub fn dsn(&self, dsn: &str) -> String {
        let cfg: tokio_postgres::Config = dsn.parse().unwrap();
        format!(
            "postgres://{}@127.0.0.1:{}/{}",
            cfg.get_user().unwrap_or("postgres"),
            self.port,
            cfg.get_dbname().unwrap_or("postgres")
        )
    }
}

/// The `rolegate` binary: cargo's own path in this package's tests; elsewhere (the PostgreSQL
/// bench of `crates/bench`) `ROLEGATE_BIN`, which `scripts/bench-pg.sh` sets after building it,
/// or else the binary beside the running one's `deps/` folder (`cargo test --workspace` builds it).
pub fn rolegate_bin() -> std::path::PathBuf {
    if let Some(path) = option_env!("CARGO_BIN_EXE_rolegate") {
        return path.into();
    }
    if let Some(path) = std::env::var_os("ROLEGATE_BIN") {
        return path.into();
    }
    let exe = std::env::current_exe().expect("the path of the running test");
    let beside = exe.parent().and_then(|deps| deps.parent()).map(|dir| dir.join("rolegate"));
    beside.filter(|p| p.exists()).expect("set ROLEGATE_BIN to the rolegate binary (cargo build --bin rolegate)")
}

/// The TCP address of `dsn`'s server.
pub fn pg_addr(dsn: &str) -> SocketAddr {
    let cfg: tokio_postgres::Config = dsn.parse().unwrap();
    let host = match cfg.get_hosts().first() {
        Some(tokio_postgres::config::Host::Tcp(h)) => h.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    format!("{host}:{}", cfg.get_ports().first().copied().unwrap_or(5432)).parse().unwrap()
}

/// A PostgreSQL of its own (scripts/pg.sh on a free port and a private data directory), which a
/// test may stop, kill and start; removed when dropped.
pub struct Cluster {
    pub env: Vec<(String, String)>,
    pub dsn: String,
    /// The data directory: `postmaster.pid` names the server's process.
    pub data: String,
}

impl Cluster {
    pub fn start(name: &str) -> Cluster {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = format!("/tmp/rolegate-pg-{name}-{}", std::process::id());
        let env =
            vec![("ROLEGATE_PG_PORT".to_owned(), port.to_string()), ("ROLEGATE_PG_DATA".to_owned(), data.clone())];
        let cluster = Cluster { env, dsn: format!("postgres://postgres@127.0.0.1:{port}/postgres"), data };
        cluster.pg_sh("start");
        cluster
    }

    pub fn pg_sh(&self, command: &str) {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh");
        let status =
            Command::new(script).arg(command).envs(self.env.iter().cloned()).stdout(Stdio::null()).status().unwrap();
        assert!(status.success(), "scripts/pg.sh {command} failed");
    }

    /// The postmaster's process id, from `postmaster.pid`.
    pub fn postmaster(&self) -> u32 {
        let text = std::fs::read_to_string(format!("{}/postmaster.pid", self.data)).expect("postmaster.pid");
        text.lines().next().and_then(|l| l.trim().parse().ok()).expect("a pid on the first line of postmaster.pid")
    }

    /// The postmaster and every process it started (its backends and helpers).
    pub fn processes(&self) -> Vec<u32> {
        let postmaster = self.postmaster();
        let mut pids = vec![postmaster];
        for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<u32>().ok()) else { continue };
            let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
            // `pid (comm) state ppid ...`: the command may hold spaces, the fields after `)` do not.
            let ppid = stat.rsplit_once(')').and_then(|(_, rest)| rest.split_whitespace().nth(1)?.parse::<u32>().ok());
            if ppid == Some(postmaster) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Sends `signal` (`KILL`, `STOP`, `CONT`) to the given processes; one that has exited since
    /// it was listed is skipped.
    pub fn signal(&self, signal: &str, pids: &[u32]) {
        for pid in pids {
            let _ = Command::new("kill").arg(format!("-{signal}")).arg(pid.to_string()).stderr(Stdio::null()).status();
        }
    }
}

impl Cluster {
    /// Kills the server with SIGKILL, every process of it, as a crash or the OOM killer would.
    /// Its lock files (`postmaster.pid`, the socket's) are removed once they are dead: where
    /// nothing reaps orphans (a container whose first process is not an init), the dead
    /// postmaster lingers as a zombie that `pg_ctl` and a new postmaster take for a running one.
    pub fn kill(&self) {
        let pids = self.processes();
        self.signal("KILL", &pids);
        let dead = |pid: &u32| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .map_or(true, |stat| stat.rsplit_once(')').is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')))
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !pids.iter().all(dead) {
            assert!(std::time::Instant::now() < deadline, "the killed server's processes {pids:?} did not die");
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let _ = std::fs::remove_file(format!("{}/postmaster.pid", self.data));
        for entry in std::fs::read_dir(&self.data).into_iter().flatten().flatten() {
            if entry.file_name().to_str().is_some_and(|n| n.starts_with(".s.PGSQL.") && n.ends_with(".lock")) {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Never panics: this may run while a failed test unwinds. A stopped server is continued
        // first, or it would never stop; one that will not stop is killed.
        let pids = std::fs::read_to_string(format!("{}/postmaster.pid", self.data)).ok().map(|_| self.processes());
        if let Some(pids) = &pids {
            self.signal("CONT", pids);
        }
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/pg.sh");
        let clean = Command::new(script).arg("clean").envs(self.env.iter().cloned()).stdout(Stdio::null()).status();
        if !clean.is_ok_and(|s| s.success()) {
            if let Some(pids) = &pids {
                self.signal("KILL", pids);
            }
            let _ = std::fs::remove_dir_all(&self.data);
        }
    }
}
