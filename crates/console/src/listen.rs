//! Where the console may listen. It has no authentication and shows every member and grant, so
//! it binds to loopback unless told otherwise.

use std::net::{IpAddr, SocketAddr};

/// A listen address the console refuses.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// Not a loopback address, and `--allow-remote` was not given.
    #[error(
        "refusing to listen on `{0}`: not a loopback address, and the console shows every member and grant without authentication (give --allow-remote to do it anyway)"
    )]
    Remote(SocketAddr),
}

/// True for `127.0.0.0/8`, `::1` and the IPv4-mapped form of a `127.0.0.0/8` address.
pub fn is_loopback(ip: IpAddr) -> bool {
    ip.to_canonical().is_loopback()
}

/// Accepts `addr` when it is a loopback address or `allow_remote` is set.
pub fn check_listen(addr: SocketAddr, allow_remote: bool) -> Result<(), ListenError> {
    if allow_remote || is_loopback(addr.ip()) { Ok(()) } else { Err(ListenError::Remote(addr)) }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn loopback_addresses_are_accepted_without_allow_remote() {
        for a in ["127.0.0.1:8080", "127.1.2.3:0", "[::1]:8080", "[::ffff:127.0.0.1]:8080"] {
            assert_eq!(check_listen(addr(a), false), Ok(()), "{a}");
        }
    }

    #[test]
    fn wildcard_and_remote_addresses_need_allow_remote() {
        for a in ["0.0.0.0:8080", "[::]:8080", "10.0.0.5:8080", "[::ffff:10.0.0.5]:80", "[2001:db8::1]:80"] {
            assert_eq!(check_listen(addr(a), false), Err(ListenError::Remote(addr(a))), "{a}");
            assert_eq!(check_listen(addr(a), true), Ok(()), "{a}");
        }
    }
}
