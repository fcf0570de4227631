//! Applying one round: compiling what was read against what the follower knows of each tenant,
//! keeping the last good head when a document, template or unit row is rejected, and
//! publishing every changed tenant in one snapshot.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use super::super::build::{self, Built, Head, Templates};
use super::super::rows::{BindingRow, MemberRow, TenantRow, UnitRow};
use super::Follower;
use super::read::{MemberRead, Read};
use crate::{ReloadReport, Stale};
use rolegate_engine::Tenant;
use rolegate_policy::Diagnostic;

/// What the follower holds of one tenant.
#[derive(Debug, Default)]
pub(super) struct Known {
    /// The last change id read for the tenant: its revision.
    pub(super) seen: i64,
    /// What its members compile against: the last good head. Kept when a newer document,
    /// template or unit row is rejected, so that member changes (revocations above all) still
    /// apply on top of it; `None` when the tenant never loaded, failed whole or is gone, so that
    /// its next change reloads it whole.
    pub(super) head: Option<Head>,
    /// Errors about its document, template or unit rows while they are rejected.
    bad_head: Vec<Diagnostic>,
    /// Members served as invalid (denied everything) until their rows are fixed, with the errors.
    bad_members: BTreeMap<String, Vec<Diagnostic>>,
}

impl Known {
    /// The tenant as served with rejected input, if it is.
    fn stale(&self, tenant: &str) -> Option<Stale> {
        let findings: Vec<String> =
            self.bad_head.iter().chain(self.bad_members.values().flatten()).map(ToString::to_string).collect();
        (!findings.is_empty()).then(|| Stale { tenant: tenant.to_owned(), why: findings.join("; ") })
    }
}

/// A tenant compiled in one round, and what it was compiled against.
struct Round {
    /// The head the members were compiled against.
    head: Option<Head>,
    /// Errors about a rejected head (the tenant was compiled against the last good one).
    bad_head: Vec<Diagnostic>,
    /// The tenant, or why none could be built.
    built: Result<Built, Vec<Diagnostic>>,
    /// Invalid members this round did not touch, still invalid.
    kept: BTreeMap<String, Vec<Diagnostic>>,
}

/// The rows of one tenant read whole.
struct Rows<'a> {
    row: &'a TenantRow,
    units: &'a [&'a UnitRow],
    members: &'a [&'a MemberRow],
    bindings: &'a HashMap<&'a str, Vec<&'a BindingRow>>,
    templates: &'a Templates,
}

impl Follower {
    /// Compiles what was read and publishes every tenant that changed in one snapshot.
    pub fn apply(&mut self, read: Read) -> ReloadReport {
        let mut report = ReloadReport::default();
        let snapshot = self.store.load();
        let served = |name: &str| snapshot.as_ref().is_some_and(|s| s.tenant(name).is_some());
        let mut fresh: Vec<Arc<Tenant>> = Vec::new();
        let mut removed: Vec<String> = read.gone.iter().filter(|name| served(name)).cloned().collect();
        for name in &read.gone {
            self.known.remove(name);
        }

        let rows = &read.rows;
        let templates = build::templates(&rows.templates);
        let units = group(&rows.units, |u| &u.tenant);
        let members = group(&rows.members, |m| &m.tenant);
        let bindings = group(&rows.bindings, |b| &b.tenant);
        let tenant_rows: HashMap<&str, &TenantRow> = rows.tenants.iter().map(|t| (t.id.as_str(), t)).collect();
        let no_bindings = Vec::new();
        for name in &read.full {
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let Some(row) = tenant_rows.get(name.as_str()) else {
                if served(name) {
                    removed.push(name.clone());
                }
                self.known.insert(name.clone(), Known { seen: revision, ..Known::default() });
                continue;
            };
            let by_member = group(bindings.get(name.as_str()).unwrap_or(&no_bindings).iter().copied(), |b| &b.member);
            let rows = Rows {
                row,
                units: units.get(name.as_str()).map_or(&[], Vec::as_slice),
                members: members.get(name.as_str()).map_or(&[], Vec::as_slice),
                bindings: &by_member,
                templates: &templates,
            };
            let round = self.whole(&mut report, name, &rows, revision as u64);
            self.record(&mut report, &mut fresh, name, revision, round);
        }

        for read_members in &read.members {
            let name = &read_members.tenant;
            let revision = read.revisions.get(name).copied().unwrap_or_default();
            let base = snapshot.as_ref().and_then(|s| s.tenant(name));
            match self.members(read_members, base, revision as u64) {
                Some(round) => self.record(&mut report, &mut fresh, name, revision, round),
                // Not held after all: reload it whole at the next round.
                None => drop(self.known.insert(name.clone(), Known::default())),
            }
        }

        let first = snapshot.is_none();
        if first || !fresh.is_empty() || !removed.is_empty() {
            self.store.apply(&removed, fresh);
        }
        report.removed = removed;
        report.stale = self.stale();
        report
    }

    /// Builds a tenant read whole. A rejected document, template or unit row leaves the last
    /// good head in place: the members are compiled against it, so their changes still apply.
    fn whole(&self, report: &mut ReloadReport, name: &str, rows: &Rows<'_>, revision: u64) -> Round {
        let head = build::head(rows.row, rows.units, rows.templates)
            .and_then(|head| build::base(&head, revision).map(|base| (head, base)));
        let (head, base, bad_head) = match head {
            Ok((head, base)) => (head, base, Vec::new()),
            Err(diags) => {
                let last_good = self.known.get(name).and_then(|k| k.head.clone());
                let Some((head, base)) = last_good.and_then(|h| build::base(&h, revision).ok().map(|b| (h, b))) else {
                    return Round { head: None, bad_head: Vec::new(), built: Err(diags), kept: BTreeMap::new() };
                };
                report.errors.extend(diags.iter().filter(|d| d.is_error()).cloned());
                (head, base, diags.into_iter().filter(Diagnostic::is_error).collect())
            }
        };
        let built = build::update(&head, &base, rows.members, &[], rows.bindings, revision);
        Round { head: Some(head), bad_head, built, kept: BTreeMap::new() }
    }

    /// Applies one tenant's changed members to its served snapshot; `None` when it is not held.
    fn members(&self, read: &MemberRead, base: Option<&Arc<Tenant>>, revision: u64) -> Option<Round> {
        let known = self.known.get(&read.tenant)?;
        let head = known.head.clone()?;
        let base = base?;
        let present: HashSet<&str> = read.rows.iter().map(|r| r.id.as_str()).collect();
        let gone: Vec<&str> = read.ids.iter().map(String::as_str).filter(|id| !present.contains(id)).collect();
        let put: Vec<&MemberRow> = read.rows.iter().collect();
        let by_member = group(&read.bindings, |b| &b.member);
        let built = build::update(&head, base, &put, &gone, &by_member, revision);
        let mut kept = known.bad_members.clone();
        kept.retain(|id, _| !read.ids.contains(id));
        Some(Round { head: Some(head), bad_head: known.bad_head.clone(), built, kept })
    }

    /// Records what a round made of one tenant: a tenant to publish, the rows it rejected.
    fn record(&mut self, report: &mut ReloadReport, fresh: &mut Vec<Arc<Tenant>>, name: &str, seen: i64, round: Round) {
        let Round { head, bad_head, built, kept } = round;
        let rejected = match &built {
            Ok(b) => b.rejected.values().flatten().cloned().collect(),
            Err(diags) => diags.clone(),
        };
        if !rejected.is_empty() || !bad_head.is_empty() {
            report.failed.push(name.to_owned());
        }
        report.errors.extend(rejected.iter().filter(|d| d.is_error()).cloned());
        let known = match built {
            Ok(Built { tenant, rejected }) => {
                report.applied.push((name.to_owned(), seen as u64));
                fresh.push(Arc::new(tenant));
                let mut bad_members = kept;
                bad_members.extend(rejected);
                Known { seen, head, bad_head, bad_members }
            }
            Err(diags) => {
                Known { seen, bad_head: diags.into_iter().filter(Diagnostic::is_error).collect(), ..Known::default() }
            }
        };
        self.known.insert(name.to_owned(), known);
    }

    /// Every tenant served with rejected input now, by name.
    pub fn stale(&self) -> Vec<Stale> {
        let mut stale: Vec<Stale> = self.known.iter().filter_map(|(name, k)| k.stale(name)).collect();
        stale.sort_unstable_by(|a, b| a.tenant.cmp(&b.tenant));
        stale
    }
}

/// Groups rows by a key, keeping their order.
fn group<'a, T: 'a>(
    items: impl IntoIterator<Item = &'a T>,
    key: impl Fn(&'a T) -> &'a str,
) -> HashMap<&'a str, Vec<&'a T>> {
    let mut out: HashMap<&str, Vec<&T>> = HashMap::new();
    for item in items {
        out.entry(key(item)).or_default().push(item);
    }
    out
}
