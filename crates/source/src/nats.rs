//! Change fan-out through NATS JetStream (docs/operations.md, "NATS"): the database serves a
//! constant number of listeners, whatever the number of sidecars.
//!
//! `rolegate publish` follows the PostgreSQL change log as a sidecar does ([`publish`]) and
//! publishes each tenant's changes to stream [`STREAM`], subject `rolegate.changes.<tenant>`,
//! with the change id as `Nats-Msg-Id` (the stream drops a duplicate within its window), then
//! records the tenant's revision in KV bucket [`BUCKET`]. Several publishers may run at once:
//! each message is self-contained relative to the revision it names as `previous`.
//!
//! A sidecar ([`follow`]) loads its snapshot from PostgreSQL (a replica is fine), then follows
//! the stream from where it stood before that load: a change whose `previous` it holds applies
//! at once; one it is already past is skipped; a gap (a change it never saw) or a stream trimmed
//! past it reloads the tenants concerned from PostgreSQL and carries on from the stream.

pub mod follow;
pub mod publish;

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::postgres::follow::read::MemberRead;
use crate::postgres::rows::TenantRows;

/// The JetStream stream holding every tenant's changes.
pub const STREAM: &str = "ROLEGATE";
/// The KV bucket holding every tenant's revision, as decimal text.
pub const BUCKET: &str = "rolegate-revisions";
/// The subjects of the stream; one per tenant below it.
pub const SUBJECTS: &str = "rolegate.changes.>";
/// A change whose rows encode larger than this is sent as [`Body::Reload`]: NATS refuses
/// messages over its `max_payload` (1 MiB by default).
pub const MAX_BODY: usize = 512 * 1024;

/// One change of one tenant, as published: its rows at `revision`, relative to `previous`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Change {
    /// Tenant id.
    pub tenant: String,
    /// The tenant's revision after the change: the id of its last change.
    pub revision: i64,
    /// The revision the change applies on top of: a follower at or past it (and before
    /// `revision`) can apply [`Body::Members`]; one behind it missed a change.
    pub previous: i64,
    /// What changed.
    pub body: Body,
}

/// What a [`Change`] carries.
#[derive(Clone, Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Body {
    /// Members (and their bindings) changed since `previous`; the rows of those still there.
    Members(MemberRead),
    /// Every row of the tenant at `revision` (none when it was deleted), with its template.
    Whole(TenantRows),
    /// Too large to send: followers behind `revision` read the tenant from PostgreSQL.
    Reload,
}

/// How a sidecar or publisher reaches NATS.
#[derive(Clone, Debug)]
pub struct Config {
    /// Server URLs, `nats://host:4222` (comma-separated for a cluster).
    pub url: String,
    /// The stream's name.
    pub stream: String,
    /// The KV bucket's name.
    pub bucket: String,
}

impl Config {
    /// Checks a `nats://` URL; the stream and bucket get their default names.
    pub fn from_url(url: &str) -> Result<Config, String> {
        let url = url.trim();
        let ok = url.split(',').all(|u| {
            let rest = u.trim().strip_prefix("nats://").or_else(|| u.trim().strip_prefix("tls://"));
            rest.is_some_and(|r| !r.is_empty() && !r.contains(char::is_whitespace))
        });
        if !ok {
            return Err(format!("expected a NATS URL such as `nats://host:4222`, got `{url}`"));
        }
        Ok(Config { url: url.to_owned(), stream: STREAM.to_owned(), bucket: BUCKET.to_owned() })
    }

    /// The URL without user information, for logs.
    pub fn describe(&self) -> String {
        self.url
            .split(',')
            .map(|u| match u.rsplit_once('@') {
                Some((scheme_user, host)) => {
                    format!("{}{host}", scheme_user.split_once("://").map_or("", |(s, _)| s).to_owned() + "://")
                }
                None => u.trim().to_owned(),
            })
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Connects; the client reconnects in the background after a failure, and `reconnected`
    /// hears each time it is connected again after losing the server.
    pub async fn connect(
        &self,
        reconnected: Option<tokio::sync::mpsc::UnboundedSender<()>>,
    ) -> Result<async_nats::Client, async_nats::ConnectError> {
        let urls: Vec<&str> = self.url.split(',').map(str::trim).collect();
        let lost = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        async_nats::ConnectOptions::new()
            .name("rolegate")
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(5)))
            .event_callback(move |event| {
                let (lost, reconnected) = (lost.clone(), reconnected.clone());
                async move {
                    use std::sync::atomic::Ordering::Relaxed;
                    match event {
                        async_nats::Event::Disconnected => lost.store(true, Relaxed),
                        async_nats::Event::Connected if lost.swap(false, Relaxed) => {
                            if let Some(tx) = reconnected {
                                let _ = tx.send(());
                            }
                        }
                        _ => {}
                    }
                }
            })
            .connect(urls)
            .await
    }
}

/// The subject of a tenant's changes.
pub fn subject(tenant: &str) -> String {
    format!("rolegate.changes.{}", token(tenant))
}

/// A tenant id as one subject token and KV key: letters, digits, `_` and `-` as they are,
/// every other byte as `=XX` (so `.`, `*`, `>` and spaces cannot change the subject's shape).
pub fn token(tenant: &str) -> String {
    let mut out = String::with_capacity(tenant.len());
    for b in tenant.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    out
}

/// The tenant id a [`token`] encodes; `None` for text no token has.
pub fn untoken(token: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(token.len());
    let mut rest = token.as_bytes();
    while let Some((&b, tail)) = rest.split_first() {
        if b == b'=' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = tail.get(2..)?;
        } else {
            bytes.push(b);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok().filter(|t| !t.is_empty())
}

/// The `Nats-Msg-Id` of a tenant's change: the stream keeps one message per id within its
/// duplicate window, however many publishers send it.
pub fn message_id(tenant: &str, revision: i64) -> String {
    format!("{}:{revision}", token(tenant))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenant_id_with_subject_syntax_stays_one_token() {
        for tenant in ["acme", "acme.eu", "a*b>c", "ünï code", "a=b", "x y"] {
            let t = token(tenant);
            assert!(t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_-=".contains(&b)), "{t}");
            assert_eq!(untoken(&t).as_deref(), Some(tenant));
        }
        assert_eq!(subject("acme.eu"), "rolegate.changes.acme=2Eeu");
        assert_eq!(untoken("=4"), None);
        assert_eq!(untoken("=ZZ"), None);
    }

    #[test]
    fn only_nats_urls_are_accepted_and_logged_without_credentials() {
        assert!(Config::from_url("postgres://db/x").is_err());
        assert!(Config::from_url("nats://").is_err());
        let cfg = Config::from_url("nats://user:secret@n1:4222, nats://n2:4222").unwrap();
        assert_eq!(cfg.describe(), "nats://n1:4222,nats://n2:4222");
    }
}
