//! This process's CPU time and memory, from `/proc/self` (Linux), for the benchmark summary:
//! the point is to show the simulator is not the bottleneck.

use serde::Serialize;

/// CPU seconds and memory of the process so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Usage {
    pub cpu_user_s: f64,
    pub cpu_system_s: f64,
    pub rss_kb: u64,
    /// Peak resident set size.
    pub max_rss_kb: u64,
    /// Times the process slept (a wake-up each) and was preempted.
    pub voluntary_switches: u64,
    pub involuntary_switches: u64,
}

/// `/proc/<pid>/stat` counts in USER_HZ, which the kernel ABI fixes at 100 on Linux.
const USER_HZ: f64 = 100.0;

impl Usage {
    /// Zeros where `/proc` is unavailable.
    pub fn now() -> Usage {
        let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        Usage::parse(&stat, &status)
    }

    fn parse(stat: &str, status: &str) -> Usage {
        // Fields after the `(comm)` part, which may itself contain spaces.
        let after = stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or("");
        let fields: Vec<&str> = after.split_whitespace().collect();
        // utime and stime are fields 14 and 15 of stat, i.e. 12 and 13 after `(comm)` + state.
        let ticks = |i: usize| {
            fields
                .get(i)
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        let number = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        Usage {
            cpu_user_s: ticks(11) / USER_HZ,
            cpu_system_s: ticks(12) / USER_HZ,
            rss_kb: number("VmRSS:"),
            max_rss_kb: number("VmHWM:"),
            voluntary_switches: number("voluntary_ctxt_switches:"),
            involuntary_switches: number("nonvoluntary_ctxt_switches:"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_proc_files() {
        let stat = "4242 (softphone sim) S 1 4242 4242 0 -1 4194560 1000 0 0 0 250 75 0 0 20 0 4 0";
        let status = "Name:\tsoftphone-sim\nVmHWM:\t  81234 kB\nVmRSS:\t   70000 kB\n\
            voluntary_ctxt_switches:\t12\nnonvoluntary_ctxt_switches:\t3\n";
        let u = Usage::parse(stat, status);
        assert_eq!(u.cpu_user_s, 2.5);
        assert_eq!(u.cpu_system_s, 0.75);
        assert_eq!((u.rss_kb, u.max_rss_kb), (70000, 81234));
        assert_eq!((u.voluntary_switches, u.involuntary_switches), (12, 3));
        assert_eq!(Usage::parse("", ""), Usage::default());
    }
}
