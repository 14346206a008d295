//! Small wrappers over the Workers runtime that several modules share: randomness (WebCrypto),
//! building outbound requests, fetch with a deadline, and running a handler synchronously when
//! it can finish without waiting.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::future::{select, Either};
use wasm_bindgen::JsCast;
use wasm_bindgen::JsValue;
use wasm_bindgen_futures::JsFuture;
use worker::{AbortController, Delay, Request};

/// Milliseconds since the Unix epoch: `Date.now()`, one call and no `Date` object (worker's
/// `Date::now()` builds one per reading).
pub fn now_ms() -> u64 {
    js_sys::Date::now() as u64
}

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

/// An upstream's answer, kept as the runtime's `Response`: worker's `Response` would turn its
/// body into a stream read chunk by chunk (each read crossing into JS, and the reader's
/// `releaseLock` building an exception with a stack trace), where `text()` is one call.
pub struct Answer(web_sys::Response);

impl Answer {
    pub fn status_code(&self) -> u16 {
        self.0.status()
    }

    pub fn header(&self, name: &str) -> Option<String> {
        self.0.headers().get(name).ok().flatten()
    }

    /// The whole body as text; empty if it cannot be read.
    pub async fn text(&self) -> String {
        match self.0.text() {
            Ok(p) => JsFuture::from(p).await.ok().and_then(|v| v.as_string()).unwrap_or_default(),
            Err(_) => String::new(),
        }
    }
}

/// The message of a JS exception or rejection.
pub fn js_message(e: &JsValue) -> String {
    e.dyn_ref::<js_sys::Error>()
        .map(|e| String::from(e.message()))
        .or_else(|| e.as_string())
        .unwrap_or_else(|| "unknown error".into())
}

/// Sends `req` through the runtime's fetch, aborting it after `timeout_ms`.
pub async fn fetch_with_timeout(req: Request, timeout_ms: u64) -> Result<Answer, FetchError> {
    let controller = AbortController::default();
    let init = web_sys::RequestInit::new();
    init.set_signal(Some(&controller.signal()));
    let global: web_sys::WorkerGlobalScope = js_sys::global().unchecked_into();
    let send = JsFuture::from(global.fetch_with_request_and_init(req.inner(), &init));
    let deadline = Delay::from(std::time::Duration::from_millis(timeout_ms));
    match select(send, deadline).await {
        Either::Left((Ok(resp), _)) => Ok(Answer(resp.unchecked_into())),
        // The runtime's messages end in a full stop; ours add their own.
        Either::Left((Err(e), _)) => {
            Err(FetchError::Network(js_message(&e).trim_end_matches('.').to_string()))
        }
        Either::Right(((), _)) => {
            controller.abort();
            Err(FetchError::Timeout)
        }
    }
}

/// Runs `fut` at once, up to its first pending await, and gives its value back directly when
/// it completed there (a GET /healthz, a refused request, most conversation ops); otherwise a
/// Promise of it. An `async` export always goes through a Promise, a spawned task and a
/// microtask, and the runtime then waits for that promise: measured, that costs a synchronous
/// route a third of its CPU.
pub fn now_or_promise<F>(fut: F) -> Result<JsValue, JsValue>
where
    F: Future<Output = Result<JsValue, JsValue>> + 'static,
{
    let proxy = Arc::new(ProxyWaker::default());
    let mut fut = Box::pin(fut);
    let waker = Waker::from(proxy.clone());
    match fut.as_mut().poll(&mut Context::from_waker(&waker)) {
        Poll::Ready(out) => out,
        Poll::Pending => Ok(wasm_bindgen_futures::future_to_promise(Forward { fut, proxy }).into()),
    }
}

/// The waker of a future's first, synchronous poll. Some futures keep the waker of their first
/// poll only (worker's `Delay`), so that one must stay valid: it forwards to the executor's
/// waker once the future has been handed over (a wake before that is covered by the executor's
/// own first poll).
#[derive(Default)]
struct ProxyWaker(Mutex<Option<Waker>>);

impl Wake for ProxyWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if let Ok(slot) = self.0.lock() {
            if let Some(w) = slot.as_ref() {
                w.wake_by_ref();
            }
        }
    }
}

/// The rest of a future begun by `now_or_promise`, polled by the executor through the proxy.
struct Forward<F> {
    fut: Pin<Box<F>>,
    proxy: Arc<ProxyWaker>,
}

impl<F: Future> Future for Forward<F> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        if let Ok(mut slot) = self.proxy.0.lock() {
            if !slot.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
                *slot = Some(cx.waker().clone());
            }
        }
        let waker = Waker::from(self.proxy.clone());
        self.fut.as_mut().poll(&mut Context::from_waker(&waker))
    }
}
