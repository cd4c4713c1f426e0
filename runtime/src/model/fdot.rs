//! The two f32 dot-product orders ggml's CPU backend uses in attention, so
//! that our attention rounds exactly like llama.cpp's (x86-64 AVX-512 build,
//! flash attention off — how the reference logits were made):
//!
//! - [`dot_vecdot`] — `ggml_vec_dot_f32` / `ggml_vec_dot_f16`, used for
//!   `K·q` (q is a permuted, non-contiguous view): 4 accumulators of 16 lanes,
//!   64 elements per step with fused multiply-adds, reduced `(a0+a2)+(a1+a3)`
//!   then across lanes by halving; leftovers fused into the scalar sum.
//! - [`dot_lanes`] — llamafile's tinyBLAS (`llamafile_sgemm`, taken for
//!   `V·p` because p is contiguous): one 16-lane accumulator with fused
//!   multiply-adds, element `i` of the row in lane `i % 16`, reduced by halving.
//!
//! One attention score perturbed by an ulp is enough to flip the rounding of
//! some 8-bit activation later on, which moves quantized models' logits by
//! ~0.3; with these orders they match llama.cpp to ~1e-5.
//!
//! The code is portable (`f32::mul_add`, vectorized by the compiler: on
//! aarch64 FMA is baseline); on x86-64 the same code is compiled a second time
//! with AVX2+FMA enabled and picked at run time (identical results: a fused
//! multiply-add is exactly rounded either way, only faster). F16 caches
//! convert rows to f32 first (exact), so one f32 version serves both.

use std::sync::OnceLock;

/// Halving sum of 16 lanes: `l[i] + l[i+8]`, `+4`, `+2`, `+1`
/// (`_mm512_reduce_add_ps`).
#[inline(always)]
fn tree16(l: &[f32; 16]) -> f32 {
    let mut t8 = [0f32; 8];
    for i in 0..8 {
        t8[i] = l[i] + l[i + 8];
    }
    let t4 = [t8[0] + t8[4], t8[1] + t8[5], t8[2] + t8[6], t8[3] + t8[7]];
    let t2 = [t4[0] + t4[2], t4[1] + t4[3]];
    t2[0] + t2[1]
}

#[inline(always)]
fn vecdot_body(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let np = n / 64 * 64;
    let mut acc = [[0f32; 16]; 4];
    for (ca, cb) in a[..np].chunks_exact(64).zip(b[..np].chunks_exact(64)) {
        for (j, acc) in acc.iter_mut().enumerate() {
            for k in 0..16 {
                acc[k] = ca[j * 16 + k].mul_add(cb[j * 16 + k], acc[k]);
            }
        }
    }
    let mut r = [0f32; 16];
    for k in 0..16 {
        r[k] = (acc[0][k] + acc[2][k]) + (acc[1][k] + acc[3][k]);
    }
    let mut s = tree16(&r);
    for i in np..n {
        s = a[i].mul_add(b[i], s);
    }
    s
}

/// Accumulates `a[i]·b[i]` into `lanes[(first + i) % 16]`.
#[inline(always)]
fn lanes_body(a: &[f32], b: &[f32], first: usize, lanes: &mut [f32; 16]) {
    let n = a.len().min(b.len());
    // Head: up to the next lane-0 boundary.
    let head = ((16 - first % 16) % 16).min(n);
    for i in 0..head {
        let k = (first + i) % 16;
        lanes[k] = a[i].mul_add(b[i], lanes[k]);
    }
    let (a, b) = (&a[head..n], &b[head..n]);
    let full = a.len() / 16 * 16;
    for (ca, cb) in a[..full].chunks_exact(16).zip(b[..full].chunks_exact(16)) {
        for k in 0..16 {
            lanes[k] = ca[k].mul_add(cb[k], lanes[k]);
        }
    }
    for i in full..a.len() {
        let k = i - full;
        lanes[k] = a[i].mul_add(b[i], lanes[k]);
    }
}

type VecDotFn = fn(&[f32], &[f32]) -> f32;
type LanesFn = fn(&[f32], &[f32], usize, &mut [f32; 16]);

struct Table {
    vecdot: VecDotFn,
    lanes: LanesFn,
}

fn portable() -> Table {
    Table {
        vecdot: vecdot_body,
        lanes: lanes_body,
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{lanes_body, vecdot_body};

    #[target_feature(enable = "avx2,fma")]
    unsafe fn vecdot(a: &[f32], b: &[f32]) -> f32 {
        vecdot_body(a, b)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes(a: &[f32], b: &[f32], first: usize, l: &mut [f32; 16]) {
        lanes_body(a, b, first, l)
    }

    fn w_vecdot(a: &[f32], b: &[f32]) -> f32 {
        // SAFETY: installed by `table()` only after `is_x86_feature_detected!`
        // confirmed avx2 and fma on this CPU.
        unsafe { vecdot(a, b) }
    }
    fn w_lanes(a: &[f32], b: &[f32], first: usize, l: &mut [f32; 16]) {
        // SAFETY: as for `w_vecdot`.
        unsafe { lanes(a, b, first, l) }
    }

    pub(super) fn table() -> Option<super::Table> {
        let ok = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        ok.then_some(super::Table {
            vecdot: w_vecdot,
            lanes: w_lanes,
        })
    }
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = fma::table() {
            return t;
        }
        portable()
    })
}

/// `Σ a[i]·b[i]` in `ggml_vec_dot_f32`'s order (`K·q`; with an F16 cache,
/// `ggml_vec_dot_f16` has the same order over the f16 values as f32).
#[inline]
pub(crate) fn dot_vecdot(a: &[f32], b: &[f32]) -> f32 {
    (table().vecdot)(a, b)
}

/// Adds `a[i]·b[i]` to `lanes[(first + i) % 16]` (tinyBLAS order; finish with [`reduce`]).
#[inline]
pub(crate) fn dot_lanes(a: &[f32], b: &[f32], first: usize, lanes: &mut [f32; 16]) {
    (table().lanes)(a, b, first, lanes)
}

/// The final halving sum of [`dot_lanes`].
#[inline]
pub(crate) fn reduce(lanes: &[f32; 16]) -> f32 {
    tree16(lanes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn data(n: usize, seed: u32) -> Vec<f32> {
        let mut s = seed | 1;
        (0..n)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 17;
                s ^= s << 5;
                (s >> 8) as f32 / (1u32 << 24) as f32 - 0.5
            })
            .collect()
    }

    /// The dispatched versions give the portable code's bits.
    #[test]
    fn dispatched_equals_portable() {
        let p = portable();
        for n in [1, 15, 16, 17, 64, 100, 256, 333] {
            let (a, b) = (data(n, 1), data(n, 2));
            assert_eq!(dot_vecdot(&a, &b).to_bits(), (p.vecdot)(&a, &b).to_bits());
            for first in [0, 3, 16, 21] {
                let (mut l1, mut l2) = ([0f32; 16], [0f32; 16]);
                dot_lanes(&a, &b, first, &mut l1);
                (p.lanes)(&a, &b, first, &mut l2);
                assert_eq!(l1, l2);
            }
        }
    }

    /// Both orders are dot products (f64 reference).
    #[test]
    fn close_to_f64() {
        let (a, b) = (data(300, 3), data(300, 4));
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        assert!((dot_vecdot(&a, &b) as f64 - exact).abs() < 1e-5);
        let mut l = [0f32; 16];
        dot_lanes(&a[..100], &b[..100], 5, &mut l);
        dot_lanes(&a[100..], &b[100..], 105, &mut l);
        assert!((reduce(&l) as f64 - exact).abs() < 1e-5);
    }
}
