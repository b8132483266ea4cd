//! The router: routes, and the layers every request passes (the client's address, rate
//! limits, body limit, timeout, compression, CORS, security headers, access log).
//!
//! The layers are written for the load a small host serves: the outermost ones are one
//! service ([`Edge`]) with one boxed future per request, the timeout a concrete future
//! ([`Deadline`]), header values are built once, and a GET of a cached body is answered
//! without routing (`cached`).
//!
//! Each route is declared once, in [`api_routes`], with the handler whose annotation
//! describes it: the server's router ([`app`]) and the OpenAPI document
//! ([`super::openapi::document`]) are both split from it, so no route can be answered and
//! undocumented, or documented and not answered.

use std::convert::Infallible;
use std::future::{Future, Ready, ready};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Uri, header};
use axum::response::{IntoResponse, Response};
use futures::FutureExt;
use futures::future::{Either, Map as MapFuture};
use tokio::time::Timeout;
use tokio::time::error::Elapsed;
use tower::util::MapResponse;
use tower::{Layer, Service};
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::compression::{CompressionBody, CompressionLayer};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::{ClientAddr, client_addr};
use super::error::ApiError;
use super::handlers;
use super::openapi::ApiDoc;
use super::state::{AccessLog, AppState};
use crate::present::dashboard::PageLinks;
use crate::present::views::METRIC_KINDS;

/// Every route the server answers, as (method, path template): the list the tests hold the
/// router and the OpenAPI document to.
pub const ROUTES: &[(&str, &str)] = &[
    ("GET", "/"),
    ("GET", "/healthz"),
    ("GET", "/openapi.json"),
    ("GET", "/v1/programs"),
    ("GET", "/v1/metrics"),
    ("GET", "/v1/quarters"),
    ("GET", "/v1/quarters/{quarter}/programs/{program_id}"),
    ("GET", "/v1/quarters/{quarter}/compare"),
    ("GET", "/v1/releases"),
    ("GET", "/v1/releases/{id}"),
    ("GET", "/v1/budget"),
    ("GET", "/v1/ledger"),
    ("GET", "/v1/ledger/pages/{page}"),
    ("GET", "/v1/ledger/head"),
    ("GET", "/v1/ledger/heads/{size}"),
    ("POST", "/v1/requests"),
    ("GET", "/v1/requests"),
    ("GET", "/v1/requests/{id}"),
];

/// The suffixes of a route's path forms, each with the `format` it stands for.
pub const PATH_FORM_SUFFIXES: &[(&str, &str)] = &[(".json", "json"), (".csv", "csv")];

/// The route and query that a path form stands for, or `None` when `path` is no path form
/// (the request then goes to the router as it came). Two kinds, GET and HEAD only:
///
/// - `/v1/…/x.json` and `/v1/…/x.csv` stand for `/v1/…/x?format=json|csv` (the query given
///   follows), on every public route: the researchers' `/v1/requests…` have no path forms. A
///   path the server answers as it is comes first (`answers_as_is`): a program id may end in
///   `.csv`, and its page keeps its address.
/// - `/dashboard/{quarter}/{kind}/{name}.html` stands for `/?quarter={quarter}&metric={kind}:{name}`,
///   the page with the metric's default program, drawn with relative links
///   ([`PageLinks::Relative`]); a quarter or a metric written otherwise is no path form (404).
///
/// Same handler, so same body, content type and caching headers: the static mirror
/// (`outreach export-site`) writes each route's path form as a file, and a static host then
/// answers what the server answers.
pub fn path_form(
    method: &Method,
    path: &str,
    query: Option<&str>,
    answers_as_is: impl Fn(&str) -> bool,
) -> Option<(String, PageLinks)> {
    if method != Method::GET && method != Method::HEAD {
        return None;
    }
    let then = |target: String| match query.filter(|given| !given.is_empty()) {
        Some(given) => format!("{target}&{given}"),
        None => target,
    };
    if let Some(rest) = path.strip_prefix("/dashboard/") {
        let mut segments = rest.split('/');
        let (Some(quarter), Some(kind), Some(file), None) = (
            segments.next(),
            segments.next(),
            segments.next(),
            segments.next(),
        ) else {
            return None;
        };
        let name = file.strip_suffix(".html")?;
        let plain =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !crate::quarter::is_quarter(quarter) || !METRIC_KINDS.contains(&kind) || !plain {
            return None;
        }
        let target = then(format!("/?quarter={quarter}&metric={kind}:{name}"));
        return Some((target, PageLinks::Relative));
    }
    let public = path.starts_with("/v1/")
        && !(path == "/v1/requests"
            || path.starts_with("/v1/requests/")
            || path.starts_with("/v1/requests."));
    if !public || answers_as_is(path) {
        return None;
    }
    let (stem, format) = PATH_FORM_SUFFIXES
        .iter()
        .find_map(|(suffix, format)| Some((path.strip_suffix(suffix)?, *format)))?;
    if stem.ends_with('/') || stem.len() <= "/v1".len() {
        return None;
    }
    Some((then(format!("{stem}?format={format}")), PageLinks::Server))
}

/// Sends a path form's request on as the route it stands for ([`path_form`]).
fn rewrite_path_form(state: &AppState, mut req: Request) -> Request {
    let target = path_form(req.method(), req.uri().path(), req.uri().query(), |p| {
        state.snapshot().rendered.contains_key(p)
    });
    let Some((target, links)) = target else {
        return req;
    };
    let mut parts = req.uri().clone().into_parts();
    let Ok(path_and_query) = PathAndQuery::try_from(target) else {
        return req;
    };
    parts.path_and_query = Some(path_and_query);
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
        if links == PageLinks::Relative {
            req.extensions_mut().insert(links);
        }
    }
    req
}

/// The client's IP as a rate-limit key ([`ClientAddr`]: the peer's, or behind a trusted
/// proxy the forwarded client's), an IPv6 address cut to its /64 (one host holds a whole
/// /64, so a key per /128 would give it endless buckets); in-process callers (tests) without
/// a peer share a single bucket.
fn peer_ip<T>(req: &axum::http::Request<T>) -> IpAddr {
    match ClientAddr::of(req) {
        Some(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from_bits(v6.to_bits() & !0u128 >> 64 << 64)),
        },
        Some(ip) => ip,
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    }
}

/// Rate-limit key: the client's IP. Forwarded headers count only from a trusted proxy
/// ([`super::client`]); anyone else can set them.
#[derive(Debug, Clone, Copy)]
struct ClientIp;

impl KeyExtractor for ClientIp {
    type Key = IpAddr;
    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(peer_ip(req))
    }
}

/// Rate-limit key of the researcher routes: the token, when it is an active one, and
/// otherwise the client's IP, so made-up tokens share the guesser's bucket.
#[derive(Clone)]
struct ResearcherOrIp {
    state: AppState,
}

/// A key of [`ResearcherOrIp`].
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum RequestKey {
    /// An active token's id.
    Researcher(i64),
    Ip(IpAddr),
}

impl KeyExtractor for ResearcherOrIp {
    type Key = RequestKey;
    fn extract<T>(&self, req: &axum::http::Request<T>) -> Result<RequestKey, GovernorError> {
        let researcher = handlers::bearer(req.headers())
            .and_then(|token| self.state.queue().authenticate(token).ok().flatten());
        Ok(match researcher {
            Some(holder) => RequestKey::Researcher(holder.token_id),
            None => RequestKey::Ip(peer_ip(req)),
        })
    }
}

fn too_many(e: GovernorError) -> Response {
    match e {
        GovernorError::TooManyRequests { wait_time, .. } => {
            ApiError::TooManyRequests(wait_time.max(1)).into_response()
        }
        other => ApiError::Internal(format!("rate limiter: {other}")).into_response(),
    }
}

fn period(per_second: f64) -> Duration {
    Duration::from_secs_f64(1.0 / per_second.max(1e-6))
}

/// The answer to a request the deadline (the `timeout` of [`super::Limits`]) cut short:
/// the JSON 504 every error here is, in place of the request's own answer.
fn json_timeout<E>(answer: Result<Result<Response, E>, Elapsed>) -> Result<Response, E> {
    answer.unwrap_or_else(|_| Ok(ApiError::Timeout.into_response()))
}

/// The server's limit on a request's time: a request not answered within `limit` is
/// answered 504 in JSON (`json_timeout`), and its work dropped. A concrete future, no box.
#[derive(Clone)]
pub struct Deadline<S> {
    inner: S,
    limit: Duration,
}

type TimedAnswer<E> = Result<Result<Response, E>, Elapsed>;

impl<S> Service<Request> for Deadline<S>
where
    S: Service<Request, Response = Response>,
{
    type Response = Response;
    type Error = S::Error;
    type Future =
        MapFuture<Timeout<S::Future>, fn(TimedAnswer<S::Error>) -> Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), S::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let answer = tokio::time::timeout(self.limit, self.inner.call(req));
        answer.map(json_timeout::<S::Error> as fn(TimedAnswer<S::Error>) -> _)
    }
}

#[allow(clippy::declare_interior_mutable_const)]
const SECURITY_HEADERS: [(HeaderName, HeaderValue); 6] = [
    (
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    ),
    (header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY")),
    (
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    ),
    (
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
    ),
    (
        HeaderName::from_static("cross-origin-resource-policy"),
        HeaderValue::from_static("cross-origin"),
    ),
    (
        HeaderName::from_static("permissions-policy"),
        HeaderValue::from_static("interest-cohort=()"),
    ),
];

/// Security headers on every response (unless a handler set them), from values built once.
fn security_headers(h: &mut HeaderMap) {
    for (name, value) in SECURITY_HEADERS {
        h.entry(name).or_insert(value);
    }
}

/// CORS: any origin may read the API with GET and HEAD, sending `Accept` and
/// `If-None-Match`, and see the `ETag`; preflights are kept an hour. These are the headers
/// `tower_http`'s `CorsLayer` sends for that configuration, byte for byte (the tests hold
/// them to it), written from values built once.
#[allow(clippy::declare_interior_mutable_const)]
const CORS_VARY: HeaderValue = HeaderValue::from_static(
    "origin, access-control-request-method, access-control-request-headers",
);
#[allow(clippy::declare_interior_mutable_const)]
const CORS_ANY_ORIGIN: HeaderValue = HeaderValue::from_static("*");
#[allow(clippy::declare_interior_mutable_const)]
const CORS_EXPOSE: HeaderValue = HeaderValue::from_static("etag");
#[allow(clippy::declare_interior_mutable_const)]
const CORS_METHODS: HeaderValue = HeaderValue::from_static("GET,HEAD");
#[allow(clippy::declare_interior_mutable_const)]
const CORS_HEADERS: HeaderValue = HeaderValue::from_static("accept,if-none-match");
#[allow(clippy::declare_interior_mutable_const)]
const CORS_MAX_AGE: HeaderValue = HeaderValue::from_static("3600");

/// The CORS headers of an answer to any request but a preflight: its `Vary` joins the
/// answer's own.
fn cors_headers(h: &mut HeaderMap) {
    h.append(header::VARY, CORS_VARY);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, CORS_ANY_ORIGIN);
    h.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, CORS_EXPOSE);
}

/// The answer to a preflight (every `OPTIONS` request): an empty 200 that allows GET and
/// HEAD only. It reaches neither the rate limits nor a route.
fn preflight() -> Response {
    let mut r = Response::new(Body::empty());
    let h = r.headers_mut();
    h.insert(header::VARY, CORS_VARY);
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, CORS_METHODS);
    h.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, CORS_HEADERS);
    h.insert(header::ACCESS_CONTROL_MAX_AGE, CORS_MAX_AGE);
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, CORS_ANY_ORIGIN);
    r
}

/// What a request's access line needs once it is answered: its method and path (as they
/// came, before a path form is rewritten), its start and its client.
struct Line {
    log: AccessLog,
    method: Method,
    uri: Uri,
    start: Instant,
    client: Option<IpAddr>,
}

/// The last step of every answer: the security headers, then the access line.
fn finish(mut r: Response, line: Option<Line>) -> Response {
    security_headers(r.headers_mut());
    if let Some(line) = line {
        line.log.request(
            line.method.as_str(),
            line.uri.path(),
            r.status().as_u16(),
            line.start.elapsed().as_micros(),
            line.client,
        );
    }
    r
}

/// The router's outermost layer, its work in one place, with one boxed future per request
/// (none for a preflight) and no clone of the service: the client's address
/// ([`ClientAddr`], from the TCP peer or a trusted proxy's forwarding headers) put in the
/// request for the rate limits; CORS; the security headers; and one access line per
/// request, after everything inside it (a 429 and a 504 included) has answered.
#[derive(Clone)]
pub struct Edge<S> {
    inner: S,
    state: AppState,
    /// The TCP peer of the connection this service answers, set by [`super::serve`]'s accept
    /// loop; without it (in process, through `oneshot`), the request's `ConnectInfo`.
    peer: Option<SocketAddr>,
}

impl<S: Clone> Edge<S> {
    /// The same service, for the connection from `peer`.
    pub fn for_peer(&self, peer: SocketAddr) -> Edge<S> {
        Edge {
            inner: self.inner.clone(),
            state: self.state.clone(),
            peer: Some(peer),
        }
    }
}

type BoxedAnswer = Pin<Box<dyn Future<Output = Result<Response, Infallible>> + Send>>;

impl<S> Service<Request> for Edge<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, BoxedAnswer>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: Request) -> Self::Future {
        let start = Instant::now();
        let peer = self.peer.or_else(|| {
            req.extensions()
                .get::<ConnectInfo<SocketAddr>>()
                .map(|c| c.0)
        });
        let client = peer.map(|peer| {
            client_addr(
                peer.ip(),
                req.headers(),
                &self.state.limits().trusted_proxies,
            )
        });
        if let Some(client) = client {
            req.extensions_mut().insert(ClientAddr(client));
        }
        let log = self.state.access_log();
        let line = log.is_on().then(|| Line {
            log: log.clone(),
            method: req.method().clone(),
            uri: req.uri().clone(),
            start,
            client,
        });
        if req.method() == Method::OPTIONS {
            return Either::Left(ready(Ok(finish(preflight(), line))));
        }
        let answer = self.inner.call(req);
        let boxed: BoxedAnswer = Box::pin(async move {
            let mut r = match answer.await {
                Ok(r) => r,
                Err(never) => match never {},
            };
            cors_headers(r.headers_mut());
            Ok(finish(r, line))
        });
        Either::Right(boxed)
    }
}

/// The innermost service: a GET of a body the snapshot rendered is answered from it at
/// once ([`cached`]); anything else has its path form rewritten ([`path_form`]) and goes to
/// the router.
#[derive(Clone)]
struct Pages {
    state: AppState,
    router: Router,
}

impl Service<Request> for Pages {
    type Response = Response;
    type Error = Infallible;
    type Future = Either<Ready<Result<Response, Infallible>>, <Router as Service<Request>>::Future>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request) -> Self::Future {
        if let Some(r) = cached(&self.state, &req) {
            return Either::Left(ready(Ok(r)));
        }
        let req = rewrite_path_form(&self.state, req);
        Either::Right(self.router.call(req))
    }
}

/// The answer to a `GET` of `/healthz` or of a body the snapshot rendered, looked up by the
/// path as it came, without routing or extracting anything: the answer the route's handler
/// gives, which looks up the same key. Only for a path with no query string and nothing
/// percent-encoded (the router decodes those, so the handler's key could differ) and never
/// `/v1/budget`, whose handler reads the `Authorization` header too. Everything else,
/// `HEAD` included, goes to the router.
fn cached(state: &AppState, req: &Request) -> Option<Response> {
    if req.method() != Method::GET || req.uri().query().is_some() {
        return None;
    }
    let path = req.uri().path();
    if path.contains('%') || path == "/v1/budget" {
        return None;
    }
    let snap = state.snapshot();
    if path == "/healthz" {
        return Some(with_length(handlers::health_of(&snap)));
    }
    let rendered = snap.rendered.get(path)?;
    let format = handlers::format_of(None, req.headers()).ok()?;
    Some(with_length(handlers::respond(
        rendered,
        format,
        req.headers(),
    )))
}

/// `Content-Length` from the body's exact size, as the router writes it on every routed
/// answer (a 304's `0` too), so that a cached answer is the routed one, header for header.
fn with_length(mut r: Response) -> Response {
    use axum::body::HttpBody;
    if !r.headers().contains_key(header::CONTENT_LENGTH)
        && let Some(n) = r.body().size_hint().exact()
    {
        r.headers_mut()
            .insert(header::CONTENT_LENGTH, HeaderValue::from(n));
    }
    r
}

/// Every route of the API, each declared once with its handler, which carries its OpenAPI
/// operation; the document's title, schemas and tags come from [`ApiDoc`]. The researchers'
/// routes (`/v1/requests`) pass through `researcher_layers` (the server's body limit and
/// per-token rate limit; the document needs none), then join the public ones.
pub fn api_routes(
    researcher_layers: impl FnOnce(OpenApiRouter<AppState>) -> OpenApiRouter<AppState>,
) -> OpenApiRouter<AppState> {
    let researcher = researcher_layers(
        OpenApiRouter::default()
            .routes(routes!(handlers::submit, handlers::my_requests))
            .routes(routes!(handlers::request_status)),
    );
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(handlers::dashboard))
        .routes(routes!(handlers::health))
        .routes(routes!(handlers::openapi))
        .routes(routes!(handlers::programs))
        .routes(routes!(handlers::metrics))
        .routes(routes!(handlers::quarters))
        .routes(routes!(handlers::program_quarter))
        .routes(routes!(handlers::compare))
        .routes(routes!(handlers::releases))
        .routes(routes!(handlers::release))
        .routes(routes!(handlers::budget))
        .routes(routes!(handlers::ledger))
        .routes(routes!(handlers::ledger_page))
        .routes(routes!(handlers::ledger_head))
        .routes(routes!(handlers::ledger_heads))
        .merge(researcher)
}

/// The application: every route with its layers, over `state`.
pub fn app(state: AppState) -> Router {
    app_with_routes(state, Router::new())
}

/// [`app`] with `extra` routes beside the API's, behind the same layers (rate limits,
/// timeout, headers, access log): for tests of the layers themselves.
pub fn app_with_routes(state: AppState, extra: Router<AppState>) -> Router {
    Router::new().fallback_service(service(state, extra))
}

/// Every route of the API with the layers every request passes, outermost first, built once
/// and of concrete types (the router clones none of them per request):
/// - [`Edge`]: the client's address, CORS, the security headers, the access line;
/// - [`Deadline`]: the server's time limit, a JSON 504;
/// - compression, as the client accepts it;
/// - the per-IP rate limit, a JSON 429 (`too_many`);
/// - `Pages`: cached bodies at once, the rest through the router (the researchers' routes
///   with their body limit and per-token rate limit).
///
/// [`app`] serves it behind an `axum::Router`; [`super::serve`] serves it as it is, for each
/// connection with its peer ([`Edge::for_peer`]).
pub fn service(
    state: AppState,
    extra: Router<AppState>,
) -> Edge<
    impl Service<Request, Response = Response, Error = Infallible, Future: Send + 'static>
    + Clone
    + Send
    + Sync
    + 'static,
> {
    let limits = state.limits().clone();
    let per_ip = GovernorConfigBuilder::default()
        .period(period(limits.per_ip_per_second))
        .burst_size(limits.per_ip_burst.max(1))
        .key_extractor(ClientIp)
        .finish()
        .expect("a positive period and burst");
    let per_token = GovernorConfigBuilder::default()
        .period(period(limits.per_token_per_minute / 60.0))
        .burst_size(limits.per_token_burst.max(1))
        .key_extractor(ResearcherOrIp {
            state: state.clone(),
        })
        .finish()
        .expect("a positive period and burst");
    // The limiters keep a bucket per key: forget the idle ones every minute, for as long as
    // the router lives.
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        let ip = Arc::downgrade(per_ip.limiter());
        let token = Arc::downgrade(per_token.limiter());
        runtime.spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(60)).await;
                match (ip.upgrade(), token.upgrade()) {
                    (Some(ip), Some(token)) => {
                        ip.retain_recent();
                        token.retain_recent();
                    }
                    _ => break,
                }
            }
        });
    }

    let (api, _) = api_routes(|researcher| {
        researcher
            .layer(DefaultBodyLimit::max(limits.max_body_bytes))
            .layer(GovernorLayer::new(per_token).error_handler(too_many))
    })
    .split_for_parts();

    let router = api
        .merge(extra)
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state.clone());
    // Path forms are rewritten before routing (in `Pages`), so the router answers them as
    // the routes they stand for; a layer of the router itself would run only after routing.
    let pages = Pages {
        state: state.clone(),
        router,
    };
    let limited = GovernorLayer::new(per_ip)
        .error_handler(too_many)
        .layer(pages);
    let compressed = CompressionLayer::new().layer(limited);
    // Compression changes the body's type; the layers outside answer with axum's body (the
    // 504 is never compressed), so the body is boxed back into it here, once.
    let bodies = MapResponse::new(
        compressed,
        |r: axum::http::Response<CompressionBody<Body>>| r.map(Body::new),
    );
    Edge {
        inner: Deadline {
            inner: bodies,
            limit: limits.timeout,
        },
        state,
        peer: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(method: Method, path: &str, query: Option<&str>) -> Option<(String, PageLinks)> {
        path_form(&method, path, query, |p| {
            p == "/v1/quarters/2025Q1/programs/P.csv"
        })
    }

    #[test]
    fn a_suffix_stands_for_the_format_and_the_query_given_follows() {
        let json = |t: &str| Some((t.to_string(), PageLinks::Server));
        assert_eq!(
            form(Method::GET, "/v1/programs.json", None),
            json("/v1/programs?format=json")
        );
        assert_eq!(
            form(Method::HEAD, "/v1/releases/12.csv", None),
            json("/v1/releases/12?format=csv")
        );
        assert_eq!(
            form(Method::GET, "/v1/releases.csv", Some("quarter=2025Q1")),
            json("/v1/releases?format=csv&quarter=2025Q1")
        );
        // A program id may hold dots: its path form is its id with the suffix added.
        assert_eq!(
            form(Method::GET, "/v1/quarters/2025Q1/programs/P.csv.json", None),
            json("/v1/quarters/2025Q1/programs/P.csv?format=json")
        );
    }

    #[test]
    fn what_is_no_path_form_goes_to_the_router_as_it_came() {
        // A page the server answers as it is keeps its address.
        assert_eq!(
            form(Method::GET, "/v1/quarters/2025Q1/programs/P.csv", None),
            None
        );
        for path in [
            "/v1/requests.json",
            "/v1/requests/abc.json",
            "/v1/programs",
            "/v1/.json",
            "/v1/quarters/.csv",
            "/openapi.json",
            "/healthz.json",
            "/v1/programs.xml",
        ] {
            assert_eq!(form(Method::GET, path, None), None, "{path}");
        }
        assert_eq!(form(Method::POST, "/v1/programs.json", None), None);
    }

    #[test]
    fn a_dashboard_path_form_is_the_page_of_its_quarter_and_metric_with_relative_links() {
        assert_eq!(
            form(
                Method::GET,
                "/dashboard/2025Q1/rate/engagement_30d.html",
                None
            ),
            Some((
                "/?quarter=2025Q1&metric=rate:engagement_30d".to_string(),
                PageLinks::Relative
            ))
        );
        for path in [
            "/dashboard/2025Q9/rate/engagement_30d.html",
            "/dashboard/2025Q1/ratio/engagement_30d.html",
            "/dashboard/2025Q1/rate/engagement&by=x.html",
            "/dashboard/2025Q1/rate/.html",
            "/dashboard/2025Q1/rate/engagement_30d",
            "/dashboard/2025Q1/rate/x/engagement_30d.html",
        ] {
            assert_eq!(form(Method::GET, path, None), None, "{path}");
        }
    }
}
