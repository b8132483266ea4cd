//! Anyone can verify the public record (`src/verify`): `verify` passes on an untouched
//! warehouse with standard releases, publications and researchers' releases (one private, one
//! made public), and fails, naming the entry, on each way of tampering with it: a removed
//! release, an edited number, a reordered entry, a spend above the budget with every hash and
//! the signature recomputed, and a head signed with another key.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use axum::Router;
use axum::http::StatusCode;
use ed25519_dalek::{Signer, SigningKey, VerifyingKey};
use outreach_warehouse::api::app;
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::ledger::chain::{GENESIS_PREV, canonical_json, entry_hash, head_message};
use outreach_warehouse::verify::{PublicRecord, VerifyError, parse_public_key, verify};
use serde_json::Value;

use crate::common::releases::outreach;
use crate::common::server::{add_researcher, get, published, roomy, state, submission, submit_id};

/// The public record as the API serves it, in process: `v1/x.json` is `GET /v1/x?format=json`
/// on the app, through `oneshot`.
struct InProcess {
    app: Router,
}

impl PublicRecord for InProcess {
    fn fetch(&self, route: &str) -> Result<Vec<u8>, VerifyError> {
        let fail = |message: String| VerifyError::Fetch {
            route: route.to_string(),
            message,
        };
        let path = route
            .strip_suffix(".json")
            .ok_or_else(|| fail("only the JSON form is read here".to_string()))?;
        let uri = format!("/{path}?format=json");
        let reply = tokio::task::block_in_place(|| {
            tokio::runtime::Handle::current().block_on(get(&self.app, &uri))
        });
        if reply.status != StatusCode::OK {
            return Err(fail(format!("HTTP {}", reply.status)));
        }
        Ok(reply.body)
    }
}

/// A record with some routes' bodies replaced, as a tampering mirror would serve them.
struct Tampered<'a> {
    inner: &'a dyn PublicRecord,
    bodies: HashMap<String, Vec<u8>>,
}

impl<'a> Tampered<'a> {
    fn new(inner: &'a dyn PublicRecord) -> Tampered<'a> {
        Tampered {
            inner,
            bodies: HashMap::new(),
        }
    }

    /// Serves `value` at `route` from now on.
    fn set(&mut self, route: &str, value: &Value) {
        self.bodies
            .insert(route.to_string(), serde_json::to_vec(value).unwrap());
    }

    /// The body at `route`, as JSON: the replaced one if any.
    fn json(&self, route: &str) -> Value {
        serde_json::from_slice(&self.fetch(route).unwrap()).unwrap()
    }
}

impl PublicRecord for Tampered<'_> {
    fn fetch(&self, route: &str) -> Result<Vec<u8>, VerifyError> {
        match self.bodies.get(route) {
            Some(body) => Ok(body.clone()),
            None => self.inner.fetch(route),
        }
    }
}

/// The fixture warehouse with two quarters published, a researcher's private release and
/// another researcher's release made public; the app over it and the warehouse's public key.
async fn demo_like(tmp: &Path) -> (PathBuf, InProcess, VerifyingKey) {
    let wh = published(tmp).await;
    let st = state(&wh, roomy()).await;
    let rosa = add_researcher(&st, &wh, "rosa", 0.5);
    let rita = add_researcher(&st, &wh, "rita", 0.5);
    let api = app(st.clone());
    let private = submit_id(&api, &rosa, &submission(0.2)).await;
    let public = submit_id(&api, &rita, &submission(0.2)).await;
    outreach_warehouse::requests::approve(&wh, &private, "sam", false)
        .await
        .unwrap();
    outreach_warehouse::requests::approve(&wh, &public, "sam", true)
        .await
        .unwrap();
    st.reload().await.unwrap();
    let key = parse_public_key(&Ledger::open(&wh).unwrap().public_key_hex().unwrap()).unwrap();
    (wh, InProcess { app: api }, key)
}

/// The entry error `verify` returned, as (seq, kind, problem).
fn entry_error(result: Result<impl std::fmt::Debug, VerifyError>) -> (i64, String, String) {
    match result {
        Err(VerifyError::Entry { seq, kind, problem }) => (seq, kind, problem),
        other => panic!("expected an error naming an entry, got {other:?}"),
    }
}

/// The entries of page 1 (the fixture's chain has fewer than 500).
fn page_entries(record: &Tampered<'_>) -> Vec<Value> {
    let page = record.json("v1/ledger/pages/1.json");
    assert!(page["next"].is_null(), "one page: {}", page["next"]);
    page["entries"].as_array().unwrap().clone()
}

fn set_page_entries(record: &mut Tampered<'_>, entries: Vec<Value>) {
    let mut page = record.json("v1/ledger/pages/1.json");
    page["entries"] = Value::Array(entries);
    record.set("v1/ledger/pages/1.json", &page);
}

#[tokio::test(flavor = "multi_thread")]
async fn verify_passes_on_an_untouched_record_and_says_what_it_checked() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, record, key) = demo_like(tmp.path()).await;
    let report = verify(&record, &key).unwrap();
    // Two quarters of two releases each, and rita's release made public; rosa's is spend only.
    assert_eq!(report.releases_checked, 5, "{report}");
    assert_eq!(report.publications_checked, 2, "{report}");
    assert_eq!(report.debits, 6, "{report}");
    assert_eq!(report.private_debits, 2, "{report}");
    assert!(!report.migrated);
    let spent = Ledger::open(&wh).unwrap().show().unwrap();
    assert!((report.lifetime_spent_rho - spent.lifetime_rho).abs() < 1e-12);
    assert_eq!(report.periods.len(), 1);
    assert!((report.periods[0].spent_rho - spent.spent_rho).abs() < 1e-12);
    let text = report.to_string();
    for words in [
        "signature verifies",
        "without a gap",
        "5 checked",
        "2 of them researchers' private releases",
        "matches the chain's totals",
    ] {
        assert!(text.contains(words), "{words}: {text}");
    }
    // Every release and publication view carries its entry's hash, as the chain has it.
    let chain = Ledger::open(&wh).unwrap().chain().unwrap();
    let hashes: Vec<&str> = chain.iter().map(|e| e.hash.as_str()).collect();
    let quarters: Value =
        serde_json::from_slice(&record.fetch("v1/quarters.json").unwrap()).unwrap();
    for q in quarters.as_array().unwrap() {
        assert!(hashes.contains(&q["ledger_entry"].as_str().unwrap()), "{q}");
    }
    let program = get(&record.app, "/v1/quarters/2025Q1/programs/P1")
        .await
        .json();
    assert_eq!(program["ledger_entry"], quarters[0]["ledger_entry"]);
    // The private release's entry says nothing of who asked or what came out.
    let private: Vec<&str> = chain
        .iter()
        .filter(|e| e.kind == "private_debit")
        .map(|e| e.body.as_str())
        .collect();
    assert_eq!(private.len(), 2);
    for body in private {
        let v: Value = serde_json::from_str(body).unwrap();
        let mut keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        keys.sort();
        assert_eq!(
            keys,
            ["allocation", "day", "delta", "period", "rho"],
            "{body}"
        );
        for secret in ["rosa", "rita", "sam", "owr_", "researcher:"] {
            assert!(!body.contains(secret), "{secret} in {body}");
        }
    }
    // CSV forms of the three routes answer too.
    for route in ["/v1/ledger", "/v1/ledger/pages/1", "/v1/ledger/head"] {
        let r = get(&record.app, &format!("{route}?format=csv")).await;
        assert_eq!(r.status, StatusCode::OK, "{route}: {}", r.text());
        assert!(r.text().lines().count() >= 2, "{route}: {}", r.text());
    }
    let missing = get(&record.app, "/v1/ledger/pages/9").await;
    assert_eq!(missing.status, StatusCode::NOT_FOUND, "{}", missing.text());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_removed_release_fails_naming_the_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let (_wh, record, key) = demo_like(tmp.path()).await;
    // Its entry taken off the page: the entry after it is found where it should be.
    let mut tampered = Tampered::new(&record);
    let mut entries = page_entries(&tampered);
    let at = entries.iter().position(|e| e["kind"] == "release").unwrap();
    let next_kind = entries[at + 1]["kind"].as_str().unwrap().to_string();
    entries.remove(at);
    set_page_entries(&mut tampered, entries);
    let (seq, kind, problem) = entry_error(verify(&tampered, &key));
    assert_eq!((seq, kind.as_str()), (at as i64 + 1, next_kind.as_str()));
    assert!(problem.contains("missing"), "{problem}");
    // Left on the chain but taken out of the served list: the chain names it as hidden.
    let mut tampered = Tampered::new(&record);
    let mut list = tampered.json("v1/releases.json");
    let gone = list.as_array_mut().unwrap().remove(0);
    tampered.set("v1/releases.json", &list);
    let (seq, kind, problem) = entry_error(verify(&tampered, &key));
    assert_eq!(kind, "release");
    assert!(problem.contains("hidden"), "{problem}");
    let entries = page_entries(&tampered);
    let body: Value =
        serde_json::from_str(entries[seq as usize]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["release_id"], gone["id"]);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_edited_number_fails_naming_the_releases_entry() {
    let tmp = tempfile::tempdir().unwrap();
    let (_wh, record, key) = demo_like(tmp.path()).await;
    let mut tampered = Tampered::new(&record);
    let list = tampered.json("v1/releases.json");
    let id = list[0]["id"].as_i64().unwrap();
    let route = format!("v1/releases/{id}.json");
    let mut release = tampered.json(&route);
    let value = &mut release["result"]["statistics"][0]["values"][0];
    let raw = value["raw"].as_i64().unwrap();
    value["raw"] = Value::from(raw + 1);
    let entry = release["ledger_entry"].as_str().unwrap().to_string();
    tampered.set(&route, &release);
    let (seq, kind, problem) = entry_error(verify(&tampered, &key));
    assert_eq!(kind, "release");
    assert!(problem.contains("number"), "{problem}");
    let entries = page_entries(&tampered);
    assert_eq!(entries[seq as usize]["hash"], entry.as_str());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_reordered_entry_fails_naming_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (_wh, record, key) = demo_like(tmp.path()).await;
    let mut tampered = Tampered::new(&record);
    let mut entries = page_entries(&tampered);
    let at = entries.iter().position(|e| e["kind"] == "debit").unwrap();
    entries.swap(at, at + 1);
    let moved_kind = entries[at]["kind"].as_str().unwrap().to_string();
    set_page_entries(&mut tampered, entries);
    let (seq, kind, problem) = entry_error(verify(&tampered, &key));
    assert_eq!((seq, kind.as_str()), (at as i64 + 1, moved_kind.as_str()));
    assert!(problem.contains("out of order"), "{problem}");
    // Swapped with their numbers kept in place, the hashes no longer chain.
    let mut tampered = Tampered::new(&record);
    let mut entries = page_entries(&tampered);
    let (a, b) = (entries[at].clone(), entries[at + 1].clone());
    for field in ["kind", "day", "body"] {
        entries[at][field] = b[field].clone();
        entries[at + 1][field] = a[field].clone();
    }
    set_page_entries(&mut tampered, entries);
    let (seq, _, problem) = entry_error(verify(&tampered, &key));
    assert_eq!(seq, at as i64);
    assert!(problem.contains("changed"), "{problem}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_spend_over_the_budget_fails_at_its_entry_though_every_hash_and_the_signature_hold() {
    let tmp = tempfile::tempdir().unwrap();
    let (_wh, record, _) = demo_like(tmp.path()).await;
    // A forger who holds a signing key (here the test's) rewrites the first debit to spend
    // more than the period's whole budget, then recomputes every hash after it and signs the
    // new head: only the totals can catch it.
    let forger = SigningKey::from_bytes(&[7; 32]);
    let mut tampered = Tampered::new(&record);
    let mut entries = page_entries(&tampered);
    let budget = tampered.json("v1/budget.json")["total_rho"]
        .as_f64()
        .unwrap();
    let at = entries.iter().position(|e| e["kind"] == "debit").unwrap();
    let mut body: Value = serde_json::from_str(entries[at]["body"].as_str().unwrap()).unwrap();
    body["rho"] = Value::from(budget + 1.0);
    entries[at]["body"] = Value::from(canonical_json(&body));
    let mut prev = GENESIS_PREV;
    for (i, e) in entries.iter_mut().enumerate() {
        let kind = e["kind"].as_str().unwrap().to_string();
        let text = e["body"].as_str().unwrap().to_string();
        let hash = entry_hash(&prev, i as u64, &kind, &text);
        e["prev_hash"] = Value::from(outreach_warehouse::ledger::chain::to_hex(&prev));
        e["hash"] = Value::from(outreach_warehouse::ledger::chain::to_hex(&hash));
        prev = hash;
    }
    let size = entries.len() as u64;
    set_page_entries(&mut tampered, entries);
    let head_hash = outreach_warehouse::ledger::chain::to_hex(&prev);
    let signature = forger.sign(&head_message(size, &prev)).to_bytes();
    let mut head = tampered.json("v1/ledger/head.json");
    head["hash"] = Value::from(head_hash.clone());
    head["signature"] = Value::from(outreach_warehouse::ledger::chain::to_hex(&signature));
    head["public_key"] = Value::from(outreach_warehouse::ledger::chain::to_hex(
        forger.verifying_key().as_bytes(),
    ));
    tampered.set("v1/ledger/head.json", &head);
    let mut summary = tampered.json("v1/ledger.json");
    summary["head_hash"] = Value::from(head_hash);
    tampered.set("v1/ledger.json", &summary);
    let (seq, kind, problem) = entry_error(verify(&tampered, &forger.verifying_key()));
    assert_eq!((seq, kind.as_str()), (at as i64, "debit"));
    assert!(problem.contains("above its budget"), "{problem}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_head_signed_with_another_key_fails() {
    let tmp = tempfile::tempdir().unwrap();
    let (_wh, record, key) = demo_like(tmp.path()).await;
    let other = SigningKey::from_bytes(&[9; 32]);
    let mut tampered = Tampered::new(&record);
    let mut head = tampered.json("v1/ledger/head.json");
    let hash: [u8; 32] =
        outreach_warehouse::ledger::chain::from_hex(head["hash"].as_str().unwrap())
            .unwrap()
            .try_into()
            .unwrap();
    let size = head["size"].as_u64().unwrap();
    let signature = other.sign(&head_message(size, &hash)).to_bytes();
    head["signature"] = Value::from(outreach_warehouse::ledger::chain::to_hex(&signature));
    head["public_key"] = Value::from(outreach_warehouse::ledger::chain::to_hex(
        other.verifying_key().as_bytes(),
    ));
    tampered.set("v1/ledger/head.json", &head);
    match verify(&tampered, &key) {
        Err(VerifyError::Head(problem)) => {
            assert!(problem.contains("does not verify"), "{problem}");
            assert!(problem.contains("another public key"), "{problem}");
        }
        other => panic!("expected the head refused, got {other:?}"),
    }
    // And the untouched record checked with a key that is not the warehouse's.
    match verify(&record, &other.verifying_key()) {
        Err(VerifyError::Head(problem)) => {
            assert!(problem.contains("does not verify"), "{problem}")
        }
        other => panic!("expected the head refused, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_show_prints_the_public_key_that_verifies_the_signed_head() {
    let tmp = tempfile::tempdir().unwrap();
    let (wh, record, key) = demo_like(tmp.path()).await;
    let out = outreach()
        .args(["key", "show", "--warehouse"])
        .arg(&wh)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = String::from_utf8(out.stdout).unwrap();
    assert_eq!(parse_public_key(&printed).unwrap(), key);
    let line = printed
        .lines()
        .find(|l| l.starts_with("outreach-ledger-ed25519 "))
        .unwrap();
    assert_eq!(parse_public_key(line).unwrap(), key);
    verify(&record, &parse_public_key(&printed).unwrap()).unwrap();
    // The signing key itself is never printed: only the 32 bytes of the public key are hex.
    let hex_words = printed
        .split_whitespace()
        .filter(|w| w.len() >= 64 && w.chars().all(|c| c.is_ascii_hexdigit()))
        .count();
    assert_eq!(hex_words, 2, "{printed}");
    // A folder without a ledger is refused, naming it, exit 2.
    let out = outreach()
        .args(["key", "show", "--warehouse"])
        .arg(tmp.path().join("nowhere"))
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nowhere") && err.contains("budget init"),
        "{err}"
    );
}
