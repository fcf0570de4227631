//! The connections a gRPC listener hands to tonic: accepted, through the TLS handshake when the
//! listener has credentials, and labelled with their [`Peer`]. Handshakes run on their own tasks,
//! at most [`MAX_HANDSHAKES`] at once and each within [`HANDSHAKE_TIMEOUT`], so a slow or
//! silent client cannot hold up the others; a failed one is counted and logged at debug level
//! (a port scan must not flood the log).
//!
//! Open connections are bounded by one [`Slots`] for every gRPC and AuthZEN listener
//! (`--max-connections`): a connection accepted while all are taken is closed at once, so memory
//! under a connection flood stays bounded whatever the open-file limit.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::task::{Context, Poll};
use std::time::Duration;

use rolegate_telemetry::Metrics;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use crate::accept::{Accept, Incoming};
use crate::peer::Peer;
use crate::tls::Credentials;

/// Handshakes in progress at once; beyond it, connections wait in the listen backlog.
pub const MAX_HANDSHAKES: usize = 512;
/// Time a client has to complete the TLS handshake.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The transport under a connection.
#[derive(Debug)]
enum Stream {
    Tcp(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
    Unix(UnixStream),
}

/// One accepted connection and who is on the other end.
#[derive(Debug)]
pub struct Conn {
    stream: Stream,
    peer: Peer,
    /// Its place among the open connections, given back when tonic or hyper drops it.
    slot: Option<Slot>,
}

/// The open connections every gRPC and AuthZEN listener shares: at most `--max-connections`.
#[derive(Clone, Debug)]
pub struct Slots {
    open: Arc<Semaphore>,
    metrics: Arc<Metrics>,
}

impl Slots {
    /// At most `max` connections open at once.
    pub fn new(max: usize, metrics: Arc<Metrics>) -> Slots {
        Slots { open: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))), metrics }
    }

    /// A place for one more connection, or `None` when all are taken (counted as refused).
    fn take(&self) -> Option<Slot> {
        match self.open.clone().try_acquire_owned() {
            Ok(permit) => {
                self.metrics.access.connections_open.fetch_add(1, Ordering::Relaxed);
                Some(Slot { _permit: permit, metrics: self.metrics.clone() })
            }
            Err(_) => {
                self.metrics.access.connections_refused.fetch_add(1, Ordering::Relaxed);
                None
            }
        }
    }
}

/// One open connection's place; dropping it frees the place.
#[derive(Debug)]
struct Slot {
    _permit: OwnedSemaphorePermit,
    metrics: Arc<Metrics>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.metrics.access.connections_open.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A transport a listener accepts: made into a [`Conn`], through TLS when there are credentials.
pub trait Transport: Send + Sized + 'static {
    /// The connection, once any handshake is done.
    fn open(self, tls: Option<Arc<Credentials>>) -> impl Future<Output = io::Result<Conn>> + Send;
    /// Whether opening involves a handshake worth running on its own task.
    fn handshakes(tls: &Option<Arc<Credentials>>) -> bool;
}

impl Transport for TcpStream {
    async fn open(self, tls: Option<Arc<Credentials>>) -> io::Result<Conn> {
        let Some(tls) = tls else { return Ok(Conn { stream: Stream::Tcp(self), peer: Peer::default(), slot: None }) };
        let acceptor = tokio_rustls::TlsAcceptor::from(tls.config());
        let stream = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(self))
            .await
            .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "the TLS handshake timed out"))??;
        let peer = stream.get_ref().1.peer_certificates().and_then(|c| c.first()).map(Peer::from_certificate);
        Ok(Conn { stream: Stream::Tls(Box::new(stream)), peer: peer.unwrap_or_default(), slot: None })
    }

    fn handshakes(tls: &Option<Arc<Credentials>>) -> bool {
        tls.is_some()
    }
}

impl Transport for UnixStream {
    async fn open(self, _: Option<Arc<Credentials>>) -> io::Result<Conn> {
        // SO_PEERCRED: the kernel's word on who connected, not the client's.
        let peer = self.peer_cred().map(|c| Peer::from_uid(c.uid())).unwrap_or_default();
        Ok(Conn { stream: Stream::Unix(self), peer, slot: None })
    }

    fn handshakes(_: &Option<Arc<Credentials>>) -> bool {
        false
    }
}

/// A listener's connections, ready for tonic: a stream that ends only when it is dropped.
pub struct Connections {
    rx: mpsc::Receiver<Conn>,
}

impl Connections {
    /// Accepts from `incoming` on a task of its own, through TLS with `tls`, until dropped; a
    /// connection accepted while every one of `open` is taken is closed at once.
    pub fn new<L>(mut incoming: Incoming<L>, tls: Option<Arc<Credentials>>, open: Slots) -> Connections
    where
        L: Accept + 'static,
        L::Conn: Transport,
    {
        let (tx, rx) = mpsc::channel(64);
        let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let metrics = open.metrics.clone();
        tokio::spawn(async move {
            let mut refusing = false;
            loop {
                let Ok(handshake) = handshakes.clone().acquire_owned().await else { return };
                let conn = tokio::select! {
                    conn = incoming.next() => conn,
                    () = tx.closed() => return,
                };
                let Some(place) = open.take() else {
                    // Logged once per run of refusals, not once per connection.
                    if !refusing {
                        tracing::warn!("--max-connections reached: closing new connections until one ends");
                    }
                    refusing = true;
                    drop(conn);
                    continue;
                };
                refusing = false;
                let spawn = L::Conn::handshakes(&tls);
                let (tx, tls, metrics) = (tx.clone(), tls.clone(), metrics.clone());
                let open = async move {
                    match conn.open(tls).await {
                        Ok(mut conn) => {
                            conn.slot = Some(place);
                            let _ = tx.send(conn).await;
                        }
                        Err(e) => {
                            metrics.access.tls_handshake_failures.fetch_add(1, Ordering::Relaxed);
                            tracing::debug!("TLS handshake failed: {e}");
                        }
                    }
                    drop(handshake);
                };
                if spawn {
                    tokio::spawn(open);
                } else {
                    open.await;
                }
            }
        });
        Connections { rx }
    }
}

impl tokio_stream::Stream for Connections {
    type Item = io::Result<Conn>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.rx.poll_recv(cx).map(|conn| conn.map(Ok))
    }
}

impl Connected for Conn {
    type ConnectInfo = Peer;

    fn connect_info(&self) -> Peer {
        self.peer.clone()
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_read(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Tls(s) => Pin::new(s).poll_write(cx, buf),
            Stream::Unix(s) => Pin::new(s).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Tls(s) => Pin::new(s).poll_write_vectored(cx, bufs),
            Stream::Unix(s) => Pin::new(s).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.stream {
            Stream::Tcp(s) => s.is_write_vectored(),
            Stream::Tls(s) => s.is_write_vectored(),
            Stream::Unix(s) => s.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_flush(cx),
            Stream::Tls(s) => Pin::new(s).poll_flush(cx),
            Stream::Unix(s) => Pin::new(s).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().stream {
            Stream::Tcp(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Tls(s) => Pin::new(s).poll_shutdown(cx),
            Stream::Unix(s) => Pin::new(s).poll_shutdown(cx),
        }
    }
}
