//! Shared by the benchmarks: memory readings and a fresh SQLite-backed Herald.

#![allow(dead_code)]

pub mod peers;

use std::collections::BTreeMap;

use herald::settings::Settings;

/// CPU time this process has used so far (user + system, every thread), in seconds: from
/// `/proc/self/stat`, in the kernel's clock ticks (USER_HZ, 100 per second on Linux). A
/// rate depends on what else the machine runs; CPU per message much less so, which is what
/// makes it the figure to compare two builds by.
pub fn cpu_seconds() -> CpuTime {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .and_then(|s| {
            // Fields after the command name, which is in parentheses and may hold spaces:
            // state is field 3, utime 14 and stime 15.
            let rest = &s[s.rfind(')')? + 1..];
            let fields: Vec<&str> = rest.split_whitespace().collect();
            let ticks = |i: usize| fields.get(i - 3)?.parse::<f64>().ok();
            Some(CpuTime {
                user: ticks(14)? / 100.0,
                system: ticks(15)? / 100.0,
            })
        })
        .unwrap_or_default()
}

/// CPU seconds spent in the process's own code and in the kernel on its behalf (system
/// calls, and on a VM, the wake-ups of other threads).
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuTime {
    pub user: f64,
    pub system: f64,
}

impl CpuTime {
    pub fn total(self) -> f64 {
        self.user + self.system
    }
}

impl std::ops::Sub for CpuTime {
    type Output = CpuTime;
    fn sub(self, earlier: CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

/// Peak resident set size of this process so far, in MiB (Linux `VmHWM`).
pub fn peak_rss_mib() -> f64 {
    read_status_kib("VmHWM:") / 1024.0
}

/// Anonymous (heap and stack) part of the current RSS, in MiB: RSS without file pages, such
/// as SQLite's memory-mapped database.
pub fn rss_anon_mib() -> f64 {
    read_status_kib("RssAnon:") / 1024.0
}

/// File-backed part of the current RSS, in MiB: mapped files, SQLite's memory-mapped
/// database among them (page cache the kernel can reclaim, shared with other processes).
pub fn rss_file_mib() -> f64 {
    read_status_kib("RssFile:") / 1024.0
}

/// Current resident set size, in MiB.
pub fn rss_mib() -> f64 {
    read_status_kib("VmRSS:") / 1024.0
}

fn read_status_kib(field: &str) -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with(field))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0.0)
}

/// Reset the peak RSS counter (Linux: writing 5 to clear_refs resets VmHWM).
pub fn reset_peak_rss() {
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

pub fn settings(pairs: &[(&str, String)]) -> Settings {
    let map: BTreeMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    Settings::from_map(map).expect("bench settings")
}
