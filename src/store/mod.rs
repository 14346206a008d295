//! Workers KV layouts, one module per key family.

pub mod dead_letters;
pub mod kv;
pub mod limits;
pub mod status;
