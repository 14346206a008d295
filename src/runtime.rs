//! Small wrappers over the Workers runtime that several modules share: randomness (WebCrypto)
//! and outbound fetch with a deadline.

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
