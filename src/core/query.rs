//! Query parameters of a request URL, decoded the `application/x-www-form-urlencoded` way
//! (`+` is a space, `%XX` a byte). Written here rather than parsing the whole URL with the
//! `url` crate: the runtime has already validated and serialised the URL, and the parser
//! (with its IDNA tables) is a large share of the wasm for the one thing needed.

/// The path of a URL as the runtime serialises it (`https://host/a/b?x#y` → `/a/b`), not
/// decoded. Special-scheme serialisation never emits an empty path, so the first `/` after the
/// host begins it, and within it `?` and `#` are always percent-encoded.
pub fn path(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    match rest.find('/') {
        Some(i) => {
            let p = &rest[i..];
            &p[..p.find(['?', '#']).unwrap_or(p.len())]
        }
        None => "/",
    }
}

/// The first value of `name` in `url`'s query, decoded; `None` when absent.
pub fn param(url: &str, name: &str) -> Option<String> {
    let query = url.split_once('?')?.1;
    let query = query.split('#').next().unwrap_or_default();
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(k) == name).then(|| decode(v))
    })
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => match (hex(b[i + 1]), hex(b[i + 2])) {
                (Some(h), Some(l)) => {
                    out.push(h << 4 | l);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn hex(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn path_of_a_serialised_url() {
        assert_eq!(path("https://w.example/v1/messages/abc?agentId=a#f"), "/v1/messages/abc");
        assert_eq!(path("https://w.example/"), "/");
        assert_eq!(path("https://w.example"), "/");
        assert_eq!(path("http://127.0.0.1:8787//v1/x%3Fy"), "//v1/x%3Fy");
        assert_eq!(path("https://w.example/webhook#frag"), "/webhook");
    }

    #[test]
    fn decodes_like_form_urlencoded() {
        let u = "https://w.example/v1/x?agentId=brand_a&phoneNumber=%2B12223334444&x=a+b&e=&n&pct=100%&bad=%zz#frag=1";
        assert_eq!(param(u, "agentId").as_deref(), Some("brand_a"));
        assert_eq!(param(u, "phoneNumber").as_deref(), Some("+12223334444"));
        assert_eq!(param(u, "x").as_deref(), Some("a b"));
        assert_eq!(param(u, "e").as_deref(), Some(""));
        assert_eq!(param(u, "n").as_deref(), Some(""));
        assert_eq!(param(u, "pct").as_deref(), Some("100%"));
        assert_eq!(param(u, "bad").as_deref(), Some("%zz"));
        assert_eq!(param(u, "frag"), None);
        assert_eq!(param(u, "missing"), None);
        assert_eq!(param("https://w.example/p", "a"), None);
        assert_eq!(param("https://w.example/p?a=1&a=2", "a").as_deref(), Some("1"));
        assert_eq!(param("https://w.example/p?%61=%E2%9C%93", "a").as_deref(), Some("✓"));
        assert_eq!(param("https://w.example/p?a=%FF", "a").as_deref(), Some("\u{FFFD}"));
        assert_eq!(param("https://w.example/p?a=%4", "a").as_deref(), Some("%4"));
    }
}
