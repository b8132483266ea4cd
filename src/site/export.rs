//! `outreach export-site`: the public API as files, so that any static host serves it.
//!
//! Every file is the body the server answers at the file's path: the mirror requests each
//! route's path form (`/v1/programs.json`, `/dashboard/2025Q3/rate/engagement_30d.html`) from
//! the in-process router ([`crate::api::app`]) over the warehouse's snapshot, so a route added
//! to the router ([`ROUTES`]) is exported with no change here, or the export fails naming it
//! ([`SiteError::UnknownParameter`]) until its values are known or it is listed in
//! [`NOT_MIRRORED`] with its reason.
//!
//! Writing: each file whose bytes changed is written to a temporary file beside it and renamed
//! over it ([`crate::warehouse::write_atomic`]); a file whose bytes are the same is left alone,
//! its modification time too, so a CDN or `rsync` sees only what changed. The files of the
//! previous export that are gone (a route that no longer exists) are removed, and the
//! manifest (`site.json`, every file with its SHA-256) is written last: until then the
//! previous manifest describes a folder whose every file is whole.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tower::ServiceExt;

use super::SiteError;
use super::disclosure::{Curation, disclosure};
use crate::api::pages::Served;
use crate::api::{AccessLog, AppState, Limits, ROUTES, app};
use crate::present::dashboard::{default_metric, metric_choices, page_path};
use crate::quarter::Quarter;
use crate::warehouse::hex;

/// The mirror's manifest: every file with its SHA-256, and the routes it does not hold.
pub const SITE_MANIFEST: &str = "site.json";

/// The registry disclosure in the mirror ([`super::disclosure`]).
pub const DISCLOSURE_FILE: &str = "disclosure.yaml";

/// The routes of the API the mirror does not hold, each with the reason. Every other GET
/// route is in the mirror, in each of its formats and for every value of its path parameters.
pub const NOT_MIRRORED: &[(&str, &str)] = &[
    (
        "/healthz",
        "the health of a running server: a static host runs no server of ours",
    ),
    (
        "/v1/quarters/{quarter}/compare",
        "answers the metric and grouping named in its query string, which a static host does \
         not read; the dashboard pages and each program's figures hold the same numbers",
    ),
    (
        "/v1/requests",
        "a researcher's own requests, behind their bearer token: not public",
    ),
    (
        "/v1/requests/{id}",
        "a researcher's own request, behind their bearer token: not public",
    ),
];

/// The path parameters whose routes may have no page yet (nothing published, no public
/// release): an empty list of their values is no defect.
const MAY_BE_EMPTY: &[&str] = &["quarter", "program_id", "id", "size"];

/// What an export did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Exported {
    /// Every file of the mirror (the manifest aside), by its path relative to the mirror.
    pub files: usize,
    /// Files written because they were new or their bytes changed.
    pub written: Vec<String>,
    /// Files left as they were.
    pub unchanged: usize,
    /// Files of the previous export that are no longer in the mirror, removed.
    pub removed: Vec<String>,
}

/// One file of the manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ManifestFile {
    pub path: String,
    pub sha256: String,
    pub bytes: u64,
}

/// A route the mirror leaves out, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeftOut {
    pub route: String,
    pub why: String,
}

/// `site.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// `outreach-site/1`.
    pub format: String,
    pub files: Vec<ManifestFile>,
    pub not_mirrored: Vec<LeftOut>,
}

/// The manifest's `format`.
pub const MANIFEST_FORMAT: &str = "outreach-site/1";

/// Whether `path` is a relative path of plain names (`v1/releases/12.json`): no `..`, no
/// root, no empty or hidden segment. The mirror writes and removes only such paths under its
/// folder, whatever a manifest left there says.
pub fn is_plain_path(path: &str) -> bool {
    !path.is_empty()
        && !path.contains('\\')
        && path
            .split('/')
            .all(|seg| !seg.is_empty() && !seg.starts_with('.'))
        && Path::new(path)
            .components()
            .all(|c| matches!(c, Component::Normal(_)))
}

/// Whether a route's concrete path fits its template (`/v1/releases/{id}`).
fn fits(template: &str, path: &str) -> bool {
    let (t, p): (Vec<&str>, Vec<&str>) = (template.split('/').collect(), path.split('/').collect());
    t.len() == p.len()
        && t.iter().zip(&p).all(|(t, p)| {
            if t.starts_with('{') && t.ends_with('}') {
                !p.is_empty()
            } else {
                t == p
            }
        })
}

/// The path parameters of a template, without their braces.
fn parameters(template: &str) -> Vec<&str> {
    template
        .split('/')
        .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
        .collect()
}

/// The body of `GET uri` from the in-process router, or an error naming the route when the
/// answer is not 200.
async fn fetch(app: &Router, route: &str, uri: &str) -> Result<Vec<u8>, SiteError> {
    let failed = |status: u16| SiteError::Route {
        route: route.to_string(),
        uri: uri.to_string(),
        status,
    };
    let req = Request::get(uri)
        .body(Body::empty())
        .map_err(|_| failed(400))?;
    let response = match app.clone().oneshot(req).await {
        Ok(r) => r,
        Err(never) => match never {},
    };
    if response.status() != StatusCode::OK {
        return Err(failed(response.status().as_u16()));
    }
    let body = axum::body::to_bytes(response.into_body(), usize::MAX)
        .await
        .map_err(|_| failed(500))?;
    Ok(body.to_vec())
}

/// The concrete paths of a GET route with path parameters: the pages the snapshot rendered
/// for it; or, for a paged route (`…/pages/{page}`), pages 1 to the `pages` its parent
/// route's JSON states.
async fn concrete_paths(
    app: &Router,
    served: &Served,
    template: &str,
) -> Result<Vec<String>, SiteError> {
    let mut paths: Vec<String> = served
        .rendered
        .keys()
        .filter(|p| fits(template, p))
        .cloned()
        .collect();
    paths.sort();
    if !paths.is_empty() {
        return Ok(paths);
    }
    let params = parameters(template);
    if let Some(parent) = template.strip_suffix("/pages/{page}") {
        let body = fetch(app, parent, &format!("{parent}.json")).await?;
        let pages = serde_json::from_slice::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v.get("pages").and_then(serde_json::Value::as_u64))
            .ok_or_else(|| SiteError::UnknownParameter {
                route: template.to_string(),
                param: "page".into(),
            })?;
        return Ok((1..=pages).map(|n| format!("{parent}/pages/{n}")).collect());
    }
    match params.iter().find(|p| !MAY_BE_EMPTY.contains(p)) {
        Some(param) => Err(SiteError::UnknownParameter {
            route: template.to_string(),
            param: param.to_string(),
        }),
        None => Ok(Vec::new()),
    }
}

/// Limits under which the in-process router answers every request of an export: the rate
/// limits are for clients, and the export is not one.
fn export_limits() -> Limits {
    Limits {
        per_ip_per_second: 1e6,
        per_ip_burst: 1_000_000,
        per_token_per_minute: 1e6,
        per_token_burst: 1_000_000,
        ..Limits::default()
    }
}

/// Every file of the mirror of `warehouse`, by its path relative to the mirror, the manifest
/// aside; and the routes left out.
pub async fn mirror_files(
    warehouse: &Path,
    curation: &Curation,
) -> Result<BTreeMap<String, Vec<u8>>, SiteError> {
    let state = AppState::open(warehouse, export_limits(), AccessLog::default()).await?;
    let served = state.snapshot();
    let router = app(state);
    let mut files = BTreeMap::new();
    for (method, template) in ROUTES {
        if *method != "GET" || NOT_MIRRORED.iter().any(|(r, _)| r == template) {
            continue;
        }
        if *template == "/" {
            // The dashboard: each quarter's page of each of its metrics, with the metric's
            // default program.
            let pages: Vec<String> = served
                .quarters
                .iter()
                .flat_map(|(quarter, publication)| {
                    metric_choices(&publication.doc)
                        .into_iter()
                        .filter_map(move |(metric, _)| page_path(quarter, &metric))
                })
                .collect();
            // Drawn a few at a time, as many as the server draws at once, each well within
            // the request timeout.
            for batch in pages.chunks(crate::api::MAX_RENDERING) {
                let uris: Vec<String> = batch.iter().map(|p| format!("/{p}")).collect();
                let bodies = futures::future::try_join_all(
                    uris.iter().map(|uri| fetch(&router, template, uri)),
                )
                .await?;
                for (path, body) in batch.iter().zip(bodies) {
                    files.insert(path.clone(), body);
                }
            }
            continue;
        }
        if !template.starts_with("/v1/") {
            // A document with its own name and format, such as `/openapi.json`.
            let body = fetch(&router, template, template).await?;
            files.insert(template.trim_start_matches('/').to_string(), body);
            continue;
        }
        let paths = if parameters(template).is_empty() {
            vec![template.to_string()]
        } else {
            concrete_paths(&router, &served, template).await?
        };
        for path in paths {
            for (suffix, _) in crate::api::routes::PATH_FORM_SUFFIXES {
                let uri = format!("{path}{suffix}");
                let body = fetch(&router, template, &uri).await?;
                files.insert(uri.trim_start_matches('/').to_string(), body);
            }
        }
    }
    for quarter in served.quarters.keys() {
        let q: Quarter = quarter
            .parse()
            .map_err(|e: crate::quarter::ParseQuarterError| {
                SiteError::Warehouse(crate::Error::Internal(e.to_string()))
            })?;
        let csv_name = format!("{quarter}.csv");
        let (html, csv) = crate::present::quarterly::render(warehouse, q, &csv_name).await?;
        files.insert(format!("reports/{quarter}.html"), html.into_bytes());
        files.insert(format!("reports/{csv_name}"), csv.into_bytes());
    }
    let entry = disclosure(warehouse, curation)?;
    files.insert(DISCLOSURE_FILE.to_string(), entry.emit().into_bytes());
    let index = index_html(&served, &files);
    files.insert("index.html".to_string(), index.into_bytes());
    if let Some(bad) = files.keys().find(|p| !is_plain_path(p)) {
        return Err(SiteError::Warehouse(crate::Error::Internal(format!(
            "the mirror would write {bad:?}, which is not a plain relative path"
        ))));
    }
    Ok(files)
}

/// `text` with HTML's special characters escaped.
fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// The mirror's front page: links, all relative, to the dashboard of each quarter, the
/// reports, every file of the API, the OpenAPI document and the disclosure.
fn index_html(served: &Served, files: &BTreeMap<String, Vec<u8>>) -> String {
    let link =
        |path: &str, label: &str| format!("<a href=\"./{}\">{}</a>", escape(path), escape(label));
    let mut html = String::from(
        "<!doctype html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>Outreach Warehouse: the public record</title>\n</head>\n<body>\n\
         <h1>Post-overdose outreach programs: the public record</h1>\n\
         <p>Every figure here is differentially private. These files are what the warehouse's \
         API serves, at the same paths; <code>site.json</code> lists each with its SHA-256, and \
         <code>outreach verify</code> checks the ledger they carry.</p>\n",
    );
    html.push_str("<h2>Dashboard</h2>\n<ul>\n");
    for (quarter, publication) in served.quarters.iter().rev() {
        if let Some(path) = default_metric(&publication.doc)
            .and_then(|m| page_path(quarter, &m))
            .filter(|p| files.contains_key(p))
        {
            html.push_str(&format!("<li>{}</li>\n", link(&path, quarter)));
        }
    }
    html.push_str("</ul>\n<h2>Quarterly reports</h2>\n<ul>\n");
    for quarter in served.quarters.keys().rev() {
        let (page, csv) = (
            format!("reports/{quarter}.html"),
            format!("reports/{quarter}.csv"),
        );
        html.push_str(&format!(
            "<li>{} ({})</li>\n",
            link(&page, quarter),
            link(&csv, "CSV")
        ));
    }
    html.push_str("</ul>\n<h2>The API as files</h2>\n<ul>\n");
    html.push_str(&format!(
        "<li>{} (the API's description, OpenAPI 3.1)</li>\n",
        link("openapi.json", "openapi.json")
    ));
    for path in files.keys().filter(|p| p.starts_with("v1/")) {
        html.push_str(&format!("<li>{}</li>\n", link(path, path)));
    }
    html.push_str("</ul>\n<h2>Disclosure</h2>\n<ul>\n");
    html.push_str(&format!(
        "<li>{} (this deployment's entry for the OpenDP Deployments Registry)</li>\n",
        link(DISCLOSURE_FILE, DISCLOSURE_FILE)
    ));
    html.push_str(&format!(
        "<li>{} (every file with its SHA-256)</li>\n</ul>\n</body>\n</html>\n",
        link(SITE_MANIFEST, SITE_MANIFEST)
    ));
    html
}

/// The manifest of `files`.
pub fn manifest(files: &BTreeMap<String, Vec<u8>>) -> Manifest {
    Manifest {
        format: MANIFEST_FORMAT.into(),
        files: files
            .iter()
            .map(|(path, bytes)| ManifestFile {
                path: path.clone(),
                sha256: hex(&Sha256::digest(bytes)),
                bytes: bytes.len() as u64,
            })
            .collect(),
        not_mirrored: NOT_MIRRORED
            .iter()
            .map(|(route, why)| LeftOut {
                route: route.to_string(),
                why: why.to_string(),
            })
            .collect(),
    }
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> SiteError + '_ {
    move |source| SiteError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// The files the manifest of a previous export in `out` lists; none when there is none.
/// A folder that holds files but no manifest is not a mirror: it is refused, so an export
/// never mixes its files into someone else's folder.
fn previous(out: &Path) -> Result<Vec<String>, SiteError> {
    let bad = |why: String| SiteError::BadOut {
        path: out.to_path_buf(),
        why,
    };
    if !out.exists() {
        return Ok(Vec::new());
    }
    if !out.is_dir() {
        return Err(bad("it is not a folder".into()));
    }
    let manifest_path = out.join(SITE_MANIFEST);
    if !manifest_path.exists() {
        let mut entries = std::fs::read_dir(out).map_err(io(out))?;
        if entries.next().is_some() {
            return Err(bad(format!(
                "it holds files but no {SITE_MANIFEST}, so it is not a mirror this command wrote: \
                 give a new or empty folder"
            )));
        }
        return Ok(Vec::new());
    }
    let text = std::fs::read(&manifest_path).map_err(io(&manifest_path))?;
    let old: Manifest = serde_json::from_slice(&text).map_err(|e| {
        bad(format!(
            "its {SITE_MANIFEST} cannot be read ({e}): remove the folder or give another"
        ))
    })?;
    Ok(old
        .files
        .into_iter()
        .map(|f| f.path)
        .filter(|p| is_plain_path(p))
        .collect())
}

/// Writes the mirror of `warehouse` into `out` (created if missing): see the module's
/// documentation for what is written, and how.
pub async fn export_site(
    warehouse: &Path,
    out: &Path,
    curation: &Curation,
) -> Result<Exported, SiteError> {
    let old = previous(out)?;
    let files = mirror_files(warehouse, curation).await?;
    crate::warehouse::create_dir_synced(out).map_err(|e| SiteError::Warehouse(e.into()))?;
    let mut done = Exported {
        files: files.len(),
        ..Exported::default()
    };
    for (path, bytes) in &files {
        let target = out.join(path);
        if std::fs::read(&target).is_ok_and(|existing| existing == *bytes) {
            done.unchanged += 1;
            continue;
        }
        if let Some(dir) = target.parent() {
            crate::warehouse::create_dir_synced(dir).map_err(|e| SiteError::Warehouse(e.into()))?;
        }
        crate::warehouse::write_atomic(&target, bytes)
            .map_err(|e| SiteError::Warehouse(e.into()))?;
        done.written.push(path.clone());
    }
    let mut emptied: Vec<PathBuf> = Vec::new();
    for path in old.iter().filter(|p| !files.contains_key(*p)) {
        let target = out.join(path);
        match std::fs::remove_file(&target) {
            Ok(()) => done.removed.push(path.clone()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io(&target)(e)),
        }
        emptied.extend(target.parent().map(Path::to_path_buf));
    }
    // Folders that the removals left empty go too, deepest first; a folder that still holds
    // anything stays.
    emptied.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    emptied.dedup();
    for dir in emptied {
        let mut d = dir.as_path();
        while d != out && d.starts_with(out) && std::fs::remove_dir(d).is_ok() {
            match d.parent() {
                Some(parent) => d = parent,
                None => break,
            }
        }
    }
    let manifest = serde_json::to_vec_pretty(&manifest(&files)).expect("the manifest serialises");
    crate::warehouse::write_atomic(&out.join(SITE_MANIFEST), &manifest)
        .map_err(|e| SiteError::Warehouse(e.into()))?;
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_relative_paths_are_written_or_removed() {
        for ok in [
            "index.html",
            "v1/releases/12.json",
            "v1/quarters/2025Q1/programs/a:b.csv",
        ] {
            assert!(is_plain_path(ok), "{ok}");
        }
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "v1/../../x",
            "v1//x",
            ".hidden",
            "v1/.tmp-1",
            "a\\b",
        ] {
            assert!(!is_plain_path(bad), "{bad}");
        }
    }

    #[test]
    fn a_template_fits_its_concrete_paths_only() {
        assert!(fits("/v1/releases/{id}", "/v1/releases/12"));
        assert!(!fits("/v1/releases/{id}", "/v1/releases"));
        assert!(!fits("/v1/releases/{id}", "/v1/releases/12/x"));
        assert!(fits(
            "/v1/quarters/{quarter}/programs/{program_id}",
            "/v1/quarters/2025Q1/programs/P1"
        ));
        assert!(!fits(
            "/v1/quarters/{quarter}/programs/{program_id}",
            "/v1/quarters/2025Q1/compare/P1"
        ));
        assert_eq!(
            parameters("/v1/quarters/{quarter}/programs/{program_id}"),
            ["quarter", "program_id"]
        );
    }
}
