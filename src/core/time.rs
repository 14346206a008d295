//! RFC 3339 timestamps without a date library: parse Google's `sendTime` (nanosecond
//! precision, `Z` or an offset) to a sortable number, and format our own clock readings.

/// Nanoseconds since the Unix epoch for an RFC 3339 timestamp such as
/// `2018-12-31T15:01:23.045123456Z` or `2026-01-01T01:00:00+01:00`; `None` if malformed.
pub fn parse_rfc3339_nanos(s: &str) -> Option<i128> {
    let (secs, frac_nanos) = parse_rfc3339(s)?;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(frac_nanos))
}

/// The same in whole milliseconds (truncated toward zero, as `nanos / 1_000_000`), computed
/// without 128-bit division (which would bring its runtime routine into the wasm).
pub fn parse_rfc3339_millis(s: &str) -> Option<i64> {
    let (secs, frac_nanos) = parse_rfc3339(s)?;
    let floor = secs * 1000 + frac_nanos / 1_000_000;
    Some(if floor < 0 && frac_nanos % 1_000_000 != 0 { floor + 1 } else { floor })
}

/// Seconds since the epoch and the fraction in nanoseconds (0..1e9).
fn parse_rfc3339(s: &str) -> Option<(i64, i64)> {
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
    Some((secs, frac_nanos))
}

/// Formats milliseconds since the epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (like JS `toISOString`).
pub fn format_rfc3339_millis(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z", rem / 3600, rem % 3600 / 60, rem % 60, ms % 1000)
}

pub const NANOS_PER_SEC: i128 = 1_000_000_000;
/// `google.protobuf.Duration`'s range: ±10 000 years.
const MAX_DURATION_SECS: u64 = 315_576_000_000;

/// Parse digits only (no sign), with overflow check.
fn parse_digits(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.bytes().try_fold(0u64, |acc, b| acc.checked_mul(10)?.checked_add(u64::from(b - b'0')))
}

/// A Google Duration JSON string (`"3600s"`, `"1.5s"`, `"-0.000000001s"`) in nanoseconds.
pub fn duration_nanos(s: &str) -> Option<i128> {
    let body = s.strip_suffix('s')?;
    let (negative, body) = match body.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, body),
    };
    let (whole, fraction) = match body.split_once('.') {
        Some((whole, fraction)) => (whole, Some(fraction)),
        None => (body, None),
    };
    let secs = parse_digits(whole).filter(|&s| s <= MAX_DURATION_SECS)?;
    let nanos = match fraction {
        None => 0,
        Some(f) if (1..=9).contains(&f.len()) => {
            let scale = 10u64.pow(9 - u32::try_from(f.len()).ok()?);
            parse_digits(f)? * scale
        }
        Some(_) => return None,
    };
    let total = i128::from(secs) * NANOS_PER_SEC + i128::from(nanos);
    Some(if negative { -total } else { total })
}

/// Seconds in a Google Duration JSON string: digits, up to 9 fractional digits, then `s`
/// (`"3600s"`, `"1.5s"`, `"0.000000001s"`, negative allowed). `None` if malformed or beyond
/// Duration's ±315 576 000 000 s.
pub fn parse_duration_secs(s: &str) -> Option<f64> {
    // f64 keeps ~16 significant digits; the ttl limit itself is checked exactly, in nanoseconds.
    duration_nanos(s).map(|n| n as f64 / 1e9)
}

/// An RFC 3339 timestamp as Google's `Timestamp` accepts it: `2026-11-25T10:00:00Z`, with
/// optional 1-9 fractional second digits, and `Z` or a numeric offset such as `+00:00`.
/// Years 0001-9999; the calendar date must exist.
pub fn is_rfc3339_utc(s: &str) -> bool {
    let b = s.as_bytes();
    let num = |from: usize, len: usize| -> Option<u32> {
        let part = b.get(from..from + len)?;
        part.iter().try_fold(0u32, |acc, d| d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0')))
    };
    let sep = |i: usize, c: u8| b.get(i) == Some(&c);
    let (Some(year), Some(month), Some(day)) = (num(0, 4), num(5, 2), num(8, 2)) else {
        return false;
    };
    let (Some(hour), Some(minute), Some(second)) = (num(11, 2), num(14, 2), num(17, 2)) else {
        return false;
    };
    let shape = sep(4, b'-') && sep(7, b'-') && sep(10, b'T') && sep(13, b':') && sep(16, b':');
    let valid = year >= 1
        && (1..=12).contains(&month)
        && (1..=days_in_month(i64::from(year), i64::from(month))).contains(&i64::from(day))
        && hour <= 23
        && minute <= 59
        && second <= 59;
    if !shape || !valid {
        return false;
    }
    let mut rest = b.get(19..).unwrap_or_default();
    if let Some(fraction) = rest.strip_prefix(b".") {
        let digits = fraction.iter().take_while(|d| d.is_ascii_digit()).count();
        if !(1..=9).contains(&digits) {
            return false;
        }
        rest = fraction.get(digits..).unwrap_or_default();
    }
    let two = |a: u8, b: u8| -> Option<u32> {
        (a.is_ascii_digit() && b.is_ascii_digit()).then(|| u32::from(a - b'0') * 10 + u32::from(b - b'0'))
    };
    match rest {
        b"Z" => true,
        [b'+' | b'-', h1, h2, b':', m1, m2] => {
            matches!((two(*h1, *h2), two(*m1, *m2)), (Some(h), Some(m)) if h <= 23 && m <= 59)
        }
        _ => false,
    }
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
    fn millis_are_the_nanos_truncated() {
        for t in [
            "2018-12-31T15:01:23.045123456Z",
            "2018-12-31T15:01:23Z",
            "1970-01-01T00:00:00Z",
            "1969-12-31T23:59:59.999999Z",
            "1969-12-31T23:59:59.5005Z",
            "1969-12-31T23:59:59.001Z",
            "0001-01-01T00:00:00.000000001Z",
            "9999-12-31T23:59:59.999999999+01:00",
        ] {
            let nanos = parse_rfc3339_nanos(t).expect(t);
            assert_eq!(parse_rfc3339_millis(t), Some((nanos / 1_000_000) as i64), "{t}");
        }
        assert_eq!(parse_rfc3339_millis("nope"), None);
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

    #[test]
    fn duration_parsing() {
        assert_eq!(parse_duration_secs("3600s"), Some(3600.0));
        assert_eq!(parse_duration_secs("1.5s"), Some(1.5));
        assert_eq!(parse_duration_secs("0.000000001s"), Some(1e-9));
        assert_eq!(parse_duration_secs("-0.5s"), Some(-0.5));
        assert_eq!(parse_duration_secs("0s"), Some(0.0));
        assert_eq!(parse_duration_secs("315576000000s"), Some(315_576_000_000.0));
        assert_eq!(parse_duration_secs("315576000001s"), None);
        assert_eq!(parse_duration_secs("18446744073709551616s"), None); // u64 overflow
        for bad in ["", "s", "5", "5m", "1.0000000001s", "1.s", ".1s", "--1s", "1e3s", "1,5s", "٣s", "1.5ss"]
        {
            assert_eq!(parse_duration_secs(bad), None, "{bad}");
        }
    }

    #[test]
    fn rfc3339_parsing() {
        for good in [
            "2026-11-25T10:00:00Z",
            "2018-12-31T15:01:23.045123456Z",
            "2026-11-25T10:00:00.1Z",
            "2026-11-25T10:00:00+00:00",
            "2026-11-25T10:00:00-00:00",
            "2026-11-25T10:00:00.5+05:30",
            "2024-02-29T23:59:59Z",
            "2000-02-29T00:00:00Z",
            "0001-01-01T00:00:00Z",
            "9999-12-31T23:59:59Z",
        ] {
            assert!(is_rfc3339_utc(good), "{good}");
        }
        for bad in [
            "",
            "2026-11-25",
            "2026-11-25T10:00:00",
            "2026-11-25 10:00:00Z",
            "2026-11-25t10:00:00z",
            "2026-13-01T00:00:00Z",
            "2026-00-01T00:00:00Z",
            "2026-02-29T00:00:00Z",
            "1900-02-29T00:00:00Z",
            "2026-04-31T00:00:00Z",
            "2026-11-25T24:00:00Z",
            "2026-11-25T10:60:00Z",
            "2026-11-25T10:00:60Z",
            "0000-01-01T00:00:00Z",
            "2026-11-25T10:00:00.Z",
            "2026-11-25T10:00:00.1234567890Z",
            "2026-11-25T10:00:00+0000",
            "2026-11-25T10:00:00+24:00",
            "2026-11-25T10:00:00+00:60",
            "2026-11-25T10:00:00ZZ",
            "2026-11-25T10:00:00Z ",
            "+2026-11-25T10:00:00Z",
            "２026-11-25T10:00:00Z",
            "2026-1a-25T10:00:00Z",
        ] {
            assert!(!is_rfc3339_utc(bad), "{bad}");
        }
    }
}
