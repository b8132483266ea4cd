//! What a release spec may ask for (`src/privacy/spec.rs`), checked before any debit: `k`,
//! the size of each person's record, the length and number of queries, the values published,
//! and bounds whose square overflows.

use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::privacy::spec::{
    CellSpec, DomainSpec, MAX_K, MAX_QUERIES, MAX_SQL_BYTES, QuerySpec,
};
use outreach_warehouse::privacy::{PrivacyError, ReleaseSpec};

use super::{persons_spec, run};
use crate::common::releases::{PERSONS_SQL, budget, spec_toml};
use crate::common::{privacy_warehouse, write};

#[test]
fn k_above_64_is_refused_before_any_debit() {
    // The bounder keeps a fixed-size record of 5 + 2k + k·m words per person, allocated after
    // the debit: at k = 1024 a million persons would take about 25 GB and abort the process
    // with the budget spent. k is at most 64.
    const { assert!(MAX_K <= 64, "MAX_K is above 64") };
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 100.0);
    for k in [65, 300, 1024, MAX_K + 1] {
        let e = run(&wh, &persons_spec(k, 1.0)).unwrap_err();
        assert!(
            matches!(e, PrivacyError::Spec { .. }) && e.to_string().contains("`k`"),
            "k = {k}: {e}"
        );
    }
    assert!(Ledger::open(&wh).unwrap().releases().unwrap().is_empty());
    let out = run(&wh, &persons_spec(64, 1.0)).unwrap();
    assert!(out.fresh);
    assert_eq!(out.public.d_in["k"], 64);
}

/// `m` count statistics `s1`..`sm`, each true for every row.
fn many_statistics(m: usize) -> (String, String) {
    let columns: Vec<String> = (1..=m).map(|j| format!("true AS s{j}")).collect();
    let sql = format!(
        "SELECT person_key, program_id, quarter_of(event_date) AS quarter, {} FROM overdose_events",
        columns.join(", ")
    );
    let stats: String = (1..=m)
        .map(|j| format!("\n[[statistics]]\nname = \"s{j}\"\nkind = \"count\"\n"))
        .collect();
    (sql, stats)
}

#[test]
fn a_spec_whose_per_person_record_passes_4_kib_is_refused_before_any_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 100.0);
    // k = 64 and 8 statistics: 5 + 128 + 512 = 645 words, 5160 bytes per person.
    let (sql, stats) = many_statistics(8);
    let spec: ReleaseSpec = toml::from_str(&spec_toml(64, 1.0, &sql, &stats)).unwrap();
    let e = run(&wh, &spec).unwrap_err();
    assert!(
        matches!(e, PrivacyError::Spec { .. }) && e.to_string().contains("4096 bytes"),
        "{e}"
    );
    assert!(Ledger::open(&wh).unwrap().releases().unwrap().is_empty());
    // k = 8 and 8 statistics: 5 + 16 + 64 = 85 words.
    let spec: ReleaseSpec = toml::from_str(&spec_toml(8, 1.0, &sql, &stats)).unwrap();
    assert!(run(&wh, &spec).unwrap().fresh);
}

/// What a spec may ask for is bounded before any of its SQL is parsed: the length
/// of each query (64 KiB), the number of queries (16), and the values published, cells ×
/// statistics (500,000). Each is a spec error, nothing is debited, and a query of exactly
/// 64 KiB is still released.
#[test]
fn long_sql_many_queries_and_too_many_values_are_refused_before_planning_or_any_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 10.0);
    let padded = |bytes: usize| {
        let pad = bytes - PERSONS_SQL.len() - " /*  */".len();
        let sql = format!("{PERSONS_SQL} /* {} */", "x".repeat(pad));
        assert_eq!(sql.len(), bytes);
        sql
    };
    let spec_error = |spec: &ReleaseSpec, words: &[&str]| {
        let e = run(&wh, spec).unwrap_err();
        assert!(
            matches!(e, PrivacyError::Spec { .. }),
            "not a spec error: {e}"
        );
        for w in words {
            assert!(e.to_string().contains(w), "{e} lacks {w}");
        }
    };
    // One byte past 64 KiB, inline and in a file.
    let mut long = persons_spec(2, 0.5);
    long.queries[0].sql = Some(padded(MAX_SQL_BYTES + 1));
    spec_error(&long, &["65537 bytes", "65536"]);
    let file = write(tmp.path(), "long.sql", padded(MAX_SQL_BYTES + 1));
    long.queries[0] = QuerySpec {
        file: Some(file),
        sql: None,
    };
    spec_error(&long, &["65537 bytes", "65536"]);
    // Seventeen queries.
    let mut many = persons_spec(2, 0.5);
    many.queries = vec![many.queries[0].clone(); MAX_QUERIES + 1];
    spec_error(&many, &["17 queries", "16"]);
    // 3 programs × 2 quarters × 90,000 listed values, one statistic: 540,000 values.
    let mut wide = persons_spec(1, 0.5);
    wide.cells.push(CellSpec {
        column: "v".into(),
        domain: DomainSpec::Values((0..90_000).map(|i| format!("v{i}")).collect()),
    });
    spec_error(&wide, &["540000 values", "500000"]);
    assert!(Ledger::open(&wh).unwrap().releases().unwrap().is_empty());
    // At the limits: a query of exactly 64 KiB, sixteen queries.
    let mut at = persons_spec(2, 0.5);
    at.queries[0].sql = Some(padded(MAX_SQL_BYTES));
    assert!(run(&wh, &at).unwrap().fresh);
    let mut sixteen = persons_spec(2, 0.5);
    sixteen.queries = vec![sixteen.queries[0].clone(); MAX_QUERIES];
    assert!(run(&wh, &sixteen).unwrap().fresh);
}

#[test]
fn bounds_whose_square_overflows_are_a_spec_error_before_any_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    // B = 2^32 + 1 is within the spec's ±2^40, but B² is not within 64 bits.
    let sql = "SELECT person_key, program_id, quarter_of(event_date) AS quarter, 1 AS amount FROM overdose_events";
    let stat = r#"
[[statistics]]
name = "amount"
kind = "sum"
lower = 0
upper = 4294967297
"#;
    let spec: ReleaseSpec = toml::from_str(&spec_toml(1, 0.5, sql, stat)).unwrap();
    let e = run(&wh, &spec).unwrap_err();
    assert!(
        matches!(e, PrivacyError::Spec { .. }) && e.to_string().contains("2^53"),
        "{e}"
    );
    let l = Ledger::open(&wh).unwrap();
    assert!(l.releases().unwrap().is_empty());
    assert_eq!(l.show().unwrap().spent_rho, 0.0);
}
