//! Who may do an action on a resource (docs/api.md, "Who"): every member for whom `decide`
//! allows it, in the tenant document's member order, a page at a time. Each member is decided by
//! the same path as `Check`.

use std::sync::Arc;

use jiff::Timestamp;

use super::decide::{NoSteps, RequestError};
use super::request::{Context, Resource};
use super::snapshot::Tenant;

/// One page of members.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WhoPage {
    /// The allowed members of this page, in document order.
    pub principals: Vec<Arc<str>>,
    /// Continues the listing; `None` on the last page.
    pub next_page_token: Option<String>,
}

/// Why a `Who` question cannot be answered.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WhoError {
    /// The action does not fit the tenant's schema or the resource.
    #[error(transparent)]
    Request(#[from] RequestError),
    /// The page token was not made by this listing.
    #[error(
        "not a page token of this listing (tokens belong to one tenant, action and resource, and end when the member they follow is removed)"
    )]
    PageToken,
}

/// Where a page starts: `page_token` as given (empty for the first page) and how many members
/// the page may hold.
#[derive(Clone, Copy, Debug)]
pub struct Page<'a> {
    /// The previous page's `next_page_token`, or empty.
    pub token: &'a str,
    /// Members in the page, at least 1.
    pub size: usize,
}

impl Tenant {
    /// The members for whom `decide` allows `action` on `resource` with `context` at `now`, one
    /// page: the members examined after the page's token until `page.size` are found.
    pub fn who(
        &self,
        action: &str,
        resource: &Resource,
        context: &Context,
        now: Timestamp,
        page: Page<'_>,
    ) -> Result<WhoPage, WhoError> {
        let action_id = self.resolve_action(action, &resource.kind)?;
        let seed = Fnv::default().field(&self.name).field(action).field(&resource.kind).field(&resource.id);
        let start = match page.token {
            "" => 0,
            token => self.resume(token, &seed).ok_or(WhoError::PageToken)?,
        };
        let size = page.size.max(1);
        let mut principals = Vec::with_capacity(size.min(self.roster.len()));
        let mut next = None;
        for (i, member) in self.roster.iter().enumerate().skip(start) {
            if principals.len() == size {
                next = Some(i);
                break;
            }
            if self.decide_member(action_id, member, resource, context, now, &mut NoSteps).allowed {
                principals.push(member.id.clone());
            }
        }
        let next_page_token = next.and_then(|i| {
            let last = self.roster.get(i.checked_sub(1)?)?;
            Some(format!("{i:x}.{:016x}", seed.field(&last.id).0))
        });
        Ok(WhoPage { principals, next_page_token })
    }

    /// The roster position a token continues at: right after the member it names, found where
    /// the token says or, when members were added or removed since, by a scan.
    fn resume(&self, token: &str, seed: &Fnv) -> Option<usize> {
        let (pos, hash) = token.split_once('.')?;
        if pos.is_empty() || pos.len() > 16 || hash.len() != 16 {
            return None;
        }
        let pos = usize::from_str_radix(pos, 16).ok()?;
        let hash = u64::from_str_radix(hash, 16).ok()?;
        let names = |i: usize| self.roster.get(i).is_some_and(|m| seed.field(&m.id).0 == hash);
        if pos > 0 && names(pos - 1) {
            return Some(pos);
        }
        (0..self.roster.len()).find(|i| names(*i)).map(|i| i + 1)
    }
}

/// 64-bit FNV-1a over length-prefixed fields: stable across processes and versions, so a token
/// made by one replica is understood by another serving the same tenant.
#[derive(Clone, Copy, Debug)]
struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    fn field(self, s: &str) -> Fnv {
        let mut h = self.0;
        for b in (s.len() as u64).to_le_bytes().iter().chain(s.as_bytes()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        Fnv(h)
    }
}
