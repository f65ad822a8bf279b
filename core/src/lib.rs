//! ShardGate's core, with no wire protocol in it, generic over a
//! [`backend::Backend`] (a kind of data source: its connections, its SQL
//! dialect): the proxy's state ([`proxy`]: configuration versions, logical
//! databases, pause, reload, staging, the session registry); the pools that
//! share connections to the data sources between sessions, over any
//! [`backend::Connection`]; replicas (their monitor over
//! [`backend::Replicated`], the balancer, the read watermarks over a
//! [`backend::ReplicaPosition`]); the backend layer's errors; metrics,
//! alerts and the admin HTTP API. A protocol crate (`shardgate-mysql`)
//! implements the traits; the proxy wires them together.

pub mod access;
pub mod admin;
pub mod admission;
pub mod alerts;
pub mod backend;
pub mod data_source_tls;
pub mod databases;
pub mod error;
pub mod execute;
pub mod idle;
pub mod log_limit;
pub mod metrics;
pub mod net;
pub mod pause;
pub mod proxy;
pub mod reload;
pub mod replica;
pub mod session_conns;
pub mod session_vars;
pub mod sessions;
pub mod staging;
pub mod tls;
pub mod transaction;
