//! Signed delivery to the business backend (forwards and status callbacks), the
//! [Standard Webhooks](https://www.standardwebhooks.com) way: `webhook-id` (stable per event,
//! so the backend deduplicates redeliveries), `webhook-timestamp`, `webhook-signature`.
//!
//! Answers: any 2xx = done; 410 Gone = the backend asks us to stop: logged loudly, dropped;
//! anything else (redirects included: a signed document is never re-sent where a `Location`
//! points), or no answer = an error, so the job is retried. The answer's body is never read.

use serde_json::json;
use worker::Headers;

use crate::config::Config;
use crate::core::outbound::url_origin;
use crate::core::webhook_sign::{sign, HEADER_ID, HEADER_SIGNATURE, HEADER_TIMESTAMP};
use crate::error::ApiError;
use crate::log;
use crate::runtime::{fetch_with_timeout, request, FetchError};

/// POSTs `body` to `url`, signed with `key` under `webhook-id` `id`.
pub async fn deliver(cfg: &Config, url: &str, key: &[u8], id: &str, body: &str) -> Result<(), ApiError> {
    let shown = url_origin(url);
    let timestamp = crate::runtime::now_ms() / 1000;
    let headers = Headers::new();
    let _ = headers.set("content-type", "application/json");
    let _ = headers.set("user-agent", concat!("rbm-edge/", env!("CARGO_PKG_VERSION")));
    let _ = headers.set(HEADER_ID, id);
    let _ = headers.set(HEADER_TIMESTAMP, &timestamp.to_string());
    let _ = headers.set(HEADER_SIGNATURE, &sign(key, id, timestamp, body.as_bytes()));
    let req = request("POST", url, &headers, Some(body))
        .map_err(|_| ApiError::ConfigInvalid("FORWARD_URL", format!("{shown}… is not a valid URL")))?;
    let status = match fetch_with_timeout(req, cfg.timeout_ms).await {
        Ok(resp) => resp.status_code(),
        Err(FetchError::Timeout) => {
            return Err(ApiError::UpstreamTimeout(format!(
                "{shown} did not answer within {} ms.",
                cfg.timeout_ms
            )))
        }
        Err(FetchError::Network(why)) => {
            return Err(ApiError::Upstream(format!("{shown} could not be reached: {why}.")))
        }
    };
    match status {
        200..=299 => Ok(()),
        410 => {
            log::error(
                "delivery dropped: the receiver answered 410 Gone",
                json!({"receiver": shown, "webhookId": id}),
            );
            Ok(())
        }
        other => Err(ApiError::Upstream(format!("{shown} answered HTTP {other}."))),
    }
}
