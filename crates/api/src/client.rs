//! Dialing rolegate: one connector for `host:port`, `http(s)://…` and `unix:PATH`, used by the
//! CLI's `check --server`, the tests and the load generator; over TLS (and mTLS) when given
//! [`ClientTls`].

use std::path::PathBuf;

use anyhow::Context as _;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity, Uri};

/// How to reach a TLS listener: the authority to trust, optionally a client certificate, and
/// the name the server's certificate must carry.
#[derive(Clone, Debug, Default)]
pub struct ClientTls {
    /// The certificate authority (PEM) the server's certificate must chain to.
    pub ca: PathBuf,
    /// The client certificate and its key (PEM), for a listener requiring them.
    pub identity: Option<(PathBuf, PathBuf)>,
    /// The name to verify the server's certificate against; the address's host when unset.
    pub server_name: Option<String>,
}

impl ClientTls {
    /// tonic's TLS settings, reading the files.
    pub fn config(&self) -> anyhow::Result<ClientTlsConfig> {
        let read = |p: &PathBuf| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let mut config = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read(&self.ca)?));
        if let Some((cert, key)) = &self.identity {
            config = config.identity(Identity::from_pem(read(cert)?, read(key)?));
        }
        if let Some(name) = &self.server_name {
            config = config.domain_name(name);
        }
        Ok(config)
    }
}

/// Connects a gRPC channel to `host:port` or `unix:PATH`.
pub async fn connect(addr: &str) -> anyhow::Result<Channel> {
    connect_with(addr, None).await
}

/// Connects a gRPC channel to `host:port` or `unix:PATH`, over TLS when `tls` is given.
pub async fn connect_with(addr: &str, tls: Option<&ClientTls>) -> anyhow::Result<Channel> {
    match addr.strip_prefix("unix:") {
        Some(_) if tls.is_some() => anyhow::bail!("TLS applies to TCP addresses, not `{addr}`"),
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
            let scheme = if tls.is_some() { "https" } else { "http" };
            let uri = if addr.contains("://") { addr.to_owned() } else { format!("{scheme}://{addr}") };
            let mut endpoint = Endpoint::try_from(uri)?;
            if let Some(tls) = tls {
                endpoint = endpoint.tls_config(tls.config()?)?;
            }
            Ok(endpoint.connect().await.with_context(|| format!("cannot connect to {addr}"))?)
        }
    }
}
