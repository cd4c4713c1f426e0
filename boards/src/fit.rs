//! Will the model fit? Checked before loading, from plain numbers.
//!
//! A run needs the weights (mapped from the GGUF, so page cache that must stay
//! resident), the KV cache (`kv_per_token × ctx`) and scratch buffers
//! (activations, logits). That must fit in what can be allocated now
//! ([`MemoryInfo::effective_available`]: `MemAvailable`, capped by a cgroup)
//! minus the profile's reserve for the OS. If it does not, a shorter context is
//! tried (rounded down to a multiple of [`CTX_STEP`], never below [`MIN_CTX`]);
//! if even that does not fit, the run is refused with the numbers and a
//! smaller model to try. `force` loads anyway, with a warning.
//!
//! The caller (the runtime's planner) computes [`MemoryNeed`] from the GGUF;
//! this crate knows nothing of models.

use crate::memory::{mib, MemoryInfo};
use crate::profile::{BoardSettings, MlockPolicy};
use serde::Serialize;
use std::fmt;

/// A lowered context is a multiple of this many tokens.
pub const CTX_STEP: u32 = 256;
/// Contexts are never lowered below this (a reasoning model needs room to think).
pub const MIN_CTX: u32 = 512;

/// Catalog models to suggest when one does not fit, with their Q4_K_M file
/// sizes, largest first. (A test in `tests/tests/boards_catalog.rs` checks
/// these against the runtime's catalog.)
pub const SUGGESTIONS: &[(&str, u64)] = &[
    ("deepseek-r1:14b", 8_988_110_240),
    ("deepseek-r1:8b", 4_920_737_216),
    ("deepseek-r1:7b", 4_683_073_248),
    ("deepseek-r1:1.5b", 1_117_321_312),
    ("gemma3:270m", 253_113_024),
];

/// The largest suggested model smaller than `weights` whose rough need
/// (weights + 5% + 24 MiB for a short context and scratch) fits in `usable`.
pub fn suggest_smaller(weights: u64, usable: u64) -> Option<&'static str> {
    SUGGESTIONS
        .iter()
        .filter(|(_, w)| *w < weights)
        .find(|(_, w)| w + w / 20 + 24 * 1024 * 1024 <= usable)
        .map(|(name, _)| *name)
}

/// What a run needs, in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryNeed {
    /// Weight bytes that must be resident (the mapped tensor data).
    pub weights: u64,
    /// KV cache bytes per context token (all layers, K and V, in the chosen KV type).
    pub kv_per_token: u64,
    /// Everything else: activations, logits, per-thread buffers.
    pub scratch: u64,
    /// The context asked for, tokens.
    pub ctx_requested: u32,
    /// The model's name, for messages ("deepseek-r1:1.5b"); optional.
    pub model: Option<String>,
}

impl MemoryNeed {
    /// A need without a model name.
    pub fn new(weights: u64, kv_per_token: u64, scratch: u64, ctx_requested: u32) -> MemoryNeed {
        MemoryNeed {
            weights,
            kv_per_token,
            scratch,
            ctx_requested,
            model: None,
        }
    }

    /// Names the model in messages.
    pub fn with_model(mut self, name: impl Into<String>) -> MemoryNeed {
        self.model = Some(name.into());
        self
    }

    /// KV cache bytes at `ctx` tokens.
    pub fn kv_at(&self, ctx: u32) -> u64 {
        self.kv_per_token.saturating_mul(u64::from(ctx))
    }

    /// Total bytes at `ctx` tokens.
    pub fn total_at(&self, ctx: u32) -> u64 {
        self.weights
            .saturating_add(self.scratch)
            .saturating_add(self.kv_at(ctx))
    }
}

/// The numbers of a load that goes ahead.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FitPlan {
    /// Context to allocate, tokens.
    pub ctx: u32,
    pub weights: u64,
    /// KV cache bytes at `ctx`.
    pub kv: u64,
    pub scratch: u64,
    /// weights + kv + scratch.
    pub total: u64,
    /// Effective available memory (MemAvailable capped by the cgroup).
    pub available: u64,
    /// The profile's OS reserve.
    pub reserve: u64,
    /// available − reserve.
    pub usable: u64,
    /// Whether to mlock the weights (from the profile's policy and the headroom).
    pub mlock: bool,
}

/// A refused load, with everything the message needs.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub board: String,
    pub model: Option<String>,
    pub ctx_requested: u32,
    /// The smallest context tried.
    pub ctx_floor: u32,
    pub weights: u64,
    pub kv_at_floor: u64,
    pub scratch: u64,
    /// Need at `ctx_floor`.
    pub need: u64,
    pub available: u64,
    pub reserve: u64,
    pub usable: u64,
    pub total_ram: u64,
    /// The cgroup limit, when it is what binds.
    pub cgroup_limit: Option<u64>,
    /// A smaller catalog model that would fit, if any.
    pub suggestion: Option<String>,
}

/// The verdict of [`fit`].
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "verdict", rename_all = "snake_case")]
pub enum FitDecision {
    /// Fits at the requested context.
    Fits(FitPlan),
    /// Fits at a shorter context.
    ContextLowered { plan: FitPlan, requested: u32 },
    /// Does not fit; loaded anyway because of `--force`.
    Forced { plan: FitPlan, shortfall: u64 },
    /// Does not fit, even at [`MIN_CTX`].
    Refused(Refusal),
}

/// A refused load as an error (for `?`).
#[derive(Clone, Debug, thiserror::Error)]
#[error("{0}")]
pub struct FitError(pub Box<Refusal>);

fn mlock_for(policy: MlockPolicy, total: u64, usable: u64) -> bool {
    match policy {
        MlockPolicy::Never => false,
        MlockPolicy::Always => true,
        // Lock only with a quarter of the usable memory to spare: locked pages
        // cannot be reclaimed, so a tight fit must stay evictable.
        MlockPolicy::Auto => total.saturating_mul(4) <= usable.saturating_mul(3),
    }
}

/// Decides whether `need` fits on this board now. See the module docs.
pub fn fit(
    settings: &BoardSettings,
    memory: &MemoryInfo,
    need: &MemoryNeed,
    force: bool,
) -> FitDecision {
    let available = memory.effective_available();
    let reserve = settings.reserve_bytes;
    let usable = available.saturating_sub(reserve);
    let plan = |ctx: u32, mlock_ok: bool| {
        let total = need.total_at(ctx);
        FitPlan {
            ctx,
            weights: need.weights,
            kv: need.kv_at(ctx),
            scratch: need.scratch,
            total,
            available,
            reserve,
            usable,
            mlock: mlock_ok && mlock_for(settings.mlock, total, usable),
        }
    };
    let requested = need.ctx_requested;
    if need.total_at(requested) <= usable {
        return FitDecision::Fits(plan(requested, true));
    }
    if force {
        let p = plan(requested, settings.mlock == MlockPolicy::Always);
        let shortfall = p.total.saturating_sub(usable);
        return FitDecision::Forced { plan: p, shortfall };
    }
    // The longest context that fits, rounded down to a step.
    let floor = requested.min(MIN_CTX);
    let fixed = need.weights.saturating_add(need.scratch);
    if need.kv_per_token > 0 && fixed < usable {
        let max_tokens = (usable - fixed) / need.kv_per_token;
        let stepped = (max_tokens.min(u64::from(requested)) as u32) / CTX_STEP * CTX_STEP;
        if stepped >= floor && stepped < requested {
            return FitDecision::ContextLowered {
                plan: plan(stepped, true),
                requested,
            };
        }
    }
    let cgroup_limit = memory
        .cgroup
        .as_ref()
        .filter(|c| c.available() < memory.available)
        .map(|c| c.limit);
    FitDecision::Refused(Refusal {
        board: settings.board_name.clone(),
        model: need.model.clone(),
        ctx_requested: requested,
        ctx_floor: floor,
        weights: need.weights,
        kv_at_floor: need.kv_at(floor),
        scratch: need.scratch,
        need: need.total_at(floor),
        available,
        reserve,
        usable,
        total_ram: memory.total,
        cgroup_limit,
        suggestion: suggest_smaller(need.weights, usable).map(str::to_string),
    })
}

impl FitDecision {
    /// The plan to load with, unless refused.
    pub fn plan(&self) -> Option<&FitPlan> {
        match self {
            FitDecision::Fits(p) => Some(p),
            FitDecision::ContextLowered { plan, .. } | FitDecision::Forced { plan, .. } => {
                Some(plan)
            }
            FitDecision::Refused(_) => None,
        }
    }

    /// The plan, or the refusal as an error.
    pub fn into_result(self) -> Result<FitPlan, FitError> {
        match self {
            FitDecision::Fits(p) => Ok(p),
            FitDecision::ContextLowered { plan, .. } | FitDecision::Forced { plan, .. } => Ok(plan),
            FitDecision::Refused(r) => Err(FitError(Box::new(r))),
        }
    }

    /// Whether the load goes ahead.
    pub fn is_ok(&self) -> bool {
        !matches!(self, FitDecision::Refused(_))
    }
}

fn breakdown(weights: u64, kv: u64, ctx: u32, scratch: u64) -> String {
    format!(
        "weights {} MiB + KV cache {} MiB at {ctx} tokens + scratch {} MiB",
        mib(weights),
        mib(kv),
        mib(scratch)
    )
}

fn room(available: u64, reserve: u64, usable: u64) -> String {
    format!(
        "{} MiB usable ({} MiB available − {} MiB reserve)",
        mib(usable),
        mib(available),
        mib(reserve)
    )
}

impl fmt::Display for FitPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} = {} MiB of {}",
            breakdown(self.weights, self.kv, self.ctx, self.scratch),
            mib(self.total),
            room(self.available, self.reserve, self.usable)
        )
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = self.model.as_deref().unwrap_or("the model");
        write!(
            f,
            "{what} does not fit on this {}: it needs {} MiB ({}) but only {}",
            self.board,
            mib(self.need),
            breakdown(self.weights, self.kv_at_floor, self.ctx_floor, self.scratch),
            room(self.available, self.reserve, self.usable),
        )?;
        if let Some(limit) = self.cgroup_limit {
            write!(
                f,
                "; a cgroup memory limit of {} MiB binds (container or systemd MemoryMax)",
                mib(limit)
            )?;
        } else {
            write!(f, " of {} MiB RAM", mib(self.total_ram))?;
        }
        let fixed_fits = self.weights.saturating_add(self.scratch) < self.usable;
        if !fixed_fits {
            write!(f, ". The weights alone do not fit")?;
        } else {
            write!(f, ". Even {} tokens of context do not fit", self.ctx_floor)?;
        }
        match &self.suggestion {
            Some(m) => write!(
                f,
                ": use a smaller model such as {m}, or a smaller quantization of this one"
            )?,
            None => write!(
                f,
                ": no smaller catalog model fits either; close other programs to free memory"
            )?,
        }
        write!(f, "; --force loads it anyway")
    }
}

impl fmt::Display for FitDecision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FitDecision::Fits(p) => write!(f, "fits: {p}"),
            FitDecision::ContextLowered { plan, requested } => write!(
                f,
                "context lowered from {requested} to {} tokens to fit: {plan}",
                plan.ctx
            ),
            FitDecision::Forced { plan, shortfall } => write!(
                f,
                "forced: {} MiB short ({plan}); the system may swap or the OOM killer may end the run",
                mib(*shortfall)
            ),
            FitDecision::Refused(r) => write!(f, "{r}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::memory::MIB;
    use crate::profile::ProfileSet;

    fn settings(id: &str, ram_mb: u32) -> BoardSettings {
        let set = ProfileSet::builtin().unwrap();
        set.get(id).unwrap().0.resolve(ram_mb, Some(4))
    }

    #[test]
    fn fits_lowers_refuses() {
        let s = settings("pi4", 4096); // reserve 256 MiB
        let mem = MemoryInfo::new(3800 * MIB, 1400 * MIB); // usable 1144 MiB
                                                           // 600 MiB weights + 100 MiB scratch + 100 KiB/token.
        let need = MemoryNeed::new(600 * MIB, 100 * 1024, 100 * MIB, 4096);
        // 4096 tokens = 400 MiB: 1100 ≤ 1144 → fits.
        let d = fit(&s, &mem, &need, false);
        assert!(matches!(&d, FitDecision::Fits(p) if p.ctx == 4096), "{d}");
        // 8192 tokens = 800 MiB: 1500 > 1144 → (1144-700) MiB / 100 KiB = 4546 → 4352.
        let need8 = MemoryNeed {
            ctx_requested: 8192,
            ..need.clone()
        };
        match fit(&s, &mem, &need8, false) {
            FitDecision::ContextLowered { plan, requested } => {
                assert_eq!((plan.ctx, requested), (4352, 8192));
                assert!(plan.total <= plan.usable);
                assert_eq!(plan.ctx % CTX_STEP, 0);
            }
            d => panic!("{d}"),
        }
        // Weights bigger than usable → refused; force → forced.
        let big = MemoryNeed::new(1200 * MIB, 100 * 1024, 100 * MIB, 4096).with_model("big:1b");
        let d = fit(&s, &mem, &big, false);
        let msg = d.to_string();
        assert!(!d.is_ok());
        assert!(
            msg.contains("big:1b") && msg.contains("1144 MiB usable"),
            "{msg}"
        );
        assert!(
            msg.contains("weights alone do not fit: use a smaller model such as deepseek-r1:1.5b"),
            "{msg}"
        );
        match fit(&s, &mem, &big, true) {
            FitDecision::Forced { plan, shortfall } => {
                assert_eq!(plan.ctx, 4096);
                assert!(!plan.mlock);
                assert_eq!(shortfall, plan.total - plan.usable);
            }
            d => panic!("{d}"),
        }
    }

    #[test]
    fn never_below_the_floor() {
        let s = settings("pi4", 4096);
        let mem = MemoryInfo::new(3800 * MIB, 1000 * MIB); // usable 744 MiB
                                                           // Fixed 700 MiB leaves 44 MiB = 450 tokens at 100 KiB: below 512 → refused.
        let need = MemoryNeed::new(600 * MIB, 100 * 1024, 100 * MIB, 4096);
        let d = fit(&s, &mem, &need, false);
        let FitDecision::Refused(r) = &d else {
            panic!("{d}")
        };
        assert_eq!(r.ctx_floor, MIN_CTX);
        assert!(d.to_string().contains("Even 512 tokens"), "{d}");
        assert!(d.to_string().contains("such as gemma3:270m"), "{d}");
        // A request below the floor is its own floor.
        let need = MemoryNeed::new(600 * MIB, 100 * 1024, 100 * MIB, 300);
        assert!(matches!(fit(&s, &mem, &need, false), FitDecision::Fits(p) if p.ctx == 300));
    }

    #[test]
    fn mlock_policy() {
        let mem = MemoryInfo::new(8000 * MIB, 6000 * MIB);
        let need = MemoryNeed::new(1000 * MIB, 1024, 100 * MIB, 1024);
        let s = settings("pi5", 8192); // auto
        assert!(fit(&s, &mem, &need, false).plan().unwrap().mlock);
        let tight = MemoryNeed::new(5000 * MIB, 1024, 100 * MIB, 1024);
        assert!(!fit(&s, &mem, &tight, false).plan().unwrap().mlock);
        let s = settings("pi-zero-2-w", 512); // never
        let mem = MemoryInfo::new(420 * MIB, 340 * MIB);
        let small = MemoryNeed::new(10 * MIB, 1024, MIB, 1024);
        assert!(!fit(&s, &mem, &small, false).plan().unwrap().mlock);
    }

    #[test]
    fn cgroup_limit_is_named() {
        let s = settings("pi5", 8192);
        let mem = MemoryInfo::new(8000 * MIB, 6000 * MIB).with_cgroup(1024 * MIB, 200 * MIB, 0);
        let need =
            MemoryNeed::new(1066 * MIB, 28 * 1024, 150 * MIB, 4096).with_model("deepseek-r1:1.5b");
        let d = fit(&s, &mem, &need, false);
        let msg = d.to_string();
        assert!(!d.is_ok(), "{msg}");
        assert!(msg.contains("cgroup memory limit of 1024 MiB"), "{msg}");
        assert!(msg.contains("such as gemma3:270m"), "{msg}");
        let err = d.into_result().unwrap_err();
        assert!(err.to_string().contains("--force"));
    }

    #[test]
    fn suggestions() {
        assert_eq!(
            suggest_smaller(4_683_073_248, 3000 * MIB),
            Some("deepseek-r1:1.5b")
        );
        assert_eq!(
            suggest_smaller(1_117_321_312, 300 * MIB),
            Some("gemma3:270m")
        );
        assert_eq!(suggest_smaller(1_117_321_312, 200 * MIB), None);
        assert_eq!(suggest_smaller(253_113_024, 100 * MIB), None);
        assert_eq!(
            suggest_smaller(20_000_000_000, 12_000 * MIB),
            Some("deepseek-r1:14b")
        );
    }

    #[test]
    fn zero_kv_and_zero_ctx_do_not_divide_by_zero() {
        let s = settings("pi4", 4096);
        let mem = MemoryInfo::new(3800 * MIB, 500 * MIB);
        let need = MemoryNeed::new(600 * MIB, 0, 0, 4096);
        assert!(!fit(&s, &mem, &need, false).is_ok());
        let need = MemoryNeed::new(MIB, 0, 0, 0);
        assert!(fit(&s, &mem, &need, false).is_ok());
        let huge = MemoryNeed::new(u64::MAX, u64::MAX, u64::MAX, u32::MAX);
        assert!(!fit(&s, &mem, &huge, false).is_ok());
    }
}
