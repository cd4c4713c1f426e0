//! AVX2 and AVX-512 versions of the element-wise kernels. Each computes the
//! same bits as its twin in [`super::scalar`] (same 16-lane sums, unfused
//! multiply-add in dot/axpy, fused in `exp`); tails call the scalar helpers.

use super::scalar;
use core::arch::x86_64::*;
use half::f16;

pub(crate) mod avx2 {
    use super::*;
    use scalar::exp_consts as k;

    /// ggml's vector `exp` on 8 lanes; `2^n` applied in two exact steps
    /// (`2^(n>>1)` then `2^(n - (n>>1))`), so the result is rounded once, as
    /// `_mm512_scalef_ps` does in the AVX-512 version.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) fn exp8(x: __m256) -> __m256 {
        let r = _mm256_set1_ps(k::SHIFT);
        let z = _mm256_fmadd_ps(x, _mm256_set1_ps(k::LOG2E), r);
        let n = _mm256_sub_ps(z, r);
        let b = _mm256_fnmadd_ps(
            n,
            _mm256_set1_ps(k::LN2_LO),
            _mm256_fnmadd_ps(n, _mm256_set1_ps(k::LN2_HI), x),
        );
        let u = _mm256_mul_ps(b, b);
        let j = _mm256_fmadd_ps(
            _mm256_fmadd_ps(
                _mm256_fmadd_ps(_mm256_set1_ps(k::C5), b, _mm256_set1_ps(k::C4)),
                u,
                _mm256_fmadd_ps(_mm256_set1_ps(k::C3), b, _mm256_set1_ps(k::C2)),
            ),
            u,
            _mm256_fmadd_ps(_mm256_set1_ps(k::C1), b, _mm256_set1_ps(1.0)),
        );
        let ni = _mm256_cvttps_epi32(n);
        let n1 = _mm256_srai_epi32::<1>(ni);
        let n2 = _mm256_sub_epi32(ni, n1);
        let bias = _mm256_set1_epi32(127);
        let k1 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n1, bias)));
        let k2 = _mm256_castsi256_ps(_mm256_slli_epi32::<23>(_mm256_add_epi32(n2, bias)));
        let res = _mm256_mul_ps(_mm256_mul_ps(j, k1), k2);
        let absn = _mm256_andnot_ps(_mm256_set1_ps(-0.0), n);
        let big = _mm256_cmp_ps::<_CMP_GT_OQ>(absn, _mm256_set1_ps(192.0));
        let le0 = _mm256_cmp_ps::<_CMP_LE_OQ>(n, _mm256_setzero_ps());
        let alt = _mm256_andnot_ps(le0, _mm256_set1_ps(f32::INFINITY));
        _mm256_blendv_ps(res, alt, big)
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn silu8(x: __m256) -> __m256 {
        let neg = _mm256_xor_ps(x, _mm256_set1_ps(-0.0));
        _mm256_div_ps(x, _mm256_add_ps(_mm256_set1_ps(1.0), exp8(neg)))
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn silu(x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let n8 = n / 8 * 8;
        for i in (0..n8).step_by(8) {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let v = _mm256_loadu_ps(x.as_ptr().add(i));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), silu8(v));
            }
        }
        scalar::silu(&x[n8..n], &mut out[n8..n]);
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let n = gate.len().min(up.len()).min(out.len());
        let n8 = n / 8 * 8;
        for i in (0..n8).step_by(8) {
            // SAFETY: i + 8 <= n for all three slices.
            unsafe {
                let g = _mm256_loadu_ps(gate.as_ptr().add(i));
                let u = _mm256_loadu_ps(up.as_ptr().add(i));
                _mm256_storeu_ps(out.as_mut_ptr().add(i), _mm256_mul_ps(silu8(g), u));
            }
        }
        scalar::swiglu(&gate[n8..n], &up[n8..n], &mut out[n8..n]);
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        let m = _mm256_set1_ps(max);
        let mut sum = 0f64;
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            let mut l = [0f32; 16];
            // SAFETY: c has 16 elements.
            unsafe {
                let a = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr()), m));
                let b = exp8(_mm256_sub_ps(_mm256_loadu_ps(c.as_ptr().add(8)), m));
                _mm256_storeu_ps(c.as_mut_ptr(), a);
                _mm256_storeu_ps(c.as_mut_ptr().add(8), b);
                _mm256_storeu_ps(l.as_mut_ptr(), a);
                _mm256_storeu_ps(l.as_mut_ptr().add(8), b);
            }
            sum += scalar::tree16(&l) as f64;
        }
        scalar::exp_sum_tail(chunks.into_remainder(), max, sum)
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / 16 * 16;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let (pa, pb) = (a.as_ptr().add(i), b.as_ptr().add(i));
                lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pa), _mm256_loadu_ps(pb)));
                hi = _mm256_add_ps(
                    hi,
                    _mm256_mul_ps(_mm256_loadu_ps(pa.add(8)), _mm256_loadu_ps(pb.add(8))),
                );
            }
        }
        let mut l = [0f32; 16];
        // SAFETY: l holds 16 floats.
        unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), lo);
            _mm256_storeu_ps(l.as_mut_ptr().add(8), hi);
        }
        scalar::dot_tail(&a[full..n], &b[full..n], &mut l);
        scalar::tree16(&l)
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn axpy(a: f32, x: &[f32], y: &mut [f32]) {
        let n = x.len().min(y.len());
        let n8 = n / 8 * 8;
        let va = _mm256_set1_ps(a);
        for i in (0..n8).step_by(8) {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let py = y.as_mut_ptr().add(i);
                let v = _mm256_mul_ps(va, _mm256_loadu_ps(x.as_ptr().add(i)));
                _mm256_storeu_ps(py, _mm256_add_ps(_mm256_loadu_ps(py), v));
            }
        }
        scalar::axpy(a, &x[n8..n], &mut y[n8..n]);
    }

    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    unsafe fn load8_f16(p: *const f16) -> __m256 {
        // SAFETY: the caller guarantees 8 readable f16 (16 bytes); no alignment needed.
        unsafe { _mm256_cvtph_ps(_mm_loadu_si128(p as *const __m128i)) }
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
        let n = q.len().min(k.len());
        let full = n / 16 * 16;
        let (mut lo, mut hi) = (_mm256_setzero_ps(), _mm256_setzero_ps());
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let (pq, pk) = (q.as_ptr().add(i), k.as_ptr().add(i));
                lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_loadu_ps(pq), load8_f16(pk)));
                hi = _mm256_add_ps(
                    hi,
                    _mm256_mul_ps(_mm256_loadu_ps(pq.add(8)), load8_f16(pk.add(8))),
                );
            }
        }
        let mut l = [0f32; 16];
        // SAFETY: l holds 16 floats.
        unsafe {
            _mm256_storeu_ps(l.as_mut_ptr(), lo);
            _mm256_storeu_ps(l.as_mut_ptr().add(8), hi);
        }
        scalar::dot_f16_tail(&q[full..n], &k[full..n], &mut l);
        scalar::tree16(&l)
    }

    /// # Safety
    /// The CPU must have AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub(crate) unsafe fn axpy_f16(w: f32, v: &[f16], out: &mut [f32]) {
        let n = v.len().min(out.len());
        let n8 = n / 8 * 8;
        let vw = _mm256_set1_ps(w);
        for i in (0..n8).step_by(8) {
            // SAFETY: i + 8 <= n for both slices.
            unsafe {
                let po = out.as_mut_ptr().add(i);
                let p = _mm256_mul_ps(vw, load8_f16(v.as_ptr().add(i)));
                _mm256_storeu_ps(po, _mm256_add_ps(_mm256_loadu_ps(po), p));
            }
        }
        scalar::axpy_f16(w, &v[n8..n], &mut out[n8..n]);
    }
}

pub(crate) mod avx512 {
    use super::*;
    use scalar::exp_consts as k;

    /// ggml's AVX-512 `ggml_v_expf` on 16 lanes.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) fn exp16(x: __m512) -> __m512 {
        let r = _mm512_set1_ps(k::SHIFT);
        let z = _mm512_fmadd_ps(x, _mm512_set1_ps(k::LOG2E), r);
        let n = _mm512_sub_ps(z, r);
        let b = _mm512_fnmadd_ps(
            n,
            _mm512_set1_ps(k::LN2_LO),
            _mm512_fnmadd_ps(n, _mm512_set1_ps(k::LN2_HI), x),
        );
        let u = _mm512_mul_ps(b, b);
        let j = _mm512_fmadd_ps(
            _mm512_fmadd_ps(
                _mm512_fmadd_ps(_mm512_set1_ps(k::C5), b, _mm512_set1_ps(k::C4)),
                u,
                _mm512_fmadd_ps(_mm512_set1_ps(k::C3), b, _mm512_set1_ps(k::C2)),
            ),
            u,
            _mm512_fmadd_ps(_mm512_set1_ps(k::C1), b, _mm512_set1_ps(1.0)),
        );
        let res = _mm512_scalef_ps(j, n);
        let big = _mm512_cmp_ps_mask::<_CMP_GT_OQ>(_mm512_abs_ps(n), _mm512_set1_ps(192.0));
        let le0 = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(n, _mm512_setzero_ps());
        let alt = _mm512_mask_blend_ps(le0, _mm512_set1_ps(f32::INFINITY), _mm512_setzero_ps());
        _mm512_mask_blend_ps(big, res, alt)
    }

    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    fn silu16(x: __m512) -> __m512 {
        let neg = _mm512_castsi512_ps(_mm512_xor_si512(
            _mm512_castps_si512(x),
            _mm512_set1_epi32(i32::MIN),
        ));
        _mm512_div_ps(x, _mm512_add_ps(_mm512_set1_ps(1.0), exp16(neg)))
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX2, FMA, F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) unsafe fn silu(x: &[f32], out: &mut [f32]) {
        let n = x.len().min(out.len());
        let n16 = n / 16 * 16;
        for i in (0..n16).step_by(16) {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let v = _mm512_loadu_ps(x.as_ptr().add(i));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), silu16(v));
            }
        }
        scalar::silu(&x[n16..n], &mut out[n16..n]);
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX2, FMA, F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) unsafe fn swiglu(gate: &[f32], up: &[f32], out: &mut [f32]) {
        let n = gate.len().min(up.len()).min(out.len());
        let n16 = n / 16 * 16;
        for i in (0..n16).step_by(16) {
            // SAFETY: i + 16 <= n for all three slices.
            unsafe {
                let g = _mm512_loadu_ps(gate.as_ptr().add(i));
                let u = _mm512_loadu_ps(up.as_ptr().add(i));
                _mm512_storeu_ps(out.as_mut_ptr().add(i), _mm512_mul_ps(silu16(g), u));
            }
        }
        scalar::swiglu(&gate[n16..n], &up[n16..n], &mut out[n16..n]);
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX2, FMA, F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) unsafe fn exp_sum(x: &mut [f32], max: f32) -> f64 {
        let m = _mm512_set1_ps(max);
        let mut sum = 0f64;
        let mut chunks = x.chunks_exact_mut(16);
        for c in &mut chunks {
            let mut l = [0f32; 16];
            // SAFETY: c has 16 elements.
            unsafe {
                let a = exp16(_mm512_sub_ps(_mm512_loadu_ps(c.as_ptr()), m));
                _mm512_storeu_ps(c.as_mut_ptr(), a);
                _mm512_storeu_ps(l.as_mut_ptr(), a);
            }
            sum += scalar::tree16(&l) as f64;
        }
        scalar::exp_sum_tail(chunks.into_remainder(), max, sum)
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX2, FMA, F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) unsafe fn dot(a: &[f32], b: &[f32]) -> f32 {
        let n = a.len().min(b.len());
        let full = n / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= n for both slices.
            unsafe {
                let p = _mm512_mul_ps(
                    _mm512_loadu_ps(a.as_ptr().add(i)),
                    _mm512_loadu_ps(b.as_ptr().add(i)),
                );
                acc = _mm512_add_ps(acc, p);
            }
        }
        let mut l = [0f32; 16];
        // SAFETY: l holds 16 floats.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), acc) };
        scalar::dot_tail(&a[full..n], &b[full..n], &mut l);
        scalar::tree16(&l)
    }

    /// # Safety
    /// The CPU must have AVX-512 F/BW/VL and AVX2, FMA, F16C.
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma,f16c")]
    pub(crate) unsafe fn dot_f16(q: &[f32], k: &[f16]) -> f32 {
        let n = q.len().min(k.len());
        let full = n / 16 * 16;
        let mut acc = _mm512_setzero_ps();
        for i in (0..full).step_by(16) {
            // SAFETY: i + 16 <= n for both slices (16 f16 = 32 bytes).
            unsafe {
                let kv = _mm512_cvtph_ps(_mm256_loadu_si256(k.as_ptr().add(i) as *const __m256i));
                acc = _mm512_add_ps(acc, _mm512_mul_ps(_mm512_loadu_ps(q.as_ptr().add(i)), kv));
            }
        }
        let mut l = [0f32; 16];
        // SAFETY: l holds 16 floats.
        unsafe { _mm512_storeu_ps(l.as_mut_ptr(), acc) };
        scalar::dot_f16_tail(&q[full..n], &k[full..n], &mut l);
        scalar::tree16(&l)
    }
}
