//! `/proc/cpuinfo`, CPU affinity and the cgroup CPU quota.
//!
//! The kernel prints one block per logical CPU (`processor : N` followed by
//! `key : value` lines) and, on Raspberry Pi kernels, a trailer with
//! `Hardware`, `Revision`, `Serial` and `Model`. On aarch64 the blocks carry
//! `CPU implementer`/`CPU part` (0x41/0xd03 = Arm Cortex-A53) and a `Features`
//! line with the HWCAP names (`asimddp` = dotprod); on x86 they carry
//! `model name` and `flags`.

use crate::sysroot::{ReadError, Sysroot};
use serde::Serialize;

/// The instruction set the kernel reports (not the host's: a sysroot may be
/// a recording from another machine).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Arch {
    /// 64-bit Arm (`CPU architecture: 8` with a 64-bit kernel).
    Aarch64,
    /// 32-bit Arm kernel (`model name : ARMv7 ...`), even on an ARMv8 core.
    Arm32,
    /// x86-64.
    X86_64,
    /// Anything else.
    Other,
}

impl Arch {
    /// Name used in profile files and output: "aarch64", "arm", "x86_64", "other".
    pub fn name(self) -> &'static str {
        match self {
            Arch::Aarch64 => "aarch64",
            Arch::Arm32 => "arm",
            Arch::X86_64 => "x86_64",
            Arch::Other => "other",
        }
    }
}

/// What `/proc/cpuinfo` says.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CpuInfo {
    pub arch: Arch,
    /// Number of `processor` blocks (logical CPUs the kernel has online).
    pub logical_cpus: usize,
    /// Distinct (physical id, core id) pairs where the kernel prints them
    /// (x86); `None` on Arm, where every logical CPU is a core.
    pub physical_cores: Option<usize>,
    /// `CPU implementer` of the first CPU (0x41 = Arm).
    pub implementer: Option<u32>,
    /// Distinct `CPU part` numbers, in order of first appearance (two on
    /// big.LITTLE SoCs).
    pub parts: Vec<u32>,
    /// How many CPUs report each part, in the order of `parts`.
    pub part_counts: Vec<usize>,
    /// Feature names of the first CPU (`Features` on Arm, `flags` on x86).
    pub features: Vec<String>,
    /// `model name` (x86, or 32-bit Arm kernels).
    pub model_name: Option<String>,
    /// `Hardware` trailer line (always "BCM2835" on Raspberry Pi kernels: not
    /// used for detection).
    pub hardware: Option<String>,
    /// `Revision` trailer line, undecoded.
    pub revision: Option<String>,
    /// `Model` trailer line ("Raspberry Pi 5 Model B Rev 1.0").
    pub model: Option<String>,
}

/// Name of an Arm Ltd. (implementer 0x41) CPU part number.
pub fn arm_part_name(part: u32) -> Option<&'static str> {
    Some(match part {
        0xd03 => "Cortex-A53",
        0xd04 => "Cortex-A35",
        0xd05 => "Cortex-A55",
        0xd07 => "Cortex-A57",
        0xd08 => "Cortex-A72",
        0xd09 => "Cortex-A73",
        0xd0a => "Cortex-A75",
        0xd0b => "Cortex-A76",
        0xd0c => "Neoverse-N1",
        0xd0d => "Cortex-A77",
        0xd40 => "Neoverse-V1",
        0xd41 => "Cortex-A78",
        0xd44 => "Cortex-X1",
        0xd46 => "Cortex-A510",
        0xd47 => "Cortex-A710",
        0xd48 => "Cortex-X2",
        0xd49 => "Neoverse-N2",
        0xd4b => "Cortex-A78C",
        0xd4f => "Neoverse-V2",
        _ => return None,
    })
}

fn parse_num(v: &str) -> Option<u32> {
    let v = v.trim();
    match v.strip_prefix("0x").or_else(|| v.strip_prefix("0X")) {
        Some(h) => u32::from_str_radix(h, 16).ok(),
        None => v.parse().ok(),
    }
}

impl CpuInfo {
    /// Parses the text of `/proc/cpuinfo`. Never fails: unknown lines are
    /// ignored and missing facts stay `None`/empty.
    pub fn parse(text: &str) -> CpuInfo {
        let mut logical = 0usize;
        let mut implementer = None;
        let mut parts: Vec<u32> = Vec::new();
        let mut part_counts: Vec<usize> = Vec::new();
        let mut features: Option<Vec<String>> = None;
        let mut model_name = None;
        let mut hardware = None;
        let mut revision = None;
        let mut model = None;
        let mut arm_arch: Option<String> = None;
        let mut x86 = false;
        let mut cores: Vec<(String, String)> = Vec::new();
        let mut physical_id = String::new();
        for line in text.lines() {
            let Some((k, v)) = line.split_once(':') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim());
            match k {
                "processor" => logical += 1,
                "CPU implementer" if implementer.is_none() => implementer = parse_num(v),
                "CPU part" => {
                    if let Some(p) = parse_num(v) {
                        match parts.iter().position(|&x| x == p) {
                            Some(i) => part_counts[i] += 1,
                            None => {
                                parts.push(p);
                                part_counts.push(1);
                            }
                        }
                    }
                }
                "CPU architecture" if arm_arch.is_none() => arm_arch = Some(v.to_string()),
                "Features" | "flags" if features.is_none() => {
                    x86 |= k == "flags";
                    features = Some(v.split_whitespace().map(str::to_string).collect());
                }
                "vendor_id" => x86 = true,
                "model name" if model_name.is_none() => model_name = Some(v.to_string()),
                "Hardware" => hardware = Some(v.to_string()),
                "Revision" => revision = Some(v.to_string()),
                "Model" => model = Some(v.to_string()),
                "physical id" => physical_id = v.to_string(),
                "core id" => {
                    let key = (physical_id.clone(), v.to_string());
                    if !cores.contains(&key) {
                        cores.push(key);
                    }
                }
                _ => {}
            }
        }
        let arch = if x86 {
            // 32-bit x86 kernels do not matter to pistil; `lm` marks long mode.
            if features
                .as_ref()
                .is_some_and(|f| f.iter().any(|x| x == "lm"))
            {
                Arch::X86_64
            } else {
                Arch::Other
            }
        } else if let Some(a) = &arm_arch {
            let v7_kernel = model_name
                .as_deref()
                .is_some_and(|m| m.starts_with("ARMv7"))
                || a.starts_with('7');
            if v7_kernel {
                Arch::Arm32
            } else {
                Arch::Aarch64
            }
        } else {
            Arch::Other
        };
        CpuInfo {
            arch,
            logical_cpus: logical,
            physical_cores: if cores.is_empty() {
                None
            } else {
                Some(cores.len())
            },
            implementer,
            parts,
            part_counts,
            features: features.unwrap_or_default(),
            model_name,
            hardware,
            revision,
            model,
        }
    }

    /// Whether the kernel reports feature `name` (`asimddp`, `avx2`, ...).
    pub fn has(&self, name: &str) -> bool {
        self.features.iter().any(|f| f == name)
    }

    /// The Armv8.2 dot-product instructions (`sdot`/`udot`), HWCAP `asimddp`.
    pub fn dotprod(&self) -> bool {
        self.has("asimddp")
    }

    /// Human name of the core(s): "Cortex-A76", "Cortex-A55 + Cortex-A76",
    /// or the x86 `model name`.
    pub fn cpu_name(&self) -> Option<String> {
        if !self.parts.is_empty() {
            let names: Vec<String> = self
                .parts
                .iter()
                .map(|&p| match (self.implementer, arm_part_name(p)) {
                    (Some(0x41), Some(n)) => n.to_string(),
                    (imp, _) => format!("part {p:#05x} (implementer {:#04x})", imp.unwrap_or(0)),
                })
                .collect();
            return Some(names.join(" + "));
        }
        self.model_name.clone()
    }

    /// CPUs a compute thread should count on: physical cores where known, else
    /// logical CPUs (never 0).
    pub fn cores(&self) -> usize {
        self.physical_cores.unwrap_or(self.logical_cpus).max(1)
    }

    /// Cores worth a compute thread. On big.LITTLE SoCs (a Cortex-A55 cluster
    /// next to A76s) only the big cores: work is split evenly, so a thread on a
    /// little core makes every other thread wait for it.
    pub fn compute_cores(&self) -> usize {
        const LITTLE: [u32; 5] = [0xd03, 0xd04, 0xd05, 0xd46, 0xd80]; // A53, A35, A55, A510, A520
        let big: usize = self
            .parts
            .iter()
            .zip(&self.part_counts)
            .filter(|(p, _)| !LITTLE.contains(p))
            .map(|(_, n)| *n)
            .sum();
        let any_little = self.parts.iter().any(|p| LITTLE.contains(p));
        if any_little && big > 0 && self.implementer == Some(0x41) {
            big
        } else {
            self.cores()
        }
    }
}

/// Parses a kernel CPU list ("0-3,6,8-9") into a count.
pub fn cpu_list_count(list: &str) -> Option<usize> {
    let mut n = 0usize;
    for part in list.trim().split(',').filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                n += b.checked_sub(a)? + 1;
            }
            None => {
                part.trim().parse::<usize>().ok()?;
                n += 1;
            }
        }
    }
    Some(n)
}

/// CPUs this process may use: the affinity mask (`Cpus_allowed_list` in
/// `/proc/self/status`) and the cgroup v2 quota (`cpu.max`, rounded up),
/// whichever is smaller. `None` when neither says anything.
pub fn usable_cpus(root: &Sysroot, cgroup_path: Option<&str>) -> Option<usize> {
    let affinity = root.read_lenient("/proc/self/status").and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .and_then(cpu_list_count)
    });
    let quota = cgroup_path.and_then(|p| {
        let text = root.read_lenient(&format!("/sys/fs/cgroup{}/cpu.max", norm_cgroup(p)))?;
        let mut it = text.split_whitespace();
        let (q, period) = (it.next()?, it.next()?);
        let (q, period): (u64, u64) = (q.parse().ok()?, period.parse().ok()?);
        if period == 0 {
            return None;
        }
        Some(q.div_ceil(period).max(1) as usize)
    });
    match (affinity, quota) {
        (Some(a), Some(q)) => Some(a.min(q)),
        (a, q) => a.or(q),
    }
}

/// "/" → "", "/a/b" → "/a/b" (so it can be appended to a mount point).
pub(crate) fn norm_cgroup(p: &str) -> String {
    let t = p.trim().trim_end_matches('/');
    if t.is_empty() {
        String::new()
    } else if t.starts_with('/') {
        t.to_string()
    } else {
        format!("/{t}")
    }
}

/// Reads and parses `/proc/cpuinfo` below `root`.
pub fn read_cpuinfo(root: &Sysroot) -> Result<Option<CpuInfo>, ReadError> {
    Ok(root.read("/proc/cpuinfo")?.map(|t| CpuInfo::parse(&t)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PI5: &str = "processor\t: 0\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\nprocessor\t: 1\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x4\nCPU part\t: 0xd0b\nCPU revision\t: 1\n\nRevision\t: d04170\nSerial\t\t: 10000000b1234567\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n";

    #[test]
    fn parses_a76() {
        let c = CpuInfo::parse(PI5);
        assert_eq!(c.arch, Arch::Aarch64);
        assert_eq!(c.logical_cpus, 2);
        assert_eq!(c.parts, vec![0xd0b]);
        assert_eq!(c.cpu_name().as_deref(), Some("Cortex-A76"));
        assert!(c.dotprod());
        assert_eq!(c.revision.as_deref(), Some("d04170"));
        assert_eq!(c.model.as_deref(), Some("Raspberry Pi 5 Model B Rev 1.0"));
        assert_eq!(c.cores(), 2);
        assert_eq!(c.compute_cores(), 2);
    }

    #[test]
    fn armv7_kernel_on_a72() {
        let t = "processor\t: 0\nmodel name\t: ARMv7 Processor rev 3 (v7l)\nBogoMIPS\t: 108.00\nFeatures\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt vfpd32 lpae evtstrm crc32\nCPU implementer\t: 0x41\nCPU architecture: 7\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\nHardware\t: BCM2711\nRevision\t: c03114\n";
        let c = CpuInfo::parse(t);
        assert_eq!(c.arch, Arch::Arm32);
        assert_eq!(c.cpu_name().as_deref(), Some("Cortex-A72"));
        assert!(!c.dotprod());
    }

    #[test]
    fn big_little_and_unknown_parts() {
        let t = "processor\t: 0\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd05\n\nprocessor\t: 1\nCPU implementer\t: 0x41\nCPU architecture: 8\nCPU part\t: 0xd0b\n\nprocessor\t: 2\nCPU part\t: 0xfff\n";
        let c = CpuInfo::parse(t);
        assert_eq!(c.parts, vec![0xd05, 0xd0b, 0xfff]);
        assert_eq!(c.part_counts, vec![1, 1, 1]);
        assert_eq!(c.compute_cores(), 2);
        let name = c.cpu_name().unwrap();
        assert!(
            name.starts_with("Cortex-A55 + Cortex-A76 + part 0xfff"),
            "{name}"
        );
    }

    #[test]
    fn x86_physical_cores() {
        let t = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu lm avx2\n\nprocessor\t: 1\nvendor_id\t: AuthenticAMD\nphysical id\t: 0\ncore id\t\t: 0\nflags\t\t: fpu lm avx2\n\nprocessor\t: 2\nphysical id\t: 0\ncore id\t\t: 1\n";
        let c = CpuInfo::parse(t);
        assert_eq!(c.arch, Arch::X86_64);
        assert_eq!(c.logical_cpus, 3);
        assert_eq!(c.physical_cores, Some(2));
        assert_eq!(c.cores(), 2);
        assert!(c.has("avx2"));
        assert_eq!(c.cpu_name().as_deref(), Some("AMD EPYC"));
    }

    #[test]
    fn garbage_does_not_panic() {
        let c = CpuInfo::parse("\u{0}\u{1}:::\nCPU part : zz\nprocessor");
        assert_eq!(c.arch, Arch::Other);
        assert!(c.parts.is_empty());
        assert_eq!(c.cores(), 1);
    }

    #[test]
    fn cpu_lists() {
        assert_eq!(cpu_list_count("0-3"), Some(4));
        assert_eq!(cpu_list_count("0-3,6,8-9\n"), Some(7));
        assert_eq!(cpu_list_count("0"), Some(1));
        assert_eq!(cpu_list_count("3-1"), None);
        assert_eq!(cpu_list_count("x"), None);
        assert_eq!(norm_cgroup("/"), "");
        assert_eq!(norm_cgroup("/a/b/"), "/a/b");
    }
}
