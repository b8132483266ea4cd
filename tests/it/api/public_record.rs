//! The public record shows no timing and no identities (privacy model §10).
//! Publication times are days everywhere the public looks; the public budget shows the
//! researchers as one row; a request belongs to the token that made it, under an id that
//! counts nothing; and a researcher's text cannot drive the steward's terminal.

use axum::http::{StatusCode, header};
use outreach_warehouse::api::app;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::requests::Quote;
use serde_json::{Value, json};

use crate::common::server::{
    add_researcher, app_for, assert_error, get, get_as, outreach, published, roomy, submission,
    submit, submit_id, with_researcher,
};

fn approx(v: &Value, want: f64) {
    let got = v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"));
    assert!((got - want).abs() < 1e-9, "{got} is not {want}");
}

/// Whether `text` holds a time of day, `HH:MM:SS`.
fn has_time_of_day(text: &str) -> bool {
    let b = text.as_bytes();
    b.windows(8).any(|w| {
        w[2] == b':' && w[5] == b':' && [0, 1, 3, 4, 6, 7].iter().all(|&i| w[i].is_ascii_digit())
    })
}

#[test]
fn a_time_of_day_is_found_and_a_date_is_not() {
    assert!(has_time_of_day("2026-11-30T10:11:12Z"));
    assert!(!has_time_of_day("2026-11-30"));
}

/// The gaps between publications made in one batch are each quarter's run time: every
/// public place shows a publication's day, never its time. The steward's view keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn publication_times_are_days_in_the_api_the_dashboard_the_report_and_the_cli() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let ledger = Ledger::open(&wh).unwrap();
    let stamps: Vec<(&str, String)> = ["2025Q1", "2025Q2"]
        .into_iter()
        .map(|q| {
            (
                q,
                ledger.current_publication(q).unwrap().unwrap().published_at,
            )
        })
        .collect();
    let finished: Vec<String> = ledger
        .releases()
        .unwrap()
        .into_iter()
        .filter_map(|r| r.finished_at)
        .collect();
    drop(ledger);
    for (_, at) in &stamps {
        assert!(has_time_of_day(at), "the ledger keeps the full time: {at}");
    }
    assert_eq!(finished.len(), 4);

    let app = app_for(&wh).await;
    let quarters = get(&app, "/v1/quarters").await.json();
    for (i, (q, at)) in stamps.iter().enumerate() {
        assert_eq!(quarters[i]["quarter"], *q);
        assert_eq!(quarters[i]["published_at"], &at[..10], "{quarters}");
        let page = get(&app, &format!("/v1/quarters/{q}/programs/P1"))
            .await
            .json();
        assert_eq!(page["published_at"], &at[..10], "{q}");
    }
    let mut public = vec![
        ("/v1/quarters", serde_json::to_string(&quarters).unwrap()),
        (
            "/v1/quarters?format=csv",
            get(&app, "/v1/quarters?format=csv").await.text(),
        ),
        (
            "/v1/quarters/2025Q1/programs/P1",
            get(&app, "/v1/quarters/2025Q1/programs/P1").await.text(),
        ),
        ("/v1/budget", get(&app, "/v1/budget").await.text()),
        ("/v1/releases", get(&app, "/v1/releases").await.text()),
    ];
    let dashboard = get(&app, "/?quarter=2025Q1&metric=count:identified").await;
    assert_eq!(dashboard.status, StatusCode::OK, "{}", dashboard.text());
    let dashboard = dashboard.text();
    assert!(
        dashboard.contains(&format!("published {}", &stamps[0].1[..10])),
        "the dashboard shows the day"
    );
    public.push(("the dashboard", dashboard));
    let (report, _) = outreach_warehouse::present::quarterly::render(
        &wh,
        "2025Q1".parse().unwrap(),
        "report.csv",
    )
    .await
    .unwrap();
    assert!(report.contains(&format!("published {}", &stamps[0].1[..10])));
    public.push(("the report", report));
    let budget = get(&app, "/v1/budget").await.json();
    assert_eq!(
        budget["period_starts"].as_str().unwrap().len(),
        10,
        "{budget}"
    );
    assert_eq!(
        budget["period_ends"].as_str().unwrap().len(),
        10,
        "{budget}"
    );

    // The CLI's public view of the releases: days; the steward's: the full time.
    for format in ["table", "csv", "json"] {
        let out = outreach(&wh, &["releases", "list", "--format", format]);
        public.push(("releases list", String::from_utf8(out.stdout).unwrap()));
    }
    let listed = String::from_utf8(outreach(&wh, &["releases", "list"]).stdout).unwrap();
    for at in &finished {
        assert!(listed.contains(&at[..10]), "{listed}");
    }
    let steward =
        String::from_utf8(outreach(&wh, &["releases", "list", "--steward"]).stdout).unwrap();
    assert!(
        finished.iter().all(|at| steward.contains(at.as_str())),
        "the steward sees the full times: {steward}"
    );
    let id = get(&app, "/v1/releases").await.json()[0]["id"].to_string();
    for format in ["table", "json"] {
        let out = outreach(&wh, &["releases", "show", &id, "--format", format]);
        public.push(("releases show", String::from_utf8(out.stdout).unwrap()));
    }

    for (place, text) in &public {
        assert!(
            !has_time_of_day(text),
            "{place} shows a time of day: {text}"
        );
        for at in stamps.iter().map(|(_, at)| at).chain(&finished) {
            assert!(!text.contains(at.as_str()), "{place} shows {at}");
        }
    }
}

/// Publicly, researchers' allocations are one row that sums their ρ and their spending, so
/// the total still adds up from what is public; it names no researcher and counts none. A
/// researcher's token adds their own allocation, in a response no shared cache keeps.
#[tokio::test(flavor = "multi_thread")]
async fn the_public_budget_shows_researchers_as_one_row_and_a_token_holder_their_own() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, rosa) = with_researcher(&wh, "rosa", 0.5, roomy()).await;
    let bob = add_researcher(&st, &wh, "bob", 0.25);
    let app = app(st.clone());
    let id = submit_id(&app, &rosa, &submission(0.1)).await;
    outreach(&wh, &["requests", "approve", &id.to_string()]);
    st.reload().await.unwrap();

    let public = get(&app, "/v1/budget").await;
    assert_eq!(public.status, StatusCode::OK);
    let text = public.text();
    for name in ["rosa", "bob", "researcher:"] {
        assert!(!text.contains(name), "{name} in {text}");
    }
    let v = public.json();
    let rows = v["allocations"].as_array().unwrap();
    let names: Vec<&str> = rows.iter().map(|a| a["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["standard-releases", "researchers"]);
    let researchers = &rows[1];
    approx(&researchers["rho"], 0.75);
    approx(&researchers["spent_rho"], 0.1);
    approx(&researchers["remaining_rho"], 0.65);
    // The same fields as any allocation: no count of researchers.
    let fields = |r: &Value| {
        let mut k: Vec<String> = r.as_object().unwrap().keys().cloned().collect();
        k.sort();
        k
    };
    assert_eq!(fields(researchers), fields(&rows[0]));
    // The total adds up from what is public.
    let spent: f64 = rows.iter().map(|a| a["spent_rho"].as_f64().unwrap()).sum();
    approx(&v["spent_rho"], spent);
    assert!(v.get("own_allocation").is_none(), "{v}");
    assert!(
        public.header(header::VARY).contains("Authorization"),
        "{:?}",
        public.headers
    );
    let csv = get(&app, "/v1/budget?format=csv").await.text();
    assert!(
        !csv.contains("rosa") && !csv.contains("bob") && csv.contains("\nresearchers,"),
        "{csv}"
    );

    // Rosa's token shows her own allocation beside the public rows, privately.
    let mine = get_as(&app, "/v1/budget", &rosa).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    let cache = mine.header(header::CACHE_CONTROL);
    assert!(
        cache.contains("private") && cache.contains("no-store"),
        "{cache}"
    );
    let m = mine.json();
    assert_eq!(m["allocations"], v["allocations"]);
    assert_eq!(m["own_allocation"]["name"], "researcher:rosa");
    approx(&m["own_allocation"]["rho"], 0.5);
    approx(&m["own_allocation"]["spent_rho"], 0.1);
    assert!(!mine.text().contains("bob"), "{}", mine.text());
    let mine_csv = get_as(&app, "/v1/budget?format=csv", &rosa).await.text();
    assert!(
        mine_csv.contains("\nresearcher:rosa,") && !mine_csv.contains("bob"),
        "{mine_csv}"
    );
    let bobs = get_as(&app, "/v1/budget", &bob).await.json();
    assert_eq!(bobs["own_allocation"]["name"], "researcher:bob");
    approx(&bobs["own_allocation"]["spent_rho"], 0.0);
    assert!(!bobs.to_string().contains("rosa"));
    // A token that is not an active one is refused, not quietly ignored.
    assert_error(
        &get_as(&app, "/v1/budget", "owr_not-a-token").await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
}

/// A request belongs to the token that made it, not to the name: after `tokens revoke rosa`
/// and `tokens create rosa`, the new holder can neither read nor list the old holder's
/// requests (nor, through them, the old holder's private releases).
#[tokio::test(flavor = "multi_thread")]
async fn a_new_token_for_a_revoked_name_sees_none_of_the_old_holders_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, old) = with_researcher(&wh, "rosa", 0.5, roomy()).await;
    let app = app(st.clone());
    let pending = submit_id(&app, &old, &submission(0.1)).await;
    let released = submit_id(&app, &old, &submission(0.1)).await;
    outreach(&wh, &["requests", "approve", &released.to_string()]);
    st.reload().await.unwrap();
    let listed = get_as(&app, "/v1/requests", &old).await;
    assert_eq!(listed.status, StatusCode::OK, "{}", listed.text());
    let ids: Vec<Value> = listed
        .json()
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].clone())
        .collect();
    assert_eq!(ids, [json!(pending), json!(released)]);

    outreach(&wh, &["tokens", "revoke", "rosa"]);
    let out = outreach(
        &wh,
        &["tokens", "create", "--role", "researcher", "--name", "rosa"],
    );
    let new = String::from_utf8(out.stdout).unwrap().trim().to_string();
    for id in [&pending, &released] {
        let r = get_as(&app, &format!("/v1/requests/{id}"), &new).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
        assert_error(
            &get_as(&app, &format!("/v1/requests/{id}"), &old).await,
            StatusCode::UNAUTHORIZED,
            "unauthorized",
        );
    }
    let theirs = get_as(&app, "/v1/requests", &new).await;
    assert_eq!(theirs.status, StatusCode::OK);
    assert_eq!(theirs.json(), json!([]));
    // What the new holder submits is theirs.
    let mine = submit_id(&app, &new, &submission(0.1)).await;
    let listed = get_as(&app, "/v1/requests", &new).await.json();
    assert_eq!(listed.as_array().unwrap().len(), 1, "{listed}");
    assert_eq!(listed[0]["id"], json!(mine));
    assert_eq!(listed[0]["state"], "pending");
    let one = get_as(&app, &format!("/v1/requests/{mine}"), &new).await;
    assert_eq!(one.status, StatusCode::OK, "{}", one.text());
}

/// The requests file as the warehouse wrote it before requests carried their token: names
/// only, sequential ids. Rosa's first token (1) was revoked and she got a second (2); bob has
/// one (3). Request 1 is the first rosa's, 2 bob's, 3 the second rosa's.
const V0_SCHEMA: &str = "
CREATE TABLE tokens (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    role TEXT NOT NULL CHECK (role IN ('researcher')),
    hash TEXT NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
CREATE UNIQUE INDEX tokens_one_active_name ON tokens (name) WHERE revoked_at IS NULL;
CREATE TABLE requests (
    id INTEGER PRIMARY KEY,
    researcher TEXT NOT NULL,
    purpose TEXT NOT NULL,
    rho_asked REAL NOT NULL,
    spec TEXT NOT NULL,
    quote TEXT NOT NULL,
    submitted_at TEXT NOT NULL
);
CREATE TABLE decisions (
    id INTEGER PRIMARY KEY,
    request_id INTEGER NOT NULL REFERENCES requests (id),
    state TEXT NOT NULL CHECK (state IN ('rejected', 'released', 'failed')),
    why TEXT,
    release_id INTEGER,
    public INTEGER NOT NULL DEFAULT 0,
    decided_by TEXT NOT NULL,
    decided_at TEXT NOT NULL
);
CREATE TRIGGER requests_no_update BEFORE UPDATE ON requests
BEGIN SELECT RAISE(ABORT, 'requests are append-only'); END;
CREATE INDEX decisions_by_request ON decisions (request_id, id);
CREATE TRIGGER decisions_no_update BEFORE UPDATE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
CREATE TRIGGER decisions_no_delete BEFORE DELETE ON decisions
BEGIN SELECT RAISE(ABORT, 'decisions are append-only'); END;
";

/// The tokens of the old file: the first rosa's (revoked), the second rosa's, bob's.
pub(crate) struct OldTokens {
    pub first_rosa: String,
    pub second_rosa: String,
    pub bob: String,
}

/// Writes the old requests file into `wh` (see [`V0_SCHEMA`]).
pub(crate) fn old_requests_file(wh: &std::path::Path) -> OldTokens {
    use sha2::{Digest, Sha256};
    let token = |c: char| format!("owr_{}", c.to_string().repeat(64));
    let hash = |t: &str| outreach_warehouse::warehouse::hex(&Sha256::digest(t.as_bytes()));
    let tokens = OldTokens {
        first_rosa: token('1'),
        second_rosa: token('2'),
        bob: token('3'),
    };
    let conn = rusqlite::Connection::open(wh.join("requests.sqlite")).unwrap();
    conn.execute_batch(V0_SCHEMA).unwrap();
    for (id, name, t, created, revoked) in [
        (
            1,
            "rosa",
            &tokens.first_rosa,
            "2026-01-01T09:00:00Z",
            Some("2026-02-01T09:00:00Z"),
        ),
        (2, "rosa", &tokens.second_rosa, "2026-02-01T09:00:05Z", None),
        (3, "bob", &tokens.bob, "2026-01-01T09:00:00Z", None),
    ] {
        conn.execute(
            "INSERT INTO tokens (id, name, role, hash, created_at, revoked_at) VALUES (?1, ?2, 'researcher', ?3, ?4, ?5)",
            rusqlite::params![id, name, hash(t), created, revoked],
        )
        .unwrap();
    }
    let quote = serde_json::to_string(&Quote::default()).unwrap();
    for (id, name, purpose, at) in [
        (
            1,
            "rosa",
            "the first rosa's question",
            "2026-01-15T10:00:00Z",
        ),
        (2, "bob", "bob's question", "2026-01-16T10:00:00Z"),
        (
            3,
            "rosa",
            "the second rosa's question",
            "2026-02-02T10:00:00Z",
        ),
    ] {
        conn.execute(
            "INSERT INTO requests (id, researcher, purpose, rho_asked, spec, quote, submitted_at) VALUES (?1, ?2, ?3, 0.1, '{}', ?4, ?5)",
            rusqlite::params![id, name, purpose, quote, at],
        )
        .unwrap();
    }
    tokens
}

/// Requests stored before they carried their token belong, once the file is opened, to the
/// token that was active for their name when they were submitted.
#[tokio::test(flavor = "multi_thread")]
async fn stored_requests_go_to_the_token_active_when_they_were_submitted() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let t = old_requests_file(&wh);
    let app = app_for(&wh).await;
    let mine = get_as(&app, "/v1/requests/3", &t.second_rosa).await;
    assert_eq!(mine.status, StatusCode::OK, "{}", mine.text());
    assert_eq!(mine.json()["purpose"], "the second rosa's question");
    assert_error(
        &get_as(&app, "/v1/requests/1", &t.second_rosa).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let listed = get_as(&app, "/v1/requests", &t.second_rosa).await.json();
    let purposes: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["purpose"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["the second rosa's question"]);
    let bobs = get_as(&app, "/v1/requests/2", &t.bob).await;
    assert_eq!(bobs.status, StatusCode::OK, "{}", bobs.text());
    assert_error(
        &get_as(&app, "/v1/requests/1", &t.first_rosa).await,
        StatusCode::UNAUTHORIZED,
        "unauthorized",
    );
    // The steward still sees all three.
    let list = String::from_utf8(outreach(&wh, &["requests", "list"]).stdout).unwrap();
    for p in ["the first rosa", "bob's question", "the second rosa"] {
        assert!(list.contains(p), "{list}");
    }
}

/// The pattern of a request id: 16 random bytes in lowercase hex, or the digits of an id
/// stored when ids were sequential.
const REQUEST_ID_PATTERN: &str = "^(?:[0-9a-f]{32}|[1-9][0-9]{0,18})$";

fn is_random_id(id: &str) -> bool {
    id.len() == 32 && id.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// A request's id is random: it says nothing of how many requests others made. Counting
/// finds nothing, a malformed id is a 400, and the OpenAPI document states the pattern the
/// server checks.
#[tokio::test(flavor = "multi_thread")]
async fn request_ids_are_random_and_count_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, alice) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let bob = add_researcher(&st, &wh, "bob", 0.5);
    let app = app(st.clone());
    let mut ids = Vec::new();
    for token in [&alice, &bob, &bob, &bob, &alice] {
        let r = submit(&app, token, &submission(0.1)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
        let id = r.json()["id"]
            .as_str()
            .unwrap_or_else(|| panic!("the id is not a string: {}", r.text()))
            .to_string();
        assert!(is_random_id(&id), "{id}");
        assert_eq!(r.header(header::LOCATION), format!("/v1/requests/{id}"));
        ids.push(id);
    }
    let mut distinct = ids.clone();
    distinct.sort();
    distinct.dedup();
    assert_eq!(distinct.len(), ids.len());
    let last = get_as(&app, &format!("/v1/requests/{}", ids[4]), &alice).await;
    assert_eq!(last.status, StatusCode::OK, "{}", last.text());
    assert_eq!(last.json()["id"], ids[4].as_str());
    // Counting finds nothing.
    for n in 1..=6 {
        let r = get_as(&app, &format!("/v1/requests/{n}"), &alice).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
    let upper = ids[0].to_uppercase();
    let short = "0".repeat(31);
    let long = "0".repeat(33);
    for bad in [
        "abc",
        "0",
        "01",
        "-1",
        "1.5",
        "12345678901234567890",
        upper.as_str(),
        short.as_str(),
        long.as_str(),
    ] {
        let r = get_as(&app, &format!("/v1/requests/{bad}"), &alice).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
    // The steward uses the same ids.
    let shown = String::from_utf8(outreach(&wh, &["requests", "show", &ids[1]]).stdout).unwrap();
    assert!(shown.contains(&ids[1]), "{shown}");

    let doc = get(&app, "/openapi.json").await.json();
    let params = doc["paths"]["/v1/requests/{id}"]["get"]["parameters"]
        .as_array()
        .unwrap();
    let id = params.iter().find(|p| p["name"] == "id").unwrap();
    assert_eq!(id["schema"]["type"], "string", "{id}");
    assert_eq!(id["schema"]["pattern"], REQUEST_ID_PATTERN, "{id}");
    assert_eq!(
        doc["components"]["schemas"]["Submitted"]["properties"]["id"]["type"],
        "string"
    );
}

/// Ids stored when they were sequential keep working, as their digits.
#[tokio::test(flavor = "multi_thread")]
async fn sequential_ids_stored_before_keep_working() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let t = old_requests_file(&wh);
    Ledger::open(&wh)
        .unwrap()
        .allocate("researcher:rosa", 0.5)
        .unwrap();
    let app = app_for(&wh).await;
    let old = get_as(&app, "/v1/requests/3", &t.second_rosa).await;
    assert_eq!(old.status, StatusCode::OK, "{}", old.text());
    assert_eq!(old.json()["id"], "3");
    let shown = String::from_utf8(outreach(&wh, &["requests", "show", "2"]).stdout).unwrap();
    assert!(shown.contains("bob's question"), "{shown}");
    outreach(
        &wh,
        &["requests", "reject", "3", "--why", "please narrow it"],
    );
    let rejected = get_as(&app, "/v1/requests/3", &t.second_rosa).await.json();
    assert_eq!(rejected["state"], "rejected");
    // A new request beside them gets a random id.
    let new = submit_id(&app, &t.second_rosa, &submission(0.1)).await;
    let new = serde_json::to_value(&new).unwrap();
    assert!(is_random_id(new.as_str().unwrap_or_default()), "{new}");
    let listed = get_as(&app, "/v1/requests", &t.second_rosa).await.json();
    let ids: Vec<&Value> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|r| &r["id"])
        .collect();
    assert_eq!(ids, [&json!("3"), &new]);
}

/// A researcher's purpose and spec name reach the steward's terminal. Control characters
/// (C0, C1, DEL), escape sequences and bidi overrides are printed escaped, never raw, and a
/// line break in them cannot forge a row of a listing.
#[tokio::test(flavor = "multi_thread")]
async fn a_researchers_text_cannot_drive_the_stewards_terminal() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "mallory", 0.5, roomy()).await;
    let app = app(st.clone());
    let evil = "\u{1b}[2J\u{1b}]0;owned\u{7}clear\u{9b}31m\u{202e}exe.txt\u{2066}x\u{2069}\u{7f}\u{200f}\nP9 alice released";
    let mut s = submission(0.1);
    s["purpose"] = json!(format!("why {evil}"));
    s["spec"]["name"] = json!(format!("name {evil}"));
    let id = submit_id(&app, &token, &s).await;
    let raw = [
        '\u{1b}', '\u{7}', '\u{9b}', '\u{7f}', '\u{202e}', '\u{2066}', '\u{2069}', '\u{200f}',
    ];
    let check = |what: &str, out: &std::process::Output| {
        let text = String::from_utf8(out.stdout.clone()).unwrap();
        let err = String::from_utf8(out.stderr.clone()).unwrap();
        for c in raw {
            assert!(!text.contains(c), "{what}: {c:?} in {text:?}");
            assert!(!err.contains(c), "{what}: {c:?} in {err:?}");
        }
        text
    };
    let list = check("requests list", &outreach(&wh, &["requests", "list"]));
    assert_eq!(list.lines().count(), 2, "a header and one request: {list}");
    assert!(list.contains("why "), "{list}");
    for format in ["csv", "json"] {
        check(
            "requests list",
            &outreach(&wh, &["requests", "list", "--format", format]),
        );
    }
    let csv = check(
        "requests list --format csv",
        &outreach(&wh, &["requests", "list", "--format", "csv"]),
    );
    assert_eq!(csv.lines().count(), 2, "{csv}");
    check("requests show", &outreach(&wh, &["requests", "show", &id]));
    // Made public, so that the public listings show it too.
    check(
        "requests approve",
        &outreach(&wh, &["requests", "approve", &id, "--public"]),
    );
    let rid = Ledger::open(&wh)
        .unwrap()
        .releases()
        .unwrap()
        .last()
        .unwrap()
        .id
        .to_string();
    let listed = check("releases list", &outreach(&wh, &["releases", "list"]));
    assert!(
        !listed
            .lines()
            .any(|l| l.trim_start().starts_with("P9 alice")),
        "{listed}"
    );
    for args in [
        vec!["releases", "list", "--format", "csv"],
        vec!["releases", "list", "--format", "json"],
        vec!["releases", "list", "--steward"],
        vec!["releases", "show", &rid],
        vec!["releases", "show", &rid, "--format", "json"],
        vec!["releases", "show", &rid, "--format", "csv"],
        vec!["releases", "show", &rid, "--steward"],
    ] {
        check(&args.join(" "), &outreach(&wh, &args));
    }
}

/// The public CLI lists what the API lists: a researcher's release that the steward did not
/// make public is public as spend only (in the budget), never by its name, its requester or
/// its numbers. The steward's view keeps it.
#[tokio::test(flavor = "multi_thread")]
async fn the_public_cli_shows_a_researchers_release_only_once_made_public() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, token) = with_researcher(&wh, "rosa", 0.5, roomy()).await;
    let app = app(st);
    let mut private = submission(0.1);
    private["spec"]["name"] = json!("a private question");
    let id = submit_id(&app, &token, &private).await;
    outreach(&wh, &["requests", "approve", &id]);
    // Another ρ: the same spec again would be the same release (idempotent), not a second.
    let mut public = submission(0.12);
    public["spec"]["name"] = json!("a public answer");
    let id = submit_id(&app, &token, &public).await;
    outreach(&wh, &["requests", "approve", &id, "--public"]);
    let rosas: Vec<String> = Ledger::open(&wh)
        .unwrap()
        .releases()
        .unwrap()
        .into_iter()
        .filter(|r| r.allocation == "researcher:rosa")
        .map(|r| r.id.to_string())
        .collect();
    assert_eq!(rosas.len(), 2);
    for format in ["table", "csv", "json"] {
        let out = outreach(&wh, &["releases", "list", "--format", format]);
        let text = String::from_utf8(out.stdout).unwrap();
        assert!(!text.contains("a private question"), "{format}: {text}");
        assert!(text.contains("a public answer"), "{format}: {text}");
    }
    let hidden = std::process::Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args(["releases", "show", &rosas[0]])
        .env("OUTREACH_WAREHOUSE", &wh)
        .output()
        .unwrap();
    assert_eq!(hidden.status.code(), Some(2), "{hidden:?}");
    assert!(!String::from_utf8_lossy(&hidden.stdout).contains("a private question"));
    outreach(&wh, &["releases", "show", &rosas[1]]);
    let steward =
        String::from_utf8(outreach(&wh, &["releases", "list", "--steward"]).stdout).unwrap();
    assert!(steward.contains("a private question"), "{steward}");
    outreach(&wh, &["releases", "show", &rosas[0], "--steward"]);
}
