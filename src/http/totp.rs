//! The caller's own second factor (`/me/totp`): its state, enrolment, confirmation with a
//! first code, turning it off, and new recovery codes. The sign-in's second step is in
//! `members.rs` with the first.
//!
//! Only a signed-in member changes their second factor: a personal token cannot (403), so a
//! leaked token cannot turn it off, and the admin key, being no member, has none (400). The
//! secret is in the enrolment's answer and in no other; recovery codes only in the answer that
//! makes them.

use std::sync::Arc;

use fleety_actors::domain::Project;
use fleety_actors::member::Member;
use http::header::HeaderValue;
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use warp::reply::Response;

use super::access::Principal;
use super::error::{json, respond};
use super::{ApiError, Ctx, Done};
use crate::server::RequestMeta;
use crate::totp::{Proof, TotpError};

impl From<TotpError> for ApiError {
    fn from(e: TotpError) -> Self {
        match e {
            TotpError::Conflict(why) => ApiError::conflict(why),
            TotpError::WrongCode => ApiError::bad_request("wrong code"),
            TotpError::WrongProof => ApiError::forbidden("wrong password or code"),
            // Answered with Retry-After by `answer`.
            TotpError::Throttled(_) => ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too many wrong passwords or codes; retry after the time in Retry-After",
            ),
            TotpError::Store(e) => e.into(),
            TotpError::Internal(e) => ApiError::internal(e),
        }
    }
}

/// The answer to a refused change; a wait comes with its Retry-After.
fn refuse(e: TotpError) -> Response {
    let wait = match &e {
        TotpError::Throttled(wait) => Some(*wait),
        _ => None,
    };
    let mut resp = ApiError::from(e).into_response();
    if let Some(wait) = wait {
        let secs = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        resp.headers_mut()
            .insert(http::header::RETRY_AFTER, HeaderValue::from(secs.max(1)));
    }
    resp
}

fn either(result: Result<Response, Response>) -> Response {
    result.unwrap_or_else(|refused| refused)
}

/// The member calling from a signed-in session.
fn signed_in(principal: &Principal) -> Result<&Member, ApiError> {
    match principal {
        Principal::Member(m) => Ok(&m.member),
        Principal::Token(_) => Err(ApiError::forbidden(
            "two-factor authentication is managed from a signed-in session, not with a token",
        )),
        Principal::AdminKey => Err(ApiError::bad_request(
            "the admin key is no member and has no second factor; sign in as a member",
        )),
    }
}

/// The caller's second factor: never its secret.
#[derive(Serialize, ToSchema)]
pub struct TotpView {
    /// Sign-in asks for a code.
    pub enabled: bool,
    /// An enrolment waits for its first code (`confirmMyTotp`).
    pub pending: bool,
    /// Recovery codes not used yet.
    pub recovery_codes_left: usize,
}

/// GET /v1/projects/{projectId}/me/totp
pub async fn get(_project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let view = match principal.person() {
                Some(me) => {
                    let s = ctx.accounts.totp_status(me).await?;
                    TotpView {
                        enabled: s.enabled,
                        pending: s.pending,
                        recovery_codes_left: s.recovery_codes_left,
                    }
                }
                // The admin key is no member and has none.
                None => TotpView {
                    enabled: false,
                    pending: false,
                    recovery_codes_left: 0,
                },
            };
            Ok(json(StatusCode::OK, &view))
        }
        .await,
    )
}

/// A new secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct TotpEnrolment {
    /// The shared secret, base32: type it into an authenticator app.
    pub secret: String,
    /// The same as an `otpauth://totp/...` URI, which apps read as text or as a QR code.
    pub otpauth_uri: String,
}

/// POST /v1/projects/{projectId}/me/totp
pub async fn enrol(_project: Arc<Project>, principal: Principal, ctx: Arc<Ctx>) -> Response {
    let result = async {
        let me = signed_in(&principal).map_err(ApiError::into_response)?;
        let (secret, otpauth_uri) = ctx.accounts.enrol_totp(me).await.map_err(refuse)?;
        let view = TotpEnrolment {
            secret,
            otpauth_uri,
        };
        Ok(json(StatusCode::CREATED, &view))
    }
    .await;
    either(result)
}

/// A code from the authenticator app.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpCode {
    /// Six digits.
    #[schema(max_length = 16)]
    pub code: String,
}

/// Recovery codes, shown this once.
#[derive(Serialize, ToSchema)]
pub struct IssuedRecoveryCodes {
    /// Each works once in place of a code, at sign-in. Keep them somewhere safe.
    pub recovery_codes: Vec<String>,
}

fn check_code_shape(code: &str) -> Result<(), ApiError> {
    match code.chars().count() {
        0..=16 => Ok(()),
        _ => Err(ApiError::bad_request("code: at most 16 characters")),
    }
}

/// POST /v1/projects/{projectId}/me/totp/confirm
pub async fn confirm(
    _project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: TotpCode,
) -> Response {
    let result = async {
        let me = signed_in(&principal).map_err(ApiError::into_response)?;
        check_code_shape(&body.code).map_err(ApiError::into_response)?;
        let who = super::audit::by(&principal, &meta);
        let recovery_codes = ctx
            .accounts
            .confirm_totp(me, &body.code, &who)
            .await
            .map_err(refuse)?;
        Ok(json(
            StatusCode::OK,
            &IssuedRecoveryCodes { recovery_codes },
        ))
    }
    .await;
    either(result)
}

/// The member's password, or a current code: one of the two.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TotpProof {
    #[schema(max_length = 256)]
    pub password: Option<String>,
    /// Six digits from the authenticator app.
    #[schema(max_length = 16)]
    pub code: Option<String>,
}

fn proof(body: TotpProof) -> Result<Proof, ApiError> {
    match (body.password, body.code) {
        (Some(p), None) if p.len() <= crate::accounts::MAX_PASSWORD_BYTES => Ok(Proof::Password(p)),
        (Some(_), None) => Err(ApiError::bad_request("password: at most 256 bytes")),
        (None, Some(code)) => check_code_shape(&code).map(|()| Proof::Code(code)),
        _ => Err(ApiError::bad_request("give either password or code")),
    }
}

/// POST /v1/projects/{projectId}/me/totp/disable
pub async fn disable(
    _project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: TotpProof,
) -> Response {
    let result = async {
        let me = signed_in(&principal).map_err(ApiError::into_response)?;
        let proof = proof(body).map_err(ApiError::into_response)?;
        let who = super::audit::by(&principal, &meta);
        ctx.accounts
            .disable_totp(me, proof, meta.ip, &who)
            .await
            .map_err(refuse)?;
        Ok(json(
            StatusCode::OK,
            &Done::new("two-factor authentication is off"),
        ))
    }
    .await;
    either(result)
}

/// POST /v1/projects/{projectId}/me/totp/recovery-codes
pub async fn regenerate(
    _project: Arc<Project>,
    principal: Principal,
    ctx: Arc<Ctx>,
    meta: Arc<RequestMeta>,
    body: TotpProof,
) -> Response {
    let result = async {
        let me = signed_in(&principal).map_err(ApiError::into_response)?;
        let proof = proof(body).map_err(ApiError::into_response)?;
        let who = super::audit::by(&principal, &meta);
        let recovery_codes = ctx
            .accounts
            .regenerate_recovery_codes(me, proof, meta.ip, &who)
            .await
            .map_err(refuse)?;
        Ok(json(
            StatusCode::OK,
            &IssuedRecoveryCodes { recovery_codes },
        ))
    }
    .await;
    either(result)
}
