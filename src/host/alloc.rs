//! The shipped binary's memory allocator: mimalloc (through `libmimalloc-sys`,
//! which builds its C source), instead of musl's mallocng. musl's allocator
//! maps and unmaps its groups as a size class fills and empties (about 190
//! `mmap`/`munmap` calls a control-plane render); mimalloc keeps its pages in
//! one reserved arena. docs/building.md, "The allocator", has the figures and
//! the hardening trade.
//!
//! `src/main.rs` installs [`Mimalloc`] as the global allocator of the static
//! musl build only; other builds keep the C library's. The type is compiled
//! (and tested) everywhere.

use std::alloc::{GlobalAlloc, Layout};
use std::ffi::{c_int, c_long, c_void};

use libmimalloc_sys::{
    mi_free, mi_malloc, mi_malloc_aligned, mi_realloc, mi_realloc_aligned, mi_zalloc,
    mi_zalloc_aligned,
};

unsafe extern "C" {
    /// `mi_option_set` (mimalloc.h; libmimalloc-sys declares it only with its
    /// `extended` feature, which would bring one more crate for this call).
    fn mi_option_set(option: c_int, value: c_long);
}

/// `mi_option_purge_delay`: the 16th entry of mimalloc.h's `mi_option_t` in
/// mimalloc 2 and 3 alike (libmimalloc-sys exports no constant for it).
const MI_OPTION_PURGE_DELAY: c_int = 15;

/// Every block mimalloc's plain `mi_malloc` returns is aligned to this
/// (`MI_MAX_ALIGN_SIZE`, `sizeof(max_align_t)`), or to its size when smaller.
const PLAIN_ALIGN: usize = 16;

/// mimalloc as a Rust global allocator. Unlike the `mimalloc` crate's, which
/// passes every request to `mi_malloc_aligned`, requests whose alignment
/// plain `mi_malloc` already gives go to `mi_malloc`/`mi_realloc`: the
/// aligned entry falls back to over-allocating (size + alignment − 1, then an
/// interior pointer) for any block over 1 KiB whose size class is not a power
/// of two, which a render met about 115 times.
pub struct Mimalloc;

/// Whether plain `mi_malloc(size)` meets `align`, as std's own `System`
/// allocator decides for `malloc`.
fn plain(align: usize, size: usize) -> bool {
    align <= PLAIN_ALIGN && align <= size
}

// SAFETY: every method hands mimalloc a pointer it returned (GlobalAlloc's
// contract on the caller) and returns mimalloc's pointers, aligned as the
// layout asks: `mi_malloc` gives `PLAIN_ALIGN` (or the size's alignment when
// smaller, see `plain`), the `_aligned` calls the alignment they are given.
unsafe impl GlobalAlloc for Mimalloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi_malloc(layout.size()).cast()
            } else {
                mi_malloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.align(), layout.size()) {
                mi_zalloc(layout.size()).cast()
            } else {
                mi_zalloc_aligned(layout.size(), layout.align()).cast()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _layout: Layout) {
        // SAFETY: see the impl.
        unsafe { mi_free(ptr.cast::<c_void>()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: see the impl.
        unsafe {
            if plain(layout.align(), new_size) {
                mi_realloc(ptr.cast::<c_void>(), new_size).cast()
            } else {
                mi_realloc_aligned(ptr.cast::<c_void>(), new_size, layout.align()).cast()
            }
        }
    }
}

/// Run once at the start of `main`: freed pages go back to the kernel at
/// once instead of after mimalloc's default delay (one second). A large buffer
/// freed while the next one is built (a cloud-config's blocks in `config
/// validate`) would otherwise stay resident and raise the peak: the
/// many-small input of `benches/validate-memory.py` peaked at 45 MiB with the
/// delay, 30 MiB without (the limit is 31.9 MiB).
pub fn configure() {
    // SAFETY: sets a plain integer option, read when mimalloc next decides
    // whether to purge.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

/// Run just before the process exits: no page is given back to the kernel
/// any more. mimalloc frees every page it still holds when the process
/// ends (`mi_process_done`) and, with the purge delay at 0, gave each back
/// with its own `madvise`: about 28 calls at the end of a control-plane
/// render, for memory the kernel takes back at exit anyway.
pub fn before_exit() {
    // SAFETY: as in `configure`; a negative delay turns purging off.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, -1) };
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks of sizes on both sides of mimalloc's small/large boundary and
    /// of every alignment come back aligned, keep their bytes when grown or
    /// shrunk, and zeroed ones are zero.
    #[test]
    fn alignment_contents_and_zeroing() {
        configure();
        let a = Mimalloc;
        for align in [1usize, 2, 4, 8, 16, 32, 64, 4096] {
            for size in [1usize, 3, 8, 15, 16, 24, 100, 1000, 1025, 3000, 70_000] {
                let layout = Layout::from_size_align(size, align).unwrap();
                // SAFETY: non-zero sizes; every block is freed once, with the
                // layout it has then.
                unsafe {
                    let z = a.alloc_zeroed(layout);
                    assert!(!z.is_null());
                    assert_eq!(z as usize % align, 0, "zeroed {size}/{align}");
                    assert!(std::slice::from_raw_parts(z, size).iter().all(|&b| b == 0));
                    a.dealloc(z, layout);
                    for new_size in [size * 3 + 5, size.div_ceil(2)] {
                        let p = a.alloc(layout);
                        assert!(!p.is_null());
                        assert_eq!(p as usize % align, 0, "alloc {size}/{align}");
                        for i in 0..size {
                            *p.add(i) = i as u8;
                        }
                        let q = a.realloc(p, layout, new_size);
                        assert!(!q.is_null());
                        assert_eq!(q as usize % align, 0, "realloc {size}->{new_size}/{align}");
                        for i in 0..size.min(new_size) {
                            assert_eq!(*q.add(i), i as u8, "byte {i} of {size}->{new_size}");
                        }
                        a.dealloc(q, Layout::from_size_align(new_size, align).unwrap());
                    }
                }
            }
        }
    }
}
