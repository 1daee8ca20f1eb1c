//! A prefetch hint: ask the processor to bring a line into its caches
//! before a call that is expected to touch it. The random order's take goes
//! to a block (and an array slot) no recent call touched; its list names
//! the slot and the block of draws to come, a pair's time ahead, at the end
//! of each lock section (`free_list/shuffle.rs`), and they are prefetched.

/// Bring the line holding `place` into the caches: a hint, never a read
/// (no fault, no wait, whatever `place` is), and nothing under loom or off
/// x86_64.
#[inline(always)]
pub fn prefetch<T>(place: *const T) {
    #[cfg(all(target_arch = "x86_64", not(loom)))]
    // SAFETY: `_mm_prefetch` needs SSE, which every x86_64 processor has,
    // and it reads nothing: a prefetch of any address never faults.
    unsafe {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        _mm_prefetch::<_MM_HINT_T0>(place.cast());
    }
    #[cfg(not(all(target_arch = "x86_64", not(loom))))]
    let _ = place;
}
