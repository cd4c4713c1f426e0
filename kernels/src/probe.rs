//! The memory ceiling of decode: a kernel table whose weight products only
//! read their weights.
//!
//! Generating a token reads every weight once, so on most boards the token
//! rate is set by how fast the memory system delivers those bytes, not by the
//! arithmetic. [`Kernels::read_probe`] answers "how fast could decode be with
//! free arithmetic?": every weight format's `gemv` is replaced by
//! [`read_rows`], which touches each cache line of the rows it is given (one
//! load per 64 bytes) and writes zeros. Everything else (threads, chunking,
//! norms, attention, the order the matrices are read in) is the real model's,
//! so `pistil bench --ceiling` runs the same pipeline with the same bytes and
//! its t/s is the limit the real kernels can approach on this machine.
//!
//! The logits it produces are meaningless: it is for measuring only.

use crate::dispatch::{DispatchError, Kernels};
use std::sync::OnceLock;

/// Bytes between the loads of [`read_rows`]: one per cache line (64 bytes on
/// every Cortex-A core of the Pis and on x86).
const LINE: usize = 64;

/// A `gemv` that reads `out.len()` rows of `row_bytes` from `w`, one load per
/// cache line, and writes `0.0` to `out`.
pub fn read_rows(_n: usize, w: &[u8], row_bytes: usize, _a: &[u8], out: &mut [f32]) {
    let bytes = w.get(..out.len() * row_bytes).unwrap_or(w);
    let mut acc = 0u8;
    for line in bytes.chunks(LINE) {
        acc ^= line[0];
    }
    // The loads must happen: the compiler may not see through `black_box`.
    std::hint::black_box(acc);
    out.fill(0.0);
}

static PROBE: OnceLock<Kernels> = OnceLock::new();

impl Kernels {
    /// The process's kernel table ([`Kernels::try_get`]) with every weight
    /// format's `gemv` replaced by [`read_rows`] and no GEMMs (prompts also go
    /// through `gemv`): the memory ceiling of decode, for benchmarks only.
    pub fn read_probe() -> Result<&'static Kernels, &'static DispatchError> {
        let real = Kernels::try_get()?;
        Ok(PROBE.get_or_init(|| {
            let mut k = real.clone();
            k.replace_products(read_rows);
            k
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_only_its_rows_and_writes_zeros() {
        let w: Vec<u8> = (0..1000u32).map(|i| i as u8).collect();
        let mut out = vec![1.0f32; 7];
        read_rows(0, &w, 100, &[], &mut out);
        assert_eq!(out, vec![0.0; 7]);
        // Shorter data than asked for: reads what there is, never panics.
        let mut out = vec![1.0f32; 20];
        read_rows(0, &w, 100, &[], &mut out);
        assert!(out.iter().all(|&v| v == 0.0));
    }

    #[test]
    fn probe_table_replaces_every_product() {
        let real = Kernels::get();
        let probe = Kernels::read_probe().expect("the probe table");
        assert_eq!(probe.backend, real.backend);
        for fk in probe.formats() {
            assert!(std::ptr::fn_addr_eq(
                fk.gemv,
                read_rows as crate::dispatch::GemvFn
            ));
            assert!(probe.gemm(fk.weight).is_none());
            // The rest of the table (dequantization, activation quantizers) is real.
            assert!(real.format(fk.weight).is_some());
        }
        assert!(probe.formats().count() > 0);
    }
}
