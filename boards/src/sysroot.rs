//! The root below which every system file is read.
//!
//! Detection never opens `/proc/...` or `/sys/...` directly: it asks a
//! [`Sysroot`], which is `/` on a real board and a recorded tree (for example
//! `boards/testdata/pi5-8gb/`) in tests or with `pistil board --sysroot DIR`.

use std::io;
use std::path::{Path, PathBuf};

/// Environment variable naming the root directory (same as `--sysroot`).
pub const SYSROOT_ENV: &str = "PISTIL_SYSROOT";

/// A directory standing for `/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sysroot {
    root: PathBuf,
}

/// A system file that exists but could not be read.
#[derive(Debug, thiserror::Error)]
#[error("cannot read {path}: {source}")]
pub struct ReadError {
    /// The file, as seen from the real filesystem (root joined).
    pub path: PathBuf,
    #[source]
    pub source: io::Error,
}

impl Default for Sysroot {
    fn default() -> Self {
        Sysroot::new("/")
    }
}

impl Sysroot {
    /// A sysroot at `root` (`/` for the live system).
    pub fn new(root: impl Into<PathBuf>) -> Sysroot {
        Sysroot { root: root.into() }
    }

    /// `$PISTIL_SYSROOT` if set and non-empty, else `/`.
    pub fn from_env() -> Sysroot {
        match std::env::var_os(SYSROOT_ENV) {
            Some(v) if !v.is_empty() => Sysroot::new(v),
            _ => Sysroot::default(),
        }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Whether this is the live system (`/`).
    pub fn is_live(&self) -> bool {
        self.root == Path::new("/")
    }

    /// The real path of the absolute system path `abs` (`/proc/meminfo`).
    pub fn path(&self, abs: &str) -> PathBuf {
        self.root.join(abs.trim_start_matches('/'))
    }

    /// Reads a text file; `Ok(None)` when it does not exist (the normal case
    /// for, say, a device tree on x86). Invalid UTF-8 is replaced, not fatal:
    /// these files are ASCII, and a stray byte must not stop detection.
    pub fn read(&self, abs: &str) -> Result<Option<String>, ReadError> {
        read_opt(&self.path(abs))
    }

    /// Like [`Sysroot::read`], but a file that exists and cannot be read is
    /// treated as absent (logged at debug level). For optional facts such as
    /// temperatures, where a permission problem must not stop a run.
    pub fn read_lenient(&self, abs: &str) -> Option<String> {
        match self.read(abs) {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("{e}");
                None
            }
        }
    }

    /// Names of the entries of directory `abs`, sorted; empty if it does not exist.
    pub fn list_dir(&self, abs: &str) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(self.path(abs)) else {
            return Vec::new();
        };
        let mut names: Vec<String> = rd
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        names.sort();
        names
    }
}

/// Reads `path` as text; `Ok(None)` if it does not exist.
pub(crate) fn read_opt(path: &Path) -> Result<Option<String>, ReadError> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(String::from_utf8_lossy(&bytes).into_owned())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(ReadError {
            path: path.to_path_buf(),
            source: e,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn joins_absolute_paths_below_root() {
        let s = Sysroot::new("/tmp/x");
        assert_eq!(
            s.path("/proc/meminfo"),
            PathBuf::from("/tmp/x/proc/meminfo")
        );
        assert_eq!(
            Sysroot::default().path("/proc/meminfo"),
            PathBuf::from("/proc/meminfo")
        );
        assert!(Sysroot::default().is_live());
    }

    #[test]
    fn missing_file_is_none() {
        let s = Sysroot::new(env!("CARGO_MANIFEST_DIR"));
        assert!(s.read("/no/such/file").unwrap().is_none());
        assert!(s.list_dir("/no/such/dir").is_empty());
    }
}
