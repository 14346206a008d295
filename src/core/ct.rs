//! Constant-time comparison for secrets (client tokens, API keys, MACs).

/// Compares two byte strings without an early exit on the first differing byte, so the time
/// taken does not tell an attacker how long a matching prefix they have guessed.
///
/// The lengths are compared openly: a secret's length is not what this protects, and the
/// loop still runs over the whole of `a` so a length mismatch costs the same as a mismatch.
#[inline(never)]
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff: u8 = (a.len() != b.len()) as u8;
    for (i, x) in a.iter().enumerate() {
        // `get` keeps the loop the same length when `b` is shorter; 0xFF never matches
        // silently because the length flag above is already set in that case.
        let y = b.get(i).copied().unwrap_or(0xFF);
        diff |= x ^ y;
    }
    // black_box stops the optimiser from turning the fold back into an early-exit compare.
    std::hint::black_box(diff) == 0
}

/// True when `candidate` equals any of `secrets`. Every secret is compared (no early return),
/// so which one matched and how many there are is not visible in the timing either.
pub fn ct_eq_any<'a>(candidate: &[u8], secrets: impl IntoIterator<Item = &'a str>) -> bool {
    let mut found = false;
    for s in secrets {
        found |= ct_eq(candidate, s.as_bytes());
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equal_and_unequal() {
        assert!(ct_eq(b"SJENCPGJESMGUFPY", b"SJENCPGJESMGUFPY"));
        assert!(!ct_eq(b"SJENCPGJESMGUFPY", b"SJENCPGJESMGUFPZ"));
        assert!(!ct_eq(b"SJENCPGJESMGUFPY", b"SJENCPGJESMGUFP"));
        assert!(!ct_eq(b"SJENCPGJESMGUFP", b"SJENCPGJESMGUFPY"));
        assert!(!ct_eq(b"", b"x"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn any_of_several() {
        assert!(ct_eq_any(b"new", ["old", "new"]));
        assert!(!ct_eq_any(b"neww", ["old", "new"]));
        assert!(!ct_eq_any(b"x", []));
    }
}
