//! This deployment's entry for the OpenDP Deployments Registry
//! (`opendp/deployments-registry-data`), from what the warehouse knows: the privacy variant
//! (zCDP), the privacy unit (a survivor, per program key unless the steward declares keys
//! shared across programs), the period's and lifetime ρ and δ with ε at the display δ (the
//! conversion the budget page uses), the discrete Gaussian and how releases compose, the
//! post-processing (rates, group sums, clamping) and the follow-up completeness rule. The
//! curator's fields (name, curators, contact, region) are the steward's, from flags.
//!
//! The entry follows the registry's template (`deployment.basic`, `dp_variant`,
//! `privacy_loss`, `deployment_model`, `implementation`, `administrative`) and is written as
//! block YAML by [`Yaml::emit`], a small emitter for this one structure: every string is a
//! double-quoted scalar with JSON's escapes, which YAML reads as the same string, so no
//! text (a curator's name with a colon, a quote, a line break) can change the structure.

use std::path::Path;

use crate::ledger::{Ledger, NoiseKind};
use crate::present::dashboard::INTERVAL_RULE;
use crate::present::snapshot::Snapshot;
use crate::privacy::mechanism::epsilon_at;

use super::SiteError;

/// A YAML value of the entry.
#[derive(Debug, Clone, PartialEq)]
pub enum Yaml {
    Null,
    Bool(bool),
    Int(i64),
    Float(f64),
    Str(String),
    List(Vec<Yaml>),
    /// Keys in the order written; each key a plain identifier.
    Map(Vec<(String, Yaml)>),
}

fn s(text: impl Into<String>) -> Yaml {
    Yaml::Str(text.into())
}

fn map(entries: Vec<(&str, Yaml)>) -> Yaml {
    Yaml::Map(
        entries
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

impl Yaml {
    fn scalar(&self) -> Option<String> {
        Some(match self {
            Yaml::Null => "null".into(),
            Yaml::Bool(b) => b.to_string(),
            Yaml::Int(i) => i.to_string(),
            Yaml::Float(f) if f.is_finite() => float_text(*f),
            Yaml::Float(_) => "null".into(),
            Yaml::Str(t) => serde_json::to_string(t).expect("a string serialises"),
            Yaml::List(l) if l.is_empty() => "[]".into(),
            Yaml::Map(m) if m.is_empty() => "{}".into(),
            Yaml::List(_) | Yaml::Map(_) => return None,
        })
    }

    /// The value as block YAML, two spaces an indentation level, ending with a line break.
    pub fn emit(&self) -> String {
        let mut out = String::new();
        match self.scalar() {
            Some(text) => {
                out.push_str(&text);
                out.push('\n');
            }
            None => self.emit_block(0, &mut out),
        }
        out
    }

    fn emit_block(&self, indent: usize, out: &mut String) {
        let pad = " ".repeat(indent);
        match self {
            Yaml::Map(entries) => {
                for (key, value) in entries {
                    match value.scalar() {
                        Some(text) => out.push_str(&format!("{pad}{key}: {text}\n")),
                        None => {
                            out.push_str(&format!("{pad}{key}:\n"));
                            value.emit_block(indent + 2, out);
                        }
                    }
                }
            }
            Yaml::List(items) => {
                for item in items {
                    match item.scalar() {
                        Some(text) => out.push_str(&format!("{pad}- {text}\n")),
                        None => {
                            // The item's block, its first line after the dash.
                            let mut inner = String::new();
                            item.emit_block(indent + 2, &mut inner);
                            let inner = inner.strip_prefix(&format!("{pad}  ")).unwrap_or(&inner);
                            out.push_str(&format!("{pad}- {inner}"));
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// A finite float as YAML 1.1 and 1.2 both read it as a float: the shortest text that reads
/// back as the same f64 (Rust's `{:?}`), always with a `.` in the mantissa and a sign in the
/// exponent (`1.0e-7`), which YAML 1.1 readers such as PyYAML need to see a float.
fn float_text(f: f64) -> String {
    let text = format!("{f:?}");
    match text.split_once('e') {
        Some((mantissa, exponent)) => {
            let dot = if mantissa.contains('.') { "" } else { ".0" };
            let sign = if exponent.starts_with('-') { "" } else { "+" };
            format!("{mantissa}{dot}e{sign}{exponent}")
        }
        None => text,
    }
}

/// The steward's fields of the entry: who publishes, where, and whether one survivor has one
/// key in every program.
#[derive(Debug, Clone, Default)]
pub struct Curation {
    /// The deployment's name [default: "Post-overdose outreach program evaluation"].
    pub name: Option<String>,
    /// The agencies that publish.
    pub curators: Vec<String>,
    /// Where the registry's maintainers reach the curator.
    pub contact: Option<String>,
    /// Where the programs are, such as a state.
    pub region: Option<String>,
    /// The programs' person keys are one key per person across programs (a shared
    /// pseudonymisation key); otherwise each program keys its survivors on its own.
    pub shared_keys: bool,
}

/// What the follow-up completeness rule says, for the entry's post-processing.
pub const COMPLETENESS_RULE: &str = "A figure whose follow-up window runs past the date its \
     tables are declared complete through (a declaration by the steward, never inferred from the \
     data) is published marked incomplete, and a quarter is published with incomplete figures \
     only when the steward allows it; a later publication of the same data, after new \
     declarations, marks them complete and spends nothing.";

/// ε of `rho` at the display δ, as the budget page converts it.
fn epsilon(rho: f64, display_delta: f64) -> Result<f64, SiteError> {
    epsilon_at(rho.max(0.0), display_delta)
        .map_err(|e| SiteError::Disclosure(format!("cannot convert rho {rho} to epsilon: {e}")))
}

/// The entry of the warehouse at `warehouse`: read from its ledger (read-only) and what is
/// published; no data.
pub fn disclosure(warehouse: &Path, curation: &Curation) -> Result<Yaml, SiteError> {
    let ledger = Ledger::open_read_only(warehouse)
        .map_err(|e| SiteError::Warehouse(crate::Error::from(e)))?;
    let budget = ledger
        .show()
        .map_err(|e| SiteError::Warehouse(crate::Error::from(e)))?;
    drop(ledger);
    let snap = Snapshot::load(warehouse, &[])?;
    let d = budget.config.display_delta;
    let (first, last) = (
        snap.quarters.keys().next().cloned(),
        snap.quarters.keys().next_back().cloned(),
    );
    let published = snap
        .quarters
        .values()
        .map(|q| q.stored.published_at.clone())
        .max()
        .map(|at| at.chars().take(10).collect::<String>())
        .unwrap_or_default();
    let gaussian = budget.config.noise == NoiseKind::DiscreteGaussian;
    let lifetime_eps = epsilon(budget.lifetime_rho, d)?;
    let period_eps = epsilon(budget.spent_rho, d)?;
    let total_eps = epsilon(budget.period.total_rho, d)?;
    let name = curation
        .name
        .clone()
        .unwrap_or_else(|| "Post-overdose outreach program evaluation".into());
    let curators: Vec<Yaml> = curation
        .curators
        .iter()
        .map(|c| {
            map(vec![
                ("data_curator_name", s(c.clone())),
                ("data_curator_type", s("Government")),
            ])
        })
        .collect();
    let quarters = match (&first, &last) {
        (Some(a), Some(b)) if a == b => format!("the quarter {a}"),
        (Some(a), Some(b)) => format!("the quarters {a} to {b}"),
        _ => "no quarter yet".into(),
    };
    let unit = if curation.shared_keys {
        "A survivor across every program: the programs key each person with one shared \
         pseudonymisation key, so one person has one key in every program, and the bound on a \
         person's contribution holds across programs."
    } else {
        "A survivor within a program (per program key): each program keys its survivors on its \
         own, so one person seen by two programs has two keys, and the guarantee protects each \
         program's record of that person; a person in several programs is protected with the \
         loss multiplied by at most the number of programs that hold them."
    };
    let variant = if gaussian {
        "Zero-concentrated DP"
    } else {
        "Pure DP"
    };
    let mechanisms = if gaussian {
        "The discrete Gaussian mechanism (OpenDP, drawing from OpenSSL's secure generator) adds \
         integer noise to each count, after each survivor's contribution is bounded to at most k \
         cells, chosen by a keyed hash under the warehouse's secret; the noise scale never goes \
         below the configured minimum."
    } else {
        "The discrete Laplace mechanism (OpenDP, drawing from OpenSSL's secure generator) adds \
         integer noise to each count, after each survivor's contribution is bounded to at most k \
         cells; its pure-DP loss is debited as rho = epsilon^2/2."
    };
    let entry = map(vec![
        ("url_slug", s("post-overdose-outreach-evaluation")),
        (
            "deployment",
            map(vec![
                (
                    "basic",
                    map(vec![
                        ("name", s(name)),
                        ("data_curators", Yaml::List(curators)),
                        (
                            "description",
                            s(format!(
                                "Differentially private evaluation figures of post-overdose \
                                 outreach programs, per program and quarter: counts of survivors \
                                 reached, engaged and linked to treatment, their rates, and the \
                                 arrest-rate difference between outreach attempts with and \
                                 without police present, with 95% intervals; published for \
                                 {quarters}."
                            )),
                        ),
                        (
                            "intended_use",
                            s(
                                "Funders' and the agency's evaluation of outreach programs, and \
                               public accountability, without exposing any survivor.",
                            ),
                        ),
                        ("data_product_type", s("Summary statistics")),
                        (
                            "data_product_region",
                            s(curation.region.clone().unwrap_or_default()),
                        ),
                        ("data_product_sector", s("Health")),
                        ("publication_date", s(published)),
                    ]),
                ),
                (
                    "dp_variant",
                    map(vec![
                        ("variant_name", s(variant)),
                        (
                            "data_domain",
                            s(
                                "De-identified program records of overdose events, outreach \
                               attempts, referrals, treatment linkages and arrests, keyed by a \
                               person key; direct identifiers are refused at ingest.",
                            ),
                        ),
                        (
                            "unprotected_quantities",
                            s(
                                "The programs table (public program metadata), the quarters \
                               published, the release specifications (queries, cells, k, noise \
                               scales) and the dates each table is declared complete through.",
                            ),
                        ),
                    ]),
                ),
                (
                    "privacy_loss",
                    map(vec![
                        ("privacy_unit", s("Individual")),
                        ("privacy_unit_details", s(unit)),
                        // The number of survivors is itself a figure about them: never published.
                        ("number_of_privacy_units", Yaml::Null),
                        (
                            "privacy_parameters",
                            map(vec![
                                ("epsilon", Yaml::Float(lifetime_eps)),
                                ("delta", Yaml::Float(d + budget.lifetime_delta)),
                                ("rho", Yaml::Float(budget.lifetime_rho)),
                            ]),
                        ),
                        (
                            "privacy_parameters_details",
                            s(format!(
                                "Lifetime loss over {periods} budget period(s): rho = {lr} \
                                 (zCDP) and delta = {ld} spent by approximate releases; epsilon \
                                 = {le} at delta = {d} is converted from the lifetime rho, and \
                                 the delta given adds the approximate releases' delta to it. \
                                 The current period ({from} to {to}) has a budget of rho = {pr} \
                                 (epsilon = {pe} at delta = {d}) and delta = {pd}, of which rho \
                                 = {sr} (epsilon = {se}) and delta = {sd} are spent. The ledger \
                                 debits every release before its noise is drawn.",
                                periods = budget.periods,
                                lr = budget.lifetime_rho,
                                ld = budget.lifetime_delta,
                                le = lifetime_eps,
                                from = budget.period.starts.chars().take(10).collect::<String>(),
                                to = budget.period.ends.chars().take(10).collect::<String>(),
                                pr = budget.period.total_rho,
                                pe = total_eps,
                                pd = budget.period.total_delta,
                                sr = budget.spent_rho,
                                se = period_eps,
                                sd = budget.spent_delta,
                            )),
                        ),
                    ]),
                ),
                (
                    "deployment_model",
                    map(vec![
                        ("model_name", s("Central")),
                        (
                            "model_name_details",
                            s("The agency's warehouse holds the programs' de-identified \
                               records and adds the noise; only noisy figures leave it."),
                        ),
                        (
                            "trust_assumptions",
                            s(
                                "Survivors and programs trust the agency to keep the records and \
                               the warehouse's secret, and to debit every release; the public \
                               need not trust its figures: the ledger of spends is public, \
                               hash-chained and signed, and anyone can check it with \
                               `outreach verify`.",
                            ),
                        ),
                        (
                            "actors",
                            s(
                                "Programs send de-identified exports; the agency's data steward \
                               ingests them, publishes each quarter and decides researchers' \
                               requests; funders, researchers and the public read the figures.",
                            ),
                        ),
                        ("release_type", s("Many releases")),
                        (
                            "release_type_details",
                            s(
                                "A publication per quarter (a standard and an equity release), \
                               republications after new data, and researchers' releases \
                               approved by the steward; every one is debited from one budget.",
                            ),
                        ),
                        ("data_source_type", s("Dynamic")),
                        (
                            "data_source_type_details",
                            s(
                                "Programs send new records every quarter; a dataset version is \
                               published whole.",
                            ),
                        ),
                        ("access_type", s("Non-interactive")),
                        (
                            "access_type_details",
                            s("The public reads published figures only (API, dashboard, \
                               reports, a static mirror); researchers submit release \
                               specifications that the steward approves or rejects."),
                        ),
                    ]),
                ),
                (
                    "implementation",
                    map(vec![
                        (
                            "preprocessing_and_hyperparameter_tuning",
                            s("Noise scales and k are chosen from the target interval \
                               half-widths (`outreach plan`), never from the data."),
                        ),
                        ("mechanisms", s(mechanisms)),
                        (
                            "composition",
                            s(
                                "zCDP composition: the rho of every release adds up, per budget \
                               period and over the lifetime; a release is refused when its \
                               allocation or the period cannot pay for it.",
                            ),
                        ),
                        (
                            "post_processing",
                            s(format!(
                                "Rates are ratios of noisy counts and differences are \
                                 differences of those rates; group figures (team model, \
                                 region, statewide) are sums of the programs' noisy counts; \
                                 intervals are computed from the noise alone. {INTERVAL_RULE} \
                                 {COMPLETENESS_RULE}"
                            )),
                        ),
                        (
                            "justification",
                            s(
                                "Discrete noise avoids floating-point attacks; zCDP composes many \
                               quarterly releases tightly.",
                            ),
                        ),
                        (
                            "utility",
                            s("Every figure is published with its 95% interval."),
                        ),
                        (
                            "additional_information",
                            s(curation
                                .contact
                                .as_ref()
                                .map(|c| format!("Contact: {c}"))
                                .unwrap_or_default()),
                        ),
                    ]),
                ),
                (
                    "administrative",
                    map(vec![
                        ("status", s("Draft")),
                        (
                            "registry_authors",
                            Yaml::List(
                                curation
                                    .contact
                                    .iter()
                                    .chain(curation.curators.iter())
                                    .take(1)
                                    .map(|a| s(a.clone()))
                                    .collect(),
                            ),
                        ),
                        ("tier", Yaml::Int(3)),
                    ]),
                ),
            ]),
        ),
    ]);
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings_are_quoted_so_no_text_changes_the_structure() {
        let y = map(vec![
            ("a", s("x: y\n- z \"q\" #c")),
            (
                "b",
                Yaml::List(vec![s("one"), Yaml::Float(1e-7), Yaml::Int(3)]),
            ),
            (
                "c",
                Yaml::List(vec![map(vec![("k", s("v")), ("l", Yaml::Bool(true))])]),
            ),
            (
                "d",
                map(vec![
                    ("e", Yaml::Float(f64::NAN)),
                    ("f", Yaml::List(vec![])),
                ]),
            ),
            ("g", Yaml::Float(5.0)),
            ("h", Yaml::Float(2.5e20)),
        ]);
        assert_eq!(
            y.emit(),
            "a: \"x: y\\n- z \\\"q\\\" #c\"\nb:\n  - \"one\"\n  - 1.0e-7\n  - 3\nc:\n  - k: \"v\"\n    l: true\nd:\n  e: null\n  f: []\ng: 5.0\nh: 2.5e+20\n"
        );
    }
}
