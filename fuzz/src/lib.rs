//! What the fuzz targets share: the seed's sharding rules, a reader that
//! hands out an in-memory stream a few bytes at a time, and a way to run
//! the protocol's async readers over it without a runtime.

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use shardgate_rules::{Config, ShardingRules, SnowflakeGenerator, SystemClock};

pub mod trickle;

pub use trickle::Trickle;

/// The shipped example configuration: the rules the golden plans use.
pub const WEWORK_TOML: &str = include_str!("../../examples/wework.toml");

/// The example's logical database (its `server.database`).
pub const LOGICAL_DB: &str = "wework";

/// The example's configuration, its rules and a key generator, built once
/// per fuzzing process.
pub struct Seed {
    pub config: Config,
    pub rules: ShardingRules,
    pub keys: SnowflakeGenerator,
}

pub fn seed() -> &'static Seed {
    static SEED: OnceLock<Seed> = OnceLock::new();
    SEED.get_or_init(|| {
        let config = Config::from_toml_str(WEWORK_TOML).expect("examples/wework.toml parses");
        let rules = ShardingRules::new(&config).expect("examples/wework.toml routes");
        let keys = SnowflakeGenerator::new(&config.snowflake, SystemClock);
        Seed {
            config,
            rules,
            keys,
        }
    })
}

/// Runs a future that reads an in-memory stream to completion. Such a
/// future never waits, so one poll must finish it; a `Pending` would mean
/// the reader waits on something that never comes, and fails the target.
pub fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(out) => out,
        Poll::Pending => panic!("a read of an in-memory stream did not complete"),
    }
}
