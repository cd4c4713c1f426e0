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
