//! RBM file uploads (`files.create`): what `POST /v1/files` accepts. A JSON body names a URL
//! RBM fetches itself; any other body is the file, streamed to RBM's media upload URI.

use serde_json::{Map, Value};

use super::validate::ValidationError;

/// RBM's limit for a media file (100 MiB).
pub const MAX_UPLOAD_BYTES: u64 = 100 * 1024 * 1024;

/// The media types `files.create` accepts (REST reference, files.create: image, video, audio
/// and PDF types).
const MEDIA_TYPES: [&str; 20] = [
    "image/jpeg",
    "image/jpg",
    "image/gif",
    "image/png",
    "video/h263",
    "video/m4v",
    "video/mp4",
    "video/mpeg",
    "video/mpeg4",
    "video/webm",
    "audio/aac",
    "audio/mp3",
    "audio/mpeg",
    "audio/mpg",
    "audio/mp4",
    "audio/mp4-latm",
    "audio/3gpp",
    "audio/ogg",
    "application/ogg",
    "application/pdf",
];

/// What a `POST /v1/files` body is, from its `Content-Type` (parameters ignored).
#[derive(Debug, PartialEq)]
pub enum Upload {
    /// `application/json`: `{"fileUrl",…}` for RBM to fetch.
    ByUrl,
    /// A file of this media type (lower case), for the media upload URI.
    Media(String),
    /// Neither: 415.
    Unsupported,
}

pub fn upload_kind(content_type: Option<&str>) -> Upload {
    let essence = content_type.unwrap_or("").split(';').next().unwrap_or("").trim().to_ascii_lowercase();
    if essence == "application/json" {
        Upload::ByUrl
    } else if MEDIA_TYPES.contains(&essence.as_str()) {
        Upload::Media(essence)
    } else {
        Upload::Unsupported
    }
}

/// The accepted types, for the 415 message.
pub fn media_types() -> String {
    MEDIA_TYPES.join(", ")
}

/// `{"fileUrl","thumbnailUrl"?,"contentDescription"?,"agentId"?}` → the agent named (if any)
/// and the `files.create` body without it (the shell adds the agent it settles on).
pub fn parse_url_request(body: &[u8]) -> Result<(Option<String>, Map<String, Value>), ValidationError> {
    let err = |path: &str, message: &str| ValidationError { path: path.into(), message: message.into() };
    let v: Value =
        super::json::parse(body).map_err(|e| err("", &format!("the body is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = v else {
        return Err(err("", "the body must be a JSON object"));
    };
    if let Some(k) = obj
        .keys()
        .find(|k| !["fileUrl", "thumbnailUrl", "contentDescription", "agentId"].contains(&k.as_str()))
    {
        return Err(err(k, "is not a file field (fileUrl, thumbnailUrl, contentDescription, agentId)"));
    }
    for (key, required) in [("fileUrl", true), ("thumbnailUrl", false)] {
        match obj.get(key) {
            None if !required => {}
            Some(Value::String(u)) if is_http_url(u) && u.len() <= 2048 => {}
            _ => {
                return Err(err(key, "must be an http(s) URL of at most 2048 characters that RBM can fetch"))
            }
        }
    }
    match obj.get("contentDescription") {
        None => {}
        // The reference gives no limit; screen readers read it, so keep it to a sentence or two.
        Some(Value::String(d)) if d.chars().count() <= 1000 => {}
        _ => return Err(err("contentDescription", "must be a string of at most 1000 characters")),
    }
    let agent = match obj.remove("agentId") {
        None => None,
        Some(Value::String(a)) => Some(a),
        Some(_) => return Err(err("agentId", "must be a string")),
    };
    Ok((agent, obj))
}

fn is_http_url(u: &str) -> bool {
    let rest = u.strip_prefix("https://").or_else(|| u.strip_prefix("http://"));
    rest.is_some_and(|r| !r.is_empty() && !r.starts_with('/') && !r.chars().any(char::is_whitespace))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn content_types_decide_the_upload() {
        assert_eq!(upload_kind(Some("application/json; charset=utf-8")), Upload::ByUrl);
        assert_eq!(upload_kind(Some("Image/PNG")), Upload::Media("image/png".into()));
        assert_eq!(upload_kind(Some("application/pdf")), Upload::Media("application/pdf".into()));
        assert_eq!(upload_kind(Some("text/plain")), Upload::Unsupported);
        assert_eq!(upload_kind(None), Upload::Unsupported);
    }

    #[test]
    fn url_requests_are_checked() {
        let (agent, body) = parse_url_request(
            json!({"fileUrl": "https://cdn.example.com/a.png", "contentDescription": "A red bike", "agentId": "a1"})
                .to_string()
                .as_bytes(),
        )
        .unwrap();
        assert_eq!(agent.as_deref(), Some("a1"));
        assert_eq!(
            Value::Object(body),
            json!({"fileUrl": "https://cdn.example.com/a.png", "contentDescription": "A red bike"})
        );
        let bad = |v: Value| parse_url_request(v.to_string().as_bytes()).unwrap_err().path;
        assert_eq!(bad(json!({})), "fileUrl");
        assert_eq!(bad(json!({"fileUrl": "ftp://x/a.png"})), "fileUrl");
        assert_eq!(bad(json!({"fileUrl": "https://x/a.png", "thumbnailUrl": 3})), "thumbnailUrl");
        assert_eq!(bad(json!({"fileUrl": "https://x/a.png", "name": "x"})), "name");
        assert_eq!(
            bad(json!({"fileUrl": "https://x/a.png", "contentDescription": "x".repeat(1001)})),
            "contentDescription"
        );
    }
}
