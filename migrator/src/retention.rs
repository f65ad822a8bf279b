//! Binlog retention of the source primaries against a job's length: the
//! job reads each source primary's binlog from its start until cutover
//! (the catch-up) and the new layout's from cutover until `complete` (the
//! reverse stream a lossless rollback replays), so a primary that purges
//! its binlogs sooner leaves the job unable to catch up. `start` says what
//! each primary keeps and warns, with the figures, when that is short.

use crate::backend::Backends;
use crate::error::{DbContext, MigrateError};
use mysql_async::prelude::Queryable;

/// Copy and verification rates assumed for the estimate: well below what
/// this machine measures (bench/migrate.sh), so the estimate errs long.
const ASSUMED_ROWS_PER_SEC: u64 = 10_000;
/// Shorter retention than this always warns: a job waits for a person
/// between ready and cutover, and between cutover and complete.
const HUMAN_MARGIN_SECS: u64 = 24 * 3600;

/// How long `data_source`'s primary keeps its binlogs, in seconds; None
/// when it never purges them by itself.
pub async fn retention_secs(
    backends: &Backends,
    data_source: &str,
) -> Result<Option<u64>, MigrateError> {
    let mut conn = backends.conn(data_source).await?;
    let (seconds, days): (u64, f64) = conn
        .query_first("SELECT @@binlog_expire_logs_seconds, @@expire_logs_days + 0e0")
        .await
        .context(|| format!("reading the binlog retention of {data_source}"))?
        .unwrap_or((0, 0.0));
    // MariaDB takes binlog_expire_logs_seconds when set, else the days.
    let effective = if seconds > 0 {
        seconds
    } else {
        (days * 86_400.0) as u64
    };
    Ok((effective > 0).then_some(effective))
}

/// The seconds copying and verifying `rows` take at the assumed rates.
pub fn expected_secs(rows: u64) -> u64 {
    (rows * 2).div_ceil(ASSUMED_ROWS_PER_SEC)
}

/// A retention as people read it.
pub fn describe(retention: Option<u64>) -> String {
    match retention {
        None => "kept until purged by hand".into(),
        Some(s) if s % 86_400 == 0 => format!("kept {} days", s / 86_400),
        Some(s) if s % 3_600 == 0 => format!("kept {} h", s / 3_600),
        Some(s) => format!("kept {s} s"),
    }
}

/// The warning for a primary whose retention is short for a job of
/// `rows`, if it is.
pub fn warning(data_source: &str, retention: Option<u64>, rows: u64) -> Option<String> {
    let kept = retention?;
    let needed = expected_secs(rows) * 3 + HUMAN_MARGIN_SECS;
    (kept < needed).then(|| {
        format!(
            "{data_source}'s primary purges its binlogs after {kept} s; this job reads them from \
             now until `complete` (copying and verifying {rows} rows alone may take {} s, then \
             ready and cut over wait for you): a purge before then leaves the job unable to \
             catch up and a rollback unable to replay. Raise it for the job's length, e.g. \
             SET GLOBAL binlog_expire_logs_seconds = {needed} on {data_source}",
            expected_secs(rows)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_retention_warns_with_the_figures() {
        assert_eq!(warning("ds0", None, 10_000_000), None);
        assert_eq!(warning("ds0", Some(30 * 86_400), 1_000_000), None);
        let short = warning("ds1", Some(600), 1_000_000).unwrap();
        assert!(
            short.contains("ds1's primary purges its binlogs after 600 s"),
            "{short}"
        );
        assert!(short.contains("may take 200 s"), "{short}");
        assert!(
            short.contains("binlog_expire_logs_seconds = 87000"),
            "{short}"
        );
    }

    #[test]
    fn retention_reads_in_days_hours_or_seconds() {
        assert_eq!(describe(None), "kept until purged by hand");
        assert_eq!(describe(Some(7 * 86_400)), "kept 7 days");
        assert_eq!(describe(Some(7_200)), "kept 2 h");
        assert_eq!(describe(Some(600)), "kept 600 s");
    }
}
