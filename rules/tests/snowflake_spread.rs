//! One million snowflake ids from one generator on the real clock: unique,
//! strictly increasing, and spread evenly over the seed's 64 `users` tables.

use shardgate_rules::config::SnowflakeConfig;
use shardgate_rules::{SnowflakeGenerator, SystemClock};

const IDS: usize = 1_000_000;
const USERS_TABLES: usize = 64;

#[test]
fn a_million_ids_are_increasing_and_spread_within_ten_percent() {
    let generator = SnowflakeGenerator::new(&SnowflakeConfig::default(), SystemClock);
    let mut per_table = [0usize; USERS_TABLES];
    let mut previous = -1i64;
    for _ in 0..IDS {
        let id = generator.next_id().unwrap();
        assert!(id > previous, "{id} after {previous}");
        previous = id;
        // The seed's users layout: data source id % 4, table (id / 4) % 16.
        let table = (id % 4) * 16 + (id / 4) % 16;
        per_table[table as usize] += 1;
    }
    let even = IDS as f64 / USERS_TABLES as f64;
    for (table, count) in per_table.iter().enumerate() {
        let ratio = *count as f64 / even;
        assert!(
            (0.9..=1.1).contains(&ratio),
            "table {table} got {count} ids ({ratio:.3} of even)"
        );
    }
}
