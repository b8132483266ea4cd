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

/// One text field of a CSV body: quoted when it holds a separator, a quote or a line break.
/// Text that a spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first) is
/// prefixed with `'`: cell values, column names and program names come from specs and
/// suppliers. Numbers are written by their callers, never through this.
pub(crate) fn csv_field(s: &str) -> String {
    let guarded;
    let s = if s.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        guarded = format!("'{s}");
        guarded.as_str()
    } else {
        s
    };
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
    let header: Vec<String> = header.iter().map(|h| csv_field(h)).collect();
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

/// The metric catalog: one row per statistic, rate and difference (the rows the API serves
/// at `/v1/metrics`).
pub fn metric_catalog(catalog: &crate::queries::Catalog, format: Format) -> String {
    let rows = crate::api::views::metrics(catalog);
    let window = |w: Option<[i64; 2]>| w.map(|w| format!("{}-{}", w[0], w[1])).unwrap_or_default();
    match format {
        Format::Json => serde_json::to_string_pretty(&rows).expect("rows serialise") + "\n",
        Format::Csv => crate::api::csv::rows(&rows),
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
pub fn exact_values(values: &[crate::queries::exact::ExactValue], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(values).expect("values serialise") + "\n",
        Format::Csv => {
            let mut out = String::from("program_id,quarter,statistic,value\n");
            for v in values {
                let _ = writeln!(
                    out,
                    "{},{},{},{}",
                    csv_field(&v.program_id),
                    v.quarter,
                    v.statistic,
                    v.value
                );
            }
            out
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
pub fn publication(p: &crate::queries::publish::Published, format: Format) -> String {
    let doc = &p.publication;
    let loss = &p.loss;
    match format {
        Format::Json => {
            // The stored document, with the quarter's loss beside it.
            let mut v = serde_json::to_value(doc).expect("publications serialise");
            if let Some(o) = v.as_object_mut() {
                o.insert(
                    "quarter_loss".into(),
                    serde_json::to_value(loss).expect("losses serialise"),
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
            let rate_text = |r: Option<&crate::queries::figures::RateFigure>| match r {
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

/// Every figure of a publication as CSV: one row per (program or group, figure).
pub fn publication_csv(doc: &crate::queries::publish::Publication) -> String {
    let mut out = String::from(
        "quarter,release,dataset_version,scope,group,kind,name,value,raw,lower95,upper95,insufficient_data,complete\n",
    );
    let num = |x: Option<f64>| x.map(|v| format!("{v}")).unwrap_or_default();
    let mut emit = |scope: &str,
                    group: &str,
                    counts: &[crate::queries::figures::CountFigure],
                    rates: &[crate::queries::figures::RateFigure],
                    diffs: &[crate::queries::figures::DifferenceFigure]| {
        let head = format!(
            "{},{},{},{},{}",
            doc.quarter,
            doc.release_id,
            doc.dataset_version,
            scope,
            csv_field(group)
        );
        for c in counts {
            let _ = writeln!(
                out,
                "{head},count,{},{},{},{},{},false,{}",
                c.statistic, c.value, c.raw, c.lower, c.upper, c.complete
            );
        }
        for r in rates {
            let _ = writeln!(
                out,
                "{head},rate,{},{},{},{},{},{},{}",
                r.name,
                num(r.value),
                num(r.raw),
                num(r.lower),
                num(r.upper),
                r.insufficient_data,
                r.complete
            );
        }
        for d in diffs {
            let _ = writeln!(
                out,
                "{head},difference,{},{},{},{},{},{},{}",
                d.name,
                num(d.value),
                num(d.raw),
                num(d.lower),
                num(d.upper),
                d.insufficient_data,
                d.complete
            );
        }
    };
    for p in &doc.programs {
        emit(
            "program",
            &p.program.program_id,
            &p.counts,
            &p.rates,
            &p.differences,
        );
    }
    for g in &doc.groups {
        emit(&g.by, &g.group, &g.counts, &g.rates, &g.differences);
    }
    out
}

/// A plan: what a quarter's publication would cost and how precise it would be, for every
/// figure it would publish, the equity breakdowns' at their own σ.
pub fn plan(p: &crate::queries::publish::Plan, format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(p).expect("plans serialise") + "\n",
        Format::Csv => {
            let mut out = String::from("kind,name,half_width_95\n");
            for (s, h) in &p.counts {
                let _ = writeln!(out, "count,{s},{h}");
            }
            for (r, h) in &p.rates {
                let _ = writeln!(out, "rate_at_{},{r},{h}", p.at);
            }
            for (s, h) in &p.equity_counts {
                let _ = writeln!(out, "equity_count,{s},{h}");
            }
            for (r, h) in &p.equity_rates {
                let _ = writeln!(out, "equity_rate_at_{},{r},{h}", p.at);
            }
            out
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
            out
        }
    }
}

/// The steward's list of researchers' requests.
pub fn requests(list: &[crate::requests::StoredRequest], format: Format) -> String {
    match format {
        Format::Json => serde_json::to_string_pretty(list).expect("requests serialise") + "\n",
        Format::Csv => {
            let mut out = String::from(
                "id,researcher,state,rho_asked,rho,submitted_at,release_id,public,purpose\n",
            );
            for r in list {
                let _ = writeln!(
                    out,
                    "{},{},{},{},{},{},{},{},{}",
                    r.id,
                    csv_field(&r.researcher),
                    r.state.as_str(),
                    r.rho_asked,
                    r.quote.rho,
                    r.submitted_at,
                    r.release_id.map(|i| i.to_string()).unwrap_or_default(),
                    r.public,
                    csv_field(&r.purpose)
                );
            }
            out
        }
        Format::Table => {
            let mut table = vec![
                [
                    "id",
                    "researcher",
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
                    r.id.to_string(),
                    r.researcher.clone(),
                    r.state.as_str().to_string(),
                    format!("{:.4}", r.quote.rho),
                    r.submitted_at.clone(),
                    r.release_id.map(|i| i.to_string()).unwrap_or_default(),
                    purpose,
                ]);
            }
            align(&table)
        }
    }
}
