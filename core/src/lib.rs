//! ShardGate's core, with no wire protocol in it: the pools that share
//! connections to the data sources between sessions, over any connection
//! that implements [`backend::Connection`] (and a replica's position
//! through [`backend::ReplicaPosition`]), replicas (their monitor over
//! [`backend::Replicated`], the balancer, the read watermarks), the backend
//! layer's errors, metrics and alerts. A protocol crate (`shardgate-mysql`) implements the
//! traits; the proxy wires them together.

pub mod alerts;
pub mod backend;
pub mod error;
pub mod metrics;
pub mod replica;
