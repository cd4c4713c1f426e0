//! How the file's bytes get into memory: mapped (the default), mapped and
//! locked, or read into an aligned heap buffer (`--no-mmap`).

use std::fmt;
use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::str::FromStr;

use super::GgufError;

/// How [`super::Gguf::open`] brings the file into memory.
///
/// Spelled `mmap`, `mlock`, `none` on the command line (llama.cpp's
/// `--mmap` / `--mlock` / `--no-mmap`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LoadMode {
    /// Map the file read-only (shared page cache, nothing copied). With
    /// prefetch on, the kernel is told to read the whole file ahead, as
    /// llama.cpp does: `posix_fadvise(SEQUENTIAL)`, `MAP_POPULATE`,
    /// `madvise(WILLNEED)`.
    #[default]
    Mmap,
    /// Map and `mlock` the file so the weights are never paged out. If the
    /// lock fails (usually `RLIMIT_MEMLOCK`) this is a warning, not an error.
    MmapLocked,
    /// Read the whole file into a 64-byte-aligned heap buffer.
    Read,
}

impl LoadMode {
    /// Every mode, in command-line order.
    pub const ALL: [LoadMode; 3] = [LoadMode::Mmap, LoadMode::MmapLocked, LoadMode::Read];

    /// The command-line name: `mmap`, `mlock` or `none`.
    pub fn name(self) -> &'static str {
        match self {
            LoadMode::Mmap => "mmap",
            LoadMode::MmapLocked => "mlock",
            LoadMode::Read => "none",
        }
    }

    /// One line for `--help`.
    pub fn help(self) -> &'static str {
        match self {
            LoadMode::Mmap => "map the file (default): shared page cache, nothing copied",
            LoadMode::MmapLocked => "map the file and mlock it so it is never paged out",
            LoadMode::Read => "no mmap: read the whole file into memory",
        }
    }
}

impl fmt::Display for LoadMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An unknown load-mode name.
#[derive(Debug, thiserror::Error)]
#[error("unknown load mode '{0}': expected mmap, mlock or none")]
pub struct ParseLoadModeError(String);

impl FromStr for LoadMode {
    type Err = ParseLoadModeError;
    fn from_str(s: &str) -> Result<LoadMode, ParseLoadModeError> {
        match s.trim().to_ascii_lowercase().as_str() {
            "mmap" => Ok(LoadMode::Mmap),
            "mlock" => Ok(LoadMode::MmapLocked),
            "none" | "read" | "no-mmap" => Ok(LoadMode::Read),
            _ => Err(ParseLoadModeError(s.to_string())),
        }
    }
}

/// Options for [`super::Gguf::open_with`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenOptions {
    /// How to bring the bytes into memory.
    pub mode: LoadMode,
    /// For the mmap modes: ask the kernel to read the whole file ahead (what
    /// a model load wants). Off for tools that only read the header, such as
    /// `pistil inspect`, so that a 9 GB file is not pulled into the page cache.
    pub prefetch: bool,
}

impl Default for OpenOptions {
    fn default() -> OpenOptions {
        OpenOptions {
            mode: LoadMode::Mmap,
            prefetch: true,
        }
    }
}

/// One 64-byte unit of [`AlignedBuf`]: the alignment comes from the type.
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
#[repr(C, align(64))]
struct Line([u8; 64]);

/// A heap buffer whose start is 64-byte aligned (a `Vec<u8>` is only 1-byte
/// aligned, and kernels cast tensor data to block structs). Built from a
/// `Vec` of 64-byte units, viewed as bytes with `bytemuck` (no unsafe code).
pub(crate) struct AlignedBuf {
    lines: Vec<Line>,
    len: usize,
}

impl AlignedBuf {
    /// A zeroed buffer of `len` bytes, or `None` if the allocation size overflows.
    fn zeroed(len: usize) -> Option<AlignedBuf> {
        let n = len.checked_add(63)? / 64;
        let mut lines = Vec::new();
        lines.try_reserve_exact(n).ok()?;
        lines.resize(n, Line([0; 64]));
        Some(AlignedBuf { lines, len })
    }

    /// A copy of `bytes`.
    pub(crate) fn copy_of(bytes: &[u8]) -> AlignedBuf {
        let n = bytes.len().div_ceil(64);
        let mut lines = vec![Line([0; 64]); n];
        bytemuck::cast_slice_mut::<Line, u8>(&mut lines)[..bytes.len()].copy_from_slice(bytes);
        AlignedBuf {
            lines,
            len: bytes.len(),
        }
    }

    fn as_bytes(&self) -> &[u8] {
        let all: &[u8] = bytemuck::cast_slice(&self.lines);
        all.get(..self.len).unwrap_or(all)
    }

    fn as_bytes_mut(&mut self) -> &mut [u8] {
        let len = self.len;
        let all: &mut [u8] = bytemuck::cast_slice_mut(&mut self.lines);
        &mut all[..len]
    }
}

/// The file's bytes, however they were loaded.
pub(crate) enum Storage {
    /// A read-only shared mapping.
    Mmap(memmap2::Mmap),
    /// A heap copy, 64-byte aligned.
    Heap(AlignedBuf),
}

impl Storage {
    /// All the bytes.
    pub(crate) fn bytes(&self) -> &[u8] {
        match self {
            Storage::Mmap(m) => m,
            Storage::Heap(b) => b.as_bytes(),
        }
    }
}

/// Opens `path` and loads it as `opts` asks.
pub(crate) fn load(path: &Path, opts: OpenOptions) -> Result<Storage, GgufError> {
    let io = |source| GgufError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let meta = file.metadata().map_err(io)?;
    if meta.is_dir() {
        return Err(io(std::io::Error::other("is a directory, not a GGUF file")));
    }
    let len = meta.len();
    let len = usize::try_from(len).map_err(|_| {
        io(std::io::Error::other(format!(
            "file of {len} bytes does not fit in this machine's address space"
        )))
    })?;

    match opts.mode {
        LoadMode::Read => {
            let mut buf = AlignedBuf::zeroed(len).ok_or_else(|| {
                io(std::io::Error::new(
                    std::io::ErrorKind::OutOfMemory,
                    format!("cannot allocate {len} bytes to read the file (try --load-mode mmap)"),
                ))
            })?;
            (&file).read_exact(buf.as_bytes_mut()).map_err(io)?;
            Ok(Storage::Heap(buf))
        }
        LoadMode::Mmap | LoadMode::MmapLocked => {
            if len == 0 {
                // Nothing to map (mmap of length 0 is an error on Linux); the
                // parser reports the empty file.
                return Ok(Storage::Heap(AlignedBuf::copy_of(&[])));
            }
            let prefetch = opts.prefetch || opts.mode == LoadMode::MmapLocked;
            #[cfg(target_os = "linux")]
            if prefetch {
                fadvise_sequential(&file);
            }
            let mut options = memmap2::MmapOptions::new();
            if prefetch {
                options.populate();
            }
            // SAFETY: the map is read-only and private to this `Gguf`; like
            // llama.cpp we rely on the model file not being truncated or
            // rewritten while it is in use (documented on `Gguf::open`).
            // Every access goes through bounds-checked slices of the map.
            let map = unsafe { options.map(&file) }.map_err(io)?;
            if prefetch {
                if let Err(e) = map.advise(memmap2::Advice::WillNeed) {
                    tracing::warn!("madvise(WILLNEED) on {} failed: {e}", path.display());
                }
            }
            if opts.mode == LoadMode::MmapLocked {
                lock(&map, path);
            }
            Ok(Storage::Mmap(map))
        }
    }
}

/// Tells the page cache the file will be read front to back (more readahead),
/// as llama.cpp's `llama_mmap` does.
#[cfg(target_os = "linux")]
fn fadvise_sequential(file: &File) {
    use std::os::fd::AsRawFd;
    // SAFETY: a plain syscall on a file descriptor we own for the duration of
    // the call; it reads no memory of ours.
    let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_SEQUENTIAL) };
    if rc != 0 {
        tracing::debug!("posix_fadvise(SEQUENTIAL) failed: errno {rc}");
    }
}

/// `mlock`s the whole map. On failure, raises the soft `RLIMIT_MEMLOCK` to the
/// hard one if that would help and retries; otherwise warns (as llama.cpp does)
/// naming the limit and how to raise it, and carries on unlocked.
fn lock(map: &memmap2::Mmap, path: &Path) {
    let Err(first) = map.lock() else { return };
    let size = map.len() as u64;
    #[cfg(unix)]
    {
        if let Some((cur, max)) = memlock_limit() {
            if cur < size && max > cur && raise_memlock(max) && map.lock().is_ok() {
                tracing::info!(
                    "raised RLIMIT_MEMLOCK from {} to {} to lock {}",
                    show_limit(cur),
                    show_limit(max),
                    path.display()
                );
                return;
            }
            tracing::warn!(
                "failed to mlock {size} bytes of {}: {first}; RLIMIT_MEMLOCK is {} (hard limit {}). \
                 The model is mapped but may be paged out. Raise the limit with `ulimit -l unlimited` \
                 as root (or `memlock` in /etc/security/limits.conf, `LimitMEMLOCK=infinity` in a \
                 systemd unit), or use --load-mode mmap",
                path.display(),
                show_limit(cur),
                show_limit(max)
            );
            return;
        }
    }
    tracing::warn!(
        "failed to mlock {size} bytes of {}: {first}; the model is mapped but may be paged out",
        path.display()
    );
}

// `rlim_t` is u64 on 64-bit Linux but 32 bits on some targets: keep the casts.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn show_limit(v: u64) -> String {
    if v == libc::RLIM_INFINITY as u64 {
        "unlimited".to_string()
    } else {
        format!("{v} bytes")
    }
}

/// The soft and hard `RLIMIT_MEMLOCK`.
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn memlock_limit() -> Option<(u64, u64)> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes one `rlimit` into the struct we pass, which
    // lives on our stack for the call.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut lim) };
    (rc == 0).then_some((lim.rlim_cur as u64, lim.rlim_max as u64))
}

/// Sets the soft `RLIMIT_MEMLOCK` to `to` (at most the hard limit, which an
/// unprivileged process may do).
#[cfg(unix)]
#[allow(clippy::unnecessary_cast)]
fn raise_memlock(to: u64) -> bool {
    let Some((_, max)) = memlock_limit() else {
        return false;
    };
    let lim = libc::rlimit {
        rlim_cur: to as libc::rlim_t,
        rlim_max: max as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct we pass, which lives on our stack.
    unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &lim) == 0 }
}
