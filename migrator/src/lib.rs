//! `shardgate-migrator`: moves a sharded logical table to a new layout
//! (more tables per data source, more data sources, new month tables) in
//! place, while the application keeps writing through ShardGate.
//!
//! A job: plan ([`plan`]), create the new-layout tables and record each
//! source primary's binlog position, lock-and-copy the rows ([`copy`]),
//! apply the captured changes at their new places ([`apply`]), verify
//! ([`verify`]) while the change streams keep it current ([`catchup`]),
//! then switch the proxies over ([`cutover`], [`switch`], through
//! [`proxies`]); its state lives in a local JSON file ([`state`]).

pub mod apply;
pub mod backend;
pub mod catchup;
pub mod copy;
pub mod cutover;
pub mod error;
pub mod job;
pub mod layout;
pub mod lifecycle;
pub mod plan;
pub mod progress;
pub mod proxies;
pub mod retention;
pub mod retry;
pub mod schema;
pub mod state;
pub mod status;
pub mod switch;
pub mod throttle;
pub mod values;
pub mod verify;

pub use error::MigrateError;
