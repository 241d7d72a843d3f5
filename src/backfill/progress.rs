//! Backfill progress: a bar with counts and rate on a terminal, plain log lines otherwise.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

use super::Summary;

/// How often a log line is written when there is no terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

pub enum Progress {
    Bar(ProgressBar),
    Log {
        last: Mutex<Instant>,
        total: AtomicU64,
    },
    Quiet,
}

impl Progress {
    /// A bar when stderr is a terminal, log lines otherwise.
    pub fn for_stderr() -> Self {
        if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {pos}/{len} repos ({per_sec}, eta {eta}) {msg}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            Self::Bar(bar)
        } else {
            Self::Log {
                last: Mutex::new(Instant::now()),
                total: AtomicU64::new(0),
            }
        }
    }

    pub fn start(&self, total: u64) {
        match self {
            Self::Bar(bar) => bar.set_length(total),
            Self::Log { total: t, .. } => {
                t.store(total, Ordering::Relaxed);
                tracing::info!(repos = total, "backfill: reading repositories");
            }
            Self::Quiet => {}
        }
    }

    pub fn advance(&self, s: &Summary, elapsed: Duration) {
        let seen = s.done + s.unavailable + s.failed;
        match self {
            Self::Bar(bar) => {
                bar.set_position(seen);
                bar.set_message(format!(
                    "{} records, {} unavailable, {} failed",
                    s.records, s.unavailable, s.failed
                ));
            }
            Self::Log { last, total } => {
                let mut last = last.lock().unwrap_or_else(|p| p.into_inner());
                if last.elapsed() >= LOG_EVERY {
                    *last = Instant::now();
                    let total = total.load(Ordering::Relaxed);
                    tracing::info!(
                        repos = seen,
                        of = total,
                        records = s.records,
                        unavailable = s.unavailable,
                        failed = s.failed,
                        repos_per_sec = rate(seen, elapsed),
                        "backfill: progress"
                    );
                }
            }
            Self::Quiet => {}
        }
    }

    pub fn finish(&self, s: &Summary, elapsed: Duration) {
        if let Self::Bar(bar) = self {
            bar.finish();
        }
        if !matches!(self, Self::Quiet) {
            let seen = s.done + s.unavailable + s.failed;
            tracing::info!(
                listed = s.listed,
                done = s.done,
                records = s.records,
                unavailable = s.unavailable,
                failed = s.failed,
                seconds = elapsed.as_secs_f64(),
                repos_per_sec = rate(seen, elapsed),
                "backfill: finished"
            );
        }
    }
}

fn rate(n: u64, elapsed: Duration) -> f64 {
    let secs = elapsed.as_secs_f64();
    if secs > 0.0 {
        (n as f64 / secs * 10.0).round() / 10.0
    } else {
        0.0
    }
}
