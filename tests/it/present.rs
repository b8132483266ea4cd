//! What the public is shown (`src/present`): the dashboard page (`GET /`) and `outreach
//! report`, through `oneshot` and the binary: what they show against what the API serves,
//! without JavaScript or network, the small-cell display rule, and bad choices. The
//! real-browser tests are `browser`.

use std::path::Path;
use std::process::Command;

use axum::http::{StatusCode, header};
use outreach_warehouse::api::{Limits, app};
use serde_json::Value;

use crate::common::fixture::{fixture_files, fixture_opts};
use crate::common::server::{
    app_for, assert_error, current_doc, get, published, roomy, send, state,
};

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
    let app = app_for(&wh).await;
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
    let not_modified = send(
        &app,
        axum::http::Request::get("/?quarter=2025Q1&metric=rate:engagement_30d&program=P002")
            .header(header::IF_NONE_MATCH, etag)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(not_modified.status, StatusCode::NOT_MODIFIED);
    // The defaults: the newest quarter whose follow-up for the default metric is complete.
    // 2026Q2 is the latest, but its 30-day windows run past the data declared complete
    // (`the_dashboard_marks_incomplete_follow_up_and_opens_on_a_complete_quarter`).
    let default = get(&app, "/").await.text();
    assert!(default.contains("Post-overdose outreach programs, 2026Q1"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_choices_are_400_unpublished_ones_and_an_empty_warehouse_404() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
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
    outreach_warehouse::ingest::ingest(&wh2, &fixture_files(), &fixture_opts("2025-12-31"))
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
    let doc = current_doc(&wh, "2025Q1");
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
        outreach_warehouse::present::tables::publication_csv(&serde_json::from_value(doc).unwrap())
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

#[tokio::test(flavor = "multi_thread")]
async fn a_value_wholly_below_zero_is_shown_with_the_width_of_its_noise_on_every_page() {
    use outreach_warehouse::ledger::Ledger;
    use outreach_warehouse::publication::NewPublication;
    use outreach_warehouse::publication::Publication;
    use outreach_warehouse::publication::figures::{CountFigure, RateEstimate, RateFigure, Z95};
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // Fabricated figures of P1 in 2025Q1, built by the publication's own code: an engagement
    // rate whose noisy value is −20% with a standard error of 5 points, so that its whole 95%
    // interval (−29.8% to −10.2%) lies below zero; and a count of −30 whose interval ±11
    // lies below zero too. Clamping alone would show both as certain: 0.0% (0.0%–0.0%).
    let mut doc = Publication::from_document(&current_doc(&wh, "2025Q1")).unwrap();
    let p1 = doc
        .programs
        .iter_mut()
        .find(|p| p.program.program_id == "P1")
        .unwrap();
    let r = p1
        .rates
        .iter_mut()
        .find(|r| r.name == "engagement_30d")
        .unwrap();
    let (num, den) = (r.numerator.clone(), r.denominator.clone());
    *r = RateFigure::new(
        "engagement_30d",
        &num,
        &den,
        Some(RateEstimate {
            raw: -0.2,
            variance: 0.05 * 0.05,
        }),
        true,
    );
    assert_eq!((r.value, r.lower), (Some(0.0), Some(0.0)));
    assert!((r.upper.unwrap() - Z95 * 0.05).abs() < 1e-12, "{r:?}");
    let c = p1
        .counts
        .iter_mut()
        .find(|c| c.statistic == "engaged_30d")
        .unwrap();
    *c = CountFigure::new("engaged_30d", -30.0, 11.0, true);
    assert_eq!((c.value, c.lower, c.upper), (0.0, 0.0, 11.0));
    // Stored as a new publication of the same releases, as `publish` stores one.
    let document = serde_json::to_value(&doc).unwrap();
    Ledger::open(&wh)
        .unwrap()
        .record_publication(&NewPublication {
            quarter: "2025Q1",
            release_id: doc.release_id,
            dataset_version: &doc.dataset_version,
            approver: &doc.approver,
            document: &document,
        })
        .unwrap();
    let shown = "0.0% (0.0%–9.8%)";
    let app = app_for(&wh).await;
    // The API, in JSON and in CSV.
    let page = get(&app, "/v1/quarters/2025Q1/programs/P1").await.json();
    let f = page["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "engagement_30d" && f["kind"] == "rate" && f["breakdown"].is_null())
        .unwrap();
    assert_eq!(rate_text(f), shown);
    let csv = get(&app, "/v1/quarters/2025Q1/programs/P1?format=csv")
        .await
        .text();
    let row: Vec<&str> = csv
        .lines()
        .find(|l| l.starts_with("2025Q1,P1,program,rate,engagement_30d,,,"))
        .unwrap()
        .split(',')
        .collect();
    assert_eq!((row[7], row[8]), ("0", "0"), "{row:?}");
    assert!((row[9].parse::<f64>().unwrap() - Z95 * 0.05).abs() < 1e-12);
    // The dashboard, with the rule in its notes.
    let rates = get(&app, "/?quarter=2025Q1&metric=rate:engagement_30d")
        .await
        .text();
    assert!(rates.contains(shown), "{shown} not on the dashboard");
    assert!(!rates.contains("(0.0%–0.0%)"));
    assert!(
        rates.contains("never narrower than"),
        "the rule is explained"
    );
    let counts = get(&app, "/?quarter=2025Q1&metric=count:engaged_30d")
        .await
        .text();
    assert!(counts.contains("0 (0–11)"));
    // The report.
    let out = tmp.path().join("2025Q1.html");
    let ok = report_command(&wh, "2025Q1", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let html = std::fs::read_to_string(&out).unwrap();
    assert!(html.contains(shown), "{shown} not in the report");
    assert!(!html.contains("(0.0%–0.0%)"));
    assert!(
        html.contains("never narrower than"),
        "the rule is explained"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_csv_holds_every_figure_of_the_quarter_in_the_apis_columns() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let out = tmp.path().join("2025Q1.html");
    let ok = report_command(&wh, "2025Q1", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let csv = std::fs::read_to_string(out.with_extension("csv")).unwrap();
    let mut lines = csv.lines();
    let header = lines.next().unwrap();
    let all: Vec<&str> = lines.collect();
    let rows: std::collections::HashSet<&str> = all.iter().copied().collect();
    assert_eq!(rows.len(), all.len(), "no figure twice");
    let app = app_for(&wh).await;
    // Every line of every CSV the API serves for the quarter is a row of report.csv, under
    // the same header: each program's page (its equity breakdowns too), and each metric
    // compared by program and by every grouping.
    let mut served = 0;
    let mut check = |body: String, what: &str| {
        let mut lines = body.lines();
        assert_eq!(lines.next(), Some(header), "the columns of {what}");
        for l in lines {
            assert!(rows.contains(l), "{what}: {l} is not in report.csv");
            served += 1;
        }
    };
    for p in get(&app, "/v1/programs").await.json().as_array().unwrap() {
        let id = p["program_id"].as_str().unwrap();
        let r = get(
            &app,
            &format!("/v1/quarters/2025Q1/programs/{id}?format=csv"),
        )
        .await;
        assert_eq!(r.status, StatusCode::OK);
        check(r.text(), id);
    }
    for m in get(&app, "/v1/metrics").await.json().as_array().unwrap() {
        for by in [
            "program",
            "team_model",
            "police_on_visits",
            "warrant_check",
            "region",
            "statewide",
        ] {
            let uri = format!(
                "/v1/quarters/2025Q1/compare?metric={}&kind={}&by={by}&format=csv",
                m["name"].as_str().unwrap(),
                m["kind"].as_str().unwrap()
            );
            let r = get(&app, &uri).await;
            // The equity metrics are not compared across programs.
            if r.status == StatusCode::OK {
                check(r.text(), &uri);
            }
        }
    }
    assert!(served > 0);
    // And report.csv holds every figure of the publication: the equity breakdowns too,
    // statewide ones included, which no API route lists one by one.
    let doc = current_doc(&wh, "2025Q1");
    let len = |v: &Value, k: &str| v[k].as_array().map_or(0, Vec::len);
    let figures: usize = doc["programs"]
        .as_array()
        .unwrap()
        .iter()
        .chain(doc["groups"].as_array().unwrap())
        .map(|p| len(p, "counts") + len(p, "rates") + len(p, "differences"))
        .sum::<usize>()
        + doc["equity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| len(b, "counts") + len(b, "rates"))
            .sum::<usize>();
    assert_eq!(rows.len(), figures);
    let equity = |scope: &str| {
        rows.iter()
            .filter(|l| {
                let f: Vec<&str> = l.split(',').collect();
                f[1] == scope && !f[5].is_empty() && !f[6].is_empty()
            })
            .count()
    };
    assert!(equity("P1") > 0 && equity("statewide") > 0, "{csv}");
}

/// The part of a dashboard page from `from` to `to`.
fn section<'a>(html: &'a str, from: &str, to: &str) -> &'a str {
    let start = html.find(from).unwrap_or_else(|| panic!("no {from}"));
    let rest = &html[start..];
    &rest[..rest.find(to).unwrap_or(rest.len())]
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_marks_incomplete_follow_up_and_opens_on_a_complete_quarter() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let app = app_for(&wh).await;
    // 2026Q2's 30-day windows run past the data declared complete; 2026Q1's do not.
    let p002 = get(&app, "/v1/quarters/2026Q2/programs/P002").await.json();
    let engaged = p002["completeness"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["statistic"] == "engaged_30d")
        .unwrap();
    assert_eq!(engaged["complete"], false);
    let needs = engaged["needs_complete_through"].as_str().unwrap();

    // Opened without choices: on 2026Q1, the newest quarter whose engagement rate is
    // complete, saying that 2026Q2 is published but not yet complete.
    let default = get(&app, "/").await.text();
    assert!(default.contains("Post-overdose outreach programs, 2026Q1"));
    assert!(default.contains("<option value=\"2026Q1\" selected>"));
    assert!(
        default.contains("the newest quarter whose follow-up for engagement_30d is complete"),
        "the page says why it opened there"
    );
    assert!(default.contains("2026Q2"));
    // A metric complete in 2026Q2 opens on 2026Q2.
    let identified = get(&app, "/?metric=count:identified").await.text();
    assert!(identified.contains("Post-overdose outreach programs, 2026Q2"));
    let comparison = section(&identified, "id=\"comparison\"", "id=\"police-difference\"");
    assert!(!comparison.contains("follow-up incomplete"));

    // 2026Q2 chosen: the title, a plain statement with the date it needs, the chart's
    // legend, a marker on every figure of its table with the footnote, and the trend.
    let html = get(
        &app,
        "/?quarter=2026Q2&metric=rate:engagement_30d&program=P002",
    )
    .await
    .text();
    let title = section(&html, "<title>", "</title>");
    assert!(title.contains("follow-up incomplete"), "{title}");
    assert!(html.contains("<h2>engagement_30d: programs compared (follow-up incomplete)</h2>"));
    assert!(html.contains("Follow-up for engagement_30d in 2026Q2 is not complete"));
    assert!(html.contains(needs), "the date it needs, {needs}");
    let comparison = section(&html, "id=\"comparison\"", "id=\"police-difference\"");
    let svg = section(comparison, "<svg", "</svg>");
    assert!(svg.contains("follow-up incomplete"), "the chart's legend");
    assert!(
        comparison.contains("(follow-up incomplete).</strong>"),
        "the chart's title"
    );
    let cmp = get(
        &app,
        "/v1/quarters/2026Q2/compare?metric=engagement_30d&kind=rate",
    )
    .await
    .json();
    for f in cmp["figures"].as_array().unwrap() {
        assert_eq!(f["complete"], false);
        let marked = format!("{} †", rate_text(f));
        assert!(comparison.contains(&marked), "{} {marked}", f["scope"]);
    }
    assert!(
        comparison.contains("† Follow-up incomplete"),
        "the table's footnote"
    );
    let trend = section(&html, "id=\"trend\"", "</figure>");
    assert!(
        section(trend, "<svg", "</svg>").contains("follow-up incomplete"),
        "the trend's legend"
    );
    let row = section(trend, "<th scope=\"row\">2026Q2</th>", "</tr>");
    assert!(row.contains('†') && row.contains(">no<"), "{row}");
    let row = section(trend, "<th scope=\"row\">2025Q1</th>", "</tr>");
    assert!(!row.contains('†'), "{row}");

    // A complete quarter carries no mark in its comparison.
    let complete = get(
        &app,
        "/?quarter=2025Q1&metric=rate:engagement_30d&program=P002",
    )
    .await
    .text();
    let comparison = section(&complete, "id=\"comparison\"", "id=\"police-difference\"");
    assert!(!comparison.contains('†') && !comparison.contains("follow-up incomplete"));
    assert!(!complete.contains("is not complete"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_report_opens_with_a_summary_a_funder_reads_first() {
    use outreach_warehouse::publication::figures::{DifferenceFigure, Noisy, RateEstimate, rate};
    use outreach_warehouse::publication::{Publication, rate_variance};
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let out = tmp.path().join("2026Q2.html");
    let ok = report_command(&wh, "2026Q2", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    let html = std::fs::read_to_string(&out).unwrap();
    // What comes before the first program's table.
    let first = &html[..html.find("id=\"program-").expect("program tables")];
    assert!(first.contains("id=\"summary\""), "the summary comes first");
    let doc = |q: &str| Publication::from_document(&current_doc(&wh, q)).unwrap();
    let (now, before) = (doc("2026Q2"), doc("2026Q1"));
    let statewide = |d: &Publication| {
        d.groups
            .iter()
            .find(|g| g.by == "statewide")
            .unwrap()
            .clone()
    };
    let (sw, sw_before) = (statewide(&now), statewide(&before));
    fn json<T: serde::Serialize>(v: &T) -> Value {
        serde_json::to_value(v).unwrap()
    }
    // The statewide headline metrics with their intervals.
    let identified = sw
        .counts
        .iter()
        .find(|c| c.statistic == "identified")
        .unwrap();
    let count = format!(
        "{:.0} ({:.0}–{:.0})",
        identified.value, identified.lower, identified.upper
    );
    assert!(first.contains(&count), "statewide identified {count}");
    let engagement = sw
        .rates
        .iter()
        .find(|r| r.name == "engagement_30d")
        .unwrap();
    assert!(
        first.contains(&rate_text(&json(engagement))),
        "statewide engagement"
    );
    // The police-present minus police-absent difference.
    let diff = sw
        .differences
        .iter()
        .find(|d| d.name == "arrest_after_attempt_police_difference")
        .unwrap();
    assert!(
        first.contains(&rate_text(&json(diff))),
        "the police difference"
    );
    // The change from the previous quarter: the difference of two independent noisy
    // estimates, whose variances add. Each rate's variance is rebuilt here from its counts
    // as `publish` computed it: σ² per program summed over the programs, no smaller than
    // the covering half-width implies; one program's half-width is read off a count.
    let estimate = |d: &Publication, g: &outreach_warehouse::publication::GroupFigures| {
        let h1 = d.programs[0]
            .counts
            .iter()
            .find(|c| c.statistic == "identified")
            .map(|c| c.upper - c.raw)
            .unwrap();
        let n = g.programs.len();
        let noisy = |s: &str| {
            let raw = g.counts.iter().find(|c| c.statistic == s).unwrap().raw;
            Noisy {
                raw,
                variance: rate_variance(n, n as f64 * d.scale * d.scale, h1),
            }
        };
        rate(noisy("engaged_30d"), noisy("identified")).unwrap()
    };
    let (a, b): (RateEstimate, RateEstimate) = (estimate(&now, &sw), estimate(&before, &sw_before));
    let change = DifferenceFigure::new("c", "a", "b", Some(a), Some(b), false);
    assert!((change.standard_error.unwrap() - (a.variance + b.variance).sqrt()).abs() < 1e-12);
    let points = |x: Option<f64>| format!("{:+.1}", x.unwrap() * 100.0);
    let text = format!(
        "{} points ({} to {})",
        points(change.value),
        points(change.lower),
        points(change.upper)
    );
    assert!(first.contains("change from 2026Q1"), "the change's column");
    assert!(first.contains(&text), "the change of engagement, {text}");
    // What is incomplete, with the date the data must reach.
    let needs = now
        .completeness
        .iter()
        .find(|c| c.statistic == "engaged_30d")
        .unwrap();
    assert!(!needs.complete);
    let note = &first[first.find("<p class=\"incomplete\"").expect("the note")..];
    let note = &note[..note.find("</p>").unwrap()];
    assert!(note.contains("engagement_30d"), "{note}");
    assert!(note.contains(&needs.needs_complete_through), "{note}");
    // The programs compared on the headline metric, and the other charts, come first too.
    assert!(first.contains("id=\"chart-engagement_30d\""));
    assert!(first.contains("id=\"police-difference\""));

    // The first quarter has no previous publication to compare with, and says so.
    let out = tmp.path().join("2024Q3.html");
    assert!(report_command(&wh, "2024Q3", &out).status.success());
    let html = std::fs::read_to_string(&out).unwrap();
    let first = &html[..html.find("id=\"program-").unwrap()];
    assert!(first.contains("No publication of 2024Q2 to compare with"));
}
