//! JSON forms of the apimachinery value types that protobuf carries as small messages:
//! times, durations. Each mirrors what the Go type's `MarshalJSON` writes.

/// Seconds of Go's zero `time.Time` (0001-01-01T00:00:00Z) since the Unix epoch; JSON `null`.
const GO_ZERO_TIME: i64 = -62_135_596_800;

/// `meta/v1.Time`: whole seconds, UTC, RFC 3339. Go drops the nanoseconds when decoding
/// protobuf. `None` for the zero time (JSON `null`).
pub(super) fn time(seconds: i64) -> Result<Option<String>, String> {
    if seconds == GO_ZERO_TIME {
        return Ok(None);
    }
    let ts = timestamp(i128::from(seconds) * 1_000_000_000)?;
    Ok(Some(ts.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()))
}

/// `meta/v1.MicroTime`: UTC, RFC 3339 with exactly six fractional digits; nanoseconds are
/// truncated to microseconds. `None` for the zero time.
pub(super) fn micro_time(seconds: i64, nanos: i32) -> Result<Option<String>, String> {
    let micros_as_nanos = i128::from(nanos / 1000 * 1000);
    let total = i128::from(seconds) * 1_000_000_000 + micros_as_nanos;
    if total == i128::from(GO_ZERO_TIME) * 1_000_000_000 {
        return Ok(None);
    }
    let ts = timestamp(total)?;
    let micros = ts.subsec_nanosecond() / 1000;
    let whole = ts.strftime("%Y-%m-%dT%H:%M:%S");
    Ok(Some(format!("{whole}.{micros:06}Z")))
}

/// A UTC time Go can print as RFC 3339: years 0 through 9999.
fn timestamp(nanos: i128) -> Result<jiff::Zoned, String> {
    let ts = jiff::Timestamp::from_nanosecond(nanos).map_err(|_| "time out of range")?;
    let utc = ts.to_zoned(jiff::tz::TimeZone::UTC);
    if !(0..=9999).contains(&utc.year()) {
        return Err("time out of range".into());
    }
    Ok(utc)
}

/// `meta/v1.Duration`: Go's `time.Duration.String()`, e.g. `1h2m3.5s`, `1.5µs`, `0s`.
pub(super) fn duration(nanos: i64) -> String {
    let sign = if nanos < 0 { "-" } else { "" };
    let u = nanos.unsigned_abs();
    if u == 0 {
        return "0s".into();
    }
    if u < 1_000_000_000 {
        let (digits, unit) = if u < 1_000 {
            (0, "ns")
        } else if u < 1_000_000 {
            (3, "µs")
        } else {
            (6, "ms")
        };
        return format!("{sign}{}{unit}", fraction(u, digits));
    }
    let secs = u / 1_000_000_000;
    let seconds = fraction(u % 60_000_000_000, 9);
    let (hours, minutes) = (secs / 3600, secs / 60 % 60);
    match (hours, secs >= 60) {
        (0, false) => format!("{sign}{seconds}s"),
        (0, true) => format!("{sign}{minutes}m{seconds}s"),
        _ => format!("{sign}{hours}h{minutes}m{seconds}s"),
    }
}

/// `value / 10^digits` in decimal, with trailing fractional zeros (and a bare point) removed.
fn fraction(value: u64, digits: u32) -> String {
    let scale = 10u64.pow(digits);
    let (int, frac) = (value / scale, value % scale);
    if frac == 0 {
        return int.to_string();
    }
    let width = usize::try_from(digits).unwrap_or(9);
    let frac = format!("{frac:0width$}");
    format!("{int}.{}", frac.trim_end_matches('0'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn time_is_whole_seconds_utc() {
        assert_eq!(
            time(1_704_164_645).unwrap().as_deref(),
            Some("2024-01-02T03:04:05Z")
        );
        assert_eq!(time(0).unwrap().as_deref(), Some("1970-01-01T00:00:00Z"));
        assert_eq!(time(GO_ZERO_TIME).unwrap(), None);
        assert!(time(i64::MAX).is_err());
        assert!(time(i64::MIN).is_err());
    }

    #[test]
    fn micro_time_keeps_six_digits() {
        assert_eq!(
            micro_time(1_704_164_645, 123_456_789).unwrap().as_deref(),
            Some("2024-01-02T03:04:05.123456Z")
        );
        assert_eq!(
            micro_time(1_704_164_645, 0).unwrap().as_deref(),
            Some("2024-01-02T03:04:05.000000Z")
        );
        assert_eq!(micro_time(GO_ZERO_TIME, 999).unwrap(), None);
        assert!(micro_time(i64::MAX, i32::MAX).is_err());
        // Before the epoch the fraction still counts forward from the whole second.
        assert_eq!(
            micro_time(-1, 250_000_000).unwrap().as_deref(),
            Some("1969-12-31T23:59:59.250000Z")
        );
    }

    #[test]
    fn durations_print_like_go() {
        assert_eq!(duration(0), "0s");
        assert_eq!(duration(1), "1ns");
        assert_eq!(duration(1_500), "1.5µs");
        assert_eq!(duration(100_000_000), "100ms");
        assert_eq!(duration(1_000_000_000), "1s");
        assert_eq!(duration(90_000_000_000), "1m30s");
        assert_eq!(duration(3_600_000_000_000), "1h0m0s");
        assert_eq!(duration(3_723_500_000_000), "1h2m3.5s");
        assert_eq!(duration(-2_000_000), "-2ms");
        assert_eq!(duration(i64::MIN), "-2562047h47m16.854775808s");
    }
}
