//! Causal self-attention over the KV cache, computed as ggml does without
//! flash attention, one (token, head) pair at a time, pairs spread over the
//! thread pool:
//!
//! ```text
//! s[j]  = K[j] · q                      F16 cache: q rounded to f16 first (ggml converts the
//!                                       right operand to the cache type's vec_dot type);
//!                                       Q8_0 cache: q quantized to Q8_0
//! p     = softmax(s · scale)            f32, max-subtracted, f64 sum (ggml soft_max)
//! out[d] = Σ_j p[j] · V[j][d]           F16 cache: p rounded to f16; V transposed, so each
//!                                       out[d] is one dot product over positions
//! ```
//!
//! Query head `h` reads KV head `h / (n_head / n_head_kv)` (GQA). Token `t` of a
//! batch starting at position `pos0` sees positions `0..=pos0 + t`, or on a
//! sliding-window layer the last `window` of them.

use super::fdot;
use super::kv::{KvBuf, KvType, LayerKv};
use super::shared::SharedMut;
use super::{Config, ModelError};
use pistil_kernels::f16conv;
use pistil_kernels::ops::softmax::softmax_with;
use pistil_kernels::ops::Ops;
use pistil_kernels::pool::ThreadPool;
use pistil_kernels::{GgmlType, Kernels};

/// Values converted from f16 at a time (V rows of the F16 cache).
const CONV: usize = 256;

/// Rounds `x` to f16 precision in place (the conversion ggml applies to the
/// right operand of a product with an F16 cache), with the dispatched row
/// converters.
fn round_f16(x: &mut [f32]) {
    let mut b = [0u8; 2 * CONV];
    for c in x.chunks_mut(CONV) {
        let bytes = &mut b[..2 * c.len()];
        f16conv::f32_to_f16_row(c, bytes);
        f16conv::f16_to_f32_row(bytes, c);
    }
}

/// One thread's attention scratch.
pub(crate) struct Scratch {
    /// `[n_ctx + 32]`: scores, then probabilities, of one (token, head), by
    /// position from a 16-aligned start.
    scores: Vec<f32>,
    /// `[head_dim_k]`: the query rounded to f16 (F16 cache).
    q16: Vec<f32>,
    /// `[max(head_dim_k, CONV)]`: one K row, or a run of V values, converted
    /// from f16 (F16 cache).
    conv: Vec<f32>,
    /// The query as one Q8_0 row (Q8_0 cache).
    q8: Vec<u8>,
    /// `[head_dim_v]`: one dequantized V row (Q8_0 cache).
    vrow: Vec<f32>,
}

impl Scratch {
    pub(crate) fn new(c: &Config, n_ctx: usize, kv: KvType) -> Scratch {
        let q8 = if kv == KvType::Q8_0 {
            GgmlType::Q8_0.row_bytes(c.head_dim_k).unwrap_or(0)
        } else {
            0
        };
        Scratch {
            scores: vec![0.0; n_ctx + 32],
            q16: vec![0.0; c.head_dim_k],
            conv: vec![0.0; c.head_dim_k.max(CONV)],
            q8: vec![0u8; q8],
            vrow: vec![0.0; c.head_dim_v],
        }
    }

    /// Bytes of [`Scratch::new`]'s buffers.
    pub(crate) fn bytes(c: &Config, n_ctx: usize, kv: KvType) -> u64 {
        let q8 = if kv == KvType::Q8_0 {
            GgmlType::Q8_0.row_bytes(c.head_dim_k).unwrap_or(0)
        } else {
            0
        };
        ((n_ctx + 32 + c.head_dim_k + c.head_dim_k.max(CONV) + c.head_dim_v) * 4 + q8) as u64
    }
}

/// What one layer's attention reads.
pub(crate) struct Attn<'a> {
    pub cfg: &'a Config,
    pub ops: &'a Ops,
    pub kernels: &'a Kernels,
    pub layer: &'a LayerKv,
    /// Sliding window of this layer, if local.
    pub window: Option<usize>,
    /// Score scale inside the softmax (1 when Q was pre-scaled).
    pub scale: f32,
    /// `[n][q_dim]`: roped queries.
    pub q: &'a [f32],
    /// Tokens of the batch and the position of the first.
    pub n: usize,
    pub pos0: usize,
}

impl Attn<'_> {
    /// Computes `out[n][attn_out_dim]` with the pool, each thread using its own scratch.
    pub(crate) fn run(
        &self,
        pool: &ThreadPool,
        scratch: &mut [Scratch],
        out: &mut [f32],
    ) -> Result<(), ModelError> {
        let c = self.cfg;
        let n_items = self.n * c.n_head;
        if scratch.len() < pool.n_threads() || out.len() < self.n * c.attn_out_dim() {
            return Err(ModelError::StateMismatch);
        }
        let out = SharedMut::new(out);
        let scratch = SharedMut::new(scratch);
        let dv = c.head_dim_v;
        pool.run(&|ith, nth| {
            // SAFETY: thread `ith` is the only one taking scratch entry `ith`
            // (ith < nth <= scratch.len(), checked above).
            let Some(s) = (unsafe { scratch.slice(ith, 1) }).first_mut() else {
                return;
            };
            for item in (ith..n_items).step_by(nth) {
                let (t, h) = (item / c.n_head, item % c.n_head);
                // SAFETY: item (t, h) owns out[t][h*dv .. (h+1)*dv]; items are split
                // between threads without overlap (ith, ith+nth, ...).
                let o = unsafe { out.slice(t * c.attn_out_dim() + h * dv, dv) };
                self.one(t, h, s, o);
            }
        });
        Ok(())
    }

    /// Attention of token `t`, query head `h`, into `out[head_dim_v]`.
    ///
    /// Scores are laid out by absolute position from a 16-aligned start, with
    /// the positions outside the visible range masked to −∞, so the softmax
    /// sums in the same 16-element chunks as ggml's (which runs over every
    /// cache cell from 0 with a mask).
    fn one(&self, t: usize, h: usize, s: &mut Scratch, out: &mut [f32]) {
        let c = self.cfg;
        let (dk, dv) = (c.head_dim_k, c.head_dim_v);
        let cap = self.layer.cap;
        let p = self.pos0 + t;
        let lo = match self.window {
            Some(w) => (p + 1).saturating_sub(w),
            None => 0,
        };
        let a0 = lo / 16 * 16;
        let a1 = (p + 1).next_multiple_of(16);
        let kvh = h / (c.n_head / c.n_head_kv);
        let Some(q) = self
            .q
            .get(t * c.q_dim() + h * dk..t * c.q_dim() + (h + 1) * dk)
        else {
            return;
        };
        let Some(scores) = s.scores.get_mut(..a1 - a0) else {
            return;
        };
        scores.fill(f32::NEG_INFINITY);
        // Visible positions lo..=p: scores[pos - a0].
        let vis = &mut scores[lo - a0..p + 1 - a0];
        let slot = |pos: usize| pos % cap;
        let krow_at = |pos: usize| (kvh * cap + slot(pos)) * dk;

        // Scores K·q.
        match &self.layer.k {
            KvBuf::F32(kb) => {
                for (j, sc) in vis.iter_mut().enumerate() {
                    let r = krow_at(lo + j);
                    *sc = fdot::dot_vecdot(q, &kb[r..r + dk]);
                }
            }
            KvBuf::F16(kb) => {
                s.q16.copy_from_slice(q);
                round_f16(&mut s.q16);
                let krow = &mut s.conv[..dk];
                for (j, sc) in vis.iter_mut().enumerate() {
                    let r = krow_at(lo + j);
                    f16conv::f16_to_f32_row(bytemuck::cast_slice(&kb[r..r + dk]), krow);
                    *sc = fdot::dot_vecdot(&s.q16, krow);
                }
            }
            KvBuf::Q8(kb) => {
                let (Some(fk), Some(ak)) = (
                    self.kernels.format(GgmlType::Q8_0),
                    self.kernels.act(GgmlType::Q8_0),
                ) else {
                    return;
                };
                (ak.quantize_row)(q, &mut s.q8);
                let rb = s.q8.len();
                // Positions lo..=p are at most two runs of consecutive slots (a ring wraps once).
                let s0 = slot(lo);
                let n1 = vis.len().min(cap - s0);
                let base = kvh * cap;
                let (a, b) = vis.split_at_mut(n1);
                (fk.gemv)(
                    dk,
                    &kb[(base + s0) * rb..(base + s0 + n1) * rb],
                    rb,
                    &s.q8,
                    a,
                );
                if !b.is_empty() {
                    (fk.gemv)(dk, &kb[base * rb..(base + b.len()) * rb], rb, &s.q8, b);
                }
            }
        }

        softmax_with(self.ops, scores, self.scale, None);
        let probs = &mut scores[lo - a0..p + 1 - a0];

        // out = Σ p[j] V[j]: lanes by absolute position, as tinyBLAS over cells.
        let s0 = slot(lo);
        let n1 = probs.len().min(cap - s0);
        match &self.layer.v {
            KvBuf::F32(vb) => {
                for (d, o) in out.iter_mut().enumerate() {
                    let row = &vb[(kvh * dv + d) * cap..(kvh * dv + d + 1) * cap];
                    let mut lanes = [0f32; 16];
                    fdot::dot_lanes(&probs[..n1], &row[s0..s0 + n1], lo, &mut lanes);
                    fdot::dot_lanes(&probs[n1..], &row[..probs.len() - n1], lo + n1, &mut lanes);
                    *o = fdot::reduce(&lanes);
                }
            }
            KvBuf::F16(vb) => {
                // ggml converts p to the cache type (f16) for the product.
                round_f16(probs);
                for (d, o) in out.iter_mut().enumerate() {
                    let row = &vb[(kvh * dv + d) * cap..(kvh * dv + d + 1) * cap];
                    let mut lanes = [0f32; 16];
                    // Positions lo..=p: slots s0..s0+n1, then 0.. after a wrap.
                    for (seg, first, pr) in [
                        (&row[s0..s0 + n1], lo, &probs[..n1]),
                        (&row[..probs.len() - n1], lo + n1, &probs[n1..]),
                    ] {
                        for (i, (vc, pc)) in seg.chunks(CONV).zip(pr.chunks(CONV)).enumerate() {
                            let v32 = &mut s.conv[..vc.len()];
                            f16conv::f16_to_f32_row(bytemuck::cast_slice(vc), v32);
                            fdot::dot_lanes(pc, v32, first + i * CONV, &mut lanes);
                        }
                    }
                    *o = fdot::reduce(&lanes);
                }
            }
            KvBuf::Q8(vb) => {
                let Some(fk) = self.kernels.format(GgmlType::Q8_0) else {
                    return;
                };
                let rb = GgmlType::Q8_0.row_bytes(dv).unwrap_or(0);
                out.fill(0.0);
                for (j, &pj) in probs.iter().enumerate() {
                    let r = kvh * cap + slot(lo + j);
                    (fk.dequantize_row)(&vb[r * rb..(r + 1) * rb], &mut s.vrow);
                    self.ops.axpy(pj, &s.vrow, out);
                }
            }
        }
    }
}
