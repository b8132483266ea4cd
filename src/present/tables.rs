//! Published releases, publications, plans, the budget and the steward's lists as text
//! tables, JSON and CSV, for the command line. Only public views of releases and the
//! steward's own figures pass through here.
//!
//! The three formats of a listing carry the same facts: its JSON and its CSV hold every
//! field its table shows, ε beside ρ, intervals and completeness included (the integration
//! test `cli::formats` compares them). The public release list and a release's JSON are the
//! API's bodies (`/v1/releases`, `/v1/releases/{id}`).
//!
//! Text that others wrote (a researcher's purpose, a spec's names and values, an error that
//! quotes them) reaches the steward's terminal through [`terminal_safe`], the one helper
//! every printing site uses per field in tables and CSV; JSON escapes the same characters
//! as JSON escapes, so that it still means what the API serves ([`json_for_terminal`]).

use std::borrow::Cow;
use std::fmt::Write;

use super::views::{Release, ReleaseSummary};
use crate::csv_out::{self, CsvRow, defuse};
use crate::ledger::{BudgetView, StoredRelease};
use crate::privacy::mechanism::epsilon_at;
use crate::privacy::release::{PublicRelease, RatioValue};

/// Output format of the listing commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Table,
    Json,
    Csv,
}

/// Whether `c` must not reach a terminal raw: a control character (C0, tab and line breaks
/// included, DEL, C1, whose U+009B starts an escape sequence like ESC does), a line or
/// paragraph separator, or a bidirectional control that reorders what is shown (U+061C,
/// U+200E, U+200F, U+202A to U+202E, U+2066 to U+2069).
fn is_unsafe_on_terminal(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061c}'
                | '\u{200e}'
                | '\u{200f}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202a}'..='\u{202e}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Text that someone else wrote, made safe to print on the steward's terminal: every
/// character of [`is_unsafe_on_terminal`] is written as a visible escape, `\u{1b}`, so no
/// escape sequence runs, nothing is shown reordered, and no line break forges a row of a
/// listing. Everything else is kept as it is, and text with nothing to escape is not copied.
pub fn terminal_safe(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe_on_terminal) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 16);
    for c in s.chars() {
        if is_unsafe_on_terminal(c) {
            let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// [`terminal_safe`], owned: a cell of a table or a CSV field.
fn safe(s: &str) -> String {
    terminal_safe(s).into_owned()
}

/// `value` as pretty JSON that is safe on a terminal and means exactly what the API serves:
/// `serde_json` escapes the C0 controls inside strings itself, and every other character of
/// [`is_unsafe_on_terminal`] (DEL, C1, the bidi controls) is written as a JSON escape,
/// `\u009b`, which a JSON reader turns back into the same character. Outside strings pretty
/// JSON holds only ASCII and its own line breaks, so every such character is in a string.
pub fn json_for_terminal<T: serde::Serialize>(value: &T) -> String {
    let text = serde_json::to_string_pretty(value).expect("values serialise");
    if !text.chars().any(|c| c != '\n' && is_unsafe_on_terminal(c)) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if c != '\n' && is_unsafe_on_terminal(c) {
            let mut units = [0u16; 2];
            for u in c.encode_utf16(&mut units) {
                let _ = write!(out, "\\u{u:04x}");
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// A public time cut to its day, `YYYY-MM-DD` (privacy model §10). The time of day of a
/// release or a publication says how long it read the data: the gap between a debit and its
/// outcome, or between the publications of one batch, grows with the rows and carries no
/// noise. Only the steward's views keep the full time.
pub fn day(stamp: &str) -> String {
    stamp.get(..10).unwrap_or(stamp).to_string()
}

/// One row per (cell, statistic) of a release, as CSV. Cell values, column and statistic
/// names come from specs: they are guarded against spreadsheet formulas ([`defuse`]).
pub fn release_csv(r: &PublicRelease) -> String {
    release_csv_with(r, |s| defuse(s).into_owned())
}

/// [`release_csv`] for the terminal: every text field through [`terminal_safe`] too.
pub fn release_csv_for_terminal(r: &PublicRelease) -> String {
    release_csv_with(r, |s| defuse(&terminal_safe(s)).into_owned())
}

/// A release as CSV, each text field from a spec written by `text`; numbers, the dataset
/// version and the noise's name as they are.
///
/// One line per (cell, statistic or ratio): the cell's keys, the value with its 95% interval,
/// the noise and its half-width, then what the table's header says of the whole release,
/// repeated on every line: its name, day, approver, measure, ρ with ε and the δ that goes with
/// ε, k, the threshold and δ of private partition selection (empty without), and the note.
fn release_csv_with(r: &PublicRelease, text: impl Fn(&str) -> String) -> String {
    let res = &r.result;
    let mut out = csv_out::Writer::new();
    let mut header: Vec<String> = vec!["release".into(), "dataset_version".into()];
    header.extend(res.cell_keys.iter().cloned());
    header.extend(
        [
            "statistic",
            "value",
            "raw",
            "lower95",
            "upper95",
            "distribution",
            "scale",
            "half_width95",
        ]
        .map(String::from),
    );
    header.extend(RELEASE_CSV_FACTS.map(String::from));
    out.line(header.iter().map(|h| text(h.as_str())));
    let facts = release_facts(r, &text);
    for (c, cell) in res.cells.iter().enumerate() {
        for s in &res.statistics {
            let v = &s.values[c];
            let mut row = vec![r.id.to_string(), r.dataset_version.clone()];
            row.extend(cell.iter().map(|x| text(x.as_str())));
            row.extend([
                text(s.name.as_str()),
                v.display.to_string(),
                v.raw.to_string(),
                v.lower.to_string(),
                v.upper.to_string(),
                s.distribution.clone(),
                format!("{}", s.scale),
                s.half_width.to_string(),
            ]);
            row.extend(facts.iter().cloned());
            out.line(row);
        }
        for ratio in &res.ratios {
            let mut row = vec![r.id.to_string(), r.dataset_version.clone()];
            row.extend(cell.iter().map(|x| text(x.as_str())));
            row.push(text(ratio.name.as_str()));
            match &ratio.values[c] {
                RatioValue::Estimate {
                    estimate,
                    lower,
                    upper,
                } => row.extend([
                    format!("{estimate:.4}"),
                    format!("{estimate}"),
                    format!("{lower:.4}"),
                    format!("{upper:.4}"),
                    "delta_method".into(),
                    String::new(),
                    String::new(),
                ]),
                RatioValue::InsufficientData => row.extend([
                    "insufficient data".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
            }
            row.extend(facts.iter().cloned());
            out.line(row);
        }
    }
    out.finish()
}

/// The columns of a release's CSV that hold what its table's header says of the whole
/// release ([`release_facts`]), after the per-value columns.
const RELEASE_CSV_FACTS: [&str; 11] = [
    "name",
    "published_at",
    "approver",
    "measure",
    "rho",
    "epsilon",
    "epsilon_delta",
    "k",
    "threshold",
    "selection_delta",
    "note",
];

/// The fields of [`RELEASE_CSV_FACTS`], as [`release_table`] reads them: ρ and ε from the
/// release's `d_out`, ε's δ the display δ plus the release's own (older records: the display
/// δ), k from `d_in`. A number the record lacks is an empty field.
fn release_facts(r: &PublicRelease, text: &impl Fn(&str) -> String) -> Vec<String> {
    let number = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
    let out_f64 = |key: &str| r.d_out.get(key).and_then(|v| v.as_f64());
    let epsilon_delta = out_f64("epsilon_delta")
        .filter(|d| *d > 0.0)
        .or_else(|| out_f64("display_delta"));
    let selection = r.result.partition_selection.as_ref();
    vec![
        text(&r.name),
        r.published_at.clone(),
        text(&r.approver),
        text(&r.measure),
        number(out_f64("rho")),
        number(out_f64("epsilon")),
        number(epsilon_delta),
        r.d_in
            .get("k")
            .and_then(|v| v.as_u64())
            .map(|k| k.to_string())
            .unwrap_or_default(),
        selection
            .map(|s| s.threshold.to_string())
            .unwrap_or_default(),
        number(selection.map(|s| s.delta)),
        text(&r.result.note),
    ]
}

/// A release in `format`, as `outreach release` prints it: its table ([`release_table`]),
/// its public view as JSON, or its CSV ([`release_csv_for_terminal`]); every text through
/// [`terminal_safe`].
pub fn public_release(r: &PublicRelease, format: Format) -> String {
    match format {
        Format::Table => release_table(r),
        Format::Csv => release_csv_for_terminal(r),
        Format::Json => json_for_terminal(r) + "\n",
    }
}

/// A published release as `GET /v1/releases/{id}` serves it ([`Release`]: the public view
/// with its debit, its quarter and what superseded it), for `releases show`: JSON is that
/// body, the table and CSV are those of its public view ([`public_release`]).
pub fn published_release(r: &Release, format: Format) -> String {
    match format {
        Format::Json => json_for_terminal(r) + "\n",
        Format::Table | Format::Csv => public_release(&r.release, format),
    }
}

/// A release as a text table: a header, then one line per cell.
pub fn release_table(r: &PublicRelease) -> String {
    let res = &r.result;
    let mut out = String::new();
    let eps = r
        .d_out
        .get("epsilon")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    // ε goes with the display δ plus the release's own δ (older records: the display δ).
    let delta = r
        .d_out
        .get("epsilon_delta")
        .and_then(|v| v.as_f64())
        .filter(|d| *d > 0.0)
        .or_else(|| r.d_out.get("display_delta").and_then(|v| v.as_f64()))
        .unwrap_or(f64::NAN);
    let rho = r
        .d_out
        .get("rho")
        .and_then(|v| v.as_f64())
        .unwrap_or(f64::NAN);
    // Names, cell values and the note come from specs that researchers write.
    let _ = writeln!(
        out,
        "release {}: {}\n  dataset {}, published {}, approved by {}\n  {}: rho = {rho:.6} (epsilon = {eps:.3} at delta = {delta:.3e}), k = {}",
        r.id,
        safe(&r.name),
        safe(&r.dataset_version),
        safe(&r.published_at),
        safe(&r.approver),
        safe(&r.measure),
        r.d_in.get("k").and_then(|v| v.as_u64()).unwrap_or(0),
    );
    for s in &res.statistics {
        let _ = writeln!(
            out,
            "  {}: {} noise, scale {:.3}, 95% interval ±{}",
            safe(&s.name),
            safe(&s.distribution),
            s.scale,
            s.half_width
        );
    }
    if let Some(sel) = &res.partition_selection {
        let _ = writeln!(
            out,
            "  `{}` has no public domain: {} cells reached the threshold {} (partition selection, delta = {:.3e})",
            safe(&sel.column),
            res.cells.len(),
            sel.threshold,
            sel.delta
        );
    }
    let mut header: Vec<String> = res.cell_keys.iter().map(|k| safe(k)).collect();
    header.extend(res.statistics.iter().map(|s| safe(&s.name)));
    header.extend(res.ratios.iter().map(|s| safe(&s.name)));
    let mut rows = vec![header];
    for (c, cell) in res.cells.iter().enumerate() {
        let mut row: Vec<String> = cell.iter().map(|x| safe(x)).collect();
        row.extend(
            res.statistics
                .iter()
                .map(|s| s.values[c].display.to_string()),
        );
        row.extend(res.ratios.iter().map(|ratio| match &ratio.values[c] {
            RatioValue::Estimate {
                estimate,
                lower,
                upper,
            } => format!("{estimate:.3} [{lower:.3}, {upper:.3}]"),
            RatioValue::InsufficientData => "insufficient data".into(),
        }));
        rows.push(row);
    }
    out.push_str(&align(&rows));
    let _ = writeln!(out, "  {}", safe(&res.note));
    out
}

fn align(rows: &[Vec<String>]) -> String {
    let n = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..n)
        .map(|i| {
            rows.iter()
                .filter_map(|r| r.get(i))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for r in rows {
        out.push(' ');
        for (i, cell) in r.iter().enumerate() {
            let _ = write!(out, " {cell:<w$}", w = widths[i]);
        }
        out.truncate(out.trim_end().len());
        out.push('\n');
    }
    out
}

/// When a release ended (or began, if it never ended): the full time for the steward, the
/// day for everyone else ([`day`]).
fn release_time(r: &StoredRelease, steward: bool) -> String {
    let at = r.finished_at.as_deref().unwrap_or(&r.created_at);
    if steward { at.to_string() } else { day(at) }
}

/// The release list as a table. `steward` adds failed and interrupted releases and shows
/// full times; the public list shows days.
pub fn releases_table(all: &[StoredRelease], steward: bool) -> String {
    let mut rows = vec![
        [
            "id",
            "status",
            "name",
            "dataset",
            "allocation",
            "rho",
            "approver",
            "time",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in all {
        if !steward && r.status != "released" {
            continue;
        }
        rows.push(vec![
            r.id.to_string(),
            safe(&r.status),
            safe(&r.name),
            safe(&r.dataset_version),
            safe(&r.allocation),
            format!("{:.6}", r.debit_rho),
            safe(&r.approver),
            release_time(r, steward),
        ]);
    }
    align(&rows)
}

/// The release list as CSV (public releases only unless `steward`).
pub fn releases_csv(all: &[StoredRelease], steward: bool) -> String {
    let text = |s: &str| defuse(&terminal_safe(s)).into_owned();
    let mut out = csv_out::Writer::new();
    out.line([
        "id",
        "status",
        "name",
        "dataset_version",
        "allocation",
        "rho",
        "approver",
        "time",
    ]);
    for r in all {
        if !steward && r.status != "released" {
            continue;
        }
        out.line([
            r.id.to_string(),
            r.status.clone(),
            text(&r.name),
            text(&r.dataset_version),
            text(&r.allocation),
            r.debit_rho.to_string(),
            text(&r.approver),
            release_time(r, steward),
        ]);
    }
    out.finish()
}

/// The public release list, row for row what `GET /v1/releases` serves
/// ([`ReleaseSummary`]): JSON and CSV are its body, the table has the same columns under the
/// same names (`-` for a release without a quarter or a successor). Every text passes
/// [`terminal_safe`]; times are days, as the API gives them.
pub fn release_summaries(rows: &[ReleaseSummary], format: Format) -> String {
    let safe_rows: Vec<ReleaseSummary> = rows.iter().map(summary_for_terminal).collect();
    match format {
        Format::Json => json_for_terminal(&rows) + "\n",
        Format::Csv => csv_out::rows(&safe_rows),
        Format::Table => {
            let header = ReleaseSummary::header();
            let mut table = vec![header.into_iter().map(String::from).collect::<Vec<_>>()];
            for r in safe_rows {
                table.push(vec![
                    r.id.to_string(),
                    r.name,
                    r.quarter.unwrap_or_else(|| "-".into()),
                    r.dataset_version,
                    r.approver,
                    r.published_at,
                    format!("{:.6}", r.rho),
                    r.delta.to_string(),
                    r.statistics.to_string(),
                    r.cells.to_string(),
                    r.superseded_by
                        .map_or_else(|| "-".to_string(), |s| s.to_string()),
                ]);
            }
            align(&table)
        }
    }
}

/// A line of the public release list with every text through [`terminal_safe`].
fn summary_for_terminal(r: &ReleaseSummary) -> ReleaseSummary {
    ReleaseSummary {
        name: safe(&r.name),
        quarter: r.quarter.as_deref().map(safe),
        dataset_version: safe(&r.dataset_version),
        approver: safe(&r.approver),
        published_at: safe(&r.published_at),
        ..r.clone()
    }
}

/// The budget in `format`: the steward's table ([`budget_table`]), or the same facts as
/// JSON ([`budget_json`]) or CSV ([`budget_csv`]).
pub fn budget(b: &BudgetView, format: Format) -> String {
    match format {
        Format::Table => budget_table(b),
        Format::Json => {
            serde_json::to_string_pretty(&budget_json(b)).expect("budgets serialise") + "\n"
        }
        Format::Csv => budget_csv(b),
    }
}

/// ε of `rho` at the display δ `d`, as the budget's table shows it; `None` where OpenDP
/// cannot convert (the table's `?`).
fn budget_epsilon(rho: f64, d: f64) -> Option<f64> {
    epsilon_at(rho, d).ok()
}

/// The budget as JSON: the ledger's view ([`BudgetView`]) and, beside each ρ, what the
/// table shows with it, named as `GET /v1/budget` names them: at the top, `remaining_rho`,
/// `total_epsilon`, `spent_epsilon`, `remaining_epsilon`, `lifetime_epsilon` and `renewals`;
/// in each allocation, `remaining_rho`, `epsilon`, `spent_epsilon` and `remaining_epsilon`.
/// Every ε is at `config.display_delta`, `null` where the table shows `?`.
pub fn budget_json(b: &BudgetView) -> serde_json::Value {
    use serde_json::json;
    let d = b.config.display_delta;
    let left = (b.period.total_rho - b.spent_rho).max(0.0);
    let mut v = serde_json::to_value(b).expect("budgets serialise");
    v["remaining_rho"] = json!(left);
    v["total_epsilon"] = json!(budget_epsilon(b.period.total_rho, d));
    v["spent_epsilon"] = json!(budget_epsilon(b.spent_rho, d));
    v["remaining_epsilon"] = json!(budget_epsilon(left, d));
    v["lifetime_epsilon"] = json!(budget_epsilon(b.lifetime_rho, d));
    v["renewals"] = json!(b.periods.saturating_sub(1));
    if let Some(rows) = v["allocations"].as_array_mut() {
        for (row, a) in rows.iter_mut().zip(&b.allocations) {
            let left = (a.rho - a.spent_rho).max(0.0);
            row["remaining_rho"] = json!(left);
            row["epsilon"] = json!(budget_epsilon(a.rho, d));
            row["spent_epsilon"] = json!(budget_epsilon(a.spent_rho, d));
            row["remaining_epsilon"] = json!(budget_epsilon(left, d));
        }
    }
    v
}

/// The budget as CSV: one line per line of the table, `row` saying which: `total` (the
/// period), `allocation` (named in `allocation`), `lifetime` (over every period: its ρ, ε
/// and δ). Each holds ρ, spent and left, ε of the total and of the spent at the display δ,
/// and δ with what is spent of it; then, on every line, what the table's header says: the
/// display δ, the period's number, the number of periods (renewals + 1), its first and last
/// day, its reason, the noise and the smallest noise scale. A number that does not apply, or
/// an ε that cannot be converted (the table's `?`), is an empty field.
pub fn budget_csv(b: &BudgetView) -> String {
    let d = b.config.display_delta;
    let number = |x: Option<f64>| x.map(|x| x.to_string()).unwrap_or_default();
    let noise = serde_json::to_value(b.config.noise)
        .ok()
        .and_then(|v| v.as_str().map(String::from))
        .unwrap_or_default();
    let period = [
        d.to_string(),
        b.period.id.to_string(),
        b.periods.to_string(),
        b.period.starts.clone(),
        b.period.ends.clone(),
        defuse(&safe(&b.period.why)).into_owned(),
        noise,
        b.config.min_scale.to_string(),
    ];
    let mut out = csv_out::Writer::new();
    out.line([
        "row",
        "allocation",
        "rho",
        "spent_rho",
        "remaining_rho",
        "epsilon",
        "spent_epsilon",
        "delta",
        "spent_delta",
        "display_delta",
        "period",
        "periods",
        "period_starts",
        "period_ends",
        "why",
        "noise",
        "min_scale",
    ]);
    let mut lines = vec![BudgetLine {
        row: "total",
        name: String::new(),
        rho: b.period.total_rho,
        spent: Some(b.spent_rho),
        delta: b.period.total_delta,
        spent_delta: Some(b.spent_delta),
    }];
    lines.extend(b.allocations.iter().map(|a| BudgetLine {
        row: "allocation",
        name: defuse(&safe(&a.name)).into_owned(),
        rho: a.rho,
        spent: Some(a.spent_rho),
        delta: a.delta,
        spent_delta: Some(a.spent_delta),
    }));
    lines.push(BudgetLine {
        row: "lifetime",
        name: String::new(),
        rho: b.lifetime_rho,
        spent: None,
        delta: b.lifetime_delta,
        spent_delta: None,
    });
    for l in lines {
        let mut fields = vec![
            l.row.to_string(),
            l.name,
            l.rho.to_string(),
            number(l.spent),
            number(l.spent.map(|s| (l.rho - s).max(0.0))),
            number(budget_epsilon(l.rho, d)),
            number(l.spent.and_then(|s| budget_epsilon(s, d))),
            l.delta.to_string(),
            number(l.spent_delta),
        ];
        fields.extend(period.iter().cloned());
        out.line(fields);
    }
    out.finish()
}

/// A line of [`budget_csv`]: what it is (`total`, `allocation`, `lifetime`), the allocation's
/// name, ρ and what is spent of it, δ and what is spent of it (nothing spent for `lifetime`).
struct BudgetLine {
    row: &'static str,
    name: String,
    rho: f64,
    spent: Option<f64>,
    delta: f64,
    spent_delta: Option<f64>,
}

/// The budget as the steward sees it, with ε at the configured δ.
pub fn budget_table(b: &BudgetView) -> String {
    let d = b.config.display_delta;
    let eps = |rho: f64| {
        budget_epsilon(rho, d)
            .map(|e| format!("{e:.3}"))
            .unwrap_or_else(|| "?".into())
    };
    let mut out = String::new();
    let _ = writeln!(
        out,
        "privacy budget, period {} of {} (renewals: {}), {} to {}\n  reason: {}\n  noise: {:?}, minimum scale {}, epsilon shown at delta = {d:e}",
        b.period.id,
        b.periods,
        b.periods - 1,
        b.period.starts,
        b.period.ends,
        b.period.why,
        b.config.noise,
        b.config.min_scale,
    );
    let mut rows = vec![
        [
            "",
            "rho",
            "spent",
            "left",
            "epsilon(total)",
            "epsilon(spent)",
        ]
        .map(String::from)
        .to_vec(),
    ];
    rows.push(vec![
        "total".into(),
        format!("{:.6}", b.period.total_rho),
        format!("{:.6}", b.spent_rho),
        format!("{:.6}", (b.period.total_rho - b.spent_rho).max(0.0)),
        eps(b.period.total_rho),
        eps(b.spent_rho),
    ]);
    for a in &b.allocations {
        rows.push(vec![
            format!("  {}", a.name),
            format!("{:.6}", a.rho),
            format!("{:.6}", a.spent_rho),
            format!("{:.6}", (a.rho - a.spent_rho).max(0.0)),
            eps(a.rho),
            eps(a.spent_rho),
        ]);
    }
    out.push_str(&align(&rows));
    let any_delta = b.period.total_delta > 0.0
        || b.spent_delta > 0.0
        || b.allocations
            .iter()
            .any(|a| a.delta > 0.0 || a.spent_delta > 0.0);
    if any_delta {
        let _ = writeln!(
            out,
            "  delta for private partition selection: {:.3e} spent of {:.3e}; epsilon is shown at delta = {d:e} plus the delta spent",
            b.spent_delta, b.period.total_delta
        );
        for a in &b.allocations {
            let _ = writeln!(
                out,
                "    {}: delta {:.3e} spent of {:.3e}",
                a.name, a.spent_delta, a.delta
            );
        }
    }
    let _ = writeln!(
        out,
        "  lifetime rho over all periods: {:.6} (epsilon {} at delta = {d:e}); it grows with every renewal",
        b.lifetime_rho,
        eps(b.lifetime_rho)
    );
    let _ = writeln!(
        out,
        "  lifetime delta over all periods: {:.3e}; it grows with every renewal too",
        b.lifetime_delta
    );
    if let Some(r) = &b.recovered_from {
        let _ = writeln!(
            out,
            "  recovered on {} from lost ledger {} ({} chain entries, head {}): its lifetime rho {:.6} and delta {:.3e} are carried over into the lifetime above\n    reason: {}\n    releases 1 to {} had their stored numbers in the lost ledger; quarters it had published, each published again only by a new debit: {}",
            r.day,
            r.lost_ledger_id,
            r.lost_entries,
            r.lost_chain_head,
            r.lifetime_rho,
            r.lifetime_delta,
            r.why,
            r.releases_lost,
            if r.published_quarters.is_empty() {
                "none".to_string()
            } else {
                r.published_quarters.join(", ")
            }
        );
    }
    out
}

/// The metric catalog: one row per statistic, rate and difference (the rows the API serves
/// at `/v1/metrics`).
pub fn metric_catalog(catalog: &crate::metrics::Catalog, format: Format) -> String {
    let rows = super::views::metrics(catalog);
    let window = |w: Option<[i64; 2]>| w.map(|w| format!("{}-{}", w[0], w[1])).unwrap_or_default();
    match format {
        Format::Json => serde_json::to_string_pretty(&rows).expect("rows serialise") + "\n",
        Format::Csv => csv_out::rows(&rows),
        Format::Table => {
            let mut table = vec![
                ["metric", "kind", "name", "days", "definition"]
                    .map(String::from)
                    .to_vec(),
            ];
            for r in &rows {
                table.push(vec![
                    r.metric.clone(),
                    r.kind.clone(),
                    r.name.clone(),
                    window(r.window_days),
                    r.definition.clone(),
                ]);
            }
            align(&table)
        }
    }
}

/// The steward's exact counts (`outreach metrics --exact`).
pub fn exact_values(values: &[crate::metrics::exact::ExactValue], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(values).expect("values serialise") + "\n",
        Format::Csv => {
            let mut out = csv_out::Writer::new();
            out.line(["program_id", "quarter", "statistic", "value"]);
            for v in values {
                out.line([
                    defuse(&v.program_id).into_owned(),
                    v.quarter.clone(),
                    v.statistic.clone(),
                    v.value.to_string(),
                ]);
            }
            out.finish()
        }
        Format::Table => {
            let mut table = vec![
                ["program_id", "quarter", "statistic", "exact value"]
                    .map(String::from)
                    .to_vec(),
            ];
            for v in values {
                table.push(vec![
                    v.program_id.clone(),
                    v.quarter.clone(),
                    v.statistic.clone(),
                    v.value.to_string(),
                ]);
            }
            align(&table)
        }
    }
}

/// A publication: the summary table per program (the main rates with their intervals), or
/// the whole stored document as JSON, or every figure as CSV.
pub fn publication(p: &crate::publication::Published, format: Format) -> String {
    let doc = &p.publication;
    let loss = &p.loss;
    match format {
        Format::Json => {
            // The stored document, with the quarter's loss beside it and what the table's
            // first line says of the publication: its id, whether this run published it
            // (`fresh`, false when nothing was spent) and the publication it supersedes.
            let mut v = serde_json::to_value(doc).expect("publications serialise");
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "quarter_loss".into(),
                    serde_json::to_value(loss).expect("losses serialise"),
                );
                o.insert("publication_id".into(), serde_json::json!(p.publication_id));
                o.insert("fresh".into(), serde_json::json!(p.fresh));
                o.insert("supersedes".into(), serde_json::json!(p.superseded));
                o.insert(
                    "corrected_quarters".into(),
                    serde_json::to_value(&p.corrected).expect("quarters serialise"),
                );
            }
            serde_json::to_string_pretty(&v).expect("publications serialise") + "\n"
        }
        Format::Csv => publication_csv(doc),
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "{what} {quarter}: release {release} from dataset {version}, {distribution} noise with scale {scale}, k = {k}, rho = {rho:.4} (epsilon {epsilon:.3} alone); equity release {equity}, rho = {equity_rho:.4} (epsilon {equity_epsilon:.3} alone){superseded_part}{supersedes}",
                what = match (p.fresh, p.superseded) {
                    (true, _) => "Published",
                    // The same releases, stored again with the declarations now in force.
                    (false, Some(_)) => "Published again from its releases (nothing spent)",
                    (false, None) => "Already published (nothing spent)",
                },
                quarter = doc.quarter,
                release = doc.release_id,
                version = doc.dataset_version,
                distribution = doc.distribution,
                scale = doc.scale,
                k = doc.k,
                rho = loss.standard_rho,
                epsilon = loss.standard_epsilon,
                equity = doc
                    .equity_release_id
                    .map_or("-".to_string(), |id| id.to_string()),
                equity_rho = loss.equity_rho,
                equity_epsilon = loss.equity_epsilon,
                superseded_part = if loss.superseded_rho > 0.0 {
                    format!(
                        "; releases of superseded publications, rho = {:.4}",
                        loss.superseded_rho
                    )
                } else {
                    String::new()
                },
                supersedes = p
                    .superseded
                    .map(|s| format!("; supersedes publication {s}"))
                    .unwrap_or_default(),
            );
            let _ = writeln!(
                out,
                "The quarter's privacy loss: rho = {:.4} (epsilon {:.3} at delta = {:e}), every release that published it.",
                loss.rho, loss.epsilon, loss.epsilon_delta
            );
            out.push_str(&corrected_note(&p.corrected));
            let shown = [
                "reach_7d",
                "timely_contact_72h",
                "engagement_30d",
                "linkage_any_30d",
                "linkage_moud_30d",
                "arrest_after_referral_90d",
            ];
            let mut rows = vec![{
                let mut h = vec!["program".to_string(), "identified".to_string()];
                h.extend(shown.iter().map(|s| s.to_string()));
                h.push("arrest_diff_police".into());
                h
            }];
            let rate_text = |r: Option<&crate::publication::figures::RateFigure>| match r {
                Some(r) if !r.insufficient_data => format!(
                    "{:.2} [{:.2},{:.2}]{}",
                    r.value.unwrap_or(0.0),
                    r.lower.unwrap_or(0.0),
                    r.upper.unwrap_or(0.0),
                    if r.complete { "" } else { "*" }
                ),
                Some(_) => "insufficient".into(),
                None => "-".into(),
            };
            let all =
                doc.programs
                    .iter()
                    .map(|p| {
                        (
                            p.program.program_id.clone(),
                            &p.counts,
                            &p.rates,
                            &p.differences,
                        )
                    })
                    .chain(
                        doc.groups.iter().filter(|g| g.by == "statewide").map(|g| {
                            ("STATEWIDE".to_string(), &g.counts, &g.rates, &g.differences)
                        }),
                    );
            for (name, counts, rates, diffs) in all {
                let mut row = vec![name];
                row.push(
                    counts
                        .iter()
                        .find(|c| c.statistic == "identified")
                        .map(|c| format!("{:.0} [{:.0},{:.0}]", c.value, c.lower, c.upper))
                        .unwrap_or_default(),
                );
                for s in shown {
                    row.push(rate_text(rates.iter().find(|r| r.name == s)));
                }
                row.push(match diffs.first() {
                    Some(d) if !d.insufficient_data => format!(
                        "{:+.2} [{:+.2},{:+.2}]",
                        d.value.unwrap_or(0.0),
                        d.lower.unwrap_or(0.0),
                        d.upper.unwrap_or(0.0)
                    ),
                    Some(_) => "insufficient".into(),
                    None => "-".into(),
                });
                rows.push(row);
            }
            out.push_str(&align(&rows));
            if doc.completeness.iter().any(|c| !c.complete) {
                let _ = writeln!(
                    out,
                    "* follow-up incomplete for: {}",
                    doc.completeness
                        .iter()
                        .filter(|c| !c.complete)
                        .map(|c| c.statistic.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
            }
            let _ = writeln!(out, "{}", doc.note);
            out
        }
    }
}

/// Every figure of a publication as CSV, in the API's columns ([`super::views::Figure`]):
/// each program's, its equity breakdowns included, each group's, and the statewide equity
/// breakdowns ([`super::views::publication_figures`]). `report.csv` and
/// `publish --format csv` print it.
pub fn publication_csv(doc: &crate::publication::Publication) -> String {
    csv_out::rows(&super::views::publication_figures(doc))
}

/// A plan: what a quarter's publication would cost and how precise it would be, for every
/// figure it would publish, the equity breakdowns' at their own σ.
///
/// JSON is the [`crate::publication::Plan`] with `widest_rate` beside it. CSV has the
/// columns `kind,name,value`: first the lines of kind `plan`, what the table's first line and
/// last line say (the quarter, σ and k of each release, the survivors rates are given at,
/// ρ of the whole, the standard and the equity release, δ, ε and its display δ, and the
/// widest rate half-width), named as the JSON names them; then one line per figure, whose
/// value is its 95% half-width: kinds `count`, `rate_at_N`, `equity_count` and
/// `equity_rate_at_N`, N the survivors.
pub fn plan(p: &crate::publication::Plan, format: Format) -> String {
    match format {
        Format::Json => {
            let mut v = serde_json::to_value(p).expect("plans serialise");
            v["widest_rate"] = serde_json::json!(p.widest_rate());
            serde_json::to_string_pretty(&v).expect("plans serialise") + "\n"
        }
        Format::Csv => {
            let mut out = csv_out::Writer::new();
            out.line(["kind", "name", "value"]);
            for (name, value) in [
                ("quarter", p.quarter.clone()),
                ("sigma", p.sigma.to_string()),
                ("k", p.k.to_string()),
                ("equity_sigma", p.equity_sigma.to_string()),
                ("equity_k", p.equity_k.to_string()),
                ("at", p.at.to_string()),
                ("rho", p.rho.to_string()),
                ("rho_standard", p.rho_standard.to_string()),
                ("rho_equity", p.rho_equity.to_string()),
                ("delta", p.delta.to_string()),
                ("epsilon", p.epsilon.to_string()),
                ("display_delta", p.display_delta.to_string()),
                ("widest_rate", p.widest_rate().to_string()),
            ] {
                out.line(["plan".to_string(), name.to_string(), value]);
            }
            for (s, h) in &p.counts {
                out.line(["count".to_string(), s.clone(), h.to_string()]);
            }
            for (r, h) in &p.rates {
                out.line([format!("rate_at_{}", p.at), r.clone(), h.to_string()]);
            }
            for (s, h) in &p.equity_counts {
                out.line(["equity_count".to_string(), s.clone(), h.to_string()]);
            }
            for (r, h) in &p.equity_rates {
                out.line([format!("equity_rate_at_{}", p.at), r.clone(), h.to_string()]);
            }
            for c in &p.corrected {
                out.line([
                    "corrected_quarter".to_string(),
                    c.quarter.clone(),
                    c.corrected_in.clone(),
                ]);
            }
            out.finish()
        }
        Format::Table => {
            let mut out = String::new();
            let _ = writeln!(
                out,
                "Publishing {} with sigma = {} and k = {} (equity breakdowns: sigma = {}, k = {}) would cost rho = {:.4} (standard release {:.4}, equity release {:.4}), delta = {} (epsilon {:.3} at delta = {:e}). Nothing is spent by this plan.",
                p.quarter,
                p.sigma,
                p.k,
                p.equity_sigma,
                p.equity_k,
                p.rho,
                p.rho_standard,
                p.rho_equity,
                p.delta,
                p.epsilon,
                p.display_delta
            );
            let mut rows = vec![vec!["figure".to_string(), "95% half-width".to_string()]];
            for (s, h) in &p.counts {
                rows.push(vec![format!("count {s}"), format!("±{h}")]);
            }
            for (r, h) in &p.rates {
                rows.push(vec![
                    format!("rate {r} at {} survivors", p.at),
                    format!("±{:.3} (at most, for any true rate)", h),
                ]);
            }
            for (s, h) in &p.equity_counts {
                rows.push(vec![
                    format!("equity count {s} (one breakdown value)"),
                    format!("±{h}"),
                ]);
            }
            for (r, h) in &p.equity_rates {
                rows.push(vec![
                    format!(
                        "equity rate {r} at {} survivors of one breakdown value",
                        p.at
                    ),
                    format!("±{:.3} (at most, for any true rate)", h),
                ]);
            }
            out.push_str(&align(&rows));
            let _ = writeln!(
                out,
                "Every rate listed is within ±{:.3} at {} survivors.",
                p.widest_rate(),
                p.at
            );
            out.push_str(&corrected_note(&p.corrected));
            out
        }
    }
}

/// The steward's note of the published quarters whose rows a load corrected or retracted
/// after their publication (empty when there are none).
fn corrected_note(corrected: &[crate::publication::CorrectedQuarter]) -> String {
    if corrected.is_empty() {
        return String::new();
    }
    let list: Vec<String> = corrected
        .iter()
        .map(|c| {
            format!(
                "{} (published from {}, corrected in {})",
                c.quarter, c.published_from, c.corrected_in
            )
        })
        .collect();
    format!(
        "Rows of published quarters were corrected or retracted after their publication: {}. Publish each again with `outreach publish --quarter Q --republish` (a new debit).\n",
        list.join(", ")
    )
}

/// The steward's list of researchers' requests. Purposes and specs are researchers' text:
/// every field passes [`terminal_safe`].
pub fn requests(list: &[crate::requests::StoredRequest], format: Format) -> String {
    match format {
        Format::Json => json_for_terminal(&list) + "\n",
        Format::Csv => {
            let mut out = csv_out::Writer::new();
            out.line([
                "id",
                "researcher",
                "token",
                "state",
                "rho_asked",
                "rho",
                "submitted_at",
                "release_id",
                "public",
                "purpose",
            ]);
            for r in list {
                out.line([
                    safe(&r.id),
                    defuse(&safe(&r.researcher)).into_owned(),
                    r.token_id.map(|i| i.to_string()).unwrap_or_default(),
                    r.state.as_str().to_string(),
                    r.rho_asked.to_string(),
                    r.quote.rho.to_string(),
                    safe(&r.submitted_at),
                    r.release_id.map(|i| i.to_string()).unwrap_or_default(),
                    r.public.to_string(),
                    defuse(&safe(&r.purpose)).into_owned(),
                ]);
            }
            out.finish()
        }
        Format::Table => {
            let mut table = vec![
                [
                    "id",
                    "researcher",
                    "token",
                    "state",
                    "rho",
                    "submitted",
                    "release",
                    "purpose",
                ]
                .map(String::from)
                .to_vec(),
            ];
            for r in list {
                let purpose: String = r.purpose.chars().take(60).collect();
                table.push(vec![
                    safe(&r.id),
                    safe(&r.researcher),
                    r.token_id.map(|i| i.to_string()).unwrap_or_default(),
                    r.state.as_str().to_string(),
                    format!("{:.4}", r.quote.rho),
                    safe(&r.submitted_at),
                    r.release_id.map(|i| i.to_string()).unwrap_or_default(),
                    safe(&purpose),
                ]);
            }
            align(&table)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminal_safe_escapes_controls_escape_sequences_and_bidi_controls_only() {
        // Plain text, accents and other scripts pass unchanged, without a copy.
        for plain in [
            "how many survivors, per team?",
            "équipe Nord",
            "日本語 ok",
            "",
        ] {
            assert!(matches!(terminal_safe(plain), Cow::Borrowed(_)), "{plain}");
        }
        // C0 (ESC, BEL, line breaks, tab), DEL and C1 (CSI U+009B) are escaped, so no
        // escape sequence runs and no line break forges a row.
        assert_eq!(terminal_safe("\u{1b}[2Jx"), "\\u{1b}[2Jx");
        assert_eq!(terminal_safe("a\u{7}b\tc"), "a\\u{7}b\\u{9}c");
        assert_eq!(terminal_safe("row\nfake\r"), "row\\u{a}fake\\u{d}");
        assert_eq!(
            terminal_safe("\u{7f}\u{80}\u{9b}31m"),
            "\\u{7f}\\u{80}\\u{9b}31m"
        );
        // Bidi controls that reorder what is shown, and the line separators.
        assert_eq!(terminal_safe("\u{202e}txt.exe"), "\\u{202e}txt.exe");
        for c in [
            '\u{061c}', '\u{200e}', '\u{200f}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}',
            '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{2028}', '\u{2029}',
        ] {
            let out = terminal_safe(&format!("a{c}b")).into_owned();
            assert_eq!(out, format!("a\\u{{{:x}}}b", u32::from(c)));
        }
        // Nothing unsafe is left in what comes out, whatever comes in.
        let all: String = (0u32..0x3000).filter_map(char::from_u32).collect();
        assert!(!terminal_safe(&all).chars().any(is_unsafe_on_terminal));
    }

    #[test]
    fn json_for_the_terminal_escapes_every_string_and_key() {
        let v =
            serde_json::json!({"purpose\u{202e}": ["a\u{9b}b", {"n": "\u{1b}]0;x\u{7}"}], "k": 1});
        let text = json_for_terminal(&v);
        // Pretty JSON breaks its own lines; nothing else unsafe is in it.
        assert!(
            !text
                .chars()
                .filter(|&c| c != '\n')
                .any(is_unsafe_on_terminal),
            "{text}"
        );
        // A JSON reader gets back exactly the value: what the API serves.
        let back: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(back, v);
        assert!(text.contains("a\\u009bb"), "{text}");
    }
}
