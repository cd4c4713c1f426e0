//! Mutation test of the GGUF parser on stable Rust: `PISTIL_MUTATIONS`
//! (default 100,000) mutated headers — bit flips, bytes set to 0x00/0xFF/0x7F/
//! 0x80, truncations, insertions, deletions, copied chunks, and length/count/
//! type fields overwritten with boundary values — each of which must parse or
//! fail with an error, never panic. Deterministic (xorshift PRNG, fixed seed).
//! A panicking input is written to `$CARGO_TARGET_TMPDIR` for reproduction.
//!
//! The cargo-fuzz target in `fuzz/` does the same with coverage guidance on a
//! nightly toolchain; this test is what CI runs.

mod gguf_support;

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};

use gguf_support::{gt, model, vt, T, W};
use pistil_runtime::gguf::{Gguf, GgufError, MetaValue};
use pistil_tests::fixture;

/// xorshift64* (Vigna): fast, deterministic, good enough for mutation.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

/// Values that break length, count, type and offset fields.
const BOUNDARY_U64: &[u64] = &[
    0,
    1,
    2,
    3,
    7,
    31,
    32,
    33,
    63,
    64,
    255,
    256,
    4095,
    65535,
    1 << 20,
    (1 << 30) - 1,
    1 << 30,
    (1 << 30) + 1,
    u32::MAX as u64,
    1 << 32,
    1 << 62,
    i64::MAX as u64,
    1 << 63,
    u64::MAX - 31,
    u64::MAX - 1,
    u64::MAX,
];
const BOUNDARY_U32: &[u32] = &[
    0,
    1,
    3,
    4,
    5,
    8,
    9,
    12,
    13,
    14,
    31,
    36,
    39,
    40,
    64,
    0xFFFF,
    u32::MAX,
];

fn mutate(rng: &mut Rng, seed: &[u8], len_fields: &[usize]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let n_mut = 1 + rng.below(3);
    for _ in 0..n_mut {
        let len = b.len();
        match rng.below(10) {
            // Flip 1-8 bits.
            0 | 1 => {
                for _ in 0..1 + rng.below(8) {
                    if len > 0 {
                        let i = rng.below(len);
                        b[i] ^= 1 << rng.below(8);
                    }
                }
            }
            // Set a byte to a boundary value.
            2 => {
                if len > 0 {
                    let i = rng.below(len);
                    b[i] = [0x00, 0xFF, 0x7F, 0x80][rng.below(4)];
                }
            }
            // Truncate.
            3 => b.truncate(rng.below(len + 1)),
            // Insert 1-16 random bytes.
            4 => {
                let at = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let ins: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                b.splice(at..at, ins);
            }
            // Delete up to 16 bytes.
            5 => {
                if len > 0 {
                    let at = rng.below(len);
                    let end = (at + 1 + rng.below(16)).min(len);
                    b.drain(at..end);
                }
            }
            // Copy a chunk over another place (duplicate keys, tensors).
            6 => {
                if len > 2 {
                    let from = rng.below(len);
                    let n = 1 + rng.below(64.min(len - from));
                    let chunk = b[from..from + n].to_vec();
                    let at = rng.below(len);
                    b.splice(at..at, chunk);
                }
            }
            // Overwrite a known u64 length/count/offset field with a boundary value.
            7 | 8 => {
                if !len_fields.is_empty() {
                    let at = len_fields[rng.below(len_fields.len())];
                    let v = BOUNDARY_U64[rng.below(BOUNDARY_U64.len())];
                    let v = if rng.below(3) == 0 {
                        v.wrapping_add(rng.below(3) as u64).wrapping_sub(1)
                    } else {
                        v
                    };
                    if at + 8 <= b.len() {
                        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
                    }
                }
            }
            // Overwrite a random aligned u32 with a boundary type id / count.
            _ => {
                if len >= 4 {
                    let at = rng.below(len - 3);
                    let v = BOUNDARY_U32[rng.below(BOUNDARY_U32.len())];
                    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
                }
            }
        }
    }
    b
}

/// Touches everything a successful parse exposes; returns a checksum so the
/// work is not optimised away.
fn walk(g: &Gguf) -> u64 {
    fn value(v: MetaValue<'_>, acc: &mut u64) {
        match v {
            MetaValue::Str(s) => *acc += s.len() as u64,
            MetaValue::Array(a) => {
                let mut n = 0;
                for e in a.iter() {
                    value(e, acc);
                    n += 1;
                }
                assert_eq!(n, a.len());
                if let Some(it) = a.strs() {
                    *acc += it.count() as u64;
                }
                if let Some(it) = a.f32s() {
                    *acc += it.count() as u64;
                }
                if let Some(it) = a.i32s() {
                    *acc += it.count() as u64;
                }
                if let Some(it) = a.bools() {
                    *acc += it.count() as u64;
                }
            }
            other => *acc += other.as_u64().unwrap_or(1),
        }
    }
    let mut acc = 0u64;
    for (k, v) in g.metadata() {
        acc += k.len() as u64;
        assert!(g.get(k).is_some());
        value(v, &mut acc);
        acc += v.to_string().len() as u64;
        let _ = (
            g.get_u32(k),
            g.get_i64(k),
            g.get_f32(k),
            g.get_str(k),
            g.get_bool(k),
        );
    }
    let _ = g.architecture();
    for t in g.tensors() {
        let d = g.tensor_data(t);
        assert_eq!(d.len() as u64, t.size, "{}", t.name);
        assert_eq!(g.tensor(&t.name), Some(t));
        assert_eq!(
            (g.data_offset() as u64 + t.offset) % g.alignment() as u64,
            0
        );
        acc = acc.wrapping_add(d.first().copied().unwrap_or(0) as u64);
        acc += t.n_elements() + t.row_len() as u64 + t.n_rows() as u64;
    }
    acc
}

/// Seeds: the header of two real tiny models (data cut off), and small
/// complete files of every value type, nested arrays and several tensors.
/// With each, the offsets of its u64 fields (lengths, counts, dims, offsets).
fn seeds() -> Vec<(String, Vec<u8>, Vec<usize>)> {
    let mut out = Vec::new();
    for rel in [
        "models/tiny-gemma3.q4_k_m.gguf",
        "models/tiny-llama.q4_0.gguf",
    ] {
        let bytes = std::fs::read(fixture(rel)).unwrap();
        let g = Gguf::from_slice(&bytes).unwrap();
        // Header + metadata + tensor infos + the first 512 bytes of data.
        let cut = bytes[..g.data_offset() + 512].to_vec();
        out.push((
            rel.to_string(),
            cut,
            u64_fields_of(&bytes[..g.data_offset()]),
        ));
        // The real metadata alone: tensor count 0, cut before the tensor infos.
        let end_of_kv = g.tensors()[0].info_offset as usize;
        let mut meta = bytes[..end_of_kv].to_vec();
        meta[8..16].copy_from_slice(&0u64.to_le_bytes());
        let f = u64_fields_of(&meta);
        out.push((format!("{rel} metadata"), meta, f));
    }

    let tensors = model(&[
        T {
            name: "tok",
            dims: &[32, 4],
            ty: gt::Q8_0,
            bytes: 136,
        },
        T {
            name: "norm",
            dims: &[32],
            ty: gt::F32,
            bytes: 128,
        },
        T {
            name: "h",
            dims: &[256, 1],
            ty: gt::Q4_K,
            bytes: 144,
        },
        T {
            name: "f16",
            dims: &[3, 1, 1, 2],
            ty: gt::F16,
            bytes: 12,
        },
    ]);
    let f = u64_fields_of(&tensors);
    out.push(("tensors".into(), tensors, f));

    let mut w = W::header(3, 1, 9);
    w.key("general.alignment", vt::U32).u32(64);
    w.key("a.u8", vt::U8).u8(1);
    w.key("a.i64", vt::I64).u64(5);
    w.key("a.f64", vt::F64).raw(&1.0f64.to_le_bytes());
    w.key("a.bool", vt::BOOL).u8(1);
    w.kv_str("a.s", "héllo");
    w.kv_arr_i32("a.ints", &[1, -2, 3]);
    // Short and long (≥ 128 bytes) strings: both UTF-8 check paths.
    let long = "ł".repeat(70);
    w.kv_arr_str("a.strs", &["x", "yy", "", "żz", &long, "q"]);
    w.key("a.nest", vt::ARR).arr(vt::ARR, 2);
    w.arr(vt::STR, 2).str("p").str("q");
    w.arr(vt::ARR, 1).arr(vt::F32, 2).f32(1.0).f32(2.0);
    w.tensor("w", &[8, 2], gt::F32, 0).pad(64).fill(64, 3);
    let values = w.done();
    let f = u64_fields_of(&values);
    out.push(("values".into(), values, f));
    out
}

/// Positions of 8-byte fields whose value looks like a length, count, dim or
/// offset (under 2^32): where corrupting a length hurts most.
fn u64_fields_of(b: &[u8]) -> Vec<usize> {
    (0..b.len().saturating_sub(8))
        .filter(|&i| {
            let v = u64::from_le_bytes(b[i..i + 8].try_into().unwrap());
            v > 0 && v < (1 << 32) && (i < 24 || b[i + 4..i + 8] == [0, 0, 0, 0])
        })
        .collect()
}

fn variant(e: &GgufError) -> String {
    format!("{e:?}")
        .split([' ', '{', '('])
        .next()
        .unwrap_or("")
        .to_string()
}

#[test]
fn mutated_headers_never_panic() {
    let n: usize = std::env::var("PISTIL_MUTATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let seeds = seeds();
    for (name, s, _) in &seeds {
        let g = Gguf::from_slice(s);
        // The real-model seeds with tensor infos are cut inside their data;
        // everything else is valid.
        assert!(
            g.is_ok() || name.ends_with(".gguf"),
            "{name}: {:?}",
            g.err()
        );
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut ok = 0usize;
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut checksum = 0u64;
    let start = std::time::Instant::now();
    for i in 0..n {
        let (name, seed, fields) = &seeds[i % seeds.len()];
        let input = mutate(&mut rng, seed, fields);
        let r = catch_unwind(AssertUnwindSafe(|| match Gguf::from_slice(&input) {
            Ok(g) => Ok(walk(&g)),
            Err(e) => {
                // Every error renders to one non-empty line naming an offset or key.
                let msg = e.to_string();
                assert!(!msg.is_empty() && !msg.contains('\n'), "{msg:?}");
                Err(variant(&e))
            }
        }));
        match r {
            Ok(Ok(c)) => {
                ok += 1;
                checksum = checksum.wrapping_add(c);
            }
            Ok(Err(v)) => *errors.entry(v).or_insert(0) += 1,
            Err(_) => {
                let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
                let path = dir.join(format!("gguf-mutation-{i}.gguf"));
                let _ = std::fs::write(&path, &input);
                panic!(
                    "case {i} (seed {name}) panicked; input saved to {}",
                    path.display()
                );
            }
        }
    }
    eprintln!(
        "{n} mutations in {:?}: {ok} parsed, errors {errors:?} (checksum {checksum})",
        start.elapsed()
    );
    assert_eq!(ok + errors.values().sum::<usize>(), n);
    if n >= 10_000 {
        // The mutations must not be so destructive that nothing parses, nor
        // so mild that no error paths are reached.
        assert!(ok > n / 100, "only {ok} parsed");
        assert!(errors.len() >= 8, "{errors:?}");
    }
}
