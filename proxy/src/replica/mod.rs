//! Replicas: their GTID positions, the monitor that keeps each one in or
//! out of the read rotation, and the balancer that picks one for a read.

pub mod balance;
pub mod gtid;
pub mod monitor;
