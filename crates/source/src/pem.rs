//! Reading PEM certificates, private keys and certificate authorities for rustls, with errors
//! that name the file and what was wrong with it. Shared by the TLS listeners and the
//! PostgreSQL client.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// A file's certificates, in order (a leaf first, then its intermediates); at least one.
pub fn certs_in(path: &Path, bytes: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: invalid PEM certificate: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{}: no PEM certificate (`BEGIN CERTIFICATE`) in the file", path.display()));
    }
    Ok(certs)
}

/// A file's private key (PKCS#8, PKCS#1 or SEC1). Never echoes the file's content.
pub fn key_in(path: &Path, bytes: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(bytes).map_err(|e| format!("{}: no usable PEM private key: {e}", path.display()))
}

/// The certificate authorities of a file, as a root store; at least one must be usable.
pub fn roots_in(path: &Path, bytes: &[u8]) -> Result<Arc<RootCertStore>, String> {
    let mut roots = RootCertStore::empty();
    for cert in certs_in(path, bytes)? {
        roots.add(cert).map_err(|e| format!("{}: unusable certificate authority: {e}", path.display()))?;
    }
    Ok(Arc::new(roots))
}

/// Reads a whole file, naming it in the error.
pub fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

/// The crypto provider every TLS connection uses: ring, the only one compiled in.
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_without_a_certificate_is_refused_naming_it() {
        let e = certs_in(Path::new("/etc/tls/ca.crt"), b"hello").unwrap_err();
        assert_eq!(e, "/etc/tls/ca.crt: no PEM certificate (`BEGIN CERTIFICATE`) in the file");
        let e =
            key_in(Path::new("/etc/tls/tls.key"), b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
                .unwrap_err();
        assert!(e.starts_with("/etc/tls/tls.key: no usable PEM private key"), "{e}");
    }
}
