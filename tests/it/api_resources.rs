//! The server's resources under pressure (issue 17 §1): a researcher's submissions cannot
//! hold more planning threads than there are slots, nor fill the request queue; the planning
//! slot belongs to the work, not to the request.

use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::http::StatusCode;
use outreach_warehouse::api::{Limits, MAX_PLANNING, app};

use super::api::{assert_error, published, roomy, submission, submit, with_researcher};

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
