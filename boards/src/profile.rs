//! Board profiles: data, one TOML file per board.
//!
//! The built-in files live in `boards/profiles/*.toml` and are compiled in.
//! A user can replace one (a file with the same `id` in
//! `~/.config/pistil/boards/`), add one for a board we do not know, or force
//! one with `--profile-file PATH` / `PISTIL_PROFILE_FILE`. Unknown keys are
//! errors (`deny_unknown_fields`), so a typo names the file, the line and the
//! field instead of being silently ignored.
//!
//! A profile holds the facts of the board (SoC, cores) and the policy for it
//! (threads, thermal limits), plus one `[[memory]]` table per RAM size the board
//! is sold with: everything that depends on RAM (OS reserve, context, KV cache
//! type, mlock, default model) is chosen from the RAM detected at run time.

use crate::sysroot::{read_opt, ReadError};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

/// Environment variable naming a profile file to use (same as `--profile-file`).
pub const PROFILE_FILE_ENV: &str = "PISTIL_PROFILE_FILE";
/// Environment variable naming a profile id to use instead of detection.
pub const PROFILE_ID_ENV: &str = "PISTIL_BOARD";

/// The compiled-in profiles: (file name, text).
pub const BUILTIN_FILES: &[(&str, &str)] = &[
    (
        "pi-zero-2-w.toml",
        include_str!("../profiles/pi-zero-2-w.toml"),
    ),
    ("pi3.toml", include_str!("../profiles/pi3.toml")),
    ("pi4.toml", include_str!("../profiles/pi4.toml")),
    ("pi400.toml", include_str!("../profiles/pi400.toml")),
    ("cm4.toml", include_str!("../profiles/cm4.toml")),
    ("pi5.toml", include_str!("../profiles/pi5.toml")),
    ("pi500.toml", include_str!("../profiles/pi500.toml")),
    ("cm5.toml", include_str!("../profiles/cm5.toml")),
    (
        "generic-aarch64.toml",
        include_str!("../profiles/generic-aarch64.toml"),
    ),
    (
        "generic-x86_64.toml",
        include_str!("../profiles/generic-x86_64.toml"),
    ),
];

/// KV cache element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KvType {
    /// IEEE half: exact enough for any context, 2 bytes per element.
    #[serde(rename = "f16")]
    F16,
    /// ggml Q8_0 blocks: 34 bytes per 32 elements (~1.06 B), half the memory of f16.
    #[serde(rename = "q8_0")]
    Q8_0,
}

impl KvType {
    /// Name as in profile files and GGML ("f16", "q8_0").
    pub fn name(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
        }
    }
}

/// Whether to lock the model's pages in RAM (`mlock`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlockPolicy {
    /// Never lock: on small boards locking most of RAM starves the OS.
    Never,
    /// Lock when the fit check leaves plenty of room (see [`crate::fit`]).
    Auto,
    /// Always lock (the run fails if the kernel refuses).
    Always,
}

impl MlockPolicy {
    /// Name as in profile files.
    pub fn name(self) -> &'static str {
        match self {
            MlockPolicy::Never => "never",
            MlockPolicy::Auto => "auto",
            MlockPolicy::Always => "always",
        }
    }
}

/// How a board is recognised. All lists are alternatives.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DetectRules {
    /// Raspberry Pi revision-code board types (bits 4-11): `0x17` = Pi 5.
    #[serde(default)]
    pub board_types: Vec<u8>,
    /// Device-tree `compatible` strings (`raspberrypi,5-model-b`).
    #[serde(default)]
    pub compatible: Vec<String>,
    /// Prefixes of the device-tree model string (`Raspberry Pi 5 Model B`).
    #[serde(default)]
    pub models: Vec<String>,
    /// Fallback for any machine of this architecture ("aarch64", "x86_64").
    #[serde(default)]
    pub arch: Option<String>,
}

/// Thermal policy (°C of the SoC sensor).
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ThermalLimits {
    /// Sustained at or above this (≥ 10 s), drop one compute thread.
    pub soft_c: f64,
    /// At or above this, drop a thread at once (and again every few seconds).
    pub hard_c: f64,
}

/// The settings for one RAM size.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryTier {
    /// Nominal RAM of this variant, MB (512, 1024, ..., 16384).
    pub ram_mb: u32,
    /// Memory left to the OS and other programs, MB, on top of what the kernel
    /// already keeps back from `MemAvailable`.
    pub reserve_mb: u32,
    /// Context a run uses unless asked otherwise.
    pub default_ctx: u32,
    /// Largest context allowed without `--force`.
    pub max_ctx: u32,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Whether to mlock the weights.
    pub mlock: MlockPolicy,
    /// Catalog name of the model `pistil run` picks without `-m`.
    pub default_model: String,
}

/// One board profile, as written in its TOML file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BoardProfile {
    /// Stable identifier (`pi5`), used by `--board`, user overrides and output.
    pub id: String,
    /// Display name ("Raspberry Pi 5").
    pub name: String,
    /// SoC for display ("BCM2712"); empty for generic profiles.
    #[serde(default)]
    pub soc: String,
    /// CPU core for display ("4x Cortex-A76").
    #[serde(default)]
    pub cpu: String,
    /// Arm CPU part number of the cores (0xd0b), when the board has one kind.
    #[serde(default)]
    pub cpu_part: Option<u32>,
    /// Cores on the board; `None` = whatever the system reports.
    #[serde(default)]
    pub cores: Option<u32>,
    /// Compute threads; `None` = every usable core (physical cores on x86).
    #[serde(default)]
    pub threads: Option<u32>,
    /// Whether the cores have the dotprod extension (for display and checks).
    #[serde(default)]
    pub dotprod: bool,
    /// Why the numbers are what they are (shown by `pistil board --list`).
    #[serde(default)]
    pub notes: String,
    /// How to recognise the board.
    #[serde(default)]
    pub detect: DetectRules,
    /// Thermal policy.
    pub thermal: ThermalLimits,
    /// One entry per RAM size, smallest first.
    pub memory: Vec<MemoryTier>,
}

/// Where a profile came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProfileSource {
    /// Compiled in from `boards/profiles/<file>`.
    BuiltIn(&'static str),
    /// A user's file.
    UserFile(PathBuf),
}

impl fmt::Display for ProfileSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProfileSource::BuiltIn(name) => write!(f, "built-in ({name})"),
            ProfileSource::UserFile(p) => write!(f, "user file {}", p.display()),
        }
    }
}

/// A bad profile file, or a profile that does not exist.
#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("profile file {0} does not exist")]
    NotFound(PathBuf),
    /// Syntax, type or unknown-field error: `message` is toml's, with line,
    /// column and the offending field.
    #[error("board profile {file}: {message}")]
    Parse { file: String, message: String },
    #[error("board profile {file}: field `{field}`: {message}")]
    Invalid {
        file: String,
        field: String,
        message: String,
    },
    #[error("board profile id '{id}' is defined twice: in {first} and in {second}")]
    DuplicateId {
        id: String,
        first: String,
        second: String,
    },
    #[error("no board profile with id '{id}' (known: {})", known.join(", "))]
    UnknownId { id: String, known: Vec<String> },
}

impl BoardProfile {
    /// Parses and checks a profile. `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<BoardProfile, ProfileError> {
        let p: BoardProfile = toml::from_str(text).map_err(|e| ProfileError::Parse {
            file: file.to_string(),
            message: e.to_string().trim_end().to_string(),
        })?;
        p.validate(file)?;
        Ok(p)
    }

    /// Reads, parses and checks a user's profile file.
    pub fn load(path: &Path) -> Result<BoardProfile, ProfileError> {
        let text = read_opt(path)?.ok_or_else(|| ProfileError::NotFound(path.to_path_buf()))?;
        BoardProfile::parse(&text, &path.display().to_string())
    }

    fn validate(&self, file: &str) -> Result<(), ProfileError> {
        let bad = |field: &str, message: String| {
            Err(ProfileError::Invalid {
                file: file.to_string(),
                field: field.to_string(),
                message,
            })
        };
        let id_ok = !self.id.is_empty()
            && self
                .id
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
        if !id_ok {
            return bad(
                "id",
                format!(
                    "{:?} must be lowercase letters, digits, '-' or '_'",
                    self.id
                ),
            );
        }
        if self.name.trim().is_empty() {
            return bad("name", "must not be empty".into());
        }
        if self.cores == Some(0) {
            return bad("cores", "must be at least 1".into());
        }
        if let Some(t) = self.threads {
            if t == 0 {
                return bad(
                    "threads",
                    "must be at least 1 (omit it to use every core)".into(),
                );
            }
            if let Some(c) = self.cores {
                if t > c {
                    return bad("threads", format!("{t} is more than the board's {c} cores"));
                }
            }
        }
        let th = self.thermal;
        if !(30.0..=110.0).contains(&th.soft_c) || !th.soft_c.is_finite() {
            return bad(
                "thermal.soft_c",
                format!("{} °C is not a plausible SoC limit (30-110)", th.soft_c),
            );
        }
        if !(th.hard_c > th.soft_c && th.hard_c <= 110.0) {
            return bad(
                "thermal.hard_c",
                format!(
                    "{} °C must be above soft_c ({} °C) and at most 110",
                    th.hard_c, th.soft_c
                ),
            );
        }
        if let Some(a) = &self.detect.arch {
            if !matches!(a.as_str(), "aarch64" | "arm" | "x86_64") {
                return bad(
                    "detect.arch",
                    format!("{a:?} is not one of aarch64, arm, x86_64"),
                );
            }
        }
        if self.memory.is_empty() {
            return bad("memory", "at least one [[memory]] table is needed".into());
        }
        let mut prev = 0u32;
        for (i, m) in self.memory.iter().enumerate() {
            let f = |name: &str| format!("memory[{i}].{name}");
            if m.ram_mb <= prev {
                return bad(
                    &f("ram_mb"),
                    format!(
                        "{} must be larger than the previous entry's {prev} (smallest first)",
                        m.ram_mb
                    ),
                );
            }
            prev = m.ram_mb;
            if m.reserve_mb >= m.ram_mb {
                return bad(
                    &f("reserve_mb"),
                    format!("{} MB leaves nothing of {} MB", m.reserve_mb, m.ram_mb),
                );
            }
            if m.default_ctx < 256 || m.default_ctx > m.max_ctx {
                return bad(
                    &f("default_ctx"),
                    format!(
                        "{} must be between 256 and max_ctx ({})",
                        m.default_ctx, m.max_ctx
                    ),
                );
            }
            if m.max_ctx > 1 << 20 {
                return bad(
                    &f("max_ctx"),
                    format!("{} is beyond any supported model", m.max_ctx),
                );
            }
            if m.default_model.trim().is_empty() {
                return bad(
                    &f("default_model"),
                    "must name a catalog model (e.g. \"gemma3:270m\")".into(),
                );
            }
        }
        Ok(())
    }

    /// The tier for a board with `ram_mb` of RAM: the largest tier not above
    /// it, or the smallest tier if the RAM is below all of them.
    pub fn tier_for_ram(&self, ram_mb: u32) -> &MemoryTier {
        let mut chosen = &self.memory[0];
        for m in &self.memory {
            if m.ram_mb <= ram_mb {
                chosen = m;
            }
        }
        chosen
    }
}

/// A profile resolved for one machine: the numbers a run uses.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BoardSettings {
    /// The profile's id.
    pub profile_id: String,
    /// The profile's display name.
    pub board_name: String,
    /// Nominal RAM of the memory tier chosen, MB.
    pub ram_mb: u32,
    /// Compute threads (the profile's count, capped by the CPUs this process may use).
    pub threads: usize,
    /// Memory left to the OS, bytes.
    pub reserve_bytes: u64,
    /// Context a run uses unless asked otherwise.
    pub default_ctx: u32,
    /// Largest context allowed without `--force`.
    pub max_ctx: u32,
    pub kv_type: KvType,
    pub mlock: MlockPolicy,
    /// Catalog name of the default model.
    pub default_model: String,
    pub thermal: ThermalLimits,
}

impl BoardProfile {
    /// The settings for a machine with `ram_mb` of RAM on which this process
    /// may use `cpus` CPUs (`None`: unknown, trust the profile).
    pub fn resolve(&self, ram_mb: u32, cpus: Option<usize>) -> BoardSettings {
        let tier = self.tier_for_ram(ram_mb);
        let wanted = self
            .threads
            .map(|t| t as usize)
            .or(cpus)
            .or(self.cores.map(|c| c as usize))
            .unwrap_or(1);
        let threads = match cpus {
            Some(c) => wanted.min(c),
            None => wanted,
        }
        .max(1);
        BoardSettings {
            profile_id: self.id.clone(),
            board_name: self.name.clone(),
            ram_mb: tier.ram_mb,
            threads,
            reserve_bytes: u64::from(tier.reserve_mb) * 1024 * 1024,
            default_ctx: tier.default_ctx,
            max_ctx: tier.max_ctx,
            kv_type: tier.kv_type,
            mlock: tier.mlock,
            default_model: tier.default_model.clone(),
            thermal: self.thermal,
        }
    }
}

impl BoardSettings {
    /// The context to plan for: the request (or the profile's default),
    /// capped by the model's trained context and, unless `force`, by the
    /// profile's `max_ctx`. Returns the context and, when it was capped, why.
    /// (Memory is checked afterwards by [`crate::fit`], which may lower it more.)
    pub fn context_for(
        &self,
        requested: Option<u32>,
        model_ctx: u32,
        force: bool,
    ) -> (u32, Option<String>) {
        let want = requested.unwrap_or(self.default_ctx).max(1);
        let mut ctx = want;
        let mut note = None;
        if model_ctx > 0 && ctx > model_ctx {
            ctx = model_ctx;
            note = Some(format!(
                "context {want} is beyond the model's {model_ctx}; using {model_ctx}"
            ));
        }
        if !force && ctx > self.max_ctx {
            note = Some(format!(
                "context {want} is above this board's limit of {} ({}); using {} (--force to override)",
                self.max_ctx, self.board_name, self.max_ctx
            ));
            ctx = self.max_ctx;
        }
        (ctx, note)
    }
}

/// A set of profiles: the built-ins, replaced or extended by user files.
#[derive(Clone, Debug)]
pub struct ProfileSet {
    entries: Vec<(BoardProfile, ProfileSource)>,
}

impl ProfileSet {
    /// The compiled-in profiles.
    pub fn builtin() -> Result<ProfileSet, ProfileError> {
        let mut set = ProfileSet {
            entries: Vec::new(),
        };
        for (file, text) in BUILTIN_FILES {
            let p = BoardProfile::parse(text, &format!("built-in {file}"))?;
            set.insert(p, ProfileSource::BuiltIn(file), false)?;
        }
        Ok(set)
    }

    /// Built-ins plus every `*.toml` in `user_dir` (a user file with the id of a
    /// built-in replaces it; two user files with one id are an error).
    pub fn with_user_dir(user_dir: Option<&Path>) -> Result<ProfileSet, ProfileError> {
        let mut set = ProfileSet::builtin()?;
        if let Some(dir) = user_dir {
            let Ok(rd) = std::fs::read_dir(dir) else {
                return Ok(set);
            };
            let mut files: Vec<PathBuf> = rd
                .filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|x| x == "toml") && p.is_file())
                .collect();
            files.sort();
            for f in files {
                let p = BoardProfile::load(&f)?;
                set.insert(p, ProfileSource::UserFile(f), true)?;
            }
        }
        Ok(set)
    }

    /// Adds a profile. A user profile replaces a built-in with the same id.
    pub fn insert(
        &mut self,
        profile: BoardProfile,
        source: ProfileSource,
        replace_builtin: bool,
    ) -> Result<(), ProfileError> {
        if let Some(i) = self.entries.iter().position(|(p, _)| p.id == profile.id) {
            let existing = &self.entries[i].1;
            let may_replace = replace_builtin && matches!(existing, ProfileSource::BuiltIn(_));
            if !may_replace {
                return Err(ProfileError::DuplicateId {
                    id: profile.id,
                    first: existing.to_string(),
                    second: source.to_string(),
                });
            }
            tracing::info!(
                "board profile '{}' from {source} replaces the built-in one",
                profile.id
            );
            // User profiles go first so they win detection ties.
            self.entries.remove(i);
        }
        match source {
            ProfileSource::UserFile(_) => self.entries.insert(0, (profile, source)),
            ProfileSource::BuiltIn(_) => self.entries.push((profile, source)),
        }
        Ok(())
    }

    /// Removes the profile with `id` (if any).
    pub fn remove(&mut self, id: &str) {
        self.entries.retain(|(p, _)| p.id != id);
    }

    /// Every profile with its source, user profiles first.
    pub fn iter(&self) -> impl Iterator<Item = (&BoardProfile, &ProfileSource)> {
        self.entries.iter().map(|(p, s)| (p, s))
    }

    /// The profile with `id`.
    pub fn get(&self, id: &str) -> Result<(&BoardProfile, &ProfileSource), ProfileError> {
        self.iter()
            .find(|(p, _)| p.id == id)
            .ok_or_else(|| ProfileError::UnknownId {
                id: id.to_string(),
                known: self.ids(),
            })
    }

    /// Profile ids, sorted.
    pub fn ids(&self) -> Vec<String> {
        let mut v: Vec<String> = self.entries.iter().map(|(p, _)| p.id.clone()).collect();
        v.sort();
        v
    }
}

/// `$XDG_CONFIG_HOME/pistil/boards`, else `~/.config/pistil/boards`.
pub fn default_user_dir() -> Option<PathBuf> {
    let base = match std::env::var_os("XDG_CONFIG_HOME") {
        Some(x) if !x.is_empty() => PathBuf::from(x),
        _ => PathBuf::from(std::env::var_os("HOME").filter(|h| !h.is_empty())?).join(".config"),
    };
    Some(base.join("pistil").join("boards"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builtins_parse_and_are_consistent() {
        let set = ProfileSet::builtin().unwrap();
        assert_eq!(set.ids().len(), BUILTIN_FILES.len());
        for (p, src) in set.iter() {
            let ProfileSource::BuiltIn(file) = src else {
                panic!("{src}")
            };
            assert_eq!(format!("{}.toml", p.id), *file, "file name = id");
            for m in &p.memory {
                assert!(m.max_ctx % 256 == 0 && m.default_ctx % 256 == 0, "{}", p.id);
                assert!(
                    ["gemma3:270m", "deepseek-r1:1.5b", "deepseek-r1:7b"]
                        .contains(&m.default_model.as_str()),
                    "{}: {}",
                    p.id,
                    m.default_model
                );
            }
            let is_generic = p.detect.arch.is_some();
            assert_eq!(is_generic, p.id.starts_with("generic-"), "{}", p.id);
            if !is_generic {
                assert!(!p.detect.board_types.is_empty(), "{}", p.id);
                assert!(p.cores.is_some() && p.threads.is_some(), "{}", p.id);
            }
        }
    }

    #[test]
    fn tier_selection() {
        let set = ProfileSet::builtin().unwrap();
        let (pi5, _) = set.get("pi5").unwrap();
        assert_eq!(pi5.tier_for_ram(8192).ram_mb, 8192);
        assert_eq!(pi5.tier_for_ram(8000).ram_mb, 4096);
        assert_eq!(pi5.tier_for_ram(100).ram_mb, pi5.memory[0].ram_mb);
        assert_eq!(pi5.tier_for_ram(65536).ram_mb, 16384);
    }

    #[test]
    fn context_choice() {
        let set = ProfileSet::builtin().unwrap();
        let s = set.get("pi5").unwrap().0.resolve(8192, Some(4)); // default 4096, max 16384
        assert_eq!(s.context_for(None, 131072, false), (4096, None));
        assert_eq!(s.context_for(Some(8192), 131072, false), (8192, None));
        let (c, note) = s.context_for(Some(65536), 131072, false);
        assert_eq!(c, 16384);
        assert!(note.unwrap().contains("limit of 16384"));
        assert_eq!(s.context_for(Some(65536), 131072, true).0, 65536);
        let (c, note) = s.context_for(Some(65536), 32768, true);
        assert_eq!(c, 32768);
        assert!(note.unwrap().contains("model's 32768"));
        // A model with a short trained context caps the default.
        assert_eq!(s.context_for(None, 2048, false).0, 2048);
    }

    #[test]
    fn unknown_id_lists_known() {
        let set = ProfileSet::builtin().unwrap();
        let e = set.get("pi6").unwrap_err().to_string();
        assert!(
            e.contains("pi6") && e.contains("pi5") && e.contains("pi-zero-2-w"),
            "{e}"
        );
    }

    const GOOD: &str = r#"
id = "my-board"
name = "My board"
cores = 4
threads = 2
[detect]
models = ["My Board"]
[thermal]
soft_c = 70
hard_c = 80
[[memory]]
ram_mb = 2048
reserve_mb = 200
default_ctx = 2048
max_ctx = 4096
kv_type = "q8_0"
mlock = "never"
default_model = "gemma3:270m"
"#;

    #[test]
    fn a_typo_names_file_line_and_field() {
        let text = GOOD.replace("threads = 2", "treads = 2");
        let e = BoardProfile::parse(&text, "/home/pi/.config/pistil/boards/my.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("/home/pi/.config/pistil/boards/my.toml"), "{e}");
        assert!(e.contains("line 5"), "{e}");
        assert!(e.contains("treads"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_the_field() {
        let text = GOOD.replace("kv_type = \"q8_0\"", "kv_type = \"q4\"");
        let e = BoardProfile::parse(&text, "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 16") && e.contains("q4"), "{e}");
        let text = GOOD.replace("cores = 4", "cores = \"four\"");
        let e = BoardProfile::parse(&text, "f.toml")
            .unwrap_err()
            .to_string();
        assert!(e.contains("line 4") && e.contains("cores"), "{e}");
    }

    #[test]
    fn semantic_errors_name_the_field() {
        let cases = [
            ("threads = 2", "threads = 8", "threads"),
            ("hard_c = 80", "hard_c = 60", "thermal.hard_c"),
            (
                "reserve_mb = 200",
                "reserve_mb = 4000",
                "memory[0].reserve_mb",
            ),
            (
                "default_ctx = 2048",
                "default_ctx = 8192",
                "memory[0].default_ctx",
            ),
            ("id = \"my-board\"", "id = \"My Board\"", "id"),
            (
                "default_model = \"gemma3:270m\"",
                "default_model = \"\"",
                "memory[0].default_model",
            ),
        ];
        for (from, to, field) in cases {
            let e = BoardProfile::parse(&GOOD.replace(from, to), "f.toml").unwrap_err();
            match &e {
                ProfileError::Invalid { field: f, .. } => assert_eq!(f, field, "{e}"),
                other => panic!("{to}: {other}"),
            }
        }
        assert!(BoardProfile::parse(GOOD, "f.toml").is_ok());
    }

    fn temp_dir(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pistil-boards-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn user_dir_replaces_and_extends() {
        let d = temp_dir("userdir");
        let pi5 = BUILTIN_FILES.iter().find(|f| f.0 == "pi5.toml").unwrap().1;
        std::fs::write(
            d.join("pi5.toml"),
            pi5.replace("threads = 4", "threads = 3"),
        )
        .unwrap();
        std::fs::write(d.join("mine.toml"), GOOD).unwrap();
        std::fs::write(d.join("README.txt"), "not a profile").unwrap();
        let set = ProfileSet::with_user_dir(Some(&d)).unwrap();
        let (p, src) = set.get("pi5").unwrap();
        assert_eq!(p.threads, Some(3));
        assert_eq!(*src, ProfileSource::UserFile(d.join("pi5.toml")));
        assert!(set.get("my-board").is_ok());
        assert_eq!(set.ids().len(), BUILTIN_FILES.len() + 1);
        // Two user files with one id are an error naming both.
        std::fs::write(d.join("zz-mine-again.toml"), GOOD).unwrap();
        let e = ProfileSet::with_user_dir(Some(&d)).unwrap_err().to_string();
        assert!(
            e.contains("mine.toml") && e.contains("zz-mine-again.toml"),
            "{e}"
        );
        // A broken user file stops loading with its name.
        std::fs::remove_file(d.join("zz-mine-again.toml")).unwrap();
        std::fs::write(d.join("broken.toml"), "id = \n").unwrap();
        let e = ProfileSet::with_user_dir(Some(&d)).unwrap_err().to_string();
        assert!(e.contains("broken.toml"), "{e}");
        let _ = std::fs::remove_dir_all(&d);
        // A missing directory is simply empty.
        assert!(ProfileSet::with_user_dir(Some(Path::new("/no/such/dir"))).is_ok());
    }

    #[test]
    fn missing_profile_file() {
        let e = BoardProfile::load(Path::new("/no/such/profile.toml")).unwrap_err();
        assert!(matches!(e, ProfileError::NotFound(_)), "{e}");
    }
}
