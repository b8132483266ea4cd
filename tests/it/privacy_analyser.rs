//! The person-locality analyser: queries it must accept, and one refusal for each way of
//! breaking person-locality or `person_key` lineage (privacy model §2).

use std::sync::OnceLock;

use datafusion::prelude::SessionContext;
use outreach_warehouse::privacy::release::plan_query;
use outreach_warehouse::privacy::{PrivacyError, Rule};

use crate::common::{privacy_session, privacy_warehouse};

struct Fixture {
    _tmp: tempfile::TempDir,
    rt: tokio::runtime::Runtime,
    ctx: SessionContext,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let tmp = tempfile::tempdir().unwrap();
        let wh = privacy_warehouse(tmp.path());
        let rt = tokio::runtime::Runtime::new().unwrap();
        let ctx = rt.block_on(privacy_session(&wh));
        Fixture { _tmp: tmp, rt, ctx }
    })
}

fn plan(sql: &str) -> Result<usize, PrivacyError> {
    let f = fixture();
    f.rt.block_on(plan_query(&f.ctx, "test query", sql))
        .map(|q| q.person_index)
}

const ACCEPTED: &[(&str, &str)] = &[
    (
        "plain projection with the quarter key",
        "SELECT person_key, program_id, quarter_of(event_date) AS quarter, 1 AS persons FROM overdose_events",
    ),
    (
        "join with the public programs table and a filter on it",
        "SELECT e.person_key, e.program_id FROM overdose_events e JOIN programs p ON e.program_id = p.program_id WHERE p.team_model = 'peer_led'",
    ),
    (
        "private join on person_key with a date window",
        "SELECT e.person_key, e.program_id, (a.attempt_date - e.event_date) <= 3 AS timely FROM overdose_events e JOIN outreach_attempts a ON a.person_key = e.person_key AND a.attempt_date >= e.event_date",
    ),
    (
        "aggregate grouped by person_key",
        "SELECT person_key, program_id, count(*) AS attempts FROM outreach_attempts GROUP BY person_key, program_id",
    ),
    (
        "window partitioned by person_key",
        "SELECT person_key, program_id, row_number() OVER (PARTITION BY person_key ORDER BY attempt_date) AS n FROM outreach_attempts",
    ),
    (
        "window partitioned by person_key and program",
        "SELECT person_key, lag(attempt_date) OVER (PARTITION BY program_id, person_key ORDER BY attempt_date) AS prev FROM outreach_attempts",
    ),
    (
        "EXISTS on person_key (semi join)",
        "SELECT e.person_key, e.program_id FROM overdose_events e WHERE EXISTS (SELECT 1 FROM referrals r WHERE r.person_key = e.person_key AND r.service = 'moud')",
    ),
    (
        "NOT EXISTS on person_key with a date window (anti join)",
        "SELECT e.person_key FROM overdose_events e WHERE NOT EXISTS (SELECT 1 FROM arrests x WHERE x.person_key = e.person_key AND x.arrest_date > e.event_date)",
    ),
    (
        "IN subquery on person_key",
        "SELECT person_key, program_id FROM overdose_events WHERE person_key IN (SELECT person_key FROM arrests)",
    ),
    (
        "UNION ALL of private tables",
        "SELECT person_key, program_id FROM overdose_events UNION ALL SELECT person_key, program_id FROM outreach_attempts",
    ),
    (
        "UNION (distinct) of private tables",
        "SELECT person_key, program_id FROM referrals UNION SELECT person_key, program_id FROM service_linkages",
    ),
    (
        "left join of private tables on person_key",
        "SELECT e.person_key, e.program_id, a.attempt_id IS NOT NULL AS attempted FROM overdose_events e LEFT JOIN outreach_attempts a ON a.person_key = e.person_key",
    ),
    (
        "per-person aggregate joined to another private table",
        "WITH first AS (SELECT person_key, min(attempt_date) AS first_attempt FROM outreach_attempts GROUP BY person_key) SELECT f.person_key, count(x.arrest_id) > 0 AS arrested FROM first f JOIN arrests x ON x.person_key = f.person_key AND x.arrest_date > f.first_attempt GROUP BY f.person_key",
    ),
    (
        "CASE expression",
        "SELECT person_key, program_id, CASE WHEN outcome = 'engaged_survivor' THEN 1 ELSE 0 END AS engaged FROM outreach_attempts",
    ),
    (
        "safe_div instead of division",
        "SELECT person_key, safe_div(count(*), 2) AS half FROM outreach_attempts GROUP BY person_key",
    ),
    (
        "TRY_CAST",
        "SELECT person_key, TRY_CAST(event_id AS BIGINT) AS n FROM overdose_events",
    ),
    (
        "coalesce, greatest and string functions",
        "SELECT person_key, coalesce(event_id, 'none') AS e, greatest(1, 2) AS g, lower(source) AS s FROM overdose_events",
    ),
    (
        "SELECT DISTINCT with person_key",
        "SELECT DISTINCT person_key, program_id FROM overdose_events",
    ),
    (
        "bool_or per person and program",
        "SELECT person_key, program_id, bool_or(police_present) AS police FROM outreach_attempts GROUP BY person_key, program_id",
    ),
    (
        "date_trunc with a literal unit",
        "SELECT person_key, date_trunc('month', event_date) AS month FROM overdose_events",
    ),
    (
        "cross join with a public constant relation",
        "SELECT e.person_key, v.x FROM overdose_events e CROSS JOIN (VALUES (1), (2)) AS v(x)",
    ),
    (
        "non-equi join with the public programs table",
        "SELECT e.person_key, p.program_id FROM overdose_events e JOIN programs p ON e.event_date >= p.start_date",
    ),
    (
        "scalar subquery over the public programs table",
        "SELECT person_key FROM overdose_events WHERE program_id = (SELECT min(program_id) FROM programs)",
    ),
    (
        "IN list and LIKE with a literal pattern",
        "SELECT person_key FROM overdose_events WHERE source IN ('ems', 'police') AND event_id LIKE 'E%'",
    ),
    (
        "nested per-person aggregates",
        "SELECT person_key, max(n) AS most FROM (SELECT person_key, program_id, count(*) AS n FROM outreach_attempts GROUP BY person_key, program_id) t GROUP BY person_key",
    ),
];

#[test]
fn accepts_person_local_queries() {
    assert!(ACCEPTED.len() >= 20);
    for (what, sql) in ACCEPTED {
        if let Err(e) = plan(sql) {
            panic!("{what}: refused: {e}");
        }
    }
}

/// (what, SQL, the rule it breaks). Each is a different way to break the rules.
const REFUSED: &[(&str, &str, Rule)] = &[
    (
        "DDL: CREATE EXTERNAL TABLE over a file",
        "CREATE EXTERNAL TABLE leak STORED AS CSV LOCATION '/etc/passwd'",
        Rule::NotAQuery,
    ),
    (
        "DML: INSERT",
        "INSERT INTO programs SELECT * FROM programs",
        Rule::NotAQuery,
    ),
    (
        "a statement: SET",
        "SET datafusion.execution.batch_size = 1",
        Rule::NotAQuery,
    ),
    (
        "EXPLAIN",
        "EXPLAIN SELECT person_key FROM overdose_events",
        Rule::NotAQuery,
    ),
    (
        "a scan of something that is not a warehouse table",
        "SELECT person_key FROM information_schema.tables",
        Rule::UnknownTable,
    ),
    (
        "aggregate grouped by program, renamed person_key",
        "SELECT program_id AS person_key, count(*) AS n FROM overdose_events GROUP BY program_id",
        Rule::NotPersonLocal,
    ),
    (
        "scalar subquery over a private table (a global aggregate)",
        "SELECT person_key, (SELECT count(*) FROM arrests) AS n FROM overdose_events",
        Rule::NotPersonLocal,
    ),
    (
        "window without PARTITION BY",
        "SELECT person_key, rank() OVER (ORDER BY event_date) AS r FROM overdose_events",
        Rule::NotPersonLocal,
    ),
    (
        "window partitioned by program only",
        "SELECT person_key, count(*) OVER (PARTITION BY program_id) AS n FROM overdose_events",
        Rule::NotPersonLocal,
    ),
    (
        "cross join of two private tables",
        "SELECT e.person_key FROM overdose_events e CROSS JOIN arrests x",
        Rule::NotPersonLocal,
    ),
    (
        "private join on another key",
        "SELECT e.person_key FROM overdose_events e JOIN outreach_attempts a ON a.event_id = e.event_id",
        Rule::NotPersonLocal,
    ),
    (
        "private join on a modified person_key",
        "SELECT e.person_key FROM overdose_events e JOIN outreach_attempts a ON lower(a.person_key) = e.person_key",
        Rule::NotPersonLocal,
    ),
    (
        "private join on person_key inequality",
        "SELECT e.person_key FROM overdose_events e JOIN arrests x ON x.person_key <> e.person_key",
        Rule::NotPersonLocal,
    ),
    (
        "LIMIT",
        "SELECT person_key FROM overdose_events LIMIT 10",
        Rule::Limit,
    ),
    (
        "ORDER BY with LIMIT (top N)",
        "SELECT person_key FROM overdose_events ORDER BY event_date DESC LIMIT 3",
        Rule::Limit,
    ),
    (
        "a date column renamed person_key",
        "SELECT event_date AS person_key FROM overdose_events",
        Rule::Lineage,
    ),
    (
        "a function of person_key named person_key",
        "SELECT concat(person_key, 'x') AS person_key FROM overdose_events",
        Rule::Lineage,
    ),
    (
        "grouping by a function of person_key named person_key",
        "SELECT lower(person_key) AS person_key, count(*) AS n FROM overdose_events GROUP BY lower(person_key)",
        Rule::NotPersonLocal,
    ),
    (
        "substr, which can fail on data, as person_key",
        "SELECT substr(person_key, 1, 2) AS person_key FROM overdose_events",
        Rule::Function,
    ),
    (
        "a union branch from a public table",
        "SELECT person_key FROM overdose_events UNION ALL SELECT program_id AS person_key FROM programs",
        Rule::Lineage,
    ),
    (
        "a union branch with a modified key",
        "SELECT person_key FROM overdose_events UNION ALL SELECT upper(person_key) AS person_key FROM arrests",
        Rule::Lineage,
    ),
    (
        "no person_key in the output",
        "SELECT program_id, event_date FROM overdose_events",
        Rule::Lineage,
    ),
    (
        "division",
        "SELECT person_key, 1 / count(*) AS x FROM outreach_attempts GROUP BY person_key",
        Rule::Function,
    ),
    (
        "modulo",
        "SELECT person_key FROM outreach_attempts WHERE TRY_CAST(attempt_id AS BIGINT) % 2 = 0",
        Rule::Function,
    ),
    (
        "a cast that can fail on data",
        "SELECT person_key, CAST(event_id AS BIGINT) AS n FROM overdose_events",
        Rule::Function,
    ),
    (
        "to_date on text",
        "SELECT person_key, to_date(event_id) AS d FROM overdose_events",
        Rule::Function,
    ),
    (
        "date plus an interval",
        "SELECT person_key, event_date + INTERVAL '1 day' AS d FROM overdose_events",
        Rule::Function,
    ),
    (
        "an aggregate that is not on the allow-list",
        "SELECT person_key, array_agg(event_id) AS ids FROM overdose_events GROUP BY person_key",
        Rule::Function,
    ),
    (
        "a public table's rows kept by a left join against private rows",
        "SELECT e.person_key FROM programs p LEFT JOIN overdose_events e ON e.program_id = p.program_id",
        Rule::NotPersonLocal,
    ),
    (
        "public rows filtered by NOT EXISTS over private rows",
        "SELECT p.program_id AS person_key FROM programs p WHERE NOT EXISTS (SELECT 1 FROM overdose_events e WHERE e.program_id = p.program_id)",
        Rule::NotPersonLocal,
    ),
    (
        "NOT IN over a private subquery on another key",
        "SELECT person_key FROM overdose_events WHERE event_id NOT IN (SELECT event_id FROM outreach_attempts)",
        Rule::NotPersonLocal,
    ),
    (
        "DISTINCT without person_key",
        "SELECT DISTINCT program_id AS person_key FROM overdose_events",
        Rule::NotPersonLocal,
    ),
    (
        "ROLLUP over person_key",
        "SELECT person_key, program_id, count(*) AS n FROM overdose_events GROUP BY ROLLUP (person_key, program_id)",
        Rule::NotPersonLocal,
    ),
    (
        "date_trunc with a unit read from data",
        "SELECT person_key, date_trunc(source, event_date) AS d FROM overdose_events",
        Rule::Function,
    ),
];

#[test]
fn refuses_each_way_to_break_locality_or_lineage() {
    assert!(REFUSED.len() >= 20);
    for (what, sql, rule) in REFUSED {
        match plan(sql) {
            Ok(_) => panic!("{what}: accepted, but it breaks {rule}"),
            Err(PrivacyError::Refused { refusal, .. }) => {
                assert_eq!(
                    refusal.rule, *rule,
                    "{what}: refused for the wrong reason: {refusal}"
                );
                assert!(
                    !refusal.node.is_empty(),
                    "{what}: the refusal names no node"
                );
            }
            Err(other) => panic!("{what}: not a refusal: {other}"),
        }
    }
}

#[test]
fn a_refusal_names_the_node_that_broke_the_rule() {
    let Err(PrivacyError::Refused { refusal, .. }) =
        plan("SELECT person_key, rank() OVER (ORDER BY event_date) AS r FROM overdose_events")
    else {
        panic!("accepted");
    };
    assert!(refusal.node.starts_with("Window"), "{}", refusal.node);
    let message = PrivacyError::Refused {
        query: "q.sql".into(),
        refusal,
    }
    .to_string();
    assert!(
        message.contains("q.sql") && message.contains("person_key"),
        "{message}"
    );
}
