//! CPU time, read before and after a benchmark phase so that [`bench::run`](crate::bench::run)
//! reports what a task costs in CPU as well as in wall time: the worker's own process, the
//! store's server (through a [`CpuMeter`] the caller gives), and the whole machine.
//!
//! The readings come from Linux's `/proc`; elsewhere they are `None` and the report leaves the
//! figures out.

use async_trait::async_trait;
use std::time::Duration;

/// Clock ticks per second of the times in `/proc/<pid>/stat` and `/proc/stat` (`USER_HZ`,
/// which Linux fixes at 100 for user space on every architecture it exports `/proc` for).
const USER_HZ: f64 = 100.0;

/// Reads the CPU time something has used so far: a store's server, a set of processes.
/// Only differences between two readings mean anything.
#[async_trait]
pub trait CpuMeter: Send + Sync + std::fmt::Debug {
    /// What is measured, for the report (e.g. `redis INFO cpu`).
    fn source(&self) -> String;

    /// The CPU time used so far, or `None` when it cannot be read now.
    async fn cpu_time(&self) -> Option<Duration>;
}

fn ticks(n: f64) -> Duration {
    Duration::from_secs_f64(n / USER_HZ)
}

/// The fields of a `/proc/<pid>/stat` line after the command name (which may hold spaces and
/// parentheses, so the line is split after its last `)`): field 3 (`state`) comes first.
fn stat_fields(line: &str) -> Option<(&str, Vec<&str>)> {
    let open = line.find('(')?;
    let close = line.rfind(')')?;
    let comm = line.get(open + 1..close)?;
    Some((comm, line.get(close + 1..)?.split_whitespace().collect()))
}

/// The sum of `stat` fields `first..=last` (numbered as in proc(5)); `fields[0]` is field 3.
fn sum_fields(fields: &[&str], first: usize, last: usize) -> Option<f64> {
    fields
        .get(first.checked_sub(3)?..=last.checked_sub(3)?)?
        .iter()
        .map(|f| f.parse::<f64>())
        .sum::<Result<f64, _>>()
        .ok()
}

/// User plus system time of one process, and of its children that ended and were waited
/// for (`utime + stime + cutime + cstime`, fields 14–17).
fn process_ticks(fields: &[&str]) -> Option<f64> {
    sum_fields(fields, 14, 17)
}

/// CPU time this process has used: user plus system, all threads (not its children's).
pub fn process_cpu() -> Option<Duration> {
    let line = std::fs::read_to_string("/proc/self/stat").ok()?;
    let (_, fields) = stat_fields(&line)?;
    sum_fields(&fields, 14, 15).map(ticks)
}

/// CPU time every core of the machine spent busy (all but idle and iowait), from the first
/// line of `/proc/stat`.
pub fn machine_busy() -> Option<Duration> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    busy_ticks(text.lines().next()?).map(ticks)
}

fn busy_ticks(cpu_line: &str) -> Option<f64> {
    let mut fields = cpu_line.split_whitespace();
    if fields.next()? != "cpu" {
        return None;
    }
    // user nice system idle iowait irq softirq steal (guest time is inside user already).
    let values: Vec<f64> = fields
        .take(8)
        .map(|f| f.parse::<f64>())
        .collect::<Result<_, _>>()
        .ok()?;
    let (idle, iowait) = (values.get(3)?, values.get(4)?);
    Some(values.iter().sum::<f64>() - idle - iowait)
}

/// Every process on this machine whose command name is `comm` (e.g. `postgres`): their CPU
/// time plus that of their ended children, so the work of a backend or autovacuum worker that
/// exits between two readings still counts (its parent, still running, waited for it).
#[derive(Debug, Clone)]
pub struct LocalProcesses {
    comm: String,
}

impl LocalProcesses {
    /// Measures the processes named `comm`. Only meaningful when the server runs on this
    /// machine.
    pub fn named(comm: impl Into<String>) -> Self {
        Self { comm: comm.into() }
    }

    fn read(&self) -> Option<Duration> {
        let mut total = 0.0;
        let mut found = false;
        for entry in std::fs::read_dir("/proc").ok()?.flatten() {
            let is_pid = entry
                .file_name()
                .to_str()
                .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
            if !is_pid {
                continue;
            }
            // A process may end between the listing and the read: skip it.
            let Ok(line) = std::fs::read_to_string(entry.path().join("stat")) else {
                continue;
            };
            if let Some((comm, fields)) = stat_fields(&line)
                && comm == self.comm
                && let Some(t) = process_ticks(&fields)
            {
                total += t;
                found = true;
            }
        }
        found.then(|| ticks(total))
    }
}

#[async_trait]
impl CpuMeter for LocalProcesses {
    fn source(&self) -> String {
        format!("local processes named {}", self.comm)
    }

    async fn cpu_time(&self) -> Option<Duration> {
        self.read()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_with_spaces_in_the_name_are_split_after_the_last_parenthesis() {
        let line = "42 (postgres: a (b) c) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 7 3 20 0 1";
        let (comm, fields) = stat_fields(line).unwrap();
        assert_eq!(comm, "postgres: a (b) c");
        assert_eq!(fields[0], "S");
        assert_eq!(process_ticks(&fields), Some(310.0));
    }

    #[test]
    fn busy_time_leaves_out_idle_and_iowait() {
        assert_eq!(busy_ticks("cpu  100 5 50 1000 40 1 2 3 0 0"), Some(161.0));
        assert_eq!(busy_ticks("cpu0 1 2 3 4 5 6 7 8"), None);
    }

    #[test]
    fn this_process_and_the_machine_are_readable_and_grow() {
        let (before, machine_before) = (process_cpu().unwrap(), machine_busy().unwrap());
        let began = std::time::Instant::now();
        let mut x = 0u64;
        while began.elapsed() < Duration::from_millis(300) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        assert!(process_cpu().unwrap() > before);
        assert!(machine_busy().unwrap() > machine_before);
        let me = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (comm, _) = stat_fields(&me).unwrap();
        assert!(LocalProcesses::named(comm).read().is_some());
        assert!(
            LocalProcesses::named("no-such-process-name")
                .read()
                .is_none()
        );
    }
}
