//! A mutable buffer shared by the threads of one [`ThreadPool::run`] job,
//! each writing its own disjoint part.
//!
//! [`ThreadPool::run`]: pistil_kernels::pool::ThreadPool::run

use std::marker::PhantomData;

/// A raw view of a `&mut [T]` that the threads of one pool job split among
/// themselves. Created from a live exclusive borrow, which it holds for `'a`.
pub(crate) struct SharedMut<'a, T> {
    ptr: *mut T,
    len: usize,
    _borrow: PhantomData<&'a mut [T]>,
}

// SAFETY: the view is only used to hand out non-overlapping sub-slices to the
// threads of one job (see `slice`); `T: Send` makes moving those parts to other
// threads sound, exactly as `split_at_mut` + `thread::scope` would.
unsafe impl<T: Send> Send for SharedMut<'_, T> {}
// SAFETY: as above: `&SharedMut` only gives access through `slice`, whose
// contract forbids overlapping live sub-slices.
unsafe impl<T: Send> Sync for SharedMut<'_, T> {}

impl<'a, T> SharedMut<'a, T> {
    /// Views `s` (borrowed exclusively for `'a`).
    pub(crate) fn new(s: &'a mut [T]) -> SharedMut<'a, T> {
        SharedMut {
            ptr: s.as_mut_ptr(),
            len: s.len(),
            _borrow: PhantomData,
        }
    }

    /// The sub-slice `start..start + len`, or an empty slice if out of range.
    ///
    /// # Safety
    /// No two sub-slices obtained from this view may overlap while both are
    /// alive (each thread of a job takes a range no other thread takes).
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn slice(&self, start: usize, len: usize) -> &mut [T] {
        match start.checked_add(len) {
            Some(end) if end <= self.len => {
                // SAFETY: the range lies inside the borrowed buffer (checked above), the
                // buffer is borrowed exclusively for 'a, and the caller guarantees that
                // no other live sub-slice overlaps this one.
                unsafe { std::slice::from_raw_parts_mut(self.ptr.add(start), len) }
            }
            _ => &mut [],
        }
    }
}
