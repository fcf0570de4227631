//! Giving back to the system the memory a large parse used for a moment.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

/// Documents parsed in one round below this many bytes leave too little behind to be worth a trim.
pub const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Tenants of at least this many members (about 1 MiB compiled) are worth a trim when a change
/// replaces them.
pub const TRIM_AFTER_MEMBERS: usize = 2_000;

/// Returns the heap pages freed since the last call to the operating system. Parsing a document
/// takes a few kilobytes per member for a moment, which the allocator keeps in its heaps between
/// the long-lived compiled tenant's blocks after they are freed: without this, a 100,000-member
/// document leaves the process resident at its parse peak. Not needed on allocators that return
/// memory by themselves; a no-op outside glibc.
pub fn release_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim();
}

/// How long [`release_freed_memory_soon`] waits before it trims: changes coming faster than this
/// share one trim.
pub const TRIM_DELAY: Duration = Duration::from_millis(250);

/// A trim is waiting to run.
static PENDING: AtomicBool = AtomicBool::new(false);

/// [`release_freed_memory`] on another thread, [`TRIM_DELAY`] from now, unless one is waiting
/// already (it will hand back what was freed since, too). For memory freed by frequent small
/// changes: the change is not delayed by the trim, and a burst of changes pays for one trim.
/// The last change of a burst is always followed by a trim.
pub fn release_freed_memory_soon() {
    if PENDING.swap(true, Ordering::AcqRel) {
        return;
    }
    let spawned = std::thread::Builder::new().name("rolegate-trim".into()).spawn(|| {
        std::thread::sleep(TRIM_DELAY);
        // Cleared before the trim: a change freeing memory from now on asks for a trim of its own.
        PENDING.store(false, Ordering::Release);
        release_freed_memory();
    });
    if spawned.is_err() {
        PENDING.store(false, Ordering::Release);
        release_freed_memory();
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim takes no pointer: it only walks the allocator's own free lists")]
fn trim() {
    // SAFETY: `malloc_trim` is thread-safe (it locks each arena it walks) and reads no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
