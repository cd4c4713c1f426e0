//! GGUF v2/v3: a borrowed, validated view of a model file over `memmap2`.
//!
//! A GGUF file is a header, key-value metadata, a table of tensor infos, and
//! the tensor data section (all little-endian; `str` = u64 length + UTF-8):
//!
//! ```text
//! "GGUF" u32 version  u64 n_tensors  u64 n_kv
//! n_kv ×      { str key, u32 value_type, value }
//! n_tensors × { str name, u32 n_dims, u64 dims[n_dims], u32 ggml_type, u64 offset }
//! padding to general.alignment (default 32)
//! tensor data: tensor i at data_offset + offset_i, packed in order, each padded
//! ```
//!
//! [`Gguf::open`] maps (or reads, see [`LoadMode`]) the file and validates all
//! of it up front, so every accessor afterwards is infallible and
//! allocation-free: metadata strings and arrays are borrowed from the file
//! bytes, tensor data is a `&[u8]` slice of the map, never copied.
//!
//! The checks are at least those of llama.cpp's `ggml/src/gguf.cpp`:
//!
//! - magic `GGUF`; version 2 or 3 (v1 and byte-swapped big-endian files are
//!   refused by name);
//! - every count and length is checked against a hard cap (strings and arrays
//!   at most 2^30, as gguf.cpp) *and* against what the rest of the file could
//!   hold, before anything is allocated or looped over;
//! - keys are non-empty, unique, UTF-8; every string value and array element
//!   is UTF-8; value type ids are known; nested arrays (which gguf.cpp refuses
//!   but the format and gguf-py allow) at most [`MAX_ARRAY_DEPTH`] deep;
//! - `general.alignment`, if present, is a `u32` power of two;
//! - tensor names are unique, non-empty UTF-8 shorter than [`MAX_NAME_LEN`];
//!   at most [`MAX_DIMS`] dims, each ≥ 0 as an `i64` (0 = an empty tensor, as in
//!   ggml); the element count fits in an `i64`; rows are whole blocks of the
//!   type; the byte size fits in `usize`; the type id is a current ggml type
//!   (removed ones named);
//! - the data section starts at the end of the tensor infos padded to the
//!   alignment, inside the file; tensors are packed in file order, each at the
//!   previous one's end padded to the alignment (what gguf.cpp requires), so
//!   they are aligned and never overlap; every tensor's data lies in the file.
//!
//! Every error names the key or tensor and the byte offset it concerns; names
//! taken from the file are escaped so a hostile file cannot break the line.

mod error;
mod ftype;
mod load;
mod reader;
mod tensor;
mod value;

use std::fmt;
use std::path::{Path, PathBuf};

pub use error::GgufError;
pub use ftype::{file_type_name, FTYPE_GUESSED};
pub use load::{LoadMode, OpenOptions, ParseLoadModeError};
pub use reader::{
    DEFAULT_ALIGNMENT, GGUF_MAGIC, MAX_ARRAY_DEPTH, MAX_ARRAY_LEN, MAX_DIMS, MAX_NAME_LEN,
    MAX_STRING_LEN,
};
pub use tensor::TensorInfo;
pub use value::{MetaArray, MetaValue, ValueType};

use load::{AlignedBuf, Storage};
use reader::{Index, RawValue};

/// An open, validated GGUF file: the bytes (a read-only map or an aligned
/// heap copy) and the parsed index of its metadata and tensors.
///
/// `Gguf` is `Send + Sync`; share it behind an `Arc` between threads.
pub struct Gguf {
    storage: Storage,
    index: Index,
    path: Option<PathBuf>,
}

impl fmt::Debug for Gguf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Gguf")
            .field("path", &self.path)
            .field("version", &self.index.version)
            .field("file_size", &self.file_size())
            .field("n_kv", &self.index.kvs.len())
            .field("n_tensors", &self.index.tensors.len())
            .finish()
    }
}

impl Gguf {
    /// Opens and validates `path`, loading it as `mode` says, with the whole
    /// file prefetched for the mmap modes (what loading a model wants; see
    /// [`Gguf::open_with`] to read just the header).
    ///
    /// With the mmap modes the file must not be truncated or rewritten while
    /// the `Gguf` lives (the same contract as llama.cpp's mmap): replace model
    /// files by renaming a new file over the old one, never in place.
    pub fn open(path: &Path, mode: LoadMode) -> Result<Gguf, GgufError> {
        Gguf::open_with(
            path,
            OpenOptions {
                mode,
                prefetch: true,
            },
        )
    }

    /// Opens and validates `path` with explicit [`OpenOptions`].
    pub fn open_with(path: &Path, opts: OpenOptions) -> Result<Gguf, GgufError> {
        let storage = load::load(path, opts)?;
        let index = reader::parse(storage.bytes())?;
        tracing::debug!(
            "opened {} ({} mode): GGUF v{}, {} keys, {} tensors",
            path.display(),
            opts.mode,
            index.version,
            index.kvs.len(),
            index.tensors.len()
        );
        Ok(Gguf {
            storage,
            index,
            path: Some(path.to_path_buf()),
        })
    }

    /// Parses a file held in memory (tests, fuzzing). The bytes are copied into
    /// a 64-byte-aligned buffer so tensor data has the alignment it would have
    /// from a file.
    pub fn from_bytes(bytes: Vec<u8>) -> Result<Gguf, GgufError> {
        Gguf::from_slice(&bytes)
    }

    /// Like [`Gguf::from_bytes`], from a borrowed slice.
    pub fn from_slice(bytes: &[u8]) -> Result<Gguf, GgufError> {
        let index = reader::parse(bytes)?;
        Ok(Gguf {
            storage: Storage::Heap(AlignedBuf::copy_of(bytes)),
            index,
            path: None,
        })
    }

    /// Validates `bytes` as a GGUF file without keeping anything (fuzzing,
    /// quick checks).
    pub fn validate(bytes: &[u8]) -> Result<(), GgufError> {
        reader::parse(bytes).map(|_| ())
    }

    /// The file this was opened from (`None` for [`Gguf::from_bytes`]).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// Whether the bytes are a memory map (the mmap load modes).
    pub fn is_mapped(&self) -> bool {
        matches!(self.storage, Storage::Mmap(_))
    }

    /// Size of the file in bytes.
    pub fn file_size(&self) -> u64 {
        self.bytes().len() as u64
    }

    /// GGUF version: 2 or 3.
    pub fn version(&self) -> u32 {
        self.index.version
    }

    /// Alignment of the data section and of every tensor's data
    /// (`general.alignment`, default 32).
    pub fn alignment(&self) -> usize {
        self.index.alignment
    }

    /// Offset of the tensor data section in the file.
    pub fn data_offset(&self) -> usize {
        self.index.data_offset
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        self.storage.bytes()
    }

    // ---------------------------------------------------------------- metadata

    /// Number of metadata key-value pairs.
    pub fn len_metadata(&self) -> usize {
        self.index.kvs.len()
    }

    /// Every key-value pair, in file order.
    pub fn metadata(&self) -> impl Iterator<Item = (&str, MetaValue<'_>)> {
        let bytes = self.bytes();
        self.index
            .kvs
            .iter()
            .map(move |kv| (str_at(bytes, &kv.key), value_of(bytes, &kv.value)))
    }

    /// The value of `key`, if present.
    pub fn get(&self, key: &str) -> Option<MetaValue<'_>> {
        self.kv(key).map(|kv| value_of(self.bytes(), &kv.value))
    }

    /// Byte offset of `key`'s value (its type field) in the file.
    pub fn value_offset(&self, key: &str) -> Option<u64> {
        self.kv(key).map(|kv| kv.value_offset as u64)
    }

    fn kv(&self, key: &str) -> Option<&reader::Kv> {
        self.index
            .key_index
            .get(key)
            .and_then(|&i| self.index.kvs.get(i))
    }

    fn type_err(&self, key: &str, expected: &'static str, found: &MetaValue<'_>) -> GgufError {
        GgufError::MetaType {
            key: reader::printable(key).into_owned(),
            offset: self.value_offset(key).unwrap_or(0),
            expected,
            found: found.type_name(),
        }
    }

    fn range_err(&self, key: &str, expected: &'static str, found: &MetaValue<'_>) -> GgufError {
        GgufError::MetaRange {
            key: reader::printable(key).into_owned(),
            offset: self.value_offset(key).unwrap_or(0),
            expected,
            value: found.to_string(),
        }
    }

    /// A string value: `Ok(None)` if absent, an error if not a string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Str(s)) => Ok(Some(s)),
            Some(v) => Err(self.type_err(key, "str", &v)),
        }
    }

    /// Any integer value that fits in a `u64`.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(x) => Ok(Some(x)),
                None if v.as_i64().is_some() => Err(self.range_err(key, "u64", &v)),
                None => Err(self.type_err(key, "integer", &v)),
            },
        }
    }

    /// Any integer value that fits in a `u32`.
    pub fn get_u32(&self, key: &str) -> Result<Option<u32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_u64().map(u32::try_from) {
                Some(Ok(x)) => Ok(Some(x)),
                Some(Err(_)) => Err(self.range_err(key, "u32", &v)),
                None if v.as_i64().is_some() => Err(self.range_err(key, "u32", &v)),
                None => Err(self.type_err(key, "integer", &v)),
            },
        }
    }

    /// Any integer value that fits in an `i64`.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_i64() {
                Some(x) => Ok(Some(x)),
                None if v.as_u64().is_some() => Err(self.range_err(key, "i64", &v)),
                None => Err(self.type_err(key, "integer", &v)),
            },
        }
    }

    /// An `f32` or `f64` value, as `f32`.
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(v) => match v.as_f64() {
                Some(x) => Ok(Some(x as f32)),
                None => Err(self.type_err(key, "f32", &v)),
            },
        }
    }

    /// A bool value.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Bool(b)) => Ok(Some(b)),
            Some(v) => Err(self.type_err(key, "bool", &v)),
        }
    }

    /// An array value.
    pub fn get_array(&self, key: &str) -> Result<Option<MetaArray<'_>>, GgufError> {
        match self.get(key) {
            None => Ok(None),
            Some(MetaValue::Array(a)) => Ok(Some(a)),
            Some(v) => Err(self.type_err(key, "arr", &v)),
        }
    }

    fn missing(key: &str) -> GgufError {
        GgufError::MissingKey {
            key: reader::printable(key).into_owned(),
        }
    }

    /// A string value that must be present.
    pub fn require_str(&self, key: &str) -> Result<&str, GgufError> {
        self.get_str(key)?.ok_or_else(|| Gguf::missing(key))
    }

    /// An integer value that must be present and fit in a `u32`.
    pub fn require_u32(&self, key: &str) -> Result<u32, GgufError> {
        self.get_u32(key)?.ok_or_else(|| Gguf::missing(key))
    }

    /// An integer value that must be present and fit in a `u64`.
    pub fn require_u64(&self, key: &str) -> Result<u64, GgufError> {
        self.get_u64(key)?.ok_or_else(|| Gguf::missing(key))
    }

    /// A float value that must be present.
    pub fn require_f32(&self, key: &str) -> Result<f32, GgufError> {
        self.get_f32(key)?.ok_or_else(|| Gguf::missing(key))
    }

    /// `general.architecture` (required by every GGUF model).
    pub fn architecture(&self) -> Result<&str, GgufError> {
        self.require_str("general.architecture")
    }

    // ----------------------------------------------------------------- tensors

    /// Every tensor, in file order.
    pub fn tensors(&self) -> &[TensorInfo] {
        &self.index.tensors
    }

    /// The tensor named `name` (hash lookup).
    pub fn tensor(&self, name: &str) -> Option<&TensorInfo> {
        self.index
            .tensor_index
            .get(name)
            .and_then(|&i| self.index.tensors.get(i))
    }

    /// A tensor's data: a slice of the file, validated to lie inside it,
    /// aligned to [`Gguf::alignment`] relative to the file start, never
    /// copied. `t` must come from this file's [`Gguf::tensors`] (an info from
    /// another file gives an empty slice if it does not fit this one).
    pub fn tensor_data(&self, t: &TensorInfo) -> &[u8] {
        let start = (self.index.data_offset as u64).saturating_add(t.offset);
        let end = start.saturating_add(t.size);
        match (usize::try_from(start), usize::try_from(end)) {
            (Ok(s), Ok(e)) => self.bytes().get(s..e).unwrap_or_default(),
            _ => &[],
        }
    }

    /// Total bytes of tensor data (the weights), excluding padding.
    pub fn tensor_bytes(&self) -> u64 {
        self.index.tensors.iter().map(|t| t.size).sum()
    }

    /// Total number of elements of all tensors (the parameter count).
    pub fn n_params(&self) -> u64 {
        self.index
            .tensors
            .iter()
            .map(|t| t.n_elements())
            .fold(0u64, u64::saturating_add)
    }
}

/// The string at a validated range of the file.
fn str_at<'a>(bytes: &'a [u8], r: &std::ops::Range<usize>) -> &'a str {
    // The range was validated as UTF-8 when the file was parsed; the checked
    // conversion here keeps this safe code (and costs little: keys are short).
    bytes
        .get(r.clone())
        .and_then(|b| std::str::from_utf8(b).ok())
        .unwrap_or("")
}

fn value_of<'a>(bytes: &'a [u8], v: &RawValue) -> MetaValue<'a> {
    match *v {
        RawValue::U8(x) => MetaValue::U8(x),
        RawValue::I8(x) => MetaValue::I8(x),
        RawValue::U16(x) => MetaValue::U16(x),
        RawValue::I16(x) => MetaValue::I16(x),
        RawValue::U32(x) => MetaValue::U32(x),
        RawValue::I32(x) => MetaValue::I32(x),
        RawValue::U64(x) => MetaValue::U64(x),
        RawValue::I64(x) => MetaValue::I64(x),
        RawValue::F32(x) => MetaValue::F32(x),
        RawValue::F64(x) => MetaValue::F64(x),
        RawValue::Bool(x) => MetaValue::Bool(x),
        RawValue::Str(ref r) => MetaValue::Str(str_at(bytes, r)),
        RawValue::Array {
            elem,
            len,
            ref data,
        } => MetaValue::Array(MetaArray::new(
            elem,
            len,
            bytes.get(data.clone()).unwrap_or_default(),
        )),
    }
}
