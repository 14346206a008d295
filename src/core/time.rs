//! RFC 3339 timestamps without a date library: parse Google's `sendTime` (nanosecond
//! precision, `Z` or an offset) to a sortable number, and format our own clock readings.

/// Nanoseconds since the Unix epoch for an RFC 3339 timestamp such as
/// `2018-12-31T15:01:23.045123456Z` or `2026-01-01T01:00:00+01:00`; `None` if malformed.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    if b.len() < 20 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b't' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let part = s.get(r)?;
        if !part.bytes().all(|c| c.is_ascii_digit()) {
            return None;
        }
        part.parse().ok()
    };
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, min, sec) = (num(11..13)?, num(14..16)?, num(17..19)?);
    if !(1..=12).contains(&month) || !(1..=days_in_month(year, month)).contains(&day) {
        return None;
    }
    if hour > 23 || min > 59 || sec > 60 {
        return None;
    }
    let mut i = 19;
    let mut frac_nanos: i64 = 0;
    if b.get(i) == Some(&b'.') {
        i += 1;
        let start = i;
        while i < b.len() && b[i].is_ascii_digit() {
            if i - start < 9 {
                frac_nanos = frac_nanos * 10 + i64::from(b[i] - b'0');
            }
            i += 1;
        }
        let digits = i - start;
        if digits == 0 {
            return None;
        }
        for _ in digits..9 {
            frac_nanos *= 10;
        }
    }
    let offset_secs: i64 = match b.get(i)? {
        b'Z' | b'z' if i + 1 == b.len() => 0,
        sign @ (b'+' | b'-') if i + 6 == b.len() && b[i + 3] == b':' => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let o = h * 3600 + m * 60;
            if *sign == b'+' {
                o
            } else {
                -o
            }
        }
        _ => return None,
    };
    let days = days_from_civil(year, month, day);
    let secs = days * 86_400 + hour * 3600 + min * 60 + sec - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(frac_nanos))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (like JS `toISOString`).
pub fn format_rfc3339_millis(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

fn is_leap(y: i64) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i64, m: i64) -> i64 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

// Howard Hinnant's days_from_civil / civil_from_days (public-domain algorithms).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_google_send_time() {
        // 2018-12-31T15:01:23Z = 1546268483 (date -u -d ... +%s)
        assert_eq!(parse_rfc3339_nanos("2018-12-31T15:01:23.045123456Z"), Some(1_546_268_483_045_123_456));
        assert_eq!(parse_rfc3339_nanos("2018-12-31T15:01:23Z"), Some(1_546_268_483_000_000_000));
        assert_eq!(parse_rfc3339_nanos("2018-12-31T16:01:23.5+01:00"), Some(1_546_268_483_500_000_000));
        assert_eq!(parse_rfc3339_nanos("1970-01-01T00:00:00Z"), Some(0));
    }

    #[test]
    fn orders_mixed_precision_correctly() {
        // Lexical order gets these wrong ('Z' > '.'); numeric order does not.
        let a = parse_rfc3339_nanos("2018-12-31T15:01:23Z");
        let b = parse_rfc3339_nanos("2018-12-31T15:01:23.001Z");
        assert!(a < b);
    }

    #[test]
    fn rejects_malformed() {
        for s in [
            "",
            "2018-12-31",
            "2018-12-31T15:01:23",
            "2018-13-01T00:00:00Z",
            "2019-02-29T00:00:00Z",
            "2018-12-31T24:00:00Z",
            "2018-12-31T15:01:23.Z",
            "2018-12-31T15:01:23Zjunk",
            "2018-12-31T15:01:23+0100",
            "２018-12-31T15:01:23Z",
            "+018-12-31T15:01:23Z",
        ] {
            assert_eq!(parse_rfc3339_nanos(s), None, "{s}");
        }
        assert!(parse_rfc3339_nanos("2020-02-29T00:00:00Z").is_some());
    }

    #[test]
    fn formats_like_to_iso_string() {
        assert_eq!(format_rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(format_rfc3339_millis(1_546_268_483_045), "2018-12-31T15:01:23.045Z");
        assert_eq!(format_rfc3339_millis(1_795_651_200_000), "2026-11-26T00:00:00.000Z");
        let s = format_rfc3339_millis(1_709_164_800_123); // 2024-02-29 leap day
        assert_eq!(s, "2024-02-29T00:00:00.123Z");
        assert_eq!(parse_rfc3339_nanos(&s), Some(1_709_164_800_123_000_000));
    }
}
