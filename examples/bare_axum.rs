//! The baseline of `benches/api_wrk.sh`: bare axum handlers, each returning one cached body
//! with nothing else (no layers, no lookup). The script hands it the bodies the API served
//! for the funder's route and `/healthz`, so each of the API's routes is measured against
//! a bare handler serving the same bytes, in the same run.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:18081 /healthz=healthz.json /v1/quarters/2026Q2/programs/P001=route.json`
//!
//! Each `PATH=FILE` serves the file's bytes at the path as `application/json`; without one,
//! `/` serves a small JSON. `PATH=FILE+HEADERS` serves them with the response headers that
//! `HEADERS` holds, as `curl -D` writes them (its status line, `date`, `content-length` and
//! `transfer-encoding` are left to axum): the script's second baseline, a bare handler that
//! sends the same header bytes as the API, to tell the cost of the headers from the cost of
//! the API's own work per request.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, HeaderName, HeaderValue, header};
use axum::routing::get;

/// A route answering `body`, cached: each answer is a reference count, no copy.
fn serving(app: Router, path: &str, body: Bytes) -> Router {
    app.route(
        path,
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    )
}

/// [`serving`] with `headers`: each answer is a reference count of the body and a copy of
/// the headers, as the API builds a header map per answer.
fn serving_with(app: Router, path: &str, body: Bytes, headers: HeaderMap) -> Router {
    app.route(
        path,
        get(move || {
            let (body, headers) = (body.clone(), headers.clone());
            async move { (headers, body) }
        }),
    )
}

/// The headers of a `curl -D` dump, but those axum writes itself.
fn headers_of(dump: &str) -> HeaderMap {
    let mut h = HeaderMap::new();
    for line in dump.lines().skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim().to_ascii_lowercase();
        if ["date", "content-length", "transfer-encoding"].contains(&name.as_str()) {
            continue;
        }
        let name = HeaderName::from_bytes(name.as_bytes()).expect("a header name");
        h.append(
            name,
            HeaderValue::from_str(value.trim()).expect("a header value"),
        );
    }
    h
}

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let addr = args.next().unwrap_or_else(|| "127.0.0.1:18081".into());
    let mut app = Router::new();
    let mut paths = Vec::new();
    for arg in args {
        let Some((path, file)) = arg.split_once('=') else {
            eprintln!("{arg:?} is not PATH=FILE, such as /healthz=healthz.json");
            std::process::exit(2);
        };
        if !path.starts_with('/') {
            eprintln!("{path:?} (in {arg:?}) is not a path: it must start with /");
            std::process::exit(2);
        }
        let (file, dump) = match file.split_once('+') {
            Some((file, dump)) => (file, Some(dump)),
            None => (file, None),
        };
        let read = |file: &str| {
            std::fs::read(file).unwrap_or_else(|e| {
                eprintln!("cannot read {file} (for {path}): {e}");
                std::process::exit(2);
            })
        };
        let body = Bytes::from(read(file));
        app = match dump {
            Some(dump) => {
                let headers = headers_of(&String::from_utf8_lossy(&read(dump)));
                serving_with(app, path, body, headers)
            }
            None => serving(app, path, body),
        };
        paths.push(path.to_string());
    }
    if paths.is_empty() {
        let body = Bytes::from_static(
            br#"{"quarter":"2025Q4","program_id":"P01","value":42.0,"lower":31.0,"upper":53.0}"#,
        );
        app = serving(app, "/", body);
        paths.push("/".into());
    }
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    for path in &paths {
        println!("bare axum on http://{addr}{path}");
    }
    axum::serve(listener, app).await.unwrap();
}
