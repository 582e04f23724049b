//! The inbound email endpoint: a reply by email, as the raw message a mail server pipes in.
//! It finds the ticket from the reply address the mail was sent to, keeps what the sender
//! wrote, and posts it through the ticket's actor like any message (so it is live in the inbox
//! and on the visitor's sockets): as the visitor's, or as the agent's when it comes from the
//! address of one of the project's members. A mail posted before is answered with the message
//! it made.

use std::sync::Arc;

use bytes::Bytes;
use fleety_actors::audit::{self, AuditActor, AuditBy};
use fleety_actors::domain::{IdempotencyKey, MessageAgent, MessageBody, Participant, Project};
use fleety_actors::inbound_mail::InboundMail;
use fleety_actors::member::{normalise_email, MemberState};
use fleety_actors::ticket::{Command, TicketError, TicketKey};
use fleety_actors::MessageId;
use http::StatusCode;
use utoipa::ToSchema;
use warp::reply::Response;

use super::error::{json, respond};
use super::{ApiError, Ctx};
use crate::inbound_mail::{self, Mail};
use crate::reply_address::ReplyToken;
use crate::server::RequestMeta;

/// A reply by email, posted on its ticket.
#[derive(serde::Serialize, ToSchema)]
pub struct ReplyReceived {
    /// "Reply posted", or "Reply already posted" for a mail delivered again.
    message: &'static str,
    /// The project of the ticket.
    #[schema(value_type = String)]
    project_id: String,
    /// The ticket the reply was posted on.
    #[schema(value_type = String)]
    slug: String,
    /// The message the reply was posted as.
    message_id: MessageId,
    /// This mail was posted before; nothing new was posted.
    duplicate: bool,
}

/// POST /v1/inbound/email
pub async fn receive(ctx: Arc<Ctx>, meta: Arc<RequestMeta>, raw: Bytes) -> Response {
    respond(
        async {
            let mail = inbound_mail::read(&raw).ok_or_else(|| {
                ApiError::bad_request("the body is not an email message (RFC 5322)")
            })?;
            let (project, token) = ticket_of(&ctx, &mail).await?;
            let text = mail
                .text
                .as_deref()
                .ok_or_else(|| unprocessable("the email has no text part"))?;
            let text = inbound_mail::strip(text);
            if text.trim().is_empty() {
                return Err(unprocessable(
                    "the email has no text of its own once the quoted history and the signature are left out",
                ));
            }
            let content = MessageBody::parse(&text).map_err(|e| unprocessable(e.0))?;
            let key = inbound_mail::mail_key(&mail, &raw);
            let received = |message_id, duplicate| ReplyReceived {
                message: match duplicate {
                    true => "Reply already posted",
                    false => "Reply posted",
                },
                project_id: project.id.as_str().to_owned(),
                slug: token.slug.as_str().to_owned(),
                message_id,
                duplicate,
            };
            if let Some(done) = ctx
                .store
                .get_inbound_mail(&project.id, &token.slug, &key)
                .await?
            {
                return Ok(json(StatusCode::OK, &received(done.message_id, true)));
            }
            let agent = sender_member(&ctx, &project, mail.from.as_deref()).await?;
            let author = match agent {
                Some(_) => Participant::Admin,
                None => Participant::User,
            };
            // The same key on a second delivery makes the ticket answer with the message the
            // first made, even if the record below was never written (a crash in between).
            let idempotency_key = IdempotencyKey::parse(&format!("email-{key}"))
                .map_err(|e| ApiError::internal(e.0))?;
            let by = agent.as_ref().map(|member| AuditBy {
                actor: AuditActor::Member {
                    id: member.id,
                    name: member.name.clone(),
                    token: None,
                },
                ip: Some(meta.ip.to_string()),
            });
            let post = Command::Post {
                author,
                content,
                idempotency_key: Some(idempotency_key),
                agent,
            };
            let ticket = TicketKey {
                project: project.id.clone(),
                slug: token.slug.clone(),
            };
            let posted = audit::acting(by, ctx.system.tickets.run(&ticket, post)).await;
            let message = match posted.and_then(|answer| answer.into_message()) {
                Ok(message) => message,
                // The same mail's other delivery is being posted: this one is a retry's to
                // make, which the mail server does on a 5xx.
                Err(TicketError::InProgress) => {
                    return Err(ApiError::new(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "this email is being posted by another delivery; retry shortly",
                    ))
                }
                Err(e) => return Err(e.into()),
            };
            let record = InboundMail {
                project_id: project.id.clone(),
                slug: token.slug.clone(),
                key,
                message_id: message.id,
                received_at: fleety_actors::clock::truncate_millis(ctx.clock.now()),
            };
            ctx.store.put_inbound_mail(&record).await?;
            if let Some(agents) = &ctx.agent_mail {
                agents
                    .posted(&project.id, &token.slug, author, message.id)
                    .await;
            }
            tracing::info!(
                project = %project.id.as_str(),
                ticket = %token.slug.as_str(),
                message = %message.id,
                as_agent = author == Participant::Admin,
                "reply by email posted"
            );
            Ok(json(StatusCode::CREATED, &received(message.id, false)))
        }
        .await,
    )
}

fn unprocessable(m: impl Into<std::borrow::Cow<'static, str>>) -> ApiError {
    ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m)
}

/// The project and ticket of the first of the mail's recipients that is a reply address we
/// signed. An address that only looks like one (a forged or altered token) names nothing.
async fn ticket_of(ctx: &Ctx, mail: &Mail) -> Result<(Arc<Project>, ReplyToken), ApiError> {
    let tokens: Vec<ReplyToken> = mail
        .recipients
        .iter()
        .filter_map(|r| ctx.replies.parse(r))
        .collect();
    if tokens.is_empty() {
        return Err(ApiError::not_found(
            "the email is not addressed to a reply address of this server",
        ));
    }
    for token in tokens {
        let project = ctx.projects.find(|id| token.names(id)).await?;
        if let Some(project) = project {
            if ctx.replies.verify(&token, &project.id) {
                return Ok((project, token));
            }
        }
    }
    Err(ApiError::not_found(
        "no ticket answers to this reply address",
    ))
}

/// The member of the project whose address sent the mail, if one did and may still act.
async fn sender_member(
    ctx: &Ctx,
    project: &Project,
    from: Option<&str>,
) -> Result<Option<MessageAgent>, ApiError> {
    let Some(email) = from.and_then(normalise_email) else {
        return Ok(None);
    };
    let member = ctx.store.member_by_email(&project.id, &email).await?;
    Ok(member
        .filter(|m| m.state != MemberState::Deactivated)
        .map(|m| MessageAgent {
            id: m.id,
            name: m.name,
            avatar_url: m.avatar_url,
        }))
}
