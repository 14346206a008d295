//! rbm-edge: a Cloudflare Worker for RCS for Business (RBM) agents.
//!
//! `core/` is the pure RBM logic (no Workers types, tested natively); everything else is the
//! thin Workers shell around it: `http/` (routes), `store/` (KV), `pipeline/` (what happens to
//! a verified event), `config`, `error`, `log`. This file only holds the entry points.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod core;

#[cfg(target_arch = "wasm32")]
mod config;
#[cfg(target_arch = "wasm32")]
mod conversation;
#[cfg(target_arch = "wasm32")]
mod error;
#[cfg(target_arch = "wasm32")]
mod faults;
#[cfg(target_arch = "wasm32")]
mod google;
#[cfg(target_arch = "wasm32")]
mod http;
#[cfg(target_arch = "wasm32")]
mod log;
#[cfg(target_arch = "wasm32")]
mod pipeline;
#[cfg(target_arch = "wasm32")]
mod runtime;
#[cfg(target_arch = "wasm32")]
mod store;

/// The fetch handler, exported by hand as `#[worker::event(fetch)]` would (same name and
/// arguments), but keeping the runtime's Request (`http::Request`) rather than converting it to
/// a `worker::Request` first, and answering synchronously when the route never waits
/// (`runtime::now_or_promise`). Never fails: every error is a JSON response.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub fn fetch(
    req: web_sys::Request,
    env: worker::Env,
    ctx: worker::worker_sys::Context,
) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    runtime::now_or_promise(async move {
        let resp = http::handle(http::Request::new(req), env, worker::Context::new(ctx)).await;
        into_runtime(resp).map(Into::into)
    })
}

/// worker's conversion copies a fixed body into a new `Uint8Array` first; the runtime's
/// Response constructor reads (and copies) it straight from the wasm memory instead. Only a
/// status the runtime refuses could fail (none is produced): that throws, a 500.
#[cfg(target_arch = "wasm32")]
fn into_runtime(resp: worker::Response) -> Result<web_sys::Response, wasm_bindgen::JsValue> {
    match resp.into_parts() {
        (init, worker::ResponseBody::Body(mut bytes)) => {
            web_sys::Response::new_with_opt_u8_array_and_init(Some(&mut bytes), &init.into())
        }
        (init, body) => Ok(web_sys::Response::from(init.body(body))),
    }
}

/// Consumer of the `EVENTS` queue and of its dead-letter queue (see `pipeline::queue`).
/// Exported by hand, as `#[worker::event(queue)]` would (same name and arguments): the macro
/// hands over a `worker::MessageBatch`, whose retry options go through serde_wasm_bindgen.
/// Never fails: each message is acked or retried on its own.
#[cfg(target_arch = "wasm32")]
#[wasm_bindgen::prelude::wasm_bindgen]
pub async fn queue(
    batch: worker::worker_sys::MessageBatch,
    env: worker::Env,
    _ctx: wasm_bindgen::JsValue,
) -> Result<wasm_bindgen::JsValue, wasm_bindgen::JsValue> {
    pipeline::queue::consume(batch, env).await;
    Ok(wasm_bindgen::JsValue::UNDEFINED)
}
