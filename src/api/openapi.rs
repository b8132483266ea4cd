//! The OpenAPI 3.1 document, generated from the handlers' annotations: its operations are
//! those of the routes the server answers ([`super::routes::api_routes`]), its title, schemas
//! and tags those of [`ApiDoc`]. What annotations cannot say is written in by [`Modify`]
//! steps from the code's own constants, never copied by hand: the pattern or value list of
//! every parameter ([`ParameterValues`]), the statuses every route can answer from the
//! router's layers ([`LayerResponses`]), and the CSV form of every answer that has one
//! ([`CsvBodies`]).

use utoipa::openapi::path::Operation;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, Header, Object, PathItem, Ref, RefOr, Response, Schema, Type};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::handlers::{FORMATS, Submitted};
use super::routes::api_routes;
use crate::dictionary::{Dictionary, IdPattern};
use crate::metrics::Catalog;
use crate::present::snapshot::SINCE_PATTERN;
use crate::present::views::{self, COMPARE_BY, METRIC_KINDS};
use crate::quarter::QUARTER_PATTERN;
use crate::requests::{
    Quote, REQUEST_ID_PATTERN, RequestSummary, ResearcherView, StatisticAccuracy, Submission,
};

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// Calls `f` with every operation of the document and its path.
fn for_each_operation(doc: &mut utoipa::openapi::OpenApi, mut f: impl FnMut(&str, &mut Operation)) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let PathItem {
            get,
            put,
            post,
            delete,
            options,
            head,
            patch,
            trace,
            ..
        } = item;
        for op in [get, put, post, delete, options, head, patch, trace]
            .into_iter()
            .flatten()
        {
            f(path.as_str(), op);
        }
    }
}

/// What a parameter takes.
enum Values {
    Pattern(String),
    OneOf(Vec<String>),
}

/// The pattern of a program id: the one the data dictionary declares for
/// `programs.program_id`, which ingest checks every program id against.
pub fn program_id_pattern() -> String {
    Dictionary::builtin()
        .ok()
        .and_then(|d| d.table("programs"))
        .and_then(|t| t.column("program_id"))
        .and_then(|c| c.pattern.as_deref())
        .and_then(|p| IdPattern::parse(p).ok())
        .map(|p| p.regex())
        .expect("the data dictionary declares the pattern of programs.program_id")
}

/// The pattern or the list of values of every path and query parameter, from what the
/// handlers check it against: the form of a quarter ([`QUARTER_PATTERN`]), of a request id
/// ([`REQUEST_ID_PATTERN`]), of a program id (the dictionary's), of `since`
/// ([`SINCE_PATTERN`]); the formats ([`FORMATS`]), the groupings ([`COMPARE_BY`]), the kinds
/// of figure ([`METRIC_KINDS`]) and the metrics of the catalog. `name` of `/v1/releases` is
/// free text, and typed parameters (`current`, a release id) have their type.
struct ParameterValues;

impl Modify for ParameterValues {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let catalog = Catalog::standard().expect("the standard metrics are compiled in");
        let (names, keys) = (views::metric_names(&catalog), views::metric_keys(&catalog));
        let program_id = program_id_pattern();
        let list = |values: &[&str]| Values::OneOf(values.iter().map(|v| v.to_string()).collect());
        for_each_operation(doc, |path, op| {
            for p in op.parameters.iter_mut().flatten() {
                let values = match (path, p.name.as_str()) {
                    ("/v1/requests/{id}", "id") => Values::Pattern(REQUEST_ID_PATTERN.into()),
                    (_, "quarter") => Values::Pattern(QUARTER_PATTERN.into()),
                    (_, "program_id") | ("/", "program") => Values::Pattern(program_id.clone()),
                    (_, "since") => Values::Pattern(SINCE_PATTERN.into()),
                    (_, "format") => list(FORMATS),
                    (_, "kind") => list(METRIC_KINDS),
                    (_, "by") => list(COMPARE_BY),
                    // The dashboard takes `kind:name`; `compare` a name, with `kind` beside it.
                    ("/", "metric") => Values::OneOf(keys.clone()),
                    (_, "metric") => Values::OneOf(names.clone()),
                    _ => continue,
                };
                if let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut() {
                    match values {
                        Values::Pattern(pattern) => o.pattern = Some(pattern),
                        Values::OneOf(values) => {
                            o.enum_values =
                                Some(values.into_iter().map(serde_json::Value::from).collect());
                        }
                    }
                }
            }
        });
    }
}

/// A JSON error answer ([`ErrorBody`]), with a `Retry-After` header when `retry_after`
/// describes it.
fn error_response(description: &str, retry_after: Option<&str>) -> RefOr<Response> {
    let mut r = Response::new(description);
    r.content.insert(
        "application/json".to_string(),
        Content::new(Some(Ref::from_schema_name("ErrorBody"))),
    );
    if let Some(retry_after) = retry_after {
        let mut header = Header::new(Object::with_type(Type::Integer));
        header.description = Some(retry_after.to_string());
        r.headers.insert("Retry-After".to_string(), header);
    }
    RefOr::T(r)
}

/// The statuses every route can answer from the layers of [`super::routes::app`], whatever
/// its handler does: 429 from the rate limits (per client IP on every route, and per token
/// on the request routes), 504 from the timeout, and 500 from an internal error (a rate
/// limiter that fails, as well as a handler's). An operation that describes one itself keeps
/// its own description.
struct LayerResponses;

impl Modify for LayerResponses {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for_each_operation(doc, |_, op| {
            let responses = &mut op.responses.responses;
            responses.entry("429".to_string()).or_insert_with(|| {
                error_response(
                    "Too many requests from this client, or on the request routes with this token (`too_many_requests`)",
                    Some("Seconds to wait before trying again"),
                )
            });
            responses.entry("500".to_string()).or_insert_with(|| {
                error_response(
                    "An internal error (`internal`): the server's log has the detail, the answer never does",
                    None,
                )
            });
            responses.entry("504".to_string()).or_insert_with(|| {
                error_response(
                    "The request took longer than the server allows (`timeout`); try again",
                    None,
                )
            });
        });
    }
}

/// The CSV form of every answer that has one: an operation with a `format` parameter
/// answers `text/csv` to `?format=csv` or `Accept: text/csv` ([`super::handlers::respond`]).
struct CsvBodies;

impl Modify for CsvBodies {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        for_each_operation(doc, |_, op| {
            if !op.parameters.iter().flatten().any(|p| p.name == "format") {
                return;
            }
            if let Some(RefOr::T(ok)) = op.responses.responses.get_mut("200") {
                ok.content.insert(
                    "text/csv".to_string(),
                    Content::new(Some(Object::with_type(Type::String))),
                );
            }
        });
    }
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Outreach Warehouse",
        description = "Differentially private evaluation figures of post-overdose outreach programs. \
            Read-only: every figure comes from a stored release, with its 95% interval, its noise \
            and the release and dataset version it belongs to. Researchers submit release specs \
            that a data steward approves before anything runs.",
        license(name = "Apache-2.0")
    ),
    components(schemas(
        ErrorBody,
        ErrorDetail,
        views::Health,
        views::Program,
        views::Metric,
        views::Quarter,
        views::Figure,
        views::ProgramQuarter,
        views::Comparison,
        views::Release,
        views::ReleaseSummary,
        views::Budget,
        views::AllocationBudget,
        views::BudgetRecovery,
        views::LedgerSummary,
        views::LedgerPage,
        views::LedgerEntry,
        views::LedgerHead,
        Submission,
        Submitted,
        Quote,
        StatisticAccuracy,
        ResearcherView,
        RequestSummary,
    )),
    tags(
        (name = "dashboard", description = "The dashboard page (HTML, no JavaScript)"),
        (name = "meta", description = "Health and this document"),
        (name = "catalog", description = "Programs and metric definitions"),
        (name = "metrics", description = "The standard metrics per quarter: the funder's and the agency's calls"),
        (name = "releases", description = "Every public release and the privacy budget"),
        (name = "ledger", description = "The public ledger chain: every public event, hash-chained, its head signed with the warehouse's Ed25519 key"),
        (name = "requests", description = "Researchers' requests (bearer token)")
    )
)]
pub struct ApiDoc;

/// The document served at `/openapi.json`: [`ApiDoc`] with the operation of every route
/// ([`api_routes`]), then the [`Modify`] steps, which read those operations.
pub fn document() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api_routes(|researcher| researcher).split_for_parts();
    let steps: [&dyn Modify; 4] = [&BearerAuth, &ParameterValues, &LayerResponses, &CsvBodies];
    for step in steps {
        step.modify(&mut doc);
    }
    doc
}
