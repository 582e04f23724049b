//! The support domain's values: projects, tickets, messages, participants and read cursors.
//!
//! Every value that arrives from outside is parsed once, at the edge, into one of these types; a
//! value of the type is valid by construction, so the actors and stores never check it again.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::message_id::MessageId;

/// Why a value from outside was refused. The text is written for the API client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidValue(pub String);

fn invalid(msg: impl Into<String>) -> InvalidValue {
    InvalidValue(msg.into())
}

/// A tenant's id: 1 to 64 characters of `[A-Za-z0-9_-]`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ProjectId(String);

impl ProjectId {
    pub const MAX_LEN: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid(
                "project_id must be 1-64 characters of letters, digits, '_' or '-'",
            ))
        }
    }

    /// A fresh random id, `proj_` followed by 16 lowercase letters and digits.
    pub fn generate() -> Self {
        Self(format!("proj_{}", random_token(16)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ProjectId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ProjectId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// `n` random characters from `[a-z0-9]`.
pub fn random_token(n: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..n)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

/// A ticket's public name within its project, shaped `adjective-noun-NNN`.
///
/// Parsing only checks the shape; whether such a ticket exists is the store's business.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Slug(String);

impl Slug {
    /// Letters in each of the two words, at most (the generator's words have at most 10).
    pub const MAX_WORD_LEN: usize = 16;
    pub const MAX_LEN: usize = 2 * Self::MAX_WORD_LEN + 5;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        if Self::well_formed(raw) {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid("not a ticket slug"))
        }
    }

    /// `word-word-123`: two words of 1 to 16 lowercase letters and three digits. Checked on the
    /// bytes, because every ticket request parses a slug.
    fn well_formed(raw: &str) -> bool {
        let b = raw.as_bytes();
        if b.len() > Self::MAX_LEN || b.len() < 7 {
            return false;
        }
        let (words, number) = b.split_at(b.len() - 4);
        if number[0] != b'-' || !number[1..].iter().all(u8::is_ascii_digit) {
            return false;
        }
        let word = |w: Option<&[u8]>| {
            w.is_some_and(|w| {
                (1..=Self::MAX_WORD_LEN).contains(&w.len()) && w.iter().all(u8::is_ascii_lowercase)
            })
        };
        let mut parts = words.split(|&c| c == b'-');
        word(parts.next()) && word(parts.next()) && parts.next().is_none()
    }

    /// Only for values built by [`crate::slug::SlugGenerator`], which are well formed by construction.
    pub(crate) fn from_generated(s: String) -> Self {
        debug_assert!(Self::well_formed(&s), "generated slug {s} is malformed");
        Self(s)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Slug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Slug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

/// Checks a text and trims it. The length is counted in characters before trimming, and at least
/// one character must be other than whitespace when `min` is 1: the same rule the API
/// description states (`schema::text`), so a client can check a value before sending it.
fn bounded_text(raw: &str, field: &str, min: usize, max: usize) -> Result<String, InvalidValue> {
    if raw.chars().count() > max {
        return Err(invalid(format!("{field} must be at most {max} characters")));
    }
    if raw
        .chars()
        .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
    {
        return Err(invalid(format!(
            "{field} must not contain control characters"
        )));
    }
    let text = raw.trim();
    if min > 0 && text.is_empty() {
        return Err(invalid(format!("{field} must not be empty")));
    }
    Ok(text.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $field:literal, $min:expr, $max:expr) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// 0 (may be empty) or 1 (must hold something besides whitespace).
            pub const MIN_CHARS: usize = $min;
            pub const MAX_CHARS: usize = $max;

            pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
                bounded_text(raw, $field, $min, $max).map(Self)
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                crate::schema::text($min, $max).into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

text_value!(
    /// A ticket's title: 1 to 200 characters after trimming.
    Title, "title", 1, 200
);
text_value!(
    /// A ticket's description: up to 10,000 characters; may be empty.
    Description, "description", 0, 10_000
);
text_value!(
    /// The text of one message on a ticket: 1 to 10,000 characters after trimming.
    MessageBody, "content", 1, 10_000
);
text_value!(
    /// A project's display name: 1 to 100 characters.
    ProjectName, "name", 1, 100
);
text_value!(
    /// An agent's display name, on assignments and internal notes: 1 to 80 characters.
    AgentName, "agent name", 1, 80
);
text_value!(
    /// A visitor's name, as the site that embeds the widget or calls the API knows it: 1 to 80
    /// characters.
    VisitorName, "visitor.name", 1, 80
);

/// A visitor's email address, checked for its shape only (nobody is mailed): a local part of 1
/// to 64 of the characters RFC 5322 allows unquoted, `@`, and a domain of two or more labels
/// of letters, digits and hyphens, 254 characters at most. Exactly what
/// [`Email::PATTERN`] says, so a client can check an address before sending it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;
    pub const PATTERN: &'static str =
        r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9-]{1,63}(\.[A-Za-z0-9-]{1,63})+$";

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let bad = || invalid("visitor.email must be an email address (name@example.com)");
        if raw.len() > Self::MAX_CHARS {
            return Err(invalid(format!(
                "visitor.email must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        let (local, domain) = raw.split_once('@').ok_or_else(bad)?;
        let local_ok = (1..=64).contains(&local.len())
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+/=?^_`{|}~.-".contains(&b));
        let labels: Vec<&str> = domain.split('.').collect();
        let domain_ok = labels.len() >= 2
            && labels.iter().all(|l| {
                (1..=63).contains(&l.len())
                    && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if local_ok && domain_ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(bad())
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl utoipa::PartialSchema for Email {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(Self::MAX_CHARS))
            .pattern(Some(Self::PATTERN))
            .description(Some("An email address, checked for its shape only"))
            .into()
    }
}

impl utoipa::ToSchema for Email {}

/// Who the visitor behind a ticket is, when the site knows: either may be missing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VisitorContact {
    /// Null when not known.
    #[schema(required = true)]
    pub name: Option<VisitorName>,
    /// Null when not known.
    #[schema(required = true)]
    pub email: Option<Email>,
    /// `true` when the visitor typed `email` into the widget's "get replies by email" field
    /// after the ticket was opened (`PUT …/visitor-email`): nobody checked that it is theirs.
    /// Left out for an address given when the ticket was opened, and without an address.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub email_unverified: bool,
}

text_value!(
    /// A knowledge-base article's title: 1 to 200 characters.
    ArticleTitle, "title", 1, 200
);
text_value!(
    /// A knowledge-base article's text: 1 to 50,000 characters. Blank lines separate the
    /// passages the assistant retrieves.
    ArticleBody, "body", 1, 50_000
);
text_value!(
    /// The assistant's name, as the visitor sees it ("Ava"): up to 60 characters; empty for
    /// none.
    AssistantName, "assistant_name", 0, 60
);
text_value!(
    /// The assistant's first words to a visitor: up to 500 characters; empty for the default.
    AssistantGreeting, "assistant_greeting", 0, 500
);
text_value!(
    /// The admins' instructions to the assistant (tone, what never to promise): up to 4,000
    /// characters; empty for none.
    AssistantGuidance, "assistant_guidance", 0, 4_000
);

text_value!(
    /// What a visitor adds to their satisfaction rating: up to 1,000 characters; may be empty.
    SatisfactionComment, "comment", 0, 1_000
);

/// A visitor's satisfaction with how their ticket was handled (CSAT), given once, after the
/// ticket was resolved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Satisfaction {
    /// 1 (very unhappy) to 5 (very happy).
    #[schema(minimum = 1, maximum = 5)]
    pub score: u8,
    /// Empty when the visitor wrote nothing.
    #[schema(value_type = SatisfactionComment)]
    pub comment: SatisfactionComment,
    #[schema(value_type = String, format = DateTime)]
    pub rated_at: DateTime<Utc>,
}

impl Satisfaction {
    pub const MAX_SCORE: u8 = 5;

    /// Checks a score: a whole number from 1 to 5.
    pub fn score(raw: i64) -> Result<u8, InvalidValue> {
        match u8::try_from(raw) {
            Ok(n @ 1..=Self::MAX_SCORE) => Ok(n),
            _ => Err(invalid("score must be a whole number from 1 to 5")),
        }
    }
}

/// Who speaks or reads on a ticket: the visitor, or the project's support agents.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Participant {
    User,
    Admin,
    /// The AI assistant, as the author of the chat it hands over when it opens a ticket. It is
    /// never a reader, and no client may speak as it.
    Assistant,
}

impl Participant {
    pub const ALL: [Participant; 2] = [Participant::User, Participant::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            Participant::User => "user",
            Participant::Admin => "admin",
            Participant::Assistant => "assistant",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "user" => Ok(Participant::User),
            "admin" => Ok(Participant::Admin),
            "assistant" => Ok(Participant::Assistant),
            _ => Err(invalid("must be \"user\" or \"admin\"")),
        }
    }
}

/// Where a ticket is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TicketStatus {
    /// Waiting for an agent.
    Open,
    /// Waiting for the visitor.
    Pending,
    /// The agent considers it solved; a visitor's reply reopens it.
    Resolved,
    /// Finished; nobody can post to it any more.
    Closed,
}

impl TicketStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketStatus::Open => "open",
            TicketStatus::Pending => "pending",
            TicketStatus::Resolved => "resolved",
            TicketStatus::Closed => "closed",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "open" => Ok(TicketStatus::Open),
            "pending" => Ok(TicketStatus::Pending),
            "resolved" => Ok(TicketStatus::Resolved),
            "closed" => Ok(TicketStatus::Closed),
            _ => Err(invalid(
                "status must be one of \"open\", \"pending\", \"resolved\", \"closed\"",
            )),
        }
    }
}

/// How a ticket came to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TicketSource {
    /// Created through the public ticket endpoint.
    Api,
    /// Opened by the assistant during a chat.
    Chat,
}

/// A tenant: its settings and the hash of its admin key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Project {
    pub id: ProjectId,
    pub name: String,
    /// Exact origins (`scheme://host[:port]`) allowed to call the public API from a browser.
    pub allowed_origins: Vec<String>,
    /// Hex SHA-256 of the admin key; the key itself is never stored.
    pub admin_key_hash: String,
    pub created_at: DateTime<Utc>,
    /// How the assistant introduces itself, and the admins' guidance to it. Absent from
    /// projects stored before it existed: the defaults.
    #[serde(default)]
    pub assistant: AssistantProfile,
    /// Set when the project asks its visitors no satisfaction rating; projects stored before
    /// the setting existed ask.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub csat_disabled: bool,
    /// The keys that verify the project's known visitors ([`crate::contact`]), oldest first;
    /// none until an owner creates one.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub identity_secrets: Vec<crate::contact::IdentitySecret>,
    /// Who may read and write the project's tickets through the public endpoints; projects
    /// stored before the setting existed keep the slug rule.
    #[serde(default, skip_serializing_if = "TicketAccess::is_slug")]
    pub ticket_access: TicketAccess,
    /// How long finished tickets are kept; projects stored before the setting existed keep
    /// them for good.
    #[serde(default, skip_serializing_if = "Retention::keeps_all")]
    pub retention: Retention,
}

/// How long a project keeps its data (issue 29): what the server erases by itself, in the
/// background, once it is old enough. Nothing by default.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Retention {
    /// Erase a ticket once it has been resolved or closed, with no change since, for this
    /// many days (1 to 3650); null keeps tickets for good.
    #[serde(default)]
    #[schema(required = true, minimum = 1, maximum = 3650)]
    pub tickets_after_days: Option<u32>,
}

impl Retention {
    /// The longest a setting may ask for: ten years.
    pub const MAX_DAYS: u32 = 3650;

    pub fn keeps_all(&self) -> bool {
        self.tickets_after_days.is_none()
    }

    /// A number of days as a setting: 1 to [`Retention::MAX_DAYS`].
    pub fn days(n: i64) -> Result<u32, InvalidValue> {
        u32::try_from(n)
            .ok()
            .filter(|d| (1..=Self::MAX_DAYS).contains(d))
            .ok_or_else(|| InvalidValue(format!("days: 1 to {}", Self::MAX_DAYS)))
    }
}

/// How a project's tickets are guarded on the public endpoints.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum TicketAccess {
    /// Whoever knows a ticket's slug may read and write it (the seed's rule).
    #[default]
    Slug,
    /// Only the session that opened a ticket, the sessions of its verified contact, the
    /// holder of its ticket key and the project's agents; anyone else is told the ticket
    /// does not exist.
    Session,
}

impl TicketAccess {
    pub fn as_str(self) -> &'static str {
        match self {
            TicketAccess::Slug => "slug",
            TicketAccess::Session => "session",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "slug" => Ok(TicketAccess::Slug),
            "session" => Ok(TicketAccess::Session),
            _ => Err(invalid("ticket_access must be \"slug\" or \"session\"")),
        }
    }

    pub fn is_slug(&self) -> bool {
        *self == TicketAccess::Slug
    }
}

/// A project's settings for its assistant. Each text is trimmed; an empty one is unset.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AssistantProfile {
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub greeting: String,
    #[serde(default)]
    pub guidance: String,
}

impl AssistantProfile {
    /// The name on one line, or `None` when unset.
    pub fn name(&self) -> Option<String> {
        let name = self.name.split_whitespace().collect::<Vec<_>>().join(" ");
        (!name.is_empty()).then_some(name)
    }

    pub fn greeting(&self) -> Option<&str> {
        let g = self.greeting.trim();
        (!g.is_empty()).then_some(g)
    }

    pub fn guidance(&self) -> Option<&str> {
        let g = self.guidance.trim();
        (!g.is_empty()).then_some(g)
    }
}

/// Origins a project may allow.
pub const MAX_ORIGINS: usize = 50;

/// Normalises and checks a browser origin: `scheme://host[:port]`, lowercase, no path.
pub fn parse_origin(raw: &str) -> Result<String, InvalidValue> {
    let bad = || invalid(format!("{raw:?} is not an origin like https://example.com"));
    let lower = raw.to_ascii_lowercase();
    let rest = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
        .ok_or_else(bad)?;
    let host_ok = !rest.is_empty()
        && rest.len() <= 253
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'));
    if !host_ok || rest.starts_with(':') || rest.ends_with(':') {
        return Err(bad());
    }
    Ok(lower)
}

/// A label agents put on tickets to sort them: 1 to 32 letters, digits, `-` or `_`, compared
/// exactly (`Billing` and `billing` are two tags).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Tag(String);

impl Tag {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = (1..=Self::MAX_LEN).contains(&raw.len())
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        match ok {
            true => Ok(Tag(raw.to_owned())),
            false => Err(invalid("a tag is 1 to 32 letters, digits, '-' or '_'")),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Tag {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, Type};
        ObjectBuilder::new()
            .schema_type(Type::String)
            .min_length(Some(1))
            .max_length(Some(Self::MAX_LEN))
            .pattern(Some("^[A-Za-z0-9_-]{1,32}$"))
            .description(Some("A ticket's tag: 1 to 32 letters, digits, '-' or '_'."))
            .into()
    }
}
/// Named apart from the knowledge base's article tags, which follow other rules.
impl utoipa::ToSchema for Tag {
    fn name() -> std::borrow::Cow<'static, str> {
        "TicketTag".into()
    }
}

/// A ticket's tags: at most [`Tags::MAX`], each once, in the order they were given.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct Tags(Vec<Tag>);

impl Tags {
    pub const MAX: usize = 20;

    /// Parses a list as a client sends it: at most [`Tags::MAX`] entries, each a [`Tag`]; a
    /// tag given twice is kept once.
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<Self, InvalidValue> {
        if raw.len() > Self::MAX {
            return Err(invalid(format!("at most {} tags", Self::MAX)));
        }
        let mut tags: Vec<Tag> = Vec::with_capacity(raw.len());
        for tag in raw {
            let tag = Tag::parse(tag.as_ref())?;
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        Ok(Tags(tags))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn contains(&self, tag: &Tag) -> bool {
        self.0.contains(tag)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Tag> {
        self.0.iter()
    }
}

impl<'de> Deserialize<'de> for Tags {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = Vec::<String>::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for Tags {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ArrayBuilder::new()
            .items(utoipa::openapi::Ref::from_schema_name("TicketTag"))
            .max_items(Some(Self::MAX))
            .description(Some(
                "A ticket's tags, at most 20; a tag given twice is kept once.",
            ))
            .into()
    }
}
impl utoipa::ToSchema for Tags {
    fn name() -> std::borrow::Cow<'static, str> {
        "TicketTags".into()
    }

    fn schemas(
        out: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        out.push(("TicketTag".into(), <Tag as utoipa::PartialSchema>::schema()));
    }
}

/// A support ticket's own fields; its messages are stored separately.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ticket {
    pub id: Uuid,
    pub slug: Slug,
    pub project_id: ProjectId,
    pub title: Title,
    pub description: Description,
    pub status: TicketStatus,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub source: TicketSource,
    /// The anonymous chat session that opened the ticket, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The agent the ticket is assigned to, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee: Option<AgentName>,
    /// The member the ticket is assigned to, as they were when it was assigned (`assignee` is
    /// then their name); `None` for nobody, for a free-text assignee and for tickets assigned
    /// before members existed. Readers show a deactivated member's tickets as unassigned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assignee_member: Option<MessageAgent>,
    /// The agents' labels; a ticket stored before tags existed has none.
    #[serde(default, skip_serializing_if = "Tags::is_empty")]
    pub tags: Tags,
    /// Who the visitor is, when whoever opened the ticket said; never changes afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visitor: Option<VisitorContact>,
    /// The visitor's rating, once given; never changes afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub satisfaction: Option<Box<Satisfaction>>,
    /// The contact who opened the ticket from a verified session, as they were then; never
    /// changes afterwards.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<Box<crate::contact::TicketContact>>,
}

impl Ticket {
    /// A ticket as it is opened at `now`: open, with nobody assigned, its version its creation
    /// time, and a fresh id.
    pub fn opened(
        project_id: ProjectId,
        slug: Slug,
        title: Title,
        description: Description,
        source: TicketSource,
        session_id: Option<String>,
        now: DateTime<Utc>,
    ) -> Ticket {
        Ticket {
            id: Uuid::new_v4(),
            slug,
            project_id,
            title,
            description,
            status: TicketStatus::Open,
            created_at: now,
            updated_at: now,
            source,
            session_id,
            assignee: None,
            assignee_member: None,
            tags: Tags::default(),
            visitor: None,
            satisfaction: None,
            contact: None,
        }
    }

    /// Whether the two versions are assigned to the same one: the same name and the same
    /// member (two members may share a name).
    pub fn same_assignee(&self, other: &Ticket) -> bool {
        self.assignee == other.assignee
            && self.assignee_member.as_ref().map(|m| m.id)
                == other.assignee_member.as_ref().map(|m| m.id)
    }

    /// Roughly how many bytes of text the ticket carries, beyond its fixed-size fields.
    pub fn text_len(&self) -> usize {
        self.title.as_str().len() + self.description.as_str().len()
    }
}

/// An agent's note on a ticket: seen by agents only, never by the visitor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Note {
    /// Time-ordered within the ticket, like message ids.
    pub id: MessageId,
    pub author: AgentName,
    pub content: MessageBody,
    pub created_at: DateTime<Utc>,
}

/// One change to a ticket's fields, kept with the ticket so the agents' thread can show who
/// changed what, and when, among the messages and notes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Activity {
    /// Time-ordered within the ticket, after every message and note id handed out before it.
    pub id: MessageId,
    pub created_at: DateTime<Utc>,
    pub actor: Actor,
    pub change: ActivityChange,
}

/// Who changed a ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Actor {
    /// A signed-in member, as they were when they acted.
    Member { member: MessageAgent },
    /// The project's admin key, which names nobody.
    AdminKey,
    /// The visitor: their reply reopens a resolved ticket.
    Visitor,
}

/// What changed. Assignees are kept as the names the ticket showed, so the entry reads the
/// same after the member is renamed or leaves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "field", rename_all = "snake_case")]
pub enum ActivityChange {
    Status {
        from: TicketStatus,
        to: TicketStatus,
    },
    Assignee {
        from: Option<String>,
        to: Option<String>,
    },
    Tags {
        added: Vec<String>,
        removed: Vec<String>,
    },
}

impl ActivityChange {
    /// The entries a new version of a ticket's fields makes: one per field that changed.
    pub fn between(before: &Ticket, after: &Ticket) -> Vec<ActivityChange> {
        let mut out = Vec::new();
        if before.status != after.status {
            out.push(ActivityChange::Status {
                from: before.status,
                to: after.status,
            });
        }
        if before.assignee != after.assignee {
            let name = |a: &Option<AgentName>| a.as_ref().map(|n| n.as_str().to_owned());
            out.push(ActivityChange::Assignee {
                from: name(&before.assignee),
                to: name(&after.assignee),
            });
        }
        if before.tags != after.tags {
            let names = |a: &Tags, b: &Tags| -> Vec<String> {
                a.iter()
                    .filter(|t| !b.contains(t))
                    .map(|t| t.as_str().to_owned())
                    .collect()
            };
            let added = names(&after.tags, &before.tags);
            let removed = names(&before.tags, &after.tags);
            // Reordering the same tags is not worth an entry.
            if !added.is_empty() || !removed.is_empty() {
                out.push(ActivityChange::Tags { added, removed });
            }
        }
        out
    }
}

/// One message on a ticket, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    pub id: MessageId,
    pub author: Participant,
    pub content: MessageBody,
    pub timestamp: DateTime<Utc>,
    /// The client's `Idempotency-Key`, so a retried request finds the message it already made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idempotency_key: Option<IdempotencyKey>,
    /// The member who wrote an agent's message, as they were when they wrote it; `None` for
    /// the visitor's and the assistant's messages, for the admin key's, and for every message
    /// stored before members existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<MessageAgent>,
}

/// Who of a project's members wrote an agent's message: copied into the message when it is
/// posted, so a later change of name or avatar does not rewrite what was said. Also the member
/// a ticket is assigned to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MessageAgent {
    /// The member's id.
    pub id: Uuid,
    /// The member's display name.
    pub name: String,
    /// The member's avatar, an http or https URL; null when they have none.
    #[schema(required = true)]
    pub avatar_url: Option<String>,
}

/// A client's name for one request, 1 to 128 printable ASCII characters: a retry with the same
/// key is answered with the original result instead of being carried out again.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IdempotencyKey(String);

impl IdempotencyKey {
    pub const MAX_LEN: usize = 128;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let ok = !raw.is_empty()
            && raw.len() <= Self::MAX_LEN
            && raw.bytes().all(|b| b.is_ascii_graphic());
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err(invalid(
                "Idempotency-Key must be 1-128 printable ASCII characters without spaces",
            ))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A knowledge-base article of one project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Article {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub title: ArticleTitle,
    pub body: ArticleBody,
    /// Free-form labels an agent filters by; searched too.
    #[serde(default)]
    pub tags: Vec<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// The language it is written in, which decides how it is searched. Articles stored before
    /// languages existed are English.
    #[serde(default)]
    pub language: Language,
    /// Where the article is published, for the assistant to link to when it cites it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<ArticleUrl>,
}

/// A language the knowledge base can search in: articles are written in one, and a visitor's
/// question is read in the widget's. Written as its BCP-47 primary language subtag.
#[derive(
    Debug,
    Clone,
    Copy,
    Default,
    PartialEq,
    Eq,
    Hash,
    PartialOrd,
    Ord,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum Language {
    Ar,
    De,
    #[default]
    En,
    Es,
    Fr,
    It,
    Nl,
    Pt,
}

impl Language {
    pub const ALL: [Language; 8] = [
        Language::Ar,
        Language::De,
        Language::En,
        Language::Es,
        Language::Fr,
        Language::It,
        Language::Nl,
        Language::Pt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Language::Ar => "ar",
            Language::De => "de",
            Language::En => "en",
            Language::Es => "es",
            Language::Fr => "fr",
            Language::It => "it",
            Language::Nl => "nl",
            Language::Pt => "pt",
        }
    }

    /// Reads a BCP-47 tag (`de`, `de-AT`, `pt-BR`, any case) as the language of its primary
    /// subtag. `Ok(None)` for a well-formed tag of a language the search has no analyser for.
    pub fn from_tag(raw: &str) -> Result<Option<Language>, InvalidValue> {
        let bad = || {
            invalid(format!(
                "language: {:?} is not a language tag like \"en\" or \"de-AT\"",
                raw.chars().take(40).collect::<String>()
            ))
        };
        let tag = raw.trim();
        if tag.is_empty()
            || tag.len() > 35
            || !tag
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        {
            return Err(bad());
        }
        if tag
            .split(['-', '_'])
            .any(|part| !(1..=8).contains(&part.len()))
        {
            return Err(bad());
        }
        let primary = tag.split(['-', '_']).next().unwrap_or("");
        if !(2..=3).contains(&primary.len()) || !primary.chars().all(|c| c.is_ascii_alphabetic()) {
            return Err(bad());
        }
        let primary = primary.to_ascii_lowercase();
        Ok(Language::ALL.into_iter().find(|l| l.as_str() == primary))
    }

    /// Reads an article's language: a tag whose primary subtag is a supported language.
    pub fn parse(raw: &str) -> Result<Language, InvalidValue> {
        Language::from_tag(raw)?.ok_or_else(|| {
            let all: Vec<&str> = Language::ALL.iter().map(|l| l.as_str()).collect();
            invalid(format!(
                "language: {:?} is not supported; use one of {}",
                raw.trim(),
                all.join(", ")
            ))
        })
    }
}

/// Characters of an article's link at most.
pub const MAX_ARTICLE_URL_CHARS: usize = 2048;

/// Where an article is published: an absolute http or https URL with a host and no user name or
/// password, at most 2,048 characters. Visitors see it, so nothing else (no `javascript:`, no
/// `data:`) is accepted.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct ArticleUrl(String);

impl ArticleUrl {
    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        let text = raw.trim();
        let bad = |why: &str| {
            invalid(format!(
                "url: {:?} {why}",
                text.chars().take(80).collect::<String>()
            ))
        };
        if text.chars().count() > MAX_ARTICLE_URL_CHARS {
            return Err(invalid(format!(
                "url: at most {MAX_ARTICLE_URL_CHARS} characters"
            )));
        }
        if text.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad("must not contain spaces or control characters"));
        }
        let parsed = url::Url::parse(text).map_err(|_| bad("is not an absolute URL"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(bad("must be an http or https URL"));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(bad("has no host"));
        }
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(bad("must not carry a user name or password"));
        }
        Ok(ArticleUrl(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The host (and port, if any), lower-case: what the answer's link filter allows.
    pub fn host(&self) -> Option<String> {
        let parsed = url::Url::parse(&self.0).ok()?;
        let host = parsed.host_str()?.to_ascii_lowercase();
        Some(match parsed.port() {
            Some(port) => format!("{host}:{port}"),
            None => host,
        })
    }
}

impl<'de> Deserialize<'de> for ArticleUrl {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        ArticleUrl::parse(&raw).map_err(|e| serde::de::Error::custom(e.0))
    }
}

impl utoipa::PartialSchema for ArticleUrl {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .max_length(Some(MAX_ARTICLE_URL_CHARS))
            .pattern(Some("^[hH][tT][tT][pP][sS]?://[^\\s]+$"))
            .description(Some(
                "An http or https URL, without a user name or password",
            ))
            .into()
    }
}
impl utoipa::ToSchema for ArticleUrl {}

/// Tags an article may have.
pub const MAX_ARTICLE_TAGS: usize = 20;
/// Characters of one article tag.
pub const MAX_ARTICLE_TAG_CHARS: usize = 40;

/// Checks an article's tags: at most 20, each 1 to 40 characters without control characters.
pub fn parse_tags(raw: &[String]) -> Result<Vec<String>, InvalidValue> {
    if raw.len() > MAX_ARTICLE_TAGS {
        return Err(invalid(format!("tags: at most {MAX_ARTICLE_TAGS}")));
    }
    let mut tags = Vec::with_capacity(raw.len());
    for tag in raw {
        let tag = bounded_text(tag, "tag", 1, MAX_ARTICLE_TAG_CHARS)?;
        if !tags.contains(&tag) {
            tags.push(tag);
        }
    }
    Ok(tags)
}

/// Who spoke in a chat with the assistant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum ChatRole {
    User,
    Assistant,
}

impl ChatRole {
    pub fn as_str(self) -> &'static str {
        match self {
            ChatRole::User => "user",
            ChatRole::Assistant => "assistant",
        }
    }
}

/// One utterance of an anonymous chat session, as kept in its transcript.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatTurn {
    /// Time-ordered within the session.
    pub id: MessageId,
    pub role: ChatRole,
    pub content: String,
    pub at: DateTime<Utc>,
    /// The ticket the assistant opened in this turn.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ticket_slug: Option<Slug>,
    /// Knowledge-base articles the answer drew on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub citations: Vec<Uuid>,
    /// Model tokens the turn cost (on the answer's turn), so quotas survive restarts.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub tokens: u64,
    /// The visitor's thumbs up or down on an answer; a turn stored before ratings existed
    /// reads with none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feedback: Option<Rating>,
}

/// A visitor's verdict on one of the assistant's answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Rating {
    Up,
    Down,
}

impl Rating {
    pub fn as_str(self) -> &'static str {
        match self {
            Rating::Up => "up",
            Rating::Down => "down",
        }
    }

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        match raw {
            "up" => Ok(Rating::Up),
            "down" => Ok(Rating::Down),
            _ => Err(invalid("rating must be \"up\" or \"down\"")),
        }
    }
}

/// How a conversation with the assistant ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ChatOutcome {
    /// No hand-off, no answer left rated down, and the last answer was one.
    Resolved,
    /// The assistant opened a ticket.
    Escalated,
    /// No ticket, but the visitor left after the offer of a person, without an answer to the
    /// last question, or with an answer rated down.
    Abandoned,
}

impl ChatOutcome {
    pub const ALL: [ChatOutcome; 3] = [
        ChatOutcome::Resolved,
        ChatOutcome::Escalated,
        ChatOutcome::Abandoned,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ChatOutcome::Resolved => "resolved",
            ChatOutcome::Escalated => "escalated",
            ChatOutcome::Abandoned => "abandoned",
        }
    }
}

/// One chat session seen as a conversation with the assistant: the facts its outcome is
/// decided from, kept as one row per session and found by the time it started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatConversation {
    pub session: String,
    /// The session's first turn: the row's place in time, never changed.
    pub started_at: DateTime<Utc>,
    /// The newest question, answer or rating.
    pub last_at: DateTime<Utc>,
    /// The assistant opened a ticket.
    pub escalated: bool,
    /// The last question got the offer of a person (no answer found) or no answer at all.
    pub unanswered: bool,
    /// Answers rated up and down now (a changed rating moves from one to the other).
    pub up: u32,
    pub down: u32,
}

impl ChatConversation {
    /// The outcome once the conversation has ended, `None` while it is still open. An escalated
    /// conversation has ended at its hand-off; any other ends `ends_after` past its last
    /// activity.
    pub fn outcome(&self, now: DateTime<Utc>, ends_after: chrono::Duration) -> Option<ChatOutcome> {
        if self.escalated {
            Some(ChatOutcome::Escalated)
        } else if now - self.last_at < ends_after {
            None
        } else if self.unanswered || self.down > 0 {
            Some(ChatOutcome::Abandoned)
        } else {
            Some(ChatOutcome::Resolved)
        }
    }
}

/// Conversations of a project over a time range, by outcome, and the ratings they hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct OutcomeCounts {
    pub resolved: u64,
    pub escalated: u64,
    pub abandoned: u64,
    /// Not ended yet: active within the end time, and no hand-off.
    pub open: u64,
    pub up: u64,
    pub down: u64,
}

impl OutcomeCounts {
    /// Counts one conversation as it stands at `now`.
    pub fn add(&mut self, c: &ChatConversation, now: DateTime<Utc>, ends_after: chrono::Duration) {
        match c.outcome(now, ends_after) {
            Some(ChatOutcome::Resolved) => self.resolved += 1,
            Some(ChatOutcome::Escalated) => self.escalated += 1,
            Some(ChatOutcome::Abandoned) => self.abandoned += 1,
            None => self.open += 1,
        }
        self.up += u64::from(c.up);
        self.down += u64::from(c.down);
    }
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// What a chat session has spent so far, summed over its whole transcript.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChatUsage {
    pub tokens: u64,
    pub tickets: u32,
    /// The first turn's time: when the session's conversation started.
    pub started_at: Option<DateTime<Utc>>,
    /// Answers rated up and down.
    pub up: u32,
    pub down: u32,
}

impl ChatUsage {
    /// Adds one stored turn.
    pub fn add(&mut self, turn: &ChatTurn) {
        self.tokens = self.tokens.saturating_add(turn.tokens);
        self.tickets += u32::from(turn.ticket_slug.is_some());
        self.started_at = Some(self.started_at.map_or(turn.at, |s| s.min(turn.at)));
        match turn.feedback {
            Some(Rating::Up) => self.up += 1,
            Some(Rating::Down) => self.down += 1,
            None => {}
        }
    }
}

/// How far one participant has read a ticket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReadCursor {
    pub reader: Participant,
    pub up_to: MessageId,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_stored_before_members_reads_as_no_members_and_keeps_its_agent_after() {
        let id = MessageId::next(None, Utc::now());
        // Exactly the fields a message was stored with before members existed.
        let old = serde_json::json!({
            "id": id, "author": "admin", "content": "hi", "timestamp": id.timestamp(),
        });
        let message: Message = serde_json::from_value(old.clone()).unwrap();
        assert_eq!(message.agent, None);
        assert_eq!(serde_json::to_value(&message).unwrap(), old);
        let named = Message {
            agent: Some(MessageAgent {
                id: Uuid::from_u128(1),
                name: "Dana".into(),
                avatar_url: Some("https://example.com/d.png".into()),
            }),
            ..message
        };
        let back: Message = serde_json::from_slice(&serde_json::to_vec(&named).unwrap()).unwrap();
        assert_eq!(back, named);
    }

    #[test]
    fn a_project_stored_before_the_assistant_settings_reads_with_the_defaults() {
        let old = r#"{"id":"acme","name":"Acme","allowed_origins":[],"admin_key_hash":"00","created_at":"2026-01-01T00:00:00Z"}"#;
        let project: Project = serde_json::from_str(old).unwrap();
        assert_eq!(project.assistant, AssistantProfile::default());
        assert_eq!(project.assistant.name(), None);
        assert_eq!(project.assistant.guidance(), None);
        let named = AssistantProfile {
            name: " Ava \u{2028} Lee ".into(),
            ..AssistantProfile::default()
        };
        assert_eq!(named.name().as_deref(), Some("Ava Lee"));
    }

    #[test]
    fn languages_are_read_from_tags_and_checked_against_those_searched() {
        assert_eq!(Language::parse("de").unwrap(), Language::De);
        assert_eq!(Language::parse(" PT-br ").unwrap(), Language::Pt);
        assert_eq!(Language::parse("ar_EG").unwrap(), Language::Ar);
        assert!(Language::parse("ja")
            .unwrap_err()
            .0
            .contains("not supported"));
        for bad in ["", "e", "english", "de-", "<b>", "d3", &"x".repeat(40)] {
            assert!(Language::from_tag(bad).is_err(), "{bad:?}");
        }
        // A well-formed tag without an analyser is no language, not an error.
        assert_eq!(Language::from_tag("ja-JP").unwrap(), None);
        for l in Language::ALL {
            assert_eq!(Language::parse(l.as_str()).unwrap(), l);
            let json = serde_json::to_string(&l).unwrap();
            assert_eq!(json, format!("\"{}\"", l.as_str()));
        }
    }

    #[test]
    fn article_links_are_http_or_https_urls_without_credentials() {
        let url = ArticleUrl::parse(" https://help.example.com:8443/a?b=c#d ").unwrap();
        assert_eq!(url.as_str(), "https://help.example.com:8443/a?b=c#d");
        assert_eq!(url.host().unwrap(), "help.example.com:8443");
        assert_eq!(
            ArticleUrl::parse("http://Help.Example.com/x")
                .unwrap()
                .host()
                .unwrap(),
            "help.example.com"
        );
        for bad in [
            "javascript:alert(1)",
            "data:text/html,hi",
            "ftp://example.com/",
            "https://user:pw@example.com/",
            "https://user@example.com/",
            "//example.com/a",
            "example.com/a",
            "https://exa mple.com/",
            "https://example.com/\u{7}",
            "",
        ] {
            assert!(ArticleUrl::parse(bad).is_err(), "{bad:?}");
        }
        let long = format!("https://example.com/{}", "a".repeat(MAX_ARTICLE_URL_CHARS));
        assert!(ArticleUrl::parse(&long).is_err());
        let fits = format!(
            "https://example.com/{}",
            "a".repeat(MAX_ARTICLE_URL_CHARS - 20)
        );
        assert!(ArticleUrl::parse(&fits).is_ok());
    }

    #[test]
    fn an_article_stored_before_languages_and_links_reads_as_english_without_a_link() {
        // The JSON the embedded store kept for an article before these fields existed.
        let old = r#"{"id":"3f0e8b1c-5d7a-4a53-9b5e-0c1d2e3f4a5b","project_id":"demo",
            "title":"Refunds","body":"Five days.","tags":["billing"],
            "created_at":"2026-01-01T00:00:00Z","updated_at":"2026-01-01T00:00:00Z"}"#;
        let article: Article = serde_json::from_str(old).unwrap();
        assert_eq!(article.language, Language::En);
        assert_eq!(article.url, None);
        // And a stored link that is no longer valid is refused rather than shown.
        let planted = old.replace(r#""tags""#, r#""url":"javascript:alert(1)","tags""#);
        assert!(serde_json::from_str::<Article>(&planted).is_err());
    }

    #[test]
    fn tags_are_letters_digits_dashes_and_underscores_at_most_twenty_each_kept_once() {
        let longest = "a".repeat(Tag::MAX_LEN);
        for good in [
            "vip",
            "Billing",
            "refund-2026",
            "needs_review",
            longest.as_str(),
        ] {
            assert_eq!(Tag::parse(good).unwrap().as_str(), good);
        }
        let too_long = "a".repeat(Tag::MAX_LEN + 1);
        for bad in ["", "two words", "é", "a/b", "tag!", too_long.as_str()] {
            assert!(Tag::parse(bad).is_err(), "{bad:?} should be refused");
        }
        let tags = Tags::parse(&["vip", "billing", "vip"]).unwrap();
        let kept: Vec<&str> = tags.iter().map(Tag::as_str).collect();
        assert_eq!(kept, ["vip", "billing"]);
        let many: Vec<String> = (0..=Tags::MAX).map(|i| format!("t{i}")).collect();
        assert!(Tags::parse(&many[..Tags::MAX]).is_ok());
        assert!(Tags::parse(&many).is_err());
        // Read back from storage through the same rules.
        assert!(serde_json::from_str::<Tags>(r#"["ok","not ok"]"#).is_err());
        let back: Tags = serde_json::from_str(&serde_json::to_string(&tags).unwrap()).unwrap();
        assert_eq!(back, tags);
    }

    #[test]
    fn a_turn_stored_before_ratings_reads_with_none_and_an_unrated_one_is_stored_as_before() {
        let before = r#"{"id":"3f0c9a52-d3e1-11f1-8000-5b1e2c4d6f70","role":"assistant","content":"Hi","at":"2026-12-01T10:00:00Z"}"#;
        let turn: ChatTurn = serde_json::from_str(before).unwrap();
        assert_eq!(turn.feedback, None);
        assert!(!serde_json::to_string(&turn).unwrap().contains("feedback"));
        let rated = ChatTurn {
            feedback: Some(Rating::Down),
            ..turn
        };
        let json = serde_json::to_string(&rated).unwrap();
        assert!(json.contains(r#""feedback":"down""#), "{json}");
        assert_eq!(serde_json::from_str::<ChatTurn>(&json).unwrap(), rated);
        assert!(serde_json::from_str::<ChatTurn>(&json.replace("down", "meh")).is_err());
    }

    #[test]
    fn a_conversation_ends_escalated_at_once_and_otherwise_after_its_quiet_time() {
        let t0 = DateTime::parse_from_rfc3339("2026-12-01T10:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let ends = chrono::Duration::minutes(30);
        let c = ChatConversation {
            session: "s".into(),
            started_at: t0,
            last_at: t0,
            escalated: false,
            unanswered: false,
            up: 1,
            down: 0,
        };
        let at = |m| t0 + chrono::Duration::minutes(m);
        assert_eq!(c.outcome(at(29), ends), None);
        assert_eq!(c.outcome(at(30), ends), Some(ChatOutcome::Resolved));
        let offered = ChatConversation {
            unanswered: true,
            ..c.clone()
        };
        assert_eq!(offered.outcome(at(30), ends), Some(ChatOutcome::Abandoned));
        let disliked = ChatConversation {
            down: 1,
            ..c.clone()
        };
        assert_eq!(disliked.outcome(at(30), ends), Some(ChatOutcome::Abandoned));
        let handed = ChatConversation {
            escalated: true,
            ..offered
        };
        assert_eq!(handed.outcome(at(0), ends), Some(ChatOutcome::Escalated));
    }

    #[test]
    fn a_ticket_stored_before_tags_reads_with_none_and_an_untagged_one_is_stored_as_before() {
        let ticket = Ticket::opened(
            ProjectId::parse("acme").unwrap(),
            Slug::parse("swift-bear-053").unwrap(),
            Title::parse("Cannot log in").unwrap(),
            Description::parse("").unwrap(),
            TicketSource::Api,
            None,
            Utc::now(),
        );
        let stored = serde_json::to_value(&ticket).unwrap();
        assert!(stored.get("tags").is_none(), "{stored}");
        let back: Ticket = serde_json::from_value(stored).unwrap();
        assert!(back.tags.is_empty());
    }

    #[test]
    fn slugs_must_have_the_adjective_noun_number_shape() {
        assert!(Slug::parse("swift-bear-053").is_ok());
        for bad in [
            "",
            "swift-bear",
            "swift-bear-53",
            "swift-bear-0533",
            "Swift-bear-053",
            "swift-bear-053-x",
            "swift--053",
            "swift-be4r-053",
            "../etc-passwd-001",
            "-bear-053",
            "swift-bear--053",
            "swiftbear-053",
            "swift-bear-05a",
            "swift-bear-053-",
        ] {
            assert!(Slug::parse(bad).is_err(), "{bad} should be refused");
        }
    }

    /// The one-pass check agrees with the rule written the obvious way, on every string of up
    /// to seven characters over a small alphabet that reaches each branch.
    #[test]
    fn the_slug_check_matches_the_plain_rule() {
        fn plain(raw: &str) -> bool {
            let mut parts = raw.split('-');
            let word = |p: Option<&str>| {
                p.is_some_and(|w| {
                    (1..=16).contains(&w.len()) && w.bytes().all(|b| b.is_ascii_lowercase())
                })
            };
            let number = |p: Option<&str>| {
                p.is_some_and(|n| n.len() == 3 && n.bytes().all(|b| b.is_ascii_digit()))
            };
            word(parts.next())
                && word(parts.next())
                && number(parts.next())
                && parts.next().is_none()
        }
        let alphabet = ['a', 'z', '-', '0', '9', 'A', '/'];
        let mut checked = 0;
        for len in 0..=7u32 {
            for mut n in 0..alphabet.len().pow(len) {
                let mut s = String::new();
                for _ in 0..len {
                    s.push(alphabet[n % alphabet.len()]);
                    n /= alphabet.len();
                }
                assert_eq!(Slug::well_formed(&s), plain(&s), "{s:?}");
                checked += 1;
            }
        }
        assert!(checked > 900_000);
        for n in [15, 16, 17, 34] {
            let long = format!("{}-{}-123", "a".repeat(n), "b".repeat(n));
            assert_eq!(Slug::well_formed(&long), plain(&long), "{long}");
            assert_eq!(Slug::well_formed(&long), n <= 16, "{long}");
        }
    }

    #[test]
    fn project_ids_are_short_and_url_safe() {
        assert!(ProjectId::parse("demo").is_ok());
        assert!(ProjectId::parse("proj_ab-12").is_ok());
        assert!(ProjectId::parse("").is_err());
        assert!(ProjectId::parse("a/b").is_err());
        assert!(ProjectId::parse(&"x".repeat(65)).is_err());
        assert!(ProjectId::parse(ProjectId::generate().as_str()).is_ok());
    }

    #[test]
    fn text_is_trimmed_and_bounded_in_characters() {
        assert_eq!(Title::parse("  hi  ").unwrap().as_str(), "hi");
        assert!(Title::parse("   ").is_err());
        assert!(Title::parse(&"é".repeat(200)).is_ok());
        assert!(Title::parse(&"é".repeat(201)).is_err());
        assert!(Description::parse("").is_ok());
        assert!(MessageBody::parse("a\u{0}b").is_err());
        assert!(MessageBody::parse("line\nbreak").is_ok());
    }

    #[test]
    fn origins_are_normalised_and_paths_refused() {
        assert_eq!(
            parse_origin("HTTP://LocalHost:3000").unwrap(),
            "http://localhost:3000"
        );
        assert!(parse_origin("https://example.com/path").is_err());
        assert!(parse_origin("example.com").is_err());
        assert!(parse_origin("*").is_err());
        assert!(parse_origin("https://").is_err());
    }

    #[test]
    fn idempotency_keys_are_short_printable_tokens() {
        assert!(IdempotencyKey::parse("3f0c9a2e-retry-1").is_ok());
        assert!(IdempotencyKey::parse("").is_err());
        assert!(IdempotencyKey::parse("has space").is_err());
        assert!(IdempotencyKey::parse(&"k".repeat(129)).is_err());
    }

    #[test]
    fn statuses_and_participants_round_trip_through_their_names() {
        for s in ["open", "pending", "resolved", "closed"] {
            assert_eq!(TicketStatus::parse(s).unwrap().as_str(), s);
        }
        assert!(TicketStatus::parse("OPEN").is_err());
        for p in Participant::ALL {
            assert_eq!(Participant::parse(p.as_str()).unwrap(), p);
        }
    }
}
