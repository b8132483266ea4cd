//! The baseline of `benches/api_wrk.sh`: a bare axum handler that returns a small cached
//! JSON body, with nothing else (no layers, no lookup). The API's hot route is measured
//! against it in the same run.
//!
//! `cargo run --release --example bare_axum -- 127.0.0.1:18081`

use axum::Router;
use axum::body::Bytes;
use axum::http::header;
use axum::routing::get;

#[tokio::main]
async fn main() {
    let addr = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "127.0.0.1:18081".into());
    let body = Bytes::from_static(
        br#"{"quarter":"2025Q4","program_id":"P01","value":42.0,"lower":31.0,"upper":53.0}"#,
    );
    let app = Router::new().route(
        "/",
        get(move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "application/json")], body) }
        }),
    );
    let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
    println!("bare axum on http://{addr}/");
    axum::serve(listener, app).await.unwrap();
}
