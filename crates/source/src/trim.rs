//! Giving back to the system the memory a large parse used for a moment.

/// Documents parsed in one round below this many bytes leave too little behind to be worth a trim.
pub const TRIM_AFTER_BYTES: usize = 1 << 20;

/// Tenants of at least this many members (about 1 MiB compiled) are worth a trim when a change
/// replaces them.
pub const TRIM_AFTER_MEMBERS: usize = 2_000;

/// Returns the heap pages freed since the last call to the operating system. Parsing a document
/// takes a few kilobytes per member for a moment, which the allocator keeps between the
/// long-lived compiled tenant's blocks after they are freed: without this, a 100,000-member
/// document leaves the process resident at its parse peak. Call it on the thread that parsed:
/// `rolegate serve` runs on mimalloc, which is asked to purge this thread's heap (and the blocks
/// other threads freed into it); glibc's heaps, used by anything else linking this crate, are
/// trimmed too.
pub fn release_freed_memory() {
    collect();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    trim();
}

#[expect(unsafe_code, reason = "mi_collect takes no pointer: it only walks mimalloc's own free lists")]
fn collect() {
    // SAFETY: `mi_collect` may be called from any thread at any time; with nothing allocated
    // through mimalloc it has nothing to do.
    unsafe {
        libmimalloc_sys::mi_collect(true);
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
