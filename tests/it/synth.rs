//! Synthetic data: deterministic, loads with zero rejects, and the warehouse recovers the
//! effects it was generated with.

use std::path::Path;
use std::sync::OnceLock;

use datafusion::arrow::array::AsArray;
use datafusion::arrow::datatypes::Float64Type;
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, ingest};
use outreach_warehouse::quarter::Quarter;
use outreach_warehouse::synth::{SynthConfig, SynthParams, synth};
use outreach_warehouse::warehouse::{Warehouse, open_session};

fn config(persons: usize, seed: u64) -> SynthConfig {
    SynthConfig {
        programs: 20,
        persons,
        start: "2023Q1".parse::<Quarter>().unwrap(),
        quarters: 8,
        seed,
        as_of: None,
        params: SynthParams::default(),
    }
}

#[test]
fn same_seed_gives_byte_identical_files() {
    let tmp = tempfile::tempdir().unwrap();
    let (a, b, c) = (
        tmp.path().join("a"),
        tmp.path().join("b"),
        tmp.path().join("c"),
    );
    synth(&a, &config(3_000, 7), false).unwrap();
    synth(&b, &config(3_000, 7), false).unwrap();
    synth(&c, &config(3_000, 8), false).unwrap();
    for t in [
        "programs",
        "overdose_events",
        "outreach_attempts",
        "referrals",
        "service_linkages",
        "arrests",
    ] {
        let name = format!("{t}.csv");
        let (x, y, z) = (
            std::fs::read(a.join(&name)).unwrap(),
            std::fs::read(b.join(&name)).unwrap(),
            std::fs::read(c.join(&name)).unwrap(),
        );
        assert!(x.len() > 100, "{t} has rows");
        assert!(x == y, "{t} differs between runs with the same seed");
        if t != "programs" {
            assert!(x != z, "{t} is the same under another seed");
        }
    }
}

/// One synthetic warehouse shared by the effect tests: 20,000 persons, default effects.
fn shared_warehouse() -> &'static Path {
    static DIR: OnceLock<tempfile::TempDir> = OnceLock::new();
    DIR.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let exports = tmp.path().join("exports");
        let summary = synth(&exports, &config(20_000, 11), false).unwrap();
        let report = ingest(
            &tmp.path().join("wh"),
            &[exports],
            &IngestOptions::default(),
        )
        .unwrap();
        for f in &report.files {
            let FileOutcome::Loaded {
                rows_read,
                rows_loaded,
                rows_rejected,
                quarantine,
                ..
            } = &f.outcome
            else {
                panic!("{f:?}")
            };
            assert_eq!(
                *rows_rejected, 0,
                "{}: synth output must load with zero rejects ({quarantine:?})",
                f.table
            );
            assert_eq!(rows_read, rows_loaded);
        }
        assert_eq!(report.rows_loaded(), summary.total_rows());
        tmp
    })
    .path()
}

fn float(sql: &str) -> f64 {
    let wh = Warehouse::open(shared_warehouse().join("wh")).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let ctx = open_session(&wh).await.unwrap();
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        b[0].column(0).as_primitive::<Float64Type>().value(0)
    })
}

/// Each outreach episode (attempts tied to an event) with its first attempt's date, police
/// presence at that first attempt, and whether anyone was engaged.
const EPISODES: &str = "
WITH firsts AS (
    SELECT event_id, min(attempt_date) AS first_date FROM outreach_attempts
    WHERE event_id IS NOT NULL GROUP BY event_id
),
episodes AS (
    SELECT f.event_id, f.first_date, a.person_key, a.program_id,
           bool_or(a.police_present AND a.attempt_date = f.first_date) AS police,
           bool_or(a.outcome IN ('engaged_survivor', 'engaged_network')) AS engaged
    FROM firsts f JOIN outreach_attempts a ON a.event_id = f.event_id
    GROUP BY f.event_id, f.first_date, a.person_key, a.program_id
)";

#[test]
fn synth_output_loads_with_zero_rejects() {
    shared_warehouse();
}

#[test]
fn engagement_is_about_half_and_lower_with_police() {
    let all = float(&format!(
        "{EPISODES} SELECT avg(CASE WHEN engaged THEN 1.0 ELSE 0.0 END) FROM episodes"
    ));
    assert!((0.42..=0.58).contains(&all), "engagement {all}");
    let with = float(&format!(
        "{EPISODES} SELECT avg(CASE WHEN engaged THEN 1.0 ELSE 0.0 END) FROM episodes WHERE police"
    ));
    let without = float(&format!(
        "{EPISODES} SELECT avg(CASE WHEN engaged THEN 1.0 ELSE 0.0 END) FROM episodes WHERE NOT police"
    ));
    // Generated with a 0.14 penalty; ~12,000 episodes each side give a standard error near 0.01.
    assert!(
        (0.09..=0.19).contains(&(without - with)),
        "with {with}, without {without}"
    );
}

#[test]
fn most_first_contacts_are_within_72_hours() {
    let share = float(
        "WITH firsts AS (SELECT event_id, min(attempt_date) AS first_date FROM outreach_attempts WHERE event_id IS NOT NULL GROUP BY event_id)
         SELECT avg(CASE WHEN f.first_date - e.event_date <= 3 THEN 1.0 ELSE 0.0 END)
         FROM firsts f JOIN overdose_events e ON e.event_id = f.event_id",
    );
    assert!(
        (0.66..=0.74).contains(&share),
        "share within 72 hours {share}"
    );
}

#[test]
fn arrests_follow_police_presence_and_warrant_policy() {
    let rate = |filter: &str| {
        float(&format!(
            "{EPISODES}
             SELECT avg(CASE WHEN arrested THEN 1.0 ELSE 0.0 END) FROM (
                 SELECT e.event_id, bool_or(r.arrest_id IS NOT NULL) AS arrested
                 FROM episodes e
                 JOIN programs p ON p.program_id = e.program_id
                 LEFT JOIN arrests r ON r.person_key = e.person_key
                     AND r.arrest_date >= e.first_date AND r.arrest_date < e.first_date + INTERVAL '90 days'
                 WHERE {filter}
                 GROUP BY e.event_id)"
        ))
    };
    let no_police = rate("NOT e.police");
    let police = rate("e.police AND p.warrant_check <> 'arrest_on_warrant'");
    let warrant = rate("e.police AND p.warrant_check = 'arrest_on_warrant'");
    // Generated: baseline 0.04 per 90 days, x2 with police, x1.8 more on warrants.
    assert!(
        (0.025..=0.055).contains(&no_police),
        "no police {no_police}"
    );
    assert!(
        police / no_police > 1.5,
        "police {police} vs none {no_police}"
    );
    assert!(
        warrant / police > 1.3,
        "warrant {warrant} vs police {police}"
    );
}

#[test]
fn survivors_mostly_in_one_program_with_repeats_referrals_and_linkage() {
    let two_programs = float(
        "SELECT avg(CASE WHEN n > 1 THEN 1.0 ELSE 0.0 END) FROM
         (SELECT person_key, count(DISTINCT program_id) AS n FROM overdose_events GROUP BY person_key)",
    );
    assert!(
        (0.005..=0.10).contains(&two_programs),
        "in two programs {two_programs}"
    );
    let repeat = float(
        "SELECT avg(CASE WHEN n > 1 THEN 1.0 ELSE 0.0 END) FROM
         (SELECT person_key, count(*) AS n FROM overdose_events GROUP BY person_key)",
    );
    assert!((0.15..=0.32).contains(&repeat), "repeat overdoses {repeat}");
    let fatal = float("SELECT avg(CASE WHEN fatal THEN 1.0 ELSE 0.0 END) FROM overdose_events");
    assert!((0.01..=0.06).contains(&fatal), "fatal share {fatal}");
    let moud = float("SELECT avg(CASE WHEN service = 'moud' THEN 1.0 ELSE 0.0 END) FROM referrals");
    assert!((0.31..=0.39).contains(&moud), "MOUD share {moud}");
    let linked = float(
        "SELECT CAST((SELECT count(*) FROM service_linkages) AS DOUBLE) / CAST((SELECT count(*) FROM referrals) AS DOUBLE)",
    );
    assert!((0.38..=0.47).contains(&linked), "linkage {linked}");
}

#[test]
fn programs_mix_team_models_and_visit_policies() {
    let models = float("SELECT CAST(count(DISTINCT team_model) AS DOUBLE) FROM programs");
    let policies = float("SELECT CAST(count(DISTINCT police_on_visits) AS DOUBLE) FROM programs");
    let warrants = float("SELECT CAST(count(DISTINCT warrant_check) AS DOUBLE) FROM programs");
    assert!(
        models >= 3.0 && policies >= 2.0 && warrants >= 3.0,
        "{models} {policies} {warrants}"
    );
}
