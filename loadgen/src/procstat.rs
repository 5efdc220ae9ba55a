//! Reading a process's CPU time and resident memory from `/proc`, and this process's own CPU time.

use std::io;

/// CPU time (user + system, all threads) of a process, in microseconds, from `/proc/PID/stat`.
pub fn cpu_us(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    parse_stat_cpu_ticks(&text)
        .map(|ticks| ticks * 1_000_000 / clock_ticks_per_sec())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "unreadable /proc/PID/stat"))
}

/// utime + stime, in clock ticks. The command name (field 2) may hold spaces and parentheses, so
/// fields are counted after its last `)`.
pub fn parse_stat_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After the name: state is field 3, so utime (14) and stime (15) are at 11 and 12 here.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// Resident set size of a process in bytes, from `/proc/PID/status` (VmRSS).
pub fn rss_bytes(pid: u32) -> io::Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    parse_vmrss(&text)
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, "no VmRSS in /proc/PID/status"))
}

pub fn parse_vmrss(status: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

/// Busy and total time of each CPU since boot, in microseconds, from `/proc/stat`: busy is user +
/// nice + system + irq + softirq + steal (so network work done in softirq context on a CPU counts
/// for that CPU, whichever process it was for); total adds idle and iowait.
pub fn cpu_times() -> Vec<(usize, u64, u64)> {
    std::fs::read_to_string("/proc/stat")
        .map(|t| parse_cpu_times(&t))
        .unwrap_or_default()
}

pub fn parse_cpu_times(stat: &str) -> Vec<(usize, u64, u64)> {
    let tick_us = 1_000_000 / clock_ticks_per_sec();
    stat.lines()
        .filter_map(|line| {
            let mut f = line.split_whitespace();
            let cpu: usize = f.next()?.strip_prefix("cpu")?.parse().ok()?;
            let v: Vec<u64> = f.take(8).map(|x| x.parse().unwrap_or(0)).collect();
            if v.len() < 8 {
                return None;
            }
            let busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
            let total = busy + v[3] + v[4];
            Some((cpu, busy * tick_us, total * tick_us))
        })
        .collect()
}

/// This process's CPU time (user + system, all threads), in microseconds.
pub fn self_cpu_us() -> u64 {
    // SAFETY: getrusage fills the struct it is given.
    let usage = unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_SELF, &mut u);
        u
    };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_with_a_strange_name() {
        let stat = "1234 (we ird) (x)) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 37 0 0 20 0 3 0 100 1000 50 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(stat), Some(287));
        assert_eq!(parse_stat_cpu_ticks("garbage"), None);
    }

    #[test]
    fn per_cpu_times() {
        let stat = "cpu  10 0 10 100 0 0 0 0 0 0\ncpu0 1 2 3 100 5 6 7 8 0 0\ncpu1 0 0 0 50 0 0 0 0 0 0\nintr 5\n";
        let t = parse_cpu_times(stat);
        let tick = 1_000_000 / clock_ticks_per_sec();
        assert_eq!(t, vec![(0, 27 * tick, 132 * tick), (1, 0, 50 * tick)]);
        assert!(!cpu_times().is_empty());
    }

    #[test]
    fn vmrss_in_bytes() {
        let status = "Name:\tsluice\nVmPeak:\t  10 kB\nVmRSS:\t    5120 kB\nThreads: 3\n";
        assert_eq!(parse_vmrss(status), Some(5120 * 1024));
    }

    #[test]
    fn this_process_is_readable() {
        let me = std::process::id();
        assert!(rss_bytes(me).unwrap() > 0);
        let _ = cpu_us(me).unwrap();
        let _ = self_cpu_us();
    }
}
