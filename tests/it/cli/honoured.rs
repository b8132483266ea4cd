//! Flags that change what a command does, each run through the binary and checked against
//! what it wrote, debited, stored or served: the flags no other test shows honoured
//! (`flags::FLAG_TESTS` names, for every flag, the test that does).

use std::collections::BTreeSet;
use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use chrono::NaiveDate;
use outreach_warehouse::api::app;
use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::ingest::ingest;
use outreach_warehouse::ledger::{BudgetPeriod, Ledger, NoiseKind};
use outreach_warehouse::requests::Queue;
use outreach_warehouse::warehouse::Warehouse;
use serde_json::{Value, json};

use crate::common::fixture::{fixture_opts, fixture_warehouse};
use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, budget, ok, outreach, spec_toml};
use crate::common::server::{
    self, Served, published, roomy, submission, submit_id, with_researcher,
};
use crate::common::{
    EVENTS_HEADER, PROGRAMS, csv, event, events, privacy_warehouse, scalar,
    warehouse_with_programs, write,
};

/// `--quiet` hides the progress bars. A bar is drawn only on a terminal, so `synth`'s stderr
/// is a pseudo-terminal here: the bar shows without the flag, and nothing of it with it.
#[cfg(target_os = "linux")]
#[test]
fn quiet_hides_the_progress_bar_on_a_terminal() {
    use std::process::{Command, Stdio};
    let tmp = tempfile::tempdir().unwrap();
    let stderr_on_a_terminal = |quiet: bool| -> String {
        let (mut master, terminal) = pseudo_terminal::open();
        let reader = std::thread::spawn(move || {
            let mut got = Vec::new();
            // The read ends in an error (EIO) once no process holds the terminal.
            let _ = master.read_to_end(&mut got);
            String::from_utf8_lossy(&got).into_owned()
        });
        let out = tmp.path().join(if quiet { "quiet" } else { "shown" });
        let mut c = Command::new(env!("CARGO_BIN_EXE_outreach"));
        if quiet {
            c.arg("--quiet");
        }
        c.args([
            "synth",
            "--persons",
            "20000",
            "--programs",
            "2",
            "--start",
            "2024Q1",
            "--quarters",
            "1",
            "--out",
        ])
        .arg(&out)
        .env("TERM", "xterm")
        .env_remove("RUST_LOG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(terminal);
        let status = c.status().unwrap();
        // The command keeps this process's end of the terminal open until it is dropped.
        drop(c);
        assert!(status.success(), "{status:?}");
        reader.join().unwrap()
    };
    let shown = stderr_on_a_terminal(false);
    assert!(shown.contains("synthesising"), "{shown:?}");
    let quiet = stderr_on_a_terminal(true);
    assert!(!quiet.contains("synthesising"), "{quiet:?}");
}

/// A pseudo-terminal, from the C library the standard library links already.
#[cfg(target_os = "linux")]
mod pseudo_terminal {
    use std::ffi::{CStr, c_char, c_int};
    use std::fs::{File, OpenOptions};
    use std::os::fd::FromRawFd;
    use std::os::unix::fs::OpenOptionsExt;

    unsafe extern "C" {
        fn posix_openpt(flags: c_int) -> c_int;
        fn grantpt(fd: c_int) -> c_int;
        fn unlockpt(fd: c_int) -> c_int;
        fn ptsname_r(fd: c_int, buf: *mut c_char, buflen: usize) -> c_int;
    }

    const O_RDWR: c_int = 0o2;
    const O_NOCTTY: c_int = 0o400;
    const O_CLOEXEC: c_int = 0o2_000_000;

    /// A new pseudo-terminal: the side this process reads, and the terminal a child writes to.
    pub fn open() -> (File, File) {
        let mut name: [c_char; 128] = [0; 128];
        // SAFETY: C library calls on a descriptor owned here (by `master` once it is made);
        // `name` is a buffer of the length given, which `ptsname_r` fills with a
        // NUL-terminated path.
        let master = unsafe {
            let fd = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
            assert!(fd >= 0, "posix_openpt: {}", std::io::Error::last_os_error());
            let master = File::from_raw_fd(fd);
            assert_eq!(grantpt(fd), 0, "grantpt");
            assert_eq!(unlockpt(fd), 0, "unlockpt");
            assert_eq!(ptsname_r(fd, name.as_mut_ptr(), name.len()), 0, "ptsname_r");
            master
        };
        // SAFETY: `ptsname_r` succeeded, so `name` holds a NUL-terminated string.
        let path = unsafe { CStr::from_ptr(name.as_ptr()) }
            .to_str()
            .unwrap()
            .to_owned();
        let terminal = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(O_NOCTTY)
            .open(path)
            .unwrap();
        (master, terminal)
    }
}

/// `demo` puts its exports and warehouse under `--dir`, synthesises what `synth` does with
/// the same `--persons`, `--programs` and `--seed`, and with `--no-serve` returns after
/// publishing instead of serving.
#[test]
fn demo_builds_its_warehouse_from_its_flags_and_stops_with_no_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("demo");
    ok(&outreach()
        .args([
            "demo",
            "--no-serve",
            "--persons",
            "1000",
            "--programs",
            "3",
            "--seed",
            "7",
            "--dir",
        ])
        .arg(&dir)
        .output()
        .unwrap());
    assert!(dir.join("warehouse/manifest.json").exists());
    let synth = |seed: &str| {
        let out = tmp.path().join(format!("synth-{seed}"));
        ok(&outreach()
            .args([
                "synth",
                "--persons",
                "1000",
                "--programs",
                "3",
                "--seed",
                seed,
                "--out",
            ])
            .arg(&out)
            .output()
            .unwrap());
        out
    };
    let read = |dir: &Path, file: &str| std::fs::read(dir.join(file)).unwrap();
    let (same, other) = (synth("7"), synth("8"));
    let exports = dir.join("exports");
    for file in ["programs.csv", "overdose_events.csv"] {
        assert!(read(&exports, file) == read(&same, file), "{file}");
    }
    assert!(read(&exports, "overdose_events.csv") != read(&other, "overdose_events.csv"));
    let programs = String::from_utf8(read(&same, "programs.csv")).unwrap();
    assert_eq!(programs.lines().count(), 1 + 3, "{programs}");
}

/// The values of two columns of a CSV file without quoted commas, by their header names.
fn columns(file: &Path, names: [&str; 2]) -> Vec<[String; 2]> {
    let text = std::fs::read_to_string(file).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let at = names.map(|n| header.iter().position(|h| *h == n).unwrap());
    lines
        .map(|l| {
            let fields: Vec<&str> = l.split(',').collect();
            at.map(|i| fields[i].to_string())
        })
        .collect()
}

/// `synth` writes into `--out` the programs, survivors and quarters from `--start` it is
/// given, draws other data for another `--seed`, and dates nothing after `--as-of`.
#[test]
fn synth_writes_what_its_flags_ask_for() {
    let tmp = tempfile::tempdir().unwrap();
    let synth = |name: &str, seed: &str, as_of: Option<&str>| -> PathBuf {
        let out = tmp.path().join(name);
        let mut c = outreach();
        c.args([
            "synth",
            "--programs",
            "2",
            "--persons",
            "60",
            "--start",
            "2025Q1",
            "--quarters",
            "1",
            "--seed",
            seed,
        ]);
        if let Some(date) = as_of {
            c.args(["--as-of", date]);
        }
        ok(&c.arg("--out").arg(&out).output().unwrap());
        out
    };
    let dated = |dir: &Path| {
        columns(
            &dir.join("overdose_events.csv"),
            ["person_key", "event_date"],
        )
    };
    let base = synth("base", "1", None);
    let programs = std::fs::read_to_string(base.join("programs.csv")).unwrap();
    assert_eq!(programs.lines().count(), 1 + 2, "{programs}");
    let rows = dated(&base);
    let persons: BTreeSet<&String> = rows.iter().map(|[p, _]| p).collect();
    assert!(
        !persons.is_empty() && persons.len() <= 60,
        "{}",
        persons.len()
    );
    // One quarter from 2025Q1: every date in it (the default would start in 2024Q3 and run
    // eight quarters).
    assert!(
        rows.iter()
            .all(|[_, d]| ("2025-01-01"..="2025-03-31").contains(&d.as_str())),
        "{rows:?}"
    );
    assert!(rows.iter().any(|[_, d]| d.as_str() > "2025-02-15"));
    let cut = synth("as-of", "1", Some("2025-02-15"));
    assert!(dated(&cut).iter().all(|[_, d]| d.as_str() <= "2025-02-15"));
    let reseeded = synth("seed", "2", None);
    assert!(dated(&reseeded) != rows);
}

/// `ingest` loads a file into the table `--table` names, rejects rows dated after
/// `--max-date`, loads a file with more rejects than the default 1% only under
/// `--max-reject-rate`, and declares `--complete-through`; `complete-through` declares a
/// table's date.
#[test]
fn ingest_and_complete_through_take_tables_dates_and_rates_from_their_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("wh");
    let ingest_cmd = |args: &[&str], file: &Path| {
        outreach()
            .args(["ingest", "--warehouse"])
            .arg(&wh)
            .args(args)
            .arg(file)
            .output()
            .unwrap()
    };
    let programs = write(tmp.path(), "programs.csv", PROGRAMS);
    ok(&ingest_cmd(&["--max-date", "2026-06-30"], &programs));
    // Four events of 2025 and one of March 2026, in a file whose name is no table's.
    let mut rows = events(4);
    rows.push(event("E9999", "pk9999", "P001", "2026-03-01"));
    let export = write(tmp.path(), "march-export.csv", csv(EVENTS_HEADER, &rows));
    let out = ingest_cmd(&["--max-date", "2026-01-31"], &export);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--table"));
    // Into overdose_events, the March row is after --max-date: one reject in five is more
    // than the default share allows.
    let into_events = ["--table", "overdose_events", "--max-date", "2026-01-31"];
    let out = ingest_cmd(&into_events, &export);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let allowed = [
        &into_events[..],
        &[
            "--max-reject-rate",
            "0.5",
            "--complete-through",
            "2025-06-30",
        ][..],
    ]
    .concat();
    ok(&ingest_cmd(&allowed, &export));
    assert_eq!(scalar(&wh, "SELECT count(*) FROM overdose_events"), 4);
    let through = |table: &str| {
        Warehouse::open(&wh)
            .unwrap()
            .manifest()
            .unwrap()
            .complete_through(table)
    };
    let day = |s: &str| s.parse::<NaiveDate>().unwrap();
    assert_eq!(through("overdose_events"), Some(day("2025-06-30")));
    assert_eq!(through("arrests"), None);
    ok(&outreach()
        .args(["complete-through", "--warehouse"])
        .arg(&wh)
        .args(["arrests", "2025-09-30"])
        .output()
        .unwrap());
    assert_eq!(through("arrests"), Some(day("2025-09-30")));
    assert_eq!(through("overdose_events"), Some(day("2025-06-30")));
}

/// The days from a budget period's start to its end.
fn days(p: &BudgetPeriod) -> i64 {
    let at = |t: &str| chrono::DateTime::parse_from_rfc3339(t).unwrap();
    (at(&p.ends) - at(&p.starts)).num_days()
}

/// `budget init`, `allocate` and `renew` store the totals, horizon, noise, display δ,
/// smallest scale, allocation and reason their flags give.
#[test]
fn budget_commands_set_what_their_flags_say() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let budget_cmd = |args: &[&str]| {
        outreach()
            .arg("budget")
            .args(args)
            .arg("--warehouse")
            .arg(&wh)
            .output()
            .unwrap()
    };
    let show = || Ledger::open(&wh).unwrap().show().unwrap();
    ok(&budget_cmd(&[
        "init",
        "--total",
        "2",
        "--horizon",
        "90",
        "--delta",
        "1e-6",
        "--noise",
        "laplace",
        "--display-delta",
        "1e-6",
        "--min-scale",
        "2",
    ]));
    let v = show();
    assert_eq!(v.config.noise, NoiseKind::DiscreteLaplace);
    assert_eq!((v.config.display_delta, v.config.min_scale), (1e-6, 2.0));
    assert_eq!((v.period.total_rho, v.period.total_delta), (2.0, 1e-6));
    assert_eq!(days(&v.period), 90);
    ok(&budget_cmd(&["allocate", "std", "0.5", "--delta", "1e-7"]));
    let v = show();
    let std = v.allocations.iter().find(|a| a.name == "std").unwrap();
    assert_eq!((std.rho, std.delta), (0.5, 1e-7));
    ok(&budget_cmd(&[
        "renew",
        "--why",
        "a new grant",
        "--total",
        "3",
        "--delta",
        "2e-6",
        "--horizon",
        "30",
    ]));
    let v = show();
    assert_eq!(v.periods, 2);
    assert_eq!(v.period.why, "a new grant");
    assert_eq!((v.period.total_rho, v.period.total_delta), (3.0, 2e-6));
    assert_eq!(days(&v.period), 30);
}

/// The release's flag form: the queries, cells, statistics, k and ρ, name, approver,
/// allocation and format it is given; noise scales, ratios and exclusive groups; and a δ,
/// which is refused without a private cell key.
#[test]
fn the_release_flag_form_honours_every_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    let persons = write(tmp.path(), "persons.sql", PERSONS_SQL);
    let sides = write(
        tmp.path(),
        "sides.sql",
        "SELECT person_key, program_id, fatal AS died, NOT fatal AS survived FROM overdose_events",
    );
    let release = |query: &Path, args: &[&str]| {
        outreach()
            .args(["release", "--warehouse"])
            .arg(&wh)
            .arg("--query")
            .arg(query)
            .args(args)
            .output()
            .unwrap()
    };
    let stored = || Ledger::open(&wh).unwrap().releases().unwrap();
    let counted = [
        "--cell",
        "program_id=programs",
        "--cell",
        "quarter=quarters:2025Q1..2025Q2",
        "--stat",
        "persons:count",
        "--k",
        "2",
        "--rho",
        "0.1",
        "--allocation",
        "std",
    ];
    // A δ is spent only by a private cell key: refused here, before anything is debited.
    let out = release(&persons, &[&counted[..], &["--delta", "1e-6"][..]].concat());
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no cell key is private"));
    assert!(stored().is_empty());
    let named = [
        "--name",
        "persons by flags",
        "--approver",
        "ann",
        "--format",
        "json",
    ];
    let printed = ok(&release(&persons, &[&counted[..], &named[..]].concat()));
    let printed: Value = serde_json::from_str(&printed).unwrap();
    let first = stored();
    let r = &first[0];
    assert_eq!(
        (r.name.as_str(), r.approver.as_str(), r.allocation.as_str()),
        ("persons by flags", "ann", "std")
    );
    assert_eq!(printed["id"], r.id);
    assert!((r.debit_rho - 0.1).abs() < 1e-9, "{}", r.debit_rho);
    let result = r.result.as_ref().unwrap();
    assert_eq!(result["cell_keys"], json!(["program_id", "quarter"]));
    assert_eq!(result["cells"].as_array().unwrap().len(), 3 * 2);
    assert_eq!(result["statistics"][0]["name"], "persons");
    // k = 2 at ρ = 0.1: σ = sqrt(k / (2ρ)).
    let scale = result["statistics"][0]["scale"].as_f64().unwrap();
    assert!((scale - (2.0f64 / 0.2).sqrt()).abs() < 1e-9, "{scale}");
    // Two sides of which a survivor is on one, each with its own noise scale, and their
    // ratio; the same once more without declaring them exclusive.
    let sides_args = |exclusive: bool| {
        let mut a = vec![
            "--cell",
            "program_id=programs",
            "--stat",
            "died:count",
            "--stat",
            "survived:count",
            "--ratio",
            "share=died/survived",
            "--scale",
            "died=3",
            "--scale",
            "survived=3",
            "--k",
            "1",
            "--allocation",
            "std",
        ];
        if exclusive {
            a.extend(["--exclusive", "died,survived"]);
        }
        a
    };
    ok(&release(&sides, &sides_args(true)));
    ok(&release(&sides, &sides_args(false)));
    let all = stored();
    assert_eq!(all.len(), 3);
    for r in &all[1..] {
        let result = r.result.as_ref().unwrap();
        assert_eq!(result["ratios"][0]["name"], "share", "{result}");
        for s in result["statistics"].as_array().unwrap() {
            assert_eq!(s["scale"], 3.0, "{s}");
        }
    }
    // An exclusive pair counts once in the sensitivity: it costs less.
    assert!(
        all[1].debit_rho < all[2].debit_rho,
        "{} {}",
        all[1].debit_rho,
        all[2].debit_rho
    );
}

/// `publish` refuses an incomplete quarter unless `--allow-incomplete`, debits what its
/// `--sigma`, `--k` and `--equity-sigma` cost, records `--approver`, and after new data
/// publishes again only with `--republish`.
#[test]
fn publish_takes_its_noise_approver_and_permissions_from_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    // Complete through 2025-05-15: 2025Q1's 90-day windows are not.
    let wh = fixture_warehouse(tmp.path(), "2025-05-15");
    let publish = |extra: &[&str]| {
        outreach()
            .args([
                "publish",
                "--quarter",
                "2025Q1",
                "--approver",
                "sam",
                "--sigma",
                "7",
                "--k",
                "1",
                "--equity-sigma",
                "9",
                "--warehouse",
            ])
            .arg(&wh)
            .args(extra)
            .output()
            .unwrap()
    };
    let spent = || Ledger::open(&wh).unwrap().show().unwrap().spent_rho;
    let out = publish(&[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-incomplete"));
    assert_eq!(spent(), 0.0);
    let printed = ok(&publish(&["--allow-incomplete", "--format", "json"]));
    serde_json::from_str::<Value>(&printed).unwrap();
    // ρ = k·Σ B²/(2σ²): k = 1 and σ = 7 for the standard release (Σ B² = 13); the equity
    // release keeps its k = 6, at σ = 9 (Σ B² = 3).
    let expected = 13.0 / (2.0 * 7.0 * 7.0) + 6.0 * 3.0 / (2.0 * 9.0 * 9.0);
    assert!((spent() - expected).abs() < 1e-9, "{} {expected}", spent());
    let releases = Ledger::open(&wh).unwrap().releases().unwrap();
    assert_eq!(releases.len(), 2);
    assert!(releases.iter().all(|r| r.approver == "sam"));
    // New data: one more survivor, a new dataset version.
    let extra = write(
        tmp.path(),
        "overdose_events-extra.csv",
        "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\n\
         EX1,KX1,P1,2025-02-10,ems,false,true,false,25_34,male,unknown\n",
    );
    ingest(&wh, &[extra], &fixture_opts("2025-05-15")).unwrap();
    let out = publish(&["--allow-incomplete"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--republish"));
    let before = spent();
    ok(&publish(&["--allow-incomplete", "--republish"]));
    assert!(spent() > before);
    let quarter = Ledger::open(&wh)
        .unwrap()
        .publications(Some("2025Q1"))
        .unwrap();
    assert_eq!(quarter.len(), 2);
}

/// `plan` prices the `--sigma`, `--k` and `--equity-sigma` it is given at `--at`
/// survivors, or solves for `--target-halfwidth`; it spends nothing.
#[test]
fn plan_takes_its_noise_survivors_and_target_from_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let plan = |extra: &[&str]| -> Value {
        let out = ok(&outreach()
            .args([
                "plan",
                "--quarter",
                "2025Q1",
                "--format",
                "json",
                "--warehouse",
            ])
            .arg(&wh)
            .args(extra)
            .output()
            .unwrap());
        serde_json::from_str(&out).unwrap()
    };
    let p = plan(&[
        "--sigma",
        "7",
        "--k",
        "1",
        "--equity-sigma",
        "9",
        "--at",
        "50",
    ]);
    assert_eq!(p["quarter"], "2025Q1");
    assert_eq!((p["k"].as_u64(), p["at"].as_u64()), (Some(1), Some(50)));
    assert_eq!(
        (p["sigma"].as_f64(), p["equity_sigma"].as_f64()),
        (Some(7.0), Some(9.0))
    );
    let rho = |v: &Value, key: &str| v[key].as_f64().unwrap();
    assert!((rho(&p, "rho_standard") - 13.0 / (2.0 * 7.0 * 7.0)).abs() < 1e-9);
    assert!((rho(&p, "rho_equity") - 6.0 * 3.0 / (2.0 * 9.0 * 9.0)).abs() < 1e-9);
    // The smallest budget whose every rate half-width at 200 survivors is within ±8 points:
    // σ = 0.08·200 / (1.96·√2) ≈ 5.77.
    let t = plan(&["--target-halfwidth", "0.08", "--at", "200"]);
    let sigma = t["sigma"].as_f64().unwrap();
    assert!(
        (sigma - 0.08 * 200.0 / (1.96 * 2f64.sqrt())).abs() < 0.01,
        "{sigma}"
    );
    for rates in [&t["rates"], &t["equity_rates"]] {
        for r in rates.as_array().unwrap() {
            assert!(r[1].as_f64().unwrap() <= 0.08, "{r}");
        }
    }
    assert_eq!(Ledger::open(&wh).unwrap().show().unwrap().spent_rho, 0.0);
}

/// `metrics --markdown` prints `queries/README.md`; `--warehouse` is taken with `--exact`
/// and refused without it, and `OUTREACH_WAREHOUSE` set in the shell does not count as the
/// flag.
#[test]
fn metrics_prints_markdown_and_reads_a_warehouse_only_for_exact() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = fixture_warehouse(tmp.path(), "2025-12-31");
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("queries/README.md"))
            .unwrap();
    let markdown = ok(&outreach().args(["metrics", "--markdown"]).output().unwrap());
    assert!(markdown == readme, "{markdown}");
    let exact = ok(&outreach()
        .args([
            "metrics",
            "--exact",
            "--quarter",
            "2025Q1",
            "--format",
            "json",
            "--warehouse",
        ])
        .arg(&wh)
        .output()
        .unwrap());
    let rows: Value = serde_json::from_str(&exact).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 45, "{rows}");
    let listed = ok(&outreach()
        .arg("metrics")
        .env(WAREHOUSE_ENV, &wh)
        .output()
        .unwrap());
    assert!(listed.contains("arrest_after_attempt_police_difference"));
    let out = outreach()
        .args(["metrics", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("--exact"));
}

/// `requests reject --approver` records who decided, and `tokens list` shows each token,
/// active or revoked.
#[tokio::test(flavor = "multi_thread")]
async fn requests_reject_records_its_approver_and_tokens_list_shows_each_token() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 1.0, roomy()).await;
    let id = submit_id(&app(st), &token, &submission(0.1)).await;
    server::outreach(
        &wh,
        &[
            "requests",
            "reject",
            &id,
            "--why",
            "too broad",
            "--approver",
            "sam",
        ],
    );
    let r = Queue::open(&wh).unwrap().get(&id).unwrap();
    assert_eq!(r.decided_by.as_deref(), Some("sam"));
    assert_eq!(r.why.as_deref(), Some("too broad"));
    let rosa = || {
        let list = String::from_utf8(server::outreach(&wh, &["tokens", "list"]).stdout).unwrap();
        list.lines()
            .find(|l| l.contains("rosa"))
            .unwrap_or_else(|| panic!("no rosa in {list}"))
            .to_string()
    };
    let line = rosa();
    assert!(
        line.contains("active") && !line.contains("revoked"),
        "{line}"
    );
    server::outreach(&wh, &["tokens", "revoke", "rosa"]);
    let line = rosa();
    assert!(line.contains("revoked"), "{line}");
}

/// `--format` chooses what each listing prints: JSON that parses, and a CSV and a table
/// that are other texts.
#[tokio::test(flavor = "multi_thread")]
async fn format_chooses_json_csv_or_a_table() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 1.0, roomy()).await;
    submit_id(&app(st), &token, &submission(0.1)).await;
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let spec = spec.to_str().unwrap();
    let commands: [&[&str]; 8] = [
        &["releases", "list"],
        &["releases", "show", "1"],
        &["budget", "show"],
        &["requests", "list"],
        &["metrics"],
        &["plan", "--quarter", "2025Q1"],
        &["publish", "--quarter", "2025Q1", "--approver", "steward"],
        &["release", "--spec", spec],
    ];
    for args in commands {
        let run = |format: &str| {
            let out = server::outreach(&wh, &[args, &["--format", format][..]].concat());
            String::from_utf8(out.stdout).unwrap()
        };
        let (json, table) = (run("json"), run("table"));
        assert!(
            serde_json::from_str::<Value>(&json).is_ok(),
            "{args:?}: {json}"
        );
        assert!(
            serde_json::from_str::<Value>(&table).is_err(),
            "{args:?}: {table}"
        );
        let csv = run("csv");
        assert!(
            csv != table && serde_json::from_str::<Value>(&csv).is_err(),
            "{args:?}: {csv}"
        );
    }
}

/// A new researcher token made with `outreach tokens create`.
fn new_token(wh: &Path, name: &str) -> String {
    let out = server::outreach(
        wh,
        &["tokens", "create", "--role", "researcher", "--name", name],
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// The response's head (status line and headers) to `request`, sent as written on a new
/// connection to `addr`; what came before a read timeout of ten seconds, if less.
fn head(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// `outreach serve` limits each client IP to `--per-ip-burst` requests at once, refilled at
/// `--per-ip-per-second`, and each researcher token likewise on the request routes.
#[tokio::test(flavor = "multi_thread")]
async fn outreach_serve_takes_its_rate_limits_from_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let token = new_token(&wh, "rosa");
    let server = Served::start_with(
        &wh,
        false,
        &["--per-ip-per-second", "0.001", "--per-ip-burst", "2"],
    );
    let heads: Vec<String> = (0..3).map(|_| server.get("/v1/releases")).collect();
    assert!(
        heads[0].starts_with("HTTP/1.1 200")
            && heads[1].starts_with("HTTP/1.1 200")
            && heads[2].starts_with("HTTP/1.1 429"),
        "{heads:?}"
    );
    drop(server);
    let server = Served::start_with(
        &wh,
        false,
        &["--per-token-per-minute", "0.001", "--per-token-burst", "1"],
    );
    let mine = format!(
        "GET /v1/requests HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    );
    let first = head(&server.addr, &mine);
    assert!(first.starts_with("HTTP/1.1 200"), "{first}");
    let second = head(&server.addr, &mine);
    assert!(second.starts_with("HTTP/1.1 429"), "{second}");
}

/// `outreach serve` answers a body over `--max-body-bytes` 413 and a request that takes
/// longer than `--timeout-seconds` 504, serves `--max-connections` at once, and greys out
/// dashboard figures below `--small-cell`.
#[tokio::test(flavor = "multi_thread")]
async fn outreach_serve_takes_its_body_limit_timeout_connection_cap_and_small_cell_from_its_flags()
{
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let token = new_token(&wh, "rosa");
    let post = |length: usize| {
        format!(
            "POST /v1/requests HTTP/1.1\r\nHost: test\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n"
        )
    };
    let server = Served::start_with(
        &wh,
        false,
        &["--max-body-bytes", "16", "--timeout-seconds", "0.5"],
    );
    let body = submission(0.1).to_string();
    let big = head(&server.addr, &(post(body.len()) + &body));
    assert!(big.starts_with("HTTP/1.1 413"), "{big}");
    // A body that never comes: 504 once the timeout has passed (the default is 30 s).
    let started = Instant::now();
    let withheld = head(&server.addr, &post(10));
    assert!(withheld.starts_with("HTTP/1.1 504"), "{withheld}");
    assert!(started.elapsed() < Duration::from_secs(5));
    drop(server);

    let uri = "/?quarter=2025Q1&metric=count:identified";
    let greyed = |args: &[&str]| {
        Served::start_with(&wh, false, args)
            .get(uri)
            .contains("class=\"small-cell\"")
    };
    assert!(!greyed(&[]));
    assert!(greyed(&["--small-cell", "1000"]));

    let server = Served::start_with(&wh, false, &["--max-connections", "1"]);
    // One client holds the one place, idle after a request.
    let mut held = TcpStream::connect(&server.addr).unwrap();
    held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    held.write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = held.read(&mut buf).unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    // A second connects (the kernel's backlog takes it) but is not served until it leaves.
    let mut waiting = TcpStream::connect(&server.addr).unwrap();
    waiting
        .set_read_timeout(Some(Duration::from_millis(700)))
        .unwrap();
    waiting
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut byte = [0u8; 1];
    let early = waiting.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "served past the cap: {early:?}"
    );
    drop(held);
    waiting
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = String::new();
    waiting.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
}
