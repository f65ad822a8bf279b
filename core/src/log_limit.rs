//! Log lines a client can cause (failed logins, refused connections) come
//! at most once per period, with how many were held back since, so that a
//! flood of them cannot flood the log.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// One kind of line, let through at most once per `period`.
pub struct LogLimit {
    period: Duration,
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    last: Option<Instant>,
    held_back: u64,
}

impl LogLimit {
    pub const fn new(period: Duration) -> Self {
        LogLimit {
            period,
            state: Mutex::new(State {
                last: None,
                held_back: 0,
            }),
        }
    }

    /// Whether to log this occurrence now: Some(how many were held back
    /// since the last line), or None to stay quiet.
    pub fn allow(&self) -> Option<u64> {
        self.allow_at(Instant::now())
    }

    fn allow_at(&self, now: Instant) -> Option<u64> {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if state
            .last
            .is_some_and(|last| now.saturating_duration_since(last) < self.period)
        {
            state.held_back += 1;
            return None;
        }
        state.last = Some(now);
        Some(std::mem::take(&mut state.held_back))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_with_the_count_held_back() {
        let limit = LogLimit::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(limit.allow_at(t0), Some(0));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(1)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(9)), None);
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(10)), Some(2));
        assert_eq!(limit.allow_at(t0 + Duration::from_secs(11)), None);
    }
}
