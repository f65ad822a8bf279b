//! Property tests of routing under the seed's rules (examples/wework.toml):
//! every value has exactly one declared home, and range routing never
//! misses a node that holds a matching value nor leaves the declared set.

use proptest::prelude::*;
use shardgate_rules::datetime::DateTime;
use shardgate_rules::{Condition, Config, DataNode, ShardValue, ShardingRules};
use std::sync::OnceLock;

const EXAMPLE: &str = include_str!("../../examples/wework.toml");

fn rules() -> &'static ShardingRules {
    static RULES: OnceLock<ShardingRules> = OnceLock::new();
    RULES.get_or_init(|| ShardingRules::new(&Config::from_toml_str(EXAMPLE).unwrap()).unwrap())
}

/// A DATETIME text in 2024, with or without time and fraction.
fn date_in_2024() -> impl Strategy<Value = String> {
    (
        1u32..=12,
        1u32..=31,
        0u32..24,
        0u32..60,
        0u32..60,
        0u32..1_000_000,
        0..3,
    )
        .prop_map(|(month, day, hour, minute, second, micros, form)| {
            let days = [31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31][month as usize - 1];
            let date = format!("2024-{month:02}-{:02}", day.min(days));
            match form {
                0 => date,
                1 => format!("{date} {hour:02}:{minute:02}:{second:02}"),
                _ => format!("{date} {hour:02}:{minute:02}:{second:02}.{micros:06}"),
            }
        })
}

fn text(value: &str) -> ShardValue {
    ShardValue::Text(value.to_string())
}

fn user_home(user_id: i64) -> DataNode {
    rules()
        .route_row("users", &[("user_id", ShardValue::Int(user_id))])
        .unwrap()
}

proptest! {
    #[test]
    fn every_user_id_has_exactly_one_declared_home(user_id in 0i64..=i64::MAX) {
        let routed = rules().route("users", &Condition::Eq("user_id".into(), ShardValue::Int(user_id))).unwrap();
        prop_assert_eq!(routed.len(), 1);
        prop_assert!(rules().nodes("users").contains(&routed[0]));
        prop_assert_eq!(&routed[0], &user_home(user_id));
        let expected = DataNode::new(format!("ds{}", user_id % 4), format!("users_{}", (user_id / 4) % 16));
        prop_assert_eq!(&routed[0], &expected);
    }

    #[test]
    fn every_tenant_and_2024_date_has_exactly_one_declared_home(tenant in any::<String>(), created_at in date_in_2024()) {
        let condition = Condition::And(vec![
            Condition::Eq("tenant_id".into(), text(&tenant)),
            Condition::Eq("created_at".into(), text(&created_at)),
        ]);
        let routed = rules().route("message_records", &condition).unwrap();
        prop_assert_eq!(routed.len(), 1);
        prop_assert!(rules().nodes("message_records").contains(&routed[0]));
        let row = [("tenant_id", text(&tenant)), ("created_at", text(&created_at))];
        prop_assert_eq!(&rules().route_row("message_records", &row).unwrap(), &routed[0]);
        let expected = DataNode::new(
            format!("ds{}", crc32fast::hash(tenant.as_bytes()) % 4),
            format!("message_records_{}{}", &created_at[..4], &created_at[5..7]),
        );
        prop_assert_eq!(&routed[0], &expected);
    }

    #[test]
    fn integer_tenants_use_value_mod_four(tenant in any::<i64>()) {
        let routed = rules().route("message_records", &Condition::Eq("tenant_id".into(), ShardValue::Int(tenant))).unwrap();
        prop_assert_eq!(routed.len(), 12);
        let source = format!("ds{}", tenant.rem_euclid(4));
        prop_assert!(routed.iter().all(|node| node.data_source == source));
    }

    #[test]
    fn user_id_ranges_cover_every_matching_row(low in -1_000i64..1_000, width in 0i64..200, probe in 0i64..200) {
        let high = low + width;
        let routed = rules().route("users", &Condition::Between("user_id".into(), ShardValue::Int(low), ShardValue::Int(high))).unwrap();
        let declared = rules().nodes("users");
        prop_assert!(routed.iter().all(|node| declared.contains(node)));
        let value = low + probe % (width + 1);
        if value >= 0 {
            prop_assert!(routed.contains(&user_home(value)));
        }
    }

    #[test]
    fn date_ranges_cover_matching_months_and_nothing_outside(a in date_in_2024(), b in date_in_2024(), probe in date_in_2024(), tenant in "[a-z]{1,8}") {
        let instant = |text: &str| DateTime::parse(text).unwrap();
        let (low, high) = if instant(&a) <= instant(&b) { (a, b) } else { (b, a) };
        let (low_at, high_at, probe_at) = (instant(&low), instant(&high), instant(&probe));
        let declared = rules().nodes("message_records");
        let conditions = [
            Condition::Between("created_at".into(), text(&low), text(&high)),
            Condition::And(vec![Condition::Ge("created_at".into(), text(&low)), Condition::Lt("created_at".into(), text(&high))]),
            Condition::Gt("created_at".into(), text(&low)),
            Condition::Le("created_at".into(), text(&high)),
        ];
        let probe_matches = [
            low_at <= probe_at && probe_at <= high_at,
            low_at <= probe_at && probe_at < high_at,
            probe_at > low_at,
            probe_at <= high_at,
        ];
        let home = rules()
            .route_row("message_records", &[("tenant_id", text(&tenant)), ("created_at", text(&probe))])
            .unwrap();
        for (condition, matches) in conditions.iter().zip(probe_matches) {
            let routed = rules().route("message_records", condition).unwrap();
            prop_assert!(routed.iter().all(|node| declared.contains(node)));
            if matches {
                prop_assert!(routed.contains(&home), "{:?} misses {}", condition, probe);
            }
            // Only months the range touches: every routed month lies within it.
            let months: Vec<&str> = routed.iter().map(|node| &node.table["message_records_".len()..]).collect();
            let low_month = format!("{}{}", &low[..4], &low[5..7]);
            let high_month = format!("{}{}", &high[..4], &high[5..7]);
            if let Condition::Between(..) = condition {
                prop_assert!(months.iter().all(|month| *month >= low_month.as_str() && *month <= high_month.as_str()));
            }
        }
    }
}

#[test]
fn the_seed_rules_on_known_values() {
    assert_eq!(user_home(0).to_string(), "ds0.users_0");
    assert_eq!(user_home(5).to_string(), "ds1.users_1");
    assert_eq!(user_home(67).to_string(), "ds3.users_0");
    // MySQL: SELECT CRC32('acme') gives 96778814, and 96778814 % 4 = 2.
    assert_eq!(crc32fast::hash(b"acme"), 96_778_814);
    let row = [
        ("tenant_id", text("acme")),
        ("created_at", text("2024-02-29 23:59:59")),
    ];
    assert_eq!(
        rules()
            .route_row("message_records", &row)
            .unwrap()
            .to_string(),
        "ds2.message_records_202402"
    );
}
