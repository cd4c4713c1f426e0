//! `pistil install-service`: run pistil on boot as a systemd service, with
//! `MemoryMax` from the detected board profile (RAM − the profile's reserve
//! for the OS), so a model that outgrows the board is stopped by systemd
//! instead of taking the whole Pi down.
//!
//! ```text
//! sudo pistil install-service                       # pistil serve (127.0.0.1:11434)
//! sudo pistil install-service -- wyoming --host 0.0.0.0 -m deepseek-r1:1.5b --no-think
//! pistil install-service --print -- mqtt --broker localhost
//! pistil install-service --memory-only              # the drop-in the .deb installs
//! ```
//!
//! The unit runs as a dedicated system user (`--user`, created with
//! `useradd --system` if missing; in the `gpio` group when it exists), keeps
//! models in `/var/cache/pistil/models` (`$PISTIL_MODELS`), restarts on failure, and waits for
//! the network only when the command serves or reaches it.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context};

use crate::cmd::board::DetectArgs;
use crate::common;

/// Arguments of `pistil install-service`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print the unit instead of installing it.
    #[arg(long)]
    pub print: bool,
    /// Print only a drop-in with the memory limit (`[Service] MemoryMax=…`).
    #[arg(long, conflicts_with = "print")]
    pub memory_only: bool,
    /// Unit name (the file is NAME.service).
    #[arg(long, value_name = "NAME", default_value = "pistil")]
    pub name: String,
    /// System user the service runs as.
    #[arg(long, value_name = "USER", default_value = "pistil")]
    pub user: String,
    /// Where the unit is written.
    #[arg(long, value_name = "DIR", default_value = "/etc/systemd/system")]
    pub unit_dir: PathBuf,
    /// The pistil binary the unit runs (default: this one).
    #[arg(long, value_name = "PATH")]
    pub binary: Option<PathBuf>,
    #[command(flatten)]
    pub detect: DetectArgs,
    /// The pistil command line to run (default: `serve`).
    #[arg(last = true, value_name = "COMMAND")]
    pub command: Vec<String>,
}

/// The memory limit: total RAM − the board profile's reserve.
fn memory_max(detect: &DetectArgs) -> anyhow::Result<u64> {
    let board =
        common::detect_board(detect).context("the board must be detected to set MemoryMax")?;
    let total = board.facts.memory.total;
    let reserve = board.settings.reserve_bytes;
    let max = total.saturating_sub(reserve);
    if max < (64 << 20) {
        bail!(
            "{} MiB of RAM less a {} MiB reserve leaves too little for a service",
            total >> 20,
            reserve >> 20
        );
    }
    Ok(max)
}

/// Whether the command serves on, or connects to, the network.
fn uses_network(cmd: &[String]) -> bool {
    let value = |flag: &str| {
        cmd.iter()
            .position(|a| a == flag)
            .and_then(|i| cmd.get(i + 1))
            .map(String::as_str)
            .or_else(|| cmd.iter().find_map(|a| a.strip_prefix(&format!("{flag}="))))
    };
    let local = |h: &str| matches!(h, "127.0.0.1" | "localhost" | "::1" | "[::1]");
    match cmd.first().map(String::as_str) {
        Some("serve") | Some("wyoming") => value("--host").is_some_and(|h| !local(h)),
        Some("mqtt") => value("--broker").is_some_and(|b| {
            let host = b.rsplit_once(':').map(|(h, _)| h).unwrap_or(b);
            !local(host) && !local(b)
        }),
        _ => false,
    }
}

/// Quotes an argument for systemd's ExecStart= (C-style double quotes).
fn quote(arg: &str) -> String {
    if !arg.is_empty()
        && arg
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=,@+".contains(c))
    {
        return arg.replace('%', "%%");
    }
    let mut s = String::from("\"");
    for c in arg.chars() {
        match c {
            '"' => s.push_str("\\\""),
            '\\' => s.push_str("\\\\"),
            '\n' => s.push_str("\\n"),
            '%' => s.push_str("%%"),
            '$' => s.push_str("$$"),
            c => s.push(c),
        }
    }
    s.push('"');
    s
}

fn group_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/group")
        .map(|g| g.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

/// The memory drop-in.
fn memory_dropin(max: u64) -> String {
    format!(
        "# Written by `pistil install-service --memory-only`: RAM less the board profile's reserve.\n\
         [Service]\nMemoryMax={max}\nMemorySwapMax=0\n"
    )
}

/// The unit text.
fn unit(binary: &Path, user: &str, cmd: &[String], max: u64, gpio: bool) -> String {
    let exec: Vec<String> = std::iter::once(binary.display().to_string())
        .chain(cmd.iter().cloned())
        .map(|a| quote(&a))
        .collect();
    let what = cmd.first().map(String::as_str).unwrap_or("serve");
    let net = uses_network(cmd);
    let mut u = String::new();
    u.push_str("[Unit]\n");
    u.push_str(&format!(
        "Description=pistil {what}: a local language model\n"
    ));
    if net {
        u.push_str("Wants=network-online.target\nAfter=network-online.target\n");
    }
    u.push_str("\n[Service]\nType=simple\n");
    u.push_str(&format!("User={user}\nGroup={user}\n"));
    if gpio {
        u.push_str("SupplementaryGroups=gpio\n");
    }
    u.push_str(&format!("ExecStart={}\n", exec.join(" ")));
    u.push_str(
        "# Models: `sudo -u pistil env PISTIL_MODELS=/var/cache/pistil/models pistil pull NAME`.\n\
         Environment=PISTIL_MODELS=/var/cache/pistil/models\nCacheDirectory=pistil\nStateDirectory=pistil\n\
         WorkingDirectory=/var/lib/pistil\n\
         Restart=on-failure\nRestartSec=5\n",
    );
    u.push_str(&format!(
        "# RAM ({} MiB) less the board profile's reserve: the model may not take the whole board.\n\
         MemoryMax={max}\nMemorySwapMax=0\n",
        max >> 20
    ));
    u.push_str(
        "# mlock (board profiles that lock the weights in RAM).\nLimitMEMLOCK=infinity\n\
         NoNewPrivileges=true\nProtectSystem=strict\nProtectHome=true\nPrivateTmp=true\n",
    );
    u.push_str("\n[Install]\nWantedBy=multi-user.target\n");
    u
}

pub fn run(args: Args) -> anyhow::Result<()> {
    let max = memory_max(&args.detect)?;
    if args.memory_only {
        print!("{}", memory_dropin(max));
        return Ok(());
    }
    let cmd = if args.command.is_empty() {
        vec!["serve".to_string()]
    } else {
        args.command.clone()
    };
    if cmd.first().is_some_and(|c| c.starts_with('-')) {
        bail!(
            "the command comes first after `--` (serve, wyoming or mqtt), not {}",
            cmd[0]
        );
    }
    let binary = match &args.binary {
        Some(b) => b.clone(),
        None => std::env::current_exe().context("finding this pistil binary")?,
    };
    let gpio = group_exists("gpio");
    let text = unit(&binary, &args.user, &cmd, max, gpio);
    if args.print {
        print!("{text}");
        return Ok(());
    }
    if !user_exists(&args.user) {
        let st = Command::new("useradd")
            .args([
                "--system",
                "--home-dir",
                "/var/lib/pistil",
                "--no-create-home",
                "--shell",
                "/usr/sbin/nologin",
                "--user-group",
            ])
            .arg(&args.user)
            .status()
            .context("running useradd (run as root: sudo pistil install-service)")?;
        if !st.success() {
            bail!("useradd {} failed", args.user);
        }
    }
    for dir in ["/var/cache/pistil/models", "/var/lib/pistil"] {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {dir}"))?;
    }
    let owner = format!("{0}:{0}", args.user);
    let st = Command::new("chown")
        .args(["-R", &owner, "/var/cache/pistil", "/var/lib/pistil"])
        .status()
        .context("running chown")?;
    if !st.success() {
        bail!("chown {owner} /var/cache/pistil /var/lib/pistil failed");
    }
    let path = args.unit_dir.join(format!("{}.service", args.name));
    std::fs::write(&path, text)
        .with_context(|| format!("writing {} (run as root?)", path.display()))?;
    eprintln!(
        "pistil: wrote {} (MemoryMax {} MiB)",
        path.display(),
        max >> 20
    );
    let reload = Command::new("systemctl").arg("daemon-reload").status();
    if !reload.map(|s| s.success()).unwrap_or(false) {
        eprintln!("pistil: note: `systemctl daemon-reload` failed; run it yourself");
    }
    eprintln!(
        "pistil: start it now and on every boot with: sudo systemctl enable --now {}",
        args.name
    );
    Ok(())
}

fn user_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/passwd")
        .map(|p| p.lines().any(|l| l.split(':').next() == Some(name)))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn network_only_when_serving_or_reaching_it() {
        assert!(!uses_network(&v(&["serve"])));
        assert!(!uses_network(&v(&["serve", "--host", "127.0.0.1"])));
        assert!(uses_network(&v(&["serve", "--host", "0.0.0.0"])));
        assert!(uses_network(&v(&["wyoming", "--host=0.0.0.0"])));
        assert!(!uses_network(&v(&["mqtt", "--broker", "localhost:1883"])));
        assert!(uses_network(&v(&["mqtt", "--broker", "10.0.0.5"])));
    }

    #[test]
    fn unit_text() {
        let u = unit(
            Path::new("/usr/bin/pistil"),
            "pistil",
            &v(&[
                "wyoming",
                "--host",
                "0.0.0.0",
                "--system",
                "Be brief, 100% sure.",
            ]),
            3_218_010_112,
            true,
        );
        assert!(u.contains("After=network-online.target"));
        assert!(u.contains("ExecStart=/usr/bin/pistil wyoming --host 0.0.0.0 --system \"Be brief, 100%% sure.\"\n"), "{u}");
        assert!(u.contains("MemoryMax=3218010112\n"));
        assert!(u.contains("SupplementaryGroups=gpio"));
        assert!(u.contains("Restart=on-failure"));
        assert!(u.contains("User=pistil"));
        let u = unit(
            Path::new("/usr/bin/pistil"),
            "pistil",
            &v(&["serve"]),
            1 << 30,
            false,
        );
        assert!(!u.contains("network-online"));
        assert!(!u.contains("gpio"));
    }
}
