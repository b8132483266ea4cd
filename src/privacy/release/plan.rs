//! Checking and planning a release before anything is spent: each query is planned and
//! run through the analyser, the spec is checked against the data dictionary and the public
//! `programs` domain, every output column is resolved, the noise is chosen and priced, and
//! the release's `d_in`, `d_out` and idempotency key are fixed. No person's rows are read
//! here; a refusal from this module costs no budget.

use datafusion::execution::context::SQLOptions;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::rows::person_rows;
use crate::privacy::analyser::{self, Refusal, Rule};
use crate::privacy::mechanism::{self, NoisePlan};
use crate::privacy::spec::{self, CheckedSpec, ReleaseSpec};
use crate::privacy::{PrivacyError, Result};
use crate::warehouse::hex;

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
    Ok(crate::warehouse::programs::read(ctx).await?.ids())
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
