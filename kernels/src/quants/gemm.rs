//! Prompt-path matrix products (GEMM): many weight rows × many tokens at once.
//!
//! Decode multiplies a matrix by one token, and its speed is the memory's.
//! A prompt multiplies it by hundreds of tokens: the weights are reused, so
//! the speed is the arithmetic's, and calling the one-token `gemv` per token
//! wastes most of it decoding every weight block again for every token. Here
//! a block of weight rows is decoded **once** (per call, i.e. per up to 512
//! tokens) into a *canonical* layout, and a register-tiled micro-kernel then
//! applies it to the tokens four at a time.
//!
//! ## The canonical layout (per group of [`RI`] rows, per weight block)
//!
//! ```text
//! vals  [step][row][4] i8   step = 4 consecutive weights; one SIMD register
//!                           holds 4 weights of each of the RI rows
//! K-quants (256-element super-blocks, Q8_K activations):
//!   sc    [group][row] i32  scale of each group of G weights (Q6_K: G = 16, else 32)
//!   corr  [group][row] i32  −128 · Σ vals of the group (x86, see below)
//!   minp  [pair][row][2] i16  sub-block minimums, two sub-blocks per i32 (x86)
//!   minw  [sub-block][row] i32  the same minimums, one per i32 (ARM)
//!   d, dmin [row] f32
//! 32-element blocks (Q4_0, Q5_0, Q8_0, IQ4_NL; Q8_0 activations):
//!   corr [row] i32, d [row] f32
//! ```
//!
//! `vals` are the signed quants (`q − 8` for Q4_0, `q − 32` for Q6_K, …), so
//! every format reduces to `Σ_group scale·Σ vals·y`, then `d·d_y·(…)` minus
//! `dmin·d_y·Σ min·bsum` for the formats with minimums — the same integers
//! as the formats' `vec_dot`, hence the same results up to the order of the
//! f32 additions.
//!
//! ## The micro-kernels
//!
//! - **aarch64 + dotprod** (`RI` = 4): `sdot v.4s, w.16b, y.4b[k]` multiplies
//!   4 weights of 4 rows by the same 4 activation bytes (a lane of `y`): one
//!   instruction, 16 multiply-adds, the four sums land in the four rows'
//!   lanes. After a group: one multiply-add by the rows' scales.
//! - **x86 AVX-512 VNNI** (`RI` = 8, 256-bit registers): `vpdpbusd` of the
//!   activation's 4 bytes broadcast (unsigned: `y + 128`, prepared once per
//!   call) with 4 weights of 8 rows (signed); `corr` removes the `128·Σ vals`
//!   that the offset adds. **AVX2** does the same with `vpmaddubsw` +
//!   `vpmaddwd`, exact while `|vals| ≤ 64` (not Q8_0 and IQ4_NL, which keep
//!   the per-token `gemv` there).
//!
//! Four tokens share each weight register; the eight (four) rows share each
//! activation broadcast. Plain NEON (Cortex-A53/A72) has no `sdot`: its
//! prompt path stays on `gemv`.

use super::q8_k::QK_K;
use crate::dispatch::{Backend, GemmFn};
use crate::types::GgmlType;
use std::cell::RefCell;

/// Weight rows interleaved in one canonical row group.
#[cfg(target_arch = "x86_64")]
pub(crate) const RI: usize = 8;
/// Weight rows interleaved in one canonical row group.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const RI: usize = 4;

/// Row groups per micro-kernel call (each activation broadcast serves them all).
#[cfg(target_arch = "x86_64")]
pub(crate) const RG: usize = 2;
/// Row groups per micro-kernel call.
#[cfg(not(target_arch = "x86_64"))]
pub(crate) const RG: usize = 1;
/// Rows per micro-kernel call.
pub(crate) const RW: usize = RI * RG;

/// Tokens per micro-tile.
pub(crate) const TT: usize = 4;

/// The weight formats with a GEMM.
#[allow(non_camel_case_types)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fmt {
    Q4_0,
    Q5_0,
    Q8_0,
    IQ4_NL,
    Q4_K,
    Q5_K,
    Q6_K,
}

impl Fmt {
    pub(crate) fn ty(self) -> GgmlType {
        match self {
            Fmt::Q4_0 => GgmlType::Q4_0,
            Fmt::Q5_0 => GgmlType::Q5_0,
            Fmt::Q8_0 => GgmlType::Q8_0,
            Fmt::IQ4_NL => GgmlType::IQ4_NL,
            Fmt::Q4_K => GgmlType::Q4_K,
            Fmt::Q5_K => GgmlType::Q5_K,
            Fmt::Q6_K => GgmlType::Q6_K,
        }
    }

    /// 256-element super-blocks with Q8_K activations (else 32-element blocks, Q8_0).
    fn is_k(self) -> bool {
        matches!(self, Fmt::Q4_K | Fmt::Q5_K | Fmt::Q6_K)
    }

    fn act(self) -> GgmlType {
        if self.is_k() {
            GgmlType::Q8_K
        } else {
            GgmlType::Q8_0
        }
    }

    /// Largest `|vals|` (bounds the AVX2 `vpmaddubsw` pairs).
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn max_abs(self) -> i32 {
        match self {
            Fmt::Q4_0 => 8,
            Fmt::Q5_0 => 16,
            Fmt::Q8_0 | Fmt::IQ4_NL => 128,
            Fmt::Q4_K => 15,
            Fmt::Q5_K => 31,
            Fmt::Q6_K => 32,
        }
    }
}

// ------------------------------------------------------------ layout --

/// Byte offsets inside one canonical K-quant block of a row group.
mod kl {
    use super::RI;
    pub(crate) const VALS: usize = 0;
    pub(crate) const SC: usize = VALS + 256 * RI;
    pub(crate) const CORR: usize = SC + 16 * 4 * RI;
    pub(crate) const MINP: usize = CORR + 16 * 4 * RI;
    pub(crate) const MINW: usize = MINP + 4 * 4 * RI;
    pub(crate) const D: usize = MINW + 8 * 4 * RI;
    pub(crate) const DMIN: usize = D + 4 * RI;
    pub(crate) const BYTES: usize = DMIN + 4 * RI;
}

/// Byte offsets inside one canonical 32-element block of a row group.
mod bl {
    use super::RI;
    pub(crate) const VALS: usize = 0;
    pub(crate) const CORR: usize = VALS + 32 * RI;
    pub(crate) const D: usize = CORR + 4 * RI;
    pub(crate) const BYTES: usize = D + 4 * RI;
}

/// Bytes of one prepared (x86) activation block: `y + 128` as u8, `d` (f32)
/// and, for Q8_K, the four pairs of sub-block sums as i16 pairs.
#[cfg(target_arch = "x86_64")]
mod pl {
    pub(crate) const K_D: usize = 256;
    pub(crate) const K_BS2: usize = 260;
    pub(crate) const K_BYTES: usize = 288;
    pub(crate) const B_D: usize = 32;
    pub(crate) const B_BYTES: usize = 40;
}

/// One decoded weight block: signed values, group scales, sub-block
/// minimums, `d` and `dmin`.
struct Unpacked {
    vals: [i8; QK_K],
    sc: [i32; 16],
    mins: [i32; 8],
    d: f32,
    dmin: f32,
}

/// Decodes weight block `blk` of format `fmt` (only `vals[..32]` and `d`
/// for the 32-element formats).
fn unpack(fmt: Fmt, blk: &[u8], u: &mut Unpacked) {
    use super::*;
    match fmt {
        Fmt::Q4_0 => {
            let b: q4_0::BlockQ4_0 = bytemuck::pod_read_unaligned(blk);
            for j in 0..16 {
                u.vals[j] = (b.qs[j] & 0xF) as i8 - 8;
                u.vals[j + 16] = (b.qs[j] >> 4) as i8 - 8;
            }
            u.d = b.d.to_f32();
        }
        Fmt::Q5_0 => {
            let b: q5_0::BlockQ5_0 = bytemuck::pod_read_unaligned(blk);
            for (v, q) in u.vals.iter_mut().zip(q5_0::unpack(&b)) {
                *v = (q - 16) as i8;
            }
            u.d = b.d.to_f32();
        }
        Fmt::Q8_0 => {
            let b: q8_0::BlockQ8_0 = bytemuck::pod_read_unaligned(blk);
            u.vals[..32].copy_from_slice(&b.qs);
            u.d = b.d.to_f32();
        }
        Fmt::IQ4_NL => {
            let b: iq4_nl::BlockIQ4_NL = bytemuck::pod_read_unaligned(blk);
            for j in 0..16 {
                u.vals[j] = iq4_nl::KVALUES_IQ4NL[(b.qs[j] & 0xF) as usize];
                u.vals[j + 16] = iq4_nl::KVALUES_IQ4NL[(b.qs[j] >> 4) as usize];
            }
            u.d = b.d.to_f32();
        }
        Fmt::Q4_K => {
            let b: q4_k::BlockQ4_K = bytemuck::pod_read_unaligned(blk);
            for (c, q) in b.qs.chunks_exact(32).enumerate() {
                for (l, &x) in q.iter().enumerate() {
                    u.vals[64 * c + l] = (x & 0xF) as i8;
                    u.vals[64 * c + 32 + l] = (x >> 4) as i8;
                }
            }
            k_scales_mins(&b.scales, u);
            u.d = b.d.to_f32();
            u.dmin = b.dmin.to_f32();
        }
        Fmt::Q5_K => {
            let b: q5_k::BlockQ5_K = bytemuck::pod_read_unaligned(blk);
            for (v, q) in u.vals.iter_mut().zip(q5_k::unpack(&b)) {
                *v = q as i8;
            }
            k_scales_mins(&b.scales, u);
            u.d = b.d.to_f32();
            u.dmin = b.dmin.to_f32();
        }
        Fmt::Q6_K => {
            let b: q6_k::BlockQ6_K = bytemuck::pod_read_unaligned(blk);
            for (v, q) in u.vals.iter_mut().zip(q6_k::unpack(&b)) {
                *v = q as i8 - 32;
            }
            for (s, &x) in u.sc.iter_mut().zip(&b.scales) {
                *s = x as i32;
            }
            u.d = b.d.to_f32();
            u.dmin = 0.0;
        }
    }
}

/// The 8 six-bit scales and minimums of a Q4_K/Q5_K block.
fn k_scales_mins(scales: &[u8; 12], u: &mut Unpacked) {
    let sm: [u8; 16] = bytemuck::cast(super::q4_k::unpack_scales_mins(super::q4_k::scale_words(
        scales,
    )));
    for j in 0..8 {
        u.sc[j] = sm[j] as i32;
        u.mins[j] = sm[8 + j] as i32;
    }
}

/// Bytes of the canonical form of `rows` rows of `nb` blocks.
fn canon_bytes(fmt: Fmt, rows: usize, nb: usize) -> usize {
    let groups = rows.div_ceil(RI);
    groups * nb * if fmt.is_k() { kl::BYTES } else { bl::BYTES }
}

/// Writes the canonical form of `rows` weight rows (`row_bytes` apart in `w`,
/// `nb` blocks each) into `canon`: row group after row group, block after
/// block. Rows past `rows` in the last group are zero (their results are
/// dropped).
fn build_canon(fmt: Fmt, w: &[u8], row_bytes: usize, rows: usize, nb: usize, canon: &mut [u8]) {
    let wb = fmt.ty().block_bytes();
    let cb = if fmt.is_k() { kl::BYTES } else { bl::BYTES };
    let group = if fmt == Fmt::Q6_K { 16 } else { 32 };
    let ng = if fmt.is_k() { QK_K / group } else { 1 };
    let elems = if fmt.is_k() { QK_K } else { 32 };
    let mut u = Unpacked {
        vals: [0; QK_K],
        sc: [0; 16],
        mins: [0; 8],
        d: 0.0,
        dmin: 0.0,
    };
    // Canonical blocks are whole u32 words (the buffer is 8-byte aligned).
    let words: &mut [u32] = bytemuck::cast_slice_mut(&mut canon[..canon_bytes(fmt, rows, nb)]);
    let cw = cb / 4;
    for (gi, gc) in words.chunks_exact_mut(nb * cw).enumerate() {
        for (b, c) in gc.chunks_exact_mut(cw).enumerate() {
            c.fill(0);
            for r in 0..RI {
                let row = gi * RI + r;
                if row >= rows {
                    break;
                }
                let off = row * row_bytes + b * wb;
                unpack(fmt, &w[off..off + wb], &mut u);
                // vals: [step][row][4 bytes] — one u32 per (step, row).
                let steps: [u32; QK_K / 4] = bytemuck::cast(u.vals);
                for (s, &v) in steps[..elems / 4].iter().enumerate() {
                    c[s * RI + r] = v;
                }
                if fmt.is_k() {
                    for g in 0..ng {
                        let sum: i32 = u.vals[g * group..(g + 1) * group]
                            .iter()
                            .map(|&v| v as i32)
                            .sum();
                        c[kl::SC / 4 + g * RI + r] = u.sc[g] as u32;
                        c[kl::CORR / 4 + g * RI + r] = (-128 * sum) as u32;
                    }
                    for p in 0..4 {
                        let lo = u.mins[2 * p] as u16 as u32;
                        let hi = u.mins[2 * p + 1] as u16 as u32;
                        c[kl::MINP / 4 + p * RI + r] = lo | (hi << 16);
                    }
                    for j in 0..8 {
                        c[kl::MINW / 4 + j * RI + r] = u.mins[j] as u32;
                    }
                    c[kl::D / 4 + r] = u.d.to_bits();
                    c[kl::DMIN / 4 + r] = u.dmin.to_bits();
                } else {
                    let sum: i32 = u.vals[..32].iter().map(|&v| v as i32).sum();
                    c[bl::CORR / 4 + r] = (-128 * sum) as u32;
                    c[bl::D / 4 + r] = u.d.to_bits();
                }
            }
        }
    }
}

/// Prepares `n_tokens` activation rows (`act_stride` bytes apart) for the x86
/// kernels: per block, the quants plus 128 as unsigned bytes, `d` as f32 and
/// (Q8_K) the sums of sub-block pairs `bsums[2j] + bsums[2j+1]` as i16 pairs.
#[cfg(target_arch = "x86_64")]
fn build_prep(fmt: Fmt, a: &[u8], act_stride: usize, n_tokens: usize, nb: usize, prep: &mut [u8]) {
    let pb = if fmt.is_k() { pl::K_BYTES } else { pl::B_BYTES };
    let ab = fmt.act().block_bytes();
    for t in 0..n_tokens {
        let row = &a[t * act_stride..t * act_stride + nb * ab];
        let dst_row = &mut prep[t * nb * pb..(t + 1) * nb * pb];
        for (blk, dst) in row.chunks_exact(ab).zip(dst_row.chunks_exact_mut(pb)) {
            if fmt.is_k() {
                for (o, &q) in dst[..256].iter_mut().zip(&blk[4..260]) {
                    *o = q ^ 0x80;
                }
                dst[pl::K_D..pl::K_D + 4].copy_from_slice(&blk[0..4]);
                let mut bs = [0i16; 16];
                for (v, c) in bs.iter_mut().zip(blk[260..292].chunks_exact(2)) {
                    *v = i16::from_le_bytes([c[0], c[1]]);
                }
                for j in 0..8 {
                    let s = bs[2 * j].wrapping_add(bs[2 * j + 1]);
                    dst[pl::K_BS2 + 2 * j..pl::K_BS2 + 2 * j + 2].copy_from_slice(&s.to_ne_bytes());
                }
            } else {
                for (o, &q) in dst[..32].iter_mut().zip(&blk[2..34]) {
                    *o = q ^ 0x80;
                }
                let d = half::f16::from_bits(u16::from_le_bytes([blk[0], blk[1]])).to_f32();
                dst[pl::B_D..pl::B_D + 4].copy_from_slice(&d.to_ne_bytes());
            }
        }
    }
}

thread_local! {
    /// Per-thread scratch: the canonical weights and the prepared activations
    /// of the current call. Grown on first use, then reused (the prompt path
    /// of a model allocates here once per thread).
    static SCRATCH: RefCell<(Vec<u64>, Vec<u64>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

fn as_bytes(v: &mut Vec<u64>, bytes: usize) -> &mut [u8] {
    let words = bytes.div_ceil(8);
    if v.len() < words {
        v.resize(words, 0);
    }
    &mut bytemuck::cast_slice_mut(v.as_mut_slice())[..bytes]
}

/// A micro-kernel: [`RG`] canonical row groups (`nb` blocks each, the first
/// at `c`, the next `gs` bytes further) against [`TT`] tokens (block `b` of
/// token `t` at `p[t] + b * pstride`); returns `[token][row]`.
///
/// # Safety
/// The pointers must cover those reads; the CPU has the kernel's features.
type Micro = unsafe fn(
    nb: usize,
    c: *const u8,
    gs: usize,
    p: [*const u8; TT],
    pstride: usize,
) -> [[f32; RW]; TT];

/// Checks the [`GemmFn`] contract and returns the blocks per row.
#[track_caller]
#[allow(clippy::too_many_arguments)]
fn check(
    fmt: Fmt,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    a: &[u8],
    act_stride: usize,
    n_tokens: usize,
) -> usize {
    let ty = fmt.ty();
    let (Some(wrow), Some(arow)) = (ty.row_bytes(n), fmt.act().row_bytes(n)) else {
        panic!("{ty} gemm: n = {n} is not a whole number of blocks");
    };
    assert!(
        row_bytes >= wrow && (rows == 0 || w.len() >= (rows - 1) * row_bytes + wrow),
        "{ty} gemm: {rows} rows of {wrow} bytes, stride {row_bytes}, in {} bytes",
        w.len()
    );
    assert!(
        act_stride >= arow && (n_tokens == 0 || a.len() >= (n_tokens - 1) * act_stride + arow),
        "{ty} gemm: {n_tokens} activation rows of {arow} bytes, stride {act_stride}, in {} bytes",
        a.len()
    );
    n / ty.block_elems()
}

/// Weight rows decoded at a time: four row groups.
const ROW_BLOCK: usize = 4 * RI;

/// The shared driver: (x86) the activations prepared once, then per block of
/// [`ROW_BLOCK`] rows the canonical weights and the micro-kernel over token
/// quads × row groups; results go to `out(token, first row, values)`.
#[allow(clippy::too_many_arguments)]
fn run(
    fmt: Fmt,
    micro: Micro,
    n: usize,
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    a: &[u8],
    act_stride: usize,
    n_tokens: usize,
    out: &mut dyn FnMut(usize, usize, &[f32]),
) {
    let nb = check(fmt, n, w, row_bytes, rows, a, act_stride, n_tokens);
    if rows == 0 || n_tokens == 0 {
        return;
    }
    let cb = if fmt.is_k() { kl::BYTES } else { bl::BYTES };
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let (cv, pv) = &mut *s;
        #[cfg(target_arch = "x86_64")]
        let (base, tstride, pstride) = {
            let pb = if fmt.is_k() { pl::K_BYTES } else { pl::B_BYTES };
            let prep = as_bytes(pv, n_tokens * nb * pb);
            build_prep(fmt, a, act_stride, n_tokens, nb, prep);
            (prep.as_ptr(), nb * pb, pb)
        };
        #[cfg(not(target_arch = "x86_64"))]
        let (base, tstride, pstride) = {
            let _ = &pv;
            (a.as_ptr(), act_stride, fmt.act().block_bytes())
        };
        for rb0 in (0..rows).step_by(ROW_BLOCK) {
            let nr = (rows - rb0).min(ROW_BLOCK);
            let canon = as_bytes(cv, canon_bytes(fmt, nr, nb));
            build_canon(fmt, &w[rb0 * row_bytes..], row_bytes, nr, nb, canon);
            let groups = nr.div_ceil(RI);
            for t0 in (0..n_tokens).step_by(TT) {
                let nt = (n_tokens - t0).min(TT);
                // A partial quad repeats its last token (results dropped).
                let p: [*const u8; TT] = std::array::from_fn(|t| {
                    // SAFETY: t0 + min(t, nt - 1) < n_tokens rows of `tstride` bytes exist.
                    unsafe { base.add((t0 + t.min(nt - 1)) * tstride) }
                });
                for g in (0..groups).step_by(RG) {
                    // A missing last group repeats the previous one (results dropped).
                    let gs = if g + RG <= groups { nb * cb } else { 0 };
                    // SAFETY: groups g.. (g + RG or the last) have nb canonical blocks in
                    // `canon`; each p[t] has nb blocks of `pstride` bytes (checked /
                    // built above); `select` installs this kernel only on CPUs with its
                    // features.
                    let res = unsafe { micro(nb, canon.as_ptr().add(g * nb * cb), gs, p, pstride) };
                    let m = (nr - g * RI).min(RW);
                    for (t, rt) in res.iter().enumerate().take(nt) {
                        out(t0 + t, rb0 + g * RI, &rt[..m]);
                    }
                }
            }
        }
    });
}

// ------------------------------------------------------------- x86 --

#[cfg(target_arch = "x86_64")]
macro_rules! x86_kernels {
    ($m:ident, $feat:literal, $vnni:expr) => {
        pub(crate) mod $m {
            use super::{bl, kl, pl, RG, RI, RW, TT};
            use core::arch::x86_64::*;

            /// `acc + Σ₄ y·w` per i32 lane (`y` unsigned, `w` signed bytes).
            #[target_feature(enable = $feat)]
            #[inline]
            fn dot4(acc: __m256i, y: __m256i, w: __m256i) -> __m256i {
                if $vnni {
                    #[allow(unused_unsafe)]
                    // SAFETY: the module's features include avx512vnni/vl when $vnni.
                    unsafe {
                        vnni(acc, y, w)
                    }
                } else {
                    let p = _mm256_maddubs_epi16(y, w);
                    _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)))
                }
            }

            #[target_feature(enable = "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")]
            #[inline]
            #[allow(dead_code)]
            fn vnni(acc: __m256i, y: __m256i, w: __m256i) -> __m256i {
                _mm256_dpbusd_epi32(acc, y, w)
            }

            /// The 4 bytes at `p` in every lane.
            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn bcast(p: *const u8) -> __m256i {
                // SAFETY: per the caller (4 readable bytes).
                _mm256_set1_epi32(unsafe { (p as *const i32).read_unaligned() })
            }

            #[target_feature(enable = $feat)]
            #[inline]
            unsafe fn ld(p: *const u8) -> __m256i {
                // SAFETY: per the caller (32 readable bytes).
                unsafe { _mm256_loadu_si256(p as *const __m256i) }
            }

            /// K-quant micro-kernel: groups of `G`, minimums if `MIN`.
            ///
            /// # Safety
            /// See [`super::Micro`].
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn micro_k<const G: usize, const MIN: bool>(
                nb: usize,
                c0: *const u8,
                gs: usize,
                p: [*const u8; TT],
                pstride: usize,
            ) -> [[f32; RW]; TT] {
                let mut acc = [[_mm256_setzero_ps(); TT]; RG];
                for b in 0..nb {
                    // SAFETY: block b of the row groups and of each token (caller).
                    unsafe {
                        let c: [*const u8; RG] =
                            core::array::from_fn(|q| c0.add(q * gs + b * kl::BYTES));
                        let y: [*const u8; TT] = core::array::from_fn(|t| p[t].add(b * pstride));
                        let mut sumi = [[_mm256_setzero_si256(); TT]; RG];
                        for g in 0..256 / G {
                            let mut s: [[__m256i; TT]; RG] =
                                core::array::from_fn(|q| [ld(c[q].add(kl::CORR + g * 4 * RI)); TT]);
                            for k in 0..G / 4 {
                                let step = g * (G / 4) + k;
                                let wv: [__m256i; RG] =
                                    core::array::from_fn(
                                        |q| ld(c[q].add(kl::VALS + step * 4 * RI)),
                                    );
                                for t in 0..TT {
                                    let yb = bcast(y[t].add(4 * step));
                                    for q in 0..RG {
                                        s[q][t] = dot4(s[q][t], yb, wv[q]);
                                    }
                                }
                            }
                            for q in 0..RG {
                                let sc = ld(c[q].add(kl::SC + g * 4 * RI));
                                for t in 0..TT {
                                    sumi[q][t] = _mm256_add_epi32(
                                        sumi[q][t],
                                        _mm256_mullo_epi32(s[q][t], sc),
                                    );
                                }
                            }
                        }
                        let d8: [__m256; TT] = core::array::from_fn(|t| {
                            _mm256_set1_ps((y[t].add(pl::K_D) as *const f32).read_unaligned())
                        });
                        for q in 0..RG {
                            let d = _mm256_loadu_ps(c[q].add(kl::D) as *const f32);
                            for t in 0..TT {
                                acc[q][t] = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(sumi[q][t]),
                                    _mm256_mul_ps(d, d8[t]),
                                    acc[q][t],
                                );
                            }
                        }
                        if MIN {
                            let mut m = [[_mm256_setzero_si256(); TT]; RG];
                            for h in 0..4 {
                                let mv: [__m256i; RG] =
                                    core::array::from_fn(|q| ld(c[q].add(kl::MINP + h * 4 * RI)));
                                for t in 0..TT {
                                    let bs = bcast(y[t].add(pl::K_BS2 + 4 * h));
                                    for q in 0..RG {
                                        m[q][t] =
                                            _mm256_add_epi32(m[q][t], _mm256_madd_epi16(mv[q], bs));
                                    }
                                }
                            }
                            for q in 0..RG {
                                let dm = _mm256_loadu_ps(c[q].add(kl::DMIN) as *const f32);
                                for t in 0..TT {
                                    acc[q][t] = _mm256_fnmadd_ps(
                                        _mm256_cvtepi32_ps(m[q][t]),
                                        _mm256_mul_ps(dm, d8[t]),
                                        acc[q][t],
                                    );
                                }
                            }
                        }
                    }
                }
                store(&acc)
            }

            /// `[token][row]` from the accumulators.
            #[target_feature(enable = $feat)]
            #[inline]
            fn store(acc: &[[__m256; TT]; RG]) -> [[f32; RW]; TT] {
                let mut out = [[0f32; RW]; TT];
                for t in 0..TT {
                    for q in 0..RG {
                        // SAFETY: out[t] holds RG · 8 f32.
                        unsafe { _mm256_storeu_ps(out[t].as_mut_ptr().add(q * RI), acc[q][t]) };
                    }
                }
                out
            }

            /// 32-element-block micro-kernel.
            ///
            /// # Safety
            /// See [`super::Micro`].
            #[target_feature(enable = $feat)]
            pub(crate) unsafe fn micro_b(
                nb: usize,
                c0: *const u8,
                gs: usize,
                p: [*const u8; TT],
                pstride: usize,
            ) -> [[f32; RW]; TT] {
                let mut acc = [[_mm256_setzero_ps(); TT]; RG];
                for b in 0..nb {
                    // SAFETY: block b of the row groups and of each token (caller).
                    unsafe {
                        let c: [*const u8; RG] =
                            core::array::from_fn(|q| c0.add(q * gs + b * bl::BYTES));
                        let y: [*const u8; TT] = core::array::from_fn(|t| p[t].add(b * pstride));
                        let mut s: [[__m256i; TT]; RG] =
                            core::array::from_fn(|q| [ld(c[q].add(bl::CORR)); TT]);
                        for k in 0..8 {
                            let wv: [__m256i; RG] =
                                core::array::from_fn(|q| ld(c[q].add(bl::VALS + k * 4 * RI)));
                            for t in 0..TT {
                                let yb = bcast(y[t].add(4 * k));
                                for q in 0..RG {
                                    s[q][t] = dot4(s[q][t], yb, wv[q]);
                                }
                            }
                        }
                        for q in 0..RG {
                            let d = _mm256_loadu_ps(c[q].add(bl::D) as *const f32);
                            for t in 0..TT {
                                let dy = _mm256_set1_ps(
                                    (y[t].add(pl::B_D) as *const f32).read_unaligned(),
                                );
                                acc[q][t] = _mm256_fmadd_ps(
                                    _mm256_cvtepi32_ps(s[q][t]),
                                    _mm256_mul_ps(d, dy),
                                    acc[q][t],
                                );
                            }
                        }
                    }
                }
                store(&acc)
            }
        }
    };
}

#[cfg(target_arch = "x86_64")]
x86_kernels!(avx2, "avx2,fma,f16c", false);
#[cfg(target_arch = "x86_64")]
x86_kernels!(
    avx512,
    "avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni",
    true
);

// ---------------------------------------------------------- aarch64 --

#[cfg(target_arch = "aarch64")]
pub(crate) mod dotprod {
    use super::{bl, kl, RI, RW, TT};
    use core::arch::aarch64::*;

    // One row group per call (RG = 1): the four rows of a group fill a register.
    const _: () = assert!(RW == RI);

    /// `acc[i] += Σ₄ w[4i..4i+4] · y[4L..4L+4]`: 4 weights of each of 4 rows
    /// times the same 4 activation bytes (lane `L` of `y`).
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    fn sdot_lane<const L: i32>(acc: int32x4_t, w: int8x16_t, y: int8x16_t) -> int32x4_t {
        let mut acc = acc;
        // SAFETY: `sdot` (by element) is in the dotprod extension this function
        // is compiled for; it only reads and writes the named registers.
        unsafe {
            core::arch::asm!(
                "sdot {acc:v}.4s, {w:v}.16b, {y:v}.4b[{l}]",
                acc = inout(vreg) acc,
                w = in(vreg) w,
                y = in(vreg) y,
                l = const L,
                options(pure, nomem, nostack)
            );
        }
        acc
    }

    /// 16 weights of 4 rows (4 steps from `c`) against 16 activation bytes of each token.
    #[target_feature(enable = "neon,dotprod")]
    #[inline]
    unsafe fn steps4(c: *const u8, y: &[int8x16_t; TT], s: &mut [int32x4_t; TT]) {
        // SAFETY: 64 readable bytes at c (caller).
        let w = unsafe {
            [
                vld1q_s8(c as *const i8),
                vld1q_s8(c.add(16) as *const i8),
                vld1q_s8(c.add(32) as *const i8),
                vld1q_s8(c.add(48) as *const i8),
            ]
        };
        for t in 0..TT {
            s[t] = sdot_lane::<0>(s[t], w[0], y[t]);
            s[t] = sdot_lane::<1>(s[t], w[1], y[t]);
            s[t] = sdot_lane::<2>(s[t], w[2], y[t]);
            s[t] = sdot_lane::<3>(s[t], w[3], y[t]);
        }
    }

    /// K-quant micro-kernel (activations: Q8_K rows as they are).
    ///
    /// # Safety
    /// See [`super::Micro`].
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) unsafe fn micro_k<const G: usize, const MIN: bool>(
        nb: usize,
        c: *const u8,
        _gs: usize,
        p: [*const u8; TT],
        pstride: usize,
    ) -> [[f32; RW]; TT] {
        let mut acc = [vdupq_n_f32(0.0); TT];
        for b in 0..nb {
            // SAFETY: block b of the row group and of each token (caller).
            unsafe {
                let c = c.add(b * kl::BYTES);
                let y: [*const u8; TT] = core::array::from_fn(|t| p[t].add(b * pstride));
                let mut sumi = [vdupq_n_s32(0); TT];
                for g in 0..256 / G {
                    let mut s = [vdupq_n_s32(0); TT];
                    for k in 0..G / 16 {
                        let e = g * G + 16 * k;
                        let yv: [int8x16_t; TT] =
                            core::array::from_fn(|t| vld1q_s8(y[t].add(4 + e) as *const i8));
                        steps4(c.add(kl::VALS + e * RI), &yv, &mut s);
                    }
                    let sc = vld1q_s32(c.add(kl::SC + g * 4 * RI) as *const i32);
                    for t in 0..TT {
                        sumi[t] = vmlaq_s32(sumi[t], s[t], sc);
                    }
                }
                let d = vld1q_f32(c.add(kl::D) as *const f32);
                for t in 0..TT {
                    let d8 = (y[t] as *const f32).read_unaligned();
                    acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(sumi[t]), vmulq_n_f32(d, d8));
                }
                if MIN {
                    let dm = vld1q_f32(c.add(kl::DMIN) as *const f32);
                    for t in 0..TT {
                        let bs = y[t].add(260) as *const i16;
                        let mut m = vdupq_n_s32(0);
                        for j in 0..8 {
                            let s2 = bs.add(2 * j).read_unaligned() as i32
                                + bs.add(2 * j + 1).read_unaligned() as i32;
                            let mv = vld1q_s32(c.add(kl::MINW + j * 4 * RI) as *const i32);
                            m = vmlaq_n_s32(m, mv, s2);
                        }
                        let d8 = (y[t] as *const f32).read_unaligned();
                        acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(m), vmulq_n_f32(dm, d8));
                    }
                }
            }
        }
        let mut out = [[0f32; RW]; TT];
        for t in 0..TT {
            // SAFETY: out[t] holds 4 f32.
            unsafe { vst1q_f32(out[t].as_mut_ptr(), acc[t]) };
        }
        out
    }

    /// 32-element-block micro-kernel (activations: Q8_0 rows as they are).
    ///
    /// # Safety
    /// See [`super::Micro`].
    #[target_feature(enable = "neon,dotprod")]
    pub(crate) unsafe fn micro_b(
        nb: usize,
        c: *const u8,
        _gs: usize,
        p: [*const u8; TT],
        pstride: usize,
    ) -> [[f32; RW]; TT] {
        let mut acc = [vdupq_n_f32(0.0); TT];
        for b in 0..nb {
            // SAFETY: block b of the row group and of each token (caller).
            unsafe {
                let c = c.add(b * bl::BYTES);
                let y: [*const u8; TT] = core::array::from_fn(|t| p[t].add(b * pstride));
                let mut s = [vdupq_n_s32(0); TT];
                for k in 0..2 {
                    let yv: [int8x16_t; TT] =
                        core::array::from_fn(|t| vld1q_s8(y[t].add(2 + 16 * k) as *const i8));
                    steps4(c.add(bl::VALS + 16 * k * RI), &yv, &mut s);
                }
                let d = vld1q_f32(c.add(bl::D) as *const f32);
                for t in 0..TT {
                    let dy = crate::f16conv::neon::h2f((y[t] as *const u16).read_unaligned());
                    acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(s[t]), vmulq_n_f32(d, dy));
                }
            }
        }
        let mut out = [[0f32; RW]; TT];
        for t in 0..TT {
            // SAFETY: out[t] holds 4 f32.
            unsafe { vst1q_f32(out[t].as_mut_ptr(), acc[t]) };
        }
        out
    }
}

// ----------------------------------------------------------- entries --

/// The micro-kernel of `fmt` at `level`, if there is one.
fn micro_for(fmt: Fmt, level: Backend) -> Option<Micro> {
    #[allow(unused_macros)]
    macro_rules! pick {
        ($m:ident) => {
            Some(match fmt {
                Fmt::Q4_K | Fmt::Q5_K => $m::micro_k::<32, true> as Micro,
                Fmt::Q6_K => $m::micro_k::<16, false> as Micro,
                _ => $m::micro_b as Micro,
            })
        };
    }
    let _ = fmt;
    match level {
        #[cfg(target_arch = "x86_64")]
        Backend::Avx512 => pick!(avx512),
        #[cfg(target_arch = "x86_64")]
        Backend::Avx2 if fmt.max_abs() <= 64 => pick!(avx2),
        #[cfg(target_arch = "aarch64")]
        Backend::Dotprod => pick!(dotprod),
        _ => None,
    }
}

macro_rules! entries {
    ($($name:ident: $fmt:expr, $level:ident;)*) => {
        $(
            #[allow(dead_code, clippy::too_many_arguments)]
            fn $name(n: usize, w: &[u8], row_bytes: usize, rows: usize, a: &[u8], act_stride: usize, n_tokens: usize, out: &mut dyn FnMut(usize, usize, &[f32])) {
                // Installed by `gemm_for` only where `micro_for` has this kernel,
                // i.e. for a backend the CPU supports (`Kernels` checks that).
                let micro = match micro_for($fmt, Backend::$level) {
                    Some(m) => m,
                    None => unreachable!("gemm entry without a kernel"),
                };
                run($fmt, micro, n, w, row_bytes, rows, a, act_stride, n_tokens, out);
            }
        )*
    };
}

entries! {
    q4_0_avx2: Fmt::Q4_0, Avx2; q5_0_avx2: Fmt::Q5_0, Avx2; q8_0_avx2: Fmt::Q8_0, Avx2;
    iq4_nl_avx2: Fmt::IQ4_NL, Avx2; q4_k_avx2: Fmt::Q4_K, Avx2; q5_k_avx2: Fmt::Q5_K, Avx2;
    q6_k_avx2: Fmt::Q6_K, Avx2;
    q4_0_avx512: Fmt::Q4_0, Avx512; q5_0_avx512: Fmt::Q5_0, Avx512; q8_0_avx512: Fmt::Q8_0, Avx512;
    iq4_nl_avx512: Fmt::IQ4_NL, Avx512; q4_k_avx512: Fmt::Q4_K, Avx512; q5_k_avx512: Fmt::Q5_K, Avx512;
    q6_k_avx512: Fmt::Q6_K, Avx512;
    q4_0_dotprod: Fmt::Q4_0, Dotprod; q5_0_dotprod: Fmt::Q5_0, Dotprod; q8_0_dotprod: Fmt::Q8_0, Dotprod;
    iq4_nl_dotprod: Fmt::IQ4_NL, Dotprod; q4_k_dotprod: Fmt::Q4_K, Dotprod; q5_k_dotprod: Fmt::Q5_K, Dotprod;
    q6_k_dotprod: Fmt::Q6_K, Dotprod;
}

/// The GEMM entry of `fmt` for a table built at `level` (`None`: the prompt
/// path calls `gemv` per token).
pub(crate) fn gemm_for(fmt: Fmt, level: Backend) -> Option<GemmFn> {
    micro_for(fmt, level)?;
    let by_level: [GemmFn; 7] = match level {
        Backend::Avx2 => [
            q4_0_avx2,
            q5_0_avx2,
            q8_0_avx2,
            iq4_nl_avx2,
            q4_k_avx2,
            q5_k_avx2,
            q6_k_avx2,
        ],
        Backend::Avx512 => [
            q4_0_avx512,
            q5_0_avx512,
            q8_0_avx512,
            iq4_nl_avx512,
            q4_k_avx512,
            q5_k_avx512,
            q6_k_avx512,
        ],
        Backend::Dotprod => [
            q4_0_dotprod,
            q5_0_dotprod,
            q8_0_dotprod,
            iq4_nl_dotprod,
            q4_k_dotprod,
            q5_k_dotprod,
            q6_k_dotprod,
        ],
        _ => return None,
    };
    let i = match fmt {
        Fmt::Q4_0 => 0,
        Fmt::Q5_0 => 1,
        Fmt::Q8_0 => 2,
        Fmt::IQ4_NL => 3,
        Fmt::Q4_K => 4,
        Fmt::Q5_K => 5,
        Fmt::Q6_K => 6,
    };
    Some(by_level[i])
}

/// The GEMM for weights of type `ty` in a table built at `level`.
pub(crate) fn gemm_for_type(ty: GgmlType, level: Backend) -> Option<GemmFn> {
    let fmt = match ty {
        GgmlType::Q4_0 => Fmt::Q4_0,
        GgmlType::Q5_0 => Fmt::Q5_0,
        GgmlType::Q8_0 => Fmt::Q8_0,
        GgmlType::IQ4_NL => Fmt::IQ4_NL,
        GgmlType::Q4_K => Fmt::Q4_K,
        GgmlType::Q5_K => Fmt::Q5_K,
        GgmlType::Q6_K => Fmt::Q6_K,
        _ => return None,
    };
    gemm_for(fmt, level)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::Kernels;
    use crate::matmul::fill_random_weights;
    use crate::testutil::{backends, Rng, SIMD_REL_BUDGET};

    /// Runs `gemm` into a `[n_tokens][rows]` matrix, checking that every
    /// result is delivered exactly once.
    #[allow(clippy::too_many_arguments)]
    fn collect(
        gemm: GemmFn,
        n: usize,
        w: &[u8],
        rb: usize,
        rows: usize,
        a: &[u8],
        arb: usize,
        nt: usize,
    ) -> Vec<f32> {
        let mut out = vec![f32::NAN; rows * nt];
        let mut seen = vec![0u8; rows * nt];
        gemm(n, w, rb, rows, a, arb, nt, &mut |t, r, v| {
            out[t * rows + r..t * rows + r + v.len()].copy_from_slice(v);
            for s in &mut seen[t * rows + r..t * rows + r + v.len()] {
                *s += 1;
            }
        });
        assert!(
            seen.iter().all(|&s| s == 1),
            "results delivered once each: {seen:?}"
        );
        out
    }

    /// Every GEMM equals its format's `vec_dot` for every (row, token), on
    /// every backend that has one: odd row and token counts (partial row
    /// groups and token quads), several block counts.
    #[test]
    fn gemm_matches_vec_dot() {
        let fmts = [
            Fmt::Q4_0,
            Fmt::Q5_0,
            Fmt::Q8_0,
            Fmt::IQ4_NL,
            Fmt::Q4_K,
            Fmt::Q5_K,
            Fmt::Q6_K,
        ];
        let mut tested = 0;
        for b in backends() {
            let k = Kernels::for_backend(b).unwrap();
            for &fmt in &fmts {
                let Some(fk) = k.format(fmt.ty()).copied() else {
                    continue;
                };
                let Some(gemm) = k.gemm(fmt.ty()) else {
                    continue;
                };
                let ak = k.act(fk.act).unwrap();
                for (nblk, rows, nt) in [
                    (1usize, 3usize, 1usize),
                    (2, 9, 5),
                    (3, 17, 7),
                    (5, 8, 4),
                    (1, 77, 6),
                ] {
                    let n = nblk * fmt.ty().block_elems().max(32);
                    let n = if fmt.is_k() {
                        n.next_multiple_of(256)
                    } else {
                        n
                    };
                    let rb = fmt.ty().row_bytes(n).unwrap();
                    let mut wdata = vec![0u8; rows * rb];
                    assert!(fill_random_weights(fmt.ty(), 7 + rows as u64, &mut wdata));
                    let mut rng = Rng::new(nt as u64);
                    let x = rng.normals(nt * n, 1.0);
                    let arb = fk.act.row_bytes(n).unwrap();
                    let mut xq = vec![0u8; nt * arb];
                    for (src, dst) in x.chunks_exact(n).zip(xq.chunks_exact_mut(arb)) {
                        (ak.quantize_row)(src, dst);
                    }
                    let out = collect(gemm, n, &wdata, rb, rows, &xq, arb, nt);
                    let mut deq = vec![0f32; n];
                    for r in 0..rows {
                        let row = &wdata[r * rb..(r + 1) * rb];
                        (fk.dequantize_row)(row, &mut deq);
                        for t in 0..nt {
                            let want = (fk.vec_dot)(n, row, &xq[t * arb..(t + 1) * arb]) as f64;
                            let mag: f64 = deq
                                .iter()
                                .zip(&x[t * n..(t + 1) * n])
                                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                                .sum::<f64>()
                                + 1e-30;
                            let got = out[t * rows + r] as f64;
                            assert!(
                                (got - want).abs() <= SIMD_REL_BUDGET * mag,
                                "{fmt:?} on {b}: {nblk} blocks, row {r}/{rows}, token {t}/{nt}: gemm {got} vs vec_dot {want} (mag {mag})"
                            );
                        }
                    }
                    tested += 1;
                }
            }
        }
        let f = crate::dispatch::CpuFeatures::detect();
        if f.supports(Backend::Avx2) || f.supports(Backend::Dotprod) {
            assert!(tested >= 5 * 4, "only {tested} GEMM cases ran");
        }
    }

    /// Extreme weights and activations: the integer sums stay exact.
    #[test]
    fn gemm_stress_extremes() {
        for b in backends() {
            let k = Kernels::for_backend(b).unwrap();
            for fk in k.formats().copied().collect::<Vec<_>>() {
                let Some(gemm) = k.gemm(fk.weight) else {
                    continue;
                };
                let ty = fk.weight;
                let n = 512;
                let rb = ty.row_bytes(n).unwrap();
                let rows = 5;
                // All quant bytes 0xFF (maximal codes), scales as filled.
                let mut w = vec![0u8; rows * rb];
                assert!(fill_random_weights(ty, 3, &mut w));
                // The f16 scale fields keep their (small, valid) random values.
                let scale_offsets = |_: &mut [u8]| -> Vec<usize> {
                    match ty {
                        GgmlType::Q4_K | GgmlType::Q5_K => (0..4).collect(),
                        GgmlType::Q6_K => (208..210).collect(),
                        _ => (0..2).collect(),
                    }
                };
                for blk in w.chunks_exact_mut(ty.block_bytes()) {
                    let keep = scale_offsets(blk);
                    let saved: Vec<u8> = keep.iter().map(|&o| blk[o]).collect();
                    blk.fill(0xFF);
                    if ty == GgmlType::Q8_0 {
                        blk[2..].fill(0x80); // −128
                    }
                    for (&o, &v) in keep.iter().zip(&saved) {
                        blk[o] = v;
                    }
                }
                let arb = fk.act.row_bytes(n).unwrap();
                let nt = 3;
                let mut xq = vec![0u8; nt * arb];
                let ak = k.act(fk.act).unwrap();
                for (t, dst) in xq.chunks_exact_mut(arb).enumerate() {
                    let x: Vec<f32> = (0..n)
                        .map(|i| if (i + t) % 3 == 0 { -1.0 } else { 1.0 })
                        .collect();
                    (ak.quantize_row)(&x, dst);
                }
                let out = collect(gemm, n, &w, rb, rows, &xq, arb, nt);
                for r in 0..rows {
                    for t in 0..nt {
                        let want =
                            (fk.vec_dot)(n, &w[r * rb..(r + 1) * rb], &xq[t * arb..(t + 1) * arb]);
                        let got = out[t * rows + r];
                        assert!(
                            (got - want).abs() <= 1e-5 * want.abs().max(1e-3),
                            "{ty} on {b}, row {r} token {t}: {got} vs {want}"
                        );
                    }
                }
            }
        }
    }
}
