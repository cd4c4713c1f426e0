//! Real Raspberry Pi pins through rpi-pal (aarch64 Linux, `gpio` feature).
//!
//! rpi-pal talks to `/dev/gpiomem` (or `/dev/gpiochipN` on the Pi 5); the
//! user running pistil must be in the `gpio` group (the systemd unit adds
//! it). On drop rpi-pal puts the pins back as they were.

use rpi_pal::gpio::{Gpio, InputPin, OutputPin};

use super::{GpioError, Pins};

/// The LED (output) and button (input with pull-up, pressed = low).
pub struct RpiPins {
    led: Option<OutputPin>,
    button: Option<InputPin>,
}

impl RpiPins {
    /// Opens the pins (BCM numbers).
    pub fn open(led: Option<u8>, button: Option<u8>) -> Result<RpiPins, GpioError> {
        let gpio = Gpio::new()
            .map_err(|e| GpioError::Unsupported(format!("cannot open the GPIO: {e}")))?;
        let get = |pin: u8| {
            gpio.get(pin).map_err(|e| GpioError::Pin {
                pin,
                detail: e.to_string(),
            })
        };
        let led = match led {
            Some(p) => Some(get(p)?.into_output_low()),
            None => None,
        };
        let button = match button {
            Some(p) => Some(get(p)?.into_input_pullup()),
            None => None,
        };
        Ok(RpiPins { led, button })
    }
}

impl Pins for RpiPins {
    fn set_led(&mut self, on: bool) {
        if let Some(led) = &mut self.led {
            if on {
                led.set_high();
            } else {
                led.set_low();
            }
        }
    }

    fn button_pressed(&mut self) -> bool {
        self.button.as_ref().is_some_and(|b| b.is_low())
    }
}
