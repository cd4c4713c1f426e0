//! The sampler draws from the filtered softmax: with a fixed seed, the
//! frequencies of 200 000 draws match the probabilities computed by hand
//! (top-k / top-p / min-p / temperature applied as llama.cpp does) within a
//! few standard errors, and filtered-out tokens never appear.

use pistil_runtime::sampler::{Sampler, SamplingParams};

/// Probabilities after the chain, computed directly (the test's own reference).
fn filtered(logits: &[f32], p: &SamplingParams) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..logits.len()).collect();
    idx.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]).then(a.cmp(&b)));
    if p.top_k > 0 {
        idx.truncate(p.top_k as usize);
    }
    let soft = |ids: &[usize], t: f64| -> Vec<f64> {
        let m = logits[ids[0]] as f64;
        let e: Vec<f64> = ids
            .iter()
            .map(|&i| ((logits[i] as f64 - m) / t).exp())
            .collect();
        let s: f64 = e.iter().sum();
        e.iter().map(|x| x / s).collect()
    };
    if p.top_p < 1.0 {
        let probs = soft(&idx, 1.0);
        let mut cum = 0.0;
        let mut keep = idx.len();
        for (i, q) in probs.iter().enumerate() {
            cum += q;
            if cum >= p.top_p as f64 {
                keep = i + 1;
                break;
            }
        }
        idx.truncate(keep);
    }
    if p.min_p > 0.0 {
        let min = logits[idx[0]] as f64 + (p.min_p as f64).ln();
        let keep = 1 + idx[1..]
            .iter()
            .take_while(|&&i| logits[i] as f64 >= min)
            .count();
        idx.truncate(keep);
    }
    let probs = soft(&idx, p.temperature as f64);
    let mut out = vec![0.0; logits.len()];
    for (&i, q) in idx.iter().zip(probs) {
        out[i] = q;
    }
    out
}

fn check(logits: &[f32], p: SamplingParams, draws: usize) {
    let want = filtered(logits, &p);
    let mut s = Sampler::new(&p, logits.len()).unwrap();
    let mut counts = vec![0usize; logits.len()];
    for _ in 0..draws {
        let mut l = logits.to_vec();
        counts[s.sample(&mut l).unwrap() as usize] += 1;
    }
    for (i, (&c, &q)) in counts.iter().zip(&want).enumerate() {
        let f = c as f64 / draws as f64;
        if q == 0.0 {
            assert_eq!(
                c, 0,
                "token {i} is filtered out but was drawn {c} times ({p:?})"
            );
        } else {
            let se = (q * (1.0 - q) / draws as f64).sqrt();
            assert!(
                (f - q).abs() <= 5.0 * se + 1e-4,
                "token {i}: frequency {f:.5}, probability {q:.5} (±{se:.5}) with {p:?}"
            );
        }
    }
}

fn logits() -> Vec<f32> {
    // 64 logits spread over ~8 nats, a few near-ties.
    (0..64)
        .map(|i| {
            let x = ((i * 37 + 11) % 64) as f32;
            x / 8.0 + if i % 9 == 0 { 0.01 } else { 0.0 }
        })
        .collect()
}

#[test]
fn frequencies_match_filtered_softmax() {
    let l = logits();
    let base = SamplingParams {
        seed: Some(1234),
        ..SamplingParams::default()
    };
    // llama.cpp's defaults: top-k 40, top-p 0.95, min-p 0.05, temperature 0.8.
    check(&l, base.clone(), 200_000);
    // Each filter alone.
    let only = |k: i32, tp: f32, mp: f32, t: f32| SamplingParams {
        top_k: k,
        top_p: tp,
        min_p: mp,
        temperature: t,
        ..base.clone()
    };
    check(&l, only(5, 1.0, 0.0, 1.0), 200_000);
    check(&l, only(0, 0.6, 0.0, 1.0), 200_000);
    check(&l, only(0, 1.0, 0.2, 1.0), 200_000);
    check(&l, only(0, 1.0, 0.0, 2.5), 200_000);
}

#[test]
fn a_large_vocabulary_without_top_k() {
    // The full-sort path (top-k off) over a Gemma-sized vocabulary, few draws.
    let n = 262_144;
    let l: Vec<f32> = (0..n)
        .map(|i| {
            if i % 50_000 == 7 {
                5.0 + (i / 50_000) as f32 * 0.3
            } else {
                -12.0 - (i % 13) as f32
            }
        })
        .collect();
    let p = SamplingParams {
        top_k: 0,
        top_p: 0.9,
        min_p: 0.0,
        temperature: 1.0,
        seed: Some(9),
        ..SamplingParams::default()
    };
    // Each draw sorts 262k logits: under qemu (50x slower) fewer draws (the
    // tolerance is 5 standard errors of that many draws).
    let draws = if std::env::var_os("PISTIL_UNDER_QEMU").is_some() {
        200
    } else {
        2_000
    };
    check(&l, p.clone(), draws);
    // With min-p as well (applied while copying).
    check(&l, SamplingParams { min_p: 0.5, ..p }, draws);
}
