//! `POST /v1/files`: RBM `files.create`. A JSON body gives a URL RBM fetches; any other body
//! is the file itself, streamed to RBM's media upload URI (never held whole in the isolate).
//! The answer's `name` is what rich cards and media messages use as `uploadedRbmFile`.

use serde_json::{json, Value};
use worker::{Method, Response};

use super::auth::Caller;
use super::{agent_for, query_param, Cx, Request};
use crate::core::files::{media_types, parse_url_request, upload_kind, Upload, MAX_UPLOAD_BYTES};
use crate::core::token::Scope;
use crate::error::ApiError;
use crate::google::rbm::{self, RbmAnswer};

pub async fn create(req: Request, caller: &Caller, cx: &Cx) -> Result<Response, ApiError> {
    caller.require(Scope::FilesUpload, None)?;
    let content_type = req.header("content-type");
    let answer = match upload_kind(content_type.as_deref()) {
        Upload::ByUrl => {
            let body = req.body(16 * 1024).await?;
            let (agent, mut file) = parse_url_request(&body)?;
            let agent = agent_for(agent, caller, cx)?;
            let base = cx.cfg.api_base_for(&agent);
            file.insert("agentId".into(), agent.into());
            let body = Value::Object(file).to_string();
            rbm::call(&cx.cfg, cx.now_ms, base, Method::Post, "/v1/files", Some(&body)).await?
        }
        Upload::Media(media_type) => {
            let length = req.header("content-length");
            // Checked before a byte is read: a streamed body cannot be taken back, so its size
            // must be known (and within RBM's limit) up front.
            let length = length.and_then(|l| l.trim().parse::<u64>().ok()).ok_or(ApiError::LengthRequired)?;
            if length > MAX_UPLOAD_BYTES {
                return Err(ApiError::PayloadTooLarge(MAX_UPLOAD_BYTES as usize));
            }
            let stream = match req.inner().body() {
                Some(s) if length > 0 => s,
                _ => return Err(ApiError::InvalidRequest("The file is empty.".into())),
            };
            let agent = agent_for(query_param(&req, "agentId"), caller, cx)?;
            let base = cx.cfg.api_base_for(&agent);
            let path = format!("/upload/v1/files?uploadType=media&agentId={agent}");
            rbm::upload(&cx.cfg, cx.now_ms, base, &path, &media_type, &stream.into()).await?
        }
        Upload::Unsupported => {
            return Err(ApiError::UnsupportedMediaType(format!(
                "Send application/json with a fileUrl, or the file itself as one of: {}.",
                media_types()
            )))
        }
    };
    Ok(respond(answer))
}

/// `{"name","rbm"}` with RBM's status; `name` is null when RBM refused.
fn respond(answer: RbmAnswer) -> Response {
    let name = answer.body.get("name").cloned().unwrap_or(Value::Null);
    answer.respond(&json!({"name": name, "rbm": answer.body}))
}
