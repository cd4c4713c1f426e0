//! Resumable, verified HTTP(S) download of one file into `<file>.partial`.
//!
//! - Redirects are followed by hand (up to [`MAX_REDIRECTS`]) so the
//!   `X-Linked-ETag` / `X-Linked-Size` headers of the first hop are seen: Hugging
//!   Face puts the file's sha256 and size there before redirecting to its CDN.
//! - A partial file from an earlier attempt is hashed first, then resumed with
//!   `Range: bytes=N-`; a `206` appends, a `200` (no range support) starts over,
//!   a `416` (the partial is not a prefix of this file) starts over.
//! - The sha256 is computed while writing; the file is checked against the
//!   catalog's size and sha256, else against the server's `Content-Length` and
//!   the sha256 in its ETag when it carries one.
//! - A dropped connection is resumed automatically a few times
//!   ([`super::PullOptions::retries`]); after that the `.partial` stays for the
//!   next pull to resume.

use std::fs::File;
use std::io::{Read, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use super::fsutil::{self, io_err, Expected, BUF_SIZE};
use super::{CatalogError, Progress, PullOptions};

/// Redirect hops followed before giving up.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// A response whose body is about to be read, with what its headers said.
struct Opened {
    body: ureq::Body,
    /// `true` for a `206` continuing at the requested offset.
    resumed: bool,
    /// Total size of the file, when the server said (Content-Range total or Content-Length).
    total: Option<u64>,
    /// Bytes this response's body will carry, when known.
    body_len: Option<u64>,
    /// sha256 the server published for the file (X-Linked-ETag / ETag), if any.
    server_sha256: Option<String>,
}

/// Outcome of one attempt that did not finish.
enum AttemptError {
    /// Worth retrying with a resume (connection dropped, stalled).
    Transient(CatalogError),
    /// Not worth retrying (404, checksum mismatch, disk full, ...).
    Fatal(CatalogError),
}

/// Download `url` into `partial` (resuming it if it exists) and check it.
/// On success `partial` holds the complete, verified file.
pub(crate) fn fetch(
    name: &str,
    url: &str,
    partial: &Path,
    expected: &Expected,
    opts: &PullOptions,
    progress: &mut dyn Progress,
) -> Result<(), CatalogError> {
    let agent = agent(opts);
    let mut attempt = 0u32;
    // Set once a server answered: a failure to connect before that (no network,
    // no DNS) is reported at once instead of being retried.
    let mut answered = false;
    loop {
        match attempt_once(
            &agent,
            name,
            url,
            partial,
            expected,
            progress,
            &mut answered,
        ) {
            Ok(()) => return Ok(()),
            Err(AttemptError::Fatal(e)) => return Err(e),
            Err(AttemptError::Transient(e)) => {
                let never_connected = !answered && matches!(e, CatalogError::Network { .. });
                if attempt >= opts.retries || never_connected {
                    return Err(e);
                }
                attempt += 1;
                let wait = opts.retry_delay.saturating_mul(1 << (attempt - 1).min(5));
                progress.on_status(&format!(
                    "{e}; resuming in {:.0?} (retry {attempt} of {})",
                    wait, opts.retries
                ));
                std::thread::sleep(wait);
            }
        }
    }
}

/// The blocking HTTP agent: proxies from the environment (`HTTPS_PROXY`,
/// `ALL_PROXY`, `NO_PROXY`, ...), our own redirect handling, no status-as-error.
fn agent(opts: &PullOptions) -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("pistil/", env!("CARGO_PKG_VERSION")))
        .timeout_connect(Some(Duration::from_secs(30)))
        .timeout_recv_response(Some(opts.stall_timeout))
        .timeout_per_read(Some(opts.stall_timeout))
        .build()
        .into()
}

/// One request (plus redirects) and as much of the body as arrives; sets
/// `answered` when a server answered.
fn attempt_once(
    agent: &ureq::Agent,
    name: &str,
    url: &str,
    partial: &Path,
    expected: &Expected,
    progress: &mut dyn Progress,
    answered: &mut bool,
) -> Result<(), AttemptError> {
    use AttemptError::{Fatal, Transient};

    // What is already there, hashed, so a resumed download ends with the whole file's sha256.
    let mut hasher = Sha256::new();
    let mut have = match std::fs::metadata(partial) {
        Ok(m) => m.len(),
        Err(_) => 0,
    };
    if let Some(size) = expected.size {
        if have > size {
            // Longer than the file can be: not a prefix of it.
            remove(partial).map_err(Fatal)?;
            have = 0;
        }
    }
    if have > 0 {
        let status = format!("checking the {} already downloaded", human_bytes(have));
        let hashed =
            fsutil::hash_existing(partial, &mut hasher, progress, &status).map_err(Fatal)?;
        have = hashed;
        if expected.size == Some(have) {
            // An earlier pull got every byte but stopped before publishing it.
            let sha = fsutil::hex(&hasher.finalize());
            return fsutil::verify(name, partial, have, &sha, expected).map_err(Fatal);
        }
    }

    let opened = loop {
        let result = open(agent, url, have);
        if !matches!(
            &result,
            Err(OpenError::Transient(CatalogError::Network { .. }))
        ) {
            *answered = true;
        }
        match result {
            Ok(o) => break o,
            Err(OpenError::RangeNotSatisfiable) => {
                // The partial is not a prefix of what the server has: start over.
                progress.on_status(
                    "the partial download does not match the server's file; starting over",
                );
                remove(partial).map_err(Fatal)?;
                have = 0;
                hasher = Sha256::new();
            }
            Err(OpenError::Fatal(e)) => return Err(Fatal(e)),
            Err(OpenError::Transient(e)) => return Err(Transient(e)),
        }
    };

    let mut file = if opened.resumed {
        File::options()
            .append(true)
            .open(partial)
            .map_err(|e| Fatal(io_err("cannot open", partial, e)))?
    } else {
        if have > 0 {
            progress.on_status("the server cannot resume this download; starting over");
        }
        have = 0;
        hasher = Sha256::new();
        File::create(partial).map_err(|e| Fatal(io_err("cannot create", partial, e)))?
    };

    // The size the file will have: the catalog's if known, and the server must agree.
    let total = match (expected.size, opened.total) {
        (Some(want), Some(server)) if want != server => {
            return Err(Fatal(CatalogError::SizeMismatch {
                name: name.to_string(),
                expected: want,
                got: server,
            }));
        }
        (Some(want), _) => Some(want),
        (None, server) => server,
    };
    if let Some(total) = total {
        let dir = partial.parent().unwrap_or(Path::new("."));
        fsutil::check_space(dir, total.saturating_sub(have)).map_err(Fatal)?;
    }

    progress.on_start(total);
    if have > 0 {
        progress.on_status(&format!("resuming at {}", human_bytes(have)));
        progress.on_bytes(have);
    }

    // Stream the body: write, hash, count.
    let mut reader = opened.body.into_reader();
    let mut buf = vec![0u8; BUF_SIZE];
    let mut received = 0u64;
    let read_result: Result<(), std::io::Error> = loop {
        match reader.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => {
                let chunk = buf.get(..n).unwrap_or_default();
                file.write_all(chunk)
                    .map_err(|e| Fatal(io_err("cannot write", partial, e)))?;
                hasher.update(chunk);
                received += n as u64;
                progress.on_bytes(n as u64);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e),
        }
    };
    file.flush()
        .map_err(|e| Fatal(io_err("cannot write", partial, e)))?;
    file.sync_all()
        .map_err(|e| Fatal(io_err("cannot sync", partial, e)))?;
    drop(file);

    let got = have + received;
    let short = match (opened.body_len, total) {
        (Some(len), _) if received < len => Some(have + len),
        (_, Some(total)) if got < total => Some(total),
        _ => None,
    };
    if let Err(e) = read_result {
        return Err(Transient(CatalogError::Interrupted {
            url: url.to_string(),
            got,
            expected: short.or(total),
            detail: e.to_string(),
        }));
    }
    if let Some(expected_len) = short {
        return Err(Transient(CatalogError::Interrupted {
            url: url.to_string(),
            got,
            expected: Some(expected_len),
            detail: "the connection closed early".into(),
        }));
    }

    let sha = fsutil::hex(&hasher.finalize());
    let mut want = expected.clone();
    if want.size.is_none() {
        want.size = total;
    }
    if want.sha256.is_none() {
        want.sha256 = opened.server_sha256.clone();
        if want.sha256.is_none() {
            progress.on_status("no sha256 is known for this file: checked its size only");
        }
    }
    fsutil::verify(name, partial, got, &sha, &want).map_err(Fatal)
}

fn remove(path: &Path) -> Result<(), CatalogError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err("cannot remove", path, e)),
    }
}

enum OpenError {
    RangeNotSatisfiable,
    Transient(CatalogError),
    Fatal(CatalogError),
}

/// GET `url` from byte `offset`, following redirects; returns the response
/// whose body is the file (or its tail).
fn open(agent: &ureq::Agent, url: &str, offset: u64) -> Result<Opened, OpenError> {
    let mut current = url.to_string();
    let mut server_sha256: Option<String> = None;
    let mut linked_size: Option<u64> = None;
    for _hop in 0..=MAX_REDIRECTS {
        let mut req = agent.get(&current);
        if offset > 0 {
            req = req.header("Range", format!("bytes={offset}-"));
        }
        let resp = req.call().map_err(|e| {
            let transient = match &e {
                // A stalled or reset connection may work on a second try...
                ureq::Error::Timeout(_) => true,
                ureq::Error::Io(io) => !matches!(
                    io.kind(),
                    std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
                ),
                // ...no network, no such host, a TLS failure will not.
                _ => false,
            };
            let err = CatalogError::Network {
                host: host_of(&current),
                detail: e.to_string(),
            };
            if transient {
                OpenError::Transient(err)
            } else {
                OpenError::Fatal(err)
            }
        })?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        let header = |k: &str| {
            headers
                .get(k)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        if server_sha256.is_none() {
            server_sha256 = header("x-linked-etag").and_then(|e| sha256_of_etag(&e));
        }
        if linked_size.is_none() {
            linked_size = header("x-linked-size").and_then(|s| s.trim().parse().ok());
        }
        match status {
            301 | 302 | 303 | 307 | 308 => {
                let loc = header("location").ok_or_else(|| {
                    OpenError::Fatal(CatalogError::BadResponse {
                        url: current.clone(),
                        detail: format!("HTTP {status} redirect without a Location"),
                    })
                })?;
                current = join_url(&current, &loc);
                continue;
            }
            200 | 206 => {
                if server_sha256.is_none() {
                    server_sha256 = header("etag").and_then(|e| sha256_of_etag(&e));
                }
                let content_length: Option<u64> =
                    header("content-length").and_then(|s| s.trim().parse().ok());
                let (resumed, total) = if status == 206 {
                    let cr = header("content-range").unwrap_or_default();
                    let (start, total) = parse_content_range(&cr).ok_or_else(|| {
                        OpenError::Fatal(CatalogError::BadResponse {
                            url: current.clone(),
                            detail: format!("206 with an unreadable Content-Range '{cr}'"),
                        })
                    })?;
                    if start != offset {
                        return Err(OpenError::Fatal(CatalogError::BadResponse {
                            url: current.clone(),
                            detail: format!("asked for bytes from {offset}, got from {start}"),
                        }));
                    }
                    (true, total.or(content_length.map(|l| offset + l)))
                } else {
                    (false, content_length)
                };
                let total = total.or(linked_size);
                return Ok(Opened {
                    body: resp.into_body(),
                    resumed,
                    total,
                    body_len: content_length,
                    server_sha256,
                });
            }
            416 if offset > 0 => return Err(OpenError::RangeNotSatisfiable),
            404 | 410 => {
                return Err(OpenError::Fatal(CatalogError::NotFound {
                    url: current.clone(),
                    status,
                }))
            }
            500..=599 => {
                return Err(OpenError::Transient(CatalogError::HttpStatus {
                    url: current.clone(),
                    status,
                }))
            }
            _ => {
                return Err(OpenError::Fatal(CatalogError::HttpStatus {
                    url: current.clone(),
                    status,
                }))
            }
        }
    }
    Err(OpenError::Fatal(CatalogError::BadResponse {
        url: url.to_string(),
        detail: format!("more than {MAX_REDIRECTS} redirects"),
    }))
}

/// `bytes START-END/TOTAL` → (START, Some(TOTAL)); TOTAL may be `*`.
fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, end) = range.trim().split_once('-')?;
    let start: u64 = start.trim().parse().ok()?;
    let end: u64 = end.trim().parse().ok()?;
    if end < start {
        return None;
    }
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((start, total))
}

/// The sha256 in an ETag (`"<64 hex>"`, maybe weak `W/`), if it is one.
/// Hugging Face's LFS ETag (and its `X-Linked-ETag`) is the file's sha256.
fn sha256_of_etag(etag: &str) -> Option<String> {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e).trim_matches('"');
    (e.len() == 64 && e.chars().all(|c| c.is_ascii_hexdigit())).then(|| e.to_ascii_lowercase())
}

/// Host name of a URL, for error messages.
pub(crate) fn host_of(url: &str) -> String {
    let after_scheme = url.split_once("://").map(|(_, r)| r).unwrap_or(url);
    let authority = after_scheme
        .split(['/', '?', '#'])
        .next()
        .unwrap_or(after_scheme);
    let host = authority
        .rsplit_once('@')
        .map(|(_, h)| h)
        .unwrap_or(authority);
    host.to_string()
}

/// Resolve a redirect `Location` against the URL it came from.
fn join_url(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    let (scheme, rest) = base.split_once("://").unwrap_or(("https", base));
    if let Some(net) = loc.strip_prefix("//") {
        return format!("{scheme}://{net}");
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or(rest);
    if loc.starts_with('/') {
        return format!("{scheme}://{authority}{loc}");
    }
    // Relative path: replace the last segment of the base path.
    let path = rest.get(authority.len()..).unwrap_or("");
    let path = path.split(['?', '#']).next().unwrap_or("");
    let dir = match path.rfind('/') {
        Some(i) => path.get(..=i).unwrap_or("/"),
        None => "/",
    };
    format!("{scheme}://{authority}{dir}{loc}")
}

/// `1.2 GB`, `253 MB`, `12 kB` (decimal units, as download sizes are quoted).
pub fn human_bytes(n: u64) -> String {
    let f = n as f64;
    if n >= 1_000_000_000 {
        format!("{:.1} GB", f / 1e9)
    } else if n >= 1_000_000 {
        format!("{:.0} MB", f / 1e6)
    } else if n >= 1_000 {
        format!("{:.0} kB", f / 1e3)
    } else {
        format!("{n} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range() {
        assert_eq!(
            parse_content_range("bytes 100-199/1000"),
            Some((100, Some(1000)))
        );
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes 9-5/10"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
        assert_eq!(parse_content_range(""), None);
    }

    #[test]
    fn etag_sha() {
        let h = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
        assert_eq!(sha256_of_etag(&format!("\"{h}\"")).as_deref(), Some(h));
        assert_eq!(sha256_of_etag(&format!("W/\"{h}\"")).as_deref(), Some(h));
        assert_eq!(sha256_of_etag("\"abc-123\""), None);
        assert_eq!(sha256_of_etag("\"d41d8cd98f00b204e9800998ecf8427e\""), None);
    }

    #[test]
    fn urls() {
        assert_eq!(host_of("https://huggingface.co/a/b"), "huggingface.co");
        assert_eq!(host_of("http://u:p@127.0.0.1:8080/x?y"), "127.0.0.1:8080");
        assert_eq!(
            join_url("https://a.b/x/y?q=1", "https://c.d/z"),
            "https://c.d/z"
        );
        assert_eq!(join_url("https://a.b/x/y?q=1", "/z?k"), "https://a.b/z?k");
        assert_eq!(join_url("https://a.b/x/y", "//c.d/z"), "https://c.d/z");
        assert_eq!(join_url("http://a.b:9/x/y", "z"), "http://a.b:9/x/z");
        assert_eq!(join_url("http://a.b", "z"), "http://a.b/z");
    }

    #[test]
    fn sizes() {
        assert_eq!(human_bytes(253_113_024), "253 MB");
        assert_eq!(human_bytes(4_683_073_248), "4.7 GB");
        assert_eq!(human_bytes(999), "999 B");
    }
}
