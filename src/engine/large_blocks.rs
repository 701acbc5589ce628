//! The programs' global allocator: glibc for everything below
//! [`LARGE_BLOCK`], and each larger block (the networks' activations, up to
//! 264 MB in the VAE decoder at 672x384) memory mapped, its pages kept when
//! freed and moved, not copied or faulted in again, into the next large block.
//!
//! Why not glibc alone: with its mappings on, every activation was fresh pages
//! the kernel faults in and zeroes (VAE decode 31.4 s against 24.0 s); with
//! them off (`tune_allocator`) one heap serves all, but freed activations
//! leave holes the next, differently sized, ones do not fit, and the heap
//! grew to twice what was alive (`profile_onnx --memory`: 520 MiB alive at
//! the decoder's peak, about 1,150 MiB resident above the weights).
//!
//! Here freed blocks are kept as pieces of mappings. A request takes the
//! smallest kept piece that is big enough (its head; the rest stays kept),
//! else it is built from several kept pieces moved side by side with
//! `mremap` (page tables move, the pages stay resident and keep no faults
//! pending), fresh pages making up the rest. So the resident memory of large
//! blocks is the most that was ever alive at once, and a page is faulted in
//! once per job. Kept pieces go back to the kernel after a job
//! ([`release_kept`]). Measured and dropped: mimalloc (decode 24.0-24.5 s
//! against 22.0 s, its padding copies 2.4-2.8 s against 0.6 s: it returns
//! freed pages to the kernel and faults them in again), glibc mapping blocks
//! over 16 MiB (23.8-25.2 s), kept mappings resized with `mremap` (shrinking
//! frees pages that growing faults in again: 23.9-24.1 s).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::AtomicUsize;

/// Blocks of at least this many bytes get mappings of their own; below it
/// glibc's heap is fast and does not fragment much.
pub const LARGE_BLOCK: usize = 16 << 20;

/// The allocator to install with `#[global_allocator]` in each program.
pub struct LargeBlocks;

// SAFETY: small blocks are glibc's, untouched; a large block is page-aligned
// private anonymous memory of at least the requested size, owned by exactly
// one caller until it is freed (a kept piece is handed out once: it leaves
// the list under its lock).
unsafe impl GlobalAlloc for LargeBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if is_large(layout) {
            mapped::obtain(layout.size()).0
        } else {
            // SAFETY: forwarded unchanged.
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if !is_large(layout) {
            // SAFETY: forwarded unchanged.
            return unsafe { System.alloc_zeroed(layout) };
        }
        let (block, fresh) = mapped::obtain(layout.size());
        if !fresh && !block.is_null() {
            // SAFETY: the kept block is at least `size` bytes and now ours.
            unsafe { block.write_bytes(0, layout.size()) };
        }
        block
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        if is_large(layout) {
            mapped::keep(block, layout.size());
        } else {
            // SAFETY: a small block came from glibc.
            unsafe { System.dealloc(block, layout) }
        }
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller guarantees `new_size` rounded to the alignment
        // fits in isize, as `realloc` requires.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (is_large(layout), is_large(new_layout)) {
            // SAFETY: both small: glibc's own block, forwarded.
            (false, false) => unsafe { System.realloc(block, layout, new_size) },
            (true, true) if mapped::whole_pages(layout.size()) == mapped::whole_pages(new_size) => {
                block
            }
            _ => {
                // SAFETY: a new block of the new layout, the old one's bytes
                // copied up to the shorter length, then the old one freed.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        std::ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

/// Whether a request is served by a mapping: large enough, and an alignment
/// a page start satisfies.
fn is_large(layout: Layout) -> bool {
    layout.size() >= LARGE_BLOCK && layout.align() <= mapped::page_size()
}

/// Bytes of large blocks handed out and not yet freed.
static IN_USE: AtomicUsize = AtomicUsize::new(0);

/// Bytes of large blocks (see [`LargeBlocks`]) the program holds now, whole
/// pages: with glibc's own count, what a network's activations take
/// (`examples/profile_onnx.rs --memory`).
pub fn large_blocks_in_use() -> usize {
    IN_USE.load(std::sync::atomic::Ordering::Relaxed)
}

/// Return every kept large block to the kernel, for when no call is running
/// (after a plan is made, after a job: see `release_free_memory`).
pub fn release_kept() {
    mapped::release_all();
}

/// Bytes of large blocks kept for reuse right now (for tests).
#[cfg(test)]
fn kept_bytes() -> usize {
    mapped::kept_bytes()
}

mod mapped {
    use std::sync::atomic::Ordering;
    use std::sync::{Mutex, MutexGuard};

    /// Kept pieces at most; more are returned to the kernel.
    const KEPT_SLOTS: usize = 256;
    /// Live blocks built from several pieces at most; beyond, fresh mappings.
    const BUILT_SLOTS: usize = 32;
    /// Pieces one built block is made of at most.
    const PIECES: usize = 32;

    /// Pages at `address` that lie within one mapping (what `mremap` moves).
    #[derive(Clone, Copy)]
    struct Piece {
        address: usize,
        length: usize,
    }

    const NO_PIECE: Piece = Piece {
        address: 0,
        length: 0,
    };

    /// A live block built from several pieces, so freeing it can keep each;
    /// it starts where its first piece does. No pieces: a free slot.
    #[derive(Clone, Copy)]
    struct Built {
        count: usize,
        pieces: [Piece; PIECES],
    }

    const NO_BLOCK: Built = Built {
        count: 0,
        pieces: [NO_PIECE; PIECES],
    };

    impl Built {
        fn add(&mut self, piece: Piece) {
            self.pieces[self.count] = piece;
            self.count += 1;
        }

        fn starts_at(&self, address: usize) -> bool {
            self.count > 0 && self.pieces[0].address == address
        }
    }

    struct State {
        kept: [Piece; KEPT_SLOTS],
        kept_count: usize,
        built: [Built; BUILT_SLOTS],
    }

    static STATE: Mutex<State> = Mutex::new(State {
        kept: [NO_PIECE; KEPT_SLOTS],
        kept_count: 0,
        built: [NO_BLOCK; BUILT_SLOTS],
    });

    fn state() -> MutexGuard<'static, State> {
        // Nothing panics while the lock is held; a poisoned lock still holds
        // consistent lists.
        STATE
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn page_size() -> usize {
        // SAFETY: sysconf only reads a constant of the process.
        let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(size).unwrap_or(4096).max(4096)
    }

    pub fn whole_pages(size: usize) -> usize {
        let page = page_size();
        size.div_ceil(page) * page
    }

    impl State {
        fn kept(&self) -> &[Piece] {
            &self.kept[..self.kept_count]
        }

        fn remove(&mut self, ix: usize) -> Piece {
            let piece = self.kept[ix];
            self.kept_count -= 1;
            self.kept[ix] = self.kept[self.kept_count];
            piece
        }

        /// Keep a piece, or unmap it when the list is full.
        fn keep(&mut self, piece: Piece) {
            if self.kept_count < KEPT_SLOTS {
                self.kept[self.kept_count] = piece;
                self.kept_count += 1;
            } else {
                unmap(piece);
            }
        }

        /// The first `length` bytes of kept piece `ix`; the rest stays kept.
        fn take_head(&mut self, ix: usize, length: usize) -> Piece {
            let piece = self.kept[ix];
            if length == piece.length {
                self.remove(ix);
            } else {
                self.kept[ix] = Piece {
                    address: piece.address + length,
                    length: piece.length - length,
                };
            }
            Piece {
                address: piece.address,
                length,
            }
        }

        /// The head of the smallest kept piece of at least `length` bytes.
        fn take_whole(&mut self, length: usize) -> Option<usize> {
            let (ix, _) = self
                .kept()
                .iter()
                .enumerate()
                .filter(|(_, p)| p.length >= length)
                .min_by_key(|(_, p)| p.length)?;
            Some(self.take_head(ix, length).address)
        }

        /// A new mapping of `length` bytes with the largest kept pieces moved
        /// into its start, or `None` if the kernel gives no mapping.
        fn build(&mut self, length: usize) -> Option<Built> {
            let address = map_fresh(length)? as usize;
            let mut built = NO_BLOCK;
            let mut filled = 0;
            while filled < length && built.count + 1 < PIECES {
                let Some((ix, piece)) = self
                    .kept()
                    .iter()
                    .copied()
                    .enumerate()
                    .max_by_key(|(_, p)| p.length)
                else {
                    break;
                };
                let taken = piece.length.min(length - filled);
                let target = address + filled;
                // SAFETY: the source lies within one kept mapping nobody
                // holds; the target lies within the mapping just made, which
                // MREMAP_FIXED replaces. On failure nothing moved.
                let moved = unsafe {
                    libc::mremap(
                        piece.address as *mut _,
                        taken,
                        taken,
                        libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED,
                        target as *mut libc::c_void,
                    )
                };
                if moved == libc::MAP_FAILED {
                    break;
                }
                self.take_head(ix, taken);
                built.add(Piece {
                    address: target,
                    length: taken,
                });
                filled += taken;
            }
            if filled < length {
                built.add(Piece {
                    address: address + filled,
                    length: length - filled,
                });
            }
            Some(built)
        }
    }

    /// A fresh mapping of `length` bytes, asking for huge pages (fewer
    /// faults, as the heap gets them through `HUGE_PAGES_TUNABLE`).
    fn map_fresh(length: usize) -> Option<*mut u8> {
        // SAFETY: a new private anonymous mapping; no existing memory touched.
        unsafe {
            let block = libc::mmap(
                std::ptr::null_mut(),
                length,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            );
            if block == libc::MAP_FAILED {
                return None;
            }
            // Advice only: without transparent huge pages it changes nothing.
            libc::madvise(block, length, libc::MADV_HUGEPAGE);
            Some(block.cast())
        }
    }

    fn unmap(piece: Piece) {
        // SAFETY: only pieces nobody holds any more are unmapped.
        unsafe {
            libc::munmap(piece.address as *mut _, piece.length);
        }
    }

    /// A block of at least `size` bytes, null if the kernel has no memory,
    /// and whether all of it is fresh (zeroed by the kernel).
    pub fn obtain(size: usize) -> (*mut u8, bool) {
        let length = whole_pages(size);
        let (block, fresh) = take_or_map(length);
        if !block.is_null() {
            super::IN_USE.fetch_add(length, Ordering::Relaxed);
        }
        (block, fresh)
    }

    fn take_or_map(length: usize) -> (*mut u8, bool) {
        let mut state = state();
        if let Some(address) = state.take_whole(length) {
            return (address as *mut u8, false);
        }
        let free_slot = state.built.iter().position(|b| b.count == 0);
        let (Some(slot), true) = (free_slot, state.kept_count > 0) else {
            drop(state);
            return (map_fresh(length).unwrap_or(std::ptr::null_mut()), true);
        };
        let Some(built) = state.build(length) else {
            return (std::ptr::null_mut(), true);
        };
        let address = built.pieces[0].address;
        if built.count > 1 {
            state.built[slot] = built;
        }
        (address as *mut u8, built.count == 1)
    }

    /// Take back a freed block: its pieces are kept for the next large
    /// request while there are slots, else returned to the kernel.
    pub fn keep(block: *mut u8, size: usize) {
        let address = block as usize;
        let length = whole_pages(size);
        super::IN_USE.fetch_sub(length, Ordering::Relaxed);
        let mut state = state();
        match state.built.iter().position(|b| b.starts_at(address)) {
            Some(slot) => {
                let built = std::mem::replace(&mut state.built[slot], NO_BLOCK);
                for piece in &built.pieces[..built.count] {
                    state.keep(*piece);
                }
            }
            None => state.keep(Piece { address, length }),
        }
    }

    pub fn release_all() {
        let mut state = state();
        while state.kept_count > 0 {
            let piece = state.remove(0);
            unmap(piece);
        }
    }

    #[cfg(test)]
    pub fn kept_bytes() -> usize {
        state().kept().iter().map(|p| p.length).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: usize = 1 << 20;

    fn layout(mib: usize) -> Layout {
        Layout::from_size_align(mib * MIB, 64).unwrap()
    }

    // One test: the kept list is global, and parallel tests would take each
    // other's pieces.
    #[test]
    fn freed_large_blocks_are_reused_without_new_pages() {
        let allocator = LargeBlocks;
        release_kept();
        // SAFETY: each block is written within its layout and freed with it.
        unsafe {
            let first = allocator.alloc(layout(64));
            assert!(!first.is_null());
            first.write_bytes(0xAB, 64 * MIB);
            assert_eq!(large_blocks_in_use(), 64 * MIB);
            allocator.dealloc(first, layout(64));
            assert_eq!(large_blocks_in_use(), 0);
            assert_eq!(kept_bytes(), 64 * MIB, "a freed large block is kept");

            // A smaller request takes the head of the kept piece; asked
            // zeroed, it is zero; the rest stays kept.
            let second = allocator.alloc_zeroed(layout(40));
            assert_eq!(second, first, "the kept block is reused");
            let bytes = std::slice::from_raw_parts(second, 40 * MIB);
            assert!(bytes.iter().all(|&b| b == 0), "reused memory zeroed");
            assert_eq!(kept_bytes(), 24 * MIB);

            // A larger one than any kept piece is built from the kept 24 MiB
            // (moved, still holding what was written there) and fresh pages.
            let third = allocator.alloc(layout(80));
            assert!(!third.is_null());
            assert_eq!(kept_bytes(), 0);
            assert_eq!(*third, 0xAB, "kept pages moved in, not fresh ones");
            assert_eq!(*third.add(40 * MIB), 0, "the rest is fresh");
            third.write_bytes(3, 80 * MIB);
            allocator.dealloc(third, layout(80));
            assert_eq!(kept_bytes(), 80 * MIB, "both of its pieces kept");

            // Built again from those two pieces alone: every page written.
            let fourth = allocator.alloc(layout(80));
            assert_eq!(kept_bytes(), 0);
            let bytes = std::slice::from_raw_parts(fourth, 80 * MIB);
            assert!(bytes.iter().all(|&b| b == 3), "no fresh page in it");

            // Moving to the heap and back keeps the contents.
            let small = allocator.realloc(fourth, layout(80), 1024);
            assert!(!small.is_null());
            assert_eq!(*small.add(1023), 3);
            let small_layout = Layout::from_size_align(1024, 64).unwrap();
            let large = allocator.realloc(small, small_layout, 20 * MIB);
            assert_eq!(*large.add(1023), 3);
            allocator.dealloc(large, layout(20));

            // Small blocks never enter the list; releasing empties it.
            let tiny = Layout::from_size_align(4096, 8).unwrap();
            let block = allocator.alloc(tiny);
            allocator.dealloc(block, tiny);
            assert_eq!(kept_bytes(), 80 * MIB);
            release_kept();
            assert_eq!(kept_bytes(), 0);
            allocator.dealloc(second, layout(40));
            release_kept();
        }
    }
}
