//! Checking a researcher's submission and pricing it, without data.

use datafusion::prelude::SessionContext;
use serde::{Deserialize, Serialize};

use super::{RequestsError, Result, allocation_of};
use crate::ledger::{Ledger, LedgerError, PrivacyConfig, Spend};
use crate::privacy::release::{distribution_name, prepare_with_programs};
use crate::privacy::{PrivacyError, ReleaseSpec};

/// The longest purpose a researcher may write.
const MAX_PURPOSE: usize = 4000;

/// What a researcher submits: a release spec in the engine's one spec format (as JSON),
/// with the purpose and the budget asked for.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Submission {
    /// Why the numbers are needed; the steward reads it.
    pub purpose: String,
    /// The zCDP budget ρ asked for. A spec without `rho` or `scales` is given this ρ; a spec
    /// that declares them must not cost more.
    pub rho: f64,
    /// The release spec: queries as inline `sql`, cells, statistics, `k`. Its `allocation`
    /// may be left out; it is always `researcher:<your name>`.
    #[schema(value_type = Object)]
    pub spec: serde_json::Value,
}

/// The accuracy of one statistic of a planned release.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct StatisticAccuracy {
    pub name: String,
    /// `discrete_gaussian` or `discrete_laplace`.
    pub distribution: String,
    pub scale: f64,
    /// Half-width of the 95% interval of each noisy value: value ± this covers the noise.
    pub half_width: i64,
}

/// What a planned release would cost and how accurate it would be: from the same noise plan
/// that the release itself uses.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Quote {
    /// The allocation it is debited from.
    pub allocation: String,
    pub rho: f64,
    pub delta: f64,
    /// ε at `display_delta` (plus `delta`), for readers who think in (ε, δ).
    pub epsilon: f64,
    pub display_delta: f64,
    pub k: u32,
    pub cells: usize,
    pub statistics: Vec<StatisticAccuracy>,
}

/// Checks a submission and prices it: the spec is checked, its queries pass the
/// person-locality analyser on `plan_ctx` (a session of empty tables: nothing reads data),
/// and its noise is planned with the warehouse's `config`. Returns the spec as it will run
/// (its allocation the researcher's, its ρ set) and the quote. Whether the researcher's
/// allocation can pay is [`affordable`]'s question.
pub async fn quote(
    plan_ctx: &SessionContext,
    config: &PrivacyConfig,
    dataset_version: &str,
    programs: &[String],
    researcher: &str,
    submission: &Submission,
) -> Result<(ReleaseSpec, Quote)> {
    let refuse = |m: String| Err(RequestsError::Refused(m));
    let purpose = submission.purpose.trim();
    if purpose.is_empty() {
        return refuse("`purpose` must say why the numbers are needed".into());
    }
    if purpose.chars().count() > MAX_PURPOSE {
        return refuse(format!("`purpose` is longer than {MAX_PURPOSE} characters"));
    }
    let asked = submission.rho;
    if !(asked.is_finite() && asked > 0.0) {
        return refuse(format!("`rho` must be a positive number, got {asked}"));
    }
    let allocation = allocation_of(researcher);
    let mut spec_value = submission.spec.clone();
    let Some(object) = spec_value.as_object_mut() else {
        return refuse("`spec` must be a JSON object: a release spec".into());
    };
    match object.get("allocation") {
        None => {
            object.insert("allocation".into(), allocation.clone().into());
        }
        Some(serde_json::Value::String(a)) if *a == allocation => {}
        Some(other) => {
            return refuse(format!(
                "the spec names allocation {other}; a researcher's releases are debited from '{allocation}' only"
            ));
        }
    }
    let mut spec: ReleaseSpec = match serde_json::from_value(spec_value) {
        Ok(spec) => spec,
        Err(e) => return refuse(format!("release spec: {e}")),
    };
    if let Some(i) = spec.queries.iter().position(|q| q.file.is_some()) {
        return refuse(format!(
            "query {}: give the SQL inline as `sql`; files are not read for requests",
            i + 1
        ));
    }
    match spec.rho {
        None if spec.scales.is_empty() => spec.rho = Some(asked),
        Some(r) if (r - asked).abs() > asked * 1e-9 => {
            return refuse(format!(
                "the spec's rho = {r} differs from the rho = {asked} asked for"
            ));
        }
        _ => {}
    }
    let prepared =
        match prepare_with_programs(plan_ctx, &spec, dataset_version, config, programs).await {
            Ok(p) => p,
            Err(
                e @ (PrivacyError::Spec { .. }
                | PrivacyError::Plan { .. }
                | PrivacyError::Refused { .. }
                | PrivacyError::Output { .. }),
            ) => return refuse(e.to_string()),
            Err(e) => {
                return Err(RequestsError::Internal(format!("the plan failed: {e}")));
            }
        };
    let cost = prepared.loss.rho;
    if cost > asked * (1.0 + 1e-9) {
        return refuse(format!(
            "the declared noise scales cost rho = {cost:.6}, more than the rho = {asked} asked for"
        ));
    }
    let noise = &prepared.noise;
    let mut statistics = Vec::new();
    for (j, st) in prepared.spec.statistics.iter().enumerate() {
        statistics.push(StatisticAccuracy {
            name: st.name.clone(),
            distribution: distribution_name(noise.kind).to_string(),
            scale: noise.scale_of(j),
            half_width: noise
                .half_width(j)
                .map_err(|e| RequestsError::Internal(e.to_string()))?,
        });
    }
    let quote = Quote {
        allocation,
        rho: cost,
        delta: prepared.loss.delta,
        epsilon: prepared.d_out.epsilon,
        display_delta: prepared.d_out.display_delta,
        k: prepared.spec.k,
        cells: prepared.spec.n_cells(),
        statistics,
    };
    Ok((spec, quote))
}

/// Whether the researcher's allocation can pay for a quote now, checked against the ledger
/// exactly as the release will be, without debiting. A researcher is not told the names of
/// other allocations.
pub fn affordable(ledger: &Ledger, quote: &Quote) -> Result<()> {
    let allocation = &quote.allocation;
    let spend =
        Spend::new(quote.rho, quote.delta).map_err(|e| RequestsError::Internal(e.to_string()))?;
    match ledger.check_affordable(allocation, spend) {
        Ok(()) => Ok(()),
        Err(LedgerError::UnknownAllocation { .. }) => Err(RequestsError::OverBudget(format!(
            "no budget is allocated to '{allocation}'; ask the data steward to allocate one"
        ))),
        Err(e @ (LedgerError::OverBudget { .. } | LedgerError::HorizonEnded(_))) => {
            Err(RequestsError::OverBudget(e.to_string()))
        }
        Err(e) => Err(RequestsError::Internal(e.to_string())),
    }
}
