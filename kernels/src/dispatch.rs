//! CPU feature detection and the kernel table.
//!
//! The CPU is probed once, at the first call to [`Kernels::get`]; the best
//! implementation of every kernel is written into a table of plain function
//! pointers. Hot loops call through the table and never test features again.
//! One aarch64 binary therefore serves the Cortex-A53 (Zero 2 W, Pi 3), the
//! A72 (Pi 4) and the A76 with `dotprod` (Pi 5).
//!
//! `PISTIL_KERNELS=scalar|neon|dotprod|avx2|avx512` forces a path (for tests and
//! bug reports). Asking for a path this CPU cannot run is an error, not a crash.

use crate::types::{GgmlType, GGML_TYPE_COUNT};
use std::fmt;
use std::sync::OnceLock;

/// `dst[i] = value of element i` for a row of `dst.len()` elements stored in `src`.
pub type DequantizeRowFn = fn(src: &[u8], dst: &mut [f32]);
/// Quantizes a row of `src.len()` f32 values into `dst` (an activation format).
pub type QuantizeRowFn = fn(src: &[f32], dst: &mut [u8]);
/// Dot product of `n` elements: one weight row `w` with one activation row `a`
/// (already in the format's activation type).
pub type VecDotFn = fn(n: usize, w: &[u8], a: &[u8]) -> f32;
/// `out[r] = vec_dot(n, row r of w, a)` for `out.len()` consecutive rows, each
/// `row_bytes` long, starting at `w[0]`. Implementations may process several
/// rows at once to reuse the activation loads.
pub type GemvFn = fn(n: usize, w: &[u8], row_bytes: usize, a: &[u8], out: &mut [f32]);
/// Prompt-path product of `rows` weight rows (`row_bytes` apart from `w[0]`)
/// with `n_tokens` activation rows (`act_stride` bytes apart from `a[0]`):
/// `out(t, r0, v)` receives `v[i] = vec_dot(n, row r0 + i, token t)`, every
/// (row, token) exactly once. Decodes each weight block once for all the tokens.
pub type GemmFn = fn(
    n: usize,
    w: &[u8],
    row_bytes: usize,
    rows: usize,
    a: &[u8],
    act_stride: usize,
    n_tokens: usize,
    out: &mut dyn FnMut(usize, usize, &[f32]),
);

/// A family of kernel implementations, ordered from least to most demanding
/// within each architecture.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Backend {
    /// Portable Rust, always compiled: the reference every SIMD path is tested against.
    Scalar,
    /// AArch64 Advanced SIMD, ARMv8.0 base (Cortex-A53, A72).
    Neon,
    /// NEON plus the ARMv8.2 `dotprod` extension (`sdot`/`udot`; Cortex-A76).
    Dotprod,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// x86-64 AVX-512 F/BW/VL with VNNI.
    Avx512,
}

impl Backend {
    /// Name used by `PISTIL_KERNELS` and printed by `pistil board`.
    pub fn name(self) -> &'static str {
        match self {
            Backend::Scalar => "scalar",
            Backend::Neon => "neon",
            Backend::Dotprod => "dotprod",
            Backend::Avx2 => "avx2",
            Backend::Avx512 => "avx512",
        }
    }

    /// Parses a `PISTIL_KERNELS` value.
    pub fn parse(s: &str) -> Option<Backend> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" => Some(Backend::Scalar),
            "neon" => Some(Backend::Neon),
            "dotprod" | "neon-dotprod" => Some(Backend::Dotprod),
            "avx2" => Some(Backend::Avx2),
            "avx512" | "avx512vnni" => Some(Backend::Avx512),
            _ => None,
        }
    }

    /// Every backend, for listing.
    pub const ALL: [Backend; 5] = [
        Backend::Scalar,
        Backend::Neon,
        Backend::Dotprod,
        Backend::Avx2,
        Backend::Avx512,
    ];
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The CPU features that matter to the kernels, as detected at run time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuFeatures {
    pub arch: &'static str,
    pub neon: bool,
    pub dotprod: bool,
    pub fp16: bool,
    pub i8mm: bool,
    pub avx2: bool,
    pub fma: bool,
    pub f16c: bool,
    pub avx512f: bool,
    pub avx512bw: bool,
    pub avx512vl: bool,
    pub avx512vnni: bool,
}

impl CpuFeatures {
    /// Probes this CPU (std's run-time detection: HWCAP on Linux/aarch64, CPUID on x86).
    pub fn detect() -> CpuFeatures {
        #[allow(unused_mut)]
        let mut f = CpuFeatures {
            arch: std::env::consts::ARCH,
            ..CpuFeatures::default()
        };
        #[cfg(target_arch = "aarch64")]
        {
            f.neon = std::arch::is_aarch64_feature_detected!("neon");
            f.dotprod = std::arch::is_aarch64_feature_detected!("dotprod");
            f.fp16 = std::arch::is_aarch64_feature_detected!("fp16");
            f.i8mm = std::arch::is_aarch64_feature_detected!("i8mm");
        }
        #[cfg(target_arch = "x86_64")]
        {
            f.avx2 = std::arch::is_x86_feature_detected!("avx2");
            f.fma = std::arch::is_x86_feature_detected!("fma");
            f.f16c = std::arch::is_x86_feature_detected!("f16c");
            f.avx512f = std::arch::is_x86_feature_detected!("avx512f");
            f.avx512bw = std::arch::is_x86_feature_detected!("avx512bw");
            f.avx512vl = std::arch::is_x86_feature_detected!("avx512vl");
            f.avx512vnni = std::arch::is_x86_feature_detected!("avx512vnni");
        }
        f
    }

    /// Names of the features present, for display.
    pub fn names(&self) -> Vec<&'static str> {
        let all = [
            ("neon", self.neon),
            ("dotprod", self.dotprod),
            ("fp16", self.fp16),
            ("i8mm", self.i8mm),
            ("avx2", self.avx2),
            ("fma", self.fma),
            ("f16c", self.f16c),
            ("avx512f", self.avx512f),
            ("avx512bw", self.avx512bw),
            ("avx512vl", self.avx512vl),
            ("avx512vnni", self.avx512vnni),
        ];
        all.iter().filter(|(_, on)| *on).map(|(n, _)| *n).collect()
    }

    /// Whether this CPU can run `backend`'s code.
    pub fn supports(&self, backend: Backend) -> bool {
        match backend {
            Backend::Scalar => true,
            Backend::Neon => self.neon,
            Backend::Dotprod => self.neon && self.dotprod,
            Backend::Avx2 => self.avx2 && self.fma && self.f16c,
            Backend::Avx512 => {
                self.supports(Backend::Avx2)
                    && self.avx512f
                    && self.avx512bw
                    && self.avx512vl
                    && self.avx512vnni
            }
        }
    }

    /// The most capable backend this CPU supports.
    pub fn best(&self) -> Backend {
        Backend::ALL
            .iter()
            .rev()
            .copied()
            .find(|b| self.supports(*b))
            .unwrap_or(Backend::Scalar)
    }

    /// Backends this CPU can run, least demanding first.
    pub fn available(&self) -> Vec<Backend> {
        Backend::ALL
            .iter()
            .copied()
            .filter(|b| self.supports(*b))
            .collect()
    }
}

/// The kernels for one weight format, as chosen for one backend.
#[derive(Clone, Copy)]
pub struct FormatKernels {
    /// The weight type these kernels read.
    pub weight: GgmlType,
    /// The activation type `vec_dot`/`gemv` expect as their right operand
    /// (ggml's `vec_dot_type`): Q8_0, Q8_1 or Q8_K for quantized weights.
    pub act: GgmlType,
    pub dequantize_row: DequantizeRowFn,
    pub vec_dot: VecDotFn,
    pub gemv: GemvFn,
    /// Which implementation `vec_dot`/`gemv` are (a format without, say, an
    /// AVX-512 version falls back to its AVX2 one and says so here).
    pub path: Backend,
}

impl fmt::Debug for FormatKernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FormatKernels")
            .field("weight", &self.weight)
            .field("act", &self.act)
            .field("path", &self.path)
            .finish()
    }
}

/// A quantizer for an activation type, as chosen for one backend.
#[derive(Clone, Copy)]
pub struct ActKernels {
    pub act: GgmlType,
    pub quantize_row: QuantizeRowFn,
    pub path: Backend,
}

/// Why a kernel table could not be built.
#[derive(Debug, thiserror::Error)]
pub enum DispatchError {
    #[error("PISTIL_KERNELS={0:?} is not a kernel path (expected one of: scalar, neon, dotprod, avx2, avx512)")]
    UnknownBackend(String),
    #[error(
        "kernel path {requested} was asked for, but this {arch} CPU cannot run it (it has: {have})"
    )]
    Unsupported {
        requested: Backend,
        arch: &'static str,
        have: String,
    },
}

/// The kernel table: every format's best implementation on this CPU.
#[derive(Clone)]
pub struct Kernels {
    /// The backend asked for (or detected as best).
    pub backend: Backend,
    pub features: CpuFeatures,
    weights: [Option<FormatKernels>; GGML_TYPE_COUNT],
    acts: [Option<ActKernels>; GGML_TYPE_COUNT],
    gemms: [Option<GemmFn>; GGML_TYPE_COUNT],
}

impl fmt::Debug for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kernels")
            .field("backend", &self.backend)
            .field("features", &self.features.names())
            .finish()
    }
}

static KERNELS: OnceLock<Result<Kernels, DispatchError>> = OnceLock::new();

/// Whether `PISTIL_GEMM=0` switched the prompt-path GEMMs off.
fn gemm_disabled_by_env() -> bool {
    std::env::var("PISTIL_GEMM").is_ok_and(|v| v.trim() == "0")
}

impl Kernels {
    /// The process-wide table, built on first use from the detected CPU and the
    /// `PISTIL_KERNELS` override. Prompt-sized products go through the formats'
    /// GEMMs unless `PISTIL_GEMM=0`.
    pub fn try_get() -> Result<&'static Kernels, &'static DispatchError> {
        KERNELS.get_or_init(Kernels::build).as_ref()
    }

    fn build() -> Result<Kernels, DispatchError> {
        let features = CpuFeatures::detect();
        let backend = match std::env::var("PISTIL_KERNELS") {
            Ok(v) if !v.trim().is_empty() => {
                Backend::parse(&v).ok_or(DispatchError::UnknownBackend(v))?
            }
            _ => features.best(),
        };
        let mut k = Kernels::for_backend_with(backend, features)?;
        if gemm_disabled_by_env() {
            k.gemms = [None; GGML_TYPE_COUNT];
        }
        Ok(k)
    }

    /// The process-wide table. Panics only if `PISTIL_KERNELS` names a path this
    /// CPU cannot run; front ends call [`Kernels::try_get`] first to report that.
    pub fn get() -> &'static Kernels {
        match Kernels::try_get() {
            Ok(k) => k,
            Err(e) => panic!("{e}"),
        }
    }

    /// A table for an explicit backend on this CPU (tests use this to run every
    /// available path side by side).
    pub fn for_backend(backend: Backend) -> Result<Kernels, DispatchError> {
        Kernels::for_backend_with(backend, CpuFeatures::detect())
    }

    fn for_backend_with(backend: Backend, features: CpuFeatures) -> Result<Kernels, DispatchError> {
        if !features.supports(backend) {
            return Err(DispatchError::Unsupported {
                requested: backend,
                arch: features.arch,
                have: features.names().join(", "),
            });
        }
        let mut weights = [None; GGML_TYPE_COUNT];
        for select in crate::quants::WEIGHT_FORMATS {
            let k = select(backend);
            weights[k.weight.id() as usize] = Some(k);
        }
        let mut acts = [None; GGML_TYPE_COUNT];
        for select in crate::quants::ACT_FORMATS {
            let k = select(backend);
            acts[k.act.id() as usize] = Some(k);
        }
        let mut gemms = [None; GGML_TYPE_COUNT];
        for k in weights.iter().flatten() {
            gemms[k.weight.id() as usize] = crate::quants::gemm::gemm_for_type(k.weight, backend);
        }
        Ok(Kernels {
            backend,
            features,
            weights,
            acts,
            gemms,
        })
    }

    /// Replaces every weight format's `gemv` with `gemv` and drops the GEMMs
    /// (the read-only table of [`crate::probe`]).
    pub(crate) fn replace_products(&mut self, gemv: GemvFn) {
        for fk in self.weights.iter_mut().flatten() {
            fk.gemv = gemv;
        }
        self.gemms = [None; GGML_TYPE_COUNT];
    }

    /// Kernels for weights of type `t`, or `None` if pistil cannot compute with it.
    #[inline]
    pub fn format(&self, t: GgmlType) -> Option<&FormatKernels> {
        self.weights[t.id() as usize].as_ref()
    }

    /// The quantizer for activation type `t`.
    #[inline]
    pub fn act(&self, t: GgmlType) -> Option<&ActKernels> {
        self.acts[t.id() as usize].as_ref()
    }

    /// The prompt-path GEMM for weights of type `t`, if this backend has one
    /// (otherwise a prompt multiplies through `gemv`, token by token).
    #[inline]
    pub fn gemm(&self, t: GgmlType) -> Option<GemmFn> {
        self.gemms[t.id() as usize]
    }

    /// Every weight format in the table, in id order.
    pub fn formats(&self) -> impl Iterator<Item = &FormatKernels> {
        self.weights.iter().flatten()
    }

    /// Every activation quantizer in the table, in id order.
    pub fn acts(&self) -> impl Iterator<Item = &ActKernels> {
        self.acts.iter().flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn best_is_supported() {
        let f = CpuFeatures::detect();
        assert!(f.supports(f.best()));
        assert!(f.available().contains(&Backend::Scalar));
    }

    #[test]
    fn unsupported_backend_is_an_error() {
        let f = CpuFeatures::detect();
        for b in Backend::ALL {
            assert_eq!(Kernels::for_backend(b).is_ok(), f.supports(b), "{b}");
        }
    }

    /// `cargo xtask test` runs the suite under qemu with several CPU models and
    /// says which backend each must pick (cortex-a53/a72: neon, a76: dotprod);
    /// this proves one binary dispatches per CPU.
    #[test]
    fn picks_the_expected_backend() {
        if let Ok(expected) = std::env::var("PISTIL_EXPECT_BACKEND") {
            let best = CpuFeatures::detect().best();
            assert_eq!(
                best.name(),
                expected.trim(),
                "features: {:?}",
                CpuFeatures::detect().names()
            );
            // The process-wide table follows the detection unless overridden.
            if std::env::var_os("PISTIL_KERNELS").is_none() {
                assert_eq!(Kernels::get().backend, best);
            }
        }
    }

    #[test]
    fn parse_names() {
        for b in Backend::ALL {
            assert_eq!(Backend::parse(b.name()), Some(b));
        }
        assert_eq!(Backend::parse("sse9"), None);
    }
}
