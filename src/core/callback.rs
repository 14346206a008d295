//! Where a message's `statusCallback` may point.
//!
//! A callback is a signed POST from the Worker to a URL chosen by whoever sent the message.
//! Left open, a browser token could make the Worker send signed documents anywhere (SSRF, and
//! a signing oracle for the backend's key). So:
//! - **browser tokens** may only name an origin listed in `CALLBACK_ORIGINS` (none listed:
//!   token sends cannot have callbacks);
//! - **API keys** may name any `https` URL, or only the listed origins when the list is set;
//! - plain `http` only to a loopback host, and only with `ALLOW_INSECURE_CALLBACKS=true`
//!   (local development and tests).
//!
//! Origins are compared as `scheme://host[:port]`, lowercase, without the default port.

use std::fmt;

/// The deployment's callback rules, parsed once from the settings.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CallbackPolicy {
    /// Normalised origins from `CALLBACK_ORIGINS`.
    pub origins: Vec<String>,
    /// `ALLOW_INSECURE_CALLBACKS=true`.
    pub allow_insecure: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackDenied {
    /// Not an absolute http(s) URL with a host.
    NotAUrl,
    /// `http://` where only https is allowed.
    Insecure,
    /// A browser token, and `CALLBACK_ORIGINS` is not set.
    NoOriginsForTokens,
    /// The URL's origin is not in `CALLBACK_ORIGINS`.
    OriginNotAllowed(String),
}

impl fmt::Display for CallbackDenied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallbackDenied::NotAUrl => f.write_str("statusCallback must be an absolute https URL"),
            CallbackDenied::Insecure => f.write_str(
                "statusCallback must use https (plain http only to a loopback host with ALLOW_INSECURE_CALLBACKS=true)",
            ),
            CallbackDenied::NoOriginsForTokens => f.write_str(
                "browser tokens may set statusCallback only to an origin listed in CALLBACK_ORIGINS, and none is set",
            ),
            CallbackDenied::OriginNotAllowed(o) => {
                write!(f, "statusCallback's origin {o} is not listed in CALLBACK_ORIGINS")
            }
        }
    }
}

/// `scheme://host[:port]` of an absolute http(s) URL, lowercase, default port dropped; with
/// whether it is https. `None` for anything else (no host, userinfo, other schemes).
pub fn origin_of(url: &str) -> Option<(String, bool)> {
    let (scheme, rest) = url.split_once("://")?;
    let https = match scheme.to_ascii_lowercase().as_str() {
        "https" => true,
        "http" => false,
        _ => return None,
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    // Userinfo (`user:pass@host`) hides the real host from a quick reading: refused.
    if authority.is_empty() || authority.contains('@') || !authority.is_ascii() {
        return None;
    }
    let authority = authority.to_ascii_lowercase();
    let (host, port) = match authority.rsplit_once(':') {
        Some((h, _)) if !h.ends_with(']') && h.contains(':') => return None, // bare IPv6
        Some((h, p)) => (h.to_string(), Some(p.to_string())),
        None => (authority.clone(), None),
    };
    if host.is_empty() || host.bytes().any(|b| b.is_ascii_whitespace()) {
        return None;
    }
    let default_port = if https { "443" } else { "80" };
    let port = match port {
        Some(p) if p.is_empty() || p.len() > 5 || !p.bytes().all(|b| b.is_ascii_digit()) => return None,
        Some(p) if p.parse::<u32>().ok()? > 65_535 => return None,
        Some(p) if p == default_port => None,
        p => p,
    };
    let scheme = if https { "https" } else { "http" };
    Some((
        match port {
            Some(p) => format!("{scheme}://{host}:{p}"),
            None => format!("{scheme}://{host}"),
        },
        https,
    ))
}

fn is_loopback_origin(origin: &str) -> bool {
    let authority = origin.split_once("://").map_or("", |(_, r)| r);
    let host = match authority.rsplit_once(':') {
        Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => authority,
    };
    let octets: Vec<&str> = host.split('.').collect();
    let ipv4_127 = octets.len() == 4
        && octets[0] == "127"
        && octets.iter().all(|o| (1..=3).contains(&o.len()) && o.parse::<u8>().is_ok());
    host == "localhost" || host == "[::1]" || ipv4_127
}

/// Parses `CALLBACK_ORIGINS` (comma-separated `https://host[:port]`); the error names the
/// first entry that is not an origin.
pub fn parse_origins(list: &str) -> Result<Vec<String>, String> {
    let mut out = Vec::new();
    for entry in list.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        match origin_of(entry) {
            // An origin has no path: `https://a.example/x` is a mistake worth reporting.
            Some((o, _))
                if entry.trim_end_matches('/').eq_ignore_ascii_case(&o)
                    || is_default_port_form(entry, &o) =>
            {
                out.push(o)
            }
            _ => return Err(format!("\"{entry}\" is not an origin like https://hooks.example.com[:port]")),
        }
    }
    Ok(out)
}

fn is_default_port_form(entry: &str, origin: &str) -> bool {
    let e = entry.trim_end_matches('/').to_ascii_lowercase();
    e == format!("{origin}:443") || e == format!("{origin}:80")
}

impl CallbackPolicy {
    /// Whether a caller may set `url` as a message's `statusCallback`.
    pub fn check(&self, url: &str, token_caller: bool) -> Result<(), CallbackDenied> {
        let (origin, https) = origin_of(url).ok_or(CallbackDenied::NotAUrl)?;
        if !(https || self.allow_insecure && is_loopback_origin(&origin)) {
            return Err(CallbackDenied::Insecure);
        }
        if token_caller && self.origins.is_empty() {
            return Err(CallbackDenied::NoOriginsForTokens);
        }
        if !self.origins.is_empty() && !self.origins.contains(&origin) {
            return Err(CallbackDenied::OriginNotAllowed(origin));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(origins: &str, insecure: bool) -> CallbackPolicy {
        CallbackPolicy { origins: parse_origins(origins).expect("origins"), allow_insecure: insecure }
    }

    #[test]
    fn origins_are_normalised() {
        assert_eq!(
            origin_of("https://Hooks.Example.com/a?b#c"),
            Some(("https://hooks.example.com".into(), true))
        );
        assert_eq!(origin_of("https://h.example:443/x"), Some(("https://h.example".into(), true)));
        assert_eq!(origin_of("https://h.example:8443"), Some(("https://h.example:8443".into(), true)));
        assert_eq!(origin_of("http://127.0.0.1:9000/cb"), Some(("http://127.0.0.1:9000".into(), false)));
        assert_eq!(origin_of("http://[::1]:9000/cb"), Some(("http://[::1]:9000".into(), false)));
        for bad in [
            "",
            "hooks.example.com",
            "ftp://h.example",
            "https://",
            "https:///x",
            "https://user:pw@evil.example",
            "https://h.example:99999",
            "https://h.example:x",
            "https://h.example:",
            "https://ünï.example",
            "https://::1/x",
        ] {
            assert_eq!(origin_of(bad), None, "{bad}");
        }
    }

    #[test]
    fn origin_lists() {
        assert_eq!(
            parse_origins(" https://a.example , https://B.example:8443/,,https://c.example:443").expect("ok"),
            vec!["https://a.example", "https://b.example:8443", "https://c.example"]
        );
        assert!(parse_origins("https://a.example/hooks").is_err());
        assert!(parse_origins("a.example").is_err());
        assert_eq!(parse_origins("").expect("empty"), Vec::<String>::new());
    }

    #[test]
    fn tokens_need_a_listed_origin() {
        let none = policy("", false);
        assert_eq!(none.check("https://evil.example/x", true), Err(CallbackDenied::NoOriginsForTokens));
        assert_eq!(none.check("https://any.example/x", false), Ok(()));
        let listed = policy("https://hooks.example.com", false);
        assert_eq!(listed.check("https://hooks.example.com/rbm/status?k=1", true), Ok(()));
        assert_eq!(
            listed.check("https://evil.example/x", true),
            Err(CallbackDenied::OriginNotAllowed("https://evil.example".into()))
        );
        // the list binds API keys too once set
        assert!(listed.check("https://evil.example/x", false).is_err());
        // same host, other port: another origin
        assert!(listed.check("https://hooks.example.com:8443/x", true).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback_when_allowed() {
        let strict = policy("", false);
        assert_eq!(strict.check("http://127.0.0.1:9000/cb", false), Err(CallbackDenied::Insecure));
        let dev = policy("", true);
        assert_eq!(dev.check("http://127.0.0.1:9000/cb", false), Ok(()));
        assert_eq!(dev.check("http://localhost/cb", false), Ok(()));
        assert_eq!(dev.check("http://[::1]:1/cb", false), Ok(()));
        assert_eq!(dev.check("http://hooks.example.com/cb", false), Err(CallbackDenied::Insecure));
        assert_eq!(dev.check("http://127.0.0.1.evil.example/cb", false), Err(CallbackDenied::Insecure));
        let dev_listed = policy("http://127.0.0.1:9000", true);
        assert_eq!(dev_listed.check("http://127.0.0.1:9000/cb", true), Ok(()));
    }
}
