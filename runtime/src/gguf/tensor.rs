//! Tensor infos: name, GGML type, shape, where the data is and how big.

use pistil_kernels::GgmlType;

/// One tensor as described in the file's tensor-info table, validated: its
/// type is known, its shape is representable, its rows are whole blocks and
/// its data lies inside the file, aligned and not overlapping any other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorInfo {
    /// Tensor name (`blk.0.attn_q.weight`); names are short, owning them is fine.
    pub name: String,
    /// Element type.
    pub ty: GgmlType,
    /// Shape in GGUF order: `dims[0]` is the row length (ggml's `ne0`, the
    /// contiguous dimension), `dims[1]` the number of rows, then higher dims.
    /// At most 4 entries; may be empty (a scalar) and may contain 0 (an empty
    /// tensor), as in ggml.
    pub dims: Vec<u64>,
    /// Offset of the data, relative to the data section ([`super::Gguf::data_offset`]).
    pub offset: u64,
    /// Size of the data in bytes, from shape × type.
    pub size: u64,
    /// Where this tensor's info record starts in the file (for error messages).
    pub info_offset: u64,
}

impl TensorInfo {
    /// Number of elements (product of the dims; 1 for a scalar). Validated at
    /// parse time to fit in an `i64`.
    pub fn n_elements(&self) -> u64 {
        self.dims.iter().fold(1u64, |acc, &d| acc.saturating_mul(d))
    }

    /// Elements per row (`dims[0]`, 1 for a scalar).
    pub fn row_len(&self) -> usize {
        self.dims
            .first()
            .map_or(1, |&d| usize::try_from(d).unwrap_or(usize::MAX))
    }

    /// Number of rows: the product of all dims but the first (1 for a
    /// vector or scalar).
    pub fn n_rows(&self) -> usize {
        let rows = self
            .dims
            .iter()
            .skip(1)
            .fold(1u64, |acc, &d| acc.saturating_mul(d));
        usize::try_from(rows).unwrap_or(usize::MAX)
    }

    /// Bytes of one row.
    pub fn row_bytes(&self) -> usize {
        self.ty.row_bytes(self.row_len()).unwrap_or(0)
    }

    /// The shape as ggml prints it: `[ne0, ne1, ...]`.
    pub fn shape_string(&self) -> String {
        let parts: Vec<String> = self.dims.iter().map(|d| d.to_string()).collect();
        format!("[{}]", parts.join(", "))
    }
}
