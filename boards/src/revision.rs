//! Raspberry Pi revision codes (the `Revision` line of `/proc/cpuinfo`).
//!
//! Decoded by hand from Raspberry Pi's public documentation ("Raspberry Pi
//! revision codes"), rather than through a GPIO crate: it is a few shifts and a
//! table, and keeping it here makes it testable against every published code.
//!
//! New-style codes (bit 23 set), one letter per bit, bit 31 first:
//!
//! ```text
//! NOQuuuWuFMMMCCCCPPPPTTTTTTTTRRRR
//! N  overvoltage disallowed      MMM   memory: 256 MB << MMM (7 = other)
//! O  OTP programming disallowed  CCCC  manufacturer
//! Q  OTP reading disallowed      PPPP  processor (BCM2835 .. BCM2712)
//! W  warranty voided             TT..  board type (0x17 = Pi 5, ...)
//! F  new-style flag              RRRR  PCB revision (1.RRRR)
//! ```
//!
//! Old-style codes are a sequence from `0002` to `0015` (Pi 1 era), looked up
//! in a table; a leading `100` means the warranty bit was set by overvolting.

use serde::Serialize;
use std::fmt;

/// A decoded revision code.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RevisionCode {
    /// The code as a number (`0xd04170`).
    pub raw: u32,
    /// New-style (bit-field) code, as opposed to the old sequential table.
    pub new_style: bool,
    /// Board type field (new style) or the board implied by an old code,
    /// as a new-style type number (old Model B → 0x01).
    pub board_type: u8,
    /// Human name of the board type: "5", "4B", "Zero 2 W", "CM4".
    pub board_name: &'static str,
    /// RAM in MB from the code; `None` for "other" (memory field 7).
    pub memory_mb: Option<u32>,
    /// The SoC: "BCM2712" ...
    pub processor: &'static str,
    /// Who made the board: "Sony UK", "Embest", ...
    pub manufacturer: &'static str,
    /// PCB revision as printed on the board ("1.4").
    pub pcb_revision: String,
    /// Warranty bit (overclocking/overvolting was enabled at some point).
    pub warranty_voided: bool,
}

/// Why a revision string could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RevisionError {
    #[error("revision code {0:?} is not a hexadecimal number")]
    NotHex(String),
    #[error("old-style revision code {0:#06x} is not in the published table")]
    UnknownOldStyle(u32),
}

/// Board type numbers (bits 4-11 of a new-style code) used by the profiles.
pub mod board_type {
    pub const B_2: u8 = 0x04;
    pub const B_3: u8 = 0x08;
    pub const CM3: u8 = 0x0a;
    pub const B_3_PLUS: u8 = 0x0d;
    pub const A_3_PLUS: u8 = 0x0e;
    pub const CM3_PLUS: u8 = 0x10;
    pub const B_4: u8 = 0x11;
    pub const ZERO_2_W: u8 = 0x12;
    pub const PI_400: u8 = 0x13;
    pub const CM4: u8 = 0x14;
    pub const CM4S: u8 = 0x15;
    pub const PI_5: u8 = 0x17;
    pub const CM5: u8 = 0x18;
    pub const PI_500: u8 = 0x19;
    pub const CM5_LITE: u8 = 0x1a;
}

/// Name of a new-style board type number.
pub fn board_type_name(t: u8) -> &'static str {
    match t {
        0x00 => "A",
        0x01 => "B",
        0x02 => "A+",
        0x03 => "B+",
        0x04 => "2B",
        0x05 => "Alpha",
        0x06 => "CM1",
        0x08 => "3B",
        0x09 => "Zero",
        0x0a => "CM3",
        0x0c => "Zero W",
        0x0d => "3B+",
        0x0e => "3A+",
        0x0f => "Internal",
        0x10 => "CM3+",
        0x11 => "4B",
        0x12 => "Zero 2 W",
        0x13 => "400",
        0x14 => "CM4",
        0x15 => "CM4S",
        0x16 => "Internal",
        0x17 => "5",
        0x18 => "CM5",
        0x19 => "500",
        0x1a => "CM5 Lite",
        0x1b => "CM0",
        _ => "unknown",
    }
}

fn processor_name(p: u32) -> &'static str {
    match p {
        0 => "BCM2835",
        1 => "BCM2836",
        2 => "BCM2837",
        3 => "BCM2711",
        4 => "BCM2712",
        _ => "unknown",
    }
}

fn manufacturer_name(c: u32) -> &'static str {
    match c {
        0 => "Sony UK",
        1 => "Egoman",
        2 | 4 => "Embest",
        3 => "Sony Japan",
        5 => "Stadium",
        _ => "unknown",
    }
}

/// Old-style table: code → (type as new-style number, PCB revision, RAM MB, manufacturer).
const OLD_STYLE: &[(u32, u8, &str, u32, &str)] = &[
    (0x0002, 0x01, "1.0", 256, "Egoman"),
    (0x0003, 0x01, "1.0", 256, "Egoman"),
    (0x0004, 0x01, "2.0", 256, "Sony UK"),
    (0x0005, 0x01, "2.0", 256, "Qisda"),
    (0x0006, 0x01, "2.0", 256, "Egoman"),
    (0x0007, 0x00, "2.0", 256, "Egoman"),
    (0x0008, 0x00, "2.0", 256, "Sony UK"),
    (0x0009, 0x00, "2.0", 256, "Qisda"),
    (0x000d, 0x01, "2.0", 512, "Egoman"),
    (0x000e, 0x01, "2.0", 512, "Sony UK"),
    (0x000f, 0x01, "2.0", 512, "Egoman"),
    (0x0010, 0x03, "1.2", 512, "Sony UK"),
    (0x0011, 0x06, "1.0", 512, "Sony UK"),
    (0x0012, 0x02, "1.1", 256, "Sony UK"),
    (0x0013, 0x03, "1.2", 512, "Embest"),
    (0x0014, 0x06, "1.0", 512, "Embest"),
    // Sold with 256 MB and 512 MB under the same code; the smaller is safe.
    (0x0015, 0x02, "1.1", 256, "Embest"),
];

const NEW_FLAG: u32 = 1 << 23;
const WARRANTY: u32 = 1 << 25;
/// Old-style codes carry the warranty bit as bit 24 ("1000002").
const OLD_WARRANTY: u32 = 1 << 24;

impl RevisionCode {
    /// Decodes a revision as printed in `/proc/cpuinfo` (`"d04170"`, `"0x00a020d3"`).
    pub fn parse(s: &str) -> Result<RevisionCode, RevisionError> {
        let t = s.trim();
        let hex = t
            .strip_prefix("0x")
            .or_else(|| t.strip_prefix("0X"))
            .unwrap_or(t);
        let raw = u32::from_str_radix(hex, 16).map_err(|_| RevisionError::NotHex(s.to_string()))?;
        RevisionCode::decode(raw)
    }

    /// Decodes a revision code number.
    pub fn decode(raw: u32) -> Result<RevisionCode, RevisionError> {
        if raw & NEW_FLAG != 0 {
            let board_type = ((raw >> 4) & 0xff) as u8;
            let mem = (raw >> 20) & 0x7;
            Ok(RevisionCode {
                raw,
                new_style: true,
                board_type,
                board_name: board_type_name(board_type),
                memory_mb: if mem == 7 { None } else { Some(256 << mem) },
                processor: processor_name((raw >> 12) & 0xf),
                manufacturer: manufacturer_name((raw >> 16) & 0xf),
                pcb_revision: format!("1.{}", raw & 0xf),
                warranty_voided: raw & WARRANTY != 0,
            })
        } else {
            let code = raw & 0x00ff_ffff;
            let &(_, board_type, pcb, mem, manufacturer) =
                OLD_STYLE
                    .iter()
                    .find(|e| e.0 == code)
                    .ok_or(RevisionError::UnknownOldStyle(code))?;
            Ok(RevisionCode {
                raw,
                new_style: false,
                board_type,
                board_name: board_type_name(board_type),
                memory_mb: Some(mem),
                processor: "BCM2835",
                manufacturer,
                pcb_revision: pcb.to_string(),
                warranty_voided: raw & OLD_WARRANTY != 0,
            })
        }
    }
}

impl fmt::Display for RevisionCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mem = match self.memory_mb {
            Some(mb) if mb >= 1024 => format!("{} GB", mb / 1024),
            Some(mb) => format!("{mb} MB"),
            None => "other".to_string(),
        };
        write!(
            f,
            "{:04x}: {} rev {}, {}, {}, {}",
            self.raw, self.board_name, self.pcb_revision, mem, self.processor, self.manufacturer
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (code, board, pcb, RAM MB, processor, manufacturer): the published table.
    const PUBLISHED: &[(&str, &str, &str, u32, &str, &str)] = &[
        ("a01041", "2B", "1.1", 1024, "BCM2836", "Sony UK"),
        ("a22042", "2B", "1.2", 1024, "BCM2837", "Embest"),
        ("a02082", "3B", "1.2", 1024, "BCM2837", "Sony UK"),
        ("a22082", "3B", "1.2", 1024, "BCM2837", "Embest"),
        ("a32082", "3B", "1.2", 1024, "BCM2837", "Sony Japan"),
        ("a52082", "3B", "1.2", 1024, "BCM2837", "Stadium"),
        ("a22083", "3B", "1.3", 1024, "BCM2837", "Embest"),
        ("900092", "Zero", "1.2", 512, "BCM2835", "Sony UK"),
        ("9000c1", "Zero W", "1.1", 512, "BCM2835", "Sony UK"),
        ("a020a0", "CM3", "1.0", 1024, "BCM2837", "Sony UK"),
        ("a020d3", "3B+", "1.3", 1024, "BCM2837", "Sony UK"),
        ("a020d4", "3B+", "1.4", 1024, "BCM2837", "Sony UK"),
        ("9020e0", "3A+", "1.0", 512, "BCM2837", "Sony UK"),
        ("9020e1", "3A+", "1.1", 512, "BCM2837", "Sony UK"),
        ("a02100", "CM3+", "1.0", 1024, "BCM2837", "Sony UK"),
        ("a03111", "4B", "1.1", 1024, "BCM2711", "Sony UK"),
        ("b03111", "4B", "1.1", 2048, "BCM2711", "Sony UK"),
        ("c03111", "4B", "1.1", 4096, "BCM2711", "Sony UK"),
        ("b03112", "4B", "1.2", 2048, "BCM2711", "Sony UK"),
        ("c03112", "4B", "1.2", 4096, "BCM2711", "Sony UK"),
        ("b03114", "4B", "1.4", 2048, "BCM2711", "Sony UK"),
        ("c03114", "4B", "1.4", 4096, "BCM2711", "Sony UK"),
        ("d03114", "4B", "1.4", 8192, "BCM2711", "Sony UK"),
        ("b03115", "4B", "1.5", 2048, "BCM2711", "Sony UK"),
        ("c03115", "4B", "1.5", 4096, "BCM2711", "Sony UK"),
        ("d03115", "4B", "1.5", 8192, "BCM2711", "Sony UK"),
        ("902120", "Zero 2 W", "1.0", 512, "BCM2837", "Sony UK"),
        ("c03130", "400", "1.0", 4096, "BCM2711", "Sony UK"),
        ("a03140", "CM4", "1.0", 1024, "BCM2711", "Sony UK"),
        ("b03140", "CM4", "1.0", 2048, "BCM2711", "Sony UK"),
        ("c03140", "CM4", "1.0", 4096, "BCM2711", "Sony UK"),
        ("d03140", "CM4", "1.0", 8192, "BCM2711", "Sony UK"),
        ("b04170", "5", "1.0", 2048, "BCM2712", "Sony UK"),
        ("c04170", "5", "1.0", 4096, "BCM2712", "Sony UK"),
        ("d04170", "5", "1.0", 8192, "BCM2712", "Sony UK"),
        ("a04171", "5", "1.1", 1024, "BCM2712", "Sony UK"),
        ("b04171", "5", "1.1", 2048, "BCM2712", "Sony UK"),
        ("c04171", "5", "1.1", 4096, "BCM2712", "Sony UK"),
        ("d04171", "5", "1.1", 8192, "BCM2712", "Sony UK"),
        ("e04171", "5", "1.1", 16384, "BCM2712", "Sony UK"),
        ("b04180", "CM5", "1.0", 2048, "BCM2712", "Sony UK"),
        ("c04180", "CM5", "1.0", 4096, "BCM2712", "Sony UK"),
        ("d04180", "CM5", "1.0", 8192, "BCM2712", "Sony UK"),
        ("e04180", "CM5", "1.0", 16384, "BCM2712", "Sony UK"),
        ("d04190", "500", "1.0", 8192, "BCM2712", "Sony UK"),
        ("e04190", "500", "1.0", 16384, "BCM2712", "Sony UK"),
        ("b041a0", "CM5 Lite", "1.0", 2048, "BCM2712", "Sony UK"),
        ("e041a0", "CM5 Lite", "1.0", 16384, "BCM2712", "Sony UK"),
    ];

    #[test]
    fn decodes_every_published_new_style_code() {
        for &(code, board, pcb, mem, soc, maker) in PUBLISHED {
            let r = RevisionCode::parse(code).unwrap();
            assert!(r.new_style, "{code}");
            assert_eq!(r.board_name, board, "{code}");
            assert_eq!(r.pcb_revision, pcb, "{code}");
            assert_eq!(r.memory_mb, Some(mem), "{code}");
            assert_eq!(r.processor, soc, "{code}");
            assert_eq!(r.manufacturer, maker, "{code}");
            assert!(!r.warranty_voided, "{code}");
        }
    }

    #[test]
    fn board_type_numbers() {
        assert_eq!(
            RevisionCode::parse("d04170").unwrap().board_type,
            board_type::PI_5
        );
        assert_eq!(
            RevisionCode::parse("902120").unwrap().board_type,
            board_type::ZERO_2_W
        );
        assert_eq!(
            RevisionCode::parse("a020d3").unwrap().board_type,
            board_type::B_3_PLUS
        );
        assert_eq!(
            RevisionCode::parse("c03130").unwrap().board_type,
            board_type::PI_400
        );
        assert_eq!(
            RevisionCode::parse("d04190").unwrap().board_type,
            board_type::PI_500
        );
        assert_eq!(
            RevisionCode::parse("c041a0").unwrap().board_type,
            board_type::CM5_LITE
        );
    }

    #[test]
    fn decodes_old_style_codes() {
        let r = RevisionCode::parse("0002").unwrap();
        assert!(!r.new_style);
        assert_eq!(
            (r.board_name, r.memory_mb, r.manufacturer),
            ("B", Some(256), "Egoman")
        );
        let r = RevisionCode::parse("000e").unwrap();
        assert_eq!(
            (r.board_name, r.memory_mb, r.pcb_revision.as_str()),
            ("B", Some(512), "2.0")
        );
        let r = RevisionCode::parse("0010").unwrap();
        assert_eq!(r.board_name, "B+");
        let r = RevisionCode::parse("0014").unwrap();
        assert_eq!((r.board_name, r.manufacturer), ("CM1", "Embest"));
        // Overvolted: warranty bit 24 in front of the old code.
        let r = RevisionCode::parse("1000002").unwrap();
        assert!(r.warranty_voided);
        assert_eq!(r.board_name, "B");
    }

    #[test]
    fn flag_bits() {
        // Warranty bit 25 on a Pi 3B (as `2a02082`), and bit 31 as the
        // firmware mailbox reports it on a Pi 4 (`80c03111`).
        let r = RevisionCode::parse("2a02082").unwrap();
        assert!(r.warranty_voided);
        assert_eq!(r.board_name, "3B");
        let r = RevisionCode::parse("80c03111").unwrap();
        assert!(!r.warranty_voided);
        assert_eq!((r.board_name, r.memory_mb), ("4B", Some(4096)));
        // Memory field 7 means "other" (read from the firmware instead).
        let r = RevisionCode::decode(0x00f0_4170).unwrap();
        assert_eq!(r.memory_mb, None);
    }

    #[test]
    fn bad_codes_are_errors_not_panics() {
        assert!(matches!(
            RevisionCode::parse("zz"),
            Err(RevisionError::NotHex(_))
        ));
        assert!(matches!(
            RevisionCode::parse(""),
            Err(RevisionError::NotHex(_))
        ));
        assert!(matches!(
            RevisionCode::parse("0001"),
            Err(RevisionError::UnknownOldStyle(1))
        ));
        assert!(RevisionCode::parse("0x00a020d3").is_ok());
        assert!(RevisionCode::parse("ffffffffff").is_err());
    }

    #[test]
    fn display_is_readable() {
        let s = RevisionCode::parse("d04170").unwrap().to_string();
        assert_eq!(s, "d04170: 5 rev 1.0, 8 GB, BCM2712, Sony UK");
    }
}
