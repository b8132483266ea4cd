//! `outreach demo`: the main job runs end to end and publishes a DP release.

use outreach_warehouse::demo::run_demo;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::synth::SynthConfig;

#[test]
fn the_demo_ingests_sets_a_budget_and_publishes_a_release() {
    let tmp = tempfile::tempdir().unwrap();
    let cfg = SynthConfig {
        persons: 2_000,
        programs: 5,
        as_of: Some(chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        ..SynthConfig::default()
    };
    let rt = tokio::runtime::Runtime::new().unwrap();
    let report = rt.block_on(run_demo(tmp.path(), &cfg, false)).unwrap();
    let r = &report.release.result;
    // Every (program, quarter) of the public domain: 5 programs × 8 quarters.
    assert_eq!(r.cells.len(), 5 * 8);
    assert_eq!(r.statistics[0].name, "persons");
    let text = report.to_string();
    assert!(
        text.contains("survivors seen per program and quarter"),
        "{text}"
    );
    let ledger = Ledger::open(&tmp.path().join("warehouse")).unwrap();
    let spent = ledger.show().unwrap().spent_rho;
    assert!((spent - 0.05).abs() < 1e-9, "{spent}");
    assert_eq!(ledger.releases().unwrap().len(), 1);
}
