//! `POST /webhook`: RBM's registration handshake and event deliveries.
//!
//! Order matters: size guard → one parse of the envelope → verify the signature over the
//! decoded bytes → decode the event once → hand it to the pipeline → 200. Anything but 200
//! makes RBM retry (for 7 days), so 200 is answered only once the event is safe.

use serde::Serialize;
use serde_json::json;
use worker::Response;

use super::{Cx, Request};
use crate::core::ct::ct_eq_any;
use crate::core::envelope::{parse_webhook_body, EnvelopeError, WebhookBody, MAX_WEBHOOK_BODY};
use crate::core::event::Decoded;
use crate::core::pipeline::{webhook_type, Receipt};
use crate::core::redact::{mask_phone, redact_event};
use crate::core::signature::{verify, SignatureError};
use crate::error::{json_response, text_response, ApiError};
use crate::log;
use crate::pipeline;

pub async fn handle(req: Request, cx: &Cx) -> Result<Response, ApiError> {
    let body = req.body(MAX_WEBHOOK_BODY).await?;
    let parsed = parse_webhook_body(&body).map_err(|e| match e {
        EnvelopeError::NotJson => ApiError::InvalidJson(e.describe().into()),
        EnvelopeError::NotAnEnvelope(why) => ApiError::InvalidEnvelope(why.into()),
        EnvelopeError::BadBase64 => ApiError::InvalidBase64,
    })?;
    drop(body);
    let tokens = cx.cfg.client_tokens()?;
    let envelope = match parsed {
        WebhookBody::Handshake { client_token, secret } => {
            return if ct_eq_any(client_token.as_bytes(), tokens.iter().map(String::as_str)) {
                log::info("webhook handshake accepted", json!({}));
                // The docs: answer the secret as the whole plain-text body (the Node sample's
                // `secret: …` prefix is wrong).
                Ok(text_response(200, &secret))
            } else {
                log::warn("webhook handshake rejected", json!({}));
                Err(ApiError::HandshakeRejected)
            };
        }
        WebhookBody::Event(envelope) => envelope,
    };
    let signature = req.header("x-goog-signature");
    verify(tokens.iter().map(String::as_str), &envelope.data, signature.as_deref()).map_err(|e| match e {
        SignatureError::Missing => ApiError::MissingSignature,
        other => ApiError::BadSignature(other.describe()),
    })?;

    let receipt = Receipt {
        received_at: cx.now_ms,
        pubsub_message_id: envelope.pubsub_message_id,
        publish_time: envelope.publish_time,
        webhook_type: webhook_type(req.header("x-goog-webhook-type").as_deref()),
    };
    let decoded = match Decoded::from_bytes(envelope.data) {
        Ok(d) => d,
        Err(bad) => {
            // Verified but not understood: retrying cannot help, and nothing verified is
            // dropped, so it is kept verbatim as a dead letter and acknowledged.
            log::warn(
                "verified event not understood",
                json!({"why": bad.why, "data": redact_event(&bad.data), "pubsubMessageId": receipt.pubsub_message_id}),
            );
            pipeline::keep_unparseable(&cx.env, &cx.cfg, bad.data, bad.why, receipt).await?;
            return Ok(json_response(200, &json!({"ok": true, "kind": "unparseable"})));
        }
    };
    let kind = decoded.event.kind().to_string();
    // Unknown kinds are logged (redacted) so they can be noticed and supported.
    let unknown = (kind == "unknown").then(|| redact_event(decoded.raw.as_bytes()));
    log::info_of(
        "event received",
        &Received {
            kind: &kind,
            agent_id: decoded.event.agent_id(),
            message_id: decoded.event.message_id(),
            event_id: decoded.event.event_id(),
            phone: decoded.event.phone_number().map(mask_phone),
            webhook_type: receipt.webhook_type.as_deref(),
            event: unknown,
        },
    );
    pipeline::accept(cx, decoded, receipt).await?;
    Ok(json_response(200, &Accepted { ok: true, kind: &kind }))
}

/// The "event received" log line (phone masked to its last 4 digits).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Received<'a> {
    kind: &'a str,
    agent_id: Option<&'a str>,
    message_id: Option<&'a str>,
    event_id: Option<&'a str>,
    phone: Option<String>,
    /// Absent without `X-Goog-Webhook-Type`, as in the forwarded document.
    #[serde(skip_serializing_if = "Option::is_none")]
    webhook_type: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<String>,
}

/// The webhook's 200: `{"ok":true,"kind":…}`.
#[derive(Serialize)]
struct Accepted<'a> {
    ok: bool,
    kind: &'a str,
}
