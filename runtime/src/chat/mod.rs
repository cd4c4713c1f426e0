//! Chat templates (the GGUF's own Jinja template via minijinja) and reasoning (`<think>`) handling.
