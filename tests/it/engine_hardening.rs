//! Issue 9, the engine's part: spec values that broke the arithmetic (k ≥ 256, bounds whose
//! square overflows), idempotency across a rebuilt warehouse, identical releases at once,
//! fail points only in test builds, `--warehouse` from the environment, δ per allocation
//! through the CLI, the ledger below the engine, and releases that fail after their debit
//! printing nothing that depends on the data.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::failpoint;
use outreach_warehouse::ledger::{BudgetInit, LEDGER_FILE, Ledger, PrivacyConfig};
use outreach_warehouse::privacy::spec::{
    CellSpec, DomainSpec, MAX_K, MAX_QUERIES, MAX_SQL_BYTES, QuerySpec,
};
use outreach_warehouse::privacy::{
    PrivacyError, ReleaseOutcome, ReleaseRequest, ReleaseSpec, release,
};

use crate::common::{
    ATTEMPTS_HEADER, EVENTS_HEADER, csv, event, events, ingest_files, privacy_session,
    privacy_warehouse, warehouse_with_programs, write,
};

/// The binary, with nothing inherited that would change what it does or prints.
fn outreach() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_outreach"));
    c.arg("--quiet")
        .env_remove("RUST_LOG")
        .env_remove(WAREHOUSE_ENV)
        .env_remove(failpoint::ENV);
    c
}

fn ok(out: &Output) -> String {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A budget of ρ `total`, all of it in the allocation `std`.
fn budget(wh: &Path, total: f64) {
    let mut l = Ledger::init(
        wh,
        &BudgetInit {
            total_rho: total,
            total_delta: 0.0,
            horizon_days: 365,
            config: PrivacyConfig::default(),
        },
    )
    .unwrap();
    l.allocate("std", total).unwrap();
}

const PERSONS_SQL: &str = "SELECT person_key, program_id, quarter_of(event_date) AS quarter, true AS persons FROM overdose_events";

const PERSONS_STAT: &str = r#"
[[statistics]]
name = "persons"
kind = "count"
"#;

/// A spec per program and quarter of 2025's first half, with inline SQL and `statistics`.
fn spec_toml(k: u32, rho: f64, sql: &str, statistics: &str) -> String {
    format!(
        r#"name = "persons per program and quarter"
k = {k}
rho = {rho:?}
allocation = "std"

[[queries]]
sql = "{sql}"

[[cells]]
column = "program_id"
domain = "programs"

[[cells]]
column = "quarter"
domain = {{ quarters = {{ from = "2025Q1", to = "2025Q2" }} }}
{statistics}"#
    )
}

fn persons_spec(k: u32, rho: f64) -> ReleaseSpec {
    toml::from_str(&spec_toml(k, rho, PERSONS_SQL, PERSONS_STAT)).unwrap()
}

fn run(wh: &Path, spec: &ReleaseSpec) -> Result<ReleaseOutcome, PrivacyError> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(release(
        wh,
        &ReleaseRequest {
            spec: spec.clone(),
            approver: "steward".into(),
        },
    ))
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
fn k_above_64_is_refused_before_any_debit() {
    // The bounder keeps a fixed-size record of 5 + 2k + k·m words per person, allocated after
    // the debit: at k = 1024 a million persons took about 25 GB and the process aborted with
    // the budget spent. k is now at most 64.
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

/// Issue 17: what a spec may ask for is bounded before any of its SQL is parsed: the length
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

/// Issue 17: a person-local self-join multiplies one person's rows (`a JOIN b JOIN c ON
/// person_key`: n attempts give n³ rows; one survivor with 400 attempts gave 6.4e7), and the
/// bounder kept every row until the end, after the debit. Rows are now folded into each
/// person's record as they arrive: for 500 survivors with 12 attempts each (864,000 rows),
/// what the bounder holds after every batch is at most k cells a person and fewer bytes than
/// rows pushed, and the release itself finishes.
#[test]
fn a_self_join_that_multiplies_each_persons_rows_is_bounded_in_persons_times_k() {
    use futures::StreamExt;
    use outreach_warehouse::privacy::bounding::{
        Bounder, BoundingRules, CellChoiceKey, Retained, record_words,
    };
    use outreach_warehouse::privacy::release::{person_rows, prepare};

    const SURVIVORS: usize = 500;
    const ATTEMPTS: usize = 12;
    const K: usize = 2;
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    // Three programs and two quarters: each survivor touches six cells, and keeps k = 2.
    let attempts: Vec<String> = (0..SURVIVORS)
        .flat_map(|p| {
            (0..ATTEMPTS).map(move |j| {
                let program = ["P001", "P002", "P003"][j % 3];
                let date = if j % 2 == 0 { "2025-02-10" } else { "2025-05-10" };
                format!(
                    "A{p:03}x{j:02},pk{p:04},{program},E{p:04},{date},home_visit,engaged_survivor,false,false,false,true,false"
                )
            })
        })
        .collect();
    let file = write(
        tmp.path(),
        "outreach_attempts.csv",
        csv(ATTEMPTS_HEADER, &attempts),
    );
    ingest_files(&wh, &[file]);
    budget(&wh, 1.0);
    let sql = "SELECT a.person_key, a.program_id, quarter_of(a.attempt_date) AS quarter, true AS persons \
               FROM outreach_attempts a \
               JOIN outreach_attempts b ON b.person_key = a.person_key \
               JOIN outreach_attempts c ON c.person_key = a.person_key";
    let spec: ReleaseSpec = toml::from_str(&spec_toml(K as u32, 0.5, sql, PERSONS_STAT)).unwrap();

    // The release's own plan and rows, into a bounder read after every batch.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (pushed, most, bounded) = rt.block_on(async {
        let ctx = privacy_session(&wh).await;
        let config = Ledger::open(&wh).unwrap().config().unwrap();
        let prepared = prepare(&ctx, &spec, "v1", &config).await.unwrap();
        let rules = BoundingRules {
            k: prepared.spec.k as usize,
            cells: prepared.spec.cells.clone(),
            statistics: prepared.spec.statistics.clone(),
            exclusive: prepared.spec.exclusive.clone(),
            key: CellChoiceKey(*b"0123456789abcdef"),
        };
        let rows = person_rows(&ctx, &prepared.spec, &prepared.queries).unwrap();
        let bounder = Bounder::new(&rules, 256);
        let (mut pushed, mut most) = (0usize, Retained::default());
        let mut stream = rows.execute_stream().await.unwrap();
        while let Some(batch) = stream.next().await {
            let batch = batch.unwrap();
            pushed += batch.num_rows();
            bounder.push(&batch).unwrap();
            let now = bounder.retained();
            assert!(now.cells <= now.persons * K, "{now:?} after {pushed} rows");
            most = Retained {
                persons: most.persons.max(now.persons),
                cells: most.cells.max(now.cells),
                bytes: most.bytes.max(now.bytes),
            };
        }
        (pushed, most, bounder.finish())
    });
    assert_eq!(pushed, SURVIVORS * ATTEMPTS.pow(3));
    assert_eq!(most.persons, SURVIVORS);
    assert_eq!(most.cells, SURVIVORS * K);
    // One record of 5 + 2k + k·m words a person (Vec growth at most doubles it), a few bytes
    // of index a person and per shard, whatever the rows: here under one byte a row.
    let record = 8 * record_words(K, 1);
    assert!(
        most.bytes <= SURVIVORS * (2 * record + 64) + 256 * 64,
        "{most:?}: more than the persons' records"
    );
    assert!(most.bytes < pushed, "{most:?} for {pushed} rows");
    let d = &bounded.diagnostics;
    assert_eq!(d.rows, pushed as u64);
    assert_eq!(d.persons, SURVIVORS as u64);
    assert_eq!(d.person_cells, (SURVIVORS * K) as u64);
    assert_eq!(d.persons_over_k, SURVIVORS as u64);
    assert_eq!(bounded.values.iter().sum::<i64>(), (SURVIVORS * K) as i64);

    // The release finishes, with one debit.
    let out = run(&wh, &spec).unwrap();
    assert!(out.fresh);
    assert_eq!(Ledger::open(&wh).unwrap().releases().unwrap().len(), 1);
}

/// Issue 17: DataFusion's runtime has a memory pool, half the machine's memory, in every
/// session that reads data and in the API's planning sessions, so a join too large for the
/// machine fails as DataFusion's "resources exhausted" instead of taking the host down.
#[test]
fn every_session_has_a_memory_pool_sized_from_the_machine() {
    use datafusion::execution::memory_pool::MemoryLimit;
    use outreach_warehouse::warehouse::{
        MIN_QUERY_MEMORY, Warehouse, open_session, query_memory_limit, schema_session,
    };

    let limit = query_memory_limit();
    assert!(limit >= MIN_QUERY_MEMORY);
    if let Ok(text) = std::fs::read_to_string("/proc/meminfo") {
        let total = outreach_warehouse::warehouse::meminfo_total(&text).unwrap();
        assert!(
            limit as u64 <= (total / 2).max(MIN_QUERY_MEMORY as u64),
            "{limit} of {total}"
        );
    }
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    let rt = tokio::runtime::Runtime::new().unwrap();
    let data = rt
        .block_on(open_session(&Warehouse::open(&wh).unwrap()))
        .unwrap();
    for ctx in [data, schema_session().unwrap()] {
        match ctx.runtime_env().memory_pool.memory_limit() {
            MemoryLimit::Finite(n) => assert_eq!(n, limit),
            _ => panic!("a session without a finite memory pool"),
        }
    }
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

#[test]
fn the_warehouse_comes_from_outreach_warehouse_when_the_flag_is_absent() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    let with_flag = ok(&outreach()
        .args(["status", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap());
    let with_env = ok(&outreach()
        .arg("status")
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    assert_eq!(with_env, with_flag);
    // The flag wins over the variable.
    ok(&outreach()
        .args(["budget", "show", "--warehouse"])
        .arg(&wh)
        .env(WAREHOUSE_ENV, tmp.path().join("nowhere"))
        .output()
        .unwrap());
    // The other commands that take a warehouse.
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    ok(&outreach()
        .args(["release", "--spec"])
        .arg(&spec)
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    let list = ok(&outreach()
        .args(["releases", "list", "--format", "csv"])
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    assert_eq!(list.lines().count(), 2, "{list}");
    ok(&outreach()
        .args(["releases", "show", "1"])
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    ok(&outreach()
        .args(["budget", "show"])
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    ok(&outreach()
        .args(["complete-through", "overdose_events", "2025-06-30"])
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    // Neither: a usage error that names the flag.
    let out = outreach().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--warehouse"));
    // Every command says what the flag is and where else it can come from.
    let commands: [&[&str]; 10] = [
        &["status"],
        &["ingest"],
        &["complete-through"],
        &["budget", "init"],
        &["budget", "allocate"],
        &["budget", "show"],
        &["budget", "renew"],
        &["release"],
        &["releases", "list"],
        &["releases", "show"],
    ];
    for args in commands {
        let help = ok(&outreach().args(args).arg("--help").output().unwrap());
        assert!(
            help.contains("Warehouse folder") && help.contains(WAREHOUSE_ENV),
            "{args:?}: {help}"
        );
    }
}

/// `outreach budget ARGS...` on `wh`, which comes from the environment.
fn budget_cmd(wh: &Path, args: &[&str]) -> Output {
    outreach()
        .arg("budget")
        .args(args)
        .env(WAREHOUSE_ENV, wh)
        .output()
        .unwrap()
}

/// `outreach budget show --format json`.
fn show_json(wh: &Path) -> serde_json::Value {
    let out = outreach()
        .args(["budget", "show", "--format", "json", "--warehouse"])
        .arg(wh)
        .output()
        .unwrap();
    serde_json::from_str(&ok(&out)).unwrap()
}

#[test]
fn budget_commands_give_allocations_delta_and_show_lifetime_delta() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    ok(&budget_cmd(
        &wh,
        &[
            "init",
            "--total",
            "1",
            "--horizon",
            "365",
            "--delta",
            "1e-5",
        ],
    ));
    ok(&budget_cmd(
        &wh,
        &["allocate", "std", "0.5", "--delta", "2e-6"],
    ));
    ok(&budget_cmd(&wh, &["allocate", "researcher:7", "0.5"]));
    let v = show_json(&wh);
    assert_eq!(v["allocations"][0]["delta"], 2e-6);
    assert_eq!(v["allocations"][1]["delta"], 0.0);
    assert_eq!(v["lifetime_delta"], 0.0);
    // More δ than the warehouse has is over budget (exit 4); a δ of 1 is bad input (exit 2).
    let out = budget_cmd(&wh, &["allocate", "researcher:7", "0", "--delta", "9e-6"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = budget_cmd(&wh, &["allocate", "researcher:7", "0", "--delta", "1"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    ok(&budget_cmd(
        &wh,
        &[
            "renew",
            "--why",
            "more delta for partition selection",
            "--delta",
            "2e-5",
        ],
    ));
    ok(&budget_cmd(
        &wh,
        &["allocate", "researcher:7", "0", "--delta", "9e-6"],
    ));
    let v = show_json(&wh);
    assert_eq!(v["period"]["total_delta"], 2e-5);
    assert_eq!(v["allocations"][1]["delta"], 9e-6);
    let table = ok(&budget_cmd(&wh, &["show"]));
    assert!(table.contains("lifetime delta over all periods"), "{table}");
}

#[test]
fn the_ledger_does_not_import_the_privacy_engine() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/ledger");
    let mut files = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "rs") {
            files += 1;
            let text = std::fs::read_to_string(&path).unwrap();
            for needle in [
                "crate::privacy",
                "super::privacy",
                "outreach_warehouse::privacy",
            ] {
                assert!(
                    !text.contains(needle),
                    "{} imports the privacy engine ({needle})",
                    path.display()
                );
            }
        }
    }
    assert!(files >= 1);
    // The engine still offers the shared type under its names.
    let kind = outreach_warehouse::ledger::NoiseKind::DiscreteLaplace;
    let _: outreach_warehouse::privacy::NoiseKind = kind;
    let _: outreach_warehouse::privacy::mechanism::NoiseKind = kind;
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

/// Overwrites every Parquet file of `overdose_events` with bytes of the same length and no
/// Parquet footer: DataFusion fails when it reads them, after the debit.
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
        let len = std::fs::metadata(&f).unwrap().len() as usize;
        std::fs::write(&f, vec![0x55u8; len]).unwrap();
    }
}

// Defence in depth (issue 9 §1): whatever the allow-list misses, a run that fails after its
// debit shows whoever runs it nothing but that it failed. Three failures after the debit,
// each on two warehouses with different data: an injected error, a panic inside a query task
// whose message quotes the data (as a defect in a kernel would), and a real execution error
// from DataFusion (a data file that does not parse). The exit code, stdout and stderr must
// be identical for the two warehouses (the release ids agree, since both ledgers run the
// same sequence), and the steward's record must keep the error text.
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
