//! The command line is a contract: every flag of every command is honoured or refused, and a
//! test shows which. [`FLAG_TESTS`] names, for each command and flag of the parser's tree, the
//! test that shows the flag changing the outcome or being refused; a flag added without one
//! fails here. The same walk checks that every command's help ends with examples that parse,
//! and the tests below show flags that cannot apply together refused by the parser, naming
//! both, before anything is read or spent.

use std::collections::BTreeSet;
use std::path::Path;

use clap::{CommandFactory, Parser};
use outreach_warehouse::cli::Cli;
use outreach_warehouse::ledger::Ledger;

use crate::common::releases::{PERSONS_SQL, PERSONS_STAT, budget, ok, outreach, spec_toml};
use crate::common::{privacy_warehouse, write};

/// For each command (its words after `outreach`) and flag (`--long`, or a positional
/// argument's id): the test that shows the flag honoured or refused.
const FLAG_TESTS: &[(&str, &str, &str)] = &[
    (
        "outreach",
        "--quiet",
        "quiet_hides_the_progress_bar_on_a_terminal",
    ),
    ("outreach demo", "--dir", DEMO),
    ("outreach demo", "--persons", DEMO),
    ("outreach demo", "--programs", DEMO),
    ("outreach demo", "--seed", DEMO),
    ("outreach demo", "--no-serve", DEMO),
    // Honoured as `serve` honours them (the same arguments); refused with --no-serve.
    ("outreach demo", "--addr", NO_SERVE),
    ("outreach demo", "--per-ip-per-second", NO_SERVE),
    ("outreach demo", "--per-ip-burst", NO_SERVE),
    ("outreach demo", "--per-token-per-minute", NO_SERVE),
    ("outreach demo", "--per-token-burst", NO_SERVE),
    ("outreach demo", "--max-body-bytes", NO_SERVE),
    ("outreach demo", "--timeout-seconds", NO_SERVE),
    ("outreach demo", "--header-read-timeout-seconds", NO_SERVE),
    ("outreach demo", "--max-connections", NO_SERVE),
    ("outreach demo", "--small-cell", NO_SERVE),
    ("outreach demo", "--trusted-proxy", NO_SERVE),
    ("outreach synth", "--out", SYNTH),
    ("outreach synth", "--programs", SYNTH),
    ("outreach synth", "--persons", SYNTH),
    ("outreach synth", "--start", SYNTH),
    ("outreach synth", "--quarters", SYNTH),
    ("outreach synth", "--seed", SYNTH),
    ("outreach synth", "--as-of", SYNTH),
    ("outreach ingest", "--warehouse", INGEST),
    ("outreach ingest", "--table", INGEST),
    ("outreach ingest", "--max-reject-rate", INGEST),
    ("outreach ingest", "--complete-through", INGEST),
    ("outreach ingest", "--max-date", INGEST),
    ("outreach ingest", "files", INGEST),
    (
        "outreach ingest",
        "--mapping",
        "ingest_through_a_mapping_from_the_command_line_loads_the_police_fixture",
    ),
    ("outreach mapping check", "--mapping", MAPPING_CHECK),
    ("outreach mapping check", "--format", MAPPING_CHECK),
    ("outreach mapping check", "files", MAPPING_CHECK),
    ("outreach ingest", "--corrections", REEXPORT),
    ("outreach ingest", "--snapshot", REEXPORT),
    ("outreach ingest", "--max-retract-rate", REEXPORT),
    ("outreach ingest", "--force-retract", REEXPORT),
    ("outreach complete-through", "--warehouse", INGEST),
    ("outreach complete-through", "table", INGEST),
    ("outreach complete-through", "date", INGEST),
    ("outreach status", "--warehouse", WAREHOUSE),
    ("outreach status", "--verify", STATUS_VERIFY),
    ("outreach publish", "--warehouse", PUBLISH),
    ("outreach publish", "--quarter", PUBLISH),
    ("outreach publish", "--approver", PUBLISH),
    ("outreach publish", "--republish", PUBLISH),
    ("outreach publish", "--allow-incomplete", PUBLISH),
    ("outreach publish", "--sigma", PUBLISH),
    ("outreach publish", "--k", PUBLISH),
    ("outreach publish", "--equity-sigma", PUBLISH),
    ("outreach publish", "--format", FORMAT),
    ("outreach plan", "--warehouse", PLAN),
    ("outreach plan", "--quarter", PLAN),
    ("outreach plan", "--sigma", PLAN),
    ("outreach plan", "--k", PLAN),
    ("outreach plan", "--equity-sigma", PLAN),
    ("outreach plan", "--at", PLAN),
    ("outreach plan", "--target-halfwidth", PLAN),
    ("outreach plan", "--format", FORMAT),
    ("outreach metrics", "--markdown", METRICS),
    ("outreach metrics", "--exact", EXACT),
    ("outreach metrics", "--warehouse", METRICS),
    ("outreach metrics", "--quarter", EXACT),
    ("outreach metrics", "--format", FORMAT),
    (
        "outreach key show",
        "--warehouse",
        "key_show_prints_the_public_key_that_verifies_the_signed_head",
    ),
    ("outreach budget init", "--warehouse", BUDGET),
    ("outreach budget init", "--total", BUDGET),
    ("outreach budget init", "--horizon", BUDGET),
    ("outreach budget init", "--delta", BUDGET),
    ("outreach budget init", "--noise", BUDGET),
    ("outreach budget init", "--display-delta", BUDGET),
    ("outreach budget init", "--min-scale", BUDGET),
    ("outreach budget allocate", "--warehouse", BUDGET),
    ("outreach budget allocate", "name", BUDGET),
    ("outreach budget allocate", "rho", BUDGET),
    ("outreach budget allocate", "--delta", BUDGET),
    ("outreach budget show", "--warehouse", BUDGET_SHOW),
    ("outreach budget show", "--format", BUDGET_SHOW),
    ("outreach budget renew", "--warehouse", BUDGET),
    ("outreach budget renew", "--why", BUDGET),
    ("outreach budget renew", "--total", BUDGET),
    ("outreach budget renew", "--delta", BUDGET),
    ("outreach budget renew", "--horizon", BUDGET),
    ("outreach budget recover", "--warehouse", RECOVER),
    ("outreach budget recover", "--why", RECOVER),
    ("outreach budget recover", "--total", RECOVER),
    ("outreach budget recover", "--horizon", RECOVER),
    ("outreach budget recover", "--delta", RECOVER),
    ("outreach budget recover", "--noise", RECOVER),
    ("outreach budget recover", "--display-delta", RECOVER),
    ("outreach budget recover", "--min-scale", RECOVER),
    ("outreach release", "--warehouse", RELEASE),
    ("outreach release", "--spec", SPEC),
    ("outreach release", "--query", RELEASE),
    ("outreach release", "--cell", RELEASE),
    ("outreach release", "--stat", RELEASE),
    ("outreach release", "--exclusive", RELEASE),
    ("outreach release", "--ratio", RELEASE),
    ("outreach release", "--k", RELEASE),
    ("outreach release", "--rho", RELEASE),
    ("outreach release", "--delta", RELEASE),
    ("outreach release", "--scale", RELEASE),
    ("outreach release", "--allocation", RELEASE),
    ("outreach release", "--name", RELEASE),
    ("outreach release", "--approver", RELEASE),
    ("outreach release", "--format", FORMAT),
    ("outreach releases list", "--warehouse", WAREHOUSE),
    ("outreach releases list", "--format", FORMAT),
    ("outreach releases list", "--steward", PUBLIC_CLI),
    ("outreach releases show", "--warehouse", WAREHOUSE),
    ("outreach releases show", "id", PUBLIC_CLI),
    ("outreach releases show", "--format", FORMAT),
    ("outreach releases show", "--steward", PUBLIC_CLI),
    ("outreach serve", "--warehouse", SERVE),
    ("outreach serve", "--addr", SERVE),
    ("outreach serve", "--per-ip-per-second", SERVE_RATES),
    ("outreach serve", "--per-ip-burst", SERVE_RATES),
    ("outreach serve", "--per-token-per-minute", SERVE_RATES),
    ("outreach serve", "--per-token-burst", SERVE_RATES),
    ("outreach serve", "--max-body-bytes", SERVE_LIMITS),
    ("outreach serve", "--timeout-seconds", SERVE_LIMITS),
    (
        "outreach serve",
        "--header-read-timeout-seconds",
        SERVE_PROXIES,
    ),
    ("outreach serve", "--max-connections", SERVE_LIMITS),
    ("outreach serve", "--small-cell", SERVE_LIMITS),
    ("outreach serve", "--trusted-proxy", SERVE_PROXIES),
    ("outreach report", "--warehouse", REPORT),
    ("outreach report", "--quarter", REPORT),
    ("outreach report", "--out", REPORT),
    ("outreach requests list", "--warehouse", WAREHOUSE),
    ("outreach requests list", "--format", FORMAT),
    ("outreach requests show", "--warehouse", WAREHOUSE),
    (
        "outreach requests show",
        "id",
        "request_ids_are_random_and_count_nothing",
    ),
    ("outreach requests approve", "--warehouse", WAREHOUSE),
    ("outreach requests approve", "id", ROUND_TRIP),
    ("outreach requests approve", "--approver", ROUND_TRIP),
    ("outreach requests approve", "--public", ROUND_TRIP),
    ("outreach requests reject", "--warehouse", WAREHOUSE),
    ("outreach requests reject", "id", ROUND_TRIP),
    ("outreach requests reject", "--why", ROUND_TRIP),
    ("outreach requests reject", "--approver", REJECT_AND_TOKENS),
    ("outreach tokens create", "--warehouse", WAREHOUSE),
    ("outreach tokens create", "--role", ROUND_TRIP),
    ("outreach tokens create", "--name", ROUND_TRIP),
    ("outreach tokens revoke", "--warehouse", WAREHOUSE),
    (
        "outreach tokens revoke",
        "name",
        "a_new_token_for_a_revoked_name_sees_none_of_the_old_holders_requests",
    ),
    ("outreach tokens list", "--warehouse", REJECT_AND_TOKENS),
    (
        "outreach completions",
        "shell",
        "completions_print_a_script_for_each_shell",
    ),
    (
        "outreach man",
        "--dir",
        "man_writes_a_page_for_every_command",
    ),
    ("outreach pseudonymize", "--key-file", PSEUDONYMIZE),
    ("outreach pseudonymize", "--config", PSEUDONYMIZE),
    ("outreach pseudonymize", "input", PSEUDONYMIZE),
    ("outreach pseudonymize", "--out", PSEUDONYMIZE),
    (
        "outreach pseudonymize",
        "--new-key-file",
        "key_files_are_made_once_private_and_checked",
    ),
    ("outreach export-site", "--warehouse", SITE_REFUSED),
    ("outreach export-site", "--out", SITE_MIRROR),
    ("outreach export-site", "--deployment-name", CURATION),
    ("outreach export-site", "--curator", CURATION),
    ("outreach export-site", "--contact", CURATION),
    ("outreach export-site", "--region", CURATION),
    ("outreach export-site", "--shared-keys", CURATION),
    ("outreach verify", "site_or_url", VERIFY),
    ("outreach verify", "--public-key", VERIFY),
    ("outreach verify", "--format", VERIFY),
    ("outreach verify", "--since", VERIFY_SINCE),
    ("outreach disclosure", "--warehouse", CURATION),
    ("outreach disclosure", "--out", CURATION),
    ("outreach disclosure", "--deployment-name", CURATION),
    ("outreach disclosure", "--curator", CURATION),
    ("outreach disclosure", "--contact", CURATION),
    ("outreach disclosure", "--region", CURATION),
    ("outreach disclosure", "--shared-keys", CURATION),
    ("outreach backup", "--warehouse", BACKUP),
    ("outreach backup", "--out", BACKUP),
    ("outreach restore", "backup", BACKUP),
    ("outreach restore", "--to", BACKUP),
];

const PSEUDONYMIZE: &str = "one_survivor_written_differently_in_two_programs_gets_one_key";

const DEMO: &str = "demo_builds_its_warehouse_from_its_flags_and_stops_with_no_serve";
const NO_SERVE: &str = "demo_refuses_the_servers_flags_beside_no_serve";
const SYNTH: &str = "synth_writes_what_its_flags_ask_for";
const INGEST: &str = "ingest_and_complete_through_take_tables_dates_and_rates_from_their_flags";
const REEXPORT: &str =
    "ingest_takes_corrections_snapshots_and_the_retract_threshold_from_its_flags";
/// `--warehouse`, or `OUTREACH_WAREHOUSE` in its place, on every command that takes one.
const WAREHOUSE: &str = "the_warehouse_comes_from_outreach_warehouse_when_the_flag_is_absent";
const PUBLISH: &str = "publish_takes_its_noise_approver_and_permissions_from_its_flags";
const PLAN: &str = "plan_takes_its_noise_survivors_and_target_from_its_flags";
const FORMAT: &str = "format_chooses_json_csv_or_a_table";
const MAPPING_CHECK: &str =
    "mapping_check_reports_unmapped_codes_unused_columns_and_refusals_and_writes_nothing";
const METRICS: &str = "metrics_prints_markdown_and_reads_a_warehouse_only_for_exact";
const EXACT: &str = "the_exact_command_prints_its_banner_on_stderr_and_json_on_stdout";
const BUDGET: &str = "budget_commands_set_what_their_flags_say";
const BUDGET_SHOW: &str = "budget_commands_give_allocations_delta_and_show_lifetime_delta";
const RECOVER: &str =
    "budget_recover_carries_the_lost_spend_over_and_a_quarter_published_again_debits_anew";
const RELEASE: &str = "the_release_flag_form_honours_every_flag";
const SPEC: &str = "release_refuses_every_flag_of_the_flag_form_beside_spec";
const PUBLIC_CLI: &str = "the_public_cli_shows_a_researchers_release_only_once_made_public";
const SERVE: &str = "outreach_serve_answers_over_a_real_socket_and_logs_each_request";
const SERVE_RATES: &str = "outreach_serve_takes_its_rate_limits_from_its_flags";
const SERVE_LIMITS: &str =
    "outreach_serve_takes_its_body_limit_timeout_connection_cap_and_small_cell_from_its_flags";
const SERVE_PROXIES: &str =
    "outreach_serve_takes_the_connection_limits_and_trusted_proxies_from_its_flags";
const REPORT: &str = "outreach_report_writes_a_self_contained_html_and_the_csv_of_every_figure";
const ROUND_TRIP: &str = "a_researcher_round_trip_through_the_cli_and_http";
const REJECT_AND_TOKENS: &str =
    "requests_reject_records_its_approver_and_tokens_list_shows_each_token";
const STATUS_VERIFY: &str =
    "status_verify_checks_every_file_of_an_untouched_warehouse_and_finds_changed_bytes";
const SITE_MIRROR: &str = "the_static_mirror_answers_every_public_route_as_outreach_serve_does";
const SITE_REFUSED: &str =
    "export_site_refuses_a_folder_that_is_not_a_mirror_and_leaves_it_untouched";
const CURATION: &str =
    "the_curators_fields_come_from_the_flags_and_shared_keys_change_the_privacy_unit";
const VERIFY: &str = "verify_passes_on_an_untouched_mirror_and_names_a_missing_or_edited_release";
const VERIFY_SINCE: &str =
    "verify_since_fails_on_a_rolled_back_chain_naming_the_entry_where_the_two_part";
const BACKUP: &str =
    "a_backup_taken_during_ten_concurrent_releases_restores_every_release_committed_before_it";

/// Every command of the tree with the words that run it after `outreach` (none for the
/// root), parents before their subcommands; clap's own `help` subcommand left out.
pub(super) fn commands(root: &clap::Command) -> Vec<(Vec<String>, &clap::Command)> {
    fn walk<'a>(
        cmd: &'a clap::Command,
        words: Vec<String>,
        out: &mut Vec<(Vec<String>, &'a clap::Command)>,
    ) {
        out.push((words.clone(), cmd));
        for sub in cmd.get_subcommands().filter(|s| s.get_name() != "help") {
            let mut more = words.clone();
            more.push(sub.get_name().to_string());
            walk(sub, more, out);
        }
    }
    let mut out = Vec::new();
    walk(root, Vec::new(), &mut out);
    out
}

/// `outreach` and the words of a command, as [`FLAG_TESTS`] writes it.
fn command_name(words: &[String]) -> String {
    std::iter::once("outreach")
        .chain(words.iter().map(String::as_str))
        .collect::<Vec<_>>()
        .join(" ")
}

/// An argument as [`FLAG_TESTS`] writes it: `--long`, or a positional argument's id.
fn flag_name(arg: &clap::Arg) -> String {
    arg.get_long()
        .map_or_else(|| arg.get_id().to_string(), |long| format!("--{long}"))
}

/// Every (command, flag) of the tree, clap's own `--help` and `--version` left out.
fn flags_of(root: &clap::Command) -> BTreeSet<(String, String)> {
    commands(root)
        .into_iter()
        .flat_map(|(words, cmd)| {
            cmd.get_arguments()
                .filter(|a| !matches!(a.get_id().as_str(), "help" | "version"))
                .map(move |a| (command_name(&words), flag_name(a)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// The flags of the tree with no entry in [`FLAG_TESTS`], as `outreach budget init --total`.
fn unlisted(tree: &BTreeSet<(String, String)>) -> Vec<String> {
    let listed: BTreeSet<(String, String)> = FLAG_TESTS
        .iter()
        .map(|(c, f, _)| (c.to_string(), f.to_string()))
        .collect();
    tree.difference(&listed)
        .map(|(c, f)| format!("{c} {f}"))
        .collect()
}

/// The text of every test source under `tests/it`.
fn test_sources() -> String {
    fn read(dir: &Path, out: &mut String) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                read(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push_str(&std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut out = String::new();
    read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/it"),
        &mut out,
    );
    out
}

#[test]
fn every_flag_of_every_command_has_a_test_that_shows_it_honoured_or_refused() {
    // clap's own checks of the definitions: every id a conflict or a requirement names exists.
    Cli::command().debug_assert();
    let tree = flags_of(&Cli::command());
    let sources = test_sources();
    let missing = unlisted(&tree);
    let no_test: Vec<String> = FLAG_TESTS
        .iter()
        .filter(|(_, _, test)| !sources.contains(&format!("fn {test}(")))
        .map(|(c, f, test)| format!("{c} {f}: no test `{test}` in tests/it"))
        .collect();
    let no_flag: Vec<String> = FLAG_TESTS
        .iter()
        .filter(|(c, f, _)| !tree.contains(&(c.to_string(), f.to_string())))
        .map(|(c, f, _)| format!("{c} {f}"))
        .collect();
    let mut seen = BTreeSet::new();
    let twice: Vec<String> = FLAG_TESTS
        .iter()
        .filter(|(c, f, _)| !seen.insert((*c, *f)))
        .map(|(c, f, _)| format!("{c} {f}"))
        .collect();
    assert!(
        missing.is_empty() && no_test.is_empty() && no_flag.is_empty() && twice.is_empty(),
        "flags with no entry in FLAG_TESTS (add the test that shows each honoured or refused):\n  {}\n\
         entries whose test does not exist:\n  {}\n\
         entries for no flag of the tree:\n  {}\n\
         entries given twice:\n  {}",
        missing.join("\n  "),
        no_test.join("\n  "),
        no_flag.join("\n  "),
        twice.join("\n  "),
    );
}

/// The check above fails on a new flag that no entry names.
#[test]
fn a_flag_added_without_a_test_is_caught() {
    let with_new_flag = Cli::command().mut_subcommand("status", |status| {
        status.arg(
            clap::Arg::new("verbose")
                .long("verbose")
                .action(clap::ArgAction::SetTrue),
        )
    });
    assert_eq!(
        unlisted(&flags_of(&with_new_flag)),
        ["outreach status --verbose"]
    );
    assert!(unlisted(&flags_of(&Cli::command())).is_empty());
}

/// The words of a command line, split on spaces outside double quotes.
fn shell_words(line: &str) -> Vec<String> {
    let mut words = Vec::new();
    let mut word = String::new();
    let (mut quoted, mut started) = (false, false);
    for c in line.chars() {
        match c {
            '"' => (quoted, started) = (!quoted, true),
            c if c.is_whitespace() && !quoted => {
                if started {
                    words.push(std::mem::take(&mut word));
                    started = false;
                }
            }
            c => {
                word.push(c);
                started = true;
            }
        }
    }
    if started {
        words.push(word);
    }
    words
}

/// Every command's `--help` ends with examples, each a command line of that command that the
/// parser takes as it is (its flags, values and combinations); what follows a `>` or a `|`
/// is the shell's.
#[test]
fn every_commands_help_ends_with_examples_that_parse() {
    let root = Cli::command();
    for (words, _) in commands(&root) {
        let name = command_name(&words);
        let help = ok(&outreach().args(&words).arg("--help").output().unwrap());
        let Some((_, examples)) = help.split_once("Examples:\n") else {
            panic!("{name} --help shows no examples:\n{help}");
        };
        let lines: Vec<&str> = examples
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect();
        assert!(!lines.is_empty(), "{name}: {help}");
        for line in lines {
            let argv = shell_words(line.split(&['>', '|'][..]).next().unwrap());
            assert!(
                argv[0] == "outreach" && argv[1..].starts_with(&words),
                "{name}: an example of another command: {line}"
            );
            if let Err(e) = Cli::try_parse_from(argv.clone()) {
                panic!("{name}: the example `{line}` does not parse:\n{e}");
            }
        }
    }
}

/// `outreach ARGS` is refused by the parser, exit 2, naming `first` and `second`.
fn refused(args: &[&str], first: &str, second: &str) {
    let out = outreach().args(args).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
    assert!(
        err.contains("cannot be used with") && err.contains(first) && err.contains(second),
        "{args:?}: {err}"
    );
}

/// The `--long` flags of the command run by `words`, with the default value of each that has
/// one.
fn flags_with_defaults(words: &[&str]) -> Vec<(String, Option<String>)> {
    let root = Cli::command();
    let mut cmd = &root;
    for w in words {
        cmd = cmd.find_subcommand(w).unwrap();
    }
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?;
            let default = a
                .get_default_values()
                .first()
                .map(|v| v.to_string_lossy().into_owned());
            Some((format!("--{long}"), default))
        })
        .collect()
}

/// `release --spec F --rho 0.02 --k 1` must not run with the spec's ρ and k as if the flags
/// were taken: every flag of the flag form, the spec file's alternative, is refused beside
/// `--spec`, naming both, and nothing is recorded or spent; `--approver` and `--format`
/// apply to a spec file too.
#[test]
fn release_refuses_every_flag_of_the_flag_form_beside_spec() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = privacy_warehouse(tmp.path());
    budget(&wh, 1.0);
    let spec = write(
        tmp.path(),
        "spec.toml",
        spec_toml(2, 0.1, PERSONS_SQL, PERSONS_STAT),
    );
    let base = [
        "release",
        "--warehouse",
        wh.to_str().unwrap(),
        "--spec",
        spec.to_str().unwrap(),
    ];
    refused(
        &[&base[..], &["--rho", "0.02", "--k", "1"][..]].concat(),
        "--spec",
        "--rho",
    );
    // A value each flag would take in the flag form. Every flag of `release` is here but the
    // four that apply to both forms, so a new flag of the flag form must be refused too.
    let samples = [
        ("--query", "persons.sql"),
        ("--cell", "program_id=programs"),
        ("--stat", "persons:count"),
        ("--exclusive", "a,b"),
        ("--ratio", "r=a/b"),
        ("--k", "1"),
        ("--rho", "0.02"),
        ("--delta", "1e-6"),
        ("--scale", "persons=2"),
        ("--allocation", "std"),
        ("--name", "x"),
    ];
    let both_forms = ["--warehouse", "--spec", "--approver", "--format"];
    for (flag, _) in flags_with_defaults(&["release"]) {
        if both_forms.contains(&flag.as_str()) {
            continue;
        }
        let Some(&(_, value)) = samples.iter().find(|(f, _)| *f == flag) else {
            panic!("{flag}: give it a sample value here, and refuse it beside --spec");
        };
        refused(
            &[&base[..], &[flag.as_str(), value][..]].concat(),
            "--spec",
            &flag,
        );
    }
    let ledger = Ledger::open(&wh).unwrap();
    assert!(ledger.releases().unwrap().is_empty());
    assert_eq!(ledger.show().unwrap().spent_rho, 0.0);
    ok(&outreach()
        .args(base)
        .args(["--approver", "ann", "--format", "json"])
        .output()
        .unwrap());
    assert_eq!(ledger.releases().unwrap()[0].approver, "ann");
}

/// With `--no-serve` the demo serves nothing, so every flag of the server is refused beside
/// it, naming both, before anything is synthesised.
#[test]
fn demo_refuses_the_servers_flags_beside_no_serve() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("never-made");
    let dir = dir.to_str().unwrap();
    // Values for the flags without a default.
    let samples = [("--small-cell", "11"), ("--trusted-proxy", "10.0.0.0/8")];
    for (flag, default) in flags_with_defaults(&["serve"]) {
        if flag == "--warehouse" {
            continue;
        }
        let value = default
            .or_else(|| {
                samples
                    .iter()
                    .find(|(f, _)| *f == flag)
                    .map(|(_, v)| v.to_string())
            })
            .unwrap_or_else(|| panic!("{flag}: give it a sample value here"));
        refused(
            &[
                "demo",
                "--no-serve",
                "--dir",
                dir,
                flag.as_str(),
                value.as_str(),
            ],
            "--no-serve",
            &flag,
        );
    }
    assert!(!Path::new(dir).exists());
}

/// Modes that cannot apply a flag refuse it: `releases show --steward` prints the steward's
/// record as JSON whatever `--format` says, `metrics --markdown` prints Markdown and is not
/// `--exact`, a plan for a target half-width solves for the σs it would be given, and
/// `--quarter` and `--warehouse` of `metrics` belong to `--exact`.
#[test]
fn other_modes_refuse_the_flags_they_cannot_apply() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = tmp.path().join("never-made");
    let wh = wh.to_str().unwrap();
    refused(
        &[
            "releases",
            "show",
            "--warehouse",
            wh,
            "1",
            "--steward",
            "--format",
            "json",
        ],
        "--steward",
        "--format",
    );
    refused(
        &["metrics", "--markdown", "--format", "json"],
        "--markdown",
        "--format",
    );
    refused(
        &["metrics", "--markdown", "--exact", "--quarter", "2025Q1"],
        "--markdown",
        "--exact",
    );
    let plan = ["plan", "--warehouse", wh, "--quarter", "2025Q1"];
    for sigma in ["--sigma", "--equity-sigma"] {
        refused(
            &[&plan[..], &["--target-halfwidth", "0.08", sigma, "6"][..]].concat(),
            "--target-halfwidth",
            sigma,
        );
    }
    for args in [
        &["metrics", "--quarter", "2025Q1"][..],
        &["metrics", "--warehouse", wh][..],
    ] {
        let out = outreach().args(args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains("--exact"), "{args:?}: {err}");
    }
    assert!(!Path::new(wh).exists());
}
