//! Timestamp and duration formats of the ingestion schema, without a date
//! crate: UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` and `D.HH:MM:SS.ffffff`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `t` as UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` (six fractional digits).
/// Times before 1970 print as the epoch.
pub(crate) fn iso8601(t: SystemTime) -> String {
    // The buffer holds ASCII digits and separators only.
    std::str::from_utf8(&iso8601_bytes(t))
        .unwrap_or_default()
        .to_owned()
}

/// Appends `t` as [`iso8601`] does.
pub(crate) fn write_iso8601(out: &mut String, t: SystemTime) {
    out.push_str(std::str::from_utf8(&iso8601_bytes(t)).unwrap_or_default());
}

/// The 27 bytes of `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written digit by digit:
/// this runs for every envelope, and `format!` costs ten times as much.
fn iso8601_bytes(t: SystemTime) -> [u8; 27] {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (y, m, d) = civil_from_days(days as i64);
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    put_digits(&mut buf[0..4], y.clamp(0, 9999) as u64);
    put_digits(&mut buf[5..7], u64::from(m));
    put_digits(&mut buf[8..10], u64::from(d));
    put_digits(&mut buf[11..13], rem / 3600);
    put_digits(&mut buf[14..16], rem % 3600 / 60);
    put_digits(&mut buf[17..19], rem % 60);
    put_digits(&mut buf[20..26], u64::from(since.subsec_micros()));
    buf
}

/// Writes `value` right-aligned, zero-padded, into `out` (excess high
/// digits are dropped).
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
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
    let days = secs / 86_400;
    let mut buf = *b"000.00:00:00.000000";
    put_digits(&mut buf[0..3], days);
    put_digits(&mut buf[4..6], secs % 86_400 / 3600);
    put_digits(&mut buf[7..9], secs % 3600 / 60);
    put_digits(&mut buf[10..12], secs % 60);
    put_digits(&mut buf[13..19], u64::from(d.subsec_micros()));
    // Days are not zero-padded.
    let skip = match days {
        0..=9 => 2,
        10..=99 => 1,
        _ => 0,
    };
    std::str::from_utf8(&buf[skip..])
        .unwrap_or_default()
        .to_owned()
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
