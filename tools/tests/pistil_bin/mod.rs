//! The `pistil` binary under test, as a [`Command`].
//!
//! Built for aarch64 and run under qemu-user (the xtask sets
//! `PISTIL_UNDER_QEMU=1`; cargo's runner sets nothing the test can see),
//! the test process is emulated but a child it spawns is not: the host
//! kernel cannot execute an aarch64 binary without binfmt_misc. So the
//! binary is started through `qemu-aarch64` itself, with the same `QEMU_CPU`.

use std::process::Command;

/// True in the aarch64 test runs under qemu (`PISTIL_UNDER_QEMU=1`, set by
/// `cargo xtask test`): tests that spawn servers or shells skip there.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn under_qemu() -> bool {
    std::env::var_os("PISTIL_UNDER_QEMU").is_some_and(|v| v == "1")
}

/// A [`Command`] that runs the `pistil` binary built for these tests.
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn pistil_command() -> Command {
    let exe = env!("CARGO_BIN_EXE_pistil");
    if cfg!(target_arch = "aarch64") && (under_qemu() || std::env::var_os("QEMU_CPU").is_some()) {
        let mut c = Command::new("qemu-aarch64");
        c.args(["-L", "/usr/aarch64-linux-gnu", exe]);
        c
    } else {
        Command::new(exe)
    }
}

/// The path of a tiny model fixture (`tests/fixtures/models/NAME.gguf`).
#[allow(dead_code)] // not every test binary that includes this module uses it
pub fn fixture_model(name: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures/models")
        .join(format!("{name}.gguf"))
        .display()
        .to_string()
}
