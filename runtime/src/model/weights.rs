//! The model's tensors: weight matrices stay in the mapped file (a [`Mat`] is
//! a checked byte range plus its kernels); norm weights and biases, a few
//! kilobytes per layer, are copied out as f32.
//!
//! Every tensor's shape and type is checked against the [`Config`] at load,
//! so the forward pass never meets a surprise.

use super::arch::{Arch, Need};
use super::config::Config;
use super::ModelError;
use crate::gguf::{Gguf, TensorInfo};
use pistil_kernels::matmul::QMatrix;
use pistil_kernels::{FormatKernels, GgmlType, Kernels};

/// A weight matrix `W[rows][cols]` (GGUF dims `[cols, rows]`) in the file.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Mat {
    pub ty: GgmlType,
    /// Output dimension.
    pub rows: usize,
    /// Input dimension.
    pub cols: usize,
    pub row_bytes: usize,
    /// Byte range of the data in the file (validated at load).
    pub start: usize,
    pub len: usize,
    pub fk: FormatKernels,
    /// Index of this matrix's activation type in [`Weights::acts`].
    pub slot: usize,
}

impl Mat {
    /// The matrix as the kernels' view over the file bytes.
    #[inline]
    pub(crate) fn view<'a>(&self, file: &'a [u8]) -> QMatrix<'a> {
        QMatrix {
            ty: self.ty,
            rows: self.rows,
            cols: self.cols,
            row_bytes: self.row_bytes,
            data: file
                .get(self.start..self.start.saturating_add(self.len))
                .unwrap_or_default(),
        }
    }

    /// Row `r` of the matrix (embedding lookup).
    #[inline]
    pub(crate) fn row<'a>(&self, file: &'a [u8], r: usize) -> &'a [u8] {
        let s = self.start.saturating_add(r.saturating_mul(self.row_bytes));
        file.get(s..s.saturating_add(self.row_bytes))
            .unwrap_or_default()
    }
}

/// One transformer block.
pub(crate) struct Layer {
    /// `[n_embd]`.
    pub attn_norm: Vec<f32>,
    /// `[q_dim][n_embd]`, `[k_dim][n_embd]`, `[v_dim][n_embd]`.
    pub wq: Mat,
    pub wk: Mat,
    pub wv: Mat,
    /// `[q_dim]`, `[k_dim]`, `[v_dim]` (qwen2).
    pub bq: Option<Vec<f32>>,
    pub bk: Option<Vec<f32>>,
    pub bv: Option<Vec<f32>>,
    /// `[head_dim_k]` each (qwen3, gemma3).
    pub q_norm: Option<Vec<f32>>,
    pub k_norm: Option<Vec<f32>>,
    /// `[n_embd][attn_out_dim]`.
    pub wo: Mat,
    /// `[n_embd]` (gemma3).
    pub post_attn_norm: Option<Vec<f32>>,
    /// `[n_embd]`.
    pub ffn_norm: Vec<f32>,
    /// `[n_ff][n_embd]` each.
    pub gate: Mat,
    pub up: Mat,
    /// `[n_embd][n_ff]`.
    pub down: Mat,
    /// `[n_embd]` (gemma3).
    pub post_ffw_norm: Option<Vec<f32>>,
    /// Sliding-window layer.
    pub swa: bool,
}

/// Every tensor the forward pass uses.
pub(crate) struct Weights {
    /// `[n_vocab][n_embd]`.
    pub tok_embd: Mat,
    /// `[n_vocab][n_embd]`: `output.weight`, or `tok_embd` when tied.
    pub output: Mat,
    pub tied_output: bool,
    /// `[n_embd]`.
    pub output_norm: Vec<f32>,
    /// `[n_rot/2]` (Llama 3.1 `rope_freqs.weight`).
    pub rope_freqs: Option<Vec<f32>>,
    pub layers: Vec<Layer>,
    /// The distinct activation types the matrices multiply (ggml `vec_dot_type`),
    /// each quantized once per input vector.
    pub acts: Vec<GgmlType>,
    /// Bytes of f32 copies (norms, biases) owned by the model.
    pub heap_bytes: u64,
}

struct Loader<'a> {
    g: &'a Gguf,
    k: &'a Kernels,
    arch: Arch,
    acts: Vec<GgmlType>,
    heap_bytes: u64,
}

impl<'a> Loader<'a> {
    fn info(&self, name: &str) -> Result<&'a TensorInfo, ModelError> {
        let g: &'a Gguf = self.g;
        g.tensor(name).ok_or_else(|| ModelError::MissingTensor {
            name: name.to_string(),
            arch: self.arch.name(),
        })
    }

    fn check_dims(t: &TensorInfo, want: &[usize]) -> Result<(), ModelError> {
        let ok =
            t.dims.len() == want.len() && t.dims.iter().zip(want).all(|(&d, &w)| d == w as u64);
        if ok {
            Ok(())
        } else {
            let w: Vec<String> = want.iter().map(|d| d.to_string()).collect();
            Err(ModelError::TensorShape {
                name: t.name.clone(),
                expected: format!("[{}]", w.join(", ")),
                found: t.shape_string(),
            })
        }
    }

    /// The matrix `name` with GGUF dims `[cols, rows]`, multiplied by activations.
    fn mat(&mut self, name: &str, cols: usize, rows: usize) -> Result<Mat, ModelError> {
        self.mat_with(name, cols, rows, true)
    }

    /// The matrix `name`; `multiplied`: registers its activation type (false
    /// for a table only read row by row, the untied embedding).
    fn mat_with(
        &mut self,
        name: &str,
        cols: usize,
        rows: usize,
        multiplied: bool,
    ) -> Result<Mat, ModelError> {
        let t = self.info(name)?;
        Self::check_dims(t, &[cols, rows])?;
        let unsupported = || ModelError::UnsupportedType {
            tensor: name.to_string(),
            ty: t.ty,
        };
        let fk = *self.k.format(t.ty).ok_or_else(unsupported)?;
        if self.k.act(fk.act).is_none() {
            return Err(unsupported());
        }
        let data = self.g.tensor_data(t);
        let q = QMatrix::new(self.k, t.ty, rows, cols, data).map_err(|e| ModelError::Matrix {
            tensor: name.to_string(),
            source: e,
        })?;
        // tensor_data() is exactly this range of the file, validated at parse time.
        let start = self
            .g
            .data_offset()
            .saturating_add(usize::try_from(t.offset).unwrap_or(usize::MAX));
        let slot = match self.acts.iter().position(|&a| a == fk.act) {
            Some(i) => i,
            None if !multiplied => usize::MAX,
            None => {
                self.acts.push(fk.act);
                self.acts.len() - 1
            }
        };
        Ok(Mat {
            ty: t.ty,
            rows,
            cols,
            row_bytes: q.row_bytes,
            start,
            len: data.len(),
            fk,
            slot,
        })
    }

    /// The vector `name` of `len` values, as f32.
    fn vec(&mut self, name: &str, len: usize) -> Result<Vec<f32>, ModelError> {
        let t = self.info(name)?;
        Self::check_dims(t, &[len])?;
        let data = self.g.tensor_data(t);
        let mut out = vec![0f32; len];
        match t.ty {
            GgmlType::F32 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(4)) {
                    *o = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
                }
            }
            GgmlType::F16 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                    *o = half::f16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            GgmlType::BF16 => {
                for (o, c) in out.iter_mut().zip(data.chunks_exact(2)) {
                    *o = half::bf16::from_le_bytes([c[0], c[1]]).to_f32();
                }
            }
            ty => match self.k.format(ty) {
                Some(fk) if t.row_len() == len => (fk.dequantize_row)(data, &mut out),
                _ => {
                    return Err(ModelError::UnsupportedType {
                        tensor: name.to_string(),
                        ty,
                    })
                }
            },
        }
        self.heap_bytes += (len * 4) as u64;
        Ok(out)
    }

    fn opt_vec(
        &mut self,
        name: &str,
        len: usize,
        need: Need,
    ) -> Result<Option<Vec<f32>>, ModelError> {
        match need {
            Need::Absent => Ok(None),
            Need::Optional if self.g.tensor(name).is_none() => Ok(None),
            _ => self.vec(name, len).map(Some),
        }
    }
}

impl Weights {
    /// Finds, checks and maps every tensor of `cfg`'s architecture.
    pub(crate) fn load(g: &Gguf, k: &Kernels, cfg: &Config) -> Result<Weights, ModelError> {
        let d = cfg.arch.desc();
        let mut l = Loader {
            g,
            k,
            arch: cfg.arch,
            acts: Vec::new(),
            heap_bytes: 0,
        };
        let (e, f, v) = (cfg.n_embd, cfg.n_ff, cfg.n_vocab);
        let tied_output = g.tensor("output.weight").is_none();
        let tok_embd = l.mat_with("token_embd.weight", e, v, tied_output)?;
        let output = if tied_output {
            tok_embd
        } else {
            l.mat("output.weight", e, v)?
        };
        let output_norm = l.vec("output_norm.weight", e)?;
        let rope_freqs = if d.rope_freqs {
            l.opt_vec("rope_freqs.weight", cfg.n_rot / 2, Need::Optional)?
        } else {
            None
        };
        let norm_need = if d.qk_norm {
            Need::Required
        } else {
            Need::Absent
        };
        let post_need = if d.post_norms {
            Need::Required
        } else {
            Need::Absent
        };
        let mut layers = Vec::with_capacity(cfg.n_layer);
        for il in 0..cfg.n_layer {
            let n = |s: &str| format!("blk.{il}.{s}");
            layers.push(Layer {
                attn_norm: l.vec(&n("attn_norm.weight"), e)?,
                wq: l.mat(&n("attn_q.weight"), e, cfg.q_dim())?,
                wk: l.mat(&n("attn_k.weight"), e, cfg.k_dim())?,
                wv: l.mat(&n("attn_v.weight"), e, cfg.v_dim())?,
                bq: l.opt_vec(&n("attn_q.bias"), cfg.q_dim(), d.qkv_bias)?,
                bk: l.opt_vec(&n("attn_k.bias"), cfg.k_dim(), d.qkv_bias)?,
                bv: l.opt_vec(&n("attn_v.bias"), cfg.v_dim(), d.qkv_bias)?,
                q_norm: l.opt_vec(&n("attn_q_norm.weight"), cfg.head_dim_k, norm_need)?,
                k_norm: l.opt_vec(&n("attn_k_norm.weight"), cfg.head_dim_k, norm_need)?,
                wo: l.mat(&n("attn_output.weight"), cfg.attn_out_dim(), e)?,
                post_attn_norm: l.opt_vec(&n("post_attention_norm.weight"), e, post_need)?,
                ffn_norm: l.vec(&n("ffn_norm.weight"), e)?,
                gate: l.mat(&n("ffn_gate.weight"), e, f)?,
                up: l.mat(&n("ffn_up.weight"), e, f)?,
                down: l.mat(&n("ffn_down.weight"), f, e)?,
                post_ffw_norm: l.opt_vec(&n("post_ffw_norm.weight"), e, post_need)?,
                swa: cfg.swa_layers.get(il).copied().unwrap_or(false),
            });
        }
        Ok(Weights {
            tok_embd,
            output,
            tied_output,
            output_norm,
            rope_freqs,
            layers,
            acts: l.acts,
            heap_bytes: l.heap_bytes,
        })
    }
}
