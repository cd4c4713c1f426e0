//! The model catalog (names → sources, sizes, sha256) and verified, resumable downloads.
