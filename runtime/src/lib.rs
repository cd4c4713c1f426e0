//! # pistil-runtime
//!
//! Everything between a GGUF file and a token: a zero-copy, validated view of
//! the file over `memmap2` ([`gguf`]), the tokenizer and chat template read from
//! the file's own metadata ([`tokenizer`], [`chat`]), the model catalog and
//! downloads ([`catalog`]), the memory a run needs ([`plan`]), and the model
//! graphs, KV cache, sampler and generation loop. Buffers are planned and
//! allocated at load; decoding a token allocates nothing.

pub mod catalog;
pub mod chat;
pub mod constraint;
pub mod engine;
pub mod gguf;
pub mod model;
pub mod plan;
pub mod sampler;
pub mod tokenizer;
