//! The address a ticket's visitor wants replies emailed to (issue 28): the widget's optional
//! "get replies by email" field, `PUT /v1/tickets/{projectId}/{slug}/visitor-email`.
//!
//! The address goes on the ticket's visitor marked unverified (`email_unverified`): nobody
//! checked that it is theirs. The visitor emails of `crate::visitor_mail` go to it unless the
//! ticket's verified contact has an address; that one is never replaced (409). Who may set it
//! is who may read the ticket (`ticket_access`): in `session` mode, the ticket's session, its
//! contact's, its key, or an agent.

use std::sync::Arc;

use fleety_actors::domain::Email;
use fleety_actors::events::TicketSummary;
use fleety_actors::ticket::Command;
use http::StatusCode;
use serde::{Deserialize, Deserializer};
use utoipa::ToSchema;
use warp::reply::Response;

use super::access::Visitor;
use super::error::{json, respond};
use super::ApiError;
use super::Ctx;

/// The visitor's address for replies.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetVisitorEmail {
    /// Where replies go from now on; null removes the address.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<Email>, required = true)]
    email: Option<Option<String>>,
}

/// `null` and a missing field differ: null removes the address, a missing one is a mistake.
fn present<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

/// PUT /v1/tickets/{projectId}/{slug}/visitor-email
pub async fn set(slug: String, visitor: Visitor, ctx: Arc<Ctx>, req: SetVisitorEmail) -> Response {
    respond(
        async {
            let key = super::tickets::ticket_key(&visitor.project, &slug)?;
            let email = req.email.ok_or_else(|| {
                ApiError::bad_request("email is required: an address, or null to remove it")
            })?;
            let email = email
                .as_deref()
                .map(|e| Email::parse(e.trim()))
                .transpose()
                .map_err(|e| ApiError::bad_request(e.0))?;
            super::ticket_access::admit(&ctx, &visitor, &key).await?;
            let set = ctx
                .system
                .tickets
                .run(&key, Command::SetVisitorEmail { email });
            let ticket = set.await?.into_ticket()?;
            Ok(json(StatusCode::OK, &TicketSummary::new(&ticket)))
        }
        .await,
    )
}
