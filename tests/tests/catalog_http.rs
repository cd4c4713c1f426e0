//! The HTTP pull path against a tiny HTTP/1.1 server on 127.0.0.1 (no network):
//! full download, resume after a dropped connection (automatic and across
//! pulls), servers without Range support, wrong sha256, 404/500, lying
//! Content-Length, stalled connections, redirects with `X-Linked-ETag`, no
//! server at all, disk space, and two pulls of one model at once.
//!
//! Every test pulls into its own temporary directory with `pull_to`, so no
//! environment variable is touched and the tests run in parallel.

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use pistil_runtime::catalog::{
    self, CatalogError, Entry, Progress, PullOptions, PullOutcome, Source,
};
use sha2::{Digest, Sha256};

// ---------------------------------------------------------------- test server

/// How the test server answers.
#[derive(Clone, Default)]
struct Behavior {
    /// Honour `Range: bytes=N-` with a 206.
    ranges: bool,
    /// For the first `drop_count` responses with a body, close the connection
    /// after this many body bytes.
    drop_after: Option<usize>,
    drop_count: usize,
    /// After `drop_after` bytes, stall (send nothing, keep the socket open) for this long instead.
    stall: Option<Duration>,
    /// Answer every request with this status and no body.
    status: Option<u16>,
    /// Claim this Content-Length instead of the real one.
    lie_length: Option<u64>,
    /// Send this ETag.
    etag: Option<String>,
    /// `/redirect` answers 302 → `/file` carrying this X-Linked-ETag.
    linked_etag: Option<String>,
    /// Sleep this long between 64 KiB body chunks (to make pulls overlap).
    chunk_delay: Option<Duration>,
}

struct Server {
    base: String,
    /// Request line + Range header of every request, in order.
    log: Arc<Mutex<Vec<String>>>,
}

fn serve(data: Vec<u8>, behavior: Behavior) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let log = Arc::new(Mutex::new(Vec::new()));
    let log2 = log.clone();
    let data = Arc::new(data);
    let drops_left = Arc::new(Mutex::new(behavior.drop_count));
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { continue };
            let (data, b, log, drops) = (
                data.clone(),
                behavior.clone(),
                log2.clone(),
                drops_left.clone(),
            );
            std::thread::spawn(move || {
                let _ = handle(stream, &data, &b, &log, &drops);
            });
        }
    });
    Server { base, log }
}

fn handle(
    mut stream: TcpStream,
    data: &[u8],
    b: &Behavior,
    log: &Mutex<Vec<String>>,
    drops: &Mutex<usize>,
) -> std::io::Result<()> {
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    let mut range_start: Option<u64> = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" {
            break;
        }
        let lower = line.to_ascii_lowercase();
        if let Some(v) = lower.strip_prefix("range:") {
            let v = v.trim().trim_start_matches("bytes=");
            range_start = v.trim_end_matches('-').parse().ok();
        }
    }
    let path = request_line
        .split_whitespace()
        .nth(1)
        .unwrap_or("/")
        .to_string();
    log.lock().unwrap().push(format!(
        "{path} range={}",
        range_start
            .map(|r| r.to_string())
            .unwrap_or_else(|| "-".into())
    ));

    if let Some(status) = b.status {
        write!(
            stream,
            "HTTP/1.1 {status} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    if path == "/redirect" {
        let linked = b
            .linked_etag
            .as_ref()
            .map(|e| {
                format!(
                    "X-Linked-ETag: \"{e}\"\r\nX-Linked-Size: {}\r\n",
                    data.len()
                )
            })
            .unwrap_or_default();
        write!(
            stream,
            "HTTP/1.1 302 Found\r\nLocation: file\r\n{linked}Content-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }
    if path != "/file" {
        write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        )?;
        return Ok(());
    }

    let total = data.len() as u64;
    let etag = b
        .etag
        .as_ref()
        .map(|e| format!("ETag: \"{e}\"\r\n"))
        .unwrap_or_default();
    let (head, body): (String, &[u8]) = match range_start {
        Some(start) if b.ranges && start >= total => {
            write!(
                stream,
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{total}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            )?;
            return Ok(());
        }
        Some(start) if b.ranges => {
            let body = &data[start as usize..];
            let len = b.lie_length.unwrap_or(body.len() as u64);
            (
                format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {start}-{}/{total}\r\nContent-Length: {len}\r\n{etag}Accept-Ranges: bytes\r\nConnection: close\r\n\r\n",
                    total - 1
                ),
                body,
            )
        }
        _ => {
            let len = b.lie_length.unwrap_or(total);
            (
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n{etag}Connection: close\r\n\r\n"
                ),
                data,
            )
        }
    };
    stream.write_all(head.as_bytes())?;

    let mut limit = body.len();
    if let Some(after) = b.drop_after {
        let mut left = drops.lock().unwrap();
        if *left > 0 {
            *left -= 1;
            limit = after.min(body.len());
        }
    }
    for chunk in body[..limit].chunks(64 * 1024) {
        stream.write_all(chunk)?;
        if let Some(d) = b.chunk_delay {
            std::thread::sleep(d);
        }
    }
    stream.flush()?;
    if limit < body.len() {
        if let Some(stall) = b.stall {
            std::thread::sleep(stall);
        }
    }
    // Dropping the stream closes the connection (mid-body if limit < len).
    Ok(())
}

// ---------------------------------------------------------------- helpers

/// Deterministic test data (not all zeros, so a shifted resume would show).
fn data(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
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

fn entry(url: String, size: Option<u64>, sha256: Option<String>) -> Entry {
    Entry {
        name: "test:tiny".into(),
        description: "test".into(),
        architecture: "llama".into(),
        parameters: 1,
        quant: "Q4_K_M".into(),
        size,
        sha256,
        verified: None,
        min_ram_mb: 1,
        license: "test".into(),
        chat: "none".into(),
        thinks: false,
        source: Source::Https { url },
    }
}

fn temp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("pistil-http-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn fast(retries: u32) -> PullOptions {
    PullOptions {
        force: false,
        retries,
        retry_delay: Duration::from_millis(10),
        stall_timeout: Duration::from_secs(10),
    }
}

/// Records everything a pull reports.
#[derive(Default)]
struct Recorder {
    starts: Vec<Option<u64>>,
    bytes: u64,
    status: Vec<String>,
}

impl Progress for Recorder {
    fn on_start(&mut self, total: Option<u64>) {
        self.starts.push(total);
        self.bytes = 0;
    }
    fn on_bytes(&mut self, n: u64) {
        self.bytes += n;
    }
    fn on_status(&mut self, msg: &str) {
        self.status.push(msg.to_string());
    }
}

/// The names of the files in `dir`, sorted (lock files ignored).
fn files(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".lock"))
        .collect();
    v.sort();
    v
}

const FILE: &str = "test-tiny.gguf";
const PARTIAL: &str = "test-tiny.gguf.partial";

// ---------------------------------------------------------------- tests

#[test]
fn full_download_verifies_and_publishes() {
    let d = data(300_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            ..Default::default()
        },
    );
    let dir = temp_dir("full");
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let mut rec = Recorder::default();
    let out = catalog::pull_to(&e, &dir, &fast(0), &mut rec).unwrap();
    assert_eq!(out, PullOutcome::Downloaded(dir.join(FILE)));
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
    assert_eq!(files(&dir), vec![FILE]);
    assert_eq!(rec.starts, vec![Some(d.len() as u64)]);
    assert_eq!(rec.bytes, d.len() as u64);

    // Again: a no-op, no request.
    let n_requests = srv.log.lock().unwrap().len();
    let out = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert_eq!(out, PullOutcome::UpToDate(dir.join(FILE)));
    assert_eq!(srv.log.lock().unwrap().len(), n_requests);

    // --force downloads again.
    let opts = PullOptions {
        force: true,
        ..fast(0)
    };
    let out = catalog::pull_to(&e, &dir, &opts, &mut Recorder::default()).unwrap();
    assert_eq!(out, PullOutcome::Downloaded(dir.join(FILE)));
    assert_eq!(srv.log.lock().unwrap().len(), n_requests + 1);
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
}

#[test]
fn dropped_connection_is_resumed_automatically() {
    let d = data(1_000_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            drop_after: Some(400_000),
            drop_count: 1,
            ..Default::default()
        },
    );
    let dir = temp_dir("autoresume");
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let mut rec = Recorder::default();
    catalog::pull_to(&e, &dir, &fast(2), &mut rec).unwrap();
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
    let log = srv.log.lock().unwrap().clone();
    assert_eq!(
        log,
        vec![
            "/file range=-".to_string(),
            "/file range=400000".to_string()
        ]
    );
    assert!(
        rec.status.iter().any(|s| s.contains("resuming at")),
        "{:?}",
        rec.status
    );
}

#[test]
fn interrupted_pull_leaves_only_partial_and_next_pull_resumes() {
    let d = data(1_000_000);
    let dir = temp_dir("interrupted");
    let want = Some(sha(&d));

    // A server that drops every connection: the pull fails, only the .partial remains.
    let bad = serve(
        d.clone(),
        Behavior {
            ranges: true,
            drop_after: Some(300_000),
            drop_count: usize::MAX,
            ..Default::default()
        },
    );
    let e = entry(
        format!("{}/file", bad.base),
        Some(d.len() as u64),
        want.clone(),
    );
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, CatalogError::Interrupted { got: 300_000, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("pull again to resume"), "{err}");
    assert_eq!(files(&dir), vec![PARTIAL]);
    assert_eq!(std::fs::read(dir.join(PARTIAL)).unwrap(), &d[..300_000]);
    assert!(!dir.join(FILE).exists());

    // A good server: the next pull asks for the rest only.
    let good = serve(
        d.clone(),
        Behavior {
            ranges: true,
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", good.base), Some(d.len() as u64), want);
    let mut rec = Recorder::default();
    catalog::pull_to(&e, &dir, &fast(0), &mut rec).unwrap();
    assert_eq!(
        good.log.lock().unwrap().clone(),
        vec!["/file range=300000".to_string()]
    );
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
    assert_eq!(files(&dir), vec![FILE]);
    assert_eq!(
        rec.bytes,
        d.len() as u64,
        "progress counts the resumed bytes too"
    );
}

#[test]
fn server_without_range_support_starts_over() {
    let d = data(500_000);
    let dir = temp_dir("norange");
    // A stale prefix from an earlier attempt.
    std::fs::write(dir.join(PARTIAL), &d[..123_456]).unwrap();
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: false,
            ..Default::default()
        },
    );
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let mut rec = Recorder::default();
    catalog::pull_to(&e, &dir, &fast(0), &mut rec).unwrap();
    assert_eq!(
        srv.log.lock().unwrap().clone(),
        vec!["/file range=123456".to_string()]
    );
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
    assert!(
        rec.status.iter().any(|s| s.contains("starting over")),
        "{:?}",
        rec.status
    );

    // Dropped mid-way without range support: the automatic retry starts over too.
    let dir = temp_dir("norange-drop");
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: false,
            drop_after: Some(200_000),
            drop_count: 1,
            ..Default::default()
        },
    );
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    catalog::pull_to(&e, &dir, &fast(1), &mut Recorder::default()).unwrap();
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
}

#[test]
fn partial_that_is_not_a_prefix_is_discarded() {
    let d = data(200_000);
    let dir = temp_dir("416");
    // Longer than the server's file: the server answers 416, the pull starts over.
    std::fs::write(dir.join(PARTIAL), data(250_000)).unwrap();
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", srv.base), None, Some(sha(&d)));
    catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert_eq!(
        srv.log.lock().unwrap().clone(),
        vec![
            "/file range=250000".to_string(),
            "/file range=-".to_string()
        ]
    );
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);

    // A wrong prefix of the right length is caught by the sha256 and deleted.
    let dir = temp_dir("badprefix");
    let mut wrong = d[..100_000].to_vec();
    wrong[5] ^= 0xff;
    std::fs::write(dir.join(PARTIAL), &wrong).unwrap();
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert_eq!(files(&dir), Vec::<String>::new());
    // ...so the next pull starts clean and succeeds.
    catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
}

#[test]
fn wrong_sha256_is_an_error_and_saves_nothing() {
    let d = data(100_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            ..Default::default()
        },
    );
    let dir = temp_dir("badsha");
    let wrong = sha(b"something else");
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(wrong.clone()),
    );
    let err = catalog::pull_to(&e, &dir, &fast(3), &mut Recorder::default()).unwrap_err();
    match &err {
        CatalogError::ChecksumMismatch { expected, got, .. } => {
            assert_eq!(expected, &wrong);
            assert_eq!(got, &sha(&d));
        }
        other => panic!("expected ChecksumMismatch, got {other}"),
    }
    assert_eq!(
        files(&dir),
        Vec::<String>::new(),
        "no final file, no partial"
    );
    assert_eq!(
        srv.log.lock().unwrap().len(),
        1,
        "a checksum mismatch is not retried"
    );
}

#[test]
fn not_found_and_server_errors() {
    let dir = temp_dir("status");
    let srv = serve(data(10), Behavior::default());
    let e = entry(format!("{}/missing.gguf", srv.base), None, None);
    let err = catalog::pull_to(&e, &dir, &fast(3), &mut Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CatalogError::NotFound { status: 404, .. }),
        "{msg}"
    );
    assert!(
        msg.contains("/missing.gguf") && msg.contains("404"),
        "{msg}"
    );
    assert_eq!(srv.log.lock().unwrap().len(), 1, "a 404 is not retried");

    let srv = serve(
        data(10),
        Behavior {
            status: Some(500),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", srv.base), None, None);
    let err = catalog::pull_to(&e, &dir, &fast(2), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, CatalogError::HttpStatus { status: 500, .. }),
        "{err}"
    );
    assert_eq!(srv.log.lock().unwrap().len(), 3, "a 500 is retried");
    assert_eq!(files(&dir), Vec::<String>::new());
}

#[test]
fn lying_content_length() {
    let d = data(100_000);
    let dir = temp_dir("lies");

    // Claims more than it sends, then closes: an interruption, never a complete file.
    let srv = serve(
        d.clone(),
        Behavior {
            lie_length: Some(150_000),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", srv.base), None, None);
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(matches!(err, CatalogError::Interrupted { .. }), "{err}");
    assert!(!dir.join(FILE).exists());

    // Claims a size the catalog disagrees with: refused before the body is read.
    let dir = temp_dir("lies2");
    let srv = serve(
        d.clone(),
        Behavior {
            lie_length: Some(60_000),
            ..Default::default()
        },
    );
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(
            err,
            CatalogError::SizeMismatch {
                expected: 100_000,
                got: 60_000,
                ..
            }
        ),
        "{err}"
    );
    assert!(!dir.join(FILE).exists());

    // No catalog size or sha256, a short Content-Length, but an ETag sha256: caught.
    let dir = temp_dir("lies3");
    let srv = serve(
        d.clone(),
        Behavior {
            lie_length: Some(60_000),
            etag: Some(sha(&d)),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", srv.base), None, None);
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert_eq!(files(&dir), Vec::<String>::new());
}

#[test]
fn server_sha256_is_checked_when_the_catalog_has_none() {
    let d = data(100_000);
    // ETag carrying the sha256 (as Hugging Face's LFS ETag does): accepted.
    let dir = temp_dir("etag-ok");
    let srv = serve(
        d.clone(),
        Behavior {
            etag: Some(sha(&d)),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/file", srv.base), None, None);
    catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);

    // X-Linked-ETag on the redirect (relative Location): used, so a wrong one fails.
    let dir = temp_dir("linked-bad");
    let srv = serve(
        d.clone(),
        Behavior {
            linked_etag: Some(sha(b"not it")),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/redirect", srv.base), None, None);
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    assert!(
        matches!(err, CatalogError::ChecksumMismatch { .. }),
        "{err}"
    );
    assert_eq!(
        srv.log.lock().unwrap().clone(),
        vec!["/redirect range=-".to_string(), "/file range=-".to_string()]
    );

    // ...and a right one passes.
    let dir = temp_dir("linked-ok");
    let srv = serve(
        d.clone(),
        Behavior {
            linked_etag: Some(sha(&d)),
            ..Default::default()
        },
    );
    let e = entry(format!("{}/redirect", srv.base), None, None);
    catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);

    // Neither a catalog sha256 nor a server one: the size is checked and the user told.
    let dir = temp_dir("nosha");
    let srv = serve(d.clone(), Behavior::default());
    let e = entry(format!("{}/file", srv.base), None, None);
    let mut rec = Recorder::default();
    catalog::pull_to(&e, &dir, &fast(0), &mut rec).unwrap();
    assert!(
        rec.status.iter().any(|s| s.contains("no sha256")),
        "{:?}",
        rec.status
    );
}

#[test]
fn stalled_connection_times_out_and_resumes() {
    let d = data(400_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            drop_after: Some(100_000),
            drop_count: 1,
            stall: Some(Duration::from_secs(5)),
            ..Default::default()
        },
    );
    let dir = temp_dir("stall");
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let opts = PullOptions {
        stall_timeout: Duration::from_millis(500),
        ..fast(1)
    };
    let t = std::time::Instant::now();
    catalog::pull_to(&e, &dir, &opts, &mut Recorder::default()).unwrap();
    assert!(
        t.elapsed() < Duration::from_secs(4),
        "timed out quickly: {:?}",
        t.elapsed()
    );
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
    assert_eq!(
        srv.log.lock().unwrap().last().unwrap(),
        "/file range=100000"
    );
}

#[test]
fn no_server_is_a_clear_network_error() {
    // A port with nothing listening.
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let dir = temp_dir("nonet");
    let e = entry(format!("http://127.0.0.1:{port}/file"), None, None);
    let t = std::time::Instant::now();
    let err = catalog::pull_to(&e, &dir, &fast(3), &mut Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, CatalogError::Network { .. }), "{msg}");
    assert!(
        msg.contains(&format!("cannot reach 127.0.0.1:{port}")),
        "{msg}"
    );
    assert!(msg.contains("pass -m /path/to/model.gguf"), "{msg}");
    assert!(t.elapsed() < Duration::from_secs(5), "not retried for long");
    assert_eq!(files(&dir), Vec::<String>::new());
}

#[test]
fn not_enough_disk_space() {
    // The server claims an absurd size (and the catalog agrees): refused before any byte.
    let huge: u64 = 1 << 60;
    let srv = serve(
        data(1000),
        Behavior {
            lie_length: Some(huge),
            ..Default::default()
        },
    );
    let dir = temp_dir("space");
    let e = entry(format!("{}/file", srv.base), Some(huge), None);
    let err = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap_err();
    let msg = err.to_string();
    assert!(
        matches!(err, CatalogError::DiskSpace { needed, .. } if needed == huge),
        "{msg}"
    );
    assert!(
        msg.contains("not enough disk space") && msg.contains("free"),
        "{msg}"
    );
}

#[test]
fn two_pulls_of_one_model_do_not_collide() {
    let d = data(2_000_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            chunk_delay: Some(Duration::from_millis(5)),
            ..Default::default()
        },
    );
    let dir = temp_dir("concurrent");
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let outcomes: Vec<(PullOutcome, Vec<String>)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2)
            .map(|_| {
                s.spawn(|| {
                    let mut rec = Recorder::default();
                    let out = catalog::pull_to(&e, &dir, &fast(0), &mut rec).unwrap();
                    (out, rec.status)
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let downloaded = outcomes
        .iter()
        .filter(|(o, _)| matches!(o, PullOutcome::Downloaded(_)))
        .count();
    let up_to_date = outcomes
        .iter()
        .filter(|(o, _)| matches!(o, PullOutcome::UpToDate(_)))
        .count();
    assert_eq!((downloaded, up_to_date), (1, 1), "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|(_, st)| st.iter().any(|s| s.contains("waiting for another pull"))),
        "{outcomes:?}"
    );
    assert_eq!(srv.log.lock().unwrap().len(), 1, "one download only");
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
}

#[test]
fn a_wrong_sized_cached_file_is_replaced() {
    let d = data(50_000);
    let srv = serve(
        d.clone(),
        Behavior {
            ranges: true,
            ..Default::default()
        },
    );
    let dir = temp_dir("wrongsize");
    std::fs::write(dir.join(FILE), b"old junk").unwrap();
    let e = entry(
        format!("{}/file", srv.base),
        Some(d.len() as u64),
        Some(sha(&d)),
    );
    let out = catalog::pull_to(&e, &dir, &fast(0), &mut Recorder::default()).unwrap();
    assert!(matches!(out, PullOutcome::Downloaded(_)));
    assert_eq!(std::fs::read(dir.join(FILE)).unwrap(), d);
}
