//! CPU time of a process, from `/proc/<pid>/stat`, for cost-per-operation figures.

use std::process::Command;
use std::sync::OnceLock;
use std::time::Duration;

/// CPU time consumed so far by every thread of a process, in user space and in the kernel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuTime {
    /// Time spent in user space.
    pub user: Duration,
    /// Time spent in the kernel on the process's behalf (system calls, mostly).
    pub system: Duration,
}

impl CpuTime {
    /// User plus system time.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// The CPU time spent since `earlier`.
    pub fn since(&self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// The CPU time of a process (`None`: this one) so far.
///
/// The kernel counts in clock ticks (`getconf CLK_TCK`, 100 per second on Linux), so measure
/// windows of seconds, not milliseconds.
///
/// # Errors
/// When `/proc` is missing (not Linux) or the process is gone.
pub fn process_cpu_time(pid: Option<u32>) -> std::io::Result<CpuTime> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/stat"),
        None => "/proc/self/stat".to_string(),
    };
    let stat = std::fs::read_to_string(&path)?;
    parse_stat(&stat).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("unreadable {path}: {stat:?}"),
        )
    })
}

fn parse_stat(stat: &str) -> Option<CpuTime> {
    // Field 2, the command name, is in parentheses and may itself hold spaces and parentheses:
    // count fields from the last ')'. utime and stime are fields 14 and 15 of the whole line.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    let ticks = clock_ticks_per_second();
    let duration = |t: u64| Duration::from_nanos(t.saturating_mul(1_000_000_000) / ticks);
    Some(CpuTime {
        user: duration(utime),
        system: duration(stime),
    })
}

fn clock_ticks_per_second() -> u64 {
    static TICKS: OnceLock<u64> = OnceLock::new();
    *TICKS.get_or_init(|| {
        Command::new("getconf")
            .arg("CLK_TCK")
            .output()
            .ok()
            .and_then(|out| String::from_utf8(out.stdout).ok())
            .and_then(|s| s.trim().parse().ok())
            .filter(|&t| t > 0)
            // USER_HZ is 100 on every mainstream Linux architecture.
            .unwrap_or(100)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_the_command_name() {
        let line = "42 (tokio (worker) 1) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 3 0";
        let ticks = clock_ticks_per_second();
        let cpu = parse_stat(line).expect("a valid line");
        assert_eq!(cpu.user, Duration::from_nanos(250 * 1_000_000_000 / ticks));
        assert_eq!(cpu.system, Duration::from_nanos(50 * 1_000_000_000 / ticks));
    }

    #[test]
    fn this_process_has_a_cpu_time() {
        assert!(process_cpu_time(None).is_ok());
    }
}
