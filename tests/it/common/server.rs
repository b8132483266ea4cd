//! The API's set-up, shared by the tests of `api`, `present` and `browser`: the fixture
//! warehouse with two quarters published, the app over it, researchers with a token and an
//! allocation, requests through `oneshot`, and `outreach serve` on a port of its own.

use std::path::{Path, PathBuf};
use std::process::Command;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use outreach_warehouse::api::{AccessLog, AppState, Limits, app};
use outreach_warehouse::ledger::{Ledger, PrivacyConfig};
use outreach_warehouse::publication::publish;
use outreach_warehouse::requests::Role;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::fixture::{fixture_budgeted, opts};

/// The fixture warehouse with 2025Q1 and 2025Q2 published, and ρ = 10 left unallocated for
/// researchers.
pub async fn published(tmp: &Path) -> PathBuf {
    let wh = budgeted(tmp, "2025-12-31");
    publish(&wh, &opts("2025Q1")).await.unwrap();
    publish(&wh, &opts("2025Q2")).await.unwrap();
    wh
}

/// The fixture warehouse in `tmp/wh`, every table declared complete through `through`, with a
/// ledger of total ρ 20, 10 of it in `standard-releases`, and nothing published.
pub fn budgeted(tmp: &Path, through: &str) -> PathBuf {
    fixture_budgeted(tmp, through, 20.0, 10.0, PrivacyConfig::default())
}

/// The app's state over `wh` with `limits`, its access log kept in memory.
pub async fn state(wh: &Path, limits: Limits) -> AppState {
    AppState::open(wh, limits, AccessLog::in_memory())
        .await
        .unwrap()
}

/// An access log the test reads back: what `outreach serve` writes to stderr, kept in
/// memory.
#[derive(Clone, Default)]
pub struct CapturedLog(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl CapturedLog {
    /// The server's access log, writing here.
    pub fn access_log(&self) -> AccessLog {
        AccessLog::to_writer(Box::new(self.clone()))
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }
}

impl std::io::Write for CapturedLog {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Limits high enough that no test but the rate-limit one meets them.
pub fn roomy() -> Limits {
    Limits {
        per_ip_per_second: 1e6,
        per_ip_burst: 1_000_000,
        per_token_per_minute: 1e6,
        per_token_burst: 1_000_000,
        ..Limits::default()
    }
}

/// A response read whole: status, headers and body.
pub struct Reply {
    pub status: StatusCode,
    pub headers: axum::http::HeaderMap,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }
    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).unwrap()
    }
    pub fn header(&self, name: header::HeaderName) -> String {
        self.headers
            .get(name)
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default()
    }
}

/// Sends `req` to `app` through `oneshot`, with no socket.
pub async fn send(app: &Router, req: Request<Body>) -> Reply {
    let r = app.clone().oneshot(req).await.unwrap();
    let status = r.status();
    let headers = r.headers().clone();
    let body = axum::body::to_bytes(r.into_body(), usize::MAX)
        .await
        .unwrap()
        .to_vec();
    Reply {
        status,
        headers,
        body,
    }
}

/// `GET uri` without a token.
pub async fn get(app: &Router, uri: &str) -> Reply {
    send(app, Request::get(uri).body(Body::empty()).unwrap()).await
}

/// `POST uri` with a JSON `body`, as the holder of `token` if given.
pub async fn post(app: &Router, uri: &str, token: Option<&str>, body: impl Into<Body>) -> Reply {
    let mut b = Request::post(uri).header(header::CONTENT_TYPE, "application/json");
    if let Some(t) = token {
        b = b.header(header::AUTHORIZATION, format!("Bearer {t}"));
    }
    send(app, b.body(body.into()).unwrap()).await
}

/// `GET uri` as the holder of `token`.
pub async fn get_as(app: &Router, uri: &str, token: &str) -> Reply {
    send(
        app,
        Request::get(uri)
            .header(header::AUTHORIZATION, format!("Bearer {token}"))
            .body(Body::empty())
            .unwrap(),
    )
    .await
}

/// The error body every failure has: JSON with a status and a stable code.
pub fn assert_error(r: &Reply, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", String::from_utf8_lossy(&r.body));
    let v = r.json();
    assert_eq!(v["error"]["status"], status.as_u16(), "{v}");
    assert_eq!(v["error"]["code"], code, "{v}");
    assert!(
        r.header(header::CONTENT_TYPE)
            .starts_with("application/json")
    );
}

/// `outreach serve` on a free port of loopback, over `wh`; killed when dropped.
pub struct Served {
    child: std::process::Child,
    pub addr: String,
}

impl Served {
    /// Starts the binary and waits for the address it prints; its stderr (the access log)
    /// is kept when `keep_log`.
    pub fn start(wh: &Path, keep_log: bool) -> Served {
        Served::start_with(wh, keep_log, &[])
    }

    /// [`Served::start`] with more arguments to `outreach serve`.
    pub fn start_with(wh: &Path, keep_log: bool, args: &[&str]) -> Served {
        use std::io::{BufRead, BufReader};
        use std::process::Stdio;
        let mut child = Command::new(env!("CARGO_BIN_EXE_outreach"))
            .args(["serve", "--addr", "127.0.0.1:0"])
            .args(args)
            .env("OUTREACH_WAREHOUSE", wh)
            .env_remove("RUST_LOG")
            .stdout(Stdio::piped())
            .stderr(if keep_log {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|s| s.split('/').next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .to_string();
        Served { child, addr }
    }

    /// The whole HTTP/1.1 response to `GET path`, status line first.
    pub fn get(&self, path: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }

    /// The JSON body of `GET path`.
    pub fn get_json(&self, path: &str) -> Value {
        let out = self.get(path);
        let body = out.split("\r\n\r\n").nth(1).unwrap_or_default();
        serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {out}"))
    }

    /// Stops the server and returns what it wrote to stderr (with `keep_log`).
    pub fn stop(mut self) -> String {
        use std::io::Read;
        self.child.kill().unwrap();
        let mut err = String::new();
        if let Some(mut e) = self.child.stderr.take() {
            e.read_to_string(&mut err).unwrap();
        }
        err
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Submits `body` as the holder of `token`.
pub async fn submit(app: &Router, token: &str, body: &Value) -> Reply {
    post(app, "/v1/requests", Some(token), body.to_string()).await
}

/// Submits `body` as the holder of `token` and returns the new request's id.
pub async fn submit_id(app: &Router, token: &str, body: &Value) -> String {
    let r = submit(app, token, body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    r.json()["id"].as_str().unwrap().to_string()
}

/// The document of the quarter's current publication, as the ledger stores it.
pub fn current_doc(wh: &Path, quarter: &str) -> Value {
    Ledger::open(wh)
        .unwrap()
        .current_publication(quarter)
        .unwrap()
        .unwrap()
        .document
}

/// A person-local count per program and quarter, inline SQL, no allocation.
pub fn spec(sql: &str) -> Value {
    json!({
        "name": "persons with an attempt per program and quarter",
        "k": 2,
        "queries": [{"sql": sql}],
        "cells": [
            {"column": "program_id", "domain": "programs"},
            {"column": "quarter", "domain": {"quarters": {"from": "2025Q1", "to": "2025Q2"}}}
        ],
        "statistics": [{"name": "attempted", "kind": "count"}]
    })
}

/// A person-local query: whether each person had an attempt, per program and quarter.
pub const PERSON_LOCAL: &str = "SELECT person_key, program_id, quarter_of(attempt_date) AS quarter, true AS attempted \
     FROM outreach_attempts GROUP BY person_key, program_id, quarter_of(attempt_date)";

/// A researcher's submission of [`spec`] over [`PERSON_LOCAL`], asking for `rho`.
pub fn submission(rho: f64) -> Value {
    json!({"purpose": "how many survivors each team reaches", "rho": rho, "spec": spec(PERSON_LOCAL)})
}

/// A state with a researcher `name` holding a token and `rho` of allocation.
pub async fn with_researcher(
    wh: &Path,
    name: &str,
    rho: f64,
    limits: Limits,
) -> (AppState, String) {
    let st = state(wh, limits).await;
    let token = add_researcher(&st, wh, name, rho);
    (st, token)
}

/// Gives researcher `name` a token in `st`'s queue and, when `rho` is above 0, the allocation
/// `researcher:NAME` of `rho` in `wh`'s ledger; returns the token.
pub fn add_researcher(st: &AppState, wh: &Path, name: &str, rho: f64) -> String {
    let token = st.queue().create_token(name, Role::Researcher).unwrap();
    if rho > 0.0 {
        Ledger::open(wh)
            .unwrap()
            .allocate(&format!("researcher:{name}"), rho)
            .unwrap();
    }
    token
}

/// `outreach ARGS` over `wh` (from `OUTREACH_WAREHOUSE`); panics unless it succeeds.
pub fn outreach(wh: &Path, args: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(args)
        .env("OUTREACH_WAREHOUSE", wh)
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "outreach {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The app over `wh` with [`roomy`] limits.
pub async fn app_for(wh: &Path) -> Router {
    app(state(wh, roomy()).await)
}
