//! Accepting connections without spinning: when `accept` fails (the open-file limit reached,
//! `EMFILE`/`ENFILE`, or anything else), the listener waits before trying again, doubling the
//! wait from 10 ms to 1 s, instead of retrying at once on a busy core.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream, UnixListener, UnixStream};
use tokio::time::Sleep;

/// The first wait after a failed `accept`.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// The longest wait between two attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// A listener whose connections can be polled for.
pub trait Accept: Send + Unpin {
    /// The accepted connection.
    type Conn;
    /// Polls for the next connection.
    fn poll_conn(&self, cx: &mut Context<'_>) -> Poll<io::Result<Self::Conn>>;
}

impl Accept for TcpListener {
    type Conn = TcpStream;

    fn poll_conn(&self, cx: &mut Context<'_>) -> Poll<io::Result<TcpStream>> {
        let (conn, _) = ready!(self.poll_accept(cx))?;
        // Decisions are small messages: never wait to coalesce them.
        let _ = conn.set_nodelay(true);
        Poll::Ready(Ok(conn))
    }
}

impl Accept for UnixListener {
    type Conn = UnixStream;

    fn poll_conn(&self, cx: &mut Context<'_>) -> Poll<io::Result<UnixStream>> {
        self.poll_accept(cx).map_ok(|(conn, _)| conn)
    }
}

/// The connections of a listener as a stream that never ends and never yields an error: a
/// failed `accept` is logged and retried after a backoff.
pub struct Incoming<L> {
    listener: L,
    /// Names the listener in logs.
    name: String,
    wait: Option<Pin<Box<Sleep>>>,
    backoff: Duration,
}

impl<L: Accept> Incoming<L> {
    /// Accepts from `listener`, named `name` in logs.
    pub fn new(listener: L, name: impl Into<String>) -> Self {
        Incoming { listener, name: name.into(), wait: None, backoff: MIN_BACKOFF }
    }

    /// The next connection.
    pub async fn next(&mut self) -> L::Conn {
        std::future::poll_fn(|cx| self.poll_conn(cx)).await
    }

    fn poll_conn(&mut self, cx: &mut Context<'_>) -> Poll<L::Conn> {
        loop {
            if let Some(wait) = self.wait.as_mut() {
                ready!(wait.as_mut().poll(cx));
                self.wait = None;
            }
            match ready!(self.listener.poll_conn(cx)) {
                Ok(conn) => {
                    self.backoff = MIN_BACKOFF;
                    return Poll::Ready(conn);
                }
                Err(e) => {
                    // Logged once per run of failures, not once per attempt.
                    if self.backoff == MIN_BACKOFF {
                        tracing::warn!("cannot accept a connection on {}: {e}; retrying with backoff", self.name);
                    }
                    self.wait = Some(Box::pin(tokio::time::sleep(self.backoff)));
                    self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
    }
}

impl<L: Accept> tokio_stream::Stream for Incoming<L> {
    type Item = io::Result<L::Conn>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_conn(cx).map(|conn| Some(Ok(conn)))
    }
}
