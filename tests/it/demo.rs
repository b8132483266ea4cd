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
    // The first release, then the standard metrics of each of the 8 quarters, each debited
    // ρ = k·Σ B² / (2σ²) = 2·13 / (2·5.5²), plus the equity release, 6·3 / (2·8²).
    let per_quarter = 2.0 * 13.0 / (2.0 * 5.5 * 5.5) + 6.0 * 3.0 / (2.0 * 8.0 * 8.0);
    let spent = ledger.show().unwrap().spent_rho;
    assert!((spent - (0.05 + 8.0 * per_quarter)).abs() < 1e-9, "{spent}");
    assert_eq!(ledger.releases().unwrap().len(), 17);
    let quarters: Vec<String> = ledger
        .publications(None)
        .unwrap()
        .iter()
        .map(|p| p.quarter.clone())
        .collect();
    assert_eq!(
        quarters,
        [
            "2024Q3", "2024Q4", "2025Q1", "2025Q2", "2025Q3", "2025Q4", "2026Q1", "2026Q2"
        ]
    );
    assert!(text.contains("STATEWIDE"), "{text}");
    // It ends with the static mirror and how to verify it.
    let site = tmp.path().join("site");
    for file in [
        "site.json",
        "index.html",
        "disclosure.yaml",
        "v1/programs.json",
        "reports/2025Q1.html",
    ] {
        assert!(
            site.join(file).is_file(),
            "{file} is not in the demo's mirror"
        );
    }
    assert_eq!(
        report.site.files + 1,
        walk(&site).len(),
        "the manifest aside, every file is counted"
    );
    assert!(
        text.contains(&format!("outreach verify {}", site.display()))
            && text.contains("outreach key show"),
        "{text}"
    );
}

/// Every file under `dir`, by its path.
fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out
}
