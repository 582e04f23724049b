//! Contacts: the known visitors of a project (issue 28). A contact is a user of the customer's
//! own product, named by the customer's id for them (`external_id`), whom the customer's
//! backend vouched for when a widget session started. This module owns the contact's shape,
//! its limits, and the paging of a project's contacts; the storage port keeps them
//! ([`crate::store::ContactStore`]).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::domain::ProjectId;

/// Custom attributes one contact may carry.
pub const MAX_ATTRIBUTES: usize = 20;
/// Characters of an attribute's key.
pub const MAX_ATTRIBUTE_KEY: usize = 40;
/// Characters of an attribute's value.
pub const MAX_ATTRIBUTE_VALUE: usize = 200;
/// Characters of an external id.
pub const MAX_EXTERNAL_ID: usize = 200;
/// Contacts a search examines per page at most, so one request stays bounded however many
/// contacts a project has.
pub const CONTACT_SCAN: usize = 2_000;

/// A known visitor of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contact {
    /// Derived from the project and the external id, so two nodes meeting a new user at once
    /// name the same contact, and an external id names one contact per project.
    pub id: Uuid,
    pub project_id: ProjectId,
    /// The customer's own id for the user.
    pub external_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, String>,
    /// Whether the customer's backend vouched for this contact (a user hash or a signed
    /// token); contacts known only from what a visitor typed are not.
    pub verified: bool,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
}

impl Contact {
    /// The contact as a ticket keeps it.
    pub fn on_ticket(&self) -> TicketContact {
        TicketContact {
            id: self.id,
            external_id: self.external_id.clone(),
            name: self.name.clone(),
            email: self.email.clone(),
            verified: self.verified,
        }
    }
}

/// The contact a ticket was opened by, as the contact was then (the contact's own page has
/// them as they are now).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct TicketContact {
    pub id: Uuid,
    pub external_id: String,
    /// Null when not known.
    #[schema(required = true)]
    pub name: Option<String>,
    /// Null when not known.
    #[schema(required = true)]
    pub email: Option<String>,
    pub verified: bool,
}

/// Which contacts a listing wants: a page of a project's contacts in id order.
#[derive(Debug, Clone, Default)]
pub struct ContactQuery {
    /// Only contacts whose external id, email or name contains this, lower-cased. A search
    /// examines [`CONTACT_SCAN`] contacts per page at most (see [`ContactQuery::scan`]).
    pub q: Option<String>,
    /// Continue after this contact (exclusive).
    pub after: Option<Uuid>,
    /// Page size; backends clamp it to 1..=100.
    pub limit: usize,
    /// How many contacts a search examines per page; `None`: [`CONTACT_SCAN`].
    pub scan: Option<usize>,
}

impl ContactQuery {
    pub fn matches(&self, c: &Contact) -> bool {
        let Some(q) = self.q.as_deref() else {
            return true;
        };
        let has = |s: &str| s.to_lowercase().contains(q);
        has(&c.external_id)
            || c.email.as_deref().is_some_and(has)
            || c.name.as_deref().is_some_and(has)
    }

    /// Contacts one page may examine: all of them for a plain listing, a bounded number for
    /// a search.
    pub fn scan_limit(&self) -> usize {
        match self.q {
            Some(_) => self.scan.unwrap_or(CONTACT_SCAN).max(1),
            None => usize::MAX,
        }
    }

    /// Pages `in_order` (the project's contacts after the cursor, in id order) as this query
    /// wants them; the shared logic of every backend, which only supplies the rows.
    pub fn page<I>(&self, in_order: I) -> Result<ContactPage, crate::store::StoreError>
    where
        I: IntoIterator<Item = Result<Contact, crate::store::StoreError>>,
    {
        let limit = self.limit.clamp(1, 100);
        let scan = self.scan_limit();
        let mut out: Vec<Contact> = Vec::with_capacity(limit + 1);
        let mut stopped_at = None;
        for (examined, row) in in_order.into_iter().enumerate() {
            if examined == scan {
                break;
            }
            let contact = row?;
            if examined + 1 == scan {
                stopped_at = Some(contact.id);
            }
            if self.matches(&contact) {
                out.push(contact);
                if out.len() > limit {
                    break;
                }
            }
        }
        if out.len() > limit {
            out.truncate(limit);
            let next = out.last().map(|c| c.id);
            return Ok(ContactPage {
                contacts: out,
                next,
            });
        }
        Ok(ContactPage {
            contacts: out,
            next: stopped_at,
        })
    }
}

/// A page of contacts.
#[derive(Debug, Clone)]
pub struct ContactPage {
    pub contacts: Vec<Contact>,
    /// Where the next page starts; `None` when this page is the last.
    pub next: Option<Uuid>,
}

/// A contact erasure that has begun ([`crate::contact_erasure`]): the intent written before any
/// of the contact is erased, so a restart finishes it. Names the contact only.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContactErasure {
    pub project_id: ProjectId,
    pub contact_id: Uuid,
    pub requested_at: DateTime<Utc>,
}

/// The order contacts are listed in: their ids' text (lowercase, hyphenated), which every
/// backend sorts alike.
pub fn order_key(id: Uuid) -> String {
    id.hyphenated().to_string()
}

/// A project's identity secret: the HMAC key with which the customer's backend vouches for its
/// users (a user hash, or the signature of a token). Kept as it is, not as a digest: checking
/// an HMAC needs the key itself. Shown to its owner once, at creation.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdentitySecret {
    /// A short public name for the secret, so owners can tell their secrets apart and remove
    /// the old one after a rotation.
    pub id: String,
    pub secret: String,
    pub created_at: DateTime<Utc>,
}

impl std::fmt::Debug for IdentitySecret {
    // Never the secret, wherever a project is logged.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySecret")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

/// Identity secrets one project may hold at once: the current one and a few being rotated out.
pub const MAX_IDENTITY_SECRETS: usize = 3;
