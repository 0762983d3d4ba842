//! Time conversions shared by the files: RFC 3339 for wall-clock times (via humantime), whole
//! milliseconds for interval offsets.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The last second humantime can format (9999-12-31T23:59:59Z).
const MAX_RFC3339_SECS: u64 = 253_402_300_799;

/// Formats `t` as RFC 3339 UTC with the fewest fractional digits (0, 3, 6 or 9) that keep it
/// exact, so formatting and parsing round-trip. `None` when the time cannot be written (before
/// 1970 or after year 9999): humantime would panic on those.
pub(crate) fn format_rfc3339(t: SystemTime) -> Option<String> {
    let since = t.duration_since(UNIX_EPOCH).ok()?;
    if since.as_secs() > MAX_RFC3339_SECS {
        return None;
    }
    let nanos = since.subsec_nanos();
    let ts = if nanos == 0 {
        humantime::format_rfc3339_seconds(t)
    } else if nanos % 1_000_000 == 0 {
        humantime::format_rfc3339_millis(t)
    } else if nanos % 1_000 == 0 {
        humantime::format_rfc3339_micros(t)
    } else {
        humantime::format_rfc3339_nanos(t)
    };
    Some(ts.to_string())
}

/// `t` with its sub-millisecond part dropped. Run start times are truncated so that the
/// manifest, the interval log's `StartTime` header (written with 3 decimals) and the offsets in
/// `counts.csv` (whole milliseconds) all describe the same instant exactly.
pub(crate) fn truncate_to_millis(t: SystemTime) -> SystemTime {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => UNIX_EPOCH + Duration::from_millis(millis_u64(d)),
        Err(_) => t,
    }
}

/// Whole milliseconds in `d`, saturating.
pub(crate) fn millis_u64(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// Milliseconds since the epoch (0 for earlier times).
pub(crate) fn unix_millis(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH).map(millis_u64).unwrap_or(0)
}

/// Seconds with millisecond precision, as written in `counts.csv` (e.g. `12.345`).
pub(crate) fn millis_to_secs_f64(ms: u64) -> f64 {
    ms as f64 / 1000.0
}

/// Parses the seconds written by [`millis_to_secs_f64`] back into whole milliseconds.
pub(crate) fn secs_f64_to_millis(s: f64) -> Option<u64> {
    if !s.is_finite() || s < 0.0 || s > (u64::MAX / 1000) as f64 {
        return None;
    }
    Some((s * 1000.0).round() as u64)
}

/// Serde helpers: `SystemTime` as an RFC 3339 string.
pub(crate) mod rfc3339 {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(crate) fn serialize<S: Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        match super::format_rfc3339(*t) {
            Some(text) => s.serialize_str(&text),
            None => Err(serde::ser::Error::custom(
                "time outside 1970..=9999 cannot be written as RFC 3339",
            )),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<SystemTime, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_rfc3339(&text).map_err(|e| {
            serde::de::Error::custom(format!(
                "{text:?} is not an RFC 3339 UTC time like 2026-11-29T09:27:00.123Z: {e}"
            ))
        })
    }
}

/// Serde helpers: `Option<SystemTime>` as an RFC 3339 string or `null`.
pub(crate) mod rfc3339_opt {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::SystemTime;

    pub(crate) fn serialize<S: Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => super::rfc3339::serialize(t, s),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<SystemTime>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(text) => humantime::parse_rfc3339(&text).map(Some).map_err(|e| {
                serde::de::Error::custom(format!(
                    "{text:?} is not an RFC 3339 UTC time like 2026-11-29T09:27:00.123Z: {e}"
                ))
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rfc3339_round_trips_nanoseconds() {
        let t = UNIX_EPOCH + Duration::new(1_764_408_000, 123_456_789);
        let s = format_rfc3339(t).unwrap();
        assert_eq!(s, "2025-11-29T09:20:00.123456789Z");
        assert_eq!(humantime::parse_rfc3339(&s).unwrap(), t);
        for (t, text) in [
            (UNIX_EPOCH + Duration::new(1, 0), "1970-01-01T00:00:01Z"),
            (
                UNIX_EPOCH + Duration::new(1, 5_000_000),
                "1970-01-01T00:00:01.005Z",
            ),
            (
                UNIX_EPOCH + Duration::new(1, 5_000),
                "1970-01-01T00:00:01.000005Z",
            ),
        ] {
            assert_eq!(format_rfc3339(t).unwrap(), text);
            assert_eq!(humantime::parse_rfc3339(text).unwrap(), t);
        }
    }

    #[test]
    fn out_of_range_times_are_refused_not_panicking() {
        assert!(format_rfc3339(UNIX_EPOCH - Duration::from_secs(1)).is_none());
        assert!(format_rfc3339(UNIX_EPOCH + Duration::from_secs(MAX_RFC3339_SECS + 1)).is_none());
    }

    #[test]
    fn truncation_and_second_conversions() {
        let t = UNIX_EPOCH + Duration::new(5, 123_999_999);
        assert_eq!(
            truncate_to_millis(t),
            UNIX_EPOCH + Duration::from_millis(5_123)
        );
        assert_eq!(unix_millis(t), 5_123);
        assert_eq!(
            secs_f64_to_millis(millis_to_secs_f64(1_234_567)),
            Some(1_234_567)
        );
        assert_eq!(secs_f64_to_millis(-1.0), None);
        assert_eq!(secs_f64_to_millis(f64::NAN), None);
    }
}
