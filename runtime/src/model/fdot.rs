//! The two f32 dot-product orders ggml's CPU backend uses in attention, so
//! that our attention rounds exactly like llama.cpp's (x86-64 AVX-512 build,
//! flash attention off — how the reference logits were made):
//!
//! - [`dot_vecdot_multi`] — `ggml_vec_dot_f32` / `ggml_vec_dot_f16`, used for
//!   `K·q` (q is a permuted, non-contiguous view): 4 accumulators of 16 lanes,
//!   64 elements per step with fused multiply-adds, reduced `(a0+a2)+(a1+a3)`
//!   then across lanes by halving; leftovers fused into the scalar sum.
//! - [`dot_lanes_multi`] — llamafile's tinyBLAS (`llamafile_sgemm`, taken for
//!   `V·p` because p is contiguous): one 16-lane accumulator with fused
//!   multiply-adds, element `i` of the row in lane `i % 16`, reduced by halving.
//!
//! Both take several queries against one K row / V run: the row is loaded
//! once for all of them, while each query keeps its own accumulators, updated
//! in exactly the order of a lone dot product.
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

/// One dot in `ggml_vec_dot_f32`'s order (the reference the tiles are tested against).
#[cfg(test)]
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

/// Accumulates `a[i]·b[i]` into `lanes[(first + i) % 16]` (the reference
/// the tiles are tested against).
#[cfg(test)]
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

/// [`vecdot_body`] of `k` with each of `qs` (`NQ = qs.len()` queries, at
/// most 4), into `out`: one load of `k` feeds every query. Each dot keeps its
/// own four 16-lane accumulators, updated in the same order as alone; they are
/// filled `JP` at a time (a pass over `k` per group), to bound the registers
/// held.
#[inline(always)]
fn vecdot_tile<const NQ: usize, const JP: usize>(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
    let n = qs[..NQ].iter().fold(k.len(), |n, q| n.min(q.len()));
    let np = n / 64 * 64;
    let k = &k[..n];
    let qs: [&[f32]; NQ] = std::array::from_fn(|i| &qs[i][..n]);
    let mut acc = [[[0f32; 16]; 4]; NQ];
    let mut j0 = 0;
    while j0 < 4 {
        let mut a = [[[0f32; 16]; JP]; NQ];
        let mut c = 0;
        while c < np {
            for jj in 0..JP {
                let off = c + (j0 + jj) * 16;
                let kc = &k[off..off + 16];
                for (aq, q) in a.iter_mut().zip(&qs) {
                    let qc = &q[off..off + 16];
                    for l in 0..16 {
                        aq[jj][l] = qc[l].mul_add(kc[l], aq[jj][l]);
                    }
                }
            }
            c += 64;
        }
        for (accq, aq) in acc.iter_mut().zip(&a) {
            accq[j0..j0 + JP].copy_from_slice(aq);
        }
        j0 += JP;
    }
    for ((o, accq), q) in out[..NQ].iter_mut().zip(&acc).zip(&qs) {
        let mut r = [0f32; 16];
        for l in 0..16 {
            r[l] = (accq[0][l] + accq[2][l]) + (accq[1][l] + accq[3][l]);
        }
        let mut s = tree16(&r);
        for i in np..n {
            s = q[i].mul_add(k[i], s);
        }
        *o = s;
    }
}

/// [`vecdot_tile`] over any number of queries, four at a time.
#[inline(always)]
fn vecdot_multi_body<const JP: usize>(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
    let n = qs.len().min(out.len());
    let mut i = 0;
    while i < n {
        let m = (n - i).min(4);
        let (q, o) = (&qs[i..i + m], &mut out[i..i + m]);
        match m {
            4 => vecdot_tile::<4, JP>(k, q, o),
            3 => vecdot_tile::<3, JP>(k, q, o),
            2 => vecdot_tile::<2, JP>(k, q, o),
            _ => vecdot_tile::<1, JP>(k, q, o),
        }
        i += m;
    }
}

/// [`lanes_body`] of `v` with each of `ps` (`NQ = ps.len()`, at most 4) into
/// `lanes[i]`: one load of `v` feeds every query, each lane of each query
/// updated in the same order as alone.
#[inline(always)]
fn lanes_tile<const NQ: usize>(v: &[f32], ps: &[&[f32]], first: usize, lanes: &mut [[f32; 16]]) {
    let n = ps[..NQ].iter().fold(v.len(), |n, p| n.min(p.len()));
    let mut acc: [[f32; 16]; NQ] = std::array::from_fn(|i| lanes[i]);
    let head = ((16 - first % 16) % 16).min(n);
    for i in 0..head {
        let k = (first + i) % 16;
        for (a, p) in acc.iter_mut().zip(&ps[..NQ]) {
            a[k] = p[i].mul_add(v[i], a[k]);
        }
    }
    let v = &v[head..n];
    let ps: [&[f32]; NQ] = std::array::from_fn(|i| &ps[i][head..n]);
    let full = v.len() / 16 * 16;
    let mut c = 0;
    while c < full {
        let vc = &v[c..c + 16];
        for (a, p) in acc.iter_mut().zip(&ps) {
            let pc = &p[c..c + 16];
            for l in 0..16 {
                a[l] = pc[l].mul_add(vc[l], a[l]);
            }
        }
        c += 16;
    }
    for i in full..v.len() {
        let k = i - full;
        for (a, p) in acc.iter_mut().zip(&ps) {
            a[k] = p[i].mul_add(v[i], a[k]);
        }
    }
    lanes[..NQ].copy_from_slice(&acc);
}

/// [`lanes_tile`] over any number of queries, four at a time; a last group of
/// fewer is padded with copies of its last query (results dropped), so only
/// the four-query body is ever used (compilers vectorize it reliably).
#[inline(always)]
fn lanes_multi_body(v: &[f32], ps: &[&[f32]], first: usize, lanes: &mut [[f32; 16]]) {
    let n = ps.len().min(lanes.len());
    let mut i = 0;
    while i < n {
        let m = (n - i).min(4);
        if m == 4 {
            lanes_tile::<4>(v, &ps[i..i + 4], first, &mut lanes[i..i + 4]);
        } else {
            let p: [&[f32]; 4] = std::array::from_fn(|j| ps[i + j.min(m - 1)]);
            let mut l = [[0f32; 16]; 4];
            l[..m].copy_from_slice(&lanes[i..i + m]);
            lanes_tile::<4>(v, &p, first, &mut l);
            lanes[i..i + m].copy_from_slice(&l[..m]);
        }
        i += m;
    }
}

type VecDotMultiFn = fn(&[f32], &[&[f32]], &mut [f32]);
type LanesMultiFn = fn(&[f32], &[&[f32]], usize, &mut [[f32; 16]]);

struct Table {
    vecdot_multi: VecDotMultiFn,
    lanes_multi: LanesMultiFn,
}

fn portable() -> Table {
    Table {
        vecdot_multi: vecdot_multi_body::<1>,
        lanes_multi: lanes_multi_body,
    }
}

#[cfg(target_arch = "x86_64")]
mod fma {
    use super::{lanes_multi_body, vecdot_multi_body};

    #[target_feature(enable = "avx2,fma")]
    unsafe fn vecdot_multi(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
        vecdot_multi_body::<1>(k, qs, out)
    }
    #[target_feature(enable = "avx2,fma")]
    unsafe fn lanes_multi(v: &[f32], ps: &[&[f32]], first: usize, l: &mut [[f32; 16]]) {
        lanes_multi_body(v, ps, first, l)
    }
    fn w_vecdot_multi(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
        // SAFETY: installed by `table()` only after `is_x86_feature_detected!`
        // confirmed avx2 and fma on this CPU.
        unsafe { vecdot_multi(k, qs, out) }
    }
    fn w_lanes_multi(v: &[f32], ps: &[&[f32]], first: usize, l: &mut [[f32; 16]]) {
        // SAFETY: as for `w_vecdot_multi`.
        unsafe { lanes_multi(v, ps, first, l) }
    }
    /// AVX2+FMA. (An AVX-512 build of the same bodies measured no faster,
    /// and the compiler left some of its tiles scalar.)
    pub(super) fn table() -> Option<super::Table> {
        let ok = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        ok.then_some(super::Table {
            vecdot_multi: w_vecdot_multi,
            lanes_multi: w_lanes_multi,
        })
    }
}

/// Both orders in AVX-512 intrinsics: 16 lanes are one register, so every
/// accumulator stays in a register for the whole run (the compiled AVX2 bodies
/// hold 16 lanes in two registers and spill them). In `lanes_multi` the head
/// (positions before the next lane-0 boundary) and the tail are one masked
/// fused multiply-add each instead of a scalar loop; lane `k` of every step
/// holds position `≡ k (mod 16)`, so every lane sees the same fused
/// multiply-adds in the same order as [`lanes_body`]. Both are bit-identical
/// to the portable bodies (tested).
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use core::arch::x86_64::*;

    /// `lanes[i] += ps[i] ⊙ v` by lane, for `NQ` queries.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `ps` and `lanes` hold at least `NQ` entries.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn tile<const NQ: usize>(
        v: &[f32],
        ps: &[&[f32]],
        first: usize,
        lanes: &mut [[f32; 16]],
    ) {
        let n = ps[..NQ].iter().fold(v.len(), |n, p| n.min(p.len()));
        let pp: [*const f32; NQ] = core::array::from_fn(|q| ps[q].as_ptr());
        let vp = v.as_ptr();
        // SAFETY: lanes[q] is 16 f32 (64 bytes); unaligned loads.
        let mut acc: [__m512; NQ] =
            core::array::from_fn(|q| unsafe { _mm512_loadu_ps(lanes[q].as_ptr()) });
        // One masked step: lanes `mask` of the 16 values at `i - h` (element
        // `i - h + k` in lane k). Masked-off lanes are neither read nor changed.
        let step = |acc: &mut [__m512; NQ], i: usize, h: usize, mask: __mmask16| {
            // SAFETY: every unmasked lane k reads element i - h + k, which is
            // < n (the callers' masks), of `v` and of each query; masked-off
            // lanes are not accessed, so the pointer may point before the slice
            // (wrapping arithmetic, never dereferenced there).
            unsafe {
                let x = _mm512_maskz_loadu_ps(mask, vp.wrapping_add(i).wrapping_sub(h));
                for q in 0..NQ {
                    let y = _mm512_maskz_loadu_ps(mask, pp[q].wrapping_add(i).wrapping_sub(h));
                    acc[q] = _mm512_mask3_fmadd_ps(y, x, acc[q], mask);
                }
            }
        };
        let h = first % 16;
        let mut i = 0;
        if h != 0 && n > 0 {
            let cnt = (16 - h).min(n);
            step(&mut acc, 0, h, (((1u32 << cnt) - 1) << h) as u16);
            i = cnt;
        }
        while i + 16 <= n {
            // SAFETY: elements i..i+16 < n of `v` and of each query.
            unsafe {
                let x = _mm512_loadu_ps(vp.add(i));
                for q in 0..NQ {
                    acc[q] = _mm512_fmadd_ps(_mm512_loadu_ps(pp[q].add(i)), x, acc[q]);
                }
            }
            i += 16;
        }
        if i < n {
            step(&mut acc, i, 0, ((1u32 << (n - i)) - 1) as u16);
        }
        for q in 0..NQ {
            // SAFETY: lanes[q] is 16 f32.
            unsafe { _mm512_storeu_ps(lanes[q].as_mut_ptr(), acc[q]) };
        }
    }

    /// Up to 8 queries per pass over `v`.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn lanes_multi(v: &[f32], ps: &[&[f32]], first: usize, lanes: &mut [[f32; 16]]) {
        let n = ps.len().min(lanes.len());
        let mut i = 0;
        while i < n {
            let m = (n - i).min(8);
            let (p, l) = (&ps[i..i + m], &mut lanes[i..i + m]);
            // SAFETY: AVX-512F per the caller; p and l hold m entries.
            unsafe {
                match m {
                    8 => tile::<8>(v, p, first, l),
                    7 => tile::<7>(v, p, first, l),
                    6 => tile::<6>(v, p, first, l),
                    5 => tile::<5>(v, p, first, l),
                    4 => tile::<4>(v, p, first, l),
                    3 => tile::<3>(v, p, first, l),
                    2 => tile::<2>(v, p, first, l),
                    _ => tile::<1>(v, p, first, l),
                }
            }
            i += m;
        }
    }

    /// Sum of the 16 lanes in [`super::tree16`]'s order.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn tree16(x: __m512) -> f32 {
        let t8 = _mm256_add_ps(
            _mm512_castps512_ps256(x),
            _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x))),
        );
        let t4 = _mm_add_ps(_mm256_castps256_ps128(t8), _mm256_extractf128_ps::<1>(t8));
        let t2 = _mm_add_ps(t4, _mm_movehl_ps(t4, t4));
        _mm_cvtss_f32(_mm_add_ss(t2, _mm_movehdup_ps(t2)))
    }

    /// `out[i] = k · qs[i]` in `ggml_vec_dot_f32`'s order ([`super::vecdot_body`])
    /// for `NQ` queries: four accumulators of 16 lanes each, in registers.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `qs` and `out` hold at least `NQ` entries.
    #[target_feature(enable = "avx512f")]
    #[inline]
    // Queries, their pointers and their accumulators are parallel arrays.
    #[allow(clippy::needless_range_loop)]
    unsafe fn dot_tile<const NQ: usize>(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
        let n = qs[..NQ].iter().fold(k.len(), |n, q| n.min(q.len()));
        let np = n / 64 * 64;
        let qp: [*const f32; NQ] = core::array::from_fn(|q| qs[q].as_ptr());
        let kp = k.as_ptr();
        let mut acc = [[_mm512_setzero_ps(); 4]; NQ];
        let mut c = 0;
        while c < np {
            for j in 0..4 {
                // SAFETY: elements c..c+64 < n of `k` and of each query.
                unsafe {
                    let x = _mm512_loadu_ps(kp.add(c + 16 * j));
                    for q in 0..NQ {
                        let y = _mm512_loadu_ps(qp[q].add(c + 16 * j));
                        acc[q][j] = _mm512_fmadd_ps(y, x, acc[q][j]);
                    }
                }
            }
            c += 64;
        }
        for q in 0..NQ {
            let a = &acc[q];
            let r = _mm512_add_ps(_mm512_add_ps(a[0], a[2]), _mm512_add_ps(a[1], a[3]));
            let mut s = tree16(r);
            for i in np..n {
                s = qs[q][i].mul_add(k[i], s);
            }
            out[q] = s;
        }
    }

    /// Up to 4 queries per pass over `k`.
    ///
    /// # Safety
    /// The CPU has AVX-512F.
    #[target_feature(enable = "avx512f")]
    unsafe fn vecdot_multi(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
        let n = qs.len().min(out.len());
        let mut i = 0;
        while i < n {
            let m = (n - i).min(4);
            let (q, o) = (&qs[i..i + m], &mut out[i..i + m]);
            // SAFETY: AVX-512F per the caller; q and o hold m entries.
            unsafe {
                match m {
                    4 => dot_tile::<4>(k, q, o),
                    3 => dot_tile::<3>(k, q, o),
                    2 => dot_tile::<2>(k, q, o),
                    _ => dot_tile::<1>(k, q, o),
                }
            }
            i += m;
        }
    }

    fn w_lanes_multi(v: &[f32], ps: &[&[f32]], first: usize, l: &mut [[f32; 16]]) {
        // SAFETY: installed by `table()` only after `is_x86_feature_detected!`
        // confirmed avx512f on this CPU.
        unsafe { lanes_multi(v, ps, first, l) }
    }
    fn w_vecdot_multi(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
        // SAFETY: as for `w_lanes_multi`.
        unsafe { vecdot_multi(k, qs, out) }
    }

    /// AVX-512F.
    pub(super) fn table() -> Option<super::Table> {
        std::arch::is_x86_feature_detected!("avx512f").then_some(super::Table {
            vecdot_multi: w_vecdot_multi,
            lanes_multi: w_lanes_multi,
        })
    }
}

fn table() -> &'static Table {
    static T: OnceLock<Table> = OnceLock::new();
    T.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        if let Some(t) = avx512::table().or_else(fma::table) {
            return t;
        }
        portable()
    })
}

/// `out[i] = dot_vecdot(qs[i], k)` for every `i`, loading `k` once for
/// several queries (bit-identical to separate calls).
#[inline]
pub(crate) fn dot_vecdot_multi(k: &[f32], qs: &[&[f32]], out: &mut [f32]) {
    (table().vecdot_multi)(k, qs, out)
}

/// `dot_lanes(ps[i], v, first, &mut lanes[i])` for every `i`, loading `v`
/// once for several queries (bit-identical to separate calls).
#[inline]
pub(crate) fn dot_lanes_multi(v: &[f32], ps: &[&[f32]], first: usize, lanes: &mut [[f32; 16]]) {
    (table().lanes_multi)(v, ps, first, lanes)
}

/// The final halving sum of [`dot_lanes_multi`]'s lanes.
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

    /// The multi-query versions give each single dot's bits, on every path.
    #[test]
    fn multi_equals_single() {
        #[cfg(target_arch = "x86_64")]
        let tables = [Some(portable()), fma::table(), avx512::table()];
        #[cfg(not(target_arch = "x86_64"))]
        let tables = [Some(portable())];
        for n in [0, 1, 2, 14, 15, 16, 17, 31, 64, 100, 256, 333] {
            let k = data(n, 9);
            let qs: Vec<Vec<f32>> = (0..11).map(|i| data(n, 20 + i)).collect();
            let qr: Vec<&[f32]> = qs.iter().map(|q| &q[..]).collect();
            for t in tables.iter().flatten() {
                for m in 1..=11 {
                    let mut out = vec![0f32; m];
                    (t.vecdot_multi)(&k, &qr[..m], &mut out);
                    for (o, q) in out.iter().zip(&qr) {
                        assert_eq!(o.to_bits(), vecdot_body(q, &k).to_bits(), "n {n} m {m}");
                    }
                    for first in [0, 1, 3, 15, 16, 21, 31] {
                        let mut lanes = vec![[0.5f32; 16]; m];
                        (t.lanes_multi)(&k, &qr[..m], first, &mut lanes);
                        for (l, q) in lanes.iter().zip(&qr) {
                            let mut one = [0.5f32; 16];
                            lanes_body(q, &k, first, &mut one);
                            assert_eq!(l.map(f32::to_bits), one.map(f32::to_bits));
                        }
                    }
                }
            }
        }
    }

    /// Both orders are dot products (f64 reference).
    #[test]
    fn close_to_f64() {
        let (a, b) = (data(300, 3), data(300, 4));
        let exact: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
        let mut d = [0f32];
        dot_vecdot_multi(&a, &[&b], &mut d);
        assert!((d[0] as f64 - exact).abs() < 1e-5);
        let mut l = [[0f32; 16]];
        dot_lanes_multi(&a[..100], &[&b[..100]], 5, &mut l);
        dot_lanes_multi(&a[100..], &[&b[100..]], 105, &mut l);
        let l = l[0];
        assert!((reduce(&l) as f64 - exact).abs() < 1e-5);
    }
}
