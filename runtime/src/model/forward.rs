//! The forward pass: one transformer block shared by every architecture (the
//! switches are in [`super::arch`]), run over a batch of tokens with matrix
//! products (prompt) or over one token with fused matrix-vector products
//! (decode). See `arch.rs` for the graph.

use super::attention::Attn;
use super::shared::SharedMut;
use super::weights::{Layer, Mat};
use super::{FfnAct, Logits, Model, ModelError, State};
use pistil_kernels::dispatch::GemvFn;
use pistil_kernels::matmul::{self, QMatrix, ROW_ALIGN};
use pistil_kernels::ops::{self, rms_norm, rms_norm_inplace};
use pistil_kernels::pool::split_range;

/// One matrix of a group multiplied by the same input.
struct Job<'a, 'b> {
    w: QMatrix<'a>,
    gemv: GemvFn,
    x: &'a [u8],
    y: SharedMut<'b, f32>,
}

impl Model {
    /// Runs `tokens` (appended at position [`State::n_past`]) through the
    /// model, in batches of up to [`State::n_batch`], and returns the logits
    /// asked for: `[n_vocab]` for [`Logits::Last`], `[tokens.len()][n_vocab]`
    /// for [`Logits::All`], empty for [`Logits::None`].
    ///
    /// Errors, before anything is processed: no tokens, an id outside the
    /// vocabulary, a context overflow ([`ModelError::ContextFull`]), more
    /// logits rows than the state holds, or a state of another model.
    pub fn forward<'s>(
        &self,
        st: &'s mut State,
        tokens: &[u32],
        logits: Logits,
    ) -> Result<&'s [f32], ModelError> {
        self.check_input(st, tokens)?;
        if logits == Logits::All && tokens.len() > st.logits_rows {
            return Err(ModelError::LogitsCapacity {
                requested: tokens.len(),
                capacity: st.logits_rows,
            });
        }
        st.n_logits = 0;
        let nb = st.n_batch;
        let n_chunks = tokens.len().div_ceil(nb);
        for (ci, chunk) in tokens.chunks(nb).enumerate() {
            self.chunk(st, chunk)?;
            match logits {
                Logits::All => self.output(st, 0..chunk.len(), ci * nb)?,
                Logits::Last if ci + 1 == n_chunks => {
                    self.output(st, chunk.len() - 1..chunk.len(), 0)?
                }
                _ => {}
            }
        }
        st.n_logits = match logits {
            Logits::All => tokens.len(),
            Logits::Last => 1,
            Logits::None => 0,
        };
        Ok(st.logits())
    }

    /// Like [`Model::forward`], handing the logits of every token from index
    /// `from` on to `sink(index, logits)` as they are computed, so a long input
    /// needs only [`StateOptions::logits_rows`](super::StateOptions) rows of
    /// logits memory (perplexity, teacher-forced scoring).
    pub fn forward_each(
        &self,
        st: &mut State,
        tokens: &[u32],
        from: usize,
        sink: &mut dyn FnMut(usize, &[f32]),
    ) -> Result<(), ModelError> {
        self.check_input(st, tokens)?;
        st.n_logits = 0;
        let nb = st.n_batch;
        let v = self.config.n_vocab;
        for (ci, chunk) in tokens.chunks(nb).enumerate() {
            self.chunk(st, chunk)?;
            let first = from.saturating_sub(ci * nb).min(chunk.len());
            let mut r = first;
            while r < chunk.len() {
                let m = (chunk.len() - r).min(st.logits_rows);
                self.output(st, r..r + m, 0)?;
                for i in 0..m {
                    sink(ci * nb + r + i, &st.logits[i * v..(i + 1) * v]);
                }
                r += m;
            }
        }
        Ok(())
    }

    fn check_input(&self, st: &State, tokens: &[u32]) -> Result<(), ModelError> {
        if st.model_id != self.id {
            return Err(ModelError::StateMismatch);
        }
        if tokens.is_empty() {
            return Err(ModelError::NoTokens);
        }
        let needed = st.tokens.len() + tokens.len();
        if needed > st.n_ctx {
            return Err(ModelError::ContextFull {
                n_ctx: st.n_ctx,
                needed,
            });
        }
        let n_vocab = self.config.n_vocab;
        if let Some(&id) = tokens.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(ModelError::InvalidToken { id, n_vocab });
        }
        Ok(())
    }

    /// Processes one batch (`tokens.len() <= n_batch`): leaves the final hidden
    /// states in `st.x` and appends the tokens to the cache.
    fn chunk(&self, st: &mut State, tokens: &[u32]) -> Result<(), ModelError> {
        let c = &self.config;
        let (n, e) = (tokens.len(), c.n_embd);
        let pos0 = st.tokens.len();
        let file = self.gguf.bytes();

        // x[t] = embd[token t] (· √n_embd).
        let emb = &self.w.tok_embd;
        for (&id, x) in tokens.iter().zip(st.x.chunks_exact_mut(e)) {
            (emb.fk.dequantize_row)(emb.row(file, id as usize), x);
            if let Some(s) = c.embd_scale {
                ops::scale(x, s);
            }
        }
        // cos/sin of every position of the batch, per RoPE kind.
        for kind in &mut st.rope {
            for (t, cache) in kind.iter_mut().take(n).enumerate() {
                cache.set_position((pos0 + t) as i32);
            }
        }
        for (il, l) in self.w.layers.iter().enumerate() {
            self.attention_block(st, il, l, n, pos0)?;
            self.ffn_block(st, l, n)?;
        }
        st.tokens.extend_from_slice(tokens);
        Ok(())
    }

    /// `x += post_norm(Wo · attention(rope(norm(Wq,k,v · norm(x)))))`.
    fn attention_block(
        &self,
        st: &mut State,
        il: usize,
        l: &Layer,
        n: usize,
        pos0: usize,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let (e, eps) = (c.n_embd, c.rms_eps);
        let (qd, kd, vd) = (c.q_dim(), c.k_dim(), c.v_dim());
        let (dk, dv) = (c.head_dim_k, c.head_dim_v);

        self.norm_rows(&st.x, &mut st.xn, n, &l.attn_norm);
        self.quantize_for(&mut st.qa, &st.xn, e, n, &[&l.wq, &l.wk, &l.wv])?;
        self.mul(
            &st.qa,
            n,
            &mut [
                (&l.wq, &mut st.q[..n * qd]),
                (&l.wk, &mut st.k[..n * kd]),
                (&l.wv, &mut st.v[..n * vd]),
            ],
        )?;
        for (b, y, w) in [
            (&l.bq, &mut st.q, qd),
            (&l.bk, &mut st.k, kd),
            (&l.bv, &mut st.v, vd),
        ] {
            if let Some(b) = b {
                for row in y.chunks_exact_mut(w).take(n) {
                    ops::add(row, b);
                }
            }
        }

        let kind = usize::from(l.swa && st.rope.len() > 1);
        let q_scale = c.scale_q.then_some(c.attn_scale);
        for t in 0..n {
            let rope = &st.rope[kind][t];
            for head in st.q[t * qd..(t + 1) * qd].chunks_exact_mut(dk) {
                if let Some(w) = &l.q_norm {
                    rms_norm_inplace(head, w, eps);
                }
                rope.apply(head);
                if let Some(s) = q_scale {
                    ops::scale(head, s);
                }
            }
            for head in st.k[t * kd..(t + 1) * kd].chunks_exact_mut(dk) {
                if let Some(w) = &l.k_norm {
                    rms_norm_inplace(head, w, eps);
                }
                rope.apply(head);
            }
            st.kv.store(
                self.kernels,
                il,
                pos0 + t,
                &st.k[t * kd..(t + 1) * kd],
                &st.v[t * vd..(t + 1) * vd],
            );
        }

        let attn = Attn {
            cfg: c,
            ops: self.ops,
            kernels: self.kernels,
            layer: st.kv.layers.get(il).ok_or(ModelError::StateMismatch)?,
            window: if l.swa { c.sliding_window } else { None },
            scale: if c.scale_q { 1.0 } else { c.attn_scale },
            q: &st.q,
            n,
            pos0,
        };
        let ad = c.attn_out_dim();
        attn.run(&self.pool, &mut st.attn, &mut st.att[..n * ad])?;
        debug_assert_eq!(dv * c.n_head, ad);

        self.quantize_for(&mut st.qa, &st.att, ad, n, &[&l.wo])?;
        self.mul(&st.qa, n, &mut [(&l.wo, &mut st.tmp[..n * e])])?;
        self.add_residual(&mut st.x, &mut st.tmp, n, l.post_attn_norm.as_deref());
        Ok(())
    }

    /// `x += post_norm(Wdown · (act(Wgate · h) ⊙ Wup · h))`, `h = norm(x)`.
    fn ffn_block(&self, st: &mut State, l: &Layer, n: usize) -> Result<(), ModelError> {
        let c = &self.config;
        let (e, f) = (c.n_embd, c.n_ff);
        self.norm_rows(&st.x, &mut st.xn, n, &l.ffn_norm);
        self.quantize_for(&mut st.qa, &st.xn, e, n, &[&l.gate, &l.up])?;
        self.mul(
            &st.qa,
            n,
            &mut [
                (&l.gate, &mut st.gate[..n * f]),
                (&l.up, &mut st.up[..n * f]),
            ],
        )?;
        {
            let (g, u) = (SharedMut::new(&mut st.gate[..n * f]), &st.up[..n * f]);
            let act = c.ffn_act;
            self.par_rows(n, &|r| {
                // SAFETY: rows `r` are this thread's alone.
                let g = unsafe { g.slice(r.start * f, r.len() * f) };
                let u = &u[r.start * f..r.end * f];
                match act {
                    FfnAct::Silu => self.ops.swiglu_inplace(g, u),
                    FfnAct::GeluTanh => {
                        let mut buf = [0f32; 256];
                        for (gc, uc) in g.chunks_mut(256).zip(u.chunks(256)) {
                            let b = &mut buf[..gc.len()];
                            ops::geglu(gc, uc, b);
                            gc.copy_from_slice(b);
                        }
                    }
                }
            });
        }
        self.quantize_for(&mut st.qa, &st.gate, f, n, &[&l.down])?;
        self.mul(&st.qa, n, &mut [(&l.down, &mut st.tmp[..n * e])])?;
        self.add_residual(&mut st.x, &mut st.tmp, n, l.post_ffw_norm.as_deref());
        Ok(())
    }

    /// `xn[t] = rms_norm(x[t]) · w` for the `n` rows.
    fn norm_rows(&self, x: &[f32], xn: &mut [f32], n: usize, w: &[f32]) {
        let (e, eps) = (self.config.n_embd, self.config.rms_eps);
        let xn = SharedMut::new(&mut xn[..n * e]);
        self.par_rows(n, &|r| {
            // SAFETY: rows `r` are this thread's alone.
            let xn = unsafe { xn.slice(r.start * e, r.len() * e) };
            for (x, xn) in x[r.start * e..r.end * e]
                .chunks_exact(e)
                .zip(xn.chunks_exact_mut(e))
            {
                rms_norm(x, w, eps, xn);
            }
        });
    }

    /// `x[t] += norm(a[t])` (or `+= a[t]` without a norm) for the `n` rows.
    fn add_residual(&self, x: &mut [f32], a: &mut [f32], n: usize, norm: Option<&[f32]>) {
        let (e, eps) = (self.config.n_embd, self.config.rms_eps);
        let (x, a) = (
            SharedMut::new(&mut x[..n * e]),
            SharedMut::new(&mut a[..n * e]),
        );
        self.par_rows(n, &|r| {
            // SAFETY: rows `r` of both buffers are this thread's alone.
            let (x, a) = unsafe {
                (
                    x.slice(r.start * e, r.len() * e),
                    a.slice(r.start * e, r.len() * e),
                )
            };
            for (x, a) in x.chunks_exact_mut(e).zip(a.chunks_exact_mut(e)) {
                if let Some(w) = norm {
                    rms_norm_inplace(a, w, eps);
                }
                ops::add(x, a);
            }
        });
    }

    /// Logits of the hidden states `rows` of the last batch into
    /// `st.logits[dst_row..]`: `Wout · (norm(x) · output_norm)`.
    fn output(
        &self,
        st: &mut State,
        rows: std::ops::Range<usize>,
        dst_row: usize,
    ) -> Result<(), ModelError> {
        let c = &self.config;
        let (e, v) = (c.n_embd, c.n_vocab);
        let m = rows.len();
        for (x, xn) in st.x[rows.start * e..rows.end * e]
            .chunks_exact(e)
            .zip(st.xn.chunks_exact_mut(e))
        {
            rms_norm(x, &self.w.output_norm, c.rms_eps, xn);
        }
        self.quantize_for(&mut st.qa, &st.xn, e, m, &[&self.w.output])?;
        let y = st.logits.get_mut(dst_row * v..(dst_row + m) * v).ok_or(
            ModelError::LogitsCapacity {
                requested: dst_row + m,
                capacity: st.logits_rows,
            },
        )?;
        self.mul(&st.qa, m, &mut [(&self.w.output, &mut *y)])?;
        if let Some(cap) = c.final_logit_softcap {
            for z in y.iter_mut() {
                *z = (*z / cap).tanh() * cap;
            }
        }
        Ok(())
    }

    /// Quantizes `n` rows of `cols` values of `x` to the activation type of
    /// each of `mats`, once per distinct type.
    fn quantize_for(
        &self,
        qa: &mut [Vec<u8>],
        x: &[f32],
        cols: usize,
        n: usize,
        mats: &[&Mat],
    ) -> Result<(), ModelError> {
        for (i, m) in mats.iter().enumerate() {
            if mats[..i].iter().any(|p| p.slot == m.slot) {
                continue;
            }
            let act = self.w.acts[m.slot];
            let rb = act.row_bytes(cols).unwrap_or(0);
            let buf = qa
                .get_mut(m.slot)
                .and_then(|b| b.get_mut(..n * rb))
                .ok_or(ModelError::StateMismatch)?;
            let x = x.get(..n * cols).ok_or(ModelError::StateMismatch)?;
            let out = SharedMut::new(buf);
            let err = std::sync::Mutex::new(None);
            self.par_rows(n, &|r| {
                // SAFETY: each thread takes its own rows `r` (par_rows' ranges are disjoint).
                let o = unsafe { out.slice(r.start * rb, r.len() * rb) };
                let xs = &x[r.start * cols..r.end * cols];
                if let Err(e) = matmul::quantize_act(self.kernels, act, cols, xs, o) {
                    if let Ok(mut slot) = err.lock() {
                        slot.get_or_insert(e);
                    }
                }
            });
            if let Some(e) = err.into_inner().ok().flatten() {
                return Err(e.into());
            }
        }
        Ok(())
    }

    /// Runs `f` over contiguous, disjoint ranges of the rows `0..n`, one per
    /// thread of the pool (inline when `n < 2`): the row-wise work of a batch
    /// (norms, gates, activation quantization) between its matrix products.
    fn par_rows(&self, n: usize, f: &(dyn Fn(std::ops::Range<usize>) + Sync)) {
        if n < 2 || self.pool.n_threads() == 1 {
            f(0..n);
            return;
        }
        self.pool.run(&|ith, nth| {
            let (a, b) = split_range(n, ith, nth, 1);
            if a < b {
                f(a..b);
            }
        });
    }

    /// `y = W · x` for each `(W, y)` of a group sharing one (quantized) input:
    /// one fused, row-split pool job for a single token; tiled matrix products
    /// for a batch.
    fn mul(
        &self,
        qa: &[Vec<u8>],
        n: usize,
        group: &mut [(&Mat, &mut [f32])],
    ) -> Result<(), ModelError> {
        let file = self.gguf.bytes();
        if n > 1 {
            for (m, y) in group.iter_mut() {
                let arb = self.w.acts[m.slot].row_bytes(m.cols).unwrap_or(0);
                let x = qa
                    .get(m.slot)
                    .and_then(|b| b.get(..n * arb))
                    .unwrap_or_default();
                matmul::matmul_with(
                    &self.pool,
                    self.kernels,
                    &m.view(file),
                    x,
                    n,
                    y,
                    self.gemm_min_tokens,
                )?;
            }
            return Ok(());
        }
        let mut jobs: [Option<Job<'_, '_>>; 3] = [None, None, None];
        if group.len() > jobs.len() {
            return Err(ModelError::Options(format!(
                "{} matrices in one group",
                group.len()
            )));
        }
        for ((m, y), slot) in group.iter_mut().zip(jobs.iter_mut()) {
            let arb = self.w.acts[m.slot].row_bytes(m.cols).unwrap_or(0);
            let x = qa
                .get(m.slot)
                .and_then(|b| b.get(..arb))
                .unwrap_or_default();
            if x.len() != arb || y.len() != m.rows || m.view(file).data.len() != m.len {
                return Err(ModelError::StateMismatch);
            }
            *slot = Some(Job {
                w: m.view(file),
                gemv: m.fk.gemv,
                x,
                y: SharedMut::new(y),
            });
        }
        self.pool.run(&|ith, nth| {
            for j in jobs.iter().flatten() {
                let (r0, r1) = split_range(j.w.rows, ith, nth, ROW_ALIGN);
                if r0 < r1 {
                    let rb = j.w.row_bytes;
                    // SAFETY: split_range gives each thread a disjoint row range of
                    // this job's output (y.len() == rows was checked above).
                    let ys = unsafe { j.y.slice(r0, r1 - r0) };
                    (j.gemv)(j.w.cols, &j.w.data[r0 * rb..r1 * rb], rb, j.x, ys);
                }
            }
        });
        Ok(())
    }
}
