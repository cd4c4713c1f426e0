//! The KV cache: per layer, the keys and values of every cached position.
//!
//! Layouts (per layer; `cap` = positions the layer keeps, see
//! [`super::Config::kv_positions`]; position `p` lives in slot `p % cap`):
//!
//! ```text
//! K: [n_head_kv][cap][head_dim_k]             one row per (head, slot)
//! V: [n_head_kv][head_dim_v][cap]             F32/F16: transposed, as ggml's V cache without
//!                                             flash attention (`V·p` is a dot product over slots)
//! V: [n_head_kv][cap][head_dim_v]             Q8_0: one row of blocks per (head, slot)
//! ```
//!
//! Full-attention layers keep `n_ctx` positions (`slot == p`); a sliding-window
//! layer keeps `plan::swa_kv_cells` (the window plus one batch, padded to 256) and reuses slots as a ring.

use half::f16;
use pistil_kernels::f16conv;
use pistil_kernels::{GgmlType, Kernels};

pub use crate::plan::KvType;

/// The GGML type of the cache elements.
pub(crate) fn ggml_type(ty: KvType) -> GgmlType {
    match ty {
        KvType::F32 => GgmlType::F32,
        KvType::F16 => GgmlType::F16,
        KvType::Q8_0 => GgmlType::Q8_0,
    }
}

/// Bytes of one cache row of `n` values, `None` if `n` is not a whole number
/// of blocks (Q8_0 needs multiples of 32).
pub(crate) fn row_bytes(ty: KvType, n: usize) -> Option<usize> {
    ggml_type(ty).row_bytes(n)
}

/// The storage of one K or V tensor of one layer.
pub(crate) enum KvBuf {
    F32(Vec<f32>),
    F16(Vec<f16>),
    /// Q8_0 blocks, as bytes.
    Q8(Vec<u8>),
}

impl KvBuf {
    /// A zeroed buffer for `n_rows` rows of `row_len` values.
    pub(crate) fn new(ty: KvType, n_rows: usize, row_len: usize) -> KvBuf {
        match ty {
            KvType::F32 => KvBuf::F32(vec![0.0; n_rows * row_len]),
            KvType::F16 => KvBuf::F16(vec![f16::ZERO; n_rows * row_len]),
            KvType::Q8_0 => KvBuf::Q8(vec![0u8; n_rows * row_bytes(ty, row_len).unwrap_or(0)]),
        }
    }

    /// Bytes this buffer holds.
    pub(crate) fn bytes(ty: KvType, n_rows: usize, row_len: usize) -> u64 {
        (n_rows as u64) * row_bytes(ty, row_len).unwrap_or(0) as u64
    }
}

/// K and V of one layer.
pub(crate) struct LayerKv {
    /// Positions kept (slots).
    pub cap: usize,
    /// The sliding window of a local layer.
    pub window: Option<usize>,
    /// `[n_head_kv][cap][head_dim_k]`.
    pub k: KvBuf,
    /// F32/F16: `[n_head_kv][head_dim_v][cap]`; Q8_0: `[n_head_kv][cap][head_dim_v]`.
    pub v: KvBuf,
}

/// The whole cache.
pub(crate) struct KvCache {
    pub ty: KvType,
    pub layers: Vec<LayerKv>,
    pub n_head_kv: usize,
    pub head_dim_k: usize,
    pub head_dim_v: usize,
}

impl KvCache {
    /// Stores token `k_row` (`[n_head_kv][head_dim_k]`) and `v_row`
    /// (`[n_head_kv][head_dim_v]`) of position `pos` in layer `il`.
    pub(crate) fn store(
        &mut self,
        kernels: &Kernels,
        il: usize,
        pos: usize,
        k_row: &[f32],
        v_row: &[f32],
    ) {
        let (hk, hv, nh) = (self.head_dim_k, self.head_dim_v, self.n_head_kv);
        let ty = self.ty;
        let Some(l) = self.layers.get_mut(il) else {
            return;
        };
        let cap = l.cap;
        let slot = pos % cap;
        let q8 = kernels.act(GgmlType::Q8_0).map(|a| a.quantize_row);
        for h in 0..nh {
            let ks = &k_row[h * hk..(h + 1) * hk];
            let row = h * cap + slot;
            match &mut l.k {
                KvBuf::F32(b) => b[row * hk..(row + 1) * hk].copy_from_slice(ks),
                KvBuf::F16(b) => f16conv::f32_to_f16_row(
                    ks,
                    bytemuck::cast_slice_mut(&mut b[row * hk..(row + 1) * hk]),
                ),
                KvBuf::Q8(b) => {
                    let rb = row_bytes(ty, hk).unwrap_or(0);
                    if let Some(q) = q8 {
                        q(ks, &mut b[row * rb..(row + 1) * rb]);
                    }
                }
            }
            let vs = &v_row[h * hv..(h + 1) * hv];
            match &mut l.v {
                KvBuf::F32(b) => {
                    for (d, &s) in vs.iter().enumerate() {
                        b[(h * hv + d) * cap + slot] = s;
                    }
                }
                KvBuf::F16(b) => {
                    for (d, &s) in vs.iter().enumerate() {
                        b[(h * hv + d) * cap + slot] = f16::from_f32(s);
                    }
                }
                KvBuf::Q8(b) => {
                    let rb = row_bytes(ty, hv).unwrap_or(0);
                    if let Some(q) = q8 {
                        q(vs, &mut b[row * rb..(row + 1) * rb]);
                    }
                }
            }
        }
    }
}
