//! The parser: header, key-value pairs, tensor infos, data section layout,
//! with bounds-checked little-endian reads over a byte slice. The checks are
//! listed in the [module docs](super).

use std::borrow::Cow;
use std::collections::HashMap;
use std::ops::Range;

use pistil_kernels::types::REMOVED_TYPE_IDS;
use pistil_kernels::GgmlType;

use super::value::ValueType;
use super::{GgufError, TensorInfo};

/// `GGUF` as the first four bytes.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";
/// Alignment when `general.alignment` is absent.
pub const DEFAULT_ALIGNMENT: usize = 32;
/// Longest string accepted (gguf.cpp's `GGUF_MAX_STRING_LENGTH`, 1 GiB).
pub const MAX_STRING_LEN: u64 = 1 << 30;
/// Most elements in one array (gguf.cpp's `GGUF_MAX_ARRAY_ELEMENTS`, 2^30).
pub const MAX_ARRAY_LEN: u64 = 1 << 30;
/// Deepest array nesting accepted (an array of arrays is depth 2). gguf.cpp
/// rejects nested arrays outright; gguf-py reads them.
pub const MAX_ARRAY_DEPTH: usize = 8;
/// Most dimensions of a tensor (ggml's `GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;
/// Tensor names must be shorter than this (ggml's `GGML_MAX_NAME`).
pub const MAX_NAME_LEN: usize = 64;
/// Fewest bytes a key-value pair can take: key length (8) + one key byte +
/// value type (4) + a one-byte value.
const MIN_KV_BYTES: u64 = 8 + 1 + 4 + 1;
/// Fewest bytes a tensor info can take: name length (8) + one name byte +
/// n_dims (4) + type (4) + offset (8).
const MIN_TENSOR_INFO_BYTES: u64 = 8 + 1 + 4 + 4 + 8;

/// A stored metadata value: scalars decoded, strings and arrays as byte ranges
/// of the file (re-borrowed on access).
#[derive(Clone, Debug)]
pub(crate) enum RawValue {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    U64(u64),
    I64(i64),
    F32(f32),
    F64(f64),
    Bool(bool),
    Str(Range<usize>),
    Array {
        elem: ValueType,
        len: usize,
        data: Range<usize>,
    },
}

/// One key-value pair.
#[derive(Clone, Debug)]
pub(crate) struct Kv {
    /// The key's bytes in the file (validated UTF-8).
    pub key: Range<usize>,
    /// Where the value's type field is.
    pub value_offset: usize,
    pub value: RawValue,
}

/// Everything the parser learns about a file.
#[derive(Debug)]
pub(crate) struct Index {
    pub version: u32,
    pub alignment: usize,
    pub data_offset: usize,
    pub kvs: Vec<Kv>,
    pub key_index: HashMap<String, usize>,
    pub tensors: Vec<TensorInfo>,
    pub tensor_index: HashMap<String, usize>,
}

/// A bounds-checked little-endian reader over the file bytes.
struct Cursor<'a> {
    buf: &'a [u8],
    pos: usize,
}

/// A read past the end; turned into [`GgufError::Truncated`] with context.
struct Short {
    offset: usize,
    need: u64,
    have: usize,
}

impl Short {
    fn at(self, what: impl FnOnce() -> String) -> GgufError {
        GgufError::Truncated {
            what: what(),
            offset: self.offset as u64,
            need: self.need,
            have: self.have as u64,
        }
    }
}

impl<'a> Cursor<'a> {
    fn remaining(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }

    fn take(&mut self, n: u64) -> Result<&'a [u8], Short> {
        let short = Short {
            offset: self.pos,
            need: n,
            have: self.remaining(),
        };
        let n = usize::try_from(n).map_err(|_| Short { ..short })?;
        let end = self.pos.checked_add(n).ok_or(Short { ..short })?;
        let s = self.buf.get(self.pos..end).ok_or(short)?;
        self.pos = end;
        Ok(s)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], Short> {
        let s = self.take(N as u64)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    fn u32(&mut self) -> Result<u32, Short> {
        self.array().map(u32::from_le_bytes)
    }

    fn u64(&mut self) -> Result<u64, Short> {
        self.array().map(u64::from_le_bytes)
    }
}

/// Context of a string being read, for error messages.
fn limit(what: String, offset: usize, value: u64, limit: u64, why: &'static str) -> GgufError {
    GgufError::LimitExceeded {
        what,
        offset: offset as u64,
        value,
        limit,
        why,
    }
}

/// Reads a string's u64 length prefix and checks it against `max_len` and
/// the bytes left; the cursor is left at the string's bytes.
fn read_str_len(
    cur: &mut Cursor<'_>,
    what: &dyn Fn() -> String,
    max_len: u64,
) -> Result<u64, GgufError> {
    let at = cur.pos;
    let len = cur
        .u64()
        .map_err(|s| s.at(|| format!("length of {}", what())))?;
    if len > max_len {
        return Err(limit(
            format!("length of {}", what()),
            at,
            len,
            max_len,
            "hard cap",
        ));
    }
    let rem = cur.remaining() as u64;
    if len > rem {
        return Err(limit(
            format!("length of {}", what()),
            at,
            len,
            rem,
            "bytes left in the file",
        ));
    }
    Ok(len)
}

/// Reads a length-prefixed UTF-8 string; returns its byte range.
fn read_str(
    cur: &mut Cursor<'_>,
    what: &dyn Fn() -> String,
    max_len: u64,
) -> Result<Range<usize>, GgufError> {
    let len = read_str_len(cur, what, max_len)?;
    let start = cur.pos;
    let bytes = cur.take(len).map_err(|s| s.at(what))?;
    std::str::from_utf8(bytes).map_err(|e| GgufError::BadUtf8 {
        what: what(),
        offset: start as u64,
        bad_at: (start + e.valid_up_to()) as u64,
    })?;
    Ok(start..cur.pos)
}

/// Reads the `len` strings of a string array (a vocabulary: 100k-260k short
/// strings), checking UTF-8 a run of strings at a time rather than one by one.
///
/// Why a run can be checked in one go: while a string's length is under 128,
/// all 8 bytes of its length prefix are ASCII. An ASCII byte is never part of
/// a multi-byte UTF-8 sequence, so no sequence can span a prefix, and a run of
/// prefixes and strings is valid UTF-8 exactly when every string in it is. A
/// longer string ends the run and is checked alone. If a run fails, it is
/// walked again string by string to name the bad element.
fn read_str_array(cur: &mut Cursor<'_>, len: usize, key: &str) -> Result<(), GgufError> {
    let buf = cur.buf;
    let elem = |i: usize| move || format!("element {i} of key '{key}'");
    // Checks the run of elements `first..end` whose bytes are `bytes`.
    let check_run = |range: Range<usize>, first: usize, end: usize| -> Result<(), GgufError> {
        // simdutf8: 15-20x faster than `std::str::from_utf8` on a vocabulary.
        if simdutf8::basic::from_utf8(buf.get(range.clone()).unwrap_or_default()).is_ok() {
            return Ok(());
        }
        let mut again = Cursor {
            buf,
            pos: range.start,
        };
        for i in first..end {
            read_str(&mut again, &elem(i), MAX_STRING_LEN)?;
        }
        // Unreachable: the run was invalid, so one of its strings is.
        Err(GgufError::BadUtf8 {
            what: format!("elements {first}..{end} of key '{key}'"),
            offset: range.start as u64,
            bad_at: range.start as u64,
        })
    };
    let (mut run_start, mut run_first) = (cur.pos, 0usize);
    for i in 0..len {
        let at = cur.pos;
        let n = read_str_len(cur, &elem(i), MAX_STRING_LEN)?;
        if n < 128 {
            cur.take(n).map_err(|s| s.at(elem(i)))?;
        } else {
            check_run(run_start..at, run_first, i)?;
            let mut alone = Cursor { buf, pos: at };
            read_str(&mut alone, &elem(i), MAX_STRING_LEN)?;
            cur.pos = alone.pos;
            (run_start, run_first) = (cur.pos, i + 1);
        }
    }
    check_run(run_start..cur.pos, run_first, len)
}

/// `s` as it may appear in a one-line error message: control characters
/// escaped (a key from a hostile file could hold a newline or a terminal
/// escape), cut to 200 characters.
pub(crate) fn printable(s: &str) -> Cow<'_, str> {
    const MAX: usize = 200;
    if s.len() <= MAX && !s.chars().any(char::is_control) {
        return Cow::Borrowed(s);
    }
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i == MAX {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Parses and validates a whole file.
pub(crate) fn parse(buf: &[u8]) -> Result<Index, GgufError> {
    let mut cur = Cursor { buf, pos: 0 };

    // --- header ---
    let magic: [u8; 4] = match cur.array() {
        Ok(m) => m,
        Err(_) => {
            let mut found = [0u8; 4];
            for (d, s) in found.iter_mut().zip(buf) {
                *d = *s;
            }
            if buf.len() < 4 && buf == &GGUF_MAGIC[..buf.len()] {
                return Err(Short {
                    offset: 0,
                    need: 4,
                    have: buf.len(),
                }
                .at(|| {
                    if buf.is_empty() {
                        "magic (the file is empty)".into()
                    } else {
                        "magic".into()
                    }
                }));
            }
            return Err(GgufError::NotGguf { found });
        }
    };
    if magic != GGUF_MAGIC {
        return Err(GgufError::NotGguf { found: magic });
    }
    let version = cur.u32().map_err(|s| s.at(|| "version".into()))?;
    check_version(version)?;
    let n_tensors_at = cur.pos;
    let n_tensors = cur.u64().map_err(|s| s.at(|| "tensor count".into()))?;
    let n_kv_at = cur.pos;
    let n_kv = cur
        .u64()
        .map_err(|s| s.at(|| "metadata key-value count".into()))?;

    // Counts: each key-value pair and tensor info takes at least a few bytes,
    // so a count the rest of the file cannot hold is refused before looping.
    let rem = cur.remaining() as u64;
    let kv_cap = rem / MIN_KV_BYTES;
    if n_kv > kv_cap {
        return Err(limit(
            "metadata key-value count".into(),
            n_kv_at,
            n_kv,
            kv_cap,
            "each pair takes at least 14 bytes and the file is not big enough",
        ));
    }
    let tensor_cap = rem.saturating_sub(n_kv * MIN_KV_BYTES) / MIN_TENSOR_INFO_BYTES;
    if n_tensors > tensor_cap {
        return Err(limit(
            "tensor count".into(),
            n_tensors_at,
            n_tensors,
            tensor_cap,
            "each tensor info takes at least 25 bytes and the file is not big enough",
        ));
    }
    // Both fit in usize now (bounded by the buffer length).
    let n_kv = n_kv as usize;
    let n_tensors = n_tensors as usize;

    // --- key-value pairs ---
    let mut kvs: Vec<Kv> = Vec::with_capacity(n_kv);
    let mut key_index: HashMap<String, usize> = HashMap::with_capacity(n_kv);
    for i in 0..n_kv {
        let key_at = cur.pos;
        let key = read_str(&mut cur, &|| format!("metadata key #{i}"), MAX_STRING_LEN)?;
        let key_str = std::str::from_utf8(buf.get(key.clone()).unwrap_or_default()).unwrap_or("");
        if key_str.is_empty() {
            return Err(GgufError::EmptyKey {
                index: i as u64,
                offset: key_at as u64,
            });
        }
        let shown = printable(key_str);
        if let Some(&j) = key_index.get(key_str) {
            let first = kvs.get(j).map_or(0, |kv| kv.key.start.saturating_sub(8));
            return Err(GgufError::DuplicateKey {
                key: shown.to_string(),
                offset: key_at as u64,
                first: first as u64,
            });
        }
        let value_offset = cur.pos;
        let what = || format!("value of key '{shown}'");
        let ty_id = cur
            .u32()
            .map_err(|s| s.at(|| format!("type of key '{shown}'")))?;
        let ty = ValueType::from_id(ty_id).ok_or_else(|| GgufError::BadValueType {
            what: what(),
            offset: value_offset as u64,
            id: ty_id,
        })?;
        let value = read_value(&mut cur, ty, &shown, 1)?;
        key_index.insert(key_str.to_string(), kvs.len());
        kvs.push(Kv {
            key,
            value_offset,
            value,
        });
    }

    // --- alignment ---
    let alignment = match key_index.get("general.alignment").and_then(|&i| kvs.get(i)) {
        None => DEFAULT_ALIGNMENT,
        Some(kv) => {
            let offset = kv.value_offset as u64;
            match kv.value {
                RawValue::U32(a) if a != 0 && a.is_power_of_two() => a as usize,
                RawValue::U32(a) => {
                    return Err(GgufError::BadAlignment {
                        offset,
                        reason: format!("alignment {a} is not a power of two"),
                    })
                }
                ref other => {
                    return Err(GgufError::BadAlignment {
                        offset,
                        reason: format!("must be of type u32 but is {}", raw_type_name(other)),
                    })
                }
            }
        }
    };

    // --- tensor infos ---
    let mut tensors: Vec<TensorInfo> = Vec::with_capacity(n_tensors);
    let mut tensor_index: HashMap<String, usize> = HashMap::with_capacity(n_tensors);
    for i in 0..n_tensors {
        let info_at = cur.pos;
        let name = read_str(&mut cur, &|| format!("name of tensor #{i}"), MAX_STRING_LEN)?;
        let name = std::str::from_utf8(buf.get(name).unwrap_or_default()).unwrap_or("");
        let shown = printable(name);
        let shape_err = |offset: usize, reason: String| GgufError::BadShape {
            tensor: shown.to_string(),
            offset: offset as u64,
            reason,
        };
        if name.is_empty() {
            return Err(GgufError::BadShape {
                tensor: format!("#{i}"),
                offset: info_at as u64,
                reason: "tensor name is empty".into(),
            });
        }
        if name.len() >= MAX_NAME_LEN {
            return Err(shape_err(
                info_at,
                format!(
                    "name is {} bytes, ggml allows at most {}",
                    name.len(),
                    MAX_NAME_LEN - 1
                ),
            ));
        }
        if let Some(&j) = tensor_index.get(name) {
            return Err(GgufError::DuplicateTensor {
                name: shown.to_string(),
                offset: info_at as u64,
                first: tensors.get(j).map_or(0, |t| t.info_offset),
            });
        }

        let n_dims_at = cur.pos;
        let n_dims = cur
            .u32()
            .map_err(|s| s.at(|| format!("dimension count of tensor '{shown}'")))?;
        if n_dims > MAX_DIMS {
            return Err(shape_err(
                n_dims_at,
                format!("{n_dims} dimensions, ggml allows at most {MAX_DIMS}"),
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for d in 0..n_dims {
            let at = cur.pos;
            let v = cur
                .u64()
                .map_err(|s| s.at(|| format!("dimension {d} of tensor '{shown}'")))?;
            if v > i64::MAX as u64 {
                return Err(shape_err(
                    at,
                    format!("dimension {d} is {} (negative as ggml's int64)", v as i64),
                ));
            }
            dims.push(v);
        }
        // The element count must be representable in ggml's int64_t.
        let n_elements = dims
            .iter()
            .try_fold(1u64, |acc, &d| acc.checked_mul(d))
            .filter(|&n| n <= i64::MAX as u64)
            .ok_or_else(|| {
                shape_err(
                    n_dims_at,
                    format!("shape {dims:?} has more than 2^63-1 elements"),
                )
            })?;

        let ty_at = cur.pos;
        let ty_id = cur
            .u32()
            .map_err(|s| s.at(|| format!("type of tensor '{shown}'")))?;
        let ty = match GgmlType::from_id(ty_id) {
            Some(t) => t,
            None => {
                if let Some(&(_, removed)) = REMOVED_TYPE_IDS.iter().find(|(id, _)| *id == ty_id) {
                    return Err(GgufError::RemovedTensorType {
                        tensor: shown.to_string(),
                        offset: ty_at as u64,
                        id: ty_id,
                        name: removed,
                    });
                }
                return Err(GgufError::UnknownTensorType {
                    tensor: shown.to_string(),
                    offset: ty_at as u64,
                    id: ty_id,
                });
            }
        };
        let row = dims.first().copied().unwrap_or(1);
        let blck = ty.block_elems() as u64;
        if row % blck != 0 {
            return Err(shape_err(
                n_dims_at,
                format!("rows of {row} elements are not a multiple of the {ty} block size {blck}"),
            ));
        }
        let size = (n_elements / blck)
            .checked_mul(ty.block_bytes() as u64)
            .filter(|&s| usize::try_from(s).is_ok())
            .ok_or_else(|| {
                shape_err(
                    n_dims_at,
                    format!("shape {dims:?} of type {ty} is too many bytes for this machine"),
                )
            })?;

        let offset = cur
            .u64()
            .map_err(|s| s.at(|| format!("data offset of tensor '{shown}'")))?;

        tensor_index.insert(name.to_string(), tensors.len());
        tensors.push(TensorInfo {
            name: name.to_string(),
            ty,
            dims,
            offset,
            size,
            info_offset: info_at as u64,
        });
    }

    // --- data section ---
    // gguf.cpp pads to the alignment only when there are tensors.
    let end_of_infos = cur.pos;
    let data_offset = if n_tensors > 0 {
        end_of_infos
            .checked_next_multiple_of(alignment)
            .filter(|&o| o <= buf.len())
            .ok_or(GgufError::DataSectionOutOfBounds {
                offset: (end_of_infos as u64).next_multiple_of(alignment as u64),
                alignment: alignment as u64,
                file_size: buf.len() as u64,
            })?
    } else {
        end_of_infos
    };

    check_layout(
        &tensors,
        alignment as u64,
        data_offset as u64,
        buf.len() as u64,
    )?;

    Ok(Index {
        version,
        alignment,
        data_offset,
        kvs,
        key_index,
        tensors,
        tensor_index,
    })
}

fn check_version(version: u32) -> Result<(), GgufError> {
    match version {
        2 | 3 => Ok(()),
        0 => Err(GgufError::Version {
            version,
            reason: "version 0 is not a GGUF version",
        }),
        1 => Err(GgufError::Version {
            version,
            reason: "GGUF v1 (2023) is no longer supported; re-convert the model with a current llama.cpp",
        }),
        // A byte-swapped small version has its low 16 bits zero (llama.cpp's test).
        v if v & 0xFFFF == 0 => Err(GgufError::BigEndian {
            raw: v,
            swapped: v.swap_bytes(),
        }),
        _ => Err(GgufError::Version {
            version,
            reason: "pistil reads GGUF v2 and v3 only",
        }),
    }
}

/// Reads one value of type `ty` (its type field already read).
fn read_value(
    cur: &mut Cursor<'_>,
    ty: ValueType,
    key: &str,
    depth: usize,
) -> Result<RawValue, GgufError> {
    let what = || format!("value of key '{key}'");
    macro_rules! scalar {
        ($variant:ident, $t:ty) => {{
            let b = cur
                .array::<{ std::mem::size_of::<$t>() }>()
                .map_err(|s| s.at(what))?;
            RawValue::$variant(<$t>::from_le_bytes(b))
        }};
    }
    Ok(match ty {
        ValueType::U8 => scalar!(U8, u8),
        ValueType::I8 => scalar!(I8, i8),
        ValueType::U16 => scalar!(U16, u16),
        ValueType::I16 => scalar!(I16, i16),
        ValueType::U32 => scalar!(U32, u32),
        ValueType::I32 => scalar!(I32, i32),
        ValueType::U64 => scalar!(U64, u64),
        ValueType::I64 => scalar!(I64, i64),
        ValueType::F32 => scalar!(F32, f32),
        ValueType::F64 => scalar!(F64, f64),
        ValueType::Bool => {
            let b = cur.array::<1>().map_err(|s| s.at(what))?;
            RawValue::Bool(b[0] != 0)
        }
        ValueType::Str => RawValue::Str(read_str(cur, &what, MAX_STRING_LEN)?),
        ValueType::Array => {
            let (elem, len, data) = read_array(cur, key, depth)?;
            RawValue::Array { elem, len, data }
        }
    })
}

/// Reads an array header (element type, length) and validates its elements;
/// returns the element type, length and the elements' byte range.
fn read_array(
    cur: &mut Cursor<'_>,
    key: &str,
    depth: usize,
) -> Result<(ValueType, usize, Range<usize>), GgufError> {
    let at = cur.pos;
    if depth > MAX_ARRAY_DEPTH {
        return Err(GgufError::NestingTooDeep {
            key: key.to_string(),
            offset: at as u64,
            limit: MAX_ARRAY_DEPTH,
        });
    }
    let elem_id = cur
        .u32()
        .map_err(|s| s.at(|| format!("array element type of key '{key}'")))?;
    let elem = ValueType::from_id(elem_id).ok_or_else(|| GgufError::BadValueType {
        what: format!("array element type of key '{key}'"),
        offset: at as u64,
        id: elem_id,
    })?;
    let len_at = cur.pos;
    let len = cur
        .u64()
        .map_err(|s| s.at(|| format!("array length of key '{key}'")))?;
    if len > MAX_ARRAY_LEN {
        return Err(limit(
            format!("array length of key '{key}'"),
            len_at,
            len,
            MAX_ARRAY_LEN,
            "hard cap",
        ));
    }
    let rem = cur.remaining() as u64;
    let fits = rem / elem.min_size() as u64;
    if len > fits {
        return Err(limit(
            format!("array length of key '{key}'"),
            len_at,
            len,
            fits,
            "more elements than the rest of the file can hold",
        ));
    }
    let len = len as usize; // <= rem
    let start = cur.pos;
    match elem.fixed_size() {
        Some(size) => {
            cur.take((len * size) as u64)
                .map_err(|s| s.at(|| format!("elements of key '{key}'")))?;
        }
        None if elem == ValueType::Str => read_str_array(cur, len, key)?,
        None => {
            for _ in 0..len {
                read_array(cur, key, depth + 1)?;
            }
        }
    }
    Ok((elem, len, start..cur.pos))
}

fn raw_type_name(v: &RawValue) -> &'static str {
    match v {
        RawValue::U8(_) => "u8",
        RawValue::I8(_) => "i8",
        RawValue::U16(_) => "u16",
        RawValue::I16(_) => "i16",
        RawValue::U32(_) => "u32",
        RawValue::I32(_) => "i32",
        RawValue::U64(_) => "u64",
        RawValue::I64(_) => "i64",
        RawValue::F32(_) => "f32",
        RawValue::F64(_) => "f64",
        RawValue::Bool(_) => "bool",
        RawValue::Str(_) => "str",
        RawValue::Array { .. } => "arr",
    }
}

/// Tensors packed in file order, aligned, inside the file.
fn check_layout(
    tensors: &[TensorInfo],
    alignment: u64,
    data_offset: u64,
    file_size: u64,
) -> Result<(), GgufError> {
    let mut expected = 0u64; // where the next tensor must start (relative)
    let mut prev: Option<&TensorInfo> = None;
    for t in tensors {
        if t.offset % alignment != 0 {
            return Err(GgufError::TensorMisaligned {
                tensor: printable(&t.name).into_owned(),
                info_offset: t.info_offset,
                offset: t.offset,
                alignment,
            });
        }
        if t.offset != expected {
            if let (Some(p), true) = (prev, t.offset < expected) {
                return Err(GgufError::TensorOverlap {
                    a: printable(&p.name).into_owned(),
                    b: printable(&t.name).into_owned(),
                    info_offset: t.info_offset,
                    offset: t.offset,
                    a_end: expected,
                });
            }
            return Err(GgufError::TensorGap {
                tensor: printable(&t.name).into_owned(),
                info_offset: t.info_offset,
                offset: t.offset,
                expected,
            });
        }
        let start = data_offset.checked_add(t.offset);
        let end = start.and_then(|s| s.checked_add(t.size));
        match (start, end) {
            (Some(_), Some(e)) if e <= file_size => {}
            _ => {
                return Err(GgufError::TensorOutOfBounds {
                    tensor: printable(&t.name).into_owned(),
                    info_offset: t.info_offset,
                    start: start.unwrap_or(u64::MAX),
                    end: end.unwrap_or(u64::MAX),
                    file_size,
                })
            }
        }
        // Next tensor starts at this one's end padded to the alignment. Both
        // terms are bounded by the file size, so this cannot overflow.
        expected = t.offset + t.size.next_multiple_of(alignment);
        prev = Some(t);
    }
    Ok(())
}
