//! The heap allocator's growth step, set once when the process starts.
//!
//! glibc's allocator grows and trims each heap in steps of `M_TOP_PAD`,
//! 128 KiB by default. A replica catching up grows its store by hundreds of
//! MB on its apply thread while its socket reader allocates and frees a
//! frame buffer per 4 MiB chunk, and a bootstrap's loader does the same with
//! snapshot pieces; with the default step that costs a large share of the
//! replica's time in heap growth and page faults. A step of 64 MiB (the
//! size of one glibc thread heap, so a new heap is prepared once, whole)
//! measured, with `cargo xtask bench --only catchup --size-mb 256`
//! interleaved against the default on the same build: catch-up 1.11 M ->
//! 1.39 M rows/s and bootstrap to the first admitted read 0.89 -> 0.77 s
//! (medians), with the memory phase's RSS unchanged (an untouched step
//! holds address space, not memory). docs/engine.md has the runs and what
//! else was tried (mimalloc, jemalloc, an 8 MiB step, a trim threshold).
//!
//! Only the binary sets it: a program that embeds the crates keeps its own
//! allocator settings. An operator's own setting wins: with
//! `GLIBC_TUNABLES=glibc.malloc.top_pad=N` (or `MALLOC_TOP_PAD_`) in the
//! environment this leaves the allocator alone.

/// Growth (and trim) step of the allocator's heaps, in bytes.
pub const HEAP_GROWTH_STEP: usize = 64 << 20;

/// What [`set_growth_step`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GrowthStep {
    /// The step is [`HEAP_GROWTH_STEP`].
    Set,
    /// The environment sets the step; left as the operator chose.
    LeftToOperator,
    /// The allocator refused the setting (it stays at its default).
    Refused,
    /// Not glibc: nothing to set.
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    NotGlibc,
}

/// Sets the heap growth step unless the environment sets it. Called first
/// thing in `main`, before any other thread exists.
pub fn set_growth_step() -> GrowthStep {
    let tunables = std::env::var_os("GLIBC_TUNABLES").unwrap_or_default();
    if tunables.to_string_lossy().contains("glibc.malloc.top_pad") || std::env::var_os("MALLOC_TOP_PAD_").is_some() {
        return GrowthStep::LeftToOperator;
    }
    set_top_pad(HEAP_GROWTH_STEP)
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_top_pad(bytes: usize) -> GrowthStep {
    let Ok(value) = libc::c_int::try_from(bytes) else { return GrowthStep::Refused };
    // SAFETY: mallopt only sets one of the allocator's parameters under its
    // own lock; it reads and keeps no pointer. M_TOP_PAD accepts any
    // non-negative value. It returns 1 on success, 0 on error.
    let ok = unsafe { libc::mallopt(libc::M_TOP_PAD, value) };
    if ok == 1 {
        GrowthStep::Set
    } else {
        GrowthStep::Refused
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_top_pad(_bytes: usize) -> GrowthStep {
    GrowthStep::NotGlibc
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RES-1: the node's heaps grow in 64 MiB steps on glibc (the setting
    /// is accepted), and the step is a whole number of pages that fits the
    /// allocator's parameter. Speed is measured by `cargo xtask bench`.
    #[test]
    fn res_1_the_heap_growth_step_is_accepted_by_the_allocator() {
        assert_eq!(HEAP_GROWTH_STEP % 4096, 0);
        #[cfg(all(target_os = "linux", target_env = "gnu"))]
        let expected = GrowthStep::Set;
        #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
        let expected = GrowthStep::NotGlibc;
        if std::env::var_os("GLIBC_TUNABLES").is_none() && std::env::var_os("MALLOC_TOP_PAD_").is_none() {
            assert_eq!(set_growth_step(), expected);
        }
        assert_eq!(set_top_pad(HEAP_GROWTH_STEP), expected);
    }
}
