//! Workers KV layouts, one module per key family.

pub mod status;
