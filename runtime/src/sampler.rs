//! Picking the next token from the logits: llama.cpp's default sampler chain.
//!
//! ```text
//! logits ─► penalties ─► top-k ─► top-p ─► min-p ─► temperature ─► dist (mt19937)
//!            (last N)                                 (≤ 0: greedy)
//! ```
//!
//! The chain, its defaults and each step's semantics are those of llama.cpp's
//! `common_sampler` (`common/sampling.cpp`, `src/llama-sampling.cpp`):
//!
//! - **penalties** over the last `repeat_last_n` accepted tokens (64; the
//!   prompt's tokens count too, as in `llama-cli`): a positive logit of a
//!   token seen there is divided by `repeat_penalty`, a negative one
//!   multiplied; then `count × frequency_penalty + presence_penalty` is
//!   subtracted. 1.0 / 0 / 0 = off.
//! - **top-k** keeps the `k` largest logits, sorted (k ≤ 0: off).
//! - **top-p** keeps the smallest prefix of the sorted candidates whose
//!   softmax probabilities add up to at least `p` (p ≥ 1: off).
//! - **min-p** keeps the candidates with probability ≥ `p × p_max`, i.e.
//!   logit ≥ `max_logit + ln p` (p ≤ 0: off).
//! - **temperature** divides the logits; `temperature ≤ 0` is greedy (the
//!   largest logit after the penalties; lowest id on ties).
//! - **dist** draws from the softmax of what is left with a Mersenne Twister
//!   (`std::mt19937`, 32-bit, seeded with the low 32 bits of the seed) and one
//!   `uniform_real_distribution<double>` draw per token made as libstdc++ makes
//!   it (two 32-bit outputs), walking the candidates until the running sum of
//!   `exp(logit − max)` reaches `draw × total` — the same procedure as
//!   llama.cpp, so the same seed over the same candidates picks the same token.
//!
//! Every buffer is allocated by [`Sampler::new`]; sampling a token allocates
//! nothing.

use std::time::{SystemTime, UNIX_EPOCH};

/// Sampling settings of one request. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    /// Softmax temperature; ≤ 0 samples greedily. Default 0.8.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens; ≤ 0 keeps all. Default 40.
    pub top_k: i32,
    /// Nucleus sampling threshold; ≥ 1 is off. Default 0.95.
    pub top_p: f32,
    /// Drop tokens less likely than `min_p × p_max`; ≤ 0 is off. Default 0.05.
    pub min_p: f32,
    /// Repetition penalty; 1.0 is off. Default 1.0.
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at; 0 is off. Default 64.
    pub repeat_last_n: usize,
    /// Subtracted once from a recent token's logit. Default 0.
    pub presence_penalty: f32,
    /// Subtracted per occurrence from a recent token's logit. Default 0.
    pub frequency_penalty: f32,
    /// PRNG seed (its low 32 bits); `None` takes one from the clock.
    pub seed: Option<u64>,
}

impl Default for SamplingParams {
    fn default() -> SamplingParams {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            seed: None,
        }
    }
}

impl SamplingParams {
    /// Greedy decoding (temperature 0), everything else default.
    pub fn greedy() -> SamplingParams {
        SamplingParams {
            temperature: 0.0,
            ..SamplingParams::default()
        }
    }

    /// Whether any penalty is active.
    pub fn has_penalties(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.presence_penalty != 0.0
                || self.frequency_penalty != 0.0)
    }

    /// Checks the values (finite numbers, positive repeat penalty).
    pub fn validate(&self) -> Result<(), SamplerError> {
        let finite = [
            ("temperature", self.temperature),
            ("top_p", self.top_p),
            ("min_p", self.min_p),
            ("repeat_penalty", self.repeat_penalty),
            ("presence_penalty", self.presence_penalty),
            ("frequency_penalty", self.frequency_penalty),
        ];
        for (name, v) in finite {
            if !v.is_finite() {
                return Err(SamplerError::BadParam {
                    name,
                    reason: format!("{v} is not a finite number"),
                });
            }
        }
        if self.repeat_penalty <= 0.0 {
            return Err(SamplerError::BadParam {
                name: "repeat_penalty",
                reason: format!(
                    "{} must be greater than 0 (1.0 is off)",
                    self.repeat_penalty
                ),
            });
        }
        Ok(())
    }
}

/// Why no token could be sampled.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SamplerError {
    /// A setting is out of range.
    #[error("sampling option {name}: {reason}")]
    BadParam {
        /// The option.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The logits have the wrong length.
    #[error("{got} logits given, the vocabulary has {n_vocab}")]
    LogitsLength {
        /// Length given.
        got: usize,
        /// Length expected.
        n_vocab: usize,
    },
    /// Every logit is −∞ or NaN (a constraint that allows nothing, or a broken model).
    #[error("no token can be sampled: every logit is -inf or NaN")]
    NoCandidates,
}

/// One candidate token.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Candidate {
    /// Token id.
    pub id: u32,
    /// Its (penalised, scaled) logit.
    pub logit: f32,
    /// Its probability in the final distribution (after [`Sampler::sample`]).
    pub p: f32,
}

/// The Mersenne Twister MT19937 (32-bit), as C++'s `std::mt19937`.
#[derive(Clone)]
pub struct Mt19937 {
    mt: [u32; 624],
    idx: usize,
}

impl std::fmt::Debug for Mt19937 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mt19937").field("idx", &self.idx).finish()
    }
}

impl Mt19937 {
    /// Seeded as `std::mt19937(seed)`.
    pub fn new(seed: u32) -> Mt19937 {
        let mut mt = [0u32; 624];
        mt[0] = seed;
        for i in 1..624 {
            let prev = mt[i - 1];
            mt[i] = 1_812_433_253u32
                .wrapping_mul(prev ^ (prev >> 30))
                .wrapping_add(i as u32);
        }
        Mt19937 { mt, idx: 624 }
    }

    fn twist(&mut self) {
        for i in 0..624 {
            let y = (self.mt[i] & 0x8000_0000) | (self.mt[(i + 1) % 624] & 0x7fff_ffff);
            let mut v = self.mt[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.mt[i] = v;
        }
        self.idx = 0;
    }

    /// The next 32-bit output.
    pub fn next_u32(&mut self) -> u32 {
        if self.idx >= 624 {
            self.twist();
        }
        let mut y = self.mt[self.idx];
        self.idx += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^= y >> 18;
        y
    }

    /// A double in `[0, 1)`, as libstdc++'s `generate_canonical<double, 53>`
    /// over a 32-bit engine: `(a + b·2³²) / 2⁶⁴`, clamped below 1.
    pub fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32());
        let b = f64::from(self.next_u32());
        const R: f64 = 4_294_967_296.0;
        let v = (a + b * R) / (R * R);
        if v >= 1.0 {
            1.0 - f64::EPSILON / 2.0
        } else {
            v
        }
    }
}

/// A seed from the clock (for `seed: None`).
fn clock_seed() -> u32 {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    // Mix so that close clock values give unrelated seeds.
    let x = (nanos as u64) ^ ((nanos >> 64) as u64) ^ (u64::from(std::process::id()) << 32);
    let x = x.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (x >> 32) as u32
}

/// The sampler of one request: parameters, PRNG, recent-token window and the
/// candidate buffer (`[n_vocab]`, allocated once).
#[derive(Debug)]
pub struct Sampler {
    params: SamplingParams,
    n_vocab: usize,
    rng: Mt19937,
    seed: u32,
    /// `[n_vocab]` work buffer; the first `n_cand` entries are the candidates.
    cand: Vec<Candidate>,
    n_cand: usize,
    /// Ring of the last `repeat_last_n` accepted tokens.
    recent: Vec<u32>,
    recent_pos: usize,
    /// `[n_vocab]` occurrences in `recent` (empty when no penalty is active).
    counts: Vec<u32>,
}

impl Sampler {
    /// A sampler for a vocabulary of `n_vocab` logits.
    pub fn new(params: &SamplingParams, n_vocab: usize) -> Result<Sampler, SamplerError> {
        params.validate()?;
        let seed = match params.seed {
            Some(s) => s as u32,
            None => clock_seed(),
        };
        let penalties = params.has_penalties();
        Ok(Sampler {
            params: params.clone(),
            n_vocab,
            rng: Mt19937::new(seed),
            seed,
            cand: vec![
                Candidate {
                    id: 0,
                    logit: 0.0,
                    p: 0.0
                };
                n_vocab
            ],
            n_cand: 0,
            recent: Vec::with_capacity(if penalties { params.repeat_last_n } else { 0 }),
            recent_pos: 0,
            counts: if penalties {
                vec![0; n_vocab]
            } else {
                Vec::new()
            },
        })
    }

    /// The parameters.
    pub fn params(&self) -> &SamplingParams {
        &self.params
    }

    /// The 32-bit seed in use (the clock's when none was given).
    pub fn seed(&self) -> u32 {
        self.seed
    }

    /// Forgets the recent tokens and re-seeds the PRNG with the same seed.
    pub fn reset(&mut self) {
        self.rng = Mt19937::new(self.seed);
        self.recent.clear();
        self.recent_pos = 0;
        self.counts.iter_mut().for_each(|c| *c = 0);
        self.n_cand = 0;
    }

    /// Records a token of the sequence (prompt or generated) for the penalties.
    pub fn accept(&mut self, token: u32) {
        let n = self.params.repeat_last_n;
        if self.counts.is_empty() || n == 0 {
            return;
        }
        if self.recent.len() < n {
            self.recent.push(token);
        } else if let Some(slot) = self.recent.get_mut(self.recent_pos) {
            let old = std::mem::replace(slot, token);
            if let Some(c) = self.counts.get_mut(old as usize) {
                *c = c.saturating_sub(1);
            }
            self.recent_pos = (self.recent_pos + 1) % n;
        }
        if let Some(c) = self.counts.get_mut(token as usize) {
            *c += 1;
        }
    }

    /// The candidates left after the last [`sample`](Self::sample), with their
    /// final probabilities (greedy: the chosen token alone, p = 1).
    pub fn candidates(&self) -> &[Candidate] {
        &self.cand[..self.n_cand]
    }

    /// Picks the next token from `logits` (`[n_vocab]`). The penalties are
    /// applied to `logits` in place. Does not [`accept`](Self::accept) the token.
    pub fn sample(&mut self, logits: &mut [f32]) -> Result<u32, SamplerError> {
        if logits.len() != self.n_vocab {
            return Err(SamplerError::LogitsLength {
                got: logits.len(),
                n_vocab: self.n_vocab,
            });
        }
        self.apply_penalties(logits);
        let p = &self.params;
        if p.temperature <= 0.0 {
            let (id, logit) = argmax(logits).ok_or(SamplerError::NoCandidates)?;
            self.cand[0] = Candidate { id, logit, p: 1.0 };
            self.n_cand = 1;
            return Ok(id);
        }
        let (top_p, min_p, temp) = (p.top_p, p.min_p, p.temperature);
        if p.top_k <= 0 || p.top_k as usize >= self.n_vocab {
            // No top-k: top-p and min-p over the whole vocabulary without
            // sorting all of it.
            self.n_cand = whole_vocab(logits, top_p, min_p, &mut self.cand);
            if self.n_cand == 0 {
                return Err(SamplerError::NoCandidates);
            }
        } else {
            self.n_cand = top_k(logits, p.top_k as usize, &mut self.cand);
            if self.n_cand == 0 {
                return Err(SamplerError::NoCandidates);
            }
            if top_p < 1.0 {
                softmax(&mut self.cand[..self.n_cand]);
                let mut sum = 0.0f32;
                let mut keep = self.n_cand;
                for (i, c) in self.cand[..self.n_cand].iter().enumerate() {
                    sum += c.p;
                    if sum >= top_p {
                        keep = i + 1;
                        break;
                    }
                }
                self.n_cand = keep;
            }
            if min_p > 0.0 {
                let min_logit = self.cand[0].logit + min_p.ln();
                let keep = 1 + self.cand[1..self.n_cand]
                    .iter()
                    .take_while(|c| c.logit >= min_logit)
                    .count();
                self.n_cand = keep;
            }
        }
        for c in &mut self.cand[..self.n_cand] {
            c.logit /= temp;
        }
        Ok(self.dist())
    }

    /// Draws from the softmax of the candidates (sorted, first is the max).
    fn dist(&mut self) -> u32 {
        let cand = &mut self.cand[..self.n_cand];
        if cand.len() == 1 {
            cand[0].p = 1.0;
            return cand[0].id;
        }
        let max = cand[0].logit;
        let mut total = 0.0f64;
        for c in cand.iter_mut() {
            c.p = (c.logit - max).exp();
            total += f64::from(c.p);
        }
        let target = total * self.rng.next_f64();
        let mut run = 0.0f64;
        let mut chosen = None;
        for c in cand.iter_mut() {
            if chosen.is_none() {
                run += f64::from(c.p);
                if run >= target {
                    chosen = Some(c.id);
                }
            }
            c.p = (f64::from(c.p) / total) as f32;
        }
        chosen.unwrap_or(cand[cand.len() - 1].id)
    }

    fn apply_penalties(&self, logits: &mut [f32]) {
        let p = &self.params;
        if self.counts.is_empty() || !p.has_penalties() || self.recent.is_empty() {
            return;
        }
        // Each distinct recent token once: visit the ring, act on a token
        // only at its first position in the ring (≤ repeat_last_n² compares
        // would be fine too, but the counts make it one pass).
        for (i, &t) in self.recent.iter().enumerate() {
            if self.recent[..i].contains(&t) {
                continue;
            }
            let count = self.counts.get(t as usize).copied().unwrap_or(0);
            let Some(l) = logits.get_mut(t as usize) else {
                continue;
            };
            if count == 0 {
                continue;
            }
            if *l <= 0.0 {
                *l *= p.repeat_penalty;
            } else {
                *l /= p.repeat_penalty;
            }
            *l -= count as f32 * p.frequency_penalty + p.presence_penalty;
        }
    }
}

/// The largest logit and its id (lowest id on ties); `None` if all are −∞/NaN.
fn argmax(logits: &[f32]) -> Option<(u32, f32)> {
    let mut best: Option<(u32, f32)> = None;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() || l == f32::NEG_INFINITY {
            continue;
        }
        match best {
            Some((_, b)) if l <= b => {}
            _ => best = Some((i as u32, l)),
        }
    }
    best
}

/// Descending by logit, ties by ascending id (a total order: NaNs are excluded before).
fn by_logit_desc(a: &Candidate, b: &Candidate) -> std::cmp::Ordering {
    b.logit.total_cmp(&a.logit).then(a.id.cmp(&b.id))
}

/// Writes the `k` largest finite logits to `out[..n]`, sorted descending;
/// returns `n` (< k when fewer are finite).
fn top_k(logits: &[f32], k: usize, out: &mut [Candidate]) -> usize {
    if k == 0 {
        return 0;
    }
    if k <= 256 && k * 4 < logits.len() {
        // Small k: insertion into a sorted run of k while scanning the logits
        // once; almost every logit loses against the current k-th (one compare).
        // Scanning ids upwards and shifting only past strictly smaller logits
        // keeps equal logits in id order.
        let mut n = 0usize;
        for (i, &l) in logits.iter().enumerate() {
            if l.is_nan() || l == f32::NEG_INFINITY || (n == k && l <= out[k - 1].logit) {
                continue;
            }
            // The slot to fill: a new one, or the last (its entry drops out).
            let mut pos = if n < k { n } else { k - 1 };
            n = (n + 1).min(k);
            while pos > 0 && out[pos - 1].logit < l {
                out[pos] = out[pos - 1];
                pos -= 1;
            }
            out[pos] = Candidate {
                id: i as u32,
                logit: l,
                p: 0.0,
            };
        }
        return n;
    }
    // Large k: copy the finite logits, select, sort.
    let mut n = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if l.is_nan() || l == f32::NEG_INFINITY {
            continue;
        }
        out[n] = Candidate {
            id: i as u32,
            logit: l,
            p: 0.0,
        };
        n += 1;
    }
    let k = k.min(n);
    if k == 0 {
        return 0;
    }
    if k < n {
        out[..n].select_nth_unstable_by(k - 1, by_logit_desc);
    }
    out[..k].sort_unstable_by(by_logit_desc);
    k
}

/// Top-p and min-p over every finite logit (no top-k), into `out[..n]`
/// sorted descending; returns `n`.
///
/// Both keep a prefix of the sorted vocabulary (top-p by cumulative
/// probability over the whole vocabulary, min-p by logit ≥ max + ln p), so
/// applying them in either order keeps the shorter prefix. Min-p is applied
/// first, while copying; top-p first looks for its cut among the 256 largest
/// (a partial sort) and sorts everything only when it is not there — as
/// llama.cpp's top-p does.
fn whole_vocab(logits: &[f32], top_p: f32, min_p: f32, out: &mut [Candidate]) -> usize {
    let finite = |l: f32| !(l.is_nan() || l == f32::NEG_INFINITY);
    let Some(max) = logits
        .iter()
        .copied()
        .filter(|&l| finite(l))
        .reduce(f32::max)
    else {
        return 0;
    };
    let threshold = if min_p > 0.0 {
        max + min_p.ln()
    } else {
        f32::NEG_INFINITY
    };
    let mut total = 0.0f64;
    let mut n = 0usize;
    for (i, &l) in logits.iter().enumerate() {
        if !finite(l) {
            continue;
        }
        total += f64::from((l - max).exp());
        if l >= threshold {
            out[n] = Candidate {
                id: i as u32,
                logit: l,
                p: 0.0,
            };
            n += 1;
        }
    }
    let cut = |cand: &[Candidate]| -> Option<usize> {
        let mut cum = 0.0f64;
        for (i, c) in cand.iter().enumerate() {
            cum += f64::from((c.logit - max).exp()) / total;
            if cum >= f64::from(top_p) {
                return Some(i + 1);
            }
        }
        None
    };
    if top_p < 1.0 && n > 256 {
        out[..n].select_nth_unstable_by(255, by_logit_desc);
        out[..256].sort_unstable_by(by_logit_desc);
        if let Some(keep) = cut(&out[..256]) {
            return keep;
        }
    }
    out[..n].sort_unstable_by(by_logit_desc);
    if top_p < 1.0 {
        if let Some(keep) = cut(&out[..n]) {
            return keep;
        }
    }
    n
}

/// Softmax of sorted candidates into `p` (float, as llama.cpp's).
fn softmax(cand: &mut [Candidate]) {
    let Some(first) = cand.first() else {
        return;
    };
    let max = first.logit;
    let mut sum = 0.0f32;
    for c in cand.iter_mut() {
        c.p = (c.logit - max).exp();
        sum += c.p;
    }
    for c in cand.iter_mut() {
        c.p /= sum;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(t: f32, k: i32, p: f32, min_p: f32) -> SamplingParams {
        SamplingParams {
            temperature: t,
            top_k: k,
            top_p: p,
            min_p,
            seed: Some(42),
            ..SamplingParams::default()
        }
    }

    #[test]
    fn mt19937_matches_cpp() {
        // std::mt19937 default seed 5489: the 10000th output is 4123659995.
        let mut r = Mt19937::new(5489);
        let mut v = 0;
        for _ in 0..10000 {
            v = r.next_u32();
        }
        assert_eq!(v, 4_123_659_995);
        let mut r = Mt19937::new(5489);
        assert_eq!(r.next_u32(), 3_499_211_612);
        assert_eq!(r.next_u32(), 581_869_302);
    }

    #[test]
    fn top_k_small_and_large_agree() {
        let mut s = 12345u64;
        let logits: Vec<f32> = (0..5000)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                ((s >> 40) % 1000) as f32 / 37.0 // many ties
            })
            .collect();
        for k in [1, 2, 3, 40, 100, 256] {
            let mut a = vec![
                Candidate {
                    id: 0,
                    logit: 0.0,
                    p: 0.0
                };
                5000
            ];
            let mut b = a.clone();
            let na = top_k(&logits, k, &mut a);
            // Force the large-k path on the same data.
            let mut idx: Vec<usize> = (0..5000).collect();
            idx.sort_by(|&x, &y| logits[y].total_cmp(&logits[x]).then(x.cmp(&y)));
            for (j, &i) in idx.iter().take(k).enumerate() {
                b[j] = Candidate {
                    id: i as u32,
                    logit: logits[i],
                    p: 0.0,
                };
            }
            assert_eq!(na, k);
            assert_eq!(&a[..k], &b[..k], "k = {k}");
        }
    }

    #[test]
    fn greedy_picks_lowest_id_on_ties() {
        let mut s = Sampler::new(&SamplingParams::greedy(), 5).unwrap();
        let mut l = vec![1.0, 3.0, 2.0, 3.0, f32::NAN];
        assert_eq!(s.sample(&mut l).unwrap(), 1);
        let mut l = vec![f32::NEG_INFINITY; 5];
        assert_eq!(s.sample(&mut l), Err(SamplerError::NoCandidates));
        let mut l = vec![0.0; 4];
        assert!(matches!(
            s.sample(&mut l),
            Err(SamplerError::LogitsLength { got: 4, n_vocab: 5 })
        ));
    }

    #[test]
    fn filters_by_hand() {
        // logits ln(0.5), ln(0.25), ln(0.125), ln(0.0625), ln(0.0625): p = those.
        let base: Vec<f32> = [0.5f32, 0.25, 0.125, 0.0625, 0.0625]
            .iter()
            .map(|p| p.ln())
            .collect();
        let kept = |p: SamplingParams| {
            let mut s = Sampler::new(&p, 5).unwrap();
            let mut l = base.clone();
            s.sample(&mut l).unwrap();
            let mut ids: Vec<u32> = s.candidates().iter().map(|c| c.id).collect();
            ids.sort();
            (ids, s.candidates().to_vec())
        };
        // top-k 2.
        assert_eq!(kept(params(1.0, 2, 1.0, 0.0)).0, vec![0, 1]);
        // top-p 0.75: 0.5 + 0.25 = 0.75 ≥ 0.75 → two tokens.
        assert_eq!(kept(params(1.0, 0, 0.75, 0.0)).0, vec![0, 1]);
        // top-p 0.76 → three.
        assert_eq!(kept(params(1.0, 0, 0.76, 0.0)).0, vec![0, 1, 2]);
        // min-p 0.25: p ≥ 0.125 → three (0.125 = 0.25 × 0.5 exactly).
        assert_eq!(kept(params(1.0, 0, 1.0, 0.25)).0, vec![0, 1, 2]);
        // min-p 0.3 → two.
        assert_eq!(kept(params(1.0, 0, 1.0, 0.3)).0, vec![0, 1]);
        // Final probabilities renormalised: top-k 2 → 2/3, 1/3.
        let (_, c) = kept(params(1.0, 2, 1.0, 0.0));
        assert!((c[0].p - 2.0 / 3.0).abs() < 1e-6 && (c[1].p - 1.0 / 3.0).abs() < 1e-6);
        // Temperature 2 over top-k 2: p ∝ sqrt(p) → sqrt(2)/(1+sqrt(2)).
        let (_, c) = kept(params(2.0, 2, 1.0, 0.0));
        let want = 2f32.sqrt() / (1.0 + 2f32.sqrt());
        assert!((c[0].p - want).abs() < 1e-6, "{c:?}");
        // Defaults: top-k 40, top-p 0.95 → 0.5+0.25+0.125+0.0625 = 0.9375 < 0.95 → all 5;
        // min-p 0.05: all ≥ 0.025 → 5.
        let d = SamplingParams {
            seed: Some(1),
            ..SamplingParams::default()
        };
        assert_eq!(kept(d).0, vec![0, 1, 2, 3, 4]);
    }

    #[test]
    fn penalties_as_llama_cpp() {
        let p = SamplingParams {
            repeat_penalty: 2.0,
            presence_penalty: 0.5,
            frequency_penalty: 0.25,
            repeat_last_n: 3,
            temperature: 0.0,
            ..SamplingParams::default()
        };
        let mut s = Sampler::new(&p, 4).unwrap();
        for t in [0, 1, 1, 2] {
            s.accept(t); // window of 3: [1, 1, 2]; token 0 fell out
        }
        let mut l = vec![4.0, 4.0, -1.0, 3.0];
        s.sample(&mut l).unwrap();
        assert_eq!(l[0], 4.0);
        assert_eq!(l[1], 4.0 / 2.0 - 2.0 * 0.25 - 0.5);
        assert_eq!(l[2], -2.0 - 0.25 - 0.5);
        assert_eq!(l[3], 3.0);
        // Penalties off: logits untouched.
        let mut s = Sampler::new(&SamplingParams::greedy(), 4).unwrap();
        s.accept(0);
        let mut l = vec![4.0, 1.0, 1.0, 1.0];
        assert_eq!(s.sample(&mut l).unwrap(), 0);
        assert_eq!(l[0], 4.0);
    }

    #[test]
    fn same_seed_same_tokens() {
        let logits: Vec<f32> = (0..1000)
            .map(|i| ((i * 7919) % 1000) as f32 / 100.0)
            .collect();
        let run = |seed| {
            let p = SamplingParams {
                seed: Some(seed),
                top_k: 0,
                top_p: 1.0,
                min_p: 0.0,
                temperature: 3.0,
                ..SamplingParams::default()
            };
            let mut s = Sampler::new(&p, 1000).unwrap();
            (0..50)
                .map(|_| s.sample(&mut logits.clone()).unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(run(7), run(7));
        assert_ne!(run(7), run(8));
    }

    #[test]
    fn bad_params() {
        let p = SamplingParams {
            temperature: f32::NAN,
            ..SamplingParams::default()
        };
        assert!(Sampler::new(&p, 3).is_err());
        let p = SamplingParams {
            repeat_penalty: 0.0,
            ..SamplingParams::default()
        };
        assert!(Sampler::new(&p, 3).is_err());
    }
}
