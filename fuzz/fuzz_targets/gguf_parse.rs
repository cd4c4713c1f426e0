//! Fuzz the GGUF parser: arbitrary bytes either fail with an error or give a
//! `Gguf` whose every metadata value (nested arrays included) and every
//! tensor's data can be walked without a panic.

#![no_main]

use libfuzzer_sys::fuzz_target;
use pistil_runtime::gguf::{Gguf, MetaValue};

fn walk_value(v: MetaValue<'_>, acc: &mut usize) {
    match v {
        MetaValue::Str(s) => *acc += s.len(),
        MetaValue::Array(a) => {
            let mut n = 0;
            for e in a.iter() {
                walk_value(e, acc);
                n += 1;
            }
            assert_eq!(n, a.len(), "array iterator length");
            if let Some(it) = a.strs() {
                *acc += it.map(str::len).sum::<usize>();
            }
            if let Some(it) = a.f32s() {
                *acc += it.count();
            }
            if let Some(it) = a.i32s() {
                *acc += it.count();
            }
            if let Some(it) = a.bools() {
                *acc += it.count();
            }
        }
        other => *acc += other.as_u64().unwrap_or(0) as usize & 1,
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(g) = Gguf::from_slice(data) else {
        return;
    };
    let mut acc = 0usize;
    for (key, value) in g.metadata() {
        assert!(g.get(key).is_some(), "key {key:?} not found by get");
        walk_value(value, &mut acc);
        acc += value.to_string().len();
        let _ = (
            g.get_u64(key),
            g.get_i64(key),
            g.get_f32(key),
            g.get_str(key),
            g.get_bool(key),
        );
    }
    for t in g.tensors() {
        let d = g.tensor_data(t);
        assert_eq!(d.len() as u64, t.size, "tensor {}", t.name);
        assert_eq!(g.tensor(&t.name), Some(t));
        assert_eq!(
            (g.data_offset() as u64 + t.offset) % g.alignment() as u64,
            0
        );
        acc += d.len() + t.row_len() + t.n_rows();
    }
    std::hint::black_box(acc);
});
