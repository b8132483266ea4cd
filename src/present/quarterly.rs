//! `outreach report`: a self-contained quarterly report for funders, as one HTML file that
//! opens offline (inline styles and SVG, no script), with the CSV of every figure beside it.
//!
//! It opens with what a funder reads first: the statewide headline figures with their
//! intervals and their change from the previous quarter, the police-present minus
//! police-absent difference, what is incomplete, and the programs compared; then the other
//! comparison charts, each program's table, the completeness of every statistic and the
//! methods.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::dashboard::{
    ChartBlock, FigureSet, INCOMPLETE_MARK, INCOMPLETE_NOTE, POLICE_DIFFERENCE, Privacy, Row,
    Table, comparison_chart, marked, open_windows, police_difference_chart, privacy_of,
    sorted_programs, statistics_of, templates,
};
use super::snapshot::{QuarterPublication, Snapshot};
use super::views::{self, Budget, Metric};
use crate::ledger::Ledger;
use crate::metrics::Catalog;
use crate::publication::figures::{DifferenceFigure, RateEstimate};
use crate::publication::{CountNoise, GroupFigures, Publication};
use crate::quarter::Quarter;
use crate::requests::RequestsError;

/// The headline figures of each program, in this order.
pub const HEADLINES: &[(&str, &str)] = &[
    ("count", "identified"),
    ("rate", "reach_7d"),
    ("rate", "timely_contact_72h"),
    ("rate", "engagement_30d"),
    ("rate", "naloxone_30d"),
    ("rate", "referral_30d"),
    ("rate", "linkage_any_30d"),
    ("rate", "linkage_moud_30d"),
    ("rate", "arrest_after_referral_90d"),
    ("difference", "arrest_after_attempt_police_difference"),
    ("rate", "repeat_overdose_90d"),
    ("rate", "fatal_overdose_90d"),
];

/// The charts of the report: these rates across programs, then the police difference. The
/// first is the headline metric, on which the summary compares the programs.
pub const CHARTED: &[&str] = &["engagement_30d", "linkage_moud_30d", "repeat_overdose_90d"];

/// The summary a funder reads first.
#[derive(Debug, Serialize)]
struct Summary {
    /// The statewide headline figures, with their change from the previous quarter.
    table: Table,
    /// The police-present minus police-absent arrest-rate difference, statewide, in words.
    difference: String,
    /// What the changes compare with, or that there is nothing to compare with.
    previous: String,
    /// What is incomplete, plainly; `None` when every figure is complete.
    incomplete: Option<String>,
    /// The headline metric and the programs compared on it.
    metric: String,
    chart: ChartBlock,
}

/// The range of a figure's change between two quarters: a count's is unbounded, a rate's
/// [−1, 1], a rate difference's [−2, 2].
fn change_range(kind: &str) -> (f64, f64) {
    match kind {
        "count" => (f64::NEG_INFINITY, f64::INFINITY),
        "rate" => (-1.0, 1.0),
        _ => (-2.0, 2.0),
    }
}

/// A group's figure as an estimate, its noisy value and noise variance, rebuilt from the
/// stored counts as `publish` computed it ([`CountNoise`]): a count's variance no smaller
/// than its own interval implies, a rate's by the delta method, a difference's from its
/// standard error.
fn estimate(g: &GroupFigures, noise: &CountNoise, kind: &str, name: &str) -> Option<RateEstimate> {
    let n = g.programs.len();
    match kind {
        "count" => g
            .counts
            .iter()
            .find(|c| c.statistic == name)
            .map(|c| RateEstimate {
                raw: c.raw,
                variance: noise.count(c.raw, n).variance,
            }),
        "rate" => {
            let r = g.rates.iter().find(|r| r.name == name)?;
            noise.rate(&g.counts, n, &r.numerator, &r.denominator)
        }
        _ => {
            let d = g.differences.iter().find(|d| d.name == name)?;
            Some(RateEstimate {
                raw: d.raw?,
                variance: d.standard_error?.powi(2),
            })
        }
    }
}

/// A change as text: a count's in survivors, a rate's or a difference's in percentage
/// points, with its 95% interval, and [`INCOMPLETE_MARK`] when either quarter's figure is
/// incomplete.
fn change_text(kind: &str, d: &DifferenceFigure) -> String {
    let text = match (d.value, d.lower, d.upper) {
        (Some(v), Some(lo), Some(hi)) if kind == "count" => {
            format!("{v:+.0} ({lo:+.0} to {hi:+.0})")
        }
        (Some(v), Some(lo), Some(hi)) => format!(
            "{:+.1} points ({:+.1} to {:+.1})",
            v * 100.0,
            lo * 100.0,
            hi * 100.0
        ),
        _ => return "insufficient data".into(),
    };
    if d.complete {
        text
    } else {
        format!("{text} {INCOMPLETE_MARK}")
    }
}

fn statewide(doc: &Publication) -> Option<&GroupFigures> {
    doc.groups.iter().find(|g| g.by == "statewide")
}

/// The summary of `q`, the publication of `quarter`, with the change of each statewide
/// headline from the previous quarter's publication in `snap`. The two publications are
/// two releases with independent noise, so a change is the difference of two independent
/// noisy estimates: its variance is the sum of theirs (`DifferenceFigure`), post-processing
/// that costs nothing.
fn summary(snap: &Snapshot, q: &QuarterPublication, quarter: Quarter) -> crate::Result<Summary> {
    let key = quarter.to_string();
    let prev_key = quarter.previous().to_string();
    let before = snap.quarters.get(&prev_key);
    let noise = CountNoise::of(&q.doc)?;
    let noise_before = before.map(|b| CountNoise::of(&b.doc)).transpose()?;
    let now = statewide(&q.doc);
    let then = before.and_then(|b| statewide(&b.doc));
    let mut table = Table {
        caption: format!(
            "Statewide, {key}: every program's figures summed, and their change from {prev_key}"
        ),
        header: vec![
            "metric".to_string(),
            "statewide (95% interval)".to_string(),
            format!("change from {prev_key} (95% interval)"),
            "follow-up complete".to_string(),
        ],
        rows: Vec::new(),
        notes: Vec::new(),
    };
    let mut incomplete: Vec<String> = Vec::new();
    let mut tables: Vec<String> = Vec::new();
    let mut any_marked = false;
    if let Some(g) = now {
        for (kind, name) in HEADLINES {
            let Some(cell) = FigureSet::of_group(g).cell(kind, name, None) else {
                continue;
            };
            let change = match (then, noise_before) {
                (Some(gb), Some(nb)) => match FigureSet::of_group(gb).cell(kind, name, None) {
                    Some(prev) => {
                        let d = DifferenceFigure::in_range(
                            name,
                            &key,
                            &prev_key,
                            estimate(g, &noise, kind, name),
                            estimate(gb, &nb, kind, name),
                            cell.complete && prev.complete,
                            change_range(kind),
                        );
                        any_marked |= !d.complete;
                        change_text(kind, &d)
                    }
                    None => "-".into(),
                },
                _ => "-".into(),
            };
            if !cell.complete {
                any_marked = true;
                let statistics = statistics_of(&q.doc, kind, name);
                incomplete.push(match open_windows(&q.doc, &statistics, &mut tables) {
                    Some(date) => format!("{name} (needs the data through {date})"),
                    None => name.to_string(),
                });
            }
            table.rows.push(Row {
                cells: vec![
                    name.to_string(),
                    marked(&cell),
                    change,
                    if cell.complete { "yes" } else { "no" }.into(),
                ],
                small: false,
            });
        }
    }
    if any_marked {
        table.notes.push(format!(
            "{INCOMPLETE_NOTE} A change is marked when either quarter's figure is incomplete."
        ));
    }
    let difference = now
        .and_then(|g| FigureSet::of_group(g).cell("difference", POLICE_DIFFERENCE, None))
        .map(|c| {
            format!(
                "Police on outreach visits and arrests, statewide: the share of survivors arrested within 90 days of an outreach attempt with police present, minus the share after an attempt without police, is {}. Above zero means more arrests when police were present; an interval that spans zero shows no difference beyond the noise.",
                marked(&c)
            )
        })
        .unwrap_or_default();
    let previous = match (before, now) {
        (Some(_), Some(g)) => format!(
            "Statewide figures are sums over the {} programs published in {key}. Each change from {prev_key} is this quarter's statewide figure minus {prev_key}'s, each from its own publication: their noise was drawn independently, so the variances add and the interval of a change is wider than either figure's. Counts change in survivors, rates and the difference in percentage points.",
            g.programs.len()
        ),
        _ => format!("No publication of {prev_key} to compare with."),
    };
    let incomplete = (!incomplete.is_empty()).then(|| {
        format!(
            "Follow-up is not complete in {key} for {}: their windows run past the data, which are declared complete only so far ({}). These figures, and their changes, are marked {INCOMPLETE_MARK} and may rise as the data arrive: a lower value is not yet a worse quarter. Every statistic's window is listed under \"Follow-up completeness\".",
            incomplete.join(", "),
            tables.join(", ")
        )
    });
    let mut chart = comparison_chart(q, "rate", CHARTED[0], None, 900);
    chart.id = format!("chart-{}", CHARTED[0]);
    Ok(Summary {
        table,
        difference,
        previous,
        incomplete,
        metric: CHARTED[0].to_string(),
        chart,
    })
}

#[derive(Debug, Serialize)]
struct ProgramSection {
    id: String,
    name: String,
    team_model: String,
    police_on_visits: String,
    region: String,
    table: Table,
}

#[derive(Debug, Serialize)]
struct ReportPage {
    quarter: String,
    generated_at: String,
    summary: Summary,
    programs: Vec<ProgramSection>,
    charts: Vec<ChartBlock>,
    completeness: Table,
    privacy: Privacy,
    budget: Budget,
    metrics: Vec<Metric>,
    note: String,
    interval_rule: &'static str,
    csv_name: String,
}

/// What `report` wrote.
#[derive(Debug, Clone)]
pub struct Written {
    pub html: PathBuf,
    pub csv: PathBuf,
}

fn bad(m: String) -> crate::Error {
    RequestsError::Invalid(m).into()
}

/// Renders the report of `quarter` as HTML and its figures as CSV.
pub async fn render(
    warehouse: &Path,
    quarter: Quarter,
    csv_name: &str,
) -> crate::Result<(String, String)> {
    let snap = Snapshot::load(warehouse, &[])?;
    let key = quarter.to_string();
    // A quarter whose latest publication cannot be read is not "unpublished": say so.
    if !snap.quarters.contains_key(&key)
        && let Some(u) = snap.unreadable.iter().rev().find(|u| u.quarter == key)
    {
        return Err(crate::Error::Internal(format!(
            "publication {} of {key} cannot be read: {}",
            u.id, u.error
        )));
    }
    let q = snap.quarters.get(&key).ok_or_else(|| {
        bad(format!(
            "no publication for {key}: publish it first (`outreach publish --quarter {key}`)"
        ))
    })?;
    let budget = views::budget(&Ledger::open_read_only(warehouse)?.show()?)?;
    let mut programs = Vec::new();
    for p in sorted_programs(q) {
        let set = FigureSet::of_program(p);
        let mut table = Table {
            caption: format!(
                "{} ({}), {key}",
                p.program.program_name, p.program.program_id
            ),
            header: ["metric", "value (95% interval)", "follow-up complete"]
                .map(String::from)
                .to_vec(),
            rows: Vec::new(),
            notes: Vec::new(),
        };
        for (kind, name) in HEADLINES {
            if let Some(cell) = set.cell(kind, name, None) {
                if !cell.complete && table.notes.is_empty() {
                    table.notes.push(INCOMPLETE_NOTE.to_string());
                }
                table.rows.push(Row {
                    cells: vec![
                        name.to_string(),
                        marked(&cell),
                        if cell.complete { "yes" } else { "no" }.into(),
                    ],
                    small: false,
                });
            }
        }
        programs.push(ProgramSection {
            id: p.program.program_id.clone(),
            name: p.program.program_name.clone(),
            team_model: p.program.team_model.clone(),
            police_on_visits: p.program.police_on_visits.clone(),
            region: p.program.region.clone(),
            table,
        });
    }
    // The first charted metric is in the summary.
    let mut charts: Vec<ChartBlock> = CHARTED[1..]
        .iter()
        .map(|name| {
            let mut c = comparison_chart(q, "rate", name, None, 900);
            c.id = format!("chart-{name}");
            c
        })
        .collect();
    charts.push(police_difference_chart(q, None, 900));
    let mut completeness = Table {
        caption: format!("Follow-up completeness of {key}"),
        header: [
            "statistic",
            "complete",
            "needs data through",
            "tables not yet complete",
        ]
        .map(String::from)
        .to_vec(),
        rows: Vec::new(),
        notes: Vec::new(),
    };
    for c in &q.doc.completeness {
        completeness.rows.push(Row {
            cells: vec![
                c.statistic.clone(),
                if c.complete { "yes" } else { "no" }.into(),
                c.needs_complete_through.clone(),
                c.incomplete_tables
                    .iter()
                    .map(|t| match &t.declared_through {
                        Some(d) => format!("{} (through {d})", t.table),
                        None => format!("{} (not declared)", t.table),
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            ],
            small: !c.complete,
        });
    }
    let page = ReportPage {
        quarter: key.clone(),
        // The day only, like every public time.
        generated_at: super::tables::day(&crate::warehouse::now_rfc3339()),
        summary: summary(&snap, q, quarter)?,
        programs,
        charts,
        completeness,
        privacy: privacy_of(q),
        budget,
        metrics: views::metrics(&Catalog::standard()?),
        note: q.doc.note.clone(),
        interval_rule: super::dashboard::INTERVAL_RULE,
        csv_name: csv_name.to_string(),
    };
    // The fail point asks for a template that does not exist: the tests' way to make the
    // built-in template fail as a defect would.
    let name = if crate::failpoint::armed("report-template") {
        "no-such-template.html"
    } else {
        "report.html"
    };
    // The template is built in: its failure is a defect, never the user's input.
    let html = templates()
        .get_template(name)
        .and_then(|t| t.render(minijinja::context! { page => page }))
        .map_err(|e| crate::Error::Internal(format!("the report template failed: {e}")))?;
    Ok((html, super::tables::publication_csv(&q.doc)))
}

/// Writes the report to `out` and the CSV of every figure beside it (`out` with `.csv`),
/// each atomically.
pub async fn write(warehouse: &Path, quarter: Quarter, out: &Path) -> crate::Result<Written> {
    let csv_path = out.with_extension("csv");
    if csv_path == out {
        return Err(bad(format!(
            "the report needs an .html path, not {}",
            out.display()
        )));
    }
    if let Some(dir) = out.parent().filter(|d| !d.as_os_str().is_empty())
        && !dir.is_dir()
    {
        return Err(bad(format!(
            "cannot write the report: the folder {} does not exist",
            dir.display()
        )));
    }
    let csv_name = csv_path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let (html, csv) = render(warehouse, quarter, &csv_name).await?;
    crate::warehouse::write_atomic(out, html.as_bytes())?;
    crate::warehouse::write_atomic(&csv_path, csv.as_bytes())?;
    Ok(Written {
        html: out.to_path_buf(),
        csv: csv_path,
    })
}
