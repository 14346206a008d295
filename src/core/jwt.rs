//! Google service-account OAuth, the pure half: parse the JSON key, build the RS256 JWT's
//! signing input (header + claims), assemble the signed token, read the token answer.
//! The RSA signature itself is made by the shell with the runtime's WebCrypto.
//!
//! Claims per Google's "OAuth 2.0 for server to server applications": `iss` = client_email,
//! `scope`, `aud` = the key's `token_uri`, `iat` = now, `exp` = now + 1 h.

use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use serde::Serialize;

pub const RBM_SCOPE: &str = "https://www.googleapis.com/auth/rcsbusinessmessaging";
pub const GOOGLE_TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
/// Lifetime asked for in the assertion (Google's maximum).
pub const ASSERTION_LIFETIME_SECS: u64 = 3600;

/// The fields of a service-account JSON key that the flow needs (others are ignored).
#[derive(Debug, Clone)]
pub struct ServiceAccountKey {
    pub client_email: String,
    pub private_key: String,
    pub private_key_id: Option<String>,
    pub token_uri: Option<String>,
}

#[derive(Debug, PartialEq, Eq)]
pub enum KeyError {
    NotJson,
    MissingField(&'static str),
    NotPkcs8,
    BadPem,
    BadTokenUri,
}

impl KeyError {
    /// A sentence for the caller; never includes key material.
    pub fn describe(&self) -> &'static str {
        match self {
            KeyError::NotJson => "it is not a service account JSON key",
            KeyError::MissingField("client_email") => "client_email is missing",
            KeyError::MissingField(_) => "private_key is missing",
            KeyError::NotPkcs8 => "private_key is not a PKCS#8 PEM (-----BEGIN PRIVATE KEY-----)",
            KeyError::BadPem => "private_key's PEM body is not valid base64",
            KeyError::BadTokenUri => "token_uri must be an http(s) URL",
        }
    }
}

impl ServiceAccountKey {
    pub fn parse(json: &str) -> Result<ServiceAccountKey, KeyError> {
        // Read by hand from a JSON value (a derived `Deserialize` costs the wasm more): the two
        // strings are required, the optional ones may be absent or null; any other type is
        // not a key.
        let v: serde_json::Value = serde_json::from_str(json).map_err(|_| KeyError::NotJson)?;
        let obj = v.as_object().ok_or(KeyError::NotJson)?;
        let optional = |k: &str| match obj.get(k) {
            None | Some(serde_json::Value::Null) => Ok(None),
            Some(serde_json::Value::String(s)) => Ok(Some(s.clone())),
            Some(_) => Err(KeyError::NotJson),
        };
        let required = |k: &str| optional(k)?.ok_or(KeyError::NotJson);
        let key = ServiceAccountKey {
            client_email: required("client_email")?,
            private_key: required("private_key")?,
            private_key_id: optional("private_key_id")?,
            token_uri: optional("token_uri")?,
        };
        if key.client_email.trim().is_empty() {
            return Err(KeyError::MissingField("client_email"));
        }
        if key.private_key.trim().is_empty() {
            return Err(KeyError::MissingField("private_key"));
        }
        let uri = key.token_uri();
        if !(uri.starts_with("https://") || uri.starts_with("http://")) {
            return Err(KeyError::BadTokenUri);
        }
        Ok(key)
    }

    /// Where to exchange the assertion: the key's own `token_uri`, as Google's libraries do.
    pub fn token_uri(&self) -> &str {
        self.token_uri.as_deref().filter(|u| !u.is_empty()).unwrap_or(GOOGLE_TOKEN_URI)
    }

    /// The DER bytes of the PKCS#8 private key, for WebCrypto's `importKey("pkcs8", …)`.
    pub fn pkcs8_der(&self) -> Result<Vec<u8>, KeyError> {
        // JSON keys carry the PEM with real newlines; tolerate literal "\n" pasted from shells.
        let pem = self.private_key.replace("\\n", "\n");
        let body = pem
            .split("-----BEGIN PRIVATE KEY-----")
            .nth(1)
            .and_then(|rest| rest.split("-----END PRIVATE KEY-----").next())
            .ok_or(KeyError::NotPkcs8)?;
        let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
        STANDARD.decode(b64).map_err(|_| KeyError::BadPem)
    }

    /// `base64url(header).base64url(claims)`: what RS256 signs.
    pub fn signing_input(&self, now_secs: u64) -> String {
        #[derive(Serialize)]
        struct Header<'a> {
            alg: &'a str,
            typ: &'a str,
            #[serde(skip_serializing_if = "Option::is_none")]
            kid: Option<&'a str>,
        }
        #[derive(Serialize)]
        struct Claims<'a> {
            iss: &'a str,
            scope: &'a str,
            aud: &'a str,
            iat: u64,
            exp: u64,
        }
        let header = Header { alg: "RS256", typ: "JWT", kid: self.private_key_id.as_deref() };
        let claims = Claims {
            iss: &self.client_email,
            scope: RBM_SCOPE,
            aud: self.token_uri(),
            iat: now_secs,
            exp: now_secs + ASSERTION_LIFETIME_SECS,
        };
        // Serialising these plain structs cannot fail; an empty part would fail at Google.
        let h = serde_json::to_vec(&header).unwrap_or_default();
        let c = serde_json::to_vec(&claims).unwrap_or_default();
        format!("{}.{}", URL_SAFE_NO_PAD.encode(h), URL_SAFE_NO_PAD.encode(c))
    }
}

/// The signed JWT: signing input + `.` + base64url(signature).
pub fn assemble(signing_input: &str, signature: &[u8]) -> String {
    format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(signature))
}

/// The form body of the token request.
pub fn token_request_body(assertion: &str) -> String {
    // The assertion is base64url and dots: nothing in it needs percent-encoding.
    format!("grant_type=urn%3Aietf%3Aparams%3Aoauth%3Agrant-type%3Ajwt-bearer&assertion={assertion}")
}

/// Google's token answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenResponse {
    pub access_token: String,
    /// Seconds; 3600 when absent.
    pub expires_in: u64,
}

impl TokenResponse {
    /// `{"access_token","expires_in"?,…}`; `None` without a string `access_token`.
    pub fn parse(text: &str) -> Option<TokenResponse> {
        let v: serde_json::Value = serde_json::from_str(text).ok()?;
        Some(TokenResponse {
            access_token: v.get("access_token")?.as_str()?.to_string(),
            expires_in: v.get("expires_in").and_then(serde_json::Value::as_u64).unwrap_or(3600),
        })
    }
}

/// Refresh this long before the token's expiry (tokens live ~1 h).
pub const REFRESH_MARGIN_SECS: u64 = 300;

/// When a token obtained at `now_ms` stops being used (ms): expiry minus the margin, and never
/// before `now_ms` (a very short-lived token is used for this request only).
pub fn usable_until_ms(now_ms: u64, expires_in_secs: u64) -> u64 {
    // Saturating: `expires_in` comes from the network and may be absurd.
    now_ms.saturating_add(expires_in_secs.saturating_sub(REFRESH_MARGIN_SECS).saturating_mul(1000))
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = r#"{"type":"service_account","project_id":"p","private_key_id":"kid-123",
        "private_key":"-----BEGIN PRIVATE KEY-----\nAAECAwQF\nBgcICQ==\n-----END PRIVATE KEY-----\n",
        "client_email":"rbm@p.iam.gserviceaccount.com","client_id":"1","token_uri":"http://127.0.0.1:9/token"}"#;

    #[test]
    fn parses_a_key_and_builds_the_claims() {
        let k = ServiceAccountKey::parse(KEY).expect("key");
        assert_eq!(k.token_uri(), "http://127.0.0.1:9/token");
        assert_eq!(k.pkcs8_der().expect("der"), (0u8..10).collect::<Vec<_>>());
        let input = k.signing_input(1_700_000_000);
        let (h, c) = input.split_once('.').expect("two parts");
        let h: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(h).expect("b64")).expect("json");
        let c: serde_json::Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(c).expect("b64")).expect("json");
        assert_eq!(h, serde_json::json!({"alg":"RS256","typ":"JWT","kid":"kid-123"}));
        assert_eq!(
            c,
            serde_json::json!({"iss":"rbm@p.iam.gserviceaccount.com","scope":RBM_SCOPE,
                "aud":"http://127.0.0.1:9/token","iat":1_700_000_000u64,"exp":1_700_003_600u64})
        );
        assert_eq!(assemble("a.b", &[0xfb, 0xff]), "a.b.-_8");
    }

    #[test]
    fn default_token_uri_and_escaped_newlines() {
        let k = ServiceAccountKey::parse(
            r#"{"client_email":"a@b","private_key":"-----BEGIN PRIVATE KEY-----\\nAAEC\\n-----END PRIVATE KEY-----\\n"}"#,
        )
        .expect("key");
        assert_eq!(k.token_uri(), GOOGLE_TOKEN_URI);
        assert_eq!(k.pkcs8_der().expect("der"), vec![0, 1, 2]);
    }

    #[test]
    fn bad_keys_are_named_not_echoed() {
        assert_eq!(ServiceAccountKey::parse("nope").err(), Some(KeyError::NotJson));
        assert_eq!(ServiceAccountKey::parse(r#"{"private_key":"x"}"#).err(), Some(KeyError::NotJson));
        assert_eq!(
            ServiceAccountKey::parse(r#"{"client_email":"","private_key":"x"}"#).err(),
            Some(KeyError::MissingField("client_email"))
        );
        let pkcs1 = ServiceAccountKey::parse(
            r#"{"client_email":"a","private_key":"-----BEGIN RSA PRIVATE KEY-----\nAAEC\n-----END RSA PRIVATE KEY-----"}"#,
        )
        .expect("parses");
        assert_eq!(pkcs1.pkcs8_der(), Err(KeyError::NotPkcs8));
        let bad = ServiceAccountKey::parse(
            r#"{"client_email":"a","private_key":"-----BEGIN PRIVATE KEY-----\n!!!\n-----END PRIVATE KEY-----"}"#,
        )
        .expect("parses");
        assert_eq!(bad.pkcs8_der(), Err(KeyError::BadPem));
        assert_eq!(
            ServiceAccountKey::parse(r#"{"client_email":"a","private_key":"k","token_uri":"file:///x"}"#)
                .err(),
            Some(KeyError::BadTokenUri)
        );
        for e in [KeyError::NotJson, KeyError::NotPkcs8, KeyError::BadPem] {
            assert!(!e.describe().contains("AAEC"));
        }
    }

    #[test]
    fn token_lifetime() {
        assert_eq!(usable_until_ms(1_000, 3599), 1_000 + 3299 * 1000);
        assert_eq!(usable_until_ms(1_000, 10), 1_000);
        let t = TokenResponse::parse(r#"{"access_token":"ya29.x","expires_in":3599,"token_type":"Bearer"}"#)
            .expect("json");
        assert_eq!((t.access_token.as_str(), t.expires_in), ("ya29.x", 3599));
        assert_eq!(TokenResponse::parse(r#"{"access_token":"t"}"#).map(|t| t.expires_in), Some(3600));
        assert_eq!(TokenResponse::parse(r#"{"expires_in":5}"#), None);
        assert_eq!(TokenResponse::parse("nope"), None);
        assert!(token_request_body("a.b.c").ends_with("&assertion=a.b.c"));
    }
}
