//! The process and machine gauges of a post: CPU and memory, read from
//! `/proc` on Linux (zero elsewhere, and when a file cannot be read).

use std::time::Instant;

/// CPU time readings, to take deltas between posts.
#[derive(Debug)]
pub(crate) struct Cpu {
    last: Option<Reading>,
    cpus: f64,
}

#[derive(Clone, Copy, Debug)]
struct Reading {
    at: Instant,
    /// Process user + system time, seconds.
    process: f64,
    /// Machine busy and total jiffies (`/proc/stat`'s first line).
    busy: u64,
    total: u64,
}

/// One post's gauges.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct Gauges {
    /// Process CPU, percent of the whole machine (all cores), 0–100.
    pub(crate) process_cpu: f64,
    /// Machine CPU, percent busy, 0–100.
    pub(crate) machine_cpu: f64,
    /// Resident set of the process, bytes.
    pub(crate) physical_bytes: f64,
    /// Memory committed on the machine (`Committed_AS`), bytes.
    pub(crate) committed_bytes: f64,
}

impl Default for Cpu {
    fn default() -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        Cpu { last: None, cpus }
    }
}

impl Cpu {
    /// The gauges now; CPU over the time since the previous call (zero on
    /// the first).
    pub(crate) fn sample(&mut self) -> Gauges {
        let now = read(Instant::now());
        let mut gauges = Gauges {
            physical_bytes: resident_bytes().unwrap_or(0.0),
            committed_bytes: committed_bytes().unwrap_or(0.0),
            ..Gauges::default()
        };
        if let (Some(last), Some(now)) = (self.last, now) {
            let wall = now.at.saturating_duration_since(last.at).as_secs_f64();
            if wall > 0.0 {
                let used = (now.process - last.process).max(0.0);
                gauges.process_cpu = (100.0 * used / wall / self.cpus).clamp(0.0, 100.0);
            }
            let total = now.total.saturating_sub(last.total);
            if total > 0 {
                let busy = now.busy.saturating_sub(last.busy);
                gauges.machine_cpu = (100.0 * busy as f64 / total as f64).clamp(0.0, 100.0);
            }
        }
        if now.is_some() {
            self.last = now;
        }
        gauges
    }
}

#[cfg(target_os = "linux")]
fn read(at: Instant) -> Option<Reading> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    let process = process_seconds(&stat)?;
    let machine = std::fs::read_to_string("/proc/stat").ok()?;
    let (busy, total) = machine_jiffies(&machine)?;
    Some(Reading {
        at,
        process,
        busy,
        total,
    })
}

#[cfg(not(target_os = "linux"))]
fn read(_at: Instant) -> Option<Reading> {
    None
}

/// utime + stime of `/proc/self/stat`, in seconds (the fields after the
/// command name, which may itself hold spaces and parentheses).
fn process_seconds(stat: &str) -> Option<f64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    // After ")": state is field 3; utime and stime are fields 14 and 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) as f64 / clock_ticks_per_second())
}

/// Busy and total jiffies of the `cpu` line of `/proc/stat`.
fn machine_jiffies(stat: &str) -> Option<(u64, u64)> {
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let values: Vec<u64> = line
        .split_ascii_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    if values.len() < 4 {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest is in user).
    let total: u64 = values.iter().take(8).sum();
    let idle = values[3] + values.get(4).copied().unwrap_or(0);
    Some((total.saturating_sub(idle), total))
}

#[cfg(unix)]
fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if n > 0 {
        n as f64
    } else {
        100.0
    }
}

#[cfg(not(unix))]
fn clock_ticks_per_second() -> f64 {
    100.0
}

#[cfg(target_os = "linux")]
fn resident_bytes() -> Option<f64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_ascii_whitespace().nth(1)?.parse().ok()?;
    Some(pages as f64 * page_size())
}

#[cfg(not(target_os = "linux"))]
fn resident_bytes() -> Option<f64> {
    None
}

#[cfg(target_os = "linux")]
fn committed_bytes() -> Option<f64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    meminfo_kib(&meminfo, "Committed_AS:").map(|kib| kib as f64 * 1024.0)
}

#[cfg(not(target_os = "linux"))]
fn committed_bytes() -> Option<f64> {
    None
}

fn meminfo_kib(meminfo: &str, key: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with(key))?;
    line[key.len()..]
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

#[cfg(target_os = "linux")]
fn page_size() -> f64 {
    // SAFETY: sysconf has no preconditions.
    #[allow(unsafe_code)]
    let n = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if n > 0 {
        n as f64
    } else {
        4096.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proc_files_parse() {
        let stat = "1234 (a (weird) name) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        let secs = process_seconds(stat).unwrap();
        assert!((secs - 300.0 / clock_ticks_per_second()).abs() < 1e-9);
        let cpu = "cpu  100 0 50 800 50 0 0 0 0 0\ncpu0 1 2 3 4\n";
        assert_eq!(machine_jiffies(cpu), Some((150, 1000)));
        let meminfo = "MemTotal: 100 kB\nCommitted_AS:   2048 kB\n";
        assert_eq!(meminfo_kib(meminfo, "Committed_AS:"), Some(2048));
        assert_eq!(process_seconds("garbage"), None);
        assert_eq!(machine_jiffies("cpu 1 2"), None);
    }

    #[test]
    fn gauges_are_within_bounds() {
        let mut cpu = Cpu::default();
        let first = cpu.sample();
        assert_eq!(first.process_cpu, 0.0);
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let g = cpu.sample();
        assert!((0.0..=100.0).contains(&g.process_cpu), "{g:?}");
        assert!((0.0..=100.0).contains(&g.machine_cpu), "{g:?}");
        #[cfg(target_os = "linux")]
        assert!(g.physical_bytes > 0.0 && g.committed_bytes > 0.0, "{g:?}");
    }
}
