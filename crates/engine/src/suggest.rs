//! "Did you mean" suggestions for misspelt names in documents and requests.

/// The candidate closest to `name` by edit distance, when it is close enough to be a likely typo.
pub fn closest<'a, I>(name: &str, candidates: I) -> Option<&'a str>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = name.chars().count().div_ceil(3);
    candidates
        .into_iter()
        .map(|c| (distance(name, c), c))
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

/// Formats ` (did you mean `x`?)` or nothing.
pub fn hint<'a, I>(name: &str, candidates: I) -> String
where
    I: IntoIterator<Item = &'a str>,
{
    closest(name, candidates).map(|c| format!(" (did you mean `{c}`?)")).unwrap_or_default()
}

#[expect(clippy::indexing_slicing, reason = "j + 1 <= b.len(), and both rows hold b.len() + 1 entries")]
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != *cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_a_near_name_and_not_a_far_one() {
        assert_eq!(closest("alow", ["allow", "extends"]), Some("allow"));
        assert_eq!(closest("conversation.replay", ["conversation.reply"]), Some("conversation.reply"));
        assert_eq!(closest("zzz", ["allow"]), None);
    }
}
