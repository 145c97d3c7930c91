//! Shared code of the examples, so their tests can run them with small sizes.

pub mod density;
