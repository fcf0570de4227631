//! TLS on the gRPC TCP listeners: the server certificate and key, and optionally the
//! certificate authority client certificates must chain to (mTLS). The files are read again
//! every [`RELOAD_EVERY`]; when their content changed, a new rustls configuration is built and
//! used for every connection accepted from then on, while connections already open keep theirs.
//! A file that cannot be loaded (unreadable, not PEM, a key that does not match the certificate:
//! a rotation caught half-way) is logged and counted once and the previous credentials stay.

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use rolegate_source::pem;
use rolegate_telemetry::Metrics;
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;

/// How often the files are read for changes. Polling, not file events: a Kubernetes secret
/// volume swaps a symlink, which file watchers report unreliably.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Where the listener's credentials are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The server certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM).
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by one of these authorities (PEM).
    pub client_ca: Option<PathBuf>,
}

/// The files' bytes, as last read.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Contents {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    fn read(&self) -> Result<Contents, String> {
        Ok(Contents {
            cert: pem::read(&self.cert)?,
            key: pem::read(&self.key)?,
            client_ca: self.client_ca.as_deref().map(pem::read).transpose()?,
        })
    }

    /// A rustls configuration from the files' contents: TLS 1.2 and 1.3, HTTP/2 only.
    fn build(&self, c: &Contents) -> Result<ServerConfig, String> {
        let provider = pem::provider();
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?;
        let builder = match (&self.client_ca, &c.client_ca) {
            (Some(path), Some(bytes)) => {
                let roots = pem::roots_in(path, bytes)?;
                let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider)
                    .build()
                    .map_err(|e| format!("{}: cannot verify clients with it: {e}", path.display()))?;
                builder.with_client_cert_verifier(verifier)
            }
            _ => builder.with_no_client_auth(),
        };
        let certs = pem::certs_in(&self.cert, &c.cert)?;
        let key = pem::key_in(&self.key, &c.key)?;
        let mut config = builder.with_single_cert(certs, key).map_err(|e| {
            format!("{} and {}: not a usable certificate and key pair: {e}", self.cert.display(), self.key.display())
        })?;
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

/// The listeners' current TLS configuration, replaced when the files change.
#[derive(Debug)]
pub struct Credentials {
    files: TlsFiles,
    current: ArcSwap<ServerConfig>,
    /// The contents behind `current`, and what the files held (or why they could not be read)
    /// when they last failed to load, so a bad file is reported once, not every second.
    seen: Mutex<(Contents, Option<Result<Contents, String>>)>,
    metrics: Arc<Metrics>,
}

impl Credentials {
    /// Loads the files; at startup a bad file is an error, not a fallback.
    pub fn load(files: TlsFiles, metrics: Arc<Metrics>) -> Result<Arc<Credentials>, String> {
        let contents = files.read()?;
        let config = files.build(&contents)?;
        Ok(Arc::new(Credentials {
            files,
            current: ArcSwap::from_pointee(config),
            seen: Mutex::new((contents, None)),
            metrics,
        }))
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }

    /// The configuration for the next handshake.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.current.load_full()
    }

    /// Reads the files again and, if they changed and load, uses them from now on. Returns
    /// whether the configuration was replaced.
    pub fn reload(&self) -> bool {
        let Ok(mut seen) = self.seen.lock() else { return false };
        let read = self.files.read();
        if read.as_ref().is_ok_and(|c| *c == seen.0) || seen.1.as_ref() == Some(&read) {
            return false;
        }
        match read.clone().and_then(|c| self.files.build(&c).map(|config| (c, config))) {
            Ok((contents, config)) => {
                self.current.store(Arc::new(config));
                *seen = (contents, None);
                tracing::info!(cert = %self.files.cert.display(), "TLS credentials reloaded");
                true
            }
            Err(e) => {
                self.metrics.access.tls_reload_failures.fetch_add(1, Ordering::Relaxed);
                tracing::error!("cannot reload the TLS credentials, keeping the previous ones: {e}");
                seen.1 = Some(read);
                false
            }
        }
    }

    /// Reloads every [`RELOAD_EVERY`] for as long as the process runs.
    pub fn spawn_reload(self: &Arc<Self>) {
        let this = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(RELOAD_EVERY);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                let me = this.clone();
                let _ = tokio::task::spawn_blocking(move || me.reload()).await;
            }
        });
    }
}
