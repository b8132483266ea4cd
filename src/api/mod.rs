//! The read-only HTTP API (`outreach serve`): published releases as JSON or CSV, the
//! OpenAPI document, and researchers' requests.
//!
//! The server serves **what was published only**. It never runs a query on data, opens no
//! DataFusion session and draws no noise on a request, and it never returns rows. It opens
//! the ledger and the release store with SQLite's read-only flag, and reads the programs
//! table from the copy stored with the latest publication; the only file it writes is the
//! researchers' request queue ([`crate::requests`]). Releases never change once stored, so
//! it renders every response once from the [`crate::present::snapshot::Snapshot`] into
//! [`pages::Served`], answers from memory with ETags, and reloads when the ledger or the set
//! of releases made public changes: loading data publishes nothing, so it reloads nothing.
//!
//! - [`routes`]: the routes, each declared once with its handler (the router and the OpenAPI
//!   document are both built from them), and the router's layers (rate limits per IP and per
//!   token, body limit, timeout, compression, CORS for GET only, security headers, the access
//!   log).
//! - [`handlers`]: one function per route.
//! - [`pages`]: what is served, rendered once, with ETags and cache lifetimes, and the cache
//!   of dashboard pages. The response types are [`crate::present::views`].
//! - [`state`]: the shared state and the server's limits.
//! - [`client`]: the client's address, from a trusted proxy's forwarding headers.
//! - [`error`]: [`ApiError`], the JSON error that never shows internals on a 5xx.
//! - [`openapi`]: the OpenAPI 3.1 document, from the routes' handlers and their annotations.

pub mod client;
pub mod error;
pub mod handlers;
pub mod openapi;
pub mod pages;
pub mod routes;
pub mod state;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::Request;
use axum::response::Response;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::sync::{Semaphore, watch};

pub use client::{ClientAddr, IpNet};
pub use error::ApiError;
pub use routes::{ROUTES, app, app_with_routes};
pub use state::{
    AccessLog, AccessRecord, AppState, Limits, MAX_CONNECTIONS, MAX_PLANNING, MAX_RENDERING,
    MAX_REQUEST_RATE, MAX_TIMEOUT_SECONDS, MIN_RATE_PER_MINUTE, MIN_RATE_PER_SECOND,
    MIN_TIMEOUT_SECONDS,
};

/// How often the server checks whether the ledger or the requests file changed.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Serves a warehouse on `addr` until `shutdown` completes. `ready` is called with the
/// bound address (port 0 picks a free one) once the server accepts connections. Limits the
/// server cannot keep are a usage error ([`Limits::check`]), before anything is opened.
pub async fn serve(
    warehouse: &Path,
    addr: SocketAddr,
    limits: Limits,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    limits.check().map_err(crate::Error::Usage)?;
    let log = AccessLog::to_writer(Box::new(std::io::stderr()));
    let (header_read_timeout, max_connections) =
        (limits.header_read_timeout, limits.max_connections);
    // The server reads no data, but it does not start over a warehouse that lost some.
    crate::warehouse::Warehouse::open(warehouse)?.vouched_manifest()?;
    let state = AppState::open(warehouse, limits, log.clone()).await?;
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| crate::Error::Listen { addr, source })?;
    let bound = listener
        .local_addr()
        .map_err(|source| crate::Error::Listen { addr, source })?;
    tokio::spawn(state.clone().watch(RELOAD_EVERY));
    tokio::spawn(async move {
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            log.flush();
        }
    });
    ready(bound);
    serve_connections(
        listener,
        routes::service(state, axum::Router::new()),
        header_read_timeout,
        max_connections,
        shutdown,
    )
    .await;
    Ok(())
}

/// Serves `app` over HTTP/1.1 on every connection `listener` accepts, until `shutdown`
/// completes; then accepts no more, lets each connection finish the request it is
/// answering, and returns once every connection is closed. `app` is the API's service as
/// it is ([`routes::service`]), not behind an `axum::Router`, which would route each request
/// once more, to its one fallback, through a box cloned per request.
///
/// `axum::serve` can set neither of the two bounds this loop keeps:
/// - at most `max_connections` connections are open at once: the next one is accepted only
///   when one closes, and waits in the kernel's listen backlog meanwhile, so clients cannot
///   take every file descriptor of the process;
/// - a client must send a request's whole header within `header_read_timeout` of the
///   connection's start, or of the end of its previous response, or the connection is
///   closed: half-sent or idle connections cannot hold those places. A slow body is bounded
///   by the request timeout ([`Limits::timeout`]).
async fn serve_connections<S>(
    mut listener: tokio::net::TcpListener,
    app: routes::Edge<S>,
    header_read_timeout: Duration,
    max_connections: usize,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) where
    S: tower::Service<Request, Response = Response, Error = Infallible> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    let places = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read_timeout);
    // `stop_tx.closed()` completes when shutdown begins (its one receiver is dropped then).
    let (stop_tx, stop_rx) = watch::channel(());
    tokio::spawn(async move {
        shutdown.await;
        drop(stop_rx);
    });
    // Every connection holds a receiver: `open_tx.closed()` completes when all have ended.
    let (open_tx, open_rx) = watch::channel(());
    loop {
        let place = tokio::select! {
            place = places.clone().acquire_owned() => place.expect("the places are never closed"),
            _ = stop_tx.closed() => break,
        };
        // Accept errors (such as running out of file descriptors) are retried after a pause.
        let (stream, peer) = tokio::select! {
            conn = axum::serve::Listener::accept(&mut listener) => conn,
            _ = stop_tx.closed() => break,
        };
        // The connection's peer goes with its service, so no request carries it as an
        // extension; the body is axum's, as every layer takes it.
        let service = tower::util::MapRequest::new(
            app.for_peer(peer),
            |req: axum::http::Request<hyper::body::Incoming>| req.map(Body::new),
        );
        let conn = http.serve_connection(TokioIo::new(stream), TowerToHyperService::new(service));
        let (stop, open) = (stop_tx.clone(), open_rx.clone());
        tokio::spawn(async move {
            let _place = place;
            let _open = open;
            let mut conn = std::pin::pin!(conn);
            tokio::select! {
                // Closed by either side, or by the header-read timeout.
                _ = conn.as_mut() => return,
                _ = stop.closed() => {}
            }
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
    drop(open_rx);
    drop(listener);
    open_tx.closed().await;
}
