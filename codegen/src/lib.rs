//! Lexicon documents in, Rust source files out: a pure function.
