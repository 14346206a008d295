//! The incoming request: the runtime's `Request` itself. `worker::Request` would read its
//! method, URL, headers and `cf` object on arrival, and `cf` alone (an object the runtime
//! builds on first access) cost about as much as the rest of the entry; here each is read
//! only by the route that needs it.

use std::cell::OnceCell;

use futures_util::StreamExt;
use wasm_bindgen_futures::JsFuture;
use worker::Headers;

use crate::error::ApiError;

pub struct Request(web_sys::Request, OnceCell<web_sys::Headers>);

impl Request {
    pub fn new(req: web_sys::Request) -> Request {
        Request(req, OnceCell::new())
    }

    pub fn inner(&self) -> &web_sys::Request {
        &self.0
    }

    /// The runtime's `Headers` object, fetched once (each `request.headers` read is a crossing
    /// into JS, and a webhook reads several headers).
    fn js_headers(&self) -> &web_sys::Headers {
        self.1.get_or_init(|| self.0.headers())
    }

    pub fn headers(&self) -> Headers {
        Headers(self.js_headers().clone())
    }

    /// One header's value (`None` when absent).
    pub fn header(&self, name: &str) -> Option<String> {
        self.js_headers().get(name).ok().flatten()
    }

    /// The method as sent (`PROPFIND` stays `PROPFIND`).
    pub fn raw_method(&self) -> String {
        self.0.method()
    }

    pub fn url(&self) -> String {
        self.0.url()
    }

    /// The request body of at most `max` bytes: 413 beyond, announced or not. A body without
    /// Content-Length is streamed and counted, so a chunked upload never makes the isolate hold
    /// more than `max` (+ one chunk). The rest of an oversized body is read and discarded
    /// rather than abandoned: dropping a half-read request stream in workerd takes the isolate
    /// down with it ("worker restarted mid-request" for the next request).
    pub async fn body(&self, max: usize) -> Result<Vec<u8>, ApiError> {
        let unreadable = || ApiError::InvalidRequest("The body could not be read.".into());
        let announced = self.header("content-length").and_then(|v| v.trim().parse::<usize>().ok());
        match announced {
            Some(n) if n > max => return Err(ApiError::PayloadTooLarge(max)),
            // A declared length is enforced by the runtime: one `arrayBuffer()` (one crossing
            // into JS) instead of a stream read chunk by chunk.
            Some(_) => {
                let buf = JsFuture::from(self.0.array_buffer().map_err(|_| unreadable())?)
                    .await
                    .map_err(|_| unreadable())?;
                return Ok(js_sys::Uint8Array::new(&buf).to_vec());
            }
            None => {}
        }
        if self.0.body().is_none() {
            return Ok(Vec::new());
        }
        // Rare (chunked uploads): worker's byte stream over the same request.
        let Ok(mut stream) = worker::Request::from(Clone::clone(&self.0)).stream() else {
            return Ok(Vec::new());
        };
        let mut body = Vec::new();
        let mut too_large = false;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|_| unreadable())?;
            if too_large || body.len() + chunk.len() > max {
                too_large = true;
                body = Vec::new();
                continue;
            }
            body.extend_from_slice(&chunk);
        }
        if too_large {
            return Err(ApiError::PayloadTooLarge(max));
        }
        Ok(body)
    }
}
