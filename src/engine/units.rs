//! Our ops' units of work on the engine's threads, and the output tensor the
//! units write together.
//!
//! `direct_conv.rs` and `fused_attention.rs` split a call into units that
//! each write their own part of one output; they run on tract's executor
//! (the pool `set_threads` made), so our ops and tract's share two threads
//! instead of oversubscribing the cores.

use tract_linalg::multithread::{Executor, current_tract_executor};
use tract_onnx::tract_core::internal::*;

/// How many threads the current executor runs units on.
pub(super) fn thread_count() -> usize {
    match current_tract_executor() {
        Executor::MultiThread(pool) => pool.current_num_threads(),
        _ => 1,
    }
}

/// Run every unit once, spread over the current executor's threads.
pub(super) fn for_each<T: Sync>(units: &[T], run: impl Fn(&T) + Sync + Send) {
    match current_tract_executor() {
        Executor::MultiThread(pool) => {
            use rayon::prelude::*;
            pool.install(|| units.par_iter().for_each(run));
        }
        _ => units.iter().for_each(run),
    }
}

/// Run `run` once on every item, spread over the current executor's threads.
pub(super) fn for_each_mut<T: Send>(items: &mut [T], run: impl Fn(&mut T) + Sync + Send) {
    match current_tract_executor() {
        Executor::MultiThread(pool) => {
            use rayon::prelude::*;
            pool.install(|| items.par_iter_mut().for_each(run));
        }
        _ => items.iter_mut().for_each(run),
    }
}

/// A new float tensor of `shape`, filled by running `run` once on every unit
/// over the current executor's threads, each unit writing its part through
/// the [`SharedOutput`].
///
/// # Safety
/// The units together must write every value of the tensor, each value by
/// exactly one unit (it starts uninitialized).
pub(super) unsafe fn fill_by_units<T: Sync>(
    shape: &[usize],
    units: &[T],
    run: impl Fn(&T, &SharedOutput) + Sync + Send,
) -> TractResult<Tensor> {
    // SAFETY: every value is written before the tensor is returned (the
    // caller's contract).
    let mut tensor = unsafe { Tensor::uninitialized::<f32>(shape)? };
    let output = SharedOutput::new(&mut tensor)?;
    for_each(units, |unit| run(unit, &output));
    Ok(tensor)
}

/// A float tensor's values, written by several units at once.
pub(super) struct SharedOutput(*mut f32, usize);

// SAFETY: every unit writes values no other unit touches (the callers'
// contract on `write` and `set`).
unsafe impl Sync for SharedOutput {}

impl SharedOutput {
    /// The values of `tensor`, which must not move or be read until the
    /// units are done.
    pub(super) fn new(tensor: &mut Tensor) -> TractResult<SharedOutput> {
        let mut view = tensor.try_as_plain_ram_mut()?;
        let values = view.as_slice_mut::<f32>()?;
        Ok(SharedOutput(values.as_mut_ptr(), values.len()))
    }

    /// Copy `values` to `at..at + values.len()`.
    ///
    /// # Safety
    /// No other thread may touch that range meanwhile.
    pub(super) unsafe fn write(&self, at: usize, values: &[f32]) {
        assert!(at + values.len() <= self.1);
        // SAFETY: in bounds (checked); exclusive per the contract.
        unsafe { std::ptr::copy_nonoverlapping(values.as_ptr(), self.0.add(at), values.len()) };
    }

    /// Set the value at `at`.
    ///
    /// # Safety
    /// No other thread may touch it meanwhile.
    pub(super) unsafe fn set(&self, at: usize, value: f32) {
        assert!(at < self.1);
        // SAFETY: in bounds (checked); exclusive per the contract.
        unsafe { *self.0.add(at) = value };
    }
}
