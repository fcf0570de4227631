//! The optional bearer token AuthZEN callers present (`Authorization: Bearer …`), read from a
//! file (a mounted secret) and read again when the file changes, so a rotated secret applies
//! without a restart. Compared in constant time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use hyper::StatusCode;
use hyper::header::HeaderValue;

use super::Failure;

/// How often the token file is checked for a change.
const POLL: Duration = Duration::from_secs(1);

/// The expected token, kept current with its file.
#[derive(Clone, Debug)]
pub struct Token {
    current: Arc<ArcSwap<Vec<u8>>>,
}

/// The token in a file: its content without surrounding whitespace; empty is refused.
fn read(path: &Path) -> anyhow::Result<Vec<u8>> {
    let text = std::fs::read_to_string(path)?;
    let token = text.trim();
    anyhow::ensure!(!token.is_empty(), "the token file is empty");
    Ok(token.as_bytes().to_vec())
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

impl Token {
    /// Reads `path` now (an error stops the server from starting) and follows it from then on:
    /// a file that becomes unreadable or empty keeps the last good token, logged.
    pub fn follow(path: PathBuf) -> anyhow::Result<Token> {
        let current = Arc::new(ArcSwap::from_pointee(read(&path)?));
        let token = Token { current: current.clone() };
        tokio::spawn(async move {
            let mut seen = modified(&path);
            loop {
                tokio::time::sleep(POLL).await;
                let now = modified(&path);
                if now == seen {
                    continue;
                }
                seen = now;
                match read(&path) {
                    Ok(t) => {
                        current.store(Arc::new(t));
                        tracing::info!("AuthZEN token reloaded from {}", path.display());
                    }
                    Err(e) => tracing::warn!("AuthZEN token file {}: {e}; keeping the last token", path.display()),
                }
            }
        });
        Ok(token)
    }

    /// Admits a request by its `Authorization` header: 401 without a bearer token, 403 with a
    /// wrong one.
    pub(super) fn admit(&self, header: Option<&HeaderValue>) -> Result<(), Failure> {
        let Some(given) = header.and_then(|h| bearer(h.as_bytes())) else {
            return Err(Failure::new(StatusCode::UNAUTHORIZED, "authorization: a bearer token is required"));
        };
        if !equal(given, &self.current.load()) {
            return Err(Failure::new(StatusCode::FORBIDDEN, "authorization: the bearer token is not accepted"));
        }
        Ok(())
    }
}

/// The token of a `Bearer TOKEN` header (scheme case-insensitive).
fn bearer(h: &[u8]) -> Option<&[u8]> {
    let (scheme, rest) = (h.get(..7)?, h.get(7..)?);
    scheme.eq_ignore_ascii_case(b"bearer ").then(|| rest.trim_ascii()).filter(|t| !t.is_empty())
}

/// Equality whose time depends only on the lengths, not on where the bytes differ.
fn equal(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for (i, x) in a.iter().enumerate() {
        diff |= usize::from(x ^ b.get(i % b.len().max(1)).copied().unwrap_or(0));
    }
    diff == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equality_is_exact() {
        assert!(equal(b"s3cret", b"s3cret"));
        for other in [&b"s3cre"[..], b"s3cret!", b"S3cret", b"", b"s3creu"] {
            assert!(!equal(other, b"s3cret"), "{other:?}");
        }
    }

    #[test]
    fn only_bearer_tokens_are_read() {
        assert_eq!(bearer(b"Bearer abc"), Some(&b"abc"[..]));
        assert_eq!(bearer(b"bearer  abc "), Some(&b"abc"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer "), None);
        assert_eq!(bearer(b"Bearer"), None);
    }
}
