//! The read-only HTTP API (`outreach serve`): published releases as JSON or CSV, the
//! OpenAPI document, and researchers' requests.
//!
//! The server serves **stored releases only**. It never runs a query on data or draws
//! noise on a request, and it never returns rows. It opens the ledger and the release store
//! with SQLite's read-only flag and reads the warehouse's public program table; the only
//! file it writes is the researchers' request queue ([`crate::requests`]). Releases never
//! change once stored, so it renders every response once into a [`snapshot::Snapshot`],
//! answers from memory with ETags, and reloads when the ledger changes.
//!
//! - [`routes`]: the router and its layers (rate limits per IP and per token, body limit,
//!   timeout, compression, CORS for GET only, security headers, the access log).
//! - [`handlers`]: one function per route.
//! - [`views`]: the response types, built from stored publications and releases.
//! - [`snapshot`]: what is served, rendered once.
//! - [`state`]: the shared state and the server's limits.
//! - [`client`]: the client's address, from a trusted proxy's forwarding headers.
//! - [`error`]: [`ApiError`], the JSON error that never shows internals on a 5xx.
//! - [`openapi`]: the OpenAPI 3.1 document, from the handlers' annotations.
//! - [`csv`]: CSV bodies.

pub mod client;
pub mod csv;
pub mod error;
pub mod handlers;
pub mod openapi;
pub mod routes;
pub mod snapshot;
pub mod state;
pub mod views;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub use client::{ClientAddr, IpNet};
pub use error::ApiError;
pub use routes::{ROUTES, app, app_with_routes};
pub use state::{AccessLog, AccessRecord, AppState, Limits, MAX_PLANNING, MAX_RENDERING};

/// How often the server checks whether the ledger or the requests file changed.
pub const RELOAD_EVERY: Duration = Duration::from_secs(1);

/// Serves a warehouse on `addr` until `shutdown` completes. `ready` is called with the
/// bound address (port 0 picks a free one) once the server accepts connections.
pub async fn serve(
    warehouse: &Path,
    addr: SocketAddr,
    limits: Limits,
    ready: impl FnOnce(SocketAddr),
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> crate::Result<()> {
    let log = AccessLog::to_writer(Box::new(std::io::stderr()));
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
    axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
    .map_err(|source| crate::Error::Listen { addr, source })
}
