//! What a release publishes: each statistic's noisy values with their 95% noise intervals,
//! ratios of two noisy statistics, the cells that private partition selection kept, and the
//! public view of a stored release, the only part of it anyone but the steward may see.
//! Everything here is post-processing of the noisy draw and costs no budget.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::plan::PreparedRelease;
use crate::ledger::StoredRelease;
use crate::privacy::bounding::{BoundingRules, CellChoiceKey};
use crate::privacy::mechanism;
use crate::privacy::spec::StatisticKind;
use crate::privacy::{PrivacyError, Result};

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
    let Some((r, variance)) = delta_ratio(num, den, var_num, var_den, den_half_width) else {
        return RatioValue::InsufficientData;
    };
    let sd = variance.sqrt();
    RatioValue::Estimate {
        estimate: r,
        lower: r - 1.96 * sd,
        upper: r + 1.96 * sd,
    }
}

/// The one rate of the warehouse: `num ÷ den` of two independently noised values, with its
/// delta-method variance `(Var N + r² Var D) / D²`. `None` when the noisy denominator cannot
/// carry a rate: NaN, ≤ 0, or within `2 × den_half_width` of zero. A release's ratio
/// ([`ratio`]) and a publication's rate (`publication::figures::rate`) both come from it.
pub fn delta_ratio(
    num: f64,
    den: f64,
    var_num: f64,
    var_den: f64,
    den_half_width: f64,
) -> Option<(f64, f64)> {
    // NaN fails every comparison: `is_nan` keeps a NaN denominator insufficient too.
    if den.is_nan() || den <= 0.0 || den <= 2.0 * den_half_width {
        return None;
    }
    let r = num / den;
    Some((r, (var_num + r * r * var_den) / (den * den)))
}
