//! The one error type of the HTTP surface, mapped once to `{"error":{"code","message"}}` and a
//! status. Messages are sentences for the caller; none may contain a secret.

use worker::{Headers, Response};

#[derive(Debug, Clone)]
pub enum ApiError {
    // 400
    InvalidJson(String),
    InvalidEnvelope(String),
    InvalidBase64,
    InvalidMessageId,
    InvalidRequest(String),
    /// A send failed validation: the message names the JSON path.
    Validation(String),
    // 401
    MissingSignature,
    BadSignature(&'static str),
    Unauthorized(&'static str),
    // 403
    HandshakeRejected,
    Forbidden(String),
    /// A browser token's `maxSends` is used up: waiting cannot help (unlike a rate limit).
    BudgetExhausted(u32),
    // 404 / 405 / 409 / 413
    NotFound(String),
    MethodNotAllowed,
    /// The request conflicts with the resource's state (a dead letter that cannot be replayed).
    Conflict(String),
    PayloadTooLarge(usize),
    /// 411: a streamed upload must say its size.
    LengthRequired,
    /// 415: a body of a type the route does not take.
    UnsupportedMediaType(String),
    // 429
    RateLimited {
        message: String,
        retry_after_secs: u64,
    },
    // 500: the deployment is missing a setting or has an unusable one.
    ConfigMissing(&'static str),
    ConfigInvalid(&'static str, String),
    Internal(String),
    // 502 / 503 / 504: something we depend on failed; the caller may retry.
    Upstream(String),
    /// An upstream answered with a status that cannot be relayed (1xx, 204/205, 3xx, ≥ 600).
    UpstreamInvalid(String),
    StorageUnavailable(String),
    QueueUnavailable(String),
    UpstreamTimeout(String),
}

impl ApiError {
    pub fn status(&self) -> u16 {
        use ApiError::*;
        match self {
            InvalidJson(_) | InvalidEnvelope(_) | InvalidBase64 | InvalidMessageId | InvalidRequest(_)
            | Validation(_) => 400,
            MissingSignature | BadSignature(_) | Unauthorized(_) => 401,
            HandshakeRejected | Forbidden(_) | BudgetExhausted(_) => 403,
            NotFound(_) => 404,
            MethodNotAllowed => 405,
            Conflict(_) => 409,
            LengthRequired => 411,
            PayloadTooLarge(_) => 413,
            UnsupportedMediaType(_) => 415,
            RateLimited { .. } => 429,
            ConfigMissing(_) | ConfigInvalid(..) | Internal(_) => 500,
            Upstream(_) | UpstreamInvalid(_) => 502,
            StorageUnavailable(_) | QueueUnavailable(_) => 503,
            UpstreamTimeout(_) => 504,
        }
    }

    pub fn code(&self) -> &'static str {
        use ApiError::*;
        match self {
            InvalidJson(_) => "INVALID_JSON",
            InvalidEnvelope(_) => "INVALID_ENVELOPE",
            InvalidBase64 => "INVALID_BASE64",
            InvalidMessageId => "INVALID_MESSAGE_ID",
            InvalidRequest(_) => "INVALID_REQUEST",
            Validation(_) => "VALIDATION_FAILED",
            MissingSignature => "MISSING_SIGNATURE",
            BadSignature(_) => "BAD_SIGNATURE",
            Unauthorized(_) => "UNAUTHORIZED",
            HandshakeRejected | Forbidden(_) => "FORBIDDEN",
            BudgetExhausted(_) => "BUDGET_EXHAUSTED",
            NotFound(_) => "NOT_FOUND",
            MethodNotAllowed => "METHOD_NOT_ALLOWED",
            Conflict(_) => "CONFLICT",
            LengthRequired => "LENGTH_REQUIRED",
            PayloadTooLarge(_) => "PAYLOAD_TOO_LARGE",
            UnsupportedMediaType(_) => "UNSUPPORTED_MEDIA_TYPE",
            RateLimited { .. } => "RATE_LIMITED",
            ConfigMissing(_) => "CONFIG_MISSING",
            ConfigInvalid(..) => "CONFIG_INVALID",
            Internal(_) => "INTERNAL",
            Upstream(_) => "UPSTREAM_UNAVAILABLE",
            UpstreamInvalid(_) => "UPSTREAM_INVALID",
            StorageUnavailable(_) => "STORAGE_UNAVAILABLE",
            QueueUnavailable(_) => "QUEUE_UNAVAILABLE",
            UpstreamTimeout(_) => "UPSTREAM_TIMEOUT",
        }
    }

    pub fn message(&self) -> String {
        use ApiError::*;
        match self {
            InvalidJson(m) => format!("The body is not valid JSON: {m}."),
            InvalidEnvelope(m) => format!("The body is not an RBM webhook: {m}."),
            InvalidBase64 => "message.data is not valid base64.".into(),
            InvalidMessageId => format!(
                "The message id must be 1 to {} characters of A-Z a-z 0-9 . _ ~ = + -.",
                crate::core::ids::MAX_MESSAGE_ID_LEN
            ),
            InvalidRequest(m)
            | Validation(m)
            | Forbidden(m)
            | NotFound(m)
            | Conflict(m)
            | Internal(m)
            | UnsupportedMediaType(m) => m.clone(),
            BudgetExhausted(max) => {
                format!("The token's send budget of {max} is used up; mint a new token to send more.")
            }
            MissingSignature => "The X-Goog-Signature header is missing.".into(),
            BadSignature(m) => format!("Signature rejected: {m}."),
            Unauthorized(m) => (*m).to_string(),
            HandshakeRejected => "The clientToken does not match any configured RBM_CLIENT_TOKEN.".into(),
            MethodNotAllowed => "This method is not allowed on this path.".into(),
            PayloadTooLarge(max) => format!("The body is larger than {max} bytes."),
            LengthRequired => "Send the file with a Content-Length header.".into(),
            RateLimited { message, .. } => message.clone(),
            ConfigMissing(name) => {
                format!("The Worker is missing the setting {name}; see README, Configuration.")
            }
            ConfigInvalid(name, why) => format!("The setting {name} is unusable: {why}."),
            Upstream(m)
            | UpstreamInvalid(m)
            | StorageUnavailable(m)
            | QueueUnavailable(m)
            | UpstreamTimeout(m) => m.clone(),
        }
    }

    /// The error document, `{"error":{"code","message"}}`.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code(), "message": self.message()}})
    }

    /// The JSON error response. Built by hand so it cannot fail or panic.
    pub fn into_response(self) -> Response {
        let mut resp = json_response(self.status(), &self.body());
        if let ApiError::RateLimited { retry_after_secs, .. } = self {
            let _ = resp.headers_mut().set("retry-after", &retry_after_secs.to_string());
        }
        resp
    }
}

/// A JSON response with `status`. Never fails: serialisation of a `Value` cannot error, and a
/// status that may not carry a body (204, 304, …) gets none rather than a runtime error.
pub fn json_response(status: u16, body: &impl serde::Serialize) -> Response {
    if !crate::core::upstream::may_have_body(status) {
        return Response::builder().with_status(status).empty();
    }
    let bytes = serde_json::to_vec(body).unwrap_or_else(|_| b"{}".to_vec());
    // The builder's own headers (`with_headers` would replace a Headers object it already made).
    match Response::builder().with_status(status).with_header("content-type", "application/json") {
        Ok(builder) => builder.fixed(bytes),
        Err(_) => Response::builder().with_status(status).fixed(bytes),
    }
}

/// A `text/plain` response (the webhook handshake answers the secret this way).
pub fn text_response(status: u16, text: &str) -> Response {
    let headers = Headers::new();
    let _ = headers.set("content-type", "text/plain; charset=utf-8");
    Response::builder().with_status(status).with_headers(headers).fixed(text.as_bytes().to_vec())
}

impl From<crate::core::validate::ValidationError> for ApiError {
    fn from(e: crate::core::validate::ValidationError) -> Self {
        if e.path.is_empty() {
            ApiError::Validation(e.message)
        } else {
            ApiError::Validation(format!("{}: {}", e.path, e.message))
        }
    }
}
