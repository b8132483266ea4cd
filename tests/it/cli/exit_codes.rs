//! Who is at fault, and what that means to a caller: the exit code of `outreach` and the
//! HTTP status of the API, from one classification (`Fault`). Errors that are the command
//! line's (usage) and the code's own (internal) have their own variants.

use axum::http::StatusCode;
use outreach_warehouse::api::ApiError;
use outreach_warehouse::{Error, Fault};

#[test]
fn each_fault_has_its_documented_exit_code_and_usage_shares_claps_2() {
    // README, "Exit codes": clap exits 2 on its own usage errors, so ours do too.
    assert_eq!(Fault::Usage.exit_code(), 2);
    assert_eq!(Fault::BadInput.exit_code(), 2);
    assert_eq!(Fault::Busy.exit_code(), 3);
    assert_eq!(Fault::BudgetExhausted.exit_code(), 4);
    assert_eq!(Fault::Internal.exit_code(), 1);
}

#[test]
fn a_usage_error_is_the_command_lines_fault_and_an_internal_one_is_a_500() {
    let usage = Error::Usage("--cell x: write COLUMN=DOMAIN".into());
    assert_eq!(usage.fault(), Fault::Usage);
    assert_eq!(usage.fault().exit_code(), 2);
    assert_eq!(usage.to_string(), "--cell x: write COLUMN=DOMAIN");
    assert_eq!(ApiError::from(usage).status(), StatusCode::BAD_REQUEST);

    let internal = Error::Internal("the report template failed: no such template".into());
    assert_eq!(internal.fault(), Fault::Internal);
    assert_eq!(internal.fault().exit_code(), 1);
    assert!(internal.to_string().starts_with("internal: "));
    let api = ApiError::from(internal);
    assert_eq!(api.status(), StatusCode::INTERNAL_SERVER_ERROR);
    // The client sees no internals.
    assert_eq!(api.to_string(), "internal error");
}

/// `outreach ARGS` without a warehouse from the environment.
fn outreach(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(args)
        .env_remove(outreach_warehouse::cli::WAREHOUSE_ENV)
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

#[test]
fn a_bad_value_of_the_release_flags_is_a_usage_error_that_names_the_flag() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().to_str().unwrap();
    let base = [
        "release",
        "--warehouse",
        wh,
        "--query",
        "q.sql",
        "--k",
        "1",
        "--allocation",
        "a",
        "--rho",
        "0.1",
    ];
    for (flag, value) in [
        ("--cell", "program_id"),
        ("--cell", "program_id=everything"),
        ("--stat", "n:median"),
        ("--stat", "n:sum:0:x"),
        ("--scale", "n=wide"),
        ("--ratio", "r"),
    ] {
        let mut args = base.to_vec();
        args.extend([flag, value]);
        if flag != "--cell" {
            args.extend(["--cell", "program_id=programs"]);
        }
        if flag != "--stat" {
            args.extend(["--stat", "n:count"]);
        }
        let out = outreach(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flag} {value}: {stderr}");
        // The command line's fault, named as such: not a release spec's.
        assert!(
            stderr.starts_with(&format!("error: {flag} {value}")),
            "{flag} {value}: {stderr}"
        );
        assert!(!stderr.contains("release spec"), "{flag} {value}: {stderr}");
    }
}

#[test]
fn bad_serve_limits_are_usage_errors_that_name_the_flag_and_never_panic() {
    let tmp = tempfile::tempdir().unwrap();
    // Never created: every case must stop at the flags, before the warehouse is looked at.
    let wh = tmp.path().join("missing");
    let wh = wh.to_str().unwrap();
    let cases: &[(&str, &[&str])] = &[
        (
            "--timeout-seconds",
            &[
                "0", "-1", "-0.5", "NaN", "inf", "-inf", "1e300", "1e-12", "3601", "thirty",
            ],
        ),
        ("--per-ip-per-second", &["0", "-1", "NaN", "inf", "1e300"]),
        (
            "--per-token-per-minute",
            &["0", "-2", "NaN", "inf", "1e300"],
        ),
        ("--small-cell", &["-1", "NaN", "inf"]),
        ("--per-ip-burst", &["0", "-1", "1.5"]),
        ("--per-token-burst", &["0"]),
        ("--max-body-bytes", &["0", "-1"]),
    ];
    for (flag, values) in cases {
        for value in *values {
            // `serve` and `demo` share the limits.
            let joined = format!("{flag}={value}");
            let mut commands: Vec<Vec<&str>> = vec![
                vec!["serve", "--warehouse", wh, joined.as_str()],
                vec!["demo", "--no-serve", "--dir", wh, joined.as_str()],
            ];
            // The flag and its value as two words too; clap reads `-inf` so written as
            // short flags, not as a value.
            if *value != "-inf" {
                commands.push(vec!["serve", "--warehouse", wh, *flag, *value]);
            }
            for args in commands {
                let out = outreach(&args);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
                assert!(stderr.contains(&format!("'{flag}")), "{args:?}: {stderr}");
                assert!(stderr.contains("invalid value"), "{args:?}: {stderr}");
                assert!(
                    !stderr.contains("panicked") && !stderr.contains("backtrace"),
                    "{args:?}: {stderr}"
                );
            }
        }
    }
    assert!(!std::path::Path::new(wh).exists());
    // The edges of each range are accepted: `serve` gets past the flags and stops at the
    // missing warehouse instead.
    let out = outreach(&[
        "serve",
        "--warehouse",
        wh,
        "--timeout-seconds",
        "3600",
        "--per-ip-per-second",
        "1e9",
        "--per-token-per-minute",
        "0.5",
        "--per-ip-burst",
        "1",
        "--max-body-bytes",
        "1",
        "--small-cell",
        "0",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(!stderr.contains("invalid value"), "{stderr}");
    assert!(stderr.contains("no warehouse"), "{stderr}");
}
