//! TLS to PostgreSQL with rustls (docs/operations.md, "PostgreSQL over TLS"), for managed
//! databases that refuse plaintext. The DSN takes libpq's settings:
//!
//! - `sslmode`: `disable` (no TLS), `prefer` (TLS when the server offers it, unverified),
//!   `require` (TLS, and the certificate verified against `sslrootcert` when one is given, as
//!   libpq does), `verify-ca` (TLS, the certificate chained to `sslrootcert`), `verify-full`
//!   (also issued for the host connected to).
//! - `sslrootcert`: the certificate authority file (PEM); required by `verify-ca` and
//!   `verify-full`. There is no system store: name the authority your database uses.
//! - `sslcert`, `sslkey`: a client certificate and key (PEM), for servers that want one.
//!
//! tokio-postgres knows only `disable`, `prefer` and `require`, so these settings are taken out
//! of the DSN here and the rest is parsed by tokio-postgres.

use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect};

use crate::pem;

/// How much of the server's certificate is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verify {
    /// Nothing but the handshake's own signatures: encryption against a passive listener only.
    Nothing,
    /// Issued by `sslrootcert`.
    Authority,
    /// Issued by `sslrootcert` for the host connected to.
    Full,
}

/// The TLS settings taken out of a DSN.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TlsParams {
    /// `sslmode`, if given.
    pub mode: Option<String>,
    /// `sslrootcert`.
    pub root_cert: Option<PathBuf>,
    /// `sslcert`.
    pub cert: Option<PathBuf>,
    /// `sslkey`.
    pub key: Option<PathBuf>,
}

/// The DSN without its TLS settings, and those settings.
pub fn split_dsn(dsn: &str) -> Result<(String, TlsParams), String> {
    let mut params = TlsParams::default();
    let mut take = |key: &str, value: &str| -> Result<bool, String> {
        match key {
            "sslmode" => params.mode = Some(value.to_owned()),
            "sslrootcert" => params.root_cert = Some(PathBuf::from(value)),
            "sslcert" => params.cert = Some(PathBuf::from(value)),
            "sslkey" => params.key = Some(PathBuf::from(value)),
            _ => return Ok(false),
        }
        Ok(true)
    };
    let rest = if dsn.starts_with("postgres://") || dsn.starts_with("postgresql://") {
        let Some((base, query)) = dsn.split_once('?') else { return Ok((dsn.to_owned(), params)) };
        let mut kept = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            if !take(k, &percent_decode(v)?)? {
                kept.push(pair);
            }
        }
        if kept.is_empty() { base.to_owned() } else { format!("{base}?{}", kept.join("&")) }
    } else {
        let mut kept = Vec::new();
        for (k, v) in key_values(dsn)? {
            if !take(&k, &v)? {
                kept.push(format!("{k}='{}'", v.replace('\\', "\\\\").replace('\'', "\\'")));
            }
        }
        kept.join(" ")
    };
    Ok((rest, params))
}

/// `%XX` escapes of a URL query value.
fn percent_decode(v: &str) -> Result<String, String> {
    let bytes = v.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        if b == b'%' {
            let hex = v.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(h, 16).ok());
            out.push(hex.ok_or("invalid `%` escape in the DSN")?);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| "a DSN setting is not UTF-8".to_owned())
}

/// The `key=value` pairs of a libpq keyword DSN; values may be single-quoted with `\` escapes.
fn key_values(dsn: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut chars = dsn.chars().peekable();
    loop {
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let key: String = std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
        if key.is_empty() {
            return if chars.peek().is_none() { Ok(out) } else { Err("a DSN setting has no name".to_owned()) };
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        if chars.next() != Some('=') {
            return Err(format!("DSN setting `{key}` has no `=`"));
        }
        while chars.next_if(|c| c.is_whitespace()).is_some() {}
        let mut value = String::new();
        if chars.next_if_eq(&'\'').is_some() {
            loop {
                match chars.next() {
                    Some('\'') => break,
                    Some('\\') => value.extend(chars.next()),
                    Some(c) => value.push(c),
                    None => return Err(format!("DSN setting `{key}` has an unclosed quote")),
                }
            }
        } else {
            value.extend(std::iter::from_fn(|| chars.next_if(|c| !c.is_whitespace())));
        }
        out.push((key, value));
    }
}

impl TlsParams {
    /// The rustls client configuration these settings ask for, and whether tokio-postgres must
    /// insist on TLS (`require`) or may fall back (`prefer`); `None` for no TLS.
    pub fn client_config(&self) -> Result<Option<(Arc<ClientConfig>, bool)>, String> {
        let (verify, required) = match self.mode.as_deref() {
            None | Some("disable") => return self.unused(),
            Some("prefer") => (Verify::Nothing, false),
            Some("require") if self.root_cert.is_some() => (Verify::Authority, true),
            Some("require") => (Verify::Nothing, true),
            Some("verify-ca") => (Verify::Authority, true),
            Some("verify-full") => (Verify::Full, true),
            Some(other) => {
                return Err(format!(
                    "sslmode: `{other}` is not one of `disable`, `prefer`, `require`, `verify-ca`, `verify-full`"
                ));
            }
        };
        let provider = pem::provider();
        let verifier: Arc<dyn ServerCertVerifier> = match (&self.root_cert, verify) {
            (_, Verify::Nothing) => Arc::new(AnyCertificate(provider.clone())),
            (None, _) => {
                return Err(
                    "sslrootcert: required by `sslmode=verify-ca` and `verify-full` (the authority's PEM file)"
                        .to_owned(),
                );
            }
            (Some(path), _) => {
                let roots = pem::roots_in(path, &pem::read(path)?)?;
                let webpki = WebPkiServerVerifier::builder_with_provider(roots, provider.clone())
                    .build()
                    .map_err(|e| format!("sslrootcert: {e}"))?;
                Arc::new(Chained { webpki, check_name: verify == Verify::Full })
            }
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot configure TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let config = match (&self.cert, &self.key) {
            (Some(cert), Some(key)) => builder
                .with_client_auth_cert(pem::certs_in(cert, &pem::read(cert)?)?, pem::key_in(key, &pem::read(key)?)?)
                .map_err(|e| format!("sslcert and sslkey: not a usable certificate and key pair: {e}"))?,
            (None, None) => builder.with_no_client_auth(),
            _ => return Err("sslcert and sslkey: give both or neither".to_owned()),
        };
        Ok(Some((Arc::new(config), required)))
    }

    /// Without TLS, certificate settings are a mistake, not something to ignore silently.
    fn unused(&self) -> Result<Option<(Arc<ClientConfig>, bool)>, String> {
        if self.root_cert.is_some() || self.cert.is_some() || self.key.is_some() {
            return Err("sslrootcert, sslcert and sslkey need `sslmode=require`, `verify-ca` or `verify-full`".into());
        }
        Ok(None)
    }
}

/// Accepts any certificate, still checking the handshake's signatures (`prefer`, `require`
/// without `sslrootcert`, as libpq).
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The certificate chains to `sslrootcert`; with `check_name`, it is also issued for the host.
#[derive(Debug)]
struct Chained {
    webpki: Arc<WebPkiServerVerifier>,
    check_name: bool,
}

impl ServerCertVerifier for Chained {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp, now) {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) if !self.check_name => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS connector over rustls.
#[derive(Clone, Debug)]
pub struct RustlsConnect(pub Arc<ClientConfig>);

impl<S> MakeTlsConnect<S> for RustlsConnect
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type TlsConnect = RustlsHandshake;
    type Error = std::io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<RustlsHandshake, std::io::Error> {
        let name = ServerName::try_from(host.to_owned())
            .map_err(|_| std::io::Error::other(format!("`{host}` is not a valid host name for TLS")))?;
        Ok(RustlsHandshake { config: self.0.clone(), name, host: host.to_owned() })
    }
}

/// One handshake, with the host it is for.
pub struct RustlsHandshake {
    config: Arc<ClientConfig>,
    name: ServerName<'static>,
    host: String,
}

impl<S> TlsConnect<S> for RustlsHandshake
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    type Stream = TlsStream<S>;
    type Error = std::io::Error;
    type Future = Pin<Box<dyn Future<Output = std::io::Result<TlsStream<S>>> + Send>>;

    fn connect(self, stream: S) -> Self::Future {
        let RustlsHandshake { config, name, host } = self;
        Box::pin(async move {
            let stream = tokio_rustls::TlsConnector::from(config)
                .connect(name, stream)
                .await
                .map_err(|e| std::io::Error::other(explain(&e, &host)))?;
            Ok(TlsStream(stream))
        })
    }
}

/// A handshake failure in words an operator can act on.
fn explain(e: &std::io::Error, host: &str) -> String {
    let cert = e.get_ref().and_then(|inner| inner.downcast_ref::<rustls::Error>()).and_then(|r| match r {
        rustls::Error::InvalidCertificate(c) => Some(c),
        _ => None,
    });
    match cert {
        Some(CertificateError::UnknownIssuer) => {
            "the server's certificate is not issued by the authority in sslrootcert".to_owned()
        }
        Some(CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. }) => format!(
            "the server's certificate is not issued for host `{host}` (sslmode=verify-full checks the name; \
             connect by a name the certificate carries)"
        ),
        Some(CertificateError::Expired | CertificateError::ExpiredContext { .. }) => {
            "the server's certificate has expired".to_owned()
        }
        _ => e.to_string(),
    }
}

/// A TLS connection to PostgreSQL.
pub struct TlsStream<S>(tokio_rustls::client::TlsStream<S>);

impl<S: AsyncRead + AsyncWrite + Unpin> tokio_postgres::tls::TlsStream for TlsStream<S> {
    fn channel_binding(&self) -> ChannelBinding {
        // SCRAM then uses its plain variant; binding needs the certificate's hash algorithm.
        ChannelBinding::none()
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncRead for TlsStream<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl<S: AsyncRead + AsyncWrite + Unpin> AsyncWrite for TlsStream<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tls_settings_leave_the_dsn_in_both_forms() {
        let (rest, p) =
            split_dsn("postgres://u:p@db:5432/x?sslmode=verify-full&sslrootcert=%2Fetc%2Fca.crt&application_name=a")
                .unwrap();
        assert_eq!(rest, "postgres://u:p@db:5432/x?application_name=a");
        assert_eq!(p.mode.as_deref(), Some("verify-full"));
        assert_eq!(p.root_cert, Some(PathBuf::from("/etc/ca.crt")));
        let (rest, p) =
            split_dsn("host=db  dbname = 'my db' sslmode=require sslkey='/k ey' sslcert=/c password='a\\'b'").unwrap();
        assert_eq!(rest, "host='db' dbname='my db' password='a\\'b'");
        assert_eq!((p.key, p.cert), (Some(PathBuf::from("/k ey")), Some(PathBuf::from("/c"))));
        let parsed: tokio_postgres::Config = rest.parse().unwrap();
        assert_eq!(parsed.get_dbname(), Some("my db"));
        assert_eq!(parsed.get_password(), Some(&b"a'b"[..]));
        assert!(split_dsn("host=db dbname='x").is_err());
    }

    #[test]
    fn verifying_needs_an_authority_and_certificates_need_tls() {
        let with = |mode: &str| TlsParams { mode: Some(mode.into()), ..TlsParams::default() };
        assert!(with("verify-full").client_config().unwrap_err().starts_with("sslrootcert: required"));
        assert!(with("verify-ca").client_config().is_err());
        assert!(with("require").client_config().unwrap().is_some_and(|(_, required)| required));
        assert!(with("prefer").client_config().unwrap().is_some_and(|(_, required)| !required));
        assert!(with("disable").client_config().unwrap().is_none());
        assert!(with("allow").client_config().unwrap_err().starts_with("sslmode: `allow`"));
        let stray = TlsParams { root_cert: Some("/ca".into()), ..with("disable") };
        assert!(stray.client_config().unwrap_err().starts_with("sslrootcert, sslcert and sslkey need"));
    }
}
