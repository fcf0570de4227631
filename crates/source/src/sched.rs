//! Short time slices for the threads that answer calls while a reload runs, so that a reload
//! on the same core does not hold a call back.
//!
//! A sidecar often has one core, shared by the request threads and the thread that reloads the
//! policy directory. On Linux's EEVDF scheduler (6.6 and later) a thread that was picked may run
//! out its slice (0.75–3 ms by default, more with more CPUs) before a thread that just woke up
//! gets the core, so a call arriving during a reload could wait for the reload: with a
//! 5,000-member tenant rewritten every 100 ms, p99 at 1,000 calls/s went from ~0.6 ms to
//! 1.5–2 ms (BENCHMARKS.md). Since Linux 6.12 a thread may ask for a shorter slice
//! (`sched_setattr`'s `sched_runtime`, at least 100 µs), and a thread with a shorter slice gets
//! the core as soon as it wakes.
//!
//! The request threads register themselves ([`register_request_thread`]); from the first
//! filesystem event of a burst (the watcher's threads wake for each write of a file) or from a
//! reload's first changed file, until that reload is done ([`ShortSlices`]), they are given
//! [`REQUEST_SLICE`], and the default again after it. Only then: a short slice costs about 3% of
//! a core's `Check` capacity at full load, and a periodic rescan that finds nothing changed
//! touches no thread. Nothing is
//! taken from the reload thread: it keeps its normal priority and its share of the core, so a
//! revocation applies as fast under load as before. Older kernels ignore the request; a thread
//! with a policy other than the normal ones (real-time, set by an operator) is left as it is,
//! and so is every thread's nice value.

use std::sync::Mutex;
use std::time::Duration;

/// The slice the request threads get while a reload runs: the shortest the kernel grants.
pub const REQUEST_SLICE: Duration = Duration::from_micros(100);

/// The request threads, by thread id.
static REQUEST_THREADS: Mutex<Vec<i64>> = Mutex::new(Vec::new());

/// Held by the tests that give the short slices, so that the one that checks them sees no
/// other's.
#[cfg(test)]
pub(crate) static TESTS_GIVING_SLICES: Mutex<()> = Mutex::new(());

/// Records the calling thread as one that answers calls; for
/// `tokio::runtime::Builder::on_thread_start`.
pub fn register_request_thread() {
    if let Some(tid) = thread_id() {
        REQUEST_THREADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).push(tid);
    }
}

/// Forgets the calling thread; for `tokio::runtime::Builder::on_thread_stop`, so that a thread
/// id the kernel gives to another thread later is never touched.
pub fn unregister_request_thread() {
    if let Some(tid) = thread_id() {
        REQUEST_THREADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner).retain(|t| *t != tid);
    }
}

/// The request threads' short slices for one reload: given at the first [`ShortSlices::begin`],
/// once a burst of events begins or the reload knows it has a changed file to parse and compile,
/// and taken back when this is dropped (also if the reload panics). Until then no thread is
/// touched.
#[derive(Debug, Default)]
pub struct ShortSlices {
    given: bool,
}

impl ShortSlices {
    /// Gives the request threads [`REQUEST_SLICE`], unless this reload already did.
    pub fn begin(&mut self) {
        if !self.given {
            set_request_slices(Some(REQUEST_SLICE));
            self.given = true;
        }
    }

    /// Whether the short slices were given.
    #[cfg(test)]
    pub(crate) fn given(&self) -> bool {
        self.given
    }
}

impl Drop for ShortSlices {
    fn drop(&mut self) {
        if self.given {
            set_request_slices(None);
        }
    }
}

fn set_request_slices(slice: Option<Duration>) {
    let threads = REQUEST_THREADS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    for tid in threads.iter() {
        set_slice(*tid, slice);
    }
}

#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "gettid has no wrapper in std")]
fn thread_id() -> Option<i64> {
    // SAFETY: gettid takes no argument and cannot fail.
    Some(unsafe { libc::syscall(libc::SYS_gettid) })
}

#[cfg(not(target_os = "linux"))]
fn thread_id() -> Option<i64> {
    None
}

/// The slice of thread `tid` as the kernel reports it, if it does.
#[cfg(target_os = "linux")]
pub fn slice_of(tid: i64) -> Option<Duration> {
    linux::get(tid).map(|attr| Duration::from_nanos(attr.sched_runtime)).filter(|d| !d.is_zero())
}

/// Gives thread `tid` `slice` (`None`: the kernel's default), if its kernel and policy allow.
#[cfg(target_os = "linux")]
fn set_slice(tid: i64, slice: Option<Duration>) {
    let Some(mut attr) = linux::get(tid) else { return };
    if ![libc::SCHED_OTHER, libc::SCHED_BATCH].contains(&(attr.sched_policy as i32)) {
        return;
    }
    // Same policy and nice value (so no privilege is needed); only the slice changes.
    attr.sched_runtime = slice.map_or(0, |s| u64::try_from(s.as_nanos()).unwrap_or(u64::MAX));
    attr.sched_flags = 0;
    linux::set(tid, &attr);
}

#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "sched_getattr and sched_setattr have no wrapper in std or libc")]
mod linux {
    /// Thread `tid`'s scheduling attributes.
    pub(super) fn get(tid: i64) -> Option<libc::sched_attr> {
        let size = size_of::<libc::sched_attr>() as u32;
        let mut attr = libc::sched_attr {
            size,
            sched_policy: 0,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        };
        // SAFETY: `attr` is a valid, writable `sched_attr` of `size` bytes.
        let got = unsafe { libc::syscall(libc::SYS_sched_getattr, tid, &raw mut attr, size, 0) };
        (got == 0).then_some(attr)
    }

    /// Sets thread `tid`'s scheduling attributes; an older kernel that refuses them changes nothing.
    pub(super) fn set(tid: i64, attr: &libc::sched_attr) {
        // SAFETY: `attr` is a valid `sched_attr`, only read by the kernel.
        unsafe { libc::syscall(libc::SYS_sched_setattr, tid, attr as *const libc::sched_attr, 0) };
    }
}

#[cfg(not(target_os = "linux"))]
pub fn slice_of(_tid: i64) -> Option<Duration> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set_slice(_tid: i64, _slice: Option<Duration>) {}

#[cfg(test)]
mod tests {
    use super::*;

    /// The calling thread's nice value.
    #[expect(unsafe_code, reason = "getpriority has no wrapper in std")]
    fn nice() -> i32 {
        // SAFETY: getpriority reads a nice value (on Linux, PRIO_PROCESS 0 is the calling
        // thread); no memory is passed.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }

    fn kernel_has_custom_slices() -> bool {
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let version: Vec<u32> = release.split(['.', '-']).take(2).filter_map(|p| p.parse().ok()).collect();
        cfg!(target_os = "linux") && version >= vec![6, 12]
    }

    /// A registered thread has the short slice only between a reload's first change and its
    /// end, and its nice value never changes; a thread that stopped is no longer touched.
    #[test]
    fn request_threads_have_a_short_slice_only_while_a_reload_runs() {
        let _alone = TESTS_GIVING_SLICES.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (tx, rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            register_request_thread();
            tx.send((thread_id().unwrap(), nice())).unwrap();
            done_rx.recv().unwrap();
            let after = nice();
            unregister_request_thread();
            after
        });
        let (tid, nice_before) = rx.recv().unwrap();
        let before = slice_of(tid);
        let (idle, during) = {
            let mut slices = ShortSlices::default();
            let idle = slice_of(tid);
            slices.begin();
            slices.begin();
            (idle, slice_of(tid))
        };
        let after = slice_of(tid);
        done_tx.send(()).unwrap();
        assert_eq!(worker.join().unwrap(), nice_before);
        if kernel_has_custom_slices() {
            assert_ne!(before, Some(REQUEST_SLICE), "the default slice is longer");
            assert_eq!(idle, before, "a reload that found no change yet touches no thread");
            assert_eq!(during, Some(REQUEST_SLICE));
            assert_eq!(after, before);
        }
        assert!(!REQUEST_THREADS.lock().unwrap().contains(&tid));
    }
}
