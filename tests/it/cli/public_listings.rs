//! Public listings are public: without `--steward`, `releases list` prints the body of
//! `GET /v1/releases` and `releases show ID` that of `GET /v1/releases/{id}`, in JSON and in
//! CSV, on a warehouse with the steward's releases (two quarters' publications), a
//! researcher's release made public and one that is not. No allocation name and no time of
//! day is in them; the private release is answered like a missing one by both.

use axum::http::StatusCode;
use outreach_warehouse::api::app;
use outreach_warehouse::cli::WAREHOUSE_ENV;
use outreach_warehouse::ledger::Ledger;
use serde_json::{Value, json};

use crate::common::server::{
    app_for, get, outreach, published, roomy, submission, submit_id, with_researcher,
};

/// Whether `text` holds a time of day, `HH:MM:SS`.
fn has_time_of_day(text: &str) -> bool {
    text.as_bytes().windows(8).any(|w| {
        w[2] == b':' && w[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| w[i].is_ascii_digit())
    })
}

/// The standard output of `outreach ARGS` over `wh`, which must succeed.
fn stdout(wh: &std::path::Path, args: &[&str]) -> String {
    String::from_utf8(outreach(wh, args).stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_list_and_show_without_steward_print_what_the_api_serves() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 0.5, roomy()).await;
    let requests = app(st);
    let mut private = submission(0.1);
    private["spec"]["name"] = json!("a private question");
    let id = submit_id(&requests, &token, &private).await;
    outreach(&wh, &["requests", "approve", &id]);
    // Another ρ: the same spec again would be the same release (idempotent), not a second.
    let mut public = submission(0.12);
    public["spec"]["name"] = json!("a public answer");
    let id = submit_id(&requests, &token, &public).await;
    outreach(&wh, &["requests", "approve", &id, "--public"]);
    let rosas: Vec<i64> = Ledger::open(&wh)
        .unwrap()
        .releases()
        .unwrap()
        .into_iter()
        .filter(|r| r.allocation == "researcher:rosa")
        .map(|r| r.id)
        .collect();
    assert_eq!(rosas.len(), 2);
    let (hidden, shown) = (rosas[0], rosas[1]);

    // The API over the warehouse as it is now.
    let api = app_for(&wh).await;
    let served = get(&api, "/v1/releases").await;
    assert_eq!(served.status, StatusCode::OK, "{}", served.text());
    let listed: Value =
        serde_json::from_str(&stdout(&wh, &["releases", "list", "--format", "json"])).unwrap();
    assert_eq!(listed, served.json());
    let served_csv = get(&api, "/v1/releases?format=csv").await;
    assert_eq!(
        stdout(&wh, &["releases", "list", "--format", "csv"]),
        served_csv.text()
    );
    let ids: Vec<i64> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&shown), "{listed}");
    assert!(!ids.contains(&hidden), "{listed}");
    // Every other release: the steward's, of the two quarters' publications.
    let others: Vec<i64> = Ledger::open(&wh)
        .unwrap()
        .releases()
        .unwrap()
        .into_iter()
        .filter(|r| r.status == "released" && r.id != hidden)
        .map(|r| r.id)
        .collect();
    assert_eq!(ids, others, "{listed}");
    assert!(ids.len() >= 3, "{listed}");

    // The listings name no allocation and show days, not times.
    let mut public_text = Vec::new();
    for format in ["table", "csv", "json"] {
        let text = stdout(&wh, &["releases", "list", "--format", format]);
        assert!(!text.contains("a private question"), "{format}: {text}");
        assert!(text.contains("a public answer"), "{format}: {text}");
        for allocation in ["researcher:", "standard-releases"] {
            assert!(!text.contains(allocation), "{format}: {text}");
        }
        public_text.push((format!("releases list --format {format}"), text));
    }

    // Each listed release: what `/v1/releases/{id}` serves, in JSON and in CSV.
    for id in &ids {
        let id = id.to_string();
        let served = get(&api, &format!("/v1/releases/{id}")).await;
        assert_eq!(served.status, StatusCode::OK, "{}", served.text());
        let text = stdout(&wh, &["releases", "show", &id, "--format", "json"]);
        let printed: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(printed, served.json(), "release {id}");
        public_text.push((format!("releases show {id} --format json"), text));
        let served_csv = get(&api, &format!("/v1/releases/{id}?format=csv")).await;
        let text = stdout(&wh, &["releases", "show", &id, "--format", "csv"]);
        assert_eq!(text, served_csv.text(), "release {id}");
        public_text.push((format!("releases show {id} --format csv"), text));
        let text = stdout(&wh, &["releases", "show", &id]);
        public_text.push((format!("releases show {id}"), text));
    }
    for (what, text) in &public_text {
        assert!(!has_time_of_day(text), "{what} shows a time of day: {text}");
    }

    // The private release: 404 from the API, exit 2 from the command, nothing printed.
    let missing = get(&api, &format!("/v1/releases/{hidden}")).await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["releases", "show", &hidden.to_string()])
        .env(WAREHOUSE_ENV, &wh)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stdout.is_empty(), "{out:?}");

    // The steward's view keeps everything, with full times and allocations.
    let steward = stdout(&wh, &["releases", "list", "--steward"]);
    assert!(steward.contains("a private question"), "{steward}");
    assert!(steward.contains("researcher:rosa"), "{steward}");
    assert!(has_time_of_day(&steward), "{steward}");
}
