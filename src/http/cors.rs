//! CORS for `/v1/*`: an allow-list (`ALLOWED_ORIGINS`); `*` only when configured literally.
//! Origins not on the list get no CORS headers at all (the browser then blocks the call).

use worker::{Headers, Response};

use crate::config::Config;

const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
const ALLOW_HEADERS: &str = "authorization, content-type";

/// The value for `Access-Control-Allow-Origin`, if `origin` may call us.
fn allowed<'a>(origin: Option<&'a str>, cfg: &'a Config) -> Option<&'a str> {
    let origin = origin?;
    if cfg.allowed_origins.iter().any(|o| o == origin) {
        Some(origin)
    } else if cfg.allowed_origins.iter().any(|o| o == "*") {
        Some("*")
    } else {
        None
    }
}

/// `OPTIONS` preflight: 204, with the allow headers only for allowed origins.
pub fn preflight(origin: Option<&str>, cfg: &Config) -> Response {
    let headers = Headers::new();
    if let Some(o) = allowed(origin, cfg) {
        let _ = headers.set("access-control-allow-origin", o);
        let _ = headers.set("access-control-allow-methods", ALLOW_METHODS);
        let _ = headers.set("access-control-allow-headers", ALLOW_HEADERS);
        let _ = headers.set("access-control-max-age", "600");
    }
    let _ = headers.set("vary", "Origin");
    Response::builder().with_status(204).with_headers(headers).fixed(Vec::new())
}

/// Adds the CORS headers of an actual request's response.
pub fn decorate(resp: &mut Response, origin: Option<&str>, cfg: &Config) {
    let headers = resp.headers_mut();
    if let Some(o) = allowed(origin, cfg) {
        let _ = headers.set("access-control-allow-origin", o);
        let _ = headers.set("access-control-expose-headers", "retry-after");
    }
    let _ = headers.set("vary", "Origin");
}
