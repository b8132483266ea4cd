//! The public view model: what the public is shown of the published figures, the releases
//! and the budget, as the API serves it (the response types, whose schemas go into
//! `/openapi.json`), as the dashboard and the report read it, and as CSV (one line per row,
//! [`crate::csv_out`]). Each view is built from what `publish` and the ledger stored. Nothing
//! here computes a statistic: every number is read from a stored release or publication.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::snapshot::QuarterPublication;
use crate::csv_out::csv_row;
use crate::ledger::{BudgetView, ChainEntry, SignedHead, StoredRelease};
use crate::metrics::Catalog;
use crate::privacy::PublicRelease;
use crate::privacy::mechanism::epsilon_at;
use crate::publication::StoredPublication;
use crate::publication::figures::{CountFigure, DifferenceFigure, RateFigure};
use crate::publication::{Completeness, ProgramFigures, Publication, ReleaseLoss};
use crate::requests::researcher_of;

/// Public metadata of a program, as every publication stores it: one type for the
/// publication document, `/v1/programs` and the program pages.
pub use crate::publication::ProgramInfo as Program;

/// `GET /healthz`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `unhealthy` (503) when a stored publication cannot be read.
    pub status: String,
    /// Quarters with a publication.
    pub quarters: usize,
    /// Public releases served.
    pub releases: usize,
    /// Stored publications whose document this server cannot read: corrupt, or written by a
    /// newer version. The server's log names each one and why.
    pub unreadable_publications: usize,
}

/// One entry of the metric catalog, in plain words.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Metric {
    /// The metric file: `outreach`, `outcomes` or `equity`.
    pub metric: String,
    /// `count`, `rate` or `difference`.
    pub kind: String,
    pub name: String,
    pub definition: String,
    /// The follow-up window in days after the index overdose, for counts: [first, last].
    #[schema(value_type = Option<Vec<i64>>)]
    pub window_days: Option<[i64; 2]>,
}

/// The catalog's metrics, counts first within each file.
pub fn metrics(catalog: &Catalog) -> Vec<Metric> {
    let mut out = Vec::new();
    for f in &catalog.files {
        for s in &f.statistics {
            out.push(Metric {
                metric: f.name.clone(),
                kind: "count".into(),
                name: s.name.clone(),
                definition: format!("survivors in the cohort who {}", s.description),
                window_days: Some(s.window),
            });
        }
        for r in &f.rates {
            out.push(Metric {
                metric: f.name.clone(),
                kind: "rate".into(),
                name: r.name.clone(),
                definition: format!("{} ({} / {})", r.description, r.numerator, r.denominator),
                window_days: None,
            });
        }
        for d in &f.differences {
            out.push(Metric {
                metric: f.name.clone(),
                kind: "difference".into(),
                name: d.name.clone(),
                definition: format!("{} ({} - {})", d.description, d.minuend, d.subtrahend),
                window_days: None,
            });
        }
    }
    out
}

/// A quarter's privacy loss as the public is shown it (`/v1/quarters`, the dashboard, the
/// report): the quarter's, not one release's. It counts the standard and the equity release
/// of the current publication, plus every release of a publication it superseded (what those
/// revealed stays revealed). zCDP ρ add up; each ε is its ρ converted at `display_delta`
/// through OpenDP, the total's from the total ρ.
///
/// The views that show it flatten it into their own fields, so that its fields sit where
/// they are listed here, in JSON as in CSV.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct QuarterLoss {
    /// ρ of the quarter: the sum of `standard_rho`, `equity_rho` and `superseded_rho`.
    pub rho: f64,
    /// ε of `rho` at `display_delta` (with δ = `epsilon_delta`).
    pub epsilon: f64,
    pub display_delta: f64,
    /// The δ of `epsilon`: the display δ plus the releases' own δ (none for the standard
    /// metrics).
    pub epsilon_delta: f64,
    /// The current publication's standard release: its ρ and its ε alone.
    pub standard_rho: f64,
    pub standard_epsilon: f64,
    /// The current publication's equity release.
    pub equity_rho: f64,
    pub equity_epsilon: f64,
    /// The releases of superseded publications that the current one does not name.
    pub superseded_rho: f64,
    pub superseded_epsilon: f64,
}

impl From<&crate::publication::QuarterLoss> for QuarterLoss {
    fn from(loss: &crate::publication::QuarterLoss) -> QuarterLoss {
        QuarterLoss {
            rho: loss.rho,
            epsilon: loss.epsilon,
            display_delta: loss.display_delta,
            epsilon_delta: loss.epsilon_delta,
            standard_rho: loss.standard_rho,
            standard_epsilon: loss.standard_epsilon,
            equity_rho: loss.equity_rho,
            equity_epsilon: loss.equity_epsilon,
            superseded_rho: loss.superseded_rho,
            superseded_epsilon: loss.superseded_epsilon,
        }
    }
}

/// A quarter that has a publication: the current one, with the quarter's privacy loss
/// ([`QuarterLoss`]).
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Quarter {
    pub quarter: String,
    pub publication_id: i64,
    /// The standard release.
    pub release_id: i64,
    /// The equity release.
    pub equity_release_id: Option<i64>,
    pub dataset_version: String,
    /// The day it was published, `YYYY-MM-DD`: never the time, since the gaps between the
    /// publications of one batch are each quarter's run time.
    pub published_at: String,
    pub approver: String,
    /// The publication this one replaced: after new data, or with the same releases when
    /// later declarations changed which figures are complete.
    pub supersedes: Option<i64>,
    /// True when the quarter's data were corrected after this publication (a supplier
    /// corrected or retracted records): the figures are as published, and the quarter is due
    /// to be published again. It says nothing of which records or how many.
    pub corrected_after_publication: bool,
    /// The hash (hex) of the publication's entry on the public ledger chain (`/v1/ledger`);
    /// none for a publication made before the ledger had its chain.
    pub ledger_entry: Option<String>,
    /// The quarter's privacy loss: its fields are this object's, between `ledger_entry` and
    /// `releases`.
    #[serde(flatten)]
    #[schema(inline)]
    pub loss: QuarterLoss,
    /// Every release of the quarter with its ρ, δ and ε, current and superseded (JSON only).
    #[schema(value_type = Vec<Object>)]
    pub releases: Vec<ReleaseLoss>,
}

/// The `/v1/quarters` entry of a quarter's current publication.
pub fn quarter(q: &QuarterPublication) -> Quarter {
    Quarter {
        quarter: q.doc.quarter.clone(),
        publication_id: q.stored.id,
        release_id: q.doc.release_id,
        equity_release_id: q.doc.equity_release_id,
        dataset_version: q.doc.dataset_version.clone(),
        published_at: q.stored.published_at.clone(),
        approver: q.stored.approver.clone(),
        supersedes: q.stored.supersedes,
        corrected_after_publication: q.corrected_after_publication,
        ledger_entry: q.ledger_entry.clone(),
        loss: QuarterLoss::from(&q.loss),
        releases: q.loss.releases.clone(),
    }
}

/// One published figure with everything needed to read it: its value, 95% interval, the
/// noise behind it, follow-up completeness, and the release and dataset version it comes
/// from. Counts, rates and differences share this shape, so CSV has one header.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct Figure {
    pub quarter: String,
    /// What the figure is about: a program id, a group value, or `statewide`.
    pub scope: String,
    /// `program`, `team_model`, `police_on_visits`, `warrant_check`, `region` or `statewide`.
    pub by: String,
    /// `count`, `rate` or `difference`.
    pub kind: String,
    pub name: String,
    /// For equity figures: the breakdown (`age_band`, `sex`, `race_ethnicity`) and its value.
    pub breakdown: Option<String>,
    pub breakdown_value: Option<String>,
    /// The value to show: counts clamped at 0, rates to [0, 1]. Null when a rate's
    /// denominator is too noisy to divide by.
    pub value: Option<f64>,
    /// The 95% interval of the noise, kept to the same range as `value` but never narrower
    /// than the noise's half-width (`publication::figures::shown_interval`).
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The unclamped noisy value, for sums.
    pub raw: Option<f64>,
    pub insufficient_data: bool,
    /// False when some table is not declared complete through the follow-up window.
    pub complete: bool,
    /// The noise of each count the figure is made of.
    pub distribution: String,
    pub scale: f64,
    pub release_id: i64,
    pub dataset_version: String,
}

/// The release a figure comes from and its noise.
#[derive(Clone, Copy)]
struct Source<'a> {
    quarter: &'a str,
    release_id: i64,
    distribution: &'a str,
    scale: f64,
    dataset_version: &'a str,
}

impl Source<'_> {
    fn figure(&self, scope: &str, by: &str, kind: &str, name: &str) -> Figure {
        Figure {
            quarter: self.quarter.to_string(),
            scope: scope.to_string(),
            by: by.to_string(),
            kind: kind.to_string(),
            name: name.to_string(),
            breakdown: None,
            breakdown_value: None,
            value: None,
            lower: None,
            upper: None,
            raw: None,
            insufficient_data: false,
            complete: true,
            distribution: self.distribution.to_string(),
            scale: self.scale,
            release_id: self.release_id,
            dataset_version: self.dataset_version.to_string(),
        }
    }

    fn count(&self, scope: &str, by: &str, c: &CountFigure) -> Figure {
        Figure {
            value: Some(c.value),
            lower: Some(c.lower),
            upper: Some(c.upper),
            raw: Some(c.raw),
            complete: c.complete,
            ..self.figure(scope, by, "count", &c.statistic)
        }
    }

    fn rate(&self, scope: &str, by: &str, r: &RateFigure) -> Figure {
        Figure {
            value: r.value,
            lower: r.lower,
            upper: r.upper,
            raw: r.raw,
            insufficient_data: r.insufficient_data,
            complete: r.complete,
            ..self.figure(scope, by, "rate", &r.name)
        }
    }

    fn difference(&self, scope: &str, by: &str, d: &DifferenceFigure) -> Figure {
        Figure {
            value: d.value,
            lower: d.lower,
            upper: d.upper,
            raw: d.raw,
            insufficient_data: d.insufficient_data,
            complete: d.complete,
            ..self.figure(scope, by, "difference", &d.name)
        }
    }

    fn all(
        &self,
        scope: &str,
        by: &str,
        counts: &[CountFigure],
        rates: &[RateFigure],
        differences: &[DifferenceFigure],
    ) -> Vec<Figure> {
        let mut out: Vec<Figure> = counts.iter().map(|c| self.count(scope, by, c)).collect();
        out.extend(rates.iter().map(|r| self.rate(scope, by, r)));
        out.extend(differences.iter().map(|d| self.difference(scope, by, d)));
        out
    }
}

fn standard_source(doc: &Publication) -> Source<'_> {
    Source {
        quarter: &doc.quarter,
        release_id: doc.release_id,
        distribution: &doc.distribution,
        scale: doc.scale,
        dataset_version: &doc.dataset_version,
    }
}

fn equity_source(doc: &Publication) -> Option<Source<'_>> {
    Some(Source {
        quarter: &doc.quarter,
        release_id: doc.equity_release_id?,
        distribution: &doc.distribution,
        scale: doc.equity_scale,
        dataset_version: &doc.dataset_version,
    })
}

/// `GET /v1/quarters/{quarter}/programs/{program_id}`: every standard metric of one program.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ProgramQuarter {
    pub quarter: String,
    pub program: Program,
    pub publication_id: i64,
    pub release_id: i64,
    pub equity_release_id: Option<i64>,
    pub dataset_version: String,
    /// The day it was published, `YYYY-MM-DD`.
    pub published_at: String,
    #[schema(value_type = Vec<Object>)]
    pub completeness: Vec<Completeness>,
    pub figures: Vec<Figure>,
    pub note: String,
    /// The hash (hex) of the publication's entry on the public ledger chain; none for a
    /// publication made before the ledger had its chain.
    pub ledger_entry: Option<String>,
}

/// The equity breakdowns of `scope` (a program id, or `statewide`), as figures `by` that.
fn breakdowns(doc: &Publication, scope: &str, by: &str) -> Vec<Figure> {
    let Some(eq) = equity_source(doc) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for b in doc.equity.iter().filter(|b| b.scope == scope) {
        for f in eq.all(scope, by, &b.counts, &b.rates, &[]) {
            out.push(Figure {
                breakdown: Some(b.dimension.clone()),
                breakdown_value: Some(b.value.clone()),
                ..f
            });
        }
    }
    out
}

/// Every figure of one program: its standard figures, then its equity breakdowns.
fn program_figures(doc: &Publication, p: &ProgramFigures) -> Vec<Figure> {
    let id = p.program.program_id.as_str();
    let mut figures = standard_source(doc).all(id, "program", &p.counts, &p.rates, &p.differences);
    figures.extend(breakdowns(doc, id, "program"));
    figures
}

/// Every figure of a publication, in the API's shape: each program's (as its page lists
/// them), then each group's (as `compare` lists them), then the statewide equity
/// breakdowns. `report.csv` and `publish --format csv` are these rows, so they have the
/// API's columns and every line the API serves for the quarter is one of them.
pub fn publication_figures(doc: &Publication) -> Vec<Figure> {
    let src = standard_source(doc);
    let mut out: Vec<Figure> = doc
        .programs
        .iter()
        .flat_map(|p| program_figures(doc, p))
        .collect();
    for g in &doc.groups {
        out.extend(src.all(&g.group, &g.by, &g.counts, &g.rates, &g.differences));
    }
    out.extend(breakdowns(doc, "statewide", "statewide"));
    out
}

/// One program's figures in a publication, or `None` when it is not in it.
pub fn program_quarter(
    publication: &StoredPublication,
    doc: &Publication,
    program_id: &str,
) -> Option<ProgramQuarter> {
    let p = doc
        .programs
        .iter()
        .find(|p| p.program.program_id == program_id)?;
    let figures = program_figures(doc, p);
    Some(ProgramQuarter {
        quarter: doc.quarter.clone(),
        program: p.program.clone(),
        publication_id: publication.id,
        release_id: doc.release_id,
        equity_release_id: doc.equity_release_id,
        dataset_version: doc.dataset_version.clone(),
        published_at: publication.published_at.clone(),
        completeness: doc.completeness.clone(),
        figures,
        note: doc.note.clone(),
        ledger_entry: None,
    })
}

/// `GET /v1/quarters/{quarter}/compare`: one metric across programs or groups.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Comparison {
    pub quarter: String,
    pub metric: String,
    pub by: String,
    pub figures: Vec<Figure>,
    pub note: String,
}

/// The groupings `compare` accepts.
pub const COMPARE_BY: &[&str] = &[
    "program",
    "team_model",
    "police_on_visits",
    "warrant_check",
    "region",
    "statewide",
];

/// The kinds of figure a metric name can be: the `kind` of `compare`, and the part before the
/// colon of the dashboard's `metric` (`kind:name`).
pub const METRIC_KINDS: &[&str] = &["count", "rate", "difference"];

/// The (kind, name) of every figure the standard publication holds per program: the counts,
/// rates and differences of the catalog's per-program files (breakdown files publish the same
/// names by group), each once, in catalog order.
fn catalog_figures(catalog: &Catalog) -> Vec<(&'static str, String)> {
    let mut all: Vec<(&'static str, &str)> = Vec::new();
    for f in catalog.per_program() {
        all.extend(f.statistics.iter().map(|s| ("count", s.name.as_str())));
        all.extend(f.rates.iter().map(|r| ("rate", r.name.as_str())));
        all.extend(
            f.differences
                .iter()
                .map(|d| ("difference", d.name.as_str())),
        );
    }
    let mut out: Vec<(&'static str, String)> = Vec::new();
    for (kind, name) in all {
        if !out.iter().any(|(k, n)| *k == kind && n.as_str() == name) {
            out.push((kind, name.to_string()));
        }
    }
    out
}

/// The names `compare` takes as `metric`, from the catalog: the enumeration of the OpenAPI
/// document.
pub fn metric_names(catalog: &Catalog) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (_, name) in catalog_figures(catalog) {
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The `kind:name` the dashboard takes as `metric`, from the catalog: the enumeration of the
/// OpenAPI document.
pub fn metric_keys(catalog: &Catalog) -> Vec<String> {
    catalog_figures(catalog)
        .into_iter()
        .map(|(kind, name)| format!("{kind}:{name}"))
        .collect()
}

/// A metric compared across programs (`by = program`) or across the groups that publish
/// stored. `kind` (`count`, `rate`, `difference`) picks one when a name is both a count and
/// a rate. The error says what is wrong with the metric, for a 400.
pub fn compare(
    doc: &Publication,
    metric: &str,
    kind: Option<&str>,
    by: &str,
) -> Result<Comparison, String> {
    let src = standard_source(doc);
    let mut kinds: Vec<&str> = Vec::new();
    if let Some(p) = doc.programs.first() {
        if p.counts.iter().any(|c| c.statistic == metric) {
            kinds.push("count");
        }
        if p.rates.iter().any(|r| r.name == metric) {
            kinds.push("rate");
        }
        if p.differences.iter().any(|d| d.name == metric) {
            kinds.push("difference");
        }
    }
    let kind = match (kind, kinds.as_slice()) {
        (_, []) => {
            return Err(format!(
                "{metric:?} is not a count, rate or difference of the standard metrics; see /v1/metrics"
            ));
        }
        (Some(k), found) if found.contains(&k) => k,
        (Some(k), found) => {
            return Err(format!(
                "{metric:?} is a {}, not a {k:?}",
                found.join(" and a ")
            ));
        }
        (None, [one]) => one,
        (None, found) => {
            return Err(format!(
                "{metric:?} names a {}: add kind={}",
                found.join(" and a "),
                found.join(" or kind=")
            ));
        }
    };
    let pick =
        |scope: &str, counts: &[CountFigure], rates: &[RateFigure], diffs: &[DifferenceFigure]| {
            src.all(scope, by, counts, rates, diffs)
                .into_iter()
                .find(|f| f.name == metric && f.kind == kind)
        };
    let figures: Vec<Figure> = if by == "program" {
        doc.programs
            .iter()
            .filter_map(|p| pick(&p.program.program_id, &p.counts, &p.rates, &p.differences))
            .collect()
    } else {
        doc.groups
            .iter()
            .filter(|g| g.by == by)
            .filter_map(|g| pick(&g.group, &g.counts, &g.rates, &g.differences))
            .collect()
    };
    Ok(Comparison {
        quarter: doc.quarter.clone(),
        metric: metric.to_string(),
        by: by.to_string(),
        figures,
        note: doc.note.clone(),
    })
}

/// The public view of a release with its ledger entry.
///
/// Its time is the day it was published, nothing finer, and the debit's time is left out:
/// the time between the debit and the outcome is how long the release read the data, which
/// grows with the rows (one person with many records moves it) and carries no noise.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Release {
    #[serde(flatten)]
    #[schema(value_type = Object)]
    pub release: PublicRelease,
    pub debit_rho: f64,
    pub debit_delta: f64,
    /// The quarter it publishes, for the standard metrics' releases.
    pub quarter: Option<String>,
    /// The release that replaced it after new data; the quarter routes serve that one.
    pub superseded_by: Option<i64>,
    /// The hash (hex) of the entry on the public ledger chain (`/v1/ledger`) that holds its
    /// numbers; none for a release made before the ledger had its chain.
    pub ledger_entry: Option<String>,
}

/// A release's public view with its time cut to the day (`YYYY-MM-DD`).
pub fn to_the_day(mut r: PublicRelease) -> PublicRelease {
    r.published_at = super::tables::day(&r.published_at);
    r
}

impl Release {
    pub fn new(
        stored: &StoredRelease,
        public: PublicRelease,
        quarter: Option<String>,
        superseded_by: Option<i64>,
    ) -> Release {
        Release {
            release: to_the_day(public),
            debit_rho: stored.debit_rho,
            debit_delta: stored.debit_delta,
            quarter,
            superseded_by,
            ledger_entry: None,
        }
    }
}

/// A line of `GET /v1/releases`.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ReleaseSummary {
    pub id: i64,
    pub name: String,
    pub quarter: Option<String>,
    pub dataset_version: String,
    pub approver: String,
    pub published_at: String,
    pub rho: f64,
    pub delta: f64,
    pub statistics: usize,
    pub cells: usize,
    pub superseded_by: Option<i64>,
}

impl From<&Release> for ReleaseSummary {
    fn from(r: &Release) -> ReleaseSummary {
        ReleaseSummary {
            id: r.release.id,
            name: r.release.name.clone(),
            quarter: r.quarter.clone(),
            dataset_version: r.release.dataset_version.clone(),
            approver: r.release.approver.clone(),
            published_at: r.release.published_at.clone(),
            rho: r.debit_rho,
            delta: r.debit_delta,
            statistics: r.release.result.statistics.len(),
            cells: r.release.result.cells.len(),
            superseded_by: r.superseded_by,
        }
    }
}

/// One allocation of the budget, in ρ and in ε.
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct AllocationBudget {
    pub name: String,
    pub rho: f64,
    pub spent_rho: f64,
    pub remaining_rho: f64,
    pub epsilon: f64,
    pub spent_epsilon: f64,
    pub remaining_epsilon: f64,
}

/// `GET /v1/budget`: the privacy budget of the current period, for transparency.
#[derive(Debug, Clone, Default, Serialize, ToSchema)]
pub struct Budget {
    /// The day the period starts, `YYYY-MM-DD`.
    pub period_starts: String,
    /// The day it ends.
    pub period_ends: String,
    pub total_rho: f64,
    pub spent_rho: f64,
    pub remaining_rho: f64,
    /// ε at `display_delta` of the same ρ: zCDP ρ converts to (ε, δ)-DP for any δ.
    pub total_epsilon: f64,
    pub spent_epsilon: f64,
    pub remaining_epsilon: f64,
    pub display_delta: f64,
    pub total_delta: f64,
    pub spent_delta: f64,
    /// Over every period, which grows with each renewal.
    pub lifetime_rho: f64,
    /// The allocations, the researchers' summed into one row named `researchers`: its ρ and
    /// spending are every researcher's together, so the total adds up, but no researcher is
    /// named or counted.
    pub allocations: Vec<AllocationBudget>,
    /// The caller's own allocation (`researcher:NAME`), when the request carries a
    /// researcher's bearer token; it is also counted in the `researchers` row.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_allocation: Option<AllocationBudget>,
    /// Where the warehouse's ledger was lost and a new one started (`budget recover`): the
    /// lost ledger, the spend carried over (already in `lifetime_rho`) and the reason, as the
    /// public chain's `recovery` entry records them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recovered_from: Option<BudgetRecovery>,
}

/// A restart after a lost ledger, as `GET /v1/budget` shows it.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BudgetRecovery {
    /// The day of the recovery, `YYYY-MM-DD`.
    pub day: String,
    /// The lost ledger's id, chain size and last hash: a reader holding that head sees that
    /// this chain restarts after it.
    pub lost_ledger_id: String,
    pub lost_entries: u64,
    pub lost_chain_head: String,
    /// The lost ledger's lifetime spend, carried over.
    pub lifetime_rho: f64,
    pub lifetime_delta: f64,
    /// The quarters the lost ledger had published; each is published again only by a new
    /// debit.
    pub published_quarters: Vec<String>,
    /// The steward's reason.
    pub why: String,
}

/// The public row that sums every researcher's allocation.
pub const RESEARCHERS_ROW: &str = "researchers";

/// One allocation's row: its ρ, what it spent and what is left, also in ε at `display_delta`.
fn allocation_row(
    name: String,
    rho: f64,
    spent_rho: f64,
    display_delta: f64,
) -> crate::Result<AllocationBudget> {
    let eps = |rho: f64| epsilon_at(rho.max(0.0), display_delta);
    let remaining = (rho - spent_rho).max(0.0);
    Ok(AllocationBudget {
        name,
        rho,
        spent_rho,
        remaining_rho: remaining,
        epsilon: eps(rho)?,
        spent_epsilon: eps(spent_rho)?,
        remaining_epsilon: eps(remaining)?,
    })
}

/// The public budget from the ledger's view: every allocation, but the researchers'
/// (`researcher:NAME`) summed into one row, [`RESEARCHERS_ROW`], where the first of them
/// stood (privacy model §10). Per researcher, the rows would follow each one's releases; the
/// sum is what the total needs to add up. No count of researchers is given. Fails only if
/// OpenDP cannot convert a ρ.
pub fn budget(b: &BudgetView) -> crate::Result<Budget> {
    let d = b.config.display_delta;
    let eps = |rho: f64| epsilon_at(rho.max(0.0), d);
    let mut allocations = Vec::new();
    let mut researchers: Option<(usize, f64, f64)> = None;
    for a in &b.allocations {
        if researcher_of(&a.name).is_some() {
            let (_, rho, spent) = researchers.get_or_insert((allocations.len(), 0.0, 0.0));
            *rho += a.rho;
            *spent += a.spent_rho;
            continue;
        }
        allocations.push(allocation_row(a.name.clone(), a.rho, a.spent_rho, d)?);
    }
    if let Some((at, rho, spent)) = researchers {
        let row = allocation_row(RESEARCHERS_ROW.to_string(), rho, spent, d)?;
        allocations.insert(at, row);
    }
    let remaining = (b.period.total_rho - b.spent_rho).max(0.0);
    Ok(Budget {
        period_starts: super::tables::day(&b.period.starts),
        period_ends: super::tables::day(&b.period.ends),
        total_rho: b.period.total_rho,
        spent_rho: b.spent_rho,
        remaining_rho: remaining,
        total_epsilon: eps(b.period.total_rho)?,
        spent_epsilon: eps(b.spent_rho)?,
        remaining_epsilon: eps(remaining)?,
        display_delta: d,
        total_delta: b.period.total_delta,
        spent_delta: b.spent_delta,
        lifetime_rho: b.lifetime_rho,
        allocations,
        own_allocation: None,
        recovered_from: b.recovered_from.as_ref().map(|r| BudgetRecovery {
            day: r.day.clone(),
            lost_ledger_id: r.lost_ledger_id.clone(),
            lost_entries: r.lost_entries,
            lost_chain_head: r.lost_chain_head.clone(),
            lifetime_rho: r.lifetime_rho,
            lifetime_delta: r.lifetime_delta,
            published_quarters: r.published_quarters.clone(),
            why: r.why.clone(),
        }),
    })
}

/// Each researcher's own allocation row, by researcher name: shown only to the holder of
/// that researcher's token (`GET /v1/budget` with it).
pub fn researcher_allocations(
    b: &BudgetView,
) -> crate::Result<std::collections::HashMap<String, AllocationBudget>> {
    let d = b.config.display_delta;
    let mut out = std::collections::HashMap::new();
    for a in &b.allocations {
        if let Some(name) = researcher_of(&a.name) {
            let row = allocation_row(a.name.clone(), a.rho, a.spent_rho, d)?;
            out.insert(name.to_string(), row);
        }
    }
    Ok(out)
}

/// Entries on one page of `GET /v1/ledger/pages/{page}`.
pub const LEDGER_PAGE_SIZE: usize = 500;

/// One entry of the public ledger chain. Its hash is `SHA-256(0x00 || prev_hash || seq as 8
/// bytes big-endian || kind || 0x00 || body)` (`crate::ledger::chain`), over `body` exactly as
/// served: canonical JSON (keys sorted, no whitespace) holding the entry's fields, `day` among
/// them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerEntry {
    /// From 0, without gaps.
    pub seq: i64,
    /// `genesis`, `budget_period`, `allocation`, `debit`, `private_debit`, `release`,
    /// `publication` or `recovery`.
    pub kind: String,
    /// The day of the event, `YYYY-MM-DD` (the body's `day`).
    pub day: String,
    /// The entry's fields as canonical JSON text: what the hash covers.
    pub body: String,
    /// The previous entry's hash, hex (64 zeros for entry 0).
    pub prev_hash: String,
    /// This entry's hash, hex.
    pub hash: String,
}

impl From<&ChainEntry> for LedgerEntry {
    fn from(e: &ChainEntry) -> LedgerEntry {
        LedgerEntry {
            seq: e.seq as i64,
            kind: e.kind.clone(),
            day: e.day(),
            body: e.body.clone(),
            prev_hash: e.prev_hash.clone(),
            hash: e.hash.clone(),
        }
    }
}

/// `GET /v1/ledger`: the public ledger chain in brief, with links (relative to this route)
/// to its first page and its signed head.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerSummary {
    /// Entries on the chain.
    pub entries: i64,
    /// Pages of `page_size` entries, numbered from 1.
    pub pages: i64,
    pub page_size: i64,
    /// The last entry's hash, hex (empty before the first entry).
    pub head_hash: String,
    /// The first page, relative to this route: `ledger/pages/1`.
    pub first_page: Option<String>,
    /// The signed head, relative to this route: `ledger/head`.
    pub head: String,
}

/// `GET /v1/ledger/pages/{page}`: up to [`LEDGER_PAGE_SIZE`] entries in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerPage {
    pub page: i64,
    pub pages: i64,
    pub entries: Vec<LedgerEntry>,
    /// The next page, relative to this one (its number); none on the last.
    pub next: Option<String>,
}

/// `GET /v1/ledger/head`: the chain's head signed with the warehouse's Ed25519 key over
/// `"outreach-warehouse ledger head v1" || 0x00 || size as 8 bytes big-endian || hash`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct LedgerHead {
    /// Entries the head covers.
    pub size: i64,
    /// The hash of entry `size - 1`, hex.
    pub hash: String,
    /// The Ed25519 signature, hex (64 bytes).
    pub signature: String,
    /// The public key, hex (32 bytes). Check it against the one the warehouse published
    /// elsewhere (`outreach key show`): a head is only as good as the key you trust.
    pub public_key: String,
}

impl From<&SignedHead> for LedgerHead {
    fn from(h: &SignedHead) -> LedgerHead {
        LedgerHead {
            size: h.size as i64,
            hash: h.hash.clone(),
            signature: h.signature.clone(),
            public_key: h.public_key.clone(),
        }
    }
}

/// The public chain as served: the summary, every page and the signed head.
#[derive(Debug, Clone, Default)]
pub struct PublicLedger {
    pub summary: LedgerSummary,
    pub pages: Vec<LedgerPage>,
    pub head: LedgerHead,
    /// Every head the warehouse has signed, oldest first (`GET /v1/ledger/heads/{size}`).
    pub heads: Vec<LedgerHead>,
}

/// The served chain from the ledger's entries and latest signed head.
pub fn ledger(entries: &[ChainEntry], head: Option<&SignedHead>) -> PublicLedger {
    let entries: Vec<LedgerEntry> = entries.iter().map(LedgerEntry::from).collect();
    let chunks: Vec<&[LedgerEntry]> = entries.chunks(LEDGER_PAGE_SIZE).collect();
    let pages = chunks.len() as i64;
    let pages_served = chunks
        .iter()
        .enumerate()
        .map(|(i, chunk)| {
            let page = i as i64 + 1;
            LedgerPage {
                page,
                pages,
                entries: chunk.to_vec(),
                next: (page < pages).then(|| (page + 1).to_string()),
            }
        })
        .collect();
    PublicLedger {
        summary: LedgerSummary {
            entries: entries.len() as i64,
            pages,
            page_size: LEDGER_PAGE_SIZE as i64,
            head_hash: entries.last().map(|e| e.hash.clone()).unwrap_or_default(),
            first_page: (pages > 0).then(|| "ledger/pages/1".to_string()),
            head: "ledger/head".to_string(),
        },
        pages: pages_served,
        head: head.map(LedgerHead::from).unwrap_or_default(),
        heads: Vec::new(),
    }
}

// The CSV lines of the views: one column per field, in the order the type declares them.

csv_row!(Figure {
    quarter,
    scope,
    by,
    kind,
    name,
    breakdown,
    breakdown_value,
    value,
    lower,
    upper,
    raw,
    insufficient_data,
    complete,
    distribution,
    scale,
    release_id,
    dataset_version,
});
csv_row!(Program {
    program_id,
    program_name,
    region,
    team_model,
    police_on_visits,
    warrant_check,
});
csv_row!(Metric {
    metric,
    kind,
    name,
    window_days,
    definition,
});
csv_row!(QuarterLoss {
    rho,
    epsilon,
    display_delta,
    epsilon_delta,
    standard_rho,
    standard_epsilon,
    equity_rho,
    equity_epsilon,
    superseded_rho,
    superseded_epsilon,
});
csv_row!(Quarter {
    quarter,
    publication_id,
    release_id,
    equity_release_id,
    dataset_version,
    published_at,
    approver,
    supersedes,
    corrected_after_publication,
} + loss: QuarterLoss);
csv_row!(ReleaseSummary {
    id,
    name,
    quarter,
    dataset_version,
    approver,
    published_at,
    rho,
    delta,
    statistics,
    cells,
    superseded_by,
});
csv_row!(AllocationBudget {
    name,
    rho,
    spent_rho,
    remaining_rho,
    epsilon,
    spent_epsilon,
    remaining_epsilon,
});
csv_row!(LedgerEntry {
    seq,
    kind,
    day,
    body,
    prev_hash,
    hash,
});
csv_row!(LedgerSummary {
    entries,
    pages,
    page_size,
    head_hash,
    first_page,
    head,
});
csv_row!(LedgerHead {
    size,
    hash,
    signature,
    public_key,
});
