//! Small wrappers over the Workers runtime that several modules share: randomness (WebCrypto),
//! building outbound requests, and fetch with a deadline.

use futures_util::future::{select, Either};
use wasm_bindgen::JsCast;
use worker::{AbortController, Delay, Fetch, Request, Response};

/// A random RFC 4122 v4 UUID from the runtime's CSPRNG (`crypto.randomUUID()`).
pub fn random_uuid() -> Result<String, String> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let crypto = global.crypto().map_err(|_| "WebCrypto is not available".to_string())?;
    Ok(crypto.random_uuid())
}

/// The runtime's SubtleCrypto.
pub fn subtle() -> Result<web_sys::SubtleCrypto, String> {
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let crypto = global.crypto().map_err(|_| "WebCrypto is not available".to_string())?;
    Ok(crypto.subtle())
}

/// An outbound request. Built on `web_sys` directly: `worker::RequestInit` converts through
/// serde (its `cf` options), which costs the wasm kilobytes for options never used here.
/// Redirects are never followed: a 3xx is an answer (a signed document or a bearer token must
/// not follow a `Location` somewhere else).
pub fn request(
    method: &str,
    url: &str,
    headers: &worker::Headers,
    body: Option<&str>,
) -> Result<Request, String> {
    request_js(method, url, headers, body.map(wasm_bindgen::JsValue::from_str).as_ref())
}

/// `request` with any body fetch takes (a `ReadableStream` is sent as it is read).
pub fn request_js(
    method: &str,
    url: &str,
    headers: &worker::Headers,
    body: Option<&wasm_bindgen::JsValue>,
) -> Result<Request, String> {
    let init = web_sys::RequestInit::new();
    init.set_method(method);
    init.set_headers(&headers.0);
    if let Some(b) = body {
        init.set_body(b);
    }
    init.set_redirect(web_sys::RequestRedirect::Manual);
    web_sys::Request::new_with_str_and_init(url, &init)
        .map(Request::from)
        .map_err(|_| format!("{} is not a valid URL", crate::core::outbound::url_origin(url)))
}

#[derive(Debug)]
pub enum FetchError {
    /// No answer within the deadline (the request was aborted).
    Timeout,
    /// Connection refused/reset, DNS, TLS…: the runtime's message.
    Network(String),
}

/// Sends `req`, aborting it after `timeout_ms`.
pub async fn fetch_with_timeout(req: Request, timeout_ms: u64) -> Result<Response, FetchError> {
    let controller = AbortController::default();
    let signal = controller.signal();
    let fetch = Fetch::Request(req);
    let send = fetch.send_with_signal(&signal);
    let deadline = Delay::from(std::time::Duration::from_millis(timeout_ms));
    futures_util::pin_mut!(send);
    match select(send, deadline).await {
        Either::Left((Ok(resp), _)) => Ok(resp),
        // The runtime's messages end in a full stop; ours add their own.
        Either::Left((Err(e), _)) => {
            Err(FetchError::Network(e.to_string().trim_end_matches('.').to_string()))
        }
        Either::Right(((), _)) => {
            controller.abort();
            Err(FetchError::Timeout)
        }
    }
}
