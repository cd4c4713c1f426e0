//! File-system helpers of the model cache: the pull lock, free disk space,
//! streamed sha256, and the durable rename that publishes a verified file.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{CatalogError, Progress};

/// Read/write buffer for downloads and hashing: 1 MiB.
pub(crate) const BUF_SIZE: usize = 1 << 20;

/// An `io::Error` with what was being done and the path.
pub(crate) fn io_err(what: &str, path: &Path, source: io::Error) -> CatalogError {
    CatalogError::Io {
        what: what.to_string(),
        path: path.to_path_buf(),
        source,
    }
}

/// `<dir>/<file><suffix>`: the sibling paths of a cache file (`.partial`, `.pip`).
pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_os_string();
    s.push(suffix);
    PathBuf::from(s)
}

/// Lowercase hex of a digest.
pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An exclusive advisory lock (`flock`) on `.<file>.lock`, held until dropped.
///
/// `flock` locks die with the process, so a killed pull never leaves a stale
/// lock behind; the (empty) lock file itself is left in place on purpose:
/// deleting it would let a third process lock a different inode.
pub(crate) struct PullLock {
    _file: File,
}

impl PullLock {
    /// Take the lock on `path`; if another process (or thread) holds it, report
    /// `waiting` through `progress` and block until it is released.
    pub(crate) fn acquire(
        path: &Path,
        waiting: &str,
        progress: &mut dyn Progress,
    ) -> Result<PullLock, CatalogError> {
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .map_err(|e| io_err("cannot create lock file", path, e))?;
        if !try_flock(&file, false).map_err(|e| io_err("cannot lock", path, e))? {
            progress.on_status(waiting);
            try_flock(&file, true).map_err(|e| io_err("cannot lock", path, e))?;
        }
        Ok(PullLock { _file: file })
    }
}

/// `flock(LOCK_EX)`, non-blocking unless `block`; `Ok(false)` when it is held elsewhere.
#[cfg(unix)]
fn try_flock(file: &File, block: bool) -> io::Result<bool> {
    use std::os::unix::io::AsRawFd;
    let op = if block {
        libc::LOCK_EX
    } else {
        libc::LOCK_EX | libc::LOCK_NB
    };
    loop {
        // SAFETY: the descriptor belongs to `file`, which is open for the whole call;
        // flock only reads the descriptor and the flags.
        let rc = unsafe { libc::flock(file.as_raw_fd(), op) };
        if rc == 0 {
            return Ok(true);
        }
        let err = io::Error::last_os_error();
        match err.kind() {
            io::ErrorKind::Interrupted => continue,
            io::ErrorKind::WouldBlock => return Ok(false),
            _ => return Err(err),
        }
    }
}

#[cfg(not(unix))]
fn try_flock(_file: &File, _block: bool) -> io::Result<bool> {
    Ok(true)
}

/// Bytes available to an unprivileged writer on the file system holding `dir`
/// (`statvfs`: `f_bavail * f_frsize`). `None` where it cannot be known.
#[cfg(unix)]
pub(crate) fn free_bytes(dir: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes()).ok()?;
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c` is a NUL-terminated path that outlives the call and `st` points to
    // writable memory of exactly one `statvfs`, which the call fills on success.
    let rc = unsafe { libc::statvfs(c.as_ptr(), st.as_mut_ptr()) };
    if rc != 0 {
        return None;
    }
    // SAFETY: statvfs returned 0, so it initialised every field of `st`.
    let st = unsafe { st.assume_init() };
    #[allow(clippy::unnecessary_cast)] // the field types differ between targets
    Some((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

#[cfg(not(unix))]
pub(crate) fn free_bytes(_dir: &Path) -> Option<u64> {
    None
}

/// Fail with [`CatalogError::DiskSpace`] unless `needed` bytes are free in `dir`.
pub(crate) fn check_space(dir: &Path, needed: u64) -> Result<(), CatalogError> {
    match free_bytes(dir) {
        Some(free) if free < needed => Err(CatalogError::DiskSpace {
            dir: dir.to_path_buf(),
            needed,
            free,
        }),
        _ => Ok(()),
    }
}

/// Feed the first bytes of `path` (all of it) into `hasher`, reporting `status`
/// first; returns the number of bytes hashed.
pub(crate) fn hash_existing(
    path: &Path,
    hasher: &mut Sha256,
    progress: &mut dyn Progress,
    status: &str,
) -> Result<u64, CatalogError> {
    progress.on_status(status);
    let mut f = File::open(path).map_err(|e| io_err("cannot open", path, e))?;
    let mut buf = vec![0u8; BUF_SIZE];
    let mut n_total = 0u64;
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| io_err("cannot read", path, e))?;
        if n == 0 {
            return Ok(n_total);
        }
        let chunk = buf.get(..n).unwrap_or_default();
        hasher.update(chunk);
        n_total += n as u64;
    }
}

/// Publish a verified `partial` as `dest`: rename (atomic within one file
/// system) and sync the directory so the rename survives a power cut.
pub(crate) fn publish(partial: &Path, dest: &Path) -> Result<(), CatalogError> {
    std::fs::rename(partial, dest).map_err(|e| io_err("cannot rename into place", dest, e))?;
    if let Some(dir) = dest.parent() {
        // Best effort: not every file system lets a directory be opened and synced.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(())
}

/// What the finished file must match.
#[derive(Debug, Clone, Default)]
pub(crate) struct Expected {
    /// Exact size in bytes, if known.
    pub size: Option<u64>,
    /// Lowercase hex sha256, if known.
    pub sha256: Option<String>,
}

/// Check a finished file's size and sha256 against what is expected; on a
/// mismatch the partial file is deleted (its bytes are wrong, resuming would
/// keep them) and the error says what differed.
pub(crate) fn verify(
    name: &str,
    partial: &Path,
    size: u64,
    sha256: &str,
    expected: &Expected,
) -> Result<(), CatalogError> {
    if let Some(want) = expected.size {
        if want != size {
            let _ = std::fs::remove_file(partial);
            return Err(CatalogError::SizeMismatch {
                name: name.to_string(),
                expected: want,
                got: size,
            });
        }
    }
    if let Some(want) = &expected.sha256 {
        if !want.eq_ignore_ascii_case(sha256) {
            let _ = std::fs::remove_file(partial);
            return Err(CatalogError::ChecksumMismatch {
                name: name.to_string(),
                expected: want.clone(),
                got: sha256.to_string(),
            });
        }
    }
    Ok(())
}
