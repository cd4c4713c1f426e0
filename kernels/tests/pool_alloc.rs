//! `ThreadPool::run` must not allocate: a counting global allocator watches
//! every allocation of this test binary while jobs run.

use pistil_kernels::pool::ThreadPool;
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn run_does_not_allocate() {
    for (threads, spin) in [(1, 0), (2, 0), (2, 50_000), (3, 100)] {
        let pool = ThreadPool::with_spin(threads, spin).unwrap();
        let sum = AtomicUsize::new(0);
        let job = |ith: usize, _nth: usize| {
            sum.fetch_add(ith + 1, Ordering::Relaxed);
        };
        // Warm up. A new worker thread allocates while it starts up (thread-local
        // destructor lists, its name): wait until every worker has really run a
        // share. The caller can only take over a share after its own returns, so a
        // share that waits for all others to start forces each onto its own thread.
        let started = AtomicUsize::new(0);
        pool.run(&|_, nth| {
            started.fetch_add(1, Ordering::SeqCst);
            while started.load(Ordering::SeqCst) < nth {
                std::hint::spin_loop();
            }
        });
        for _ in 0..10 {
            pool.run(&job);
        }
        ALLOCS.store(0, Ordering::SeqCst);
        COUNTING.store(true, Ordering::SeqCst);
        for _ in 0..1000 {
            pool.run(&job);
        }
        COUNTING.store(false, Ordering::SeqCst);
        let n = ALLOCS.load(Ordering::SeqCst);
        assert_eq!(
            n, 0,
            "{n} allocations in 1000 runs with {threads} threads, spin {spin}"
        );
        let per_run: usize = (1..=threads).sum();
        assert_eq!(sum.load(Ordering::Relaxed), 1010 * per_run);
    }
}
