//! What the proxy would do with a statement, without running it: the
//! nodes, the SQL each would get, and how their answers would be merged.
//! Served by `GET /api/route?sql=` and the SQL command `PREVIEW <sql>`.

use serde::Serialize;

use super::analyze::Analysis;
use super::labels::analyze_labelled;
use super::plan::{plan, PlanContext, Route, Target};
use super::PlanError;

/// One node's share of a statement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct NodeStatement {
    pub data_source: String,
    pub sql: String,
}

/// How the answers of several nodes become one.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct MergePlan {
    /// Keys of the streaming k-way merge (0 = rows concatenated).
    pub order_by_keys: usize,
    pub group_by_keys: Option<usize>,
    /// Aggregates combined after the merge (`count`, `sum`, `avg` ...).
    pub aggregates: Vec<String>,
    pub distinct: bool,
    pub having: bool,
    pub offset: u64,
    pub limit: Option<u64>,
}

/// The preview of one statement.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Preview {
    /// `unsharded` (default data source, unchanged), `single` (one node,
    /// reply forwarded), `concat`, `merge`, `fanout` (writes, one OK).
    pub route: &'static str,
    /// Logical sharded or broadcast tables the statement names.
    pub tables: Vec<String>,
    pub nodes: Vec<NodeStatement>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub merge: Option<MergePlan>,
    /// For writes on several nodes: whether they run in one transaction.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub transactional: Option<bool>,
}

/// Plans `sql` as a session in `logical_db` would (text protocol, no
/// parameters). A statement the proxy would refuse is the error it would
/// send.
pub fn preview(sql: &str, logical_db: &str, ctx: &PlanContext<'_>) -> Result<Preview, PlanError> {
    let (st, sql) = match analyze_labelled(sql, ctx.dialect, ctx.rules, logical_db) {
        Ok((Analysis::Sharded(st), sql)) => (st, sql),
        Ok((Analysis::Unsharded, _)) => {
            return Ok(Preview {
                route: "unsharded",
                tables: Vec::new(),
                nodes: vec![NodeStatement {
                    data_source: ctx.default_data_source.to_owned(),
                    sql: sql.to_owned(),
                }],
                merge: None,
                transactional: None,
            })
        }
        Err(e) => return Err(PlanError::NotSupported(e.to_string())),
    };
    let route = plan(&st, &sql, &[], true, ctx)?;
    let nodes = |targets: &[Target]| -> Vec<NodeStatement> {
        targets
            .iter()
            .map(|t| NodeStatement {
                data_source: t.data_source.clone(),
                sql: t.sql.to_string(),
            })
            .collect()
    };
    let tables = st.tables.clone();
    Ok(match &route {
        Route::One(target) => Preview {
            route: "single",
            tables,
            nodes: nodes(std::slice::from_ref(target)),
            merge: None,
            transactional: None,
        },
        Route::Concat(targets) => Preview {
            route: "concat",
            tables,
            nodes: nodes(targets),
            merge: None,
            transactional: None,
        },
        Route::Merge {
            targets,
            scatter,
            offset,
            limit,
            having,
            ..
        } => Preview {
            route: "merge",
            tables,
            nodes: nodes(targets),
            merge: Some(MergePlan {
                order_by_keys: scatter.order.len(),
                group_by_keys: scatter.group.as_ref().map(Vec::len),
                aggregates: scatter
                    .aggregates
                    .iter()
                    .map(|(_, spec)| spec.name().to_owned())
                    .collect(),
                distinct: scatter.distinct.is_some(),
                having: having.is_some(),
                offset: *offset,
                limit: *limit,
            }),
            transactional: None,
        },
        Route::Fanout {
            targets,
            transactional,
            ..
        } => Preview {
            route: "fanout",
            tables,
            nodes: nodes(targets),
            merge: None,
            transactional: Some(*transactional),
        },
    })
}
