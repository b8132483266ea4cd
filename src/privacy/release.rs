//! One release, end to end: plan and analyse the queries, choose the noise, debit the
//! ledger, bound the rows in DataFusion's stream, draw OpenDP noise, store the result.
//!
//! Everything that can refuse a release (the spec, the SQL, the analyser, the output
//! columns, the scales, the budget) runs before the debit; the data is read only after it.
//! A failure after the debit is stored for the steward and the budget stays spent.
//!
//! **A failed release is itself a disclosure of one bit.** Whether a release fails after its
//! debit may depend on one person's rows (an error that the analyser's allow-list failed to
//! rule out), so even "it failed" can reveal something; the analyser's job is to make a
//! data-dependent failure impossible, and a failure that still happens is a defect to fix.
//! As defence in depth, nothing about *how* it failed reaches anyone but the steward: the
//! caller gets only [`PrivacyError::FailedAfterDebit`], a fixed message with the release
//! id; the error text (DataFusion's, OpenDP's, or a panic's) is stored in the ledger for
//! `releases show --steward`. A panic after the debit, in this thread or in any task of the
//! query, is caught and recorded the same way, and while a release is between its debit
//! and its outcome the process's panic hook prints nothing (a panic message can quote a
//! value; see [`panic_guard`]). The steward who retries does so knowing the bit was spent.
//!
//! **Identical requests.** The idempotency key binds the queries, the declarations, the
//! budget, the opaque dataset version *and* the manifest's content hash (steward-only, never
//! published), so a warehouse rebuilt next to the same ledger, with the same `vN` but other
//! data, never replays another warehouse's numbers. The key is claimed
//! ([`Ledger::claim_release`]) from before the debit until the outcome is written: a second
//! identical request started meanwhile waits for the first, then returns its numbers.

use std::collections::HashMap;
use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use datafusion::arrow::datatypes::DataType;
use datafusion::common::Column;
use datafusion::dataframe::DataFrame;
use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{Expr, SessionContext, cast};
use futures::{FutureExt, StreamExt};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::analyser::{self, Refusal, Rule};
use super::bounding::{Bounded, Bounder, BoundingRules, CellChoiceKey};
use super::mechanism::{self, NoisePlan};
use super::spec::{self, CheckedSpec, ReleaseSpec, StatisticKind};
use super::{PrivacyError, Result, functions};
use crate::ledger::{Begin, Ledger, ReleaseStart, StoredRelease};
use crate::warehouse::{Manifest, Warehouse, hex, open_session_at};

/// A request to release.
#[derive(Debug, Clone)]
pub struct ReleaseRequest {
    pub spec: ReleaseSpec,
    /// Who approved it: the steward's name, or `standard` for the standard metrics.
    pub approver: String,
}

/// What a release returned.
#[derive(Debug, Clone)]
pub struct ReleaseOutcome {
    pub id: i64,
    /// False when the idempotency key was already released: nothing was spent.
    pub fresh: bool,
    pub public: PublicRelease,
}

/// One noisy value with its 95% noise interval.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoisyValue {
    /// The noisy value as drawn; may be negative. Sums over cells should use it.
    pub raw: i64,
    /// For display: a count clamped at zero (post-processing).
    pub display: i64,
    /// raw ± the half-width: covers the noise with probability ≥ 95%, not sampling error.
    pub lower: i64,
    pub upper: i64,
}

impl NoisyValue {
    /// A noisy value with its interval ±`half_width`; `clamp` shows it at no less than zero
    /// (a statistic that cannot be negative).
    fn new(raw: i64, half_width: i64, clamp: bool) -> NoisyValue {
        NoisyValue {
            raw,
            display: if clamp { raw.max(0) } else { raw },
            lower: raw.saturating_sub(half_width),
            upper: raw.saturating_add(half_width),
        }
    }
}

/// The published name of a noise distribution.
pub fn distribution_name(kind: mechanism::NoiseKind) -> &'static str {
    match kind {
        mechanism::NoiseKind::DiscreteGaussian => "discrete_gaussian",
        mechanism::NoiseKind::DiscreteLaplace => "discrete_laplace",
    }
}

/// One statistic over every cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatisticResult {
    pub name: String,
    pub kind: StatisticKind,
    pub lower_bound: i64,
    pub upper_bound: i64,
    /// `discrete_gaussian` or `discrete_laplace`.
    pub distribution: String,
    pub scale: f64,
    /// Half-width of the 95% noise interval, from OpenDP's accuracy helper.
    pub half_width: i64,
    /// One value per cell, in the order of `cells`.
    pub values: Vec<NoisyValue>,
}

/// A ratio of two noisy statistics in one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum RatioValue {
    /// The ratio of noisy values with a 95% interval by the delta method (noise only).
    Estimate {
        estimate: f64,
        lower: f64,
        upper: f64,
    },
    /// The noisy denominator is ≤ 0 or within twice its noise half-width of 0.
    InsufficientData,
}

/// A ratio over every cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RatioResult {
    pub name: String,
    pub numerator: String,
    pub denominator: String,
    pub values: Vec<RatioValue>,
}

/// The published numbers of a release.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseResult {
    /// Names of the cell keys.
    pub cell_keys: Vec<String>,
    /// Every cell of the public domain, as its key values.
    pub cells: Vec<Vec<String>>,
    pub statistics: Vec<StatisticResult>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ratios: Vec<RatioResult>,
    /// With a private cell key: how the published cells were chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition_selection: Option<PartitionSelection>,
    pub note: String,
}

/// Private partition selection as published: only cells whose noisy count reached the
/// threshold are listed; the others may be absent from the data or merely small.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PartitionSelection {
    /// The private cell key.
    pub column: String,
    /// A cell is listed when its noisy count is at least this.
    pub threshold: i64,
    /// The δ of the selection, by OpenDP's map.
    pub delta: f64,
}

/// `d_in` as recorded: `k` and the bounds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredInput {
    pub k: u32,
    pub l1: u64,
    pub l2: f64,
    pub bounds: Vec<(String, i64, i64)>,
    pub exclusive: Vec<Vec<String>>,
    pub noise: NoisePlan,
}

/// `d_out` as recorded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeclaredOutput {
    pub rho: f64,
    pub delta: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pure_epsilon: Option<f64>,
    /// ε at `epsilon_delta`, from ρ through OpenDP.
    pub epsilon: f64,
    pub display_delta: f64,
    /// The δ that goes with `epsilon`: the display δ plus this release's δ (approximate zCDP
    /// (ρ, δ) converts to (ε(δ_display), δ_display + δ)-DP).
    #[serde(default)]
    pub epsilon_delta: f64,
}

/// What anyone outside the steward's own commands may see of a release, chosen field by
/// field. It never holds error text or diagnostics; only released releases have one.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PublicRelease {
    pub id: i64,
    pub name: String,
    pub dataset_version: String,
    pub published_at: String,
    pub approver: String,
    pub measure: String,
    pub query_hashes: Vec<String>,
    pub spec: serde_json::Value,
    pub d_in: serde_json::Value,
    pub d_out: serde_json::Value,
    pub result: ReleaseResult,
}

impl PublicRelease {
    /// The public view of a stored release; `None` unless it was released.
    pub fn from_stored(r: &StoredRelease) -> Option<PublicRelease> {
        if r.status != "released" {
            return None;
        }
        let result = serde_json::from_value(r.result.clone()?).ok()?;
        Some(PublicRelease {
            id: r.id,
            name: r.name.clone(),
            dataset_version: r.dataset_version.clone(),
            published_at: r.finished_at.clone()?,
            approver: r.approver.clone(),
            measure: r.measure.clone(),
            query_hashes: r.query_hashes.clone(),
            spec: r.spec.clone(),
            d_in: r.d_in.clone(),
            d_out: r.d_out.clone(),
            result,
        })
    }
}

/// A query that the analyser accepted: its optimized plan and output columns.
#[derive(Debug, Clone)]
pub struct AcceptedQuery {
    pub source: String,
    pub plan: LogicalPlan,
    pub person_index: usize,
}

/// SQL options for person-level queries: no DDL, no DML, no statements.
pub fn query_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// Plans one person-level query, checks the functions and casts of the plan as written
/// ([`analyser::check_unoptimised`]), then runs the analyser on its optimized plan.
pub async fn plan_query(ctx: &SessionContext, source: &str, sql: &str) -> Result<AcceptedQuery> {
    // A broken built-in dictionary is a defect of the build (internal), not bad input.
    let dict = crate::warehouse::dictionary()?;
    let df = match ctx.sql_with_options(sql, query_options()).await {
        Ok(df) => df,
        Err(e) => {
            let message = e.strip_backtrace();
            let refused = [
                "DDL not supported",
                "DML not supported",
                "Statement not supported",
            ]
            .iter()
            .any(|p| message.contains(p));
            let unknown_table = message.contains("table '") && message.contains("not found");
            let node: String = sql.trim().chars().take(80).collect();
            return Err(if refused {
                PrivacyError::Refused {
                    query: source.into(),
                    refusal: Refusal {
                        rule: Rule::NotAQuery,
                        node,
                        detail: format!("only a SELECT query is allowed ({message})"),
                    },
                }
            } else if unknown_table {
                PrivacyError::Refused {
                    query: source.into(),
                    refusal: Refusal {
                        rule: Rule::UnknownTable,
                        node,
                        detail: format!("only the warehouse's tables can be read ({message})"),
                    },
                }
            } else {
                PrivacyError::Plan {
                    query: source.into(),
                    message,
                }
            });
        }
    };
    // The function allow-list is checked on the plan as written, before the optimiser
    // evaluates any expression of constants (`repeat('a1', 300000000)` would be folded into
    // a 600 MB literal): nothing outside the list is ever evaluated.
    analyser::check_unoptimised(df.logical_plan()).map_err(|refusal| PrivacyError::Refused {
        query: source.into(),
        refusal,
    })?;
    let plan = df.into_optimized_plan().map_err(|e| PrivacyError::Plan {
        query: source.into(),
        message: e.strip_backtrace(),
    })?;
    let person_index = analyser::analyse(&plan, dict).map_err(|refusal| PrivacyError::Refused {
        query: source.into(),
        refusal,
    })?;
    Ok(AcceptedQuery {
        source: source.into(),
        plan,
        person_index,
    })
}

/// The public `program_id`s, for the `programs` domain: the key of the public table that
/// person rows reference, both named by the dictionary.
pub async fn program_ids(ctx: &SessionContext) -> Result<Vec<String>> {
    let dict = crate::warehouse::dictionary()?;
    let (table, key) = dict
        .tables()
        .iter()
        .find_map(|t| t.reference())
        .and_then(|(_, name)| dict.table(name))
        .map(|t| (t.name.as_str(), t.primary_key.as_str()))
        .ok_or_else(|| {
            PrivacyError::Warehouse(
                datafusion::error::DataFusionError::Internal(
                    "the data dictionary names no table that person rows reference".into(),
                )
                .into(),
            )
        })?;
    let batches = ctx
        .sql(&format!(
            "SELECT DISTINCT \"{key}\" FROM \"{table}\" ORDER BY \"{key}\""
        ))
        .await
        .map_err(|e| PrivacyError::Warehouse(e.into()))?
        .collect()
        .await
        .map_err(|e| PrivacyError::Warehouse(e.into()))?;
    let mut out = Vec::new();
    for b in batches {
        let col = datafusion::arrow::compute::cast(b.column(0), &DataType::Utf8).map_err(|e| {
            PrivacyError::Warehouse(datafusion::error::DataFusionError::from(e).into())
        })?;
        let s = col
            .as_any()
            .downcast_ref::<datafusion::arrow::array::StringArray>()
            .expect("cast to Utf8");
        out.extend(s.iter().flatten().map(str::to_string));
    }
    Ok(out)
}

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

/// Everything about a release that is fixed before the data is read.
#[derive(Debug, Clone)]
pub struct PreparedRelease {
    pub spec: CheckedSpec,
    pub queries: Vec<AcceptedQuery>,
    pub noise: NoisePlan,
    pub loss: mechanism::Loss,
    pub dataset_version: String,
    pub idempotency_key: String,
    pub d_in: DeclaredInput,
    pub d_out: DeclaredOutput,
}

/// Checks the spec and the queries and fixes the noise: no data is read, nothing is spent.
pub async fn prepare(
    ctx: &SessionContext,
    spec: &ReleaseSpec,
    dataset_version: &str,
    config: &crate::ledger::PrivacyConfig,
) -> Result<PreparedRelease> {
    let programs = program_ids(ctx).await?;
    prepare_with_programs(ctx, spec, dataset_version, config, &programs).await
}

/// [`prepare`] with the public `program_id`s given: on a session of empty tables
/// ([`crate::warehouse::schema_session`]) it checks and plans a spec without any data, which
/// is how the API server answers a researcher's request.
pub async fn prepare_with_programs(
    ctx: &SessionContext,
    spec: &ReleaseSpec,
    dataset_version: &str,
    config: &crate::ledger::PrivacyConfig,
    programs: &[String],
) -> Result<PreparedRelease> {
    // A broken built-in dictionary is a defect of the build (internal), not bad input.
    let dict = crate::warehouse::dictionary()?;
    let checked = spec::check(spec, dict, programs)?;
    let mut queries = Vec::new();
    for q in &checked.queries {
        queries.push(plan_query(ctx, &q.source, &q.sql).await?);
    }
    // Resolve every output column now, so a bad column is refused before the debit.
    person_rows(ctx, &checked, &queries)?;
    let noise = NoisePlan::choose(&checked, config.noise, config.min_scale)?;
    let loss = noise.loss()?;
    let s = noise.sensitivity()?;
    let d_in = DeclaredInput {
        k: checked.k,
        l1: s.l1,
        l2: s.l2,
        bounds: checked
            .statistics
            .iter()
            .map(|st| (st.name.clone(), st.lower, st.upper))
            .collect(),
        exclusive: checked
            .exclusive
            .iter()
            .map(|g| {
                g.iter()
                    .map(|&j| checked.statistics[j].name.clone())
                    .collect()
            })
            .collect(),
        noise: noise.clone(),
    };
    let d_out = DeclaredOutput {
        rho: loss.rho,
        delta: loss.delta,
        pure_epsilon: loss.epsilon,
        epsilon: mechanism::epsilon_at(loss.rho, config.display_delta)?,
        display_delta: config.display_delta,
        epsilon_delta: config.display_delta + loss.delta,
    };
    let key_material = serde_json::json!({
        "queries": checked.queries.iter().map(|q| &q.sha256).collect::<Vec<_>>(),
        "cells": &checked.cells,
        "statistics": &checked.statistics,
        "exclusive": &checked.exclusive,
        "k": checked.k,
        "ratios": &checked.ratios,
        "noise": &noise,
        "rho": loss.rho,
        "delta": loss.delta,
        "dataset_version": dataset_version,
    });
    let idempotency_key = hex(&Sha256::digest(key_material.to_string().as_bytes()));
    Ok(PreparedRelease {
        spec: checked,
        queries,
        noise,
        loss,
        dataset_version: dataset_version.to_string(),
        idempotency_key,
        d_in,
        d_out,
    })
}

/// The published result from the exact bounded vector and its noisy draw.
pub fn build_result(p: &PreparedRelease, noisy: &[i64]) -> Result<ReleaseResult> {
    let spec = &p.spec;
    let m = spec.statistics.len();
    let n_cells = spec.n_cells();
    let rules_for_labels = BoundingRules {
        k: spec.k as usize,
        cells: spec.cells.clone(),
        statistics: spec.statistics.clone(),
        exclusive: spec.exclusive.clone(),
        key: CellChoiceKey([0; 16]),
    };
    let cells: Vec<Vec<String>> = (0..n_cells)
        .map(|c| {
            rules_for_labels
                .cell_values(c)
                .into_iter()
                .map(str::to_string)
                .collect()
        })
        .collect();
    let distribution = distribution_name(p.noise.kind);
    let mut statistics = Vec::new();
    for (j, st) in spec.statistics.iter().enumerate() {
        let h = p.noise.half_width(j)?;
        let values = (0..n_cells)
            .map(|c| NoisyValue::new(noisy[c * m + j], h, st.lower >= 0))
            .collect();
        statistics.push(StatisticResult {
            name: st.name.clone(),
            kind: st.kind,
            lower_bound: st.lower,
            upper_bound: st.upper,
            distribution: distribution.into(),
            scale: p.noise.scale_of(j),
            half_width: h,
            values,
        });
    }
    let mut ratios = Vec::new();
    for (name, num, den) in &spec.ratios {
        let (vn, vd) = (p.noise.variance(*num), p.noise.variance(*den));
        let hd = p.noise.half_width(*den)? as f64;
        let values = (0..n_cells)
            .map(|c| {
                ratio(
                    noisy[c * m + num] as f64,
                    noisy[c * m + den] as f64,
                    vn,
                    vd,
                    hd,
                )
            })
            .collect();
        ratios.push(RatioResult {
            name: name.clone(),
            numerator: spec.statistics[*num].name.clone(),
            denominator: spec.statistics[*den].name.clone(),
            values,
        });
    }
    Ok(ReleaseResult {
        cell_keys: spec.cells.iter().map(|c| c.column.clone()).collect(),
        cells,
        statistics,
        ratios,
        partition_selection: None,
        note: NOTE.into(),
    })
}

const NOTE: &str = "Every value is differentially private. Intervals are 95% intervals of the added noise only, not of sampling error. A person in two programs counts in both.";

/// The published result of a release with a private key: the cells that partition selection
/// kept, sorted by their key values, with their noisy counts.
pub fn build_selected_result(
    p: &PreparedRelease,
    labels: &BoundingRules,
    noisy: &HashMap<u64, i64>,
) -> Result<ReleaseResult> {
    let spec = &p.spec;
    let (column, threshold) = match (spec.private_cell(), p.noise.threshold) {
        (Some(c), Some(t)) => (spec.cells[c].column.clone(), t),
        _ => {
            return Err(PrivacyError::Internal(
                "a selected result without a private key".into(),
            ));
        }
    };
    let mut cells: Vec<(Vec<String>, i64)> = noisy
        .iter()
        .map(|(&cell, &v)| {
            let names = labels
                .cell_values(cell as usize)
                .into_iter()
                .map(str::to_string)
                .collect();
            (names, v)
        })
        .collect();
    cells.sort();
    let st = &spec.statistics[0];
    let h = p.noise.half_width(0)?;
    let values = cells
        .iter()
        .map(|&(_, raw)| NoisyValue::new(raw, h, st.lower >= 0))
        .collect();
    let distribution = distribution_name(p.noise.kind);
    Ok(ReleaseResult {
        cell_keys: spec.cells.iter().map(|c| c.column.clone()).collect(),
        cells: cells.into_iter().map(|(names, _)| names).collect(),
        statistics: vec![StatisticResult {
            name: st.name.clone(),
            kind: st.kind,
            lower_bound: st.lower,
            upper_bound: st.upper,
            distribution: distribution.into(),
            scale: p.noise.scale_of(0),
            half_width: h,
            values,
        }],
        ratios: Vec::new(),
        partition_selection: Some(PartitionSelection {
            column: column.clone(),
            threshold: threshold.value,
            delta: p.loss.delta,
        }),
        note: format!(
            "{NOTE} `{column}` has no public domain: a cell is listed only when its noisy count reached {}, so unlisted cells may be absent or merely small, and listed counts near the threshold lean high.",
            threshold.value
        ),
    })
}

/// A ratio of noisy values with its delta-method interval (post-processing only). The
/// denominator must clear twice its own 95% noise half-width, else there is nothing to say.
pub fn ratio(num: f64, den: f64, var_num: f64, var_den: f64, den_half_width: f64) -> RatioValue {
    if den <= 0.0 || den <= 2.0 * den_half_width {
        return RatioValue::InsufficientData;
    }
    let r = num / den;
    let sd = ((var_num + r * r * var_den) / (den * den)).sqrt();
    RatioValue::Estimate {
        estimate: r,
        lower: r - 1.96 * sd,
        upper: r + 1.96 * sd,
    }
}

/// The public view of a release that was released.
fn public_view(ledger: &Ledger, id: i64) -> Result<PublicRelease> {
    PublicRelease::from_stored(&ledger.release(id)?)
        .ok_or_else(|| PrivacyError::Internal(format!("release {id} has no public view")))
}

/// How long an identical request waits for the one already running before it gives up as
/// busy (exit code 3). A release takes seconds to minutes.
pub const CLAIM_WAIT: Duration = Duration::from_secs(30 * 60);

/// The idempotency key bound to the warehouse's content: a hash of the key of
/// [`prepare`] (queries, declarations, budget, dataset version) and the manifest's content
/// hash. Steward-only: it is stored in the ledger and never published.
pub fn bind_to_content(key: &str, content_hash: &str) -> String {
    let mut h = Sha256::new();
    h.update(b"outreach release key v2\0");
    h.update(key.as_bytes());
    h.update([0]);
    h.update(content_hash.as_bytes());
    hex(&h.finalize())
}

/// Releases a spec over a warehouse: the whole path, debit first.
///
/// After the debit, any failure (an error or a panic, here or in a task of the query) is
/// stored for the steward and returned as [`PrivacyError::FailedAfterDebit`], which holds
/// nothing but the release id: a failed release discloses one bit (that it failed), never
/// the error's text (module docs).
pub async fn release(warehouse: &Path, req: &ReleaseRequest) -> Result<ReleaseOutcome> {
    let manifest = Warehouse::open(warehouse)?.manifest()?;
    let mut out = release_all(warehouse, &manifest, std::slice::from_ref(req)).await?;
    Ok(out.pop().expect("one outcome per request"))
}

/// Releases several specs as one unit, over one snapshot of the warehouse: `manifest`, which
/// the caller read once, so every release reads and records the same dataset version even if
/// a load commits meanwhile (the files a manifest names are never removed by a later load).
///
/// Every spec is prepared (checked, analysed, priced) before anything is spent, and the
/// fresh ones are debited together ([`Ledger::begin_releases`]): either all are paid or none
/// is. Specs already released with the same key return their stored numbers for free. Then
/// each fresh release reads the data and draws its noise in turn. If one fails after the
/// debit, the others still run (their debits are spent too, and their numbers stored, so a
/// retry replays them), and the first failure is returned as
/// [`PrivacyError::FailedAfterDebit`]. The outcomes come in the order of `reqs`.
pub async fn release_all(
    warehouse: &Path,
    manifest: &Manifest,
    reqs: &[ReleaseRequest],
) -> Result<Vec<ReleaseOutcome>> {
    let wh = Warehouse::open(warehouse)?;
    let version = manifest.version().to_string();
    let mut ledger = Ledger::open(warehouse)?;
    let config = ledger.config()?;
    let ctx = open_session_at(&wh, manifest)?;
    functions::register(&ctx);
    let quarters = manifest.quarters();
    let content = manifest.content_hash();
    let mut prepared: Vec<PreparedRelease> = Vec::with_capacity(reqs.len());
    for req in reqs {
        let mut p = prepare(&ctx, &req.spec, &version, &config).await?;
        keep_filters_that_narrow(&mut p.spec, &req.spec, &quarters);
        p.idempotency_key = bind_to_content(&p.idempotency_key, &content);
        if prepared
            .iter()
            .any(|q| q.idempotency_key == p.idempotency_key)
        {
            return Err(PrivacyError::Spec {
                message: format!("`{}` is asked twice in one group of releases", p.spec.name),
            });
        }
        prepared.push(p);
    }
    // Held until this function returns: an identical request waits here for this one.
    let mut claims = Vec::with_capacity(prepared.len());
    for p in &prepared {
        claims.push(ledger.claim_release(&p.idempotency_key, CLAIM_WAIT)?);
    }
    let starts: Vec<ReleaseStart> = prepared
        .iter()
        .zip(reqs)
        .map(|(p, req)| ReleaseStart {
            idempotency_key: p.idempotency_key.clone(),
            name: p.spec.name.clone(),
            allocation: p.spec.allocation.clone(),
            spec_json: to_json(&p.spec),
            query_hashes: p.spec.queries.iter().map(|q| q.sha256.clone()).collect(),
            dataset_version: version.clone(),
            measure: config.noise.measure().into(),
            d_in_json: to_json(&p.d_in),
            d_out_json: to_json(&p.d_out),
            spend: p.loss.spend,
            approver: req.approver.clone(),
        })
        .collect();
    let begun = ledger.begin_releases(&starts)?;
    let mut outcomes = Vec::with_capacity(prepared.len());
    let mut first_failure: Option<i64> = None;
    let mut ran = 0usize;
    for (p, begin) in prepared.iter().zip(begun) {
        let id = match begin {
            Begin::Existing(id) => {
                outcomes.push(ReleaseOutcome {
                    id,
                    fresh: false,
                    public: public_view(&ledger, id)?,
                });
                continue;
            }
            Begin::Fresh(id) => id,
        };
        if ran > 0 {
            crate::failpoint::hook("release-between", warehouse);
        }
        ran += 1;
        match run_after_debit(&ctx, p, &mut ledger, id).await? {
            Some(public) => outcomes.push(ReleaseOutcome {
                id,
                fresh: true,
                public,
            }),
            None if first_failure.is_none() => first_failure = Some(id),
            None => {}
        }
    }
    drop(claims);
    match first_failure {
        Some(id) => Err(PrivacyError::FailedAfterDebit { id }),
        None => Ok(outcomes),
    }
}

/// Reads the data, bounds it and draws the noise of release `id`, already debited, and
/// stores its outcome: its public view, or `None` when it failed (the error is stored for
/// the steward only; module docs).
async fn run_after_debit(
    ctx: &SessionContext,
    prepared: &PreparedRelease,
    ledger: &mut Ledger,
    id: i64,
) -> Result<Option<PublicRelease>> {
    // From here on the data is read: no panic message may reach stderr, and every failure
    // ends as a fixed message (module docs).
    let guard = panic_guard::Guard::new();
    let choice_key = ledger.cell_choice_key().map_err(|e| e.to_string());
    let outcome = AssertUnwindSafe(after_debit(ctx, prepared, choice_key))
        .catch_unwind()
        .await;
    let outcome = match outcome {
        Ok(outcome) => outcome,
        Err(payload) => Err(format!("panic: {}", panic_guard::payload_text(&*payload))),
    };
    let outcome = outcome.map_err(|message| {
        let panics = guard.take();
        if panics.is_empty() {
            message
        } else {
            format!("{message}\npanics: {}", panics.join("\n"))
        }
    });
    match outcome {
        Ok((result, bounded)) => {
            let result_json = serde_json::to_value(&result).expect("result serialises");
            let diagnostics =
                serde_json::to_value(&bounded.diagnostics).expect("diagnostics serialise");
            ledger.finish_released(id, &result_json, &diagnostics)?;
            Ok(Some(public_view(ledger, id)?))
        }
        Err(message) => {
            ledger.finish_failed(id, &message)?;
            Ok(None)
        }
    }
}

/// Clears [`spec::CellKey::filter_in_plan`] for a span of quarters that holds every quarter
/// of the data (`data_quarters`, from the manifest): such a filter would remove nothing that
/// a query of the table's own dates gives, and the bounder drops any other quarter anyway.
/// `checked` is `spec` as [`spec::check`] returns it, whose cells keep the spec's order.
pub fn keep_filters_that_narrow(
    checked: &mut CheckedSpec,
    spec: &ReleaseSpec,
    data_quarters: &std::collections::BTreeSet<crate::quarter::Quarter>,
) {
    for (cell, asked) in checked.cells.iter_mut().zip(&spec.cells) {
        if matches!(asked.domain, spec::DomainSpec::Quarters { .. })
            && data_quarters
                .iter()
                .all(|q| cell.values.contains(&q.to_string()))
        {
            cell.filter_in_plan = false;
        }
    }
}

/// Everything after the debit: read the rows, bound them, draw the noise, build the result.
/// An error is a message for the steward only.
async fn after_debit(
    ctx: &SessionContext,
    prepared: &PreparedRelease,
    choice_key: std::result::Result<[u8; 16], String>,
) -> std::result::Result<(ReleaseResult, Bounded), String> {
    let rules = Arc::new(BoundingRules {
        k: prepared.spec.k as usize,
        cells: prepared.spec.cells.clone(),
        statistics: prepared.spec.statistics.clone(),
        exclusive: prepared.spec.exclusive.clone(),
        key: CellChoiceKey(choice_key?),
    });
    if crate::failpoint::armed("release-fail-after-debit") {
        return Err("fail point release-fail-after-debit: injected failure".to_string());
    }
    let rows = person_rows(ctx, &prepared.spec, &prepared.queries).map_err(|e| e.to_string())?;
    let bounded = bound(rows, rules.clone()).await?;
    let result = match &bounded.discovered {
        None => {
            let noisy = prepared
                .noise
                .draw(&bounded.values)
                .map_err(|e| e.to_string())?;
            build_result(prepared, &noisy).map_err(|e| e.to_string())?
        }
        Some(found) => {
            // One count per cell; only cells with a positive count enter selection.
            let counts: HashMap<u64, i64> = found
                .cells
                .iter()
                .zip(&bounded.values)
                .filter(|&(_, &v)| v > 0)
                .map(|(&c, &v)| (c, v))
                .collect();
            let noisy = prepared
                .noise
                .draw_thresholded(&counts)
                .map_err(|e| e.to_string())?;
            let labels = rules.with_private_values(found.values.clone());
            build_selected_result(prepared, &labels, &noisy).map_err(|e| e.to_string())?
        }
    };
    Ok((result, bounded))
}

/// Keeps panic messages off stderr while a release is between its debit and its outcome.
///
/// A panic message can quote a value of the data (an overflow with its operands, a batch in
/// a debug print), and the default panic hook prints it to stderr, where whoever runs the
/// release sees it. While at least one [`Guard`] lives, the process's panic hook records
/// the message for the steward's record of the release instead of printing it; otherwise
/// it hands over to the hook that was installed before (the default one prints). The hook
/// is installed once per process, at the first guard. It is process-wide: in a process
/// that runs other work beside a release (the test binary), a panic elsewhere during the
/// release's after-debit phase is recorded with the release, not printed.
pub mod panic_guard {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Mutex, Once};

    static ACTIVE: AtomicUsize = AtomicUsize::new(0);
    static CAPTURED: Mutex<Vec<String>> = Mutex::new(Vec::new());
    static INSTALL: Once = Once::new();

    /// The text of a panic's payload.
    pub fn payload_text(payload: &(dyn std::any::Any + Send)) -> String {
        if let Some(s) = payload.downcast_ref::<&str>() {
            (*s).to_string()
        } else if let Some(s) = payload.downcast_ref::<String>() {
            s.clone()
        } else {
            "(a panic without a message)".to_string()
        }
    }

    fn install() {
        INSTALL.call_once(|| {
            let previous = std::panic::take_hook();
            std::panic::set_hook(Box::new(move |info| {
                if ACTIVE.load(Ordering::SeqCst) == 0 {
                    return previous(info);
                }
                let location = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                let text = format!("{}{location}", payload_text(info.payload()));
                CAPTURED
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .push(text);
            }));
        });
    }

    /// While it lives, panics are recorded, not printed.
    #[derive(Debug)]
    pub struct Guard(());

    impl Guard {
        pub fn new() -> Guard {
            install();
            ACTIVE.fetch_add(1, Ordering::SeqCst);
            Guard(())
        }

        /// The panic messages recorded so far (and forgets them).
        pub fn take(&self) -> Vec<String> {
            std::mem::take(
                &mut *CAPTURED
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()),
            )
        }
    }

    impl Default for Guard {
        fn default() -> Self {
            Guard::new()
        }
    }

    impl Drop for Guard {
        fn drop(&mut self) {
            ACTIVE.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn to_json<T: Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("release records serialise")
}
