//! Tokenizers built from GGUF metadata: byte-level BPE (gpt2) and SentencePiece (llama).
