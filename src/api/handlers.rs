//! One handler per route. Handlers only look up what the snapshot holds (or, for a
//! researcher's request, the requests file and the ledger, read-only); none runs a query on
//! data or draws noise.

use axum::body::{Body, Bytes};
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use headers::{ETag, HeaderMapExt, IfNoneMatch};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::error::{ApiError, ApiResult, ErrorBody};
use super::pages::{Freshness, Rendered, Served};
use super::state::AppState;
use crate::csv_out as csv;
use crate::ledger::Ledger;
use crate::present::snapshot::ReleaseFilter;
use crate::present::views::{self, COMPARE_BY};
use crate::privacy::PublicRelease;
use crate::requests::{self, Quote, RequestSummary, ResearcherView, Submission};

/// The response format: JSON unless `?format=csv` or `Accept: text/csv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Csv,
}

/// The values of `?format=`: the enumeration of the OpenAPI document.
pub const FORMATS: &[&str] = &["json", "csv"];

/// `?format=`.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct FormatParam {
    /// `json` (default) or `csv`; `Accept: text/csv` also asks for CSV.
    pub format: Option<String>,
}

pub(super) fn format_of(param: Option<&str>, headers: &HeaderMap) -> ApiResult<Format> {
    match param {
        Some("json") => return Ok(Format::Json),
        Some("csv") => return Ok(Format::Csv),
        Some(other) => {
            return Err(ApiError::BadRequest(format!(
                "format must be one of {}, not {other:?}",
                FORMATS.join(", ")
            )));
        }
        None => {}
    }
    let accept = headers
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let csv = accept
        .split(',')
        .any(|m| m.split(';').next().is_some_and(|t| t.trim() == "text/csv"));
    Ok(if csv { Format::Csv } else { Format::Json })
}

fn query<T>(q: Result<Query<T>, QueryRejection>) -> ApiResult<T> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("bad query string: {}", e.body_text())))
}

fn path<T>(p: Result<Path<T>, PathRejection>) -> ApiResult<T> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::BadRequest(format!("bad path: {}", e.body_text())))
}

/// Whether the client's copy is current: `If-None-Match` is `*` or names `etag`, weak or
/// strong (the weak comparison RFC 9110 asks of `If-None-Match`). Without the header (most
/// requests) nothing is parsed.
fn not_modified(headers: &HeaderMap, etag: &HeaderValue) -> bool {
    if !headers.contains_key(header::IF_NONE_MATCH) {
        return false;
    }
    let (Some(if_none_match), Some(etag)) = (
        headers.typed_get::<IfNoneMatch>(),
        etag.to_str().ok().and_then(|e| e.parse::<ETag>().ok()),
    ) else {
        return false;
    };
    !if_none_match.precondition_passes(&etag)
}

#[allow(clippy::declare_interior_mutable_const)]
const APPLICATION_JSON: HeaderValue = HeaderValue::from_static("application/json");
#[allow(clippy::declare_interior_mutable_const)]
const TEXT_CSV: HeaderValue = HeaderValue::from_static("text/csv; charset=utf-8");
#[allow(clippy::declare_interior_mutable_const)]
const VARY_FORMAT: HeaderValue = HeaderValue::from_static("Accept, Accept-Encoding");
#[allow(clippy::declare_interior_mutable_const)]
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");

/// Room for a cached body's headers and those the router's layers add (CORS, security
/// headers, the length), so that the map is allocated once and never grown.
const RESPONSE_HEADERS: usize = 16;

/// A rendered body in the asked format, with its ETag and caching headers; 304 when the
/// client's copy is current. The body is the cached `Bytes` (a reference count, no copy)
/// and every header value is built already.
pub fn respond(r: &Rendered, format: Format, headers: &HeaderMap) -> Response {
    let (body, etag, content_type) = match format {
        Format::Json => (&r.json, &r.etag_json, APPLICATION_JSON),
        Format::Csv => (&r.csv, &r.etag_csv, TEXT_CSV),
    };
    let current = not_modified(headers, etag);
    let mut response = if current {
        Response::new(Body::empty())
    } else {
        Response::new(Body::from(body.clone()))
    };
    let mut h = HeaderMap::with_capacity(RESPONSE_HEADERS);
    h.insert(header::ETAG, etag.clone());
    h.insert(header::CACHE_CONTROL, r.freshness.header());
    h.insert(header::VARY, VARY_FORMAT);
    if current {
        *response.status_mut() = StatusCode::NOT_MODIFIED;
    } else {
        h.insert(header::CONTENT_TYPE, content_type);
    }
    *response.headers_mut() = h;
    response
}

/// `/healthz`'s answer: the status and body rendered with the snapshot, never stored by a
/// cache.
pub fn health_of(snap: &Served) -> Response {
    let mut response = Response::new(Body::from(snap.health.json.clone()));
    *response.status_mut() = snap.health.status;
    let mut h = HeaderMap::with_capacity(RESPONSE_HEADERS);
    h.insert(header::CONTENT_TYPE, APPLICATION_JSON);
    h.insert(header::CACHE_CONTROL, NO_STORE);
    *response.headers_mut() = h;
    response
}

/// A body every snapshot renders (the programs, the metrics, the quarters, the budget): one
/// that is missing is a defect of the snapshot, never the client's, so it is no 404.
fn rendered(
    state: &AppState,
    key: &str,
    format: Format,
    headers: &HeaderMap,
) -> ApiResult<Response> {
    let snap = state.snapshot();
    let r = snap
        .rendered
        .get(key)
        .ok_or_else(|| ApiError::Internal(format!("the snapshot has not rendered {key}")))?;
    Ok(respond(r, format, headers))
}

#[utoipa::path(get, path = "/healthz", tag = "meta",
    responses(
        (status = 200, description = "The server is up and reads every stored publication", body = views::Health),
        (status = 503, description = "Some stored publications cannot be read (corrupt, or from a newer version); the server's log names them", body = views::Health)))]
pub async fn health(State(state): State<AppState>) -> Response {
    health_of(&state.snapshot())
}

#[utoipa::path(get, path = "/openapi.json", tag = "meta",
    responses((status = 200, description = "This document: OpenAPI 3.1", content_type = "application/json")))]
pub async fn openapi(State(state): State<AppState>) -> Response {
    (
        [(header::CONTENT_TYPE, "application/json")],
        state.openapi(),
    )
        .into_response()
}

#[utoipa::path(get, path = "/v1/programs", tag = "catalog", params(FormatParam),
    responses((status = 200, description = "Public program metadata", body = [views::Program]),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody)))]
pub async fn programs(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    rendered(&state, "/v1/programs", f, &headers)
}

#[utoipa::path(get, path = "/v1/metrics", tag = "catalog", params(FormatParam),
    responses((status = 200, description = "The metric catalog, in plain words", body = [views::Metric]),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody)))]
pub async fn metrics(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    rendered(&state, "/v1/metrics", f, &headers)
}

#[utoipa::path(get, path = "/v1/quarters", tag = "metrics", params(FormatParam),
    responses((status = 200, description = "Quarters with a publication, the current one each", body = [views::Quarter]),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody)))]
pub async fn quarters(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    rendered(&state, "/v1/quarters", f, &headers)
}

/// 400 unless `q` is written as [`crate::quarter::QUARTER_PATTERN`] says, the pattern the
/// OpenAPI document states.
fn check_quarter(q: &str) -> ApiResult<()> {
    if crate::quarter::is_quarter(q) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "{q:?} is not a quarter such as 2025Q3"
        )))
    }
}

#[utoipa::path(get, path = "/v1/quarters/{quarter}/programs/{program_id}", tag = "metrics",
    // The patterns are set in `openapi.rs`, from the constants the checks use.
    params(("quarter" = String, Path, description = "Such as 2025Q3"),
           ("program_id" = String, Path, description = "A program id from /v1/programs, of the form the data dictionary declares"),
           FormatParam),
    responses((status = 200, description = "Every standard metric of the program in the quarter", body = views::ProgramQuarter),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "A quarter not written like 2025Q3, or a bad format", body = ErrorBody),
              (status = 404, description = "No publication for this quarter and program", body = ErrorBody)))]
pub async fn program_quarter(
    State(state): State<AppState>,
    p: Result<Path<(String, String)>, PathRejection>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let (quarter, program) = path(p)?;
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    let snap = state.snapshot();
    let key = format!("/v1/quarters/{quarter}/programs/{program}");
    if let Some(r) = snap.rendered.get(&key) {
        return Ok(respond(r, f, &headers));
    }
    check_quarter(&quarter)?;
    if !snap.quarters.contains_key(&quarter) {
        return Err(ApiError::NotFound(format!("no publication for {quarter}")));
    }
    Err(ApiError::NotFound(format!(
        "program {program:?} is not in the publication of {quarter}"
    )))
}

/// `compare`'s parameters.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct CompareParams {
    /// A count, rate or difference of the standard metrics (see /v1/metrics), by name.
    pub metric: String,
    /// `count`, `rate` or `difference`: needed when a name is both (such as `naloxone_30d`).
    pub kind: Option<String>,
    /// `program` (default), `team_model`, `police_on_visits`, `warrant_check`, `region` or
    /// `statewide`.
    pub by: Option<String>,
    /// `json` (default) or `csv`.
    pub format: Option<String>,
}

#[utoipa::path(get, path = "/v1/quarters/{quarter}/compare", tag = "metrics",
    // The patterns and value lists are set in `openapi.rs`, from the constants the checks use.
    params(("quarter" = String, Path, description = "Such as 2025Q3"), CompareParams),
    responses((status = 200, description = "One metric across programs or program groups", body = views::Comparison),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad quarter, metric, grouping or format; or a `kind` the metric is not, or none for a name that is both a count and a rate", body = ErrorBody),
              (status = 404, description = "No publication for this quarter", body = ErrorBody)))]
pub async fn compare(
    State(state): State<AppState>,
    p: Result<Path<String>, PathRejection>,
    q: Result<Query<CompareParams>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let quarter = path(p)?;
    let params = query(q)?;
    let f = format_of(params.format.as_deref(), &headers)?;
    check_quarter(&quarter)?;
    let by = params.by.as_deref().unwrap_or("program");
    if !COMPARE_BY.contains(&by) {
        return Err(ApiError::BadRequest(format!(
            "by must be one of {}, not {by:?}",
            COMPARE_BY.join(", ")
        )));
    }
    let snap = state.snapshot();
    let comparison = snap
        .compare(&quarter, &params.metric, params.kind.as_deref(), by)
        .ok_or_else(|| ApiError::NotFound(format!("no publication for {quarter}")))?
        .map_err(ApiError::BadRequest)?;
    let csv = csv::rows(&comparison.figures);
    Ok(respond(
        &Rendered::new(&comparison, csv, Freshness::Published),
        f,
        &headers,
    ))
}

#[utoipa::path(get, path = "/v1/releases", tag = "releases", params(ReleaseFilter),
    responses((status = 200, description = "Public releases that pass the filters", body = [views::ReleaseSummary]),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad filter or format: a quarter not written like 2025Q3, a `since` that is not a day (or an RFC 3339 time), a `current` that is not true or false", body = ErrorBody)))]
pub async fn releases(
    State(state): State<AppState>,
    q: Result<Query<ReleaseFilter>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let filter = query(q)?;
    let f = format_of(filter.format.as_deref(), &headers)?;
    if let Some(q) = &filter.quarter {
        check_quarter(q)?;
    }
    if let Some(since) = &filter.since
        && !crate::present::snapshot::is_since(since)
    {
        return Err(ApiError::BadRequest(format!(
            "since {since:?} is not a day such as 2025-07-01 (or an RFC 3339 time)"
        )));
    }
    let rows = state.snapshot().release_summaries(&filter);
    let csv = csv::rows(&rows);
    Ok(respond(
        &Rendered::new(&rows, csv, Freshness::Live),
        f,
        &headers,
    ))
}

#[utoipa::path(get, path = "/v1/releases/{id}", tag = "releases",
    params(("id" = i64, Path, description = "A release id"), FormatParam),
    responses((status = 200, description = "The public view of a release and its ledger entry", body = views::Release),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad id or format", body = ErrorBody),
              (status = 404, description = "No public release with this id", body = ErrorBody)))]
pub async fn release(
    State(state): State<AppState>,
    p: Result<Path<i64>, PathRejection>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let id = path(p)?;
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    let snap = state.snapshot();
    let r = snap
        .rendered
        .get(&format!("/v1/releases/{id}"))
        .ok_or_else(|| ApiError::NotFound(format!("no public release {id}")))?;
    Ok(respond(r, f, &headers))
}

#[utoipa::path(get, path = "/v1/budget", tag = "releases", params(FormatParam),
    security((), ("bearer" = [])),
    responses((status = 200, description = "The privacy budget: total, spent and remaining, per allocation (the researchers' summed into one row, `researchers`), in rho and epsilon; with a researcher's bearer token, also `own_allocation`, theirs", body = views::Budget),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody),
              (status = 401, description = "An Authorization header that is not an active researcher's bearer token", body = ErrorBody)))]
pub async fn budget(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    // The body depends on the token: no cache may hand one caller's answer to another.
    let vary = HeaderValue::from_static("Accept, Accept-Encoding, Authorization");
    let Some(researcher) = optional_researcher(&state, &headers)? else {
        let mut r = rendered(&state, "/v1/budget", f, &headers)?;
        r.headers_mut().insert(header::VARY, vary);
        return Ok(r);
    };
    let snap = state.snapshot();
    let mut body = snap.budget.clone();
    body.own_allocation = snap.researcher_allocations.get(&researcher.0.name).cloned();
    // CSV has one table: the caller's own row comes last, by its full name.
    let mut rows = body.allocations.clone();
    rows.extend(body.own_allocation.clone());
    let csv = csv::rows(&rows);
    let mut r = respond(&Rendered::new(&body, csv, Freshness::Live), f, &headers);
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    r.headers_mut().insert(header::VARY, vary);
    Ok(r)
}

#[utoipa::path(get, path = "/v1/ledger", tag = "ledger", params(FormatParam),
    responses((status = 200, description = "The public ledger chain in brief: its entries, pages and head hash, with relative links to the first page and the signed head", body = views::LedgerSummary),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody)))]
pub async fn ledger(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    rendered(&state, "/v1/ledger", f, &headers)
}

#[utoipa::path(get, path = "/v1/ledger/pages/{page}", tag = "ledger",
    params(("page" = i64, Path, description = "A page number, from 1"), FormatParam),
    responses((status = 200, description = "Up to 500 entries of the public ledger chain, in order, each with its seq, kind, day, body (the canonical JSON its hash covers), previous hash and hash; `next` is the next page, relative", body = views::LedgerPage),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "A page that is not a whole number, or a bad format", body = ErrorBody),
              (status = 404, description = "No such page: the pages are numbered from 1 to the count /v1/ledger gives", body = ErrorBody)))]
pub async fn ledger_page(
    State(state): State<AppState>,
    p: Result<Path<i64>, PathRejection>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let page = path(p)?;
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    let snap = state.snapshot();
    let r = snap
        .rendered
        .get(&format!("/v1/ledger/pages/{page}"))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no ledger page {page}: the pages are numbered from 1 to {}",
                snap.ledger.summary.pages
            ))
        })?;
    Ok(respond(r, f, &headers))
}

#[utoipa::path(get, path = "/v1/ledger/head", tag = "ledger", params(FormatParam),
    responses((status = 200, description = "The chain's head (size and hash) signed with the warehouse's Ed25519 key, with the public key; all hex", body = views::LedgerHead),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "Bad format", body = ErrorBody)))]
pub async fn ledger_head(
    State(state): State<AppState>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    rendered(&state, "/v1/ledger/head", f, &headers)
}

#[utoipa::path(get, path = "/v1/ledger/heads/{size}", tag = "ledger",
    params(("size" = i64, Path, description = "The number of entries a signed head covers"), FormatParam),
    responses((status = 200, description = "A head the warehouse signed when its chain had `size` entries, as `/v1/ledger/head` served it then: every signed head is kept, so a reader who saved one can check that today's chain extends it (`outreach verify --since`)", body = views::LedgerHead),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "A size that is not a whole number, or a bad format", body = ErrorBody),
              (status = 404, description = "No head was signed at that size", body = ErrorBody)))]
pub async fn ledger_heads(
    State(state): State<AppState>,
    p: Result<Path<i64>, PathRejection>,
    q: Result<Query<FormatParam>, QueryRejection>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    let size = path(p)?;
    let f = format_of(query(q)?.format.as_deref(), &headers)?;
    let snap = state.snapshot();
    let r = snap
        .rendered
        .get(&format!("/v1/ledger/heads/{size}"))
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "no head of size {size} was signed: the latest is {}",
                snap.ledger.head.size
            ))
        })?;
    Ok(respond(r, f, &headers))
}

/// A researcher, identified by the bearer token of the request: the token's id (what their
/// requests belong to) and their name (what their allocation is named after).
#[derive(Debug, Clone)]
pub struct Researcher(pub requests::Holder);

/// The token of `Authorization: Bearer <token>`, if the header has that form.
pub fn bearer(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim())
        .filter(|t| !t.is_empty())
}

/// The researcher whose active token is `token`, or 401.
fn authenticate(state: &AppState, token: &str) -> ApiResult<Researcher> {
    let holder = state
        .queue()
        .authenticate(token)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    holder.map(Researcher).ok_or(ApiError::Unauthorized)
}

/// The researcher of a request to a public route that a token may personalise: `None`
/// without an `Authorization` header; 401 for one that is not an active bearer token, never
/// quietly ignored.
fn optional_researcher(state: &AppState, headers: &HeaderMap) -> ApiResult<Option<Researcher>> {
    if !headers.contains_key(header::AUTHORIZATION) {
        return Ok(None);
    }
    let token = bearer(headers).ok_or(ApiError::Unauthorized)?;
    authenticate(state, token).map(Some)
}

impl FromRequestParts<AppState> for Researcher {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> ApiResult<Researcher> {
        let token = bearer(&parts.headers).ok_or(ApiError::Unauthorized)?;
        authenticate(state, token)
    }
}

/// The answer to a submission.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    /// 32 lowercase hex digits, random: it says nothing of other requests.
    pub id: String,
    /// `pending`: the steward decides.
    pub state: String,
    /// The spec passed the analyser and the budget check.
    pub validation: String,
    /// What it would cost and how accurate each statistic would be.
    pub quote: Quote,
    /// Where to follow it.
    pub location: String,
}

#[utoipa::path(post, path = "/v1/requests", tag = "requests",
    request_body(content = Submission, description = "A release spec with its purpose and the budget asked for"),
    security(("bearer" = [])),
    responses((status = 201, description = "Accepted and pending the steward's decision, with its cost and accuracy", body = Submitted),
              (status = 400, description = "The body is not a submission", body = ErrorBody),
              (status = 401, description = "Missing or bad token", body = ErrorBody),
              (status = 409, description = "Your allocation cannot pay for it", body = ErrorBody),
              (status = 413, description = "The body is too large", body = ErrorBody),
              (status = 422, description = "Refused by the spec check or the analyser, with the reason", body = ErrorBody),
              (status = 429, description = "Too many requests (`too_many_requests`, with Retry-After), or already 20 of your requests wait for the steward's decision (`too_many_pending`: submit again once one is decided)", body = ErrorBody),
              (status = 503, description = "Too many submissions are being planned; try again after Retry-After", body = ErrorBody)))]
pub async fn submit(
    State(state): State<AppState>,
    researcher: Researcher,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult<Response> {
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge(state.limits().max_body_bytes)
        } else {
            ApiError::BadRequest(format!("cannot read the body: {}", e.body_text()))
        }
    })?;
    let submission: Submission = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not a submission: {e}")))?;
    // A researcher with the most pending requests allowed is refused before any planning;
    // the store counts again in the transaction that inserts.
    if state.queue().pending_count(&researcher.0.name)? >= requests::MAX_PENDING_PER_RESEARCHER {
        return Err(ApiError::TooManyPending(
            requests::MAX_PENDING_PER_RESEARCHER,
        ));
    }
    let snap = state.snapshot();
    // The ledger was there when the server started: any failure to read it now is the
    // operator's to look at, never the researcher's input.
    let internal = |e: &dyn std::fmt::Display| ApiError::Internal(e.to_string());
    let config = Ledger::open_read_only(state.warehouse())
        .and_then(|l| l.config())
        .map_err(|e| internal(&e))?;
    let plan_ctx = crate::warehouse::schema_session().map_err(|e| internal(&e))?;
    crate::privacy::functions::register(&plan_ctx);
    // Planning is CPU work that never yields: it runs on a blocking thread, at most
    // MAX_PLANNING at once, so that it cannot stall the public routes and the timeout
    // can answer for it. The slot moves onto the thread: a request answered 504 drops this
    // future, but not the planning, which keeps its slot until it ends; so timed-out
    // submissions cannot pile up planning threads.
    let slot = state
        .planning()
        .try_acquire_owned()
        .map_err(|_| ApiError::Busy)?;
    let (name, sub, hook) = (researcher.0.name.clone(), submission.clone(), state.clone());
    let planned = tokio::task::spawn_blocking(move || {
        let _slot = slot;
        hook.before_planning();
        tokio::runtime::Handle::current().block_on(requests::quote(
            &plan_ctx,
            &config,
            &snap.dataset_version,
            &snap.program_ids,
            &name,
            &sub,
        ))
    })
    .await
    .map_err(|e| internal(&e))?;
    let (spec, quote) = planned?;
    {
        let ledger = Ledger::open_read_only(state.warehouse()).map_err(|e| internal(&e))?;
        requests::affordable(&ledger, &quote)?;
    }
    let id = state.queue().submit(
        &researcher.0,
        submission.purpose.trim(),
        submission.rho,
        &spec,
        &quote,
    )?;
    let location = format!("/v1/requests/{id}");
    let body = Submitted {
        id,
        state: "pending".into(),
        validation: "accepted".into(),
        quote,
        location: location.clone(),
    };
    let mut r = (StatusCode::CREATED, axum::Json(body)).into_response();
    r.headers_mut().insert(
        header::LOCATION,
        HeaderValue::from_str(&location).expect("a path is a valid header"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(r)
}

#[utoipa::path(get, path = "/v1/requests/{id}", tag = "requests",
    // The pattern is set from `requests::REQUEST_ID_PATTERN` in `openapi.rs`.
    params(("id" = String, Path, description = "Your request's id: 32 lowercase hex digits, or the digits of an id given when ids were sequential")),
    security(("bearer" = [])),
    responses((status = 200, description = "Pending, rejected with the steward's words, or released with the noisy numbers", body = ResearcherView),
              (status = 400, description = "Not the form of a request id", body = ErrorBody),
              (status = 401, description = "Missing or bad token", body = ErrorBody),
              (status = 404, description = "No request of yours with this id", body = ErrorBody)))]
pub async fn request_status(
    State(state): State<AppState>,
    researcher: Researcher,
    p: Result<Path<String>, PathRejection>,
) -> ApiResult<Response> {
    let id = path(p)?;
    if !requests::is_request_id(&id) {
        return Err(ApiError::BadRequest(format!(
            "{id:?} is not a request id: 32 lowercase hex digits"
        )));
    }
    let not_found = || ApiError::NotFound(format!("no request {id} of yours"));
    let request = match state.queue().get(&id) {
        Ok(r) => r,
        Err(requests::RequestsError::NoSuchRequest(_)) => return Err(not_found()),
        // A stored request that cannot be read is the operator's, never the researcher's.
        Err(e) => return Err(ApiError::Internal(e.to_string())),
    };
    // A request of another token, even one of the same name revoked before this one, is
    // answered exactly like one that does not exist.
    if request.token_id != Some(researcher.0.token_id) {
        return Err(not_found());
    }
    let release = match request.release_id {
        Some(rid) if request.state == requests::RequestState::Released => {
            let internal = |e: crate::ledger::LedgerError| ApiError::Internal(e.to_string());
            let ledger = Ledger::open_read_only(state.warehouse()).map_err(internal)?;
            let stored = ledger.release(rid).map_err(internal)?;
            // Only a release debited from this researcher's own allocation is theirs to see.
            (stored.allocation == requests::allocation_of(&researcher.0.name))
                .then(|| PublicRelease::from_stored(&stored))
                .flatten()
                .map(views::to_the_day)
        }
        _ => None,
    };
    let mut r = axum::Json(request.researcher_view(release)).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(r)
}

#[utoipa::path(get, path = "/v1/requests", tag = "requests",
    security(("bearer" = [])),
    responses((status = 200, description = "Your requests, oldest first: pending, rejected or released (the numbers are at /v1/requests/{id})", body = [RequestSummary]),
              (status = 401, description = "Missing or bad token", body = ErrorBody)))]
pub async fn my_requests(
    State(state): State<AppState>,
    researcher: Researcher,
) -> ApiResult<Response> {
    // The token's requests only: never those of an earlier token of the same name.
    let list = state
        .queue()
        .list_of(researcher.0.token_id)
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let body: Vec<RequestSummary> = list.iter().map(requests::StoredRequest::summary).collect();
    let mut r = axum::Json(body).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, no-store"),
    );
    Ok(r)
}

/// Every unknown path.
pub async fn not_found() -> ApiError {
    ApiError::NotFound("no such route; see /openapi.json".into())
}

/// A known path with a method it does not take.
pub async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// The dashboard's Content-Security-Policy: inline styles and SVG only, no script at all.
const PAGE_CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";

#[utoipa::path(get, path = "/", tag = "dashboard", params(crate::present::dashboard::DashboardQuery),
    // The patterns and value lists are set in `openapi.rs`, from the constants the checks use.
    responses((status = 200, description = "The dashboard: programs compared, the police-present minus absent arrest-rate difference, and a program's trend, with intervals; no JavaScript", content_type = "text/html"),
              (status = 304, description = "Not modified since the ETag given"),
              (status = 400, description = "A quarter not written like 2025Q3, or a metric that is not a standard metric's kind:name", body = ErrorBody),
              (status = 404, description = "Nothing is published yet; or nothing for the quarter asked for, or the metric or the program is not in its publication", body = ErrorBody)))]
pub async fn dashboard(
    State(state): State<AppState>,
    q: Result<Query<crate::present::dashboard::DashboardQuery>, QueryRejection>,
    links: Option<axum::Extension<crate::present::dashboard::PageLinks>>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    use crate::present::dashboard::PageError;
    let query = query(q)?;
    // Set by the path form `/dashboard/{quarter}/{kind}/{name}.html` (`super::routes`).
    let links = links.map(|axum::Extension(l)| l).unwrap_or_default();
    let snap = state.snapshot();
    // A choice left out and one given empty are different pages: `?quarter=` is a 400, not
    // the latest quarter's page.
    let key = format!(
        "{:?}\u{0}{:?}\u{0}{:?}\u{0}{links:?}",
        query.quarter, query.metric, query.program
    );
    let cached = snap
        .pages
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .get(&key);
    let page = match cached {
        Some(p) => p,
        None => {
            // Drawing a page (charts, templates, its ETag) is CPU work: it runs on a blocking
            // thread, at most MAX_RENDERING at once (the rest wait their turn within the
            // timeout), so that the async workers keep answering.
            let slot = state
                .rendering()
                .acquire_owned()
                .await
                .map_err(|e| ApiError::Internal(e.to_string()))?;
            let (on, small_cell) = (snap.clone(), state.limits().small_cell);
            let rendered = tokio::task::spawn_blocking(move || {
                let _slot = slot;
                crate::present::dashboard::dashboard_with(&on, &query, small_cell, links)
                    .map(|html| Rendered::page(html, Freshness::Published))
            })
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?
            .map_err(|e| match e {
                PageError::BadChoice(m) => ApiError::BadRequest(m),
                PageError::NotPublished(m) => ApiError::NotFound(m),
                PageError::NothingPublished => {
                    ApiError::NotFound("nothing is published yet".into())
                }
                PageError::Internal(m) => ApiError::Internal(m),
            })?;
            snap.pages
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(key, rendered.clone());
            rendered
        }
    };
    let mut r = respond(&page, Format::Json, &headers);
    if r.status() == StatusCode::OK {
        r.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/html; charset=utf-8"),
        );
    }
    r.headers_mut().insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(PAGE_CSP),
    );
    Ok(r)
}
