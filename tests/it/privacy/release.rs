//! Releases end to end (`src/privacy/release`): the numbers and intervals, refusals that
//! spend nothing, the public view; idempotency, which binds what the warehouse stored;
//! identical releases started together, which debit once; and a release that fails after its
//! debit, which prints nothing that depends on the data. The DP inequality between two
//! warehouses that differ by one survivor is in `dp_inequality`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use outreach_warehouse::failpoint;
use outreach_warehouse::ledger::{BudgetInit, LEDGER_FILE, Ledger, PrivacyConfig};
use outreach_warehouse::privacy::release::{PublicRelease, RatioValue};
use outreach_warehouse::privacy::{NoiseKind, ReleaseSpec};

use super::{persons_spec, run};
use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, budget, outreach, spec_toml};
use crate::common::{
    EVENTS_HEADER, csv, event, events, ingest_files, privacy_warehouse, warehouse_with_programs,
    write,
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

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-12 * b.abs().max(1.0)
}

#[test]
fn fail_points_are_compiled_into_the_tests_and_their_binary() {
    // Without the feature every crash test below would pass by testing nothing.
    const {
        assert!(
            failpoint::ENABLED,
            "the tests must build the crate with its `failpoints` feature (Cargo.toml's self dev-dependency)"
        )
    };
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let out = outreach()
        .args(["release", "--warehouse"])
        .arg(&wh)
        .arg("--spec")
        .arg(&spec)
        .env(failpoint::ENV, "ledger-before-commit")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("fail point ledger-before-commit: aborting"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(Ledger::open(&wh).unwrap().releases().unwrap().is_empty());
}

#[test]
fn a_warehouse_rebuilt_next_to_the_same_ledger_never_replays_another_warehouses_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let a = privacy_warehouse(&tmp.path().join("a"));
    budget(&a, 1.0);
    let spec = persons_spec(2, 0.1);
    let first = run(&a, &spec).unwrap();
    assert!(first.fresh);
    assert!(!run(&a, &spec).unwrap().fresh, "the same data replays");
    // Another warehouse with other data but the same dataset version (v2), next to a's
    // ledger, as after a rebuild or a restore.
    let b_dir = tmp.path().join("b");
    std::fs::create_dir_all(&b_dir).unwrap();
    let b = warehouse_with_programs(&b_dir);
    ingest_files(
        &b,
        &[write(
            &b_dir,
            "overdose_events.csv",
            csv(EVENTS_HEADER, &events(30)),
        )],
    );
    for suffix in ["", "-wal"] {
        let from = a.join(format!("{LEDGER_FILE}{suffix}"));
        if from.exists() {
            std::fs::copy(&from, b.join(format!("{LEDGER_FILE}{suffix}"))).unwrap();
        }
    }
    let second = run(&b, &spec).unwrap();
    assert_eq!(
        second.public.dataset_version, first.public.dataset_version,
        "the test needs the same opaque version"
    );
    assert!(
        second.fresh,
        "release {} of other data was replayed",
        first.id
    );
    assert_ne!(second.id, first.id);
    let l = Ledger::open(&b).unwrap();
    assert_eq!(l.releases().unwrap().len(), 2);
    assert!(close(l.show().unwrap().spent_rho, 0.2));
    // On its own data, b replays its own release.
    let again = run(&b, &spec).unwrap();
    assert!(!again.fresh);
    assert_eq!(again.id, second.id);
    // The content hash binds the key but is never published.
    let hash = outreach_warehouse::warehouse::Warehouse::open(&b)
        .unwrap()
        .manifest()
        .unwrap()
        .content_hash();
    assert!(
        !serde_json::to_string(&second.public)
            .unwrap()
            .contains(&hash)
    );
}

#[test]
fn twenty_identical_releases_started_together_debit_once_and_print_the_same_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let children: Vec<_> = (0..20)
        .map(|_| {
            outreach()
                .args(["release", "--warehouse"])
                .arg(&wh)
                .arg("--spec")
                .arg(&spec)
                .args(["--format", "json"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let outs: Vec<Output> = children
        .into_iter()
        .map(|c| c.wait_with_output().unwrap())
        .collect();
    let mut printed = Vec::new();
    let mut replayed = 0;
    for out in &outs {
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => {
                printed.push(out.stdout.clone());
                replayed += usize::from(stderr.contains("nothing spent"));
            }
            // Refused as busy: allowed, though with the default wait it does not happen.
            Some(3) => assert!(stderr.contains("still running"), "{stderr}"),
            other => panic!("exit {other:?}: {stderr}"),
        }
    }
    assert!(!printed.is_empty());
    assert!(
        printed.iter().all(|p| p == &printed[0]),
        "identical requests printed different numbers"
    );
    let l = Ledger::open(&wh).unwrap();
    let all = l.releases().unwrap();
    assert_eq!(all.len(), 1, "{} debits for one request", all.len());
    assert_eq!(all[0].status, "released");
    assert!(close(l.show().unwrap().spent_rho, 0.1));
    assert_eq!(replayed, printed.len() - 1);
}

/// Two warehouses with different data, each with a budget: the fixture, and the fixture
/// plus 40 more survivors.
fn two_warehouses(tmp: &Path) -> [PathBuf; 2] {
    let a = privacy_warehouse(&tmp.join("a"));
    let b_dir = tmp.join("b");
    let b = privacy_warehouse(&b_dir);
    let extra = b_dir.join("extra");
    std::fs::create_dir_all(&extra).unwrap();
    let rows: Vec<String> = (0..40)
        .map(|i| {
            event(
                &format!("X{i:03}"),
                &format!("extra{i:03}"),
                if i % 2 == 0 { "P001" } else { "P002" },
                &format!("2025-0{}-1{}", i % 6 + 1, i % 10),
            )
        })
        .collect();
    ingest_files(
        &b,
        &[write(
            &extra,
            "overdose_events.csv",
            csv(EVENTS_HEADER, &rows),
        )],
    );
    for wh in [&a, &b] {
        budget(wh, 1.0);
    }
    [a, b]
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// `outreach release --warehouse WH --spec SPEC`, with a fail point armed if given.
fn release_with(wh: &Path, spec: &Path, point: Option<&str>) -> Output {
    let mut c = outreach();
    c.args(["release", "--warehouse"])
        .arg(wh)
        .arg("--spec")
        .arg(spec);
    if let Some(p) = point {
        c.env(failpoint::ENV, p);
    }
    c.output().unwrap()
}

/// Overwrites the data pages of every Parquet file of `overdose_events` (every byte between
/// the leading magic and the footer) with garbage, keeping the size and the footer, so the
/// check before the debit (size and footer rows) passes and DataFusion fails when it reads
/// the pages, after the debit. Only the scrub (`status --verify`) sees such damage first.
fn corrupt_events(wh: &Path) {
    let files: Vec<PathBuf> = files_under(&wh.join("tables"))
        .into_iter()
        .filter(|p| {
            p.extension().is_some_and(|e| e == "parquet")
                && p.to_string_lossy().contains("overdose_events")
        })
        .collect();
    assert!(
        !files.is_empty(),
        "no overdose_events data under {}",
        wh.display()
    );
    for f in files {
        let mut bytes = std::fs::read(&f).unwrap();
        let len = bytes.len();
        // A Parquet file ends with its footer, the footer's length (4 bytes) and `PAR1`.
        let footer = u32::from_le_bytes(bytes[len - 8..len - 4].try_into().unwrap()) as usize;
        let pages = 4..len - 8 - footer;
        assert!(!pages.is_empty(), "{} has no data pages", f.display());
        bytes[pages].fill(0x55);
        std::fs::write(&f, bytes).unwrap();
    }
}

// Defence in depth: whatever the allow-list misses, a run that fails after its
// debit shows whoever runs it nothing but that it failed. Three failures after the debit,
// each on two warehouses with different data: an injected error, a panic inside a query task
// whose message quotes the data (as a defect in a kernel would), and a real execution error
// from DataFusion (data pages that do not parse behind an intact footer). The exit code,
// stdout and stderr must be identical for the two warehouses (the release ids agree, since
// both ledgers run the same sequence), and the steward's record must keep the error text.
#[test]
fn a_release_that_fails_after_its_debit_prints_nothing_that_depends_on_the_data() {
    let tmp = tempfile::tempdir().unwrap();
    let warehouses = two_warehouses(tmp.path());
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let cases: [(&str, Option<&str>, &str); 3] = [
        (
            "injected error",
            Some("release-fail-after-debit"),
            "injected failure",
        ),
        (
            "panic in a query task",
            Some("release-panic-after-debit"),
            "release-panic-after-debit",
        ),
        ("unreadable data file", None, ""),
    ];
    for (n, (what, point, steward_sees)) in cases.into_iter().enumerate() {
        if point.is_none() {
            for wh in &warehouses {
                corrupt_events(wh);
            }
        }
        let outs: Vec<Output> = warehouses
            .iter()
            .map(|wh| release_with(wh, &spec, point))
            .collect();
        let id = n + 1;
        for out in &outs {
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
            assert!(out.stdout.is_empty(), "{what}: printed {:?}", out.stdout);
            assert_eq!(
                stderr,
                format!(
                    "error: release {id} failed after its debit (the budget stays spent; see `outreach releases show {id} --steward`)\n"
                ),
                "{what}"
            );
        }
        assert_eq!(outs[0].stderr, outs[1].stderr, "{what}");
        for wh in &warehouses {
            let l = Ledger::open(wh).unwrap();
            let r = l.release(id as i64).unwrap();
            assert_eq!(r.status, "failed", "{what}");
            let error = r.error.unwrap_or_default();
            assert!(
                !error.is_empty() && error.contains(steward_sees),
                "{what}: the steward's record says {error:?}"
            );
            // The failure stays spent.
            assert!(close(l.show().unwrap().spent_rho, 0.1 * id as f64));
        }
    }
}

#[test]
fn a_warehouse_rebuilt_from_the_same_files_with_other_rows_never_replays() {
    // The same CSVs loaded with another --max-date store other rows under the same vN: the
    // idempotency key binds what was stored, not only the source files' hashes.
    use outreach_warehouse::ingest::{IngestOptions, ingest};
    let tmp = tempfile::tempdir().unwrap();
    let exports = tmp.path().join("exports");
    std::fs::create_dir_all(&exports).unwrap();
    let events_csv = write(
        &exports,
        "overdose_events.csv",
        csv(EVENTS_HEADER, &events(60)),
    );
    let build = |name: &str, max_date: (i32, u32, u32)| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let wh = warehouse_with_programs(&dir);
        let opts = IngestOptions {
            max_date: chrono::NaiveDate::from_ymd_opt(max_date.0, max_date.1, max_date.2).unwrap(),
            max_reject_rate: 1.0,
            ..IngestOptions::default()
        };
        ingest(&wh, std::slice::from_ref(&events_csv), &opts).unwrap();
        wh
    };
    let a = build("a", (2026, 6, 30));
    let b = build("b", (2025, 4, 30));
    let manifest = |wh: &Path| {
        outreach_warehouse::warehouse::Warehouse::open(wh)
            .unwrap()
            .manifest()
            .unwrap()
    };
    let (ma, mb) = (manifest(&a), manifest(&b));
    assert_eq!(ma.version(), mb.version(), "the test needs the same vN");
    assert_eq!(
        ma.loads[1].files[0].sha256, mb.loads[1].files[0].sha256,
        "the same source file"
    );
    assert_ne!(
        ma.loads[1].files[0].rows_loaded, mb.loads[1].files[0].rows_loaded,
        "the test needs other rows stored"
    );
    assert_ne!(ma.content_hash(), mb.content_hash());

    budget(&a, 1.0);
    let spec = persons_spec(2, 0.1);
    let first = run(&a, &spec).unwrap();
    assert!(first.fresh);
    for suffix in ["", "-wal"] {
        let from = a.join(format!("{LEDGER_FILE}{suffix}"));
        if from.exists() {
            std::fs::copy(&from, b.join(format!("{LEDGER_FILE}{suffix}"))).unwrap();
        }
    }
    let second = run(&b, &spec).unwrap();
    assert!(
        second.fresh,
        "release {} of other rows was replayed",
        first.id
    );
    assert_ne!(second.id, first.id);
    // Each warehouse still replays its own release.
    assert!(!run(&b, &spec).unwrap().fresh);
}
