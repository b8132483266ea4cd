//! The dashboard page (`GET /`) and what it shares with the quarterly report
//! ([`super::quarterly`]): HTML pages with server-side SVG charts ([`super::charts`],
//! `plotters`) from templates (`templates/*.html`, `minijinja`), built from the stored
//! publications only.
//!
//! Both work without JavaScript and without the network: styles and charts are inline, and
//! the page's choices are a plain form. Every chart has a text description and the table of
//! its numbers one click away (`<details>`), so a screen reader or a printout loses nothing.
//! An optional small-cell display rule (off by default) greys out figures whose noisy counts
//! (a count's value, a rate's numerator or denominator) are below a configured number.
//!
//! A figure whose follow-up is incomplete (from the steward's declared dates, never from the
//! data) is marked wherever it is shown: [`INCOMPLETE_MARK`] and [`INCOMPLETE_NOTE`] in its
//! table, hatched bars or hollow trend points in its chart, and its quarter's title; the
//! dashboard opens on the newest quarter whose chosen metric is complete ([`dashboard`]).

use std::sync::OnceLock;

use minijinja::Environment;
use serde::Serialize;

use super::charts::{self, Frame, Mark};
use super::snapshot::{QuarterPublication, Snapshot};
use super::views::{self, Program, QuarterLoss};
use crate::publication::figures::{CountFigure, DifferenceFigure, RateFigure};
use crate::publication::{Completeness, GroupFigures, ProgramFigures, Publication};

/// The arrest-rate difference (police present minus absent) that every page shows.
pub const POLICE_DIFFERENCE: &str = "arrest_after_attempt_police_difference";
/// The metric the dashboard opens with.
pub const DEFAULT_METRIC: &str = "rate:engagement_30d";

/// How a shown interval is kept honest at the edge of its range ([`shown_interval`]), for the
/// notes of the dashboard and the methods of the report.
///
/// [`shown_interval`]: crate::publication::figures::shown_interval
pub const INTERVAL_RULE: &str = "Shown values keep to what a figure can be: counts at zero or \
     more, rates from 0% to 100%, differences of rates from -100 to +100 points. An interval is \
     clamped to the same range, but never narrower than its noise's half-width: when the noisy \
     value itself falls below zero (or a rate above 100%), its interval runs from the bound as \
     far as the noise reaches, for example from 0% to about 10%, and never shrinks to a single \
     point, which would read as certain. This interval still holds everything that clamping \
     alone would show, so it covers the true value at least 95% of the time; it is unchanged \
     while the noisy value is within the range and moves smoothly at the bound; and its width \
     depends on the noise alone, never on the data.";

/// The templates, parsed once.
pub fn templates() -> &'static Environment<'static> {
    static ENV: OnceLock<Environment<'static>> = OnceLock::new();
    ENV.get_or_init(|| {
        let mut env = Environment::new();
        for (name, text) in [
            ("style.css", include_str!("../../templates/style.css")),
            ("macros.html", include_str!("../../templates/macros.html")),
            (
                "dashboard.html",
                include_str!("../../templates/dashboard.html"),
            ),
            ("report.html", include_str!("../../templates/report.html")),
        ] {
            env.add_template(name, text)
                .unwrap_or_else(|e| panic!("template {name}: {e}"));
        }
        env
    })
}

/// One figure as a page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Cell {
    pub kind: String,
    pub name: String,
    pub value: Option<f64>,
    pub lower: Option<f64>,
    pub upper: Option<f64>,
    /// The value and its interval as text: `41.2% (38.0–44.5%)` or `125 (114–136)`.
    pub text: String,
    pub complete: bool,
    /// Greyed out by the small-cell display rule.
    pub small: bool,
}

/// The marker after a figure whose follow-up is incomplete, and its footnote.
pub const INCOMPLETE_MARK: &str = "†";
pub const INCOMPLETE_NOTE: &str = "† Follow-up incomplete: the figure's window runs past the \
     data declared complete, so it may rise as the data arrive. Do not read it as a change \
     from a complete quarter.";

/// A figure's text with [`INCOMPLETE_MARK`] when its follow-up is incomplete.
pub fn marked(cell: &Cell) -> String {
    if cell.complete {
        cell.text.clone()
    } else {
        format!("{} {INCOMPLETE_MARK}", cell.text)
    }
}

fn percent(v: f64) -> String {
    format!("{:.1}%", v * 100.0)
}

fn format_value(kind: &str, v: f64) -> String {
    if kind == "count" {
        format!("{v:.0}")
    } else {
        percent(v)
    }
}

fn cell_text(kind: &str, value: Option<f64>, lower: Option<f64>, upper: Option<f64>) -> String {
    match (value, lower, upper) {
        (Some(v), Some(lo), Some(hi)) => format!(
            "{} ({}–{})",
            format_value(kind, v),
            format_value(kind, lo),
            format_value(kind, hi)
        ),
        (Some(v), _, _) => format_value(kind, v),
        _ => "insufficient data".into(),
    }
}

/// The figures of one program or group, for lookups by kind and name.
pub struct FigureSet<'a> {
    pub counts: &'a [CountFigure],
    pub rates: &'a [RateFigure],
    pub differences: &'a [DifferenceFigure],
}

impl<'a> FigureSet<'a> {
    pub fn of_program(p: &'a ProgramFigures) -> FigureSet<'a> {
        FigureSet {
            counts: &p.counts,
            rates: &p.rates,
            differences: &p.differences,
        }
    }

    pub fn of_group(g: &'a GroupFigures) -> FigureSet<'a> {
        FigureSet {
            counts: &g.counts,
            rates: &g.rates,
            differences: &g.differences,
        }
    }

    fn count(&self, name: &str) -> Option<&CountFigure> {
        self.counts.iter().find(|c| c.statistic == name)
    }

    fn rate(&self, name: &str) -> Option<&RateFigure> {
        self.rates.iter().find(|r| r.name == name)
    }

    /// The smallest noisy count a figure rests on: a count's value, the smaller of a rate's
    /// numerator and denominator (1 of 500 is a small cell too), the smallest of a
    /// difference's four.
    fn support(&self, kind: &str, name: &str) -> Option<f64> {
        match kind {
            "count" => self.count(name).map(|c| c.value),
            "rate" => {
                let r = self.rate(name)?;
                let num = self.count(&r.numerator)?.value;
                let den = self.count(&r.denominator)?.value;
                Some(num.min(den))
            }
            _ => {
                let d = self.differences.iter().find(|d| d.name == name)?;
                let a = self.support("rate", &d.minuend)?;
                let b = self.support("rate", &d.subtrahend)?;
                Some(a.min(b))
            }
        }
    }

    /// A figure by `kind:name`, with the small-cell rule applied.
    pub fn cell(&self, kind: &str, name: &str, small_cell: Option<f64>) -> Option<Cell> {
        let (value, lower, upper, complete) = match kind {
            "count" => {
                let c = self.count(name)?;
                (Some(c.value), Some(c.lower), Some(c.upper), c.complete)
            }
            "rate" => {
                let r = self.rate(name)?;
                (r.value, r.lower, r.upper, r.complete)
            }
            "difference" => {
                let d = self.differences.iter().find(|d| d.name == name)?;
                (d.value, d.lower, d.upper, d.complete)
            }
            _ => return None,
        };
        let small = small_cell.is_some_and(|min| self.support(kind, name).is_none_or(|n| n < min));
        Some(Cell {
            kind: kind.to_string(),
            name: name.to_string(),
            value,
            lower,
            upper,
            text: cell_text(kind, value, lower, upper),
            complete,
            small,
        })
    }
}

/// A choice of a form's select.
#[derive(Debug, Clone, Serialize)]
pub struct Choice {
    pub value: String,
    pub label: String,
    pub selected: bool,
}

/// A table: its header and rows of text, with a flag per row for the small-cell rule, and
/// footnotes under it.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Row>,
    pub notes: Vec<String>,
}

impl Table {
    /// The rows as a screen reader hears them beside the chart: each row's first cell and
    /// its `value` cell, joined by `; `.
    fn described(&self, value: usize) -> String {
        self.rows
            .iter()
            .map(|r| format!("{} {}", r.cells[0], r.cells[value]))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub cells: Vec<String>,
    pub small: bool,
}

/// A chart with what every reader needs beside it.
#[derive(Debug, Clone, Serialize)]
pub struct ChartBlock {
    pub id: String,
    pub title: String,
    /// Inline SVG, drawn from our own labels (ids and dictionary values, escaped by plotters).
    pub svg: String,
    /// What the chart shows, in words, for screen readers and printouts.
    pub description: String,
    pub table: Table,
}

/// The class of a program's police presence on visits: the bar colour.
pub fn police_class(p: &Program) -> usize {
    match p.police_on_visits.as_str() {
        "always" => 0,
        "sometimes" => 1,
        _ => 2,
    }
}

/// The legend of police presence.
pub fn police_legend() -> Vec<(String, usize)> {
    vec![
        ("police on every visit".into(), 0),
        ("police on some visits".into(), 1),
        ("no police on visits".into(), 2),
    ]
}

fn team_abbreviation(model: &str) -> String {
    model
        .split('_')
        .filter(|w| *w != "led")
        .map(|w| w.chars().next().unwrap_or('?').to_ascii_uppercase())
        .collect()
}

/// The metrics a page can compare: every count, rate and difference of the standard
/// release, as (`kind:name`, label).
pub fn metric_choices(doc: &crate::publication::Publication) -> Vec<(String, String)> {
    let Some(p) = doc.programs.first() else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for r in &p.rates {
        out.push((format!("rate:{}", r.name), format!("{} (rate)", r.name)));
    }
    for d in &p.differences {
        out.push((
            format!("difference:{}", d.name),
            format!("{} (difference)", d.name),
        ));
    }
    for c in &p.counts {
        let key = format!("count:{}", c.statistic);
        if !out.iter().any(|(k, _)| *k == key) {
            out.push((key, format!("{} (count)", c.statistic)));
        }
    }
    out
}

/// Splits `kind:name`.
pub fn split_metric(metric: &str) -> Option<(&str, &str)> {
    let (kind, name) = metric.split_once(':')?;
    views::METRIC_KINDS.contains(&kind).then_some((kind, name))
}

/// The frame of a chart of a metric of `kind` (`count`, `rate` or `difference`): counts on a
/// count axis, rates and differences as percent.
fn metric_frame(width: u32, height: u32, title: &str, kind: &str) -> Frame {
    Frame {
        width,
        height,
        title: title.to_string(),
        y_label: y_label(kind),
        percent: kind != "count",
    }
}

fn y_label(kind: &str) -> String {
    match kind {
        "count" => "survivors (noisy count)".into(),
        "rate" => "share of survivors".into(),
        _ => "difference in rate (percentage points)".into(),
    }
}

/// Programs sorted by team model, then police presence, then id: bars come grouped by model.
pub(crate) fn sorted_programs(q: &QuarterPublication) -> Vec<&ProgramFigures> {
    let mut programs: Vec<&ProgramFigures> = q.doc.programs.iter().collect();
    programs.sort_by(|a, b| {
        (
            &a.program.team_model,
            police_class(&a.program),
            &a.program.program_id,
        )
            .cmp(&(
                &b.program.team_model,
                police_class(&b.program),
                &b.program.program_id,
            ))
    });
    programs
}

fn mark(label: String, cell: &Cell, class: usize) -> Mark {
    Mark {
        label,
        value: cell.value,
        lower: cell.lower,
        upper: cell.upper,
        class,
        grey: cell.small,
        incomplete: !cell.complete,
    }
}

/// What a chart's title adds when some of its figures have incomplete follow-up.
const INCOMPLETE_TITLE: &str = " (follow-up incomplete)";

/// The title's suffix, the table's footnote and the description's sentence for a chart
/// whose figures with incomplete follow-up are labelled `incomplete`.
fn incomplete_parts(incomplete: &[String], how: &str) -> (&'static str, Vec<String>, String) {
    if incomplete.is_empty() {
        return ("", Vec::new(), String::new());
    }
    (
        INCOMPLETE_TITLE,
        vec![INCOMPLETE_NOTE.to_string()],
        format!(
            " Follow-up incomplete ({how}, marked {INCOMPLETE_MARK} in the table): {}; these may rise as data arrive.",
            incomplete.join(", ")
        ),
    )
}

/// The comparison of one metric across the programs of a quarter.
pub fn comparison_chart(
    q: &QuarterPublication,
    kind: &str,
    name: &str,
    small_cell: Option<f64>,
    width: u32,
) -> ChartBlock {
    let mut marks = Vec::new();
    let mut table = Table {
        caption: format!("{name} by program, {}", q.doc.quarter),
        header: [
            "program",
            "name",
            "team model",
            "police on visits",
            "value (95% interval)",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let mut incomplete = Vec::new();
    for p in sorted_programs(q) {
        let Some(cell) = FigureSet::of_program(p).cell(kind, name, small_cell) else {
            continue;
        };
        let info = &p.program;
        if !cell.complete {
            incomplete.push(info.program_id.clone());
        }
        marks.push(mark(
            format!(
                "{} {}",
                info.program_id,
                team_abbreviation(&info.team_model)
            ),
            &cell,
            police_class(info),
        ));
        table.rows.push(Row {
            cells: vec![
                info.program_id.clone(),
                info.program_name.clone(),
                info.team_model.clone(),
                info.police_on_visits.clone(),
                marked(&cell),
            ],
            small: cell.small,
        });
    }
    let (suffix, notes, said) = incomplete_parts(&incomplete, "hatched bars");
    table.notes = notes;
    let title = format!("{name}, {}: programs compared{suffix}", q.doc.quarter);
    let frame = metric_frame(width, 380, &title, kind);
    ChartBlock {
        id: "comparison".into(),
        svg: charts::bars(&frame, &marks, &police_legend()),
        description: format!(
            "Bar chart of {name} for {} programs in {}, grouped by team model (the letters after each id: P police-led, C R co-responder, P H public-health-led, P E peer-led) and coloured by police presence on visits; whiskers are 95% intervals of the privacy noise.{said} {}.",
            marks.len(),
            q.doc.quarter,
            table.described(4)
        ),
        title,
        table,
    }
}

/// The police-present minus police-absent arrest-rate difference, statewide and by model.
pub fn police_difference_chart(
    q: &QuarterPublication,
    small_cell: Option<f64>,
    width: u32,
) -> ChartBlock {
    let mut marks = Vec::new();
    let mut table = Table {
        caption: format!(
            "Arrest within 90 days of an outreach attempt: police present minus police absent, {}",
            q.doc.quarter
        ),
        header: ["group", "programs", "difference (95% interval)"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let mut incomplete = Vec::new();
    let groups = q
        .doc
        .groups
        .iter()
        .filter(|g| g.by == "statewide")
        .chain(q.doc.groups.iter().filter(|g| g.by == "team_model"));
    for g in groups {
        let Some(cell) = FigureSet::of_group(g).cell("difference", POLICE_DIFFERENCE, small_cell)
        else {
            continue;
        };
        if !cell.complete {
            incomplete.push(g.group.clone());
        }
        marks.push(mark(g.group.clone(), &cell, 0));
        table.rows.push(Row {
            cells: vec![g.group.clone(), g.programs.join(" "), marked(&cell)],
            small: cell.small,
        });
    }
    let (suffix, notes, said) = incomplete_parts(&incomplete, "hatched bars");
    table.notes = notes;
    let title = format!(
        "Police present minus absent: arrest rate, {}{suffix}",
        q.doc.quarter
    );
    let frame = metric_frame(width, 340, &title, "difference");
    ChartBlock {
        id: "police-difference".into(),
        svg: charts::bars(&frame, &marks, &[]),
        description: format!(
            "Bar chart of the difference in the share of survivors arrested within 90 days of an outreach attempt, attempts with police present minus attempts without, statewide and by team model, with 95% intervals; above zero means more arrests when police were present.{said} {}.",
            table.described(2)
        ),
        title,
        table,
    }
}

/// One program's metric over every published quarter.
pub fn trend_chart(
    snap: &Snapshot,
    program_id: &str,
    kind: &str,
    name: &str,
    small_cell: Option<f64>,
    width: u32,
) -> ChartBlock {
    let mut marks = Vec::new();
    let mut table = Table {
        caption: format!("{name} of {program_id} by quarter"),
        header: ["quarter", "value (95% interval)", "follow-up complete"]
            .map(String::from)
            .to_vec(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let mut incomplete = Vec::new();
    for (quarter, q) in &snap.quarters {
        let Some(p) = q
            .doc
            .programs
            .iter()
            .find(|p| p.program.program_id == program_id)
        else {
            continue;
        };
        let Some(cell) = FigureSet::of_program(p).cell(kind, name, small_cell) else {
            continue;
        };
        if !cell.complete {
            incomplete.push(quarter.clone());
        }
        marks.push(mark(quarter.clone(), &cell, 0));
        table.rows.push(Row {
            cells: vec![
                quarter.clone(),
                marked(&cell),
                if cell.complete { "yes" } else { "no" }.into(),
            ],
            small: cell.small,
        });
    }
    let (suffix, notes, said) = incomplete_parts(&incomplete, "hollow points, dashed line");
    table.notes = notes;
    let title = format!("{name} of {program_id}, by quarter{suffix}");
    let frame = metric_frame(width, 320, &title, kind);
    ChartBlock {
        id: "trend".into(),
        svg: charts::trend(&frame, &marks),
        description: format!(
            "Line chart of {name} for program {program_id} over {} quarters, with 95% intervals.{said} {}.",
            marks.len(),
            table.described(1)
        ),
        title,
        table,
    }
}

/// The dashboard's choices, from the query string.
#[derive(Debug, Clone, Default, serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct DashboardQuery {
    /// A published quarter [default: the latest].
    pub quarter: Option<String>,
    /// `kind:name`, such as `rate:engagement_30d` [default].
    pub metric: Option<String>,
    /// The program of the trend [default: the first].
    pub program: Option<String>,
}

/// Where a dashboard page's links point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageLinks {
    /// The server's page at `/`: the choices are a form, and links start at the server's root.
    #[default]
    Server,
    /// The page at its path form, `dashboard/{quarter}/{kind}/{name}.html` ([`page_path`]):
    /// the choices are links to the other pages' path forms and every link is relative, so a
    /// static mirror of the API serves the page as it is, from any folder of any host.
    Relative,
}

/// The path form of the dashboard page of `quarter` and `metric` (`kind:name`), with the
/// metric's default program, relative to the root of the API: `dashboard/2025Q3/rate/engagement_30d.html`.
pub fn page_path(quarter: &str, metric: &str) -> Option<String> {
    let (kind, name) = split_metric(metric)?;
    Some(format!("dashboard/{quarter}/{kind}/{name}.html"))
}

/// A link of a page in [`PageLinks::Relative`] form.
#[derive(Debug, Serialize)]
struct NavLink {
    href: String,
    label: String,
    selected: bool,
}

/// The choices of a page in [`PageLinks::Relative`] form, as links relative to the page.
#[derive(Debug, Serialize)]
struct Nav {
    /// The mirror's index.
    home: String,
    quarters: Vec<NavLink>,
    metrics: Vec<NavLink>,
    /// The quarter's figures of the trend's program, as JSON and CSV.
    json: String,
    csv: String,
    openapi: String,
}

/// The metric a quarter's page opens with: [`DEFAULT_METRIC`] when the publication has it,
/// or else its first.
pub fn default_metric(doc: &Publication) -> Option<String> {
    let choices = metric_choices(doc);
    if choices.iter().any(|(k, _)| k == DEFAULT_METRIC) {
        Some(DEFAULT_METRIC.to_string())
    } else {
        choices.first().map(|c| c.0.clone())
    }
}

/// The links of the page of `quarter`, `metric` and `program` at its path form: every page
/// sits three folders below the API's root (`dashboard/{quarter}/{kind}/`).
fn nav(
    snap: &Snapshot,
    quarter: &str,
    metric: &str,
    program: &str,
    choices: &[(String, String)],
) -> Nav {
    const ROOT: &str = "../../../";
    let quarters = snap
        .quarters
        .iter()
        .rev()
        .filter_map(|(k, q)| {
            let has = metric_choices(&q.doc).iter().any(|(m, _)| m == metric);
            let target = if has {
                Some(metric.to_string())
            } else {
                default_metric(&q.doc)
            };
            let path = page_path(k, &target?)?;
            Some(NavLink {
                href: format!("{ROOT}{path}"),
                label: k.clone(),
                selected: k == quarter,
            })
        })
        .collect();
    let metrics = choices
        .iter()
        .filter_map(|(k, label)| {
            let (kind, name) = split_metric(k)?;
            Some(NavLink {
                href: format!("../{kind}/{name}.html"),
                label: label.clone(),
                selected: k == metric,
            })
        })
        .collect();
    let figures = format!("{ROOT}v1/quarters/{quarter}/programs/{program}");
    Nav {
        home: format!("{ROOT}index.html"),
        quarters,
        metrics,
        json: format!("{figures}.json"),
        csv: format!("{figures}.csv"),
        openapi: format!("{ROOT}openapi.json"),
    }
}

#[derive(Debug, Serialize)]
struct DashboardPage {
    /// The choices as relative links ([`PageLinks::Relative`]); `None` on the server's page,
    /// whose choices are a form.
    nav: Option<Nav>,
    /// The chosen metric's follow-up is incomplete in the chosen quarter.
    incomplete: bool,
    /// The plain statement of it.
    incomplete_note: Option<String>,
    /// Why the page opened on the quarter it did, when no quarter was asked.
    opened_note: Option<String>,
    quarters: Vec<Choice>,
    metrics: Vec<Choice>,
    programs: Vec<Choice>,
    quarter: String,
    metric_label: String,
    metric_kind: String,
    definition: String,
    comparison: ChartBlock,
    difference: ChartBlock,
    trend: ChartBlock,
    privacy: Privacy,
    note: String,
    interval_rule: &'static str,
    small_cell: Option<f64>,
}

/// The privacy parameters behind a quarter's figures, and the quarter's loss: its current
/// standard and equity releases and the releases of superseded publications (their ρ add;
/// each ε is its ρ at the display δ, the total's from the total ρ).
#[derive(Debug, Clone, Serialize)]
pub struct Privacy {
    pub release_id: i64,
    pub equity_release_id: Option<i64>,
    pub dataset_version: String,
    pub distribution: String,
    pub scale: f64,
    pub equity_scale: f64,
    pub k: u32,
    pub equity_k: u32,
    /// The quarter's loss, its parts, and the δ its ε goes with: its fields are this
    /// object's in the templates.
    #[serde(flatten)]
    pub loss: QuarterLoss,
    pub published_at: String,
}

pub fn privacy_of(q: &QuarterPublication) -> Privacy {
    Privacy {
        release_id: q.doc.release_id,
        equity_release_id: q.doc.equity_release_id,
        dataset_version: q.doc.dataset_version.clone(),
        distribution: q.doc.distribution.clone(),
        scale: q.doc.scale,
        equity_scale: q.doc.equity_scale,
        k: q.doc.k,
        equity_k: q.doc.equity_k,
        loss: QuarterLoss::from(&q.loss),
        published_at: q.stored.published_at.clone(),
    }
}

/// Why a dashboard cannot be drawn as asked: a choice that is not written as the OpenAPI
/// document says (400), one that is but has nothing published (404), or nothing published at
/// all (404).
#[derive(Debug, Clone, PartialEq)]
pub enum PageError {
    /// A quarter not written like `2025Q3`, or a metric that is not a standard metric's
    /// `kind:name`.
    BadChoice(String),
    /// A quarter with no publication, or a standard metric or a program that is not in the
    /// quarter's publication.
    NotPublished(String),
    NothingPublished,
    /// A template failed: a defect.
    Internal(String),
}

/// The definition of a metric in plain words, from the catalog.
fn definition(kind: &str, name: &str) -> String {
    let Ok(catalog) = crate::metrics::Catalog::standard() else {
        return String::new();
    };
    views::metrics(&catalog)
        .into_iter()
        .find(|m| m.kind == kind && m.name == name)
        .map(|m| m.definition)
        .unwrap_or_default()
}

/// The statistics a metric reads: a count itself, a rate its numerator and denominator, a
/// difference those of its two rates.
pub(crate) fn statistics_of(doc: &Publication, kind: &str, name: &str) -> Vec<String> {
    let Some(p) = doc.programs.first() else {
        return Vec::new();
    };
    let rate = |r: &str| {
        p.rates
            .iter()
            .find(|x| x.name == r)
            .map(|x| vec![x.numerator.clone(), x.denominator.clone()])
            .unwrap_or_default()
    };
    match kind {
        "count" => vec![name.to_string()],
        "rate" => rate(name),
        _ => p
            .differences
            .iter()
            .find(|d| d.name == name)
            .map(|d| {
                let mut v = rate(&d.minuend);
                v.extend(rate(&d.subtrahend));
                v
            })
            .unwrap_or_default(),
    }
}

/// Whether a metric's follow-up is complete in a quarter's publication: `None` when no
/// program has the figure. The flag comes from the declared dates per statistic, so every
/// program's figure carries the same one.
pub fn metric_complete(q: &QuarterPublication, kind: &str, name: &str) -> Option<bool> {
    let flags: Vec<bool> = q
        .doc
        .programs
        .iter()
        .filter_map(|p| FigureSet::of_program(p).cell(kind, name, None))
        .map(|c| c.complete)
        .collect();
    (!flags.is_empty()).then(|| flags.iter().all(|c| *c))
}

/// Of `statistics`, the ones whose follow-up is incomplete in `doc`: the latest date their
/// windows need the data through, and what their tables are declared complete through
/// (added to `tables`, each once). `None` when all are complete.
pub(crate) fn open_windows(
    doc: &Publication,
    statistics: &[String],
    tables: &mut Vec<String>,
) -> Option<String> {
    let open: Vec<&Completeness> = doc
        .completeness
        .iter()
        .filter(|c| !c.complete && statistics.contains(&c.statistic))
        .collect();
    for t in open.iter().flat_map(|c| &c.incomplete_tables) {
        let declared = match &t.declared_through {
            Some(d) => format!("{} through {d}", t.table),
            None => format!("{} not at all", t.table),
        };
        if !tables.contains(&declared) {
            tables.push(declared);
        }
    }
    open.iter().map(|c| c.needs_complete_through.clone()).max()
}

/// What a page says of a quarter whose metric's follow-up is incomplete, plainly: the date
/// its windows need the data through, and what the tables are declared complete through.
fn incomplete_statement(q: &QuarterPublication, kind: &str, name: &str) -> String {
    let mut tables = Vec::new();
    let open = open_windows(&q.doc, &statistics_of(&q.doc, kind, name), &mut tables);
    let needs = match open {
        Some(date) => format!(
            ": its window needs the data through {date}, and they are declared complete only so far ({})",
            tables.join(", ")
        ),
        None => String::new(),
    };
    format!(
        "Follow-up for {name} in {quarter} is not complete{needs}. Its figures (marked {INCOMPLETE_MARK} in the tables, hatched bars, hollow points in the trend) may rise as the data arrive: a lower value here is not yet a worse quarter.",
        quarter = q.doc.quarter
    )
}

/// Renders the dashboard page as the server shows it at `/` ([`PageLinks::Server`]).
pub fn dashboard(
    snap: &Snapshot,
    query: &DashboardQuery,
    small_cell: Option<f64>,
) -> Result<String, PageError> {
    dashboard_with(snap, query, small_cell, PageLinks::Server)
}

/// Renders the dashboard page, its links in the form `links` says.
///
/// Without a quarter asked, it opens on the newest quarter whose chosen metric has complete
/// follow-up, and says that newer quarters are published but not yet complete; when none is
/// complete, on the newest, saying so. A quarter whose metric is incomplete says it in its
/// title and in a plain sentence, and marks those figures in every chart and table.
pub fn dashboard_with(
    snap: &Snapshot,
    query: &DashboardQuery,
    small_cell: Option<f64>,
    links: PageLinks,
) -> Result<String, PageError> {
    let newest = snap
        .quarters
        .keys()
        .next_back()
        .cloned()
        .ok_or(PageError::NothingPublished)?;
    // A quarter written wrong is a bad choice (400); one written right but not published, a
    // page that does not exist (404), as on the JSON routes.
    let asked =
        match &query.quarter {
            Some(k) if !crate::quarter::is_quarter(k) => {
                return Err(PageError::BadChoice(format!(
                    "{k:?} is not a quarter such as 2025Q3"
                )));
            }
            Some(k) => Some(snap.quarters.get(k).ok_or_else(|| {
                PageError::NotPublished(format!("no publication for quarter {k:?}"))
            })?),
            None => None,
        };
    // The metric: the one asked, or the default among the asked (or newest) quarter's.
    let metric = match &query.metric {
        Some(m) => m.clone(),
        None => {
            let first = asked.unwrap_or(&snap.quarters[&newest]);
            let choices = metric_choices(&first.doc);
            if choices.iter().any(|(k, _)| k == DEFAULT_METRIC) {
                DEFAULT_METRIC.to_string()
            } else {
                choices.first().map(|c| c.0.clone()).unwrap_or_default()
            }
        }
    };
    let mut opened_note = None;
    let quarter = match &query.quarter {
        Some(k) => k.clone(),
        None => match split_metric(&metric) {
            // A metric that is not `kind:name` is refused below.
            None => newest.clone(),
            Some((kind, name)) => {
                let complete = snap
                    .quarters
                    .iter()
                    .rev()
                    .find(|(_, q)| metric_complete(q, kind, name) == Some(true))
                    .map(|(k, _)| k.clone());
                match complete {
                    Some(k) if k != newest => {
                        let newer: Vec<&str> = snap
                            .quarters
                            .keys()
                            .filter(|n| **n > k)
                            .map(String::as_str)
                            .collect();
                        opened_note = Some(format!(
                            "Opened on {k}, the newest quarter whose follow-up for {name} is complete. Newer quarters are published ({}), but their follow-up for {name} is not yet complete: choose one above to see its figures, marked as incomplete.",
                            newer.join(", ")
                        ));
                        k
                    }
                    Some(k) => k,
                    None => {
                        opened_note = Some(format!(
                            "No published quarter has complete follow-up for {name} yet: this is the newest, {newest}."
                        ));
                        newest.clone()
                    }
                }
            }
        },
    };
    if !crate::quarter::is_quarter(&quarter) {
        return Err(PageError::BadChoice(format!(
            "{quarter:?} is not a quarter such as 2025Q3"
        )));
    }
    let q = snap.quarters.get(&quarter).ok_or_else(|| {
        PageError::NotPublished(format!("no publication for quarter {quarter:?}"))
    })?;
    let choices = metric_choices(&q.doc);
    if !choices.iter().any(|(k, _)| *k == metric) {
        // A standard metric the quarter's publication lacks (one stored by an earlier
        // catalog) is not there; anything else is not a metric at all.
        let standard = crate::metrics::Catalog::standard()
            .is_ok_and(|c| views::metric_keys(&c).contains(&metric));
        return Err(if standard {
            PageError::NotPublished(format!(
                "metric {metric:?} is not in the publication of {quarter}"
            ))
        } else {
            PageError::BadChoice(format!(
                "metric {metric:?} is not a standard metric (kind:name, such as {DEFAULT_METRIC})"
            ))
        });
    }
    let (kind, name) = split_metric(&metric).expect("choices are kind:name");
    // The trend opens on the first program (by model and id) that has a value to show.
    let program = match &query.program {
        Some(p) => p.clone(),
        None => {
            let programs = sorted_programs(q);
            programs
                .iter()
                .find(|p| {
                    FigureSet::of_program(p)
                        .cell(kind, name, None)
                        .is_some_and(|c| c.value.is_some())
                })
                .or(programs.first())
                .map(|p| p.program.program_id.clone())
                .unwrap_or_default()
        }
    };
    if !q
        .doc
        .programs
        .iter()
        .any(|p| p.program.program_id == program)
    {
        return Err(PageError::NotPublished(format!(
            "program {program:?} is not in the publication of {quarter}"
        )));
    }
    let incomplete = metric_complete(q, kind, name) == Some(false);
    let page = DashboardPage {
        nav: (links == PageLinks::Relative)
            .then(|| nav(snap, &quarter, &metric, &program, &choices)),
        incomplete,
        incomplete_note: incomplete.then(|| incomplete_statement(q, kind, name)),
        opened_note,
        quarters: snap
            .quarters
            .keys()
            .rev()
            .map(|k| Choice {
                value: k.clone(),
                label: k.clone(),
                selected: *k == quarter,
            })
            .collect(),
        metrics: choices
            .iter()
            .map(|(k, label)| Choice {
                value: k.clone(),
                label: label.clone(),
                selected: *k == metric,
            })
            .collect(),
        programs: sorted_programs(q)
            .iter()
            .map(|p| Choice {
                value: p.program.program_id.clone(),
                label: format!("{} {}", p.program.program_id, p.program.program_name),
                selected: p.program.program_id == program,
            })
            .collect(),
        quarter: quarter.clone(),
        metric_label: name.to_string(),
        metric_kind: kind.to_string(),
        definition: definition(kind, name),
        comparison: comparison_chart(q, kind, name, small_cell, 960),
        difference: police_difference_chart(q, small_cell, 960),
        trend: trend_chart(snap, &program, kind, name, small_cell, 960),
        privacy: privacy_of(q),
        note: q.doc.note.clone(),
        interval_rule: INTERVAL_RULE,
        small_cell,
    };
    templates()
        .get_template("dashboard.html")
        .and_then(|t| t.render(minijinja::context! { page => page }))
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}
