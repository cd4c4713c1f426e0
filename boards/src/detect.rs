//! Board detection: read the facts below a sysroot, pick a profile, resolve
//! its numbers for this machine.
//!
//! Facts, in the order they are trusted:
//! 1. the Raspberry Pi revision code (`Revision` in `/proc/cpuinfo`): board
//!    type and RAM size, exact and stable across kernels;
//! 2. the device tree's `compatible` list (`raspberrypi,5-model-b`);
//! 3. the device tree's model string (`/sys/firmware/devicetree/base/model`
//!    or `/proc/device-tree/model`, NUL-terminated), or cpuinfo's `Model` line;
//! 4. the architecture from `/proc/cpuinfo` (generic profiles).
//!
//! RAM for choosing a profile's memory tier comes from the revision code, else
//! from `MemTotal` (which is below the nominal size: the GPU and firmware keep
//! some, so it is scaled by 1.15 before comparing), capped by a cgroup limit.

use crate::cpu::{self, Arch, CpuInfo};
use crate::memory::{self, MemoryError, MemoryInfo};
use crate::profile::{
    default_user_dir, BoardProfile, BoardSettings, ProfileError, ProfileSet, ProfileSource,
    PROFILE_FILE_ENV, PROFILE_ID_ENV,
};
use crate::revision::RevisionCode;
use crate::sysroot::{ReadError, Sysroot};
use crate::thermal::{GovernorConfig, ThermalGovernor, ThermalSensor};
use serde::Serialize;
use std::fmt;
use std::path::PathBuf;

/// Why detection failed.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error(transparent)]
    Memory(#[from] MemoryError),
    #[error(transparent)]
    Profile(#[from] ProfileError),
    #[error("{0} does not exist: cannot tell what CPU this is (is --sysroot right?)")]
    NoCpuinfo(PathBuf),
    #[error("no board profile matches this machine and the generic profile '{0}' is missing")]
    NoProfile(String),
}

/// Where the RAM size used to pick a memory tier came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RamSource {
    /// The Raspberry Pi revision code.
    RevisionCode,
    /// `MemTotal`, scaled up for the memory the firmware keeps.
    MemTotal,
    /// A cgroup memory limit below the machine's RAM (container, systemd unit).
    CgroupLimit,
}

/// Everything read from the system.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Facts {
    /// Device-tree model string, NUL stripped.
    pub dt_model: Option<String>,
    /// Device-tree `compatible` entries.
    pub compatible: Vec<String>,
    pub cpu: CpuInfo,
    /// The decoded revision code, if the kernel prints one.
    pub revision: Option<RevisionCode>,
    /// A `Revision` line that could not be decoded, with the reason.
    pub revision_error: Option<String>,
    pub memory: MemoryInfo,
    /// CPUs this process may use (affinity, cgroup quota), if known.
    pub usable_cpus: Option<usize>,
}

fn dt_string(root: &Sysroot, name: &str) -> Option<String> {
    ["/sys/firmware/devicetree/base/", "/proc/device-tree/"]
        .iter()
        .find_map(|d| root.read_lenient(&format!("{d}{name}")))
}

impl Facts {
    /// Reads every fact below `root`. Only `/proc/cpuinfo` and `/proc/meminfo`
    /// are required.
    pub fn read(root: &Sysroot) -> Result<Facts, DetectError> {
        let cpu = cpu::read_cpuinfo(root)?
            .ok_or_else(|| DetectError::NoCpuinfo(root.path("/proc/cpuinfo")))?;
        let memory = MemoryInfo::read(root)?;
        let dt_model = dt_string(root, "model")
            .map(|m| m.trim_end_matches('\0').trim().to_string())
            .filter(|m| !m.is_empty());
        let compatible = dt_string(root, "compatible")
            .map(|c| {
                c.split('\0')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let (revision, revision_error) = match cpu.revision.as_deref() {
            // Non-Pi Arm boards print "Revision : 0000".
            Some(r) if r.trim_start_matches('0').is_empty() => (None, None),
            Some(r) => match RevisionCode::parse(r) {
                Ok(code) => (Some(code), None),
                Err(e) => (None, Some(e.to_string())),
            },
            None => (None, None),
        };
        let (v2, _) = memory::cgroup_paths(root);
        let usable_cpus = cpu::usable_cpus(root, v2.as_deref());
        Ok(Facts {
            dt_model,
            compatible,
            cpu,
            revision,
            revision_error,
            memory,
            usable_cpus,
        })
    }

    /// The board's model string: the device tree's, else cpuinfo's `Model`.
    pub fn model(&self) -> Option<&str> {
        self.dt_model.as_deref().or(self.cpu.model.as_deref())
    }

    /// RAM in MB for choosing a memory tier, and where it came from: the
    /// board's RAM, or a cgroup limit below it (a Pi 5 8 GB in a 1 GiB
    /// container gets the 1 GB tier's model and reserve).
    pub fn ram_mb(&self) -> (u32, RamSource) {
        let board = match self.revision.as_ref().and_then(|r| r.memory_mb) {
            Some(mb) => (mb, RamSource::RevisionCode),
            None => {
                let total_mb = self.memory.total / memory::MIB;
                let scaled = total_mb.saturating_mul(115) / 100;
                (
                    u32::try_from(scaled).unwrap_or(u32::MAX),
                    RamSource::MemTotal,
                )
            }
        };
        match &self.memory.cgroup {
            Some(c) if c.limit / memory::MIB < u64::from(board.0) => (
                u32::try_from(c.limit / memory::MIB).unwrap_or(u32::MAX),
                RamSource::CgroupLimit,
            ),
            _ => board,
        }
    }

    /// CPUs the profile's threads are capped by: the usable CPUs and the
    /// cores cpuinfo lists (physical cores on x86, big cores on big.LITTLE).
    pub fn cpu_cap(&self) -> Option<usize> {
        let listed = (self.cpu.logical_cpus > 0).then(|| self.cpu.compute_cores());
        match (self.usable_cpus, listed) {
            (Some(u), Some(l)) => Some(u.min(l)),
            (u, l) => u.or(l),
        }
    }
}

/// Why a profile was chosen.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "by", content = "value", rename_all = "snake_case")]
pub enum MatchReason {
    /// `--profile-file` / `PISTIL_PROFILE_FILE`.
    ProfileFile(PathBuf),
    /// `--board ID` / `PISTIL_BOARD`.
    Requested(String),
    /// The revision code's board type.
    RevisionCode(String),
    /// A device-tree `compatible` entry.
    Compatible(String),
    /// A device-tree model prefix.
    Model(String),
    /// The CPU architecture (generic profiles).
    Arch(String),
    /// Nothing matched; the generic profile closest to this machine.
    Fallback,
}

impl fmt::Display for MatchReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MatchReason::ProfileFile(p) => write!(f, "--profile-file {}", p.display()),
            MatchReason::Requested(id) => write!(f, "requested ({id})"),
            MatchReason::RevisionCode(c) => write!(f, "revision code {c}"),
            MatchReason::Compatible(c) => write!(f, "device tree compatible {c}"),
            MatchReason::Model(m) => write!(f, "device tree model \"{m}\""),
            MatchReason::Arch(a) => write!(f, "architecture {a}"),
            MatchReason::Fallback => write!(f, "no profile matched; generic fallback"),
        }
    }
}

/// Picks the profile for `facts` from `set` (user profiles are tried first at
/// each level).
pub fn select<'a>(
    set: &'a ProfileSet,
    facts: &Facts,
) -> Result<(&'a BoardProfile, &'a ProfileSource, MatchReason), DetectError> {
    if let Some(rev) = &facts.revision {
        if rev.new_style {
            if let Some((p, s)) = set
                .iter()
                .find(|(p, _)| p.detect.board_types.contains(&rev.board_type))
            {
                return Ok((
                    p,
                    s,
                    MatchReason::RevisionCode(format!("{:x} ({})", rev.raw, rev.board_name)),
                ));
            }
        }
    }
    for c in &facts.compatible {
        if let Some((p, s)) = set
            .iter()
            .find(|(p, _)| p.detect.compatible.iter().any(|x| x == c))
        {
            return Ok((p, s, MatchReason::Compatible(c.clone())));
        }
    }
    if let Some(model) = facts.model() {
        // Longest prefix wins ("Raspberry Pi 5 Model B" over a shorter rule).
        let best = set
            .iter()
            .flat_map(|(p, s)| p.detect.models.iter().map(move |m| (p, s, m)))
            .filter(|(_, _, m)| model.starts_with(m.as_str()))
            .max_by_key(|(_, _, m)| m.len());
        if let Some((p, s, m)) = best {
            return Ok((p, s, MatchReason::Model(m.clone())));
        }
    }
    let arch = facts.cpu.arch.name();
    if let Some((p, s)) = set
        .iter()
        .find(|(p, _)| p.detect.arch.as_deref() == Some(arch))
    {
        return Ok((p, s, MatchReason::Arch(arch.to_string())));
    }
    let fallback = match facts.cpu.arch {
        Arch::Aarch64 | Arch::Arm32 => "generic-aarch64",
        Arch::X86_64 | Arch::Other => "generic-x86_64",
    };
    match set.get(fallback) {
        Ok((p, s)) => Ok((p, s, MatchReason::Fallback)),
        Err(_) => Err(DetectError::NoProfile(fallback.to_string())),
    }
}

/// What to read and which profiles to consider.
#[derive(Clone, Debug, Default)]
pub struct DetectOptions {
    pub sysroot: Sysroot,
    /// Use this profile file, whatever the board (`--profile-file`).
    pub profile_file: Option<PathBuf>,
    /// Directory of user profiles (`~/.config/pistil/boards`); `None` = none.
    pub user_dir: Option<PathBuf>,
    /// Use the profile with this id (`--board`).
    pub profile_id: Option<String>,
}

impl DetectOptions {
    /// Options from the environment: `PISTIL_SYSROOT`, `PISTIL_PROFILE_FILE`,
    /// `PISTIL_BOARD`, and the default user profile directory.
    pub fn from_env() -> DetectOptions {
        let var = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty());
        DetectOptions {
            sysroot: Sysroot::from_env(),
            profile_file: var(PROFILE_FILE_ENV).map(PathBuf::from),
            user_dir: default_user_dir(),
            profile_id: var(PROFILE_ID_ENV).and_then(|v| v.into_string().ok()),
        }
    }

    /// Only built-in profiles, reading below `root` (tests, `--sysroot`).
    pub fn at(root: impl Into<PathBuf>) -> DetectOptions {
        DetectOptions {
            sysroot: Sysroot::new(root),
            ..DetectOptions::default()
        }
    }
}

/// A detected board with its profile and resolved settings.
#[derive(Clone, Debug)]
pub struct Board {
    pub facts: Facts,
    pub profile: BoardProfile,
    pub source: ProfileSource,
    pub reason: MatchReason,
    /// RAM used to pick the tier, MB, and its origin.
    pub ram_mb: u32,
    pub ram_source: RamSource,
    pub settings: BoardSettings,
    /// Where the temperature and throttling flags are read.
    pub sensor: ThermalSensor,
}

impl Board {
    /// A thermal governor for this board, starting at the profile's threads.
    pub fn governor(&self) -> ThermalGovernor<ThermalSensor> {
        let t = self.settings.thermal;
        ThermalGovernor::new(
            self.sensor.clone(),
            GovernorConfig::new(t.soft_c, t.hard_c),
            self.settings.threads,
        )
    }

    /// The memory a model may use now.
    pub fn usable_memory(&self) -> u64 {
        self.facts.memory.usable(self.settings.reserve_bytes)
    }
}

/// The profiles `opts` asks for: built-ins, the user directory, the profile
/// file; and the id of the profile file's profile, if there is one.
pub fn load_profiles(opts: &DetectOptions) -> Result<(ProfileSet, Option<String>), DetectError> {
    let mut set = ProfileSet::with_user_dir(opts.user_dir.as_deref())?;
    let mut forced = None;
    if let Some(f) = &opts.profile_file {
        let p = BoardProfile::load(f)?;
        forced = Some(p.id.clone());
        // The file given on the command line wins over a user-dir file too.
        if let Ok((_, ProfileSource::UserFile(_))) = set.get(&p.id) {
            set.remove(&p.id);
        }
        set.insert(p, ProfileSource::UserFile(f.clone()), true)?;
    }
    Ok((set, forced))
}

/// Detects the board below `opts.sysroot` and resolves its profile.
pub fn detect(opts: &DetectOptions) -> Result<Board, DetectError> {
    let (set, forced) = load_profiles(opts)?;
    let facts = Facts::read(&opts.sysroot)?;
    let (profile, source, reason) = if let (Some(f), Some(id)) = (&opts.profile_file, &forced) {
        let (p, s) = set.get(id)?;
        (p, s, MatchReason::ProfileFile(f.clone()))
    } else if let Some(id) = &opts.profile_id {
        let (p, s) = set.get(id)?;
        (p, s, MatchReason::Requested(id.clone()))
    } else {
        select(&set, &facts)?
    };
    let (ram_mb, ram_source) = facts.ram_mb();
    let settings = profile.resolve(ram_mb, facts.cpu_cap());
    tracing::debug!(profile = %profile.id, %reason, ram_mb, threads = settings.threads, "board detected");
    Ok(Board {
        sensor: ThermalSensor::discover(&opts.sysroot),
        profile: profile.clone(),
        source: source.clone(),
        reason,
        ram_mb,
        ram_source,
        settings,
        facts,
    })
}
