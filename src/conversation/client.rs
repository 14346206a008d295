//! The Worker's side of the `Conversation` objects (binding `CONVERSATIONS`): internal
//! requests to the object of a conversation or of a token's budget.

use serde_json::Value;
use worker::{Env, Headers, Method, Request, Response, Stub};

use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;

use crate::runtime::{js_message, request};

use crate::core::conversation::Op;
use crate::error::ApiError;

pub const BINDING: &str = "CONVERSATIONS";
/// Internal requests need an absolute URL; the host is never resolved.
const BASE: &str = "https://conversation.internal";

fn stub(env: &Env, name: &str) -> Result<Stub, ApiError> {
    env.durable_object(BINDING)
        .map_err(|_| ApiError::ConfigMissing(BINDING))?
        .id_from_name(name)
        .and_then(|id| id.get_stub())
        .map_err(|e| {
            ApiError::StorageUnavailable(format!("The conversation object could not be reached: {e}."))
        })
}

fn unavailable(e: worker::Error) -> ApiError {
    ApiError::StorageUnavailable(format!("The conversation object failed: {e}."))
}

/// Sends `op` to the object `name` and returns its JSON answer.
pub async fn op(env: &Env, name: &str, op: &Op) -> Result<Value, ApiError> {
    let body = serde_json::to_string(op).map_err(|e| ApiError::Internal(e.to_string()))?;
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let req = request("POST", &format!("{BASE}/op"), &headers, Some(&body)).map_err(ApiError::Internal)?;
    // The runtime's stub and Response directly: the answer's body in one `text()` (worker's
    // Response would read it as a stream).
    let stub: worker::worker_sys::DurableObject = stub(env, name)?.into_rpc();
    let failed = |e: JsValue| {
        ApiError::StorageUnavailable(format!("The conversation object failed: {}.", js_message(&e)))
    };
    let resp: web_sys::Response = JsFuture::from(stub.fetch_with_request(req.inner()).map_err(failed)?)
        .await
        .map_err(failed)?
        .unchecked_into();
    let status = resp.status();
    let text =
        JsFuture::from(resp.text().map_err(failed)?).await.map_err(failed)?.as_string().unwrap_or_default();
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    if status != 200 {
        let message = value["error"]["message"].as_str().unwrap_or("no message").to_string();
        return Err(ApiError::StorageUnavailable(format!(
            "The conversation object answered {status}: {message}"
        )));
    }
    Ok(value)
}

/// Relays a request to the object `name` at `path_and_query` and returns its answer as is
/// (history pages, the live socket's 101, the erase).
pub async fn relay(
    env: &Env,
    name: &str,
    method: Method,
    path_and_query: &str,
    original: Option<&Request>,
) -> Result<Response, ApiError> {
    let url = format!("{BASE}{path_and_query}");
    // The upgrade headers travel with the original request.
    let headers = original.map_or_else(Headers::new, |r| r.headers().clone());
    let req = request(method.as_ref(), &url, &headers, None).map_err(ApiError::Internal)?;
    stub(env, name)?.fetch_with_request(req).await.map_err(unavailable)
}
