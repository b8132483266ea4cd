//! Benchmark: ingest through a source mapping against ingest of the same rows already in the
//! dictionary's form (issue target: at most 1.3× the time).
//!
//! `cargo bench --bench ingest_mapping` synthesises `BENCH_ROWS` overdose events (default
//! 1,000,000) twice into a temporary folder: as `overdose_events.csv`, and as a police export
//! that needs a mapping (renamed columns, codes and `Y`/`N` flags, `MM/DD/YYYY` dates, quoted
//! ids with thousands separators, and an unused free-text column). Each is ingested into a
//! fresh warehouse (holding only the programs) `BENCH_RUNS` times (default 5), in turn; the
//! medians and their ratio are printed. `BENCH_ONLY=dictionary` (or `mapping`) times one
//! form alone, for a profiler.

#[allow(dead_code)]
mod common;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::median;
use outreach_warehouse::ingest::{IngestOptions, ingest};

const PROGRAMS: &str = "\
program_id,program_name,region,team_model,police_on_visits,warrant_check,start_date,end_date
P001,Ashford Police Outreach Team,Western,police_led,always,arrest_on_warrant,2020-01-01,
";

const MAPPING: &str = r#"
[maps.yes_no]
codes = { Y = "true", N = "false" }
refuse = true

[maps.age]
codes = { "<18" = "under_18", "18-24" = "18_24", "25-34" = "25_34", "35-44" = "35_44", "45-54" = "45_54", "55-64" = "55_64", "65+" = "65_plus" }
default = "unknown"

[maps.sex]
codes = { M = "male", F = "female" }
default = "unknown"

[maps.race]
codes = { W = "nh_white", B = "nh_black", H = "hispanic", A = "nh_asian" }
default = "unknown"

[[source]]
name = "police_incidents"

[[feed]]
source = "police_incidents"
table = "overdose_events"

[feed.columns]
event_id = { from = "INCIDENT_NO", strip = ",", prefix = "PD-" }
person_key = "VICTIM_KEY"
program_id = { value = "P001" }
event_date = { from = "INCIDENT_DATE", date = "%m/%d/%Y" }
source = { value = "police" }
fatal = { from = "FATAL", map = "yes_no" }
naloxone_administered = { from = "NARCAN_GIVEN", map = "yes_no" }
transported_to_ed = { from = "TRANSPORTED", map = "yes_no" }
age_band = { from = "AGE_GROUP", map = "age" }
sex = { from = "GENDER", map = "sex" }
race_ethnicity = { from = "RACE", map = "race" }
"#;

const AGES: [(&str, &str); 7] = [
    ("<18", "under_18"),
    ("18-24", "18_24"),
    ("25-34", "25_34"),
    ("35-44", "35_44"),
    ("45-54", "45_54"),
    ("55-64", "55_64"),
    ("65+", "65_plus"),
];
const SEXES: [(&str, &str); 3] = [("M", "male"), ("F", "female"), ("U", "unknown")];
const RACES: [(&str, &str); 5] = [
    ("W", "nh_white"),
    ("B", "nh_black"),
    ("H", "hispanic"),
    ("A", "nh_asian"),
    ("X", "unknown"),
];

/// The same rows in both forms.
fn synthesise(dir: &Path, rows: usize) -> (PathBuf, PathBuf) {
    let mut dict = String::from(
        "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\n",
    );
    let mut source = String::from(
        "INCIDENT_NO,VICTIM_KEY,INCIDENT_DATE,AGENCY,FATAL,NARCAN_GIVEN,TRANSPORTED,AGE_GROUP,GENDER,RACE,NARRATIVE\n",
    );
    let yn = |b: bool| if b { ("Y", "true") } else { ("N", "false") };
    for i in 0..rows {
        let n = 1_000_000 + i as u64;
        let id = format!("{n}");
        let grouped = format!("{},{},{}", &id[..1], &id[1..4], &id[4..]);
        let (y, m, d) = (2021 + (i % 5), 1 + (i * 7) % 12, 1 + (i * 13) % 28);
        let (fatal, narcan, transported) = (yn(i % 37 == 0), yn(i % 3 != 0), yn(i % 2 == 0));
        let (age, sex, race) = (AGES[i % 7], SEXES[i % 3], RACES[i % 5]);
        let person = format!(
            "vk{:08x}",
            (i as u64).wrapping_mul(2_654_435_761) % 0xffff_ffff
        );
        let _ = writeln!(
            dict,
            "PD-{id},{person},P001,{y:04}-{m:02}-{d:02},police,{},{},{},{},{},{}",
            fatal.1, narcan.1, transported.1, age.1, sex.1, race.1
        );
        let _ = writeln!(
            source,
            "\"{grouped}\",{person},{m:02}/{d:02}/{y:04},SPD,{},{},{},{},{},{},Unit responded to a call",
            fatal.0, narcan.0, transported.0, age.0, sex.0, race.0
        );
    }
    let a = dir.join("overdose_events.csv");
    let b = dir.join("police_incidents.csv");
    std::fs::write(&a, dict).expect("write");
    std::fs::write(&b, source).expect("write");
    (a, b)
}

/// Seconds to ingest `file` into a fresh warehouse that holds the programs.
fn time_ingest(dir: &Path, run: &str, programs: &Path, file: &Path, mapping: Option<&Path>) -> f64 {
    let wh = dir.join(format!("wh-{run}"));
    let _ = std::fs::remove_dir_all(&wh);
    let opts = IngestOptions {
        max_date: chrono::NaiveDate::from_ymd_opt(2026, 12, 31).expect("valid"),
        ..IngestOptions::default()
    };
    ingest(&wh, &[programs.to_path_buf()], &opts).expect("programs");
    let opts = IngestOptions {
        mapping: mapping.map(Path::to_path_buf),
        ..opts
    };
    let start = Instant::now();
    let r = ingest(&wh, &[file.to_path_buf()], &opts).expect("ingest");
    let secs = start.elapsed().as_secs_f64();
    assert!(r.rows_loaded() > 0);
    std::fs::remove_dir_all(&wh).ok();
    secs
}

fn main() {
    let rows: usize = std::env::var("BENCH_ROWS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let runs: usize = std::env::var("BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let tmp = tempfile::tempdir().expect("temporary folder");
    let dir = tmp.path();
    let (dict_file, source_file) = synthesise(dir, rows);
    let programs = dir.join("programs.csv");
    std::fs::write(&programs, PROGRAMS).expect("write");
    let mapping = dir.join("police_incidents.toml");
    std::fs::write(&mapping, MAPPING).expect("write");
    // `BENCH_ONLY=dictionary` or `mapping` times one form alone, for a profiler.
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let (mut plain, mut mapped) = (vec![f64::NAN], vec![f64::NAN]);
    if only != "mapping" {
        plain.clear();
    }
    if only != "dictionary" {
        mapped.clear();
    }
    for run in 0..runs {
        if only != "mapping" {
            plain.push(time_ingest(
                dir,
                &format!("d{run}"),
                &programs,
                &dict_file,
                None,
            ));
        }
        if only != "dictionary" {
            mapped.push(time_ingest(
                dir,
                &format!("m{run}"),
                &programs,
                &source_file,
                Some(&mapping),
            ));
        }
    }
    let (p, m) = (median(&mut plain), median(&mut mapped));
    println!("rows                         {rows}");
    println!("dictionary form, median      {p:.3} s  ({runs} runs)");
    println!("through a mapping, median    {m:.3} s  ({runs} runs)");
    println!("ratio mapping / dictionary   {:.2}  (target <= 1.3)", m / p);
}
