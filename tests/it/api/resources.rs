//! The server's resources under pressure: a researcher's submissions cannot hold more
//! planning threads than there are slots, nor fill the request queue; the planning slot
//! belongs to the work, not to the request; the dashboard's page cache is bounded and evicts
//! the least recently used page; a client is known by its address, behind a trusted proxy by
//! the one it forwards, and by no header anyone else sets; connections that do not send their
//! header in time are closed, and no more than the cap are open at once.

use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, HeaderValue, Request, StatusCode, header};
use outreach_warehouse::api::client::client_addr;
use outreach_warehouse::api::pages::{Freshness, PageCache, Rendered};
use outreach_warehouse::api::{IpNet, Limits, MAX_PLANNING, MAX_RENDERING, app};
use outreach_warehouse::privacy::ReleaseSpec;
use outreach_warehouse::requests::{
    Decision, MAX_PENDING_PER_RESEARCHER, Queue, RequestsError, reject,
};

use crate::common::server::{
    Reply, Served, add_researcher, assert_error, get, published, roomy, send, state, submission,
    submit, submit_id, with_researcher,
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
    let bob = add_researcher(&st, &wh, "bob", 0.5);
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
    let stored = st.queue().get(&ids[0]).unwrap();
    let spec: ReleaseSpec = serde_json::from_value(stored.spec.clone()).unwrap();
    let holder = st.queue().authenticate(&alice).unwrap().unwrap();
    let err = Queue::open(&wh)
        .unwrap()
        .submit(&holder, "once more", 0.1, &spec, &stored.quote)
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
        .decide(&ids[1], &Decision::Failed { release_id: 1 }, "steward")
        .unwrap();
    assert_error(
        &submit(&app, &alice, &body).await,
        StatusCode::TOO_MANY_REQUESTS,
        "too_many_pending",
    );
    // The steward rejects one: room for exactly one more.
    reject(&wh, &ids[0], "steward", "not this quarter").unwrap();
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
    // A choice with nothing published is a 404 from the drawing thread, and nothing is kept
    // for it.
    let bad = get(&app, "/?quarter=1999Q1").await;
    assert_error(&bad, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(st.snapshot().pages.lock().unwrap().len(), 1);
    assert_eq!(st.rendering().available_permits(), MAX_RENDERING);
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn nets(blocks: &[&str]) -> Vec<IpNet> {
    blocks.iter().map(|b| b.parse().unwrap()).collect()
}

fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(*name, HeaderValue::from_str(value).unwrap());
    }
    h
}

/// Address blocks parse as `--trusted-proxy` takes them, and hold what they should.
#[test]
fn trusted_proxy_blocks_parse_and_contain_their_addresses() {
    let block: IpNet = "10.0.0.0/8".parse().unwrap();
    assert!(block.contains(ip("10.200.3.4")));
    assert!(block.contains(ip("::ffff:10.1.2.3")), "an IPv4-mapped peer");
    assert!(!block.contains(ip("11.0.0.1")));
    let one: IpNet = "192.0.2.7".parse().unwrap();
    assert!(one.contains(ip("192.0.2.7")) && !one.contains(ip("192.0.2.8")));
    let v6: IpNet = "2001:db8::/32".parse().unwrap();
    assert!(v6.contains(ip("2001:db8:ffff::1")) && !v6.contains(ip("2001:db9::1")));
    assert!(!v6.contains(ip("10.0.0.1")));
    let all: IpNet = "0.0.0.0/0".parse().unwrap();
    assert!(all.contains(ip("203.0.113.9")));
    for bad in [
        "",
        "10.0.0.0/33",
        "::/129",
        "10.0.0.0/",
        "10.0.0.0/-1",
        "proxy.example",
        "10.0.0.0/8/8",
    ] {
        assert!(bad.parse::<IpNet>().is_err(), "{bad:?} parsed");
    }
}

/// The client's address from the forwarding headers: only when the peer is trusted, the
/// right-most hop that is not a trusted proxy, and the peer whenever that cannot be read.
#[test]
fn the_client_is_the_right_most_forwarded_hop_that_is_not_a_trusted_proxy() {
    let proxies = nets(&["10.0.0.0/8", "2001:db8:1::/48"]);
    let proxy = ip("10.0.0.5");
    let client =
        |peer: IpAddr, h: &[(&'static str, &str)]| client_addr(peer, &headers(h), &proxies);
    // An untrusted peer: its headers are never read.
    let stranger = ip("192.0.2.1");
    assert_eq!(
        client(stranger, &[("x-forwarded-for", "198.51.100.1")]),
        stranger
    );
    assert_eq!(
        client(stranger, &[("forwarded", "for=198.51.100.1")]),
        stranger
    );
    // A trusted peer: the right-most hop that is not a proxy; what the client wrote to its
    // left does not count.
    assert_eq!(client(proxy, &[]), proxy);
    assert_eq!(
        client(proxy, &[("x-forwarded-for", "198.51.100.1")]),
        ip("198.51.100.1")
    );
    assert_eq!(
        client(
            proxy,
            &[("x-forwarded-for", "203.0.113.66, 198.51.100.1, 10.0.0.9")]
        ),
        ip("198.51.100.1")
    );
    assert_eq!(
        client(
            proxy,
            &[
                ("x-forwarded-for", "garbage"),
                ("x-forwarded-for", "198.51.100.1")
            ]
        ),
        ip("198.51.100.1"),
        "repeated lines are one list"
    );
    assert_eq!(
        client(proxy, &[("x-forwarded-for", "198.51.100.1:4711")]),
        ip("198.51.100.1")
    );
    assert_eq!(
        client(proxy, &[("x-forwarded-for", "2001:db8:2::7")]),
        ip("2001:db8:2::7")
    );
    assert_eq!(
        client(
            proxy,
            &[("forwarded", "for=198.51.100.2;proto=https;by=10.0.0.5")]
        ),
        ip("198.51.100.2")
    );
    assert_eq!(
        client(
            proxy,
            &[(
                "forwarded",
                "for=203.0.113.66, For=\"[2001:db8:2::7]:4711\""
            )]
        ),
        ip("2001:db8:2::7")
    );
    assert_eq!(
        client(
            proxy,
            &[("forwarded", "for=198.51.100.2, for=\"[2001:db8:1::1]\"")]
        ),
        ip("198.51.100.2"),
        "a trusted IPv6 proxy in the chain is skipped"
    );
    assert_eq!(
        client(
            ip("::ffff:10.0.0.5"),
            &[("x-forwarded-for", "198.51.100.1")]
        ),
        ip("198.51.100.1"),
        "an IPv4-mapped peer is its IPv4 address"
    );
    // Both headers naming the same client.
    assert_eq!(
        client(
            proxy,
            &[
                ("forwarded", "for=198.51.100.3"),
                ("x-forwarded-for", "198.51.100.3")
            ]
        ),
        ip("198.51.100.3")
    );
    // Whatever cannot be read is the peer.
    let unreadable: [&[(&'static str, &str)]; 9] = [
        &[("x-forwarded-for", "not-an-ip")],
        &[("x-forwarded-for", "198.51.100.1, ")],
        &[("x-forwarded-for", "198.51.100.1:http")],
        &[("x-forwarded-for", "10.0.0.7, 10.0.0.8")],
        &[("forwarded", "for=unknown")],
        &[("forwarded", "for=_hidden")],
        &[("forwarded", "proto=https")],
        &[("forwarded", "for=\"198.51.100.1")],
        &[
            ("forwarded", "for=198.51.100.4"),
            ("x-forwarded-for", "198.51.100.5"),
        ],
    ];
    for malformed in unreadable {
        assert_eq!(client(proxy, malformed), proxy, "{malformed:?}");
    }
}

/// A request to `/v1/quarters` from `peer` over TCP, with `extra` headers.
fn from_peer(peer: &str, extra: &[(&'static str, &str)]) -> Request<Body> {
    let mut b = Request::get("/v1/quarters");
    for (name, value) in extra {
        b = b.header(*name, *value);
    }
    let mut r = b.body(Body::empty()).unwrap();
    r.extensions_mut()
        .insert(ConnectInfo(SocketAddr::new(ip(peer), 40_000)));
    r
}

/// The per-IP rate limit keys on the client's address: the peer's, whatever forwarding
/// header an untrusted peer sends; behind a trusted proxy the forwarded client's, so two
/// clients behind one proxy have their own buckets; and the proxy's own when what it
/// forwarded cannot be read. The access log records the same address.
#[tokio::test(flavor = "multi_thread")]
async fn the_rate_limit_keys_on_the_forwarded_client_only_behind_a_trusted_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    // One request per client, refilled once a minute.
    let limits = Limits {
        per_ip_per_second: 1.0 / 60.0,
        per_ip_burst: 1,
        trusted_proxies: nets(&["10.0.0.0/8"]),
        ..roomy()
    };
    let st = state(&wh, limits).await;
    let app = app(st.clone());
    let status = |r: Reply| r.status;
    let xff = "x-forwarded-for";
    // An untrusted peer cannot buy itself buckets with a header.
    assert_eq!(
        status(send(&app, from_peer("192.0.2.1", &[(xff, "198.51.100.1")])).await),
        StatusCode::OK
    );
    let r = send(&app, from_peer("192.0.2.1", &[(xff, "198.51.100.2")])).await;
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "too_many_requests");
    // Two clients behind one trusted proxy: a bucket each, and the proxy's is untouched.
    assert_eq!(
        status(send(&app, from_peer("10.0.0.5", &[(xff, "198.51.100.7")])).await),
        StatusCode::OK
    );
    assert_eq!(
        status(send(&app, from_peer("10.0.0.5", &[(xff, "198.51.100.7")])).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(send(&app, from_peer("10.0.0.5", &[(xff, "198.51.100.8")])).await),
        StatusCode::OK
    );
    // What the client writes to the left of the chain does not change its bucket; nor does
    // the proxy it comes through, nor the header's form.
    assert_eq!(
        status(
            send(
                &app,
                from_peer("10.0.0.5", &[(xff, "203.0.113.1, 198.51.100.8")])
            )
            .await
        ),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(
            send(
                &app,
                from_peer("10.0.0.6", &[("forwarded", "for=\"198.51.100.7:4711\"")])
            )
            .await
        ),
        StatusCode::TOO_MANY_REQUESTS
    );
    // A malformed header from a trusted proxy: the proxy's own bucket, used once.
    assert_eq!(
        status(send(&app, from_peer("10.0.0.9", &[(xff, "not-an-ip")])).await),
        StatusCode::OK
    );
    assert_eq!(
        status(send(&app, from_peer("10.0.0.9", &[(xff, "also, garbage")])).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(send(&app, from_peer("10.0.0.9", &[])).await),
        StatusCode::TOO_MANY_REQUESTS
    );
    // The access log names the client the limit keyed on.
    let clients: Vec<Option<IpAddr>> = st.access_log().records().iter().map(|r| r.client).collect();
    assert_eq!(clients[0], Some(ip("192.0.2.1")));
    assert_eq!(clients[2], Some(ip("198.51.100.7")));
    assert_eq!(clients[4], Some(ip("198.51.100.8")));
    assert_eq!(clients[7], Some(ip("10.0.0.9")));
}

/// `outreach serve --trusted-proxy` takes addresses and blocks, and refuses anything else
/// before serving.
#[test]
fn outreach_serve_refuses_a_trusted_proxy_that_is_not_an_address() {
    let tmp = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_outreach"))
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--trusted-proxy",
            "10.0.0.0/8",
        ])
        .args(["--trusted-proxy", "proxy.example"])
        .env("OUTREACH_WAREHOUSE", tmp.path())
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("proxy.example") && err.contains("not an IP address"),
        "{err}"
    );
}

/// `api::serve` on a free loopback port, in a thread of its own with its own runtime, until
/// [`Server::stop`].
struct Server {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<outreach_warehouse::Result<()>>>,
}

impl Server {
    fn start(wh: &Path, limits: Limits) -> Server {
        let (ready, bound) = std::sync::mpsc::channel();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let wh = wh.to_path_buf();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(outreach_warehouse::api::serve(
                &wh,
                SocketAddr::from(([127, 0, 0, 1], 0)),
                limits,
                move |addr| {
                    let _ = ready.send(addr);
                },
                async move {
                    let _ = stopped.await;
                },
            ))
        });
        let addr = bound
            .recv_timeout(Duration::from_secs(60))
            .expect("the server starts");
        Server {
            addr,
            stop: Some(stop),
            thread: Some(thread),
        }
    }

    /// A connection to the server whose reads give up after `wait`.
    fn connect(&self, wait: Duration) -> TcpStream {
        let s = TcpStream::connect(self.addr).unwrap();
        s.set_read_timeout(Some(wait)).unwrap();
        s
    }

    /// Begins the graceful shutdown and waits, ten seconds at most, for `serve` to return.
    fn stop(mut self) -> outreach_warehouse::Result<()> {
        let _ = self.stop.take().unwrap().send(());
        let thread = self.thread.take().unwrap();
        let start = Instant::now();
        while !thread.is_finished() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "serve did not return after its shutdown"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        thread.join().unwrap()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // A failed test does not wait for the server: its thread ends with the process.
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

fn block_on<F: std::future::Future>(f: F) -> F::Output {
    tokio::runtime::Runtime::new().unwrap().block_on(f)
}

/// Sends `GET path`, asking the server to close the connection after it when `close`.
fn ask(s: &mut TcpStream, path: &str, close: bool) {
    let close = if close { "Connection: close\r\n" } else { "" };
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n{close}\r\n").unwrap();
}

/// Reads up to the end of a response's header.
fn response_head(s: &mut TcpStream) -> std::io::Result<String> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        assert!(got.len() < 64 * 1024, "no end of header");
    }
    Ok(String::from_utf8_lossy(&got).into_owned())
}

/// Whether the server closed `s` (end of stream, or a reset) before the read timeout.
fn closed_by_server(s: &mut TcpStream) -> (bool, String) {
    let mut got = Vec::new();
    let closed = match s.read_to_end(&mut got) {
        Ok(_) => true,
        Err(e) => matches!(
            e.kind(),
            ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
        ),
    };
    (closed, String::from_utf8_lossy(&got).into_owned())
}

/// A client that sends half a request line, or nothing at all, is disconnected once the
/// header-read timeout has passed (not before); a whole request in time is answered.
#[test]
fn a_connection_that_does_not_send_its_header_in_time_is_closed() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = block_on(published(tmp.path()));
    let limits = Limits {
        header_read_timeout: Duration::from_millis(300),
        ..roomy()
    };
    let server = Server::start(&wh, limits);
    // Half a request line; nothing at all.
    let unfinished: [&[u8]; 2] = [b"GET /healthz HT", b""];
    for sent in unfinished {
        let mut s = server.connect(Duration::from_secs(5));
        s.write_all(sent).unwrap();
        let start = Instant::now();
        let (closed, got) = closed_by_server(&mut s);
        let waited = start.elapsed();
        assert!(closed, "{sent:?}: still open after {waited:?}");
        assert!(
            waited >= Duration::from_millis(150) && waited < Duration::from_secs(4),
            "{sent:?}: closed after {waited:?}"
        );
        assert!(!got.contains(" 200 "), "{got}");
    }
    let mut s = server.connect(Duration::from_secs(5));
    ask(&mut s, "/healthz", true);
    let head = response_head(&mut s).unwrap();
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    server.stop().unwrap();
}

/// With a cap of two connections, a third is accepted only when one of the two closes; and
/// the graceful shutdown still ends the server with a connection open.
#[test]
fn past_the_connection_cap_a_client_waits_until_a_connection_closes() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = block_on(published(tmp.path()));
    let limits = Limits {
        max_connections: 2,
        ..roomy()
    };
    let server = Server::start(&wh, limits);
    // Two clients hold the two places, idle after a request each.
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut s = server.connect(Duration::from_secs(5));
        ask(&mut s, "/healthz", false);
        let head = response_head(&mut s).unwrap();
        assert!(head.starts_with("HTTP/1.1 200"), "{head}");
        held.push(s);
    }
    // A third connects (the kernel's backlog takes it) but is not served.
    let mut third = server.connect(Duration::from_millis(700));
    ask(&mut third, "/healthz", true);
    let mut byte = [0u8; 1];
    let early = third.read(&mut byte);
    assert!(
        matches!(&early, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "served past the cap: {early:?}"
    );
    // One of the two closes: the third is served.
    drop(held.remove(0));
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = String::new();
    third.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    // The graceful shutdown closes the idle connection left and returns.
    let mut last = held.remove(0);
    server.stop().unwrap();
    let (closed, _) = closed_by_server(&mut last);
    assert!(closed, "the idle connection outlived the server");
}

/// `outreach serve` takes the connection limits and the trusted proxies from its flags: a
/// half-sent request is dropped after `--header-read-timeout-seconds`, and behind
/// `--trusted-proxy` the access log names the forwarded client.
#[tokio::test(flavor = "multi_thread")]
async fn outreach_serve_takes_the_connection_limits_and_trusted_proxies_from_its_flags() {
    let tmp = tempfile::tempdir().unwrap();
    let wh = published(tmp.path()).await;
    let server = Served::start_with(
        &wh,
        true,
        &[
            "--header-read-timeout-seconds",
            "0.3",
            "--max-connections",
            "4",
            "--trusted-proxy",
            "127.0.0.1",
        ],
    );
    let addr: SocketAddr = server.addr.parse().unwrap();
    let (closed, waited) = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /healthz HT").unwrap();
        let start = Instant::now();
        (closed_by_server(&mut s).0, start.elapsed())
    })
    .await
    .unwrap();
    assert!(
        closed && waited < Duration::from_secs(4),
        "open after {waited:?}"
    );
    let forwarded = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        write!(
            s,
            "GET /healthz HTTP/1.1\r\nHost: test\r\nX-Forwarded-For: 198.51.100.77\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        response_head(&mut s).unwrap()
    })
    .await
    .unwrap();
    assert!(forwarded.starts_with("HTTP/1.1 200"), "{forwarded}");
    // The access log is flushed within a second; stop the server after it.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let log = server.stop();
    let clients: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .map(|l| l["client"].clone())
        .collect();
    assert_eq!(clients, [serde_json::json!("198.51.100.77")], "{log}");
}

/// `api::serve` called as a library checks its limits as `outreach serve` checks its flags:
/// a connection limit past what the server's slots hold panicked, and a rate below the
/// limiter's slowest was silently raised. Each is now a usage error naming the field, the
/// flag and the range, before anything is opened or bound.
#[tokio::test(flavor = "multi_thread")]
async fn serve_refuses_limits_it_cannot_keep_before_opening_anything() {
    use outreach_warehouse::Fault;
    assert_eq!(Limits::default().check(), Ok(()));
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no-warehouse-here");
    let cases: [(Limits, &str); 5] = [
        (
            Limits {
                max_connections: usize::MAX,
                ..Limits::default()
            },
            "max_connections (--max-connections) is 18446744073709551615, not from 1 to 1048576",
        ),
        (
            Limits {
                max_connections: 0,
                ..Limits::default()
            },
            "max_connections (--max-connections) is 0",
        ),
        (
            Limits {
                per_ip_per_second: 1e-9,
                ..Limits::default()
            },
            "per_ip_per_second (--per-ip-per-second) is 0.000000001, not from 1e-6 to 1e9",
        ),
        (
            Limits {
                timeout: Duration::MAX,
                ..Limits::default()
            },
            "timeout (--timeout-seconds) is",
        ),
        (
            Limits {
                small_cell: Some(f64::NAN),
                per_token_burst: 0,
                ..Limits::default()
            },
            "per_token_burst (--per-token-burst) is 0, not at least 1",
        ),
    ];
    for (limits, message) in cases {
        let bound = Arc::new(AtomicUsize::new(0));
        let seen = bound.clone();
        let out = outreach_warehouse::api::serve(
            &missing,
            "127.0.0.1:0".parse().unwrap(),
            limits,
            move |_| {
                seen.fetch_add(1, SeqCst);
            },
            async {},
        )
        .await;
        let e = out.expect_err(message);
        assert_eq!(e.fault(), Fault::Usage, "{e}");
        assert!(e.to_string().contains(message), "{e}");
        assert_eq!(bound.load(SeqCst), 0, "{message}: the server was bound");
    }
}
