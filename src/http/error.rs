//! The one error type of the HTTP front, its mapping from domain and store errors, and the
//! `recover` that turns every warp rejection into the same `{"error": "..."}` body.

use std::borrow::Cow;
use std::convert::Infallible;

use bytes::Bytes;
use fleety_actors::store::StoreError;
use fleety_actors::ticket::TicketError;
use http::header::HeaderValue;
use http::StatusCode;
use warp::reply::Response;
use warp::Rejection;

#[derive(Debug)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }
    pub fn bad_request(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, m)
    }
    pub fn unauthorized(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, m)
    }
    pub fn forbidden(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::FORBIDDEN, m)
    }
    pub fn not_found(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::NOT_FOUND, m)
    }
    pub fn conflict(m: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::CONFLICT, m)
    }
    pub fn rate_limited() -> Self {
        Self::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate limit exceeded; retry after the time in Retry-After",
        )
    }
    pub fn unavailable() -> Self {
        Self::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "service temporarily unavailable; retry shortly",
        )
    }
    /// A failure that is ours, not the client's: the cause goes to the log, never the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(error = %cause, "internal error");
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal server error")
    }

    pub fn into_response(self) -> Response {
        self.to_response()
    }

    pub fn to_response(&self) -> Response {
        let mut response = json(
            self.status,
            &ErrorBody {
                error: &self.message,
            },
        );
        if self.status == StatusCode::SERVICE_UNAVAILABLE {
            // Every 503 is a passing state (a ticket restarting or moving between nodes, the
            // store or NATS out of reach): say when to come back rather than invite a storm.
            response.headers_mut().insert(
                http::header::RETRY_AFTER,
                http::HeaderValue::from_static(RETRY_AFTER_SECS),
            );
        }
        response
    }
}

/// The `Retry-After` of a 503, in seconds.
const RETRY_AFTER_SECS: &str = "1";

impl From<TicketError> for ApiError {
    fn from(e: TicketError) -> Self {
        match e {
            TicketError::NotFound => ApiError::not_found("ticket not found"),
            TicketError::Closed => ApiError::conflict("ticket is closed"),
            TicketError::AlreadyRated => ApiError::conflict("this ticket was rated already"),
            TicketError::VerifiedEmail => ApiError::conflict(
                "replies go to the email address of the ticket's verified contact",
            ),
            TicketError::NotResolved => {
                ApiError::conflict("a ticket can be rated once it is resolved")
            }
            TicketError::KeyReused => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "this Idempotency-Key was already used for a different message",
            ),
            TicketError::InProgress => ApiError::conflict(
                "a request with this Idempotency-Key is still in progress; retry shortly",
            ),
            TicketError::TooFarBehind => ApiError::conflict(
                "too many missed messages to replay; reload the ticket with GET and reconnect",
            ),
            TicketError::Busy => ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "ticket is busy; retry shortly",
            ),
            TicketError::Unavailable(cause) => {
                tracing::warn!(%cause, "ticket unavailable");
                ApiError::unavailable()
            }
            // The ticket moved between nodes for longer than a request waits.
            TicketError::Elsewhere(node) | TicketError::Unreachable(node) => {
                tracing::warn!(%node, "ticket unavailable: its node did not answer in time");
                ApiError::unavailable()
            }
            TicketError::Moved => {
                tracing::warn!("ticket unavailable: it kept moving between nodes");
                ApiError::unavailable()
            }
            TicketError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound => ApiError::not_found("not found"),
            StoreError::Conflict => ApiError::conflict("already exists"),
            StoreError::Unavailable(cause) => {
                tracing::warn!(%cause, "storage unavailable");
                ApiError::unavailable()
            }
            StoreError::Internal(cause) => ApiError::internal(cause),
        }
    }
}

/// Turns any rejection that reached the top into our error body, with the matching status.
pub async fn recover(rejection: Rejection) -> Result<Response, Infallible> {
    use warp::reject;
    if let Some(super::access::Refused(refusal)) = rejection.find() {
        return Ok(refusal.to_response());
    }
    let error = if rejection.is_not_found() {
        ApiError::not_found("no such endpoint")
    } else if rejection.find::<reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            "method not allowed on this endpoint",
        )
    } else if rejection.find::<super::route::BodyTooLarge>().is_some()
        || rejection.find::<reject::PayloadTooLarge>().is_some()
    {
        ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "request body too large")
    } else if rejection.find::<reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            "a Content-Length header is required",
        )
    } else if rejection.find::<reject::UnsupportedMediaType>().is_some() {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported Content-Type",
        )
    } else if rejection.find::<reject::InvalidQuery>().is_some() {
        ApiError::bad_request("invalid query string")
    } else if rejection.find::<super::upgrade::NotWebSocket>().is_some() {
        ApiError::bad_request("this endpoint expects a WebSocket upgrade")
    } else if let Some(e) = rejection.find::<reject::MissingHeader>() {
        ApiError::bad_request(format!("missing header {}", e.name()))
    } else if let Some(e) = rejection.find::<reject::InvalidHeader>() {
        ApiError::bad_request(format!("invalid header {}", e.name()))
    } else {
        tracing::debug!(?rejection, "unhandled rejection");
        ApiError::bad_request("bad request")
    };
    Ok(error.into_response())
}

/// A JSON response from bytes that are already JSON.
pub fn json_bytes(status: StatusCode, body: Bytes) -> Response {
    let mut resp = Response::new(body.into());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

pub fn json<T: serde::Serialize>(status: StatusCode, value: &T) -> Response {
    json_bytes(status, fleety_actors::events::encode(value))
}

/// A handler's answer, or its error as the `{"error": ...}` answer.
pub fn respond(result: Result<Response, ApiError>) -> Response {
    result.unwrap_or_else(ApiError::into_response)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_that_may_have_taken_a_write_answers_503_with_retry_after() {
        let response =
            ApiError::from(TicketError::Unavailable("ticket is restarting".into())).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(
            response.headers().get(http::header::RETRY_AFTER),
            Some(&http::HeaderValue::from_static("1"))
        );
        let refused = ApiError::from(TicketError::Closed).into_response();
        assert_eq!(refused.headers().get(http::header::RETRY_AFTER), None);
    }
}
