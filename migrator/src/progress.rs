//! Copy progress for people: a progress bar when stderr is a terminal, else
//! a plain line every 10 seconds (SPEC.md §4: percentage, migrated, total).

use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
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

/// One plain progress line: `total` grows to what was copied (rows
/// written during the copy are copied too); the rate is the current one;
/// `held` says what holds the copy back.
pub fn plain_line(
    job: &str,
    migrated: u64,
    total: u64,
    rows_per_sec: f64,
    held: Option<&str>,
) -> String {
    let total = total.max(migrated);
    let mut line = format!(
        "{job}: {:.1}% migrated {migrated} / {total} rows ({rows_per_sec:.0} rows/s)",
        percent(migrated, total)
    );
    if let Some(reason) = held {
        line.push_str(&format!("; held: {reason}"));
    }
    line
}

/// Reports the rows copied while a copy runs.
pub struct Progress {
    migrated: Arc<AtomicU64>,
    held: Arc<Mutex<Option<String>>>,
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
        let held: Arc<Mutex<Option<String>>> = Arc::default();
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
            let held = held.clone();
            let job = job.to_string();
            let printer = tokio::spawn(async move {
                let mut ticks = tokio::time::interval(PLAIN_INTERVAL);
                ticks.tick().await;
                let mut last = (Instant::now(), migrated);
                loop {
                    ticks.tick().await;
                    let done = counter.load(Ordering::Relaxed);
                    // The rate of the last interval: a pause shows as a
                    // pause, not as a slower average.
                    let rate = done.saturating_sub(last.1) as f64
                        / last.0.elapsed().as_secs_f64().max(0.001);
                    last = (Instant::now(), done);
                    let reason = held.lock().ok().and_then(|h| h.clone());
                    println!("{}", plain_line(&job, done, total, rate, reason.as_deref()));
                }
            });
            (None, Some(printer))
        };
        Progress {
            migrated: counter,
            held,
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

    /// What holds the copy back now (None: nothing).
    pub fn hold(&self, reason: Option<&str>) {
        if let Ok(mut held) = self.held.lock() {
            *held = reason.map(str::to_string);
        }
        if let Some(bar) = &self.bar {
            match reason {
                Some(reason) => bar.set_message(format!("{} (held: {reason})", self.job)),
                None => bar.set_message(self.job.clone()),
            }
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
            None => println!("{}", plain_line(&self.job, done, self.total, rate, None)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_show_percentage_migrated_and_total() {
        assert_eq!(
            plain_line("migration_users_1", 250, 1000, 12.4, None),
            "migration_users_1: 25.0% migrated 250 / 1000 rows (12 rows/s)"
        );
        // Rows written during the copy make the total grow.
        assert_eq!(
            plain_line("j", 1200, 1000, 0.0, Some("replica r of ds0 is 9 s behind")),
            "j: 100.0% migrated 1200 / 1200 rows (0 rows/s); held: replica r of ds0 is 9 s behind"
        );
        assert_eq!(percent(0, 0), 100.0);
        assert_eq!(percent(12, 10), 100.0);
    }
}
