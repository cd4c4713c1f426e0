//! Test support shared by every kernel's unit tests (compiled only for `cargo test`).
//!
//! - [`Rng`]: a tiny deterministic xorshift64* generator (no `rand` needed);
//!   the same seed gives the same data on every machine and under qemu.
//! - [`synthetic`]: ggml's test signal `0.1 + 2*cos(i + offset)`
//!   (test-quantize-fns.cpp), on which ggml's error budgets are defined.
//! - Error budgets: [`MAX_QUANTIZATION_TOTAL_ERROR`] & co. (ggml's values) and
//!   [`SIMD_REL_BUDGET`] for SIMD-vs-scalar comparisons.
//! - [`check_backends`]: runs one weight format's `dequantize_row`, `vec_dot`
//!   and `gemv`, and its activation quantizer, on every backend this CPU (or
//!   qemu model) supports, and compares each with the scalar twin.
//! - Fixture readers for the gguf-py goldens in `tests/fixtures/quant/`.

// Each format's tests use the part of this toolbox they need.
#![allow(dead_code)]

use crate::dispatch::{ActKernels, Backend, CpuFeatures, FormatKernels};

/// ggml's budget for the RMS error of quantize → dequantize on [`synthetic`]
/// data (test-quantize-fns.cpp `MAX_QUANTIZATION_TOTAL_ERROR`), 4-bit and up.
pub(crate) const MAX_QUANTIZATION_TOTAL_ERROR: f64 = 0.002;
/// The same for 2-bit formats (`MAX_QUANTIZATION_TOTAL_ERROR_2BITS`).
pub(crate) const MAX_QUANTIZATION_TOTAL_ERROR_2BITS: f64 = 0.0075;
/// The same for 3-bit formats (`MAX_QUANTIZATION_TOTAL_ERROR_3BITS`).
pub(crate) const MAX_QUANTIZATION_TOTAL_ERROR_3BITS: f64 = 0.0040;
/// ggml's budget for `|vec_dot - f32 dot| / n` (`MAX_DOT_PRODUCT_ERROR`).
pub(crate) const MAX_DOT_PRODUCT_ERROR: f64 = 0.02;
/// The same for low-bit formats (`MAX_DOT_PRODUCT_ERROR_LOWBIT`).
pub(crate) const MAX_DOT_PRODUCT_ERROR_LOWBIT: f64 = 0.04;

/// SIMD vs scalar budget for integer-sum kernels: the block sums are exact
/// integers on every path, only the order of the f32 accumulation of the
/// scaled block sums differs. Measured as `|simd - scalar| <= budget * Σ|wᵢ·xᵢ|`
/// (the sum of absolute products bounds every rounding error of a sum of
/// those terms): 1e-5 ≈ 80 f32 ulps of the magnitude scale.
pub(crate) const SIMD_REL_BUDGET: f64 = 1e-5;

/// Deterministic xorshift64* pseudo-random numbers.
#[derive(Clone, Debug)]
pub(crate) struct Rng(u64);

impl Rng {
    /// A generator from a seed (any value; 0 is remapped).
    pub(crate) fn new(seed: u64) -> Rng {
        Rng((seed ^ 0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub(crate) fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub(crate) fn next_u32(&mut self) -> u32 {
        (self.next_u64() >> 32) as u32
    }

    /// Uniform in `0..n` (n > 0).
    pub(crate) fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub(crate) fn unit(&mut self) -> f32 {
        (self.next_u32() >> 8) as f32 * (1.0 / (1u32 << 24) as f32)
    }

    /// Uniform in `[lo, hi)`.
    pub(crate) fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.unit()
    }

    /// Standard normal (Box–Muller).
    pub(crate) fn normal(&mut self) -> f32 {
        let u1 = (self.unit() as f64).max(1e-12);
        let u2 = self.unit() as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }

    /// Fills `buf` with random bytes.
    pub(crate) fn fill(&mut self, buf: &mut [u8]) {
        for b in buf {
            *b = (self.next_u64() >> 56) as u8;
        }
    }

    /// `n` random bytes.
    pub(crate) fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut v = vec![0u8; n];
        self.fill(&mut v);
        v
    }

    /// `n` values uniform in `[lo, hi)`.
    pub(crate) fn f32s(&mut self, n: usize, lo: f32, hi: f32) -> Vec<f32> {
        (0..n).map(|_| self.range(lo, hi)).collect()
    }

    /// `n` normal values with standard deviation `sigma`.
    pub(crate) fn normals(&mut self, n: usize, sigma: f32) -> Vec<f32> {
        (0..n).map(|_| sigma * self.normal()).collect()
    }

    /// A positive f16 block scale of magnitude `10^U(lo_exp, hi_exp)`, like the
    /// `d`/`dmin` fields of real files (the fixtures use `10^U(-3,-1)`).
    pub(crate) fn scale_f16(&mut self, lo_exp: f32, hi_exp: f32) -> half::f16 {
        half::f16::from_f32(10f32.powf(self.range(lo_exp, hi_exp)))
    }

    /// Like [`Rng::scale_f16`] with a random sign.
    pub(crate) fn signed_scale_f16(&mut self, lo_exp: f32, hi_exp: f32) -> half::f16 {
        let s = self.scale_f16(lo_exp, hi_exp);
        if self.next_u32() & 1 == 1 {
            -s
        } else {
            s
        }
    }
}

/// ggml's synthetic test signal: `x[i] = 0.1 + 2*cos(i + offset)`.
pub(crate) fn synthetic(n: usize, offset: f32) -> Vec<f32> {
    (0..n)
        .map(|i| 0.1 + 2.0 * (i as f32 + offset).cos())
        .collect()
}

/// `Σ aᵢ·bᵢ` in f64.
pub(crate) fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(&x, &y)| x as f64 * y as f64).sum()
}

/// `Σ |aᵢ·bᵢ|` in f64: the scale of the rounding error of any way of summing `a·b`.
pub(crate) fn abs_dot_f64(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 * y as f64).abs())
        .sum()
}

/// ggml's `array_rmse`: `sqrt(Σ (aᵢ-bᵢ)²) / n`.
pub(crate) fn rmse(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let s: f64 = a
        .iter()
        .zip(b)
        .map(|(&x, &y)| (x as f64 - y as f64).powi(2))
        .sum();
    s.sqrt() / a.len() as f64
}

/// Blocks made by `f(i)` for `i in 0..count`, as the bytes a tensor would hold.
pub(crate) fn blocks<B: bytemuck::Pod>(count: usize, f: impl FnMut(usize) -> B) -> Vec<u8> {
    let v: Vec<B> = (0..count).map(f).collect();
    bytemuck::cast_slice(&v).to_vec()
}

/// Backends this CPU (or qemu CPU model) can run, scalar first.
pub(crate) fn backends() -> Vec<Backend> {
    CpuFeatures::detect().available()
}

/// Quantizes `x` with `ak` into a fresh buffer of the activation row's size.
pub(crate) fn quantize(ak: &ActKernels, x: &[f32]) -> Vec<u8> {
    let bytes = ak
        .act
        .row_bytes(x.len())
        .unwrap_or_else(|| panic!("{} rows cannot hold {} values", ak.act, x.len()));
    let mut buf = vec![0u8; bytes];
    (ak.quantize_row)(x, &mut buf);
    buf
}

/// Dequantizes `n` values of row `w` with `fk`.
pub(crate) fn dequantize(fk: &FormatKernels, n: usize, w: &[u8]) -> Vec<f32> {
    let mut out = vec![0f32; n];
    (fk.dequantize_row)(w, &mut out);
    out
}

/// Asserts `|got - want| <= tol`, naming the case.
#[track_caller]
pub(crate) fn assert_close(what: &str, got: f64, want: f64, tol: f64) {
    let err = (got - want).abs();
    assert!(
        err <= tol,
        "{what}: got {got:e}, want {want:e} (error {err:e} > budget {tol:e})"
    );
}

/// Every backend's activation quantizer must produce the scalar twin's bytes
/// exactly (one arithmetic, x86 ggml's, everywhere).
pub(crate) fn check_act_backends(select_act: fn(Backend) -> ActKernels, x: &[f32], what: &str) {
    let want = quantize(&select_act(Backend::Scalar), x);
    for b in backends() {
        let ak = select_act(b);
        assert!(ak.path <= b, "{what}: {b} selected a {} quantizer", ak.path);
        let got = quantize(&ak, x);
        if let Some(i) = got.iter().zip(&want).position(|(g, w)| g != w) {
            panic!(
                "{what}: {} quantizer ({} path) differs from scalar at byte {i}: {} vs {}",
                ak.act, ak.path, got[i], want[i]
            );
        }
    }
}

/// Runs one weight format on every available backend and compares with the
/// scalar backend:
/// - `dequantize_row` bit for bit,
/// - the activation quantizer byte for byte ([`check_act_backends`]),
/// - `vec_dot` of every row, and `gemv` over all rows and over sub-ranges of
///   1, 2, 3, … rows (to reach the tails of multi-row kernels), each within
///   `rel * Σ|wᵢ·xᵢ|` of the scalar `vec_dot` of that row.
///
/// `w` holds whole rows of `x.len()` values each, back to back; `x` holds the
/// unquantized activations.
pub(crate) fn check_backends(
    select: fn(Backend) -> FormatKernels,
    select_act: fn(Backend) -> ActKernels,
    w: &[u8],
    x: &[f32],
    rel: f64,
    what: &str,
) {
    let n = x.len();
    let scalar = select(Backend::Scalar);
    let scalar_act = select_act(Backend::Scalar);
    assert_eq!(scalar.path, Backend::Scalar, "{what}");
    assert_eq!(scalar.act, scalar_act.act, "{what}: activation type");
    let row_bytes = scalar.weight.row_bytes(n).expect("whole blocks");
    assert!(
        row_bytes > 0 && w.len().is_multiple_of(row_bytes) && !w.is_empty(),
        "{what}: bad test shape"
    );
    let rows = w.len() / row_bytes;
    check_act_backends(select_act, x, what);

    let a = quantize(&scalar_act, x);
    let row = |r: usize| &w[r * row_bytes..(r + 1) * row_bytes];
    let deq: Vec<Vec<f32>> = (0..rows).map(|r| dequantize(&scalar, n, row(r))).collect();
    let want: Vec<f64> = (0..rows)
        .map(|r| (scalar.vec_dot)(n, row(r), &a) as f64)
        .collect();
    let tol: Vec<f64> = (0..rows)
        .map(|r| rel * abs_dot_f64(&deq[r], x) + f64::from(f32::MIN_POSITIVE))
        .collect();

    for b in backends() {
        let fk = select(b);
        assert!(fk.path <= b, "{what}: {b} selected a {} kernel", fk.path);
        assert_eq!((fk.weight, fk.act), (scalar.weight, scalar.act), "{what}");
        let tag = format!("{what} [{b} → {} path]", fk.path);
        for r in 0..rows {
            let got = dequantize(&fk, n, row(r));
            let same = got
                .iter()
                .zip(&deq[r])
                .all(|(g, d)| g.to_bits() == d.to_bits());
            assert!(same, "{tag}: dequantize_row of row {r} differs from scalar");
            let v = (fk.vec_dot)(n, row(r), &a) as f64;
            assert_close(&format!("{tag}: vec_dot row {r}"), v, want[r], tol[r]);
        }
        // gemv over [start, start+len) for several lengths, so that multi-row
        // kernels run both their full groups and every tail size.
        let mut lens: Vec<usize> = (1..=rows.min(9)).collect();
        lens.push(rows);
        for len in lens {
            for start in [0, rows - len] {
                let mut out = vec![f32::NAN; len];
                (fk.gemv)(n, &w[start * row_bytes..], row_bytes, &a, &mut out);
                for (i, &o) in out.iter().enumerate() {
                    let r = start + i;
                    let name = format!("{tag}: gemv rows {start}..{} row {r}", start + len);
                    assert_close(&name, o as f64, want[r], tol[r]);
                }
            }
        }
    }
}

/// ggml's `dot_product_error` for one row: `|vec_dot(w, quantize(x)) - Σ wᵢ·xᵢ| / n`
/// with `wᵢ` the dequantized weights and `x` the unquantized activations.
pub(crate) fn dot_error(fk: &FormatKernels, ak: &ActKernels, n: usize, w: &[u8], x: &[f32]) -> f64 {
    let a = quantize(ak, x);
    let got = (fk.vec_dot)(n, w, &a) as f64;
    let want = dot_f64(&dequantize(fk, n, w), x);
    (got - want).abs() / n as f64
}

/// `tests/fixtures/<rel>` read whole (the goldens made by gguf-py; see
/// `tests/fixtures/quant/README.md`).
pub(crate) fn fixture(rel: &str) -> Vec<u8> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel);
    std::fs::read(&path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()))
}

/// Little-endian f32 values from bytes.
pub(crate) fn f32s_le(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rng_is_deterministic_and_spread() {
        let mut a = Rng::new(7);
        let mut b = Rng::new(7);
        let va: Vec<u64> = (0..16).map(|_| a.next_u64()).collect();
        let vb: Vec<u64> = (0..16).map(|_| b.next_u64()).collect();
        assert_eq!(va, vb);
        let mut r = Rng::new(1);
        let u = r.f32s(10_000, -1.0, 1.0);
        let mean = u.iter().map(|&v| v as f64).sum::<f64>() / u.len() as f64;
        assert!(mean.abs() < 0.05 && u.iter().all(|v| (-1.0..1.0).contains(v)));
        let g = r.normals(10_000, 2.0);
        let var = g.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / g.len() as f64;
        assert!((var - 4.0).abs() < 0.3, "variance {var}");
    }

    #[test]
    fn synthetic_matches_ggml_formula() {
        let s = synthetic(4, 1.0);
        assert_eq!(s[0], 0.1 + 2.0 * 1f32.cos());
        assert_eq!(s[3], 0.1 + 2.0 * 4f32.cos());
    }

    /// Under qemu the CPU model decides what dispatch may pick: the Pi 3 and
    /// Pi 4 cores have no `dotprod`, so asking for it must be an error, not a
    /// SIGILL later.
    #[test]
    fn qemu_cpu_model_gates_dotprod() {
        let Ok(cpu) = std::env::var("QEMU_CPU") else {
            return;
        };
        if !cfg!(target_arch = "aarch64") {
            return;
        }
        let f = CpuFeatures::detect();
        match cpu.as_str() {
            "cortex-a53" | "cortex-a72" => {
                assert!(!f.supports(Backend::Dotprod), "{cpu} has no dotprod");
                assert!(crate::Kernels::for_backend(Backend::Dotprod).is_err());
                assert!(f.supports(Backend::Neon));
            }
            "cortex-a76" => assert!(f.supports(Backend::Dotprod), "{cpu} has dotprod"),
            _ => {}
        }
    }
}
