//! # pistil-boards
//!
//! Raspberry Pi board profiles as data (one TOML file per board, compiled in,
//! overridable by a user file), detection from the device tree, /proc/cpuinfo
//! and /proc/meminfo below a redirectable root, the memory fit check that runs
//! before a model is loaded, and the thermal policy.
