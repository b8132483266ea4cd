//! The steward's exact mode: the standard metrics counted without noise, to check the SQL
//! against known data (`outreach metrics --exact`). It runs on the warehouse host, prints a
//! banner that the figures are exact and not for publication, and never feeds a release
//! (privacy model §1).

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::dataframe::DataFrame;
use datafusion::functions_aggregate::expr_fn::sum;
use datafusion::prelude::{SessionContext, cast, col, lit};
use serde::Serialize;

use super::{Catalog, QueriesError, Result};
use crate::privacy::release::plan_query;
use crate::quarter::Quarter;

/// What the exact mode prints on stderr before any figure.
pub const BANNER: &str = "EXACT FIGURES, NOT FOR PUBLICATION: these counts carry no noise and \
     identify small groups. They are for the steward's validation of the queries on this host \
     only; publish with `outreach publish`.";

/// One exact count: persons in a program's cohort of a quarter with one statistic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExactValue {
    pub program_id: String,
    pub quarter: String,
    pub statistic: String,
    pub value: i64,
}

/// Every statistic of every per-program metric file, for every program of the warehouse
/// (zeros included), in quarter `quarter`. Each file passes the person-locality analyser
/// first, as a release would.
pub async fn exact(
    ctx: &SessionContext,
    catalog: &Catalog,
    quarter: Quarter,
) -> Result<Vec<ExactValue>> {
    let programs = program_ids(ctx).await?;
    let q = quarter.to_string();
    let mut out = Vec::new();
    for (file, stats) in catalog.per_program_files() {
        let run = |e: datafusion::error::DataFusionError| QueriesError::Run {
            file: file.file.clone(),
            message: e.strip_backtrace(),
        };
        let accepted = plan_query(ctx, &file.file, &file.sql).await?;
        let aggregates = stats
            .iter()
            .map(|s| sum(cast(col(s.as_str()), DataType::Int64)).alias(s.as_str()))
            .collect::<Vec<_>>();
        let batches = DataFrame::new(ctx.state(), accepted.plan)
            .filter(col("quarter").eq(lit(q.clone())))
            .and_then(|df| {
                df.select(
                    std::iter::once(cast(col("program_id"), DataType::Utf8).alias("program_id"))
                        .chain(stats.iter().map(|s| col(s.as_str())))
                        .collect::<Vec<_>>(),
                )
            })
            .and_then(|df| df.aggregate(vec![col("program_id")], aggregates))
            .map_err(run)?
            .collect()
            .await
            .map_err(run)?;
        let mut counts: std::collections::HashMap<(String, String), i64> = Default::default();
        for b in &batches {
            let ids = cast_utf8(b.column(0)).map_err(run)?;
            let ids = ids.as_string::<i32>();
            for (j, s) in stats.iter().enumerate() {
                let v = datafusion::arrow::compute::cast(b.column(j + 1), &DataType::Int64)
                    .map_err(|e| run(e.into()))?;
                let v = v.as_primitive::<Int64Type>();
                for i in 0..b.num_rows() {
                    let n = if v.is_null(i) { 0 } else { v.value(i) };
                    counts.insert((ids.value(i).to_string(), s.clone()), n);
                }
            }
        }
        for p in &programs {
            for s in &stats {
                out.push(ExactValue {
                    program_id: p.clone(),
                    quarter: q.clone(),
                    statistic: s.clone(),
                    value: counts.get(&(p.clone(), s.clone())).copied().unwrap_or(0),
                });
            }
        }
    }
    // Program by program, statistics in catalog order.
    let order: Vec<String> = catalog
        .per_program_statistics()
        .iter()
        .map(|(_, s)| s.name.clone())
        .collect();
    out.sort_by_key(|v| {
        (
            v.program_id.clone(),
            order.iter().position(|s| *s == v.statistic),
        )
    });
    Ok(out)
}

/// Every program id of the public `programs` table, in order.
pub async fn program_ids(ctx: &SessionContext) -> Result<Vec<String>> {
    Ok(crate::warehouse::programs::read(ctx).await?.ids())
}

fn cast_utf8(
    a: &datafusion::arrow::array::ArrayRef,
) -> datafusion::error::Result<datafusion::arrow::array::ArrayRef> {
    Ok(datafusion::arrow::compute::cast(a, &DataType::Utf8)?)
}
