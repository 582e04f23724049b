//! The routes behind the links of a visitor's email (`crate::visitor_mail`): the signed link
//! back to the conversation, and the one-click unsubscribe (RFC 8058). The token is the only
//! credential: it names the project and the ticket, and expires.
//!
//! The link opens a small page of this server that loads the widget of the ticket's project
//! and shows that ticket's conversation (the widget's `openTicket` command); the widget then
//! marks the replies read as it always does. A `GET` of the unsubscribe link only shows a
//! button, so that a mail scanner following links unsubscribes nobody; the `POST` (the mail
//! client's one click, or the button) unsubscribes.

use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::email::escape_html;
use http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::error::{json, respond, ApiError};
use super::{Ctx, Done};
use crate::auth::{Claims, TokenError};

/// `?token=`: the signed token of an email's link.
#[derive(serde::Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct TokenQuery {
    /// The token the email's link carries.
    pub token: String,
}

fn ticket_of(claims: Result<Claims, TokenError>) -> Result<(ProjectId, Slug), ApiError> {
    let claims = claims.map_err(|e| match e {
        TokenError::Expired => ApiError::unauthorized("the link has expired"),
        _ => ApiError::unauthorized("the link is not valid"),
    })?;
    let project = ProjectId::parse(&claims.pid)
        .map_err(|_| ApiError::unauthorized("the link is not valid"))?;
    let slug =
        Slug::parse(&claims.sub).map_err(|_| ApiError::unauthorized("the link is not valid"))?;
    Ok((project, slug))
}

fn page(body: String) -> Response {
    let mut resp = Response::new(Bytes::from(body).into());
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // The token is in the address: keep it out of other sites' logs.
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// GET /v1/email/conversation?token=…
pub async fn conversation(ctx: Arc<Ctx>, query: TokenQuery) -> Response {
    respond(
        async {
            let (project, slug) = ticket_of(ctx.tokens.verify_visitor_link(&query.token))?;
            let found = ctx.store.get_ticket(&project, &slug).await?;
            if found.is_none() {
                return Err(ApiError::not_found("no such ticket"));
            }
            // Both values are of plain shapes already; encoded for where each goes all the
            // same. Inside a script element HTML entities are not decoded, so the slug is a JSON
            // string there, with `<` escaped so that no `</script>` can end the element.
            let slug_js = serde_json::to_string(slug.as_str())
                .unwrap_or_default()
                .replace('<', "\\u003c");
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>Support</title></head><body><script>window.Fleety=[[\"openTicket\",{}]];</script><script src=\"/widget.js\" data-project=\"{}\" async></script></body></html>",
                slug_js,
                escape_html(project.as_str()),
            );
            Ok(page(body))
        }
        .await,
    )
}

/// GET /v1/email/unsubscribe?token=…
pub async fn unsubscribe_page(ctx: Arc<Ctx>, query: TokenQuery) -> Response {
    respond(
        async {
            ticket_of(ctx.tokens.verify_unsubscribe(&query.token))?;
            let body = format!(
                "<!doctype html><html><head><meta charset=\"utf-8\"><title>Unsubscribe</title></head><body><form method=\"post\" action=\"/v1/email/unsubscribe?token={}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">Stop emails about this conversation</button></form></body></html>",
                escape_html(&query.token),
            );
            Ok(page(body))
        }
        .await,
    )
}

/// POST /v1/email/unsubscribe?token=…
pub async fn unsubscribe(ctx: Arc<Ctx>, query: TokenQuery) -> Response {
    respond(
        async {
            let (project, slug) = ticket_of(ctx.tokens.verify_unsubscribe(&query.token))?;
            let Some(mail) = &ctx.visitor_mail else {
                return Err(ApiError::not_found("this server sends no email"));
            };
            mail.unsubscribe(&project, &slug).await?;
            Ok(json(
                StatusCode::OK,
                &Done::new("Unsubscribed from this conversation's emails"),
            ))
        }
        .await,
    )
}
