//! A thread pool made for decode.
//!
//! Generating one token runs a few hundred small parallel jobs (one per matrix
//! of every layer), each a few tens of microseconds long. A general-purpose
//! pool (queues, boxed tasks, futures) spends more than that on bookkeeping,
//! so this one does exactly one thing: run the same closure on every thread
//! at once, `f(ith, nth)`, and wait until all return.
//!
//! - The workers are created once, with a fixed count (the board profile
//!   decides it); the caller of [`ThreadPool::run`] is thread 0 and takes part.
//! - Nothing is allocated per call: the closure is borrowed, not boxed.
//! - Workers wait for the next job by spinning on an atomic generation counter
//!   for a bounded number of iterations, then park (a futex on Linux). Active
//!   waiting is worth several percent of token rate on a Pi 5 (the gap between
//!   two matrices is shorter than a futex wake-up); a spin count of 0 parks at
//!   once, for battery or thermal headroom.
//! - Every `ith` in `0..nth` runs exactly once, but not necessarily on "its"
//!   thread: after its own share, the caller takes over the share of any worker
//!   that has not started yet (one atomic compare-and-swap per worker). A worker
//!   the OS has not scheduled (another process on its core) or that is still
//!   waking from a park then costs nothing, instead of stalling the whole job.
//! - A panic in any thread is caught, the other threads finish the job, and the
//!   panic is re-raised in the caller: the pool never deadlocks and stays usable.
//! - [`ThreadPool::set_active_threads`] lowers (or restores) how many of the
//!   threads take part, without stopping any: the thermal governor drops a
//!   thread under sustained throttling. Inactive workers park without spinning.
//! - A pool of one thread runs the closure inline. A `run` issued while the pool
//!   is already busy (from inside a job, or from another thread) also runs
//!   inline, single-threaded, rather than deadlock.

use std::any::Any;
use std::cell::UnsafeCell;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle, Thread};

/// The job type: called as `f(ith, nth)` on every thread of the pool.
pub type Job<'a> = &'a (dyn Fn(usize, usize) + Sync);

/// Spin iterations a waiting thread makes before it parks, by default.
///
/// One iteration is a `spin_loop` hint (x86 `pause`, aarch64 `isb`/`yield`) plus
/// an atomic load: a few to a few tens of nanoseconds, so the default spins for
/// roughly 0.1–1 ms, longer than the gap between two matrices of a layer.
pub const DEFAULT_SPIN: u32 = 50_000;

/// Why a pool could not be created.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error("a thread pool needs at least one thread")]
    ZeroThreads,
    #[error("could not start worker thread {index}: {source}")]
    Spawn {
        index: usize,
        #[source]
        source: std::io::Error,
    },
}

/// A lifetime-erased pointer to the current job (see the SAFETY comment in `run`).
type ErasedJob = *const (dyn Fn(usize, usize) + Sync + 'static);

/// A worker's share of the current job: nothing to do.
const IDLE: u8 = 0;
/// A job was published and this share is unclaimed: the worker or the caller
/// takes it with a compare-and-swap to RUNNING / IDLE.
const PENDING: u8 = 1;
/// The worker is running its share.
const RUNNING: u8 = 2;

struct Shared {
    n_threads: usize,
    /// Threads that take part in the next job (1..=n_threads).
    active: AtomicUsize,
    /// `nth` of the current job, published with the PENDING slots.
    job_nth: AtomicUsize,
    spin: u32,
    /// Bumped once per job (and once at shutdown); workers wait for it to change.
    generation: AtomicU64,
    /// The job of the current generation. Written only by the thread that owns
    /// `busy` while no share is PENDING or RUNNING; read by a worker only after it
    /// moved its share from PENDING to RUNNING.
    job: UnsafeCell<Option<ErasedJob>>,
    /// Per worker (`ith - 1`): IDLE, PENDING or RUNNING.
    slots: Box<[AtomicU8]>,
    /// Shares (of workers) not yet finished: the caller waits for zero.
    remaining: AtomicUsize,
    /// Set while a `run` is in flight: guards `job` and `caller`.
    busy: AtomicBool,
    shutdown: AtomicBool,
    /// The thread waiting in `run`, unparked by the last worker to finish.
    caller: Mutex<Option<Thread>>,
    /// The first panic payload of the current job, re-raised in the caller.
    panic: Mutex<Option<Box<dyn Any + Send + 'static>>>,
    /// Workers that have started running (the pool is returned once all have,
    /// so no thread start-up — which allocates — happens during a later job).
    started: AtomicUsize,
}

// SAFETY: `job` (the only field that is not Sync by itself) is written only by the
// thread holding `busy`, and only while every slot is IDLE; it then publishes each
// slot as PENDING with a Release store. A worker reads `job` only after its Acquire
// compare-and-swap PENDING -> RUNNING succeeded, and stops using it before it
// decrements `remaining`; the writer does not touch `job` again until `remaining`
// is zero. The pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: as above; the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that run one closure on all threads at once.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<(Thread, JoinHandle<()>)>,
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.shared.n_threads)
            .field("spin", &self.shared.spin)
            .finish()
    }
}

impl ThreadPool {
    /// A pool of `n_threads` threads in total (the caller plus `n_threads - 1`
    /// workers) that spin [`DEFAULT_SPIN`] iterations before parking.
    pub fn new(n_threads: usize) -> Result<ThreadPool, PoolError> {
        ThreadPool::with_spin(n_threads, DEFAULT_SPIN)
    }

    /// A pool whose waiting threads spin `spin` iterations before they park
    /// (0 = park at once: lowest power, slowest hand-off).
    pub fn with_spin(n_threads: usize, spin: u32) -> Result<ThreadPool, PoolError> {
        if n_threads == 0 {
            return Err(PoolError::ZeroThreads);
        }
        let shared = Arc::new(Shared {
            n_threads,
            active: AtomicUsize::new(n_threads),
            job_nth: AtomicUsize::new(n_threads),
            spin,
            generation: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            slots: (1..n_threads).map(|_| AtomicU8::new(IDLE)).collect(),
            remaining: AtomicUsize::new(0),
            busy: AtomicBool::new(false),
            shutdown: AtomicBool::new(false),
            caller: Mutex::new(None),
            panic: Mutex::new(None),
            started: AtomicUsize::new(0),
        });
        let mut pool = ThreadPool {
            shared: Arc::clone(&shared),
            workers: Vec::with_capacity(n_threads - 1),
        };
        for ith in 1..n_threads {
            let s = Arc::clone(&shared);
            let handle = thread::Builder::new()
                .name(format!("pistil-worker-{ith}"))
                .spawn(move || worker_loop(&s, ith))
                .map_err(|source| PoolError::Spawn { index: ith, source })?;
            // On error, `pool` drops here and shuts down the workers started so far.
            pool.workers.push((handle.thread().clone(), handle));
        }
        while shared.started.load(Ordering::Acquire) < n_threads - 1 {
            thread::yield_now();
        }
        Ok(pool)
    }

    /// Total threads, the caller included.
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Spin iterations before parking.
    pub fn spin(&self) -> u32 {
        self.shared.spin
    }

    /// Threads that take part in each job (the caller included).
    pub fn active_threads(&self) -> usize {
        self.shared.active.load(Ordering::Relaxed)
    }

    /// Uses only `n` threads (clamped to `1..=n_threads`) from the next job on;
    /// the others park. Returns the count now in effect. Jobs see the new
    /// count as their `nth`, so work splits evenly over the active threads.
    pub fn set_active_threads(&self, n: usize) -> usize {
        let n = n.clamp(1, self.shared.n_threads);
        self.shared.active.store(n, Ordering::Relaxed);
        n
    }

    /// Runs `f(ith, nth)` on every thread of the pool (the caller is `ith == 0`)
    /// and returns when all calls have returned. If any call panics, the others
    /// still complete and the first panic is resumed here.
    ///
    /// Runs `f(0, 1)` inline if the pool has one thread, or if it is already
    /// running a job (a nested or concurrent `run`).
    pub fn run(&self, f: Job<'_>) {
        let s = &*self.shared;
        if s.active.load(Ordering::Relaxed) <= 1
            || s.busy
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            f(0, 1);
            return;
        }
        // Read once under `busy`: a concurrent set_active_threads applies to the next job.
        let nth = s.active.load(Ordering::Relaxed).min(s.n_threads);

        // SAFETY: this erases the lifetime of the borrowed closure so that the
        // workers can see it through `Shared`. It is sound because a worker only
        // dereferences the pointer between claiming its share (PENDING -> RUNNING)
        // and decrementing `remaining`, and this function does not return (not even
        // by unwinding: every call it makes itself is wrapped in catch_unwind) before
        // `remaining` is zero and every share is IDLE again. The closure therefore
        // outlives every use of the pointer. Both types are the same fat pointer;
        // only the trait object's lifetime bound differs.
        let erased: ErasedJob = unsafe {
            std::mem::transmute::<*const (dyn Fn(usize, usize) + Sync + '_), ErasedJob>(
                f as *const (dyn Fn(usize, usize) + Sync + '_),
            )
        };
        // SAFETY: we hold `busy` and every slot is IDLE (the previous run waited for
        // that), so no other thread reads or writes `job` now.
        unsafe { *s.job.get() = Some(erased) };
        *s.caller.lock().unwrap_or_else(PoisonError::into_inner) = Some(thread::current());
        s.remaining.store(nth - 1, Ordering::Relaxed);
        s.job_nth.store(nth, Ordering::Relaxed);
        for slot in &s.slots[..nth - 1] {
            slot.store(PENDING, Ordering::Release);
        }
        s.generation.fetch_add(1, Ordering::SeqCst);
        for (t, _) in &self.workers[..nth - 1] {
            // Cheap when the worker is spinning (an atomic swap), a futex wake when parked.
            t.unpark();
        }

        let mine = panic::catch_unwind(AssertUnwindSafe(|| f(0, nth)));

        // Take over the shares of workers that have not started (descheduled, or
        // still waking up): run them here rather than wait for their thread.
        for (i, slot) in s.slots[..nth - 1].iter().enumerate() {
            if slot
                .compare_exchange(PENDING, IDLE, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
            {
                run_share(s, f, i + 1, nth);
                s.remaining.fetch_sub(1, Ordering::AcqRel);
            }
        }

        // Wait for the workers that did start: spin, then park until the last one
        // unparks us.
        let mut spins = 0u32;
        while s.remaining.load(Ordering::Acquire) != 0 {
            if spins < s.spin {
                spins += 1;
                std::hint::spin_loop();
            } else {
                thread::park();
            }
        }
        // SAFETY: every share is done and IDLE; we still hold `busy`.
        unsafe { *s.job.get() = None };
        let theirs = s
            .panic
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        s.busy.store(false, Ordering::Release);

        if let Err(payload) = mine {
            panic::resume_unwind(payload);
        }
        if let Some(payload) = theirs {
            panic::resume_unwind(payload);
        }
    }
}

/// Runs share `ith` of the job, keeping the first panic for the caller.
fn run_share(s: &Shared, f: &(dyn Fn(usize, usize) + Sync), ith: usize, nth: usize) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(|| f(ith, nth))) {
        let mut slot = s.panic.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some(payload);
        }
    }
}

fn worker_loop(s: &Shared, ith: usize) {
    s.started.fetch_add(1, Ordering::Release);
    let mut seen = 0u64;
    loop {
        // Wait for a new generation: spin, then park.
        let mut spins = 0u32;
        loop {
            let g = s.generation.load(Ordering::Acquire);
            if g != seen {
                seen = g;
                break;
            }
            // A worker left out by set_active_threads parks at once: spinning
            // would heat the core the governor is trying to rest.
            if spins < s.spin && ith < s.active.load(Ordering::Relaxed) {
                spins += 1;
                std::hint::spin_loop();
            } else {
                // `run` unparks every worker after bumping the generation, so a
                // bump that lands between the load above and this park leaves an
                // unpark token and park returns at once.
                thread::park();
            }
        }
        if s.shutdown.load(Ordering::Acquire) {
            return;
        }
        // Claim our share; the caller may have taken it over already.
        let slot = &s.slots[ith - 1];
        if slot
            .compare_exchange(PENDING, RUNNING, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            continue;
        }
        // SAFETY: our successful Acquire claim happened after the caller wrote the
        // job (it publishes PENDING with Release after writing), and the job stays
        // valid until we decrement `remaining` below.
        let job = unsafe { *s.job.get() };
        if let Some(job) = job {
            // SAFETY: see `run`: the closure outlives this call.
            let f = unsafe { &*job };
            // Published before our slot's Release store to PENDING.
            run_share(s, f, ith, s.job_nth.load(Ordering::Relaxed));
        }
        slot.store(IDLE, Ordering::Release);
        if s.remaining.fetch_sub(1, Ordering::AcqRel) == 1 {
            // Last one out wakes the caller (harmless if it is still spinning).
            if let Some(t) = s
                .caller
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .as_ref()
            {
                t.unpark();
            }
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::Release);
        self.shared.generation.fetch_add(1, Ordering::SeqCst);
        for (t, _) in &self.workers {
            t.unpark();
        }
        for (_, h) in self.workers.drain(..) {
            // A worker never panics outside catch_unwind; nothing to report if it did.
            let _ = h.join();
        }
    }
}

/// The half-open range `[start, end)` of `n` items that thread `ith` of `nth`
/// takes when the items are split in contiguous pieces whose boundaries fall
/// on multiples of `align` (the last piece takes the remainder).
pub fn split_range(n: usize, ith: usize, nth: usize, align: usize) -> (usize, usize) {
    let align = align.max(1);
    let nth = nth.max(1);
    let groups = n.div_ceil(align);
    let per = groups / nth;
    let extra = groups % nth;
    // The first `extra` threads take one group more.
    let g0 = ith * per + ith.min(extra);
    let g1 = g0 + per + usize::from(ith < extra);
    ((g0 * align).min(n), (g1 * align).min(n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    #[test]
    fn every_thread_runs_once_per_job() {
        // More threads than this machine may have cores, and long spins, are the
        // slow cases (spinning threads steal the cores the others need): keep them short.
        for (n, spin, rounds) in [
            (1, 0, 50),
            (2, 0, 300),
            (2, DEFAULT_SPIN, 300),
            (3, 100, 200),
            (4, 0, 100),
        ] {
            {
                let pool = ThreadPool::with_spin(n, spin).unwrap();
                let hits: Vec<AtomicU32> = (0..n).map(|_| AtomicU32::new(0)).collect();
                for round in 0..rounds {
                    pool.run(&|ith, nth| {
                        assert_eq!(nth, n);
                        hits[ith].fetch_add(1, Ordering::Relaxed);
                    });
                    for h in &hits {
                        assert_eq!(h.load(Ordering::Relaxed), round + 1);
                    }
                }
            }
        }
    }

    #[test]
    fn active_threads_can_be_lowered_and_restored() {
        let pool = ThreadPool::with_spin(4, 100).unwrap();
        for (want, active) in [(4, 4), (2, 2), (1, 1), (0, 1), (9, 4), (3, 3)] {
            assert_eq!(pool.set_active_threads(want), active);
            assert_eq!(pool.active_threads(), active);
            for _ in 0..50 {
                let hits: Vec<AtomicU32> = (0..4).map(|_| AtomicU32::new(0)).collect();
                pool.run(&|ith, nth| {
                    assert_eq!(nth, active);
                    hits[ith].fetch_add(1, Ordering::Relaxed);
                });
                for (i, h) in hits.iter().enumerate() {
                    assert_eq!(
                        h.load(Ordering::Relaxed),
                        u32::from(i < active),
                        "thread {i}"
                    );
                }
            }
        }
    }

    #[test]
    fn results_are_visible_after_run() {
        let pool = ThreadPool::new(3).unwrap();
        let mut data = vec![0u64; 1000];
        for round in 0..200u64 {
            let cells: Vec<AtomicU64> = data.iter().map(|&v| AtomicU64::new(v)).collect();
            pool.run(&|ith, nth| {
                let (a, b) = split_range(cells.len(), ith, nth, 16);
                for c in &cells[a..b] {
                    c.store(c.load(Ordering::Relaxed) + round, Ordering::Relaxed);
                }
            });
            data = cells.into_iter().map(AtomicU64::into_inner).collect();
        }
        let want: u64 = (0..200).sum();
        assert!(data.iter().all(|&v| v == want));
    }

    #[test]
    fn nested_run_runs_inline() {
        let pool = ThreadPool::new(2).unwrap();
        let inner = AtomicU32::new(0);
        pool.run(&|_, _| {
            pool.run(&|ith, nth| {
                assert_eq!((ith, nth), (0, 1));
                inner.fetch_add(1, Ordering::Relaxed);
            });
        });
        assert_eq!(inner.load(Ordering::Relaxed), 2);
        // Still usable afterwards.
        let n = AtomicU32::new(0);
        pool.run(&|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn worker_panic_propagates_and_pool_survives() {
        let pool = ThreadPool::with_spin(3, 10).unwrap();
        for _ in 0..3 {
            let done = AtomicU32::new(0);
            let r = panic::catch_unwind(AssertUnwindSafe(|| {
                pool.run(&|ith, _| {
                    if ith == 2 {
                        panic!("boom in worker");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            }));
            let msg = r.unwrap_err();
            assert_eq!(msg.downcast_ref::<&str>(), Some(&"boom in worker"));
            assert_eq!(done.load(Ordering::Relaxed), 2);
        }
        let r = panic::catch_unwind(AssertUnwindSafe(|| pool.run(&|ith, _| assert!(ith != 0))));
        assert!(r.is_err());
        let n = AtomicU32::new(0);
        pool.run(&|_, _| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn zero_threads_is_an_error() {
        assert!(matches!(ThreadPool::new(0), Err(PoolError::ZeroThreads)));
    }

    #[test]
    fn split_range_covers_everything_aligned() {
        for n in [0, 1, 15, 16, 17, 100, 4096, 4099] {
            for nth in 1..=5 {
                let mut next = 0;
                for ith in 0..nth {
                    let (a, b) = split_range(n, ith, nth, 16);
                    assert_eq!(a, next);
                    assert!(a == n || a % 16 == 0);
                    next = b;
                }
                assert_eq!(next, n);
            }
        }
    }
}
