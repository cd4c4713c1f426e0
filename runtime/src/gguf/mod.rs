//! GGUF v2/v3: a borrowed, validated view of a model file over `memmap2`.
