//! Who is on the other end of a connection: the identities a callers file can name. A client
//! certificate gives its URI SANs as they are (`spiffe://cluster.local/ns/inbox/sa/inbox-api`)
//! and its DNS SANs as `dns:NAME`; a Unix-socket peer gives `uid:N` from `SO_PEERCRED`. A
//! plaintext TCP client, or a TLS client without a certificate, has none.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A connection's peer, attached to every request it carries (tonic's connect info).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Peer {
    /// Its identities, URI SANs first, then DNS SANs, then the uid; may be empty.
    pub ids: Arc<[String]>,
}

impl Peer {
    /// A peer with these identities.
    pub fn new(ids: Vec<String>) -> Peer {
        Peer { ids: ids.into() }
    }

    /// The identities in a verified client certificate.
    pub fn from_certificate(cert: &CertificateDer<'_>) -> Peer {
        let Ok((_, cert)) = X509Certificate::from_der(cert.as_ref()) else { return Peer::default() };
        let Ok(Some(san)) = cert.subject_alternative_name() else { return Peer::default() };
        let mut uris = Vec::new();
        let mut names = Vec::new();
        for name in &san.value.general_names {
            match name {
                GeneralName::URI(uri) => uris.push((*uri).to_owned()),
                GeneralName::DNSName(dns) => names.push(format!("dns:{dns}")),
                _ => {}
            }
        }
        uris.extend(names);
        Peer::new(uris)
    }

    /// A Unix-socket peer, by its user id.
    pub fn from_uid(uid: u32) -> Peer {
        Peer::new(vec![format!("uid:{uid}")])
    }

    /// The identity to name in logs and errors: the first, or `-` for none.
    pub fn name(&self) -> &str {
        self.ids.first().map_or("-", String::as_str)
    }
}
