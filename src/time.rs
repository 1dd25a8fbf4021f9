//! Every time format the crate reads or writes, both ways, without a date
//! crate: the ingestion schema's UTC `YYYY-MM-DDTHH:MM:SS.ffffffZ` and
//! `D.HH:MM:SS.ffffff`, HTTP dates (`Retry-After`), and the fixed-width
//! stamps in offline storage's file names. One pair of calendar
//! conversions ([`civil_from_days`], [`days_from_civil`]) serves them all.

use std::cell::Cell;
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

/// The 27 bytes of `YYYY-MM-DDTHH:MM:SS.ffffffZ`, written two digits at a
/// time, the date part once per day and thread ([`date_bytes`]): this runs
/// for every envelope, and `format!` costs ten times as much.
pub(crate) fn iso8601_bytes(t: SystemTime) -> [u8; 27] {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let mut buf = *b"0000-00-00T00:00:00.000000Z";
    buf[..10].copy_from_slice(&date_bytes(days));
    put_pair(&mut buf[11..13], rem / 3600);
    put_pair(&mut buf[14..16], rem % 3600 / 60);
    put_pair(&mut buf[17..19], rem % 60);
    let micros = u64::from(since.subsec_micros());
    put_pair(&mut buf[20..22], micros / 10_000);
    put_pair(&mut buf[22..24], micros / 100 % 100);
    put_pair(&mut buf[24..26], micros % 100);
    buf
}

/// `YYYY-MM-DD` of `days` since the epoch; the last day asked on this
/// thread is remembered (a batch's items are nearly all of one day).
fn date_bytes(days: u64) -> [u8; 10] {
    thread_local! {
        static LAST: Cell<(u64, [u8; 10])> = const { Cell::new((u64::MAX, [0; 10])) };
    }
    let compute = || {
        let (y, m, d) = civil_from_days(days as i64);
        let mut buf = *b"0000-00-00";
        put_digits(&mut buf[0..4], y.clamp(0, 9999) as u64);
        put_pair(&mut buf[5..7], u64::from(m));
        put_pair(&mut buf[8..10], u64::from(d));
        buf
    };
    LAST.try_with(|last| match last.get() {
        (day, text) if day == days => text,
        _ => {
            let text = compute();
            last.set((days, text));
            text
        }
    })
    .unwrap_or_else(|_| compute())
}

/// `"00"` to `"99"`.
static PAIRS: [[u8; 2]; 100] = {
    let mut pairs = [[0u8; 2]; 100];
    let mut i = 0;
    while i < 100 {
        pairs[i] = [b'0' + (i / 10) as u8, b'0' + (i % 10) as u8];
        i += 1;
    }
    pairs
};

/// Writes `value % 100` as two digits into `out` (two bytes).
fn put_pair(out: &mut [u8], value: u64) {
    out.copy_from_slice(&PAIRS[(value % 100) as usize]);
}

/// Writes `value` right-aligned, zero-padded, into `out` (excess high
/// digits are dropped).
fn put_digits(out: &mut [u8], mut value: u64) {
    for slot in out.iter_mut().rev() {
        *slot = b'0' + (value % 10) as u8;
        value /= 10;
    }
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 to (y, m, d)
/// (the inverse of [`days_from_civil`]).
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

/// `d`, or the largest duration the schema accepts when it is longer.
pub(crate) fn capped(d: Duration) -> Duration {
    d.min(MAX_DURATION + Duration::from_micros(999_999))
}

/// `d` as the schema's `D.HH:MM:SS.ffffff`, capped below 1000 days (the
/// tests' form; envelopes keep [`duration_bytes`] inline).
#[cfg(test)]
pub(crate) fn duration(d: Duration) -> String {
    let (buf, skip) = duration_bytes(d);
    std::str::from_utf8(&buf[skip..])
        .unwrap_or_default()
        .to_owned()
}

/// [`duration`]'s text without allocating: `buf[skip..]` is
/// `D.HH:MM:SS.ffffff` (ASCII digits and separators only).
pub(crate) fn duration_bytes(d: Duration) -> ([u8; 19], usize) {
    let d = capped(d);
    let secs = d.as_secs();
    let days = secs / 86_400;
    let mut buf = *b"000.00:00:00.000000";
    put_digits(&mut buf[0..3], days);
    put_pair(&mut buf[4..6], secs % 86_400 / 3600);
    put_pair(&mut buf[7..9], secs % 3600 / 60);
    put_pair(&mut buf[10..12], secs % 60);
    let micros = u64::from(d.subsec_micros());
    put_pair(&mut buf[13..15], micros / 10_000);
    put_pair(&mut buf[15..17], micros / 100 % 100);
    put_pair(&mut buf[17..19], micros % 100);
    // Days are not zero-padded.
    let skip = match days {
        0..=9 => 2,
        10..=99 => 1,
        _ => 0,
    };
    (buf, skip)
}

/// `end - start`, zero when the clock went backwards (a negative duration
/// is not valid in the schema: it clamps to zero).
pub(crate) fn elapsed(start: SystemTime, end: SystemTime) -> Duration {
    end.duration_since(start).unwrap_or_default()
}

// === HTTP dates ===

/// An HTTP date (RFC 9110 §5.6.7) as a `SystemTime`.
pub(crate) fn parse_http_date(s: &str) -> Option<SystemTime> {
    let parts: Vec<&str> = s.split_ascii_whitespace().collect();
    let (day, month, year, time) = match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, m, y, t, "GMT"] if wd.ends_with(',') => (*d, *m, parse_num(y)?, *t),
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut f = dmy.split('-');
            let (d, m, y) = (f.next()?, f.next()?, f.next()?);
            if f.next().is_some() || y.len() != 2 {
                return None;
            }
            // RFC 9110: a two-digit year more than 50 years ahead is in the
            // past century; this parser is used for the near future only.
            let y = parse_num(y)?;
            (d, m, if y < 70 { 2000 + y } else { 1900 + y }, *t)
        }
        // asctime: Sun Nov  6 08:49:37 1994
        [_wd, m, d, t, y] => (*d, *m, parse_num(y)?, *t),
        _ => return None,
    };
    let day = parse_num(day)?;
    let month = month_number(month)?;
    let mut hms = time.split(':');
    let (h, mi, sec) = (
        parse_num(hms.next()?)?,
        parse_num(hms.next()?)?,
        parse_num(hms.next()?)?,
    );
    if hms.next().is_some() || !(1..=31).contains(&day) || h > 23 || mi > 59 || sec > 60 {
        return None;
    }
    if year < 1970 {
        return None;
    }
    let days = days_from_civil(year as i64, month, day as u32);
    let secs = days as u64 * 86_400 + h * 3600 + mi * 60 + sec;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs))
}

/// A decimal number of at most 4 digits.
fn parse_num(s: &str) -> Option<u64> {
    if s.is_empty() || s.len() > 4 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month_number(m: &str) -> Option<u32> {
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    MONTHS.iter().position(|x| *x == m).map(|i| i as u32 + 1)
}

/// Howard Hinnant's `days_from_civil`: (y, m, d) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (i64::from(m) + 9) % 12;
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

// === storage stamps ===

/// The length of a [`stamp`].
pub(crate) const STAMP_LEN: usize = 24;

/// `t` as UTC `%Y-%m-%dT%H%M%S.%f` (no colons: valid in file names on every
/// system), fixed width so that names sort by time.
pub(crate) fn stamp(t: SystemTime) -> String {
    // "YYYY-MM-DDTHH:MM:SS.ffffffZ" → "YYYY-MM-DDTHHMMSS.ffffff"
    iso8601(t)
        .chars()
        .filter(|c| *c != ':' && *c != 'Z')
        .collect()
}

/// Parses a [`stamp`] back into a time.
pub(crate) fn parse_stamp(s: &str) -> Option<SystemTime> {
    let b = s.as_bytes();
    if b.len() != STAMP_LEN || b[4] != b'-' || b[7] != b'-' || b[10] != b'T' || b[17] != b'.' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u64> {
        let part = s.get(r)?;
        part.bytes()
            .all(|c| c.is_ascii_digit())
            .then(|| part.parse().ok())?
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (h, mi, sec, micros) = (num(11..13)?, num(13..15)?, num(15..17)?, num(18..24)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = days_from_civil(y as i64, m as u32, d as u32);
    let secs = days as u64 * 86_400 + h * 3600 + mi * 60 + sec;
    UNIX_EPOCH.checked_add(Duration::from_secs(secs) + Duration::from_micros(micros))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The two-digit and remembered-date writing is `format!`'s, across
    /// days, leap years and centuries, in any order.
    #[test]
    fn timestamps_match_a_formatted_reference() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for i in 0..20_000u64 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let micros = if i % 2 == 0 {
                x % 4_102_444_800_000_000
            } else {
                x % 1_000_000_000
            };
            let t = UNIX_EPOCH + Duration::from_micros(micros);
            let secs = micros / 1_000_000;
            let (y, m, d) = civil_from_days((secs / 86_400) as i64);
            let rem = secs % 86_400;
            let want = format!(
                "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
                rem / 3600,
                rem % 3600 / 60,
                rem % 60,
                micros % 1_000_000
            );
            assert_eq!(iso8601(t), want);
            let d = Duration::from_micros(x % 90_000_000_000_000);
            let s = d.as_secs().min(1000 * 86_400 - 1);
            let want = format!(
                "{}.{:02}:{:02}:{:02}.{:06}",
                s / 86_400,
                s % 86_400 / 3600,
                s % 3600 / 60,
                s % 60,
                if d.as_secs() >= 1000 * 86_400 {
                    999_999
                } else {
                    d.subsec_micros()
                }
            );
            assert_eq!(duration(d), want);
        }
    }

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
