//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod h2wire;
pub mod nats;
pub mod otlp;
pub mod pg;
pub mod reference;
pub mod server;
pub mod wait;

pub use wait::wait_until;

/// This process's user id, as a server sees it through `SO_PEERCRED` on a Unix socket.
pub fn uid() -> u32 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let line = status.lines().find(|l| l.starts_with("Uid:")).expect("a Uid line");
    line.split_whitespace().nth(1).and_then(|u| u.parse().ok()).expect("a numeric uid")
}
