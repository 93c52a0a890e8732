//! Times: ages (`3h05m`); in documents RFC 3339 UTC strings (`2026-12-01T20:41:08.250Z`). Readers also accept
//! the Unix seconds of schema 1.

use serde::{Deserialize, Deserializer, Serializer};

use jiff::Timestamp;

/// The instant of `t` Unix seconds rounded to the millisecond; before 1970 as 1970, after the
/// last instant jiff represents (year 9999) as that instant.
fn timestamp(t: f64) -> Timestamp {
    let ms = (t.max(0.0) * 1000.0).round();
    if ms >= Timestamp::MAX.as_millisecond() as f64 {
        return Timestamp::MAX;
    }
    Timestamp::from_millisecond(ms as i64).unwrap_or(Timestamp::UNIX_EPOCH)
}

/// Unix seconds as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: f64) -> String {
    timestamp(t).strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

/// Parse an RFC 3339 time (`YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)`, jiff's parser) into Unix
/// seconds. A time without an offset is refused: it names no instant.
pub fn parse_rfc3339(s: &str) -> Option<f64> {
    let ts: Timestamp = s.trim().parse().ok()?;
    Some(ts.as_second() as f64 + f64::from(ts.subsec_nanosecond()) / 1e9)
}

/// `#[serde(with = "crate::model::time::serde_rfc3339")]` for an `f64` of Unix seconds.
pub mod serde_rfc3339 {
    use super::*;

    pub fn serialize<S: Serializer>(t: &f64, ser: S) -> Result<S::Ok, S::Error> {
        ser.serialize_str(&rfc3339(*t))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(de: D) -> Result<f64, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum T {
            Seconds(f64),
            Text(String),
        }
        match T::deserialize(de)? {
            T::Seconds(s) => Ok(s),
            T::Text(s) => parse_rfc3339(&s)
                .ok_or_else(|| serde::de::Error::custom(format!("'{s}' is not an RFC 3339 time"))),
        }
    }
}

/// A document's time value (RFC 3339 string, or schema 1's Unix seconds) as Unix seconds.
pub fn seconds_of(v: &serde_json::Value) -> Option<f64> {
    v.as_f64().or_else(|| v.as_str().and_then(parse_rfc3339))
}

/// A human age: `45s`, `12m`, `3h05m`, `2d04h`.
pub fn age(seconds: f64) -> String {
    let s = seconds.max(0.0) as u64;
    match s {
        0..=119 => format!("{s}s"),
        120..=3599 => format!("{}m", s / 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86_400, (s % 86_400) / 3600),
    }
}

/// A UNIX time as an RFC 3339 UTC string to the second (for messages people read).
pub fn utc(t: f64) -> String {
    timestamp(t.max(0.0).trunc())
        .strftime("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    // The hand-written calendar arithmetic doctor used before jiff (Howard Hinnant's
    // algorithms), kept here as the reference the crate is checked against.
    /// Days since 1970-01-01 of a civil date (Howard Hinnant's days_from_civil).
    fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
        let y = if m <= 2 { y - 1 } else { y };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (m + 9) % 12;
        let doy = (153 * mp + 2) / 5 + d - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    /// (year, month, day) of days since 1970-01-01 (civil_from_days).
    fn civil_from_days(days: i64) -> (i64, i64, i64) {
        let z = days + 719_468;
        let era = z.div_euclid(146_097);
        let doe = z - era * 146_097;
        let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
        let mp = (5 * doy + 2) / 153;
        let d = doy - (153 * mp + 2) / 5 + 1;
        let m = if mp < 10 { mp + 3 } else { mp - 9 };
        (yoe + era * 400 + i64::from(m <= 2), m, d)
    }

    /// Unix seconds as RFC 3339 UTC with milliseconds.
    fn old_rfc3339(t: f64) -> String {
        let ms = (t.max(0.0) * 1000.0).round() as i64;
        format!(
            "{}.{:03}Z",
            old_date_time(ms.div_euclid(1000)),
            ms.rem_euclid(1000)
        )
    }

    /// `YYYY-MM-DDTHH:MM:SS` of Unix seconds, UTC.
    fn old_date_time(secs: i64) -> String {
        let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
        let (y, m, d) = civil_from_days(days);
        format!(
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}",
            rem / 3600,
            (rem % 3600) / 60,
            rem % 60
        )
    }

    /// Parse `YYYY-MM-DDTHH:MM:SS[.fff](Z|±HH:MM)` into Unix seconds.
    fn old_parse_rfc3339(s: &str) -> Option<f64> {
        let s = s.trim();
        if s.len() < 20 || !s.as_bytes()[..20].is_ascii() {
            return None;
        }
        let (date, rest) = s.split_at(10);
        let num = |x: &str| x.parse::<i64>().ok();
        let mut dp = date.split('-');
        let (y, mo, d) = (num(dp.next()?)?, num(dp.next()?)?, num(dp.next()?)?);
        if !rest.starts_with(['T', 't', ' ']) || !(1..=12).contains(&mo) || !(1..=31).contains(&d) {
            return None;
        }
        let (h, mi, sec) = (num(&rest[1..3])?, num(&rest[4..6])?, num(&rest[7..9])?);
        if h > 23 || mi > 59 || sec > 60 {
            return None;
        }
        let mut tail = &rest[9..];
        let mut frac = 0.0;
        if let Some(f) = tail.strip_prefix('.') {
            let digits = f.bytes().take_while(u8::is_ascii_digit).count().min(9);
            frac = format!("0.{}", &f[..digits]).parse().ok()?;
            tail = &f[digits..];
        }
        let offset = match tail {
            "Z" | "z" => 0,
            t if t.len() == 6 && (t.starts_with('+') || t.starts_with('-')) => {
                let v = num(&t[1..3])? * 3600 + num(&t[4..6])? * 60;
                if t.starts_with('-') { -v } else { v }
            }
            _ => return None,
        };
        let secs = days_from_civil(y, mo, d) * 86_400 + h * 3600 + mi * 60 + sec - offset;
        Some(secs as f64 + frac)
    }

    proptest::proptest! {
        /// jiff writes what the hand-written code wrote, and reads it back to the same instant,
        /// for every millisecond from 1970 to 2200 (and with any whole-minute offset).
        #[test]
        fn jiff_agrees_with_the_hand_written_calendar(
            ms in 0i64..7_258_118_400_000,
            offset_min in -(23 * 60 + 59)..=(23 * 60 + 59i64),
        ) {
            let t = ms as f64 / 1000.0;
            let text = rfc3339(t);
            proptest::prop_assert_eq!(&text, &old_rfc3339(t));
            proptest::prop_assert_eq!(utc(t), format!("{}Z", old_date_time(ms.div_euclid(1000))));
            let back = parse_rfc3339(&text).unwrap();
            proptest::prop_assert!((back - t).abs() < 1e-6, "{} -> {}", text, back);
            // The same instant written with an offset.
            let local = t + (offset_min * 60) as f64;
            let sign = if offset_min < 0 { '-' } else { '+' };
            let with_offset = format!(
                "{}{sign}{:02}:{:02}",
                &old_rfc3339(local)[..23],
                offset_min.abs() / 60,
                offset_min.abs() % 60
            );
            if local >= 0.0 {
                let a = parse_rfc3339(&with_offset).unwrap();
                let b = old_parse_rfc3339(&with_offset).unwrap();
                proptest::prop_assert!((a - b).abs() < 1e-6, "{}: {} {}", with_offset, a, b);
            }
        }
    }

    #[test]
    fn out_of_range_times_are_clamped_not_a_panic() {
        assert_eq!(rfc3339(-5.0), "1970-01-01T00:00:00.000Z");
        assert_eq!(rfc3339(f64::MAX), rfc3339(1e300));
        // The last instant jiff represents in every offset: 9999-12-30T22:00:00.999999999Z.
        assert_eq!(rfc3339(f64::MAX), "9999-12-30T22:00:00.999Z");
        assert_eq!(rfc3339(f64::NAN), "1970-01-01T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2000-02-30T00:00:00Z"),
            None,
            "no 30 February"
        );
    }

    #[test]
    fn round_trip() {
        for t in [0.0, 951_782_400.0, 1_800_000_000.25, 1_764_621_668.5] {
            let s = rfc3339(t);
            assert_eq!(parse_rfc3339(&s), Some(t), "{s}");
        }
        assert_eq!(rfc3339(951_782_400.0), "2000-02-29T00:00:00.000Z");
        assert_eq!(
            parse_rfc3339("2000-02-29T01:00:00+01:00"),
            Some(951_782_400.0)
        );
        // The spellings RFC 3339 allows besides `T` and `Z`, as the old parser took them.
        for same in [
            "2000-02-29 00:00:00Z",
            "2000-02-29t00:00:00z",
            " 2000-02-29T00:00:00.000Z ",
            "2000-02-28T23:00:00-01:00",
        ] {
            assert_eq!(parse_rfc3339(same), Some(951_782_400.0), "{same}");
        }
        for bad in [
            "",
            "2000-13-01T00:00:00Z",
            "yesterday",
            "2000-02-29T00:00:00",
            "2000-02-29T00:00:00ZZ",
        ] {
            assert_eq!(parse_rfc3339(bad), None, "{bad}");
        }
    }

    #[test]
    fn utc_formats() {
        assert_eq!(utc(0.0), "1970-01-01T00:00:00Z");
        assert_eq!(utc(1_800_000_000.0), "2027-01-15T08:00:00Z");
        assert_eq!(utc(951_782_400.0), "2000-02-29T00:00:00Z");
    }
}
