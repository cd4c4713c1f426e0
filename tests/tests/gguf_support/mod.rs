//! A byte-level GGUF writer for tests: builds valid files and, field by
//! field, every kind of broken one. Shared by the `gguf_*` test files.

#![allow(dead_code)]

/// GGUF value type ids (gguf.h `enum gguf_type`).
pub mod vt {
    pub const U8: u32 = 0;
    pub const I8: u32 = 1;
    pub const U16: u32 = 2;
    pub const I16: u32 = 3;
    pub const U32: u32 = 4;
    pub const I32: u32 = 5;
    pub const F32: u32 = 6;
    pub const BOOL: u32 = 7;
    pub const STR: u32 = 8;
    pub const ARR: u32 = 9;
    pub const U64: u32 = 10;
    pub const I64: u32 = 11;
    pub const F64: u32 = 12;
}

/// GGML type ids used in tests.
pub mod gt {
    pub const F32: u32 = 0;
    pub const F16: u32 = 1;
    pub const Q4_0: u32 = 2;
    pub const Q8_0: u32 = 8;
    pub const Q4_K: u32 = 12;
}

/// Appends little-endian GGUF fields to a byte vector.
#[derive(Default, Clone)]
pub struct W {
    pub buf: Vec<u8>,
}

impl W {
    /// Magic, version, tensor count, kv count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> W {
        let mut w = W::default();
        w.raw(b"GGUF").u32(version).u64(n_tensors).u64(n_kv);
        w
    }
    pub fn pos(&self) -> u64 {
        self.buf.len() as u64
    }
    pub fn raw(&mut self, b: &[u8]) -> &mut W {
        self.buf.extend_from_slice(b);
        self
    }
    pub fn u8(&mut self, v: u8) -> &mut W {
        self.raw(&[v])
    }
    pub fn u32(&mut self, v: u32) -> &mut W {
        self.raw(&v.to_le_bytes())
    }
    pub fn i32(&mut self, v: i32) -> &mut W {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut W {
        self.raw(&v.to_le_bytes())
    }
    pub fn f32(&mut self, v: f32) -> &mut W {
        self.raw(&v.to_le_bytes())
    }
    /// A GGUF string: u64 length + bytes.
    pub fn str(&mut self, s: &str) -> &mut W {
        self.bytes_str(s.as_bytes())
    }
    /// A GGUF string from raw (possibly invalid UTF-8) bytes.
    pub fn bytes_str(&mut self, b: &[u8]) -> &mut W {
        self.u64(b.len() as u64).raw(b)
    }
    /// Key and value type; the caller writes the value.
    pub fn key(&mut self, key: &str, ty: u32) -> &mut W {
        self.str(key).u32(ty)
    }
    pub fn kv_u32(&mut self, key: &str, v: u32) -> &mut W {
        self.key(key, vt::U32).u32(v)
    }
    pub fn kv_str(&mut self, key: &str, v: &str) -> &mut W {
        self.key(key, vt::STR).str(v)
    }
    /// An array header (after the key and `ARR` type): element type + length.
    pub fn arr(&mut self, elem: u32, len: u64) -> &mut W {
        self.u32(elem).u64(len)
    }
    pub fn kv_arr_str(&mut self, key: &str, items: &[&str]) -> &mut W {
        self.key(key, vt::ARR).arr(vt::STR, items.len() as u64);
        for s in items {
            self.str(s);
        }
        self
    }
    pub fn kv_arr_i32(&mut self, key: &str, items: &[i32]) -> &mut W {
        self.key(key, vt::ARR).arr(vt::I32, items.len() as u64);
        for &v in items {
            self.i32(v);
        }
        self
    }
    /// A tensor info record.
    pub fn tensor(&mut self, name: &str, dims: &[u64], ty: u32, offset: u64) -> &mut W {
        self.str(name).u32(dims.len() as u32);
        for &d in dims {
            self.u64(d);
        }
        self.u32(ty).u64(offset)
    }
    /// Zero bytes up to a multiple of `align`.
    pub fn pad(&mut self, align: usize) -> &mut W {
        while !self.buf.len().is_multiple_of(align) {
            self.buf.push(0);
        }
        self
    }
    /// `n` bytes of `b`.
    pub fn fill(&mut self, n: usize, b: u8) -> &mut W {
        self.buf.resize(self.buf.len() + n, b);
        self
    }
    pub fn done(&self) -> Vec<u8> {
        self.buf.clone()
    }
}

/// A tensor for [`model`]: name, dims, ggml type id, data bytes.
pub struct T<'a> {
    pub name: &'a str,
    pub dims: &'a [u64],
    pub ty: u32,
    pub bytes: u64,
}

/// A valid little file: `general.architecture = "test"`, a couple of keys,
/// the given tensors packed at 32-byte alignment with patterned data.
pub fn model(tensors: &[T<'_>]) -> Vec<u8> {
    let mut w = W::header(3, tensors.len() as u64, 3);
    w.kv_str("general.architecture", "test")
        .kv_u32("test.block_count", 1)
        .kv_arr_str("tokenizer.ggml.tokens", &["a", "b", "ünï"]);
    let mut off = 0u64;
    for t in tensors {
        w.tensor(t.name, t.dims, t.ty, off);
        off += t.bytes.next_multiple_of(32);
    }
    w.pad(32);
    for (i, t) in tensors.iter().enumerate() {
        let start = w.buf.len();
        w.fill(t.bytes as usize, 0);
        for (j, b) in w.buf[start..].iter_mut().enumerate() {
            *b = (i * 31 + j) as u8;
        }
        w.pad(32);
    }
    w.done()
}

/// The error's message must contain every `needle`.
pub fn assert_msg(e: &dyn std::fmt::Display, needles: &[&str]) {
    let msg = e.to_string();
    for n in needles {
        assert!(msg.contains(n), "message {msg:?} lacks {n:?}");
    }
}
