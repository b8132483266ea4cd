//! Renders published releases and the budget as text tables and CSV. Only public views of
//! releases and the steward's own budget figures pass through here.

use std::fmt::Write;

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

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// One row per (cell, statistic) of a release, as CSV.
pub fn release_csv(r: &PublicRelease) -> String {
    let res = &r.result;
    let mut out = String::new();
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
        ]
        .map(String::from),
    );
    out.push_str(&header.join(","));
    out.push('\n');
    for (c, cell) in res.cells.iter().enumerate() {
        for s in &res.statistics {
            let v = &s.values[c];
            let mut row = vec![r.id.to_string(), r.dataset_version.clone()];
            row.extend(cell.iter().map(|x| csv_field(x)));
            row.extend([
                csv_field(&s.name),
                v.display.to_string(),
                v.raw.to_string(),
                v.lower.to_string(),
                v.upper.to_string(),
                s.distribution.clone(),
                format!("{}", s.scale),
            ]);
            out.push_str(&row.join(","));
            out.push('\n');
        }
        for ratio in &res.ratios {
            let mut row = vec![r.id.to_string(), r.dataset_version.clone()];
            row.extend(cell.iter().map(|x| csv_field(x)));
            row.push(csv_field(&ratio.name));
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
                ]),
                RatioValue::InsufficientData => row.extend([
                    "insufficient data".into(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                    String::new(),
                ]),
            }
            out.push_str(&row.join(","));
            out.push('\n');
        }
    }
    out
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
    let _ = writeln!(
        out,
        "release {}: {}\n  dataset {}, published {}, approved by {}\n  {}: rho = {rho:.6} (epsilon = {eps:.3} at delta = {delta:.3e}), k = {}",
        r.id,
        r.name,
        r.dataset_version,
        r.published_at,
        r.approver,
        r.measure,
        r.d_in.get("k").and_then(|v| v.as_u64()).unwrap_or(0),
    );
    for s in &res.statistics {
        let _ = writeln!(
            out,
            "  {}: {} noise, scale {:.3}, 95% interval ±{}",
            s.name, s.distribution, s.scale, s.half_width
        );
    }
    if let Some(sel) = &res.partition_selection {
        let _ = writeln!(
            out,
            "  `{}` has no public domain: {} cells reached the threshold {} (partition selection, delta = {:.3e})",
            sel.column,
            res.cells.len(),
            sel.threshold,
            sel.delta
        );
    }
    let mut header: Vec<String> = res.cell_keys.clone();
    header.extend(res.statistics.iter().map(|s| s.name.clone()));
    header.extend(res.ratios.iter().map(|s| s.name.clone()));
    let mut rows = vec![header];
    for (c, cell) in res.cells.iter().enumerate() {
        let mut row = cell.clone();
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
    let _ = writeln!(out, "  {}", res.note);
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

/// The release list as a table. `steward` adds failed and interrupted releases.
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
            r.status.clone(),
            r.name.clone(),
            r.dataset_version.clone(),
            r.allocation.clone(),
            format!("{:.6}", r.debit_rho),
            r.approver.clone(),
            r.finished_at
                .clone()
                .unwrap_or_else(|| r.created_at.clone()),
        ]);
    }
    align(&rows)
}

/// The release list as CSV (public releases only unless `steward`).
pub fn releases_csv(all: &[StoredRelease], steward: bool) -> String {
    let mut out = String::from("id,status,name,dataset_version,allocation,rho,approver,time\n");
    for r in all {
        if !steward && r.status != "released" {
            continue;
        }
        let _ = writeln!(
            out,
            "{},{},{},{},{},{},{},{}",
            r.id,
            r.status,
            csv_field(&r.name),
            r.dataset_version,
            csv_field(&r.allocation),
            r.debit_rho,
            csv_field(&r.approver),
            r.finished_at
                .clone()
                .unwrap_or_else(|| r.created_at.clone())
        );
    }
    out
}

/// The budget as the steward sees it, with ε at the configured δ.
pub fn budget_table(b: &BudgetView) -> String {
    let d = b.config.display_delta;
    let eps = |rho: f64| {
        epsilon_at(rho, d)
            .map(|e| format!("{e:.3}"))
            .unwrap_or_else(|_| "?".into())
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
    out
}
