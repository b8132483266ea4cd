//! `outreach export-site` and the path forms it is made of: what a plain static server
//! answers from the mirror is what `outreach serve` answers; every public route is in it or
//! left out with its reason; a re-export rewrites only what changed and removes only its own
//! files of routes that are gone.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use axum::http::{StatusCode, header};
use outreach_warehouse::api::ROUTES;
use outreach_warehouse::publication::publish;
use outreach_warehouse::site::{Curation, NOT_MIRRORED, UrlRecord, export_site};
use outreach_warehouse::warehouse::hex;
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{StaticServer, export, files, run, site_in};
use crate::common::fixture::opts;
use crate::common::server::{Served, app_for, budgeted, current_doc, get, published};

fn manifest(site: &std::path::Path) -> Value {
    serde_json::from_slice(&std::fs::read(site.join("site.json")).unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_static_mirror_answers_every_public_route_as_outreach_serve_does() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let site = site_in(tmp.path());
    let printed = export(&wh, &site, &[]);
    assert!(printed.contains("outreach verify"), "{printed}");
    let Some(statics) = StaticServer::start(&site) else {
        return;
    };
    // One client asks for every route at once: a burst beyond the default 100 per address.
    let served = Served::start_with(&wh, false, &["--per-ip-burst", "100000"]);
    let from_static = UrlRecord::open(&format!("http://{}/", statics.addr)).unwrap();
    let from_server = UrlRecord::open(&format!("http://{}/", served.addr)).unwrap();
    let listed = manifest(&site);
    let listed = listed["files"].as_array().unwrap();
    // The manifest lists every file but itself, each with its SHA-256.
    let mut on_disk = files(&site);
    on_disk.retain(|f| f != "site.json");
    let paths: Vec<&str> = listed.iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(paths, on_disk);
    let mut compared = 0;
    for f in listed {
        let path = f["path"].as_str().unwrap();
        let bytes = std::fs::read(site.join(path)).unwrap();
        assert_eq!(f["sha256"], hex(&Sha256::digest(&bytes)), "{path}");
        let from_host = from_static.get(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            from_host, bytes,
            "{path}: the static host serves other bytes"
        );
        if path.starts_with("v1/") || path.starts_with("dashboard/") || path == "openapi.json" {
            let answered = from_server
                .get(path)
                .unwrap_or_else(|e| panic!("outreach serve: {e}"));
            assert!(
                answered == from_host,
                "{path}: the static host and outreach serve answer differently"
            );
            compared += 1;
        }
    }
    // Both quarters' pages of both programs, the releases, the lists, the dashboards.
    assert!(compared > 20, "only {compared} routes compared");
    // Each quarter's report: the bytes `outreach report` writes.
    for quarter in ["2025Q1", "2025Q2"] {
        let dir = tmp.path().join(format!("report-{quarter}"));
        std::fs::create_dir(&dir).unwrap();
        let out = dir.join(format!("{quarter}.html"));
        let ok = run(
            &wh,
            &[
                "report",
                "--quarter",
                quarter,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            ok.status.success(),
            "{}",
            String::from_utf8_lossy(&ok.stderr)
        );
        for ext in ["html", "csv"] {
            let name = format!("{quarter}.{ext}");
            assert_eq!(
                std::fs::read(dir.join(&name)).unwrap(),
                std::fs::read(site.join("reports").join(&name)).unwrap(),
                "reports/{name}"
            );
        }
    }
    // The index links every file, relatively.
    let index = String::from_utf8(std::fs::read(site.join("index.html")).unwrap()).unwrap();
    for p in paths.iter().filter(|p| p.starts_with("v1/")) {
        assert!(
            index.contains(&format!("href=\"./{p}\"")),
            "{p} is not linked"
        );
    }
    assert!(!index.contains("href=\"/"), "an absolute link in the index");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_public_route_of_the_router_is_in_the_mirror_or_left_out_with_its_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let site = site_in(tmp.path());
    export(&wh, &site, &[]);
    let on_disk = files(&site);
    let fits = |template: &str, file: &str| {
        let t: Vec<&str> = template.trim_start_matches('/').split('/').collect();
        let f: Vec<&str> = file.split('/').collect();
        t.len() == f.len()
            && t.iter()
                .zip(&f)
                .all(|(t, f)| t.starts_with('{') || t == f || f.strip_suffix(".json") == Some(*t))
    };
    for (route, why) in NOT_MIRRORED {
        assert!(
            ROUTES.iter().any(|(m, r)| *m == "GET" && r == route),
            "{route} is left out of the mirror but is no route"
        );
        assert!(!why.is_empty());
    }
    for (method, route) in ROUTES.iter().filter(|(m, _)| *m == "GET") {
        if NOT_MIRRORED.iter().any(|(r, _)| r == route) {
            continue;
        }
        let held = match *route {
            "/" => on_disk.iter().any(|f| f.starts_with("dashboard/")),
            "/openapi.json" => on_disk.iter().any(|f| f == "openapi.json"),
            r => {
                on_disk.iter().any(|f| fits(r, f.as_str()))
                    && on_disk.iter().any(|f| {
                        f.ends_with(".csv") && fits(r, f.replace(".csv", ".json").as_str())
                    })
            }
        };
        assert!(
            held,
            "{method} {route} is not in the mirror: export it, or list it in site::NOT_MIRRORED with the reason"
        );
    }
    // Every page of every quarter and metric, with the metric's default program.
    let doc = current_doc(&wh, "2025Q1");
    let rates = doc["programs"][0]["rates"].as_array().unwrap();
    for r in rates {
        let page = format!("dashboard/2025Q1/rate/{}.html", r["name"].as_str().unwrap());
        assert!(on_disk.contains(&page), "{page} missing");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_export_after_a_publication_rewrites_only_the_files_whose_bytes_changed() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    publish(&wh, &opts("2025Q1")).await.unwrap();
    let site = site_in(tmp.path());
    let first = export_site(&wh, &site, &Curation::default()).await.unwrap();
    assert_eq!(first.written.len(), first.files);
    assert_eq!(first.unchanged, 0);
    // Every file dated long ago: a file rewritten gets a new date.
    let long_ago = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000_000);
    let age = |site: &std::path::Path| {
        for f in files(site) {
            std::fs::File::options()
                .write(true)
                .open(site.join(&f))
                .unwrap()
                .set_modified(long_ago)
                .unwrap();
        }
    };
    let dated = |f: &str| std::fs::metadata(site.join(f)).unwrap().modified().unwrap() == long_ago;
    age(&site);
    let before: BTreeMap<String, Vec<u8>> = files(&site)
        .into_iter()
        .map(|f| {
            let b = std::fs::read(site.join(&f)).unwrap();
            (f, b)
        })
        .collect();
    // Nothing published since: nothing written, nothing touched.
    let again = export_site(&wh, &site, &Curation::default()).await.unwrap();
    assert!(again.written.is_empty(), "{:?}", again.written);
    assert_eq!(again.unchanged, first.files);
    for f in before.keys().filter(|f| *f != "site.json") {
        assert!(
            dated(f.as_str()),
            "{f} was touched though its bytes are the same"
        );
    }
    // A new quarter: its files are new, the lists change, the first quarter's pages stay.
    publish(&wh, &opts("2025Q2")).await.unwrap();
    let third = export_site(&wh, &site, &Curation::default()).await.unwrap();
    for f in files(&site).iter().filter(|f| *f != "site.json") {
        let now = std::fs::read(site.join(f)).unwrap();
        let same = before.get(f) == Some(&now);
        assert_eq!(
            third.written.contains(f),
            !same,
            "{f}: written {} though its bytes are {}",
            third.written.contains(f),
            if same { "the same" } else { "new" }
        );
        assert_eq!(dated(f.as_str()), same, "{f}");
    }
    for f in [
        "v1/quarters.json",
        "v1/quarters/2025Q2/programs/P1.json",
        "v1/budget.csv",
    ] {
        assert!(third.written.iter().any(|w| w == f), "{f} not written");
    }
    assert!(
        !third
            .written
            .iter()
            .any(|w| w == "v1/quarters/2025Q1/programs/P1.json"),
        "the first quarter's page did not change, and was written"
    );
    assert_eq!(third.unchanged + third.written.len(), third.files);
    // The manifest describes the folder as it is now.
    let listed = manifest(&site);
    for f in listed["files"].as_array().unwrap() {
        let bytes = std::fs::read(site.join(f["path"].as_str().unwrap())).unwrap();
        assert_eq!(f["sha256"], hex(&Sha256::digest(&bytes)));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_re_export_removes_the_files_of_routes_that_are_gone_and_nothing_outside_the_mirror() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let site = site_in(tmp.path());
    export(&wh, &site, &[]);
    // A file of a route that no longer exists, as an earlier export would have listed it;
    // and a manifest that someone edited to point outside the mirror.
    std::fs::create_dir_all(site.join("v1/old/deep")).unwrap();
    std::fs::write(site.join("v1/old/deep/gone.json"), "{}").unwrap();
    std::fs::write(site.join("v1/gone.csv"), "a\n").unwrap();
    let outside = tmp.path().join("outside.txt");
    std::fs::write(&outside, "keep me").unwrap();
    let absolute = tmp.path().join("absolute.txt");
    std::fs::write(&absolute, "keep me too").unwrap();
    let absolute_text = absolute.to_str().unwrap().to_string();
    let mut m = manifest(&site);
    let list = m["files"].as_array_mut().unwrap();
    for p in [
        "v1/old/deep/gone.json",
        "v1/gone.csv",
        "../outside.txt",
        absolute_text.as_str(),
    ] {
        list.push(serde_json::json!({"path": p, "sha256": "00", "bytes": 0}));
    }
    std::fs::write(site.join("site.json"), serde_json::to_vec(&m).unwrap()).unwrap();
    let done = export_site(&wh, &site, &Curation::default()).await.unwrap();
    let mut removed = done.removed.clone();
    removed.sort();
    assert_eq!(removed, ["v1/gone.csv", "v1/old/deep/gone.json"]);
    assert!(!site.join("v1/old").exists(), "the emptied folders stay");
    assert!(site.join("v1/programs.json").is_file());
    assert_eq!(std::fs::read_to_string(&outside).unwrap(), "keep me");
    assert_eq!(std::fs::read_to_string(&absolute).unwrap(), "keep me too");
    let listed = manifest(&site);
    assert!(
        !listed["files"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f["path"].as_str().unwrap().contains("gone")),
        "the manifest still lists a removed file"
    );
}

#[test]
fn export_site_refuses_a_folder_that_is_not_a_mirror_and_leaves_it_untouched() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = budgeted(tmp.path(), "2025-12-31");
    let notes = tmp.path().join("notes");
    std::fs::create_dir(&notes).unwrap();
    std::fs::write(notes.join("minutes.txt"), "the board's minutes").unwrap();
    let out = run(&wh, &["export-site", "--out", notes.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("site.json") && err.contains("notes"), "{err}");
    assert_eq!(files(&notes), ["minutes.txt"]);
    // A file where the folder should be.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, "x").unwrap();
    let out = run(&wh, &["export-site", "--out", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a folder"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "x");
    // The warehouse flag wins over the variable.
    let site = tmp.path().join("site");
    let out = run(
        &tmp.path().join("nowhere"),
        &[
            "export-site",
            "--warehouse",
            wh.to_str().unwrap(),
            "--out",
            site.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(site.join("site.json").is_file());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_path_forms_answer_as_the_routes_they_stand_for() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let app = app_for(&wh).await;
    let id = current_doc(&wh, "2025Q1")["release_id"].as_i64().unwrap();
    let release = format!("/v1/releases/{id}");
    for route in [
        "/v1/programs",
        "/v1/metrics",
        "/v1/quarters",
        "/v1/budget",
        "/v1/releases",
        release.as_str(),
        "/v1/quarters/2025Q1/programs/P1",
    ] {
        for format in ["json", "csv"] {
            let form = get(&app, &format!("{route}.{format}")).await;
            let query = get(&app, &format!("{route}?format={format}")).await;
            assert_eq!(
                form.status,
                StatusCode::OK,
                "{route}.{format}: {}",
                form.text()
            );
            assert_eq!(form.body, query.body, "{route}.{format}");
            for h in [header::CONTENT_TYPE, header::CACHE_CONTROL, header::ETAG] {
                assert_eq!(
                    form.header(h.clone()),
                    query.header(h.clone()),
                    "{route}.{format} {h}"
                );
            }
        }
    }
    // A conditional GET of a path form is answered 304 as its route's.
    let first = get(&app, "/v1/programs.csv").await;
    let etag = first.header(header::ETAG);
    let again = crate::common::server::send(
        &app,
        axum::http::Request::get("/v1/programs.csv")
            .header(header::IF_NONE_MATCH, etag)
            .body(axum::body::Body::empty())
            .unwrap(),
    )
    .await;
    assert_eq!(again.status, StatusCode::NOT_MODIFIED);
    // The query given follows the form's format; a second format is refused.
    let filtered = get(&app, "/v1/releases.csv?quarter=2025Q1").await;
    let by_query = get(&app, "/v1/releases?quarter=2025Q1&format=csv").await;
    assert_eq!(filtered.body, by_query.body);
    assert_eq!(
        get(&app, "/v1/programs.json?format=csv").await.status,
        StatusCode::BAD_REQUEST
    );
    // The researchers' routes have no path forms, and an unknown path stays unknown.
    assert_eq!(
        get(&app, "/v1/requests.json").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/v1/nothing.json").await.status,
        StatusCode::NOT_FOUND
    );
    assert_eq!(
        get(&app, "/v1/programs.xml").await.status,
        StatusCode::NOT_FOUND
    );
    // The dashboard's path form: the page of that quarter and metric, its links relative.
    let page = get(&app, "/dashboard/2025Q1/rate/engagement_30d.html").await;
    assert_eq!(page.status, StatusCode::OK, "{}", page.text());
    assert!(page.header(header::CONTENT_TYPE).starts_with("text/html"));
    // The templates escape `/` in attributes as `&#x2f;`; a browser reads it as `/`, so
    // the links are checked as the browser follows them.
    let html = page.text().replace("&#x2f;", "/");
    assert!(
        !html.contains("<form"),
        "a static page has no form to submit"
    );
    assert!(
        !html.contains("href=\"/"),
        "an absolute link on a page of the mirror"
    );
    assert!(html.contains("href=\"../../../index.html\""));
    assert!(
        html.contains("href=\"../../../dashboard/2025Q2/rate/engagement_30d.html\""),
        "{html}"
    );
    assert!(html.contains("href=\"../rate/reach_7d.html\"") || html.contains("href=\"../count/"));
    assert_eq!(html.matches("<svg").count(), 3);
    // The server's own page keeps its form and its links.
    let root = get(&app, "/?quarter=2025Q1&metric=rate:engagement_30d").await;
    assert!(root.text().contains("<form"));
    for bad in [
        "/dashboard/2025Q1/rate/engagement_30d",
        "/dashboard/2025Q9/rate/engagement_30d.html",
        "/dashboard/2025Q1/ratio/engagement_30d.html",
    ] {
        assert_eq!(get(&app, bad).await.status, StatusCode::NOT_FOUND, "{bad}");
    }
    // A quarter that is not published: 404, as on the server's page.
    assert_eq!(
        get(&app, "/dashboard/2030Q1/rate/engagement_30d.html")
            .await
            .status,
        StatusCode::NOT_FOUND
    );
}
