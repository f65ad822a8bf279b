//! `status`: a job's phase and how long each phase took, copy percentage,
//! rows migrated / total, copy rate, ETA, what holds the job back, the
//! catch-up lag of each source primary (its binlog now against the
//! position catch-up has applied), the last verification and error.

use crate::backend::Backends;
use crate::job::JobContext;
use crate::progress::percent;
use crate::state::{JobState, Phase};
use shardgate_cdc::BinlogPosition;

/// Rows per second of the last copy run (up to its last saved batch).
pub fn rows_per_sec(state: &JobState) -> Option<f64> {
    let run = state.copy_run.as_ref()?;
    let until = run.last_batch_at_ms.unwrap_or(state.updated_at_ms);
    let elapsed_ms = until.checked_sub(run.started_at_ms)?;
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

/// Seconds, briefly.
fn secs(ms: u64) -> String {
    format!("{:.1} s", ms as f64 / 1000.0)
}

/// How long the job spent in each phase it went through; the current one
/// runs until `now_ms`.
pub fn phase_timings(state: &JobState, now_ms: u64) -> String {
    let mut parts = Vec::new();
    for (i, entry) in state.phases.iter().enumerate() {
        match state.phases.get(i + 1) {
            Some(next) => parts.push(format!(
                "{} {}",
                entry.phase,
                secs(next.at_ms.saturating_sub(entry.at_ms))
            )),
            None => parts.push(format!(
                "{} for {}",
                entry.phase,
                secs(now_ms.saturating_sub(entry.at_ms))
            )),
        }
    }
    parts.join(", ")
}

/// A job's status as text; `current` holds each source primary's binlog
/// position now (None when it could not be read); `now_ms` is the time.
pub fn render(
    state: &JobState,
    current: &[(String, Option<BinlogPosition>)],
    now_ms: u64,
) -> String {
    let mut out = format!(
        "job {} ({} {}) phase {}\n",
        state.id, state.table, state.mode, state.phase
    );
    if !state.phases.is_empty() {
        out.push_str(&format!("  phases: {}\n", phase_timings(state, now_ms)));
    }
    if let Some(hold) = &state.held {
        out.push_str(&format!(
            "  held for {}: {}\n",
            secs(now_ms.saturating_sub(hold.since_ms)),
            hold.reason
        ));
    }
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
    let reverse = !state.reverse.is_empty();
    let (label, streams) = if reverse {
        ("reverse stream", &state.reverse)
    } else {
        ("catch-up", &state.primaries)
    };
    let mut idle_reverse = false;
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
        if reverse && primary.applied.is_none() && state.phase == Phase::CutOver {
            idle_reverse = true;
            out.push_str(&format!(
                "  reverse stream {}: not running since the cutover at {start}, lag {lag}\n",
                primary.data_source
            ));
            continue;
        }
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
    if idle_reverse {
        out.push_str(&format!(
            "  the old tables are not kept current until `resume {} --follow` runs; `rollback` \
             replays each primary's binlog from where its stream stands first, so it loses \
             nothing while the primaries keep their binlogs\n",
            state.id
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
            "  verification {} ago{}, change streams caught up: {} — source {} rows, target {} \
             rows; checksums of every row in {} key chunks, rows of differing chunks compared \
             (rechecked), every target row's placement by the new rules; missing {}, extra {}, \
             different {}, misplaced {}\n",
            secs(now_ms.saturating_sub(v.at_ms)),
            if v.after_cutover {
                " (after the cutover: the old layout's tables against the new)"
            } else {
                ""
            },
            if v.is_clean() { "clean" } else { "DIFFERENCES" },
            v.source_rows,
            v.target_rows,
            v.chunks,
            v.missing,
            v.extra,
            v.different,
            v.misplaced
        ));
    }
    if let Some(error) = state.errors.last() {
        // An error from before the job last moved on is history, not news.
        let moved_on = state.phases.last().is_some_and(|p| p.at_ms > error.at_ms);
        let label = if moved_on {
            "earlier error"
        } else {
            "last error"
        };
        out.push_str(&format!(
            "  {label} ({} ago): {}\n",
            secs(now_ms.saturating_sub(error.at_ms)),
            error.message
        ));
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
            last_batch_at_ms: None,
        });
        state.updated_at_ms = 3_000; // 4 rows in 2 s
        let text = render(
            &state,
            &[("ds0".into(), Some(at("mariadb-bin.000001", 1328)))],
            3_000,
        );
        assert!(text.contains("phase copying"), "{text}");
        assert!(
            text.contains("40.0% migrated 4 / 10 rows, 2 rows/s, ETA 3 s"),
            "{text}"
        );
        assert!(text.contains("lag 1000 bytes"), "{text}");
        assert!(text.contains("gtid 0-1-5"), "{text}");
    }

    #[test]
    fn status_shows_phase_timings_holds_and_how_old_an_error_is() {
        use crate::state::{Hold, JobError, PhaseEntry};
        let mut state = sample("migration_users_9");
        state.phase = Phase::Copying;
        state.phases = vec![
            PhaseEntry {
                phase: Phase::Planned,
                at_ms: 1_000,
            },
            PhaseEntry {
                phase: Phase::Creating,
                at_ms: 1_500,
            },
            PhaseEntry {
                phase: Phase::Copying,
                at_ms: 4_000,
            },
        ];
        state.held = Some(Hold {
            source: "ds0".into(),
            reason: "the copy from ds0 waits: its replica r is 9 s behind".into(),
            since_ms: 9_000,
        });
        state.errors = vec![JobError {
            at_ms: 2_000,
            message: "ds1 refused a connection".into(),
        }];
        let text = render(&state, &[], 10_000);
        assert!(
            text.contains("phases: planned 0.5 s, creating 2.5 s, copying for 6.0 s"),
            "{text}"
        );
        assert!(
            text.contains("held for 1.0 s: the copy from ds0 waits: its replica r is 9 s behind"),
            "{text}"
        );
        // The job moved on after the error: it is history.
        assert!(
            text.contains("earlier error (8.0 s ago): ds1 refused a connection"),
            "{text}"
        );
    }

    #[test]
    fn a_reverse_stream_not_running_says_what_that_means() {
        let mut state = sample("migration_users_9");
        state.phase = Phase::CutOver;
        state.reverse = vec![crate::state::PrimaryState {
            data_source: "ds0".into(),
            start: Some(at("mariadb-bin.000002", 4)),
            start_gtid: None,
            applied: None,
        }];
        let text = render(
            &state,
            &[("ds0".into(), Some(at("mariadb-bin.000002", 504)))],
            0,
        );
        assert!(
            text.contains(
                "reverse stream ds0: not running since the cutover at mariadb-bin.000002:4, lag \
                 500 bytes"
            ),
            "{text}"
        );
        assert!(
            text.contains("`resume migration_users_9 --follow`"),
            "{text}"
        );
    }
}
