//! The decision cache: moka, keyed by everything a decision depends on, including the generation
//! the store gave the published tenant, so a reload can never serve a stale answer (even from a
//! source that repeats or lowers a revision). Entries never outlive `cache_until` (the earlier of
//! `valid_until` and the tenant's `max_staleness`).
//! Off by default: BENCHMARKS.md shows evaluating beats a lookup for the bundled policies.

use std::sync::Arc;
use std::time::{Duration, Instant};

use jiff::Timestamp;
use moka::sync::Cache;

use rolegate_engine::{Attrs, Decision, Query, Value};

/// Cache sizing.
#[derive(Clone, Copy, Debug)]
pub struct CacheConfig {
    /// Maximum entries; 0 turns the cache off.
    pub capacity: u64,
    /// Upper bound on an entry's life, whatever its `cache_until`.
    pub ttl: Duration,
}

/// The exact inputs of a decision, encoded without ambiguity (every string length-prefixed,
/// attributes sorted by name) so equal keys mean equal requests.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key(Box<[u8]>);

impl Key {
    /// Encodes `query` decided against the published tenant object `generation` (see
    /// [`rolegate_engine::Tenant::generation`]; 0 for an unknown tenant).
    pub fn new(query: &Query<'_>, generation: u64) -> Self {
        let mut b = Vec::with_capacity(128);
        b.extend_from_slice(&generation.to_le_bytes());
        for s in [
            query.tenant,
            query.principal,
            query.action,
            &query.resource.kind,
            &query.resource.id,
            &query.resource.unit,
        ] {
            put_str(&mut b, s);
        }
        put_attrs(&mut b, &query.resource.attrs);
        match query.context.client_ip {
            Some(ip) => put_str(&mut b, &ip.to_string()),
            None => b.push(0xff),
        }
        put_attrs(&mut b, &query.context.attrs);
        Key(b.into_boxed_slice())
    }
}

fn put_str(b: &mut Vec<u8>, s: &str) {
    b.extend_from_slice(&(s.len() as u32).to_le_bytes());
    b.extend_from_slice(s.as_bytes());
}

fn put_attrs(b: &mut Vec<u8>, attrs: &Attrs) {
    let mut sorted: Vec<&(String, Value)> = attrs.0.iter().collect();
    sorted.sort_by(|x, y| x.0.cmp(&y.0));
    b.extend_from_slice(&(sorted.len() as u32).to_le_bytes());
    for (k, v) in sorted {
        put_str(b, k);
        match v {
            Value::Text(s) => {
                b.push(1);
                put_str(b, s);
            }
            Value::Int(i) => {
                b.push(2);
                b.extend_from_slice(&i.to_le_bytes());
            }
            Value::Flag(f) => b.extend_from_slice(&[3, u8::from(*f)]),
            Value::Number(n) => {
                b.push(4);
                b.extend_from_slice(&n.to_bits().to_le_bytes());
            }
            Value::List(l) => {
                b.push(5);
                b.extend_from_slice(&(l.len() as u32).to_le_bytes());
                l.iter().for_each(|s| put_str(b, s));
            }
        }
    }
}

#[derive(Clone)]
struct Entry {
    decision: Arc<Decision>,
    /// Monotonic deadline: the earlier of the TTL and `cache_until`.
    deadline: Instant,
}

struct ExpireAtDeadline;

impl moka::Expiry<Key, Entry> for ExpireAtDeadline {
    fn expire_after_create(&self, _: &Key, value: &Entry, created_at: Instant) -> Option<Duration> {
        Some(value.deadline.saturating_duration_since(created_at))
    }
}

/// A bounded decision cache.
#[derive(Clone)]
pub struct DecisionCache {
    inner: Cache<Key, Entry>,
    ttl: Duration,
}

impl std::fmt::Debug for DecisionCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DecisionCache").field("entries", &self.inner.entry_count()).finish()
    }
}

impl DecisionCache {
    /// A cache, or `None` when the configuration turns it off. `on_evict` runs for every entry
    /// that leaves the cache other than by replacement.
    pub fn new(cfg: CacheConfig, on_evict: impl Fn() + Send + Sync + 'static) -> Option<Self> {
        (cfg.capacity > 0 && !cfg.ttl.is_zero()).then(|| DecisionCache {
            inner: Cache::builder()
                .max_capacity(cfg.capacity)
                .expire_after(ExpireAtDeadline)
                .eviction_listener(move |_, _, cause| {
                    if cause.was_evicted() {
                        on_evict();
                    }
                })
                .build(),
            ttl: cfg.ttl,
        })
    }

    /// The cached decision for `key`, if it is still valid at `now`.
    pub fn get(&self, key: &Key, now: Timestamp) -> Option<Arc<Decision>> {
        let entry = self.inner.get(key)?;
        // The wall clock may run ahead of the monotonic deadline; `cache_until` is the contract.
        entry.decision.cache_until.is_none_or(|v| now < v).then_some(entry.decision)
    }

    /// Stores a decision made at `now`.
    pub fn insert(&self, key: Key, decision: Arc<Decision>, now: Timestamp) {
        let mut life = self.ttl;
        if let Some(v) = decision.cache_until {
            let left = now.duration_until(v);
            match left.try_into() {
                // Nothing to keep when it may not be reused at all (`max_staleness: 0s`).
                Ok(d) if left.is_positive() => life = life.min(d),
                _ => return,
            }
        }
        // A lifetime past the end of the monotonic clock is no lifetime to keep.
        if let Some(deadline) = Instant::now().checked_add(life) {
            self.inner.insert(key, Entry { decision, deadline });
        }
    }

    /// Number of entries (approximate).
    pub fn len(&self) -> u64 {
        self.inner.entry_count()
    }

    /// True when empty (approximate).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rolegate_engine::{Context, Reason, Request, Resource};

    fn req(attrs: Vec<(&str, Value)>) -> Request {
        Request {
            tenant: "t".into(),
            principal: "p".into(),
            action: "conversation.view".into(),
            resource: Resource {
                kind: "conversation".into(),
                id: "c".into(),
                unit: String::new(),
                attrs: attrs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
            },
            context: Context::default(),
        }
    }

    #[test]
    fn keys_differ_by_generation_and_by_any_attribute_but_not_by_attribute_order() {
        let a = req(vec![("assignee", Value::Text("p".into())), ("tags", Value::List(vec!["vip".into()]))]);
        let b = req(vec![("tags", Value::List(vec!["vip".into()])), ("assignee", Value::Text("p".into()))]);
        let c = req(vec![("assignee", Value::Text("q".into())), ("tags", Value::List(vec!["vip".into()]))]);
        // "ab"+"c" must not collide with "a"+"bc".
        let d = req(vec![("assignee", Value::List(vec!["ab".into(), "c".into()]))]);
        let e = req(vec![("assignee", Value::List(vec!["a".into(), "bc".into()]))]);
        assert_eq!(Key::new(&a.query(), 1), Key::new(&b.query(), 1));
        assert_ne!(Key::new(&a.query(), 1), Key::new(&a.query(), 2));
        assert_ne!(Key::new(&a.query(), 1), Key::new(&c.query(), 1));
        assert_ne!(Key::new(&d.query(), 1), Key::new(&e.query(), 1));
    }

    #[test]
    fn an_entry_is_not_served_at_or_after_cache_until() {
        let cache = DecisionCache::new(CacheConfig { capacity: 10, ttl: Duration::from_secs(60) }, || ()).unwrap();
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let mut d = Decision::deny(Reason::NoGrant);
        d.valid_until = Some("2026-11-26T10:00:30Z".parse().unwrap());
        d.cache_until = Some("2026-11-26T10:00:05Z".parse().unwrap());
        let key = Key::new(&req(vec![]).query(), 1);
        cache.insert(key.clone(), Arc::new(d), now);
        assert!(cache.get(&key, now).is_some());
        assert!(cache.get(&key, "2026-11-26T10:00:05Z".parse().unwrap()).is_none());
    }

    #[test]
    fn an_answer_that_may_not_be_reused_is_not_cached() {
        let cache = DecisionCache::new(CacheConfig { capacity: 10, ttl: Duration::from_secs(60) }, || ()).unwrap();
        let now: Timestamp = "2026-11-26T10:00:00Z".parse().unwrap();
        let mut d = Decision::deny(Reason::NoGrant);
        d.cache_until = Some(now);
        let key = Key::new(&req(vec![]).query(), 1);
        cache.insert(key.clone(), Arc::new(d), now);
        assert!(cache.get(&key, now).is_none());
    }
}
