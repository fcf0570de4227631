//! The key of a tenant's members map. A `Check` finds its member by comparing the principal with
//! a key: a key that points elsewhere costs a trip to memory on a large tenant, where few of the
//! members' ids are in cache. Ids of up to [`INLINE`] bytes (the usual case) are therefore kept in
//! the map's own slot, beside the pointer to the member, and compared there.

use std::borrow::Borrow;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

/// The longest id kept in the slot.
pub const INLINE: usize = 22;

/// A member id as the members map keys it. Hashes, compares and borrows as the id's `str`, so
/// the map is looked up with a plain `&str`.
#[derive(Clone)]
pub struct MemberKey(Repr);

#[derive(Clone)]
enum Repr {
    Inline { len: u8, bytes: [u8; INLINE] },
    Shared(Arc<str>),
}

impl MemberKey {
    /// The id.
    #[inline]
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Built only from a whole `&str` of `len` bytes (see `From<&str>`).
            Repr::Inline { len, bytes } => {
                bytes.get(..usize::from(*len)).and_then(|b| std::str::from_utf8(b).ok()).unwrap_or_default()
            }
            Repr::Shared(s) => s,
        }
    }
}

impl From<&str> for MemberKey {
    fn from(s: &str) -> Self {
        let mut bytes = [0; INLINE];
        match (u8::try_from(s.len()), bytes.get_mut(..s.len())) {
            (Ok(len), Some(slot)) => {
                slot.copy_from_slice(s.as_bytes());
                MemberKey(Repr::Inline { len, bytes })
            }
            _ => MemberKey(Repr::Shared(Arc::from(s))),
        }
    }
}

impl From<&Arc<str>> for MemberKey {
    fn from(s: &Arc<str>) -> Self {
        if s.len() <= INLINE { MemberKey::from(&**s) } else { MemberKey(Repr::Shared(s.clone())) }
    }
}

impl Deref for MemberKey {
    type Target = str;
    #[inline]
    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl Borrow<str> for MemberKey {
    #[inline]
    fn borrow(&self) -> &str {
        self.as_str()
    }
}

impl Hash for MemberKey {
    #[inline]
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_str().hash(state)
    }
}

impl PartialEq for MemberKey {
    #[inline]
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl Eq for MemberKey {}

impl fmt::Debug for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for MemberKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use proptest::prelude::*;

    use super::*;

    #[test]
    fn short_ids_stay_in_the_slot_and_long_ones_are_shared() {
        assert!(matches!(MemberKey::from("agent-00001").0, Repr::Inline { len: 11, .. }));
        assert!(matches!(MemberKey::from("x".repeat(INLINE).as_str()).0, Repr::Inline { .. }));
        assert!(matches!(MemberKey::from("x".repeat(INLINE + 1).as_str()).0, Repr::Shared(_)));
        assert_eq!(size_of::<MemberKey>(), 24);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]

        /// Any id, short, long or multi-byte, reads back, hashes and compares as its `str`, and
        /// finds its entry by `&str`.
        #[test]
        fn behaves_as_its_str(ids in proptest::collection::vec("\\PC{0,30}", 1..20)) {
            let mut map = HashMap::new();
            for (i, id) in ids.iter().enumerate() {
                let key = MemberKey::from(id.as_str());
                prop_assert_eq!(key.as_str(), id.as_str());
                prop_assert_eq!(&*MemberKey::from(&Arc::<str>::from(id.as_str())), id.as_str());
                map.insert(key, i);
            }
            for id in &ids {
                let last = ids.iter().rposition(|x| x == id).unwrap();
                prop_assert_eq!(map.get(id.as_str()), Some(&last));
            }
            prop_assert_eq!(map.get("\u{0}not-an-id\u{0}"), None);
        }
    }
}
