//! Causal self-attention over the KV cache, computed as ggml does without
//! flash attention. Work items are (block of tokens, KV head, its query heads
//! or a part of them), spread over the thread pool; within an item each K row
//! and each run of a V row is converted from f16 once and loaded once for all
//! the item's queries, every dot product keeping its own summation order
//! (see [`fdot`]):
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

/// Most tokens in one work item of a batch.
const MAX_BLOCK: usize = 4;

/// Queries handed to one multi-query dot call at most.
const TILE: usize = 16;

/// Bytes of score rows one thread may hold for a block of tokens (at least
/// one token's worth is always kept).
const SCORES_BUDGET: usize = 2 << 20;

/// Query heads per KV head.
fn group(c: &Config) -> usize {
    (c.n_head / c.n_head_kv.max(1)).max(1)
}

/// Tokens per work item for a context of `n_ctx`.
fn block_tokens(c: &Config, n_ctx: usize) -> usize {
    let row = (n_ctx + 32) * 4 * group(c);
    (SCORES_BUDGET / row.max(1)).clamp(1, MAX_BLOCK)
}

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
    /// Tokens per work item ([`block_tokens`]).
    block: usize,
    /// Length of one score row: `n_ctx + 32`.
    stride: usize,
    /// `[block · group][stride]`: scores, then probabilities, of each
    /// (token, head) of an item, by position from a 16-aligned start.
    scores: Vec<f32>,
    /// `[block · group][head_dim_k]`: the queries rounded to f16 (F16 cache).
    q16: Vec<f32>,
    /// `[max(head_dim_k, CONV)]`: one K row, or a run of V values, converted
    /// from f16 (F16 cache).
    conv: Vec<f32>,
    /// `[block · group]`: the 16 lanes of each query's `V·p` for one output value.
    lanes: Vec<[f32; 16]>,
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
        let block = block_tokens(c, n_ctx);
        let rows = block * group(c);
        Scratch {
            block,
            stride: n_ctx + 32,
            scores: vec![0.0; rows * (n_ctx + 32)],
            q16: vec![0.0; rows * c.head_dim_k],
            conv: vec![0.0; c.head_dim_k.max(CONV)],
            lanes: vec![[0.0; 16]; rows],
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
        let rows = block_tokens(c, n_ctx) * group(c);
        let floats =
            rows * (n_ctx + 32 + c.head_dim_k + 16) + c.head_dim_k.max(CONV) + c.head_dim_v;
        (floats * 4 + q8) as u64
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

/// The positions token `t` sees, and its score row's span.
#[derive(Clone, Copy)]
struct Span {
    /// Visible positions `lo..=p`.
    lo: usize,
    p: usize,
    /// Score rows hold positions `a0..a1` (16-aligned; outside `lo..=p` masked).
    a0: usize,
    a1: usize,
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
        let nth = pool.n_threads();
        if scratch.len() < nth || out.len() < self.n * c.attn_out_dim() {
            return Err(ModelError::StateMismatch);
        }
        let g = group(c);
        let block = scratch.first().map_or(1, |s| s.block).max(1);
        let n_blocks = self.n.div_ceil(block);
        // Too few items for the threads (decode): split each head group.
        let base = n_blocks * c.n_head_kv;
        let parts = if base >= nth {
            1
        } else {
            nth.div_ceil(base.max(1)).min(g)
        };
        let per = g.div_ceil(parts);
        let parts = g.div_ceil(per);
        let n_items = base * parts;
        let out = SharedMut::new(out);
        let scratch = SharedMut::new(scratch);
        pool.run(&|ith, nth| {
            // SAFETY: thread `ith` is the only one taking scratch entry `ith`
            // (ith < nth <= scratch.len(), checked above).
            let Some(s) = (unsafe { scratch.slice(ith, 1) }).first_mut() else {
                return;
            };
            for item in (ith..n_items).step_by(nth) {
                let (b, rest) = (item / (c.n_head_kv * parts), item % (c.n_head_kv * parts));
                let (kvh, part) = (rest / parts, rest % parts);
                let t0 = b * block;
                let t1 = (t0 + block).min(self.n);
                let h0 = kvh * g + part * per;
                let h1 = (h0 + per).min((kvh + 1) * g);
                // Items own disjoint (token, head) sets: each writes only
                // out[t][h*dv .. (h+1)*dv] of its own tokens and heads.
                self.block(t0..t1, h0..h1, kvh, s, &out);
            }
        });
        Ok(())
    }

    /// Attention of tokens `ts`, query heads `hs` (all of KV head `kvh`).
    ///
    /// Scores are laid out by absolute position from a 16-aligned start, with
    /// the positions outside the visible range masked to −∞, so the softmax
    /// sums in the same 16-element chunks as ggml's (which runs over every
    /// cache cell from 0 with a mask).
    fn block(
        &self,
        ts: std::ops::Range<usize>,
        hs: std::ops::Range<usize>,
        kvh: usize,
        s: &mut Scratch,
        out: &SharedMut<f32>,
    ) {
        let c = self.cfg;
        let (dk, dv) = (c.head_dim_k, c.head_dim_v);
        let cap = self.layer.cap;
        let (nt, nh) = (ts.len(), hs.len());
        if nt == 0 || nh == 0 || nt > MAX_BLOCK || nt * nh > s.lanes.len() {
            return;
        }
        let mut spans = [Span {
            lo: 0,
            p: 0,
            a0: 0,
            a1: 0,
        }; MAX_BLOCK];
        for (sp, t) in spans.iter_mut().zip(ts.clone()) {
            let p = self.pos0 + t;
            let lo = match self.window {
                Some(w) => (p + 1).saturating_sub(w),
                None => 0,
            };
            let (a0, a1) = (lo / 16 * 16, (p + 1).next_multiple_of(16));
            if a1 - a0 > s.stride {
                return;
            }
            *sp = Span { lo, p, a0, a1 };
        }
        let spans = &spans[..nt];
        let stride = s.stride;
        let Some(scores) = s.scores.get_mut(..nt * nh * stride) else {
            return;
        };
        for (row, sp) in scores
            .chunks_exact_mut(stride)
            .zip(spans.iter().flat_map(|sp| std::iter::repeat_n(sp, nh)))
        {
            row[..sp.a1 - sp.a0].fill(f32::NEG_INFINITY);
        }
        let q_at = |t: usize, h: usize| {
            let o = t * c.q_dim() + h * dk;
            self.q.get(o..o + dk).unwrap_or(&[])
        };
        let slot = |pos: usize| pos % cap;
        let krow_at = |pos: usize| (kvh * cap + slot(pos)) * dk;
        // Positions any token of the block sees.
        let (u0, u1) = (spans[0].lo, spans[nt - 1].p + 1);
        let mut dots = [0f32; TILE];
        let mut qs: [&[f32]; TILE] = [&[]; TILE];

        // Scores K·q: each K row once, for every (token, head) that sees it.
        match &self.layer.k {
            KvBuf::F32(kb) => {
                for (ti, (t, sp)) in ts.clone().zip(spans).enumerate() {
                    for hc in (0..nh).step_by(TILE) {
                        let m = (nh - hc).min(TILE);
                        for (q, h) in qs.iter_mut().zip(hs.start + hc..hs.start + hc + m) {
                            *q = q_at(t, h);
                        }
                        for pos in sp.lo..=sp.p {
                            let r = krow_at(pos);
                            fdot::dot_vecdot_multi(&kb[r..r + dk], &qs[..m], &mut dots[..m]);
                            for (hi, &d) in (hc..hc + m).zip(&dots[..m]) {
                                scores[(ti * nh + hi) * stride + pos - sp.a0] = d;
                            }
                        }
                    }
                }
            }
            KvBuf::F16(kb) => {
                let Some(q16) = s.q16.get_mut(..nt * nh * dk) else {
                    return;
                };
                for (i, row) in q16.chunks_exact_mut(dk).enumerate() {
                    row.copy_from_slice(q_at(ts.start + i / nh, hs.start + i % nh));
                    round_f16(row);
                }
                let krow = &mut s.conv[..dk];
                for pos in u0..u1 {
                    let r = krow_at(pos);
                    f16conv::f16_to_f32_row(bytemuck::cast_slice(&kb[r..r + dk]), krow);
                    // Tokens seeing `pos`: a run (lo and p grow with t).
                    let Some(ta) = spans.iter().position(|sp| sp.lo <= pos && pos <= sp.p) else {
                        continue;
                    };
                    let tb = spans[ta..]
                        .iter()
                        .position(|sp| !(sp.lo <= pos && pos <= sp.p))
                        .map_or(nt, |i| ta + i);
                    for r0 in (ta * nh..tb * nh).step_by(TILE) {
                        let m = (tb * nh - r0).min(TILE);
                        for (q, row) in qs.iter_mut().zip(q16[r0 * dk..].chunks_exact(dk)).take(m) {
                            *q = row;
                        }
                        fdot::dot_vecdot_multi(krow, &qs[..m], &mut dots[..m]);
                        for (r, &d) in (r0..r0 + m).zip(&dots[..m]) {
                            scores[r * stride + pos - spans[r / nh].a0] = d;
                        }
                    }
                }
            }
            KvBuf::Q8(kb) => {
                let (Some(fk), Some(ak)) = (
                    self.kernels.format(GgmlType::Q8_0),
                    self.kernels.act(GgmlType::Q8_0),
                ) else {
                    return;
                };
                let rb = s.q8.len();
                let base = kvh * cap;
                for (r, row) in scores.chunks_exact_mut(stride).enumerate() {
                    let sp = spans[r / nh];
                    (ak.quantize_row)(q_at(ts.start + r / nh, hs.start + r % nh), &mut s.q8);
                    let vis = &mut row[sp.lo - sp.a0..sp.p + 1 - sp.a0];
                    // Positions lo..=p are at most two runs of consecutive slots (a ring wraps once).
                    let s0 = slot(sp.lo);
                    let n1 = vis.len().min(cap - s0);
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
        }

        for (r, row) in scores.chunks_exact_mut(stride).enumerate() {
            let sp = spans[r / nh];
            softmax_with(self.ops, &mut row[..sp.a1 - sp.a0], self.scale, None);
        }
        let dst = |t: usize, h: usize| {
            // SAFETY: (t, h) belongs to this item only (see `run`), so
            // out[t][h*dv .. (h+1)*dv] is not borrowed by any other thread.
            unsafe { out.slice(t * c.attn_out_dim() + h * dv, dv) }
        };

        // Element d of every (token, head) output from its lanes.
        let store = |lanes: &[[f32; 16]], d: usize| {
            for (r, l) in lanes.iter().enumerate() {
                if let Some(o) = dst(ts.start + r / nh, hs.start + r % nh).get_mut(d) {
                    *o = fdot::reduce(l);
                }
            }
        };

        // out = Σ p[j] V[j]: lanes by absolute position, as tinyBLAS over cells.
        match &self.layer.v {
            KvBuf::F32(vb) => {
                let lanes = &mut s.lanes[..nt * nh];
                for d in 0..dv {
                    let row = &vb[(kvh * dv + d) * cap..(kvh * dv + d + 1) * cap];
                    lanes.fill([0.0; 16]);
                    for (ti, sp) in spans.iter().enumerate() {
                        let (s0, len) = (slot(sp.lo), sp.p + 1 - sp.lo);
                        let n1 = len.min(cap - s0);
                        // Positions lo..=p: slots s0..s0+n1, then 0.. after a wrap.
                        for (seg, first) in
                            [(&row[s0..s0 + n1], sp.lo), (&row[..len - n1], sp.lo + n1)]
                        {
                            let rows = ti * nh..(ti + 1) * nh;
                            add_pv(seg, first, first - sp.a0, rows, scores, stride, lanes);
                        }
                    }
                    store(lanes, d);
                }
            }
            KvBuf::F16(vb) => {
                // ggml converts p to the cache type (f16) for the product.
                for (r, row) in scores.chunks_exact_mut(stride).enumerate() {
                    let sp = spans[r / nh];
                    round_f16(&mut row[sp.lo - sp.a0..sp.p + 1 - sp.a0]);
                }
                let lanes = &mut s.lanes[..nt * nh];
                for d in 0..dv {
                    let row = &vb[(kvh * dv + d) * cap..(kvh * dv + d + 1) * cap];
                    lanes.fill([0.0; 16]);
                    // Runs of at most CONV positions in consecutive slots.
                    let mut c0 = u0;
                    while c0 < u1 {
                        let s0 = slot(c0);
                        let c1 = (c0 + CONV).min(u1).min(c0 + cap - s0);
                        let v32 = &mut s.conv[..c1 - c0];
                        f16conv::f16_to_f32_row(
                            bytemuck::cast_slice(&row[s0..s0 + (c1 - c0)]),
                            v32,
                        );
                        for (ti, sp) in spans.iter().enumerate() {
                            let (x0, x1) = (sp.lo.max(c0), (sp.p + 1).min(c1));
                            if x0 >= x1 {
                                continue;
                            }
                            let rows = ti * nh..(ti + 1) * nh;
                            let seg = &v32[x0 - c0..x1 - c0];
                            add_pv(seg, x0, x0 - sp.a0, rows, scores, stride, lanes);
                        }
                        c0 = c1;
                    }
                    store(lanes, d);
                }
            }
            KvBuf::Q8(vb) => {
                let Some(fk) = self.kernels.format(GgmlType::Q8_0) else {
                    return;
                };
                let rb = GgmlType::Q8_0.row_bytes(dv).unwrap_or(0);
                for (r, row) in scores.chunks_exact(stride).enumerate() {
                    let sp = spans[r / nh];
                    let probs = &row[sp.lo - sp.a0..sp.p + 1 - sp.a0];
                    let o = dst(ts.start + r / nh, hs.start + r % nh);
                    o.fill(0.0);
                    for (j, &pj) in probs.iter().enumerate() {
                        let r = kvh * cap + slot(sp.lo + j);
                        (fk.dequantize_row)(&vb[r * rb..(r + 1) * rb], &mut s.vrow);
                        self.ops.axpy(pj, &s.vrow, o);
                    }
                }
            }
        }
    }
}

/// `lanes[r] += Σ_j seg[j] · p_r[q0 + j]` for the score rows `rows` (`p_r` =
/// `scores[r·stride..]`), lanes by absolute position (`first + j`), up to
/// [`TILE`] rows per [`fdot::dot_lanes_multi`] call.
fn add_pv(
    seg: &[f32],
    first: usize,
    q0: usize,
    rows: std::ops::Range<usize>,
    scores: &[f32],
    stride: usize,
    lanes: &mut [[f32; 16]],
) {
    let mut qs: [&[f32]; TILE] = [&[]; TILE];
    for r0 in rows.clone().step_by(TILE) {
        let m = (rows.end - r0).min(TILE);
        for (q, r) in qs
            .iter_mut()
            .zip(scores[r0 * stride..].chunks(stride))
            .take(m)
        {
            *q = &r[q0..q0 + seg.len()];
        }
        fdot::dot_lanes_multi(seg, &qs[..m], first, &mut lanes[r0..r0 + m]);
    }
}
