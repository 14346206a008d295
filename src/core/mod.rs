//! The pure core of rbm-edge: RBM's wire formats and the rules about them.
//!
//! Nothing in here imports `worker`, `js_sys` or `web_sys`, reads a clock or does I/O:
//! every module is plain Rust, unit-tested natively with `cargo test`. Time comes in as a
//! parameter (milliseconds since the Unix epoch), read by the Workers shell.

pub mod callback;
pub mod conversation;
pub mod ct;
pub mod envelope;
pub mod event;
pub mod fallback;
pub mod files;
pub mod ids;
pub mod json;
pub mod jwt;
pub mod outbound;
pub mod pipeline;
pub mod query;
pub mod reachability;
pub mod redact;
pub mod region;
pub mod route;
pub mod signature;
pub mod status;
pub mod time;
pub mod token;
pub mod upstream;
pub mod validate;
pub mod webhook_sign;
