//! The API's one error type. Every error is a JSON body `{"error": {"status", "code",
//! "message"}}`; a 5xx never carries the internal error's text, which goes to the server's
//! log instead.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::Fault;

/// An error answered to a client.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("a valid bearer token is required")]
    Unauthorized,
    #[error("{0}")]
    NotFound(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error("the request body is larger than {0} bytes")]
    PayloadTooLarge(usize),
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    BudgetExhausted(String),
    #[error("too many requests; wait {0} s")]
    TooManyRequests(u64),
    /// The researcher has the most requests pending that are allowed
    /// ([`crate::requests::MAX_PENDING_PER_RESEARCHER`]).
    #[error(
        "you have {0} requests waiting for the steward's decision, the most allowed; submit again once one is decided"
    )]
    TooManyPending(usize),
    #[error("the server is busy; try again")]
    Busy,
    #[error("the request took longer than the server allows; try again")]
    Timeout,
    /// A defect or an environment failure: logged, never shown.
    #[error("internal error")]
    Internal(String),
}

/// The JSON body of an error.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ErrorDetail {
    pub status: u16,
    /// A stable code: `bad_request`, `unauthorized`, `not_found`, `method_not_allowed`,
    /// `payload_too_large`, `unprocessable`, `budget_exhausted`, `too_many_requests`,
    /// `too_many_pending`, `busy`, `timeout` or `internal`.
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadRequest(_) => StatusCode::BAD_REQUEST,
            ApiError::Unauthorized => StatusCode::UNAUTHORIZED,
            ApiError::NotFound(_) => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            ApiError::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            ApiError::BudgetExhausted(_) => StatusCode::CONFLICT,
            ApiError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::TooManyPending(_) => StatusCode::TOO_MANY_REQUESTS,
            ApiError::Busy => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            ApiError::BadRequest(_) => "bad_request",
            ApiError::Unauthorized => "unauthorized",
            ApiError::NotFound(_) => "not_found",
            ApiError::MethodNotAllowed => "method_not_allowed",
            ApiError::PayloadTooLarge(_) => "payload_too_large",
            ApiError::Unprocessable(_) => "unprocessable",
            ApiError::BudgetExhausted(_) => "budget_exhausted",
            ApiError::TooManyRequests(_) => "too_many_requests",
            ApiError::TooManyPending(_) => "too_many_pending",
            ApiError::Busy => "busy",
            ApiError::Timeout => "timeout",
            ApiError::Internal(_) => "internal",
        }
    }
}

/// A library error by who is at fault: one `match`. Bad input from a client's own
/// submission is 422, a usage error (a malformed request, never a CLI flag here) 400; the
/// library's internal errors are never shown.
impl From<crate::Error> for ApiError {
    fn from(e: crate::Error) -> ApiError {
        if let crate::Error::Requests(crate::requests::RequestsError::TooManyPending { limit }) = e
        {
            return ApiError::TooManyPending(limit);
        }
        match e.fault() {
            Fault::Usage => ApiError::BadRequest(e.to_string()),
            Fault::BadInput => ApiError::Unprocessable(e.to_string()),
            Fault::BudgetExhausted => ApiError::BudgetExhausted(e.to_string()),
            Fault::Busy => ApiError::Busy,
            Fault::Internal => ApiError::Internal(e.to_string()),
        }
    }
}

impl From<crate::requests::RequestsError> for ApiError {
    fn from(e: crate::requests::RequestsError) -> ApiError {
        crate::Error::from(e).into()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        if let ApiError::Internal(detail) = &self {
            // The operator's terminal: the detail may quote a researcher's submission.
            let detail = crate::present::tables::terminal_safe(detail);
            tracing::error!(target: "outreach::api", %detail, "internal error");
        }
        let body = ErrorBody {
            error: ErrorDetail {
                status: status.as_u16(),
                code: self.code().to_string(),
                message: self.to_string(),
            },
        };
        let mut response = (status, Json(body)).into_response();
        // Never cached: a release made public later must not stay a 404 in some proxy.
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        if let ApiError::Unauthorized = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"outreach\""),
            );
        }
        if let ApiError::TooManyRequests(wait) = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(wait));
        }
        // Busy planning ends within seconds: say when to try again.
        if let ApiError::Busy = self {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
