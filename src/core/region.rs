//! RBM's three regions (North America, Europe, Asia Pacific): which one a phone number belongs
//! to, and which agents live where (`RBM_AGENT_REGIONS`).
//!
//! `users.batchGet` must go to a regional host with every number of one request from that
//! region (Google, May 2026), so numbers are grouped by country calling code. Google's
//! guidance for picking a region: Latin America uses North America, Africa uses Europe. The
//! Middle East, Turkey and the Caucasus are nearest Europe; South, South-East and East Asia and
//! Oceania are Asia Pacific.

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Region {
    Us,
    Europe,
    Asia,
}

/// Calling-code prefixes of Asia Pacific outside zones 6 and 8 (South and Central Asia).
const ASIA_IN_ZONE_9: [&str; 13] =
    ["91", "92", "93", "94", "95", "960", "975", "976", "977", "992", "993", "996", "998"];

impl Region {
    pub const ALL: [Region; 3] = [Region::Us, Region::Europe, Region::Asia];

    /// The name used in settings, answers and host names (`{name}-rcsbusinessmessaging…`).
    pub fn as_str(self) -> &'static str {
        match self {
            Region::Us => "us",
            Region::Europe => "europe",
            Region::Asia => "asia",
        }
    }

    pub fn parse(s: &str) -> Option<Region> {
        Region::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The region of an E.164 number (`+` then digits), from its country calling code: zone 1
    /// (NANP) and zone 5 (Latin America) and Aruba (+297) are North America; zones 6 and 8 and
    /// South/Central Asia are Asia Pacific; everything else (Africa, Europe, Russia, the Middle
    /// East) is Europe.
    pub fn of_number(e164: &str) -> Region {
        let digits = e164.strip_prefix('+').unwrap_or(e164);
        match digits.as_bytes().first() {
            Some(b'1' | b'5') => Region::Us,
            Some(b'6' | b'8') => Region::Asia,
            Some(b'9') if ASIA_IN_ZONE_9.iter().any(|p| digits.starts_with(p)) => Region::Asia,
            _ if digits.starts_with("297") => Region::Us,
            _ => Region::Europe,
        }
    }
}

/// `RBM_AGENT_REGIONS`: `agent=region` pairs, comma-separated (`brand_a=europe,brand_b=us`).
pub fn parse_agent_regions(s: &str) -> Result<Vec<(String, Region)>, String> {
    let mut out = Vec::new();
    for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (agent, region) =
            pair.split_once('=').ok_or_else(|| format!("\"{pair}\" is not agent=region"))?;
        let (agent, region) = (agent.trim(), region.trim());
        if !super::ids::is_agent_id(agent) {
            return Err(format!("\"{agent}\" is not an agent id"));
        }
        let region =
            Region::parse(region).ok_or_else(|| format!("\"{region}\" is not us, europe or asia"))?;
        out.push((agent.to_string(), region));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calling_codes_map_to_regions() {
        for (n, r) in [
            ("+14155550123", Region::Us),
            ("+5511999990000", Region::Us),
            ("+525512345678", Region::Us),
            ("+2975551234", Region::Us),
            ("+447700900123", Region::Europe),
            ("+4915112345678", Region::Europe),
            ("+33612345678", Region::Europe),
            ("+79161234567", Region::Europe),
            ("+27821234567", Region::Europe),
            ("+905321234567", Region::Europe),
            ("+971501234567", Region::Europe),
            ("+919876543210", Region::Asia),
            ("+6591234567", Region::Asia),
            ("+819012345678", Region::Asia),
            ("+8613812345678", Region::Asia),
            ("+9779812345678", Region::Asia),
            ("+61412345678", Region::Asia),
        ] {
            assert_eq!(Region::of_number(n), r, "{n}");
        }
    }

    #[test]
    fn agent_regions_parse_or_name_the_problem() {
        assert_eq!(
            parse_agent_regions(" brand_a=europe , brand_b = us,").unwrap(),
            vec![("brand_a".into(), Region::Europe), ("brand_b".into(), Region::Us)]
        );
        assert!(parse_agent_regions("").unwrap().is_empty());
        assert!(parse_agent_regions("brand_a").unwrap_err().contains("agent=region"));
        assert!(parse_agent_regions("brand_a=mars").unwrap_err().contains("mars"));
        assert!(parse_agent_regions("a b=us").unwrap_err().contains("agent id"));
    }
}
