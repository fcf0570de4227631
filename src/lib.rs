//! rolegate's command line: `serve`, `validate`, `test`, `check`, `migrate`, `import`,
//! `export`. This crate is the only one that sees every layer; the layers are their own crates
//! (see `docs/architecture.md`), re-exported here under their short names for the tests and
//! examples of this package.

pub mod cli;

pub use rolegate_api as api;
pub use rolegate_engine as engine;
pub use rolegate_policy as policy;
pub use rolegate_policy::suite;
pub use rolegate_server as server;
pub use rolegate_server::cache;
pub use rolegate_source as source;
pub use rolegate_source::store;
pub use rolegate_telemetry as telemetry;
