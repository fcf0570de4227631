//! rolegate: an authorization sidecar for customer-messaging and CRM backends.
//!
//! The pure core is [`policy`] (documents and their compiler) and [`engine`] (decisions); the
//! edges around it are the command line, the server, the sources and telemetry.

pub mod api;
pub mod cache;
pub mod cli;
pub mod engine;
pub mod policy;
pub mod server;
pub mod source;
pub mod store;
pub mod suggest;
pub mod suite;
pub mod telemetry;
