//! `pistil board` end to end, on recorded system trees.

mod pistil_bin;

use serde_json::Value;
use std::path::PathBuf;
use std::process::Output;

fn testdata(tree: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../boards/testdata")
        .join(tree)
}

fn pistil(args: &[&str]) -> Output {
    pistil_bin::pistil_command()
        .args(args)
        // Isolate from the developer's own profiles and overrides.
        .env("XDG_CONFIG_HOME", "/nonexistent-pistil-test-config")
        .env_remove("PISTIL_SYSROOT")
        .env_remove("PISTIL_PROFILE_FILE")
        .env_remove("PISTIL_BOARD")
        .output()
        .expect("run pistil")
}

fn board_json(tree: &str) -> Value {
    let root = testdata(tree);
    let out = pistil(&["board", "--json", "--sysroot", root.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{tree}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON object")
}

#[test]
fn pi5_8gb_json() {
    let j = board_json("pi5-8gb");
    assert_eq!(j["profile"]["id"], "pi5");
    assert_eq!(j["profile"]["source"], "built-in");
    assert_eq!(j["profile"]["matched_by"], "revision_code");
    assert_eq!(j["board"]["model"], "Raspberry Pi 5 Model B Rev 1.0");
    assert_eq!(j["board"]["revision"]["code"], "d04170");
    assert_eq!(j["board"]["revision"]["memory_mb"], 8192);
    assert_eq!(j["cpu"]["arch"], "aarch64");
    assert_eq!(j["cpu"]["name"], "Cortex-A76");
    assert_eq!(j["cpu"]["dotprod"], true);
    assert_eq!(j["memory"]["total_bytes"], 8_252_368u64 * 1024);
    assert_eq!(j["memory"]["reserve_bytes"], 384u64 << 20);
    assert_eq!(j["thermal"]["temp_c"], 52.3);
    assert!(j["thermal"]["throttled"].is_null());
    assert_eq!(j["defaults"]["model"], "deepseek-r1:7b");
    assert_eq!(j["defaults"]["threads"], 4);
    assert_eq!(j["defaults"]["kv_type"], "f16");
    // The kernels of this binary on this CPU.
    let k = &j["kernels"];
    assert!(k.is_object(), "{k}");
    assert!(k["backend"].is_string(), "{k}");
    assert!(k["features"].is_array(), "{k}");
    assert!(k["formats"].is_object(), "{k}");
    // Under qemu (`cargo xtask test`), the one aarch64 binary must pick the
    // kernel family of the emulated CPU: neon on the A53/A72, dotprod on the A76.
    if let Ok(expected) = std::env::var("PISTIL_EXPECT_BACKEND") {
        assert_eq!(k["backend"], expected.as_str(), "{k}");
        assert_eq!(k["formats"]["q4_K"], expected.as_str(), "{k}");
    }
}

#[test]
fn zero_2_w_and_container_json() {
    let j = board_json("pi-zero-2-w");
    assert_eq!(j["profile"]["id"], "pi-zero-2-w");
    assert_eq!(j["defaults"]["threads"], 3);
    assert_eq!(j["defaults"]["model"], "gemma3:270m");
    assert_eq!(j["thermal"]["throttled"]["raw"], "0x50005");
    let flags = j["thermal"]["throttled"]["flags"].as_array().unwrap();
    assert!(flags.iter().any(|f| f == "under-voltage"));

    let j = board_json("pi5-8gb-docker");
    assert_eq!(j["profile"]["ram_source"], "cgroup_limit");
    assert_eq!(j["memory"]["cgroup"]["limit_bytes"], 1u64 << 30);
    assert_eq!(j["defaults"]["threads"], 2);
}

#[test]
fn human_table() {
    let root = testdata("pi4-4gb");
    let out = pistil(&["board", "--sysroot", root.to_str().unwrap()]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for want in [
        "Raspberry Pi 4 Model B Rev 1.4",
        "c03114: 4B rev 1.4, 4 GB, BCM2711, Sony UK",
        "pi4 (Raspberry Pi 4 Model B), built-in (pi4.toml)",
        "Cortex-A72",
        "model deepseek-r1:1.5b, 4 threads",
        "kernels",
    ] {
        assert!(text.contains(want), "missing {want:?} in:\n{text}");
    }
}

#[test]
fn list_shows_every_profile() {
    let out = pistil(&["board", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    for id in [
        "pi-zero-2-w",
        "pi3",
        "pi4",
        "pi400",
        "cm4",
        "pi5",
        "pi500",
        "cm5",
        "generic-aarch64",
        "generic-x86_64",
    ] {
        assert!(text.contains(&format!("{id} — ")), "{id} missing:\n{text}");
    }
    let out = pistil(&["board", "--list", "--json"]);
    let j: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(j.as_array().unwrap().len(), 10);
}

#[test]
fn bad_inputs_are_one_clear_line() {
    let out = pistil(&["board", "--sysroot", "/no/such/dir"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/no/such/dir"), "{err}");

    let dir = std::env::temp_dir().join(format!("pistil-cli-board-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let f = dir.join("typo.toml");
    std::fs::write(&f, "id = \"x\"\nname = \"X\"\ntreads = 2\n").unwrap();
    let root = testdata("pi5-8gb");
    let out = pistil(&[
        "board",
        "--sysroot",
        root.to_str().unwrap(),
        "--profile-file",
        f.to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("typo.toml") && err.contains("line 3") && err.contains("treads"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
