//! The README recipes (its `### Voice assistant on a Pi` and `### MQTT sensor
//! prompt` sections), run as written: the `sh` blocks are taken from the
//! README, with only these changes —
//! - `deepseek-r1:1.5b` is the tiny R1-template fixture (tests/fixtures/
//!   models/tiny-qwen2.q8_0.gguf: random weights, the real R1 chat template
//!   and think tokens), placed as `deepseek-r1-1.5b.gguf` in a temporary
//!   `$PISTIL_MODELS`;
//! - ports are free loopback ports instead of 10800 / 1883 (the MQTT broker
//!   is a Mosquitto the test starts);
//! - the audio programs are faked: the recorder and whisper.cpp become an
//!   `echo` of the question, piper and aplay become `cat`.
//!
//! Needs `jq`, `mosquitto` + `mosquitto-clients` and Python's `wyoming`
//! package (tests/python/requirements.txt).

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

// Under qemu (the aarch64 test runs) the recipes' shells could not start
// the aarch64 `pistil`; they are shell plumbing, checked on x86-64.
mod pistil_bin;
use pistil_bin::under_qemu;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The `sh` code blocks of a recipe, in order.
fn sh_blocks(recipe: &str) -> Vec<String> {
    let text = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let heading = format!("### {recipe}");
    let start = text
        .lines()
        .position(|l| l.trim_end() == heading)
        .unwrap_or_else(|| panic!("README.md has no {heading:?} section"));
    let mut blocks = Vec::new();
    let mut cur: Option<String> = None;
    for line in text.lines().skip(start + 1) {
        if cur.is_none() && line.starts_with('#') {
            break; // the next section
        }
        match (&mut cur, line.trim_end()) {
            (None, "```sh") => cur = Some(String::new()),
            (Some(b), "```") => {
                blocks.push(std::mem::take(b));
                cur = None;
            }
            (Some(b), l) => {
                b.push_str(l);
                b.push('\n');
            }
            (None, _) => {}
        }
    }
    blocks
}

/// `s` with `from` replaced by `to`, checking `from` is there.
fn subst(s: &str, from: &str, to: &str) -> String {
    assert!(
        s.contains(from),
        "the recipe no longer contains {from:?}:\n{s}"
    );
    s.replace(from, to)
}

struct Env {
    dir: PathBuf,
}

impl Env {
    /// A work dir with a model cache holding the tiny R1 model as deepseek-r1:1.5b.
    fn new(tag: &str) -> Env {
        let dir = std::env::temp_dir().join(format!("pistil-recipe-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("models")).unwrap();
        std::fs::copy(
            repo().join("tests/fixtures/models/tiny-qwen2.q8_0.gguf"),
            dir.join("models/deepseek-r1-1.5b.gguf"),
        )
        .unwrap();
        Env { dir }
    }

    fn bash(&self, script: &str) -> Command {
        let bin_dir = Path::new(env!("CARGO_BIN_EXE_pistil")).parent().unwrap();
        let path = format!(
            "{}:{}",
            bin_dir.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let mut c = Command::new("bash");
        c.arg("-c")
            .arg(format!("set -eo pipefail\n{script}"))
            .current_dir(&self.dir)
            .env("PATH", path)
            .env("PISTIL_MODELS", self.dir.join("models"))
            .env("PISTIL_BOARD", "generic-x86_64")
            .env_remove("RUST_LOG");
        c
    }

    /// Runs a script to the end (at most `secs`).
    fn run(&self, script: &str, secs: u64) -> Output {
        let mut child = self
            .bash(script)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        let t = Instant::now();
        loop {
            if child.try_wait().unwrap().is_some() {
                return child.wait_with_output().unwrap();
            }
            if t.elapsed() > Duration::from_secs(secs) {
                let _ = child.kill();
                let out = child.wait_with_output().unwrap();
                panic!(
                    "timed out after {secs} s:\n{script}\nstdout: {}\nstderr: {}",
                    String::from_utf8_lossy(&out.stdout),
                    String::from_utf8_lossy(&out.stderr)
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts a long-running command and waits until its stderr says `ready`.
    fn start(&self, command: &str, ready: &str) -> Service {
        let mut child = self
            .bash(&format!("exec {command}"))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bash");
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Owned by a Service from here: a panic below kills and reaps it.
        let svc = Service { child, log: rx };
        let mut log = String::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match svc.log.recv_timeout(Duration::from_millis(200)) {
                Ok(line) => {
                    log.push_str(&line);
                    log.push('\n');
                    if line.contains(ready) {
                        return svc;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{command} exited before {ready:?}:\n{log}")
                }
            }
            assert!(
                Instant::now() < deadline,
                "{command}: no {ready:?} within 60 s:\n{log}"
            );
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

struct Service {
    child: Child,
    log: mpsc::Receiver<String>,
}

impl Service {
    fn stop(mut self) -> String {
        // SIGTERM, as systemd stops it: the service must exit cleanly.
        let _ = Command::new("kill")
            .arg(self.child.id().to_string())
            .status();
        let status = self.child.wait().unwrap();
        let log: Vec<String> = self.log.try_iter().collect();
        assert!(
            status.success(),
            "exit {status:?} after SIGTERM:\n{}",
            log.join("\n")
        );
        log.join("\n")
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what}: exit {:?}\nstdout: {}\nstderr: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn voice_assistant_plain_pipes() {
    if under_qemu() {
        return;
    }
    let blocks = sh_blocks("Voice assistant on a Pi");
    assert_eq!(blocks.len(), 3, "{blocks:?}");
    let pipe = &blocks[2];
    let script = subst(
        pipe,
        "arecord -q -f S16_LE -r 16000 -c 1 -d 5 question.wav\n",
        "",
    );
    let script = subst(
        &script,
        "whisper-cli -m ggml-base.en.bin -f question.wav -nt -np > question.txt",
        "echo ' What is the capital of France?' > question.txt",
    );
    let script = subst(
        &script,
        "  | piper --model en_US-lessac-medium.onnx --output-raw \\\n  | aplay -q -r 22050 -f S16_LE -t raw -",
        "  | cat",
    );
    let env = Env::new("pipe");
    let out = env.run(&script, 120);
    let answer = ok(&out, "the pipe recipe");
    assert!(answer.ends_with('\n'), "one answer line: {answer:?}");
    // The same request without the last jq: exactly one done event, within -n 64.
    let events_script = subst(
        &script,
        "  | jq -r --unbuffered 'select(.type == \"done\") | .response' \\\n  | cat",
        "",
    );
    let events = ok(&env.run(&events_script, 120), "the pipe's events");
    let events: Vec<Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let done: Vec<&Value> = events.iter().filter(|e| e["type"] == "done").collect();
    assert_eq!(done.len(), 1, "{events:?}");
    assert!(done[0]["stats"]["gen_tokens"].as_u64().unwrap() <= 64);
    assert!(events
        .iter()
        .all(|e| e["type"] == "token" || e["type"] == "done"));
}

#[test]
fn voice_assistant_wyoming() {
    if under_qemu() {
        return;
    }
    let blocks = sh_blocks("Voice assistant on a Pi");
    let port = free_port().to_string();
    let serve = subst(blocks[0].trim(), "--port 10800", &format!("--port {port}"));
    let check = subst(&blocks[1], "10800", &port);
    let env = Env::new("wyoming");
    let svc = env.start(&serve, "handle service on");
    let out = env.run(&check, 120);
    let text = ok(
        &out,
        "the Wyoming check (is the `wyoming` Python package installed?)",
    );
    // One printed answer (the tiny model's text is noise; it may span lines).
    assert!(text.ends_with('\n'), "{text:?}");
    svc.stop();
}

#[test]
fn mqtt_sensor_prompt() {
    if under_qemu() {
        return;
    }
    let blocks = sh_blocks("MQTT sensor prompt");
    assert_eq!(blocks.len(), 2, "{blocks:?}");
    let port = free_port();
    let broker = Mosquitto::start(port);
    let bridge = subst(
        blocks[0].trim(),
        "--broker localhost",
        &format!("--broker localhost:{port}"),
    );
    let ask = subst(
        &blocks[1],
        "-h localhost",
        &format!("-h localhost -p {port}"),
    );
    let env = Env::new("mqtt");
    let svc = env.start(&bridge, "listening on home/pistil/ask");
    let reply = ok(&env.run(&ask, 180), "the MQTT recipe");
    let v: Value = serde_json::from_str(reply.trim()).unwrap_or_else(|e| panic!("{reply:?}: {e}"));
    assert_eq!(v["id"], "kitchen-1");
    assert_eq!(v["model"], "deepseek-r1:1.5b");
    let answer: Value = serde_json::from_str(v["response"].as_str().unwrap()).unwrap();
    assert_eq!(v["json"], answer);
    assert!(answer["fan_on"].is_boolean(), "{v}");
    assert!(
        answer["reason"].as_str().unwrap().chars().count() <= 80,
        "{v}"
    );
    svc.stop();
    drop(broker);
}

/// A Mosquitto broker on 127.0.0.1:port (Debian package `mosquitto`).
struct Mosquitto {
    child: Child,
    dir: PathBuf,
}

impl Mosquitto {
    fn start(port: u16) -> Mosquitto {
        let dir = std::env::temp_dir().join(format!(
            "pistil-recipe-broker-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let conf = dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
        )
        .unwrap();
        let bin = std::env::var_os("MOSQUITTO")
            .map(PathBuf::from)
            .unwrap_or_else(|| {
                let sbin = PathBuf::from("/usr/sbin/mosquitto");
                if sbin.exists() {
                    sbin
                } else {
                    PathBuf::from("mosquitto")
                }
            });
        let child = Command::new(bin)
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("mosquitto (Debian package `mosquitto`)");
        let t = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                t.elapsed() < Duration::from_secs(10),
                "mosquitto did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Mosquitto { child, dir }
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
