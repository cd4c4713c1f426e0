//! Metadata values: the 13 GGUF value types, borrowed from the file bytes.
//!
//! A [`MetaArray`] is a view of an array's element bytes, validated at parse
//! time (every string is UTF-8, every nested array well formed); iterating it
//! decodes elements one by one without allocating.

use std::fmt;

/// A GGUF metadata value type, with its id in the file as discriminant.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ValueType {
    /// `uint8`
    U8 = 0,
    /// `int8`
    I8 = 1,
    /// `uint16`
    U16 = 2,
    /// `int16`
    I16 = 3,
    /// `uint32`
    U32 = 4,
    /// `int32`
    I32 = 5,
    /// `float32`
    F32 = 6,
    /// `bool` (one byte)
    Bool = 7,
    /// `string`: u64 length + UTF-8 bytes
    Str = 8,
    /// `array`: u32 element type + u64 length + elements
    Array = 9,
    /// `uint64`
    U64 = 10,
    /// `int64`
    I64 = 11,
    /// `float64`
    F64 = 12,
}

impl ValueType {
    /// The type with GGUF id `id`.
    pub fn from_id(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => Str,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// Name as gguf.cpp prints it (`u32`, `str`, `arr`…).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            Str => "str",
            Array => "arr",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Bytes of one value for fixed-size types; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<usize> {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => Some(1),
            U16 | I16 => Some(2),
            U32 | I32 | F32 => Some(4),
            U64 | I64 | F64 => Some(8),
            Str | Array => None,
        }
    }

    /// The fewest bytes one value of this type can take in a file: a string
    /// is at least its 8-byte length, an array its 4-byte type + 8-byte length.
    pub fn min_size(self) -> usize {
        match self {
            ValueType::Str => 8,
            ValueType::Array => 12,
            t => t.fixed_size().unwrap_or(1),
        }
    }
}

/// One metadata value, borrowed from the file.
#[derive(Clone, Copy, Debug)]
pub enum MetaValue<'a> {
    /// `uint8`
    U8(u8),
    /// `int8`
    I8(i8),
    /// `uint16`
    U16(u16),
    /// `int16`
    I16(i16),
    /// `uint32`
    U32(u32),
    /// `int32`
    I32(i32),
    /// `uint64`
    U64(u64),
    /// `int64`
    I64(i64),
    /// `float32`
    F32(f32),
    /// `float64`
    F64(f64),
    /// `bool`
    Bool(bool),
    /// `string`, validated UTF-8
    Str(&'a str),
    /// `array` of any element type, incl. strings and arrays
    Array(MetaArray<'a>),
}

impl<'a> MetaValue<'a> {
    /// The GGUF value type.
    pub fn value_type(&self) -> ValueType {
        match self {
            MetaValue::U8(_) => ValueType::U8,
            MetaValue::I8(_) => ValueType::I8,
            MetaValue::U16(_) => ValueType::U16,
            MetaValue::I16(_) => ValueType::I16,
            MetaValue::U32(_) => ValueType::U32,
            MetaValue::I32(_) => ValueType::I32,
            MetaValue::U64(_) => ValueType::U64,
            MetaValue::I64(_) => ValueType::I64,
            MetaValue::F32(_) => ValueType::F32,
            MetaValue::F64(_) => ValueType::F64,
            MetaValue::Bool(_) => ValueType::Bool,
            MetaValue::Str(_) => ValueType::Str,
            MetaValue::Array(_) => ValueType::Array,
        }
    }

    /// The type's name as gguf.cpp prints it (`u32`, `str`, `arr`…).
    pub fn type_name(&self) -> &'static str {
        self.value_type().name()
    }

    /// Any integer type, if the value is non-negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => Some(v),
            MetaValue::I8(v) => u64::try_from(v).ok(),
            MetaValue::I16(v) => u64::try_from(v).ok(),
            MetaValue::I32(v) => u64::try_from(v).ok(),
            MetaValue::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// Any integer type, if the value fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        match *self {
            MetaValue::U8(v) => Some(v.into()),
            MetaValue::U16(v) => Some(v.into()),
            MetaValue::U32(v) => Some(v.into()),
            MetaValue::U64(v) => i64::try_from(v).ok(),
            MetaValue::I8(v) => Some(v.into()),
            MetaValue::I16(v) => Some(v.into()),
            MetaValue::I32(v) => Some(v.into()),
            MetaValue::I64(v) => Some(v),
            _ => None,
        }
    }

    /// `f32` or `f64`.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            MetaValue::F32(v) => Some(v.into()),
            MetaValue::F64(v) => Some(v),
            _ => None,
        }
    }

    /// A string.
    pub fn as_str(&self) -> Option<&'a str> {
        match *self {
            MetaValue::Str(s) => Some(s),
            _ => None,
        }
    }

    /// A bool.
    pub fn as_bool(&self) -> Option<bool> {
        match *self {
            MetaValue::Bool(b) => Some(b),
            _ => None,
        }
    }

    /// An array.
    pub fn as_array(&self) -> Option<MetaArray<'a>> {
        match *self {
            MetaValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl fmt::Display for MetaValue<'_> {
    /// Scalars as themselves, strings quoted and escaped, arrays as
    /// `[type; len]` followed by up to 8 elements.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaValue::U8(v) => write!(f, "{v}"),
            MetaValue::I8(v) => write!(f, "{v}"),
            MetaValue::U16(v) => write!(f, "{v}"),
            MetaValue::I16(v) => write!(f, "{v}"),
            MetaValue::U32(v) => write!(f, "{v}"),
            MetaValue::I32(v) => write!(f, "{v}"),
            MetaValue::U64(v) => write!(f, "{v}"),
            MetaValue::I64(v) => write!(f, "{v}"),
            MetaValue::F32(v) => write!(f, "{v}"),
            MetaValue::F64(v) => write!(f, "{v}"),
            MetaValue::Bool(v) => write!(f, "{v}"),
            MetaValue::Str(s) => write!(f, "{s:?}"),
            MetaValue::Array(a) => {
                write!(f, "[{}; {}]", a.elem_type_name(), a.len())?;
                const SHOW: usize = 8;
                if !a.is_empty() {
                    f.write_str(" [")?;
                    for (i, v) in a.iter().take(SHOW).enumerate() {
                        if i > 0 {
                            f.write_str(", ")?;
                        }
                        write!(f, "{v}")?;
                    }
                    if a.len() > SHOW {
                        f.write_str(", …")?;
                    }
                    f.write_str("]")?;
                }
                Ok(())
            }
        }
    }
}

/// An array value: element type, length and the elements' bytes.
///
/// The bytes were validated when the file was parsed, so every accessor is
/// infallible and allocation-free.
#[derive(Clone, Copy)]
pub struct MetaArray<'a> {
    elem: ValueType,
    len: usize,
    /// The elements, exactly (no header, nothing after).
    data: &'a [u8],
}

impl fmt::Debug for MetaArray<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetaArray")
            .field("elem", &self.elem)
            .field("len", &self.len)
            .field("bytes", &self.data.len())
            .finish()
    }
}

impl<'a> MetaArray<'a> {
    /// Built by the parser from validated bytes only.
    pub(crate) fn new(elem: ValueType, len: usize, data: &'a [u8]) -> MetaArray<'a> {
        MetaArray { elem, len, data }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The element type.
    pub fn elem_type(&self) -> ValueType {
        self.elem
    }

    /// The element type's name (`str`, `i32`, `arr`…).
    pub fn elem_type_name(&self) -> &'static str {
        self.elem.name()
    }

    /// The raw element bytes (little-endian values, or length-prefixed
    /// strings / arrays), as they are in the file.
    pub fn raw_bytes(&self) -> &'a [u8] {
        self.data
    }

    /// Every element, decoded in order.
    pub fn iter(&self) -> impl Iterator<Item = MetaValue<'a>> + 'a {
        let (elem, data) = (self.elem, self.data);
        let mut pos = 0usize;
        (0..self.len).map_while(move |_| decode_elem(data, &mut pos, elem))
    }

    /// The strings, if the elements are strings.
    pub fn strs(&self) -> Option<impl Iterator<Item = &'a str> + 'a> {
        if self.elem != ValueType::Str {
            return None;
        }
        let data = self.data;
        let mut pos = 0usize;
        Some((0..self.len).map_while(move |_| read_str(data, &mut pos)))
    }

    /// The values, if the elements are `f32`.
    pub fn f32s(&self) -> Option<impl Iterator<Item = f32> + 'a> {
        (self.elem == ValueType::F32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The values, if the elements are `i32`.
    pub fn i32s(&self) -> Option<impl Iterator<Item = i32> + 'a> {
        (self.elem == ValueType::I32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The values, if the elements are `u32`.
    pub fn u32s(&self) -> Option<impl Iterator<Item = u32> + 'a> {
        (self.elem == ValueType::U32).then(|| {
            self.data
                .chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        })
    }

    /// The values, if the elements are `bool` (any non-zero byte is true, as
    /// in gguf.cpp).
    pub fn bools(&self) -> Option<impl Iterator<Item = bool> + 'a> {
        (self.elem == ValueType::Bool).then(|| self.data.iter().map(|&b| b != 0))
    }

    /// Integer elements of any integer type, as `i64` (`None` if the elements
    /// are not integers or a `u64` element does not fit).
    pub fn ints(&self) -> Option<impl Iterator<Item = i64> + 'a> {
        use ValueType::*;
        if !matches!(self.elem, U8 | I8 | U16 | I16 | U32 | I32 | U64 | I64) {
            return None;
        }
        if self.elem == U64 && self.iter().any(|v| v.as_i64().is_none()) {
            return None;
        }
        Some(self.iter().map(|v| v.as_i64().unwrap_or(0)))
    }
}

/// Reads `N` bytes at `*pos` and advances.
fn take<const N: usize>(data: &[u8], pos: &mut usize) -> Option<[u8; N]> {
    let end = pos.checked_add(N)?;
    let b: [u8; N] = data.get(*pos..end)?.try_into().ok()?;
    *pos = end;
    Some(b)
}

/// Reads a length-prefixed string at `*pos` (validated at parse time; the
/// check here is the cheap safe form of "cannot fail").
fn read_str<'a>(data: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let len = usize::try_from(u64::from_le_bytes(take::<8>(data, pos)?)).ok()?;
    let end = pos.checked_add(len)?;
    let s = std::str::from_utf8(data.get(*pos..end)?).ok()?;
    *pos = end;
    Some(s)
}

/// Decodes one element of type `ty` at `*pos` and advances past it.
pub(crate) fn decode_elem<'a>(
    data: &'a [u8],
    pos: &mut usize,
    ty: ValueType,
) -> Option<MetaValue<'a>> {
    use ValueType as T;
    Some(match ty {
        T::U8 => MetaValue::U8(u8::from_le_bytes(take(data, pos)?)),
        T::I8 => MetaValue::I8(i8::from_le_bytes(take(data, pos)?)),
        T::U16 => MetaValue::U16(u16::from_le_bytes(take(data, pos)?)),
        T::I16 => MetaValue::I16(i16::from_le_bytes(take(data, pos)?)),
        T::U32 => MetaValue::U32(u32::from_le_bytes(take(data, pos)?)),
        T::I32 => MetaValue::I32(i32::from_le_bytes(take(data, pos)?)),
        T::U64 => MetaValue::U64(u64::from_le_bytes(take(data, pos)?)),
        T::I64 => MetaValue::I64(i64::from_le_bytes(take(data, pos)?)),
        T::F32 => MetaValue::F32(f32::from_le_bytes(take(data, pos)?)),
        T::F64 => MetaValue::F64(f64::from_le_bytes(take(data, pos)?)),
        T::Bool => MetaValue::Bool(u8::from_le_bytes(take(data, pos)?) != 0),
        T::Str => MetaValue::Str(read_str(data, pos)?),
        T::Array => {
            let elem = ValueType::from_id(u32::from_le_bytes(take(data, pos)?))?;
            let len = usize::try_from(u64::from_le_bytes(take(data, pos)?)).ok()?;
            let start = *pos;
            skip_elems(data, pos, elem, len)?;
            MetaValue::Array(MetaArray::new(elem, len, data.get(start..*pos)?))
        }
    })
}

/// Advances `*pos` past `len` elements of type `ty` (validated data).
fn skip_elems(data: &[u8], pos: &mut usize, ty: ValueType, len: usize) -> Option<()> {
    match ty.fixed_size() {
        Some(size) => {
            let end = pos.checked_add(size.checked_mul(len)?)?;
            (end <= data.len()).then_some(())?;
            *pos = end;
        }
        None => {
            for _ in 0..len {
                decode_elem(data, pos, ty)?;
            }
        }
    }
    Some(())
}
