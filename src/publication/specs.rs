//! The release specs of a quarter's publication, built from the metric catalog in the
//! engine's one spec format: the standard release (every per-program statistic, every program
//! and the quarter as cells) and the equity release (the breakdown file's flags per program,
//! dimension and value), each with its noise, and the allocation and default budget they
//! are debited from. `publish` releases them and `plan` prices them, so the two never
//! disagree.

use crate::metrics::{Catalog, MetricFile};
use crate::privacy::ReleaseSpec;
use crate::privacy::spec::{CellSpec, DomainSpec, QuerySpec, StatisticKind, StatisticSpec};
use crate::quarter::Quarter;

/// The allocation the standard publications debit.
pub const STANDARD_ALLOCATION: &str = "standard-releases";

/// The default annual budget (zCDP ρ) and its split; see the README's "Privacy settings".
/// Four quarterly publications cost 4 × (0.430 + 0.141) = 2.28.
pub const DEFAULT_ANNUAL_RHO: f64 = 2.5;

/// The part of [`DEFAULT_ANNUAL_RHO`] for the four quarterly standard publications; the
/// rest (0.15) is for researchers' approved requests.
pub const DEFAULT_STANDARD_RHO: f64 = 2.35;

/// The noise of the equity release: each survivor counts in three margins (age band, sex,
/// race and ethnicity) of each of up to two programs, so k = 6; three flags (Σ B² = 3) at
/// σ = 8 cost ρ = 6·3 / (2·64) ≈ 0.14 per quarter.
pub const EQUITY_NOISE: StandardNoise = StandardNoise { k: 6, sigma: 8.0 };

/// The noise of the standard publication: one σ for every statistic, and `k`, the most
/// cohorts of one quarter a survivor counts in (two programs).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StandardNoise {
    pub k: u32,
    pub sigma: f64,
}

impl Default for StandardNoise {
    /// k = 2 and σ = 5.5: with 15 flags of which two exclusive pairs (Σ B² = 13), ρ = k·13 /
    /// (2σ²) ≈ 0.43 per quarter, and a rate at n = 200 has a 95% half-width of at most
    /// 1.96·√(2·31.5) / 200 ≈ 0.078 (31.5 = (11/1.96)², the counts' whole-number
    /// half-width, exceeds σ²), under ±8 points for any true rate. The equity breakdowns'
    /// rates, at [`EQUITY_NOISE`], are wider: ±0.113 at n = 200 (`plan` lists both).
    fn default() -> Self {
        StandardNoise { k: 2, sigma: 5.5 }
    }
}

/// The standard release spec of a quarter: the per-program metric files, every program and
/// the one quarter as cells, every statistic a count with noise σ.
pub fn standard_spec(catalog: &Catalog, quarter: Quarter, noise: StandardNoise) -> ReleaseSpec {
    let statistics: Vec<String> = catalog
        .per_program_statistics()
        .iter()
        .map(|(_, s)| s.name.clone())
        .collect();
    let q = quarter.to_string();
    ReleaseSpec {
        name: format!("standard metrics {q}"),
        queries: catalog
            .per_program()
            .map(|f| QuerySpec {
                file: None,
                sql: Some(f.sql.clone()),
            })
            .collect(),
        cells: vec![
            CellSpec {
                column: "program_id".into(),
                domain: DomainSpec::Programs,
            },
            CellSpec {
                column: "quarter".into(),
                domain: DomainSpec::Quarters {
                    from: q.clone(),
                    to: q,
                },
            },
        ],
        statistics: counts(&statistics),
        exclusive: exclusive_groups(&statistics),
        k: noise.k,
        rho: None,
        scales: scales(&statistics, noise),
        allocation: STANDARD_ALLOCATION.into(),
        // The rates are the publication's own post-processing (`figures`), with intervals
        // that cover whole-number noise; the release stores the counts only.
        ratios: Vec::new(),
        delta: None,
    }
}

/// The equity release of a quarter: the breakdown file's flags per (program, quarter,
/// dimension, value), every dimension's values a public domain from the dictionary, and `None`
/// when the catalog has no breakdown file.
pub fn equity_spec(
    catalog: &Catalog,
    quarter: Quarter,
    noise: StandardNoise,
) -> Option<ReleaseSpec> {
    let f = catalog.files.iter().find(|f| f.is_breakdown())?;
    let q = quarter.to_string();
    let mut values: Vec<String> = Vec::new();
    for (_, vs) in breakdown_values(f) {
        for v in vs {
            if !values.contains(&v) {
                values.push(v);
            }
        }
    }
    let statistics: Vec<String> = f.statistics.iter().map(|s| s.name.clone()).collect();
    Some(ReleaseSpec {
        name: format!("equity breakdowns {q}"),
        queries: vec![QuerySpec {
            file: None,
            sql: Some(f.sql.clone()),
        }],
        cells: vec![
            CellSpec {
                column: "program_id".into(),
                domain: DomainSpec::Programs,
            },
            CellSpec {
                column: "quarter".into(),
                domain: DomainSpec::Quarters {
                    from: q.clone(),
                    to: q,
                },
            },
            CellSpec {
                column: "dimension".into(),
                domain: DomainSpec::Values(f.breakdowns.clone()),
            },
            CellSpec {
                column: "value".into(),
                domain: DomainSpec::Values(values),
            },
        ],
        statistics: counts(&statistics),
        exclusive: Vec::new(),
        k: noise.k,
        rho: None,
        scales: scales(&statistics, noise),
        allocation: STANDARD_ALLOCATION.into(),
        ratios: Vec::new(),
        delta: None,
    })
}

/// The statistics of a standard or equity release: each a count of the query's column of its
/// name, with the spec's default bounds.
fn counts(statistics: &[String]) -> Vec<StatisticSpec> {
    statistics
        .iter()
        .map(|s| StatisticSpec {
            name: s.clone(),
            column: None,
            kind: StatisticKind::Count,
            lower: None,
            upper: None,
        })
        .collect()
}

/// Every statistic's noise scale: the one σ of `noise`.
fn scales(statistics: &[String], noise: StandardNoise) -> std::collections::BTreeMap<String, f64> {
    statistics
        .iter()
        .map(|s| (s.clone(), noise.sigma))
        .collect()
}

/// Each breakdown dimension of a file with its public values (the dictionary's enum values of
/// that `overdose_events` column).
pub(super) fn breakdown_values(f: &MetricFile) -> Vec<(String, Vec<String>)> {
    let dict = crate::dictionary::Dictionary::builtin().ok();
    f.breakdowns
        .iter()
        .map(|b| {
            let values = dict
                .and_then(|d| d.table("overdose_events"))
                .and_then(|t| t.column(b))
                .map(|c| c.values.clone())
                .unwrap_or_default();
            (b.clone(), values)
        })
        .collect()
}

/// Pairs `X_present` / `X_absent` of statistics: a survivor is on one side only (the first
/// attempt had police or not), so each pair is one exclusive group.
fn exclusive_groups(statistics: &[String]) -> Vec<Vec<String>> {
    statistics
        .iter()
        .filter_map(|s| {
            let stem = s.strip_suffix("_present")?;
            let other = format!("{stem}_absent");
            statistics.contains(&other).then(|| vec![s.clone(), other])
        })
        .collect()
}
