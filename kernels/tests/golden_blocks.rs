//! Goldens for the 32-element block formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
//! IQ4_NL), their activation formats (Q8_0, Q8_1) and the float formats (F32,
//! F16, BF16), made by independent tools:
//!
//! - `tests/fixtures/quant/`: gguf-py's dequantization and Q8_0 file
//!   quantization (cross-checked bit-exact with ggml's C code);
//! - `tests/fixtures/quant-b32/`: ggml's own C functions called from Python —
//!   the x86 CPU backend's activation quantizers, the reference (file)
//!   quantizers, and `vec_dot` results of ggml's x86 kernels.
//!
//! Every backend this CPU (or qemu CPU model) supports is checked.

use pistil_kernels::quants::{q4_0, q4_1, q5_0, q5_1, q8_0};
use pistil_kernels::{CpuFeatures, GgmlType, Kernels};
use std::path::PathBuf;

/// `|ours - ggml| <= VEC_DOT_REL * Σ|wᵢ·aᵢ|`: the block sums are exact integers
/// on both sides, only the order of the f32 accumulation differs.
const VEC_DOT_REL: f64 = 1e-5;

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

fn manifest() -> serde_json::Value {
    serde_json::from_slice(&fixture("quant-b32/manifest.json")).expect("manifest is JSON")
}

fn tables() -> Vec<Kernels> {
    CpuFeatures::detect()
        .available()
        .into_iter()
        .map(|b| Kernels::for_backend(b).expect("available backend"))
        .collect()
}

fn first_difference(a: &[u8], b: &[u8]) -> Option<usize> {
    if a.len() != b.len() {
        return Some(a.len().min(b.len()));
    }
    a.iter().zip(b).position(|(x, y)| x != y)
}

/// gguf-py's dequantization, bit for bit, on every backend's `dequantize_row`.
#[test]
fn dequantization_matches_gguf_py() {
    let types = [
        (GgmlType::F16, "f16"),
        (GgmlType::BF16, "bf16"),
        (GgmlType::Q4_0, "q4_0"),
        (GgmlType::Q4_1, "q4_1"),
        (GgmlType::Q5_0, "q5_0"),
        (GgmlType::Q5_1, "q5_1"),
        (GgmlType::Q8_0, "q8_0"),
        (GgmlType::IQ4_NL, "iq4_nl"),
    ];
    for k in tables() {
        for (t, name) in types {
            let blocks = fixture(&format!("quant/{name}.blocks.bin"));
            let want = f32s(&fixture(&format!("quant/{name}.f32.bin")));
            assert_eq!(t.row_bytes(want.len()), Some(blocks.len()), "{name} sizes");
            let fk = k.format(t).unwrap_or_else(|| panic!("{t} registered"));
            let mut got = vec![f32::NAN; want.len()];
            (fk.dequantize_row)(&blocks, &mut got);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    g.to_bits(),
                    w.to_bits(),
                    "{name} [{}] value {i}: {g} vs {w}",
                    k.backend
                );
            }
        }
    }
}

/// Our Q8_0 file quantizer is ggml's `quantize_row_q8_0_ref` (gguf-py's golden).
#[test]
fn q8_0_reference_quantizer_matches_gguf_py() {
    let x = f32s(&fixture("quant/q8_0.input.f32.bin"));
    let want = fixture("quant/q8_0.quantized.bin");
    let mut got = vec![0u8; want.len()];
    q8_0::quantize_row_q8_0_ref(&x, &mut got);
    assert_eq!(first_difference(&got, &want), None);
}

/// Our reference quantizers give ggml's `quantize_row_<t>_ref` blocks.
#[test]
fn reference_quantizers_match_ggml() {
    let m = manifest();
    let len = m["ref"]["row_len"].as_u64().unwrap() as usize;
    let rows = m["ref"]["rows"].as_u64().unwrap() as usize;
    let x = f32s(&fixture("quant-b32/ref.input.f32.bin"));
    assert_eq!(x.len(), rows * len);
    type Quantizer = fn(&[f32], &mut [u8]);
    let quantizers: [(&str, GgmlType, Quantizer); 4] = [
        ("q4_0", GgmlType::Q4_0, q4_0::quantize_row_q4_0_ref),
        ("q4_1", GgmlType::Q4_1, q4_1::quantize_row_q4_1_ref),
        ("q5_0", GgmlType::Q5_0, q5_0::quantize_row_q5_0_ref),
        ("q5_1", GgmlType::Q5_1, q5_1::quantize_row_q5_1_ref),
    ];
    for (name, t, quantize) in quantizers {
        let want = fixture(&format!("quant-b32/{name}.ref.blocks.bin"));
        let row_bytes = t.row_bytes(len).unwrap();
        assert_eq!(want.len(), rows * row_bytes);
        for r in 0..rows {
            let mut got = vec![0u8; row_bytes];
            quantize(&x[r * len..(r + 1) * len], &mut got);
            let w = &want[r * row_bytes..(r + 1) * row_bytes];
            if let Some(i) = first_difference(&got, w) {
                panic!(
                    "{name} row {r}: byte {i} (block {}) differs: {} vs {}",
                    i / t.block_bytes(),
                    got[i],
                    w[i]
                );
            }
        }
    }
}

/// Every backend's activation quantizers give the x86 CPU backend's bytes.
#[test]
fn activation_quantizers_match_ggml_x86() {
    let m = manifest();
    let len = m["act"]["row_len"].as_u64().unwrap() as usize;
    let rows = m["act"]["rows"].as_u64().unwrap() as usize;
    let x = f32s(&fixture("quant-b32/act.input.f32.bin"));
    assert_eq!(x.len(), rows * len);
    for (t, file) in [
        (GgmlType::Q8_0, "q8_0.act.bin"),
        (GgmlType::Q8_1, "q8_1.act.bin"),
        (GgmlType::F16, "f16.act.bin"),
        (GgmlType::BF16, "bf16.act.bin"),
    ] {
        let want = fixture(&format!("quant-b32/{file}"));
        let row_bytes = t.row_bytes(len).unwrap();
        assert_eq!(want.len(), rows * row_bytes, "{file}");
        for k in tables() {
            let ak = k
                .act(t)
                .unwrap_or_else(|| panic!("{t} quantizer registered"));
            for r in 0..rows {
                let mut got = vec![0u8; row_bytes];
                (ak.quantize_row)(&x[r * len..(r + 1) * len], &mut got);
                let w = &want[r * row_bytes..(r + 1) * row_bytes];
                if let Some(i) = first_difference(&got, w) {
                    panic!(
                        "{t} row {r} ({}): {} path differs from ggml at byte {i}: {} vs {}",
                        m["act"]["rows_notes"][r.to_string()],
                        ak.path,
                        got[i],
                        w[i]
                    );
                }
            }
        }
    }
}

/// Every backend's `vec_dot` and `gemv` agree with ggml's x86 kernels.
#[test]
fn vec_dot_matches_ggml_x86() {
    let m = manifest();
    let results = &m["vec_dot"]["results"];
    let types = [
        (GgmlType::Q4_0, "q4_0"),
        (GgmlType::Q4_1, "q4_1"),
        (GgmlType::Q5_0, "q5_0"),
        (GgmlType::Q5_1, "q5_1"),
        (GgmlType::Q8_0, "q8_0"),
        (GgmlType::IQ4_NL, "iq4_nl"),
        (GgmlType::F16, "f16"),
        (GgmlType::BF16, "bf16"),
        (GgmlType::F32, "f32"),
    ];
    for k in tables() {
        for (t, name) in types {
            let r = &results[name];
            let rows = r["rows"].as_u64().unwrap() as usize;
            let n = r["row_len"].as_u64().unwrap() as usize;
            let w = if t == GgmlType::F32 {
                fixture("quant/q8_0.f32.bin")
            } else {
                fixture(&format!("quant/{name}.blocks.bin"))
            };
            let row_bytes = t.row_bytes(n).unwrap();
            assert_eq!(w.len(), rows * row_bytes, "{name}");
            let fk = k.format(t).unwrap();
            let act_file = match fk.act {
                GgmlType::F32 => "dot.act.f32.bin".to_string(),
                a => format!("dot.act.{}.bin", a.name()),
            };
            let a = fixture(&format!("quant-b32/{act_file}"));
            let a = &a[..fk.act.row_bytes(n).unwrap()];
            // Σ|w·a| with both sides dequantized: the scale of the rounding error.
            let ak = Kernels::for_backend(pistil_kernels::Backend::Scalar).unwrap();
            let deq_act = |bytes: &[u8]| -> Vec<f32> {
                let mut v = vec![0f32; n];
                match fk.act {
                    GgmlType::Q8_1 => {
                        pistil_kernels::quants::q8_1::dequantize_row_q8_1(bytes, &mut v)
                    }
                    act => (ak.format(act).unwrap().dequantize_row)(bytes, &mut v),
                }
                v
            };
            let av = deq_act(a);
            let mut out = vec![f32::NAN; rows];
            (fk.gemv)(n, &w, row_bytes, a, &mut out);
            for row in 0..rows {
                let wr = &w[row * row_bytes..(row + 1) * row_bytes];
                let mut wv = vec![0f32; n];
                (fk.dequantize_row)(wr, &mut wv);
                let scale: f64 = wv
                    .iter()
                    .zip(&av)
                    .map(|(x, y)| (*x as f64 * *y as f64).abs())
                    .sum();
                let want = r["cpu"][row].as_f64().unwrap();
                let tol = VEC_DOT_REL * scale;
                let got = (fk.vec_dot)(n, wr, a) as f64;
                assert!(
                    (got - want).abs() <= tol,
                    "{name} row {row} [{} → {}]: vec_dot {got} vs ggml {want} (budget {tol:e})",
                    k.backend,
                    fk.path
                );
                let g = out[row] as f64;
                assert!(
                    (g - want).abs() <= tol,
                    "{name} row {row} [{}]: gemv {g} vs ggml {want}",
                    k.backend
                );
            }
        }
    }
}
