//! A fake [`Backend`] for fast tests of the HTTP layer: shapes, streaming,
//! queueing, cancellation, errors and structured output — no model needed.
//!
//! It "generates" `word0 word1 …` (one word per token) with an optional
//! delay per token. Prompts steer it: one containing `think` first emits a
//! thought, `panic` panics, `fail` fails; a model named `broken` fails to
//! load. With a `format`, it samples uniformly at random among the tokens the
//! real [`JsonConstraint`] allows over a byte-level vocabulary — the worst
//! case a real model can be.

use std::ops::ControlFlow;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pistil_runtime::constraint::{JsonConstraint, TokenTable};

use crate::backend::{
    Backend, BackendError, DoneReason, Event, GenRequest, ModelDetails, ModelInfo, ModelSpec,
    Prompt, Stats, Think,
};

/// Counters tests read.
#[derive(Debug, Default)]
pub struct FakeCounters {
    /// Generations started.
    pub started: AtomicUsize,
    /// Generations cancelled by the sink.
    pub cancelled: AtomicUsize,
    /// Tokens produced.
    pub tokens: AtomicUsize,
    /// Loads.
    pub loads: AtomicUsize,
    /// Unloads.
    pub unloads: AtomicUsize,
}

/// The fake backend.
pub struct FakeBackend {
    /// Delay per token.
    pub delay: Duration,
    /// Context size.
    pub n_ctx: usize,
    /// Counters shared with the test.
    pub counters: Arc<FakeCounters>,
    loaded: Option<ModelSpec>,
    /// The previous prompt's words (prefix reuse, like the engine's KV cache).
    cache: Vec<String>,
    table: Arc<TokenTable>,
    /// Last requests seen (tests inspect them).
    pub seen: Arc<Mutex<Vec<GenRequest>>>,
}

impl FakeBackend {
    /// A fake with `delay` per token.
    pub fn new(delay: Duration) -> FakeBackend {
        // All 256 bytes and a few multi-byte pieces, then the end token.
        let mut v: Vec<Vec<u8>> = (0..=255u8).map(|b| vec![b]).collect();
        for p in [
            "{\"", "\":", "\",", "\"}", "true", "false", "null", " the", "12", "é",
        ] {
            v.push(p.as_bytes().to_vec());
        }
        v.push(Vec::new());
        let eos = (v.len() - 1) as u32;
        let table = TokenTable::build(v.len(), |i| v.get(i as usize).map(Vec::as_slice), &[eos]);
        FakeBackend {
            delay,
            n_ctx: 256,
            counters: Arc::new(FakeCounters::default()),
            loaded: None,
            cache: Vec::new(),
            table: Arc::new(table),
            seen: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn words(req: &GenRequest) -> Vec<String> {
        let text = match &req.prompt {
            Prompt::Text { text, system, .. } => {
                format!("{} {text}", system.clone().unwrap_or_default())
            }
            Prompt::Chat(msgs) => msgs
                .iter()
                .map(|m| format!("<{}> {}", m.role, m.content))
                .collect::<Vec<_>>()
                .join(" "),
        };
        text.split_whitespace().map(str::to_string).collect()
    }
}

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

impl Backend for FakeBackend {
    fn load(&mut self, spec: &ModelSpec) -> Result<ModelInfo, BackendError> {
        self.counters.loads.fetch_add(1, Ordering::SeqCst);
        if spec.name == "broken" {
            return Err(BackendError::Load {
                name: spec.name.clone(),
                detail: "not a GGUF file".into(),
            });
        }
        self.loaded = Some(spec.clone());
        self.cache.clear();
        Ok(ModelInfo {
            name: spec.name.clone(),
            path: spec.path.clone(),
            size: 1234,
            digest: "0".repeat(64),
            details: ModelDetails {
                format: "gguf".into(),
                family: "fake".into(),
                families: vec!["fake".into()],
                parameter_size: "1M".into(),
                quantization_level: "Q8_0".into(),
                ..ModelDetails::default()
            },
            n_ctx: self.n_ctx as u64,
            capabilities: vec!["completion".into(), "thinking".into()],
            ..ModelInfo::default()
        })
    }

    fn unload(&mut self) {
        self.counters.unloads.fetch_add(1, Ordering::SeqCst);
        self.loaded = None;
        self.cache.clear();
    }

    fn generate(
        &mut self,
        req: &GenRequest,
        sink: &mut dyn FnMut(Event) -> ControlFlow<()>,
    ) -> Result<Stats, BackendError> {
        let t0 = Instant::now();
        if self.loaded.is_none() {
            return Err(BackendError::Internal("no model loaded".into()));
        }
        if let Ok(mut s) = self.seen.lock() {
            s.push(req.clone());
        }
        let words = Self::words(req);
        if words.len() >= self.n_ctx {
            return Err(BackendError::PromptTooLong {
                prompt: words.len(),
                n_ctx: self.n_ctx,
            });
        }
        let joined = words.join(" ");
        if joined.contains("panic") {
            panic!("fake engine panic");
        }
        if joined.contains("fail") {
            return Err(BackendError::Internal("fake engine failure".into()));
        }
        self.counters.started.fetch_add(1, Ordering::SeqCst);
        let cached = self
            .cache
            .iter()
            .zip(&words)
            .take_while(|(a, b)| a == b)
            .count();
        self.cache = words.clone();
        let mut stats = Stats {
            prompt_tokens: words.len(),
            cached_tokens: cached,
            prompt_eval: Duration::from_micros(10 * (words.len() - cached) as u64),
            ..Stats::default()
        };
        let room = self.n_ctx - words.len();
        let max = req.max_tokens.unwrap_or(8).min(room);
        let mut emit = |ev: Event, stats: &mut Stats| -> ControlFlow<()> {
            if !self.delay.is_zero() {
                std::thread::sleep(self.delay);
            }
            stats.gen_tokens += 1;
            self.counters.tokens.fetch_add(1, Ordering::SeqCst);
            sink(ev)
        };
        let mut reason = DoneReason::Length;
        'gen: {
            if let Some(schema) = &req.format {
                let mut c = JsonConstraint::new(schema.clone(), self.table.clone(), max)
                    .map_err(|e| BackendError::BadRequest(e.to_string()))?;
                let mut rng = Rng(req.sampling.seed.unwrap_or(7) | 1);
                let mut pending: Vec<u8> = Vec::new();
                for _ in 0..max {
                    if c.is_finished() {
                        break;
                    }
                    let allowed = c
                        .allowed_tokens()
                        .map_err(|e| BackendError::Internal(e.to_string()))?;
                    let Some(&tok) =
                        allowed.get((rng.next() % allowed.len().max(1) as u64) as usize)
                    else {
                        break;
                    };
                    c.accept(tok)
                        .map_err(|e| BackendError::Internal(e.to_string()))?;
                    if self.table.is_eog(tok) {
                        break;
                    }
                    pending.extend_from_slice(self.table.bytes(tok));
                    // Whole UTF-8 only, like the engine.
                    let valid = match std::str::from_utf8(&pending) {
                        Ok(s) => s.len(),
                        Err(e) => e.valid_up_to(),
                    };
                    if valid > 0 {
                        let text = String::from_utf8_lossy(&pending[..valid]).into_owned();
                        pending.drain(..valid);
                        if emit(Event::Content(text), &mut stats).is_break() {
                            reason = DoneReason::Cancelled;
                            break 'gen;
                        }
                    }
                }
                reason = if c.is_finished() {
                    DoneReason::Stop
                } else {
                    DoneReason::Length
                };
                break 'gen;
            }
            if joined.contains("think") && req.think != Think::Off {
                for w in ["hmm", " let", " me", " think"] {
                    if emit(Event::Thinking(w.into()), &mut stats).is_break() {
                        reason = DoneReason::Cancelled;
                        break 'gen;
                    }
                }
            }
            for i in 0..max {
                let w = if i == 0 {
                    format!("word{i}")
                } else {
                    format!(" word{i}")
                };
                if req.stop.iter().any(|s| w.contains(s.as_str())) {
                    reason = DoneReason::Stop;
                    break 'gen;
                }
                if emit(Event::Content(w), &mut stats).is_break() {
                    reason = DoneReason::Cancelled;
                    break 'gen;
                }
            }
            if req.max_tokens.is_none() {
                reason = DoneReason::Stop;
            }
        }
        if reason == DoneReason::Cancelled {
            self.counters.cancelled.fetch_add(1, Ordering::SeqCst);
        }
        stats.done_reason = Some(reason);
        stats.eval = t0.elapsed();
        stats.total = t0.elapsed();
        Ok(stats)
    }
}
