//! The plan of a quarter's publication (`outreach plan`): what it would cost and how precise
//! its figures would be, before anything is spent. It prepares the same specs through the
//! same noise plans as `publish`, so the two never disagree, and can search for the noise
//! that meets a target rate half-width.

use std::path::Path;

use serde::Serialize;

use super::error::{PublicationError, Result};
use super::publish::{CorrectedQuarter, corrected_quarters, rate_variance, zcdp_only};
use super::specs::{EQUITY_NOISE, StandardNoise, equity_spec, standard_spec};
use crate::ledger::Ledger;
use crate::metrics::{Catalog, RateDef};
use crate::privacy::functions;
use crate::privacy::mechanism::epsilon_at;
use crate::privacy::release::prepare;
use crate::quarter::Quarter;
use crate::warehouse::{Warehouse, open_session_at};

/// What a publication would cost and how precise it would be, before anything is spent:
/// every figure it would publish, the equity breakdowns' too, at their own noise.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub quarter: String,
    pub k: u32,
    pub sigma: f64,
    /// ρ of the whole publication: the standard release plus the equity release.
    pub rho: f64,
    /// ρ of the standard release alone.
    pub rho_standard: f64,
    /// ρ of the equity release (its own k and σ: `equity_k`, `equity_sigma`).
    pub rho_equity: f64,
    pub delta: f64,
    pub epsilon: f64,
    pub display_delta: f64,
    /// Per count of the standard release: the 95% noise half-width (OpenDP's accuracy
    /// helper).
    pub counts: Vec<(String, i64)>,
    /// The denominator at which rate half-widths are given.
    pub at: u64,
    /// Per rate of the standard release: the largest 95% half-width at `at`, over every true
    /// rate in [0, 1].
    pub rates: Vec<(String, f64)>,
    /// The equity release's k and σ.
    pub equity_k: u32,
    pub equity_sigma: f64,
    /// Per count of the equity release (one program's breakdown value): its 95% half-width
    /// at `equity_sigma`.
    pub equity_counts: Vec<(String, i64)>,
    /// Per rate of the equity release: the largest 95% half-width at `at` survivors of one
    /// breakdown value of one program, from `equity_sigma`.
    pub equity_rates: Vec<(String, f64)>,
    /// Published quarters whose rows a load corrected or retracted after their current
    /// publication, to publish again with `--republish`.
    pub corrected: Vec<CorrectedQuarter>,
}

impl Plan {
    /// The widest rate half-width at `at` over every rate the plan lists, standard and
    /// equity: what a target such as ±8 points must hold for.
    pub fn widest_rate(&self) -> f64 {
        self.rates
            .iter()
            .chain(&self.equity_rates)
            .map(|(_, h)| *h)
            .fold(0.0, f64::max)
    }
}

/// What [`planned_figures`] gives: each count's whole-number half-width, and each rate's
/// largest half-width at `at`, by name.
type PlannedFigures = (Vec<(String, i64)>, Vec<(String, f64)>);

/// The counts' half-widths and the rates' largest half-widths at `at` of a prepared release,
/// exactly as publish computes them: a count enters a rate with its noise variance, or
/// (h/1.96)² for its whole-number half-width h if that is larger (`for_rate`).
fn planned_figures<'a>(
    prepared: &crate::privacy::release::PreparedRelease,
    rates: impl Iterator<Item = &'a RateDef>,
    at: u64,
) -> Result<PlannedFigures> {
    let mut counts = Vec::new();
    for (j, s) in prepared.spec.statistics.iter().enumerate() {
        counts.push((s.name.clone(), prepared.noise.half_width(j)?));
    }
    let variance_of = |name: &str| {
        let j = prepared.spec.statistics.iter().position(|s| s.name == name);
        j.map_or(f64::NAN, |j| {
            rate_variance(1, prepared.noise.variance(j), counts[j].1 as f64)
        })
    };
    let rates: Vec<(String, f64)> = rates
        .map(|r| {
            (
                r.name.clone(),
                rate_half_width(
                    variance_of(&r.numerator),
                    variance_of(&r.denominator),
                    at as f64,
                ),
            )
        })
        .collect();
    Ok((counts, rates))
}

/// The plan of a quarter's publication at `noise` and the default equity noise
/// ([`EQUITY_NOISE`]); see [`plan_with`].
pub async fn plan(
    warehouse: &Path,
    quarter: Quarter,
    noise: StandardNoise,
    at: u64,
) -> Result<Plan> {
    plan_with(warehouse, quarter, noise, EQUITY_NOISE, at).await
}

/// The plan of a quarter's publication at `noise` (the standard release) and `equity_noise`
/// (the equity release), through the same [`prepare`] as `publish`: the same specs, the same
/// noise plans, the same OpenDP maps.
pub async fn plan_with(
    warehouse: &Path,
    quarter: Quarter,
    noise: StandardNoise,
    equity_noise: StandardNoise,
    at: u64,
) -> Result<Plan> {
    let catalog = Catalog::standard()?;
    let wh = Warehouse::open(warehouse)?;
    let manifest = wh.manifest()?;
    let ledger = Ledger::open(warehouse)?;
    let config = ledger.config()?;
    zcdp_only(&config)?;
    let corrected = corrected_quarters(&ledger, &manifest)?;
    let ctx = open_session_at(&wh, &manifest)?;
    functions::register(&ctx);
    let version = manifest.version().to_string();
    let spec = standard_spec(&catalog, quarter, noise);
    let prepared = prepare(&ctx, &spec, &version, &config).await?;
    let (counts, rates) =
        planned_figures(&prepared, catalog.per_program().flat_map(|f| &f.rates), at)?;
    let rho_standard = prepared.loss.rho;
    let (rho_equity, equity_counts, equity_rates) = match (
        equity_spec(&catalog, quarter, equity_noise),
        catalog.files.iter().find(|f| f.is_breakdown()),
    ) {
        (Some(spec), Some(file)) => {
            let equity = prepare(&ctx, &spec, &version, &config).await?;
            let (counts, rates) = planned_figures(&equity, file.rates.iter(), at)?;
            (equity.loss.rho, counts, rates)
        }
        _ => (0.0, Vec::new(), Vec::new()),
    };
    // Composition of the two releases: their ρ add (zCDP).
    let rho = rho_standard + rho_equity;
    Ok(Plan {
        quarter: quarter.to_string(),
        k: noise.k,
        sigma: noise.sigma,
        rho,
        rho_standard,
        rho_equity,
        delta: prepared.loss.delta,
        epsilon: epsilon_at(rho, config.display_delta)?,
        display_delta: config.display_delta,
        counts,
        at,
        rates,
        equity_k: equity_noise.k,
        equity_sigma: equity_noise.sigma,
        equity_counts,
        equity_rates,
        corrected,
    })
}

/// The largest 95% half-width of a rate at denominator `n` over true rates p in [0, 1]:
/// 1.96·√(Var N + p²·Var D)/n, largest at p = 1 (the variances as a rate uses them).
pub fn rate_half_width(var_num: f64, var_den: f64, n: f64) -> f64 {
    super::figures::Z95 * (var_num + var_den).sqrt() / n
}

/// The plan with the largest σ of each release (so the smallest ρ) whose every rate
/// half-width at `at` is within `target`: the standard release's σ for its rates, the equity
/// release's (at its k, [`EQUITY_NOISE`]) for the equity rates, since every rate the plan
/// lists must meet it. Refused when a σ would be below the warehouse's minimum scale.
pub async fn plan_for_target(
    warehouse: &Path,
    quarter: Quarter,
    k: u32,
    target: f64,
    at: u64,
) -> Result<Plan> {
    if !(target > 0.0 && target < 1.0) {
        return Err(PublicationError::TargetHalfWidth { target });
    }
    // With one σ for every statistic of a release, its worst rate's half-width is
    // 1.96·σ·√2/n: the same closed form for both releases.
    let closed = target * at as f64 / (super::figures::Z95 * 2f64.sqrt());
    let (mut sigma, mut equity_sigma) = (closed, closed);
    loop {
        let p = plan_with(
            warehouse,
            quarter,
            StandardNoise { k, sigma },
            StandardNoise {
                k: EQUITY_NOISE.k,
                sigma: equity_sigma,
            },
            at,
        )
        .await?;
        let standard_met = p.rates.iter().all(|(_, h)| *h <= target);
        let equity_met = p.equity_rates.iter().all(|(_, h)| *h <= target);
        if standard_met && equity_met {
            return Ok(p);
        }
        // Rounding of the closed form: step down until the plan itself meets the target.
        if !standard_met {
            sigma *= 0.999;
        }
        if !equity_met {
            equity_sigma *= 0.999;
        }
    }
}
