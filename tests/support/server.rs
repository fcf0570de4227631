//! Runs the real `rolegate serve` binary on an ephemeral port and talks to it over gRPC.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rolegate::api::authorizer_client::AuthorizerClient;
use tonic::transport::Channel;

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The admin HTTP address, when `--admin-listen` was given.
    pub admin: Option<String>,
    pub lines: mpsc::Receiver<String>,
}

impl Server {
    /// Starts the server on `dir` with extra flags and waits for its `listening on` lines.
    pub fn start(dir: &Path, extra: &[&str]) -> Server {
        Self::start_with_env(dir, extra, &[])
    }

    /// Like `start`, with extra environment variables.
    pub fn start_with_env(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        // Unless the policy directory is missing on purpose, wait for the first snapshot.
        let wants_ready = dir.exists();
        let dir = dir.to_str().expect("a UTF-8 path");
        let flags = ["--policies", dir, "--reload-debounce", "20ms", "--reload-poll", "200ms"];
        Self::launch(&flags, extra, env, wants_ready)
    }

    /// Starts the server on `dir` with its own reload timing; waits for the first snapshot only
    /// when `wait_ready`.
    pub fn start_tuned(dir: &Path, debounce: &str, poll: &str, extra: &[&str], wait_ready: bool) -> Server {
        let dir = dir.to_str().expect("a UTF-8 path");
        let flags = ["--policies", dir, "--reload-debounce", debounce, "--reload-poll", poll];
        Self::launch(&flags, extra, &[], wait_ready)
    }

    /// Starts the server on a PostgreSQL DSN with extra flags; it may not be ready yet (see
    /// `ready`).
    pub fn start_postgres(dsn: &str, extra: &[&str]) -> Server {
        Self::launch(&["--source", dsn], extra, &[], false)
    }

    fn launch(source: &[&str], extra: &[&str], env: &[(&str, &str)], wants_ready: bool) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_rolegate"));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd
            .arg("serve")
            .args(source)
            .args(["--listen", "127.0.0.1:0"])
            .args(extra)
            .env("ROLEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rolegate serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[server] {line}");
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Wait until every listener is bound and, when asked, the first snapshot is loaded.
        let wants_admin = extra.contains(&"--admin-listen");
        let wants_unix = extra.iter().any(|a| a.starts_with("unix:"));
        let (mut addr, mut admin, mut unix, mut ready) = (None, None, false, false);
        while addr.is_none() || (wants_admin && admin.is_none()) || (wants_unix && !unix) || (wants_ready && !ready) {
            let line = lines.recv_timeout(Duration::from_secs(30)).expect("server did not start");
            ready |= line.contains("policy snapshot loaded");
            let Some(rest) = line.split("listening on ").nth(1).map(str::trim) else { continue };
            if line.contains("admin listening") {
                admin = Some(rest.to_owned());
            } else if rest.starts_with("unix:") {
                unix = true;
            } else {
                addr = Some(rest.to_owned());
            }
        }
        Server { child, addr: addr.unwrap_or_default(), admin, lines }
    }

    /// The Prometheus text of `/metrics` (needs `--admin-listen`).
    pub async fn metrics(&self) -> String {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let admin = self.admin.as_deref().expect("started with --admin-listen");
        let mut conn = tokio::net::TcpStream::connect(admin).await.unwrap();
        conn.write_all(b"GET /metrics HTTP/1.1\r\nhost: x\r\n\r\n").await.unwrap();
        let mut body = String::new();
        conn.read_to_string(&mut body).await.unwrap();
        body
    }

    /// The value of one metric line of `/metrics`, e.g. `rolegate_ready` or
    /// `rolegate_reloads_total{source="dir",result="ok"}`; 0 when absent.
    pub async fn metric(&self, name: &str) -> f64 {
        let text = self.metrics().await;
        let prefix = format!("{name} ");
        text.lines().find_map(|l| l.strip_prefix(&prefix)).and_then(|v| v.trim().parse().ok()).unwrap_or(0.0)
    }

    /// Waits until the server reports SERVING.
    pub async fn ready(&self) {
        use tonic_health::pb::health_check_response::ServingStatus;
        let channel = rolegate::cli::connect(&self.addr).await.expect("connect");
        let mut health = tonic_health::pb::health_client::HealthClient::new(channel);
        for _ in 0..400 {
            let ask = tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Authorizer".into() };
            if health.check(ask).await.is_ok_and(|r| r.into_inner().status == ServingStatus::Serving as i32) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("the server never became SERVING");
    }

    pub async fn client(&self) -> AuthorizerClient<Channel> {
        AuthorizerClient::new(rolegate::cli::connect(&self.addr).await.expect("connect"))
    }

    pub fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        for _ in 0..100 {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("server did not exit after SIGTERM");
    }
}

fn unsafe_sigterm(pid: u32) {
    let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status();
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
