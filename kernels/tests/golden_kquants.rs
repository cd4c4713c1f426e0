//! Goldens for the K-quant formats and IQ4_XS, made by independent tools:
//!
//! - `tests/fixtures/quant/<type>.{blocks,f32}.bin`: gguf-py's dequantization
//!   (cross-checked bit-exact with ggml's C code), see that folder's README;
//! - `tests/fixtures/quant-extra/`: ggml's own C functions called from Python
//!   (Q8_K activation quantization, `vec_dot` results of ggml's x86 kernels,
//!   the Q4_K/Q6_K reference quantizers), see that folder's README.
//!
//! Every backend this CPU (or qemu CPU model) supports is checked.

use pistil_kernels::{Backend, CpuFeatures, GgmlType, Kernels};
use std::path::PathBuf;

fn fixture(rel: &str) -> Vec<u8> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

fn f32s(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn manifest(rel: &str) -> serde_json::Value {
    serde_json::from_slice(&fixture(rel)).expect("manifest is JSON")
}

fn tables() -> Vec<Kernels> {
    CpuFeatures::detect()
        .available()
        .into_iter()
        .map(|b| Kernels::for_backend(b).expect("available backend"))
        .collect()
}

/// Q8_K activations: every backend's quantizer gives ggml's bytes exactly.
#[test]
fn q8_k_quantization_matches_ggml() {
    let m = manifest("quant-extra/manifest.json");
    let rows = m["q8_k"]["rows"].as_u64().unwrap() as usize;
    let len = m["q8_k"]["row_len"].as_u64().unwrap() as usize;
    let x = f32s(&fixture("quant-extra/q8_k.input.f32.bin"));
    let want = fixture("quant-extra/q8_k.quantized.bin");
    let row_bytes = GgmlType::Q8_K.row_bytes(len).unwrap();
    assert_eq!((x.len(), want.len()), (rows * len, rows * row_bytes));
    for k in tables() {
        let ak = k.act(GgmlType::Q8_K).expect("Q8_K quantizer registered");
        for r in 0..rows {
            let mut got = vec![0u8; row_bytes];
            (ak.quantize_row)(&x[r * len..(r + 1) * len], &mut got);
            let w = &want[r * row_bytes..(r + 1) * row_bytes];
            if let Some(i) = got.iter().zip(w).position(|(g, w)| g != w) {
                panic!(
                    "Q8_K row {r} ({}): {} path differs from ggml at byte {i}: {} vs {}",
                    m["q8_k"]["rows_notes"][r.to_string()],
                    ak.path,
                    got[i],
                    w[i]
                );
            }
        }
    }
    assert!(Backend::ALL.contains(&Backend::Scalar));
}

/// The weight formats of this file: (type, fixture name).
const FORMATS: &[(GgmlType, &str)] = &[
    (GgmlType::Q2_K, "q2_k"),
    (GgmlType::Q3_K, "q3_k"),
    (GgmlType::Q4_K, "q4_k"),
    (GgmlType::Q5_K, "q5_k"),
    (GgmlType::Q6_K, "q6_k"),
    (GgmlType::IQ4_XS, "iq4_xs"),
];

/// Dequantization equals gguf-py (and ggml) bit for bit, on every backend.
#[test]
fn dequantize_matches_gguf_py() {
    let m = manifest("quant/manifest.json");
    for &(t, name) in FORMATS {
        let entry = m["types"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["ggml_type_id"].as_u64() == Some(t.id() as u64))
            .unwrap_or_else(|| panic!("{name} in manifest"));
        let blocks = fixture(&format!("quant/{name}.blocks.bin"));
        let want = f32s(&fixture(&format!("quant/{name}.f32.bin")));
        assert_eq!(
            entry["count_blocks"].as_u64().unwrap() as usize * t.block_bytes(),
            blocks.len()
        );
        assert_eq!(want.len(), blocks.len() / t.block_bytes() * t.block_elems());
        for k in tables() {
            let Some(fk) = k.format(t) else {
                panic!("{t} has no kernels");
            };
            let mut got = vec![0f32; want.len()];
            (fk.dequantize_row)(&blocks, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{t} [{}] value {i}: {g} vs {w}",
                    k.backend
                );
            }
        }
    }
}

/// `vec_dot` with a Q8_K activation agrees with ggml's own x86 kernels (and
/// their scalar twins) on the dequantization fixtures taken as 4 rows of 4096,
/// within a budget for the order of f32 accumulation alone.
#[test]
fn vec_dot_matches_ggml() {
    // Relative to Σ|wᵢ·aᵢ| (the scale of any rounding of the sum).
    const BUDGET: f64 = 1e-5;
    let m = manifest("quant-extra/manifest.json");
    let n = m["vec_dot"]["n"].as_u64().unwrap() as usize;
    let act = fixture("quant-extra/dot.act.q8_k.bin");
    let act_f32 = f32s(&fixture("quant-extra/dot.act.f32.bin"));
    // The stored activation is what our quantizer makes.
    for k in tables() {
        let mut a = vec![0u8; act.len()];
        (k.act(GgmlType::Q8_K).unwrap().quantize_row)(&act_f32, &mut a);
        assert_eq!(a, act, "{}", k.backend);
    }
    let mut a_deq = vec![0f32; n];
    pistil_kernels::quants::q8_k::dequantize_row_q8_K(&act, &mut a_deq);
    for &(t, name) in FORMATS {
        let blocks = fixture(&format!("quant/{name}.blocks.bin"));
        let row_bytes = t.row_bytes(n).unwrap();
        let res = &m["vec_dot"]["results"][name];
        for k in tables() {
            let fk = k.format(t).unwrap();
            let mut out = vec![0f32; 4];
            (fk.gemv)(n, &blocks, row_bytes, &act, &mut out);
            for r in 0..4 {
                let row = &blocks[r * row_bytes..(r + 1) * row_bytes];
                let mut w = vec![0f32; n];
                (fk.dequantize_row)(row, &mut w);
                let scale: f64 = w
                    .iter()
                    .zip(&a_deq)
                    .map(|(x, y)| (*x as f64 * *y as f64).abs())
                    .sum();
                let v = (fk.vec_dot)(n, row, &act) as f64;
                for which in ["cpu", "generic"] {
                    let want = res[which][r].as_f64().unwrap();
                    for (what, got) in [("vec_dot", v), ("gemv", out[r] as f64)] {
                        assert!(
                            (got - want).abs() <= BUDGET * scale,
                            "{t} row {r} [{} → {} path] {what} {got} vs ggml {which} {want} (scale {scale})",
                            k.backend,
                            fk.path
                        );
                    }
                }
            }
        }
    }
}
