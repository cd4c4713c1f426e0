//! Hostile GGUF headers built byte by byte. Each case asserts the specific
//! error variant and that the message names the key or tensor and an offset.
//! Limits follow llama.cpp's `ggml/src/gguf.cpp` (and are a bit stricter).

mod gguf_support;

use gguf_support::{assert_msg, gt, model, vt, T, W};
use pistil_runtime::gguf::{Gguf, GgufError, MetaValue, MAX_ARRAY_DEPTH};
use pistil_tests::fixture;

fn parse(bytes: &[u8]) -> Result<Gguf, GgufError> {
    Gguf::from_slice(bytes)
}

fn err(bytes: &[u8]) -> GgufError {
    match parse(bytes) {
        Ok(g) => panic!("parsed: {g:?}"),
        Err(e) => e,
    }
}

/// One key-value pair `test.x` with the given type and value bytes.
fn one_kv(ty: u32, value: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W::header(3, 0, 1);
    w.key("test.x", ty);
    value(&mut w);
    w.done()
}

/// Header + `general.alignment` (type `ty`, value bytes) + one F32 tensor.
fn with_alignment(ty: u32, value: impl FnOnce(&mut W)) -> Vec<u8> {
    let mut w = W::header(3, 1, 1);
    w.key("general.alignment", ty);
    value(&mut w);
    w.tensor("t", &[8], gt::F32, 0).pad(64).fill(64, 1);
    w.done()
}

#[test]
fn valid_builder_file_parses() {
    let bytes = model(&[
        T {
            name: "a",
            dims: &[32, 2],
            ty: gt::Q8_0,
            bytes: 68,
        },
        T {
            name: "b",
            dims: &[4],
            ty: gt::F32,
            bytes: 16,
        },
    ]);
    let g = parse(&bytes).unwrap();
    assert_eq!(g.tensors().len(), 2);
    assert_eq!(g.tensor("a").unwrap().size, 68);
    assert_eq!(g.tensor("b").unwrap().offset, 96);
    assert_eq!(g.tensor_data(g.tensor("b").unwrap()).len(), 16);
    let toks: Vec<&str> = g
        .get_array("tokenizer.ggml.tokens")
        .unwrap()
        .unwrap()
        .strs()
        .unwrap()
        .collect();
    assert_eq!(toks, ["a", "b", "ünï"]);
}

// ------------------------------------------------------------------- header

#[test]
fn magic_and_versions() {
    let e = err(b"GGML\x03\0\0\0");
    assert!(matches!(e, GgufError::NotGguf { .. }), "{e}");
    assert_msg(&e, &["offset 0", "GGML"]);
    let e = err(b"");
    assert!(matches!(e, GgufError::Truncated { .. }), "{e}");
    assert_msg(&e, &["magic", "offset 0"]);

    let e = err(&W::header(1, 0, 0).done());
    assert!(matches!(e, GgufError::Version { version: 1, .. }), "{e}");
    assert_msg(&e, &["v1", "offset 4"]);
    let e = err(&W::header(0, 0, 0).done());
    assert!(matches!(e, GgufError::Version { version: 0, .. }), "{e}");
    let e = err(&W::header(4, 0, 0).done());
    assert!(matches!(e, GgufError::Version { version: 4, .. }), "{e}");
    // A big-endian v3 file: the version bytes are swapped.
    let mut be = b"GGUF".to_vec();
    be.extend_from_slice(&3u32.to_be_bytes());
    be.extend_from_slice(&0u64.to_be_bytes());
    be.extend_from_slice(&0u64.to_be_bytes());
    let e = err(&be);
    assert!(matches!(e, GgufError::BigEndian { swapped: 3, .. }), "{e}");
    assert_msg(&e, &["big-endian GGUF is not supported", "offset 4"]);

    // v2 and v3 with nothing in them are valid (gguf.cpp agrees).
    for v in [2, 3] {
        let g = parse(&W::header(v, 0, 0).done()).unwrap();
        assert_eq!(
            (g.version(), g.len_metadata(), g.tensors().len()),
            (v, 0, 0)
        );
        assert_eq!(g.data_offset(), 24);
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let e = err(&W::header(3, u64::MAX, 0).done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["tensor count", "offset 8", "18446744073709551615"]);
    let e = err(&W::header(3, 0, u64::MAX).done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["key-value count", "offset 16"]);
    // Just over what the remaining bytes could hold.
    let mut w = W::header(3, 0, 2);
    w.kv_u32("a.b", 1);
    let e = err(&w.done());
    assert!(
        matches!(e, GgufError::LimitExceeded { limit: 1, .. }),
        "{e}"
    );
    let mut w = W::header(3, 2, 0);
    w.tensor("t", &[], gt::F32, 0);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["tensor count", "offset 8"]);
    // Negative as int64 (llama.cpp reads i64).
    let e = err(&W::header(3, 1 << 63, 0).done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
}

#[test]
fn array_lengths_that_lie() {
    // 2^62 u32 elements: over the 2^30 cap.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::U32, 1 << 62).u32(7);
    }));
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(
        &e,
        &["array length of key 'test.x'", "offset 46", "hard cap"],
    );
    // Under the cap but more than the file holds.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::U32, 1000).u32(7).u32(8);
    }));
    assert!(
        matches!(e, GgufError::LimitExceeded { limit: 2, .. }),
        "{e}"
    );
    assert_msg(&e, &["'test.x'", "offset 46"]);
    // Strings take at least 8 bytes each.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 3).str("a").str("b");
    }));
    assert!(
        matches!(e, GgufError::LimitExceeded { limit: 2, .. }),
        "{e}"
    );
    // u64::MAX elements of u64.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::U64, u64::MAX);
    }));
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
}

#[test]
fn string_lengths_that_lie() {
    // Key length u64::MAX.
    let mut w = W::header(3, 0, 1);
    w.u64(u64::MAX).fill(32, b'a');
    let e = err(&w.done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["length of metadata key #0", "offset 24"]);
    // Key length one more than the rest of the file.
    let mut w = W::header(3, 0, 1);
    w.u64(20).fill(19, b'a');
    let e = err(&w.done());
    assert!(
        matches!(
            e,
            GgufError::LimitExceeded {
                value: 20,
                limit: 19,
                ..
            }
        ),
        "{e}"
    );
    // Value string past the end.
    let e = err(&one_kv(vt::STR, |w| {
        w.u64(100).raw(b"short");
    }));
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["value of key 'test.x'", "offset 42"]);
    // Over the 1 GiB cap.
    let e = err(&one_kv(vt::STR, |w| {
        w.u64((1 << 30) + 1).raw(b"x");
    }));
    assert!(
        matches!(
            e,
            GgufError::LimitExceeded {
                limit: 1073741824,
                ..
            }
        ),
        "{e}"
    );
    // An element of a string array lies.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 2).str("ok").u64(1 << 40).raw(b"nope");
    }));
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["element 1 of key 'test.x'", "offset 64"]);
    // A tensor name lies.
    let mut w = W::header(3, 1, 0);
    w.u64(1 << 33).raw(b"name").fill(40, 0);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["name of tensor #0", "offset 24"]);
}

#[test]
fn invalid_utf8_everywhere() {
    let bad = b"ab\xff\xfe";
    let mut w = W::header(3, 0, 1);
    w.bytes_str(bad).u32(vt::U8).u8(1);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["metadata key #0", "offset 32"]);

    let e = err(&one_kv(vt::STR, |w| {
        w.bytes_str(bad);
    }));
    assert!(
        matches!(
            e,
            GgufError::BadUtf8 {
                offset: 50,
                bad_at: 52,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["value of key 'test.x'", "offset 50"]);

    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 3).str("a").str("b").bytes_str(b"\xc3");
    }));
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["element 2 of key 'test.x'"]);

    // String arrays are checked a run at a time (see reader.rs): a sequence
    // split across two elements, a lead byte before a long element whose
    // length's low byte (0x80) looks like a continuation byte, and a bad long
    // element, each name the right element.
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 3)
            .str("ok")
            .bytes_str(b"\xc3")
            .bytes_str(b"\xa9");
    }));
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["element 1 of key 'test.x'"]);
    let long_ok = "é".repeat(64); // 128 bytes: length 0x80
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 3)
            .str("ok")
            .bytes_str(b"a\xc3")
            .str(&long_ok);
    }));
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["element 1 of key 'test.x'"]);
    let mut long_bad = long_ok.clone().into_bytes();
    long_bad[100] = 0xff;
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 4)
            .str("a")
            .str(&long_ok)
            .bytes_str(&long_bad)
            .str("z");
    }));
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["element 2 of key 'test.x'"]);
    // And the same shapes, valid, parse and read back.
    let g = parse(&one_kv(vt::ARR, |w| {
        w.arr(vt::STR, 5)
            .str("a")
            .str(&long_ok)
            .str("é")
            .str("")
            .str(&long_ok);
    }))
    .unwrap();
    let v: Vec<&str> = g
        .get_array("test.x")
        .unwrap()
        .unwrap()
        .strs()
        .unwrap()
        .collect();
    assert_eq!(v, ["a", long_ok.as_str(), "é", "", long_ok.as_str()]);

    // A surrogate encoded in UTF-8 (CESU) is not UTF-8 either.
    let e = err(&one_kv(vt::STR, |w| {
        w.bytes_str(b"\xed\xa0\x80");
    }));
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");

    let mut w = W::header(3, 1, 0);
    w.bytes_str(b"blk.\xff")
        .u32(1)
        .u64(4)
        .u32(gt::F32)
        .u64(0)
        .pad(32)
        .fill(16, 0);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::BadUtf8 { .. }), "{e}");
    assert_msg(&e, &["name of tensor #0", "offset 32"]);
}

#[test]
fn bad_value_types_and_keys() {
    let e = err(&one_kv(13, |w| {
        w.u32(0);
    }));
    assert!(matches!(e, GgufError::BadValueType { id: 13, .. }), "{e}");
    assert_msg(&e, &["'test.x'", "offset 38"]);
    let e = err(&one_kv(vt::ARR, |w| {
        w.arr(0xFFFF_FFFF, 1);
    }));
    assert!(matches!(e, GgufError::BadValueType { .. }), "{e}");
    assert_msg(&e, &["array element type of key 'test.x'", "offset 42"]);

    let mut w = W::header(3, 0, 1);
    w.key("", vt::U8).u8(0).fill(8, 0);
    let e = err(&w.done());
    assert!(
        matches!(
            e,
            GgufError::EmptyKey {
                index: 0,
                offset: 24
            }
        ),
        "{e}"
    );

    let mut w = W::header(3, 0, 3);
    w.kv_u32("a.one", 1).kv_str("a.two", "x").kv_u32("a.one", 2);
    let e = err(&w.done());
    assert!(
        matches!(e, GgufError::DuplicateKey { first: 24, .. }),
        "{e}"
    );
    assert_msg(&e, &["'a.one'", "offset 71", "first at offset 24"]);
}

#[test]
fn every_scalar_type_and_bool_rules() {
    let mut w = W::header(3, 0, 13);
    w.key("u8", vt::U8).u8(200);
    w.key("i8", vt::I8).u8(0x80);
    w.key("u16", vt::U16).raw(&60000u16.to_le_bytes());
    w.key("i16", vt::I16).raw(&(-2i16).to_le_bytes());
    w.kv_u32("u32", 4_000_000_000);
    w.key("i32", vt::I32).i32(-5);
    w.key("u64", vt::U64).u64(u64::MAX);
    w.key("i64", vt::I64).raw(&i64::MIN.to_le_bytes());
    w.key("f32", vt::F32).f32(1.5);
    w.key("f64", vt::F64).raw(&2.25f64.to_le_bytes());
    w.key("b0", vt::BOOL).u8(0);
    w.key("b2", vt::BOOL).u8(2); // gguf.cpp: any non-zero byte is true
    w.kv_str("s", "");
    let g = parse(&w.done()).unwrap();
    assert_eq!(g.get_u32("u8").unwrap(), Some(200));
    assert_eq!(g.get_i64("i8").unwrap(), Some(-128));
    assert_eq!(g.get_u32("u16").unwrap(), Some(60000));
    assert_eq!(g.get_i64("i16").unwrap(), Some(-2));
    assert_eq!(g.get_u32("u32").unwrap(), Some(4_000_000_000));
    assert_eq!(g.get_i64("i32").unwrap(), Some(-5));
    assert_eq!(g.get_u64("u64").unwrap(), Some(u64::MAX));
    assert_eq!(g.get_i64("i64").unwrap(), Some(i64::MIN));
    assert_eq!(g.get_f32("f32").unwrap(), Some(1.5));
    assert_eq!(g.get_f32("f64").unwrap(), Some(2.25));
    assert_eq!(g.get_bool("b0").unwrap(), Some(false));
    assert_eq!(g.get_bool("b2").unwrap(), Some(true));
    assert_eq!(g.get_str("s").unwrap(), Some(""));
    // Integers are converted when they fit and refused, naming the key, when not.
    let e = g.get_u32("i32").unwrap_err();
    assert!(matches!(e, GgufError::MetaRange { .. }), "{e}");
    assert_msg(&e, &["'i32'", "-5", "u32"]);
    let e = g.get_u32("u64").unwrap_err();
    assert!(matches!(e, GgufError::MetaRange { .. }), "{e}");
    let e = g.get_i64("u64").unwrap_err();
    assert!(matches!(e, GgufError::MetaRange { .. }), "{e}");
    let e = g.get_u64("i64").unwrap_err();
    assert!(matches!(e, GgufError::MetaRange { .. }), "{e}");
    let names: Vec<&str> = g.metadata().map(|(_, v)| v.type_name()).collect();
    assert_eq!(
        names,
        [
            "u8", "i8", "u16", "i16", "u32", "i32", "u64", "i64", "f32", "f64", "bool", "bool",
            "str"
        ]
    );
}

#[test]
fn nested_arrays() {
    // [[1, 2], [3], []] as i32, then [["a"], ["b", "c"]] as strings.
    let mut w = W::header(3, 0, 2);
    w.key("n.int", vt::ARR).arr(vt::ARR, 3);
    w.arr(vt::I32, 2).i32(1).i32(2);
    w.arr(vt::I32, 1).i32(3);
    w.arr(vt::I32, 0);
    w.key("n.str", vt::ARR).arr(vt::ARR, 2);
    w.arr(vt::STR, 1).str("a");
    w.arr(vt::STR, 2).str("b").str("c");
    let g = parse(&w.done()).unwrap();
    let outer = g.get_array("n.int").unwrap().unwrap();
    assert_eq!((outer.len(), outer.elem_type_name()), (3, "arr"));
    let inner: Vec<Vec<i32>> = outer
        .iter()
        .map(|v| v.as_array().unwrap().i32s().unwrap().collect())
        .collect();
    assert_eq!(inner, vec![vec![1, 2], vec![3], vec![]]);
    let inner: Vec<Vec<&str>> = g
        .get_array("n.str")
        .unwrap()
        .unwrap()
        .iter()
        .map(|v| v.as_array().unwrap().strs().unwrap().collect())
        .collect();
    assert_eq!(inner, vec![vec!["a"], vec!["b", "c"]]);
    assert_eq!(
        g.get("n.int").unwrap().to_string(),
        "[arr; 3] [[i32; 2] [1, 2], [i32; 1] [3], [i32; 0]]"
    );

    // Too deep: MAX_ARRAY_DEPTH + 1 levels.
    let mut w = W::header(3, 0, 1);
    w.key("deep", vt::ARR);
    for _ in 0..MAX_ARRAY_DEPTH {
        w.arr(vt::ARR, 1);
    }
    w.arr(vt::U8, 1).u8(0);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::NestingTooDeep { .. }), "{e}");
    assert_msg(&e, &["'deep'", "offset"]);

    // Exactly MAX_ARRAY_DEPTH levels is fine.
    let mut w = W::header(3, 0, 1);
    w.key("deep", vt::ARR);
    for _ in 0..MAX_ARRAY_DEPTH - 1 {
        w.arr(vt::ARR, 1);
    }
    w.arr(vt::U8, 1).u8(9);
    let g = parse(&w.done()).unwrap();
    let mut v = g.get("deep").unwrap();
    for _ in 0..MAX_ARRAY_DEPTH {
        v = v.as_array().unwrap().iter().next().unwrap();
    }
    assert!(matches!(v, MetaValue::U8(9)));

    // An inner array whose length lies.
    let mut w = W::header(3, 0, 1);
    w.key("n.lie", vt::ARR).arr(vt::ARR, 2);
    w.arr(vt::U8, 1).u8(1);
    w.arr(vt::U8, 1 << 20).u8(1);
    let e = err(&w.done());
    assert!(matches!(e, GgufError::LimitExceeded { .. }), "{e}");
    assert_msg(&e, &["'n.lie'", "offset 70"]);
}

// ---------------------------------------------------------------- alignment

#[test]
fn alignment_rules() {
    for bad in [0u32, 3, 48, 0x8000_0001] {
        let e = err(&with_alignment(vt::U32, |w| {
            w.u32(bad);
        }));
        assert!(
            matches!(e, GgufError::BadAlignment { offset: 49, .. }),
            "{bad}: {e}"
        );
        assert_msg(&e, &["general.alignment", "offset 49", "power of two"]);
    }
    // Wrong type, even with a good value (gguf.cpp requires u32).
    let e = err(&with_alignment(vt::U64, |w| {
        w.u64(32);
    }));
    assert!(matches!(e, GgufError::BadAlignment { .. }), "{e}");
    assert_msg(&e, &["general.alignment", "offset 49", "u32", "u64"]);
    let e = err(&with_alignment(vt::STR, |w| {
        w.str("32");
    }));
    assert!(matches!(e, GgufError::BadAlignment { .. }), "{e}");

    // 64 works and moves the data section to a multiple of 64.
    let g = parse(&with_alignment(vt::U32, |w| {
        w.u32(64);
    }))
    .unwrap();
    assert_eq!((g.alignment(), g.data_offset()), (64, 128));
    // A huge power of two puts the data section past the end of the file.
    let e = err(&with_alignment(vt::U32, |w| {
        w.u32(1 << 31);
    }));
    assert!(matches!(e, GgufError::DataSectionOutOfBounds { .. }), "{e}");
    assert_msg(&e, &["offset 2147483648"]);
}

// ------------------------------------------------------------------ tensors

/// Header (no KVs) + tensor infos + data padded to 32.
fn tensors_file(infos: &[(&str, &[u64], u32, u64)], data_len: usize) -> Vec<u8> {
    let mut w = W::header(3, infos.len() as u64, 0);
    for &(name, dims, ty, off) in infos {
        w.tensor(name, dims, ty, off);
    }
    w.pad(32).fill(data_len, 0xAB);
    w.done()
}

#[test]
fn tensor_layout_errors() {
    // Second tensor starts inside the first.
    let e = err(&tensors_file(
        &[("a", &[16], gt::F32, 0), ("b", &[8], gt::F32, 32)],
        128,
    ));
    assert!(
        matches!(
            e,
            GgufError::TensorOverlap {
                a_end: 64,
                offset: 32,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["'b'", "'a'", "offset 32", "info at offset"]);
    // Both at 0.
    let e = err(&tensors_file(
        &[("a", &[8], gt::F32, 0), ("b", &[8], gt::F32, 0)],
        64,
    ));
    assert!(matches!(e, GgufError::TensorOverlap { .. }), "{e}");
    // Misaligned.
    let e = err(&tensors_file(&[("a", &[8], gt::F32, 4)], 64));
    assert!(
        matches!(
            e,
            GgufError::TensorMisaligned {
                offset: 4,
                alignment: 32,
                ..
            }
        ),
        "{e}"
    );
    assert_msg(&e, &["'a'", "info at offset 24", "offset 4"]);
    // Gap (gguf.cpp requires tensors packed in order).
    let e = err(&tensors_file(&[("a", &[8], gt::F32, 64)], 128));
    assert!(matches!(e, GgufError::TensorGap { expected: 0, .. }), "{e}");
    assert_msg(&e, &["'a'", "offset 64", "expected 0"]);
    // Data past the end of the file.
    let e = err(&tensors_file(&[("a", &[64], gt::F32, 0)], 255));
    assert!(matches!(e, GgufError::TensorOutOfBounds { .. }), "{e}");
    assert_msg(
        &e,
        &[
            "'a'",
            "info at offset 24",
            "file offset 64..320",
            "319 bytes",
        ],
    );
    // Offset near u64::MAX: no overflow, an error.
    let e = err(&tensors_file(&[("a", &[8], gt::F32, u64::MAX - 31)], 64));
    assert!(matches!(e, GgufError::TensorGap { .. }), "{e}");
    // Ends exactly at the end of the file (no trailing padding) is fine.
    let g = parse(&tensors_file(
        &[("a", &[8], gt::F32, 0), ("b", &[3], gt::F32, 32)],
        44,
    ))
    .unwrap();
    assert_eq!(g.tensor_data(g.tensor("b").unwrap()), &[0xAB; 12]);
}

#[test]
fn tensor_type_errors() {
    let e = err(&tensors_file(&[("w", &[32], 99, 0)], 64));
    assert!(
        matches!(e, GgufError::UnknownTensorType { id: 99, .. }),
        "{e}"
    );
    assert_msg(&e, &["'w'", "99", "offset 45"]);
    let e = err(&tensors_file(&[("w", &[32], u32::MAX, 0)], 64));
    assert!(matches!(e, GgufError::UnknownTensorType { .. }), "{e}");
    for (id, name) in [
        (4u32, "Q4_2"),
        (5, "Q4_3"),
        (31, "Q4_0_4_4"),
        (33, "Q4_0_8_8"),
        (36, "IQ4_NL_4_4"),
    ] {
        let e = err(&tensors_file(&[("w", &[32], id, 0)], 64));
        assert!(
            matches!(e, GgufError::RemovedTensorType { .. }),
            "{id}: {e}"
        );
        assert_msg(&e, &["'w'", name, "offset 45"]);
    }
}

#[test]
fn tensor_shape_errors() {
    // More than 4 dims.
    let e = err(&tensors_file(&[("w", &[1, 1, 1, 1, 1], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["'w'", "5 dimensions", "offset 33"]);
    // Element count overflow (2^32 × 2^32).
    let e = err(&tensors_file(&[("w", &[1 << 32, 1 << 32], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["'w'", "2^63-1"]);
    // 2^62 × 2 = 2^63 > INT64_MAX.
    let e = err(&tensors_file(&[("w", &[1 << 62, 2], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    // A dim that is negative as int64.
    let e = err(&tensors_file(&[("w", &[u64::MAX], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["'w'", "dimension 0", "-1", "offset 37"]);
    // Bytes overflow usize although elements fit in i64.
    let e = err(&tensors_file(&[("w", &[1 << 62], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    // Rows not whole blocks.
    let e = err(&tensors_file(&[("w", &[33, 2], gt::Q4_0, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["'w'", "33", "block size 32"]);
    let e = err(&tensors_file(&[("w", &[128], gt::Q4_K, 0)], 256));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    // Zero dims are legal in ggml (an empty tensor); so is a 0-dim scalar.
    let g = parse(&tensors_file(
        &[("z", &[0, 4], gt::F32, 0), ("s", &[], gt::F32, 0)],
        32,
    ))
    .unwrap();
    let z = g.tensor("z").unwrap();
    assert_eq!((z.n_elements(), z.size, z.n_rows()), (0, 0, 4));
    let s = g.tensor("s").unwrap();
    assert_eq!((s.n_elements(), s.size, s.row_len()), (1, 4, 1));
    // Names: empty, too long (ggml's GGML_MAX_NAME is 64 with the NUL).
    let e = err(&tensors_file(&[("", &[8], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["#0", "empty", "offset 24"]);
    let long = "x".repeat(64);
    let e = err(&tensors_file(&[(&long, &[8], gt::F32, 0)], 64));
    assert!(matches!(e, GgufError::BadShape { .. }), "{e}");
    assert_msg(&e, &["64 bytes", "offset 24"]);
    let ok = "x".repeat(63);
    parse(&tensors_file(&[(&ok, &[8], gt::F32, 0)], 64)).unwrap();
    // Duplicate tensor names.
    let e = err(&tensors_file(
        &[("w", &[8], gt::F32, 0), ("w", &[8], gt::F32, 32)],
        64,
    ));
    assert!(
        matches!(e, GgufError::DuplicateTensor { first: 24, .. }),
        "{e}"
    );
    assert_msg(&e, &["'w'", "offset 57", "first at offset 24"]);
}

// --------------------------------------------------------------- truncation

/// Cutting a real file's header anywhere gives an error, never a panic or a
/// hang; so does cutting it anywhere inside the tensor data.
#[test]
fn truncated_at_every_offset() {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut checked = 0usize;
        for rel in [
            "models/tiny-gemma3.q4_k_m.gguf",
            "models/tiny-qwen2.q8_0.gguf",
        ] {
            let bytes = std::fs::read(fixture(rel)).unwrap();
            let full = Gguf::from_slice(&bytes).unwrap();
            let data_offset = full.data_offset();
            for cut in 0..data_offset {
                let r = Gguf::validate(&bytes[..cut]);
                assert!(r.is_err(), "{rel} cut at {cut} parsed");
                checked += 1;
            }
            // Inside the data: every 61st byte and the last 64.
            let tail = bytes.len().saturating_sub(64);
            for cut in (data_offset..bytes.len())
                .step_by(61)
                .chain(tail..bytes.len())
            {
                let e = Gguf::validate(&bytes[..cut]).unwrap_err();
                assert!(
                    matches!(e, GgufError::TensorOutOfBounds { .. }),
                    "{rel} cut {cut}: {e}"
                );
                checked += 1;
            }
        }
        tx.send(checked).unwrap();
    });
    let checked = rx
        .recv_timeout(std::time::Duration::from_secs(300))
        .expect("truncation test hung or panicked");
    assert!(checked > 28000, "{checked}");
}

/// The error at every cut of a small file built here names what was being
/// read and where.
#[test]
fn truncation_messages_name_the_field() {
    let bytes = model(&[T {
        name: "blk.0.w",
        dims: &[32, 2],
        ty: gt::Q8_0,
        bytes: 68,
    }]);
    let g = parse(&bytes).unwrap();
    for cut in 0..g.data_offset() {
        let e = err(&bytes[..cut]);
        let msg = e.to_string();
        assert!(msg.contains("offset"), "cut {cut}: {msg}");
        match &e {
            GgufError::Truncated { what, .. } | GgufError::LimitExceeded { what, .. } => {
                assert!(!what.is_empty(), "cut {cut}: {msg}")
            }
            GgufError::DataSectionOutOfBounds { .. } | GgufError::NotGguf { .. } => {}
            other => panic!("cut {cut}: unexpected {other}"),
        }
        if (130..176).contains(&cut) {
            // Inside the string array of the third key.
            assert!(msg.contains("tokenizer.ggml.tokens"), "cut {cut}: {msg}");
        }
    }
}
