//! Giving back to the system the memory a large parse used for a moment.

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

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[expect(unsafe_code, reason = "malloc_trim takes no pointer: it only walks the allocator's own free lists")]
fn trim() {
    // SAFETY: `malloc_trim` is thread-safe (it locks each arena it walks) and reads no memory of ours.
    unsafe {
        libc::malloc_trim(0);
    }
}
