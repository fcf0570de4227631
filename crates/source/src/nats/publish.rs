//! `rolegate publish`: follows the PostgreSQL change log exactly as a sidecar does (LISTEN, the
//! same reads, the same periodic digest check) and publishes each tenant's change to the stream,
//! then records the tenant's revision in the KV bucket.
//!
//! Idempotent and safe to run in several replicas: a change's message id is its tenant and
//! revision, so the stream keeps one copy per id within its duplicate window; a copy outside it
//! is skipped by followers already at that revision. The revision in the bucket only grows
//! (compare-and-set). A publisher starts from the bucket's revisions: a tenant the bucket does
//! not know yet is announced with [`Body::Reload`] at its current revision, so followers behind
//! it read it from the database; a change published but not yet recorded when a publisher died
//! is published again under the same id.

use std::collections::HashMap;
use std::time::Duration;

use async_nats::jetstream::{self, kv, stream};
use tokio_stream::StreamExt;

use super::{Body, Change, Config, MAX_BODY, message_id, subject, token, untoken};
use crate::postgres::follow::read::{Held, Read};
use crate::postgres::follow::{FollowError, MIN_POLL, Session};
use crate::postgres::rows::TenantRows;

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);
/// How long the stream drops a second message with the same id.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// What `rolegate publish` follows and where it publishes.
#[derive(Clone, Debug)]
pub struct PublishConfig {
    /// The database: the primary, where LISTEN works.
    pub pg: crate::postgres::Config,
    /// The NATS servers, stream and bucket.
    pub nats: Config,
    /// Changes older than this leave the stream; followers further behind reload from the database.
    pub retention: Duration,
    /// At most this many changes are kept in the stream (0: no limit besides `retention`).
    pub max_messages: i64,
}

/// Why publishing stopped; the publisher reconnects after any of them.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// The database failed.
    #[error("postgres: {0}")]
    Db(#[from] FollowError),
    /// NATS failed.
    #[error("nats: {0}")]
    Nats(String),
}

fn nats(e: impl std::fmt::Display) -> PublishError {
    PublishError::Nats(e.to_string())
}

/// Publishes until the process exits, reconnecting to either side after a failure.
pub async fn run(cfg: PublishConfig) {
    let mut publisher = Publisher { cfg, seen: HashMap::new() };
    let mut backoff = MIN_BACKOFF;
    loop {
        let err = publisher.session(&mut backoff).await;
        tracing::warn!(rolegate.source = "nats", "publish: {err}; retrying in {} ms", backoff.as_millis());
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

struct Publisher {
    cfg: PublishConfig,
    /// The last revision published (or found in the bucket) per tenant.
    seen: HashMap<String, i64>,
}

/// The stream and bucket of one NATS connection.
struct Out {
    js: jetstream::Context,
    kv: kv::Store,
}

impl Publisher {
    /// One connection to each side: announce, then follow until either fails.
    async fn session(&mut self, backoff: &mut Duration) -> PublishError {
        match self.follow(backoff).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn follow(&mut self, backoff: &mut Duration) -> Result<std::convert::Infallible, PublishError> {
        let client = self.cfg.nats.connect(None).await.map_err(nats)?;
        let js = jetstream::new(client);
        let out = Out { kv: prepare(&js, &self.cfg).await?, js };
        for (tenant, revision) in recorded(&out.kv).await? {
            let seen = self.seen.entry(tenant).or_default();
            *seen = (*seen).max(revision);
        }
        let mut session = Session::open(&self.cfg.pg).await?;
        tracing::info!(
            rolegate.source = "nats",
            "publishing changes of postgres {} to nats {}",
            self.cfg.pg.describe(),
            self.cfg.nats.describe()
        );
        self.announce(&session, &out).await?;
        self.round(&mut session, &out, None).await?;
        *backoff = MIN_BACKOFF;
        let period = self.cfg.pg.poll.max(MIN_POLL);
        let mut poll = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                notes = session.notified() => {
                    let tenants = notes?;
                    self.round(&mut session, &out, Some(&tenants)).await?;
                }
                _ = poll.tick() => {
                    let (count, sum) = session.digest().await?;
                    let seen: i128 = self.seen.values().map(|&r| i128::from(r)).sum();
                    if count != self.seen.len() as i64 || sum != seen.to_string() {
                        self.round(&mut session, &out, None).await?;
                    }
                }
            }
        }
    }

    /// Announces every tenant the bucket does not know yet at its current revision.
    async fn announce(&mut self, session: &Session, out: &Out) -> Result<(), PublishError> {
        for r in session.revisions(None).await? {
            if !self.seen.contains_key(&r.tenant) {
                let change = Change { tenant: r.tenant, revision: r.revision, previous: 0, body: Body::Reload };
                self.publish(out, change).await?;
            }
        }
        Ok(())
    }

    /// Reads what changed for `tenants` (all when `None`) since the revisions published, and
    /// publishes one change per tenant.
    async fn round(
        &mut self,
        session: &mut Session,
        out: &Out,
        tenants: Option<&[String]>,
    ) -> Result<(), PublishError> {
        let seen = &self.seen;
        let read = session
            .read(
                tenants,
                |t| seen.get(t).map(|&seen| Held { seen, incremental: true }),
                || seen.keys().cloned().collect(),
            )
            .await?;
        for gone in &read.gone {
            self.seen.remove(gone);
        }
        for change in changes(read, &self.seen) {
            self.publish(out, change).await?;
        }
        Ok(())
    }

    /// Publishes one change, waits for the stream to store it, and records the revision.
    async fn publish(&mut self, out: &Out, change: Change) -> Result<(), PublishError> {
        let payload = serde_json::to_vec(&change).map_err(nats)?;
        let message = jetstream::message::PublishMessage::build()
            .payload(payload.into())
            .message_id(message_id(&change.tenant, change.revision));
        let ack = out.js.send_publish(subject(&change.tenant), message).await.map_err(nats)?.await.map_err(nats)?;
        tracing::debug!(
            rolegate.tenant = change.tenant,
            rolegate.revision = change.revision,
            rolegate.duplicate = ack.duplicate,
            "published change"
        );
        record(&out.kv, &change.tenant, change.revision).await?;
        self.seen.insert(change.tenant, change.revision);
        Ok(())
    }
}

/// Splits a round's read into one change per tenant, relative to the revisions published.
fn changes(read: Read, seen: &HashMap<String, i64>) -> Vec<Change> {
    let Read { revisions, full, rows, members, gone: _ } = read;
    let change = |tenant: String, body: Body| {
        let revision = revisions.get(&tenant).copied().unwrap_or_default();
        let previous = seen.get(&tenant).copied().unwrap_or_default();
        let body = match serde_json::to_vec(&body) {
            Ok(bytes) if bytes.len() <= MAX_BODY => body,
            _ => Body::Reload,
        };
        Change { tenant, revision, previous, body }
    };
    let mut out: Vec<Change> =
        full.into_iter().map(|t| (rows_of(&rows, &t), t)).map(|(r, t)| change(t, Body::Whole(r))).collect();
    out.extend(members.into_iter().map(|m| change(m.tenant.clone(), Body::Members(m))));
    out
}

/// The rows of one tenant and of its template.
fn rows_of(rows: &TenantRows, tenant: &str) -> TenantRows {
    let tenants: Vec<_> = rows.tenants.iter().filter(|t| t.id == tenant).cloned().collect();
    let template = tenants.first().and_then(|t| t.template.clone());
    TenantRows {
        templates: rows.templates.iter().filter(|t| Some(&t.name) == template.as_ref()).cloned().collect(),
        units: rows.units.iter().filter(|u| u.tenant == tenant).cloned().collect(),
        members: rows.members.iter().filter(|m| m.tenant == tenant).cloned().collect(),
        bindings: rows.bindings.iter().filter(|b| b.tenant == tenant).cloned().collect(),
        tenants,
    }
}

/// Creates or updates the stream with the configured limits, and the bucket.
async fn prepare(js: &jetstream::Context, cfg: &PublishConfig) -> Result<kv::Store, PublishError> {
    let stream = stream::Config {
        name: cfg.nats.stream.clone(),
        subjects: vec![super::SUBJECTS.to_owned()],
        max_age: cfg.retention,
        max_messages: if cfg.max_messages > 0 { cfg.max_messages } else { -1 },
        duplicate_window: DUPLICATE_WINDOW.min(cfg.retention),
        storage: stream::StorageType::File,
        discard: stream::DiscardPolicy::Old,
        ..stream::Config::default()
    };
    js.create_or_update_stream(stream).await.map_err(nats)?;
    // The bucket's stream, as a KV bucket with history 1 is laid out; created directly because
    // the client's bucket creation first asks for account details older servers (2.9) answer
    // in another shape.
    let bucket = &cfg.nats.bucket;
    let kv_stream = stream::Config {
        name: format!("KV_{bucket}"),
        subjects: vec![format!("$KV.{bucket}.>")],
        max_messages_per_subject: 1,
        allow_rollup: true,
        deny_delete: true,
        allow_direct: true,
        discard: stream::DiscardPolicy::New,
        storage: stream::StorageType::File,
        ..stream::Config::default()
    };
    js.create_or_update_stream(kv_stream).await.map_err(|e| nats(format!("cannot create bucket `{bucket}`: {e}")))?;
    js.get_key_value(bucket).await.map_err(nats)
}

/// Every revision recorded in the bucket.
pub async fn recorded(kv: &kv::Store) -> Result<HashMap<String, i64>, PublishError> {
    let mut out = HashMap::new();
    if kv.status().await.map_err(nats)?.values() == 0 {
        return Ok(out);
    }
    let mut entries = kv.watch_with_history(">").await.map_err(nats)?;
    while let Some(entry) = entries.next().await {
        let entry = entry.map_err(nats)?;
        let revision = std::str::from_utf8(&entry.value).ok().and_then(|v| v.parse::<i64>().ok());
        if let (Some(tenant), Some(revision), kv::Operation::Put) = (untoken(&entry.key), revision, entry.operation) {
            out.insert(tenant, revision);
        }
        if entry.delta == 0 {
            break;
        }
    }
    Ok(out)
}

/// Raises the tenant's recorded revision to `revision`; never lowers it.
async fn record(kv: &kv::Store, tenant: &str, revision: i64) -> Result<(), PublishError> {
    let key = token(tenant);
    let value = bytes::Bytes::from(revision.to_string());
    for _ in 0..8 {
        let written = match kv.entry(&key).await.map_err(nats)? {
            Some(e) if e.operation == kv::Operation::Put => {
                let have = std::str::from_utf8(&e.value).ok().and_then(|v| v.parse::<i64>().ok()).unwrap_or(0);
                if have >= revision {
                    return Ok(());
                }
                kv.update(&key, value.clone(), e.revision).await.is_ok()
            }
            _ => kv.create(&key, value.clone()).await.is_ok(),
        };
        if written {
            return Ok(());
        }
    }
    Err(PublishError::Nats(format!(
        "cannot record revision {revision} of tenant `{tenant}`: the bucket keeps changing"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::follow::read::MemberRead;
    use crate::postgres::rows::{MemberRow, TemplateRow, TenantRow};

    fn tenant(id: &str, template: Option<&str>) -> TenantRow {
        TenantRow { id: id.into(), document: format!("tenant: {id}\n"), template: template.map(Into::into) }
    }

    fn member(tenant: &str, id: &str, attrs: String) -> MemberRow {
        MemberRow {
            tenant: tenant.into(),
            id: id.into(),
            status: "active".into(),
            expires: None,
            units: vec![],
            attrs,
            description: None,
        }
    }

    #[test]
    fn a_round_is_split_into_one_change_per_tenant_relative_to_what_was_published() {
        let rows = TenantRows {
            tenants: vec![tenant("a", Some("desk")), tenant("b", None)],
            templates: vec![TemplateRow { name: "desk".into(), document: "schema: {}\n".into() }],
            members: vec![member("a", "m1", "{}".into()), member("b", "m2", "{}".into())],
            ..TenantRows::default()
        };
        let changed = MemberRead { tenant: "c".into(), ids: vec!["gone".into()], rows: vec![], bindings: vec![] };
        let read = Read {
            revisions: [("a".into(), 7), ("b".into(), 8), ("c".into(), 9)].into(),
            full: vec!["a".into(), "b".into()],
            rows,
            members: vec![changed],
            gone: vec![],
        };
        let seen: HashMap<String, i64> = [("a".into(), 3), ("c".into(), 5)].into();
        let out = changes(read, &seen);
        let summary: Vec<(&str, i64, i64)> = out.iter().map(|c| (c.tenant.as_str(), c.previous, c.revision)).collect();
        assert_eq!(summary, [("a", 3, 7), ("b", 0, 8), ("c", 5, 9)]);
        let Body::Whole(a) = &out[0].body else { panic!("{:?}", out[0].body) };
        assert_eq!((a.tenants.len(), a.templates.len(), a.members.len()), (1, 1, 1), "a's rows and its template only");
        let Body::Whole(b) = &out[1].body else { panic!("{:?}", out[1].body) };
        assert!(b.templates.is_empty() && b.members[0].id == "m2");
        assert!(matches!(&out[2].body, Body::Members(m) if m.ids == ["gone"]));
    }

    #[test]
    fn a_change_too_large_for_a_message_asks_followers_to_reload() {
        let big = format!("{{\"note\": \"{}\"}}", "x".repeat(MAX_BODY));
        let read = Read {
            revisions: [("a".into(), 2)].into(),
            full: vec!["a".into()],
            rows: TenantRows {
                tenants: vec![tenant("a", None)],
                members: vec![member("a", "m", big)],
                ..TenantRows::default()
            },
            ..Read::default()
        };
        let out = changes(read, &HashMap::new());
        assert!(matches!(out[0].body, Body::Reload), "{:?}", out[0].body);
        let encoded = serde_json::to_vec(&out[0]).unwrap();
        assert!(encoded.len() < 200, "the reload request is small: {} bytes", encoded.len());
    }
}
