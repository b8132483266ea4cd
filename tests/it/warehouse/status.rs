//! The warehouse as readers see it (`src/warehouse/status.rs`): dataset versions, status,
//! complete-through declarations, and one check that refuses a complete-through date in the
//! future.

use chrono::NaiveDate;
use outreach_warehouse::Fault;
use outreach_warehouse::ingest::{IngestError, IngestOptions, ingest};
use outreach_warehouse::warehouse::{DatasetVersion, Warehouse, WarehouseError, status};

use crate::common::*;

fn d(s: &str) -> NaiveDate {
    s.parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn status_reports_rows_dates_version_and_completeness() {
    let tmp = tempfile::tempdir().unwrap();
    let wh_path = warehouse_with_programs(tmp.path());
    let rows = vec![
        event("E1", "pk1", "P001", "2025-01-10"),
        event("E2", "pk2", "P001", "2025-05-20"),
        event("E3", "pk1", "P002", "2025-03-01"),
    ];
    let f = write(tmp.path(), "overdose_events.csv", csv(EVENTS_HEADER, &rows));
    let opts = IngestOptions {
        complete_through: Some(d("2025-06-30")),
        ..opts()
    };
    ingest(&wh_path, &[f], &opts).unwrap();
    let wh = Warehouse::open(&wh_path).unwrap();
    let s = status(&wh).await.unwrap();
    assert_eq!(s.version, DatasetVersion(2));
    assert_eq!(s.loads, 2);
    let ev = s
        .tables
        .iter()
        .find(|t| t.table == "overdose_events")
        .unwrap();
    assert_eq!((ev.rows, ev.files), (3, 2));
    assert_eq!(ev.first_date, Some(d("2025-01-10")));
    assert_eq!(ev.last_date, Some(d("2025-05-20")));
    assert_eq!(ev.complete_through, Some(d("2025-06-30")));
    let ar = s.tables.iter().find(|t| t.table == "arrests").unwrap();
    assert_eq!(
        (ar.rows, ar.first_date, ar.complete_through),
        (0, None, None)
    );
    let text = s.to_string();
    assert!(text.contains("Dataset version v2"), "{text}");
    assert!(text.contains("not declared"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn complete_through_is_declared_never_inferred() {
    let tmp = tempfile::tempdir().unwrap();
    let wh_path = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 10);
    load(&wh_path, &f).unwrap();
    let wh = Warehouse::open(&wh_path).unwrap();
    // Data up to 2025-12 is loaded, but nothing is complete until the steward says so.
    let m = wh.manifest().unwrap();
    assert_eq!(m.complete_through("overdose_events"), None);

    wh.declare_complete_through("overdose_events", d("2025-09-30"))
        .unwrap();
    wh.declare_complete_through("overdose_events", d("2025-12-31"))
        .unwrap();
    let m = wh.manifest().unwrap();
    assert_eq!(m.complete_through("overdose_events"), Some(d("2025-12-31")));
    assert_eq!(
        m.complete_through["overdose_events"].len(),
        2,
        "the history is kept"
    );
    // A declaration is public metadata: it makes no new dataset version.
    assert_eq!(m.version(), DatasetVersion(2));

    let future = chrono::Utc::now().date_naive() + chrono::Days::new(2);
    assert!(matches!(
        wh.declare_complete_through("overdose_events", future),
        Err(WarehouseError::FutureCompleteThrough { .. })
    ));
    let err = wh
        .declare_complete_through("overdoses", d("2025-01-01"))
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("unknown table 'overdoses'; the tables are programs, overdose_events"),
        "{err}"
    );
}

#[test]
fn complete_through_at_ingest_is_recorded_even_when_nothing_is_new() {
    let tmp = tempfile::tempdir().unwrap();
    let wh_path = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 10);
    load(&wh_path, &f).unwrap();
    let opts = IngestOptions {
        complete_through: Some(d("2025-12-31")),
        ..opts()
    };
    let r = ingest(&wh_path, &[f], &opts).unwrap();
    assert_eq!(r.version, None);
    let m = Warehouse::open(&wh_path).unwrap().manifest().unwrap();
    assert_eq!(m.complete_through("overdose_events"), Some(d("2025-12-31")));
    assert_eq!(m.complete_through("arrests"), None);
    assert_eq!(m.version(), DatasetVersion(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_warehouse_has_every_table_with_its_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = Warehouse::open_or_create(tmp.path().join("wh")).unwrap();
    let ctx = outreach_warehouse::warehouse::open_session(&wh)
        .await
        .unwrap();
    let b = ctx
        .sql("SELECT count(*) FROM overdose_events e JOIN outreach_attempts a ON e.person_key = a.person_key")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(b[0].num_rows(), 1);
    assert!(matches!(
        Warehouse::open(tmp.path().join("nowhere")),
        Err(WarehouseError::NotFound(_))
    ));
}

#[test]
fn a_future_complete_through_date_is_refused_by_the_one_check() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = warehouse_with_programs(tmp.path());
    let f = events_file(tmp.path(), 5);
    let future = chrono::Utc::now().date_naive() + chrono::Days::new(2);
    let err = ingest(
        &wh,
        std::slice::from_ref(&f),
        &IngestOptions {
            complete_through: Some(future),
            ..opts()
        },
    )
    .unwrap_err();
    assert!(
        matches!(
            err,
            IngestError::Warehouse(WarehouseError::FutureCompleteThrough { .. })
        ),
        "{err}"
    );
    assert_eq!(err.fault(), Fault::BadInput);
    let direct = Warehouse::open(&wh)
        .unwrap()
        .declare_complete_through("overdose_events", future)
        .unwrap_err();
    assert_eq!(err.to_string(), direct.to_string());
}
