//! Fixtures shared by the integration tests: small hand-made exports and warehouse snapshots.

pub mod fixture;
pub mod releases;
pub mod server;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use outreach_warehouse::ingest::{FileOutcome, IngestOptions, IngestReport, ingest};

pub const PROGRAMS: &str = "\
program_id,program_name,region,team_model,police_on_visits,warrant_check,start_date,end_date
P001,Ashford Police Outreach Team,Western,police_led,always,arrest_on_warrant,2024-01-01,
P002,\"Brookvale Co-Response Team, North\",Central,co_responder,sometimes,checked_no_action,2024-06-01,
P003,Cedar Falls Peer Outreach,Southeast,peer_led,never,none,2023-03-15,2025-12-31
";

pub const EVENTS_HEADER: &str = "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity";

/// A valid overdose event row.
pub fn event(id: &str, person: &str, program: &str, date: &str) -> String {
    format!("{id},{person},{program},{date},ems,false,true,true,25_34,male,nh_white")
}

/// `n` valid events E0000..: one per person, in P001, through 2025.
pub fn events(n: usize) -> Vec<String> {
    (0..n)
        .map(|i| {
            event(
                &format!("E{i:04}"),
                &format!("pk{i:04}"),
                "P001",
                &format!("2025-{:02}-{:02}", i % 12 + 1, i % 28 + 1),
            )
        })
        .collect()
}

pub fn csv(header: &str, rows: &[String]) -> String {
    let mut s = String::from(header);
    s.push('\n');
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s
}

pub fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, content).unwrap();
    p
}

/// Options with a fixed latest plausible date, so the tests do not depend on today.
pub fn opts() -> IngestOptions {
    IngestOptions {
        max_date: NaiveDate::from_ymd_opt(2026, 6, 30).unwrap(),
        ..IngestOptions::default()
    }
}

/// A warehouse holding the three fixture programs.
pub fn warehouse_with_programs(tmp: &Path) -> PathBuf {
    let wh = tmp.join("wh");
    let p = write(tmp, "programs.csv", PROGRAMS);
    let r = ingest(&wh, &[p], &opts()).unwrap();
    assert_eq!(r.rows_loaded(), 3);
    wh
}

/// `overdose_events.csv` with `n` valid events, written into `dir`.
pub fn events_file(dir: &Path, n: usize) -> PathBuf {
    write(dir, "overdose_events.csv", csv(EVENTS_HEADER, &events(n)))
}

pub fn load(
    wh: &Path,
    file: &Path,
) -> Result<IngestReport, outreach_warehouse::ingest::IngestError> {
    ingest(wh, &[file.to_path_buf()], &opts())
}

/// Every file of the warehouse that readers depend on (manifest and data), with its bytes.
pub fn snapshot(wh: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![wh.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            let rel = p.strip_prefix(wh).unwrap().to_string_lossy().into_owned();
            if rel.starts_with("quarantine") || rel == ".lock" {
                continue;
            }
            if p.is_dir() {
                stack.push(p);
            } else {
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}

/// Runs SQL on the warehouse and returns the first column of the first row as i64.
pub fn scalar(wh: &Path, sql: &str) -> i64 {
    use datafusion::arrow::array::AsArray;
    use datafusion::arrow::datatypes::Int64Type;
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let w = outreach_warehouse::warehouse::Warehouse::open(wh).unwrap();
        let ctx = outreach_warehouse::warehouse::open_session(&w)
            .await
            .unwrap();
        let b = ctx.sql(sql).await.unwrap().collect().await.unwrap();
        b[0].column(0).as_primitive::<Int64Type>().value(0)
    })
}

/// The quarantine CSV of a report's first file, as (line, column, reason) rows.
pub fn quarantine(report: &IngestReport) -> Vec<(u64, String, String)> {
    let q = report
        .files
        .iter()
        .find_map(|f| match &f.outcome {
            FileOutcome::Loaded {
                quarantine: Some(q),
                ..
            } => Some(q.clone()),
            _ => None,
        })
        .expect("a quarantine file");
    parse_quarantine(&std::fs::read_to_string(q).unwrap())
}

pub fn parse_quarantine(text: &str) -> Vec<(u64, String, String)> {
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("line,column,reason"));
    lines
        .map(|l| {
            let (line, rest) = l.split_once(',').unwrap();
            let (col, reason) = rest.split_once(',').unwrap();
            (
                line.parse().unwrap(),
                col.to_string(),
                reason.trim_matches('"').to_string(),
            )
        })
        .collect()
}

pub const ATTEMPTS_HEADER: &str = "attempt_id,person_key,program_id,event_id,attempt_date,method,outcome,police_present,peer_present,clinician_present,naloxone_provided,test_strips_provided";
pub const REFERRALS_HEADER: &str =
    "referral_id,person_key,program_id,attempt_id,referral_date,service";
pub const LINKAGES_HEADER: &str =
    "linkage_id,person_key,program_id,referral_id,service,linkage_date";
pub const ARRESTS_HEADER: &str = "arrest_id,person_key,arrest_date,agency,charge";

/// A small warehouse with rows in every table, for the privacy engine's tests:
/// - pk01: events in P001 (2025-01-10, 2025-02-10) and P002 (2025-04-05); an attempt with
///   police in P001 (engaged) and one without in P002; a MOUD referral and linkage; an arrest.
/// - pk02: one event in P001 (2025-01-15), one attempt without police (no answer).
/// - pk03: one event in P002 (2025-05-01), no attempt.
pub fn privacy_warehouse(tmp: &Path) -> PathBuf {
    std::fs::create_dir_all(tmp).unwrap();
    let wh = warehouse_with_programs(tmp);
    let dir = tmp.join("privacy-exports");
    std::fs::create_dir_all(&dir).unwrap();
    let events = [
        event("E01", "pk01", "P001", "2025-01-10"),
        event("E02", "pk01", "P001", "2025-02-10"),
        event("E03", "pk01", "P002", "2025-04-05"),
        event("E04", "pk02", "P001", "2025-01-15"),
        event("E05", "pk03", "P002", "2025-05-01"),
    ];
    let attempts = [
        "A01,pk01,P001,E01,2025-01-11,home_visit,engaged_survivor,true,false,false,true,false"
            .to_string(),
        "A02,pk01,P002,E03,2025-04-07,phone,declined,false,true,false,false,false".to_string(),
        "A03,pk02,P001,E04,2025-01-20,home_visit,no_answer,false,false,false,false,false"
            .to_string(),
    ];
    let referrals = ["R01,pk01,P001,A01,2025-01-11,moud".to_string()];
    let linkages = ["L01,pk01,P001,R01,moud,2025-01-25".to_string()];
    let arrests = ["X01,pk01,2025-03-01,municipal_police,outstanding_warrant".to_string()];
    let files = vec![
        write(&dir, "overdose_events.csv", csv(EVENTS_HEADER, &events)),
        write(
            &dir,
            "outreach_attempts.csv",
            csv(ATTEMPTS_HEADER, &attempts),
        ),
        write(&dir, "referrals.csv", csv(REFERRALS_HEADER, &referrals)),
        write(
            &dir,
            "service_linkages.csv",
            csv(LINKAGES_HEADER, &linkages),
        ),
        write(&dir, "arrests.csv", csv(ARRESTS_HEADER, &arrests)),
    ];
    let r = ingest(&wh, &files, &opts()).unwrap();
    assert_eq!(r.rows_loaded(), 11, "{r}");
    wh
}

/// A DataFusion session over `wh` with the privacy engine's safe functions registered.
pub async fn privacy_session(wh: &Path) -> datafusion::prelude::SessionContext {
    let w = outreach_warehouse::warehouse::Warehouse::open(wh).unwrap();
    let ctx = outreach_warehouse::warehouse::open_session(&w)
        .await
        .unwrap();
    outreach_warehouse::privacy::functions::register(&ctx);
    ctx
}

/// Loads `files` into `wh` with the test options; panics on a refusal.
pub fn ingest_files(wh: &Path, files: &[PathBuf]) {
    ingest(wh, files, &opts()).unwrap();
}

/// An arrests row. Arrests reference no program, so a new warehouse takes them as they are.
pub fn arrest(id: &str, person: &str, date: &str) -> String {
    format!("{id},{person},{date},sheriff,property")
}

/// Options that never refuse a file for its rejects.
pub fn lenient() -> IngestOptions {
    IngestOptions {
        max_reject_rate: 1.0,
        ..opts()
    }
}

/// The quarantine rows of file `i` of a report; none when it has no quarantine file.
pub fn file_quarantine(report: &IngestReport, i: usize) -> Vec<(u64, String, String)> {
    match &report.files[i].outcome {
        FileOutcome::Loaded {
            quarantine: Some(q),
            ..
        } => parse_quarantine(&std::fs::read_to_string(q).unwrap()),
        _ => Vec::new(),
    }
}

/// Every file below `dir` (dot files, quarantine and lock included), with its bytes.
pub fn tree(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in rd {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().to_string_lossy().into_owned();
                out.insert(rel, std::fs::read(&p).unwrap());
            }
        }
    }
    out
}
