//! A closed pipe ends a command quietly: every command that prints to standard output is run
//! with a reader that closed before it started and with one that reads a byte and closes,
//! and each exits 0 with no panic or backtrace. A command that spends budget has committed
//! before it prints, so the ledger holds its debit whatever happened to its output. A closed
//! standard error changes nothing either: no note or error message panics.

use std::io::Read;
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use outreach_warehouse::api::app;
use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::requests::Queue;
use outreach_warehouse::warehouse::Warehouse;

use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, outreach, spec_toml};
use crate::common::server::{budgeted, published, roomy, submission, submit_id, with_researcher};
use crate::common::{PROGRAMS, warehouse_with_programs, write};

/// Who reads the command's standard output.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Reader {
    /// A pipe whose reader closed before the command started: its first write fails.
    ClosedBefore,
    /// A pipe whose reader reads one byte, then closes.
    OneByte,
}

/// How long any one command may take before the test gives up on it.
const PATIENCE: Duration = Duration::from_secs(600);

/// Waits for `child`, killing it after [`PATIENCE`].
fn wait(mut child: Child, what: &str) -> ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if started.elapsed() > PATIENCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} still runs after {PATIENCE:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `outreach ARGS` over `wh` with its standard output read by `reader`; returns its exit
/// status and what it wrote to standard error (kept in a file, so that nothing it writes there
/// can block it).
fn run_into(reader: Reader, wh: &Path, args: &[String], stderr: &Path) -> (ExitStatus, String) {
    let what = format!("{reader:?}: outreach {}", args.join(" "));
    let mut cmd: Command = outreach();
    cmd.args(args)
        .env(WAREHOUSE_ENV, wh)
        .stdin(Stdio::null())
        .stderr(std::fs::File::create(stderr).unwrap());
    let status = match reader {
        Reader::ClosedBefore => {
            let (read_end, write_end) = std::io::pipe().unwrap();
            drop(read_end);
            cmd.stdout(write_end);
            let child = cmd.spawn().unwrap();
            drop(cmd);
            wait(child, &what)
        }
        Reader::OneByte => {
            cmd.stdout(Stdio::piped());
            let mut child = cmd.spawn().unwrap();
            let mut stdout = child.stdout.take().unwrap();
            let mut byte = [0u8; 1];
            let _ = stdout.read(&mut byte);
            drop(stdout);
            wait(child, &what)
        }
    };
    (status, std::fs::read_to_string(stderr).unwrap_or_default())
}

/// The quiet end: exit 0, and nothing on standard error that a panic or a failed print
/// writes.
fn assert_quiet(reader: Reader, args: &[String], status: ExitStatus, stderr: &str) {
    assert_eq!(
        status.code(),
        Some(0),
        "{reader:?}: outreach {}: {stderr}",
        args.join(" ")
    );
    for sign in [
        "panicked",
        "Broken pipe",
        "backtrace",
        "failed printing",
        "RUST_BACKTRACE",
    ] {
        assert!(
            !stderr.contains(sign),
            "{reader:?}: outreach {}: {stderr}",
            args.join(" ")
        );
    }
}

/// `args` as owned strings.
fn words(args: &[&str]) -> Vec<String> {
    args.iter().map(|a| a.to_string()).collect()
}

/// A path as one argument.
fn path_arg(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

/// Every command that prints to standard output, with arguments of its own for run `v` (0
/// or 1) where a command changes the warehouse: fresh folders, names and requests.
fn printing_commands(
    tmp: &Path,
    spec: &Path,
    requests: &[String],
    release_id: i64,
    v: usize,
) -> Vec<Vec<String>> {
    let fresh = |name: &str| tmp.join(format!("{name}-{v}"));
    // A warehouse of its own for `budget init` and `budget renew`.
    let budget_dir = fresh("budget");
    std::fs::create_dir_all(&budget_dir).unwrap();
    let budget_wh = path_arg(&warehouse_with_programs(&budget_dir));
    let programs = write(tmp, "programs.csv", PROGRAMS);
    let id = release_id.to_string();
    vec![
        words(&["dictionary"]),
        words(&["completions", "bash"]),
        words(&["man", "--dir", &path_arg(&fresh("man"))]),
        words(&["metrics"]),
        words(&["metrics", "--markdown"]),
        words(&["metrics", "--format", "json"]),
        words(&["metrics", "--exact", "--quarter", "2025Q1"]),
        words(&["status"]),
        words(&["complete-through", "overdose_events", "2025-12-31"]),
        words(&["budget", "show"]),
        words(&["budget", "show", "--format", "json"]),
        words(&["budget", "show", "--format", "csv"]),
        words(&["budget", "allocate", &format!("extra-{v}"), "0.01"]),
        words(&[
            "budget",
            "init",
            "--warehouse",
            &budget_wh,
            "--total",
            "1",
            "--horizon",
            "365",
        ]),
        words(&[
            "budget",
            "renew",
            "--warehouse",
            &budget_wh,
            "--why",
            "a test",
        ]),
        words(&["plan", "--quarter", "2025Q1"]),
        words(&["plan", "--quarter", "2025Q1", "--format", "csv"]),
        words(&[
            "publish",
            "--quarter",
            "2025Q3",
            "--approver",
            "steward",
            "--allow-incomplete",
        ]),
        words(&["release", "--spec", spec.to_str().unwrap()]),
        words(&["releases", "list"]),
        words(&["releases", "list", "--format", "json"]),
        words(&["releases", "list", "--format", "csv"]),
        words(&["releases", "list", "--steward"]),
        words(&["releases", "show", &id]),
        words(&["releases", "show", &id, "--format", "csv"]),
        words(&["releases", "show", &id, "--steward"]),
        words(&[
            "report",
            "--quarter",
            "2025Q1",
            "--out",
            &path_arg(&fresh("report").with_extension("html")),
        ]),
        words(&["requests", "list"]),
        words(&["requests", "show", &requests[0]]),
        words(&["requests", "approve", &requests[v]]),
        words(&["requests", "reject", &requests[2 + v], "--why", "too broad"]),
        words(&[
            "tokens",
            "create",
            "--role",
            "researcher",
            "--name",
            &format!("pipe{v}"),
        ]),
        words(&["tokens", "list"]),
        words(&["tokens", "revoke", &format!("pipe{v}")]),
        words(&[
            "synth",
            "--out",
            &path_arg(&fresh("synth")),
            "--persons",
            "50",
            "--programs",
            "2",
            "--start",
            "2025Q1",
            "--quarters",
            "1",
            "--as-of",
            "2026-01-31",
        ]),
        words(&[
            "ingest",
            "--warehouse",
            &path_arg(&fresh("ingest")),
            "--max-date",
            "2026-06-30",
            &path_arg(&programs),
        ]),
        words(&[
            "demo",
            "--no-serve",
            "--dir",
            &path_arg(&fresh("demo")),
            "--persons",
            "1000",
            "--programs",
            "3",
        ]),
    ]
}

/// Researcher `rosa` with four pending requests of different ρ (so that no two are the same
/// release): two to approve, two to reject.
async fn four_requests(wh: &Path) -> Vec<String> {
    let (st, token) = with_researcher(wh, "rosa", 0.5, roomy()).await;
    let app = app(st);
    let mut ids = Vec::new();
    for rho in [0.1, 0.11, 0.12, 0.13] {
        ids.push(submit_id(&app, &token, &submission(rho)).await);
    }
    ids
}

#[tokio::test(flavor = "multi_thread")]
async fn every_printing_command_ends_quietly_when_its_reader_closes_the_pipe() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let requests = four_requests(&wh).await;
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let release_id = Ledger::open(&wh).unwrap().releases().unwrap()[0].id;
    let spent_before = Ledger::open(&wh).unwrap().show().unwrap().spent_rho;
    let stderr = tmp.path().join("stderr.txt");
    for (v, reader) in [Reader::ClosedBefore, Reader::OneByte]
        .into_iter()
        .enumerate()
    {
        for args in printing_commands(tmp.path(), &spec, &requests, release_id, v) {
            let (status, err) = run_into(reader, &wh, &args, &stderr);
            assert_quiet(reader, &args, status, &err);
        }
        if reader == Reader::ClosedBefore {
            // Nothing the spending commands did was lost with their output.
            assert_committed(&wh, &requests, tmp.path(), spent_before);
        }
    }
    // `serve` prints its address once it listens: on a closed pipe it ends quietly instead
    // of serving with no one told where.
    let args = words(&["serve", "--addr", "127.0.0.1:0"]);
    let (status, err) = run_into(Reader::ClosedBefore, &wh, &args, &stderr);
    assert_quiet(Reader::ClosedBefore, &args, status, &err);
}

/// What the first run's spending commands committed, though no one read their output.
fn assert_committed(wh: &Path, requests: &[String], tmp: &Path, spent_before: f64) {
    let ledger = Ledger::open(wh).unwrap();
    let releases = ledger.releases().unwrap();
    // `release`: debited and released.
    let mine: Vec<_> = releases
        .iter()
        .filter(|r| r.name == "persons per program and quarter")
        .collect();
    assert_eq!(mine.len(), 1, "{releases:?}");
    assert_eq!(mine[0].status, "released");
    assert_eq!(mine[0].allocation, "std");
    assert!((mine[0].debit_rho - 0.1).abs() < 1e-12);
    let view = ledger.show().unwrap();
    let std = view.allocations.iter().find(|a| a.name == "std").unwrap();
    assert!((std.spent_rho - 0.1).abs() < 1e-9, "{view:?}");
    // `publish`: the quarter is published, both releases debited.
    assert!(ledger.current_publication("2025Q3").unwrap().is_some());
    assert!(view.spent_rho > spent_before + 0.1, "{view:?}");
    // `requests approve`: released, from the researcher's allocation; `reject`: recorded.
    let queue = Queue::open(wh).unwrap();
    let approved = queue.get(&requests[0]).unwrap();
    assert_eq!(approved.state.as_str(), "released");
    let rid = approved
        .release_id
        .expect("the approved request names its release");
    let run = releases.iter().find(|r| r.id == rid).unwrap();
    assert_eq!(run.status, "released");
    assert_eq!(run.allocation, "researcher:rosa");
    assert_eq!(queue.get(&requests[2]).unwrap().state.as_str(), "rejected");
    // `tokens create`: the token is kept (and `tokens revoke` revoked it).
    let token = queue.tokens().unwrap();
    let token = token.iter().find(|t| t.name == "pipe0").unwrap();
    assert!(token.revoked_at.is_some());
    // `ingest`: the load is committed.
    let loaded = Warehouse::open(tmp.join("ingest-0"))
        .unwrap()
        .manifest()
        .unwrap();
    assert_eq!(loaded.loads.len(), 1, "{loaded:?}");
    assert_eq!(loaded.loads[0].files[0].table, "programs");
    assert_eq!(loaded.loads[0].files[0].rows_read, 3);
}

/// `outreach ARGS` over `wh` with its standard error a pipe whose reader closed before it
/// started; returns its exit status and standard output.
fn with_stderr_closed(wh: &Path, args: &[&str]) -> (Option<i32>, String) {
    let (read_end, write_end) = std::io::pipe().unwrap();
    drop(read_end);
    let out = outreach()
        .args(args)
        .env(WAREHOUSE_ENV, wh)
        .stdin(Stdio::null())
        .stderr(write_end)
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[test]
fn a_closed_standard_error_changes_no_outcome() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    Ledger::open(&wh).unwrap().allocate("std", 1.0).unwrap();
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let spec = spec.to_str().unwrap();
    // The token goes to standard output, the advice about it to standard error.
    let (code, token) = with_stderr_closed(
        &wh,
        &["tokens", "create", "--role", "researcher", "--name", "rosa"],
    );
    assert_eq!(code, Some(0), "{token}");
    assert!(!token.trim().is_empty());
    // The exact figures' banner goes to standard error.
    let (code, figures) = with_stderr_closed(&wh, &["metrics", "--exact", "--quarter", "2025Q1"]);
    assert_eq!(code, Some(0), "{figures}");
    assert!(figures.contains("program_id"), "{figures}");
    // A release, then the same again: its note that nothing was spent goes to standard error.
    let (code, first) = with_stderr_closed(&wh, &["release", "--spec", spec, "--format", "json"]);
    assert_eq!(code, Some(0), "{first}");
    let (code, again) = with_stderr_closed(&wh, &["release", "--spec", spec, "--format", "json"]);
    assert_eq!(code, Some(0), "{again}");
    assert_eq!(first, again);
    // An error's message goes to standard error: its exit code stays the fault's.
    let (code, _) = with_stderr_closed(&wh, &["releases", "show", "999"]);
    assert_eq!(code, Some(2));
}
