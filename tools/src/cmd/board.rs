//! `pistil board`: what this machine is, which profile pistil uses for it, and
//! why.
//!
//! Human output is a short aligned table. `--json` prints one object whose
//! field names are stable (scripts and bug reports rely on them):
//!
//! ```text
//! sysroot                 the root the files were read below ("/" normally)
//! board.model             device-tree model string, or cpuinfo's Model line (null if none)
//! board.compatible        device-tree compatible strings ([] if none)
//! board.revision          decoded Raspberry Pi revision code, or null:
//!                         {code, board, pcb_revision, memory_mb, processor, manufacturer,
//!                          warranty_voided, new_style}
//! board.revision_error    why a Revision line could not be decoded, or null
//! profile.id / .name      the profile chosen ("pi5", "Raspberry Pi 5")
//! profile.source          "built-in" or "user"
//! profile.file            built-in file name ("pi5.toml") or the user file's path
//! profile.matched_by      revision_code | compatible | model | arch | fallback |
//!                         profile_file | requested
//! profile.match           the value that matched ("d04170 (5)", "raspberrypi,5-model-b", ...)
//! profile.ram_mb          RAM used to pick the memory tier, and profile.ram_source
//!                         (revision_code | mem_total | cgroup_limit)
//! profile.tier_ram_mb     the memory tier chosen
//! cpu.arch                aarch64 | arm | x86_64 | other (from the sysroot's cpuinfo)
//! cpu.name                "Cortex-A76", "Cortex-A55 + Cortex-A76", or the x86 model name
//! cpu.parts               Arm CPU part numbers ("0xd0b")
//! cpu.logical_cpus, cpu.physical_cores, cpu.compute_cores, cpu.usable_cpus
//! cpu.features            the kernel's feature names (cpuinfo Features/flags)
//! cpu.dotprod             asimddp present
//! kernels                 the kernels THIS binary uses on THIS CPU (not the sysroot's):
//!                         {backend, features, formats: {weight type: path},
//!                          activations: {type: path}} or {error}
//! memory.*_bytes          total, available (MemAvailable), swap_free, effective_available
//!                         (capped by the cgroup), reserve, usable (= effective − reserve)
//! memory.cgroup           {path, version, limit_bytes, current_bytes, reclaimable_bytes} or null
//! thermal.zone, thermal.temp_c, thermal.soft_limit_c, thermal.hard_limit_c
//! thermal.throttled       {raw: "0x50005", flags: ["under-voltage", ...]} or null (not a Pi)
//! defaults                {model, threads, ctx, max_ctx, kv_type, mlock}
//! ```
//!
//! `--list` prints every profile (built-in and user) with its memory tiers;
//! with `--json`, an array of `{id, name, source, file, soc, cpu, cores, threads,
//! thermal: {soft_c, hard_c}, detect, memory: [tiers], notes}`.

use anyhow::Context;
use pistil_boards::detect::load_profiles;
use pistil_boards::{
    detect, Board, DetectOptions, MatchReason, ProfileSource, RamSource, Sysroot, MIB,
};
use pistil_kernels::Kernels;
use serde_json::{json, Value};
use std::path::PathBuf;

/// Arguments of `pistil board`.
#[derive(clap::Args)]
pub struct Args {
    /// Print one JSON object (field names are stable; see `pistil board --help`).
    #[arg(long)]
    pub json: bool,
    /// List every board profile (built-in and user) instead of detecting.
    #[arg(long)]
    pub list: bool,
    #[command(flatten)]
    pub detect: DetectArgs,
}

/// How to find the board and its profile; shared by the commands that run models.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct DetectArgs {
    /// Read /proc and /sys below DIR instead of / (e.g. boards/testdata/pi5-8gb).
    #[arg(long, value_name = "DIR", env = "PISTIL_SYSROOT")]
    pub sysroot: Option<PathBuf>,
    /// Use this board profile file, whatever the board is.
    #[arg(long, value_name = "PATH", env = "PISTIL_PROFILE_FILE")]
    pub profile_file: Option<PathBuf>,
    /// Use the profile with this id (see `pistil board --list`) instead of detecting.
    #[arg(long = "board", value_name = "ID", env = "PISTIL_BOARD")]
    pub board: Option<String>,
}

impl DetectArgs {
    /// The detection options these arguments describe (user profiles from
    /// `~/.config/pistil/boards`).
    pub fn options(&self) -> DetectOptions {
        DetectOptions {
            sysroot: self.sysroot.as_ref().map(Sysroot::new).unwrap_or_default(),
            profile_file: self.profile_file.clone(),
            user_dir: pistil_boards::profile::default_user_dir(),
            profile_id: self.board.clone(),
        }
    }
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let opts = args.detect.options();
    if args.list {
        return list(&opts, args.json);
    }
    if let Some(root) = &args.detect.sysroot {
        anyhow::ensure!(
            root.is_dir(),
            "--sysroot {} is not a directory",
            root.display()
        );
    }
    let board = detect(&opts).context("detecting the board")?;
    let report = report(&board, &opts);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_table(&board, &report);
    }
    Ok(())
}

fn source_fields(src: &ProfileSource) -> (&'static str, String) {
    match src {
        ProfileSource::BuiltIn(f) => ("built-in", f.to_string()),
        ProfileSource::UserFile(p) => ("user", p.display().to_string()),
    }
}

fn reason_fields(r: &MatchReason) -> (&'static str, Value) {
    match r {
        MatchReason::ProfileFile(p) => ("profile_file", json!(p.display().to_string())),
        MatchReason::Requested(id) => ("requested", json!(id)),
        MatchReason::RevisionCode(c) => ("revision_code", json!(c)),
        MatchReason::Compatible(c) => ("compatible", json!(c)),
        MatchReason::Model(m) => ("model", json!(m)),
        MatchReason::Arch(a) => ("arch", json!(a)),
        MatchReason::Fallback => ("fallback", Value::Null),
    }
}

fn ram_source_name(r: RamSource) -> &'static str {
    match r {
        RamSource::RevisionCode => "revision_code",
        RamSource::MemTotal => "mem_total",
        RamSource::CgroupLimit => "cgroup_limit",
    }
}

/// The kernels this binary uses on this CPU.
fn kernels_json() -> Value {
    match Kernels::try_get() {
        Ok(k) => {
            let formats: serde_json::Map<String, Value> = k
                .formats()
                .map(|f| (f.weight.name().to_string(), json!(f.path.name())))
                .collect();
            let acts: serde_json::Map<String, Value> = k
                .acts()
                .map(|a| (a.act.name().to_string(), json!(a.path.name())))
                .collect();
            json!({
                "backend": k.backend.name(),
                "features": k.features.names(),
                "formats": formats,
                "activations": acts,
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    }
}

fn report(b: &Board, opts: &DetectOptions) -> Value {
    let f = &b.facts;
    let s = &b.settings;
    let (source, file) = source_fields(&b.source);
    let (matched_by, matched) = reason_fields(&b.reason);
    let revision = f.revision.as_ref().map(|r| {
        json!({
            "code": format!("{:x}", r.raw),
            "board": r.board_name,
            "pcb_revision": r.pcb_revision,
            "memory_mb": r.memory_mb,
            "processor": r.processor,
            "manufacturer": r.manufacturer,
            "warranty_voided": r.warranty_voided,
            "new_style": r.new_style,
        })
    });
    let cgroup = f.memory.cgroup.as_ref().map(|c| {
        json!({
            "path": c.path,
            "version": c.version,
            "limit_bytes": c.limit,
            "current_bytes": c.current,
            "reclaimable_bytes": c.reclaimable,
        })
    });
    let reading = b.sensor.read_now();
    let throttled = reading
        .throttled
        .map(|t| json!({ "raw": format!("{:#x}", t.0), "flags": t.names() }));
    json!({
        "sysroot": opts.sysroot.root().display().to_string(),
        "board": {
            "model": f.model(),
            "compatible": f.compatible,
            "revision": revision,
            "revision_error": f.revision_error,
        },
        "profile": {
            "id": b.profile.id,
            "name": b.profile.name,
            "soc": b.profile.soc,
            "source": source,
            "file": file,
            "matched_by": matched_by,
            "match": matched,
            "ram_mb": b.ram_mb,
            "ram_source": ram_source_name(b.ram_source),
            "tier_ram_mb": s.ram_mb,
        },
        "cpu": {
            "arch": f.cpu.arch.name(),
            "name": f.cpu.cpu_name(),
            "parts": f.cpu.parts.iter().map(|p| format!("{p:#05x}")).collect::<Vec<_>>(),
            "logical_cpus": f.cpu.logical_cpus,
            "physical_cores": f.cpu.physical_cores,
            "compute_cores": f.cpu.compute_cores(),
            "usable_cpus": f.usable_cpus,
            "features": f.cpu.features,
            "dotprod": f.cpu.dotprod(),
        },
        "kernels": kernels_json(),
        "memory": {
            "total_bytes": f.memory.total,
            "available_bytes": f.memory.available,
            "swap_free_bytes": f.memory.swap_free,
            "cgroup": cgroup,
            "effective_available_bytes": f.memory.effective_available(),
            "reserve_bytes": s.reserve_bytes,
            "usable_bytes": b.usable_memory(),
        },
        "thermal": {
            "zone": b.sensor.zone_type,
            "temp_c": reading.temp_c,
            "throttled": throttled,
            "soft_limit_c": s.thermal.soft_c,
            "hard_limit_c": s.thermal.hard_c,
        },
        "defaults": {
            "model": s.default_model,
            "threads": s.threads,
            "ctx": s.default_ctx,
            "max_ctx": s.max_ctx,
            "kv_type": s.kv_type.name(),
            "mlock": s.mlock.name(),
        },
    })
}

fn size(bytes: u64) -> String {
    if bytes < 2 << 30 {
        format!("{} MiB", bytes / MIB)
    } else {
        format!("{:.1} GiB", bytes as f64 / (1u64 << 30) as f64)
    }
}

fn print_table(b: &Board, report: &Value) {
    let f = &b.facts;
    let s = &b.settings;
    let mut rows: Vec<(String, String)> = Vec::new();
    let mut row = |k: &str, v: String| rows.push((k.to_string(), v));

    row(
        "board",
        f.model().unwrap_or("(no model string)").to_string(),
    );
    if let Some(r) = &f.revision {
        row("revision", r.to_string());
    } else if let Some(e) = &f.revision_error {
        row("revision", format!("unreadable: {e}"));
    }
    row(
        "profile",
        format!("{} ({}), {}", b.profile.id, b.profile.name, b.source),
    );
    row("chosen by", b.reason.to_string());
    let ram_src = match b.ram_source {
        RamSource::RevisionCode => "from the revision code",
        RamSource::MemTotal => "from MemTotal",
        RamSource::CgroupLimit => "capped by the cgroup limit",
    };
    row(
        "memory tier",
        format!("{} MB ({} MB {ram_src})", s.ram_mb, b.ram_mb),
    );

    let cpu_name = f.cpu.cpu_name().unwrap_or_else(|| "unknown".into());
    let mut cpu = format!(
        "{}, {} x {}",
        f.cpu.arch.name(),
        f.cpu.logical_cpus,
        cpu_name
    );
    if let Some(p) = f.cpu.physical_cores {
        cpu += &format!(" ({p} physical cores)");
    }
    if let Some(u) = f.usable_cpus {
        cpu += &format!(", {u} usable");
    }
    if f.cpu.dotprod() {
        cpu += ", dotprod";
    }
    row("cpu", cpu);
    if !b.profile.soc.is_empty() {
        row("soc", format!("{} ({})", b.profile.soc, b.profile.cpu));
    }
    // x86 prints ~100 flags: keep the ones the kernels care about.
    let feats = &f.cpu.features;
    if feats.len() > 24 {
        let simd: Vec<&str> = feats
            .iter()
            .map(String::as_str)
            .filter(|x| {
                x.starts_with("avx") || x.starts_with("sse4") || *x == "fma" || *x == "f16c"
            })
            .collect();
        row(
            "cpu features",
            format!(
                "{} (+{} more; --json lists all)",
                simd.join(" "),
                feats.len() - simd.len()
            ),
        );
    } else {
        row("cpu features", feats.join(" "));
    }

    let k = &report["kernels"];
    if let Some(err) = k["error"].as_str() {
        row("kernels", format!("unavailable: {err}"));
    } else {
        let feats: Vec<&str> = k["features"]
            .as_array()
            .map(|a| a.iter().filter_map(|v| v.as_str()).collect())
            .unwrap_or_default();
        let here = if b.facts.cpu.arch.name() == std::env::consts::ARCH {
            "this CPU"
        } else {
            "this CPU, not the sysroot's"
        };
        row(
            "kernels",
            format!(
                "{} ({here}; {})",
                k["backend"].as_str().unwrap_or("?"),
                feats.join(" ")
            ),
        );
        if let Some(fm) = k["formats"].as_object() {
            let list: Vec<String> = fm
                .iter()
                .map(|(t, p)| format!("{t}={}", p.as_str().unwrap_or("?")))
                .collect();
            row(
                "  formats",
                if list.is_empty() {
                    "(none registered yet)".into()
                } else {
                    list.join(" ")
                },
            );
        }
    }

    let m = &f.memory;
    let mut mem = format!(
        "{} total, {} MiB available",
        size(m.total),
        m.available / MIB
    );
    match &m.cgroup {
        Some(c) => {
            mem += &format!(
                ", cgroup {} limit {} MiB (using {} MiB) → {} MiB",
                c.path,
                c.limit / MIB,
                c.current.saturating_sub(c.reclaimable) / MIB,
                m.effective_available() / MIB
            )
        }
        None => mem += ", no cgroup limit",
    }
    row("memory", mem);
    row(
        "usable",
        format!(
            "{} MiB (reserve {} MiB for the OS)",
            b.usable_memory() / MIB,
            s.reserve_bytes / MIB
        ),
    );

    let t = &report["thermal"];
    let temp = match t["temp_c"].as_f64() {
        Some(c) => format!(
            "{c:.1} °C ({})",
            b.sensor.zone_type.as_deref().unwrap_or("?")
        ),
        None => "no sensor".to_string(),
    };
    let thr = match b.sensor.read_now().throttled {
        Some(fl) if fl.0 == 0 => "throttling: none".to_string(),
        Some(fl) => format!("throttling {:#x}: {}", fl.0, fl.names().join(", ")),
        None => "throttling: not reported".to_string(),
    };
    row("temperature", format!("{temp}; {thr}"));
    row(
        "thermal policy",
        format!(
            "one thread less after 10 s at {} °C, at once at {} °C",
            s.thermal.soft_c, s.thermal.hard_c
        ),
    );
    row(
        "defaults",
        format!(
            "model {}, {} threads, context {} (max {}), KV {}, mlock {}",
            s.default_model,
            s.threads,
            s.default_ctx,
            s.max_ctx,
            s.kv_type.name(),
            s.mlock.name()
        ),
    );

    let width = rows
        .iter()
        .map(|(k, _)| k.chars().count())
        .max()
        .unwrap_or(0);
    for (k, v) in rows {
        println!("{k:<width$}  {v}");
    }
}

fn list(opts: &DetectOptions, as_json: bool) -> anyhow::Result<()> {
    let (set, _) = load_profiles(opts).context("loading board profiles")?;
    let mut profiles: Vec<_> = set.iter().collect();
    profiles.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    if as_json {
        let arr: Vec<Value> = profiles
            .iter()
            .map(|(p, src)| {
                let (source, file) = source_fields(src);
                json!({
                    "id": p.id,
                    "name": p.name,
                    "source": source,
                    "file": file,
                    "soc": p.soc,
                    "cpu": p.cpu,
                    "cores": p.cores,
                    "threads": p.threads,
                    "thermal": p.thermal,
                    "detect": p.detect,
                    "memory": p.memory,
                    "notes": p.notes,
                })
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&arr)?);
        return Ok(());
    }
    for (p, src) in profiles {
        let threads = match (p.threads, p.cores) {
            (Some(t), Some(c)) => format!("{t} of {c} cores"),
            (Some(t), None) => format!("{t} threads"),
            (None, _) => "every usable core".to_string(),
        };
        println!("{} — {} [{}]", p.id, p.name, src);
        if !p.cpu.is_empty() {
            let soc = if p.soc.is_empty() {
                String::new()
            } else {
                format!("{}, ", p.soc)
            };
            println!(
                "  {soc}{}; {threads}; thermal {}/{} °C",
                p.cpu, p.thermal.soft_c, p.thermal.hard_c
            );
        }
        if !p.notes.is_empty() {
            println!("  {}", p.notes);
        }
        println!(
            "  {:>8}  {:>8}  {:>5}  {:>7}  {:>4}  {:>6}  model",
            "RAM", "reserve", "ctx", "max ctx", "KV", "mlock"
        );
        for m in &p.memory {
            let ram = if m.ram_mb >= 1024 {
                format!("{} GB", m.ram_mb / 1024)
            } else {
                format!("{} MB", m.ram_mb)
            };
            println!(
                "  {:>8}  {:>5} MB  {:>5}  {:>7}  {:>4}  {:>6}  {}",
                ram,
                m.reserve_mb,
                m.default_ctx,
                m.max_ctx,
                m.kv_type.name(),
                m.mlock.name(),
                m.default_model
            );
        }
        println!();
    }
    Ok(())
}
