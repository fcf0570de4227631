//! A real `nats-server` with JetStream for tests, on a private port with its own storage
//! directory, and the real `rolegate publish`. scripts/test.sh installs Debian's `nats-server`
//! when it is missing; without it a test fails, unless skipped with `ROLEGATE_SKIP_NATS=1`.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running (or stopped) nats-server that keeps its port and stored streams across restarts.
pub struct Nats {
    child: Option<Child>,
    pub port: u16,
    dir: tempfile::TempDir,
}

/// The server binary, or `None` when NATS tests are skipped.
fn binary() -> Option<String> {
    let found = ["nats-server", "/usr/sbin/nats-server", "/usr/bin/nats-server"]
        .into_iter()
        .find(|b| Command::new(b).arg("--version").output().is_ok_and(|o| o.status.success()));
    match found {
        Some(b) => Some(b.to_owned()),
        None if std::env::var("ROLEGATE_SKIP_NATS").as_deref() == Ok("1") => {
            eprintln!("skipped: ROLEGATE_SKIP_NATS=1");
            None
        }
        None => panic!(
            "nats-server is not installed: `apt-get install nats-server` (scripts/test.sh does), or skip these \
             tests explicitly with ROLEGATE_SKIP_NATS=1"
        ),
    }
}

impl Nats {
    /// Starts a server on a free port; `None` when NATS tests are skipped.
    pub fn start() -> Option<Nats> {
        binary()?;
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut nats = Nats { child: None, port, dir: tempfile::tempdir().unwrap() };
        nats.resume();
        Some(nats)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Starts the server again on the same port and storage, and waits until it accepts connections.
    pub fn resume(&mut self) {
        let bin = binary().expect("nats-server");
        let store = self.dir.path().join("js");
        let child = Command::new(bin)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string(), "-js", "-sd", store.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start nats-server");
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(std::time::Instant::now() < deadline, "nats-server did not listen on {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Stops the server (SIGKILL: a crash or a partition, as clients see it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Nats {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A running `rolegate publish`, its log echoed to the test's output.
pub struct Publisher {
    pub child: Child,
}

impl Publisher {
    /// Starts `rolegate publish --source DSN --nats URL` with extra flags.
    pub fn start(dsn: &str, nats: &str, extra: &[&str]) -> Publisher {
        let mut child = Command::new(super::pg::rolegate_bin())
            .args(["publish", "--source", dsn, "--nats", nats, "--reload-poll", "200ms"])
            .args(extra)
            .env("ROLEGATE_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start rolegate publish");
        let stderr = child.stderr.take().unwrap();
        let pid = child.id();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                eprintln!("[publish {pid}] {line}");
            }
        });
        Publisher { child }
    }

    /// SIGKILL, as a crashed pod.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        self.kill();
    }
}
