//! Runs the real `rolegate serve` binary on an ephemeral port and talks to it over gRPC.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use rolegate::api::authorizer_client::AuthorizerClient;
use rolegate::api::{CheckRequest, CheckResponse};
use tokio::task::JoinHandle;
use tonic::transport::Channel;
use tonic::{Code, Response, Status};

pub struct Server {
    pub child: Child,
    pub addr: String,
    /// The admin HTTP address, when `--admin-listen` was given.
    pub admin: Option<String>,
    /// The AuthZEN HTTP address, when `--authzen-listen` was given.
    pub authzen: Option<String>,
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
        let wants_authzen = extra.contains(&"--authzen-listen");
        let wants_unix = extra.iter().any(|a| a.starts_with("unix:"));
        let (mut addr, mut admin, mut authzen, mut unix, mut ready) = (None, None, None, false, false);
        while addr.is_none()
            || (wants_admin && admin.is_none())
            || (wants_authzen && authzen.is_none())
            || (wants_unix && !unix)
            || (wants_ready && !ready)
        {
            let line = lines.recv_timeout(Duration::from_secs(30)).expect("server did not start");
            ready |= line.contains("policy snapshot loaded");
            let Some(rest) = line.split("listening on ").nth(1).map(str::trim) else { continue };
            if line.contains("admin listening") {
                admin = Some(rest.to_owned());
            } else if line.contains("AuthZEN listening") {
                unix |= rest.starts_with("unix:");
                authzen = Some(rest.to_owned());
            } else if rest.starts_with("unix:") {
                unix = true;
            } else {
                addr = Some(rest.to_owned());
            }
        }
        Server { child, addr: addr.unwrap_or_default(), admin, authzen, lines }
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
        super::wait_until("the server to report SERVING", Duration::from_secs(20), async || {
            let ask = tonic_health::pb::HealthCheckRequest { service: "rolegate.v1.Authorizer".into() };
            let status = health.check(ask).await.ok()?.into_inner().status;
            (status == ServingStatus::Serving as i32).then_some(())
        })
        .await;
    }

    /// Waits for a line of the server's log that `matches`, skipping the lines before it; panics
    /// naming `what` when none comes within 15 s.
    pub fn log_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(_) => {}
                Err(_) => panic!("no log line {what} within 15 s"),
            }
        }
    }

    pub async fn client(&self) -> AuthorizerClient<Channel> {
        AuthorizerClient::new(rolegate::cli::connect(&self.addr).await.expect("connect"))
    }

    /// Sends SIGTERM and waits for the process to exit.
    pub async fn terminate(&mut self) -> std::process::ExitStatus {
        unsafe_sigterm(self.child.id());
        let child = &mut self.child;
        super::wait_until("the server to exit after SIGTERM", Duration::from_secs(5), async || {
            child.try_wait().expect("the server's exit status")
        })
        .await
    }
}

/// Sends `call` on a task through `holder` to a server started with `--max-concurrency 1`, and
/// returns once the call is inside the server holding the only slot: a `probe` check through
/// `prober` is then shed. While a probe holds the slot for a moment the call is shed instead,
/// and sent again.
pub async fn hold_the_only_slot(
    holder: &AuthorizerClient<Channel>,
    call: CheckRequest,
    prober: &AuthorizerClient<Channel>,
    probe: CheckRequest,
) -> JoinHandle<Result<Response<CheckResponse>, Status>> {
    let mut caller = holder.clone();
    let held = tokio::spawn(async move {
        loop {
            match caller.check(call.clone()).await {
                Err(e) if e.code() == Code::ResourceExhausted => continue,
                answer => return answer,
            }
        }
    });
    let mut prober = prober.clone();
    super::wait_until("the call to hold the only slot", Duration::from_secs(10), async || {
        let shed = prober.check(probe.clone()).await.is_err_and(|e| e.code() == Code::ResourceExhausted);
        shed.then_some(())
    })
    .await;
    held
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

/// A `conversation.reply` on conversation `c1` assigned to `who`, in tenant `desk`: the request the
/// server, reload and edge tests revoke and restore.
pub fn reply(who: &str, min_revision: u64) -> CheckRequest {
    use rolegate::api::{self, attr_value::Kind};
    CheckRequest {
        tenant: "desk".into(),
        principal: who.into(),
        action: "conversation.reply".into(),
        resource: Some(api::Resource {
            kind: "conversation".into(),
            id: "c1".into(),
            unit: String::new(),
            attrs: [("assignee".to_owned(), api::AttrValue { kind: Some(Kind::Text(who.into())) })].into(),
        }),
        context: None,
        min_revision,
    }
}

/// Tenant `desk`: an agent role granted on assigned conversations to `rep` (with `rep_status`)
/// and `other`, then `extra` (more YAML, or nothing).
pub fn desk_text(rep_status: &str, extra: &str) -> String {
    format!(
        "tenant: desk
schema: {{conversation: [view, reply]}}
roles: {{agent: {{allow: [conversation.view, conversation.reply]}}}}
members:
  - {{id: rep, status: {rep_status}, bindings: [{{role: agent, scope: {{relation: assignee}}}}]}}
  - {{id: other, bindings: [{{role: agent, scope: {{relation: assignee}}}}]}}
{extra}"
    )
}

/// Writes tenant `desk` ([`desk_text`]) as `desk.yaml` in `dir`.
pub fn desk(dir: &Path, rep_status: &str) {
    std::fs::write(dir.join("desk.yaml"), desk_text(rep_status, "")).unwrap();
}
