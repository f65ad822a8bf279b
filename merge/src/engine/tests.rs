//! Merge tests on synthetic node streams.

use super::super::column::{ColumnMeta, TypeClass};
use super::super::plan::{Aggregate, AggregateKind, Compared, SortKey};
use super::*;

struct VecSource(std::vec::IntoIter<Vec<Value>>);

impl RowSource for VecSource {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        Ok(self.0.next())
    }
}

/// `count` rows `[start + step·n]`, generated on demand.
struct CountingSource {
    next: i64,
    step: i64,
    left: u64,
}

impl RowSource for CountingSource {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        if self.left == 0 {
            return Ok(None);
        }
        self.left -= 1;
        let v = self.next;
        self.next += self.step;
        Ok(Some(vec![Value::Int(v)]))
    }
}

struct FailingSource;

impl RowSource for FailingSource {
    async fn next_row(&mut self) -> Result<Option<Vec<Value>>, MergeError> {
        Err(MergeError::Source("ds1: connection reset".into()))
    }
}

#[derive(Default)]
struct Collect(Vec<Vec<Value>>);

/// A client that goes away after taking `.0` rows.
struct GoneAfter(usize);

impl RowSink for GoneAfter {
    async fn push_row(&mut self, _row: &[Value]) -> Result<(), MergeError> {
        match self.0.checked_sub(1) {
            Some(left) => {
                self.0 = left;
                Ok(())
            }
            None => Err(MergeError::Sink("broken pipe".into())),
        }
    }
}

impl RowSink for Collect {
    async fn push_row(&mut self, row: &[Value]) -> Result<(), MergeError> {
        self.0.push(row.to_vec());
        Ok(())
    }
}

fn col(name: &str, class: TypeClass, decimals: u8) -> ColumnMeta {
    ColumnMeta::new(name, class).with_decimals(decimals)
}

fn sources(nodes: Vec<Vec<Vec<Value>>>) -> Vec<VecSource> {
    nodes
        .into_iter()
        .map(|rows| VecSource(rows.into_iter()))
        .collect()
}

async fn run<S: RowSource>(
    plan: &MergePlan,
    nodes: Vec<S>,
) -> Result<(Vec<Vec<Value>>, MergeStats), MergeError> {
    let mut sink = Collect::default();
    let stats = merge(plan, nodes, &mut sink).await?;
    assert_eq!(stats.rows_out, sink.0.len() as u64);
    Ok((sink.0, stats))
}

fn s(v: &str) -> Value {
    Value::Bytes(v.as_bytes().to_vec())
}

fn i(v: i64) -> Value {
    Value::Int(v)
}

fn d(v: &str) -> Value {
    Value::Decimal(v.to_owned())
}

fn key(column: usize, weight: Option<usize>, descending: bool) -> SortKey {
    SortKey {
        item: Compared { column, weight },
        descending,
    }
}

fn ints(rows: &[Vec<Value>]) -> Vec<i64> {
    rows.iter()
        .map(|r| match r[0] {
            Value::Int(v) => v,
            ref other => panic!("not an int: {other:?}"),
        })
        .collect()
}

/// Three nodes, sorted by `name` (by collation weight, NULL first) then `id` DESC.
#[tokio::test]
async fn order_by_weight_then_desc_across_three_nodes() {
    let columns = vec![
        col("name", TypeClass::Bytes, 0),
        col("id", TypeClass::Int { width: 4 }, 0),
        ColumnMeta::new("w", TypeClass::Bytes),
    ];
    let mut plan = MergePlan::new(columns, 2);
    plan.order_by = vec![key(0, Some(2), false), key(1, None, true)];
    let row = |name: Option<&str>, id: i64| {
        let (n, w) = match name {
            Some(n) => (s(n), s(&n.to_uppercase())),
            None => (Value::Null, Value::Null),
        };
        vec![n, i(id), w]
    };
    let nodes = vec![
        vec![row(None, 5), row(Some("a"), 3), row(Some("b"), 9)],
        vec![row(None, 7), row(Some("A"), 4), row(Some("c"), 1)],
        vec![row(Some("a"), 4), row(Some("B"), 10), row(Some("b"), 2)],
    ];
    let (rows, stats) = run(&plan, sources(nodes)).await.unwrap();
    let expected = vec![
        vec![Value::Null, i(7)],
        vec![Value::Null, i(5)],
        vec![s("A"), i(4)],
        vec![s("a"), i(4)],
        vec![s("a"), i(3)],
        vec![s("B"), i(10)],
        vec![s("b"), i(9)],
        vec![s("b"), i(2)],
        vec![s("c"), i(1)],
    ];
    assert_eq!(rows, expected);
    assert_eq!(stats.rows_in, 9);
    assert!(stats.peak_buffered <= 4);
}

#[tokio::test]
async fn desc_puts_nulls_last_and_no_order_concatenates() {
    let mut plan = MergePlan::new(vec![col("id", TypeClass::Int { width: 8 }, 0)], 1);
    let nodes = || {
        sources(vec![
            vec![vec![i(3)], vec![i(1)], vec![Value::Null]],
            vec![vec![i(2)], vec![Value::Null]],
        ])
    };
    let (rows, _) = run(&plan, nodes()).await.unwrap();
    assert_eq!(rows[..3], [vec![i(3)], vec![i(1)], vec![Value::Null]]);
    plan.order_by = vec![key(0, None, true)];
    let (rows, _) = run(&plan, nodes()).await.unwrap();
    let expected = [
        vec![i(3)],
        vec![i(2)],
        vec![i(1)],
        vec![Value::Null],
        vec![Value::Null],
    ];
    assert_eq!(rows, expected);
}

fn interleaved(nodes: i64, per_node: u64) -> Vec<CountingSource> {
    (0..nodes)
        .map(|n| CountingSource {
            next: n,
            step: nodes,
            left: per_node,
        })
        .collect()
}

#[tokio::test]
async fn limit_and_offset_across_nodes() {
    let mut plan = MergePlan::new(vec![col("v", TypeClass::Int { width: 8 }, 0)], 1);
    plan.order_by = vec![key(0, None, false)];
    plan.offset = 12; // more than any single node holds
    plan.limit = Some(5);
    let (rows, stats) = run(&plan, interleaved(3, 10)).await.unwrap();
    assert_eq!(ints(&rows), [12, 13, 14, 15, 16]);
    assert!(stats.rows_in <= 17 + 3, "read {} rows", stats.rows_in);

    plan.limit = Some(100);
    let (rows, _) = run(&plan, interleaved(3, 10)).await.unwrap();
    assert_eq!(ints(&rows), (12..30).collect::<Vec<_>>());

    plan.order_by.clear();
    plan.offset = 15;
    plan.limit = Some(3);
    let (rows, _) = run(&plan, interleaved(2, 10)).await.unwrap();
    assert_eq!(ints(&rows), [11, 13, 15]);

    plan.limit = Some(0);
    let (rows, stats) = run(&plan, interleaved(2, 10)).await.unwrap();
    assert!(rows.is_empty());
    assert_eq!(stats.rows_in, 0);
}

#[tokio::test]
async fn deep_offset_streams_with_bounded_memory() {
    let mut plan = MergePlan::new(vec![col("v", TypeClass::Int { width: 8 }, 0)], 1);
    plan.order_by = vec![key(0, None, false)];
    plan.offset = 1_000_000;
    plan.limit = Some(10);
    let (rows, stats) = run(&plan, interleaved(3, 1_000_000)).await.unwrap();
    assert_eq!(ints(&rows), (1_000_000..1_000_010).collect::<Vec<_>>());
    assert!(stats.peak_buffered <= 4, "peak {}", stats.peak_buffered);
    assert!(stats.rows_in <= 1_000_010 + 3);
}

/// `grp, COUNT(*), SUM(x), AVG(x), name` with derived SUM(x), COUNT(x).
fn grouped_plan() -> MergePlan {
    let columns = vec![
        col("grp", TypeClass::Int { width: 4 }, 0),
        col("COUNT(*)", TypeClass::Int { width: 8 }, 0),
        col("SUM(x)", TypeClass::Decimal, 0),
        col("AVG(x)", TypeClass::Decimal, 4),
        col("name", TypeClass::Bytes, 0),
        col("sum_x", TypeClass::Decimal, 0),
        col("count_x", TypeClass::Int { width: 8 }, 0),
    ];
    let mut plan = MergePlan::new(columns, 5);
    plan.order_by = vec![key(0, None, false)];
    plan.group_by = Some(vec![Compared {
        column: 0,
        weight: None,
    }]);
    let agg = |column, kind| Aggregate {
        item: Compared {
            column,
            weight: None,
        },
        kind,
    };
    plan.aggregates = vec![
        agg(1, AggregateKind::Count),
        agg(2, AggregateKind::Sum),
        agg(3, AggregateKind::Avg { sum: 5, count: 6 }),
    ];
    plan
}

fn grouped_nodes() -> Vec<VecSource> {
    let r = |g, cnt, sum: Option<&str>, name, cx| {
        let sum = sum.map_or(Value::Null, d);
        vec![i(g), i(cnt), sum.clone(), d("9.9999"), s(name), sum, i(cx)]
    };
    sources(vec![
        vec![r(1, 1, Some("1"), "n0", 1), r(3, 2, None, "n0", 0)],
        vec![r(1, 1, Some("2"), "n1", 1), r(2, 4, Some("-7"), "n1", 3)],
        vec![r(3, 5, None, "n2", 0), r(4, 2, Some("2"), "n2", 3)],
    ])
}

#[tokio::test]
async fn group_by_merges_counts_sums_and_averages() {
    let plan = grouped_plan();
    let (rows, stats) = run(&plan, grouped_nodes()).await.unwrap();
    let expected = vec![
        vec![i(1), i(2), d("3"), d("1.5000"), s("n0")],
        vec![i(2), i(4), d("-7"), d("-2.3333"), s("n1")],
        vec![i(3), i(7), Value::Null, Value::Null, s("n0")],
        vec![i(4), i(2), d("2"), d("0.6667"), s("n2")],
    ];
    assert_eq!(rows, expected);
    assert_eq!(stats.rows_in, 6);
    assert!(stats.peak_buffered <= 5);
}

#[tokio::test]
async fn group_by_with_limit_and_offset() {
    let mut plan = grouped_plan();
    plan.offset = 1;
    plan.limit = Some(2);
    let (rows, _) = run(&plan, grouped_nodes()).await.unwrap();
    assert_eq!(ints(&rows), [2, 3]);
}

#[tokio::test]
async fn aggregates_without_group_by_over_empty_nodes() {
    let mut plan = grouped_plan();
    plan.order_by.clear();
    plan.group_by = Some(vec![]);
    let empty = || {
        vec![
            Value::Null,
            i(0),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
            i(0),
        ]
    };
    let nodes = sources(vec![vec![empty()], vec![empty()], vec![empty()]]);
    let (rows, _) = run(&plan, nodes).await.unwrap();
    let expected = vec![Value::Null, i(0), Value::Null, Value::Null, Value::Null];
    assert_eq!(rows, vec![expected.clone()]);
    // No node rows at all still yields the one row.
    let (rows, _) = run(&plan, sources(vec![vec![], vec![]])).await.unwrap();
    assert_eq!(rows, vec![expected]);
    // With rows: one total row.
    let (rows, _) = run(&plan, grouped_nodes()).await.unwrap();
    assert_eq!(
        rows,
        vec![vec![i(1), i(15), d("-2"), d("-0.2500"), s("n0")]]
    );
}

#[tokio::test]
async fn min_max_of_strings_use_weights() {
    let columns = vec![
        col("g", TypeClass::Int { width: 4 }, 0),
        col("MIN(s)", TypeClass::Bytes, 0),
        col("MAX(s)", TypeClass::Bytes, 0),
        ColumnMeta::new("w_min", TypeClass::Bytes),
        ColumnMeta::new("w_max", TypeClass::Bytes),
    ];
    let mut plan = MergePlan::new(columns, 3);
    plan.order_by = vec![key(0, None, false)];
    plan.group_by = Some(vec![Compared {
        column: 0,
        weight: None,
    }]);
    plan.aggregates = vec![
        Aggregate {
            item: Compared {
                column: 1,
                weight: Some(3),
            },
            kind: AggregateKind::Min,
        },
        Aggregate {
            item: Compared {
                column: 2,
                weight: Some(4),
            },
            kind: AggregateKind::Max,
        },
    ];
    // Weights: case-insensitive, and 'é' weighs like 'E'.
    let r =
        |min: &str, wmin: &str, max: &str, wmax: &str| vec![i(1), s(min), s(max), s(wmin), s(wmax)];
    let nodes = sources(vec![
        vec![r("b", "B", "é", "E")],
        vec![r("a", "A", "D", "D")],
        vec![vec![
            i(1),
            Value::Null,
            Value::Null,
            Value::Null,
            Value::Null,
        ]],
    ]);
    let (rows, _) = run(&plan, nodes).await.unwrap();
    assert_eq!(rows, vec![vec![i(1), s("a"), s("é")]]);
}

#[tokio::test]
async fn order_after_group_sorts_groups_and_caps_memory() {
    let mut plan = grouped_plan();
    // ORDER BY COUNT(*) DESC, grp
    plan.order_after_group = vec![key(1, None, true), key(0, None, false)];
    let (rows, stats) = run(&plan, grouped_nodes()).await.unwrap();
    assert_eq!(ints(&rows), [3, 2, 1, 4]);
    assert_eq!(stats.peak_buffered, 4);
    plan.limit = Some(1);
    plan.offset = 1;
    let (rows, _) = run(&plan, grouped_nodes()).await.unwrap();
    assert_eq!(ints(&rows), [2]);
    plan.max_buffered_rows = 3;
    // offset + limit = 2 groups fit the cap; all 4 groups do not.
    let (rows, _) = run(&plan, grouped_nodes()).await.unwrap();
    assert_eq!(ints(&rows), [2]);
    plan.limit = None;
    let err = run(&plan, grouped_nodes()).await.unwrap_err();
    assert!(matches!(err, MergeError::TooManyRows { cap: 3 }), "{err}");
    assert!(err.to_string().contains("max_buffered_rows"));
}

#[tokio::test]
async fn distinct_across_nodes() {
    let columns = vec![
        col("name", TypeClass::Bytes, 0),
        ColumnMeta::new("w", TypeClass::Bytes),
    ];
    let mut plan = MergePlan::new(columns, 1);
    plan.order_by = vec![key(0, Some(1), false)];
    plan.distinct = Some(vec![Compared {
        column: 0,
        weight: Some(1),
    }]);
    let r = |v: &str| vec![s(v), s(&v.to_uppercase())];
    let nodes = || {
        sources(vec![
            vec![vec![Value::Null, Value::Null], r("a"), r("c")],
            vec![r("A"), r("b"), r("c")],
            vec![vec![Value::Null, Value::Null], r("b"), r("d")],
        ])
    };
    let (rows, _) = run(&plan, nodes()).await.unwrap();
    let expected = vec![
        vec![Value::Null],
        vec![s("a")],
        vec![s("b")],
        vec![s("c")],
        vec![s("d")],
    ];
    assert_eq!(rows, expected);
    plan.offset = 1;
    plan.limit = Some(2);
    let (rows, _) = run(&plan, nodes()).await.unwrap();
    assert_eq!(rows, vec![vec![s("a")], vec![s("b")]]);
}

#[tokio::test]
async fn source_errors_and_bad_rows_fail_the_merge() {
    let mut plan = MergePlan::new(vec![col("v", TypeClass::Int { width: 8 }, 0)], 1);
    plan.order_by = vec![key(0, None, false)];
    let err = run(&plan, vec![FailingSource]).await.unwrap_err();
    assert!(matches!(err, MergeError::Source(_)));
    let nodes = sources(vec![vec![vec![i(1), i(2)]]]);
    let err = run(&plan, nodes).await.unwrap_err();
    assert!(matches!(err, MergeError::Malformed(_)));
    plan.visible = 2;
    let err = run(&plan, sources(vec![])).await.unwrap_err();
    assert!(matches!(err, MergeError::Plan(_)));
}

#[tokio::test]
async fn a_sink_that_fails_stops_the_merge_with_its_own_error() {
    let mut plan = MergePlan::new(vec![col("v", TypeClass::Int { width: 8 }, 0)], 1);
    plan.order_by = vec![key(0, None, false)];
    let nodes = sources(vec![vec![vec![i(1)], vec![i(3)]], vec![vec![i(2)]]]);
    let err = merge(&plan, nodes, &mut GoneAfter(2)).await.unwrap_err();
    assert!(matches!(err, MergeError::Sink(_)), "{err}");
}

#[tokio::test]
async fn count_distinct_merges_adjacent_values_per_group() {
    let columns = vec![
        col("g", TypeClass::Int { width: 4 }, 0),
        col("COUNT(DISTINCT v)", TypeClass::Int { width: 8 }, 0),
        col("v", TypeClass::Bytes, 0),
        ColumnMeta::new("w", TypeClass::Bytes),
    ];
    let mut plan = MergePlan::new(columns, 2);
    let value = Compared {
        column: 2,
        weight: Some(3),
    };
    plan.order_by = vec![key(0, None, false), key(2, Some(3), false)];
    plan.group_by = Some(vec![Compared {
        column: 0,
        weight: None,
    }]);
    plan.aggregates = vec![Aggregate {
        item: Compared {
            column: 1,
            weight: None,
        },
        kind: AggregateKind::CountDistinct { value },
    }];
    let r = |g, v: Option<&str>| match v {
        Some(v) => vec![i(g), i(1), s(v), s(&v.to_uppercase())],
        None => vec![i(g), i(0), Value::Null, Value::Null],
    };
    let nodes = sources(vec![
        vec![r(1, Some("a")), r(1, Some("b")), r(2, Some("x"))],
        vec![r(1, None), r(1, Some("A")), r(1, Some("c"))],
        vec![r(2, Some("X")), r(2, Some("y")), r(3, None)],
    ]);
    let (rows, _) = run(&plan, nodes).await.unwrap();
    assert_eq!(
        rows,
        vec![vec![i(1), i(3)], vec![i(2), i(2)], vec![i(3), i(0)]]
    );
}

#[tokio::test]
async fn order_after_group_with_limit_keeps_only_the_top_rows() {
    let mut plan = MergePlan::new(vec![col("g", TypeClass::Int { width: 8 }, 0)], 1);
    plan.order_by = vec![key(0, None, false)];
    plan.group_by = Some(vec![Compared {
        column: 0,
        weight: None,
    }]);
    plan.order_after_group = vec![key(0, None, true)];
    plan.max_buffered_rows = 100;
    plan.offset = 2;
    plan.limit = Some(5);
    let (rows, stats) = run(&plan, interleaved(3, 1000)).await.unwrap();
    assert_eq!(ints(&rows), [2997, 2996, 2995, 2994, 2993]);
    assert!(stats.peak_buffered <= 70, "peak {}", stats.peak_buffered);
    plan.limit = None;
    let err = run(&plan, interleaved(3, 1000)).await.unwrap_err();
    assert!(matches!(err, MergeError::TooManyRows { cap: 100 }));
}
