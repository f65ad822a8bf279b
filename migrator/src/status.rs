//! `status`: a job's phase, copy percentage, rows migrated / total, copy
//! rate, ETA, catch-up lag of each source primary (its binlog now against
//! the position catch-up has applied), the last verification and error.

use crate::backend::Backends;
use crate::job::JobContext;
use crate::progress::percent;
use crate::state::{JobState, Phase};
use shardgate_cdc::BinlogPosition;

/// Rows per second of the last copy run (up to its last saved batch).
pub fn rows_per_sec(state: &JobState) -> Option<f64> {
    let run = state.copy_run.as_ref()?;
    let elapsed_ms = state.updated_at_ms.checked_sub(run.started_at_ms)?;
    let rows = state.rows_copied().checked_sub(run.rows_at_start)?;
    (elapsed_ms > 0 && rows > 0).then(|| rows as f64 * 1000.0 / elapsed_ms as f64)
}

/// Seconds left at `rate` rows/s.
pub fn eta_secs(state: &JobState, rate: f64) -> Option<u64> {
    let left = state.rows_total().saturating_sub(state.rows_copied());
    (rate > 0.0).then(|| (left as f64 / rate).ceil() as u64)
}

/// How far `behind` is from `ahead`: bytes within one binlog file, else
/// the number of files between them.
pub fn lag_text(behind: &BinlogPosition, ahead: &BinlogPosition) -> String {
    if behind >= ahead {
        return "0 bytes (caught up)".into();
    }
    if behind.file == ahead.file {
        return format!("{} bytes", ahead.pos - behind.pos);
    }
    let sequence = |p: &BinlogPosition| {
        p.file
            .rsplit('.')
            .next()
            .and_then(|n| n.parse::<u64>().ok())
    };
    match (sequence(behind), sequence(ahead)) {
        (Some(a), Some(b)) => format!("{} binlog files", b - a),
        _ => format!("{behind} -> {ahead}"),
    }
}

/// A job's status as text; `current` holds each source primary's binlog
/// position now (None when it could not be read).
pub fn render(state: &JobState, current: &[(String, Option<BinlogPosition>)]) -> String {
    let mut out = format!(
        "job {} ({} {}) phase {}\n",
        state.id, state.table, state.mode, state.phase
    );
    let (copied, total) = (state.rows_copied(), state.rows_total());
    let rate = rows_per_sec(state);
    out.push_str(&format!(
        "  copy: {:.1}% migrated {copied} / {total} rows",
        percent(copied, total)
    ));
    if let Some(rate) = rate {
        out.push_str(&format!(", {rate:.0} rows/s"));
        if state.phase == Phase::Copying {
            if let Some(eta) = eta_secs(state, rate) {
                out.push_str(&format!(", ETA {eta} s"));
            }
        }
    }
    out.push('\n');
    let created = state.targets.iter().filter(|t| t.created).count();
    let done = state.sources.iter().filter(|s| s.done).count();
    out.push_str(&format!(
        "  tables: {created} / {} created, {done} / {} source tables copied\n",
        state.targets.len(),
        state.sources.len()
    ));
    // After cutover the forward streams are done for good: the reverse
    // stream's lag is the one that matters.
    let (label, streams) = if state.reverse.is_empty() {
        ("catch-up", &state.primaries)
    } else {
        ("reverse stream", &state.reverse)
    };
    for primary in streams {
        let Some(start) = &primary.start else {
            out.push_str(&format!(
                "  {label} {}: no start position yet\n",
                primary.data_source
            ));
            continue;
        };
        let applied = primary.applied.as_ref().unwrap_or(start);
        let now = current
            .iter()
            .find(|(ds, _)| *ds == primary.data_source)
            .and_then(|(_, p)| p.as_ref());
        let lag = now.map_or("unknown (primary unreachable)".to_string(), |now| {
            lag_text(applied, now)
        });
        out.push_str(&format!(
            "  {label} {}: from {start} (gtid {}), applied {}, lag {lag}\n",
            primary.data_source,
            primary.start_gtid.as_deref().unwrap_or("-"),
            primary
                .applied
                .as_ref()
                .map_or("nothing yet".to_string(), ToString::to_string),
        ));
    }
    for (what, switch) in [("cutover", &state.cutover), ("rollback", &state.rollback)] {
        if let Some(switch) = switch {
            out.push_str(&format!(
                "  {what}: longest write pause {} ms\n",
                switch.longest_pause_ms
            ));
        }
    }
    if let Some(v) = &state.verification {
        out.push_str(&format!(
            "  verification: {} ({} chunks; source {} rows, target {} rows; missing {}, extra {}, different {}, misplaced {})\n",
            if v.is_clean() { "clean" } else { "DIFFERENCES" },
            v.chunks, v.source_rows, v.target_rows, v.missing, v.extra, v.different, v.misplaced
        ));
    }
    if let Some(error) = state.errors.last() {
        out.push_str(&format!("  last error: {}\n", error.message));
    }
    out
}

/// Each streamed primary's binlog position now.
pub async fn current_positions(state: &JobState) -> Vec<(String, Option<BinlogPosition>)> {
    let Ok(context) = JobContext::of(state) else {
        return vec![];
    };
    let backends: Backends = context.backends(&state.options);
    let mut positions = Vec::new();
    let streamed = if state.reverse.is_empty() {
        &state.primaries
    } else {
        &state.reverse
    };
    for primary in streamed {
        let position = backends
            .position(&primary.data_source)
            .await
            .ok()
            .map(|(p, _)| p);
        positions.push((primary.data_source.clone(), position));
    }
    backends.disconnect().await;
    positions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::tests::sample;
    use crate::state::CopyRun;

    fn at(file: &str, pos: u64) -> BinlogPosition {
        BinlogPosition {
            file: file.into(),
            pos,
        }
    }

    #[test]
    fn lag_is_bytes_in_one_file_else_files() {
        assert_eq!(
            lag_text(&at("b.000002", 100), &at("b.000002", 350)),
            "250 bytes"
        );
        assert_eq!(
            lag_text(&at("b.000002", 100), &at("b.000005", 4)),
            "3 binlog files"
        );
        assert_eq!(
            lag_text(&at("b.000005", 4), &at("b.000005", 4)),
            "0 bytes (caught up)"
        );
    }

    #[test]
    fn status_shows_percentage_rate_eta_and_lag() {
        let mut state = sample("migration_users_9");
        state.copy_run = Some(CopyRun {
            started_at_ms: 1_000,
            rows_at_start: 0,
        });
        state.updated_at_ms = 3_000; // 4 rows in 2 s
        let text = render(
            &state,
            &[("ds0".into(), Some(at("mariadb-bin.000001", 1328)))],
        );
        assert!(text.contains("phase copying"), "{text}");
        assert!(
            text.contains("40.0% migrated 4 / 10 rows, 2 rows/s, ETA 3 s"),
            "{text}"
        );
        assert!(text.contains("lag 1000 bytes"), "{text}");
        assert!(text.contains("gtid 0-1-5"), "{text}");
    }
}
