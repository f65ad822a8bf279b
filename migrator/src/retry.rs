//! Retrying a target transaction that InnoDB rolled back as a deadlock
//! victim (1213) or after a lock wait timeout (1205): the copy and the
//! change streams write the same target tables at once, so such conflicts
//! are expected, and both writers are idempotent (`REPLACE`, `DELETE` by
//! key), so running the whole transaction again is safe.

use crate::error::MigrateError;
use std::future::Future;
use std::time::Duration;

/// Tries of one transaction before its error is returned.
const TRIES: u32 = 6;

/// MariaDB's ER_LOCK_DEADLOCK and ER_LOCK_WAIT_TIMEOUT.
const RETRYABLE_CODES: [u16; 2] = [1213, 1205];

/// Whether the error is a rolled-back transaction worth running again.
pub fn is_retryable(error: &MigrateError) -> bool {
    matches!(
        error,
        MigrateError::Db {
            source: mysql_async::Error::Server(server),
            ..
        } if RETRYABLE_CODES.contains(&server.code)
    )
}

/// Runs `transaction` until it succeeds, fails otherwise, or has been
/// tried [`TRIES`] times, waiting a little longer after each conflict.
pub async fn retried<T, F, Fut>(mut transaction: F) -> Result<T, MigrateError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, MigrateError>>,
{
    let mut tries = 0;
    loop {
        tries += 1;
        match transaction().await {
            Err(error) if tries < TRIES && is_retryable(&error) => {
                tracing::debug!(%error, tries, "transaction conflict; running it again");
                tokio::time::sleep(Duration::from_millis(10 * u64::from(tries))).await;
            }
            result => return result,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};

    fn server_error(code: u16) -> MigrateError {
        MigrateError::Db {
            context: "test".into(),
            source: mysql_async::Error::Server(mysql_async::ServerError {
                code,
                message: "conflict".into(),
                state: "40001".into(),
            }),
        }
    }

    #[tokio::test]
    async fn conflicts_are_retried_and_other_errors_are_not() {
        let calls = AtomicU32::new(0);
        let result = retried(|| async {
            match calls.fetch_add(1, Ordering::Relaxed) {
                0 => Err(server_error(1213)),
                1 => Err(server_error(1205)),
                _ => Ok("done"),
            }
        })
        .await;
        assert_eq!(result.unwrap(), "done");
        assert_eq!(calls.load(Ordering::Relaxed), 3);

        calls.store(0, Ordering::Relaxed);
        let result: Result<(), _> = retried(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(server_error(1062))
        })
        .await;
        assert!(!is_retryable(&result.unwrap_err()));
        assert_eq!(calls.load(Ordering::Relaxed), 1);

        calls.store(0, Ordering::Relaxed);
        let result: Result<(), _> = retried(|| async {
            calls.fetch_add(1, Ordering::Relaxed);
            Err(server_error(1213))
        })
        .await;
        assert!(is_retryable(&result.unwrap_err()));
        assert_eq!(calls.load(Ordering::Relaxed), TRIES);
    }
}
