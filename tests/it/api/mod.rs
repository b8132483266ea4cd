//! The read-only API (`src/api`): every route over a published fixture warehouse, through
//! `oneshot` (no socket), in JSON and CSV; the OpenAPI document; caching; tokens, limits,
//! headers and errors, each with its own test; a researcher's round trip through the CLI and
//! HTTP; and serving, which reloads only what was published. The set-up is in
//! `common::server`; the document against the code is `openapi`, the server under pressure
//! `resources`, and what the public record shows `public_record`.

mod layers;
mod openapi;
mod public_record;
mod resources;

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use outreach_warehouse::api::{AppState, Limits, ROUTES, app};
use outreach_warehouse::ingest::ingest;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::publication::NewPublication;
use outreach_warehouse::publication::publish;
use outreach_warehouse::requests::{Queue, Role, constant_time_eq};
use serde_json::{Value, json};

use crate::common::fixture::{fixture_files, fixture_opts, opts};
use crate::common::server::{
    CapturedLog, Served, add_researcher, app_for, assert_error, budgeted, current_doc, get, get_as,
    outreach, post, published, roomy, send, spec, state, submission, submit, submit_id,
    with_researcher,
};

/// One more survivor in 2025Q1 (a new dataset version), and the quarter published again.
async fn republish_2025q1_after_new_data(tmp: &Path, wh: &Path) {
    republish_2025q1_with_survivor(tmp, wh, 1).await;
}

/// Survivor `n` added in 2025Q1 (a new dataset version), and the quarter published again.
async fn republish_2025q1_with_survivor(tmp: &Path, wh: &Path, n: u32) {
    let extra = tmp.join(format!("overdose_events-extra{n}.csv"));
    std::fs::write(
        &extra,
        format!(
            "event_id,person_key,program_id,event_date,source,fatal,naloxone_administered,transported_to_ed,age_band,sex,race_ethnicity\n\
             EX{n},KX{n},P1,2025-02-10,ems,false,true,false,25_34,male,unknown\n"
        ),
    )
    .unwrap();
    ingest(wh, &[extra], &fixture_opts("2025-12-31")).unwrap();
    let mut o = opts("2025Q1");
    o.republish = true;
    publish(wh, &o).await.unwrap();
}

#[tokio::test(flavor = "multi_thread")]
async fn every_route_answers_on_a_published_warehouse_in_json_and_csv() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let doc = current_doc(&wh, "2025Q1");
    let release_id = doc["release_id"].as_i64().unwrap();

    let health = get(&app, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK);
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["quarters"], 2);

    let programs = get(&app, "/v1/programs").await.json();
    let ids: Vec<&str> = programs
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["program_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["P1", "P2", "P3"]);

    let metrics = get(&app, "/v1/metrics").await.json();
    let names: Vec<&str> = metrics
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for name in [
        "identified",
        "engaged_30d",
        "linked_moud_30d",
        "arrest_after_attempt_police_difference",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    assert!(
        metrics
            .as_array()
            .unwrap()
            .iter()
            .all(|m| !m["definition"].as_str().unwrap().is_empty())
    );

    let quarters = get(&app, "/v1/quarters").await.json();
    assert_eq!(quarters[0]["quarter"], "2025Q1");
    assert_eq!(quarters[1]["quarter"], "2025Q2");
    assert_eq!(quarters[0]["release_id"], release_id);

    // The funder's call: every standard metric of one program, as publish stored it.
    let page = get(&app, "/v1/quarters/2025Q1/programs/P1").await;
    assert_eq!(page.status, StatusCode::OK);
    let page = page.json();
    let stored = doc["programs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["program"]["program_id"] == "P1")
        .unwrap();
    let figures = page["figures"].as_array().unwrap();
    for c in stored["counts"].as_array().unwrap() {
        let f = figures
            .iter()
            .find(|f| {
                f["name"] == c["statistic"] && f["kind"] == "count" && f["breakdown"].is_null()
            })
            .unwrap_or_else(|| panic!("no figure for {}", c["statistic"]));
        for key in ["value", "lower", "upper", "raw", "complete"] {
            assert_eq!(f[key], c[key], "{key} of {}", c["statistic"]);
        }
        assert_eq!(f["kind"], "count");
        assert_eq!(f["distribution"], doc["distribution"]);
        assert_eq!(f["scale"], doc["scale"]);
        assert_eq!(f["release_id"], release_id);
        assert_eq!(f["dataset_version"], doc["dataset_version"]);
    }
    for r in stored["rates"].as_array().unwrap() {
        let f = figures
            .iter()
            .find(|f| f["name"] == r["name"] && f["kind"] == "rate" && f["breakdown"].is_null())
            .unwrap();
        assert_eq!(f["value"], r["value"]);
        assert_eq!(f["lower"], r["lower"]);
    }
    let equity: Vec<&Value> = figures
        .iter()
        .filter(|f| !f["breakdown"].is_null())
        .collect();
    assert!(
        !equity.is_empty(),
        "the equity breakdowns are standard metrics too"
    );
    assert!(
        equity
            .iter()
            .all(|f| f["release_id"] == doc["equity_release_id"]
                && f["scale"] == doc["equity_scale"])
    );
    assert_eq!(page["completeness"], doc["completeness"]);

    // The same page as CSV, by parameter and by Accept: one line per figure.
    let csv = get(&app, "/v1/quarters/2025Q1/programs/P1?format=csv").await;
    assert_eq!(csv.status, StatusCode::OK);
    assert!(csv.header(header::CONTENT_TYPE).starts_with("text/csv"));
    let text = csv.text();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "quarter,scope,by,kind,name,breakdown,breakdown_value,value,lower,upper,raw,insufficient_data,complete,distribution,scale,release_id,dataset_version"
    );
    assert_eq!(lines.count(), figures.len());
    let by_accept = send(
        &app,
        Request::get("/v1/quarters/2025Q1/programs/P1")
            .header(header::ACCEPT, "text/csv")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(by_accept.text(), text);

    // The agency's call: one metric across programs, and across program models.
    let cmp = get(&app, "/v1/quarters/2025Q1/compare?metric=engagement_30d").await;
    assert_eq!(cmp.status, StatusCode::OK, "{}", cmp.text());
    let cmp = cmp.json();
    assert_eq!(cmp["by"], "program");
    assert_eq!(cmp["figures"].as_array().unwrap().len(), 3);
    let by_model = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=identified&by=team_model&format=csv",
    )
    .await;
    assert_eq!(by_model.status, StatusCode::OK);
    let groups: Vec<&Value> = doc["groups"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| g["by"] == "team_model")
        .collect();
    assert_eq!(by_model.text().lines().count(), 1 + groups.len());
    let statewide = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=arrest_after_attempt_police_difference&by=statewide",
    )
    .await;
    assert_eq!(statewide.status, StatusCode::OK, "{}", statewide.text());
    assert_eq!(statewide.json()["figures"].as_array().unwrap().len(), 1);
    assert_eq!(statewide.json()["figures"][0]["kind"], "difference");
    // `naloxone_30d` names a count and a rate: the kind must be said.
    let ambiguous = get(&app, "/v1/quarters/2025Q1/compare?metric=naloxone_30d").await;
    assert_error(&ambiguous, StatusCode::BAD_REQUEST, "bad_request");
    assert!(ambiguous.text().contains("kind="), "{}", ambiguous.text());
    let rate = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=naloxone_30d&kind=rate",
    )
    .await
    .json();
    assert!(
        rate["figures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] == "rate")
    );
    let count = get(
        &app,
        "/v1/quarters/2025Q1/compare?metric=naloxone_30d&kind=count",
    )
    .await
    .json();
    assert!(
        count["figures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["kind"] == "count")
    );

    let list = get(&app, "/v1/releases").await.json();
    assert_eq!(
        list.as_array().unwrap().len(),
        4,
        "two quarters, two releases each"
    );
    let q1 = get(&app, "/v1/releases?quarter=2025Q1&format=csv").await;
    assert_eq!(q1.text().lines().count(), 1 + 2);
    let one = get(&app, &format!("/v1/releases/{release_id}")).await;
    assert_eq!(one.status, StatusCode::OK);
    let one = one.json();
    assert_eq!(one["id"], release_id);
    assert_eq!(one["quarter"], "2025Q1");
    assert!(one["debit_rho"].as_f64().unwrap() > 0.0);
    assert!(one["result"]["statistics"].as_array().unwrap().len() > 5);
    let one_csv = get(&app, &format!("/v1/releases/{release_id}?format=csv")).await;
    assert!(one_csv.text().starts_with("release,dataset_version,"));

    let budget = get(&app, "/v1/budget").await.json();
    let view = Ledger::open(&wh).unwrap().show().unwrap();
    assert_eq!(budget["total_rho"], view.period.total_rho);
    assert!((budget["spent_rho"].as_f64().unwrap() - view.spent_rho).abs() < 1e-12);
    assert!(budget["total_epsilon"].as_f64().unwrap() > budget["spent_epsilon"].as_f64().unwrap());
    assert_eq!(budget["allocations"][0]["name"], "standard-releases");
    let budget_csv = get(&app, "/v1/budget?format=csv").await.text();
    assert!(budget_csv.starts_with("name,rho,spent_rho,remaining_rho,epsilon,"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_parameters_unknown_ids_and_routes_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    use StatusCode as S;
    for (uri, status, code) in [
        (
            "/v1/quarters/2025Q5/programs/P1",
            S::BAD_REQUEST,
            "bad_request",
        ),
        ("/v1/quarters/2030Q1/programs/P1", S::NOT_FOUND, "not_found"),
        ("/v1/quarters/2025Q1/programs/P9", S::NOT_FOUND, "not_found"),
        (
            "/v1/quarters/2025Q1/programs/P1?format=xml",
            S::BAD_REQUEST,
            "bad_request",
        ),
        ("/v1/programs?format=", S::BAD_REQUEST, "bad_request"),
        ("/v1/quarters/2025Q1/compare", S::BAD_REQUEST, "bad_request"),
        (
            "/v1/quarters/2025Q1/compare?metric=identified&by=county",
            S::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/quarters/2025Q1/compare?metric=person_key",
            S::BAD_REQUEST,
            "bad_request",
        ),
        (
            "/v1/quarters/2031Q1/compare?metric=identified",
            S::NOT_FOUND,
            "not_found",
        ),
        ("/v1/releases/abc", S::BAD_REQUEST, "bad_request"),
        ("/v1/releases/99999", S::NOT_FOUND, "not_found"),
        ("/v1/releases?quarter=soon", S::BAD_REQUEST, "bad_request"),
        ("/v1/requests/1", S::UNAUTHORIZED, "unauthorized"),
        ("/v1/rows", S::NOT_FOUND, "not_found"),
    ] {
        let r = get(&app, uri).await;
        assert_error(&r, status, code);
        assert!(
            !r.text().contains(&*wh.to_string_lossy()),
            "{uri}: {}",
            r.text()
        );
    }
    let r = send(
        &app,
        Request::delete("/v1/releases/1")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_error(&r, S::METHOD_NOT_ALLOWED, "method_not_allowed");
    let r = send(
        &app,
        Request::put("/v1/budget").body(Body::from("{}")).unwrap(),
    )
    .await;
    assert_error(&r, S::METHOD_NOT_ALLOWED, "method_not_allowed");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_openapi_document_is_3_1_documents_every_route_and_its_refs_resolve() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let doc = get(&app, "/openapi.json").await.json();
    assert_eq!(doc["openapi"], "3.1.0");
    assert!(doc["info"]["title"].is_string());
    for (method, path) in ROUTES {
        let op = &doc["paths"][path][method.to_lowercase()];
        assert!(op.is_object(), "{method} {path} is not in /openapi.json");
        let responses = op["responses"].as_object().unwrap();
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{method} {path} documents no success"
        );
        // Every path parameter of the template is declared.
        for seg in path.split('/').filter(|s| s.starts_with('{')) {
            let name = seg.trim_matches(['{', '}']);
            let declared = op["parameters"]
                .as_array()
                .is_some_and(|ps| ps.iter().any(|p| p["name"] == name && p["in"] == "path"));
            assert!(declared, "{method} {path}: parameter {name} undeclared");
        }
    }
    let documented: usize = doc["paths"]
        .as_object()
        .unwrap()
        .values()
        .map(|p| p.as_object().unwrap().len())
        .sum();
    assert_eq!(
        documented,
        ROUTES.len(),
        "a documented route the server lacks"
    );
    // Every $ref names a schema that exists.
    fn refs<'a>(v: &'a Value, out: &mut Vec<&'a str>) {
        match v {
            Value::Object(m) => {
                if let Some(Value::String(r)) = m.get("$ref") {
                    out.push(r);
                }
                m.values().for_each(|x| refs(x, out));
            }
            Value::Array(a) => a.iter().for_each(|x| refs(x, out)),
            _ => {}
        }
    }
    let mut all = Vec::new();
    refs(&doc, &mut all);
    assert!(!all.is_empty());
    for r in all {
        let name = r
            .strip_prefix("#/components/schemas/")
            .unwrap_or_else(|| panic!("{r}"));
        assert!(
            doc["components"]["schemas"][name].is_object(),
            "{r} does not resolve"
        );
    }
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    // And every documented GET answers something other than 404 on this warehouse.
    // A head the warehouse signed, for `/v1/ledger/heads/{size}`.
    let head_size = Ledger::open_read_only(&wh)
        .unwrap()
        .chain_head()
        .unwrap()
        .unwrap()
        .size
        .to_string();
    for (method, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let uri = path
            .replace("{quarter}", "2025Q1")
            .replace("{program_id}", "P1")
            .replace("{page}", "1")
            .replace("{size}", &head_size)
            .replace(
                "{id}",
                &current_doc(&wh, "2025Q1")["release_id"].to_string(),
            );
        let uri = if uri.ends_with("/compare") {
            format!("{uri}?metric=identified")
        } else {
            uri
        };
        let r = get(&app, &uri).await;
        assert!(
            r.status == StatusCode::OK || r.status == StatusCode::UNAUTHORIZED,
            "{method} {uri}: {}",
            r.status
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn releases_carry_etags_and_cache_headers_and_a_conditional_get_is_304() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let id = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    let uri = format!("/v1/releases/{id}");
    let first = get(&app, &uri).await;
    let etag = first.header(header::ETAG);
    assert!(etag.starts_with('"') && etag.len() > 10, "{etag}");
    assert!(
        first
            .header(header::CACHE_CONTROL)
            .contains("must-revalidate")
    );
    let again = send(
        &app,
        Request::get(&uri)
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    assert!(again.body.is_empty());
    assert_eq!(again.header(header::ETAG), etag);
    // The CSV body has its own ETag: a JSON copy never answers a CSV request.
    let csv = send(
        &app,
        Request::get(format!("{uri}?format=csv"))
            .header(header::IF_NONE_MATCH, &etag)
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(csv.status, StatusCode::OK);
    assert_ne!(csv.header(header::ETAG), etag);
    // A stale ETag gets the body.
    let stale = send(
        &app,
        Request::get(&uri)
            .header(header::IF_NONE_MATCH, "\"0123\"")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(stale.status, StatusCode::OK);
    let page = get(&app, "/v1/quarters/2025Q1/programs/P2").await;
    assert!(page.header(header::CACHE_CONTROL).starts_with("public"));
    let page304 = send(
        &app,
        Request::get("/v1/quarters/2025Q1/programs/P2")
            .header(header::IF_NONE_MATCH, page.header(header::ETAG))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(page304.status, StatusCode::NOT_MODIFIED);
}

/// Every key anywhere in a JSON value.
pub(crate) fn keys(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                out.push(k.clone());
                keys(x, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| keys(x, out)),
        _ => {}
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_public_release_view_never_holds_steward_only_fields() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let list = get(&app, "/v1/releases").await.json();
    let stored = Ledger::open(&wh).unwrap().releases().unwrap();
    assert!(
        stored.iter().all(|r| r.diagnostics.is_some()),
        "the steward's record has diagnostics, so their absence below means something"
    );
    for r in list.as_array().unwrap() {
        let full = get(&app, &format!("/v1/releases/{}", r["id"])).await.json();
        let mut all = Vec::new();
        keys(&full, &mut all);
        for forbidden in [
            "error",
            "diagnostics",
            "status",
            "idempotency_key",
            "content_hash",
            "manifest_hash",
            "persons",
            "rows",
        ] {
            assert!(
                !all.iter().any(|k| k == forbidden),
                "release {} shows `{forbidden}`",
                r["id"]
            );
        }
    }
}

/// Waits up to five seconds for the funder's route to serve release `id` for 2025Q1 P1.
async fn comes_to_serve(app: &Router, id: i64) -> bool {
    for _ in 0..250 {
        let page = get(app, "/v1/quarters/2025Q1/programs/P1").await.json();
        if page["release_id"] == id {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    false
}

/// The watcher reloads what changed, also a change made between the server's first load and
/// the watcher's first look (while the server starts): that first look is not taken as the
/// state served.
#[tokio::test(flavor = "multi_thread")]
async fn the_watcher_reloads_a_change_made_while_the_server_was_starting() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());
    let first = get(&app, "/v1/quarters/2025Q1/programs/P1").await.json()["release_id"].clone();
    republish_2025q1_with_survivor(tmp.path(), &wh, 1).await;
    let second = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    assert_ne!(first, second);
    tokio::spawn(st.clone().watch(std::time::Duration::from_millis(20)));
    assert!(comes_to_serve(&app, second).await, "still serving {first}");
    // A change while it watches.
    republish_2025q1_with_survivor(tmp.path(), &wh, 2).await;
    let third = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    assert!(comes_to_serve(&app, third).await, "still serving {second}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_superseded_release_names_its_successor_and_the_quarter_routes_serve_the_latest() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let old = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    republish_2025q1_after_new_data(tmp.path(), &wh).await;
    let new = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    assert_ne!(old, new);
    let app = app_for(&wh).await;
    let old_view = get(&app, &format!("/v1/releases/{old}")).await.json();
    assert_eq!(old_view["superseded_by"], new);
    let new_view = get(&app, &format!("/v1/releases/{new}")).await.json();
    assert!(new_view["superseded_by"].is_null());
    let page = get(&app, "/v1/quarters/2025Q1/programs/P1").await.json();
    assert_eq!(page["release_id"], new);
    assert!(
        page["figures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|f| f["release_id"] == new || f["release_id"] == page["equity_release_id"])
    );
    let current = get(&app, "/v1/releases?quarter=2025Q1&current=true")
        .await
        .json();
    let ids: Vec<i64> = current
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_i64().unwrap())
        .collect();
    assert!(ids.contains(&new) && !ids.contains(&old), "{ids:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_later_complete_through_is_published_without_new_spending_and_the_api_shows_it() {
    let tmp = tempfile::tempdir().unwrap();
    // Complete through 2025-05-15: 2025Q1's 90- and 120-day windows are not.
    let wh = budgeted(tmp.path(), "2025-05-15");
    let mut incomplete = opts("2025Q1");
    incomplete.allow_incomplete = true;
    let first = publish(&wh, &incomplete).await.unwrap();
    assert!(first.publication.completeness.iter().any(|c| !c.complete));
    let spent = Ledger::open(&wh).unwrap().show().unwrap().spent_rho;
    // The steward declares every table complete, as the README says: `complete-through`.
    for file in fixture_files() {
        let table = file.file_stem().unwrap().to_str().unwrap().to_string();
        outreach(&wh, &["complete-through", &table, "2025-12-31"]);
    }
    // Publishing again needs no --allow-incomplete, replays both releases, and stores a new
    // document that supersedes the old one.
    let again = publish(&wh, &opts("2025Q1")).await.unwrap();
    assert!(!again.fresh, "the same releases: nothing drawn");
    assert_eq!(again.publication.release_id, first.publication.release_id);
    assert_eq!(
        again.publication.equity_release_id,
        first.publication.equity_release_id
    );
    assert!(again.publication.completeness.iter().all(|c| c.complete));
    assert_ne!(again.publication_id, first.publication_id);
    assert_eq!(again.superseded, Some(first.publication_id));
    let ledger = Ledger::open(&wh).unwrap();
    assert_eq!(
        ledger.show().unwrap().spent_rho,
        spent,
        "nothing is debited"
    );
    assert_eq!(ledger.releases().unwrap().len(), 2);
    drop(ledger);
    let doc = current_doc(&wh, "2025Q1");
    assert!(
        doc["completeness"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["complete"] == true),
        "the stored figures are the complete ones"
    );

    // The API serves what the CLI printed: complete figures, from the same releases.
    let app = app_for(&wh).await;
    let quarters = get(&app, "/v1/quarters").await.json();
    assert_eq!(quarters[0]["publication_id"], again.publication_id);
    assert_eq!(quarters[0]["supersedes"], first.publication_id);
    assert_eq!(quarters[0]["release_id"], first.publication.release_id);
    let page = get(&app, "/v1/quarters/2025Q1/programs/P1").await.json();
    assert_eq!(page["publication_id"], again.publication_id);
    assert!(
        page["completeness"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["complete"] == true),
        "{}",
        page["completeness"]
    );
    let figures = page["figures"].as_array().unwrap();
    assert!(!figures.is_empty());
    assert!(figures.iter().all(|f| f["complete"] == true));
    let budget = get(&app, "/v1/budget").await.json();
    assert!((budget["spent_rho"].as_f64().unwrap() - spent).abs() <= 1e-12);
    // Neither release was replaced: both are current.
    for id in [
        first.publication.release_id,
        first.publication.equity_release_id.unwrap(),
    ] {
        let r = get(&app, &format!("/v1/releases/{id}")).await.json();
        assert!(r["superseded_by"].is_null(), "{id}: {}", r["superseded_by"]);
    }
    let current = get(&app, "/v1/releases?quarter=2025Q1&current=true")
        .await
        .json();
    assert_eq!(current.as_array().unwrap().len(), 2);

    // Once more: the stored document is the same, so nothing new is stored.
    let third = publish(&wh, &opts("2025Q1")).await.unwrap();
    assert_eq!(third.publication_id, again.publication_id);
    assert_eq!(third.superseded, None);
    assert_eq!(
        Ledger::open(&wh)
            .unwrap()
            .publications(Some("2025Q1"))
            .unwrap()
            .len(),
        2
    );
}

/// A number as the templates print it (minijinja's `round(places)`).
fn shown(x: f64, places: i32) -> String {
    let p = 10f64.powi(places);
    let mut s = ((p * x).round() / p).to_string();
    if !s.contains('.') {
        s.push_str(".0");
    }
    s
}

#[tokio::test(flavor = "multi_thread")]
async fn the_quarter_view_shows_the_quarters_whole_loss_superseded_releases_included() {
    use outreach_warehouse::privacy::mechanism::epsilon_at;
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let first = current_doc(&wh, "2025Q1");
    republish_2025q1_after_new_data(tmp.path(), &wh).await;
    let second = current_doc(&wh, "2025Q1");
    let ledger = Ledger::open(&wh).unwrap();
    let debit = |id: &Value| ledger.release(id.as_i64().unwrap()).unwrap().debit_rho;
    let (s1, e1) = (
        debit(&first["release_id"]),
        debit(&first["equity_release_id"]),
    );
    let (s2, e2) = (
        debit(&second["release_id"]),
        debit(&second["equity_release_id"]),
    );
    // Every release that published 2025Q1: the current two and the superseded two.
    let total = s1 + e1 + s2 + e2;
    let app = app_for(&wh).await;
    let quarters = get(&app, "/v1/quarters").await.json();
    let of = |quarter: &str| {
        quarters
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["quarter"] == quarter)
            .unwrap()
            .clone()
    };
    let q1 = of("2025Q1");
    let num = |k: &str| {
        q1[k]
            .as_f64()
            .unwrap_or_else(|| panic!("{k} missing from {q1}"))
    };
    let rho = num("rho");
    assert!(
        (rho - total).abs() <= 1e-12,
        "{rho} != {s1} + {e1} + {s2} + {e2}"
    );
    assert!((num("standard_rho") - s2).abs() <= 1e-15);
    assert!((num("equity_rho") - e2).abs() <= 1e-15);
    assert!((num("superseded_rho") - (s1 + e1)).abs() <= 1e-12);
    // ε of the whole, and of each part alone, converted at the display δ as everywhere.
    let delta = num("display_delta");
    assert_eq!(
        num("epsilon_delta"),
        delta,
        "the standard metrics spend no δ"
    );
    // (JSON numbers may come back an ulp off: compare closely, not exactly.)
    let near = |a: f64, b: f64| (a - b).abs() <= 1e-9 * b.abs();
    assert!(near(num("epsilon"), epsilon_at(rho, delta).unwrap()));
    for part in ["standard", "equity", "superseded"] {
        assert!(
            near(
                num(&format!("{part}_epsilon")),
                epsilon_at(num(&format!("{part}_rho")), delta).unwrap()
            ),
            "{part}"
        );
    }
    // It is more than the standard release's ε alone.
    assert!(num("epsilon") > second["epsilon"].as_f64().unwrap());
    // Every release is listed once with its ρ; the superseded ones are not current.
    let listed = q1["releases"].as_array().unwrap();
    let ids: Vec<i64> = listed
        .iter()
        .map(|r| r["release_id"].as_i64().unwrap())
        .collect();
    let expected: Vec<i64> = [
        &first["release_id"],
        &first["equity_release_id"],
        &second["release_id"],
        &second["equity_release_id"],
    ]
    .iter()
    .map(|v| v.as_i64().unwrap())
    .collect();
    assert_eq!(ids, expected);
    let listed_rho: f64 = listed.iter().map(|r| r["rho"].as_f64().unwrap()).sum();
    assert!((listed_rho - rho).abs() <= 1e-12);
    for r in listed {
        let current = r["release_id"] == second["release_id"]
            || r["release_id"] == second["equity_release_id"];
        assert_eq!(r["current"], current, "{r}");
    }
    // 2025Q2 was published once: its two releases, nothing superseded.
    let q2 = of("2025Q2");
    let q2_doc = current_doc(&wh, "2025Q2");
    let q2_total = debit(&q2_doc["release_id"]) + debit(&q2_doc["equity_release_id"]);
    assert!((q2["rho"].as_f64().unwrap() - q2_total).abs() <= 1e-12);
    assert_eq!(q2["superseded_rho"].as_f64().unwrap(), 0.0);
    drop(ledger);
    // The CSV carries the total and its parts.
    let csv = get(&app, "/v1/quarters?format=csv").await.text();
    assert!(
        csv.lines().next().unwrap().contains(
            "rho,epsilon,display_delta,epsilon_delta,standard_rho,standard_epsilon,equity_rho,equity_epsilon,superseded_rho,superseded_epsilon"
        ),
        "{csv}"
    );
    // The dashboard and the report show the quarter's loss, not the standard release's.
    let total_text = format!(
        "zCDP &rho; = {} (&epsilon; = {}",
        shown(rho, 4),
        shown(num("epsilon"), 3)
    );
    let page = get(&app, "/?quarter=2025Q1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let html = page.text();
    assert!(
        html.contains("Privacy loss of 2025Q1") && html.contains(&total_text),
        "{total_text}"
    );
    let (report, _) = outreach_warehouse::present::quarterly::render(
        &wh,
        "2025Q1".parse().unwrap(),
        "report.csv",
    )
    .await
    .unwrap();
    assert!(
        report.contains(&format!(
            "zCDP &rho; = {}, &epsilon; = {}",
            shown(rho, 4),
            shown(num("epsilon"), 3)
        )),
        "the report's total"
    );
    assert!(report.contains("Superseded publications"));
}

/// The ledger file's bytes (and its WAL's, if any).
fn ledger_bytes(wh: &Path) -> Vec<Vec<u8>> {
    ["ledger.sqlite", "ledger.sqlite-wal"]
        .iter()
        .map(|f| std::fs::read(wh.join(f)).unwrap_or_default())
        .collect()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_server_cannot_write_the_ledger_or_the_release_store() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // What the server opens refuses writes in SQLite itself.
    let mut ro = Ledger::open_read_only(&wh).unwrap();
    assert!(ro.is_read_only());
    let doc = json!({});
    let e = ro
        .record_publication(&NewPublication {
            quarter: "2025Q3",
            release_id: 1,
            dataset_version: "v1",
            approver: "attacker",
            document: &doc,
        })
        .unwrap_err();
    assert!(
        e.to_string().contains("readonly") || e.to_string().contains("read-only"),
        "{e}"
    );
    assert!(ro.allocate("x", 1.0).is_err());
    drop(ro);
    // And serving every route, including submissions, leaves the ledger's bytes as they were.
    let before = ledger_bytes(&wh);
    let (st, token) = with_researcher(&wh, "rita", 0.5, roomy()).await;
    let before_after_allocate = ledger_bytes(&wh);
    assert_ne!(before, before_after_allocate);
    let app = app(st);
    // A head the warehouse signed, for `/v1/ledger/heads/{size}`.
    let head_size = Ledger::open_read_only(&wh)
        .unwrap()
        .chain_head()
        .unwrap()
        .unwrap()
        .size
        .to_string();
    for (_, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let uri = path
            .replace("{quarter}", "2025Q1")
            .replace("{program_id}", "P1")
            .replace("{page}", "1")
            .replace("{size}", &head_size)
            .replace("{id}", "1");
        get(&app, &uri).await;
        get(&app, &format!("{uri}?format=csv")).await;
    }
    let r = submit(&app, &token, &submission(0.1)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert_eq!(ledger_bytes(&wh), before_after_allocate);
}

/// At most two submissions are planned at once. One more is answered 503 `busy` in JSON with
/// a `Retry-After`, as the OpenAPI document says; it holds no planning slot and queues
/// nothing, and a slot freed is taken by the next submission.
#[tokio::test(flavor = "multi_thread")]
async fn a_submission_past_the_planning_slots_is_503_busy_and_queues_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let app = app(st.clone());
    let planning = st.planning();
    assert_eq!(outreach_warehouse::api::MAX_PLANNING, 2);
    // Two submissions are being planned.
    let mut held: Vec<_> = (0..2)
        .map(|_| planning.clone().try_acquire_owned().unwrap())
        .collect();
    let r = submit(&app, &token, &submission(0.1)).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "busy");
    assert_eq!(r.header(header::RETRY_AFTER), "1");
    assert_eq!(
        planning.available_permits(),
        0,
        "a refused submission holds no slot"
    );
    // One of them ends: the next submission is planned, and it is the first request queued.
    drop(held.pop());
    // (Ids are random: the queue, not the id, says it is the first.)
    let id = submit_id(&app, &token, &submission(0.1)).await;
    let queued: Vec<String> = st
        .queue()
        .list()
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(queued, [id]);
    assert_eq!(
        planning.available_permits(),
        1,
        "planning gives its slot back"
    );

    let doc = get(&app, "/openapi.json").await.json();
    let busy = &doc["paths"]["/v1/requests"]["post"]["responses"]["503"];
    assert!(
        busy.is_object(),
        "503 is not documented: {}",
        doc["paths"]["/v1/requests"]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_or_missing_token_gets_401_and_a_revoked_one_too() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let app = app(st.clone());
    let body = submission(0.1).to_string();
    assert_error(
        &post(&app, "/v1/requests", None, body.clone()).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    let mut wrong = token.clone().into_bytes();
    let last = wrong.len() - 1;
    wrong[last] = if wrong[last] == b'0' { b'1' } else { b'0' };
    let wrong = String::from_utf8(wrong).unwrap();
    for bad in [
        wrong.as_str(),
        &token[..token.len() - 1],
        &format!("{token}0"),
        "owr_",
        " ",
    ] {
        let r = post(&app, "/v1/requests", Some(bad), body.clone()).await;
        assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
        assert!(r.header(header::WWW_AUTHENTICATE).starts_with("Bearer"));
    }
    let basic = send(
        &app,
        Request::post("/v1/requests")
            .header(header::AUTHORIZATION, format!("Basic {token}"))
            .body(Body::from(body.clone()))
            .unwrap(),
    )
    .await;
    assert_error(&basic, StatusCode::UNAUTHORIZED, "unauthorized");
    let ok = post(&app, "/v1/requests", Some(&token), body.clone()).await;
    assert_eq!(ok.status, StatusCode::CREATED, "{}", ok.text());
    st.queue().revoke_token("alice").unwrap();
    assert_error(
        &post(&app, "/v1/requests", Some(&token), body).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

#[test]
fn tokens_are_compared_in_constant_time_over_their_hashes() {
    // The comparison folds every byte before it decides: equal, first-byte and last-byte
    // differences take the same path. (Timing itself is not measurable in a test; this
    // checks the function the authentication uses and that it is exact.)
    assert!(constant_time_eq(b"abcdef", b"abcdef"));
    assert!(!constant_time_eq(b"abcdef", b"bbcdef"));
    assert!(!constant_time_eq(b"abcdef", b"abcdeg"));
    assert!(!constant_time_eq(b"abcdef", b"abcde"));
    assert!(!constant_time_eq(b"", b"a"));
    let tmp = tempfile::tempdir().unwrap();
    let mut q = Queue::open(tmp.path()).unwrap();
    let a = q.create_token("a", Role::Researcher).unwrap();
    let b = q.create_token("b", Role::Researcher).unwrap();
    assert_eq!(
        q.authenticate(&a).unwrap().map(|h| h.name).as_deref(),
        Some("a")
    );
    assert_eq!(
        q.authenticate(&b).unwrap().map(|h| h.name).as_deref(),
        Some("b")
    );
    assert_eq!(q.authenticate(&a.to_uppercase()).unwrap(), None);
    // Only hashes are stored: the file never holds a token.
    drop(q);
    let file = std::fs::read(tmp.path().join("requests.sqlite")).unwrap();
    let wal = std::fs::read(tmp.path().join("requests.sqlite-wal")).unwrap_or_default();
    for t in [&a, &b] {
        let needle = &t.as_bytes()[4..20];
        assert!(!file.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }
    // A second active token for one name is refused; names are checked.
    let mut q = Queue::open(tmp.path()).unwrap();
    assert!(q.create_token("a", Role::Researcher).is_err());
    assert!(q.create_token("../x", Role::Researcher).is_err());
    assert!(q.create_token("", Role::Researcher).is_err());
}

#[tokio::test(flavor = "multi_thread")]
async fn another_researchers_request_is_404_like_one_that_does_not_exist() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, alice) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let bob = st.queue().create_token("bob", Role::Researcher).unwrap();
    let app = app(st);
    let id = submit_id(&app, &alice, &submission(0.1)).await;
    let mine = get_as(&app, &format!("/v1/requests/{id}"), &alice).await;
    assert_eq!(mine.status, StatusCode::OK);
    assert_eq!(mine.json()["state"], "pending");
    let theirs = get_as(&app, &format!("/v1/requests/{id}"), &bob).await;
    let none = get_as(&app, "/v1/requests/424242", &bob).await;
    assert_error(&theirs, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        theirs.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace(&id.to_string(), "N"),
        none.json()["error"]["message"]
            .as_str()
            .unwrap()
            .replace("424242", "N")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn oversized_and_malformed_bodies_get_json_errors() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let limits = Limits {
        max_body_bytes: 4096,
        ..roomy()
    };
    let (st, token) = with_researcher(&wh, "alice", 0.5, limits).await;
    let app = app(st);
    let mut big = submission(0.1);
    big["purpose"] = Value::String("x".repeat(10_000));
    let r = submit(&app, &token, &big).await;
    assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large");
    for bad in [
        "",
        "{",
        "[]",
        "{\"purpose\": 1}",
        "{\"purpose\":\"p\",\"rho\":0.1,\"spec\":{},\"extra\":1}",
    ] {
        let r = post(&app, "/v1/requests", Some(&token), bad.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn requests_are_rate_limited_per_ip_and_per_token_with_a_json_429() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // Per IP: a burst of 3, refilled once a minute.
    let per_ip = Limits {
        per_ip_per_second: 1.0 / 60.0,
        per_ip_burst: 3,
        ..roomy()
    };
    let app1 = app(state(&wh, per_ip).await);
    for _ in 0..3 {
        assert_eq!(get(&app1, "/v1/quarters").await.status, StatusCode::OK);
    }
    let r = get(&app1, "/v1/quarters").await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    assert!(r.header(header::RETRY_AFTER).parse::<u64>().unwrap() >= 1);
    // Per token: alice's burst of 2 runs out while bob's is untouched.
    let per_token = Limits {
        per_token_per_minute: 1.0,
        per_token_burst: 2,
        ..roomy()
    };
    let (st, alice) = with_researcher(&wh, "alice", 0.5, per_token).await;
    let bob = st.queue().create_token("bob", Role::Researcher).unwrap();
    let app2 = app(st);
    for _ in 0..2 {
        assert_eq!(
            get_as(&app2, "/v1/requests/1", &alice).await.status,
            StatusCode::NOT_FOUND
        );
    }
    assert_error(
        &get_as(&app2, "/v1/requests/1", &alice).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_requests",
    );
    assert_eq!(
        get_as(&app2, "/v1/requests/1", &bob).await.status,
        StatusCode::NOT_FOUND
    );
    // The public routes are not limited by the per-token limit.
    assert_eq!(get(&app2, "/v1/quarters").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_internal_error_is_a_json_500_that_shows_nothing_internal() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let app = app(st);
    // The ledger disappears under a running server (a careless operator): the submission
    // cannot be priced.
    std::fs::rename(wh.join("ledger.sqlite"), tmp.path().join("moved.sqlite")).unwrap();
    let r = submit(&app, &token, &submission(0.1)).await;
    assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, "internal");
    let text = r.text();
    assert_eq!(r.json()["error"]["message"], "internal error");
    assert!(
        !text.contains("ledger") && !text.contains(&*wh.to_string_lossy()),
        "{text}"
    );
    // What was already rendered is still served.
    assert_eq!(get(&app, "/v1/quarters").await.status, StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread")]
async fn security_headers_cors_for_get_only_and_an_access_log_line_per_request() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let log = st.access_log().clone();
    let app = app(st);
    for uri in [
        "/v1/quarters",
        "/v1/nothing",
        "/v1/quarters/2025Q1/programs/P1?format=csv",
    ] {
        let r = get(&app, uri).await;
        assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff", "{uri}");
        assert_eq!(r.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(r.header(header::REFERRER_POLICY), "no-referrer");
        assert!(
            r.header(header::CONTENT_SECURITY_POLICY)
                .contains("default-src 'none'")
        );
    }
    // CORS: a cross-origin GET is allowed; a preflight for POST does not allow POST.
    let cross = send(
        &app,
        Request::get("/v1/quarters")
            .header(header::ORIGIN, "https://dashboard.example")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(cross.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    let preflight = send(
        &app,
        Request::builder()
            .method(Method::OPTIONS)
            .uri("/v1/requests")
            .header(header::ORIGIN, "https://evil.example")
            .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    let allowed = preflight.header(header::ACCESS_CONTROL_ALLOW_METHODS);
    assert!(allowed.contains("GET"), "{allowed}");
    assert!(!allowed.contains("POST"), "{allowed}");
    // One access record per request: method, path without the query, status.
    let records = log.records();
    assert!(records.len() >= 5, "{records:?}");
    assert!(
        records
            .iter()
            .any(|r| r.path == "/v1/nothing" && r.status == 404)
    );
    assert!(
        records
            .iter()
            .any(|r| r.path == "/v1/quarters/2025Q1/programs/P1"
                && r.status == 200
                && r.method == "GET")
    );
    assert!(records.iter().all(|r| !r.path.contains('?')));

    // What `outreach serve` writes: one JSON object per line, never a query string or token.
    let out = CapturedLog::default();
    let log = out.access_log();
    let st = AppState::open(&wh, roomy(), log.clone()).await.unwrap();
    let token = st.queue().create_token("lee", Role::Researcher).unwrap();
    let app = outreach_warehouse::api::app(st);
    get(&app, "/v1/budget?format=csv").await;
    get_as(&app, "/v1/requests/7", &token).await;
    log.flush();
    let text = out.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert_eq!(lines[0]["path"], "/v1/budget");
    assert_eq!(lines[0]["status"], 200);
    assert_eq!(lines[1]["path"], "/v1/requests/7");
    assert_eq!(lines[1]["status"], 404);
    assert!(
        lines
            .iter()
            .all(|l| l["time"].is_string() && l["micros"].is_number() && l["method"] == "GET")
    );
    assert!(
        !text.contains(&token[4..]) && !text.contains("csv"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_researcher_round_trip_through_the_cli_and_http() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // The steward creates the token and the allocation from the CLI.
    let out = outreach(
        &wh,
        &["tokens", "create", "--role", "researcher", "--name", "rosa"],
    );
    let token = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(token.starts_with("owr_") && token.len() == 68, "{token}");
    outreach(&wh, &["budget", "allocate", "researcher:rosa", "0.5"]);
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());

    // The researcher submits and sees the cost and accuracy before anything is spent.
    let spent_before = Ledger::open(&wh).unwrap().show().unwrap().spent_rho;
    let r = submit(&app, &token, &submission(0.2)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    let sub = r.json();
    let id = sub["id"].as_str().unwrap().to_string();
    assert_eq!(r.header(header::LOCATION), format!("/v1/requests/{id}"));
    assert_eq!(sub["state"], "pending");
    let quote = &sub["quote"];
    assert_eq!(quote["allocation"], "researcher:rosa");
    assert!((quote["rho"].as_f64().unwrap() - 0.2).abs() < 1e-12);
    // k = 2, one 0/1 count: σ = sqrt(k / (2ρ)) = sqrt(2 / 0.4).
    let sigma = quote["statistics"][0]["scale"].as_f64().unwrap();
    assert!((sigma - (2.0f64 / 0.4).sqrt()).abs() < 1e-9, "{sigma}");
    let half = quote["statistics"][0]["half_width"].as_i64().unwrap();
    assert!((4..=6).contains(&half), "{half}: about 1.96 σ = 4.4");
    assert_eq!(quote["cells"], 3 * 2);
    assert_eq!(
        Ledger::open(&wh).unwrap().show().unwrap().spent_rho,
        spent_before
    );
    let pending = get_as(&app, &format!("/v1/requests/{id}"), &token)
        .await
        .json();
    assert_eq!(pending["state"], "pending");
    assert!(pending["release"].is_null());

    // The steward approves from the CLI: the release runs, debited from rosa's allocation.
    let out = outreach(&wh, &["requests", "list"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("rosa"));
    outreach(
        &wh,
        &["requests", "approve", &id.to_string(), "--approver", "sam"],
    );
    let view = Ledger::open(&wh).unwrap().show().unwrap();
    let rosa = view
        .allocations
        .iter()
        .find(|a| a.name == "researcher:rosa")
        .unwrap();
    assert!((rosa.spent_rho - 0.2).abs() < 1e-12);
    st.reload().await.unwrap();

    let done = get_as(&app, &format!("/v1/requests/{id}"), &token)
        .await
        .json();
    assert_eq!(done["state"], "released", "{done}");
    let stat = &done["release"]["result"]["statistics"][0];
    assert_eq!(stat["name"], "attempted");
    assert_eq!(stat["values"].as_array().unwrap().len(), 6);
    // The quote's accuracy is the release's: the same noise plan.
    assert_eq!(stat["half_width"].as_i64().unwrap(), half);
    assert_eq!(stat["scale"].as_f64().unwrap(), sigma);
    assert_eq!(done["release"]["approver"], "sam");
    // Visible to rosa alone: not among the public releases.
    let rid = done["release"]["id"].as_i64().unwrap();
    assert_error(
        &get(&app, &format!("/v1/releases/{rid}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let listed = get(&app, "/v1/releases").await.json();
    assert!(listed.as_array().unwrap().iter().all(|r| r["id"] != rid));

    // A second request, rejected with words the researcher sees; then one approved public.
    let r2 = submit(&app, &token, &submission(0.1)).await.json();
    let id2 = r2["id"].as_str().unwrap().to_string();
    outreach(
        &wh,
        &[
            "requests",
            "reject",
            &id2.to_string(),
            "--why",
            "too close to request 1",
        ],
    );
    let rejected = get_as(&app, &format!("/v1/requests/{id2}"), &token)
        .await
        .json();
    assert_eq!(rejected["state"], "rejected");
    assert_eq!(rejected["why"], "too close to request 1");
    // A decision is final.
    let again = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["requests", "approve", &id2.to_string()])
        .env("OUTREACH_WAREHOUSE", &wh)
        .output()
        .unwrap();
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("only a pending request"));

    let mut s3 = submission(0.1);
    s3["spec"]["name"] = json!("a public request");
    let id3 = submit_id(&app, &token, &s3).await;
    outreach(&wh, &["requests", "approve", &id3.to_string(), "--public"]);
    st.reload().await.unwrap();
    let public = get_as(&app, &format!("/v1/requests/{id3}"), &token)
        .await
        .json();
    let rid3 = public["release"]["id"].as_i64().unwrap();
    assert_eq!(
        get(&app, &format!("/v1/releases/{rid3}")).await.status,
        StatusCode::OK
    );

    // Over budget: rosa has 0.5 - 0.2 - 0.1 = 0.2 left; asking 0.3 is refused with 409.
    let over = submit(&app, &token, &submission(0.3)).await;
    assert_error(&over, StatusCode::CONFLICT, "budget_exhausted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_query_that_is_not_person_local_or_tries_ddl_is_refused_with_the_analysers_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let app = app(st.clone());
    let cases = [
        // Counts over persons: not person-level rows.
        (
            "SELECT min(person_key) AS person_key, program_id, quarter_of(attempt_date) AS quarter, count(*) > 3 AS attempted FROM outreach_attempts GROUP BY program_id, quarter_of(attempt_date)",
            "refused",
        ),
        ("DROP TABLE outreach_attempts", "refused"),
        (
            "CREATE TABLE x AS SELECT * FROM outreach_attempts",
            "refused",
        ),
        (
            "INSERT INTO outreach_attempts SELECT * FROM outreach_attempts",
            "refused",
        ),
    ];
    for (sql, word) in cases {
        let mut s = submission(0.1);
        s["spec"] = spec(sql);
        let r = submit(&app, &token, &s).await;
        assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
        let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
        assert!(msg.contains(word) || msg.contains("plan"), "{sql}: {msg}");
    }
    // A query file on the server's disk, another allocation, a mismatched rho.
    let mut file = submission(0.1);
    file["spec"]["queries"] = json!([{"file": "/etc/passwd"}]);
    let r = submit(&app, &token, &file).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert!(r.text().contains("inline"), "{}", r.text());
    let mut other = submission(0.1);
    other["spec"]["allocation"] = json!("standard-releases");
    let r = submit(&app, &token, &other).await;
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    assert!(r.text().contains("researcher:alice"));
    let mut mismatch = submission(0.1);
    mismatch["spec"]["rho"] = json!(0.4);
    assert_error(
        &submit(&app, &token, &mismatch).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "unprocessable",
    );
    // Nothing refused was queued, and a researcher with no allocation is told so.
    assert!(st.queue().list().unwrap().is_empty());
    let bob = st.queue().create_token("bob", Role::Researcher).unwrap();
    let r = submit(&app, &bob, &submission(0.1)).await;
    assert_error(&r, StatusCode::CONFLICT, "budget_exhausted");
    assert!(
        r.text().contains("researcher:bob") && !r.text().contains("standard-releases"),
        "{}",
        r.text()
    );
}

/// Six columns of `repeat('a1', 300000000)` would fold into 6.1 GiB of literals if the
/// optimiser ran before the allow-list looked. The submission is refused by the function's
/// name, from the plan as written, within a second, and nothing is queued.
#[tokio::test(flavor = "multi_thread")]
async fn a_submission_whose_constants_would_fold_into_gigabytes_is_refused_within_a_second() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let app = app(st.clone());
    let columns: Vec<String> = (1..=6)
        .map(|i| format!("repeat('a1', 300000000) AS a{i}"))
        .collect();
    let sql = format!(
        "SELECT person_key, program_id, quarter_of(attempt_date) AS quarter, true AS attempted, {} FROM outreach_attempts",
        columns.join(", ")
    );
    let mut s = submission(0.1);
    s["spec"] = spec(&sql);
    let started = std::time::Instant::now();
    let r = submit(&app, &token, &s).await;
    let elapsed = started.elapsed();
    assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "unprocessable");
    let msg = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(msg.contains("`repeat`"), "{msg}");
    assert!(
        elapsed < std::time::Duration::from_secs(1),
        "answered after {elapsed:?}"
    );
    assert!(st.queue().list().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn outreach_serve_answers_over_a_real_socket_and_logs_each_request() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let server = Served::start(&wh, true);
    let fetch = |path: &str| server.get(path);
    let quarters = fetch("/v1/quarters");
    assert!(quarters.starts_with("HTTP/1.1 200"), "{quarters}");
    assert!(quarters.contains("\"2025Q2\""), "{quarters}");
    let missing = fetch("/v1/quarters/2025Q1/programs/nope?format=csv");
    assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
    // The access log is flushed within a second; stop the server after it.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let err = server.stop();
    let lines: Vec<Value> = err
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert_eq!(lines[1]["path"], "/v1/quarters/2025Q1/programs/nope");
    assert_eq!(lines[1]["status"], 404);
    assert_eq!(lines[0]["client"], "127.0.0.1");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_researchers_with_the_same_spec_each_get_their_own_release_and_debit() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, bob) = with_researcher(&wh, "bob", 0.5, roomy()).await;
    let alice = add_researcher(&st, &wh, "alice", 0.5);
    let app = app(st.clone());
    let b = submit_id(&app, &bob, &submission(0.1)).await;
    outreach(&wh, &["requests", "approve", &b.to_string()]);
    // Alice submits the very same spec; approving it must not hand her bob's release.
    let a = submit_id(&app, &alice, &submission(0.1)).await;
    outreach(&wh, &["requests", "approve", &a.to_string(), "--public"]);
    st.reload().await.unwrap();
    let bobs = get_as(&app, &format!("/v1/requests/{b}"), &bob)
        .await
        .json();
    let alices = get_as(&app, &format!("/v1/requests/{a}"), &alice)
        .await
        .json();
    let (rb, ra) = (
        bobs["release"]["id"].as_i64().unwrap(),
        alices["release"]["id"].as_i64().unwrap(),
    );
    assert_ne!(rb, ra, "alice got bob's release");
    let view = Ledger::open(&wh).unwrap().show().unwrap();
    for name in ["researcher:bob", "researcher:alice"] {
        let a = view.allocations.iter().find(|x| x.name == name).unwrap();
        assert!(
            (a.spent_rho - 0.1).abs() < 1e-12,
            "{name} spent {}",
            a.spent_rho
        );
    }
    // Alice's public release is public; bob's private one is still not.
    assert_eq!(
        get(&app, &format!("/v1/releases/{ra}")).await.status,
        StatusCode::OK
    );
    assert_error(
        &get(&app, &format!("/v1/releases/{rb}")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn csv_bodies_never_hand_a_spreadsheet_a_formula() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    Ledger::open(&wh).unwrap().allocate("extra", 1.0).unwrap();
    // A spec whose public cell values and column name look like formulas.
    let spec = json!({
        "name": "tags",
        "k": 1,
        "rho": 0.1,
        "allocation": "extra",
        "queries": [{"sql": "SELECT person_key, '=HYPERLINK(1)' AS \"=cmd\", true AS seen FROM overdose_events"}],
        "cells": [{"column": "=cmd", "domain": {"values": ["=HYPERLINK(1)", "@SUM(A1)", "+1", "-1"]}}],
        "statistics": [{"name": "seen", "kind": "count"}]
    });
    let file = tmp.path().join("spec.json");
    std::fs::write(&file, spec.to_string()).unwrap();
    outreach(&wh, &["release", "--spec", file.to_str().unwrap()]);
    let app = app_for(&wh).await;
    let list = get(&app, "/v1/releases?name=tags").await.json();
    let id = list[0]["id"].as_i64().unwrap();
    let csv = get(&app, &format!("/v1/releases/{id}?format=csv"))
        .await
        .text();
    for line in csv.lines() {
        for field in line.split(',') {
            let f = field.trim_start_matches('"');
            let formula = f.starts_with(['=', '@', '+'])
                || (f.starts_with('-') && f[1..].parse::<f64>().is_err());
            assert!(!formula, "a formula-like field {field:?} in {csv}");
        }
    }
    assert!(csv.contains("'=HYPERLINK(1)"), "{csv}");
    assert!(csv.contains("'=cmd"), "the header too: {csv}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_release_is_revalidated_so_a_later_successor_shows_and_errors_are_never_cached() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());
    let old = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    let uri = format!("/v1/releases/{old}");
    let before = get(&app, &uri).await;
    assert!(before.json()["superseded_by"].is_null());
    let cache = before.header(header::CACHE_CONTROL);
    assert!(
        !cache.contains("immutable") && cache.contains("must-revalidate"),
        "{cache}"
    );
    // New data and a republication: the old release now names its successor, and a client
    // revalidating its copy gets the new body.
    republish_2025q1_after_new_data(tmp.path(), &wh).await;
    st.reload().await.unwrap();
    let after = send(
        &app,
        Request::get(&uri)
            .header(header::IF_NONE_MATCH, before.header(header::ETAG))
            .body(Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(after.status, StatusCode::OK);
    assert!(after.json()["superseded_by"].is_i64());
    // Errors are never kept by a cache: a release made public later must not stay a 404.
    let missing = get(&app, "/v1/releases/424242").await;
    assert_eq!(missing.header(header::CACHE_CONTROL), "no-store");
}

#[tokio::test(flavor = "multi_thread")]
async fn release_times_are_published_to_the_day_only() {
    // The time between a release's debit and its outcome is how long it read the data: it
    // grows with the rows, so it is never published; the publication time is a date.
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "tia", 0.5, roomy()).await;
    let app = app(st.clone());
    let id = submit_id(&app, &token, &submission(0.1)).await;
    outreach(&wh, &["requests", "approve", &id.to_string()]);
    st.reload().await.unwrap();
    let mut views = vec![
        get_as(&app, &format!("/v1/requests/{id}"), &token)
            .await
            .json()["release"]
            .clone(),
    ];
    for r in get(&app, "/v1/releases").await.json().as_array().unwrap() {
        views.push(get(&app, &format!("/v1/releases/{}", r["id"])).await.json());
        views.push(r.clone());
    }
    for v in views {
        let mut all = Vec::new();
        keys(&v, &mut all);
        assert!(
            !all.iter()
                .any(|k| k == "debited_at" || k == "created_at" || k == "finished_at"),
            "{v}"
        );
        let at = v["published_at"].as_str().unwrap();
        assert_eq!(at.len(), 10, "{at}: a date, not a time");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_failed_run_stays_pending_to_the_researcher_and_the_steward_can_reject_or_rerun_it() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "una", 0.5, roomy()).await;
    let app = app(st.clone());
    let mut ids = Vec::new();
    for _ in 0..2 {
        ids.push(submit_id(&app, &token, &submission(0.1)).await);
    }
    for id in &ids {
        let failed = Command::new(env!("CARGO_BIN_EXE_outreach"))
            .args(["requests", "approve", &id.to_string()])
            .env("OUTREACH_WAREHOUSE", &wh)
            .env(
                outreach_warehouse::failpoint::ENV,
                "release-fail-after-debit",
            )
            .output()
            .unwrap();
        assert_eq!(
            failed.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&failed.stderr)
        );
        let seen = get_as(&app, &format!("/v1/requests/{id}"), &token)
            .await
            .json();
        assert_eq!(seen["state"], "pending", "a researcher never sees failed");
        assert_eq!(st.queue().get(id).unwrap().state.as_str(), "failed");
    }
    // The steward rejects the first and re-runs the second, a new debit.
    outreach(
        &wh,
        &[
            "requests",
            "reject",
            &ids[0].to_string(),
            "--why",
            "the run failed; resubmit with a smaller k",
        ],
    );
    let rejected = get_as(&app, &format!("/v1/requests/{}", ids[0]), &token)
        .await
        .json();
    assert_eq!(rejected["state"], "rejected");
    let spent = |wh: &Path| {
        Ledger::open(wh)
            .unwrap()
            .show()
            .unwrap()
            .allocations
            .iter()
            .find(|a| a.name == "researcher:una")
            .unwrap()
            .spent_rho
    };
    let before = spent(&wh);
    outreach(&wh, &["requests", "approve", &ids[1].to_string()]);
    assert!(
        (spent(&wh) - before - 0.1).abs() < 1e-12,
        "a re-run is a new debit"
    );
    st.reload().await.unwrap();
    let released = get_as(&app, &format!("/v1/requests/{}", ids[1]), &token)
        .await
        .json();
    assert_eq!(released["state"], "released", "{released}");
    // Final decisions stay final.
    for (args, id) in [
        (vec!["approve"], &ids[0]),
        (vec!["reject", "--why", "no"], &ids[1]),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
            .arg("requests")
            .args(&args[..1])
            .arg(id)
            .args(&args[1..])
            .env("OUTREACH_WAREHOUSE", &wh)
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(2), "{args:?} {id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn guessing_tokens_is_limited_per_ip_whatever_token_is_sent() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let limits = Limits {
        per_token_per_minute: 1.0,
        per_token_burst: 2,
        ..roomy()
    };
    let (st, good) = with_researcher(&wh, "vic", 0.5, limits).await;
    let app = app(st);
    // A fresh made-up token each time: still one bucket, the client's.
    let mut statuses = Vec::new();
    for i in 0..4 {
        let r = get_as(&app, "/v1/requests/1", &format!("owr_{i:064}")).await;
        statuses.push(r.status);
    }
    assert_eq!(
        statuses,
        [
            StatusCode::UNAUTHORIZED,
            StatusCode::UNAUTHORIZED,
            StatusCode::TOO_MANY_REQUESTS,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
    // A researcher's valid token has its own bucket.
    assert_eq!(
        get_as(&app, "/v1/requests/1", &good).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_running_server_shows_a_new_publication_and_its_programs_within_seconds() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let server = Served::start(&wh, false);
    let fetch = |path: &str| server.get(path);
    let wait_for = |path: &str, needle: &str| {
        for _ in 0..50 {
            if fetch(path).contains(needle) {
                return true;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        false
    };
    assert!(!fetch("/v1/quarters").contains("2025Q3"));
    // New data: a fourth program. The programs table is part of what is published, so the
    // server shows it with the next publication, not with the ingest.
    let programs = tmp.path().join("programs-more.csv");
    std::fs::write(
        &programs,
        "program_id,program_name,region,team_model,police_on_visits,warrant_check,start_date,end_date\n\
         P4,Fixture Peer Team,Western,peer_led,never,none,2024-01-01,\n",
    )
    .unwrap();
    ingest(&wh, &[programs], &fixture_opts("2025-12-31")).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before_publishing = fetch("/v1/programs");
    let mut q3 = opts("2025Q3");
    q3.allow_incomplete = true;
    publish(&wh, &q3).await.unwrap();
    let shown = wait_for("/v1/quarters", "\"2025Q3\"");
    let new_program = wait_for("/v1/programs", "\"P4\"");
    drop(server);
    assert!(
        !before_publishing.contains("\"P4\""),
        "an ingest that published nothing was served"
    );
    assert!(shown, "the new publication was not served");
    assert!(new_program, "the new program was not served");
}

/// Set, for the test below, to the warehouse that [`serving_in_a_process_of_its_own`]
/// serves: only then does that test do anything.
const SERVING_CHILD: &str = "OUTREACH_TEST_SERVING_CHILD";

/// Loading what is published, serving every route (the dashboard page and a researcher's
/// submission included) and reloading open no DataFusion session over the data. The count of such
/// sessions is the process's, so the test runs alone in a child process of this test binary,
/// where no other test opens one meanwhile.
#[tokio::test(flavor = "multi_thread")]
async fn serving_opens_no_datafusion_session() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let out = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "api::serving_in_a_process_of_its_own",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SERVING_CHILD, &wh)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("1 passed"), "{stdout}\n{stderr}");
}

/// The child of [`serving_opens_no_datafusion_session`]; without [`SERVING_CHILD`] it does
/// nothing.
#[tokio::test(flavor = "multi_thread")]
async fn serving_in_a_process_of_its_own() {
    use outreach_warehouse::warehouse::DATA_SESSIONS_OPENED;
    use std::sync::atomic::Ordering;
    let Some(wh) = std::env::var_os(SERVING_CHILD).map(PathBuf::from) else {
        return;
    };
    let before = DATA_SESSIONS_OPENED.load(Ordering::SeqCst);
    let (st, token) = with_researcher(&wh, "nell", 0.5, roomy()).await;
    let app = app(st.clone());
    let release = current_doc(&wh, "2025Q1")["release_id"].to_string();
    // A head this server signed and serves, for `/v1/ledger/heads/{size}` (the researcher's
    // allocation above came after the snapshot it serves).
    let head_size = get(&app, "/v1/ledger/head").await.json()["size"].to_string();
    for (_, path) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        let uri = path
            .replace("{quarter}", "2025Q1")
            .replace("{program_id}", "P1")
            .replace("{page}", "1")
            .replace("{size}", &head_size)
            .replace("{id}", &release);
        let uri = if uri.ends_with("/compare") {
            format!("{uri}?metric=identified")
        } else {
            uri
        };
        assert_ne!(get(&app, &uri).await.status, StatusCode::NOT_FOUND, "{uri}");
        get(&app, &format!("{uri}?format=csv")).await;
    }
    let r = submit(&app, &token, &submission(0.1)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    st.reload().await.unwrap();
    assert_eq!(
        DATA_SESSIONS_OPENED.load(Ordering::SeqCst),
        before,
        "serving opened a DataFusion session over the data"
    );
}

/// What is served changes only with what is published: an ingest that publishes nothing
/// (a new program) leaves the served snapshot as it was, not even reloaded, and the next
/// publication brings the new program with it.
#[tokio::test(flavor = "multi_thread")]
async fn an_ingest_that_publishes_nothing_reloads_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());
    let every = std::time::Duration::from_millis(20);
    tokio::spawn(st.clone().watch(every));
    // The watcher loads once as it starts.
    for _ in 0..500 {
        if st.loads() >= 2 {
            break;
        }
        tokio::time::sleep(every).await;
    }
    assert_eq!(st.loads(), 2);
    let before = get(&app, "/v1/programs").await;
    let etag = before.header(header::ETAG);
    assert!(!etag.is_empty());
    let programs = tmp.path().join("programs-more.csv");
    std::fs::write(
        &programs,
        "program_id,program_name,region,team_model,police_on_visits,warrant_check,start_date,end_date\n\
         P4,Fixture Peer Team,Western,peer_led,never,none,2024-01-01,\n",
    )
    .unwrap();
    ingest(&wh, &[programs], &fixture_opts("2025-12-31")).unwrap();
    // Many checks of the watcher later, nothing was loaded again.
    tokio::time::sleep(every * 25).await;
    assert_eq!(
        st.loads(),
        2,
        "an ingest that published nothing reloaded the snapshot"
    );
    let after = get(&app, "/v1/programs").await;
    assert_eq!(after.header(header::ETAG), etag);
    assert_eq!(after.body, before.body);
    assert!(!after.text().contains("\"P4\""));
    // A publication is served, and the programs table it was made from with it.
    let mut q3 = opts("2025Q3");
    q3.allow_incomplete = true;
    publish(&wh, &q3).await.unwrap();
    let mut shown = false;
    for _ in 0..500 {
        if get(&app, "/v1/quarters")
            .await
            .text()
            .contains("\"2025Q3\"")
        {
            shown = true;
            break;
        }
        tokio::time::sleep(every).await;
    }
    assert!(shown, "the new publication was not served");
    assert!(st.loads() > 2);
    assert!(get(&app, "/v1/programs").await.text().contains("\"P4\""));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_request_that_takes_too_long_gets_a_json_504() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let limits = Limits {
        timeout: std::time::Duration::from_millis(20),
        ..roomy()
    };
    let st = state(&wh, limits).await;
    // A handler far slower than the limit, behind the API's own layers.
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            "done"
        }),
    );
    let app = outreach_warehouse::api::app_with_routes(st, slow);
    let r = get(&app, "/slow").await;
    assert_error(&r, StatusCode::GATEWAY_TIMEOUT, "timeout");
    assert_eq!(r.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
}

/// A version 1 publication document, byte for byte as a ledger stores a document without a
/// version field: `serde_json::to_string` of the document's `Value` (compact, keys sorted).
const PUBLICATION_V1: &str = include_str!("../../fixtures/publication-v1.json");

/// Every key path of a JSON value, array elements as `[]`: its shape without the values.
fn shape(v: &Value, at: &str, out: &mut std::collections::BTreeSet<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                let path = format!("{at}.{k}");
                out.insert(path.clone());
                shape(x, &path, out);
            }
        }
        Value::Array(a) => a.iter().for_each(|x| shape(x, &format!("{at}[]"), out)),
        _ => {}
    }
}

fn shape_of(v: &Value) -> std::collections::BTreeSet<String> {
    let mut out = std::collections::BTreeSet::new();
    shape(v, "", &mut out);
    out
}

#[tokio::test(flavor = "multi_thread")]
async fn a_stored_version_1_publication_still_loads_and_is_served() {
    use outreach_warehouse::publication::{PUBLICATION_VERSION, Publication};
    let fixture: Value = serde_json::from_str(PUBLICATION_V1).unwrap();
    // The fixture is the stored text exactly: compact, keys sorted, numbers as serde_json
    // writes them.
    assert_eq!(
        serde_json::to_string(&fixture).unwrap(),
        PUBLICATION_V1.trim_end()
    );
    assert!(fixture.get("version").is_none(), "written before versions");
    let doc = Publication::from_document(&fixture).unwrap();
    assert_eq!(doc.version, 1);
    // Exactly the struct's shape: read and written again it is the same document, every
    // field and number kind, plus its version.
    let mut again = serde_json::to_value(&doc).unwrap();
    assert_eq!(again["version"], 1);
    again.as_object_mut().unwrap().remove("version");
    assert_eq!(again, fixture);
    // And every key that publish writes today is in it.
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let mut fresh = current_doc(&wh, "2025Q1");
    assert_eq!(fresh["version"], PUBLICATION_VERSION);
    fresh.as_object_mut().unwrap().remove("version");
    let missing: Vec<String> = shape_of(&fresh)
        .difference(&shape_of(&fixture))
        .cloned()
        .collect();
    assert!(missing.is_empty(), "the fixture lacks {missing:?}");

    // Stored beside today's publications, it is served like them.
    Ledger::open(&wh)
        .unwrap()
        .record_publication(&NewPublication {
            quarter: "2025Q3",
            release_id: 7,
            dataset_version: "v3",
            approver: "steward",
            document: &fixture,
        })
        .unwrap();
    let app = app_for(&wh).await;
    let health = get(&app, "/healthz").await;
    assert_eq!(health.status, StatusCode::OK, "{}", health.text());
    assert_eq!(health.json()["status"], "ok");
    assert_eq!(health.json()["quarters"], 3);
    assert_eq!(health.json()["unreadable_publications"], 0);
    let page = get(&app, "/v1/quarters/2025Q3/programs/P1").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    let page = page.json();
    assert_eq!(page["release_id"], 7);
    assert_eq!(page["equity_release_id"], 8);
    let engagement = page["figures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["name"] == "engagement_30d" && f["breakdown"].is_null())
        .unwrap();
    assert_eq!(engagement["value"], 0.425);
}

#[test]
fn a_document_of_an_unknown_version_or_not_an_object_is_an_error_not_a_default() {
    use outreach_warehouse::publication::{DocumentError, Publication};
    let v1: Value = serde_json::from_str(PUBLICATION_V1).unwrap();
    let with = |version: Value| {
        let mut d = v1.clone();
        d["version"] = version;
        Publication::from_document(&d)
    };
    assert_eq!(with(json!(1)).unwrap().version, 1);
    for v in [
        json!(2),
        json!(0),
        json!(-1),
        json!(1.5),
        json!("1"),
        json!(null),
    ] {
        assert_eq!(
            with(v.clone()).unwrap_err(),
            DocumentError::UnknownVersion(v.to_string()),
            "{v}"
        );
    }
    assert_eq!(
        Publication::from_document(&Value::Null).unwrap_err(),
        DocumentError::NotAnObject
    );
    let mut broken = v1.clone();
    broken.as_object_mut().unwrap().remove("programs");
    let e = Publication::from_document(&broken).unwrap_err();
    assert!(
        matches!(&e, DocumentError::Malformed { version: 1, message } if message.contains("programs")),
        "{e:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreadable_publication_makes_healthz_503_and_is_logged_not_dropped() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // 2025Q3: a document from a newer version. 2025Q4: stored text that is not JSON.
    let mut future = current_doc(&wh, "2025Q2");
    future["version"] = json!(2);
    future["quarter"] = json!("2025Q3");
    Ledger::open(&wh)
        .unwrap()
        .record_publication(&NewPublication {
            quarter: "2025Q3",
            release_id: 1000,
            dataset_version: "v1000",
            approver: "steward",
            document: &future,
        })
        .unwrap();
    let conn = rusqlite::Connection::open(Ledger::path_in(&wh)).unwrap();
    conn.execute(
        "INSERT INTO publications (quarter, release_id, dataset_version, supersedes, approver, published_at, document)
         VALUES ('2025Q4', 1001, 'v1001', NULL, 'steward', '2026-01-10T00:00:00Z', '{\"quarter\": \"2025Q4\", \"programs\": [')",
        [],
    )
    .unwrap();
    drop(conn);

    // Through oneshot: unhealthy, with a count and nothing internal.
    let app = app_for(&wh).await;
    let health = get(&app, "/healthz").await;
    assert_eq!(
        health.status,
        StatusCode::SERVICE_UNAVAILABLE,
        "{}",
        health.text()
    );
    let body = health.json();
    assert_eq!(body["status"], "unhealthy");
    assert_eq!(body["unreadable_publications"], 2);
    assert_eq!(
        body["quarters"], 2,
        "the readable quarters are still served"
    );
    let text = health.text();
    for internal in ["version", "2025Q3", "2025Q4", "EOF", "parse"] {
        assert!(!text.contains(internal), "{internal} in {text}");
    }
    assert_eq!(
        get(&app, "/v1/quarters/2025Q1/programs/P1").await.status,
        StatusCode::OK
    );
    // The report of such a quarter is an internal error naming it, not "publish it first".
    let out = tmp.path().join("2025Q3.html");
    let report = crate::present::report_command(&wh, "2025Q3", &out);
    let stderr = String::from_utf8_lossy(&report.stderr);
    assert_eq!(report.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("2025Q3 cannot be read"), "{stderr}");
    assert!(!stderr.contains("publish it first"), "{stderr}");

    // Through the binary: the server starts, answers 503, and its log names each document.
    let server = Served::start(&wh, true);
    let answer = server.get("/healthz");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        server
            .get("/v1/quarters/2025Q2/programs/P1")
            .starts_with("HTTP/1.1 200")
    );
    let log = server.stop();
    assert!(
        log.contains("2025Q3") && log.contains("version 2 is not one this build reads"),
        "{log}"
    );
    assert!(
        log.contains("2025Q4") && log.contains("not a JSON object"),
        "{log}"
    );
}
