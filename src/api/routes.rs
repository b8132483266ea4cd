//! The router: routes, and the layers every request passes (the client's address, rate
//! limits, body limit, timeout, compression, CORS, security headers, access log).
//!
//! Each route is declared once, in [`api_routes`], with the handler whose annotation
//! describes it: the server's router ([`app`]) and the OpenAPI document
//! ([`super::openapi::document`]) are both split from it, so no route can be answered and
//! undocumented, or documented and not answered.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Request, State};
use axum::http::uri::PathAndQuery;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode, Uri, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tower_governor::GovernorLayer;
use tower_governor::errors::GovernorError;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::KeyExtractor;
use tower_http::compression::CompressionLayer;
use tower_http::cors::{Any, CorsLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::client::{ClientAddr, client_addr};
use super::error::ApiError;
use super::handlers;
use super::openapi::ApiDoc;
use super::state::{AccessRecord, AppState};
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

/// tower-http's timeout answers with an empty body; every error here is JSON.
async fn json_timeout(req: Request, next: Next) -> Response {
    let r = next.run(req).await;
    if r.status() == StatusCode::GATEWAY_TIMEOUT && r.headers().get(header::CONTENT_TYPE).is_none()
    {
        return ApiError::Timeout.into_response();
    }
    r
}

/// Security headers on every response (unless a handler set them).
async fn security_headers(req: Request, next: Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    let set = |h: &mut axum::http::HeaderMap, name: HeaderName, value: &'static str| {
        h.entry(name).or_insert(HeaderValue::from_static(value));
    };
    set(h, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(h, header::X_FRAME_OPTIONS, "DENY");
    set(h, header::REFERRER_POLICY, "no-referrer");
    set(
        h,
        header::CONTENT_SECURITY_POLICY,
        "default-src 'none'; frame-ancestors 'none'",
    );
    set(
        h,
        HeaderName::from_static("cross-origin-resource-policy"),
        "cross-origin",
    );
    set(
        h,
        HeaderName::from_static("permissions-policy"),
        "interest-cohort=()",
    );
    r
}

/// Puts the client's address ([`ClientAddr`]) in the request's extensions, once, for the
/// rate limits and the access log: the TCP peer's, or the forwarded client's when the peer
/// is a trusted proxy.
async fn resolve_client(State(state): State<AppState>, mut req: Request, next: Next) -> Response {
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip());
    if let Some(peer) = peer {
        let client = client_addr(peer, req.headers(), &state.limits().trusted_proxies);
        req.extensions_mut().insert(ClientAddr(client));
    }
    next.run(req).await
}

/// One structured access record per request: time, method, path (never the query string or
/// any header), status, duration, client.
async fn access_log(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let client = ClientAddr::of(&req);
    let r = next.run(req).await;
    state.access_log().record(AccessRecord {
        time: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        method,
        path,
        status: r.status().as_u16(),
        micros: start.elapsed().as_micros(),
        client,
    });
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

    let routed = api
        .merge(extra)
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .with_state(state.clone());
    // Path forms are rewritten before routing, so the router answers them as the routes they
    // stand for; a layer of the router itself would run only after its routing.
    let forms = state.clone();
    let routed =
        tower::util::MapRequest::new(routed, move |req: Request| rewrite_path_form(&forms, req));
    Router::new()
        .fallback_service(routed)
        .layer(GovernorLayer::new(per_ip).error_handler(too_many))
        .layer(CompressionLayer::new())
        .layer(TimeoutLayer::with_status_code(
            StatusCode::GATEWAY_TIMEOUT,
            limits.timeout,
        ))
        .layer(middleware::from_fn(json_timeout))
        .layer(
            CorsLayer::new()
                .allow_origin(Any)
                .allow_methods([Method::GET, Method::HEAD])
                .allow_headers([header::ACCEPT, header::IF_NONE_MATCH])
                .expose_headers([header::ETAG])
                .max_age(Duration::from_secs(3600)),
        )
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(state.clone(), access_log))
        .layer(middleware::from_fn_with_state(
            state.clone(),
            resolve_client,
        ))
        .layer(TraceLayer::new_for_http())
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
