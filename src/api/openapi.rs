//! The OpenAPI 3.1 document, generated from the handlers' annotations.

use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};

use super::error::{ErrorBody, ErrorDetail};
use super::handlers::{self, Submitted};
use super::views;
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

/// Sets the pattern of `/v1/requests/{id}`'s `id` from [`REQUEST_ID_PATTERN`], the form the
/// handler checks with `requests::is_request_id`: one constant, not a copy in an annotation.
struct RequestIdPattern;

impl Modify for RequestIdPattern {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, Schema};
        let Some(item) = doc.paths.paths.get_mut("/v1/requests/{id}") else {
            return;
        };
        for op in item.get.iter_mut() {
            for p in op.parameters.iter_mut().flatten() {
                if p.name == "id"
                    && let Some(RefOr::T(Schema::Object(o))) = p.schema.as_mut()
                {
                    o.pattern = Some(REQUEST_ID_PATTERN.to_string());
                }
            }
        }
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
    paths(
        handlers::dashboard,
        handlers::health,
        handlers::openapi,
        handlers::programs,
        handlers::metrics,
        handlers::quarters,
        handlers::program_quarter,
        handlers::compare,
        handlers::releases,
        handlers::release,
        handlers::budget,
        handlers::submit,
        handlers::my_requests,
        handlers::request_status,
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
        Submission,
        Submitted,
        Quote,
        StatisticAccuracy,
        ResearcherView,
        RequestSummary,
    )),
    modifiers(&BearerAuth, &RequestIdPattern),
    tags(
        (name = "dashboard", description = "The dashboard page (HTML, no JavaScript)"),
        (name = "meta", description = "Health and this document"),
        (name = "catalog", description = "Programs and metric definitions"),
        (name = "metrics", description = "The standard metrics per quarter: the funder's and the agency's calls"),
        (name = "releases", description = "Every public release and the privacy budget"),
        (name = "requests", description = "Researchers' requests (bearer token)")
    )
)]
pub struct ApiDoc;

/// The document served at `/openapi.json`.
pub fn document() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}
