//! The standard metrics (`src/metrics`): the catalog under `queries/standard/` and its
//! generated `queries/README.md`, the declarations of each metric file, and the steward's
//! exact mode, over the hand-made fixture of `tests/fixtures/metrics/`.

use std::path::Path;
use std::process::Command;

use outreach_warehouse::metrics::exact::exact;
use outreach_warehouse::metrics::{Catalog, MetricFile, docs};
use outreach_warehouse::privacy::release::plan_query;
use outreach_warehouse::publication::{StandardNoise, standard_spec};
use outreach_warehouse::warehouse::{Warehouse, open_session};

use crate::common::fixture::{fixture_warehouse, q, rt};

#[test]
fn committed_queries_readme_matches_the_catalog() {
    let expected = docs::to_markdown(&Catalog::standard().unwrap());
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/queries/README.md");
    let committed = std::fs::read_to_string(path).expect("queries/README.md exists");
    assert!(
        committed == expected,
        "queries/README.md is stale: regenerate it with `cargo run --release -- metrics --markdown > queries/README.md`"
    );
    // It explains every statistic and rate.
    for f in &Catalog::standard().unwrap().files {
        for s in &f.statistics {
            assert!(
                expected.contains(&format!("| `{}` |", s.name)),
                "{}",
                s.name
            );
        }
        for r in &f.rates {
            assert!(
                expected.contains(&format!("| `{}` |", r.name)),
                "{}",
                r.name
            );
        }
    }
}

#[test]
fn the_compiled_catalog_is_the_files_under_queries_standard() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/standard");
    let loaded = Catalog::load(&dir).unwrap();
    let standard = Catalog::standard().unwrap();
    assert_eq!(loaded.files.len(), standard.files.len());
    for f in &standard.files {
        let on_disk = loaded.files.iter().find(|g| g.file == f.file).unwrap();
        assert_eq!(on_disk, f, "{} differs from the compiled copy", f.file);
    }
    // The standard statistics, each once, with two exclusive pairs: Σ B² = 15 − 2 = 13.
    let stats: Vec<String> = standard
        .per_program_statistics()
        .iter()
        .map(|(_, s)| s.name.clone())
        .collect();
    assert_eq!(stats.len(), 15, "{stats:?}");
    let spec = standard_spec(&standard, q("2025Q1"), StandardNoise::default());
    assert_eq!(spec.exclusive.len(), 2, "{:?}", spec.exclusive);
    assert!(spec.exclusive.contains(&vec![
        "first_attempt_police_present".to_string(),
        "first_attempt_police_absent".to_string()
    ]));
}

#[test]
fn every_metric_file_passes_the_analyser_with_its_declared_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    rt().block_on(async {
        let ctx = open_session(&Warehouse::open(&wh).unwrap()).await.unwrap();
        outreach_warehouse::privacy::functions::register(&ctx);
        for f in &Catalog::standard().unwrap().files {
            let accepted = plan_query(&ctx, &f.file, &f.sql)
                .await
                .unwrap_or_else(|e| panic!("{}: {e}", f.file));
            let columns: Vec<String> = accepted
                .plan
                .schema()
                .fields()
                .iter()
                .map(|c| c.name().clone())
                .collect();
            let mut needed = vec!["person_key", "program_id", "quarter"];
            if f.is_breakdown() {
                needed.extend(["dimension", "value"]);
            }
            needed.extend(f.statistics.iter().map(|s| s.name.as_str()));
            for c in needed {
                assert!(columns.iter().any(|x| x == c), "{}: no column {c}", f.file);
            }
        }
    });
}

#[test]
fn a_metric_file_with_a_bad_declaration_is_refused_naming_the_file() {
    let good = "/*\nname = \"m\"\ntitle = \"t\"\ndescription = \"d\"\ntables = [\"overdose_events\"]\n[[statistics]]\nname = \"a\"\ndescription = \"x\"\nwindow = [0, 7]\n";
    let close = |header: &str| format!("{header}*/ SELECT 1");
    assert!(MetricFile::parse("m.sql", &close(good)).is_ok());
    let rate =
        "[[rates]]\nname = \"r\"\nnumerator = \"a\"\ndenominator = \"zz\"\ndescription = \"d\"\n";
    let twice = "[[statistics]]\nname = \"a\"\ndescription = \"x\"\nwindow = [0, 7]\n";
    let cases = [
        ("SELECT 1".to_string(), "opens with"),
        (format!("{good} SELECT 1"), "not closed"),
        (close(&format!("{good}{rate}")), "`zz`"),
        (close(&format!("{good}{twice}")), "declared twice"),
        (close(&good.replace("[0, 7]", "[7, 0]")), "window"),
        (
            close(&good.replace("overdose_events", "patients")),
            "not a table",
        ),
        (close(&good.replace("window", "windw")), "unknown field"),
    ];
    for (text, says) in cases {
        let e = MetricFile::parse("bad.sql", &text).unwrap_err().to_string();
        assert!(e.starts_with("bad.sql: "), "{e}");
        assert!(e.contains(says), "{e} should say {says}");
    }
}

#[test]
fn exact_mode_gives_the_hand_computed_counts_with_zeros() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let values = rt().block_on(async {
        let ctx = open_session(&Warehouse::open(&wh).unwrap()).await.unwrap();
        outreach_warehouse::privacy::functions::register(&ctx);
        exact(&ctx, &Catalog::standard().unwrap(), q("2025Q1"))
            .await
            .unwrap()
    });
    // Every program and statistic, zeros included.
    assert_eq!(values.len(), 3 * 15);
    let get = |p: &str, s: &str| {
        values
            .iter()
            .find(|v| v.program_id == p && v.statistic == s)
            .unwrap_or_else(|| panic!("{p} {s}"))
            .value
    };
    // Hand-computed in tests/fixtures/metrics/CASES.md (2025Q1 totals).
    let outreach = [
        "identified",
        "attempted_7d",
        "timely_72h",
        "engaged_30d",
        "naloxone_30d",
        "referred_30d",
        "first_attempt_police_present",
        "first_attempt_police_absent",
        "arrested_90d_after_attempt_police_present",
        "arrested_90d_after_attempt_police_absent",
    ];
    for (p, expected) in [
        ("P1", [8, 4, 4, 3, 1, 1, 3, 1, 3, 0]),
        ("P2", [7, 5, 3, 0, 1, 1, 1, 5, 0, 1]),
        ("P3", [3, 0, 0, 1, 1, 1, 0, 1, 0, 1]),
    ] {
        let got: Vec<i64> = outreach.iter().map(|s| get(p, s)).collect();
        assert_eq!(got, expected, "{p}");
    }
    // A quarter without any cohort is all zeros, not missing.
    let empty = rt().block_on(async {
        let ctx = open_session(&Warehouse::open(&wh).unwrap()).await.unwrap();
        outreach_warehouse::privacy::functions::register(&ctx);
        exact(&ctx, &Catalog::standard().unwrap(), q("2023Q1"))
            .await
            .unwrap()
    });
    assert_eq!(empty.len(), 45);
    assert!(empty.iter().all(|v| v.value == 0));
}

#[test]
fn the_exact_command_prints_its_banner_on_stderr_and_json_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args([
            "metrics",
            "--exact",
            "--quarter",
            "2025Q1",
            "--format",
            "json",
        ])
        .env("OUTREACH_WAREHOUSE", &wh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("EXACT FIGURES, NOT FOR PUBLICATION"),
        "{stderr}"
    );
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let rows = json.as_array().unwrap();
    assert_eq!(rows.len(), 45);
    let keys: Vec<&String> = rows[0].as_object().unwrap().keys().collect();
    assert_eq!(keys, ["program_id", "quarter", "statistic", "value"]);
    // Without --exact nothing needs a warehouse, and no figure is printed.
    let list = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["metrics"])
        .output()
        .unwrap();
    assert!(list.status.success());
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(
        text.contains("arrest_after_attempt_police_difference"),
        "{text}"
    );
}
