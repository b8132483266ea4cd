//! The dashboard (`GET /`) and the quarterly report (`outreach report`): HTML pages with
//! server-side SVG charts ([`charts`], `plotters`) from templates (`templates/*.html`,
//! `minijinja`), built from the stored publications only.
//!
//! Both work without JavaScript and without the network: styles and charts are inline, and
//! the page's choices are a plain form. Every chart has a text description and the table of
//! its numbers one click away (`<details>`), so a screen reader or a printout loses nothing.
//! An optional small-cell display rule (off by default) greys out figures whose noisy counts
//! (a count's value, a rate's numerator or denominator) are below a configured number.

pub mod charts;
pub mod report;

use std::sync::OnceLock;

use minijinja::Environment;
use serde::Serialize;

use crate::api::snapshot::{QuarterPublication, Snapshot};
use crate::queries::figures::{CountFigure, DifferenceFigure, RateFigure};
use crate::queries::publish::{GroupFigures, ProgramFigures, ProgramInfo};
use charts::{Frame, Mark};

/// The arrest-rate difference (police present minus absent) that every page shows.
pub const POLICE_DIFFERENCE: &str = "arrest_after_attempt_police_difference";
/// The metric the dashboard opens with.
pub const DEFAULT_METRIC: &str = "rate:engagement_30d";

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

/// A table: its header and rows of text, with a flag per row for the small-cell rule.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Table {
    pub caption: String,
    pub header: Vec<String>,
    pub rows: Vec<Row>,
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
pub fn police_class(p: &ProgramInfo) -> usize {
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
pub fn metric_choices(doc: &crate::queries::publish::Publication) -> Vec<(String, String)> {
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
    crate::api::views::METRIC_KINDS
        .contains(&kind)
        .then_some((kind, name))
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
fn sorted_programs(q: &QuarterPublication) -> Vec<&ProgramFigures> {
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
    }
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
    };
    for p in sorted_programs(q) {
        let Some(cell) = FigureSet::of_program(p).cell(kind, name, small_cell) else {
            continue;
        };
        let info = &p.program;
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
                cell.text.clone(),
            ],
            small: cell.small,
        });
    }
    let title = format!("{name}, {}: programs compared", q.doc.quarter);
    let frame = metric_frame(width, 380, &title, kind);
    ChartBlock {
        id: "comparison".into(),
        svg: charts::bars(&frame, &marks, &police_legend()),
        description: format!(
            "Bar chart of {name} for {} programs in {}, grouped by team model (the letters after each id: P police-led, C R co-responder, P H public-health-led, P E peer-led) and coloured by police presence on visits; whiskers are 95% intervals of the privacy noise. {}.",
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
    };
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
        marks.push(mark(g.group.clone(), &cell, 0));
        table.rows.push(Row {
            cells: vec![g.group.clone(), g.programs.join(" "), cell.text.clone()],
            small: cell.small,
        });
    }
    let title = format!(
        "Police present minus absent: arrest rate, {}",
        q.doc.quarter
    );
    let frame = metric_frame(width, 340, &title, "difference");
    ChartBlock {
        id: "police-difference".into(),
        svg: charts::bars(&frame, &marks, &[]),
        description: format!(
            "Bar chart of the difference in the share of survivors arrested within 90 days of an outreach attempt, attempts with police present minus attempts without, statewide and by team model, with 95% intervals; above zero means more arrests when police were present. {}.",
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
    };
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
        marks.push(mark(quarter.clone(), &cell, 0));
        table.rows.push(Row {
            cells: vec![
                quarter.clone(),
                cell.text.clone(),
                if cell.complete { "yes" } else { "no" }.into(),
            ],
            small: cell.small,
        });
    }
    let title = format!("{name} of {program_id}, by quarter");
    let frame = metric_frame(width, 320, &title, kind);
    ChartBlock {
        id: "trend".into(),
        svg: charts::trend(&frame, &marks),
        description: format!(
            "Line chart of {name} for program {program_id} over {} quarters, with 95% intervals. {}.",
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

#[derive(Debug, Serialize)]
struct DashboardPage {
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
    /// The quarter's loss, and the δ its ε goes with.
    pub rho: f64,
    pub epsilon: f64,
    pub epsilon_delta: f64,
    /// The parts.
    pub standard_rho: f64,
    pub standard_epsilon: f64,
    pub equity_rho: f64,
    pub equity_epsilon: f64,
    pub superseded_rho: f64,
    pub superseded_epsilon: f64,
    pub display_delta: f64,
    pub published_at: String,
}

pub fn privacy_of(q: &QuarterPublication) -> Privacy {
    let loss = &q.loss;
    Privacy {
        release_id: q.doc.release_id,
        equity_release_id: q.doc.equity_release_id,
        dataset_version: q.doc.dataset_version.clone(),
        distribution: q.doc.distribution.clone(),
        scale: q.doc.scale,
        equity_scale: q.doc.equity_scale,
        k: q.doc.k,
        equity_k: q.doc.equity_k,
        rho: loss.rho,
        epsilon: loss.epsilon,
        epsilon_delta: loss.epsilon_delta,
        standard_rho: loss.standard_rho,
        standard_epsilon: loss.standard_epsilon,
        equity_rho: loss.equity_rho,
        equity_epsilon: loss.equity_epsilon,
        superseded_rho: loss.superseded_rho,
        superseded_epsilon: loss.superseded_epsilon,
        display_delta: loss.display_delta,
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
    let Ok(catalog) = crate::queries::Catalog::standard() else {
        return String::new();
    };
    crate::api::views::metrics(&catalog)
        .into_iter()
        .find(|m| m.kind == kind && m.name == name)
        .map(|m| m.definition)
        .unwrap_or_default()
}

/// Renders the dashboard page.
pub fn dashboard(
    snap: &Snapshot,
    query: &DashboardQuery,
    small_cell: Option<f64>,
) -> Result<String, PageError> {
    let quarter = match &query.quarter {
        Some(q) => q.clone(),
        None => snap
            .quarters
            .keys()
            .next_back()
            .cloned()
            .ok_or(PageError::NothingPublished)?,
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
    let metric = query.metric.clone().unwrap_or_else(|| {
        if choices.iter().any(|(k, _)| k == DEFAULT_METRIC) {
            DEFAULT_METRIC.to_string()
        } else {
            choices.first().map(|c| c.0.clone()).unwrap_or_default()
        }
    });
    if !choices.iter().any(|(k, _)| *k == metric) {
        // A standard metric the quarter's publication lacks (one stored by an earlier
        // catalog) is not there; anything else is not a metric at all.
        let standard = crate::queries::Catalog::standard()
            .is_ok_and(|c| crate::api::views::metric_keys(&c).contains(&metric));
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
    let page = DashboardPage {
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
        small_cell,
    };
    templates()
        .get_template("dashboard.html")
        .and_then(|t| t.render(minijinja::context! { page => page }))
        .map_err(|e| PageError::Internal(format!("template: {e}")))
}
