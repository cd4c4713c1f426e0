//! # pistil-boards
//!
//! Raspberry Pi board profiles as data (one TOML file per board, compiled in,
//! overridable by a user file), detection from the device tree, /proc/cpuinfo
//! and /proc/meminfo below a redirectable root, the memory fit check that runs
//! before a model is loaded, and the thermal policy.
//!
//! This crate knows nothing of models: the runtime hands [`fit`] plain numbers
//! ([`MemoryNeed`]) and gets back a [`FitDecision`].
//!
//! ```no_run
//! use pistil_boards::{detect, fit, DetectOptions, MemoryNeed};
//! let board = detect(&DetectOptions::from_env())?;
//! let need = MemoryNeed::new(1_117_321_312, 28_672, 150 << 20, board.settings.default_ctx);
//! let decision = fit(&board.settings, &board.facts.memory, &need, false);
//! println!("{decision}");
//! let mut governor = board.governor();
//! let threads = governor.poll(); // each token: cheap, reads the sensor ≤ 1/s
//! # let _ = threads;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Modules: [`sysroot`] (where files are read), [`revision`] (Raspberry Pi
//! revision codes), [`cpu`] (`/proc/cpuinfo`, affinity), [`memory`]
//! (`/proc/meminfo`, cgroups), [`profile`] (TOML profiles), [`detect`]
//! (choosing a profile), [`fit`] (the memory check), [`thermal`] (sensor and
//! governor).

pub mod cpu;
pub mod detect;
pub mod fit;
pub mod memory;
pub mod profile;
pub mod revision;
pub mod sysroot;
pub mod thermal;

pub use cpu::{Arch, CpuInfo};
pub use detect::{detect, Board, DetectError, DetectOptions, Facts, MatchReason, RamSource};
pub use fit::{fit, FitDecision, FitError, FitPlan, MemoryNeed, Refusal, CTX_STEP, MIN_CTX};
pub use memory::{CgroupMemory, MemoryInfo, MIB};
pub use profile::{
    BoardProfile, BoardSettings, KvType, MemoryTier, MlockPolicy, ProfileError, ProfileSet,
    ProfileSource,
};
pub use revision::RevisionCode;
pub use sysroot::Sysroot;
pub use thermal::{
    GovernorConfig, ThermalEvent, ThermalGovernor, ThermalReading, ThermalSensor, ThermalSource,
    ThrottleFlags,
};
