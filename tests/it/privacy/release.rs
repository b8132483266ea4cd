//! Releases end to end: the numbers and intervals, refusals that spend nothing, the public
//! view. The DP inequality between two warehouses that differ by one survivor is in
//! `privacy_dp_inequality.rs`.

use std::path::Path;
use std::process::Command;

use outreach_warehouse::ledger::{BudgetInit, Ledger, PrivacyConfig};
use outreach_warehouse::privacy::release::{PublicRelease, RatioValue};
use outreach_warehouse::privacy::{NoiseKind, PrivacyError, ReleaseRequest, ReleaseSpec, release};

use crate::common::{
    EVENTS_HEADER, csv, event, ingest_files, privacy_warehouse, warehouse_with_programs, write,
};

fn ledger(wh: &Path, noise: NoiseKind, total: f64) {
    ledger_with_delta(wh, noise, total, 0.0)
}

fn ledger_with_delta(wh: &Path, noise: NoiseKind, total: f64, total_delta: f64) {
    let mut l = Ledger::init(
        wh,
        &BudgetInit {
            total_rho: total,
            total_delta,
            horizon_days: 365,
            config: PrivacyConfig {
                noise,
                ..PrivacyConfig::default()
            },
        },
    )
    .unwrap();
    l.allocate_with_delta("std", total, total_delta).unwrap();
}

/// Events and attempts per person, program and quarter, with police presence split into an
/// exclusive group and an engagement ratio.
pub(crate) fn engagement_spec(rho: f64) -> ReleaseSpec {
    toml::from_str(&format!(
        r#"
name = "engagement by police presence"
k = 3
rho = {rho}
allocation = "std"
exclusive = [["police", "no_police"]]

[[queries]]
sql = """
SELECT a.person_key, a.program_id, quarter_of(a.attempt_date) AS quarter,
       true AS attempted,
       bool_or(a.outcome = 'engaged_survivor') AS engaged,
       bool_or(a.police_present) AS police,
       NOT bool_or(a.police_present) AS no_police
FROM outreach_attempts a
GROUP BY a.person_key, a.program_id, quarter_of(a.attempt_date)
"""

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "2025Q1", to = "2025Q2" }} }}

[[statistics]]
name = "attempted"
kind = "count"

[[statistics]]
name = "engaged"
kind = "count"

[[statistics]]
name = "police"
kind = "count"

[[statistics]]
name = "no_police"
kind = "count"

[[ratios]]
name = "engagement_rate"
numerator = "engaged"
denominator = "attempted"
"#
    ))
    .unwrap()
}

fn run(
    wh: &Path,
    spec: &ReleaseSpec,
) -> Result<outreach_warehouse::privacy::ReleaseOutcome, PrivacyError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(release(
        wh,
        &ReleaseRequest {
            spec: spec.clone(),
            approver: "steward".into(),
        },
    ))
}

#[test]
fn a_release_publishes_every_cell_with_its_interval_and_debits_opendps_loss() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    ledger(&wh, NoiseKind::DiscreteGaussian, 10.0);
    let out = run(&wh, &engagement_spec(1.0)).unwrap();
    assert!(out.fresh);
    let r = &out.public.result;
    // 3 programs × 2 quarters, every cell of the public domain, zero or not.
    assert_eq!(r.cell_keys, ["program_id", "quarter"]);
    assert_eq!(r.cells.len(), 6);
    assert_eq!(r.cells[0], ["P001", "2025Q1"]);
    assert_eq!(r.statistics.len(), 4);
    for s in &r.statistics {
        assert_eq!(s.values.len(), 6);
        assert_eq!(s.distribution, "discrete_gaussian");
        // k = 3, ΣB² over blocks = 1 + 1 + 1 (the police group counts once): σ = √(9/2).
        assert!((s.scale - 4.5f64.sqrt()).abs() < 1e-12, "{}", s.scale);
        for v in &s.values {
            assert_eq!(v.lower, v.raw - s.half_width);
            assert_eq!(v.upper, v.raw + s.half_width);
            assert_eq!(v.display, v.raw.max(0));
        }
    }
    assert_eq!(r.ratios.len(), 1);
    assert_eq!(r.ratios[0].values.len(), 6);
    assert!(r.note.contains("noise only"));
    let l = Ledger::open(&wh).unwrap();
    let v = l.show().unwrap();
    assert!(
        v.spent_rho >= 1.0 && v.spent_rho - 1.0 < 1e-12,
        "{}",
        v.spent_rho
    );
    let stored = l.release(out.id).unwrap();
    assert_eq!(stored.dataset_version, "v2");
    assert_eq!(stored.d_in["k"], 3);
    let diag = stored.diagnostics.unwrap();
    assert_eq!(diag["persons"], 2, "{diag}");
    // pk01 has attempts in two (program, quarter) cells, pk02 in one.
    assert_eq!(diag["person_cells"], 3, "{diag}");
}

#[test]
fn the_same_release_again_returns_the_stored_numbers_and_spends_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    ledger(&wh, NoiseKind::DiscreteGaussian, 10.0);
    let a = run(&wh, &engagement_spec(1.0)).unwrap();
    let b = run(&wh, &engagement_spec(1.0)).unwrap();
    assert!(a.fresh && !b.fresh);
    assert_eq!(a.id, b.id);
    assert_eq!(a.public, b.public);
    let c = run(&wh, &engagement_spec(1.5)).unwrap();
    assert!(c.fresh, "another rho is another release");
    let spent = Ledger::open(&wh).unwrap().show().unwrap().spent_rho;
    assert!((spent - 2.5).abs() < 1e-9, "{spent}");
}

#[test]
fn refused_releases_spend_nothing_and_say_why() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    ledger(&wh, NoiseKind::DiscreteGaussian, 1.0);
    let cases: Vec<(ReleaseSpec, &str)> = vec![
        {
            let mut s = engagement_spec(0.5);
            s.queries[0].sql = Some(
                "SELECT program_id AS person_key, program_id, quarter_of(attempt_date) AS quarter, true AS attempted, true AS engaged, true AS police, false AS no_police FROM outreach_attempts GROUP BY program_id, quarter_of(attempt_date)"
                    .into(),
            );
            (s, "not person-local")
        },
        {
            let mut s = engagement_spec(0.5);
            s.cells[1].domain = outreach_warehouse::privacy::spec::DomainSpec::Dictionary(
                "overdose_events.event_id".into(),
            );
            (s, "not public")
        },
        {
            let mut s = engagement_spec(0.5);
            s.statistics[1].kind = outreach_warehouse::privacy::spec::StatisticKind::Sum;
            (s, "missing bounds")
        },
        (engagement_spec(2.0), "over budget"),
        {
            let mut s = engagement_spec(0.5);
            s.allocation = "elsewhere".into();
            (s, "unknown allocation")
        },
        {
            let mut s = engagement_spec(0.5);
            s.statistics[0].name = "nope".into();
            s.ratios.clear();
            (s, "no output column `nope`")
        },
        (engagement_spec(200.0), "below the configured minimum"),
    ];
    for (spec, why) in cases {
        let e = run(&wh, &spec).unwrap_err();
        assert!(e.to_string().contains(why), "expected '{why}', got: {e}");
    }
    let l = Ledger::open(&wh).unwrap();
    assert_eq!(l.show().unwrap().spent_rho, 0.0);
    assert!(l.releases().unwrap().is_empty());
}

#[test]
fn the_public_view_never_holds_error_text_or_diagnostics() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    ledger(&wh, NoiseKind::DiscreteGaussian, 10.0);
    let ok = run(&wh, &engagement_spec(1.0)).unwrap();
    // A release that fails after its debit, in a separate process (the failure is injected).
    let spec = crate::ledger::spec_file(tmp.path(), "fails", 0.5);
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["--quiet", "release", "--warehouse"])
        .arg(&wh)
        .arg("--spec")
        .arg(&spec)
        .env(
            outreach_warehouse::failpoint::ENV,
            "release-fail-after-debit",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("failed after its debit"));
    let l = Ledger::open(&wh).unwrap();
    let all = l.releases().unwrap();
    let failed = all
        .iter()
        .find(|r| r.status == "failed")
        .expect("a failed release");
    assert!(
        failed
            .error
            .as_deref()
            .unwrap()
            .contains("injected failure")
    );
    assert!(
        (l.show().unwrap().spent_rho - 1.5).abs() < 1e-9,
        "the failure stays spent"
    );
    assert!(PublicRelease::from_stored(failed).is_none());
    let stored = l.release(ok.id).unwrap();
    let public = PublicRelease::from_stored(&stored).unwrap();
    let json = serde_json::to_value(&public).unwrap();
    for field in [
        "error",
        "diagnostics",
        "status",
        "idempotency_key",
        "outside_domain",
        "persons_over_k",
    ] {
        assert!(
            !json.to_string().contains(&format!("\"{field}\"")),
            "public view holds {field}"
        );
    }
    // What the CLI shows to others: the public list has no failed release and no error text.
    for format in ["json", "csv", "table"] {
        let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
            .args(["--quiet", "releases", "list", "--warehouse"])
            .arg(&wh)
            .args(["--format", format])
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success());
        assert!(
            !text.contains("injected failure") && !text.contains("failed"),
            "{format}: {text}"
        );
        assert!(!text.contains("diagnostics"), "{format}: {text}");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["--quiet", "releases", "show", "--warehouse"])
        .arg(&wh)
        .arg(failed.id.to_string())
        .output()
        .unwrap();
    assert!(!out.status.success(), "a failed release has no public view");
}

#[test]
fn ratios_with_a_noisy_denominator_near_zero_are_insufficient_data() {
    use outreach_warehouse::privacy::release::ratio;
    assert_eq!(ratio(5.0, 0.0, 1.0, 1.0, 3.0), RatioValue::InsufficientData);
    assert_eq!(
        ratio(5.0, -4.0, 1.0, 1.0, 3.0),
        RatioValue::InsufficientData
    );
    assert_eq!(ratio(5.0, 6.0, 1.0, 1.0, 3.0), RatioValue::InsufficientData);
    match ratio(50.0, 100.0, 4.0, 4.0, 4.0) {
        RatioValue::Estimate {
            estimate,
            lower,
            upper,
        } => {
            assert!((estimate - 0.5).abs() < 1e-12);
            // sd = √((4 + 0.25·4) / 100²) = √5 / 100.
            let sd = 5f64.sqrt() / 100.0;
            assert!((upper - estimate - 1.96 * sd).abs() < 1e-12);
            assert!((estimate - lower - 1.96 * sd).abs() < 1e-12);
        }
        other => panic!("{other:?}"),
    }
}

/// Persons seen per program and quarter, with the quarter as a private key: its values come
/// from the data and only cells whose noisy count clears the threshold are published.
fn private_quarter_spec(delta: f64) -> ReleaseSpec {
    toml::from_str(&format!(
        r#"
name = "persons seen, quarters from the data"
k = 2
rho = 0.5
delta = {delta:e}
allocation = "std"

[[queries]]
sql = "SELECT person_key, program_id, quarter_of(event_date) AS quarter, true AS seen FROM overdose_events"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = "private"

[[statistics]]
name = "seen"
kind = "count"
"#
    ))
    .unwrap()
}

/// 200 survivors in P001 in 2025Q1, and one alone in P002 in 2025Q2.
fn crowd_warehouse(tmp: &Path) -> std::path::PathBuf {
    let wh = warehouse_with_programs(tmp);
    let mut events: Vec<String> = (0..200)
        .map(|i| {
            event(
                &format!("C{i:04}"),
                &format!("crowd{i:04}"),
                "P001",
                &format!("2025-01-{:02}", i % 28 + 1),
            )
        })
        .collect();
    events.push(event("L0001", "lone", "P002", "2025-05-01"));
    let dir = tmp.join("crowd");
    std::fs::create_dir_all(&dir).unwrap();
    ingest_files(
        &wh,
        &[write(
            &dir,
            "overdose_events.csv",
            csv(EVENTS_HEADER, &events),
        )],
    );
    wh
}

#[test]
fn a_private_key_publishes_only_cells_that_clear_the_threshold_and_debits_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = crowd_warehouse(tmp.path());
    ledger_with_delta(&wh, NoiseKind::DiscreteGaussian, 1.0, 1e-5);
    let out = run(&wh, &private_quarter_spec(1e-6)).unwrap();
    assert!(out.fresh);
    let r = &out.public.result;
    let sel = r.partition_selection.as_ref().expect("partition selection");
    assert_eq!(sel.column, "quarter");
    assert!(sel.threshold >= 2, "threshold {}", sel.threshold);
    assert!(sel.delta > 0.0 && sel.delta <= 1e-6, "delta {}", sel.delta);
    // The crowd's cell (200 persons, σ = 1) is published; the lone survivor's cell is
    // published with probability at most δ = 1e-6, and no empty cell ever is.
    assert_eq!(
        r.cells,
        vec![vec!["P001".to_string(), "2025Q1".to_string()]]
    );
    let s = &r.statistics[0];
    assert_eq!(s.values.len(), 1);
    assert!((s.values[0].raw - 200).abs() <= 10, "{}", s.values[0].raw);
    assert!(r.note.contains("no public domain"), "{}", r.note);
    // The debit carries OpenDP's (ρ, δ); ε is shown at the display δ plus that δ.
    assert!((out.public.d_out["rho"].as_f64().unwrap() - 0.5).abs() < 1e-12);
    let d = out.public.d_out["delta"].as_f64().unwrap();
    assert_eq!(d, sel.delta);
    let shown = out.public.d_out["epsilon_delta"].as_f64().unwrap();
    assert!((shown - (1e-7 + d)).abs() < 1e-18, "{shown}");
    let v = Ledger::open(&wh).unwrap().show().unwrap();
    assert_eq!(v.spent_delta, d);
    // The same release again spends nothing.
    let again = run(&wh, &private_quarter_spec(1e-6)).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.public, out.public);
    assert_eq!(Ledger::open(&wh).unwrap().show().unwrap().spent_delta, d);
}

#[test]
fn partition_selection_without_delta_budget_or_with_a_bad_spec_is_refused_before_any_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = crowd_warehouse(tmp.path());
    ledger(&wh, NoiseKind::DiscreteGaussian, 1.0); // no δ in the budget
    let cases: Vec<(ReleaseSpec, &str)> = vec![
        (private_quarter_spec(1e-6), "delta budget"),
        {
            let mut s = private_quarter_spec(1e-6);
            s.delta = None;
            (s, "give the `delta`")
        },
        {
            let mut s = private_quarter_spec(1e-6);
            s.cells[1].domain = outreach_warehouse::privacy::spec::DomainSpec::Quarters {
                from: "2025Q1".into(),
                to: "2025Q2".into(),
            };
            (s, "no cell key is private")
        },
        {
            let mut s = private_quarter_spec(1e-6);
            s.cells[0].domain = outreach_warehouse::privacy::spec::DomainSpec::Private;
            (s, "at most one cell key may be private")
        },
        {
            let mut s = private_quarter_spec(1e-6);
            s.statistics.push(s.statistics[0].clone());
            s.statistics[1].name = "seen_again".into();
            s.statistics[1].column = Some("seen".into());
            (s, "exactly one statistic")
        },
        (private_quarter_spec(0.5), "`delta` must be in"),
    ];
    for (spec, why) in cases {
        let e = run(&wh, &spec).unwrap_err();
        assert!(e.to_string().contains(why), "expected '{why}', got: {e}");
    }
    let l = Ledger::open(&wh).unwrap();
    let v = l.show().unwrap();
    assert_eq!((v.spent_rho, v.spent_delta), (0.0, 0.0));
    assert!(l.releases().unwrap().is_empty());
}

/// Only domains that may leave out stored values filter rows in the plan: every program and
/// every value of a dictionary column are every value a stored row holds, and a span of
/// quarters that holds every quarter of the data removes nothing. The filter is a matter of
/// speed (the bounder drops rows outside a domain either way), so it is not stored.
#[test]
fn only_domains_that_leave_out_stored_values_filter_rows_in_the_plan() {
    use outreach_warehouse::privacy::release::keep_filters_that_narrow;
    use outreach_warehouse::privacy::spec::check;
    use outreach_warehouse::quarter::Quarter;

    let spec: ReleaseSpec = toml::from_str(
        r#"
name = "domains"
k = 4
rho = 0.1
allocation = "std"
[[queries]]
sql = "SELECT person_key, program_id, quarter_of(event_date) AS quarter, sex, 'all' AS dim, true AS n FROM overdose_events"
[[cells]]
column = "program_id"
domain = "programs"
[[cells]]
column = "quarter"
domain = { quarters = { from = "2025Q1", to = "2025Q2" } }
[[cells]]
column = "sex"
domain = { dictionary = "overdose_events.sex" }
[[cells]]
column = "dim"
domain = { values = ["all"] }
[[statistics]]
name = "n"
kind = "count"
"#,
    )
    .unwrap();
    let dict = outreach_warehouse::dictionary::Dictionary::builtin().unwrap();
    let mut checked = check(&spec, dict, &["P1".to_string()]).unwrap();
    let filtered = |c: &outreach_warehouse::privacy::CheckedSpec| -> Vec<bool> {
        c.cells.iter().map(|c| c.filter_in_plan).collect()
    };
    assert_eq!(filtered(&checked), [false, true, false, true]);

    // Data in a quarter outside the span: the span narrows and keeps its filter.
    let q = |s: &str| s.parse::<Quarter>().unwrap();
    let mut narrowing = checked.clone();
    keep_filters_that_narrow(&mut narrowing, &spec, &[q("2024Q4"), q("2025Q1")].into());
    assert_eq!(filtered(&narrowing), [false, true, false, true]);
    // Every quarter of the data inside the span: nothing to remove.
    keep_filters_that_narrow(&mut checked, &spec, &[q("2025Q1"), q("2025Q2")].into());
    assert_eq!(filtered(&checked), [false, false, false, true]);

    // Not stored, and no part of what identifies a release.
    let json = serde_json::to_string(&narrowing).unwrap();
    assert!(!json.contains("filter_in_plan"), "{json}");
}
