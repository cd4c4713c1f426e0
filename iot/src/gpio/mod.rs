//! A status LED and a push button on the Pi's GPIO header.
//!
//! The logic lives here and is tested on any machine with a fake [`Pins`]
//! and a fake clock (time is a [`Duration`] since some start, passed in):
//!
//! - [`Status`] → blink [`Pattern`]: idle = off, listening = slow blink
//!   (½ s on, ½ s off), thinking = fast blink (0.1 s), speaking = on,
//!   error = double blink (held [`Panel::ERROR_HOLD`], then idle).
//! - [`Debouncer`]: a level change counts only once it has been stable for
//!   the debounce time (contact bounce of a tactile switch lasts a few ms).
//! - [`Panel`]: one [`tick`](Panel::tick) every few milliseconds drives the
//!   LED and turns button levels into [`ButtonEvent`]s; [`spawn_panel`]
//!   runs it on a thread following a worker's status.
//!
//! Real pins ([`open_pins`]) use rpi-pal, built with the `gpio` feature on
//! aarch64 Linux: BCM numbering, LED active high (pin → resistor → LED →
//! ground), button to ground with the internal pull-up (pressed = low).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[cfg(all(feature = "gpio", target_arch = "aarch64", target_os = "linux"))]
mod rpi;

/// What the device is doing, as the LED shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Status {
    /// Waiting: LED off.
    #[default]
    Idle,
    /// The button is held / a question is being recorded: slow blink.
    Listening,
    /// Reading the prompt and thinking: fast blink.
    Thinking,
    /// Writing the answer: on.
    Speaking,
    /// The last request failed: double blink.
    Error,
}

/// A repeating LED cycle: `(on, milliseconds)` steps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pattern(pub &'static [(bool, u64)]);

impl Pattern {
    /// Whether the LED is on `elapsed` after the pattern started.
    pub fn level_at(&self, elapsed: Duration) -> bool {
        let period: u64 = self.0.iter().map(|s| s.1).sum();
        if period == 0 {
            return self.0.first().is_some_and(|s| s.0);
        }
        let mut t = (elapsed.as_millis() % u128::from(period)) as u64;
        for &(on, ms) in self.0 {
            if t < ms {
                return on;
            }
            t -= ms;
        }
        false
    }
}

impl Status {
    /// The LED pattern of this status.
    pub fn pattern(self) -> Pattern {
        match self {
            Status::Idle => Pattern(&[(false, 1000)]),
            Status::Listening => Pattern(&[(true, 500), (false, 500)]),
            Status::Thinking => Pattern(&[(true, 100), (false, 100)]),
            Status::Speaking => Pattern(&[(true, 1000)]),
            Status::Error => Pattern(&[(true, 120), (false, 120), (true, 120), (false, 640)]),
        }
    }
}

/// A debounced button change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    /// Pressed down (stable for the debounce time).
    Pressed,
    /// Let go (stable for the debounce time).
    Released,
}

/// Turns a bouncing raw level into clean press/release events.
#[derive(Debug, Clone)]
pub struct Debouncer {
    debounce: Duration,
    stable: bool,
    candidate: bool,
    since: Duration,
}

impl Debouncer {
    /// A debouncer that starts released.
    pub fn new(debounce: Duration) -> Debouncer {
        Debouncer {
            debounce,
            stable: false,
            candidate: false,
            since: Duration::ZERO,
        }
    }

    /// Feeds the raw level (`true` = pressed) read at time `now`.
    pub fn update(&mut self, raw: bool, now: Duration) -> Option<ButtonEvent> {
        if raw != self.candidate {
            self.candidate = raw;
            self.since = now;
        }
        if self.candidate != self.stable && now.saturating_sub(self.since) >= self.debounce {
            self.stable = self.candidate;
            return Some(if self.stable {
                ButtonEvent::Pressed
            } else {
                ButtonEvent::Released
            });
        }
        None
    }

    /// The debounced level.
    pub fn is_pressed(&self) -> bool {
        self.stable
    }
}

/// The pins the panel drives: one LED output, one button input.
pub trait Pins: Send {
    /// Turns the LED on or off.
    fn set_led(&mut self, on: bool);
    /// Reads the button now (`true` = pressed), without debouncing.
    fn button_pressed(&mut self) -> bool;
}

/// The LED and button logic, driven by [`tick`](Panel::tick).
pub struct Panel<P: Pins> {
    pins: P,
    status: Status,
    since: Duration,
    led: Option<bool>,
    button: Debouncer,
}

impl<P: Pins> Panel<P> {
    /// How long an error is shown before going back to idle.
    pub const ERROR_HOLD: Duration = Duration::from_secs(5);
    /// Debounce time of the button.
    pub const DEBOUNCE: Duration = Duration::from_millis(30);

    /// A panel on `pins`, idle.
    pub fn new(pins: P) -> Panel<P> {
        Panel {
            pins,
            status: Status::Idle,
            since: Duration::ZERO,
            led: None,
            button: Debouncer::new(Self::DEBOUNCE),
        }
    }

    /// Shows `status` from time `now` (a pattern restarts only on a change).
    pub fn set_status(&mut self, status: Status, now: Duration) {
        if status != self.status {
            self.status = status;
            self.since = now;
        }
    }

    /// The status shown.
    pub fn status(&self) -> Status {
        self.status
    }

    /// Updates the LED and reads the button at time `now`.
    pub fn tick(&mut self, now: Duration) -> Option<ButtonEvent> {
        if self.status == Status::Error && now.saturating_sub(self.since) >= Self::ERROR_HOLD {
            self.set_status(Status::Idle, now);
        }
        let on = self
            .status
            .pattern()
            .level_at(now.saturating_sub(self.since));
        if self.led != Some(on) {
            self.pins.set_led(on);
            self.led = Some(on);
        }
        let raw = self.pins.button_pressed();
        self.button.update(raw, now)
    }

    /// The pins (tests look at a fake's record).
    pub fn pins(&self) -> &P {
        &self.pins
    }

    /// Turns the LED off (on shutdown).
    pub fn off(&mut self) {
        self.pins.set_led(false);
        self.led = Some(false);
    }
}

/// A panel running on its own thread; dropping it (or [`stop`](Self::stop)) ends it, LED off.
pub struct PanelThread {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl PanelThread {
    /// Stops the thread and waits for it.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for PanelThread {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Runs a [`Panel`] every 10 ms on a thread: the LED follows `status` (a
/// worker's status), button events go to `on_button`.
pub fn spawn_panel<P: Pins + 'static>(
    pins: P,
    status: tokio::sync::watch::Receiver<Status>,
    mut on_button: impl FnMut(ButtonEvent) + Send + 'static,
) -> std::io::Result<PanelThread> {
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = Arc::clone(&stop);
    let thread = std::thread::Builder::new()
        .name("pistil-gpio".into())
        .spawn(move || {
            let start = Instant::now();
            let mut panel = Panel::new(pins);
            let mut status = status;
            panel.set_status(*status.borrow_and_update(), Duration::ZERO);
            while !stop2.load(Ordering::Relaxed) {
                let now = start.elapsed();
                // Only a new status is applied: an error the panel has
                // cleared after its hold time is not raised again.
                if status.has_changed().unwrap_or(false) {
                    panel.set_status(*status.borrow_and_update(), now);
                }
                if let Some(ev) = panel.tick(now) {
                    on_button(ev);
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            panel.off();
        })?;
    Ok(PanelThread {
        stop,
        thread: Some(thread),
    })
}

/// Why the GPIO pins could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum GpioError {
    /// This build or machine has no GPIO support.
    #[error("{0}")]
    Unsupported(String),
    /// A pin could not be set up.
    #[error("GPIO pin {pin} (BCM): {detail}")]
    Pin {
        /// BCM pin number.
        pin: u8,
        /// Why.
        detail: String,
    },
}

/// Opens the real pins: `led` (output) and `button` (input, pull-up), BCM
/// numbers; either may be absent.
pub fn open_pins(led: Option<u8>, button: Option<u8>) -> Result<Box<dyn Pins>, GpioError> {
    #[cfg(all(feature = "gpio", target_arch = "aarch64", target_os = "linux"))]
    {
        rpi::RpiPins::open(led, button).map(|p| Box::new(p) as Box<dyn Pins>)
    }
    #[cfg(not(all(feature = "gpio", target_arch = "aarch64", target_os = "linux")))]
    {
        let _ = (led, button);
        Err(GpioError::Unsupported(
            "this pistil was built without GPIO support (it needs an aarch64 Linux build with the `gpio` feature)"
                .into(),
        ))
    }
}

impl<P: Pins + ?Sized> Pins for Box<P> {
    fn set_led(&mut self, on: bool) {
        (**self).set_led(on)
    }
    fn button_pressed(&mut self) -> bool {
        (**self).button_pressed()
    }
}

/// Fake pins for tests: records LED changes, reads the button from a script.
#[derive(Debug, Default, Clone)]
pub struct FakePins {
    /// Every LED change, in order.
    pub led_log: Vec<bool>,
    /// The raw button level returned next.
    pub button: bool,
}

impl Pins for FakePins {
    fn set_led(&mut self, on: bool) {
        self.led_log.push(on);
    }
    fn button_pressed(&mut self) -> bool {
        self.button
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// LED levels sampled every 10 ms for `len` ms.
    fn trace(status: Status, len: u64) -> String {
        let mut p = Panel::new(FakePins::default());
        p.set_status(status, ms(0));
        (0..len / 10)
            .map(|i| {
                p.tick(ms(i * 10));
                if p.led == Some(true) {
                    '#'
                } else {
                    '.'
                }
            })
            .collect()
    }

    #[test]
    fn patterns() {
        assert_eq!(trace(Status::Idle, 200), ".".repeat(20));
        assert_eq!(trace(Status::Speaking, 200), "#".repeat(20));
        assert_eq!(
            trace(Status::Thinking, 400),
            "##########..........##########.........."
        );
        let slow = trace(Status::Listening, 2000);
        assert_eq!(
            &slow[..100],
            format!("{}{}", "#".repeat(50), ".".repeat(50))
        );
        assert_eq!(slow[..100], slow[100..]);
        let err = trace(Status::Error, 1000);
        assert_eq!(
            &err[..48],
            "############............############............"
        );
        assert!(err[48..].chars().all(|c| c == '.'));
    }

    #[test]
    fn led_written_only_on_change_and_error_clears() {
        let mut p = Panel::new(FakePins::default());
        for i in 0..10 {
            p.tick(ms(i));
        }
        assert_eq!(p.pins().led_log, [false]);
        p.set_status(Status::Error, ms(100));
        p.tick(ms(100));
        assert_eq!(p.status(), Status::Error);
        p.tick(ms(100) + Panel::<FakePins>::ERROR_HOLD);
        assert_eq!(p.status(), Status::Idle);
        assert_eq!(p.pins().led_log, [false, true, false]);
    }

    #[test]
    fn debounce_ignores_bounces() {
        let mut d = Debouncer::new(ms(30));
        // Bouncy press: 0/1 flips every 5 ms for 20 ms, then held.
        let mut events = Vec::new();
        let mut t = 0;
        for i in 0..4 {
            events.extend(d.update(i % 2 == 0, ms(t)));
            t += 5;
        }
        for _ in 0..10 {
            events.extend(d.update(true, ms(t)));
            t += 5;
        }
        assert_eq!(events, [ButtonEvent::Pressed]);
        assert!(d.is_pressed());
        // A 10 ms glitch while held is not a release.
        events.clear();
        events.extend(d.update(false, ms(t)));
        events.extend(d.update(false, ms(t + 10)));
        events.extend(d.update(true, ms(t + 15)));
        events.extend(d.update(true, ms(t + 100)));
        assert!(events.is_empty(), "{events:?}");
        // A real release.
        events.extend(d.update(false, ms(t + 200)));
        events.extend(d.update(false, ms(t + 229)));
        assert!(events.is_empty());
        events.extend(d.update(false, ms(t + 230)));
        assert_eq!(events, [ButtonEvent::Released]);
    }

    #[test]
    fn panel_reports_button_events() {
        let mut p = Panel::new(FakePins::default());
        let mut got = Vec::new();
        for i in 0..20u64 {
            p.pins.button = (5..12).contains(&i);
            got.extend(p.tick(ms(i * 10)).map(|e| (i, e)));
        }
        assert_eq!(
            got,
            [(8, ButtonEvent::Pressed), (15, ButtonEvent::Released)]
        );
    }

    #[test]
    fn panel_thread_follows_status() {
        #[derive(Clone, Default)]
        struct Shared(Arc<std::sync::Mutex<FakePins>>);
        impl Pins for Shared {
            fn set_led(&mut self, on: bool) {
                self.0.lock().unwrap().set_led(on)
            }
            fn button_pressed(&mut self) -> bool {
                self.0.lock().unwrap().button
            }
        }
        let pins = Shared::default();
        let (tx, rx) = tokio::sync::watch::channel(Status::Idle);
        let (etx, erx) = std::sync::mpsc::channel();
        let t = spawn_panel(pins.clone(), rx, move |e| {
            let _ = etx.send(e);
        })
        .unwrap();
        std::thread::sleep(ms(50));
        tx.send_replace(Status::Speaking);
        std::thread::sleep(ms(50));
        pins.0.lock().unwrap().button = true;
        assert_eq!(
            erx.recv_timeout(Duration::from_secs(2)).unwrap(),
            ButtonEvent::Pressed
        );
        t.stop();
        let log = pins.0.lock().unwrap().led_log.clone();
        assert_eq!(log, [false, true, false], "off, on (speaking), off at stop");
    }

    #[test]
    fn open_pins_without_support_says_why() {
        #[cfg(not(all(feature = "gpio", target_arch = "aarch64", target_os = "linux")))]
        {
            let e = open_pins(Some(17), Some(27)).err().unwrap().to_string();
            assert!(e.contains("without GPIO support"), "{e}");
        }
    }
}
