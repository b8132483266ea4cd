//! Sensitivity, noise scales, privacy loss and noise, all through OpenDP (privacy model §3).
//!
//! A release is one vector of `m` statistics per cell. Removing one person changes at most
//! `k` cells, and in each cell statistic j by at most B_j (an exclusive group by at most the
//! largest B of its members, since a person is on one side only). So:
//!
//! - L1 = k · Σ_b B_b and L2 = √(k · Σ_b B_b²), over *blocks* b: each exclusive group is one
//!   block, each other statistic its own block;
//! - with one noise scale for the whole vector, the loss is OpenDP's privacy map of one
//!   discrete Gaussian (or Laplace) measurement at `d_in` = L2 (or L1);
//! - with a scale per block, each block is its own measurement over its sub-vector, with
//!   `d_in` = √k · B_b (or k · B_b), and the losses add (sequential composition), which gives
//!   ρ = k · Σ_b B_b² / (2σ_b²). The sum is OpenDP's composition map, which rounds every
//!   addition up; a plain `f64` sum could round below the true composed loss.
//!
//! k · Σ B² is computed exactly in integers and must stay within 2^53 ([`MAX_SENSITIVITY`]),
//! or the spec is refused before any debit.
//!
//! We declare `d_in` ourselves; `make_count_by_categories` would give k, not √k, for L2.
//! Noise is drawn only by OpenDP's samplers, which use OpenSSL's secure generator.
//!
//! **Private partition selection.** A release with a private cell key has one count
//! statistic (B = 1). Its cells are a map from cell to count, holding only cells with a
//! positive count, and OpenDP's threshold measurement (`make_gaussian_threshold`, or
//! `make_laplace_threshold` under pure DP) adds noise to each and keeps those that reach the
//! threshold. `d_in` = (l0, l2, l∞) = (k, √k, 1) for Gaussian noise, (k, k, 1) for Laplace.
//! The threshold is the smallest integer whose δ is within the spec's δ; the release debits ρ
//! (or ε²/2) and that δ.
//!
//! **OpenDP 0.16's threshold maps undercount δ by one step** (opendp/opendp#2922): the
//! measurement keeps a cell whose noisy count *equals* the threshold T, but the map bounds
//! only P(noise > T − l∞). A cell held by one person is published with probability
//! P(noise ≥ T − l∞), up to twice as much. The measurement at T keeps exactly the cells with
//! noisy count > T − 1, which is the event OpenDP's proof analyses at threshold T − 1, so the
//! engine invokes the measurement at T and debits OpenDP's map of the same measurement at
//! T − 1 (hence T ≥ l∞ + 1). A test draws the one-person cell and checks its rate against δ.

use std::collections::HashMap;

use opendp::domains::MapDomain;
use opendp::measurements::{make_gaussian_threshold, make_laplace_threshold};
use opendp::measures::Approximate;
use opendp::metrics::{AbsoluteDistance, L0PInfDistance};

use opendp::combinators::CompositionMeasure;
use opendp::domains::{AtomDomain, VectorDomain};
use opendp::measurements::{make_gaussian, make_laplace};
use opendp::measures::{MaxDivergence, ZeroConcentratedDivergence};
use opendp::metrics::{L1Distance, L2Distance};
use serde::{Deserialize, Serialize};

use super::spec::CheckedSpec;
use super::{PrivacyError, Result};

/// The noise the warehouse config picks for every release. It lives in the ledger (the
/// warehouse's config), below the engine, so that the ledger never imports the engine.
pub use crate::ledger::NoiseKind;
use crate::ledger::{Spend, SpendError};

/// A release's sensitivity under add/remove-one-person.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Sensitivity {
    pub k: u32,
    /// k · Σ_b B_b.
    pub l1: u64,
    /// k · Σ_b B_b², exact.
    pub l2_squared: u64,
    /// √(k · Σ_b B_b²), rounded up to the next f64.
    pub l2: f64,
}

/// The largest k · Σ B² (and k · Σ B) a release may have: 2^53, so that both are exact as
/// `f64` and the scales and `d_in` computed from them are exact. Beyond it the noise would
/// drown every value anyway.
pub const MAX_SENSITIVITY: u64 = 1 << 53;

/// √x for an integer x ≤ 2^53, rounded up: the smallest f64 whose square is at least x.
pub fn sqrt_up(x: u64) -> f64 {
    let xf = x as f64;
    assert!(xf as u64 == x, "sqrt_up: {x} is not exact as f64");
    let r = xf.sqrt();
    // r*r - x with one rounding has the sign of the exact difference.
    if r.mul_add(r, -xf) < 0.0 {
        r.next_up()
    } else {
        r
    }
}

/// Sensitivity of `k` cells with block bounds `bounds` (privacy model §2), in exact integer
/// arithmetic. A spec error, before any debit, when k · Σ B² or k · Σ B exceeds
/// [`MAX_SENSITIVITY`] (2^53): the spec allows bounds up to ±2^40, whose square does not even
/// fit in 64 bits.
pub fn sensitivity(k: u32, bounds: &[i64]) -> Result<Sensitivity> {
    let too_large = || PrivacyError::Spec {
        message: format!(
            "the sensitivity k * sum of B^2 over k = {k} and bounds {bounds:?} exceeds 2^53: lower `k` or the statistics' bounds"
        ),
    };
    let k128 = u128::from(k);
    let mut sum = 0u128;
    let mut sum_sq = 0u128;
    for b in bounds {
        let b = u128::from(b.unsigned_abs());
        sum = sum.checked_add(b).ok_or_else(too_large)?;
        sum_sq = b
            .checked_mul(b)
            .and_then(|b2| sum_sq.checked_add(b2))
            .ok_or_else(too_large)?;
    }
    let l1 = k128.checked_mul(sum).ok_or_else(too_large)?;
    let l2_squared = k128.checked_mul(sum_sq).ok_or_else(too_large)?;
    let max = u128::from(MAX_SENSITIVITY);
    if l1 > max || l2_squared > max {
        return Err(too_large());
    }
    let (l1, l2_squared) = (l1 as u64, l2_squared as u64);
    Ok(Sensitivity {
        k,
        l1,
        l2_squared,
        l2: sqrt_up(l2_squared),
    })
}

/// A block of statistics that shares one noise scale and one bound.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoiseBlock {
    /// Indices of its statistics.
    pub statistics: Vec<usize>,
    /// B_b: the most one person changes this block in one cell.
    pub bound: i64,
    /// σ (Gaussian) or b (Laplace).
    pub scale: f64,
}

/// How a release is noised: the kind, the blocks and their scales.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NoisePlan {
    pub kind: NoiseKind,
    pub k: u32,
    pub n_cells: usize,
    pub m: usize,
    pub blocks: Vec<NoiseBlock>,
    /// Private partition selection: the threshold a noisy count must reach to be published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<Threshold>,
}

/// The threshold of private partition selection.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Threshold {
    /// A cell is published when its noisy count is at least this.
    pub value: i64,
    /// The δ the spec allowed; OpenDP's map at `value` is within it.
    pub delta_target: f64,
}

/// Largest threshold the search tries: far beyond any useful one.
const MAX_THRESHOLD: i64 = 1 << 40;

/// The privacy loss of a release, from OpenDP's maps: the [`Spend`] the ledger debits, and
/// ε for a pure-DP release. It dereferences to its spend, so `loss.rho()` and `loss.delta()`
/// read it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(into = "LossFields", try_from = "LossFields")]
pub struct Loss {
    /// The zCDP ρ debited, and the δ of approximate parts (private partition selection; 0
    /// otherwise).
    pub spend: Spend,
    /// ε of a pure-DP release (ρ = ε²/2); none for zCDP.
    pub epsilon: Option<f64>,
}

impl std::ops::Deref for Loss {
    type Target = Spend;
    fn deref(&self) -> &Spend {
        &self.spend
    }
}

/// A loss as it is written: `{ "rho": …, "epsilon": …, "delta": … }`, without `epsilon` for
/// zCDP.
#[derive(Serialize, Deserialize)]
struct LossFields {
    rho: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    epsilon: Option<f64>,
    delta: f64,
}

impl From<Loss> for LossFields {
    fn from(l: Loss) -> LossFields {
        LossFields {
            rho: l.spend.rho(),
            epsilon: l.epsilon,
            delta: l.spend.delta(),
        }
    }
}

impl TryFrom<LossFields> for Loss {
    type Error = SpendError;
    fn try_from(f: LossFields) -> std::result::Result<Loss, SpendError> {
        Ok(Loss {
            spend: Spend::new(f.rho, f.delta)?,
            epsilon: f.epsilon,
        })
    }
}

/// The spend of a loss that OpenDP's maps gave: refused when it is no finite, non-negative
/// pair, which only noise scales far too small for their sensitivity can cause.
fn loss_spend(rho: f64, delta: f64) -> Result<Spend> {
    Spend::new(rho, delta).map_err(|e| PrivacyError::Spec {
        message: format!(
            "the privacy loss of these noise scales is not a budget amount ({e}): use larger scales"
        ),
    })
}

fn odp(e: opendp::error::Error) -> PrivacyError {
    PrivacyError::OpenDp(format!(
        "{:?}: {}",
        e.variant,
        e.message.unwrap_or_default()
    ))
}

type IntVec = VectorDomain<AtomDomain<i64>>;

/// Maps from a cell's index to its count: the input of partition selection.
type CountMap = MapDomain<AtomDomain<u64>, AtomDomain<i64>>;

/// Private partition selection under zCDP: (l0, l2, l∞) → (ρ, δ).
type GaussianThreshold = opendp::core::Measurement<
    CountMap,
    L0PInfDistance<2, AbsoluteDistance<f64>>,
    Approximate<ZeroConcentratedDivergence>,
    HashMap<u64, i64>,
>;

/// Private partition selection under pure DP: (l0, l1, l∞) → (ε, δ).
type LaplaceThreshold = opendp::core::Measurement<
    CountMap,
    L0PInfDistance<1, AbsoluteDistance<f64>>,
    Approximate<MaxDivergence>,
    HashMap<u64, i64>,
>;

fn count_maps() -> CountMap {
    MapDomain::new(AtomDomain::<u64>::default(), AtomDomain::<i64>::default())
}

fn int_vectors() -> IntVec {
    VectorDomain::new(AtomDomain::<i64>::default())
}

impl NoisePlan {
    /// Chooses the scales of a checked spec. With `rho`, one scale for the whole vector that
    /// spends exactly ρ; with `scales`, those, refused if below `min_scale` or if they
    /// disagree with a `rho` also given.
    pub fn choose(spec: &CheckedSpec, kind: NoiseKind, min_scale: f64) -> Result<NoisePlan> {
        let m = spec.statistics.len();
        let mut blocks: Vec<NoiseBlock> = Vec::new();
        let mut in_group = vec![false; m];
        for g in &spec.exclusive {
            for &j in g {
                in_group[j] = true;
            }
            blocks.push(NoiseBlock {
                statistics: g.clone(),
                bound: g
                    .iter()
                    .map(|&j| spec.statistics[j].bound())
                    .max()
                    .unwrap_or(0),
                scale: 0.0,
            });
        }
        for j in (0..m).filter(|&j| !in_group[j]) {
            blocks.push(NoiseBlock {
                statistics: vec![j],
                bound: spec.statistics[j].bound(),
                scale: 0.0,
            });
        }
        blocks.sort_by_key(|b| b.statistics[0]);
        let mut plan = NoisePlan {
            kind,
            k: spec.k,
            n_cells: spec.n_cells(),
            m,
            blocks,
            threshold: None,
        };
        // Refuses bounds whose k · Σ B² is beyond 2^53 (a spec error, before any debit); every
        // block's own sensitivity is below the whole vector's.
        let s = plan.sensitivity()?;
        match &spec.scales {
            Some(scales) => {
                for b in &mut plan.blocks {
                    b.scale = scales[b.statistics[0]];
                }
            }
            None => {
                let rho = spec.rho.expect("checked: rho or scales");
                let scale = match kind {
                    // ρ = L2² / (2σ²)
                    NoiseKind::DiscreteGaussian => (s.l2_squared as f64 / (2.0 * rho)).sqrt(),
                    // ε = √(2ρ) = L1 / b
                    NoiseKind::DiscreteLaplace => s.l1 as f64 / (2.0 * rho).sqrt(),
                };
                for b in &mut plan.blocks {
                    b.scale = scale;
                }
            }
        }
        if plan.blocks.iter().any(|b| b.bound == 0) {
            return Err(PrivacyError::Spec {
                message: "a statistic with bounds [0, 0] carries no information".into(),
            });
        }
        for b in &plan.blocks {
            if !(b.scale.is_finite() && b.scale >= min_scale) {
                let names: Vec<&str> = b
                    .statistics
                    .iter()
                    .map(|&j| spec.statistics[j].name.as_str())
                    .collect();
                return Err(PrivacyError::Spec {
                    message: format!(
                        "noise scale {:.4} for {} is below the configured minimum {min_scale}: ask for a smaller rho or larger scales",
                        b.scale,
                        names.join(", ")
                    ),
                });
            }
        }
        if let Some(target) = spec.delta {
            plan.threshold = Some(plan.choose_threshold(target)?);
        }
        if let (Some(rho), Some(_)) = (spec.rho, &spec.scales) {
            let loss = plan.loss()?;
            if (loss.rho - rho).abs() > 1e-9 * rho {
                return Err(PrivacyError::Spec {
                    message: format!(
                        "the spec gives rho = {rho} and scales that spend rho = {}: give one, or make them agree",
                        loss.rho
                    ),
                });
            }
        }
        Ok(plan)
    }

    /// The block bounds B_b.
    pub fn bounds(&self) -> Vec<i64> {
        self.blocks.iter().map(|b| b.bound).collect()
    }

    /// The release's sensitivity; a spec error when it is beyond [`MAX_SENSITIVITY`].
    pub fn sensitivity(&self) -> Result<Sensitivity> {
        sensitivity(self.k, &self.bounds())
    }

    /// The scale shared by every block, if there is one.
    pub fn single_scale(&self) -> Option<f64> {
        let first = self.blocks.first()?.scale;
        self.blocks
            .iter()
            .all(|b| b.scale == first)
            .then_some(first)
    }

    /// The scale of statistic `j`.
    pub fn scale_of(&self, j: usize) -> f64 {
        self.blocks
            .iter()
            .find(|b| b.statistics.contains(&j))
            .map(|b| b.scale)
            .expect("every statistic is in a block")
    }

    /// `d_in` of block b alone: √k·B_b (L2, rounded up) or k·B_b (L1).
    fn block_sensitivity(&self, b: &NoiseBlock) -> Result<Sensitivity> {
        sensitivity(self.k, &[b.bound])
    }

    /// The threshold measurement's `d_in` = (l0, lp, l∞): k cells, each by at most B.
    fn threshold_d_in(&self) -> Result<(u32, f64, f64)> {
        let [block] = self.blocks.as_slice() else {
            return Err(PrivacyError::Spec {
                message: "private partition selection needs exactly one statistic".into(),
            });
        };
        let s = self.block_sensitivity(block)?;
        let lp = match self.kind {
            NoiseKind::DiscreteGaussian => s.l2,
            NoiseKind::DiscreteLaplace => s.l1 as f64,
        };
        Ok((self.k, lp, block.bound as f64))
    }

    /// (ρ or ε, δ) of the threshold measurement at `threshold`: OpenDP's map of the same
    /// measurement at `threshold − 1`, which bounds the event `noisy count ≥ threshold` that
    /// the measurement at `threshold` publishes (see the module docs, opendp/opendp#2922).
    fn threshold_map(&self, threshold: i64) -> Result<(f64, f64)> {
        let d_in = self.threshold_d_in()?;
        let scale = self.blocks[0].scale;
        let threshold = threshold - 1;
        match self.kind {
            NoiseKind::DiscreteGaussian => self
                .gaussian_threshold(scale, threshold)?
                .map(&d_in)
                .map_err(odp),
            NoiseKind::DiscreteLaplace => self
                .laplace_threshold(scale, threshold)?
                .map(&d_in)
                .map_err(odp),
        }
    }

    /// The smallest threshold whose δ, by OpenDP's map, is at most `target`. δ falls as
    /// the threshold rises, so: double until it fits, then bisect.
    pub fn choose_threshold(&self, target: f64) -> Result<Threshold> {
        let (_, _, linf) = self.threshold_d_in()?;
        let fits = |t: i64| -> Result<bool> { Ok(self.threshold_map(t)?.1 <= target) };
        // OpenDP refuses a threshold below l∞, and the map is taken one below.
        let mut lo = linf as i64 + 1;
        if fits(lo)? {
            return Ok(Threshold {
                value: lo,
                delta_target: target,
            });
        }
        let mut hi = lo.max(1) * 2;
        while !fits(hi)? {
            if hi >= MAX_THRESHOLD {
                return Err(PrivacyError::Spec {
                    message: format!(
                        "no threshold up to {MAX_THRESHOLD} gives delta <= {target:e} at this noise scale"
                    ),
                });
            }
            lo = hi;
            hi *= 2;
        }
        // fits(hi) and !fits(lo)
        while hi - lo > 1 {
            let mid = lo + (hi - lo) / 2;
            if fits(mid)? {
                hi = mid;
            } else {
                lo = mid;
            }
        }
        Ok(Threshold {
            value: hi,
            delta_target: target,
        })
    }

    /// The privacy loss: OpenDP's privacy map of the measurement(s) at the declared `d_in`.
    /// With a scale per block, the blocks' losses are composed by OpenDP's composition
    /// measure (`CompositionMeasure::compose`, the map of `make_composition`), which adds
    /// them rounding up, so the total is never below the true composed loss.
    pub fn loss(&self) -> Result<Loss> {
        if let Some(t) = self.threshold {
            let (d, delta) = self.threshold_map(t.value)?;
            return Ok(match self.kind {
                NoiseKind::DiscreteGaussian => Loss {
                    spend: loss_spend(d, delta)?,
                    epsilon: None,
                },
                // (ε, δ)-DP is δ-approximate (ε²/2)-zCDP.
                NoiseKind::DiscreteLaplace => Loss {
                    spend: loss_spend((d * d / 2.0).next_up(), delta)?,
                    epsilon: Some(d),
                },
            });
        }
        match self.kind {
            NoiseKind::DiscreteGaussian => {
                let rho = match self.single_scale() {
                    Some(scale) => self
                        .gaussian(scale)?
                        .map(&self.sensitivity()?.l2)
                        .map_err(odp)?,
                    None => {
                        let mut parts = Vec::with_capacity(self.blocks.len());
                        for b in &self.blocks {
                            let d_in = self.block_sensitivity(b)?.l2;
                            parts.push(self.gaussian(b.scale)?.map(&d_in).map_err(odp)?);
                        }
                        ZeroConcentratedDivergence.compose(parts).map_err(odp)?
                    }
                };
                Ok(Loss {
                    spend: loss_spend(rho, 0.0)?,
                    epsilon: None,
                })
            }
            NoiseKind::DiscreteLaplace => {
                let d_in = |s: Sensitivity| -> Result<i64> {
                    i64::try_from(s.l1).map_err(|_| PrivacyError::Spec {
                        message: "sensitivity too large".into(),
                    })
                };
                let (epsilon, rho) = match self.single_scale() {
                    Some(scale) => {
                        let d = d_in(self.sensitivity()?)?;
                        let eps = self.laplace(scale)?.map(&d).map_err(odp)?;
                        let rho = opendp::combinators::make_pureDP_to_zCDP(self.laplace(scale)?)
                            .map_err(odp)?
                            .map(&d)
                            .map_err(odp)?;
                        (eps, rho)
                    }
                    None => {
                        let mut parts = Vec::with_capacity(self.blocks.len());
                        for b in &self.blocks {
                            parts.push(
                                self.laplace(b.scale)?
                                    .map(&d_in(self.block_sensitivity(b)?)?)
                                    .map_err(odp)?,
                            );
                        }
                        // Pure-DP composes by adding ε (rounded up by OpenDP); the total is
                        // debited as ρ = ε²/2, rounded up: ε·ε loses at most half an ulp,
                        // the halving is exact, and next_up gains a whole one.
                        let eps = MaxDivergence.compose(parts).map_err(odp)?;
                        (eps, (eps * eps / 2.0).next_up())
                    }
                };
                Ok(Loss {
                    spend: loss_spend(rho, 0.0)?,
                    epsilon: Some(epsilon),
                })
            }
        }
    }

    fn gaussian(
        &self,
        scale: f64,
    ) -> Result<
        opendp::core::Measurement<IntVec, L2Distance<f64>, ZeroConcentratedDivergence, Vec<i64>>,
    > {
        make_gaussian::<_, _, ZeroConcentratedDivergence>(
            int_vectors(),
            L2Distance::<f64>::default(),
            scale,
            None,
        )
        .map_err(odp)
    }

    fn laplace(
        &self,
        scale: f64,
    ) -> Result<opendp::core::Measurement<IntVec, L1Distance<i64>, MaxDivergence, Vec<i64>>> {
        make_laplace::<_, _, MaxDivergence>(
            int_vectors(),
            L1Distance::<i64>::default(),
            scale,
            None,
        )
        .map_err(odp)
    }

    fn gaussian_threshold(&self, scale: f64, threshold: i64) -> Result<GaussianThreshold> {
        make_gaussian_threshold::<_, _, Approximate<ZeroConcentratedDivergence>>(
            count_maps(),
            L0PInfDistance(AbsoluteDistance::<f64>::default()),
            scale,
            threshold,
            None,
        )
        .map_err(odp)
    }

    fn laplace_threshold(&self, scale: f64, threshold: i64) -> Result<LaplaceThreshold> {
        make_laplace_threshold::<_, _, Approximate<MaxDivergence>>(
            count_maps(),
            L0PInfDistance(AbsoluteDistance::<f64>::default()),
            scale,
            threshold,
            None,
        )
        .map_err(odp)
    }

    /// Private partition selection: noise on every cell of `counts` (cell → count, only
    /// positive counts) and only the cells whose noisy count reaches the threshold, through
    /// OpenDP's threshold measurement.
    pub fn draw_thresholded(&self, counts: &HashMap<u64, i64>) -> Result<HashMap<u64, i64>> {
        let t = self
            .threshold
            .ok_or_else(|| PrivacyError::Internal("no threshold for a private key".into()))?;
        if counts.values().any(|&c| c <= 0) {
            return Err(PrivacyError::Internal(
                "a cell without a positive count reached partition selection".into(),
            ));
        }
        let scale = self.blocks[0].scale;
        match self.kind {
            NoiseKind::DiscreteGaussian => self
                .gaussian_threshold(scale, t.value)?
                .invoke(counts)
                .map_err(odp),
            NoiseKind::DiscreteLaplace => self
                .laplace_threshold(scale, t.value)?
                .invoke(counts)
                .map_err(odp),
        }
    }

    /// Adds noise to the exact bounded vector (`n_cells × m`, cell-major), through OpenDP.
    pub fn draw(&self, exact: &[i64]) -> Result<Vec<i64>> {
        if self.threshold.is_some() {
            return Err(PrivacyError::Internal(
                "a release with a private key is drawn by draw_thresholded".into(),
            ));
        }
        if exact.len() != self.n_cells * self.m {
            return Err(PrivacyError::Internal(format!(
                "vector of {} values, expected {}",
                exact.len(),
                self.n_cells * self.m
            )));
        }
        if let Some(scale) = self.single_scale() {
            let v = exact.to_vec();
            return match self.kind {
                NoiseKind::DiscreteGaussian => self.gaussian(scale)?.invoke(&v).map_err(odp),
                NoiseKind::DiscreteLaplace => self.laplace(scale)?.invoke(&v).map_err(odp),
            };
        }
        let mut out = exact.to_vec();
        for b in &self.blocks {
            let sub: Vec<i64> = (0..self.n_cells)
                .flat_map(|c| b.statistics.iter().map(move |&j| exact[c * self.m + j]))
                .collect();
            let noisy = match self.kind {
                NoiseKind::DiscreteGaussian => self.gaussian(b.scale)?.invoke(&sub).map_err(odp)?,
                NoiseKind::DiscreteLaplace => self.laplace(b.scale)?.invoke(&sub).map_err(odp)?,
            };
            let width = b.statistics.len();
            for c in 0..self.n_cells {
                for (i, &j) in b.statistics.iter().enumerate() {
                    out[c * self.m + j] = noisy[c * width + i];
                }
            }
        }
        Ok(out)
    }

    /// Half-width h of the 95% noise interval of statistic `j`: |noise| ≤ h with
    /// probability at least 0.95. OpenDP's accuracy `a` bounds |noise| < a, so for integer
    /// noise h = ⌈a⌉ − 1.
    pub fn half_width(&self, j: usize) -> Result<i64> {
        half_width(self.kind, self.scale_of(j), 0.05)
    }

    /// The variance of the noise of statistic `j` (for the delta method on ratios).
    pub fn variance(&self, j: usize) -> f64 {
        noise_variance(self.kind, self.scale_of(j))
    }
}

/// The variance of discrete noise of a kind and scale: at most σ² for the discrete Gaussian
/// (σ² is used, conservatively), 2·e^(−1/b) / (1 − e^(−1/b))² for the discrete Laplace.
pub fn noise_variance(kind: NoiseKind, scale: f64) -> f64 {
    match kind {
        NoiseKind::DiscreteGaussian => scale * scale,
        NoiseKind::DiscreteLaplace => {
            let q = (-1.0 / scale).exp();
            2.0 * q / ((1.0 - q) * (1.0 - q))
        }
    }
}

/// Half-width of the (1 − α) noise interval for a scale, from OpenDP's accuracy helpers.
pub fn half_width(kind: NoiseKind, scale: f64, alpha: f64) -> Result<i64> {
    let a = match kind {
        NoiseKind::DiscreteGaussian => {
            opendp::accuracy::discrete_gaussian_scale_to_accuracy(scale, alpha).map_err(odp)?
        }
        NoiseKind::DiscreteLaplace => {
            opendp::accuracy::discrete_laplacian_scale_to_accuracy(scale, alpha).map_err(odp)?
        }
    };
    Ok((a.ceil() as i64 - 1).max(0))
}

/// ε at `delta` for a zCDP ρ, through OpenDP's conversion.
pub fn epsilon_at(rho: f64, delta: f64) -> Result<f64> {
    use opendp::combinators::ConcentratedMeasure;
    if rho == 0.0 {
        return Ok(0.0);
    }
    let profile = <ZeroConcentratedDivergence as ConcentratedMeasure>::convert(rho).map_err(odp)?;
    profile.epsilon(delta).map_err(odp)
}
