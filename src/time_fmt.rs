//! Timestamp and duration formats of the ingestion schema, without a date
//! crate: UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` and `D.HH:MM:SS.ffffff`.

use std::fmt::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` (six fractional digits).
/// Times before 1970 print as the epoch.
pub(crate) fn iso8601(t: SystemTime) -> String {
    let mut out = String::with_capacity(27);
    write_iso8601(&mut out, t);
    out
}

/// Appends `t` as [`iso8601`] does.
pub(crate) fn write_iso8601(out: &mut String, t: SystemTime) {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        since.subsec_micros()
    );
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// Largest duration the schema accepts: less than 1000 days.
const MAX_DURATION: Duration = Duration::from_secs(1000 * 86_400 - 1);

/// `d` as the schema's `D.HH:MM:SS.ffffff`, capped below 1000 days.
pub(crate) fn duration(d: Duration) -> String {
    let d = d.min(MAX_DURATION + Duration::from_micros(999_999));
    let secs = d.as_secs();
    format!(
        "{}.{:02}:{:02}:{:02}.{:06}",
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
        d.subsec_micros()
    )
}

/// `end - start`, zero when the clock went backwards (design §5: negative
/// durations clamp to zero).
pub(crate) fn elapsed(start: SystemTime, end: SystemTime) -> Duration {
    end.duration_since(start).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        let cases = [
            (0, 0, "1970-01-01T00:00:00.000000Z"),
            (1_288_005_318, 123_456, "2010-10-25T11:15:18.123456Z"),
            (951_782_400, 1, "2000-02-29T00:00:00.000001Z"),
            (4_102_444_799, 999_999, "2099-12-31T23:59:59.999999Z"),
        ];
        for (secs, micros, want) in cases {
            let t = UNIX_EPOCH + Duration::from_secs(secs) + Duration::from_micros(micros);
            assert_eq!(iso8601(t), want);
        }
        assert_eq!(
            iso8601(UNIX_EPOCH - Duration::from_secs(5)),
            "1970-01-01T00:00:00.000000Z"
        );
    }

    #[test]
    fn durations() {
        let cases = [
            (Duration::ZERO, "0.00:00:00.000000"),
            (Duration::from_micros(111_111), "0.00:00:00.111111"),
            (Duration::from_secs(86_400), "1.00:00:00.000000"),
            (
                Duration::from_secs(3 * 86_400 + 4 * 3600 + 5 * 60 + 6) + Duration::from_micros(7),
                "3.04:05:06.000007",
            ),
            (Duration::from_secs(5000 * 86_400), "999.23:59:59.999999"),
        ];
        for (d, want) in cases {
            assert_eq!(duration(d), want);
        }
        let t = UNIX_EPOCH + Duration::from_secs(10);
        assert_eq!(elapsed(t, UNIX_EPOCH), Duration::ZERO);
    }
}
