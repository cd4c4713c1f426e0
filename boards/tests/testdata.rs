//! Detection, fit check and thermal readings on every recorded tree in
//! `boards/testdata/` (see its README for where the files come from).

use pistil_boards::{
    detect, fit, Arch, Board, DetectOptions, FitDecision, KvType, MatchReason, MemoryInfo,
    MemoryNeed, RamSource, MIB,
};
use std::path::PathBuf;

fn testdata() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("testdata")
}

fn board(tree: &str) -> Board {
    detect(&DetectOptions::at(testdata().join(tree))).unwrap_or_else(|e| panic!("{tree}: {e}"))
}

struct Expect {
    tree: &'static str,
    profile: &'static str,
    ram_mb: u32,
    threads: usize,
    model: &'static str,
    arch: Arch,
    cpu: &'static str,
    dotprod: bool,
}

// One row of the table below, positional to keep the table readable.
#[allow(clippy::too_many_arguments)]
const fn e(
    tree: &'static str,
    profile: &'static str,
    ram_mb: u32,
    threads: usize,
    model: &'static str,
    arch: Arch,
    cpu: &'static str,
    dotprod: bool,
) -> Expect {
    Expect {
        tree,
        profile,
        ram_mb,
        threads,
        model,
        arch,
        cpu,
        dotprod,
    }
}

const A53: &str = "Cortex-A53";
const A72: &str = "Cortex-A72";
const A76: &str = "Cortex-A76";
const G: &str = "gemma3:270m";
const R1: &str = "deepseek-r1:1.5b";
const R7: &str = "deepseek-r1:7b";
use Arch::{Aarch64 as A64, Arm32, X86_64};

const EXPECTED: &[Expect] = &[
    e("pi-zero-2-w", "pi-zero-2-w", 512, 3, G, A64, A53, false),
    e("pi3b", "pi3", 1024, 4, G, A64, A53, false),
    e("pi3b-plus", "pi3", 1024, 4, G, A64, A53, false),
    e("pi4-1gb", "pi4", 1024, 4, G, A64, A72, false),
    e("pi4-2gb", "pi4", 2048, 4, G, A64, A72, false),
    e("pi4-4gb", "pi4", 4096, 4, R1, A64, A72, false),
    e("pi4-8gb", "pi4", 8192, 4, R1, A64, A72, false),
    e("pi4-4gb-armhf", "pi4", 4096, 4, R1, Arm32, A72, false),
    e("pi400", "pi400", 4096, 4, R1, A64, A72, false),
    e("cm4-4gb", "cm4", 4096, 4, R1, A64, A72, false),
    e("pi5-2gb", "pi5", 2048, 4, G, A64, A76, true),
    e("pi5-4gb", "pi5", 4096, 4, R1, A64, A76, true),
    e("pi5-8gb", "pi5", 8192, 4, R7, A64, A76, true),
    e("pi5-16gb", "pi5", 16384, 4, R7, A64, A76, true),
    // 1 GiB container: the 1 GB tier (gemma3:270m), 2 CPUs of quota.
    e("pi5-8gb-docker", "pi5", 1024, 2, G, A64, A76, true),
    e("pi500", "pi500", 8192, 4, R7, A64, A76, true),
    e("cm5-8gb", "cm5", 8192, 4, R7, A64, A76, true),
    e(
        "rock-5b",
        "generic-aarch64",
        16384,
        4,
        R7,
        A64,
        "Cortex-A55 + Cortex-A76",
        true,
    ),
    // 24 GB VM, but a systemd MemoryMax=8G: the 4 GB tier (8 GB is below the 16 GB one).
    e(
        "x86_64-vm",
        "generic-x86_64",
        4096,
        2,
        R1,
        X86_64,
        "AMD EPYC 9R14 96-Core Processor",
        false,
    ),
];

#[test]
fn every_tree_is_expected() {
    let mut trees: Vec<String> = std::fs::read_dir(testdata())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().into_string().unwrap())
        .collect();
    trees.sort();
    let mut listed: Vec<&str> = EXPECTED.iter().map(|x| x.tree).collect();
    listed.sort();
    assert_eq!(trees, listed, "every testdata tree needs an expectation");
}

#[test]
fn detects_every_tree() {
    for x in EXPECTED {
        let b = board(x.tree);
        let s = &b.settings;
        assert_eq!(b.profile.id, x.profile, "{}", x.tree);
        assert_eq!(s.ram_mb, x.ram_mb, "{}", x.tree);
        assert_eq!(s.threads, x.threads, "{}", x.tree);
        assert_eq!(s.default_model, x.model, "{}", x.tree);
        assert_eq!(b.facts.cpu.arch, x.arch, "{}", x.tree);
        assert_eq!(b.facts.cpu.cpu_name().as_deref(), Some(x.cpu), "{}", x.tree);
        assert_eq!(b.facts.cpu.dotprod(), x.dotprod, "{}", x.tree);
        assert!(
            b.facts.memory.total > 0 && b.facts.memory.available > 0,
            "{}",
            x.tree
        );
        // Pi boards are recognised by their revision code and get the RAM from
        // it, unless a cgroup limit is lower.
        let limited = b.facts.memory.cgroup.is_some();
        if x.profile.starts_with("generic") {
            assert!(
                matches!(b.reason, MatchReason::Arch(_)),
                "{}: {}",
                x.tree,
                b.reason
            );
        } else {
            assert!(
                matches!(b.reason, MatchReason::RevisionCode(_)),
                "{}: {}",
                x.tree,
                b.reason
            );
        }
        let want_source = match (limited, x.profile.starts_with("generic")) {
            (true, _) => RamSource::CgroupLimit,
            (false, true) => RamSource::MemTotal,
            (false, false) => RamSource::RevisionCode,
        };
        assert_eq!(b.ram_source, want_source, "{}", x.tree);
        if want_source == RamSource::RevisionCode {
            assert_eq!(
                b.facts.revision.as_ref().unwrap().memory_mb,
                Some(x.ram_mb),
                "{}",
                x.tree
            );
        }
    }
}

#[test]
fn device_tree_and_model_strings() {
    let b = board("pi5-8gb");
    assert_eq!(
        b.facts.dt_model.as_deref(),
        Some("Raspberry Pi 5 Model B Rev 1.0")
    );
    assert_eq!(
        b.facts.compatible,
        vec!["raspberrypi,5-model-b", "brcm,bcm2712"]
    );
    // /proc/device-tree only.
    let b = board("cm4-4gb");
    assert_eq!(
        b.facts.dt_model.as_deref(),
        Some("Raspberry Pi Compute Module 4 Rev 1.0")
    );
    // No device tree: the model comes from cpuinfo.
    let b = board("pi3b");
    assert_eq!(b.facts.dt_model, None);
    assert_eq!(b.facts.model(), Some("Raspberry Pi 3 Model B Rev 1.2"));
    // A board without a revision code is matched by architecture.
    let b = board("rock-5b");
    assert_eq!(b.facts.revision, None);
    assert_eq!(b.facts.model(), Some("Radxa ROCK 5B"));
    assert_eq!(b.facts.cpu.logical_cpus, 8);
}

#[test]
fn memory_figures_and_cgroups() {
    let b = board("pi5-8gb");
    assert_eq!(b.facts.memory.total, 8_252_368 * 1024);
    assert_eq!(b.facts.memory.available, 6_126_208 * 1024);
    assert_eq!(
        b.facts.memory.cgroup, None,
        "memory.max = max all the way up"
    );
    assert_eq!(b.settings.reserve_bytes, 384 * MIB);
    assert_eq!(b.ram_source, RamSource::RevisionCode);
    assert_eq!(b.usable_memory(), 6_126_208 * 1024 - 384 * MIB);

    // Container: 1 GiB limit, 150 MiB charged of which 20 MiB inactive page cache.
    let b = board("pi5-8gb-docker");
    let cg = b.facts.memory.cgroup.as_ref().unwrap();
    assert_eq!((cg.version, cg.path.as_str(), cg.limit), (2, "/", 1 << 30));
    assert_eq!(b.facts.memory.effective_available(), (1 << 30) - 130 * MIB);
    assert_eq!(b.facts.usable_cpus, Some(2));
    assert_eq!((b.ram_mb, b.ram_source), (1024, RamSource::CgroupLimit));
    assert_eq!(b.settings.reserve_bytes, 96 * MIB);

    // systemd service with MemoryMax=8G below a slice without a limit.
    let b = board("x86_64-vm");
    let cg = b.facts.memory.cgroup.as_ref().unwrap();
    assert_eq!(cg.path, "/system.slice/pistil.service");
    assert_eq!(b.facts.memory.effective_available(), (8 << 30) - 42 * MIB);
    assert_eq!(b.facts.cpu.physical_cores, Some(2));
}

#[test]
fn thermal_readings() {
    let b = board("pi-zero-2-w");
    assert_eq!(b.sensor.zone_type.as_deref(), Some("cpu-thermal"));
    let r = b.sensor.read_now();
    assert_eq!(r.temp_c, Some(81.144));
    let f = r.throttled.unwrap();
    assert!(f.under_voltage() && f.throttled() && f.stressed_now());
    let r = board("pi3b-plus").sensor.read_now();
    assert!(r.throttled.unwrap().soft_temp_limit());
    let b = board("pi5-8gb");
    assert_eq!(b.sensor.throttled_file, None);
    assert_eq!(b.sensor.read_now().temp_c, Some(52.3));
    let b = board("rock-5b");
    assert_eq!(b.sensor.zone_type.as_deref(), Some("soc-thermal"));
    let b = board("x86_64-vm");
    assert_eq!(b.sensor.read_now(), Default::default());
    // The governor starts at the profile's threads and sees the readings.
    let mut g = board("pi-zero-2-w").governor();
    assert_eq!(g.poll(), 3);
    assert_eq!(g.last_reading().temp_c, Some(81.144));
}

// ---- fit check per board -------------------------------------------------

/// Q4_K_M file sizes from the catalog, KV bytes per token from the model
/// shapes (layers × KV heads × head dim × 2 for K and V × element size), and a
/// generous scratch estimate.
struct Model {
    name: &'static str,
    weights: u64,
    /// layers × kv heads × head dim
    kv_elems_per_token_half: u64,
    scratch: u64,
}

const GEMMA3_270M: Model = Model {
    name: G,
    weights: 253_113_024,
    kv_elems_per_token_half: 18 * 256,
    scratch: 16 * MIB,
};
const R1_1_5B: Model = Model {
    name: R1,
    weights: 1_117_321_312,
    kv_elems_per_token_half: 28 * 2 * 128,
    scratch: 128 * MIB,
};
const R1_7B: Model = Model {
    name: R7,
    weights: 4_683_073_248,
    kv_elems_per_token_half: 28 * 4 * 128,
    scratch: 256 * MIB,
};

fn need(m: &Model, kv: KvType, ctx: u32) -> MemoryNeed {
    let elems = 2 * m.kv_elems_per_token_half;
    let kv_per_token = match kv {
        KvType::F16 => elems * 2,
        KvType::Q8_0 => elems * 34 / 32,
    };
    MemoryNeed::new(m.weights, kv_per_token, m.scratch, ctx).with_model(m.name)
}

fn fit_on(tree: &str, m: &Model) -> FitDecision {
    let b = board(tree);
    let s = &b.settings;
    fit(
        s,
        &b.facts.memory,
        &need(m, s.kv_type, s.default_ctx),
        false,
    )
}

fn fit_with(tree: &str, m: &Model, ctx: u32, memory: MemoryInfo) -> FitDecision {
    let b = board(tree);
    fit(
        &b.settings,
        &memory,
        &need(m, b.settings.kv_type, ctx),
        false,
    )
}

#[test]
fn gemma3_270m_fits_everywhere() {
    for x in EXPECTED {
        let d = fit_on(x.tree, &GEMMA3_270M);
        assert!(matches!(d, FitDecision::Fits(_)), "{}: {d}", x.tree);
    }
}

#[test]
fn every_default_model_fits_its_recorded_board() {
    for x in EXPECTED {
        let m = match x.model {
            G => &GEMMA3_270M,
            R1 => &R1_1_5B,
            _ => &R1_7B,
        };
        let d = fit_on(x.tree, m);
        assert!(matches!(d, FitDecision::Fits(_)), "{}: {d}", x.tree);
    }
}

#[test]
fn r1_1_5b_per_board() {
    for tree in [
        "pi-zero-2-w",
        "pi3b",
        "pi3b-plus",
        "pi4-1gb",
        "pi5-8gb-docker",
    ] {
        let d = fit_on(tree, &R1_1_5B);
        let FitDecision::Refused(r) = &d else {
            panic!("{tree}: {d}")
        };
        assert_eq!(r.suggestion.as_deref(), Some(G), "{tree}: {d}");
        let msg = d.to_string();
        assert!(
            msg.contains("deepseek-r1:1.5b does not fit") && msg.contains("MiB usable"),
            "{msg}"
        );
        assert!(msg.contains("such as gemma3:270m"), "{msg}");
    }
    // The Zero 2 W message names the numbers.
    let msg = fit_on("pi-zero-2-w", &R1_1_5B).to_string();
    assert!(
        msg.contains("weights 1065 MiB")
            && msg.contains("296 MiB usable (344 MiB available − 48 MiB reserve)"),
        "{msg}"
    );
    // In the container the cgroup limit is what binds, and says so.
    assert!(fit_on("pi5-8gb-docker", &R1_1_5B)
        .to_string()
        .contains("cgroup memory limit of 1024 MiB"));
    for tree in [
        "pi4-2gb",
        "pi4-4gb",
        "pi4-8gb",
        "pi400",
        "cm4-4gb",
        "pi5-2gb",
        "pi5-4gb",
        "pi5-8gb",
        "pi5-16gb",
        "pi500",
        "cm5-8gb",
        "rock-5b",
        "x86_64-vm",
    ] {
        let d = fit_on(tree, &R1_1_5B);
        assert!(matches!(d, FitDecision::Fits(_)), "{tree}: {d}");
    }
}

#[test]
fn r1_7b_per_board() {
    for tree in ["pi4-4gb", "pi5-4gb", "pi400", "pi5-2gb"] {
        let d = fit_on(tree, &R1_7B);
        let FitDecision::Refused(r) = &d else {
            panic!("{tree}: {d}")
        };
        assert_eq!(r.suggestion.as_deref(), Some(R1), "{tree}: {d}");
    }
    for tree in ["pi4-8gb", "pi5-8gb", "pi5-16gb", "pi500", "cm5-8gb"] {
        assert!(
            matches!(fit_on(tree, &R1_7B), FitDecision::Fits(_)),
            "{tree}"
        );
    }
    // Pi 5 8 GB at its max context (16384): KV 896 MiB no longer fits → lowered.
    let b = board("pi5-8gb");
    let d = fit(
        &b.settings,
        &b.facts.memory,
        &need(&R1_7B, KvType::F16, 16384),
        false,
    );
    let FitDecision::ContextLowered { plan, requested } = &d else {
        panic!("{d}")
    };
    assert_eq!(*requested, 16384);
    assert_eq!(plan.ctx, 15872);
    assert!(plan.total <= plan.usable);
    assert!(
        d.to_string()
            .contains("context lowered from 16384 to 15872"),
        "{d}"
    );
}

#[test]
fn low_memory_lowers_or_refuses() {
    // A Pi 5 8 GB with a browser open: 5.2 GB available → 7B only fits with a shorter context.
    let mem = MemoryInfo::new(8_252_368 * 1024, 5_200 * MIB);
    let d = fit_with("pi5-8gb", &R1_7B, 4096, mem);
    let FitDecision::ContextLowered { plan, .. } = &d else {
        panic!("{d}")
    };
    assert_eq!(plan.ctx % 256, 0);
    assert_eq!(plan.ctx, 1536, "{d}");
    // 4.9 GB available: the weights alone do not fit → refused, suggests 1.5B.
    let mem = MemoryInfo::new(8_252_368 * 1024, 4_900 * MIB);
    let d = fit_with("pi5-8gb", &R1_7B, 4096, mem.clone());
    assert!(
        d.to_string().contains("weights alone do not fit")
            && d.to_string().contains("such as deepseek-r1:1.5b"),
        "{d}"
    );
    // --force loads anyway, with the shortfall.
    let b = board("pi5-8gb");
    match fit(&b.settings, &mem, &need(&R1_7B, KvType::F16, 4096), true) {
        FitDecision::Forced { plan, shortfall } => {
            assert_eq!(plan.ctx, 4096);
            assert!(shortfall > 0 && !plan.mlock);
        }
        d => panic!("{d}"),
    }
    // A Pi 4 2 GB at 8192 tokens with a desktop eating memory: 1.5B fits at a shorter context.
    let mem = MemoryInfo::new(1_891_256 * 1024, 1_420 * MIB);
    let d = fit_with("pi4-2gb", &R1_1_5B, 8192, mem);
    let FitDecision::ContextLowered {
        plan,
        requested: 8192,
    } = &d
    else {
        panic!("{d}")
    };
    assert!(plan.ctx >= 512 && plan.ctx < 8192, "{d}");
    // A Zero 2 W whose MemAvailable dropped to 250 MB cannot run gemma3 either.
    let mem = MemoryInfo::new(427_784 * 1024, 250 * MIB);
    let d = fit_with("pi-zero-2-w", &GEMMA3_270M, 2048, mem);
    assert!(!d.is_ok(), "{d}");
    assert!(
        d.to_string().contains("no smaller catalog model fits"),
        "{d}"
    );
}

// ---- profile choice: overrides, fallbacks --------------------------------

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pistil-boards-it-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

const PI5_TOML: &str = include_str!("../profiles/pi5.toml");

#[test]
fn user_dir_file_replaces_the_builtin() {
    let dir = temp_dir("user");
    std::fs::write(
        dir.join("my-pi5.toml"),
        PI5_TOML.replace("threads = 4", "threads = 2"),
    )
    .unwrap();
    let opts = DetectOptions {
        user_dir: Some(dir.clone()),
        ..DetectOptions::at(testdata().join("pi5-8gb"))
    };
    let b = detect(&opts).unwrap();
    assert_eq!(b.profile.id, "pi5");
    assert_eq!(b.settings.threads, 2);
    assert_eq!(
        b.source.to_string(),
        format!("user file {}", dir.join("my-pi5.toml").display())
    );
    // A typo is an error naming the file, the line and the field.
    std::fs::write(
        dir.join("my-pi5.toml"),
        PI5_TOML.replace("threads = 4", "thread = 2"),
    )
    .unwrap();
    let err = detect(&opts).unwrap_err().to_string();
    assert!(
        err.contains("my-pi5.toml")
            && err.contains("unknown field `thread`")
            && err.contains("line "),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn profile_file_is_used_whatever_the_board() {
    let dir = temp_dir("file");
    let f = dir.join("bench.toml");
    let text = include_str!("../profiles/pi-zero-2-w.toml")
        .replace("id = \"pi-zero-2-w\"", "id = \"bench-zero\"");
    std::fs::write(&f, text).unwrap();
    let opts = DetectOptions {
        profile_file: Some(f.clone()),
        ..DetectOptions::at(testdata().join("pi5-8gb"))
    };
    let b = detect(&opts).unwrap();
    assert_eq!(b.profile.id, "bench-zero");
    assert_eq!(b.reason, MatchReason::ProfileFile(f.clone()));
    assert_eq!(b.settings.threads, 3);
    // A missing file is a clear error.
    let opts = DetectOptions {
        profile_file: Some(dir.join("nope.toml")),
        ..DetectOptions::at(testdata().join("pi5-8gb"))
    };
    assert!(detect(&opts).unwrap_err().to_string().contains("nope.toml"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn requested_profile_id() {
    let opts = DetectOptions {
        profile_id: Some("pi4".into()),
        ..DetectOptions::at(testdata().join("pi5-8gb"))
    };
    let b = detect(&opts).unwrap();
    assert_eq!((b.profile.id.as_str(), b.settings.ram_mb), ("pi4", 8192));
    let opts = DetectOptions {
        profile_id: Some("pi9".into()),
        ..DetectOptions::at(testdata().join("pi5-8gb"))
    };
    assert!(detect(&opts)
        .unwrap_err()
        .to_string()
        .contains("no board profile with id 'pi9'"));
}

/// Copies a tree and edits it, to test the lower-priority detection paths.
fn edited_tree(from: &str, name: &str, edit: impl Fn(&PathBuf)) -> PathBuf {
    let dst = temp_dir(name);
    fn copy(src: &std::path::Path, dst: &std::path::Path) {
        for e in std::fs::read_dir(src).unwrap() {
            let e = e.unwrap();
            let to = dst.join(e.file_name());
            if e.path().is_dir() {
                std::fs::create_dir_all(&to).unwrap();
                copy(&e.path(), &to);
            } else {
                std::fs::copy(e.path(), to).unwrap();
            }
        }
    }
    copy(&testdata().join(from), &dst);
    edit(&dst);
    dst
}

#[test]
fn compatible_then_model_then_arch() {
    let strip_revision = |d: &PathBuf| {
        let f = d.join("proc/cpuinfo");
        let t = std::fs::read_to_string(&f).unwrap();
        let t: String = t
            .lines()
            .filter(|l| !l.starts_with("Revision") && !l.starts_with("Model"))
            .map(|l| format!("{l}\n"))
            .collect();
        std::fs::write(f, t).unwrap();
    };
    // No revision code: the device tree's compatible list decides; RAM from MemTotal.
    let d = edited_tree("pi5-8gb", "compat", strip_revision);
    let b = detect(&DetectOptions::at(&d)).unwrap();
    assert_eq!(b.profile.id, "pi5");
    assert_eq!(
        b.reason,
        MatchReason::Compatible("raspberrypi,5-model-b".into())
    );
    assert_eq!((b.ram_mb, b.ram_source), (9266, RamSource::MemTotal));
    assert_eq!(b.settings.ram_mb, 8192);
    let _ = std::fs::remove_dir_all(&d);
    // No compatible either: the model string (longest prefix).
    let d = edited_tree("pi500", "model", |d| {
        strip_revision(d);
        std::fs::remove_file(d.join("sys/firmware/devicetree/base/compatible")).unwrap();
    });
    let b = detect(&DetectOptions::at(&d)).unwrap();
    assert_eq!(
        (b.profile.id.as_str(), &b.reason),
        ("pi500", &MatchReason::Model("Raspberry Pi 500".into()))
    );
    let _ = std::fs::remove_dir_all(&d);
    // Nothing Pi-like at all: architecture.
    let d = edited_tree("pi4-4gb", "arch", |d| {
        strip_revision(d);
        std::fs::remove_dir_all(d.join("sys/firmware")).unwrap();
    });
    let b = detect(&DetectOptions::at(&d)).unwrap();
    assert_eq!(
        (b.profile.id.as_str(), &b.reason),
        ("generic-aarch64", &MatchReason::Arch("aarch64".into()))
    );
    assert_eq!(b.settings.threads, 4);
    let _ = std::fs::remove_dir_all(&d);
}

#[test]
fn cm5_lite_and_unknown_new_boards() {
    // CM5 Lite (type 0x1a) uses the CM5 profile; a future board type falls
    // through to the device tree, then the architecture.
    for (code, want) in [("c041a0", "cm5"), ("d041c0", "generic-aarch64")] {
        let d = edited_tree("cm5-8gb", code, |d| {
            let f = d.join("proc/cpuinfo");
            let t = std::fs::read_to_string(&f).unwrap().replace("d04180", code);
            std::fs::write(&f, t).unwrap();
            std::fs::write(
                d.join("sys/firmware/devicetree/base/compatible"),
                b"raspberrypi,7-model-z\0brcm,bcm2799\0",
            )
            .unwrap();
            std::fs::write(
                d.join("sys/firmware/devicetree/base/model"),
                b"Raspberry Pi 7 Model Z Rev 1.0\0",
            )
            .unwrap();
        });
        let b = detect(&DetectOptions::at(&d)).unwrap();
        assert_eq!(b.profile.id, want, "{code}");
        let _ = std::fs::remove_dir_all(&d);
    }
}

#[test]
fn missing_files_are_clear_errors() {
    let d = temp_dir("empty");
    let e = detect(&DetectOptions::at(&d)).unwrap_err().to_string();
    assert!(e.contains("proc/cpuinfo") && e.contains("--sysroot"), "{e}");
    std::fs::create_dir_all(d.join("proc")).unwrap();
    std::fs::write(d.join("proc/cpuinfo"), "processor : 0\n").unwrap();
    let e = detect(&DetectOptions::at(&d)).unwrap_err().to_string();
    assert!(e.contains("proc/meminfo"), "{e}");
    std::fs::write(d.join("proc/meminfo"), "garbage\n").unwrap();
    let e = detect(&DetectOptions::at(&d)).unwrap_err().to_string();
    assert!(e.contains("MemTotal"), "{e}");
    let _ = std::fs::remove_dir_all(&d);
}
