//! Certificates made by the tests themselves: a certificate authority, server and client
//! certificates it issues (valid for an hour, or expired), written as PEM files. Nothing is
//! checked in.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A subject alternative name.
pub enum San<'a> {
    Dns(&'a str),
    Uri(&'a str),
    Ip(IpAddr),
}

/// A certificate authority.
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// A certificate and its private key, as PEM.
pub struct Leaf {
    pub cert: String,
    pub key: String,
}

impl Ca {
    /// A new authority named `name`.
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, name);
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let issuer = CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap();
        Ca { issuer }
    }

    /// The authority's certificate, PEM.
    pub fn pem(&self) -> String {
        self.issuer.pem()
    }

    /// Writes the authority's certificate to `dir/NAME` and returns its path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, self.pem()).unwrap();
        path
    }

    /// A server certificate for `localhost` and 127.0.0.1.
    pub fn server(&self) -> Leaf {
        self.issue(&[San::Dns("localhost"), San::Ip([127, 0, 0, 1].into())], ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A server certificate for exactly these names.
    pub fn server_for(&self, sans: &[San]) -> Leaf {
        self.issue(sans, ExtendedKeyUsagePurpose::ServerAuth, false)
    }

    /// A client certificate with these names.
    pub fn client(&self, sans: &[San]) -> Leaf {
        self.issue(sans, ExtendedKeyUsagePurpose::ClientAuth, false)
    }

    /// A client certificate that expired yesterday.
    pub fn expired_client(&self, sans: &[San]) -> Leaf {
        self.issue(sans, ExtendedKeyUsagePurpose::ClientAuth, true)
    }

    fn issue(&self, sans: &[San], usage: ExtendedKeyUsagePurpose, expired: bool) -> Leaf {
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, "rolegate test");
        params.subject_alt_names = sans
            .iter()
            .map(|s| match s {
                San::Dns(d) => SanType::DnsName((*d).try_into().unwrap()),
                San::Uri(u) => SanType::URI((*u).try_into().unwrap()),
                San::Ip(ip) => SanType::IpAddress(*ip),
            })
            .collect();
        params.extended_key_usages = vec![usage];
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
        let (from, until) = if expired { (now - 3 * 86400, now - 86400) } else { (now - 3600, now + 3600) };
        params.not_before = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(from as u64);
        params.not_after = rcgen::date_time_ymd(1970, 1, 1) + std::time::Duration::from_secs(until as u64);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf { cert: cert.pem(), key: key.serialize_pem() }
    }
}

impl Leaf {
    /// Writes `dir/NAME.crt` and `dir/NAME.key` and returns their paths.
    pub fn write(&self, dir: &Path, name: &str) -> (PathBuf, PathBuf) {
        let (cert, key) = (dir.join(format!("{name}.crt")), dir.join(format!("{name}.key")));
        std::fs::write(&cert, &self.cert).unwrap();
        std::fs::write(&key, &self.key).unwrap();
        (cert, key)
    }
}
