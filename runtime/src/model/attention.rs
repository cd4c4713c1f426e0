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
use half::f16;
use pistil_kernels::ops::softmax::softmax_with;
use pistil_kernels::ops::Ops;
use pistil_kernels::pool::ThreadPool;
use pistil_kernels::{GgmlType, Kernels};

/// One thread's attention scratch.
pub(crate) struct Scratch {
    /// `[n_ctx + 32]`: scores, then probabilities, of one (token, head), by
    /// position from a 16-aligned start.
    scores: Vec<f32>,
    /// `[head_dim_k]`: the query rounded to f16 (F16 cache).
    q16: Vec<f32>,
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
        ((n_ctx + 32 + c.head_dim_k + c.head_dim_v) * 4 + q8) as u64
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
        let krow = |pos: usize| (kvh * cap + slot(pos)) * dk;

        // Scores K·q.
        match &self.layer.k {
            KvBuf::F32(kb) => {
                for (j, sc) in vis.iter_mut().enumerate() {
                    let r = krow(lo + j);
                    *sc = fdot::dot_vecdot(q, &kb[r..r + dk]);
                }
            }
            KvBuf::F16(kb) => {
                for (r, &x) in s.q16.iter_mut().zip(q) {
                    *r = f16::from_f32(x).to_f32();
                }
                for (j, sc) in vis.iter_mut().enumerate() {
                    let r = krow(lo + j);
                    *sc = fdot::dot_vecdot_f16(&s.q16, &kb[r..r + dk]);
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
                for x in probs.iter_mut() {
                    *x = f16::from_f32(*x).to_f32();
                }
                for (d, o) in out.iter_mut().enumerate() {
                    let row = &vb[(kvh * dv + d) * cap..(kvh * dv + d + 1) * cap];
                    let mut lanes = [0f32; 16];
                    fdot::dot_lanes_f16(&probs[..n1], &row[s0..s0 + n1], lo, &mut lanes);
                    fdot::dot_lanes_f16(
                        &probs[n1..],
                        &row[..probs.len() - n1],
                        lo + n1,
                        &mut lanes,
                    );
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
