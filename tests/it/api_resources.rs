//! The server's resources under pressure (issue 17 §1): a researcher's submissions cannot
//! hold more planning threads than there are slots, nor fill the request queue; the planning
//! slot belongs to the work, not to the request; the dashboard's page cache is bounded and
//! evicts the least recently used page.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::http::{StatusCode, header};
use outreach_warehouse::api::snapshot::{Freshness, PageCache, Rendered};
use outreach_warehouse::api::{Limits, MAX_PLANNING, MAX_RENDERING, app};
use outreach_warehouse::ledger::Ledger;
use outreach_warehouse::privacy::ReleaseSpec;
use outreach_warehouse::requests::{
    Decision, MAX_PENDING_PER_RESEARCHER, Queue, RequestsError, Role, reject,
};

use super::api::{
    assert_error, get, published, roomy, state, submission, submit, submit_id, with_researcher,
};

/// Where the planning hook waits until the test opens it, counting the planning threads
/// inside.
#[derive(Default)]
struct Gate {
    open: Mutex<bool>,
    opened: Condvar,
    inside: AtomicUsize,
    most_inside: AtomicUsize,
    entered: AtomicUsize,
}

impl Gate {
    fn pass(&self) {
        self.entered.fetch_add(1, SeqCst);
        let now = self.inside.fetch_add(1, SeqCst) + 1;
        self.most_inside.fetch_max(now, SeqCst);
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        // Bounded, so a test that fails before opening the gate still ends.
        let _ = self
            .opened
            .wait_timeout_while(open, Duration::from_secs(60), |open| !*open);
        self.inside.fetch_sub(1, SeqCst);
    }

    fn open(&self) {
        *self.open.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.opened.notify_all();
    }
}

/// Opens the gate when the test ends, passed or failed: the runtime waits for blocking threads.
struct OpenOnDrop(Arc<Gate>);

impl Drop for OpenOnDrop {
    fn drop(&mut self) {
        self.0.open();
    }
}

/// Slow submissions answered 504 keep planning on their threads; those threads keep their
/// slots, so submissions that follow are 503 `busy` and never start another thread: at most
/// `MAX_PLANNING` plan at once. When planning ends the slots come back.
#[tokio::test(flavor = "multi_thread")]
async fn submissions_that_time_out_never_run_more_planning_threads_than_there_are_slots() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let limits = Limits {
        timeout: Duration::from_secs(3),
        ..roomy()
    };
    let (st, token) = with_researcher(&wh, "alice", 0.5, limits).await;
    let gate = Arc::new(Gate::default());
    let _open_at_end = OpenOnDrop(gate.clone());
    let hook = gate.clone();
    st.set_planning_hook(move || hook.pass());
    let app = app(st.clone());
    let body = submission(0.1);

    // As many slow submissions as there are slots, at once: each is answered 504 while its
    // planning goes on.
    let first =
        futures::future::join_all((0..MAX_PLANNING).map(|_| submit(&app, &token, &body))).await;
    for r in &first {
        assert_error(r, StatusCode::GATEWAY_TIMEOUT, "timeout");
    }
    assert_eq!(gate.entered.load(SeqCst), MAX_PLANNING);
    assert_eq!(gate.inside.load(SeqCst), MAX_PLANNING, "still planning");
    // A steady trickle while they plan: every one is busy, and none starts a thread.
    for _ in 0..3 * MAX_PLANNING {
        let r = submit(&app, &token, &body).await;
        assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "busy");
    }
    assert_eq!(gate.entered.load(SeqCst), MAX_PLANNING);
    assert_eq!(
        st.planning().available_permits(),
        0,
        "the slots are held by the planning threads"
    );

    // Planning ends: the slots come back and a submission is planned again.
    gate.open();
    let mut back = false;
    for _ in 0..200 {
        if st.planning().available_permits() == MAX_PLANNING {
            back = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(back, "the planning threads did not give their slots back");
    let r = submit(&app, &token, &body).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text());
    assert!(
        gate.most_inside.load(SeqCst) <= MAX_PLANNING,
        "{} planning threads ran at once",
        gate.most_inside.load(SeqCst)
    );
}

/// A researcher may have `MAX_PENDING_PER_RESEARCHER` requests waiting for the steward
/// (pending, or failed after a debit, which they see as pending); one more is 429
/// `too_many_pending` and queues nothing, whether the API or the store itself is asked.
/// Another researcher is unaffected, and a decision makes room for one more.
#[tokio::test(flavor = "multi_thread")]
async fn a_researcher_with_the_most_pending_requests_is_refused_until_the_steward_decides_one() {
    let cap = MAX_PENDING_PER_RESEARCHER;
    assert_eq!(cap, 20, "README and the OpenAPI document say 20");
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let (st, alice) = with_researcher(&wh, "alice", 0.5, roomy()).await;
    let bob = st.queue().create_token("bob", Role::Researcher).unwrap();
    Ledger::open(&wh)
        .unwrap()
        .allocate("researcher:bob", 0.5)
        .unwrap();
    let app = app(st.clone());
    let body = submission(0.1);
    let mut ids = Vec::new();
    for _ in 0..cap {
        ids.push(submit_id(&app, &alice, &body).await);
    }
    let r = submit(&app, &alice, &body).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_pending");
    let message = r.json()["error"]["message"].as_str().unwrap().to_string();
    assert!(message.contains(&cap.to_string()), "{message}");
    assert_eq!(st.queue().list().unwrap().len(), cap, "nothing was queued");
    // The store refuses too, in the transaction that inserts: no caller can pass the cap.
    let stored = st.queue().get(ids[0]).unwrap();
    let spec: ReleaseSpec = serde_json::from_value(stored.spec.clone()).unwrap();
    let err = Queue::open(&wh)
        .unwrap()
        .submit("alice", "once more", 0.1, &spec, &stored.quote)
        .unwrap_err();
    assert!(
        matches!(err, RequestsError::TooManyPending { limit } if limit == cap),
        "{err}"
    );
    assert_eq!(st.queue().pending_count("alice").unwrap(), cap);
    // Another researcher is not affected.
    submit_id(&app, &bob, &body).await;
    // A run that failed after its debit still waits for the steward: no room yet.
    Queue::open(&wh)
        .unwrap()
        .decide(ids[1], &Decision::Failed { release_id: 1 }, "steward")
        .unwrap();
    assert_error(
        &submit(&app, &alice, &body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_pending",
    );
    // The steward rejects one: room for exactly one more.
    reject(&wh, ids[0], "steward", "not this quarter").unwrap();
    submit_id(&app, &alice, &body).await;
    assert_error(
        &submit(&app, &alice, &body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_pending",
    );
    assert_eq!(st.queue().list().unwrap().len(), cap + 2);

    let doc = get(&app, "/openapi.json").await.json();
    let documented = doc["paths"]["/v1/requests"]["post"]["responses"]["429"]["description"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        documented.contains("too_many_pending") && documented.contains(&cap.to_string()),
        "{documented}"
    );
}

fn page(html: &str) -> Rendered {
    Rendered::page(html.to_string(), Freshness::Published)
}

/// Full, the cache evicts the least recently used page, not the oldest inserted one and not
/// everything; it never holds more pages than its cap.
#[test]
fn the_page_cache_evicts_the_least_recently_used_page() {
    let mut cache = PageCache::new(3, usize::MAX);
    for k in ["a", "b", "c"] {
        cache.insert(k.into(), page(k));
    }
    // Touch the earliest page: "b" is now the least recently used.
    assert_eq!(cache.get("a").unwrap().json, "a".as_bytes());
    cache.insert("d".into(), page("d"));
    assert_eq!(cache.len(), 3);
    assert!(cache.contains("a"), "the touched page was evicted");
    assert!(!cache.contains("b"), "the least recently used page stayed");
    assert!(cache.contains("c") && cache.contains("d"));
    // Replacing a page keeps one copy and marks it used.
    cache.insert("c".into(), page("c2"));
    cache.insert("e".into(), page("e"));
    assert_eq!(cache.len(), 3);
    assert!(!cache.contains("a") && cache.contains("c") && cache.contains("d"));
    assert_eq!(cache.get("c").unwrap().json, "c2".as_bytes());

    // Against a model (a list in order of use) over a long mixed run: the same pages, and
    // never more than the cap.
    let cap = 4;
    let mut cache = PageCache::new(cap, usize::MAX);
    let mut model: Vec<String> = Vec::new();
    for step in 0..500usize {
        let key = format!("k{}", (step * 7 + step / 5) % 11);
        if step % 3 == 0 {
            let hit = cache.get(&key).is_some();
            assert_eq!(hit, model.contains(&key), "step {step}: {key}");
            if let Some(i) = model.iter().position(|k| *k == key) {
                let k = model.remove(i);
                model.push(k);
            }
        } else {
            cache.insert(key.clone(), page(&key));
            model.retain(|k| *k != key);
            model.push(key);
            if model.len() > cap {
                model.remove(0);
            }
        }
        assert!(cache.len() <= cap, "step {step}: {} pages", cache.len());
        assert_eq!(cache.len(), model.len(), "step {step}");
        for k in &model {
            assert!(cache.contains(k), "step {step}: {k} was evicted");
        }
    }
}

/// The byte bound holds too: least recently used pages go until the bodies fit, and a page
/// larger than the whole bound is not kept (nor does it evict the others).
#[test]
fn the_page_cache_never_holds_more_bytes_than_its_cap() {
    let mut cache = PageCache::new(100, 10);
    for k in ["p1", "p2", "p3"] {
        cache.insert(k.into(), page(&format!("{k}..")));
    }
    // Three pages of 4 bytes are 12 > 10: the first went.
    assert_eq!(cache.len(), 2);
    assert_eq!(cache.bytes(), 8);
    assert!(!cache.contains("p1") && cache.contains("p2") && cache.contains("p3"));
    cache.insert("huge".into(), page("0123456789ABC"));
    assert!(!cache.contains("huge"));
    assert_eq!(cache.len(), 2);
    assert!(cache.bytes() <= 10);
}

/// The dashboard is drawn off the async workers and still drawn once: the same choices
/// answer the same page from the cache, and the drawing slots all come back.
#[tokio::test(flavor = "multi_thread")]
async fn the_dashboard_is_drawn_once_per_choice_and_gives_its_drawing_slot_back() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let st = state(&wh, roomy()).await;
    let app = app(st.clone());
    let uri = "/?quarter=2025Q1&metric=count:identified";
    let first = get(&app, uri).await;
    assert_eq!(first.status, StatusCode::OK, "{}", first.text());
    assert!(first.header(header::CONTENT_TYPE).starts_with("text/html"));
    let again = get(&app, uri).await;
    assert_eq!(again.body, first.body);
    assert_eq!(again.header(header::ETAG), first.header(header::ETAG));
    assert_eq!(st.snapshot().pages.lock().unwrap().len(), 1);
    // A bad choice is a 400 from the drawing thread, and nothing is kept for it.
    let bad = get(&app, "/?quarter=1999Q1").await;
    assert_error(&bad, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(st.snapshot().pages.lock().unwrap().len(), 1);
    assert_eq!(st.rendering().available_permits(), MAX_RENDERING);
}
