//! The commands that take a warehouse read it from `--warehouse` or `OUTREACH_WAREHOUSE`, and
//! say so in their help; the budget commands give allocations their δ and show the lifetime δ.

use std::path::Path;
use std::process::Output;

use outreach_warehouse::cli::WAREHOUSE_ENV;

use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, budget, ok, outreach, spec_toml};
use crate::common::{privacy_warehouse, write};

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
