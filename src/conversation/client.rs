//! The Worker's side of the `Conversation` objects (binding `CONVERSATIONS`): RPC ops and
//! internal requests to the object of a conversation or of a token's budget.

use serde_json::Value;
use worker::{Env, Headers, Method, Response, Stub};

use wasm_bindgen::prelude::wasm_bindgen;
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

/// The binding, its stubs and their RPC method (`Conversation::rpc_op` on the object's side),
/// called directly: `Env::durable_object` checks the binding's class by name on every call
/// (three more crossings into JS per op).
#[wasm_bindgen]
extern "C" {
    type EnvBindings;
    #[wasm_bindgen(method, getter = CONVERSATIONS)]
    fn conversations(this: &EnvBindings) -> Option<Namespace>;

    type Namespace;
    #[wasm_bindgen(method, catch, js_name = idFromName)]
    fn id_from_name(this: &Namespace, name: &str) -> Result<JsValue, JsValue>;
    #[wasm_bindgen(method, catch)]
    fn get(this: &Namespace, id: &JsValue) -> Result<ConversationStub, JsValue>;

    type ConversationStub;
    #[wasm_bindgen(method, catch)]
    fn op(this: &ConversationStub, body: &str) -> Result<js_sys::Promise, JsValue>;
}

fn rpc_stub(env: &Env, name: &str) -> Result<ConversationStub, ApiError> {
    let namespace =
        env.unchecked_ref::<EnvBindings>().conversations().ok_or(ApiError::ConfigMissing(BINDING))?;
    namespace.id_from_name(name).and_then(|id| namespace.get(&id)).map_err(|e| {
        ApiError::StorageUnavailable(format!(
            "The conversation object could not be reached: {}.",
            js_message(&e)
        ))
    })
}

/// Sends `op` to the object `name` (one RPC call) and returns its answer, a JSON document
/// (parsed only by the callers that read it).
pub async fn op(env: &Env, name: &str, op: &Op) -> Result<String, ApiError> {
    let body = serde_json::to_string(op).map_err(|e| ApiError::Internal(e.to_string()))?;
    let stub = rpc_stub(env, name)?;
    let failed = |e: JsValue| {
        ApiError::StorageUnavailable(format!("The conversation object failed: {}.", js_message(&e)))
    };
    let text = JsFuture::from(stub.op(&body).map_err(failed)?).await.map_err(failed)?.as_string();
    let text = text.unwrap_or_default();
    // A failure is the object's `ApiError::body()`, whose one key is `error`.
    if text.starts_with("{\"error\":") {
        let value: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let message = value["error"]["message"].as_str().unwrap_or("no message");
        return Err(ApiError::StorageUnavailable(format!("The conversation object answered: {message}")));
    }
    Ok(text)
}

/// Relays a request to the object `name` at `path_and_query` and returns its answer as is
/// (history pages, the live socket's 101, the erase).
pub async fn relay(
    env: &Env,
    name: &str,
    method: Method,
    path_and_query: &str,
    original: Option<&crate::http::Request>,
) -> Result<Response, ApiError> {
    let url = format!("{BASE}{path_and_query}");
    // The upgrade headers travel with the original request.
    let headers = original.map_or_else(Headers::new, |r| r.headers().clone());
    let req = request(method.as_ref(), &url, &headers, None).map_err(ApiError::Internal)?;
    stub(env, name)?.fetch_with_request(req).await.map_err(unavailable)
}
