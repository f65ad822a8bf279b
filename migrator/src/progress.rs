//! Copy progress for people: a progress bar when stderr is a terminal, else
//! a plain line every 10 seconds (SPEC.md §4: percentage, migrated, total).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::task::JoinHandle;

/// How often a plain progress line is printed.
pub const PLAIN_INTERVAL: Duration = Duration::from_secs(10);

/// Share of `total` done, in percent (100 when there is nothing to do;
/// never above 100: rows inserted during the copy are copied too).
pub fn percent(done: u64, total: u64) -> f64 {
    if total == 0 {
        100.0
    } else {
        (done as f64 * 100.0 / total as f64).min(100.0)
    }
}

/// One plain progress line.
pub fn plain_line(job: &str, migrated: u64, total: u64, rows_per_sec: f64) -> String {
    format!(
        "{job}: {:.1}% migrated {migrated} / {total} rows ({rows_per_sec:.0} rows/s)",
        percent(migrated, total)
    )
}

/// Reports the rows copied while a copy runs.
pub struct Progress {
    migrated: Arc<AtomicU64>,
    total: u64,
    job: String,
    started: Instant,
    at_start: u64,
    bar: Option<ProgressBar>,
    printer: Option<JoinHandle<()>>,
}

impl Progress {
    /// `migrated`: rows copied before this run (a resumed job).
    pub fn start(job: &str, migrated: u64, total: u64) -> Progress {
        let counter = Arc::new(AtomicU64::new(migrated));
        let started = Instant::now();
        let (bar, printer) = if std::io::stderr().is_terminal() {
            let bar = ProgressBar::new(total.max(migrated));
            if let Ok(style) = ProgressStyle::with_template(
                "{msg} [{bar:40}] {percent}% {pos}/{len} rows {per_sec} eta {eta}",
            ) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(job.to_string());
            bar.set_position(migrated);
            (Some(bar), None)
        } else {
            let counter = counter.clone();
            let job = job.to_string();
            let printer = tokio::spawn(async move {
                let mut ticks = tokio::time::interval(PLAIN_INTERVAL);
                ticks.tick().await;
                loop {
                    ticks.tick().await;
                    let done = counter.load(Ordering::Relaxed);
                    let rate = (done - migrated) as f64 / started.elapsed().as_secs_f64();
                    println!("{}", plain_line(&job, done, total, rate));
                }
            });
            (None, Some(printer))
        };
        Progress {
            migrated: counter,
            total,
            job: job.to_string(),
            started,
            at_start: migrated,
            bar,
            printer,
        }
    }

    pub fn add(&self, rows: u64) {
        let done = self.migrated.fetch_add(rows, Ordering::Relaxed) + rows;
        if let Some(bar) = &self.bar {
            if done > bar.length().unwrap_or(0) {
                bar.set_length(done);
            }
            bar.set_position(done);
        }
    }

    /// Stops reporting and prints the final count.
    pub fn finish(self) {
        if let Some(printer) = &self.printer {
            printer.abort();
        }
        let done = self.migrated.load(Ordering::Relaxed);
        let rate = (done - self.at_start) as f64 / self.started.elapsed().as_secs_f64().max(0.001);
        match &self.bar {
            Some(bar) => bar.finish(),
            None => println!("{}", plain_line(&self.job, done, self.total, rate)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_percentage_migrated_and_total() {
        assert_eq!(
            plain_line("migration_users_1", 250, 1000, 12.4),
            "migration_users_1: 25.0% migrated 250 / 1000 rows (12 rows/s)"
        );
        assert_eq!(percent(0, 0), 100.0);
        assert_eq!(percent(12, 10), 100.0);
    }
}
