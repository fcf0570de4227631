//! Helpers shared by integration tests.
#![allow(dead_code)]

pub mod certs;
pub mod h2wire;
pub mod nats;
pub mod pg;
pub mod reference;
pub mod server;
pub mod wait;

pub use wait::wait_until;
