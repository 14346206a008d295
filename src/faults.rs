//! Fault injection for tests: the seam where a binding can be made to fail.
//!
//! Miniflare has no way to make a KV write or a queue send fail, so the shell asks `injected`
//! before those calls. Only a build with the cargo feature `fault-injection` (the separate
//! test build in `build-faults/`, see Makefile) reads the `FAULTS` var
//! (`FAULTS="kv_put,queue_send"`); in every other build this is a constant `false` that the
//! compiler removes.

use worker::Env;

#[cfg(feature = "fault-injection")]
pub fn injected(env: &Env, name: &str) -> bool {
    env.var("FAULTS").map(|v| v.to_string().split(',').any(|f| f.trim() == name)).unwrap_or(false)
}

#[cfg(not(feature = "fault-injection"))]
#[inline(always)]
pub fn injected(_env: &Env, _name: &str) -> bool {
    false
}
