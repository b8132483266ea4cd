//! Backups that restore (`src/backup.rs`): a backup taken while releases run holds every
//! release committed before it began and restores to a warehouse whose ledger passes its
//! checks; a damaged backup (a changed byte, a missing file, a changed checksum line) is
//! refused by name and the target is left as it was; restore refuses a folder that is
//! neither empty nor a warehouse, and a warehouse that has debited more than the backup.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use outreach_warehouse::backup::{self, CHECKSUMS_FILE};
use outreach_warehouse::ledger::{LEDGER_FILE, Ledger};
use outreach_warehouse::privacy::{ReleaseOutcome, ReleaseRequest, ReleaseSpec};
use outreach_warehouse::warehouse::Warehouse;

use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, budget, ok, outreach, spec_toml};
use crate::common::{privacy_warehouse, tree};

/// A release of persons per program and quarter at `rho`: each ρ is its own release.
fn release(wh: &Path, rho: f64) -> ReleaseOutcome {
    let spec: ReleaseSpec = toml::from_str(&spec_toml(2, rho, PERSONS_SQL, PERSONS_STAT)).unwrap();
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(outreach_warehouse::privacy::release(
        wh,
        &ReleaseRequest {
            spec,
            approver: "steward".into(),
        },
    ))
    .unwrap()
}

/// The privacy warehouse in `dir/wh` with a budget of ρ 10 in `std` and one release.
fn warehouse_with_a_release(dir: &Path) -> PathBuf {
    let wh = privacy_warehouse(dir);
    budget(&wh, 10.0);
    assert!(release(&wh, 0.05).fresh);
    wh
}

fn restore(backup: &Path, to: &Path) -> Output {
    outreach()
        .arg("restore")
        .arg(backup)
        .arg("--to")
        .arg(to)
        .output()
        .unwrap()
}

/// A refusal with exit 2 whose message names `file`; returns the message.
fn refused(out: &Output, file: &str) -> String {
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains(file),
        "the message does not name {file}: {err}"
    );
    err
}

/// Copies the folder `from` into the new folder `to`, file by file.
fn copy_tree(from: &Path, to: &Path) {
    for (rel, bytes) in tree(from) {
        let dest = to.join(rel);
        std::fs::create_dir_all(dest.parent().unwrap()).unwrap();
        std::fs::write(dest, bytes).unwrap();
    }
}

/// The names of the folders beside `dir` (its siblings), to see that no temporary is left.
fn siblings(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

/// The ids of the releases a warehouse's ledger holds, each released.
fn released_ids(wh: &Path) -> BTreeSet<i64> {
    let l = Ledger::open(wh).unwrap();
    l.releases()
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "released")
        .map(|r| r.id)
        .collect()
}

#[test]
fn a_backup_taken_during_ten_concurrent_releases_restores_every_release_committed_before_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 10.0);
    let finished: Arc<Mutex<Vec<i64>>> = Arc::default();
    let threads: Vec<_> = (0..10u32)
        .map(|i| {
            let wh = wh.clone();
            let finished = Arc::clone(&finished);
            std::thread::spawn(move || {
                let out = release(&wh, 0.01 * f64::from(i + 1));
                assert!(out.fresh, "release {i} was not a new debit");
                finished.lock().unwrap().push(out.id);
            })
        })
        .collect();
    // Back up once some releases have committed and, most likely, others still run.
    let deadline = Instant::now() + Duration::from_secs(300);
    while finished.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "no release finished");
        std::thread::sleep(Duration::from_millis(5));
    }
    let before: BTreeSet<i64> = finished.lock().unwrap().iter().copied().collect();
    let out = tmp.path().join("backups").join("wh-1");
    let printed = ok(&outreach()
        .args(["backup", "--warehouse"])
        .arg(&wh)
        .arg("--out")
        .arg(&out)
        .output()
        .unwrap());
    assert!(printed.contains(CHECKSUMS_FILE), "{printed}");
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(released_ids(&wh).len(), 10);
    // The backup is whole: no temporary folder beside it, no claims, staging or lock in it.
    assert_eq!(siblings(&out), BTreeSet::from(["wh-1".to_string()]));
    let files = tree(&out);
    assert!(files.contains_key(LEDGER_FILE) && files.contains_key("manifest.json"));
    assert!(
        files
            .keys()
            .all(|f| !f.starts_with("ledger-claims") && !f.starts_with(".staging") && f != ".lock"),
        "{:?}",
        files.keys()
    );
    assert!(!files.contains_key(&format!("{LEDGER_FILE}-wal")));
    // Every file is in the checksum list, and no other.
    let listed: BTreeSet<String> = String::from_utf8(files[CHECKSUMS_FILE].clone())
        .unwrap()
        .lines()
        .map(|l| l.split_once("  ").unwrap().1.to_string())
        .collect();
    let present: BTreeSet<String> = files
        .keys()
        .filter(|f| f.as_str() != CHECKSUMS_FILE)
        .cloned()
        .collect();
    assert_eq!(listed, present);

    let restored = tmp.path().join("restored");
    let printed = ok(&restore(&out, &restored));
    assert!(printed.contains("integrity_check"), "{printed}");
    let l = Ledger::open(&restored).unwrap();
    assert_eq!(l.check().unwrap(), Vec::<String>::new());
    drop(l);
    let held = released_ids(&restored);
    assert!(
        before.is_subset(&held),
        "releases {before:?} finished before the backup began; the restored ledger holds {held:?}"
    );
    assert!(held.is_subset(&released_ids(&wh)));
    // The restored warehouse works: its status, and a new release with a new debit.
    ok(&outreach()
        .args(["status", "--warehouse"])
        .arg(&restored)
        .arg("--verify")
        .output()
        .unwrap());
    let again = release(&restored, 0.2);
    assert!(again.fresh);
    assert_eq!(released_ids(&restored).len(), held.len() + 1);
    assert_eq!(
        Ledger::open(&restored).unwrap().check().unwrap(),
        Vec::<String>::new()
    );
}

#[test]
fn a_damaged_backup_is_refused_by_name_and_the_target_is_left_as_it_was() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_a_release(tmp.path());
    let good = tmp.path().join("good");
    backup::backup(&wh, &good).unwrap();
    let data_file = Warehouse::open(&wh)
        .unwrap()
        .manifest()
        .unwrap()
        .all_data_files()
        .next()
        .unwrap()
        .path
        .clone();
    type Damage = Box<dyn Fn(&Path)>;
    let cases: Vec<(&str, String, Damage)> = vec![
        (
            "a flipped byte in the ledger copy",
            LEDGER_FILE.to_string(),
            Box::new(|b: &Path| {
                let p = b.join(LEDGER_FILE);
                let mut bytes = std::fs::read(&p).unwrap();
                let at = bytes.len() / 2;
                bytes[at] ^= 0x01;
                std::fs::write(&p, bytes).unwrap();
            }) as Damage,
        ),
        (
            "a missing data file",
            data_file.clone(),
            Box::new({
                let f = data_file.clone();
                move |b: &Path| std::fs::remove_file(b.join(&f)).unwrap()
            }) as Damage,
        ),
        (
            "a changed checksum line",
            "manifest.json".to_string(),
            Box::new(|b: &Path| {
                let p = b.join(CHECKSUMS_FILE);
                let text = std::fs::read_to_string(&p).unwrap();
                let changed: Vec<String> = text
                    .lines()
                    .map(|l| match l.split_once("  ") {
                        Some((_, "manifest.json")) => format!("{}  manifest.json", "0".repeat(64)),
                        _ => l.to_string(),
                    })
                    .collect();
                std::fs::write(&p, changed.join("\n") + "\n").unwrap();
            }) as Damage,
        ),
        (
            "a data file's checksum line removed",
            data_file.clone(),
            Box::new({
                let f = data_file.clone();
                move |b: &Path| {
                    let p = b.join(CHECKSUMS_FILE);
                    let text = std::fs::read_to_string(&p).unwrap();
                    let kept: String = text
                        .lines()
                        .filter(|l| !l.ends_with(&format!("  {f}")))
                        .map(|l| format!("{l}\n"))
                        .collect();
                    std::fs::write(&p, kept).unwrap();
                }
            }) as Damage,
        ),
    ];
    for (i, (what, file, damage)) in cases.iter().enumerate() {
        let bad = tmp.path().join(format!("bad-{i}"));
        copy_tree(&good, &bad);
        damage(&bad);
        // Into a new folder: it is not created.
        let new = tmp.path().join(format!("new-{i}"));
        let err = refused(&restore(&bad, &new), file);
        assert!(err.contains("damaged"), "{what}: {err}");
        assert!(!new.exists(), "{what}: the target was created");
        assert!(
            siblings(&new).iter().all(|s| !s.contains(".tmp-")),
            "{what}: a temporary folder was left: {:?}",
            siblings(&new)
        );
        // Over the warehouse itself: not a byte of it changes.
        let before = tree(&wh);
        refused(&restore(&bad, &wh), file);
        assert_eq!(tree(&wh), before, "{what}: the warehouse changed");
    }
    // The undamaged backup restores.
    ok(&restore(&good, &tmp.path().join("new-good")));
}

#[test]
fn restore_refuses_a_folder_that_holds_files_but_no_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_a_release(tmp.path());
    let b = tmp.path().join("b");
    backup::backup(&wh, &b).unwrap();
    let other = tmp.path().join("notes");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("minutes.txt"), "steering group, October").unwrap();
    let err = refused(&restore(&b, &other), "notes");
    assert!(err.contains("no warehouse"), "{err}");
    assert_eq!(
        tree(&other).into_keys().collect::<Vec<_>>(),
        ["minutes.txt"]
    );
    // An empty folder is restored into.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    ok(&restore(&b, &empty));
    assert_eq!(released_ids(&empty), released_ids(&wh));
}

#[test]
fn a_backup_is_written_only_into_a_new_or_empty_folder_outside_the_warehouse() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_a_release(tmp.path());
    let earlier = tmp.path().join("earlier");
    backup::backup(&wh, &earlier).unwrap();
    let before = tree(&earlier);
    let out = outreach()
        .args(["backup", "--warehouse"])
        .arg(&wh)
        .arg("--out")
        .arg(&earlier)
        .output()
        .unwrap();
    let err = refused(&out, "earlier");
    assert!(err.contains("not empty"), "{err}");
    assert_eq!(tree(&earlier), before);
    let inside = outreach()
        .args(["backup", "--warehouse"])
        .arg(&wh)
        .arg("--out")
        .arg(wh.join("backup"))
        .output()
        .unwrap();
    let err = refused(&inside, "inside the warehouse");
    assert!(!wh.join("backup").exists(), "{err}");
}

#[test]
fn restore_over_a_warehouse_that_debited_more_since_is_refused_and_one_that_did_not_is_replaced() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_a_release(tmp.path());
    let b = tmp.path().join("b");
    backup::backup(&wh, &b).unwrap();
    // A data file lost since the backup: restoring over the warehouse brings it back, and the
    // warehouse it replaces is moved aside, not deleted.
    let lost = Warehouse::open(&wh)
        .unwrap()
        .manifest()
        .unwrap()
        .all_data_files()
        .next()
        .unwrap()
        .path
        .clone();
    std::fs::remove_file(wh.join(&lost)).unwrap();
    let printed = ok(&restore(&b, &wh));
    assert!(wh.join(&lost).is_file());
    let aside: Vec<String> = siblings(&wh)
        .into_iter()
        .filter(|s| s.starts_with("wh.replaced-"))
        .collect();
    assert_eq!(aside.len(), 1, "{printed}");
    assert!(printed.contains(&aside[0]), "{printed}");
    ok(&outreach()
        .args(["status", "--warehouse"])
        .arg(&wh)
        .arg("--verify")
        .output()
        .unwrap());
    // A debit after the backup: the older backup is refused over the warehouse, naming the
    // recovery, and the warehouse keeps its ledger.
    assert!(release(&wh, 0.07).fresh);
    let ids = released_ids(&wh);
    assert_eq!(ids.len(), 2);
    let err = refused(&restore(&b, &wh), "budget recover");
    assert!(err.contains("debited more"), "{err}");
    assert_eq!(released_ids(&wh), ids);
    let spent = Ledger::open(&wh).unwrap().show().unwrap().lifetime_rho;
    assert!((spent - 0.12).abs() < 1e-9, "{spent}");
}
