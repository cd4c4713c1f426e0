//! `cargo xtask`: project automation for pistil.
//!
//! `cargo xtask test` is the one command that runs every test, on a fresh
//! Debian/Ubuntu machine as on a developer's: it installs what is missing
//! (the aarch64 cross linker and qemu-user from apt, the rustup target, the
//! Python clients the server tests use), pulls the real test model once, then
//! runs formatting, clippy (x86-64 and aarch64), the x86-64 tests, and the
//! aarch64 tests under qemu as a Cortex-A53 (Pi Zero 2 W / Pi 3), a Cortex-A72
//! (Pi 4) and a Cortex-A76 (Pi 5). It prints a summary and exits non-zero if
//! any step failed.

mod bench_vs_llama;

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

const AARCH64: &str = "aarch64-unknown-linux-gnu";

/// The CPU models we emulate and the kernel backend each must select.
const QEMU_CPUS: &[(&str, &str, &str)] = &[
    ("cortex-a53", "neon", "Pi Zero 2 W / Pi 3"),
    ("cortex-a72", "neon", "Pi 4 / Pi 400 / CM4"),
    ("cortex-a76", "dotprod", "Pi 5 / Pi 500 / CM5"),
];

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = workspace_root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("test") => test(&args[1..]),
        Some("setup") => setup(),
        Some("bench-vs-llama") => bench_vs_llama::run(&args[1..]),
        Some("help") | Some("--help") | Some("-h") | None => {
            print_help();
            Ok(())
        }
        Some(other) => {
            print_help();
            bail!("unknown xtask command {other:?}")
        }
    }
}

fn print_help() {
    eprintln!(
        "cargo xtask <command>\n\n\
         commands:\n  \
           test [--no-qemu] [--cpu NAME] [--skip-lint]   install what is missing, then run every test\n  \
           setup                                         only install what is missing and pull the test model\n  \
           bench-vs-llama [--help]                       pistil vs llama.cpp side by side (speed, memory, TTFT)\n"
    );
}

fn workspace_root() -> Result<PathBuf> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    Ok(dir
        .parent()
        .context("xtask lives inside the workspace")?
        .to_path_buf())
}

/// One step of the run, for the summary.
struct Step {
    name: String,
    ok: bool,
    secs: f64,
}

struct Runner {
    steps: Vec<Step>,
}

impl Runner {
    fn run(&mut self, name: &str, cmd: &mut Command) -> bool {
        eprintln!("\n==> {name}\n    $ {}", describe(cmd));
        let t = Instant::now();
        let ok = match cmd.status() {
            Ok(s) => s.success(),
            Err(e) => {
                eprintln!("    could not start: {e}");
                false
            }
        };
        let secs = t.elapsed().as_secs_f64();
        eprintln!(
            "<== {name}: {} in {secs:.0} s",
            if ok { "ok" } else { "FAILED" }
        );
        self.steps.push(Step {
            name: name.to_string(),
            ok,
            secs,
        });
        ok
    }
}

fn describe(cmd: &Command) -> String {
    let envs: Vec<String> = cmd
        .get_envs()
        .filter_map(|(k, v)| Some(format!("{}={}", k.to_str()?, v?.to_str()?)))
        .collect();
    let mut s = envs.join(" ");
    if !s.is_empty() {
        s.push(' ');
    }
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

fn cargo() -> Command {
    Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
}

fn test(args: &[String]) -> Result<()> {
    let no_qemu = args.iter().any(|a| a == "--no-qemu");
    let skip_lint = args.iter().any(|a| a == "--skip-lint");
    let only_cpu = args
        .iter()
        .position(|a| a == "--cpu")
        .and_then(|i| args.get(i + 1))
        .cloned();

    let started = Instant::now();
    setup()?;
    let mut r = Runner { steps: Vec::new() };

    if !skip_lint {
        r.run("rustfmt", cargo().args(["fmt", "--all", "--", "--check"]));
        r.run(
            "clippy x86-64",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        );
        r.run(
            "clippy aarch64",
            cargo().args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--target",
                AARCH64,
                "--",
                "-D",
                "warnings",
            ]),
        );
    }

    // --no-fail-fast: one red test binary must not hide the others' results.
    r.run(
        "tests x86-64",
        cargo().args(["test", "--workspace", "--no-fail-fast"]),
    );

    if !no_qemu {
        // Build the aarch64 test binaries once; each CPU model then runs them.
        let built = r.run(
            "build aarch64 tests",
            cargo().args(["test", "--workspace", "--no-run", "--target", AARCH64]),
        );
        if built {
            for (cpu, backend, boards) in QEMU_CPUS {
                if only_cpu.as_deref().is_some_and(|c| c != *cpu) {
                    continue;
                }
                let mut cmd = cargo();
                cmd.args(["test", "--workspace", "--no-fail-fast", "--target", AARCH64])
                    .env("QEMU_CPU", cpu)
                    .env("PISTIL_EXPECT_BACKEND", backend)
                    // Emulation is 10-50x slower: the long randomized tests run
                    // fewer iterations (the x86 run does the full count).
                    .env("PISTIL_MUTATIONS", "10000")
                    .env("PISTIL_UNDER_QEMU", "1");
                r.run(&format!("tests aarch64 {cpu} ({boards})"), &mut cmd);
            }
        }
    }

    eprintln!("\nsummary:");
    for s in &r.steps {
        eprintln!(
            "  {:<6} {:>5.0} s  {}",
            if s.ok { "ok" } else { "FAILED" },
            s.secs,
            s.name
        );
    }
    let failed = r.steps.iter().filter(|s| !s.ok).count();
    eprintln!(
        "  total {:.1} min, {} step(s) failed",
        started.elapsed().as_secs_f64() / 60.0,
        failed
    );
    if failed > 0 {
        bail!("{failed} step(s) failed");
    }
    Ok(())
}

fn have(program: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {program} >/dev/null 2>&1")])
        .status()
        .map(|s| s.success())
        .unwrap_or(false)
}

/// Runs a command as root: directly when we are root, else through sudo.
fn as_root(args: &[&str]) -> Command {
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false);
    let mut c = if is_root {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        c
    } else {
        let mut c = Command::new("sudo");
        c.args(args);
        c
    };
    c.env("DEBIAN_FRONTEND", "noninteractive");
    c
}

fn check(status: std::io::Result<std::process::ExitStatus>, what: &str) -> Result<()> {
    let s = status.with_context(|| format!("could not start {what}"))?;
    if !s.success() {
        bail!("{what} failed ({s})");
    }
    Ok(())
}

/// Installs what the tests need when it is missing, and pulls the test model.
fn setup() -> Result<()> {
    // Debian packages: the aarch64 cross linker (and its libc), qemu-user to run
    // aarch64 binaries, and mosquitto for the MQTT tests.
    let mut missing = Vec::new();
    if !have("aarch64-linux-gnu-gcc") {
        missing.extend(["gcc-aarch64-linux-gnu", "libc6-dev-arm64-cross"]);
    }
    if !have("qemu-aarch64") {
        missing.push("qemu-user");
    }
    if !have("mosquitto") && !Path::new("/usr/sbin/mosquitto").exists() {
        missing.push("mosquitto");
    }
    // The README recipes' test pipes through jq and the Mosquitto clients.
    if !have("mosquitto_pub") {
        missing.push("mosquitto-clients");
    }
    if !have("jq") {
        missing.push("jq");
    }
    if !have("python3") {
        missing.extend(["python3", "python3-pip"]);
    }
    if !missing.is_empty() {
        eprintln!("==> installing Debian packages: {}", missing.join(" "));
        if !have("apt-get") {
            bail!(
                "missing {}: install them with your package manager (this helper knows apt only)",
                missing.join(", ")
            );
        }
        check(
            as_root(&["apt-get", "update", "-qq"]).status(),
            "apt-get update",
        )?;
        let mut args = vec!["apt-get", "install", "-y", "-qq", "--no-install-recommends"];
        args.extend(missing.iter().copied());
        check(as_root(&args).status(), "apt-get install")?;
    }

    // The rustup target for the aarch64 build.
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .context("rustup is needed to add the aarch64 target")?;
    if !String::from_utf8_lossy(&installed.stdout)
        .lines()
        .any(|l| l.trim() == AARCH64)
    {
        eprintln!("==> rustup target add {AARCH64}");
        check(
            Command::new("rustup")
                .args(["target", "add", AARCH64])
                .status(),
            "rustup target add",
        )?;
    }

    python_clients()?;
    pull_test_models()?;
    Ok(())
}

/// The real Python clients the server and Wyoming tests drive (openai, ollama,
/// wyoming, pytest), installed with the machine's pip when missing.
fn python_clients() -> Result<()> {
    let probe = Command::new("python3")
        .args([
            "-c",
            "import openai, ollama, pytest, pydantic, httpx, wyoming",
        ])
        .stderr(std::process::Stdio::null())
        .status();
    if probe.map(|s| s.success()).unwrap_or(false) {
        return Ok(());
    }
    eprintln!("==> pip install -r tests/python/requirements.txt");
    let pip = |extra: &[&str]| {
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
            ])
            .args(extra)
            .args(["-r", "tests/python/requirements.txt"])
            .status()
    };
    if pip(&[]).is_ok_and(|s| s.success()) {
        return Ok(());
    }
    // Debian's own Python refuses system-wide installs (PEP 668) unless told.
    check(
        pip(&["--break-system-packages"]),
        "pip install -r tests/python/requirements.txt",
    )
}

/// The real model the suite tests against (fetched once into the model cache).
fn pull_test_models() -> Result<()> {
    let pistil_cmd = Path::new("tools/src/cmd/pull.rs");
    if !pistil_cmd.exists() {
        return Ok(());
    }
    eprintln!("==> making sure gemma3:270m is in the model cache");
    check(
        cargo()
            .args([
                "run",
                "--quiet",
                "-p",
                "pistil",
                "--",
                "pull",
                "gemma3:270m",
            ])
            .status(),
        "pistil pull gemma3:270m",
    )
}
