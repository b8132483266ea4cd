//! Reading a release's data, after its debit: the person-level rows of every query in the
//! bounder's column order, and the bounding driver that streams DataFusion's partitions into
//! one sharded bounder, so each person's contribution is capped before any noise is drawn.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::prelude::{Expr, SessionContext, cast};
use futures::StreamExt;

use super::plan::AcceptedQuery;
use crate::privacy::bounding::{Bounded, Bounder, BoundingRules};
use crate::privacy::spec::CheckedSpec;
use crate::privacy::{PrivacyError, Result};

/// Whether a query has an output column `name`.
fn has_column(q: &AcceptedQuery, name: &str) -> bool {
    q.plan.schema().fields().iter().any(|f| f.name() == name)
}

fn find_column(q: &AcceptedQuery, name: &str, what: &str) -> Result<(Column, DataType)> {
    let schema = q.plan.schema();
    let matches: Vec<usize> = schema
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.name() == name)
        .map(|(i, _)| i)
        .collect();
    match matches.as_slice() {
        [i] => {
            let (qualifier, field) = schema.qualified_field(*i);
            Ok((Column::from((qualifier, field)), field.data_type().clone()))
        }
        [] => Err(PrivacyError::Output {
            query: q.source.clone(),
            message: format!("the query has no output column `{name}` ({what})"),
        }),
        _ => Err(PrivacyError::Output {
            query: q.source.clone(),
            message: format!("the query has several output columns named `{name}`"),
        }),
    }
}

/// The person-level rows of every query, in the bounder's column order (`person_key`, the
/// cell keys as text, the statistics as Int64), unioned.
pub fn person_rows(
    ctx: &SessionContext,
    spec: &CheckedSpec,
    queries: &[AcceptedQuery],
) -> Result<DataFrame> {
    // Every statistic comes from at least one query: a misspelt name is an error, not a
    // column of zeros.
    for s in &spec.statistics {
        if !queries.iter().any(|q| has_column(q, &s.column)) {
            return Err(PrivacyError::Output {
                query: queries
                    .iter()
                    .map(|q| q.source.as_str())
                    .collect::<Vec<_>>()
                    .join(", "),
                message: format!(
                    "the queries have no output column `{}` (a statistic)",
                    s.column
                ),
            });
        }
    }
    let mut frames = Vec::new();
    for q in queries {
        let schema = q.plan.schema();
        let (qualifier, field) = schema.qualified_field(q.person_index);
        let mut exprs: Vec<Expr> = vec![
            cast(
                Expr::Column(Column::from((qualifier, field))),
                DataType::Utf8,
            )
            .alias("person_key"),
        ];
        for c in &spec.cells {
            let (column, ty) = find_column(q, &c.column, "a cell key")?;
            let ok = matches!(
                ty,
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View | DataType::Boolean
            ) || matches!(&ty, DataType::Dictionary(_, v) if matches!(v.as_ref(), DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View))
                // A private key's values are whatever the data holds: integers and dates
                // are published as their text.
                || (c.private && (ty.is_integer() || ty == DataType::Date32));
            if !ok {
                return Err(PrivacyError::Output {
                    query: q.source.clone(),
                    message: format!(
                        "cell key `{}` is {ty}; it must be text (quarters: quarter_of(date))",
                        c.column
                    ),
                });
            }
            exprs.push(cast(Expr::Column(column), DataType::Utf8).alias(c.column.clone()));
        }
        for s in &spec.statistics {
            // A query of a joint release may leave out statistics that other queries give:
            // its rows count 0 for them (a NULL count is 0, a NULL sum is no value).
            if queries.len() > 1 && !has_column(q, &s.column) {
                exprs.push(
                    Expr::Literal(datafusion::common::ScalarValue::Int64(None), None)
                        .alias(s.column.clone()),
                );
                continue;
            }
            let (column, ty) = find_column(q, &s.column, "a statistic")?;
            if !(ty == DataType::Boolean || ty.is_integer() || ty == DataType::Null) {
                return Err(PrivacyError::Output {
                    query: q.source.clone(),
                    message: format!(
                        "statistic `{}` is {ty}; it must be a boolean or an integer",
                        s.column
                    ),
                });
            }
            let value = if ty == DataType::UInt64 {
                Expr::TryCast(datafusion::logical_expr::TryCast::new(
                    Box::new(Expr::Column(column)),
                    DataType::Int64,
                ))
            } else {
                cast(Expr::Column(column), DataType::Int64)
            };
            exprs.push(value.alias(s.column.clone()));
        }
        let mut df = DataFrame::new(ctx.state(), q.plan.clone())
            .select(exprs)
            .map_err(|e| PrivacyError::Output {
                query: q.source.clone(),
                message: e.strip_backtrace(),
            })?;
        // Rows outside a public domain would be dropped by the bounder; filtering them in the
        // plan lets DataFusion push the filter down (a quarter's release then reads one
        // quarter's cohort, not every quarter's). It removes only what bounding drops, and
        // such rows are then not counted in the steward's diagnostics. Only domains that may
        // leave out stored values are filtered ([`spec::CellKey::filter_in_plan`]).
        for c in spec.cells.iter().filter(|c| !c.private && c.filter_in_plan) {
            let values = c
                .values
                .iter()
                .map(|v| {
                    Expr::Literal(datafusion::common::ScalarValue::Utf8(Some(v.clone())), None)
                })
                .collect();
            df = df
                .filter(
                    Expr::Column(Column::new_unqualified(c.column.clone())).in_list(values, false),
                )
                .map_err(|e| PrivacyError::Output {
                    query: q.source.clone(),
                    message: e.strip_backtrace(),
                })?;
        }
        frames.push(df);
    }
    let mut iter = frames.into_iter();
    let mut all = iter.next().expect("at least one query");
    for df in iter {
        all = all.union(df).map_err(|e| PrivacyError::Output {
            query: "union of the queries".into(),
            message: e.strip_backtrace(),
        })?;
    }
    Ok(all)
}

/// Runs the person-level rows through the bounder: one task per DataFusion partition, all
/// feeding one sharded [`Bounder`].
pub async fn bound(
    rows: DataFrame,
    rules: Arc<BoundingRules>,
) -> std::result::Result<Bounded, String> {
    let streams = rows
        .execute_stream_partitioned()
        .await
        .map_err(|e| e.strip_backtrace())?;
    // Many shards, each with its own lock: the query's tasks seldom wait for each other, and
    // each shard's person table stays small. Rows are folded into their person's record as
    // they arrive, so the bounder's memory follows the persons, not the rows.
    let shards = 256;
    let bounder = Arc::new(Bounder::new(&rules, shards));
    // A fail point for the tests: a panic inside a query task whose message quotes the data,
    // as a defect deep in a kernel would.
    let panic_point = crate::failpoint::armed("release-panic-after-debit");
    let mut tasks = Vec::new();
    for mut stream in streams {
        let bounder = bounder.clone();
        tasks.push(tokio::spawn(async move {
            while let Some(batch) = stream.next().await {
                let batch = batch.map_err(|e| e.strip_backtrace())?;
                if panic_point {
                    panic!(
                        "fail point release-panic-after-debit: a batch of {} rows, first values {:?}",
                        batch.num_rows(),
                        batch.slice(0, batch.num_rows().min(1))
                    );
                }
                bounder.push(&batch)?;
            }
            Ok::<_, String>(())
        }));
    }
    // Every task is awaited, also after a failure: nothing of the query may run on (or
    // panic, printing its message) after this returns (see [`panic_guard`]).
    let mut first_error: Option<String> = None;
    for i in 0..tasks.len() {
        let outcome = match (&mut tasks[i]).await {
            Ok(outcome) => outcome,
            Err(e) => Err(format!("bounding task: {e}")),
        };
        if let Err(e) = outcome
            && first_error.is_none()
        {
            for t in &tasks[i + 1..] {
                t.abort();
            }
            first_error = Some(e);
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    let bounder =
        Arc::try_unwrap(bounder).map_err(|_| "internal: bounder still shared".to_string())?;
    Ok(bounder.finish())
}
