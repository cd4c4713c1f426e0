//! One format's `gemv` run `reps` times over a `rows × cols` matrix on one
//! thread, for counting instructions per weight under qemu:
//!
//! ```text
//! qemu-aarch64 -cpu cortex-a76 -L /usr/aarch64-linux-gnu -plugin libinsncount.so \
//!     -d plugin -D out.txt insns_gemv q8_0 4096 640 REPS
//! ```
//!
//! Run with two values of `REPS`; (count(B) − count(A)) / ((B − A)·rows·cols)
//! is the kernel's cost per weight, set-up excluded.

use pistil_kernels::{GgmlType, Kernels};
use std::hint::black_box;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let ty = match args.get(1).map(String::as_str).unwrap_or("q8_0") {
        "q4_0" => GgmlType::Q4_0,
        "q5_0" => GgmlType::Q5_0,
        "q8_0" => GgmlType::Q8_0,
        "q4_k" => GgmlType::Q4_K,
        "q6_k" => GgmlType::Q6_K,
        other => panic!("unknown type {other}"),
    };
    let num = |i: usize, d: usize| args.get(i).map_or(d, |s| s.parse().expect("a number"));
    let (rows, cols, reps) = (num(2, 4096), num(3, 640), num(4, 1));
    let k = Kernels::get();
    let fk = k.format(ty).expect("a weight format");
    let ak = k.act(fk.act).expect("its activation format");
    let row_bytes = ty.row_bytes(cols).expect("whole blocks");
    // Bytes from a xorshift, then small positive f16 scales at every block start.
    let mut s = 0x9E37_79B9_7F4A_7C15u64;
    let mut w: Vec<u8> = (0..rows * row_bytes)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            s as u8
        })
        .collect();
    let bb = ty.block_bytes();
    let scale_at = match ty {
        GgmlType::Q4_K => 0,
        GgmlType::Q6_K => bb - 2,
        _ => 0,
    };
    for b in w.chunks_exact_mut(bb) {
        b[scale_at..scale_at + 2]
            .copy_from_slice(&half::f16::from_f32(0.01).to_bits().to_le_bytes());
    }
    let x: Vec<f32> = (0..cols)
        .map(|i| ((i * 7919) % 113) as f32 / 56.0 - 1.0)
        .collect();
    let mut a = vec![0u8; fk.act.row_bytes(cols).expect("whole blocks")];
    (ak.quantize_row)(&x, &mut a);
    let mut out = vec![0f32; rows];
    for _ in 0..reps {
        (fk.gemv)(cols, black_box(&w), row_bytes, black_box(&a), &mut out);
        black_box(&mut out);
    }
    println!("{:?} path {} sum {}", ty, fk.path, out.iter().sum::<f32>());
}
