//! Dialing rolegate: one connector for `host:port`, `http(s)://…` and `unix:PATH`, used by the
//! CLI's `check --server`, the tests and the load generator.

use anyhow::Context as _;
use tonic::transport::{Channel, Endpoint, Uri};

/// Connects a gRPC channel to `host:port` or `unix:PATH`.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    match addr.strip_prefix("unix:") {
        Some(path) => {
            let path = path.to_owned();
            let connector = tower::service_fn(move |_: Uri| {
                let path = path.clone();
                async move {
                    let stream = tokio::net::UnixStream::connect(path).await?;
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                }
            });
            Ok(Endpoint::try_from("http://localhost")?.connect_with_connector(connector).await?)
        }
        None => {
            let uri = if addr.contains("://") { addr.to_owned() } else { format!("http://{addr}") };
            Ok(Endpoint::try_from(uri)?.connect().await.with_context(|| format!("cannot connect to {addr}"))?)
        }
    }
}
