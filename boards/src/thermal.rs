//! SoC temperature, the firmware's throttling flags, and the thermal governor.
//!
//! Sources, read through the [`Sysroot`]:
//! - `/sys/class/thermal/thermal_zone*/temp` (millidegrees C) of the zone whose
//!   `type` is `cpu-thermal` on Raspberry Pi kernels (other names on other
//!   machines; see [`ThermalSensor::discover`]);
//! - the firmware's `get_throttled` word, which Raspberry Pi kernels expose as
//!   `/sys/devices/platform/soc/soc:firmware/get_throttled` (hex, no `0x`).
//!   The firmware node is named after the SoC bus, which differs on the BCM2712
//!   (`soc@107c000000:firmware`), and some Pi 5 kernels have no such file at all:
//!   the sensor searches `/sys/devices/platform/*/*:firmware/get_throttled` once
//!   and works from the temperature alone when there is none.
//!
//! The [`ThermalGovernor`] is what the generation loop polls: at most once per
//! poll interval it reads the sensor and decides how many compute threads to
//! use. Sustained heat or throttling sheds one thread (never below one) and says
//! so with `tracing::warn!`; a cool spell of some length gives one back.

use crate::sysroot::Sysroot;
use serde::Serialize;
use std::time::{Duration, Instant};

/// The firmware's `get_throttled` bits (as `vcgencmd get_throttled` prints them).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub struct ThrottleFlags(pub u32);

impl ThrottleFlags {
    /// Bit 0: the supply is below ~4.63 V right now.
    pub const UNDER_VOLTAGE: u32 = 1 << 0;
    /// Bit 1: the Arm clock is capped right now.
    pub const ARM_FREQ_CAPPED: u32 = 1 << 1;
    /// Bit 2: currently throttled (clocks and voltage reduced).
    pub const THROTTLED: u32 = 1 << 2;
    /// Bit 3: the soft temperature limit is active (3B+: clock 1.4 → 1.2 GHz).
    pub const SOFT_TEMP_LIMIT: u32 = 1 << 3;
    /// Bits 16-19: the same four, "has occurred since boot".
    pub const OCCURRED_SHIFT: u32 = 16;

    /// Parses `50005`, `0x50005` or `throttled=0x50005`.
    pub fn parse(s: &str) -> Option<ThrottleFlags> {
        let t = s.trim();
        let t = t.strip_prefix("throttled=").unwrap_or(t);
        let t = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        u32::from_str_radix(t, 16).ok().map(ThrottleFlags)
    }

    fn bit(self, b: u32) -> bool {
        self.0 & b != 0
    }
    pub fn under_voltage(self) -> bool {
        self.bit(Self::UNDER_VOLTAGE)
    }
    pub fn arm_freq_capped(self) -> bool {
        self.bit(Self::ARM_FREQ_CAPPED)
    }
    pub fn throttled(self) -> bool {
        self.bit(Self::THROTTLED)
    }
    pub fn soft_temp_limit(self) -> bool {
        self.bit(Self::SOFT_TEMP_LIMIT)
    }

    /// Whether the board is being slowed down now in a way fewer threads can
    /// help: throttled, clock capped, or under-voltage (less load draws less
    /// current). The 3B+'s soft temperature limit alone is not counted: it is a
    /// mild step the firmware takes at 60 °C by design.
    pub fn stressed_now(self) -> bool {
        self.0 & (Self::UNDER_VOLTAGE | Self::ARM_FREQ_CAPPED | Self::THROTTLED) != 0
    }

    /// Names of the bits set, current first: `under-voltage`,
    /// `arm-freq-capped`, `throttled`, `soft-temp-limit`, and the same with
    /// `-occurred` for the since-boot bits.
    pub fn names(self) -> Vec<&'static str> {
        const NOW: [(u32, &str); 4] = [
            (ThrottleFlags::UNDER_VOLTAGE, "under-voltage"),
            (ThrottleFlags::ARM_FREQ_CAPPED, "arm-freq-capped"),
            (ThrottleFlags::THROTTLED, "throttled"),
            (ThrottleFlags::SOFT_TEMP_LIMIT, "soft-temp-limit"),
        ];
        const PAST: [&str; 4] = [
            "under-voltage-occurred",
            "arm-freq-capped-occurred",
            "throttled-occurred",
            "soft-temp-limit-occurred",
        ];
        let mut v: Vec<&'static str> = NOW
            .iter()
            .filter(|(b, _)| self.bit(*b))
            .map(|(_, n)| *n)
            .collect();
        for (i, (b, _)) in NOW.iter().enumerate() {
            if self.bit(b << Self::OCCURRED_SHIFT) {
                v.push(PAST[i]);
            }
        }
        v
    }
}

/// One reading.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct ThermalReading {
    /// SoC temperature, °C.
    pub temp_c: Option<f64>,
    /// Firmware throttling flags (Raspberry Pi only).
    pub throttled: Option<ThrottleFlags>,
}

/// Something that gives thermal readings (the real sensor, or a fake in tests).
pub trait ThermalSource {
    fn read(&mut self) -> ThermalReading;
}

/// The board's temperature sensor and throttling flags, found once.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ThermalSensor {
    root: Sysroot,
    /// The thermal zone's `temp` file (absolute, below the sysroot).
    pub temp_file: Option<String>,
    /// The zone's `type` ("cpu-thermal").
    pub zone_type: Option<String>,
    /// The `get_throttled` file (absolute, below the sysroot).
    pub throttled_file: Option<String>,
}

/// Zone types that are the CPU/SoC, best first.
const CPU_ZONE_TYPES: &[&str] = &[
    "cpu-thermal",
    "cpu_thermal",
    "soc-thermal",
    "soc_thermal",
    "x86_pkg_temp",
    "cpu0-thermal",
    "k10temp",
];

impl ThermalSensor {
    /// Finds the SoC thermal zone and the `get_throttled` file below `root`.
    /// Either may be absent (a container without /sys, a VM).
    pub fn discover(root: &Sysroot) -> ThermalSensor {
        let mut zones: Vec<(usize, String, String)> = Vec::new(); // (rank, type, temp path)
        for z in root.list_dir("/sys/class/thermal") {
            if !z.starts_with("thermal_zone") {
                continue;
            }
            let dir = format!("/sys/class/thermal/{z}");
            let Some(ty) = root.read_lenient(&format!("{dir}/type")) else {
                continue;
            };
            let ty = ty.trim().to_string();
            let rank = CPU_ZONE_TYPES
                .iter()
                .position(|t| *t == ty)
                .unwrap_or(CPU_ZONE_TYPES.len());
            zones.push((rank, ty, format!("{dir}/temp")));
        }
        // Best type first; among equals, the lowest zone number (list_dir is sorted
        // as text, so compare by the number).
        zones.sort_by_key(|(rank, _, path)| (*rank, zone_number(path)));
        let (zone_type, temp_file) = match zones.into_iter().next() {
            Some((_, ty, path)) => (Some(ty), Some(path)),
            None => (None, None),
        };
        ThermalSensor {
            root: root.clone(),
            temp_file,
            zone_type,
            throttled_file: find_get_throttled(root),
        }
    }

    /// Reads the temperature and flags now (two small files).
    pub fn read_now(&self) -> ThermalReading {
        let temp_c = self.temp_file.as_deref().and_then(|f| {
            let milli: i64 = self.root.read_lenient(f)?.trim().parse().ok()?;
            Some(milli as f64 / 1000.0)
        });
        let throttled = self
            .throttled_file
            .as_deref()
            .and_then(|f| ThrottleFlags::parse(&self.root.read_lenient(f)?));
        ThermalReading { temp_c, throttled }
    }
}

impl ThermalSource for ThermalSensor {
    fn read(&mut self) -> ThermalReading {
        self.read_now()
    }
}

fn zone_number(path: &str) -> usize {
    path.trim_end_matches("/temp")
        .rsplit("thermal_zone")
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or(usize::MAX)
}

/// The `get_throttled` attribute of the Raspberry Pi firmware node.
fn find_get_throttled(root: &Sysroot) -> Option<String> {
    const KNOWN: &str = "/sys/devices/platform/soc/soc:firmware/get_throttled";
    if root.path(KNOWN).is_file() {
        return Some(KNOWN.to_string());
    }
    for bus in root.list_dir("/sys/devices/platform") {
        if !bus.starts_with("soc") {
            continue;
        }
        for node in root.list_dir(&format!("/sys/devices/platform/{bus}")) {
            if node.ends_with(":firmware") {
                let f = format!("/sys/devices/platform/{bus}/{node}/get_throttled");
                if root.path(&f).is_file() {
                    return Some(f);
                }
            }
        }
    }
    None
}

/// Governor tuning. The defaults are what the generation loop uses.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct GovernorConfig {
    /// At or above this temperature (or while the firmware reports throttling)
    /// the board is "hot".
    pub soft_c: f64,
    /// At or above this, shed a thread without waiting for `sustain`.
    pub hard_c: f64,
    /// "Cool" means at or below `soft_c − hysteresis_c` and not throttled.
    pub hysteresis_c: f64,
    /// Readings closer together than this reuse the last decision.
    pub poll_interval: Duration,
    /// How long "hot" must last (over at least `min_hot_polls` readings) before
    /// a thread is shed; after a shed, the next needs as long again.
    pub sustain: Duration,
    /// Readings needed within `sustain` (guards against one spike).
    pub min_hot_polls: u32,
    /// Minimum time between two sheds at the hard limit.
    pub hard_step: Duration,
    /// How long "cool" must last before a thread is given back.
    pub restore_after: Duration,
}

impl GovernorConfig {
    /// Defaults around a profile's limits: poll ≤ 1/s, shed after 10 s hot
    /// (3+ readings), shed every 2 s at the hard limit, restore after 30 s at
    /// least 5 °C below the soft limit.
    pub fn new(soft_c: f64, hard_c: f64) -> GovernorConfig {
        GovernorConfig {
            soft_c,
            hard_c,
            hysteresis_c: 5.0,
            poll_interval: Duration::from_secs(1),
            sustain: Duration::from_secs(10),
            min_hot_polls: 3,
            hard_step: Duration::from_secs(2),
            restore_after: Duration::from_secs(30),
        }
    }
}

/// What the last poll decided.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThermalEvent {
    /// Nothing changed.
    Steady,
    /// One thread shed; the new count.
    Shed(usize),
    /// One thread given back; the new count.
    Restored(usize),
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Band {
    Hot,
    Neutral,
    Cool,
}

/// Decides the compute thread count from sustained thermal state.
///
/// ```text
///            hot ≥ sustain (≥ min_hot_polls readings)      temp ≥ hard (every hard_step)
///  threads ─────────────────────────────────────────► −1 ◄───────────────────────────
///  threads ◄───────────────────────────────────────── +1  (cool ≥ restore_after, up to max)
/// ```
/// "hot": temp ≥ soft, or the firmware says throttled / clock capped /
/// under-voltage now. "cool": temp ≤ soft − hysteresis and none of those.
/// In between, both timers reset.
#[derive(Debug)]
pub struct ThermalGovernor<S: ThermalSource> {
    source: S,
    cfg: GovernorConfig,
    max_threads: usize,
    threads: usize,
    last_poll: Option<Instant>,
    last_shed: Option<Instant>,
    hot_since: Option<Instant>,
    hot_polls: u32,
    cool_since: Option<Instant>,
    last: ThermalReading,
}

impl<S: ThermalSource> ThermalGovernor<S> {
    /// A governor starting at (and never above) `threads`.
    pub fn new(source: S, cfg: GovernorConfig, threads: usize) -> ThermalGovernor<S> {
        let threads = threads.max(1);
        ThermalGovernor {
            source,
            cfg,
            max_threads: threads,
            threads,
            last_poll: None,
            last_shed: None,
            hot_since: None,
            hot_polls: 0,
            cool_since: None,
            last: ThermalReading::default(),
        }
    }

    /// The thread count decided so far (no reading).
    pub fn threads(&self) -> usize {
        self.threads
    }

    /// The thread count the governor started with.
    pub fn max_threads(&self) -> usize {
        self.max_threads
    }

    /// The last reading taken.
    pub fn last_reading(&self) -> &ThermalReading {
        &self.last
    }

    /// Polls with the real clock; returns the thread count to use. Cheap to call
    /// every token: it reads the sensor at most once per poll interval.
    pub fn poll(&mut self) -> usize {
        self.poll_at(Instant::now()).0
    }

    /// Polls at time `now` (tests pass a fake clock); returns the thread count
    /// and what changed.
    pub fn poll_at(&mut self, now: Instant) -> (usize, ThermalEvent) {
        if let Some(last) = self.last_poll {
            if now.saturating_duration_since(last) < self.cfg.poll_interval {
                return (self.threads, ThermalEvent::Steady);
            }
        }
        self.last_poll = Some(now);
        let r = self.source.read();
        let stressed = r.throttled.is_some_and(|f| f.stressed_now());
        let band = match r.temp_c {
            Some(t) if t >= self.cfg.soft_c => Band::Hot,
            _ if stressed => Band::Hot,
            Some(t) if t > self.cfg.soft_c - self.cfg.hysteresis_c => Band::Neutral,
            _ => Band::Cool,
        };
        let at_hard = r.temp_c.is_some_and(|t| t >= self.cfg.hard_c);
        self.last = r;
        let mut event = ThermalEvent::Steady;
        match band {
            Band::Hot => {
                self.cool_since = None;
                let since = *self.hot_since.get_or_insert(now);
                self.hot_polls += 1;
                let sustained = now.saturating_duration_since(since) >= self.cfg.sustain
                    && self.hot_polls >= self.cfg.min_hot_polls;
                let hard_due = at_hard
                    && self
                        .last_shed
                        .is_none_or(|t| now.saturating_duration_since(t) >= self.cfg.hard_step);
                if (sustained || hard_due) && self.threads > 1 {
                    self.threads -= 1;
                    self.last_shed = Some(now);
                    // The next shed needs another full sustained spell.
                    self.hot_since = Some(now);
                    self.hot_polls = 0;
                    event = ThermalEvent::Shed(self.threads);
                    tracing::warn!(
                        temp_c = self.last.temp_c,
                        throttled = self.last.throttled.map(|f| format!("{:#x}", f.0)),
                        "board is {}: using {} compute thread(s) instead of {}",
                        if at_hard {
                            "at its hard thermal limit"
                        } else {
                            "hot or throttled"
                        },
                        self.threads,
                        self.threads + 1
                    );
                }
            }
            Band::Neutral => {
                self.hot_since = None;
                self.hot_polls = 0;
                self.cool_since = None;
            }
            Band::Cool => {
                self.hot_since = None;
                self.hot_polls = 0;
                let since = *self.cool_since.get_or_insert(now);
                if self.threads < self.max_threads
                    && now.saturating_duration_since(since) >= self.cfg.restore_after
                {
                    self.threads += 1;
                    self.cool_since = Some(now);
                    event = ThermalEvent::Restored(self.threads);
                    tracing::info!(
                        temp_c = self.last.temp_c,
                        "board has cooled down: back to {} compute thread(s)",
                        self.threads
                    );
                }
            }
        }
        (self.threads, event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// Replays scripted readings; repeats the last one when it runs out.
    struct Fake {
        q: VecDeque<ThermalReading>,
        last: ThermalReading,
        reads: usize,
    }
    impl Fake {
        fn temps(t: &[f64]) -> Fake {
            Fake {
                q: t.iter()
                    .map(|&t| ThermalReading {
                        temp_c: Some(t),
                        throttled: None,
                    })
                    .collect(),
                last: ThermalReading::default(),
                reads: 0,
            }
        }
    }
    impl ThermalSource for Fake {
        fn read(&mut self) -> ThermalReading {
            self.reads += 1;
            if let Some(r) = self.q.pop_front() {
                self.last = r;
            }
            self.last.clone()
        }
    }

    fn at(t0: Instant, secs: f64) -> Instant {
        t0 + Duration::from_secs_f64(secs)
    }

    fn pi5_cfg() -> GovernorConfig {
        GovernorConfig::new(78.0, 83.0)
    }

    #[test]
    fn throttle_flag_bits() {
        let f = ThrottleFlags::parse("50005").unwrap();
        assert!(f.under_voltage() && f.throttled() && !f.arm_freq_capped() && !f.soft_temp_limit());
        assert_eq!(
            f.names(),
            vec![
                "under-voltage",
                "throttled",
                "under-voltage-occurred",
                "throttled-occurred"
            ]
        );
        assert!(f.stressed_now());
        let f = ThrottleFlags::parse("throttled=0x80008").unwrap();
        assert!(f.soft_temp_limit() && !f.stressed_now());
        assert_eq!(
            f.names(),
            vec!["soft-temp-limit", "soft-temp-limit-occurred"]
        );
        // History only: not stressed now.
        assert!(!ThrottleFlags::parse("0x20000").unwrap().stressed_now());
        assert!(ThrottleFlags::parse("0x2").unwrap().stressed_now());
        assert_eq!(
            ThrottleFlags::parse("0").unwrap().names(),
            Vec::<&str>::new()
        );
        assert!(ThrottleFlags::parse("nope").is_none());
    }

    #[test]
    fn polls_at_most_once_per_interval() {
        let t0 = Instant::now();
        let mut g = ThermalGovernor::new(Fake::temps(&[50.0]), pi5_cfg(), 4);
        for i in 0..100 {
            g.poll_at(at(t0, i as f64 * 0.01)); // 100 polls in one second
        }
        assert_eq!(g.source.reads, 1);
        g.poll_at(at(t0, 1.0));
        assert_eq!(g.source.reads, 2);
    }

    #[test]
    fn sheds_one_thread_after_sustained_heat_only() {
        let t0 = Instant::now();
        let mut g = ThermalGovernor::new(Fake::temps(&[80.0]), pi5_cfg(), 4);
        // Hot from t=0; at 1 s polls, nothing happens before 10 s.
        for s in 0..10 {
            assert_eq!(
                g.poll_at(at(t0, s as f64)),
                (4, ThermalEvent::Steady),
                "t={s}"
            );
        }
        assert_eq!(g.poll_at(at(t0, 10.0)), (3, ThermalEvent::Shed(3)));
        // The next shed needs another 10 s, and so on down to one thread, never below.
        let mut sheds = Vec::new();
        for s in 11..100 {
            let (n, e) = g.poll_at(at(t0, s as f64));
            if e != ThermalEvent::Steady {
                sheds.push((s, e));
            }
            assert!(n >= 1);
        }
        assert_eq!(
            sheds,
            vec![(20, ThermalEvent::Shed(2)), (30, ThermalEvent::Shed(1))]
        );
    }

    #[test]
    fn a_single_spike_or_too_few_readings_do_not_shed() {
        let t0 = Instant::now();
        // Hot, then neutral (between soft-5 and soft): the hot timer resets.
        let mut temps = vec![80.0; 8];
        temps.push(75.0);
        temps.extend([80.0; 8]);
        let mut g = ThermalGovernor::new(Fake::temps(&temps), pi5_cfg(), 4);
        for s in 0..17 {
            assert_eq!(g.poll_at(at(t0, s as f64)).0, 4, "t={s}");
        }
        // Two readings 10 s apart are not "sustained" (min_hot_polls = 3).
        let mut g = ThermalGovernor::new(Fake::temps(&[80.0]), pi5_cfg(), 4);
        g.poll_at(at(t0, 0.0));
        assert_eq!(g.poll_at(at(t0, 10.0)).0, 4);
        assert_eq!(g.poll_at(at(t0, 11.0)).0, 3);
    }

    #[test]
    fn hard_limit_sheds_at_once_then_every_step() {
        let t0 = Instant::now();
        let mut g = ThermalGovernor::new(Fake::temps(&[84.0]), pi5_cfg(), 4);
        assert_eq!(g.poll_at(at(t0, 0.0)), (3, ThermalEvent::Shed(3)));
        assert_eq!(g.poll_at(at(t0, 1.0)).0, 3);
        assert_eq!(g.poll_at(at(t0, 2.0)), (2, ThermalEvent::Shed(2)));
        assert_eq!(g.poll_at(at(t0, 4.0)), (1, ThermalEvent::Shed(1)));
        assert_eq!(g.poll_at(at(t0, 6.0)), (1, ThermalEvent::Steady));
    }

    #[test]
    fn firmware_throttling_counts_as_hot_even_when_cool() {
        let t0 = Instant::now();
        let r = ThermalReading {
            temp_c: Some(55.0),
            throttled: ThrottleFlags::parse("50005"),
        };
        let mut g = ThermalGovernor::new(
            Fake {
                q: VecDeque::from([r]),
                last: ThermalReading::default(),
                reads: 0,
            },
            pi5_cfg(),
            4,
        );
        for s in 0..10 {
            g.poll_at(at(t0, s as f64));
        }
        assert_eq!(g.poll_at(at(t0, 10.0)).1, ThermalEvent::Shed(3));
        // No temperature at all (no sensor) and no flags: never sheds.
        let mut g = ThermalGovernor::new(
            Fake {
                q: VecDeque::new(),
                last: ThermalReading::default(),
                reads: 0,
            },
            pi5_cfg(),
            4,
        );
        for s in 0..60 {
            assert_eq!(g.poll_at(at(t0, s as f64)).0, 4);
        }
    }

    #[test]
    fn restores_after_a_cool_spell_with_hysteresis() {
        let t0 = Instant::now();
        // 11 s hot (shed at 10 s), then 74 °C (neutral: above 78-5) for 60 s, then 60 °C.
        let mut temps = vec![80.0; 11];
        temps.extend([74.0; 60]);
        temps.push(60.0);
        let mut g = ThermalGovernor::new(Fake::temps(&temps), pi5_cfg(), 4);
        let mut events = Vec::new();
        for s in 0..200 {
            let (_, e) = g.poll_at(at(t0, s as f64));
            if e != ThermalEvent::Steady {
                events.push((s, e));
            }
        }
        // Shed at 10 s; neutral 11..70 restores nothing; cool from 71 s:
        // restore at 101 s, then every 30 s until back at the maximum.
        assert_eq!(
            events,
            vec![
                (10, ThermalEvent::Shed(3)),
                (101, ThermalEvent::Restored(4))
            ]
        );
        assert_eq!(g.threads(), g.max_threads());
    }

    #[test]
    fn discovers_zone_and_flags_in_a_tree() {
        let d = std::env::temp_dir().join(format!("pistil-thermal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        let w = |p: &str, s: &str| {
            let f = d.join(p);
            std::fs::create_dir_all(f.parent().unwrap()).unwrap();
            std::fs::write(f, s).unwrap();
        };
        w("sys/class/thermal/thermal_zone0/type", "acpitz\n");
        w("sys/class/thermal/thermal_zone0/temp", "30000\n");
        w("sys/class/thermal/thermal_zone10/type", "cpu-thermal\n");
        w("sys/class/thermal/thermal_zone10/temp", "61234\n");
        w("sys/class/thermal/thermal_zone2/type", "cpu-thermal\n");
        w("sys/class/thermal/thermal_zone2/temp", "62000\n");
        w(
            "sys/devices/platform/soc@107c000000/soc@107c000000:firmware/get_throttled",
            "80008\n",
        );
        let s = ThermalSensor::discover(&Sysroot::new(&d));
        assert_eq!(s.zone_type.as_deref(), Some("cpu-thermal"));
        assert_eq!(
            s.temp_file.as_deref(),
            Some("/sys/class/thermal/thermal_zone2/temp")
        );
        let r = s.read_now();
        assert_eq!(r.temp_c, Some(62.0));
        assert_eq!(r.throttled, Some(ThrottleFlags(0x80008)));
        // Unreadable values are absent, not errors.
        w("sys/class/thermal/thermal_zone2/temp", "garbage\n");
        assert_eq!(s.read_now().temp_c, None);
        let _ = std::fs::remove_dir_all(&d);
        // Nothing at all.
        let s = ThermalSensor::discover(&Sysroot::new("/no/such/root"));
        assert_eq!(s.read_now(), ThermalReading::default());
    }
}
