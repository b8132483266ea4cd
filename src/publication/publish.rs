//! The quarterly publication of the standard metrics (`outreach publish`): the figures
//! computed from its releases, the publication recorded in the ledger, and the quarter's
//! privacy loss.
//!
//! A publication is one joint release of the per-program metric files for one quarter, every
//! program a cell, debited from the `standard-releases` allocation. Its rates, rate
//! differences and sums over groups of programs (by team model, police on visits, warrant
//! policy, region, and statewide) are post-processing of the released noisy counts,
//! computed once here and stored with the publication; they cost nothing more. The sums
//! count person-cells: a survivor in two programs' cohorts counts in both.
//!
//! Publishing a quarter again on the same dataset version replays the stored release and
//! spends nothing. After new data the quarter is refused unless `--republish`, which makes a
//! new, debited release whose publication supersedes the old one; both stay in the store.
//!
//! A load that corrects or retracts stored rows after a quarter was published marks that
//! quarter in the manifest ([`crate::warehouse::Manifest::quarters_revised_after`]):
//! `publish`, `plan` and the API say which published quarters it touched
//! ([`corrected_quarters`]), so the steward republishes them (`--republish`, a new debit).
//!
//! A publication reads the manifest once and works on that snapshot throughout (the
//! republish guard, completeness, the programs and both releases), and its two releases
//! are priced before anything is spent and debited together, in one transaction: a quarter
//! is published whole, from one dataset version, or not at all.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::NaiveDate;
use serde::{Deserialize, Serialize};

use super::document::{
    BreakdownFigures, Completeness, GroupFigures, IncompleteTable, PUBLICATION_NOTE,
    PUBLICATION_VERSION, ProgramFigures, Publication,
};
use super::error::{PublicationError, Result};
use super::figures::{CountFigure, DifferenceFigure, Noisy, RateEstimate, RateFigure, rate};
use super::specs::{StandardNoise, breakdown_values, equity_spec, standard_spec};
use super::stored::{NewPublication, StoredPublication};
use crate::ledger::Ledger;
use crate::metrics::Catalog;
use crate::privacy::mechanism::{epsilon_at, noise_variance};
use crate::privacy::release::PublicRelease;
use crate::privacy::{NoiseKind, ReleaseRequest, release_all};
use crate::quarter::Quarter;
use crate::warehouse::{DatasetVersion, Manifest, Warehouse, open_session_at};

/// The completeness of every per-program statistic for `quarter`, from the manifest's
/// declared dates, never from the data.
pub fn completeness(
    catalog: &Catalog,
    manifest: &crate::warehouse::Manifest,
    quarter: Quarter,
) -> Vec<Completeness> {
    catalog
        .per_program_statistics()
        .into_iter()
        .map(|(f, s)| {
            let needs = quarter.last_day() + chrono::Days::new(s.window[1] as u64);
            let incomplete_tables: Vec<IncompleteTable> = f
                .tables_of(s)
                .iter()
                .filter_map(|t| {
                    let declared: Option<NaiveDate> = manifest.complete_through(t);
                    declared.is_none_or(|d| d < needs).then(|| IncompleteTable {
                        table: t.clone(),
                        declared_through: declared.map(|d| d.to_string()),
                    })
                })
                .collect();
            Completeness {
                statistic: s.name.clone(),
                complete: incomplete_tables.is_empty(),
                needs_complete_through: needs.to_string(),
                incomplete_tables,
            }
        })
        .collect()
}

/// Public metadata of a program: the group keys of the aggregates, and a row of
/// `/v1/programs` (its schema is named `Program`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = Program)]
pub struct ProgramInfo {
    pub program_id: String,
    pub program_name: String,
    pub region: String,
    pub team_model: String,
    pub police_on_visits: String,
    pub warrant_check: String,
}

/// The group keys of the aggregates, in order.
pub const GROUPINGS: &[&str] = &[
    "team_model",
    "police_on_visits",
    "warrant_check",
    "region",
    "statewide",
];

impl ProgramInfo {
    fn group(&self, by: &str) -> &str {
        match by {
            "team_model" => &self.team_model,
            "police_on_visits" => &self.police_on_visits,
            "warrant_check" => &self.warrant_check,
            "region" => &self.region,
            _ => "statewide",
        }
    }
}

/// The public `programs` table, read as the dictionary declares it
/// ([`crate::warehouse::programs`]).
pub async fn programs(ctx: &datafusion::prelude::SessionContext) -> Result<Vec<ProgramInfo>> {
    let run = PublicationError::Programs;
    let table = crate::warehouse::programs::read(ctx)
        .await
        .map_err(|e| run(e.to_string()))?;
    let [id, name, region, model, police, warrant] = [
        "program_id",
        "program_name",
        "region",
        "team_model",
        "police_on_visits",
        "warrant_check",
    ]
    .map(|c| table.column(c).ok_or(c));
    let missing = |c: &str| run(format!("the programs table has no column {c}"));
    let (id, name, region, model, police, warrant) = (
        id.map_err(missing)?,
        name.map_err(missing)?,
        region.map_err(missing)?,
        model.map_err(missing)?,
        police.map_err(missing)?,
        warrant.map_err(missing)?,
    );
    Ok(table
        .rows
        .iter()
        .map(|r| {
            let v = |i: usize| r[i].clone().unwrap_or_default();
            ProgramInfo {
                program_id: v(id),
                program_name: v(name),
                region: v(region),
                team_model: v(model),
                police_on_visits: v(police),
                warrant_check: v(warrant),
            }
        })
        .collect())
}

/// Per statistic of a release: the variance of its noise and OpenDP's 95% half-width.
fn statistic_noise(res: &crate::privacy::release::ReleaseResult) -> BTreeMap<&str, (f64, f64)> {
    res.statistics
        .iter()
        .map(|s| {
            let kind = match s.distribution.as_str() {
                "discrete_laplace" => NoiseKind::DiscreteLaplace,
                _ => NoiseKind::DiscreteGaussian,
            };
            (
                s.name.as_str(),
                (noise_variance(kind, s.scale), s.half_width as f64),
            )
        })
        .collect()
}

/// The whole-number half-width that covers a count's noise with probability at least 95%:
/// OpenDP's for one program's count; for a sum over programs the normal approximation,
/// rounded up, since the summed noise is a whole number too (1.96·√(Σ var) itself would
/// cover it only about 94.8% of the time).
fn covering_half_width(
    statistic: &str,
    n: Noisy,
    programs: usize,
    noise: &BTreeMap<&str, (f64, f64)>,
) -> f64 {
    covering(
        programs,
        n.variance,
        noise.get(statistic).map_or(0.0, |n| n.1),
    )
}

/// [`covering_half_width`] from the numbers: `single_half_width` for one program, the normal
/// approximation rounded up for a sum of noise variance `variance`.
fn covering(programs: usize, variance: f64, single_half_width: f64) -> f64 {
    if programs == 1 {
        single_half_width
    } else {
        (super::figures::Z95 * variance.sqrt()).ceil()
    }
}

/// The count figure of a statistic summed over `programs` programs.
fn summed_count(
    statistic: &str,
    n: Noisy,
    programs: usize,
    noise: &BTreeMap<&str, (f64, f64)>,
    complete: bool,
) -> CountFigure {
    let half = covering_half_width(statistic, n, programs, noise);
    CountFigure::new(statistic, n.raw, half, complete)
}

/// A count as it enters a rate: its variance at least (h/1.96)² for its covering half-width
/// h, so that a rate's delta-method interval covers whole-number noise as its counts' do
/// (with the noise variance itself, a rate near 0 covers only about 94.4%).
fn for_rate(
    statistic: &str,
    n: Noisy,
    programs: usize,
    noise: &BTreeMap<&str, (f64, f64)>,
) -> Noisy {
    let single = noise.get(statistic).map_or(0.0, |n| n.1);
    Noisy {
        raw: n.raw,
        variance: rate_variance(programs, n.variance, single),
    }
}

/// The variance with which a count summed over `programs` programs (noise variance
/// `variance`; one program's OpenDP half-width `single_half_width`) enters a rate: the larger
/// of its noise variance and (h/1.96)² for its covering half-width h ([`for_rate`]).
pub fn rate_variance(programs: usize, variance: f64, single_half_width: f64) -> f64 {
    let h = covering(programs, variance, single_half_width) / super::figures::Z95;
    variance.max(h * h)
}

/// The noise of a stored publication's counts, to rebuild from its document what
/// [`figures`] computed, such as a rate's delta-method variance for the change of a figure
/// between two quarters' publications. Every standard count of a publication has the
/// document's distribution and scale, so one program's count has this variance and this
/// OpenDP half-width, as the release reported them (`statistic_noise`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CountNoise {
    /// The noise variance of one program's count.
    pub variance: f64,
    /// OpenDP's 95% half-width of one program's count.
    pub half_width: f64,
}

impl CountNoise {
    /// The noise of `doc`'s counts, through the same OpenDP helpers as the release.
    pub fn of(doc: &Publication) -> Result<CountNoise> {
        let kind = match doc.distribution.as_str() {
            "discrete_laplace" => NoiseKind::DiscreteLaplace,
            _ => NoiseKind::DiscreteGaussian,
        };
        Ok(CountNoise {
            variance: noise_variance(kind, doc.scale),
            half_width: crate::privacy::mechanism::half_width(kind, doc.scale, 0.05)? as f64,
        })
    }

    /// A count summed over `programs` programs with raw value `raw`, as it enters a rate
    /// ([`for_rate`]). Its noise variance is summed one program at a time, as
    /// [`Noisy::sum`] sums it, so the rebuilt figures are the stored ones to the last bit.
    pub fn count(&self, raw: f64, programs: usize) -> Noisy {
        let variance = (0..programs).fold(0.0, |v, _| v + self.variance);
        Noisy {
            raw,
            variance: rate_variance(programs, variance, self.half_width),
        }
    }

    /// The estimate of a stored rate whose counts, summed over `programs` programs, are
    /// `counts`; `None` when its denominator is insufficient, or a count is missing.
    pub fn rate(
        &self,
        counts: &[CountFigure],
        programs: usize,
        numerator: &str,
        denominator: &str,
    ) -> Option<RateEstimate> {
        let raw = |s: &str| counts.iter().find(|c| c.statistic == s).map(|c| c.raw);
        rate(
            self.count(raw(numerator)?, programs),
            self.count(raw(denominator)?, programs),
        )
    }
}

/// Builds the equity figures from the equity release: only (dimension, value) pairs whose
/// value belongs to that dimension, per program and statewide.
pub fn breakdown_figures(
    catalog: &Catalog,
    public: &PublicRelease,
    programs: &[ProgramInfo],
    completeness: &[Completeness],
) -> Vec<BreakdownFigures> {
    let Some(f) = catalog.files.iter().find(|f| f.is_breakdown()) else {
        return Vec::new();
    };
    let res = &public.result;
    let key = |name: &str| res.cell_keys.iter().position(|k| k == name);
    let (Some(pi), Some(di), Some(vi)) = (key("program_id"), key("dimension"), key("value")) else {
        return Vec::new();
    };
    let complete = |s: &str| {
        completeness
            .iter()
            .find(|c| c.statistic == s)
            .is_some_and(|c| c.complete)
    };
    let noise = statistic_noise(res);
    let mut raw: BTreeMap<(&str, &str, &str, &str), f64> = BTreeMap::new();
    for s in &res.statistics {
        for (cell, v) in res.cells.iter().zip(&s.values) {
            raw.insert((&cell[pi], &cell[di], &cell[vi], &s.name), v.raw as f64);
        }
    }
    let mut out = Vec::new();
    let scopes: Vec<(String, Vec<&str>)> = programs
        .iter()
        .map(|p| (p.program_id.clone(), vec![p.program_id.as_str()]))
        .chain(std::iter::once((
            "statewide".to_string(),
            programs.iter().map(|p| p.program_id.as_str()).collect(),
        )))
        .collect();
    for (scope, ids) in &scopes {
        for (dimension, values) in breakdown_values(f) {
            for value in values {
                let noisy = |s: &str| {
                    Noisy::sum(ids.iter().map(|p| {
                        Noisy {
                            raw: raw
                                .get(&(*p, dimension.as_str(), value.as_str(), s))
                                .copied()
                                .unwrap_or(0.0),
                            variance: noise.get(s).map_or(0.0, |n| n.0),
                        }
                    }))
                };
                let counts = f
                    .statistics
                    .iter()
                    .map(|s| {
                        summed_count(
                            &s.name,
                            noisy(&s.name),
                            ids.len(),
                            &noise,
                            complete(&s.name),
                        )
                    })
                    .collect();
                let rates = f
                    .rates
                    .iter()
                    .map(|r| {
                        RateFigure::new(
                            &r.name,
                            &r.numerator,
                            &r.denominator,
                            rate(
                                for_rate(&r.numerator, noisy(&r.numerator), ids.len(), &noise),
                                for_rate(&r.denominator, noisy(&r.denominator), ids.len(), &noise),
                            ),
                            complete(&r.numerator) && complete(&r.denominator),
                        )
                    })
                    .collect();
                out.push(BreakdownFigures {
                    scope: scope.clone(),
                    dimension: dimension.clone(),
                    value,
                    counts,
                    rates,
                });
            }
        }
    }
    out
}

/// Builds the figures of a publication from its released numbers.
pub fn figures(
    catalog: &Catalog,
    public: &PublicRelease,
    programs: &[ProgramInfo],
    completeness: &[Completeness],
) -> std::result::Result<(Vec<ProgramFigures>, Vec<GroupFigures>), String> {
    let res = &public.result;
    let pi = res
        .cell_keys
        .iter()
        .position(|k| k == "program_id")
        .ok_or("the release has no program_id cell key")?;
    let complete: BTreeMap<&str, bool> = completeness
        .iter()
        .map(|c| (c.statistic.as_str(), c.complete))
        .collect();
    // Per statistic: its noise variance and OpenDP half-width.
    let noise = statistic_noise(res);
    let mut values: BTreeMap<(&str, &str), f64> = BTreeMap::new();
    for s in &res.statistics {
        for (cell, v) in res.cells.iter().zip(&s.values) {
            values.insert((cell[pi].as_str(), s.name.as_str()), v.raw as f64);
        }
    }
    let stats: Vec<&str> = catalog
        .per_program_statistics()
        .iter()
        .map(|(_, s)| s.name.as_str())
        .collect();
    let is_complete = |s: &str| complete.get(s).copied().unwrap_or(false);
    // The figures of a set of programs: counts summed, then rates and differences.
    let build = |ids: &[&str]| {
        let noisy = |s: &str| {
            Noisy::sum(ids.iter().map(|p| Noisy {
                raw: values.get(&(*p, s)).copied().unwrap_or(0.0),
                variance: noise.get(s).map_or(0.0, |n| n.0),
            }))
        };
        let counts: Vec<CountFigure> = stats
            .iter()
            .map(|s| summed_count(s, noisy(s), ids.len(), &noise, is_complete(s)))
            .collect();
        let mut estimates: BTreeMap<&str, Option<RateEstimate>> = BTreeMap::new();
        let mut rates = Vec::new();
        let mut differences = Vec::new();
        for f in catalog.per_program() {
            for r in &f.rates {
                let e = rate(
                    for_rate(&r.numerator, noisy(&r.numerator), ids.len(), &noise),
                    for_rate(&r.denominator, noisy(&r.denominator), ids.len(), &noise),
                );
                estimates.insert(r.name.as_str(), e);
                rates.push(RateFigure::new(
                    &r.name,
                    &r.numerator,
                    &r.denominator,
                    e,
                    is_complete(&r.numerator) && is_complete(&r.denominator),
                ));
            }
            for d in &f.differences {
                let parts = [&d.minuend, &d.subtrahend].map(|name| {
                    f.rates
                        .iter()
                        .find(|r| &r.name == name)
                        .map(|r| is_complete(&r.numerator) && is_complete(&r.denominator))
                        .unwrap_or(false)
                });
                differences.push(DifferenceFigure::new(
                    &d.name,
                    &d.minuend,
                    &d.subtrahend,
                    estimates.get(d.minuend.as_str()).copied().flatten(),
                    estimates.get(d.subtrahend.as_str()).copied().flatten(),
                    parts[0] && parts[1],
                ));
            }
        }
        (counts, rates, differences)
    };
    let per_program = programs
        .iter()
        .map(|p| {
            let (counts, rates, differences) = build(&[p.program_id.as_str()]);
            ProgramFigures {
                program: p.clone(),
                counts,
                rates,
                differences,
            }
        })
        .collect();
    let mut groups = Vec::new();
    for by in GROUPINGS {
        let mut members: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for p in programs {
            members
                .entry(p.group(by))
                .or_default()
                .push(p.program_id.as_str());
        }
        for (group, ids) in members {
            let (counts, rates, differences) = build(&ids);
            groups.push(GroupFigures {
                by: by.to_string(),
                group: group.to_string(),
                programs: ids.iter().map(|s| s.to_string()).collect(),
                counts,
                rates,
                differences,
            });
        }
    }
    Ok((per_program, groups))
}

/// What `publish` is asked.
#[derive(Debug, Clone)]
pub struct PublishOptions {
    pub quarter: Quarter,
    pub approver: String,
    pub republish: bool,
    pub allow_incomplete: bool,
    pub noise: StandardNoise,
    /// The equity release's noise ([`EQUITY_NOISE`](super::EQUITY_NOISE) by default).
    pub equity_noise: StandardNoise,
}

/// What `publish` did.
#[derive(Debug, Clone)]
pub struct Published {
    pub publication_id: i64,
    /// False when the quarter was already published from this dataset version: nothing was
    /// spent and the stored figures are returned.
    pub fresh: bool,
    pub superseded: Option<i64>,
    pub publication: Publication,
    /// The quarter's privacy loss: this publication's releases and every superseded one's.
    pub loss: QuarterLoss,
    /// Published quarters whose rows a load corrected or retracted after their current
    /// publication, to publish again with `--republish`.
    pub corrected: Vec<CorrectedQuarter>,
}

/// A published quarter whose stored rows a load corrected or retracted after its current
/// publication's dataset version: its published figures no longer match the data. It says
/// which versions, never which rows or how many.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorrectedQuarter {
    pub quarter: String,
    /// The dataset version the current publication was made from.
    pub published_from: String,
    /// The first later version whose load corrected or retracted rows of the quarter.
    pub corrected_in: String,
}

/// The first dataset version after `published_version` (`v7`, as a publication records
/// it) whose load corrected or retracted rows of `quarter`, if any.
pub fn corrected_after(
    manifest: &Manifest,
    quarter: &str,
    published_version: &str,
) -> Option<DatasetVersion> {
    let quarter: Quarter = quarter.parse().ok()?;
    let published = DatasetVersion(published_version.strip_prefix('v')?.parse().ok()?);
    manifest
        .quarters_revised_after(published)
        .get(&quarter)
        .copied()
}

/// Every quarter whose current publication a later correction or retraction touched, in
/// quarter order.
pub fn corrected_quarters(ledger: &Ledger, manifest: &Manifest) -> Result<Vec<CorrectedQuarter>> {
    let mut out: Vec<CorrectedQuarter> = ledger
        .publications(None)?
        .into_iter()
        .filter(|p| p.superseded_by.is_none())
        .filter_map(|p| {
            let v = corrected_after(manifest, &p.quarter, &p.dataset_version)?;
            Some(CorrectedQuarter {
                quarter: p.quarter,
                published_from: p.dataset_version,
                corrected_in: v.to_string(),
            })
        })
        .collect();
    out.sort_by(|a, b| a.quarter.cmp(&b.quarter));
    out.dedup_by(|a, b| a.quarter == b.quarter);
    Ok(out)
}

/// One release that published a quarter, with what its debit spent.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReleaseLoss {
    pub release_id: i64,
    /// `standard` or `equity`.
    pub part: String,
    /// The publication that first named it.
    pub publication_id: i64,
    /// Whether the quarter's current publication names it; false once a republication
    /// replaced it (its figures are no longer shown, but what it revealed stays revealed).
    pub current: bool,
    pub rho: f64,
    pub delta: f64,
    /// ε of this release alone at the display δ.
    pub epsilon: f64,
}

/// A quarter's privacy loss: every release that has published it, current and superseded,
/// each counted once (a publication stored again with the same releases spends nothing).
/// Their zCDP ρ add up (composition), and so do their δ; every ε is its ρ converted at the
/// display δ through OpenDP ([`epsilon_at`]), the total's from the total ρ, never a sum of
/// ε.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarterLoss {
    /// ρ of every release of the quarter.
    pub rho: f64,
    /// δ of every release of the quarter (0 for the standard metrics).
    pub delta: f64,
    /// ε of `rho` at `display_delta`.
    pub epsilon: f64,
    /// The δ that goes with `epsilon`: the display δ plus `delta`.
    pub epsilon_delta: f64,
    pub display_delta: f64,
    /// The parts: the current publication's standard and equity releases, and the releases
    /// of superseded publications that the current one does not name.
    pub standard_rho: f64,
    pub standard_epsilon: f64,
    pub equity_rho: f64,
    pub equity_epsilon: f64,
    pub superseded_rho: f64,
    pub superseded_epsilon: f64,
    /// Every release, in the order they were first published.
    pub releases: Vec<ReleaseLoss>,
}

/// The loss of a quarter from its publications (oldest first, as
/// [`Ledger::publications`] gives them), the debit (ρ, δ) of each release (`debit`; a
/// release it does not know counts what its publication document says), and the display
/// δ.
pub fn quarter_loss(
    publications: &[StoredPublication],
    debit: impl Fn(i64) -> Option<(f64, f64)>,
    display_delta: f64,
) -> Result<QuarterLoss> {
    // (release id, part, publication, what its document says it spent)
    let mut named: Vec<(i64, &str, i64, f64)> = Vec::new();
    let mut current: Vec<i64> = Vec::new();
    for (i, p) in publications.iter().enumerate() {
        let doc = serde_json::from_value::<Publication>(p.document.clone()).ok();
        let mut parts = vec![(
            p.release_id,
            "standard",
            doc.as_ref().map_or(f64::NAN, |d| d.rho),
        )];
        if let Some(d) = &doc
            && let Some(e) = d.equity_release_id
        {
            parts.push((e, "equity", d.equity_rho));
        }
        if i + 1 == publications.len() {
            current = parts.iter().map(|(id, _, _)| *id).collect();
        }
        for (id, part, rho) in parts {
            if !named.iter().any(|n| n.0 == id) {
                named.push((id, part, p.id, rho));
            }
        }
    }
    let eps = |rho: f64| -> Result<f64> {
        if !rho.is_finite() {
            return Ok(f64::NAN);
        }
        Ok(epsilon_at(rho.max(0.0), display_delta)?)
    };
    let mut releases = Vec::with_capacity(named.len());
    for (release_id, part, publication_id, documented) in named {
        let (rho, delta) = debit(release_id).unwrap_or((documented, 0.0));
        releases.push(ReleaseLoss {
            release_id,
            part: part.to_string(),
            publication_id,
            current: current.contains(&release_id),
            rho,
            delta,
            epsilon: eps(rho)?,
        });
    }
    let rho: f64 = releases.iter().map(|r| r.rho).sum();
    let delta: f64 = releases.iter().map(|r| r.delta).sum();
    let current_rho = |part: &str| -> f64 {
        releases
            .iter()
            .filter(|r| r.current && r.part == part)
            .map(|r| r.rho)
            .sum()
    };
    let standard_rho = current_rho("standard");
    let equity_rho = current_rho("equity");
    let superseded_rho: f64 = releases.iter().filter(|r| !r.current).map(|r| r.rho).sum();
    Ok(QuarterLoss {
        rho,
        delta,
        epsilon: eps(rho)?,
        epsilon_delta: display_delta + delta,
        display_delta,
        standard_rho,
        standard_epsilon: eps(standard_rho)?,
        equity_rho,
        equity_epsilon: eps(equity_rho)?,
        superseded_rho,
        superseded_epsilon: eps(superseded_rho)?,
        releases,
    })
}

/// [`quarter_loss`] of `quarter` from the ledger: its publications and its releases' debits.
pub fn quarter_loss_in(ledger: &Ledger, quarter: &str) -> Result<QuarterLoss> {
    let publications = ledger.publications(Some(quarter))?;
    let mut debits: BTreeMap<i64, (f64, f64)> = BTreeMap::new();
    for p in &publications {
        let equity = serde_json::from_value::<Publication>(p.document.clone())
            .ok()
            .and_then(|d| d.equity_release_id);
        for id in std::iter::once(p.release_id).chain(equity) {
            if let std::collections::btree_map::Entry::Vacant(slot) = debits.entry(id) {
                match ledger.release(id) {
                    Ok(r) => {
                        slot.insert((r.debit_rho, r.debit_delta));
                    }
                    // Counted as its publication document says ([`quarter_loss`]).
                    Err(crate::ledger::LedgerError::NoSuchRelease(_)) => {}
                    Err(e) => return Err(e.into()),
                }
            }
        }
    }
    let display_delta = ledger.config()?.display_delta;
    quarter_loss(&publications, |id| debits.get(&id).copied(), display_delta)
}

/// Refuses a warehouse whose noise is not zCDP's discrete Gaussian: `publish` and `plan`
/// give every standard count a σ and price it as zCDP, and under a pure ε-DP (Laplace)
/// budget that σ would be taken as the Laplace scale, each statistic composing its own ε
/// (ρ ≈ 11 for the standard release at the default σ), always over budget. Refused before
/// anything is prepared or spent.
pub(super) fn zcdp_only(config: &crate::ledger::PrivacyConfig) -> Result<()> {
    match config.noise {
        NoiseKind::DiscreteGaussian => Ok(()),
        NoiseKind::DiscreteLaplace => Err(PublicationError::LaplaceNotSupported),
    }
}

/// Publishes the standard metrics of one quarter (module docs).
pub async fn publish(warehouse: &Path, opts: &PublishOptions) -> Result<Published> {
    let catalog = Catalog::standard()?;
    let wh = Warehouse::open(warehouse)?;
    // The one snapshot of the whole publication: the republish guard, completeness, the
    // programs and both releases all read this manifest, so a load committed meanwhile is
    // neither published without --republish nor mixed into one of the two releases.
    let manifest = wh.manifest()?;
    wh.check_data_files(&manifest)?;
    crate::failpoint::hook("publish-after-snapshot", warehouse);
    let version = manifest.version().to_string();
    let q = opts.quarter.to_string();
    let ledger = Ledger::open(warehouse)?;
    zcdp_only(&ledger.config()?)?;
    let completeness = completeness(&catalog, &manifest, opts.quarter);
    let incomplete: Vec<String> = completeness
        .iter()
        .filter(|c| !c.complete)
        .map(|c| {
            format!(
                "{} (needs {} complete through {})",
                c.statistic,
                c.incomplete_tables
                    .iter()
                    .map(|t| match &t.declared_through {
                        Some(d) => format!("{}, declared through {d}", t.table),
                        None => format!("{}, not declared", t.table),
                    })
                    .collect::<Vec<_>>()
                    .join("; "),
                c.needs_complete_through
            )
        })
        .collect();
    if !incomplete.is_empty() && !opts.allow_incomplete {
        return Err(PublicationError::Incomplete {
            quarter: q,
            statistics: incomplete.join(", "),
        });
    }
    let current = ledger.current_publication(&q)?;
    if let Some(cur) = &current
        && cur.dataset_version != version
        && !opts.republish
    {
        let corrected = corrected_after(&manifest, &q, &cur.dataset_version)
            .map(|v| {
                format!(
                    " Rows of {q} were corrected or retracted after that publication (in {v}), so its published figures no longer match the data."
                )
            })
            .unwrap_or_default();
        return Err(PublicationError::AlreadyPublished {
            quarter: q,
            version: cur.dataset_version.clone(),
            release: cur.release_id,
            now: version,
            corrected,
        });
    }
    drop(ledger);
    // Both releases are priced before either is debited, and debited together: a quarter is
    // never left half published with its budget spent (`release_all`).
    let mut requests = vec![ReleaseRequest {
        spec: standard_spec(&catalog, opts.quarter, opts.noise),
        approver: opts.approver.clone(),
    }];
    if let Some(spec) = equity_spec(&catalog, opts.quarter, opts.equity_noise) {
        requests.push(ReleaseRequest {
            spec,
            approver: opts.approver.clone(),
        });
    }
    let mut outcomes = release_all(warehouse, &manifest, &requests)
        .await?
        .into_iter();
    let out = outcomes
        .next()
        .expect("release_all gives one outcome per request");
    let equity = outcomes.next();
    let ctx = open_session_at(&wh, &manifest)?;
    let programs = programs(&ctx).await?;
    let (per_program, groups) = figures(&catalog, &out.public, &programs, &completeness)
        .map_err(PublicationError::Figures)?;
    let d_out = &out.public.d_out;
    let first = out.public.result.statistics.first();
    let publication = Publication {
        version: PUBLICATION_VERSION,
        quarter: q.clone(),
        release_id: out.id,
        dataset_version: out.public.dataset_version.clone(),
        approver: out.public.approver.clone(),
        distribution: first.map(|s| s.distribution.clone()).unwrap_or_default(),
        scale: first.map_or(0.0, |s| s.scale),
        k: opts.noise.k,
        rho: d_out["rho"].as_f64().unwrap_or(f64::NAN),
        epsilon: d_out["epsilon"].as_f64().unwrap_or(f64::NAN),
        display_delta: d_out["display_delta"].as_f64().unwrap_or(f64::NAN),
        programs: per_program,
        groups,
        equity_release_id: equity.as_ref().map(|e| e.id),
        equity_rho: equity
            .as_ref()
            .and_then(|e| e.public.d_out["rho"].as_f64())
            .unwrap_or(0.0),
        equity_scale: opts.equity_noise.sigma,
        equity_k: opts.equity_noise.k,
        equity: equity
            .as_ref()
            .map(|e| breakdown_figures(&catalog, &e.public, &programs, &completeness))
            .unwrap_or_default(),
        completeness,
        note: PUBLICATION_NOTE.into(),
    };
    let document = serde_json::to_value(&publication).expect("publications serialise");
    let mut ledger = Ledger::open(warehouse)?;
    // The programs table goes with it: the API serves programs from the ledger alone.
    let programs_table = serde_json::to_value(&programs).expect("programs serialise");
    let id = ledger.record_publication_with_programs(
        &NewPublication {
            quarter: &q,
            release_id: out.id,
            dataset_version: &publication.dataset_version,
            approver: &publication.approver,
            document: &document,
        },
        &programs_table,
    )?;
    let superseded = current.filter(|c| c.id != id).map(|c| c.id);
    let loss = quarter_loss_in(&ledger, &q)?;
    let corrected = corrected_quarters(&ledger, &manifest)?;
    Ok(Published {
        publication_id: id,
        fresh: out.fresh || equity.as_ref().is_some_and(|e| e.fresh),
        superseded,
        publication,
        loss,
        corrected,
    })
}
