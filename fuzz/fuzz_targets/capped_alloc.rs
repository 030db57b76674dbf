//! Included by every target (`mod capped_alloc;`) and by tests/fuzz_corpus.rs, which replays
//! the corpora: a global allocator that refuses any single allocation over 256 MiB, so a reader
//! that sizes a buffer from an input field before checking it aborts the run (a crash libFuzzer
//! records) even without a sanitizer. Without it, `-s none` runs do not notice: a 3 GiB `calloc`
//! succeeds lazily on a machine with overcommit, and only AddressSanitizer's malloc limit found
//! the `ntfs` index record case (FINDINGS.md, 11).
use std::alloc::{GlobalAlloc, Layout, System};

/// The largest single allocation a target may make.
const MAX_ALLOCATION: usize = 256 << 20;

struct Capped;

// SAFETY: every call is forwarded to the system allocator unchanged, or refused with a null
// pointer (which the caller treats as allocation failure) before it reaches it.
unsafe impl GlobalAlloc for Capped {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        // SAFETY: forwarded with the caller's pointer, layout and size.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded with the caller's pointer and layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Capped = Capped;
