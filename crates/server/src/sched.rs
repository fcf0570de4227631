//! A short time slice for the threads that answer calls, so that a reload on the same core does
//! not hold a call back.
//!
//! A sidecar often has one core, shared by the request threads and the thread that reloads the
//! policy directory. On Linux's EEVDF scheduler (6.6 and later) a thread that was picked may run
//! out its slice (0.75–3 ms by default, more with more CPUs) before a thread that just woke up
//! gets the core, so a call arriving during a reload could wait for the reload: with a
//! 5,000-member tenant rewritten every 100 ms, p99 at 1,000 calls/s went from ~0.6 ms to
//! 1.5–2 ms (BENCHMARKS.md).
//! Since Linux 6.12 a thread may ask for a shorter slice (`sched_setattr`'s `sched_runtime`,
//! at least 100 µs); a thread with a shorter slice gets the core as soon as it wakes. The
//! request threads ask for the shortest. Nothing is taken from the reload thread: it keeps its
//! normal priority and its share of the core, so a revocation applies as fast under load as
//! before. Older kernels ignore the request; a policy other than the normal ones (real-time, set
//! by an operator) is left as it is, and so is the thread's nice value.

use std::time::Duration;

/// The slice the request threads ask for: the shortest the kernel grants.
pub const REQUEST_SLICE: Duration = Duration::from_micros(100);

/// Asks the kernel to run the calling thread in [`REQUEST_SLICE`]s; for
/// `tokio::runtime::Builder::on_thread_start`. Best effort: returns whether the kernel took it.
pub fn short_slice() -> bool {
    #[cfg(target_os = "linux")]
    {
        linux::set_slice(REQUEST_SLICE)
    }
    #[cfg(not(target_os = "linux"))]
    {
        false
    }
}

#[cfg(target_os = "linux")]
#[expect(unsafe_code, reason = "sched_getattr and sched_setattr have no wrapper in std or libc")]
mod linux {
    use std::time::Duration;

    /// `sched_attr` as the kernel reads it (`SCHED_ATTR_SIZE_VER0`).
    fn empty() -> libc::sched_attr {
        libc::sched_attr {
            size: size_of::<libc::sched_attr>() as u32,
            sched_policy: 0,
            sched_flags: 0,
            sched_nice: 0,
            sched_priority: 0,
            sched_runtime: 0,
            sched_deadline: 0,
            sched_period: 0,
        }
    }

    pub(super) fn set_slice(slice: Duration) -> bool {
        let mut attr = empty();
        let size = attr.size;
        // SAFETY: `attr` is a valid, writable `sched_attr` of `size` bytes; 0 is this thread.
        let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &raw mut attr, size, 0) };
        let fair = [libc::SCHED_OTHER, libc::SCHED_BATCH].contains(&(attr.sched_policy as i32));
        if got != 0 || !fair {
            return false;
        }
        // Same policy and nice value (so no privilege is needed), a shorter slice.
        attr.sched_runtime = u64::try_from(slice.as_nanos()).unwrap_or(u64::MAX);
        attr.sched_flags = 0;
        // SAFETY: `attr` is a valid `sched_attr`, read by the kernel only; 0 is this thread.
        let set = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &raw const attr, 0) };
        if set != 0 {
            return false;
        }
        let mut check = empty();
        // SAFETY: as above.
        let got = unsafe { libc::syscall(libc::SYS_sched_getattr, 0, &raw mut check, size, 0) };
        got == 0 && check.sched_runtime == attr.sched_runtime
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a kernel with custom slices (6.12+, as this project's test machines run) the thread
    /// reads back the slice it asked for; elsewhere the call is refused or ignored, never fatal.
    #[test]
    fn a_thread_asks_for_a_short_slice_and_keeps_its_nice_value() {
        let (took, nice_before, nice_after) = std::thread::spawn(|| {
            let before = nice();
            let took = short_slice();
            (took, before, nice())
        })
        .join()
        .unwrap();
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let version: Vec<u32> = release.split(['.', '-']).take(2).filter_map(|p| p.parse().ok()).collect();
        if cfg!(target_os = "linux") && version >= vec![6, 12] {
            assert!(took, "kernel {release} should grant a {REQUEST_SLICE:?} slice");
        }
        assert_eq!(nice_after, nice_before);
    }

    /// The calling thread's nice value.
    #[expect(unsafe_code, reason = "getpriority has no wrapper in std")]
    fn nice() -> i32 {
        // SAFETY: getpriority reads a nice value (on Linux, PRIO_PROCESS 0 is the calling
        // thread); no memory is passed.
        unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) }
    }
}
