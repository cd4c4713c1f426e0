//! Starting the real `pistil serve` on a free loopback port, and talking to it.

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Integration tests that spawn servers are skipped under qemu (too slow).
pub use crate::pistil_bin::under_qemu;

/// A repository fixture.
pub fn fixture(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}

/// The cached gemma3:270m, if present (the model cache layout of the catalog).
pub fn gemma() -> Option<PathBuf> {
    let p = pistil_runtime::catalog::models_dir().join("gemma3-270m.gguf");
    p.is_file().then_some(p)
}

/// A free loopback port.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(18434)
}

/// A running server; killed on drop.
pub struct Server {
    pub child: Child,
    pub base: String,
    pub port: u16,
    pub log: Arc<Mutex<String>>,
    pub agent: ureq::Agent,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `pistil serve` with `args` (plus host/port), waits for `/health` 200.
pub fn start(args: &[&str]) -> Server {
    start_env(args, &[])
}

/// Same, with extra environment variables.
pub fn start_env(args: &[&str], env: &[(&str, &str)]) -> Server {
    let port = free_port();
    let mut cmd = crate::pistil_bin::pistil_command();
    cmd.arg("serve")
        .args(["--host", "127.0.0.1", "--port", &port.to_string()])
        .args(args)
        .env_remove("PISTIL_API_KEY")
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("spawn pistil serve");
    let log = Arc::new(Mutex::new(String::new()));
    if let Some(err) = child.stderr.take() {
        let log = log.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                if let Ok(mut l) = log.lock() {
                    l.push_str(&line);
                    l.push('\n');
                }
            }
        });
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(120)))
        .build()
        .into();
    let s = Server {
        child,
        base: format!("http://127.0.0.1:{port}"),
        port,
        log,
        agent,
    };
    let t0 = Instant::now();
    loop {
        if let Ok(Some(status)) = s.child_status() {
            panic!("pistil serve exited ({status}):\n{}", s.log());
        }
        if let Ok(mut r) = s.agent.get(format!("{}/health", s.base)).call() {
            if r.status().as_u16() == 200 {
                let _ = r.body_mut().read_to_string();
                break;
            }
        }
        assert!(
            t0.elapsed() < Duration::from_secs(120),
            "server not healthy after 120 s:\n{}",
            s.log()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    s
}

impl Server {
    fn child_status(&self) -> std::io::Result<Option<std::process::ExitStatus>> {
        // try_wait needs &mut; use the pid through /proc instead.
        let alive = std::path::Path::new(&format!("/proc/{}", self.child.id())).exists();
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        if !alive || stat.split_whitespace().nth(2) == Some("Z") {
            return Ok(Some(std::process::ExitStatus::default()));
        }
        Ok(None)
    }

    /// What the server wrote on stderr so far.
    pub fn log(&self) -> String {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }

    pub fn get(&self, path: &str) -> (u16, String) {
        let mut r = self
            .agent
            .get(format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}\n{}", self.log()));
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, String) {
        let mut r = self
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body)
            .unwrap_or_else(|e| panic!("POST {path}: {e}\n{}", self.log()));
        (
            r.status().as_u16(),
            r.body_mut().read_to_string().unwrap_or_default(),
        )
    }

    pub fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        let (s, t) = self.post(path, &body.to_string());
        let v = serde_json::from_str(&t).unwrap_or_else(|e| panic!("{e}: {t:?}\n{}", self.log()));
        (s, v)
    }

    /// NDJSON lines.
    pub fn lines(&self, path: &str, body: &Value) -> Vec<Value> {
        let (s, t) = self.post(path, &body.to_string());
        assert_eq!(s, 200, "{t}");
        t.lines()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .collect()
    }

    /// Resident memory of the server process (VmRSS), bytes.
    pub fn rss(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0)
    }
}

/// Reads a streamed body up to `n` bytes, then drops the connection.
pub fn read_some_then_drop(port: u16, path: &str, body: &str, n: usize) {
    use std::io::Write;
    let mut c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    write!(
        c,
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    c.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let mut buf = vec![0u8; n];
    let mut got = 0;
    while got < n {
        match c.read(&mut buf[got..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => got += k,
        }
    }
    assert!(got > 0, "nothing streamed");
}
