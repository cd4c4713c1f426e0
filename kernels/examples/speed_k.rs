//! Single-thread matrix × vector throughput of the K-quant formats and IQ4_XS
//! (Q8_K activations) on every kernel path this CPU runs, in GB/s of weights
//! read.
//!
//! `cargo run --release -p pistil-kernels --example speed_k [-- q4_k q6_k …]`
//!
//! Working sets:
//! - `L3`: one 4096×4096 matrix multiplied again and again (9.4 MB in Q4_K:
//!   it stays in a large last-level cache);
//! - `DRAM`: 4096-wide matrices of 14336 rows (an FFN projection of an 8B
//!   model), as many as make ≥ 512 MiB, multiplied in turn, so every byte
//!   comes from memory — what a Pi sees for every matrix.
//!
//! For scale, the DRAM set is also streamed by a plain vectorised `u64` sum
//! (this machine's single-thread read bandwidth), and `vec_dot` row by row is
//! timed next to the multi-row `gemv`.

use pistil_kernels::{Backend, CpuFeatures, GgmlType, Kernels};
use std::hint::black_box;
use std::time::{Duration, Instant};

const N: usize = 4096;
const L3_ROWS: usize = 4096;
const DRAM_ROWS: usize = 14336;
const DRAM_BYTES: usize = 512 << 20;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn unit(&mut self) -> f32 {
        (self.next() >> 40) as f32 / (1u64 << 24) as f32
    }
}

/// Byte offsets of the f16 super-block scales in each format's block.
fn scale_offsets(t: GgmlType) -> &'static [usize] {
    match t {
        GgmlType::Q2_K => &[80, 82],
        GgmlType::Q3_K => &[108],
        GgmlType::Q4_K | GgmlType::Q5_K => &[0, 2],
        GgmlType::Q6_K => &[208],
        GgmlType::IQ4_XS => &[0],
        _ => &[],
    }
}

/// A `rows`×4096 weight matrix of type `t`: random quants, realistic f16 scales.
fn weights(t: GgmlType, rows: usize, rng: &mut Rng) -> Vec<u8> {
    let bytes = t.row_bytes(N).expect("whole blocks") * rows;
    let mut w = vec![0u8; bytes];
    for c in w.chunks_mut(8) {
        let v = rng.next().to_le_bytes();
        c.copy_from_slice(&v[..c.len()]);
    }
    let bb = t.block_bytes();
    for b in (0..w.len()).step_by(bb) {
        for &off in scale_offsets(t) {
            let d = half::f16::from_f32(0.001 + 0.01 * rng.unit());
            w[b + off..b + off + 2].copy_from_slice(&d.to_bits().to_le_bytes());
        }
    }
    w
}

/// CPU time this thread has run (not counting time other processes had the
/// core: the machine this runs on is often busy with builds).
fn thread_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best time of `reps` runs of `f`, after one warm-up: the smaller of wall
/// time and this thread's CPU time.
fn best(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..reps)
        .map(|_| {
            let (t, c) = (Instant::now(), thread_time());
            f();
            t.elapsed().min(thread_time() - c)
        })
        .min()
        .unwrap_or_default()
}

/// Best wall time of `reps` runs of `f` after one warm-up (for multi-threaded runs).
fn best_wall(reps: usize, mut f: impl FnMut()) -> Duration {
    f();
    (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .min()
        .unwrap_or_default()
}

fn gbs(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let features = CpuFeatures::detect();
    println!("CPU features: {}", features.names().join(" "));

    let big: Vec<u64> = (0..DRAM_BYTES / 8).map(|i| i as u64).collect();
    let t = best(3, || {
        let s = big.chunks_exact(8).fold([0u64; 8], |mut s, c| {
            for (a, &b) in s.iter_mut().zip(c) {
                *a = a.wrapping_add(b);
            }
            s
        });
        black_box(s);
    });
    println!(
        "u64 sum over {} MiB, 1 thread: {:.1} GB/s",
        DRAM_BYTES >> 20,
        gbs(DRAM_BYTES, t)
    );
    let t2 = best_wall(5, || {
        std::thread::scope(|sc| {
            for half in big.chunks(big.len() / 2) {
                sc.spawn(move || {
                    let s = half.chunks_exact(8).fold([0u64; 8], |mut s, c| {
                        for (a, &b) in s.iter_mut().zip(c) {
                            *a = a.wrapping_add(b);
                        }
                        s
                    });
                    black_box(s);
                });
            }
        });
    });
    println!(
        "u64 sum over {} MiB, 2 threads: {:.1} GB/s\n",
        DRAM_BYTES >> 20,
        gbs(DRAM_BYTES, t2)
    );
    drop(big);

    let formats = [
        GgmlType::Q4_K,
        GgmlType::Q6_K,
        GgmlType::Q5_K,
        GgmlType::Q3_K,
        GgmlType::Q2_K,
        GgmlType::IQ4_XS,
    ];
    println!(
        "{:<7} {:<8} {:<8} {:>12} {:>12} {:>12} {:>12} {:>14} {:>9}",
        "format",
        "backend",
        "path",
        "L2 gemv",
        "L3 gemv",
        "L3 vec_dot",
        "DRAM gemv",
        "DRAM vec_dot",
        "quant µs"
    );
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let x: Vec<f32> = (0..N).map(|_| rng.unit() * 2.0 - 1.0).collect();
    let mut two_threads = Vec::new();
    for t in formats {
        if !only.is_empty() && !only.iter().any(|o| o.eq_ignore_ascii_case(t.name())) {
            continue;
        }
        let l3 = weights(t, L3_ROWS, &mut rng);
        let row_bytes = l3.len() / L3_ROWS;
        let one = row_bytes * DRAM_ROWS;
        let copies = DRAM_BYTES.div_ceil(one).max(2);
        let many: Vec<Vec<u8>> = (0..copies)
            .map(|_| weights(t, DRAM_ROWS, &mut rng))
            .collect();
        for b in features.available() {
            let Ok(k) = Kernels::for_backend(b) else {
                continue;
            };
            let Some(fk) = k.format(t) else {
                println!("{:<7} {:<8} (no kernels)", t.name(), b.name());
                continue;
            };
            let ak = k.act(fk.act).expect("activation quantizer");
            let mut a = vec![0u8; fk.act.row_bytes(N).expect("whole blocks")];
            let tq = best(50, || {
                (ak.quantize_row)(black_box(&x), &mut a);
            });
            let mut out = vec![0f32; DRAM_ROWS];
            let slow = b == Backend::Scalar;
            let t_l3 = best(if slow { 2 } else { 30 }, || {
                (fk.gemv)(N, &l3, row_bytes, &a, &mut out[..L3_ROWS]);
                black_box(&out);
            });
            let t_l3_vd = best(if slow { 2 } else { 30 }, || {
                for (r, o) in out[..L3_ROWS].iter_mut().enumerate() {
                    *o = (fk.vec_dot)(N, &l3[r * row_bytes..], &a);
                }
                black_box(&out);
            });
            // 256 rows (590 KB of Q4_K): L2-resident, pure compute.
            let t_l2 = best(if slow { 2 } else { 300 }, || {
                (fk.gemv)(N, &l3[..256 * row_bytes], row_bytes, &a, &mut out[..256]);
                black_box(&out);
            });
            let set = if slow { &many[..1] } else { &many[..] };
            let set_bytes = set.len() * one;
            let t_dram = best(if slow { 1 } else { 3 }, || {
                for m in set {
                    (fk.gemv)(N, m, row_bytes, &a, &mut out);
                    black_box(&out);
                }
            });
            let t_vd = best(if slow { 1 } else { 3 }, || {
                for m in set {
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = (fk.vec_dot)(N, &m[r * row_bytes..], &a);
                    }
                    black_box(&out);
                }
            });
            println!(
                "{:<7} {:<8} {:<8} {:>7.1} GB/s {:>7.1} GB/s {:>7.1} GB/s {:>7.1} GB/s {:>9.1} GB/s {:>9.2}",
                t.name(),
                b.name(),
                fk.path.name(),
                gbs(256 * row_bytes, t_l2),
                gbs(l3.len(), t_l3),
                gbs(l3.len(), t_l3_vd),
                gbs(set_bytes, t_dram),
                gbs(set_bytes, t_vd),
                tq.as_secs_f64() * 1e6,
            );
            if b == features.best() {
                // Two threads, each one half of every matrix's rows.
                let half = DRAM_ROWS / 2;
                let t2 = best_wall(3, || {
                    for m in set {
                        std::thread::scope(|sc| {
                            for (k, o) in out.chunks_mut(half).enumerate() {
                                let (a, fk) = (&a, &fk);
                                sc.spawn(move || {
                                    (fk.gemv)(N, &m[k * half * row_bytes..], row_bytes, a, o);
                                });
                            }
                        });
                        black_box(&out);
                    }
                });
                two_threads.push((t.name(), b.name(), gbs(set_bytes, t2)));
            }
        }
    }
    println!("\nDRAM gemv with 2 threads (each half the rows of every matrix):");
    for (t, b, g) in two_threads {
        println!("{t:<7} {b:<8} {g:>7.1} GB/s");
    }
}
