//! How much memory a model may use: `/proc/meminfo` and the cgroup limit.
//!
//! Weights are mapped from the GGUF file, so they live in the page cache.
//! The kernel's `MemAvailable` already counts reclaimable page cache (including
//! the model file's pages, if a previous run left them cached), so it is the
//! right figure as it is: adding the model file's cached pages would count them
//! twice. Inside a container or a systemd unit with `MemoryMax=`, the cgroup
//! limit caps that: the cgroup's own headroom is `limit − (current −
//! inactive_file)`, because page cache charged to the cgroup is reclaimed
//! before the OOM killer runs (the same "working set" rule as container tools).

use crate::cpu::norm_cgroup;
use crate::sysroot::{ReadError, Sysroot};
use serde::Serialize;

/// Bytes in a MiB, for display.
pub const MIB: u64 = 1024 * 1024;

/// Memory figures, all in bytes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MemoryInfo {
    /// `MemTotal`: RAM the kernel manages (less than the board's nominal RAM:
    /// the GPU carve-out and firmware take some).
    pub total: u64,
    /// `MemAvailable` (or an estimate on kernels older than 3.14).
    pub available: u64,
    /// `SwapFree`: not counted as usable (a model paging to an SD card is a
    /// hang, not a run), shown for information.
    pub swap_free: u64,
    /// The tightest cgroup memory limit on this process's path, if any.
    pub cgroup: Option<CgroupMemory>,
}

/// A cgroup memory limit and its usage.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CgroupMemory {
    /// The cgroup (as in `/proc/self/cgroup`) that holds the limit.
    pub path: String,
    /// 2 for the unified hierarchy, 1 for the legacy `memory` controller.
    pub version: u8,
    /// `memory.max` (v2) or `memory.limit_in_bytes` (v1).
    pub limit: u64,
    /// `memory.current` (v2) or `memory.usage_in_bytes` (v1).
    pub current: u64,
    /// Inactive page cache in the cgroup (`inactive_file` in `memory.stat`),
    /// reclaimable before the limit is hit.
    pub reclaimable: u64,
}

impl CgroupMemory {
    /// What can still be allocated inside the cgroup.
    pub fn available(&self) -> u64 {
        self.limit
            .saturating_sub(self.current.saturating_sub(self.reclaimable))
    }
}

/// Why the memory figures could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    #[error(transparent)]
    Read(#[from] ReadError),
    #[error("{path} does not exist: cannot tell how much memory there is")]
    Missing { path: String },
    #[error("{path}: no `{field}` line (is this a Linux /proc/meminfo?)")]
    NoField { path: String, field: &'static str },
}

impl MemoryInfo {
    /// Builds figures by hand (tests, other tools).
    pub fn new(total: u64, available: u64) -> MemoryInfo {
        MemoryInfo {
            total,
            available,
            swap_free: 0,
            cgroup: None,
        }
    }

    /// Adds a cgroup limit (tests, other tools).
    pub fn with_cgroup(mut self, limit: u64, current: u64, reclaimable: u64) -> MemoryInfo {
        self.cgroup = Some(CgroupMemory {
            path: "/".into(),
            version: 2,
            limit,
            current,
            reclaimable,
        });
        self
    }

    /// Reads `/proc/meminfo` and the cgroup limit below `root`.
    pub fn read(root: &Sysroot) -> Result<MemoryInfo, MemoryError> {
        let text = root.read("/proc/meminfo")?.ok_or(MemoryError::Missing {
            path: root.path("/proc/meminfo").display().to_string(),
        })?;
        let mut info = MemoryInfo::parse_meminfo(&text).map_err(|field| MemoryError::NoField {
            path: root.path("/proc/meminfo").display().to_string(),
            field,
        })?;
        info.cgroup = read_cgroup_memory(root);
        Ok(info)
    }

    /// Parses `/proc/meminfo` text; on error, the missing field's name.
    pub fn parse_meminfo(text: &str) -> Result<MemoryInfo, &'static str> {
        let field = |name: &str| -> Option<u64> {
            text.lines().find_map(|l| {
                let rest = l.strip_prefix(name)?.strip_prefix(':')?;
                let mut it = rest.split_whitespace();
                let n: u64 = it.next()?.parse().ok()?;
                // Values are in kB (KiB) except the HugePages_* counts.
                Some(match it.next() {
                    Some("kB") => n.saturating_mul(1024),
                    _ => n,
                })
            })
        };
        let total = field("MemTotal").ok_or("MemTotal")?;
        let available = match field("MemAvailable") {
            Some(a) => a,
            // Kernels before 3.14: free + buffers + page cache is the usual estimate.
            None => {
                let free = field("MemFree").ok_or("MemAvailable")?;
                free + field("Buffers").unwrap_or(0) + field("Cached").unwrap_or(0)
            }
        };
        Ok(MemoryInfo {
            total,
            available: available.min(total),
            swap_free: field("SwapFree").unwrap_or(0),
            cgroup: None,
        })
    }

    /// Memory that can be allocated now: `MemAvailable`, capped by the cgroup.
    pub fn effective_available(&self) -> u64 {
        match &self.cgroup {
            Some(c) => self.available.min(c.available()),
            None => self.available,
        }
    }

    /// What a model may use: effective available memory minus the OS reserve.
    pub fn usable(&self, reserve: u64) -> u64 {
        self.effective_available().saturating_sub(reserve)
    }
}

/// Limits at or above this are "no limit" (cgroup v1 prints 2^63 rounded down to a page).
const UNLIMITED: u64 = 1 << 60;

/// The process's cgroup path for the unified (v2) hierarchy and for the v1
/// memory controller, from `/proc/self/cgroup`.
pub(crate) fn cgroup_paths(root: &Sysroot) -> (Option<String>, Option<String>) {
    let Some(text) = root.read_lenient("/proc/self/cgroup") else {
        return (None, None);
    };
    let mut v2 = None;
    let mut v1 = None;
    for line in text.lines() {
        let mut it = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (it.next(), it.next(), it.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.trim().to_string());
        } else if ctrls.split(',').any(|c| c == "memory") {
            v1 = Some(path.trim().to_string());
        }
    }
    (v2, v1)
}

/// `/a/b/c` → [`/a/b/c`, `/a/b`, `/a`, `/`].
fn ancestors(path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut p = norm_cgroup(path);
    loop {
        out.push(if p.is_empty() {
            "/".to_string()
        } else {
            p.clone()
        });
        match p.rfind('/') {
            Some(i) if !p.is_empty() => p.truncate(i),
            _ => break,
        }
    }
    out
}

fn read_u64(root: &Sysroot, abs: &str) -> Option<u64> {
    root.read_lenient(abs)?.trim().parse().ok()
}

fn stat_field(root: &Sysroot, abs: &str, key: &str) -> u64 {
    root.read_lenient(abs)
        .and_then(|t| {
            t.lines().find_map(|l| {
                let (k, v) = l.split_once(' ')?;
                (k == key).then(|| v.trim().parse().ok()).flatten()
            })
        })
        .unwrap_or(0)
}

/// The tightest memory limit on the way from this process's cgroup to the
/// root (a parent's limit binds its children even when theirs say "max").
pub(crate) fn read_cgroup_memory(root: &Sysroot) -> Option<CgroupMemory> {
    let (v2, v1) = cgroup_paths(root);
    let mut best: Option<CgroupMemory> = None;
    let mut consider = |c: CgroupMemory| {
        if best.as_ref().is_none_or(|b| c.available() < b.available()) {
            best = Some(c);
        }
    };
    if let Some(path) = v2 {
        for p in ancestors(&path) {
            let dir = format!("/sys/fs/cgroup{}", norm_cgroup(&p));
            let Some(max) = root.read_lenient(&format!("{dir}/memory.max")) else {
                continue;
            };
            let Ok(limit) = max.trim().parse::<u64>() else {
                continue; // "max"
            };
            consider(CgroupMemory {
                path: p.clone(),
                version: 2,
                limit,
                current: read_u64(root, &format!("{dir}/memory.current")).unwrap_or(0),
                reclaimable: stat_field(root, &format!("{dir}/memory.stat"), "inactive_file"),
            });
        }
    }
    if let Some(path) = v1 {
        for p in ancestors(&path) {
            let dir = format!("/sys/fs/cgroup/memory{}", norm_cgroup(&p));
            let Some(limit) = read_u64(root, &format!("{dir}/memory.limit_in_bytes")) else {
                continue;
            };
            if limit >= UNLIMITED {
                continue;
            }
            consider(CgroupMemory {
                path: p.clone(),
                version: 1,
                limit,
                current: read_u64(root, &format!("{dir}/memory.usage_in_bytes")).unwrap_or(0),
                reclaimable: stat_field(root, &format!("{dir}/memory.stat"), "total_inactive_file"),
            });
        }
    }
    best
}

/// Bytes as MiB, rounded down, for messages.
pub fn mib(bytes: u64) -> u64 {
    bytes / MIB
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_meminfo() {
        let t = "MemTotal:        8252368 kB\nMemFree:         3798880 kB\nMemAvailable:    6126208 kB\nBuffers:          116704 kB\nSwapFree:         102396 kB\nHugePages_Total:       0\n";
        let m = MemoryInfo::parse_meminfo(t).unwrap();
        assert_eq!(m.total, 8_252_368 * 1024);
        assert_eq!(m.available, 6_126_208 * 1024);
        assert_eq!(m.swap_free, 102_396 * 1024);
        assert_eq!(m.usable(384 * MIB), 6_126_208 * 1024 - 384 * MIB);
    }

    #[test]
    fn old_kernel_estimate_and_errors() {
        let t = "MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 200 kB\n";
        assert_eq!(MemoryInfo::parse_meminfo(t).unwrap().available, 310 * 1024);
        assert_eq!(
            MemoryInfo::parse_meminfo("MemFree: 1 kB\n"),
            Err("MemTotal")
        );
        assert_eq!(
            MemoryInfo::parse_meminfo("MemTotal: 5 kB\n"),
            Err("MemAvailable")
        );
        assert_eq!(
            MemoryInfo::parse_meminfo("MemTotal: x kB\n"),
            Err("MemTotal")
        );
    }

    #[test]
    fn cgroup_caps_available() {
        let m = MemoryInfo::new(8 << 30, 6 << 30).with_cgroup(1 << 30, 600 * MIB, 100 * MIB);
        assert_eq!(m.effective_available(), (1 << 30) - 500 * MIB);
        // A limit above MemAvailable does not raise it.
        let m = MemoryInfo::new(8 << 30, 2 << 30).with_cgroup(4 << 30, 0, 0);
        assert_eq!(m.effective_available(), 2 << 30);
        // Usage above the limit (it happens briefly) gives zero, not a wrap.
        let m = MemoryInfo::new(8 << 30, 2 << 30).with_cgroup(100, 500, 0);
        assert_eq!(m.effective_available(), 0);
    }

    #[test]
    fn ancestor_paths() {
        assert_eq!(ancestors("/a/b"), vec!["/a/b", "/a", "/"]);
        assert_eq!(ancestors("/"), vec!["/"]);
        assert_eq!(ancestors(""), vec!["/"]);
    }
}
