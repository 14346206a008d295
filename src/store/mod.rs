//! Workers KV layouts, one module per key family.

pub mod dead_letters;
pub mod limits;
pub mod status;
