//! The server's shared state: the snapshot it serves, the requests file it writes, its
//! limits and its access log.

use std::io::{BufWriter, Write};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use serde::Serialize;
use tokio::sync::Semaphore;

use super::client::IpNet;
use super::pages::Served;
use crate::ledger::Ledger;
use crate::requests::Queue;

/// The shortest `timeout`: a shorter one rounds to no time at all, and every
/// request would be answered 504.
pub const MIN_TIMEOUT_SECONDS: f64 = 0.001;
/// The longest `timeout`: an hour. Far longer than any request takes; beyond it a
/// value only hides a mistake (and past about 1.8e19 it cannot be a duration at all).
pub const MAX_TIMEOUT_SECONDS: f64 = 3600.0;
/// The largest rate: one request per
/// nanosecond, the rate limiter's finest period. A larger rate rounds to a period of zero,
/// which the limiter cannot take.
pub const MAX_REQUEST_RATE: f64 = 1e9;
/// The smallest per-IP rate: one request in about eleven and a half days, the
/// slowest rate the rate limiter counts (it takes any slower rate as this one).
pub const MIN_RATE_PER_SECOND: f64 = 1e-6;
/// The smallest per-token rate: [`MIN_RATE_PER_SECOND`] in requests per minute.
pub const MIN_RATE_PER_MINUTE: f64 = 6e-5;
/// The largest connection limit: 2^20, Linux's ceiling on the files one process may have
/// open, each connection being one. (The server's connection slots could not hold more than
/// about 2.3e18 at all.)
pub const MAX_CONNECTIONS: usize = 1 << 20;
/// The server's limits; every one can be set on `outreach serve`.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Requests per second each client IP may make, on average.
    pub per_ip_per_second: f64,
    /// Requests a client IP may make at once before the average applies.
    pub per_ip_burst: u32,
    /// Requests per minute on the researcher routes, per token (or per IP without one).
    pub per_token_per_minute: f64,
    pub per_token_burst: u32,
    /// The largest request body, in bytes.
    pub max_body_bytes: usize,
    /// How long a request may take before it is answered 504, as JSON.
    pub timeout: Duration,
    /// How long a client may take to send a request's whole header, from the connection's
    /// start or the end of the previous response; then its connection is closed.
    pub header_read_timeout: Duration,
    /// The most connections open at once; more wait, unaccepted, until one closes.
    pub max_connections: usize,
    /// The dashboard's small-cell display rule: grey out figures resting on a noisy count
    /// below this. Off (`None`) by default.
    pub small_cell: Option<f64>,
    /// Reverse proxies whose forwarding headers name the client (`--trusted-proxy`): only a
    /// request whose TCP peer is in one of these blocks has its `Forwarded` or
    /// `X-Forwarded-For` header read ([`super::client`]). None by default.
    pub trusted_proxies: Vec<IpNet>,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            per_ip_per_second: 50.0,
            per_ip_burst: 100,
            per_token_per_minute: 30.0,
            per_token_burst: 10,
            max_body_bytes: 64 * 1024,
            timeout: Duration::from_secs(30),
            // A browser or a script sends a header in one packet; ten seconds allow a slow
            // mobile link and bound how long a half-sent request holds a connection.
            header_read_timeout: Duration::from_secs(10),
            // Half the usual soft limit of 1024 file descriptors: the rest stay for the
            // warehouse's SQLite files, which a reload opens.
            max_connections: 512,
            small_cell: None,
            trusted_proxies: Vec::new(),
        }
    }
}

impl Limits {
    /// Whether every limit is one the server can keep, or what is wrong and the range it
    /// takes. `outreach serve` refuses each flag as it reads it (with the same bounds);
    /// [`super::serve`] checks again, so that a library caller cannot make the server panic
    /// (a connection limit past what its semaphore holds) or silently round a rate.
    pub fn check(&self) -> Result<(), String> {
        let seconds = |d: Duration| d.as_secs_f64();
        let mut wrong = Vec::new();
        if !(MIN_RATE_PER_SECOND..=MAX_REQUEST_RATE).contains(&self.per_ip_per_second) {
            wrong.push(format!(
                "per_ip_per_second (--per-ip-per-second) is {}, not from {MIN_RATE_PER_SECOND:e} to {MAX_REQUEST_RATE:e}",
                self.per_ip_per_second
            ));
        }
        if !(MIN_RATE_PER_MINUTE..=MAX_REQUEST_RATE).contains(&self.per_token_per_minute) {
            wrong.push(format!(
                "per_token_per_minute (--per-token-per-minute) is {}, not from {MIN_RATE_PER_MINUTE:e} to {MAX_REQUEST_RATE:e}",
                self.per_token_per_minute
            ));
        }
        for (name, flag, burst) in [
            ("per_ip_burst", "--per-ip-burst", self.per_ip_burst),
            ("per_token_burst", "--per-token-burst", self.per_token_burst),
        ] {
            if burst == 0 {
                wrong.push(format!("{name} ({flag}) is 0, not at least 1"));
            }
        }
        if self.max_body_bytes == 0 {
            wrong.push("max_body_bytes (--max-body-bytes) is 0, not at least 1".into());
        }
        for (name, flag, d) in [
            ("timeout", "--timeout-seconds", self.timeout),
            (
                "header_read_timeout",
                "--header-read-timeout-seconds",
                self.header_read_timeout,
            ),
        ] {
            if !(MIN_TIMEOUT_SECONDS..=MAX_TIMEOUT_SECONDS).contains(&seconds(d)) {
                wrong.push(format!(
                    "{name} ({flag}) is {} s, not from {MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS}",
                    seconds(d)
                ));
            }
        }
        if !(1..=MAX_CONNECTIONS).contains(&self.max_connections) {
            wrong.push(format!(
                "max_connections (--max-connections) is {}, not from 1 to {MAX_CONNECTIONS}",
                self.max_connections
            ));
        }
        if let Some(n) = self.small_cell
            && !(n.is_finite() && n >= 0.0)
        {
            wrong.push(format!(
                "small_cell (--small-cell) is {n}, not a number of at least 0"
            ));
        }
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!("the server's limits: {}", wrong.join("; ")))
        }
    }
}

/// Submissions planned at once (each on a blocking thread); more are answered 503 `busy`.
/// Planning a spec keeps a core busy for up to seconds; two leave a small host cores for the
/// public routes. A slot is held by the planning work itself, not by the request, so a
/// request answered 504 keeps its slot until its planning thread ends.
pub const MAX_PLANNING: usize = 2;

/// Dashboard pages drawn at once, each on a blocking thread; more wait for a slot. Drawing on
/// a blocking thread keeps the async workers (one per core) answering; four keep a small
/// host's cores busy without letting a burst of uncached pages start hundreds of blocking
/// threads.
pub const MAX_RENDERING: usize = 4;

/// One line of the access log.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AccessRecord {
    /// RFC 3339, UTC.
    pub time: String,
    pub method: String,
    /// The path without the query string.
    pub path: String,
    pub status: u16,
    pub micros: u128,
    /// The client's address, when the server knows it: the TCP peer's, or behind a trusted
    /// proxy the address it forwarded.
    pub client: Option<IpAddr>,
}

/// A buffered writer of access lines, flushed at least once a second by [`AccessLog::flush`].
type Sink = Arc<Mutex<BufWriter<Box<dyn Write + Send>>>>;

/// Where access records go: JSON lines to a buffered writer (stderr for `outreach serve`),
/// to memory for tests, or nowhere.
#[derive(Clone, Default)]
pub struct AccessLog {
    writer: Option<Sink>,
    memory: Option<Arc<Mutex<Vec<AccessRecord>>>>,
}

impl std::fmt::Debug for AccessLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessLog")
            .field("writer", &self.writer.is_some())
            .field("memory", &self.memory.is_some())
            .finish()
    }
}

impl AccessLog {
    /// A log that keeps every record in memory.
    pub fn in_memory() -> AccessLog {
        AccessLog {
            memory: Some(Arc::default()),
            ..AccessLog::default()
        }
    }

    /// A log that writes one JSON object per line to `w`, buffered: a write per line would
    /// cost a quarter of the server's throughput.
    pub fn to_writer(w: Box<dyn Write + Send>) -> AccessLog {
        AccessLog {
            writer: Some(Arc::new(Mutex::new(BufWriter::with_capacity(64 * 1024, w)))),
            ..AccessLog::default()
        }
    }

    pub fn record(&self, r: AccessRecord) {
        if let Some(w) = &self.writer {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let _ = serde_json::to_writer(&mut *w, &r);
            let _ = w.write_all(b"\n");
        }
        if let Some(m) = &self.memory {
            m.lock().unwrap_or_else(|e| e.into_inner()).push(r);
        }
    }

    /// Whether records go anywhere: when not, a request need not keep what its line needs.
    pub fn is_on(&self) -> bool {
        self.writer.is_some() || self.memory.is_some()
    }

    /// The record of one request, its time now: the line is written straight into the
    /// buffer, field by field, the same JSON as [`AccessLog::record`] writes of an
    /// [`AccessRecord`] but without building one (the server's every request pays for it);
    /// a record is built only for a log kept in memory.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        status: u16,
        micros: u128,
        client: Option<IpAddr>,
    ) {
        if !self.is_on() {
            return;
        }
        let time = rfc3339_millis(chrono::Utc::now());
        if let Some(w) = &self.writer {
            let mut w = w.lock().unwrap_or_else(|e| e.into_inner());
            let _ = write_line(&mut *w, &time, method, path, status, micros, client);
        }
        if let Some(m) = &self.memory {
            let time = String::from_utf8_lossy(&time).into_owned();
            m.lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(AccessRecord {
                    time,
                    method: method.to_string(),
                    path: path.to_string(),
                    status,
                    micros,
                    client,
                });
        }
    }

    /// Writes out what is buffered.
    pub fn flush(&self) {
        if let Some(w) = &self.writer {
            let _ = w.lock().unwrap_or_else(|e| e.into_inner()).flush();
        }
    }

    /// The records kept in memory.
    pub fn records(&self) -> Vec<AccessRecord> {
        self.memory
            .as_ref()
            .map(|m| m.lock().unwrap_or_else(|e| e.into_inner()).clone())
            .unwrap_or_default()
    }
}

/// `t` as RFC 3339 in UTC to the millisecond, `2026-12-06T14:05:37.123Z`: what
/// `to_rfc3339_opts(SecondsFormat::Millis, true)` writes, without a `String`.
fn rfc3339_millis(t: chrono::DateTime<chrono::Utc>) -> [u8; 24] {
    use chrono::{Datelike, Timelike};
    let mut out = *b"0000-00-00T00:00:00.000Z";
    let mut put = |at: usize, width: usize, value: u32| {
        let mut v = value;
        for i in (at..at + width).rev() {
            out[i] = b'0' + (v % 10) as u8;
            v /= 10;
        }
    };
    put(0, 4, t.year().clamp(0, 9999) as u32);
    put(5, 2, t.month());
    put(8, 2, t.day());
    put(11, 2, t.hour());
    put(14, 2, t.minute());
    put(17, 2, t.second());
    // A leap second's nanoseconds run past 1e9; the clock the server reads has none.
    put(20, 3, t.timestamp_subsec_millis().min(999));
    out
}

/// One access line, as `serde_json` writes an [`AccessRecord`]: the strings escaped by
/// `serde_json` itself, the numbers and the address by their `Display`, which is what
/// `serde_json` writes of them too.
fn write_line(
    w: &mut impl Write,
    time: &[u8; 24],
    method: &str,
    path: &str,
    status: u16,
    micros: u128,
    client: Option<IpAddr>,
) -> std::io::Result<()> {
    w.write_all(b"{\"time\":\"")?;
    w.write_all(time)?;
    w.write_all(b"\",\"method\":")?;
    serde_json::to_writer(&mut *w, method)?;
    w.write_all(b",\"path\":")?;
    serde_json::to_writer(&mut *w, path)?;
    write!(w, ",\"status\":{status},\"micros\":{micros},\"client\":")?;
    match client {
        Some(ip) => writeln!(w, "\"{ip}\"}}"),
        None => w.write_all(b"null}\n"),
    }
}

struct Inner {
    warehouse: PathBuf,
    snapshot: RwLock<Arc<Served>>,
    /// How many snapshots have been loaded: one when the server opens, one per reload.
    loads: AtomicU64,
    queue: Mutex<Queue>,
    limits: Limits,
    access_log: AccessLog,
    openapi: axum::body::Bytes,
    /// The [`MAX_PLANNING`] planning slots.
    planning: Arc<Semaphore>,
    /// The [`MAX_RENDERING`] slots for drawing dashboard pages.
    rendering: Arc<Semaphore>,
    /// Called on the planning thread, slot held, before planning: tests make planning slow.
    #[cfg(feature = "failpoints")]
    planning_hook: Mutex<Option<PlanningHook>>,
}

#[cfg(feature = "failpoints")]
type PlanningHook = Arc<dyn Fn() + Send + Sync>;

/// The state every handler gets: cheap to clone.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    /// Loads the snapshot of a warehouse and opens its requests file (created if missing).
    pub async fn open(
        warehouse: &Path,
        limits: Limits,
        access_log: AccessLog,
    ) -> crate::Result<AppState> {
        let queue = Queue::open(warehouse)?;
        let made_public = queue.public_release_ids()?;
        let snapshot = Served::load(warehouse, &made_public)?;
        let openapi =
            serde_json::to_vec(&super::openapi::document()).expect("the document serialises");
        Ok(AppState(Arc::new(Inner {
            warehouse: warehouse.to_path_buf(),
            snapshot: RwLock::new(Arc::new(snapshot)),
            loads: AtomicU64::new(1),
            queue: Mutex::new(queue),
            limits,
            access_log,
            openapi: openapi.into(),
            planning: Arc::new(Semaphore::new(MAX_PLANNING)),
            rendering: Arc::new(Semaphore::new(MAX_RENDERING)),
            #[cfg(feature = "failpoints")]
            planning_hook: Mutex::new(None),
        })))
    }

    pub fn warehouse(&self) -> &Path {
        &self.0.warehouse
    }

    pub fn limits(&self) -> &Limits {
        &self.0.limits
    }

    pub fn access_log(&self) -> &AccessLog {
        &self.0.access_log
    }

    /// The planning slots: a submission takes one without waiting (or is answered 503) and
    /// moves it onto its planning thread, which gives it back when planning ends.
    pub fn planning(&self) -> Arc<Semaphore> {
        self.0.planning.clone()
    }

    /// The slots for drawing dashboard pages: a page waits for one, and its drawing thread
    /// holds it until the page is drawn.
    pub fn rendering(&self) -> Arc<Semaphore> {
        self.0.rendering.clone()
    }

    /// Makes every planning thread call `hook` first, holding its slot (tests only: the
    /// `failpoints` feature).
    #[cfg(feature = "failpoints")]
    pub fn set_planning_hook(&self, hook: impl Fn() + Send + Sync + 'static) {
        *self
            .0
            .planning_hook
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Arc::new(hook));
    }

    /// Runs the planning hook, if one is set; nothing without the `failpoints` feature.
    pub(crate) fn before_planning(&self) {
        #[cfg(feature = "failpoints")]
        {
            let hook = self
                .0
                .planning_hook
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone();
            if let Some(hook) = hook {
                hook();
            }
        }
    }

    pub fn openapi(&self) -> axum::body::Bytes {
        self.0.openapi.clone()
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Served> {
        self.0
            .snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// How many snapshots have been loaded since the server opened, the first included: it
    /// grows by one with each reload.
    pub fn loads(&self) -> u64 {
        self.0.loads.load(Ordering::Relaxed)
    }

    /// The requests file, locked. Never hold it across an `.await`.
    pub fn queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.0.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads everything again: after a publication or an approval.
    pub async fn reload(&self) -> crate::Result<()> {
        let made_public = self.queue().public_release_ids()?;
        let snapshot = Served::load(&self.0.warehouse, &made_public)?;
        *self.0.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
        self.0.loads.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Reloads whenever the ledger (a publication, a release, a budget change) or the set of
    /// releases made public changes; checks every `every`, until the process ends. Everything
    /// served comes from those two, so new data, which changes neither until it is published,
    /// reloads nothing; nor does a new submission, which changes the requests file but nothing
    /// served. A reload that fails is tried again at the next check, and the previous
    /// snapshot is served meanwhile.
    pub async fn watch(self, every: Duration) {
        let Ok(ledger) = Ledger::open_read_only(&self.0.warehouse) else {
            return;
        };
        let Ok(watch_queue) = Queue::open(&self.0.warehouse) else {
            return;
        };
        // In a mutex so that the task's future is `Send`; it is never held across an await.
        let conns = Mutex::new((ledger, watch_queue));
        // `None` when either file could not be read just now (busy, say): that says nothing
        // about a change, so the look is skipped, not taken for one.
        let look = || {
            let c = conns.lock().unwrap_or_else(|e| e.into_inner());
            Some((c.0.data_version().ok()?, c.1.public_release_ids().ok()?))
        };
        // Each look comes before the load it triggers, so a change made while loading is
        // seen at the next look. The snapshot being served was loaded before the first look:
        // a change in between would pass for the state served, so it is loaded again.
        let mut served = loop {
            if let Some(now) = look() {
                break now;
            }
            tokio::time::sleep(every).await;
        };
        let mut must_load = true;
        loop {
            if must_load {
                match self.reload().await {
                    Ok(()) => must_load = false,
                    // Tried again at the next check; the previous snapshot is served meanwhile.
                    Err(e) => {
                        let text = e.to_string();
                        let error = crate::present::tables::terminal_safe(&text);
                        tracing::error!(
                            target: "outreach::api",
                            %error,
                            "reload failed; serving the previous snapshot and trying again"
                        )
                    }
                }
            }
            tokio::time::sleep(every).await;
            let Some(now) = look() else {
                continue;
            };
            if now != served {
                served = now;
                must_load = true;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The line written field by field is byte for byte what `serde_json` writes of the
    /// record, for addresses of both kinds or none, and paths that need escaping.
    #[test]
    fn an_access_line_is_the_json_of_its_record() {
        let now = chrono::Utc::now();
        let time = rfc3339_millis(now);
        let text = now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        assert_eq!(std::str::from_utf8(&time).unwrap(), text);
        let cases: [(&str, &str, u16, u128, Option<IpAddr>); 4] = [
            (
                "GET",
                "/v1/quarters/2025Q1/programs/P1",
                200,
                17,
                Some(IpAddr::from([10u8, 0, 0, 9])),
            ),
            ("OPTIONS", "/v1/requests", 200, 0, None),
            (
                "POST",
                "/x\"y\\z\u{1}é",
                429,
                u128::MAX,
                Some("2001:db8::1".parse().unwrap()),
            ),
            (
                "PATCH",
                "/",
                504,
                30_000_000,
                Some("::ffff:1.2.3.4".parse().unwrap()),
            ),
        ];
        for (method, path, status, micros, client) in cases {
            let mut line = Vec::new();
            write_line(&mut line, &time, method, path, status, micros, client).unwrap();
            let record = AccessRecord {
                time: text.clone(),
                method: method.into(),
                path: path.into(),
                status,
                micros,
                client,
            };
            let mut expected = serde_json::to_vec(&record).unwrap();
            expected.push(b'\n');
            assert_eq!(
                String::from_utf8(line).unwrap(),
                String::from_utf8(expected).unwrap()
            );
        }
    }

    #[test]
    fn the_time_of_a_line_is_rfc_3339_to_the_millisecond_in_utc() {
        use chrono::TimeZone;
        for (secs, nanos) in [
            (0, 0),
            (1_767_225_599, 999_999_999),
            (1_700_000_000, 5_000_000),
        ] {
            let t = chrono::Utc.timestamp_opt(secs, nanos).unwrap();
            assert_eq!(
                std::str::from_utf8(&rfc3339_millis(t)).unwrap(),
                t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
            );
        }
    }

    /// A log kept in memory gets the same record from [`AccessLog::request`]; a log that
    /// goes nowhere takes it without keeping anything.
    #[test]
    fn a_request_is_recorded_in_memory_and_nowhere_when_the_log_is_off() {
        let log = AccessLog::in_memory();
        log.request("GET", "/healthz", 200, 5, None);
        let records = log.records();
        assert_eq!(records.len(), 1);
        assert_eq!(
            (
                records[0].method.as_str(),
                records[0].path.as_str(),
                records[0].status
            ),
            ("GET", "/healthz", 200)
        );
        assert!(records[0].time.ends_with('Z') && records[0].time.len() == 24);
        let off = AccessLog::default();
        assert!(!off.is_on());
        off.request("GET", "/healthz", 200, 5, None);
        assert!(off.records().is_empty());
    }
}
