//! Packet loss between the proxy and ds2's primary (issue 15): real loss,
//! dropped by nftables in a network namespace the link crosses
//! ([`lossy`](shardgate_integration_tests::fault_link::lossy)), under the
//! same 16-session write load as the other fault tests and a few sessions
//! reading from ds2's primary.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use shardgate_integration_tests::fault_link::lossy::{self, LossyLink};
use shardgate_integration_tests::fixtures::{connect, drop_table, pool as pool_state};
use shardgate_integration_tests::{db_error, skip, RunningProxy};
use sqlx::{Executor, Row};

use super::{address, fault_config, start, until_it_writes, NotHung, WriteLoad};

/// How much is lost, each way, and for how long.
const PERCENT: u8 = 5;
const LOSS_FOR: Duration = Duration::from_secs(20);

/// The link to ds2's primary losing 5% of its packets each way for 20 s
/// under 16 writing sessions (and 4 reading ds2's primary) on the shipped
/// config: statements slow down but go on — the sessions on ds2 keep
/// having writes acknowledged, no answer is wrong, no acknowledged write
/// is lost, errors (if any) name ds2 and the other data sources' sessions
/// get none; once the loss ends ds2 takes writes. The figures are printed
/// as for the other faults, with the packets nftables dropped, which must
/// be about 5% of those it saw (so the loss was real).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_primary_behind_a_lossy_link() {
    const TABLE: &str = "pool_lossy";
    const TEST: &str = "a_primary_behind_a_lossy_link";
    if let Some(reason) = lossy::unavailable() {
        skip(TEST, &reason);
        return;
    }
    let mut cfg = fault_config(TABLE, 1000);
    let ds2 = &mut cfg.data_sources.get_mut("ds2").expect("ds2").url;
    let link = LossyLink::start(address(ds2));
    ds2.host = link.addr().ip().to_string();
    ds2.port = link.addr().port();
    let Some((proxy, _sandbox)) = start(TEST, cfg, TABLE).await else {
        return;
    };
    let loaded = Instant::now();
    let load = WriteLoad::start(&proxy, TABLE, 16, "ds2").await;
    let stop_reading = Arc::new(AtomicBool::new(false));
    let readers = primary_readers(&proxy, TABLE, 4, stop_reading.clone());
    // Without loss first: the write rate to compare with.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (mut down_polls, mut polls, mut first_down) = (0u32, 0u32, None);
    let before;
    {
        let _loss = link.lose(PERCENT);
        let began = load.fault_began();
        before = began - loaded;
        while began.elapsed() < LOSS_FOR {
            polls += 1;
            if !pool_state(&proxy, "ds2").await["down"].is_null() {
                down_polls += 1;
                first_down.get_or_insert(began.elapsed());
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        load.fault_ended();
    }
    let counts = link.counts();
    let recovered_after =
        until_it_writes(&proxy, &format!("UPDATE {TABLE} SET v = v WHERE id = 2")).await;
    assert!(pool_state(&proxy, "ds2").await["down"].is_null());
    tokio::time::sleep(Duration::from_millis(300)).await;
    stop_reading.store(true, Ordering::Relaxed);
    let mut reads = Reads::default();
    for reader in readers {
        reads.add(reader.await.expect("a reader"));
    }
    let report = load.finish(&proxy, TABLE, 2, NotHung::Writes).await;

    // The loss was real: nftables saw the link's traffic and dropped about
    // 5% of it (binomial: thousands of packets keep it within 2..9%).
    assert!(counts.seen() >= 1000, "little traffic crossed: {counts}");
    let ratio = counts.lost() as f64 / counts.seen() as f64;
    assert!((0.02..0.09).contains(&ratio), "not 5% lost: {counts}");
    assert!(reads.wrong.is_empty(), "wrong answers: {:?}", reads.wrong);
    assert!(
        reads.failed.iter().all(|m| m.contains("ds2")),
        "a failed read that does not name ds2: {:?}",
        reads.failed
    );
    assert!(reads.answered > 0, "no read answered");
    let rate = |writes: u64, over: Duration| writes as f64 / over.as_secs_f64();
    let (rate_before, rate_during) = (
        rate(report.acked_before_fault, before),
        rate(report.acked_during_fault, LOSS_FOR),
    );
    let down = match first_down {
        Some(after) => {
            format!("marked down in {down_polls} of {polls} polls (first after {after:?})")
        }
        None => format!("never marked down ({polls} polls)"),
    };
    eprintln!(
        "fault: ds2's link losing {PERCENT}% of packets each way for {LOSS_FOR:?} (nftables in a network namespace), 16 sessions: {down}, first error after {:?}, {} failed statements (ds2's writes acknowledged: {rate_before:.0}/s before, {rate_during:.0}/s during the loss; {} reads of ds2's primary, {} failed), back {recovered_after:?} after the fault ended, 0 wrong answers, 0 acknowledged writes lost; {counts}",
        report.first_error,
        report.failed,
        reads.answered,
        reads.failed.len(),
    );
    drop_table(&proxy, TABLE).await;
}

/// What the readers saw.
#[derive(Default)]
struct Reads {
    answered: u64,
    wrong: Vec<String>,
    failed: Vec<String>,
}

impl Reads {
    fn add(&mut self, other: Reads) {
        self.answered += other.answered;
        self.wrong.extend(other.wrong);
        self.failed.extend(other.failed);
    }
}

/// ds2's rows the write load leaves alone (ids 18, 22, ..., 38; v = id).
const STILL: [i64; 6] = [18, 22, 26, 30, 34, 38];
/// Each read row carries its id's two digits this many times: answers of
/// several TCP segments, so that losses fall inside them.
const PAD: usize = 1500;

/// `sessions` sessions reading [`STILL`] in transactions (so from ds2's
/// primary, across the link: outside one a read would go to a replica)
/// until `stop`, checking every answer.
fn primary_readers(
    proxy: &Arc<RunningProxy>,
    table: &'static str,
    sessions: usize,
    stop: Arc<AtomicBool>,
) -> Vec<tokio::task::JoinHandle<Reads>> {
    let ids = STILL.map(|id| id.to_string()).join(", ");
    let sql = format!(
        "SELECT id, v, REPEAT(LPAD(id, 2, '0'), {PAD}) FROM {table} WHERE id IN ({ids}) ORDER BY id"
    );
    (0..sessions)
        .map(|_| {
            let (proxy, stop, sql) = (proxy.clone(), stop.clone(), sql.clone());
            tokio::spawn(async move {
                let mut conn = connect(&proxy).await;
                let mut reads = Reads::default();
                while !stop.load(Ordering::Relaxed) {
                    let read = async {
                        conn.execute("BEGIN").await?;
                        let rows = sqlx::query(&sql).fetch_all(&mut conn).await?;
                        conn.execute("COMMIT").await?;
                        Ok::<_, sqlx::Error>(rows)
                    };
                    match read.await {
                        Ok(rows) => {
                            reads.answered += 1;
                            if let Some(wrong) = wrong_answer(&rows) {
                                reads.wrong.push(wrong);
                            }
                        }
                        Err(e) => {
                            let message = db_error(&e).map_or_else(|| e.to_string(), |e| e.2);
                            reads.failed.push(message);
                            let _ = conn.execute("ROLLBACK").await;
                            tokio::time::sleep(Duration::from_millis(20)).await;
                        }
                    }
                }
                reads
            })
        })
        .collect()
}

/// How `rows` differ from [`STILL`]'s, if they do.
fn wrong_answer(rows: &[sqlx::mysql::MySqlRow]) -> Option<String> {
    let got: Vec<(i64, i32, String)> = rows
        .iter()
        .map(|r| (r.get(0), r.get(1), r.get(2)))
        .collect();
    let want: Vec<(i64, i32, String)> = STILL
        .iter()
        .map(|&id| (id, id as i32, format!("{id:02}").repeat(PAD)))
        .collect();
    (got != want).then(|| {
        let short: Vec<_> = got.iter().map(|(id, v, pad)| (id, v, pad.len())).collect();
        format!("rows (id, v, text length) {short:?}")
    })
}
