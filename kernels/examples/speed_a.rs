//! Single-thread matrix × vector throughput of the 32-element block formats and
//! the float formats, on every kernel path this CPU runs, in GB/s of weights
//! read.
//!
//! `cargo run --release -p pistil-kernels --example speed_a [-- q4_0 q8_0 …]`
//!
//! Two working sets per format: one 4096×4096 matrix read again and again
//! (it stays in a large L3), and enough 4096×4096 matrices (≥ 512 MiB) read in
//! turn that every byte comes from DRAM, which is what a Pi sees. For scale,
//! the same DRAM set is also streamed by a plain `u64` sum (the machine's
//! single-thread read bandwidth), and each format is timed with row-by-row
//! `vec_dot` as well as the multi-row `gemv`.

use pistil_kernels::{Backend, CpuFeatures, GgmlType, Kernels};
use std::hint::black_box;
use std::time::{Duration, Instant};

const N: usize = 4096;
const ROWS: usize = 4096;
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

/// A weight matrix of type `t`: random quants, realistic scales and floats.
fn weights(t: GgmlType, rng: &mut Rng) -> Vec<u8> {
    let bytes = t.row_bytes(N).expect("whole blocks") * ROWS;
    let mut w: Vec<u8> = (0..bytes).map(|_| rng.next() as u8).collect();
    let f16_at = |w: &mut [u8], off: usize, v: f32| {
        w[off..off + 2].copy_from_slice(&half::f16::from_f32(v).to_bits().to_le_bytes())
    };
    match t {
        GgmlType::F32 => {
            for c in w.chunks_exact_mut(4) {
                c.copy_from_slice(&(rng.unit() - 0.5).to_le_bytes());
            }
        }
        GgmlType::F16 => {
            for i in (0..w.len()).step_by(2) {
                let v = rng.unit() - 0.5;
                f16_at(&mut w, i, v);
            }
        }
        GgmlType::BF16 => {
            for c in w.chunks_exact_mut(2) {
                let v = rng.unit() - 0.5;
                c.copy_from_slice(&((v.to_bits() >> 16) as u16).to_le_bytes());
            }
        }
        _ => {
            let bb = t.block_bytes();
            let with_m = matches!(t, GgmlType::Q4_1 | GgmlType::Q5_1);
            for b in (0..w.len()).step_by(bb) {
                let d = 0.001 + 0.01 * rng.unit();
                f16_at(&mut w, b, d);
                if with_m {
                    let m = -0.05 * rng.unit();
                    f16_at(&mut w, b + 2, m);
                }
            }
        }
    }
    w
}

/// This thread's CPU time (immune to being descheduled on a busy machine).
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Best (wall, thread CPU) times of `reps` runs of `f`, after one warm-up.
fn best(reps: usize, mut f: impl FnMut()) -> (Duration, Duration) {
    f();
    let mut wall = Duration::MAX;
    let mut cpu = Duration::MAX;
    for _ in 0..reps {
        let (t, c) = (Instant::now(), thread_cpu_time());
        f();
        wall = wall.min(t.elapsed());
        cpu = cpu.min(thread_cpu_time() - c);
    }
    (wall, cpu)
}

fn gbs(bytes: usize, t: Duration) -> f64 {
    bytes as f64 / t.as_secs_f64() / 1e9
}

fn main() {
    let only: Vec<String> = std::env::args().skip(1).collect();
    let features = CpuFeatures::detect();
    println!("CPU features: {}", features.names().join(" "));

    // The machine's single-thread streaming read bandwidth.
    let big: Vec<u64> = (0..DRAM_BYTES / 8).map(|i| i as u64).collect();
    let (w, c) = best(3, || {
        black_box(big.iter().fold(0u64, |a, &b| a.wrapping_add(b)));
    });
    println!(
        "u64 sum over {} MiB: {:.1} GB/s wall, {:.1} GB/s per CPU second\n",
        DRAM_BYTES >> 20,
        gbs(DRAM_BYTES, w),
        gbs(DRAM_BYTES, c)
    );
    drop(big);

    let formats = [
        GgmlType::Q4_0,
        GgmlType::Q8_0,
        GgmlType::Q5_0,
        GgmlType::IQ4_NL,
        GgmlType::Q4_1,
        GgmlType::Q5_1,
        GgmlType::F16,
        GgmlType::BF16,
        GgmlType::F32,
    ];
    println!("GB/s of weights read: wall clock / per CPU second of this thread");
    println!(
        "{:<7} {:<8} {:<8} {:>13} {:>13} {:>13}",
        "format", "backend", "path", "L3 gemv", "DRAM gemv", "DRAM vec_dot"
    );
    let mut rng = Rng(0x1234_5678_9abc_def1);
    let x: Vec<f32> = (0..N).map(|_| rng.unit() * 2.0 - 1.0).collect();
    for t in formats {
        if !only.is_empty() && !only.iter().any(|o| o.eq_ignore_ascii_case(t.name())) {
            continue;
        }
        let one = weights(t, &mut rng);
        let row_bytes = one.len() / ROWS;
        let copies = (DRAM_BYTES / one.len()).max(2);
        let many: Vec<Vec<u8>> = (0..copies).map(|_| weights(t, &mut rng)).collect();
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
            (ak.quantize_row)(&x, &mut a);
            let mut out = vec![0f32; ROWS];
            let slow = b == Backend::Scalar;
            let l3 = best(if slow { 2 } else { 20 }, || {
                (fk.gemv)(N, &one, row_bytes, &a, &mut out);
                black_box(&out);
            });
            let set = if slow { &many[..2] } else { &many[..] };
            let set_bytes = set.len() * one.len();
            let dram = best(if slow { 1 } else { 3 }, || {
                for m in set {
                    (fk.gemv)(N, m, row_bytes, &a, &mut out);
                    black_box(&out);
                }
            });
            let dram_vd = best(if slow { 1 } else { 3 }, || {
                for m in set {
                    for (r, o) in out.iter_mut().enumerate() {
                        *o = (fk.vec_dot)(N, &m[r * row_bytes..], &a);
                    }
                    black_box(&out);
                }
            });
            let pair = |bytes: usize, (w, c): (Duration, Duration)| {
                format!("{:>5.1} / {:>5.1}", gbs(bytes, w), gbs(bytes, c))
            };
            println!(
                "{:<7} {:<8} {:<8} {:>13} {:>13} {:>13}",
                t.name(),
                b.name(),
                fk.path.name(),
                pair(one.len(), l3),
                pair(set_bytes, dram),
                pair(set_bytes, dram_vd)
            );
        }
    }
}
