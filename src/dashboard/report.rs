//! `outreach report`: a self-contained quarterly report for funders, as one HTML file that
//! opens offline (inline styles and SVG, no script), with the CSV of every figure beside it.

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::{
    ChartBlock, FigureSet, Privacy, Row, Table, comparison_chart, police_difference_chart,
    privacy_of, templates,
};
use crate::api::snapshot::Snapshot;
use crate::api::views::{self, Budget, Metric};
use crate::ledger::Ledger;
use crate::quarter::Quarter;
use crate::queries::Catalog;
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

/// The charts of the report: these rates across programs, then the police difference.
pub const CHARTED: &[&str] = &["engagement_30d", "linkage_moud_30d", "repeat_overdose_90d"];

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
    let snap = Snapshot::load(warehouse, &[]).await?;
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
    for p in super::sorted_programs(q) {
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
                    table.notes.push(super::INCOMPLETE_NOTE.to_string());
                }
                table.rows.push(Row {
                    cells: vec![
                        name.to_string(),
                        super::marked(&cell),
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
    let mut charts: Vec<ChartBlock> = CHARTED
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
        generated_at: crate::report::day(&crate::warehouse::now_rfc3339()),
        programs,
        charts,
        completeness,
        privacy: privacy_of(q),
        budget,
        metrics: views::metrics(&Catalog::standard()?),
        note: q.doc.note.clone(),
        interval_rule: super::INTERVAL_RULE,
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
    Ok((html, crate::report::publication_csv(&q.doc)))
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
