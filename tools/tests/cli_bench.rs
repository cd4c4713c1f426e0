//! `pistil bench`: llama-bench's table and JSON fields, on a tiny model.

mod pistil_bin;

use std::process::Output;

use pistil_bin::fixture_model as model;

fn pistil(args: &[&str]) -> Output {
    let o = pistil_bin::pistil_command()
        .args(args)
        .env("PISTIL_BOARD", "generic-x86_64")
        .output()
        .expect("run pistil");
    assert!(
        o.status.success(),
        "{:?}; stderr: {}",
        o.status,
        String::from_utf8_lossy(&o.stderr)
    );
    o
}

#[test]
fn json_has_llama_bench_fields() {
    let m = model("tiny-qwen2.q8_0");
    let o = pistil(&[
        "bench", "-m", &m, "-p", "32", "-n", "8", "-t", "1,2", "-r", "2", "-o", "json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON array");
    let rows = v.as_array().unwrap();
    assert_eq!(rows.len(), 4, "2 thread counts × (pp32, tg8)");
    for r in rows {
        for f in [
            "model_type",
            "model_size",
            "model_n_params",
            "n_threads",
            "n_prompt",
            "n_gen",
            "avg_ns",
            "stddev_ns",
            "avg_ts",
            "stddev_ts",
            "samples_ns",
            "samples_ts",
            "backends",
            "cpu_info",
            "test_time",
            "type_k",
            "n_batch",
        ] {
            assert!(r.get(f).is_some(), "missing {f} in {r}");
        }
        assert_eq!(r["model_type"], "qwen2 ?B Q8_0");
        assert!(r["avg_ts"].as_f64().unwrap() > 0.0);
        assert_eq!(r["samples_ts"].as_array().unwrap().len(), 2);
        assert!(r["backends"].as_str().unwrap().starts_with("CPU"));
    }
    assert_eq!(rows[0]["n_prompt"], 32);
    assert_eq!(rows[1]["n_gen"], 8);
    assert_eq!(rows[2]["n_threads"], 2);
}

#[test]
fn markdown_table_like_llama_bench() {
    let m = model("tiny-gemma3.q4_0");
    let o = pistil(&[
        "bench", "-m", &m, "-p", "16", "-n", "4", "-t", "1", "-r", "2",
    ]);
    let out = String::from_utf8(o.stdout).unwrap();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "| model                          |       size |     params | backend    | threads |            test |                  t/s |"
    );
    assert_eq!(
        lines[1],
        "| ------------------------------ | ---------: | ---------: | ---------- | ------: | --------------: | -------------------: |"
    );
    assert!(lines[2].starts_with("| gemma3 ?B Q4_0 "), "{}", lines[2]);
    assert!(
        lines[2].contains("pp16") && lines[3].contains("tg4"),
        "{out}"
    );
    assert!(lines[2].contains(" ± "));
}

/// `--ceiling` adds a read-only row after each thread count's generation
/// test (no prompt row: a prompt's speed is arithmetic, not reads).
#[test]
fn ceiling_adds_read_only_generation_rows() {
    let m = model("tiny-qwen2.q8_0");
    let o = pistil(&[
        "bench",
        "-m",
        &m,
        "-p",
        "16",
        "-n",
        "4",
        "-t",
        "1,2",
        "-r",
        "1",
        "-o",
        "json",
        "--ceiling",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("a JSON array");
    let rows = v.as_array().unwrap();
    let shape: Vec<(u64, u64, u64, bool)> = rows
        .iter()
        .map(|r| {
            (
                r["n_threads"].as_u64().unwrap(),
                r["n_prompt"].as_u64().unwrap(),
                r["n_gen"].as_u64().unwrap(),
                r["backends"].as_str().unwrap().ends_with("read-only)"),
            )
        })
        .collect();
    assert_eq!(
        shape,
        [
            (1, 16, 0, false),
            (1, 0, 4, false),
            (1, 0, 4, true),
            (2, 16, 0, false),
            (2, 0, 4, false),
            (2, 0, 4, true),
        ]
    );
    assert!(rows.iter().all(|r| r["avg_ts"].as_f64().unwrap() > 0.0));
}
