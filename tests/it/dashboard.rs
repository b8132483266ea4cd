//! The dashboard page (`GET /`) and `outreach report`, through `oneshot` and the binary: what
//! they show against what the API serves, without JavaScript or network, the small-cell
//! display rule, and bad choices. The real-browser test is `browser.rs`.

use std::path::Path;
use std::process::Command;

use axum::http::{StatusCode, header};
use outreach_warehouse::api::{Limits, app};
use serde_json::Value;

use super::api::{assert_error, get, published, roomy, state};

/// A demo warehouse big enough for rates: 3,000 survivors in 4 programs, 8 quarters
/// published from 2024Q3 to 2026Q2.
pub(crate) async fn demo_warehouse(tmp: &Path) -> std::path::PathBuf {
    let cfg = outreach_warehouse::synth::SynthConfig {
        persons: 3_000,
        programs: 4,
        as_of: Some(chrono::NaiveDate::from_ymd_opt(2026, 6, 30).unwrap()),
        ..Default::default()
    };
    outreach_warehouse::demo::run_demo(tmp, &cfg, false)
        .await
        .unwrap();
    tmp.join("warehouse")
}

/// `outreach report` of `quarter` over `wh` into `out`.
pub(crate) fn report_command(wh: &Path, quarter: &str, out: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["report", "--quarter", quarter, "--out"])
        .arg(out)
        .env("OUTREACH_WAREHOUSE", wh)
        .output()
        .unwrap()
}

/// The text the pages print for a rate figure: `41.2% (38.0%–44.5%)`.
pub(crate) fn rate_text(f: &Value) -> String {
    let p = |k: &str| format!("{:.1}%", f[k].as_f64().unwrap() * 100.0);
    format!("{} ({}–{})", p("value"), p("lower"), p("upper"))
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_shows_the_comparison_the_police_difference_and_a_trend_with_intervals() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let app = app(state(&wh, roomy()).await);
    let page = get(
        &app,
        "/?quarter=2025Q1&metric=rate:engagement_30d&program=P002",
    )
    .await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    let html = page.text();
    // Three charts, each with a description and its table.
    assert_eq!(html.matches("<svg").count(), 3);
    assert_eq!(html.matches("<figcaption").count(), 3);
    assert_eq!(html.matches("<table>").count(), 3);
    // Works with JavaScript off: there is none, and the policy forbids any; nothing is
    // fetched from elsewhere.
    assert!(!html.to_lowercase().contains("<script"));
    let csp = page.header(header::CONTENT_SECURITY_POLICY);
    assert!(
        csp.contains("default-src 'none'") && !csp.contains("script-src"),
        "{csp}"
    );
    assert!(!html.contains("src=\"http") && !html.contains("href=\"http"));
    // Every program's figure in the comparison is the API's, with its interval.
    let cmp = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=engagement_30d&kind=rate",
    )
    .await
    .json();
    let figures = cmp["figures"].as_array().unwrap();
    assert_eq!(figures.len(), 4);
    for f in figures {
        let text = rate_text(f);
        assert!(html.contains(&text), "{} {text} missing", f["scope"]);
    }
    // The police-present minus absent difference, statewide.
    let diff = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=arrest_after_attempt_police_difference&by=statewide",
    )
    .await
    .json();
    let statewide = &diff["figures"][0];
    assert!(html.contains("Police present minus absent"));
    assert!(html.contains(&rate_text(statewide)), "{statewide}");
    // The trend of P002 over every published quarter, as the program route serves them.
    assert!(html.contains("engagement_30d of P002 by quarter"));
    for q in ["2024Q3", "2025Q1", "2026Q2"] {
        assert!(html.contains(&format!("<th scope=\"row\">{q}</th>")), "{q}");
    }
    let p002 = get(&app, "/v1/quarters/2024Q4/programs/P002").await.json();
    let f = p002["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "engagement_30d" && f["kind"] == "rate" && f["breakdown"].is_null())
        .unwrap();
    assert!(html.contains(&rate_text(f)), "2024Q4 {}", rate_text(f));
    // A second request is served from the cache with the same ETag; a conditional GET is 304.
    let again = get(
        &app,
        "/?quarter=2025Q1&metric=rate:engagement_30d&program=P002",
    )
    .await;
    assert_eq!(again.text(), html);
    let etag = page.header(header::ETAG);
    let not_modified = super::api::send(
        &app,
        axum::http::Request::get("/?quarter=2025Q1&metric=rate:engagement_30d&program=P002")
            .header(header::IF_NONE_MATCH, etag)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    // The defaults: the latest quarter.
    let default = get(&app, "/").await.text();
    assert!(default.contains("Post-overdose outreach programs, 2026Q2"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_choices_are_400_unpublished_ones_and_an_empty_warehouse_404() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app(state(&wh, roomy()).await);
    // A choice not written as the OpenAPI document says is a 400; one written right with
    // nothing published for it is a 404, as on the JSON routes.
    use StatusCode as S;
    for (uri, status, code) in [
        ("/?quarter=2031Q1", S::NOT_FOUND, "not_found"),
        ("/?metric=engagement_30d", S::BAD_REQUEST, "bad_request"),
        ("/?metric=rate:nothing", S::BAD_REQUEST, "bad_request"),
        ("/?program=P9", S::NOT_FOUND, "not_found"),
        ("/?program=%3Cscript%3E", S::NOT_FOUND, "not_found"),
        ("/?quarter=%3Cscript%3E", S::BAD_REQUEST, "bad_request"),
    ] {
        let r = get(&app, uri).await;
        assert_error(&r, status, code);
        // An echoed choice is JSON text that no browser may sniff as HTML.
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{uri}");
    }
    // A warehouse with a budget but nothing published.
    let tmp2 = tempfile::tempdir().unwrap();
    let wh2 = tmp2.path().join("wh");
    outreach_warehouse::ingest::ingest(
        &wh2,
        &super::metrics::fixture_files(),
        &super::metrics::fixture_opts("2025-12-31"),
    )
    .unwrap();
    outreach_warehouse::ledger::Ledger::init(
        &wh2,
        &outreach_warehouse::ledger::BudgetInit {
            total_rho: 1.0,
            total_delta: 0.0,
            horizon_days: 30,
            config: Default::default(),
        },
    )
    .unwrap();
    let empty = app_for(&wh2).await;
    assert_error(&get(&empty, "/").await, StatusCode::NOT_FOUND, "not_found");
}

async fn app_for(wh: &Path) -> axum::Router {
    app(state(wh, roomy()).await)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_small_cell_rule_is_off_by_default_and_greys_out_small_figures_when_set() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let uri = "/?quarter=2025Q1&metric=count:identified";
    let off = get(&app_for(&wh).await, uri).await.text();
    assert!(!off.contains("class=\"small-cell\""));
    // The fixture's programs have a handful of survivors each: 1000 greys out every one.
    let limits = Limits {
        small_cell: Some(1000.0),
        ..roomy()
    };
    let on = get(&app(state(&wh, limits).await), uri).await.text();
    assert!(on.contains("class=\"small-cell\""));
    assert!(on.contains("fewer than 1000"));
    // A threshold of 0 greys out nothing that has a value.
    let zero = Limits {
        small_cell: Some(0.0),
        ..roomy()
    };
    let none = get(&app(state(&wh, zero).await), uri).await.text();
    let comparison = none.split("Police on visits").next().unwrap();
    assert!(!comparison.contains("class=\"small-cell\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn outreach_report_writes_a_self_contained_html_and_the_csv_of_every_figure() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let out = tmp.path().join("reports/2025Q1.html");
    // A folder that does not exist is a clear error, and nothing is written.
    let missing = report_command(&wh, "2025Q1", &out);
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("does not exist"));
    std::fs::create_dir_all(out.parent().unwrap()).unwrap();
    let unpublished = report_command(&wh, "2027Q1", &out);
    assert_eq!(unpublished.status.code(), Some(2));
    assert!(!out.exists());
    let ok = report_command(&wh, "2025Q1", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let html = std::fs::read_to_string(&out).unwrap();
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    // Self-contained: no script, nothing fetched; the CSV is linked by its relative name.
    assert!(!html.to_lowercase().contains("<script"));
    assert!(
        !html.contains("src=\"http") && !html.contains("href=\"http") && !html.contains("@import")
    );
    assert!(html.contains("href=\"2025Q1.csv\""));
    // Headline metrics per program with intervals, the charts, completeness, the methods.
    let doc = crate::api::current_doc(&wh, "2025Q1");
    for p in doc["programs"].as_array().unwrap() {
        let id = p["program"]["program_id"].as_str().unwrap();
        assert!(html.contains(&format!("id=\"program-{id}\"")), "{id}");
        let engagement = p["rates"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["name"] == "engagement_30d")
            .unwrap();
        assert!(html.contains(&rate_text(engagement)), "{id}");
        assert!(csv.contains(id));
    }
    assert!(html.matches("<svg").count() >= 4);
    assert!(html.contains("Follow-up completeness"));
    assert!(html.contains("How to read differentially private numbers"));
    assert!(html.contains("Budget spent"));
    assert!(html.contains("survivors in the cohort who"));
    assert!(html.contains("break-inside: avoid"), "the print stylesheet");
    // The CSV holds every figure of the publication.
    assert_eq!(
        csv,
        outreach_warehouse::report::publication_csv(&serde_json::from_value(doc).unwrap())
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_template_failure_is_an_internal_fault_that_exits_1_and_writes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let out = tmp.path().join("2025Q1.html");
    let failed = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["report", "--quarter", "2025Q1", "--out"])
        .arg(&out)
        .env("OUTREACH_WAREHOUSE", &wh)
        .env(outreach_warehouse::failpoint::ENV, "report-template")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&failed.stderr);
    // The template is built in: its failure is a defect (exit 1), not bad input (exit 2).
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("internal: the report template failed"),
        "{stderr}"
    );
    assert!(!out.exists() && !out.with_extension("csv").exists());
    // Without the fail point the same command writes the report.
    let ok = report_command(&wh, "2025Q1", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    assert!(out.exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_small_cell_rule_looks_at_a_rates_numerator_and_denominator() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let limits = Limits {
        small_cell: Some(20.0),
        ..roomy()
    };
    let app = app(state(&wh, limits).await);
    let html = get(&app, "/?quarter=2025Q4&metric=rate:fatal_overdose_90d")
        .await
        .text();
    let table = html.split("Police on visits").next().unwrap();
    let mut greyed_by_numerator = 0;
    for p in ["P001", "P002", "P003", "P004"] {
        let page = get(&app, &format!("/v1/quarters/2025Q4/programs/{p}"))
            .await
            .json();
        let count = |name: &str| {
            page["figures"]
                .as_array()
                .unwrap()
                .iter()
                .find(|f| f["name"] == name && f["kind"] == "count" && f["breakdown"].is_null())
                .unwrap()["value"]
                .as_f64()
                .unwrap()
        };
        let (num, den) = (count("fatal_od_90d"), count("identified"));
        let small = num.min(den) < 20.0;
        greyed_by_numerator += usize::from(num < 20.0 && den >= 20.0);
        let row = format!("<tr class=\"small-cell\"><th scope=\"row\">{p}</th>");
        assert_eq!(table.contains(&row), small, "{p}: {num} of {den}");
    }
    assert!(greyed_by_numerator > 0, "the case the rule is about occurs");
}
