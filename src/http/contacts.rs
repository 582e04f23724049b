//! Known visitors (issue 28): the identity a widget presents when its session starts, the
//! project's identity secrets (owners and admins), its contacts (agents read them), and an
//! identified visitor's own tickets (`GET /v1/session/tickets`).
//!
//! A contact is written when a verified session starts, and then only when what the customer's
//! backend says of it changed or its last sighting is older than [`LAST_SEEN_EVERY`]: a
//! visitor reloading pages does not write on every load.

use std::collections::BTreeMap;
use std::sync::Arc;

use chrono::Duration;
use fleety_actors::audit::{self, AuditBy, AuditTarget};
use fleety_actors::contact::{
    Contact, ContactQuery, TicketContact, MAX_ATTRIBUTES, MAX_ATTRIBUTE_KEY, MAX_ATTRIBUTE_VALUE,
    MAX_IDENTITY_SECRETS,
};
use fleety_actors::domain::Project;
use fleety_actors::events::{rfc3339, TicketSummary};
use http::StatusCode;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;
use warp::reply::Response;

use super::access::Session;
use super::error::{json, respond};
use super::{ApiError, Ctx};
use crate::identity::{self, Refusal, Verified};

/// A contact seen again within this long is not written again just to move its last sighting.
pub const LAST_SEEN_EVERY: Duration = Duration::hours(1);
/// Tickets a contact's page and an identified visitor's list show, newest first.
pub const CONTACT_TICKETS: usize = 50;

/// Who the visitor is, as the customer's backend vouches for them: either `user_id` with
/// `user_hash`, or `token`. An identity that does not verify is refused (401), never trusted.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentityProof {
    /// The customer's own id for the user (1 to 200 characters); with `user_hash`.
    #[serde(default)]
    user_id: Option<String>,
    /// `hex(HMAC-SHA256(identity secret, user_id))`, computed by the customer's backend.
    #[serde(default)]
    user_hash: Option<String>,
    /// Instead of `user_id` and `user_hash`: a JWT (HS256) signed with the identity secret,
    /// with `sub` (the user id), `exp`, and optionally `email`, `name` and `aud` (the project
    /// id).
    #[serde(default)]
    token: Option<String>,
    /// With `user_hash` only (a token carries its own): the user's email, as the page says.
    #[serde(default)]
    #[schema(value_type = Option<fleety_actors::domain::Email>)]
    email: Option<String>,
    /// With `user_hash` only (a token carries its own): the user's name, as the page says.
    #[serde(default)]
    #[schema(value_type = Option<fleety_actors::domain::VisitorName>)]
    name: Option<String>,
    /// Custom attributes of the contact: up to 20, keys of 1 to 40 letters, digits, `_`, `-`
    /// or `.`, values of at most 200 characters. When given, they replace the stored ones.
    #[serde(default)]
    attributes: Option<BTreeMap<String, String>>,
}

fn refused(r: Refusal) -> ApiError {
    match r.is_malformed() {
        true => ApiError::bad_request(r.to_string()),
        false => ApiError::unauthorized(r.to_string()),
    }
}

fn attributes(raw: BTreeMap<String, String>) -> Result<BTreeMap<String, String>, ApiError> {
    if raw.len() > MAX_ATTRIBUTES {
        return Err(ApiError::bad_request(format!(
            "identity.attributes: at most {MAX_ATTRIBUTES}"
        )));
    }
    for (k, v) in &raw {
        let key_ok = (1..=MAX_ATTRIBUTE_KEY).contains(&k.chars().count())
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
        if !key_ok {
            return Err(ApiError::bad_request(format!(
                "identity.attributes: a key is 1 to {MAX_ATTRIBUTE_KEY} letters, digits, `_`, `-` or `.`"
            )));
        }
        if v.chars().count() > MAX_ATTRIBUTE_VALUE || v.chars().any(char::is_control) {
            return Err(ApiError::bad_request(format!(
                "identity.attributes: a value is at most {MAX_ATTRIBUTE_VALUE} characters, without control characters"
            )));
        }
    }
    Ok(raw)
}

/// Checks `proof` against the project's identity secrets and records the contact's sighting:
/// the contact the new session is for.
pub async fn identify(
    ctx: &Ctx,
    project: &Project,
    proof: IdentityProof,
) -> Result<TicketContact, ApiError> {
    let secrets = &project.identity_secrets;
    let verified = match (proof.token, proof.user_id, proof.user_hash) {
        (Some(token), None, None) => {
            if proof.email.is_some() || proof.name.is_some() {
                return Err(ApiError::bad_request(
                    "identity: with a token, the email and name come from the token",
                ));
            }
            identity::verify_token(secrets, &token, &project.id, ctx.clock.now())
                .map_err(refused)?
        }
        (None, Some(user_id), Some(hash)) => {
            let external_id =
                identity::external_id(&user_id, "identity.user_id").map_err(refused)?;
            let email = (proof.email.as_deref())
                .map(|e| identity::email(e, "identity.email"))
                .transpose()
                .map_err(refused)?;
            let name = (proof.name.as_deref())
                .map(|n| identity::name(n, "identity.name"))
                .transpose()
                .map_err(refused)?;
            identity::verify_user_hash(secrets, &external_id, &hash).map_err(refused)?;
            Verified {
                external_id,
                email,
                name,
            }
        }
        _ => {
            return Err(ApiError::bad_request(
                "identity: give either user_id with user_hash, or token",
            ))
        }
    };
    let attributes = proof.attributes.map(attributes).transpose()?;
    let contact = seen(ctx, project, verified, attributes).await?;
    Ok(contact.on_ticket())
}

/// Creates the contact, or updates it when something changed or it was last seen a while ago.
async fn seen(
    ctx: &Ctx,
    project: &Project,
    v: Verified,
    attributes: Option<BTreeMap<String, String>>,
) -> Result<Contact, ApiError> {
    let now = ctx.clock.now();
    let id = identity::contact_id(&project.id, &v.external_id);
    let stored = ctx.contact_store.get_contact(&project.id, id).await?;
    let mut next = stored.clone().unwrap_or_else(|| Contact {
        id,
        project_id: project.id.clone(),
        external_id: v.external_id.clone(),
        email: None,
        name: None,
        attributes: BTreeMap::new(),
        verified: true,
        first_seen_at: now,
        last_seen_at: now,
    });
    // What the proof leaves out stays as it was.
    if v.email.is_some() {
        next.email = v.email;
    }
    if v.name.is_some() {
        next.name = v.name;
    }
    if let Some(a) = attributes {
        next.attributes = a;
    }
    next.verified = true;
    let stale = stored
        .as_ref()
        .is_none_or(|s| now - s.last_seen_at >= LAST_SEEN_EVERY);
    let changed = stored.as_ref().is_none_or(|s| {
        (&s.email, &s.name, &s.attributes, s.verified)
            != (&next.email, &next.name, &next.attributes, next.verified)
    });
    if stale || changed {
        next.last_seen_at = now;
        ctx.contact_store.put_contact(&next).await?;
    }
    Ok(next)
}

/// A known visitor of the project.
#[derive(Serialize, ToSchema)]
#[schema(as = Contact)]
pub struct ContactView<'a> {
    id: Uuid,
    /// The customer's own id for the user.
    external_id: &'a str,
    /// Null when not known.
    #[schema(required = true)]
    email: Option<&'a str>,
    /// Null when not known.
    #[schema(required = true)]
    name: Option<&'a str>,
    /// Custom attributes, as the customer's site last gave them.
    attributes: &'a BTreeMap<String, String>,
    /// Whether the customer's backend vouched for the contact.
    verified: bool,
    #[schema(value_type = String, format = DateTime)]
    first_seen_at: String,
    /// When a session last started for the contact (updated at most hourly).
    #[schema(value_type = String, format = DateTime)]
    last_seen_at: String,
}

impl<'a> ContactView<'a> {
    pub(super) fn new(c: &'a Contact) -> Self {
        Self {
            id: c.id,
            external_id: &c.external_id,
            email: c.email.as_deref(),
            name: c.name.as_deref(),
            attributes: &c.attributes,
            verified: c.verified,
            first_seen_at: rfc3339(c.first_seen_at),
            last_seen_at: rfc3339(c.last_seen_at),
        }
    }
}

/// A page of contacts.
#[derive(Serialize, ToSchema)]
pub struct ContactList<'a> {
    contacts: Vec<ContactView<'a>>,
    /// Pass it as `cursor` for the next page; null on the last.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

/// A contact with the tickets they opened.
#[derive(Serialize, ToSchema)]
pub struct ContactDetail<'a> {
    #[serde(flatten)]
    contact: ContactView<'a>,
    /// Their tickets, newest first (the newest 50).
    tickets: Vec<TicketSummary<'a>>,
}

/// Which contacts to list.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ContactsQuery {
    /// Only contacts whose external id, email or name contains this, ignoring case (at most
    /// 200 characters). A search examines 2,000 contacts per page: a short page with a
    /// `next_cursor` has more to look at.
    #[param(max_length = 200)]
    q: Option<String>,
    /// Contacts per page, 1 to 100 (50 by default).
    #[param(minimum = 1, maximum = 100)]
    limit: Option<usize>,
    /// The `next_cursor` of the previous page.
    #[param(
        pattern = "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"
    )]
    cursor: Option<String>,
}

/// GET /v1/projects/{projectId}/contacts?q=&limit=&cursor=
pub async fn list(project: Arc<Project>, ctx: Arc<Ctx>, query: ContactsQuery) -> Response {
    respond(
        async {
            let limit = query.limit.unwrap_or(50);
            if !(1..=100).contains(&limit) {
                return Err(ApiError::bad_request("limit must be between 1 and 100"));
            }
            let after = match query.cursor.as_deref() {
                Some(raw) => Some(
                    Uuid::try_parse(raw)
                        .map_err(|_| ApiError::bad_request("cursor: not a cursor from this API"))?,
                ),
                None => None,
            };
            if query.q.as_deref().is_some_and(|q| q.chars().count() > 200) {
                return Err(ApiError::bad_request("q: at most 200 characters"));
            }
            let q = match query.q.as_deref().map(str::trim) {
                None | Some("") => None,
                Some(q) => Some(q.to_lowercase()),
            };
            let page = ctx
                .contact_store
                .list_contacts(
                    &project.id,
                    &ContactQuery {
                        q,
                        after,
                        limit,
                        scan: None,
                    },
                )
                .await?;
            let body = ContactList {
                contacts: page.contacts.iter().map(ContactView::new).collect(),
                next_cursor: page.next.map(|id| id.to_string()),
            };
            Ok(json(StatusCode::OK, &body))
        }
        .await,
    )
}

/// GET /v1/projects/{projectId}/contacts/{contactId}
pub async fn get(id: String, project: Arc<Project>, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let not_found = || ApiError::not_found("contact not found");
            let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
            let contact =
                (ctx.contact_store.get_contact(&project.id, id).await?).ok_or_else(not_found)?;
            let tickets = ctx
                .contact_store
                .contact_tickets(&project.id, id, CONTACT_TICKETS)
                .await?;
            let body = ContactDetail {
                contact: ContactView::new(&contact),
                tickets: tickets.iter().map(TicketSummary::new).collect(),
            };
            Ok(json(StatusCode::OK, &body))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/contacts/{contactId} (owner, admin or the admin key):
/// erases the contact and every ticket it opened ([`fleety_actors::contact_erasure`]). A
/// contact that is not there (never was, or was erased already) is a 404, as for a ticket.
pub async fn erase(id: String, project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let not_found = || ApiError::not_found("contact not found");
            let id = Uuid::try_parse(&id).map_err(|_| not_found())?;
            let (tickets, store) = (&ctx.system.tickets, ctx.contact_store.as_ref());
            let erased = fleety_actors::contact_erasure::erase(
                tickets,
                store,
                ctx.clock.as_ref(),
                &project.id,
                id,
            )
            .await?
            .ok_or_else(not_found)?;
            // Ids and counts only: the contact's name and email are what was erased.
            let mut record = who
                .record(&project.id, ctx.clock.now(), "contact.erased")
                .target(AuditTarget::new("contact", id));
            record.changes = serde_json::json!({ "tickets": erased.tickets });
            if let Err(e) = ctx.audit_store.record_audit(&record).await {
                tracing::warn!(contact = %id, error = %e, "recording a contact's erasure failed");
            }
            Ok(json(StatusCode::OK, &super::Done::new("Contact erased")))
        }
        .await,
    )
}

/// An identified visitor's own tickets.
#[derive(Serialize, ToSchema)]
pub struct SessionTickets<'a> {
    /// The verified contact the session is for; null for an anonymous session.
    #[schema(required = true)]
    contact: Option<&'a TicketContact>,
    /// The contact's tickets, newest first (the newest 50); empty for an anonymous session.
    tickets: Vec<TicketSummary<'a>>,
}

/// GET /v1/session/tickets
pub async fn session_tickets(session: Session, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            let contact = session.claims.ctc.as_ref();
            let tickets = match contact {
                Some(c) => {
                    ctx.contact_store
                        .contact_tickets(&session.project.id, c.id, CONTACT_TICKETS)
                        .await?
                }
                None => Vec::new(),
            };
            let body = SessionTickets {
                contact,
                tickets: tickets.iter().map(TicketSummary::new).collect(),
            };
            Ok(json(StatusCode::OK, &body))
        }
        .await,
    )
}

/// An identity secret, without the secret.
#[derive(Serialize, ToSchema)]
pub struct IdentitySecretView<'a> {
    /// Names the secret, to remove it.
    id: &'a str,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
}

/// The project's identity secrets, oldest first: each one verifies.
#[derive(Serialize, ToSchema)]
pub struct IdentitySecretList<'a> {
    identity_secrets: Vec<IdentitySecretView<'a>>,
}

/// A new identity secret, shown this once.
#[derive(Serialize, ToSchema)]
pub struct CreatedIdentitySecret<'a> {
    id: &'a str,
    /// The HMAC key: give it to the backend that vouches for users. Not shown again.
    secret: &'a str,
    #[schema(value_type = String, format = DateTime)]
    created_at: String,
}

fn secret_target(id: &str) -> AuditTarget {
    AuditTarget::new("identity_secret", id)
}

/// GET /v1/projects/{projectId}/identity-secrets
pub async fn list_secrets(project: Arc<Project>) -> Response {
    let identity_secrets = (project.identity_secrets.iter())
        .map(|s| IdentitySecretView {
            id: &s.id,
            created_at: rfc3339(s.created_at),
        })
        .collect();
    json(StatusCode::OK, &IdentitySecretList { identity_secrets })
}

/// POST /v1/projects/{projectId}/identity-secrets
pub async fn create_secret(project: Arc<Project>, who: AuditBy, ctx: Arc<Ctx>) -> Response {
    respond(
        async {
            if project.identity_secrets.len() >= MAX_IDENTITY_SECRETS {
                return Err(ApiError::conflict(format!(
                    "a project holds at most {MAX_IDENTITY_SECRETS} identity secrets; remove an old one first"
                )));
            }
            let now = ctx.clock.now();
            let secret = identity::generate_secret(now);
            let mut next = (*project).clone();
            next.identity_secrets.push(secret.clone());
            let record = who
                .record(&project.id, now, "identity_secret.created")
                .target(secret_target(&secret.id));
            audit::recorded(Some(record), ctx.projects.update(next)).await?;
            let body = CreatedIdentitySecret {
                id: &secret.id,
                secret: &secret.secret,
                created_at: rfc3339(secret.created_at),
            };
            Ok(json(StatusCode::CREATED, &body))
        }
        .await,
    )
}

/// DELETE /v1/projects/{projectId}/identity-secrets/{secretId}
pub async fn delete_secret(
    id: String,
    project: Arc<Project>,
    who: AuditBy,
    ctx: Arc<Ctx>,
) -> Response {
    respond(
        async {
            if !project.identity_secrets.iter().any(|s| s.id == id) {
                return Err(ApiError::not_found("identity secret not found"));
            }
            let mut next = (*project).clone();
            next.identity_secrets.retain(|s| s.id != id);
            let record = who
                .record(&project.id, ctx.clock.now(), "identity_secret.deleted")
                .target(secret_target(&id));
            audit::recorded(Some(record), ctx.projects.update(next)).await?;
            Ok(json(
                StatusCode::OK,
                &super::Done::new("Identity secret removed"),
            ))
        }
        .await,
    )
}
