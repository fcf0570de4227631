//! A small W3C WebDriver client over plain HTTP/1.1, enough to drive headless Chromium through
//! Debian's `chromedriver`: sessions, navigation, elements, keys, scripts, screenshots and two
//! DevTools commands (viewport size, `prefers-color-scheme`).

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value as Json, json};

/// The flags the console test starts Chromium with: headless, and nothing that reaches the
/// network or differs between runs.
pub const CHROMIUM_FLAGS: [&str; 8] = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
];

/// One HTTP/1.1 exchange on a fresh connection (`Connection: close`): the status and body.
pub fn http(addr: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> (u16, String) {
    let mut conn = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    conn.set_read_timeout(Some(Duration::from_secs(120))).expect("read timeout");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\nContent-Length: {}\r\n", body.len());
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: {addr}\r\n"));
    }
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() {
        head.push_str("Content-Type: application/json\r\n");
    }
    head.push_str("\r\n");
    conn.write_all(head.as_bytes()).and_then(|_| conn.write_all(body.as_bytes())).expect("send request");
    // Read the head, then exactly Content-Length bytes: chromedriver keeps the connection open.
    let mut raw = Vec::new();
    let mut buf = [0u8; 16 * 1024];
    let (head, body_start) = loop {
        let n = conn.read(&mut buf).expect("read response");
        assert!(n > 0, "connection closed before the response head from {addr}{path}");
        raw.extend_from_slice(&buf[..n]);
        if let Some(i) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break (String::from_utf8_lossy(&raw[..i]).into_owned(), i + 4);
        }
    };
    let lower = head.to_ascii_lowercase();
    assert!(!lower.contains("transfer-encoding: chunked"), "chunked answer from {addr}{path}");
    let length =
        lower.lines().find_map(|l| l.strip_prefix("content-length:")).and_then(|v| v.trim().parse::<usize>().ok());
    let mut body = raw.split_off(body_start);
    match length {
        Some(len) => {
            while body.len() < len {
                let n = conn.read(&mut buf).expect("read body");
                assert!(n > 0, "connection closed in the body from {addr}{path}");
                body.extend_from_slice(&buf[..n]);
            }
        }
        None => {
            conn.read_to_end(&mut body).expect("read body");
        }
    }
    let status =
        head.split(' ').nth(1).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("bad status line: {head}"));
    (status, String::from_utf8_lossy(&body).into_owned())
}

/// A free loopback port (bound, then released).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).expect("free port").port()
}

/// Finds a program on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?.to_str()?.split(':').map(|d| Path::new(d).join(name)).find(|p| p.is_file())
}

/// A running `chromedriver`, stopped on drop.
pub struct Driver {
    child: Child,
    addr: SocketAddr,
}

impl Driver {
    /// Starts `chromedriver` on a free loopback port and waits until it is ready.
    pub fn start(chromedriver: &Path) -> Driver {
        let port = free_port();
        let child = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", chromedriver.display()));
        let driver = Driver { child, addr: SocketAddr::from(([127, 0, 0, 1], port)) };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let ready = TcpStream::connect(driver.addr).is_ok() && {
                let (status, body) = http(driver.addr, "GET", "/status", &[], "");
                status == 200 && body.contains("\"ready\":true")
            };
            if ready {
                return driver;
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A new browser session: headless Chromium with a fresh profile in `profile`.
    pub fn session(&self, chromium: &Path, profile: &Path) -> Session {
        let mut args: Vec<String> = CHROMIUM_FLAGS.iter().map(|s| s.to_string()).collect();
        args.push(format!("--user-data-dir={}", profile.display()));
        args.push("--window-size=1280,800".to_owned());
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {"binary": chromium, "args": args}
        }}});
        let answer = call(self.addr, "POST", "/session", &caps);
        let id = answer["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_owned();
        Session { addr: self.addr, id }
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One WebDriver command; panics on an error answer, returns `value`.
fn call(addr: SocketAddr, method: &str, path: &str, body: &Json) -> Json {
    let text = if body.is_null() { String::new() } else { body.to_string() };
    let (status, answer) = http(addr, method, path, &[], &text);
    let json: Json = serde_json::from_str(&answer).unwrap_or_else(|e| panic!("{method} {path}: {e}: {answer}"));
    assert_eq!(status, 200, "{method} {path} {body}: {json}");
    json["value"].clone()
}

/// A browser session, deleted on drop.
pub struct Session {
    addr: SocketAddr,
    id: String,
}

/// The key WebDriver sends for the down arrow.
pub const ARROW_DOWN: &str = "\u{E015}";

impl Session {
    fn cmd(&self, method: &str, path: &str, body: Json) -> Json {
        call(self.addr, method, &format!("/session/{}{path}", self.id), &body)
    }

    /// Loads `url`.
    pub fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url}));
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: Json) -> Json {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args}))
    }

    /// Waits until `script` returns a truthy value; returns it.
    pub fn wait(&self, script: &str, what: &str) -> Json {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let v = self.eval(script, json!([]));
            if !(v.is_null() || v == json!(false) || v == json!("")) {
                return v;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// The element `css` selects (the first).
    pub fn find(&self, css: &str) -> String {
        let v = self.cmd("POST", "/element", json!({"using": "css selector", "value": css}));
        v.as_object()
            .and_then(|o| o.values().next())
            .and_then(Json::as_str)
            .unwrap_or_else(|| panic!("no `{css}`"))
            .to_owned()
    }

    /// Clicks the element `css` selects.
    pub fn click(&self, css: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/click"), json!({}));
    }

    /// Clears the field `css` selects and types `text` into it.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/clear"), json!({}));
        if !text.is_empty() {
            self.cmd("POST", &format!("/element/{e}/value"), json!({"text": text}));
        }
    }

    /// Sends keys to the focused element.
    pub fn keys(&self, css: &str, text: &str) {
        let e = self.find(css);
        self.cmd("POST", &format!("/element/{e}/value"), json!({"text": text}));
    }

    /// Runs a DevTools command.
    pub fn cdp(&self, cmd: &str, params: Json) -> Json {
        self.cmd("POST", "/goog/cdp/execute", json!({"cmd": cmd, "params": params}))
    }

    /// Sets the viewport to `width`×`height` CSS pixels and the colour scheme to `dark` or light.
    pub fn emulate(&self, width: u32, height: u32, dark: bool) {
        self.cdp(
            "Emulation.setDeviceMetricsOverride",
            json!({"width": width, "height": height, "deviceScaleFactor": 1, "mobile": false}),
        );
        let scheme = if dark { "dark" } else { "light" };
        self.cdp(
            "Emulation.setEmulatedMedia",
            json!({"features": [{"name": "prefers-color-scheme", "value": scheme}]}),
        );
    }

    /// A PNG of the viewport.
    pub fn screenshot(&self) -> Vec<u8> {
        use base64::Engine as _;
        let v = self.cmd("GET", "/screenshot", Json::Null);
        base64::engine::general_purpose::STANDARD.decode(v.as_str().unwrap_or_default()).expect("screenshot is base64")
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        let _ = http(self.addr, "DELETE", &format!("/session/{}", self.id), &[], "");
    }
}
