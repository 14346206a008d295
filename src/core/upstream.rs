//! Which answers from an upstream (RBM, Google's token endpoint) the relay can pass on.
//!
//! The relay returns RBM's status and JSON body to the caller. Some statuses cannot carry a
//! body at all (1xx, 204, 205, 304: building a response with one fails), redirects would send
//! the caller somewhere RBM's proxy chose, and anything outside 200–599 is not HTTP we know.
//! Those become `502 UPSTREAM_INVALID` instead of a crash or a hang.

/// Whether `status` may be relayed to our caller with a JSON body.
pub fn relayable(status: u16) -> bool {
    (200..=599).contains(&status) && !(300..=399).contains(&status) && !matches!(status, 204 | 205)
}

/// Whether a response with `status` may have a body (the Fetch standard's null-body statuses
/// may not).
pub fn may_have_body(status: u16) -> bool {
    !matches!(status, 101 | 103 | 204 | 205 | 304) && (200..=599).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_status_is_classified_without_panicking() {
        for s in 0..=u16::MAX {
            let r = relayable(s);
            // a relayable status can always carry the JSON body we build
            assert!(!r || may_have_body(s), "{s}");
            match s {
                200 | 201 | 202 | 400 | 404 | 409 | 429 | 500 | 503 | 599 => assert!(r, "{s}"),
                0..=199 | 204 | 205 | 300..=399 | 600.. => assert!(!r, "{s}"),
                _ => {}
            }
        }
    }
}
