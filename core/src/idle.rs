//! How long a session may wait for its next command before it is closed
//! (MariaDB's `wait_timeout`), whatever protocol it speaks: `wait` after
//! its last command ended. One timer per session, moved only when it fires
//! early (the session was busy since it was set) or `wait` changes, so
//! that a busy session pays no timer per command.

use std::future::Future;
use std::pin::Pin;
use std::task::{Poll, Waker};
use std::time::{Duration, Instant};

use tokio::time::Sleep;

/// One session's idle deadline.
pub struct IdleDeadline {
    timer: Pin<Box<Sleep>>,
    /// The waker the timer holds: it wakes the session when it fires, and
    /// needs no polling until then while the session's waker is this one.
    armed: Option<Waker>,
    wait: Duration,
    since: Instant,
}

impl IdleDeadline {
    pub fn new(wait: Duration) -> Self {
        IdleDeadline {
            timer: Box::pin(tokio::time::sleep(wait)),
            armed: None,
            wait,
            since: Instant::now(),
        }
    }

    /// The session's `wait_timeout` now (a SET may have changed it).
    pub fn follow(&mut self, wait: Duration) {
        if wait != self.wait {
            self.wait = wait;
            self.timer.as_mut().reset((self.since + wait).into());
            self.armed = None;
        }
    }

    pub fn command_ended(&mut self, at: Instant) {
        self.since = at;
    }

    /// What `next` (the read of the next command) gives, or None when it
    /// has not come within `wait` of the last command's end. The timer
    /// firing early only moves it: `next` goes on.
    pub async fn within<F: Future>(&mut self, next: F) -> Option<F::Output> {
        let mut next = std::pin::pin!(next);
        std::future::poll_fn(|cx| {
            if let Poll::Ready(out) = next.as_mut().poll(cx) {
                return Poll::Ready(Some(out));
            }
            // The timer is polled only to hand it a new waker, or once it
            // has fired: not on every read.
            loop {
                let armed = self.armed.as_ref().is_some_and(|w| w.will_wake(cx.waker()));
                if armed && !self.timer.is_elapsed() {
                    return Poll::Pending;
                }
                if self.timer.as_mut().poll(cx).is_pending() {
                    self.armed = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let due = self.since + self.wait;
                if Instant::now() >= due {
                    return Poll::Ready(None);
                }
                self.timer.as_mut().reset(due.into());
                self.armed = None;
            }
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WAIT: Duration = Duration::from_millis(60);

    #[tokio::test]
    async fn a_command_in_time_comes_through_and_silence_ends_the_wait() {
        let mut idle = IdleDeadline::new(WAIT);
        assert_eq!(idle.within(async { 7 }).await, Some(7));
        assert_eq!(idle.within(std::future::pending::<()>()).await, None);
    }

    #[tokio::test]
    async fn the_deadline_counts_from_the_last_command_and_follows_wait() {
        let mut idle = IdleDeadline::new(WAIT);
        tokio::time::sleep(WAIT / 2).await;
        idle.command_ended(Instant::now());
        // Fires early, at the first deadline, and moves: the read that
        // arrives after it but within `wait` of the command comes through.
        let late = async {
            tokio::time::sleep(WAIT * 3 / 4).await;
            1
        };
        assert_eq!(idle.within(late).await, Some(1));
        idle.command_ended(Instant::now());
        idle.follow(WAIT * 20);
        let later = async {
            tokio::time::sleep(WAIT * 2).await;
            2
        };
        assert_eq!(idle.within(later).await, Some(2), "a longer wait_timeout");
    }
}
