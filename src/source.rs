//! Where policies come from. A source only reads raw documents and calls the pure compiler; it
//! publishes the result or keeps the last good snapshot.

pub mod dir;
pub mod postgres;
pub mod watch;
