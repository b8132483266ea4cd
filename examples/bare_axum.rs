//! The baseline of `benches/api_wrk.sh`: bare axum handlers, each returning one cached body
//! with nothing else (no layers, no lookup). The script hands it the bodies the API served
//! for the funder's route and `/healthz`, so each of the API's routes is measured against
//! a bare handler serving the same bytes, in the same run.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:18081 /healthz=healthz.json /v1/quarters/2026Q2/programs/P001=route.json`
//!
//! Each `PATH=FILE` serves the file's bytes at the path as `application/json`; without one,
//! `/` serves a small JSON.

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
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
        let body = std::fs::read(file).unwrap_or_else(|e| {
            eprintln!("cannot read {file} (for {path}): {e}");
            std::process::exit(2);
        });
        app = serving(app, path, Bytes::from(body));
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
