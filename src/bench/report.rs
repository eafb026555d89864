//! What the bench modes measure besides frames: a process's CPU time and RSS
//! from /proc, latency histograms, wall-clock microseconds, and the cheap
//! field scanning used on every received frame.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde_json::{Value, json};

/// Clock ticks per second of /proc/PID/stat (USER_HZ, 100 on Linux).
const USER_HZ: f64 = 100.0;

/// Wall-clock microseconds since the Unix epoch (the clock the gateway
/// stamps frames with).
pub fn now_micros() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}

/// User plus system CPU seconds of `pid` (`self` for this process).
pub fn cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces: fields count from after its `)`.
    let rest = stat.get(stat.rfind(')')? + 2..)?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 here.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

/// Resident memory of `pid` in KiB (VmRSS).
pub fn rss_kib(pid: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// A latency histogram in microseconds, 1 µs to 10 minutes, 3 digits.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("constant bounds are valid")
}

/// p50, p99, p99.9 and max of `histogram` in µs; nulls when empty.
pub fn latency_json(histogram: &Histogram<u64>) -> Value {
    if histogram.is_empty() {
        return json!({"count": 0, "p50_us": null, "p99_us": null, "p999_us": null, "max_us": null});
    }
    json!({
        "count": histogram.len(),
        "p50_us": histogram.value_at_quantile(0.50),
        "p99_us": histogram.value_at_quantile(0.99),
        "p999_us": histogram.value_at_quantile(0.999),
        "max_us": histogram.max(),
    })
}

/// The string value of `"key":"..."` in a compact JSON frame, without
/// parsing the frame (no escapes in the values read here: tickers, types,
/// timestamps).
pub fn string_field<'a>(frame: &'a str, key: &str) -> Option<&'a str> {
    let start = find_key(frame, key)?;
    let rest = frame[start..].strip_prefix('"')?;
    let end = rest.find('"')?;
    Some(&rest[..end])
}

/// The unsigned integer value of `"key":N` in a compact JSON frame.
pub fn u64_field(frame: &str, key: &str) -> Option<u64> {
    let start = find_key(frame, key)?;
    let rest = &frame[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// Byte offset just past `"key":`.
fn find_key(frame: &str, key: &str) -> Option<usize> {
    let bytes = frame.as_bytes();
    let mut from = 0;
    // Bounded: each step moves past one occurrence of the key's text.
    while let Some(at) = frame[from..].find(key) {
        let at = from + at;
        let end = at + key.len();
        if at > 0
            && bytes[at - 1] == b'"'
            && bytes.get(end) == Some(&b'"')
            && bytes.get(end + 1) == Some(&b':')
        {
            return Some(end + 2);
        }
        from = end;
    }
    None
}

/// Microseconds since the epoch of an RFC 3339 UTC time. The gateway's
/// fixed form (`2026-11-29T17:35:54.123456Z`) is read directly; anything
/// else goes through jiff.
pub fn timestamp_micros(text: &str) -> Option<i64> {
    let b = text.as_bytes();
    if b.len() == 27 && b[4] == b'-' && b[10] == b'T' && b[19] == b'.' && b[26] == b'Z' {
        let num = |range: std::ops::Range<usize>| -> Option<i64> {
            let mut n = 0i64;
            for &c in &b[range] {
                if !c.is_ascii_digit() {
                    return None;
                }
                n = n * 10 + i64::from(c - b'0');
            }
            Some(n)
        };
        let days = days_from_civil(num(0..4)?, num(5..7)?, num(8..10)?);
        let seconds = days * 86_400 + num(11..13)? * 3600 + num(14..16)? * 60 + num(17..19)?;
        return Some(seconds * 1_000_000 + num(20..26)?);
    }
    text.parse::<jiff::Timestamp>()
        .ok()
        .map(|t| t.as_microsecond())
}

/// Days from 1970-01-01 to a proleptic Gregorian date (Howard Hinnant).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let year = if month <= 2 { year - 1 } else { year };
    let era = year.div_euclid(400);
    let yoe = year - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The server's CPU and memory over a measured window.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcWindow {
    cpu_start: Option<f64>,
    self_start: Option<f64>,
}

impl ProcWindow {
    pub fn start(pid: Option<u32>) -> Self {
        Self {
            cpu_start: pid.and_then(|p| cpu_seconds(&p.to_string())),
            self_start: cpu_seconds("self"),
        }
    }

    /// `{server: {cpu_seconds, cpu_cores, rss_kib}, bench_cpu_seconds}`
    /// over `seconds` of window.
    pub fn finish(&self, pid: Option<u32>, seconds: f64) -> Value {
        let server = pid.map(|p| {
            let pid = p.to_string();
            let cpu = cpu_seconds(&pid)
                .zip(self.cpu_start)
                .map(|(end, start)| end - start);
            json!({
                "pid": p,
                "cpu_seconds": cpu.map(round3),
                "cpu_cores": cpu.map(|c| round3(c / seconds.max(1e-9))),
                "rss_kib": rss_kib(&pid),
            })
        });
        let bench = cpu_seconds("self")
            .zip(self.self_start)
            .map(|(end, start)| round3(end - start));
        json!({"server": server, "bench_cpu_seconds": bench})
    }
}

pub fn round3(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_of_compact_frames() {
        let quote = r#"{"ticker":"T001","timestamp":"2026-02-12T10:30:00.123456Z","open":1.0}"#;
        assert_eq!(string_field(quote, "ticker"), Some("T001"));
        assert_eq!(
            string_field(quote, "timestamp"),
            Some("2026-02-12T10:30:00.123456Z")
        );
        assert_eq!(string_field(quote, "close"), None);
        let tick = r#"{"type":"market_tick","channel":"market_data","seq":17,"symbol":"AAPL"}"#;
        assert_eq!(u64_field(tick, "seq"), Some(17));
        assert_eq!(string_field(tick, "type"), Some("market_tick"));
        // A key's text inside a value is not the key.
        assert_eq!(string_field(r#"{"a":"seq","seq":"x"}"#, "seq"), Some("x"));
    }

    #[test]
    fn timestamps_as_jiff_reads_them() {
        for text in [
            "2026-02-12T10:30:00.123456Z",
            "1970-01-01T00:00:00.000000Z",
            "2024-02-29T23:59:59.999999Z",
            "2026-02-12T10:30:00.2Z",
            "2026-02-12T10:30:00+01:00",
        ] {
            let expected = text.parse::<jiff::Timestamp>().unwrap().as_microsecond();
            assert_eq!(timestamp_micros(text), Some(expected), "{text}");
        }
        assert_eq!(timestamp_micros("yesterday"), None);
    }

    #[test]
    fn this_process_has_cpu_and_rss() {
        assert!(cpu_seconds("self").is_some());
        assert!(rss_kib("self").is_some_and(|kib| kib > 0));
    }
}
