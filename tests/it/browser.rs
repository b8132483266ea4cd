//! The dashboard and the report in a real headless Chromium (Debian's `chromium`). Ignored by
//! default, so `cargo test --release` passes on a machine with only Rust; `.ci/run` installs
//! Chromium and poppler-utils and runs these explicitly, where a missing browser is a failure.
//!
//! The page has no script and its Content-Security-Policy allows none, so what Chromium
//! renders is what a reader with JavaScript off sees.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use super::present::{demo_warehouse, rate_text, report_command};
use crate::common::server::{Served, current_doc};

fn chromium() -> PathBuf {
    let path = std::env::var_os("CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    assert!(
        path.exists(),
        "no Chromium at {}: install Debian's `chromium` (CI does) or set CHROMIUM",
        path.display()
    );
    path
}

/// Chromium headless, offline, with a fresh profile. `new` picks the new headless mode
/// (screenshots and PDFs); the old one is what dumps the DOM.
fn browser(profile: &Path, new: bool) -> Command {
    let mut c = Command::new(chromium());
    c.arg(if new { "--headless=new" } else { "--headless" })
        .args([
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--disable-extensions",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .stderr(Stdio::null());
    c
}

/// Where the screenshot and the PDF are kept: `target/browser/`.
fn artefacts() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/browser");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and poppler-utils; .ci/run runs it"]
async fn the_dashboard_in_chromium_shows_the_charts_and_the_apis_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let server = Served::start(&wh, false);
    let url = format!(
        "http://{}/?quarter=2025Q1&metric=rate:engagement_30d&program=P002",
        server.addr
    );
    let dom = browser(&tmp.path().join("profile-dom"), false)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success());
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert_eq!(dom.matches("<svg").count(), 3, "{dom}");
    assert!(dom.contains("<rect"), "the bars are drawn");
    let cmp = server.get_json("/v1/quarters/2025Q1/compare?metric=engagement_30d&kind=rate");
    let figures = cmp["figures"].as_array().unwrap();
    assert_eq!(figures.len(), 4, "{cmp}");
    for f in figures {
        assert!(
            dom.contains(&rate_text(f)),
            "{}: {} not on the page",
            f["scope"],
            rate_text(f)
        );
    }
    // The police difference, statewide, as the API serves it.
    let diff = server.get_json(
        "/v1/quarters/2025Q1/compare?metric=arrest_after_attempt_police_difference&by=statewide",
    );
    assert!(dom.contains(&rate_text(&diff["figures"][0])), "{diff}");
    let shot = artefacts().join("dashboard.png");
    let _ = std::fs::remove_file(&shot);
    let status = browser(&tmp.path().join("profile-shot"), true)
        .arg("--window-size=1100,2400")
        .arg(format!("--screenshot={}", shot.display()))
        .arg(&url)
        .status()
        .unwrap();
    assert!(status.success());
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    assert!(
        png.len() > 20_000,
        "a blank page would be tiny: {} bytes",
        png.len()
    );
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and poppler-utils; .ci/run runs it"]
async fn the_report_prints_to_pdf_offline_with_every_programs_headline_figures() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = demo_warehouse(tmp.path()).await;
    let out = tmp.path().join("report.html");
    let ok = report_command(&wh, "2025Q1", &out);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    // Offline: the file opens from disk, with no server running.
    let pdf = artefacts().join("report.pdf");
    let _ = std::fs::remove_file(&pdf);
    let status = browser(&tmp.path().join("profile-pdf"), true)
        .arg("--no-pdf-header-footer")
        .arg(format!("--print-to-pdf={}", pdf.display()))
        .arg(format!("file://{}", out.display()))
        .status()
        .unwrap();
    assert!(status.success());
    let text = Command::new("pdftotext")
        .arg(&pdf)
        .arg("-")
        .output()
        .expect("pdftotext (Debian's poppler-utils) is needed");
    assert!(text.status.success());
    let text = String::from_utf8(text.stdout).unwrap();
    let doc = current_doc(&wh, "2025Q1");
    for p in doc["programs"].as_array().unwrap() {
        let id = p["program"]["program_id"].as_str().unwrap();
        assert!(
            text.contains(&format!("({id})")),
            "{id} missing from the PDF"
        );
        let identified = p["counts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["statistic"] == "identified")
            .unwrap();
        let count = format!(
            "{:.0} ({:.0}–{:.0})",
            identified["value"].as_f64().unwrap(),
            identified["lower"].as_f64().unwrap(),
            identified["upper"].as_f64().unwrap()
        );
        assert!(text.contains(&count), "{id}: {count} missing from the PDF");
        let mut rates = 0;
        for r in p["rates"].as_array().unwrap() {
            if ["reach_7d", "engagement_30d", "linkage_moud_30d"]
                .contains(&r["name"].as_str().unwrap())
            {
                assert!(
                    text.contains(&rate_text(r)),
                    "{id} {}: {} missing",
                    r["name"],
                    rate_text(r)
                );
                rates += 1;
            }
        }
        assert_eq!(rates, 3, "{id}");
    }
}

#[tokio::test(flavor = "multi_thread")]
#[ignore = "needs Chromium and poppler-utils; .ci/run runs it"]
async fn the_mirrors_dashboard_on_a_static_host_shows_the_charts_and_the_mirrors_numbers() {
    let tmp = tempfile::tempdir().unwrap();
    // The demo ends by writing its mirror into `site`.
    demo_warehouse(tmp.path()).await;
    let site = tmp.path().join("site");
    let statics = crate::site::StaticServer::start(&site).expect("python3 serves the mirror");
    let page = "dashboard/2025Q1/rate/engagement_30d.html";
    let url = format!("http://{}/{page}", statics.addr);
    let dom = browser(&tmp.path().join("profile-mirror"), false)
        .arg("--dump-dom")
        .arg(&url)
        .output()
        .unwrap();
    assert!(dom.status.success());
    let dom = String::from_utf8(dom.stdout).unwrap();
    assert_eq!(dom.matches("<svg").count(), 3, "{dom}");
    assert!(dom.contains("<rect"), "the bars are drawn");
    // Every program's rate as the mirror's own JSON holds it.
    let programs = site.join("v1/quarters/2025Q1/programs");
    let mut shown = 0;
    for entry in std::fs::read_dir(&programs).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let view: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        for f in view["figures"].as_array().unwrap() {
            if f["kind"] == "rate"
                && f["name"] == "engagement_30d"
                && f["by"] == "program"
                && f["breakdown"].is_null()
                && f["value"].is_number()
            {
                assert!(
                    dom.contains(&rate_text(f)),
                    "{}: {} not on the page",
                    path.display(),
                    rate_text(f)
                );
                shown += 1;
            }
        }
    }
    assert!(shown >= 4, "{shown} programs' rates checked");
    // Every link of the page leads to a file of the mirror.
    let base = Path::new(page).parent().unwrap();
    let mut links = 0;
    for href in dom
        .split("href=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next())
    {
        let mut resolved = base.to_path_buf();
        for part in href.split('/') {
            match part {
                ".." => {
                    assert!(resolved.pop(), "{href} leaves the mirror");
                }
                "." | "" => {}
                p => resolved.push(p),
            }
        }
        assert!(
            site.join(&resolved).is_file(),
            "{href} leads to no file of the mirror"
        );
        links += 1;
    }
    assert!(links > 5, "{links} links");
}
