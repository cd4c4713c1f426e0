//! Matrix drivers: the weight matrix times one activation row (decode) or many
//! (prompt processing), split across the [`ThreadPool`].
//!
//! A weight matrix is `rows` rows of `cols` elements in a block format, stored
//! row after row as in a GGUF file (`W[rows][cols]`, ggml's `ne0 = cols`,
//! `ne1 = rows`). The activations are first quantized to the format's
//! activation type ([`FormatKernels::act`], ggml's `vec_dot_type`) with
//! [`quantize_act`]; then
//!
//! - [`matvec`]: `y[r] = W[r] · x` for one token — the decode path, bound by
//!   memory bandwidth: threads stream chunks of contiguous rows through the
//!   format's multi-row `gemv` kernel;
//! - [`matmul`]: `Y[t][r] = W[r] · X[t]` for `n_tokens` tokens — the prompt
//!   path: each thread walks its chunks of rows in small row blocks that stay in
//!   L1/L2 while a tile of token activations (kept in L2) is applied to them,
//!   so the weights are read from memory once per token tile, not once per token.
//!
//! Nothing here allocates: the caller owns every buffer.

use crate::dispatch::{FormatKernels, GemmFn, Kernels};
use crate::pool::ThreadPool;
use crate::types::GgmlType;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Output rows per thread boundary: 16 f32 = one 64-byte cache line of `y`
/// (no two threads write the same line) and a multiple of every `gemv`
/// kernel's row group (1, 2, 4 or 8 rows).
pub const ROW_ALIGN: usize = 16;

/// Row chunks per thread: threads take chunks from a shared counter, so a
/// thread slowed down (another process on its core, a little core) is
/// covered by the others instead of holding everyone up.
const CHUNKS_PER_THREAD: usize = 4;

/// Chunk size in rows: about `CHUNKS_PER_THREAD` chunks per thread, a
/// multiple of [`ROW_ALIGN`].
fn chunk_rows(rows: usize, nth: usize) -> usize {
    rows.div_ceil(nth * CHUNKS_PER_THREAD)
        .next_multiple_of(ROW_ALIGN)
        .max(ROW_ALIGN)
}

/// Calls `f(r0, r1)` for every row chunk this thread claims from the shared
/// counter `next` (which starts at 0): whichever threads are running take all
/// the work, and a thread that starts late finds little or nothing left.
#[inline]
fn for_each_chunk(rows: usize, chunk: usize, next: &AtomicUsize, mut f: impl FnMut(usize, usize)) {
    loop {
        let r0 = next.fetch_add(1, Ordering::Relaxed) * chunk;
        if r0 >= rows {
            return;
        }
        f(r0, (r0 + chunk).min(rows));
    }
}

/// Rows of a weight block in [`matmul`]: with a 4096-wide Q4_K row (2304 bytes)
/// 16 rows are 36 KiB, an L1-to-L2-sized block reused by every token of a tile.
const MATMUL_ROW_BLOCK: usize = 16;

/// Bytes of activations per token tile in [`matmul`]: small enough to stay in
/// a Pi's L2 (512 KiB on the A76, shared 512 KiB–1 MiB on the A53/A72) next to
/// the weight block.
const MATMUL_ACT_TILE_BYTES: usize = 192 * 1024;

/// A matrix shape or buffer that does not fit the kernels.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MatError {
    #[error("no kernel for weight type {0} (pistil cannot compute with it)")]
    UnsupportedType(GgmlType),
    #[error("no quantizer for activation type {act} (needed by weight type {weight})")]
    UnsupportedAct { weight: GgmlType, act: GgmlType },
    #[error("{0} is not an activation type pistil can quantize to")]
    NoQuantizer(GgmlType),
    #[error("{ty} matrix: {cols} columns is not a whole number of {block}-element blocks")]
    ColsNotBlocks {
        ty: GgmlType,
        cols: usize,
        block: usize,
    },
    #[error("{ty} matrix {rows}x{cols}: expected {expected} bytes of data, got {got}")]
    DataLength {
        ty: GgmlType,
        rows: usize,
        cols: usize,
        expected: usize,
        got: usize,
    },
    #[error("{what}: expected {expected} elements/bytes, got {got}")]
    BufferLength {
        what: &'static str,
        expected: usize,
        got: usize,
    },
    #[error("size overflow for a {ty} matrix of {rows}x{cols}")]
    Overflow {
        ty: GgmlType,
        rows: usize,
        cols: usize,
    },
}

/// A borrowed quantized weight matrix `W[rows][cols]`, checked against the
/// kernel table when built.
#[derive(Clone, Copy, Debug)]
pub struct QMatrix<'a> {
    /// Weight type (block format).
    pub ty: GgmlType,
    /// Output dimension (ggml `ne1`).
    pub rows: usize,
    /// Input dimension (ggml `ne0`), a whole number of blocks.
    pub cols: usize,
    /// Bytes per row: `cols / block_elems * block_bytes`.
    pub row_bytes: usize,
    /// `rows * row_bytes` bytes, row after row.
    pub data: &'a [u8],
}

impl<'a> QMatrix<'a> {
    /// Checks that `kernels` can compute with `ty` (and quantize its activation
    /// type), that `cols` is a whole number of blocks, and that `data` holds
    /// exactly `rows` rows.
    pub fn new(
        kernels: &Kernels,
        ty: GgmlType,
        rows: usize,
        cols: usize,
        data: &'a [u8],
    ) -> Result<QMatrix<'a>, MatError> {
        format_and_act(kernels, ty)?;
        let row_bytes = ty
            .row_bytes(cols)
            .ok_or(if !cols.is_multiple_of(ty.block_elems()) {
                MatError::ColsNotBlocks {
                    ty,
                    cols,
                    block: ty.block_elems(),
                }
            } else {
                MatError::Overflow { ty, rows, cols }
            })?;
        let expected = rows
            .checked_mul(row_bytes)
            .ok_or(MatError::Overflow { ty, rows, cols })?;
        if data.len() != expected {
            return Err(MatError::DataLength {
                ty,
                rows,
                cols,
                expected,
                got: data.len(),
            });
        }
        Ok(QMatrix {
            ty,
            rows,
            cols,
            row_bytes,
            data,
        })
    }

    /// Bytes of one activation row this matrix multiplies (its format's
    /// activation type, `cols` elements).
    pub fn act_row_bytes(&self, kernels: &Kernels) -> Result<usize, MatError> {
        act_row_bytes(kernels, self.ty, self.cols)
    }
}

fn format_and_act(kernels: &Kernels, ty: GgmlType) -> Result<&FormatKernels, MatError> {
    let fk = kernels.format(ty).ok_or(MatError::UnsupportedType(ty))?;
    if kernels.act(fk.act).is_none() {
        return Err(MatError::UnsupportedAct {
            weight: ty,
            act: fk.act,
        });
    }
    Ok(fk)
}

/// The activation type weights of type `weight_ty` multiply (ggml's `vec_dot_type`).
pub fn act_type(kernels: &Kernels, weight_ty: GgmlType) -> Result<GgmlType, MatError> {
    Ok(format_and_act(kernels, weight_ty)?.act)
}

/// Bytes of one quantized activation row of `cols` elements for weights of
/// type `weight_ty`.
pub fn act_row_bytes(
    kernels: &Kernels,
    weight_ty: GgmlType,
    cols: usize,
) -> Result<usize, MatError> {
    let act = act_type(kernels, weight_ty)?;
    act.row_bytes(cols).ok_or(MatError::ColsNotBlocks {
        ty: act,
        cols,
        block: act.block_elems(),
    })
}

/// Bytes of `n_tokens` quantized activation rows (the buffer [`matmul`] takes).
pub fn act_bytes(
    kernels: &Kernels,
    weight_ty: GgmlType,
    cols: usize,
    n_tokens: usize,
) -> Result<usize, MatError> {
    act_row_bytes(kernels, weight_ty, cols)?
        .checked_mul(n_tokens)
        .ok_or(MatError::Overflow {
            ty: weight_ty,
            rows: n_tokens,
            cols,
        })
}

/// Quantizes rows of `cols` f32 values (`x[n][cols]`) to activation type
/// `act_ty`, row after row, into `out[n][act_ty.row_bytes(cols)]`.
pub fn quantize_act(
    kernels: &Kernels,
    act_ty: GgmlType,
    cols: usize,
    x: &[f32],
    out: &mut [u8],
) -> Result<(), MatError> {
    let ak = kernels.act(act_ty).ok_or(MatError::NoQuantizer(act_ty))?;
    let rb = act_ty.row_bytes(cols).ok_or(MatError::ColsNotBlocks {
        ty: act_ty,
        cols,
        block: act_ty.block_elems(),
    })?;
    if cols == 0 || !x.len().is_multiple_of(cols) {
        return Err(MatError::BufferLength {
            what: "quantize_act input (a whole number of rows)",
            expected: cols,
            got: x.len(),
        });
    }
    let n = x.len() / cols;
    if out.len() != n * rb {
        return Err(MatError::BufferLength {
            what: "quantize_act output bytes",
            expected: n * rb,
            got: out.len(),
        });
    }
    for (src, dst) in x.chunks_exact(cols).zip(out.chunks_exact_mut(rb)) {
        (ak.quantize_row)(src, dst);
    }
    Ok(())
}

/// A raw pointer to the output that threads write in disjoint ranges.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: every thread writes a range of the output no other thread touches
// (see the callers), and `ThreadPool::run` returns only after all are done.
unsafe impl Send for OutPtr {}
// SAFETY: as above.
unsafe impl Sync for OutPtr {}

impl OutPtr {
    /// # Safety
    /// `start..start + len` must lie inside the buffer this pointer came from,
    /// and no other live reference may overlap it.
    #[allow(clippy::mut_from_ref)]
    unsafe fn slice(&self, start: usize, len: usize) -> &mut [f32] {
        // SAFETY: guaranteed by the caller.
        unsafe { std::slice::from_raw_parts_mut(self.0.add(start), len) }
    }
}

/// `y[r] = W[r] · x` for every row `r` (decode): `x_act` is one activation
/// row already quantized to the matrix's activation type (see [`quantize_act`]),
/// `y` has `rows` elements. Rows are split across the pool's threads in
/// chunks aligned to [`ROW_ALIGN`], about four per thread, claimed dynamically.
pub fn matvec(
    pool: &ThreadPool,
    kernels: &Kernels,
    w: &QMatrix<'_>,
    x_act: &[u8],
    y: &mut [f32],
) -> Result<(), MatError> {
    let fk = *format_and_act(kernels, w.ty)?;
    check_len(
        "matvec activation bytes",
        act_row_bytes(kernels, w.ty, w.cols)?,
        x_act.len(),
    )?;
    check_len("matvec output", w.rows, y.len())?;
    let out = OutPtr(y.as_mut_ptr());
    let (rows, cols, rb, data) = (w.rows, w.cols, w.row_bytes, w.data);
    let nth = pool.n_threads();
    let chunk = chunk_rows(rows, nth);
    let next = AtomicUsize::new(0);
    pool.run(&|_, _| {
        for_each_chunk(rows, chunk, &next, |r0, r1| {
            // SAFETY: the counter hands every chunk index to exactly one thread,
            // chunks are disjoint ranges inside 0..rows, and y.len() == rows was
            // checked above.
            let ys = unsafe { out.slice(r0, r1 - r0) };
            (fk.gemv)(cols, &data[r0 * rb..r1 * rb], rb, x_act, ys);
        });
    });
    Ok(())
}

/// `Y[t][r] = W[r] · X[t]` for `n_tokens` tokens (prompt processing):
/// `x_act` holds `n_tokens` quantized activation rows back to back, `y` is
/// `[n_tokens][rows]`.
///
/// Threads claim row chunks (as in [`matvec`]); in a chunk, for each tile of
/// tokens whose activations fit in L2, a thread walks the chunk in blocks of 16
/// rows, applying every token of the tile to a block while it sits in cache.
pub fn matmul(
    pool: &ThreadPool,
    kernels: &Kernels,
    w: &QMatrix<'_>,
    x_act: &[u8],
    n_tokens: usize,
    y: &mut [f32],
) -> Result<(), MatError> {
    matmul_with(pool, kernels, w, x_act, n_tokens, y, GEMM_MIN_TOKENS)
}

/// Fewest tokens for which [`matmul`] takes the format's GEMM: below it the
/// per-call decoding of every weight block into the GEMM's layout costs more
/// than it saves. Measured on the R1-1.5B shape, 2 threads (x86, AVX-512),
/// prompt tokens/s gemv vs GEMM: 4 tokens 36.5 vs 9.4, 16: 42.2 vs 32.8,
/// 32: 46.9 vs 55.4.
pub const GEMM_MIN_TOKENS: usize = 32;

/// [`matmul`] with the GEMM threshold given (`usize::MAX`: never the GEMM;
/// tests use 2 to put small batches through it).
pub fn matmul_with(
    pool: &ThreadPool,
    kernels: &Kernels,
    w: &QMatrix<'_>,
    x_act: &[u8],
    n_tokens: usize,
    y: &mut [f32],
    gemm_min_tokens: usize,
) -> Result<(), MatError> {
    let gemm = if n_tokens >= gemm_min_tokens.max(2) {
        kernels.gemm(w.ty)
    } else {
        None
    };
    matmul_tiled(
        pool,
        kernels,
        gemm,
        w,
        x_act,
        n_tokens,
        y,
        MATMUL_ACT_TILE_BYTES,
    )
}

/// [`matmul`] with an explicit activation tile size in bytes (tests use tiny
/// tiles to exercise the tile loop).
#[allow(clippy::too_many_arguments)]
fn matmul_tiled(
    pool: &ThreadPool,
    kernels: &Kernels,
    gemm: Option<GemmFn>,
    w: &QMatrix<'_>,
    x_act: &[u8],
    n_tokens: usize,
    y: &mut [f32],
    tile_bytes: usize,
) -> Result<(), MatError> {
    let fk = *format_and_act(kernels, w.ty)?;
    let arb = act_row_bytes(kernels, w.ty, w.cols)?;
    check_len("matmul activation bytes", arb * n_tokens, x_act.len())?;
    check_len("matmul output", w.rows * n_tokens, y.len())?;
    if n_tokens == 1 {
        return matvec(pool, kernels, w, x_act, y);
    }
    if let Some(gemm) = gemm {
        matmul_gemm(pool, gemm, w, x_act, arb, n_tokens, y);
        return Ok(());
    }
    let tile = (tile_bytes / arb.max(1)).clamp(1, n_tokens.max(1));
    let out = OutPtr(y.as_mut_ptr());
    let (rows, cols, rb, data) = (w.rows, w.cols, w.row_bytes, w.data);
    let nth = pool.n_threads();
    let chunk = chunk_rows(rows, nth);
    let next = AtomicUsize::new(0);
    pool.run(&|_, _| {
        for_each_chunk(rows, chunk, &next, |r0, r1| {
            for t0 in (0..n_tokens).step_by(tile) {
                let t1 = (t0 + tile).min(n_tokens);
                for b0 in (r0..r1).step_by(MATMUL_ROW_BLOCK) {
                    let b1 = (b0 + MATMUL_ROW_BLOCK).min(r1);
                    let wb = &data[b0 * rb..b1 * rb];
                    for t in t0..t1 {
                        // SAFETY: rows b0..b1 lie in this thread's chunk (claimed by it
                        // alone); y.len() == rows * n_tokens was checked above.
                        let ys = unsafe { out.slice(t * rows + b0, b1 - b0) };
                        (fk.gemv)(cols, wb, rb, &x_act[t * arb..(t + 1) * arb], ys);
                    }
                }
            }
        });
    });
    Ok(())
}

/// [`matmul`] through the format's GEMM: threads claim row chunks and hand
/// each whole chunk, with every token, to the GEMM, which writes its results
/// into the chunk's columns of `y`.
fn matmul_gemm(
    pool: &ThreadPool,
    gemm: GemmFn,
    w: &QMatrix<'_>,
    x_act: &[u8],
    arb: usize,
    n_tokens: usize,
    y: &mut [f32],
) {
    let out = OutPtr(y.as_mut_ptr());
    let (rows, cols, rb, data) = (w.rows, w.cols, w.row_bytes, w.data);
    let chunk = chunk_rows(rows, pool.n_threads());
    let next = AtomicUsize::new(0);
    pool.run(&|_, _| {
        for_each_chunk(rows, chunk, &next, |r0, r1| {
            let mut sink = |t: usize, r: usize, v: &[f32]| {
                assert!(
                    t < n_tokens && r + v.len() <= r1 - r0,
                    "gemm result out of range"
                );
                // SAFETY: rows r0..r1 are this thread's chunk (claimed by it alone),
                // checked just above; y.len() == rows * n_tokens (checked by the caller).
                unsafe { out.slice(t * rows + r0 + r, v.len()) }.copy_from_slice(v);
            };
            gemm(
                cols,
                &data[r0 * rb..r1 * rb],
                rb,
                r1 - r0,
                x_act,
                arb,
                n_tokens,
                &mut sink,
            );
        });
    });
}

fn check_len(what: &'static str, expected: usize, got: usize) -> Result<(), MatError> {
    if expected == got {
        Ok(())
    } else {
        Err(MatError::BufferLength {
            what,
            expected,
            got,
        })
    }
}

/// Fills `data` (whole blocks of `ty`) with pseudo-random but valid weights:
/// random quant bytes, and every f16/f32 scale field set to a finite, small
/// value, so dot products stay finite. For tests and benchmarks, where the
/// values do not matter but NaNs and infinities would. Returns `false` for a
/// type whose block layout this function does not know (nothing written).
#[doc(hidden)]
pub fn fill_random_weights(ty: GgmlType, seed: u64, data: &mut [u8]) -> bool {
    use GgmlType::*;
    // Byte offsets of the f16 scale fields inside one block (ggml-common.h).
    let f16_fields: &[usize] = match ty {
        Q4_0 | Q5_0 | Q8_0 | IQ4_NL | IQ4_XS => &[0],
        Q4_1 | Q5_1 | Q8_1 | Q4_K | Q5_K => &[0, 2],
        Q2_K => &[80, 82],
        Q3_K => &[108],
        Q6_K => &[208],
        F16 | BF16 | F32 | Q8_K => &[],
        _ => return false,
    };
    let mut s = (seed ^ 0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let unit = |r: u64| (r >> 40) as f32 / (1u64 << 24) as f32; // [0, 1)
    match ty {
        F32 => {
            for c in data.chunks_exact_mut(4) {
                c.copy_from_slice(&(unit(next()) * 2.0 - 1.0).to_le_bytes());
            }
        }
        F16 => {
            for c in data.chunks_exact_mut(2) {
                let v = half::f16::from_f32(unit(next()) * 2.0 - 1.0);
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        BF16 => {
            for c in data.chunks_exact_mut(2) {
                let v = half::bf16::from_f32(unit(next()) * 2.0 - 1.0);
                c.copy_from_slice(&v.to_le_bytes());
            }
        }
        _ => {
            for c in data.chunks_mut(8) {
                let r = next().to_le_bytes();
                c.copy_from_slice(&r[..c.len()]);
            }
            let bb = ty.block_bytes();
            for block in data.chunks_exact_mut(bb) {
                for &off in f16_fields {
                    let v = half::f16::from_f32(0.002 + 0.01 * unit(next()));
                    block[off..off + 2].copy_from_slice(&v.to_le_bytes());
                }
                if ty == Q8_K {
                    block[..4].copy_from_slice(&(0.002 + 0.01 * unit(next())).to_le_bytes());
                }
            }
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dispatch::{Backend, CpuFeatures};

    /// Budget of a matvec/matmul result against the f32 reference (weights
    /// dequantized, activations NOT quantized), relative to `Σ|wᵢ·xᵢ|`: the
    /// 8-bit activation quantization rounds each xᵢ by at most half a step,
    /// amax/254 ≤ 0.4% of the row's largest |x|; bf16 activations 0.4%.
    const ACT_QUANT_REL_BUDGET: f64 = 0.01;
    /// Budget of a matvec/matmul result against the same backend's `vec_dot`
    /// (a multi-row `gemv` may only reorder the f32 accumulation), relative to
    /// `Σ|wᵢ·xᵢ|`.
    const GEMV_VS_VEC_DOT_BUDGET: f64 = 1e-5;

    fn xorshift(seed: u64) -> impl FnMut() -> f32 {
        let mut s = seed | 1;
        move || {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
        }
    }

    fn backends() -> Vec<Backend> {
        CpuFeatures::detect().available()
    }

    /// Every format × backend × thread count, matvec and matmul, odd rows.
    #[test]
    fn matvec_and_matmul_match_reference() {
        let pools: Vec<ThreadPool> = [1, 2, 3]
            .iter()
            .map(|&n| ThreadPool::with_spin(n, 100).unwrap())
            .collect();
        for b in backends() {
            let k = Kernels::for_backend(b).unwrap();
            let formats: Vec<FormatKernels> = k.formats().copied().collect();
            for fk in formats {
                let ty = fk.weight;
                let cols = 2 * ty.block_elems().max(256); // 512 for every format
                let rows = 101; // odd, and several chunks per thread
                let n_tokens = 5;
                let mut wdata = vec![0u8; rows * ty.row_bytes(cols).unwrap()];
                assert!(fill_random_weights(ty, 7, &mut wdata), "{ty}");
                let w = QMatrix::new(&k, ty, rows, cols, &wdata).unwrap();
                // Reference: dequantized weights, unquantized activations, in f64.
                let mut wf = vec![0f32; rows * cols];
                for (r, dst) in wf.chunks_exact_mut(cols).enumerate() {
                    (fk.dequantize_row)(&wdata[r * w.row_bytes..(r + 1) * w.row_bytes], dst);
                }
                let mut rnd = xorshift(11);
                let x: Vec<f32> = (0..n_tokens * cols).map(|_| rnd()).collect();
                let arb = w.act_row_bytes(&k).unwrap();
                let mut xq = vec![0u8; n_tokens * arb];
                quantize_act(&k, fk.act, cols, &x, &mut xq).unwrap();

                for pool in &pools {
                    let mut y = vec![f32::NAN; rows * n_tokens];
                    matmul(pool, &k, &w, &xq, n_tokens, &mut y).unwrap();
                    // Tiles of 2 tokens (3 tiles) must give the same bits.
                    let mut y2 = vec![f32::NAN; rows * n_tokens];
                    // (5 tokens: below GEMM_MIN_TOKENS, so both take the gemv tiles.)
                    matmul_tiled(pool, &k, None, &w, &xq, n_tokens, &mut y2, 2 * arb).unwrap();
                    assert!(
                        y.iter().zip(&y2).all(|(a, b)| a.to_bits() == b.to_bits()),
                        "{ty} tiles"
                    );
                    let mut y1 = vec![f32::NAN; rows];
                    for t in 0..n_tokens {
                        matvec(pool, &k, &w, &xq[t * arb..(t + 1) * arb], &mut y1).unwrap();
                        for r in 0..rows {
                            let wr = &wf[r * cols..(r + 1) * cols];
                            let xt = &x[t * cols..(t + 1) * cols];
                            let exact: f64 =
                                wr.iter().zip(xt).map(|(&a, &b)| a as f64 * b as f64).sum();
                            let mag: f64 = wr
                                .iter()
                                .zip(xt)
                                .map(|(&a, &b)| (a as f64 * b as f64).abs())
                                .sum::<f64>()
                                .max(1e-30);
                            let vd = (fk.vec_dot)(
                                cols,
                                &wdata[r * w.row_bytes..(r + 1) * w.row_bytes],
                                &xq[t * arb..(t + 1) * arb],
                            ) as f64;
                            let ctx = format!(
                                "{ty} on {b}, {} threads, token {t}, row {r}",
                                pool.n_threads()
                            );
                            for (name, got) in
                                [("matvec", y1[r] as f64), ("matmul", y[t * rows + r] as f64)]
                            {
                                assert!(
                                    (got - exact).abs() <= ACT_QUANT_REL_BUDGET * mag,
                                    "{name} {ctx}: {got} vs f32 reference {exact} (mag {mag})"
                                );
                                assert!(
                                    (got - vd).abs() <= GEMV_VS_VEC_DOT_BUDGET * mag,
                                    "{name} {ctx}: {got} vs vec_dot {vd} (mag {mag})"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn bad_shapes_are_errors() {
        let k = Kernels::for_backend(Backend::Scalar).unwrap();
        let Some(fk) = k.formats().next().copied() else {
            return; // no format registered yet
        };
        let ty = fk.weight;
        let be = ty.block_elems();
        let rb = ty.row_bytes(be * 2).unwrap();
        let data = vec![0u8; rb * 3];
        if be > 1 {
            assert!(matches!(
                QMatrix::new(&k, ty, 3, be * 2 + 1, &data),
                Err(MatError::ColsNotBlocks { .. })
            ));
        }
        assert!(matches!(
            QMatrix::new(&k, ty, 4, be * 2, &data),
            Err(MatError::DataLength { .. })
        ));
        let w = QMatrix::new(&k, ty, 3, be * 2, &data).unwrap();
        let pool = ThreadPool::new(1).unwrap();
        let mut y = vec![0f32; 3];
        assert!(matches!(
            matvec(&pool, &k, &w, &[0u8; 3], &mut y),
            Err(MatError::BufferLength { .. })
        ));
        assert!(matches!(
            QMatrix::new(&k, GgmlType::IQ1_M, 1, 256, &[0u8; 56]),
            Err(MatError::UnsupportedType(GgmlType::IQ1_M))
        ));
    }
}
