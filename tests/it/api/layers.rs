//! The layers every request passes, written by hand for the server's speed, held to what the
//! library layers they replaced answered: a body answered from the cache without routing is
//! the one its route answers; CORS is what tower-http's `CorsLayer` sends for the same
//! configuration; the access line of a preflight, a 429 and a 504 names the client and the
//! path as asked; and over a real socket (no `axum::Router` around the layers) every answer
//! still carries its length, its headers, and no body for `HEAD`.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode, header};
use outreach_warehouse::api::{AppState, Limits, app, app_with_routes};
use serde_json::Value;
use tower_http::cors::{Any, CorsLayer};

use crate::common::server::{CapturedLog, Reply, Served, get, published, roomy, send, state};

/// Every header of an answer, sorted: two answers are the same whatever their order.
fn headers_of(r: &Reply) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = r
        .headers
        .iter()
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

fn ask(uri: &str, accept: Option<&str>, if_none_match: Option<&str>) -> Request<Body> {
    let mut b = Request::get(uri);
    if let Some(a) = accept {
        b = b.header(header::ACCEPT, a);
    }
    if let Some(e) = if_none_match {
        b = b.header(header::IF_NONE_MATCH, e);
    }
    b.body(Body::empty()).unwrap()
}

/// A GET of a rendered body without a query string is answered from the cache before
/// routing; with `?format=` it goes through the router to its handler. Both answers are the
/// same, byte for byte and header for header, in JSON and CSV, fresh and not modified, for
/// every body the snapshot renders; and `/healthz` likewise.
#[tokio::test(flavor = "multi_thread")]
async fn a_body_answered_from_the_cache_is_the_one_its_route_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());
    let mut keys: Vec<String> = st
        .snapshot()
        .rendered
        .keys()
        .filter(|k| k.as_str() != "/v1/budget")
        .cloned()
        .collect();
    keys.sort();
    for kind in [
        "/v1/programs",
        "/v1/quarters/2025Q1/programs/",
        "/v1/releases/",
        "/v1/ledger/pages/",
        "/v1/ledger/heads/",
    ] {
        assert!(keys.iter().any(|k| k.starts_with(kind)), "{kind}: {keys:?}");
    }
    for key in &keys {
        for (accept, format) in [(None, "json"), (Some("text/csv"), "csv")] {
            let routed_uri = format!("{key}?format={format}");
            let cached = send(&app, ask(key, accept, None)).await;
            let routed = send(&app, ask(&routed_uri, None, None)).await;
            assert_eq!(cached.status, StatusCode::OK, "{key} {format}");
            assert_eq!(
                (cached.status, headers_of(&cached), &cached.body),
                (routed.status, headers_of(&routed), &routed.body),
                "{key} {format}"
            );
            let etag = cached.header(header::ETAG);
            let cached = send(&app, ask(key, accept, Some(&etag))).await;
            let routed = send(&app, ask(&routed_uri, None, Some(&etag))).await;
            assert_eq!(cached.status, StatusCode::NOT_MODIFIED, "{key} {format}");
            assert_eq!(
                (cached.status, headers_of(&cached), &cached.body),
                (routed.status, headers_of(&routed), &routed.body),
                "{key} {format}"
            );
        }
    }
    let cached = get(&app, "/healthz").await;
    let routed = get(&app, "/healthz?from=test").await;
    assert_eq!(cached.status, StatusCode::OK);
    assert_eq!(cached.json()["status"], "ok");
    assert_eq!(cached.header(header::CACHE_CONTROL), "no-store");
    assert_eq!(
        (headers_of(&cached), &cached.body),
        (headers_of(&routed), &routed.body)
    );
    // A percent-encoded path is decoded by the router and found there, not in the cache.
    let encoded = get(&app, "/v1/quarters/2025Q1/programs/P%31").await;
    let plain = get(&app, "/v1/quarters/2025Q1/programs/P1").await;
    assert_eq!(encoded.status, StatusCode::OK);
    assert_eq!(encoded.body, plain.body);
}

/// The CORS headers of an answer: every `Access-Control-*` header and the `Vary` values
/// that name a CORS request header.
fn cors_of(h: &HeaderMap) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = h
        .iter()
        .filter(|(n, v)| {
            n.as_str().starts_with("access-control-")
                || (*n == header::VARY && v.to_str().unwrap().contains("origin"))
        })
        .map(|(n, v)| (n.to_string(), v.to_str().unwrap().to_string()))
        .collect();
    out.sort();
    out
}

/// The server writes its CORS headers itself, from values built once; they are what
/// tower-http's `CorsLayer` sends for the configuration the server had before (any origin,
/// GET and HEAD, `Accept` and `If-None-Match`, `ETag` exposed, an hour), on a GET with and
/// without `Origin` and on preflights of every kind.
#[tokio::test(flavor = "multi_thread")]
async fn cors_is_what_tower_http_sends_for_the_same_configuration() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let ours = app(state(&wh, roomy()).await);
    let reference = Router::new()
        .route("/v1/quarters", axum::routing::get(|| async { "[]" }))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD])
                .allow_headers([header::ACCEPT, header::IF_NONE_MATCH])
                .expose_headers([header::ETAG])
                .max_age(Duration::from_secs(3600)),
        );
    let requests = || {
        let origin = "https://dashboard.example";
        let options = |uri: &str| Request::builder().method(Method::OPTIONS).uri(uri);
        [
            Request::get("/v1/quarters")
                .header(header::ORIGIN, origin)
                .body(Body::empty())
                .unwrap(),
            Request::get("/v1/quarters").body(Body::empty()).unwrap(),
            options("/v1/quarters")
                .header(header::ORIGIN, origin)
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "GET")
                .body(Body::empty())
                .unwrap(),
            options("/v1/quarters")
                .header(header::ORIGIN, "https://evil.example")
                .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
                .header(header::ACCESS_CONTROL_REQUEST_HEADERS, "authorization")
                .body(Body::empty())
                .unwrap(),
            options("/v1/quarters").body(Body::empty()).unwrap(),
        ]
    };
    for (mine, theirs) in requests().into_iter().zip(requests()) {
        let what = format!("{} {:?}", mine.method(), mine.headers());
        let preflight = mine.method() == Method::OPTIONS;
        let a = send(&ours, mine).await;
        let b = send(&reference, theirs).await;
        assert_eq!(a.status, b.status, "{what}");
        assert_eq!(cors_of(&a.headers), cors_of(&b.headers), "{what}");
        assert!(!cors_of(&a.headers).is_empty(), "{what}");
        if preflight {
            assert!(a.body.is_empty(), "{what}");
            assert_eq!(a.header(header::X_CONTENT_TYPE_OPTIONS), "nosniff");
        }
    }
}

/// The access line is written after everything inside it answered: a preflight (answered
/// before the rate limit), a 504 and a 429 each get their line, with the client's address
/// and the path as the client asked it (a path form before it is rewritten, no query).
#[tokio::test(flavor = "multi_thread")]
async fn the_access_line_of_a_preflight_a_504_and_a_429_names_the_client_and_the_path_asked() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let out = CapturedLog::default();
    let log = out.access_log();
    // Two requests per client, refilled every ten minutes.
    let limits = Limits {
        per_ip_per_second: 1.0 / 600.0,
        per_ip_burst: 2,
        timeout: Duration::from_millis(200),
        ..roomy()
    };
    let st = AppState::open(&wh, limits, log.clone()).await.unwrap();
    let slow = Router::new().route(
        "/slow",
        axum::routing::get(|| async {
            tokio::time::sleep(Duration::from_secs(5)).await;
            "done"
        }),
    );
    let app = app_with_routes(st, slow);
    let client = IpAddr::from([192u8, 0, 2, 7]);
    let from = |method: Method, uri: &str| {
        let mut r = Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::empty())
            .unwrap();
        r.extensions_mut()
            .insert(ConnectInfo(SocketAddr::new(client, 40_000)));
        r
    };
    let answers = [
        send(&app, from(Method::OPTIONS, "/v1/requests?token=secret")).await,
        send(&app, from(Method::GET, "/slow")).await,
        send(&app, from(Method::GET, "/v1/programs.json")).await,
        send(&app, from(Method::GET, "/v1/quarters?format=csv")).await,
    ];
    let statuses: Vec<u16> = answers.iter().map(|r| r.status.as_u16()).collect();
    assert_eq!(statuses, [200, 504, 200, 429]);
    for r in &answers {
        assert_eq!(r.header(header::X_FRAME_OPTIONS), "DENY");
        assert_eq!(r.header(header::ACCESS_CONTROL_ALLOW_ORIGIN), "*");
    }
    log.flush();
    let text = out.text();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let seen: Vec<(&str, &str, u64)> = lines
        .iter()
        .map(|l| {
            (
                l["method"].as_str().unwrap(),
                l["path"].as_str().unwrap(),
                l["status"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        seen,
        [
            ("OPTIONS", "/v1/requests", 200),
            ("GET", "/slow", 504),
            ("GET", "/v1/programs.json", 200),
            ("GET", "/v1/quarters", 429),
        ],
        "{text}"
    );
    assert!(lines.iter().all(|l| l["client"] == "192.0.2.7"), "{text}");
    // The 504 line waited for the deadline; none of them shows the query string.
    assert!(lines[1]["micros"].as_u64().unwrap() >= 200_000, "{text}");
    assert!(!text.contains("secret") && !text.contains("csv"), "{text}");
}

/// `GET` and `HEAD` over a real socket, as `outreach serve` answers them (its layers served
/// as they are, with no `axum::Router` around them): a cached body and a routed one each with
/// their length, ETag, CORS and security headers; `HEAD` with the same length and no body.
#[tokio::test(flavor = "multi_thread")]
async fn over_a_socket_every_answer_has_its_length_and_headers_and_head_no_body() {
    use std::io::{Read, Write};
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let server = Served::start(&wh, false);
    let raw = |method: &str, path: &str| {
        let mut s = std::net::TcpStream::connect(&server.addr).unwrap();
        write!(
            s,
            "{method} {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        let text = String::from_utf8(out).unwrap();
        let (head, body) = text.split_once("\r\n\r\n").unwrap();
        let head = head.to_ascii_lowercase();
        (head, body.to_string())
    };
    let length = |head: &str| -> usize {
        head.lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .unwrap_or_else(|| panic!("no content-length: {head}"))
            .trim()
            .parse()
            .unwrap()
    };
    for path in [
        "/v1/quarters/2025Q1/programs/P1",
        "/v1/quarters/2025Q1/programs/P1?format=csv",
        "/healthz",
    ] {
        let (head, body) = raw("GET", path);
        assert!(head.starts_with("http/1.1 200"), "{path}: {head}");
        assert_eq!(length(&head), body.len(), "{path}: {head}");
        for expected in [
            "x-content-type-options: nosniff",
            "access-control-allow-origin: *",
            "access-control-expose-headers: etag",
            "permissions-policy: interest-cohort=()",
        ] {
            assert!(head.contains(expected), "{path}: {expected} in {head}");
        }
        if !path.starts_with("/healthz") {
            assert!(head.contains("etag: \""), "{path}: {head}");
        }
        let (head_only, nothing) = raw("HEAD", path);
        assert!(head_only.starts_with("http/1.1 200"), "{path}: {head_only}");
        assert_eq!(length(&head_only), body.len(), "{path}: {head_only}");
        assert!(nothing.is_empty(), "{path}: {nothing}");
    }
    let (head, body) = raw("GET", "/v1/nothing");
    assert!(head.starts_with("http/1.1 404"), "{head}");
    assert_eq!(length(&head), body.len());
    assert!(body.contains("not_found"), "{body}");
}
