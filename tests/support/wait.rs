//! Waiting for an observable signal (a revision, a metric, a health status, a file) with a
//! deadline, instead of sleeping and hoping the server has caught up.

use std::time::Duration;

use tokio::time::Instant;

/// How often `wait_until` asks again: short next to any deadline, long enough not to hog the
/// two cores the tests share with the server.
const INTERVAL: Duration = Duration::from_millis(10);

/// Asks `check` every 10 ms until it returns `Some`, and returns that value. Panics naming
/// `what` once `within` has passed, also when a single `check` is still running then.
pub async fn wait_until<T>(what: &str, within: Duration, mut check: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, check()).await {
            Ok(Some(value)) => return value,
            Ok(None) if Instant::now() < deadline => tokio::time::sleep(INTERVAL).await,
            _ => panic!("waited {within:?} for {what}, in vain"),
        }
    }
}
