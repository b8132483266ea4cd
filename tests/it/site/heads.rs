//! Anyone holding an old head sees a restart: the mirror keeps every signed head
//! (`v1/ledger/heads/{size}.json`), and `outreach verify --since HEAD_FILE` passes only when
//! today's chain extends the saved head, directly or across a recorded recovery that cites
//! it; a rolled-back or restarted chain fails, naming the entry where the two part.

use std::path::{Path, PathBuf};
use std::process::Output;

use outreach_warehouse::ledger::{ChainEntry, Ledger};
use serde_json::Value;

use super::{export, files, run};
use crate::common::server::budgeted;

/// Copies the folder `from` into `to`, whole.
fn copy_dir(from: &Path, to: &Path) {
    for f in files(from) {
        let target = to.join(&f);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::copy(from.join(&f), &target).unwrap();
    }
}

/// `outreach verify SITE --public-key KEY [--since HEAD]`.
fn verify(wh: &Path, site: &Path, since: Option<PathBuf>) -> Output {
    let key = Ledger::open(wh).unwrap().public_key_hex().unwrap();
    let mut args = vec![
        "verify".to_string(),
        site.to_string_lossy().into_owned(),
        "--public-key".to_string(),
        key,
    ];
    if let Some(head) = since {
        args.push("--since".into());
        args.push(head.to_string_lossy().into_owned());
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    run(wh, &args)
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn ok(out: &Output) -> String {
    assert!(out.status.success(), "{}", stderr(out));
    stdout(out)
}

/// Publishes `quarter` through the command line.
fn publish(wh: &Path, quarter: &str) {
    ok(&run(
        wh,
        &["publish", "--quarter", quarter, "--approver", "steward"],
    ));
}

fn chain(wh: &Path) -> Vec<ChainEntry> {
    Ledger::open(wh).unwrap().chain().unwrap()
}

/// A warehouse with 2025Q1 published, its mirror in `tmp/site`, and a copy of that mirror
/// as a reader saved it (`tmp/saved`).
fn warehouse_and_saved_mirror(tmp: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let wh = budgeted(tmp, "2025-12-31");
    publish(&wh, "2025Q1");
    let site = tmp.join("site");
    export(&wh, &site, &[]);
    let saved = tmp.join("saved");
    copy_dir(&site, &saved);
    (wh, site, saved)
}

#[test]
fn the_mirror_keeps_every_signed_head_and_verify_since_passes_on_a_chain_that_extends_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, site, saved) = warehouse_and_saved_mirror(tmp.path());
    let head: Value =
        serde_json::from_slice(&std::fs::read(saved.join("v1/ledger/head.json")).unwrap()).unwrap();
    let size = head["size"].as_i64().unwrap();
    publish(&wh, "2025Q2");
    export(&wh, &site, &[]);
    // Every head the warehouse signed is in the mirror, the one the reader saved among them,
    // with the same bytes.
    let signed = Ledger::open(&wh).unwrap().signed_heads().unwrap();
    assert!(signed.len() > 2);
    for h in &signed {
        let file = site.join(format!("v1/ledger/heads/{}.json", h.size));
        let served: Value = serde_json::from_slice(&std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(served["hash"], h.hash.as_str(), "{}", file.display());
        assert!(
            site.join(format!("v1/ledger/heads/{}.csv", h.size))
                .is_file()
        );
    }
    assert_eq!(
        std::fs::read(site.join(format!("v1/ledger/heads/{size}.json"))).unwrap(),
        std::fs::read(saved.join("v1/ledger/head.json")).unwrap(),
    );
    // Today's chain extends the saved head, and any older head.
    let out = ok(&verify(&wh, &site, Some(saved.join("v1/ledger/head.json"))));
    assert!(out.contains("extends the head you saved"), "{out}");
    let first = site.join(format!("v1/ledger/heads/{}.json", signed[0].size));
    ok(&verify(&wh, &site, Some(first)));
    // A head file that is no signed head is refused by name.
    let forged = tmp.path().join("forged.json");
    let mut bad = head;
    bad["size"] = Value::from(size + 1);
    std::fs::write(&forged, bad.to_string()).unwrap();
    let out = verify(&wh, &site, Some(forged));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("signature does not verify"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn verify_since_fails_on_a_rolled_back_chain_naming_the_entry_where_the_two_part() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    publish(&wh, "2025Q1");
    // The whole warehouse as it was, watermark and all: what a rollback puts back.
    let old = tmp.path().join("old");
    copy_dir(&wh, &old);
    publish(&wh, "2025Q2");
    let site = tmp.path().join("site");
    export(&wh, &site, &[]);
    let saved = tmp.path().join("saved");
    copy_dir(&site, &saved);
    let seen = chain(&wh);

    // Rolled back to the copy: today's chain stops before the entries the reader saw.
    let rolled = tmp.path().join("rolled");
    export(&old, &rolled, &[]);
    let short = chain(&old).len();
    assert!(short < seen.len());
    let out = verify(&old, &rolled, Some(saved.join("v1/ledger/head.json")));
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains(&format!("part at entry {short}")) && err.contains("rolled back"),
        "{err}"
    );
    // The head file alone (no saved pages beside it) names the same entry.
    let lone = tmp.path().join("head.json");
    std::fs::copy(saved.join("v1/ledger/head.json"), &lone).unwrap();
    let err = stderr(&verify(&old, &rolled, Some(lone)));
    assert!(err.contains(&format!("part at entry {short}")), "{err}");

    // Then the rolled-back warehouse publishes the same quarter again: a chain as long as the
    // one the reader saw, which parts from it where the new draw's numbers are.
    publish(&old, "2025Q2");
    export(&old, &rolled, &[]);
    let again = chain(&old);
    let parts = seen
        .iter()
        .zip(&again)
        .position(|(a, b)| a.hash != b.hash)
        .expect("the chains part");
    assert!(parts >= short, "they share the entries before the rollback");
    let out = verify(&old, &rolled, Some(saved.join("v1/ledger/head.json")));
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(err.contains(&format!("part at entry {parts}")), "{err}");
}

#[test]
fn verify_since_passes_across_a_recorded_recovery_and_fails_on_a_silent_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, site, saved) = warehouse_and_saved_mirror(tmp.path());
    let saved_head = saved.join("v1/ledger/head.json");
    let older = Ledger::open(&wh).unwrap().signed_heads().unwrap()[0].size;

    // A silent restart: the same exports in a new folder, a new ledger and chain.
    let other = budgeted(&tmp.path().join("restart"), "2025-12-31");
    publish(&other, "2025Q1");
    let restarted = tmp.path().join("restarted");
    export(&other, &restarted, &[]);
    let out = verify(&other, &restarted, Some(saved_head.clone()));
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("part at entry 0") && err.contains("started over"),
        "{err}"
    );

    // A recorded recovery: the ledger is lost, and `budget recover` cites its last head.
    std::fs::rename(wh.join("ledger.sqlite"), tmp.path().join("lost.sqlite")).unwrap();
    ok(&run(
        &wh,
        &[
            "budget",
            "recover",
            "--why",
            "the disk failed",
            "--total",
            "20",
            "--horizon",
            "365",
        ],
    ));
    ok(&run(
        &wh,
        &["budget", "allocate", "standard-releases", "10"],
    ));
    publish(&wh, "2025Q1");
    export(&wh, &site, &[]);
    let out = ok(&verify(&wh, &site, Some(saved_head)));
    assert!(
        out.contains("recovery entry") && out.contains("the disk failed"),
        "{out}"
    );
    // The recovery cites the last head only: an older head of the lost chain is not shown
    // to be extended, and the failure says where and why.
    let out = verify(
        &wh,
        &site,
        Some(saved.join(format!("v1/ledger/heads/{older}.json"))),
    );
    assert!(!out.status.success(), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("part at entry 1") && err.contains("older"),
        "{err}"
    );
}
