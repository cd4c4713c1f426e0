//! Tests of the element-wise ops: every SIMD path against its scalar twin
//! (bit for bit), every op against a straightforward f64 reference (named
//! budgets), and against goldens computed by ggml itself
//! (`tests/fixtures/ops/`, see its README).

use super::*;
use crate::dispatch::CpuFeatures;

/// `expf` vs f64 `exp`, relative: ggml's routine is within 1.45 + 0.5 ulp
/// (2^-23 ≈ 1.19e-7 per ulp); 3 ulp of margin.
const EXP_REL_BUDGET: f64 = 3.6e-7;
/// SiLU/SwiGLU vs f64: the exp error plus one rounding each for `1 + e`,
/// the division and the product.
const SILU_REL_BUDGET: f64 = 6e-7;
/// Softmax vs f64, relative to each output: exp error + normalisation ...
const SOFTMAX_REL_BUDGET: f64 = 1e-6;
/// ... plus the f32 rounding of the exp argument `x*scale - max`, which
/// changes the result by `|arg| * 2^-24` relative.
const SOFTMAX_ARG_REL: f64 = 6e-8;
/// RMSNorm vs f64, relative to each output: the mean is exact to f32
/// rounding; the scale, the two products and sqrt add one rounding each.
const RMS_NORM_REL_BUDGET: f64 = 1e-6;
/// RoPE vs f64 (θ = p·base^(-2k/n) in f64), absolute, for |x| ≤ 4: the
/// rotation itself is good to a few f32 ulps ...
const ROPE_ABS_BUDGET: f64 = 2e-6;
/// ... but ggml's θ recurrence in f32 (`theta *= theta_scale`, k times) is off
/// by up to ~(k+2) ulp of θ ≤ p: up to 4·(66·2^-24)·p ≈ 1.6e-5·p on the output.
const ROPE_THETA_DRIFT_PER_POS: f64 = 1.6e-5;
/// f32 dot products vs f64, relative to `Σ|aᵢ·bᵢ|`: 16-lane f32 sums of
/// length ≤ 4096/16 plus the tree, ~n/16 ulp at worst.
const DOT_REL_BUDGET: f64 = 3e-5;
/// GELU exact vs f64 formula (tanhf ≤ 2 ulp, a handful of roundings) ...
const GELU_REL_BUDGET: f64 = 2e-6;
/// ... plus, for x < 0 where `1 + tanh(..)` cancels, one f32 ulp of that
/// sum (≤ 2^-24 absolute) times `0.5·|x|`.
const GELU_CANCEL_ABS: f64 = 6e-8;
/// Softmax vs ggml's golden: ggml uses libm `expf` on the last `n % 16`
/// entries of a row where we use its vector exp everywhere (≤ 2 ulp apart).
const SOFTMAX_GOLDEN_REL_BUDGET: f64 = 4e-7;

fn fixture(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/../tests/fixtures/ops/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn fixture_f32(name: &str) -> Vec<f32> {
    fixture(name)
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}

fn rng(seed: u64) -> impl FnMut() -> f32 {
    let mut s = seed | 1;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        (s >> 40) as f32 / (1u64 << 24) as f32 * 2.0 - 1.0
    }
}

fn all_ops() -> Vec<Ops> {
    CpuFeatures::detect()
        .available()
        .into_iter()
        .map(|b| Ops::for_backend(b).unwrap())
        .collect()
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

const LENGTHS: [usize; 9] = [0, 1, 3, 15, 16, 17, 64, 100, 4103];

#[test]
fn expf_matches_f64_and_edge_cases() {
    let mut x = -103.0f32;
    while x < 88.0 {
        let got = scalar::expf(x) as f64;
        let want = (x as f64).exp();
        assert!(
            ((got - want) / want).abs() <= EXP_REL_BUDGET || want < 1.2e-38,
            "exp({x}) = {got}, want {want}"
        );
        x += 0.0137;
    }
    assert_eq!(scalar::expf(0.0), 1.0);
    assert_eq!(scalar::expf(-0.0), 1.0);
    assert_eq!(scalar::expf(f32::NEG_INFINITY), 0.0);
    assert_eq!(scalar::expf(-200.0), 0.0);
    assert_eq!(scalar::expf(f32::INFINITY), f32::INFINITY);
    assert_eq!(scalar::expf(100.0), f32::INFINITY);
    assert!(scalar::expf(f32::NAN).is_nan());
    // Subnormal results are rounded once, not flushed.
    let s = scalar::expf(-100.0);
    assert!(s > 0.0 && s < f32::MIN_POSITIVE);
}

#[test]
fn simd_equals_scalar_bit_for_bit() {
    let sc = Ops::scalar();
    for ops in all_ops() {
        let b = ops.backend;
        for &n in &LENGTHS {
            let mut r = rng(n as u64 + 3);
            // Wide range, with exp arguments from -120 to +100 and edge values.
            let mut x: Vec<f32> = (0..n).map(|_| r() * 30.0).collect();
            for (i, v) in [-120.0, 100.0, 0.0, -0.0, 88.5, -104.0, 1e-30]
                .iter()
                .enumerate()
            {
                if i < n {
                    x[i] = *v;
                }
            }
            let y: Vec<f32> = (0..n).map(|_| r() * 2.0).collect();
            let h: Vec<f16> = y.iter().map(|&v| f16::from_f32(v)).collect();

            let (mut a, mut c) = (vec![0f32; n], vec![0f32; n]);
            ops.silu(&x, &mut a);
            sc.silu(&x, &mut c);
            assert_eq!(bits(&a), bits(&c), "silu n={n} on {b}");

            ops.swiglu(&x, &y, &mut a);
            sc.swiglu(&x, &y, &mut c);
            assert_eq!(bits(&a), bits(&c), "swiglu n={n} on {b}");

            let (mut ea, mut ec) = (x.clone(), x.clone());
            let max = 3.5;
            let (sa, sc_) = (ops.exp_sum(&mut ea, max), sc.exp_sum(&mut ec, max));
            assert_eq!(bits(&ea), bits(&ec), "exp_sum values n={n} on {b}");
            assert_eq!(sa.to_bits(), sc_.to_bits(), "exp_sum sum n={n} on {b}");

            assert_eq!(
                ops.dot(&x, &y).to_bits(),
                sc.dot(&x, &y).to_bits(),
                "dot n={n} {b}"
            );
            assert_eq!(
                ops.dot_f16(&x, &h).to_bits(),
                sc.dot_f16(&x, &h).to_bits(),
                "dot_f16 n={n} on {b}"
            );
            let (mut ya, mut yc) = (y.clone(), y.clone());
            ops.axpy(0.37, &x, &mut ya);
            sc.axpy(0.37, &x, &mut yc);
            assert_eq!(bits(&ya), bits(&yc), "axpy n={n} on {b}");
            ops.axpy_f16(-1.25, &h, &mut ya);
            sc.axpy_f16(-1.25, &h, &mut yc);
            assert_eq!(bits(&ya), bits(&yc), "axpy_f16 n={n} on {b}");

            let mut ia = x.clone();
            ops.silu_inplace(&mut ia);
            sc.silu(&x, &mut c);
            assert_eq!(bits(&ia), bits(&c), "silu_inplace n={n} on {b}");
            let mut ga = x.clone();
            ops.swiglu_inplace(&mut ga, &y);
            sc.swiglu(&x, &y, &mut c);
            assert_eq!(bits(&ga), bits(&c), "swiglu_inplace n={n} on {b}");
        }
    }
}

#[test]
fn ops_match_f64_references() {
    for ops in all_ops() {
        let b = ops.backend;
        let n = 1000;
        let mut r = rng(42);
        let x: Vec<f32> = (0..n).map(|_| r() * 12.0).collect();
        let y: Vec<f32> = (0..n).map(|_| r()).collect();
        let h: Vec<f16> = y.iter().map(|&v| f16::from_f32(v)).collect();

        let mut out = vec![0f32; n];
        ops.silu(&x, &mut out);
        for (&o, &v) in out.iter().zip(&x) {
            let v = v as f64;
            let want = v / (1.0 + (-v).exp());
            assert!(
                (o as f64 - want).abs() <= SILU_REL_BUDGET * want.abs() + 1e-30,
                "silu({v}) on {b}"
            );
        }
        ops.swiglu(&x, &y, &mut out);
        for ((&o, &v), &u) in out.iter().zip(&x).zip(&y) {
            let (v, u) = (v as f64, u as f64);
            let want = v / (1.0 + (-v).exp()) * u;
            assert!(
                (o as f64 - want).abs() <= SILU_REL_BUDGET * want.abs() + 1e-30,
                "swiglu on {b}"
            );
        }

        let mag: f64 = x
            .iter()
            .zip(&y)
            .map(|(&a, &c)| (a as f64 * c as f64).abs())
            .sum();
        let exact: f64 = x.iter().zip(&y).map(|(&a, &c)| a as f64 * c as f64).sum();
        assert!(
            (ops.dot(&x, &y) as f64 - exact).abs() <= DOT_REL_BUDGET * mag,
            "dot on {b}"
        );
        let exact16: f64 = x.iter().zip(&h).map(|(&a, &c)| a as f64 * c.to_f64()).sum();
        assert!(
            (ops.dot_f16(&x, &h) as f64 - exact16).abs() <= DOT_REL_BUDGET * mag,
            "dot_f16 on {b}"
        );
        let mut acc = vec![1f32; n];
        ops.axpy_f16(0.5, &h, &mut acc);
        for (&a, &v) in acc.iter().zip(&h) {
            assert_eq!(a, 1.0 + 0.5 * v.to_f32(), "axpy_f16 on {b}");
        }

        // Softmax, plain and scaled + masked.
        for (scale, masked) in [(1.0f32, false), (0.125, true)] {
            let mask: Vec<f32> = (0..n)
                .map(|i| if i % 7 == 3 { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            let mut s = x.clone();
            softmax::softmax_with(&ops, &mut s, scale, masked.then_some(&mask[..]));
            let w: Vec<f64> = x
                .iter()
                .zip(&mask)
                .map(|(&v, &m)| v as f64 * scale as f64 + if masked { m as f64 } else { 0.0 })
                .collect();
            let mx = w.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let sum: f64 = w.iter().map(|&v| (v - mx).exp()).sum();
            for (&o, &v) in s.iter().zip(&w) {
                let want = (v - mx).exp() / sum;
                if want == 0.0 {
                    assert_eq!(o, 0.0, "masked entry on {b}");
                    continue;
                }
                assert!(
                    (o as f64 - want).abs()
                        <= (SOFTMAX_REL_BUDGET + SOFTMAX_ARG_REL * (v - mx).abs()) * want + 1e-38,
                    "softmax on {b}: {o} vs {want}"
                );
            }
            let total: f64 = s.iter().map(|&v| v as f64).sum();
            assert!((total - 1.0).abs() < 1e-5);
        }
    }
    let mut all_masked = vec![f32::NEG_INFINITY; 5];
    softmax::softmax(&mut all_masked);
    assert_eq!(all_masked, vec![0.0; 5]);
}

#[test]
fn rms_norm_matches_f64() {
    let mut r = rng(5);
    for n in [1, 16, 1536, 4099] {
        let x: Vec<f32> = (0..n).map(|_| r() * 3.0).collect();
        let w: Vec<f32> = (0..n).map(|_| 1.0 + r()).collect();
        let eps = 1e-6;
        let mut out = vec![0f32; n];
        rms_norm(&x, &w, eps, &mut out);
        let ms: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / n as f64;
        let s = 1.0 / (ms + eps as f64).sqrt();
        for ((&o, &v), &g) in out.iter().zip(&x).zip(&w) {
            let want = v as f64 * s * g as f64;
            assert!((o as f64 - want).abs() <= RMS_NORM_REL_BUDGET * want.abs() + 1e-30);
        }
        let mut y = x.clone();
        rms_norm_inplace(&mut y, &w, eps);
        assert_eq!(bits(&y), bits(&out));
    }
}

#[test]
fn gelu_exact_matches_f64() {
    let mut x = -12.0f32;
    while x < 12.0 {
        let v = x as f64;
        let want = 0.5
            * v
            * (1.0 + ((2.0 / std::f64::consts::PI).sqrt() * v * (1.0 + 0.044715 * v * v)).tanh());
        let got = gelu::gelu_f32(x) as f64;
        let budget = GELU_REL_BUDGET * want.abs() + GELU_CANCEL_ABS * 0.5 * v.abs();
        assert!(
            (got - want).abs() <= budget,
            "gelu({x}) = {got}, want {want}"
        );
        x += 0.0071;
    }
}

/// f64 RoPE: θ_k = p · base^(-2k/n) / ff_k, pairs per mode.
fn rope_f64(
    x: &[f32],
    p: i32,
    n_dims: usize,
    base: f64,
    mode: RopeMode,
    ff: Option<&[f32]>,
) -> Vec<f64> {
    let mut out: Vec<f64> = x.iter().map(|&v| v as f64).collect();
    for k in 0..n_dims / 2 {
        let mut theta = p as f64 * base.powf(-2.0 * k as f64 / n_dims as f64);
        if let Some(ff) = ff {
            theta /= ff[k] as f64;
        }
        let (i, j) = match mode {
            RopeMode::Normal => (2 * k, 2 * k + 1),
            RopeMode::Neox => (k, k + n_dims / 2),
        };
        let (x0, x1) = (x[i] as f64, x[j] as f64);
        out[i] = x0 * theta.cos() - x1 * theta.sin();
        out[j] = x0 * theta.sin() + x1 * theta.cos();
    }
    out
}

#[test]
fn rope_matches_f64() {
    let mut r = rng(9);
    let ff: Vec<f32> = (0..64).map(|_| 1.0 + 3.0 * (r() + 1.0)).collect();
    for mode in [RopeMode::Normal, RopeMode::Neox] {
        for (n_dims, head_dim) in [(128, 128), (64, 128), (32, 64)] {
            for use_ff in [false, true] {
                let params = RopeParams::new(mode, n_dims, 10000.0);
                let ffs = use_ff.then_some(&ff[..n_dims / 2]);
                let mut cache = RopeCache::new(params, ffs).unwrap();
                for p in [0, 1, 17, 1000] {
                    cache.set_position(p);
                    let x: Vec<f32> = (0..2 * head_dim).map(|_| r() * 4.0).collect();
                    let mut y = x.clone();
                    cache.apply_heads(&mut y, head_dim);
                    for h in 0..2 {
                        let xs = &x[h * head_dim..(h + 1) * head_dim];
                        let want = rope_f64(xs, p, n_dims, 10000.0, mode, ffs);
                        for (i, (&g, &w)) in y[h * head_dim..].iter().zip(&want).enumerate() {
                            assert!(
                                (g as f64 - w).abs()
                                    <= ROPE_ABS_BUDGET + ROPE_THETA_DRIFT_PER_POS * p as f64,
                                "{mode:?} n_dims {n_dims} ff {use_ff} pos {p} [{i}]: {g} vs {w}"
                            );
                            if i >= n_dims {
                                assert_eq!(g, xs[i], "unrotated tail must be untouched");
                            }
                        }
                    }
                }
            }
        }
    }
    assert!(RopeCache::new(RopeParams::new(RopeMode::Neox, 7, 1e4), None).is_err());
    assert!(RopeCache::new(RopeParams::new(RopeMode::Neox, 8, 1e4), Some(&[1.0; 3])).is_err());
    assert!(RopeCache::new(RopeParams::new(RopeMode::Neox, 8, 0.0), None).is_err());
}

// ---- goldens from ggml itself (tests/fixtures/ops, see README.md) ----

#[test]
fn gelu_table_equals_ggml_bit_for_bit() {
    let golden = fixture("gelu_table.f16.bin");
    let ours = gelu::gelu_table();
    let mut diffs = 0;
    for (i, g) in golden.chunks_exact(2).enumerate() {
        let g = u16::from_le_bytes([g[0], g[1]]);
        let o = ours[i];
        let both_nan = f16::from_bits(g).is_nan() && f16::from_bits(o).is_nan();
        if g != o && !both_nan {
            diffs += 1;
            eprintln!("gelu table [{i:#06x}]: ours {o:#06x}, ggml {g:#06x}");
        }
    }
    assert_eq!(diffs, 0);
}

#[test]
fn gelu_geglu_equal_ggml_bit_for_bit() {
    let x = fixture_f32("act.x.f32.bin");
    let up = fixture_f32("act.up.f32.bin");
    let mut out = vec![0f32; x.len()];
    gelu(&x, &mut out);
    assert_eq!(bits(&out), bits(&fixture_f32("gelu.f32.bin")));
    geglu(&x, &up, &mut out);
    assert_eq!(bits(&out), bits(&fixture_f32("geglu.f32.bin")));
}

#[test]
fn silu_swiglu_equal_ggml_bit_for_bit() {
    // 4096 elements: ggml's AVX-512 loop covers all of them with ggml_v_expf,
    // the routine every pistil backend computes.
    let x = fixture_f32("act.x.f32.bin");
    let up = fixture_f32("act.up.f32.bin");
    for ops in all_ops() {
        let mut out = vec![0f32; x.len()];
        ops.silu(&x, &mut out);
        assert_eq!(
            bits(&out),
            bits(&fixture_f32("silu.f32.bin")),
            "silu on {}",
            ops.backend
        );
        ops.swiglu(&x, &up, &mut out);
        assert_eq!(
            bits(&out),
            bits(&fixture_f32("swiglu.f32.bin")),
            "swiglu on {}",
            ops.backend
        );
    }
}

#[test]
fn rms_norm_equals_ggml_bit_for_bit() {
    let x = fixture_f32("rms_norm.x.f32.bin");
    let want = fixture_f32("rms_norm.f32.bin");
    let ones = vec![1f32; 1536];
    for (row, wrow) in x.chunks_exact(1536).zip(want.chunks_exact(1536)) {
        let mut out = vec![0f32; 1536];
        rms_norm(row, &ones, 1e-6, &mut out);
        assert_eq!(bits(&out), bits(wrow));
    }
}

#[test]
fn softmax_matches_ggml() {
    for ops in all_ops() {
        for nkv in [100usize, 256] {
            let x = fixture_f32(&format!("softmax{nkv}.x.f32.bin"));
            let mask = fixture_f32(&format!("softmax{nkv}.mask.f32.bin"));
            for (scale, masked, golden) in [
                (0.125f32, true, format!("softmax{nkv}.f32.bin")),
                (1.0, false, format!("softmax{nkv}.plain.f32.bin")),
            ] {
                let want = fixture_f32(&golden);
                for r in 0..4 {
                    let mut row = x[r * nkv..(r + 1) * nkv].to_vec();
                    let m = &mask[r * nkv..(r + 1) * nkv];
                    softmax::softmax_with(&ops, &mut row, scale, masked.then_some(m));
                    for (i, (&g, &w)) in row.iter().zip(&want[r * nkv..]).enumerate() {
                        // Exact wherever ggml used its vector exp (full 16-chunks).
                        let budget = if nkv % 16 == 0 {
                            0.0
                        } else {
                            SOFTMAX_GOLDEN_REL_BUDGET
                        };
                        assert!(
                            (g as f64 - w as f64).abs() <= budget * w as f64,
                            "{golden} row {r} [{i}] on {}: {g} vs {w}",
                            ops.backend
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn rope_equals_ggml() {
    let x = fixture_f32("rope.x.f32.bin");
    let ff = fixture_f32("rope.freq_factors.f32.bin");
    let pos: Vec<i32> = fixture("rope.pos.i32.bin")
        .chunks_exact(4)
        .map(|b| i32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect();
    let cases: [(&str, RopeParams, bool); 5] = [
        (
            "rope.normal.f32.bin",
            RopeParams::new(RopeMode::Normal, 128, 500000.0),
            false,
        ),
        (
            "rope.neox.f32.bin",
            RopeParams::new(RopeMode::Neox, 128, 1000000.0),
            false,
        ),
        (
            "rope.normal_ff.f32.bin",
            RopeParams::new(RopeMode::Normal, 128, 500000.0),
            true,
        ),
        (
            "rope.neox_partial.f32.bin",
            RopeParams::new(RopeMode::Neox, 64, 10000.0),
            false,
        ),
        (
            "rope.neox_yarn.f32.bin",
            RopeParams {
                freq_scale: 0.25,
                ext_factor: 1.0,
                n_ctx_orig: 4096,
                ..RopeParams::new(RopeMode::Neox, 128, 10000.0)
            },
            false,
        ),
    ];
    for (name, params, use_ff) in cases {
        let want = fixture_f32(name);
        let mut cache = RopeCache::new(params, use_ff.then_some(&ff[..])).unwrap();
        let mut worst = 0f64;
        let mut exact = 0;
        for (t, &p) in pos.iter().enumerate() {
            cache.set_position(p);
            let mut y = x[t * 384..(t + 1) * 384].to_vec();
            cache.apply_heads(&mut y, 128);
            for (&g, &w) in y.iter().zip(&want[t * 384..]) {
                worst = worst.max((g as f64 - w as f64).abs());
                exact += usize::from(g.to_bits() == w.to_bits());
            }
        }
        assert!(
            worst == 0.0,
            "{name}: {exact}/1920 exact, worst |diff| {worst}"
        );
    }
}
