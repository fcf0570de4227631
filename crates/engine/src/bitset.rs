//! A fixed-size bit set over a tenant's action ids: a role's permissions in a few words.

/// A set of small integers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BitSet(Box<[u64]>);

impl BitSet {
    /// An empty set able to hold `0..len`.
    pub fn with_len(len: usize) -> Self {
        BitSet(vec![0; len.div_ceil(64)].into_boxed_slice())
    }

    /// Adds `i`; out-of-range values are ignored.
    pub fn insert(&mut self, i: u32) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            *w |= 1 << (i % 64);
        }
    }

    /// Removes `i`.
    pub fn remove(&mut self, i: u32) {
        if let Some(w) = self.0.get_mut(i as usize / 64) {
            *w &= !(1 << (i % 64));
        }
    }

    /// True when `i` is in the set.
    #[inline]
    pub fn contains(&self, i: u32) -> bool {
        self.0.get(i as usize / 64).is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    /// Adds every member of `other`.
    pub fn union_with(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a |= *b;
        }
    }

    /// Removes every member of `other`.
    pub fn subtract(&mut self, other: &BitSet) {
        for (a, b) in self.0.iter_mut().zip(other.0.iter()) {
            *a &= !*b;
        }
    }

    /// Iterates the members in increasing order.
    #[expect(clippy::cast_possible_truncation, reason = "members are u32 ids, so a word index times 64 fits in u32")]
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.0
            .iter()
            .enumerate()
            .flat_map(|(wi, w)| (0..64u32).filter(move |b| w & (1 << b) != 0).map(move |b| wi as u32 * 64 + b))
    }

    /// True when the set is empty.
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|w| *w == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn insert_remove_and_set_operations() {
        let mut a = BitSet::with_len(130);
        a.insert(0);
        a.insert(129);
        a.insert(400); // ignored
        assert!(a.contains(129) && a.contains(0) && !a.contains(1) && !a.contains(400));
        let mut b = BitSet::with_len(130);
        b.insert(64);
        a.union_with(&b);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![0, 64, 129]);
        a.subtract(&b);
        a.remove(0);
        assert_eq!(a.iter().collect::<Vec<_>>(), vec![129]);
    }
}
