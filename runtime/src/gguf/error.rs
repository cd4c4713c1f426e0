//! Errors of the GGUF reader. Every variant says *what* (key, tensor, field)
//! and *where* (byte offset in the file) so that a bad file can be diagnosed
//! from the one line the CLI prints.

use std::path::PathBuf;

/// Why a GGUF file could not be opened, parsed or queried.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
    /// The file could not be opened, mapped or read. (The OS error is the
    /// `source`, printed after this by error-chain printers such as anyhow's `{:#}`.)
    #[error("cannot read {}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes are not `GGUF`.
    #[error(
        "not a GGUF file: magic at offset 0 is {}, expected \"GGUF\"",
        show_magic(found)
    )]
    NotGguf {
        /// The four bytes found.
        found: [u8; 4],
    },

    /// The version field reads like a byte-swapped (big-endian) file.
    #[error(
        "big-endian GGUF is not supported: the version field at offset 4 reads {raw:#010x} \
         (version {swapped} byte-swapped); convert the file to little-endian GGUF"
    )]
    BigEndian {
        /// The version field as read little-endian.
        raw: u32,
        /// The version it would be big-endian.
        swapped: u32,
    },

    /// A GGUF version pistil does not read (v1, 0, or newer than v3).
    #[error("GGUF version {version} (field at offset 4) is not supported: {reason}")]
    Version {
        /// The version field.
        version: u32,
        /// Why.
        reason: &'static str,
    },

    /// The file ends inside a field.
    #[error("file truncated: {what} at offset {offset} needs {need} bytes but only {have} remain")]
    Truncated {
        /// The field being read (names the key or tensor).
        what: String,
        /// Where it starts.
        offset: u64,
        /// Bytes needed.
        need: u64,
        /// Bytes left in the file.
        have: u64,
    },

    /// A count or length that cannot be honest: over a hard cap, or more than
    /// the rest of the file could hold. Raised before anything is allocated.
    #[error("{what} at offset {offset} is {value}, over the limit of {limit} ({why})")]
    LimitExceeded {
        /// The field (names the key or tensor).
        what: String,
        /// Where the field is.
        offset: u64,
        /// The value found.
        value: u64,
        /// The largest value allowed here.
        limit: u64,
        /// Which limit: a fixed cap or the remaining file size.
        why: &'static str,
    },

    /// A string (key, value, array element or tensor name) is not UTF-8.
    #[error("{what} at offset {offset} is not valid UTF-8 (bad byte at offset {bad_at})")]
    BadUtf8 {
        /// The string (names the key or tensor).
        what: String,
        /// Where its bytes start.
        offset: u64,
        /// Where the first invalid byte is.
        bad_at: u64,
    },

    /// A metadata key is the empty string.
    #[error("metadata key #{index} at offset {offset} is empty")]
    EmptyKey {
        /// Position among the key-value pairs.
        index: u64,
        /// Where the key starts.
        offset: u64,
    },

    /// A metadata value type id outside GGUF's 13 types.
    #[error("{what} at offset {offset} has unknown GGUF value type id {id}")]
    BadValueType {
        /// The value (names the key).
        what: String,
        /// Where the type field is.
        offset: u64,
        /// The type id found.
        id: u32,
    },

    /// Arrays nested deeper than pistil accepts.
    #[error("key '{key}': array at offset {offset} is nested more than {limit} levels deep")]
    NestingTooDeep {
        /// The key.
        key: String,
        /// Where the too-deep array starts.
        offset: u64,
        /// The nesting limit.
        limit: usize,
    },

    /// `general.alignment` is of the wrong type, zero, or not a power of two.
    #[error("key 'general.alignment' at offset {offset}: {reason}")]
    BadAlignment {
        /// Where the value is.
        offset: u64,
        /// What is wrong with it.
        reason: String,
    },

    /// A key appears twice.
    #[error("duplicate metadata key '{key}' at offset {offset} (first at offset {first})")]
    DuplicateKey {
        /// The key.
        key: String,
        /// Where the second copy starts.
        offset: u64,
        /// Where the first copy starts.
        first: u64,
    },

    /// A tensor name appears twice.
    #[error("duplicate tensor name '{name}' at offset {offset} (first at offset {first})")]
    DuplicateTensor {
        /// The name.
        name: String,
        /// Where the second tensor info starts.
        offset: u64,
        /// Where the first one starts.
        first: u64,
    },

    /// A tensor type id that ggml does not define.
    #[error("tensor '{tensor}': unknown GGML type id {id} at offset {offset}")]
    UnknownTensorType {
        /// The tensor.
        tensor: String,
        /// Where the type field is.
        offset: u64,
        /// The id found.
        id: u32,
    },

    /// A tensor type ggml once had and has removed.
    #[error("tensor '{tensor}': GGML type id {id} at offset {offset} is {name}; re-quantize the model with a current llama.cpp")]
    RemovedTensorType {
        /// The tensor.
        tensor: String,
        /// Where the type field is.
        offset: u64,
        /// The id found.
        id: u32,
        /// The removed type's name and why.
        name: &'static str,
    },

    /// A tensor's name, dimensions or size are impossible.
    #[error("tensor '{tensor}' (info at offset {offset}): {reason}")]
    BadShape {
        /// The tensor (may be empty or truncated if the name itself is bad).
        tensor: String,
        /// Where the offending field is.
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// The data section would start past the end of the file.
    #[error("data section starts at offset {offset} (padded to alignment {alignment}) but the file has only {file_size} bytes")]
    DataSectionOutOfBounds {
        /// Where the data section would start.
        offset: u64,
        /// The alignment used.
        alignment: u64,
        /// The file size.
        file_size: u64,
    },

    /// A tensor's data offset is not a multiple of the alignment.
    #[error("tensor '{tensor}' (info at offset {info_offset}): data offset {offset} is not a multiple of the alignment {alignment}")]
    TensorMisaligned {
        /// The tensor.
        tensor: String,
        /// Where its info starts.
        info_offset: u64,
        /// Its data offset (relative to the data section).
        offset: u64,
        /// The file's alignment.
        alignment: u64,
    },

    /// A tensor's data starts inside the previous tensor's.
    #[error("tensor '{b}' (info at offset {info_offset}): data at offset {offset} overlaps tensor '{a}', which ends at {a_end}")]
    TensorOverlap {
        /// The earlier tensor.
        a: String,
        /// The overlapping tensor.
        b: String,
        /// Where `b`'s info starts.
        info_offset: u64,
        /// `b`'s data offset (relative to the data section).
        offset: u64,
        /// Where `a`'s data ends, padded to the alignment (relative).
        a_end: u64,
    },

    /// A tensor's data does not follow the previous one's (llama.cpp requires
    /// tensors to be packed in file order, each padded to the alignment).
    #[error("tensor '{tensor}' (info at offset {info_offset}): data offset {offset}, expected {expected} (tensors must be packed in file order)")]
    TensorGap {
        /// The tensor.
        tensor: String,
        /// Where its info starts.
        info_offset: u64,
        /// Its data offset (relative to the data section).
        offset: u64,
        /// The offset llama.cpp expects.
        expected: u64,
    },

    /// A tensor's data extends past the end of the file.
    #[error("tensor '{tensor}' (info at offset {info_offset}): data at file offset {start}..{end} lies outside the file ({file_size} bytes)")]
    TensorOutOfBounds {
        /// The tensor.
        tensor: String,
        /// Where its info starts.
        info_offset: u64,
        /// Absolute start of its data.
        start: u64,
        /// Absolute end of its data (may be saturated on overflow).
        end: u64,
        /// The file size.
        file_size: u64,
    },

    /// A required key is absent.
    #[error("required metadata key '{key}' is missing")]
    MissingKey {
        /// The key.
        key: String,
    },

    /// A key is present with a type the caller cannot use.
    #[error(
        "metadata key '{key}' (value at offset {offset}) has type {found}, expected {expected}"
    )]
    MetaType {
        /// The key.
        key: String,
        /// Where its value is.
        offset: u64,
        /// What the caller wanted.
        expected: &'static str,
        /// What the file has.
        found: &'static str,
    },

    /// A key holds an integer of the right kind but out of the caller's range.
    #[error("metadata key '{key}' (value at offset {offset}) is {value}, which does not fit in {expected}")]
    MetaRange {
        /// The key.
        key: String,
        /// Where its value is.
        offset: u64,
        /// What the caller wanted.
        expected: &'static str,
        /// The value found, printed.
        value: String,
    },
}

fn show_magic(m: &[u8; 4]) -> String {
    let text: String = m
        .iter()
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '?' })
        .collect();
    format!(
        "\"{text}\" ({:02x} {:02x} {:02x} {:02x})",
        m[0], m[1], m[2], m[3]
    )
}
