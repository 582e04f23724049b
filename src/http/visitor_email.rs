//! The routes behind the links of a visitor's email (`crate::visitor_mail`): the signed link
//! back to the conversation, and the one-click unsubscribe (RFC 8058). The token is the only
//! credential: it names the project and the ticket, and expires.
//!
//! The link opens a small page of this server that loads the widget of the ticket's project
//! and shows that ticket's conversation (the widget's `openTicket` command); the widget then
//! marks the replies read as it always does. A `GET` of the unsubscribe link only shows a
//! button (in the browser's language, of those the emails speak), so that a mail scanner
//! following links unsubscribes nobody; the `POST` (the mail client's one click, or the
//! button) unsubscribes.

use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::domain::{ProjectId, Slug};
use fleety_actors::email::escape_html;
use http::{header, HeaderValue, StatusCode};
use warp::reply::Response;

use super::error::{json, respond, ApiError};
use super::{Ctx, Done};
use crate::auth::{Claims, TokenError};
use crate::visitor_mail::Lang;

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
            let slug_js = script_string(slug.as_str());
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

/// What the unsubscribe page says, in the visitor's language.
struct Words {
    title: &'static str,
    explain: &'static str,
    button: &'static str,
    done: &'static str,
    failed: &'static str,
}

fn words(lang: Lang) -> Words {
    match lang {
        Lang::En => Words {
            title: "Emails about this conversation",
            explain: "We email you when our team replies and you have not read the reply yet.",
            button: "Stop emails about this conversation",
            done: "Done: you will get no more emails about this conversation.",
            failed: "That did not work. Please try again.",
        },
        Lang::De => Words {
            title: "E-Mails zu dieser Unterhaltung",
            explain: "Wir senden Ihnen eine E-Mail, wenn unser Team antwortet und Sie die Antwort noch nicht gelesen haben.",
            button: "Keine E-Mails mehr zu dieser Unterhaltung",
            done: "Erledigt: Sie erhalten keine E-Mails mehr zu dieser Unterhaltung.",
            failed: "Das hat nicht geklappt. Bitte versuchen Sie es erneut.",
        },
        Lang::Ar => Words {
            title: "رسائل البريد حول هذه المحادثة",
            explain: "نرسل إليك رسالة عندما يرد فريقنا ولم تقرأ الرد بعد.",
            button: "إيقاف الرسائل حول هذه المحادثة",
            done: "تم: لن تصلك رسائل أخرى حول هذه المحادثة.",
            failed: "لم ينجح ذلك. يُرجى المحاولة مرة أخرى.",
        },
    }
}

/// A string for a script element: JSON, with `<` escaped so that nothing ends the element.
fn script_string(s: &str) -> String {
    serde_json::to_string(s)
        .unwrap_or_default()
        .replace('<', "\\u003c")
}

/// GET /v1/email/unsubscribe?token=…: the button, in the language of the browser. The page's
/// script sends the same one-click POST a mail client does and says the outcome in place (a
/// live region); without script the form posts it.
pub async fn unsubscribe_page(
    ctx: Arc<Ctx>,
    accept_language: Option<String>,
    query: TokenQuery,
) -> Response {
    respond(
        async {
            ticket_of(ctx.tokens.verify_unsubscribe(&query.token))?;
            let lang = Lang::from_accept_language(accept_language.as_deref());
            let w = words(lang);
            let dir = if lang == Lang::Ar { "rtl" } else { "ltr" };
            let body = format!(
                "<!doctype html><html lang=\"{code}\" dir=\"{dir}\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width,initial-scale=1\"><title>{title}</title><style>{STYLE}</style></head><body><main><h1>{title}</h1><p>{explain}</p><form method=\"post\" action=\"/v1/email/unsubscribe?token={token}\"><input type=\"hidden\" name=\"List-Unsubscribe\" value=\"One-Click\"><button type=\"submit\">{button}</button></form><p id=\"said\" role=\"status\"></p></main><script>{script}</script></body></html>",
                code = lang.code(),
                title = escape_html(w.title),
                explain = escape_html(w.explain),
                token = escape_html(&query.token),
                button = escape_html(w.button),
                script = SCRIPT
                    .replace("DONE", &script_string(w.done))
                    .replace("FAILED", &script_string(w.failed)),
            );
            Ok(page(body))
        }
        .await,
    )
}

const STYLE: &str = "body{font:16px/1.5 system-ui,sans-serif;color:#1d1d1f;margin:0}main{max-width:32rem;margin:4rem auto;padding:0 1rem}h1{font-size:1.4rem}button{font:inherit;font-weight:600;padding:.6rem 1.1rem;border:0;border-radius:.6rem;background:#3b5bdb;color:#fff;cursor:pointer}button:focus-visible{outline:3px solid #1d1d1f;outline-offset:2px}button[disabled]{opacity:.6}#said{font-weight:600}";

const SCRIPT: &str = "document.querySelector('form').addEventListener('submit',async function(e){e.preventDefault();var b=this.querySelector('button'),said=document.getElementById('said');b.disabled=true;try{var r=await fetch(this.action,{method:'POST',headers:{'Content-Type':'application/x-www-form-urlencoded'},body:'List-Unsubscribe=One-Click'});if(!r.ok)throw r.status;this.hidden=true;said.textContent=DONE;}catch(_){b.disabled=false;said.textContent=FAILED;}});";

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
