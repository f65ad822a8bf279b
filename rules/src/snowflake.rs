//! Snowflake ids: 41 bits of milliseconds since a UTC epoch, 10 bits of
//! worker id, 12 bits of sequence. Strictly increasing per generator and
//! safe to share between threads. Each new millisecond starts its sequence
//! at a cycling offset so that low-rate ids do not all end in sequence 0 and
//! pile onto one shard under `id % n` (ShardingSphere's max-vibration-offset).

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use thiserror::Error;

const WORKER_BITS: u32 = 10;
const SEQUENCE_BITS: u32 = 12;
const TIMESTAMP_BITS: u32 = 41;
const MAX_SEQUENCE: u16 = (1 << SEQUENCE_BITS) - 1;
const MAX_TIMESTAMP: u64 = (1 << TIMESTAMP_BITS) - 1;
/// Offsets cycle through 0..64: 64 divides 4096, so `id % 64` — and with it
/// `id % 4` and `(id / 4) % 16`, the seed's users layout — sees every
/// residue equally often even at one id per millisecond.
const START_OFFSETS: u16 = 64;

/// The instant ids count from, in Unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Epoch(u64);

impl Epoch {
    /// 2024-01-01T00:00:00Z.
    pub const DEFAULT: Epoch = Epoch(1_704_067_200_000);

    pub fn from_unix_millis(millis: u64) -> Epoch {
        Epoch(millis)
    }

    pub fn unix_millis(self) -> u64 {
        self.0
    }
}

/// A millisecond's sequence: the most ids [`SnowflakeGenerator::next_ids`]
/// hands out consecutively.
const IDS_PER_BLOCK: usize = MAX_SEQUENCE as usize + 1;

/// The ids of one statement's rows ([`SnowflakeGenerator::next_ids`]):
/// blocks of consecutive ids, each full but the last, kept as their first
/// ids. A 20 MB INSERT may take 3 million keys; one `i64` each would be
/// 24 MB, this is 6 KB.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ids {
    firsts: Vec<i64>,
    count: usize,
}

impl Ids {
    /// Id `i`, None past the last.
    pub fn get(&self, i: usize) -> Option<i64> {
        if i >= self.count {
            return None;
        }
        let first = self.firsts.get(i / IDS_PER_BLOCK)?;
        // Below 4096: the block's own sequence numbers.
        Some(first + (i % IDS_PER_BLOCK) as i64)
    }

    pub fn len(&self) -> usize {
        self.count
    }

    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    pub fn first(&self) -> Option<i64> {
        self.get(0)
    }
}

/// A worker id in `0..=1023` (10 bits).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WorkerId(u16);

impl WorkerId {
    pub const MAX: u16 = (1 << WORKER_BITS) - 1;

    pub fn new(id: u16) -> Option<WorkerId> {
        (id <= Self::MAX).then_some(WorkerId(id))
    }

    pub fn get(self) -> u16 {
        self.0
    }
}

/// Time source, injected so that tests can drive it.
pub trait Clock: Send + Sync {
    /// Milliseconds since the Unix epoch.
    fn now_millis(&self) -> u64;
    /// Waits about `millis` milliseconds.
    fn sleep_millis(&self, millis: u64);
}

/// The system's wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_millis(&self) -> u64 {
        // A clock set before 1970 reads as 0, which `next_id` reports as
        // "before the epoch" instead of panicking here.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |since| {
                u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
            })
    }

    fn sleep_millis(&self, millis: u64) {
        std::thread::sleep(Duration::from_millis(millis));
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum SnowflakeError {
    #[error("clock moved backwards by {0} ms, more than the tolerated max_clock_backward_ms")]
    ClockMovedBackwards(u64),
    #[error("clock reads before the snowflake epoch")]
    BeforeEpoch,
    #[error("the 41-bit timestamp is exhausted: the epoch is more than 69 years ago")]
    TimestampExhausted,
}

#[derive(Debug, Default)]
struct State {
    /// Milliseconds since the epoch of the last id; `None` before the first.
    last_millis: Option<u64>,
    sequence: u16,
    /// Counts new milliseconds, to cycle the sequence's start offset.
    milliseconds_seen: u16,
    /// Ids returned so far.
    issued: u64,
}

#[derive(Debug)]
pub struct SnowflakeGenerator<C: Clock = SystemClock> {
    clock: C,
    epoch: Epoch,
    worker_id: WorkerId,
    max_clock_backward_ms: u64,
    state: Mutex<State>,
}

impl<C: Clock> SnowflakeGenerator<C> {
    pub fn new(config: &crate::config::SnowflakeConfig, clock: C) -> Self {
        SnowflakeGenerator {
            clock,
            epoch: config.epoch,
            worker_id: config.worker_id,
            max_clock_backward_ms: config.max_clock_backward_ms,
            state: Mutex::new(State::default()),
        }
    }

    /// The next id, greater than every id this generator returned before.
    /// Holds the lock while waiting out a small clock step-back or a full
    /// millisecond: callers would have to wait for a valid id anyway.
    pub fn next_id(&self) -> Result<i64, SnowflakeError> {
        self.next_block(1)
    }

    /// `count` ids for the rows of one statement, each greater than every
    /// id returned before. Up to a millisecond's sequence (4,096) they are
    /// consecutive, as one server's AUTO_INCREMENT gives a multi-row INSERT:
    /// drivers report every row's key from the first (JDBC's generated
    /// keys, `lastrowid`).
    pub fn next_ids(&self, count: usize) -> Result<Ids, SnowflakeError> {
        let mut firsts = Vec::with_capacity(count.div_ceil(IDS_PER_BLOCK));
        let mut left = count;
        while left > 0 {
            let block = left.min(IDS_PER_BLOCK);
            // At most MAX_SEQUENCE + 1: fits a u16.
            let n = u16::try_from(block).unwrap_or(MAX_SEQUENCE);
            firsts.push(self.next_block(n)?);
            left -= usize::from(n);
        }
        Ok(Ids { firsts, count })
    }

    /// The first of `count` (1 ..= MAX_SEQUENCE + 1) consecutive ids: one
    /// millisecond's sequence numbers in a row.
    fn next_block(&self, count: u16) -> Result<i64, SnowflakeError> {
        let last_of_block = count.saturating_sub(1);
        // The state is updated only once an id is certain, so a panic in
        // another holder cannot have left it inconsistent.
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut now = self.millis_since_epoch()?;
        if let Some(last) = state.last_millis {
            if now < last {
                let behind = last - now;
                if behind > self.max_clock_backward_ms {
                    return Err(SnowflakeError::ClockMovedBackwards(behind));
                }
                self.clock.sleep_millis(behind);
                now = self.millis_since_epoch()?;
                if now < last {
                    return Err(SnowflakeError::ClockMovedBackwards(last - now));
                }
            }
            if now == last {
                let first = state.sequence.saturating_add(1);
                if first <= MAX_SEQUENCE - last_of_block {
                    state.sequence = first + last_of_block;
                    state.issued += u64::from(count);
                    return Ok(self.compose(now, first));
                }
                now = self.wait_past(last)?;
            }
        }
        state.milliseconds_seen = state.milliseconds_seen.wrapping_add(1);
        let first = (state.milliseconds_seen % START_OFFSETS).min(MAX_SEQUENCE - last_of_block);
        state.sequence = first + last_of_block;
        state.last_millis = Some(now);
        state.issued += u64::from(count);
        Ok(self.compose(now, first))
    }

    /// How many ids this generator has returned.
    pub fn issued(&self) -> u64 {
        self.state
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .issued
    }

    fn wait_past(&self, last: u64) -> Result<u64, SnowflakeError> {
        loop {
            let now = self.millis_since_epoch()?;
            if now > last {
                return Ok(now);
            }
            self.clock.sleep_millis(1);
        }
    }

    fn millis_since_epoch(&self) -> Result<u64, SnowflakeError> {
        let since = self
            .clock
            .now_millis()
            .checked_sub(self.epoch.unix_millis())
            .ok_or(SnowflakeError::BeforeEpoch)?;
        if since > MAX_TIMESTAMP {
            return Err(SnowflakeError::TimestampExhausted);
        }
        Ok(since)
    }

    fn compose(&self, millis: u64, sequence: u16) -> i64 {
        let id = millis << (WORKER_BITS + SEQUENCE_BITS)
            | u64::from(self.worker_id.get()) << SEQUENCE_BITS
            | u64::from(sequence);
        // 41 + 10 + 12 = 63 bits: always a positive i64.
        id as i64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SnowflakeConfig;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::Arc;

    /// A clock tests move by hand; sleeping advances it.
    #[derive(Debug, Default)]
    struct ManualClock(AtomicU64);

    impl ManualClock {
        fn set(&self, millis: u64) {
            self.0.store(millis, Ordering::SeqCst);
        }
    }

    impl Clock for &ManualClock {
        fn now_millis(&self) -> u64 {
            self.0.load(Ordering::SeqCst)
        }

        fn sleep_millis(&self, millis: u64) {
            self.0.fetch_add(millis, Ordering::SeqCst);
        }
    }

    const EPOCH: u64 = 1_704_067_200_000;

    fn generator(
        clock: &ManualClock,
        worker: u16,
        tolerance: u64,
    ) -> SnowflakeGenerator<&ManualClock> {
        let config = SnowflakeConfig {
            epoch: Epoch::from_unix_millis(EPOCH),
            worker_id: WorkerId::new(worker).unwrap(),
            max_clock_backward_ms: tolerance,
        };
        SnowflakeGenerator::new(&config, clock)
    }

    fn parts(id: i64) -> (i64, i64, i64) {
        (id >> 22, (id >> 12) & 0x3ff, id & 0xfff)
    }

    #[test]
    fn layout_is_millis_worker_sequence() {
        let clock = ManualClock::default();
        clock.set(EPOCH + 1_000);
        let ids = generator(&clock, 7, 10);
        let (millis, worker, sequence) = parts(ids.next_id().unwrap());
        assert_eq!((millis, worker), (1_000, 7));
        let (_, _, next_sequence) = parts(ids.next_id().unwrap());
        assert_eq!(next_sequence, sequence + 1);
    }

    #[test]
    fn sequence_start_cycles_across_milliseconds() {
        let clock = ManualClock::default();
        let ids = generator(&clock, 0, 10);
        let starts: Vec<i64> = (0..130)
            .map(|step| {
                clock.set(EPOCH + step);
                parts(ids.next_id().unwrap()).2
            })
            .collect();
        let mut residues = [0u32; 64];
        for start in &starts {
            residues[(*start % 64) as usize] += 1;
        }
        assert!(
            residues.iter().all(|count| (2..=3).contains(count)),
            "{residues:?}"
        );
    }

    #[test]
    fn exhausted_sequence_waits_for_the_next_millisecond() {
        let clock = ManualClock::default();
        clock.set(EPOCH + 5);
        let ids = generator(&clock, 0, 10);
        let mut previous = ids.next_id().unwrap();
        for _ in 0..5_000 {
            let id = ids.next_id().unwrap();
            assert!(id > previous);
            previous = id;
        }
        assert!(parts(previous).0 > 5, "the clock had to move on");
    }

    fn all(ids: &Ids) -> Vec<i64> {
        (0..ids.len()).map_while(|i| ids.get(i)).collect()
    }

    #[test]
    fn a_statements_ids_are_consecutive_even_across_a_millisecond() {
        let clock = ManualClock::default();
        clock.set(EPOCH + 5);
        let ids = generator(&clock, 0, 10);
        // Fill the millisecond but for two sequence numbers.
        let mut previous = ids.next_id().unwrap();
        while parts(previous).2 < i64::from(MAX_SEQUENCE - 2) {
            previous = ids.next_id().unwrap();
        }
        let block = all(&ids.next_ids(3).unwrap());
        assert_eq!(block.len(), 3);
        assert!(block[0] > previous, "the clock had to move on");
        assert!(block.windows(2).all(|w| w[1] == w[0] + 1), "{block:?}");
        // More than a millisecond holds: increasing, in blocks of
        // consecutive ids.
        let many = ids.next_ids(10_000).unwrap();
        assert_eq!(many.len(), 10_000);
        assert_eq!(many.get(10_000), None);
        let many = all(&many);
        assert_eq!(many.len(), 10_000);
        assert!(many[0] > block[2] && many.windows(2).all(|w| w[1] > w[0]));
        for run in [&many[..4096], &many[4096..8192], &many[8192..]] {
            assert!(run.windows(2).all(|w| w[1] == w[0] + 1));
        }
        assert!(ids.next_ids(0).unwrap().is_empty());
    }

    #[test]
    fn small_step_back_is_waited_out_large_one_fails() {
        let clock = ManualClock::default();
        clock.set(EPOCH + 100);
        let ids = generator(&clock, 0, 10);
        let first = ids.next_id().unwrap();
        clock.set(EPOCH + 95);
        let second = ids.next_id().unwrap();
        assert!(second > first);
        clock.set(EPOCH + 50);
        assert_eq!(ids.next_id(), Err(SnowflakeError::ClockMovedBackwards(50)));
    }

    #[test]
    fn clock_before_epoch_is_an_error() {
        let clock = ManualClock::default();
        clock.set(EPOCH - 1);
        assert_eq!(
            generator(&clock, 0, 10).next_id(),
            Err(SnowflakeError::BeforeEpoch)
        );
    }

    #[test]
    fn worker_ids_are_ten_bits() {
        assert!(WorkerId::new(1023).is_some());
        assert!(WorkerId::new(1024).is_none());
    }

    #[test]
    fn threads_never_see_the_same_id() {
        let ids = Arc::new(SnowflakeGenerator::new(
            &SnowflakeConfig::default(),
            SystemClock,
        ));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let ids = Arc::clone(&ids);
                std::thread::spawn(move || {
                    (0..20_000)
                        .map(|_| ids.next_id().unwrap())
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        let mut all: Vec<i64> = handles
            .into_iter()
            .flat_map(|handle| handle.join().unwrap())
            .collect();
        let total = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), total);
    }
}
