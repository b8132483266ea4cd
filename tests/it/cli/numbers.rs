//! Numbers are parsed by value parsers: `NaN`, infinities, negatives, zero where it means
//! nothing, and values past what the code behind a flag can hold are usage errors, exit 2,
//! whose message names the flag and the range it takes, before anything is read or written.

use crate::common::releases::outreach;

/// Refused by every number: not finite.
const NOT_NUMBERS: [&str; 3] = ["inf", "nan", "-inf"];

/// A command, one of its numbers, the range its message must give, and values it refuses
/// beside [`NOT_NUMBERS`].
struct Case<'a> {
    command: &'a [&'a str],
    flag: &'a str,
    range: String,
    refused: &'a [&'a str],
}

fn case<'a>(
    command: &'a [&'a str],
    flag: &'a str,
    range: &str,
    refused: &'a [&'a str],
) -> Case<'a> {
    Case {
        command,
        flag,
        range: range.to_string(),
        refused,
    }
}

#[test]
fn bad_numbers_are_refused_naming_the_flag_and_its_range() {
    let tmp = tempfile::tempdir().unwrap();
    let nowhere = tmp.path().join("never-made");
    let wh = nowhere.to_str().unwrap();
    let serve: &[&str] = &["serve", "--warehouse", wh];
    let init: &[&str] = &["budget", "init", "--warehouse", wh];
    let renew: &[&str] = &["budget", "renew", "--warehouse", wh, "--why", "x"];
    let allocate: &[&str] = &["budget", "allocate", "--warehouse", wh, "std"];
    let release: &[&str] = &["release", "--warehouse", wh, "--query", "q.sql"];
    let publish: &[&str] = &[
        "publish",
        "--warehouse",
        wh,
        "--quarter",
        "2025Q1",
        "--approver",
        "x",
    ];
    let plan: &[&str] = &["plan", "--warehouse", wh, "--quarter", "2025Q1"];
    let ingest: &[&str] = &["ingest", "--warehouse", wh];
    let synth: &[&str] = &["synth", "--out", wh];
    let demo: &[&str] = &["demo", "--no-serve", "--dir", wh];
    // Refused whatever the flag: too big to be anything, negative, zero.
    let most: &[&str] = &["1e300", "-1", "0"];
    // Where 0 means something (no threshold, no δ, any seed).
    let from_zero: &[&str] = &["1e300", "-1"];
    // Where any finite positive number is taken (a ρ, a σ).
    let positive: &[&str] = &["-1", "0"];
    let cases = [
        case(serve, "--timeout-seconds", "from 0.001 to 3600", most),
        case(
            serve,
            "--header-read-timeout-seconds",
            "from 0.001 to 3600",
            &["1e300", "-1", "0", "3601", "1e-12"],
        ),
        case(
            serve,
            "--per-ip-per-second",
            "from 1e-6 to 1e9",
            &["1e300", "-1", "0", "1e-7"],
        ),
        case(
            serve,
            "--per-token-per-minute",
            "from 6e-5 to 1e9",
            &["1e300", "-1", "0", "5e-5"],
        ),
        case(
            serve,
            "--per-ip-burst",
            "from 1 to 4294967295",
            &["1e300", "-1", "0", "1.5", "4294967296"],
        ),
        case(serve, "--per-token-burst", "from 1 to 4294967295", most),
        case(
            serve,
            "--max-body-bytes",
            &format!("from 1 to {}", usize::MAX),
            most,
        ),
        case(
            serve,
            "--max-connections",
            "from 1 to 1048576",
            &["1e300", "-1", "0", "1048577", "18446744073709551615"],
        ),
        case(serve, "--small-cell", "at least 0", &["-1"]),
        case(init, "--total", "more than 0", positive),
        case(
            init,
            "--horizon",
            "from 1 to 3650",
            &["1e300", "-1", "0", "3651", "4294967296"],
        ),
        case(
            init,
            "--delta",
            "from 0 up to, not including, 1",
            &["1e300", "-1", "1"],
        ),
        case(
            init,
            "--display-delta",
            "more than 0 and less than 1",
            &["1e300", "-1", "0", "1"],
        ),
        case(init, "--min-scale", "more than 0", positive),
        case(renew, "--total", "more than 0", positive),
        case(
            renew,
            "--delta",
            "from 0 up to, not including, 1",
            from_zero,
        ),
        case(renew, "--horizon", "from 1 to 3650", most),
        case(allocate, "<RHO>", "at least 0", &["-1"]),
        case(release, "--k", "from 1 to 64", &["1e300", "-1", "0", "65"]),
        case(release, "--rho", "more than 0", positive),
        case(
            release,
            "--delta",
            "from 0 up to, not including, 1",
            from_zero,
        ),
        case(publish, "--sigma", "more than 0", positive),
        case(publish, "--k", "from 1 to 64", most),
        case(publish, "--equity-sigma", "more than 0", positive),
        case(plan, "--sigma", "more than 0", positive),
        case(plan, "--k", "from 1 to 64", most),
        case(plan, "--equity-sigma", "more than 0", positive),
        case(plan, "--at", &format!("from 1 to {}", u64::MAX), most),
        case(
            plan,
            "--target-halfwidth",
            "more than 0 and less than 1",
            &["1e300", "-1", "0", "1"],
        ),
        case(
            ingest,
            "--max-reject-rate",
            "from 0 to 1",
            &["1e300", "-1", "1.5"],
        ),
        case(
            synth,
            "--programs",
            "from 1 to 999",
            &["1e300", "-1", "0", "1000"],
        ),
        case(
            synth,
            "--persons",
            "from 1 to 9999999",
            &["1e300", "-1", "0", "10000000"],
        ),
        // `synth` works out the period's last day before its own checks: 4294967295 quarters
        // must stop at the parser.
        case(
            synth,
            "--quarters",
            "from 1 to 80",
            &["1e300", "-1", "0", "81", "4294967295"],
        ),
        case(
            synth,
            "--seed",
            &format!("from 0 to {}", u64::MAX),
            from_zero,
        ),
        case(demo, "--persons", "from 1 to 9999999", most),
        case(demo, "--programs", "from 1 to 999", most),
        case(
            demo,
            "--seed",
            &format!("from 0 to {}", u64::MAX),
            from_zero,
        ),
    ];
    for case in &cases {
        for value in NOT_NUMBERS.iter().chain(case.refused) {
            let mut args: Vec<String> = case.command.iter().map(|s| s.to_string()).collect();
            if case.flag.starts_with("--") {
                args.push(format!("{}={value}", case.flag));
            } else {
                // A positional argument, such as `budget allocate NAME RHO`; after `--`, so
                // that `-inf` is not read as flags.
                args.extend(["--".to_string(), value.to_string()]);
            }
            let out = outreach().args(&args).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
            assert!(
                err.contains(case.flag) && err.contains(&case.range),
                "{args:?}: the message must name {} and {}: {err}",
                case.flag,
                case.range
            );
            assert!(!err.contains("panicked"), "{args:?}: {err}");
        }
    }
    assert!(!nowhere.exists());
}

/// The release's noise scales, written NAME=SCALE, are refused the same way.
#[test]
fn a_bad_noise_scale_of_the_flag_form_names_the_flag_and_its_range() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("never-made");
    for value in ["persons=inf", "persons=nan", "persons=-1", "persons=0"] {
        let out = outreach()
            .args(["release", "--warehouse"])
            .arg(&wh)
            .args(["--query", "q.sql", "--scale", value])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{value}: {err}");
        assert!(
            err.contains(&format!("--scale {value}")) && err.contains("more than 0"),
            "{value}: {err}"
        );
    }
    assert!(!wh.exists());
}
