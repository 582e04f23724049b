//! Canned replies: the answers a project's agents save once and insert into a reply with `/`
//! and a shortcut. Each has a name, a shortcut and a body whose placeholders the inbox fills in
//! when the reply is inserted ([`PLACEHOLDERS`]). This module owns their rules (what a valid
//! reply is, how many a project may have); the storage port keeps them
//! ([`crate::store::CannedStore`]).

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::domain::{InvalidValue, ProjectId};

/// Canned replies one project may have: enough for a team's library, few enough that the inbox
/// loads them all at once and filters them as the agent types.
pub const MAX_PER_PROJECT: usize = 200;

/// The placeholders a body may hold, written `{{visitor.name}}`. Anything else between double
/// braces is refused, so a typo is caught when the reply is saved, not when a visitor reads it.
pub const PLACEHOLDERS: &[&str] = &["visitor.name", "agent.name"];

/// A project's saved reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CannedReply {
    pub id: Uuid,
    pub project_id: ProjectId,
    pub name: CannedName,
    pub shortcut: Shortcut,
    pub body: CannedBody,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// Why a store refused to save a reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CannedConflict {
    /// The project has as many replies as it may.
    Full,
    /// Another of the project's replies has this shortcut.
    ShortcutTaken,
}

/// A reply's name, as the picker lists it: 1 to 80 characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CannedName(String);

/// What an agent types after `/` to pick a reply: 1 to 32 lowercase letters, digits, `-` or
/// `_`. Unique within a project.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Shortcut(String);

/// A reply's text, with placeholders: 1 to 5,000 characters. Short of a message's 10,000, so a
/// body with its placeholders filled still fits in one message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct CannedBody(String);

impl CannedName {
    pub const MAX_CHARS: usize = 80;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // The rule of every text field (`domain::bounded_text`), in its order: the length and
        // the control characters of what was sent, then the trim. Trimming first would pass a
        // name that starts with U+0085, which is both white space and a control character.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "name must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        // Line breaks and tabs pass.
        if raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(InvalidValue(
                "name must not contain control characters".into(),
            ));
        }
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidValue("name must not be empty".into()));
        }
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Shortcut {
    pub const MAX_LEN: usize = 32;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // A leading `/` is how agents see shortcuts written; take it as part of the habit.
        let s = raw.trim().trim_start_matches('/');
        let ok = !s.is_empty()
            && s.len() <= Self::MAX_LEN
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
        match ok {
            true => Ok(Self(s.to_owned())),
            false => Err(InvalidValue(format!(
                "shortcut must be 1-{} characters of lowercase letters, digits, '-' or '_'",
                Self::MAX_LEN
            ))),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl CannedBody {
    pub const MAX_CHARS: usize = 5_000;

    pub fn parse(raw: &str) -> Result<Self, InvalidValue> {
        // As for names: what was sent is checked, then trimmed.
        if raw.chars().count() > Self::MAX_CHARS {
            return Err(InvalidValue(format!(
                "body must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if raw
            .chars()
            .any(|c| c.is_control() && c != '\n' && c != '\t' && c != '\r')
        {
            return Err(InvalidValue(
                "body must not contain control characters".into(),
            ));
        }
        let text = raw.trim();
        if text.is_empty() {
            return Err(InvalidValue("body must not be empty".into()));
        }
        check_placeholders(text)?;
        Ok(Self(text.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Refuses `{{...}}` naming anything but [`PLACEHOLDERS`] (spaces inside the braces allowed),
/// and a `{{` never closed.
fn check_placeholders(body: &str) -> Result<(), InvalidValue> {
    let mut rest = body;
    while let Some(start) = rest.find("{{") {
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(InvalidValue(
                "body has a '{{' without its '}}'; placeholders are {{visitor.name}} and {{agent.name}}"
                    .into(),
            ));
        };
        let name = after[..end].trim();
        if !PLACEHOLDERS.contains(&name) {
            let shown: String = name.chars().take(40).collect();
            return Err(InvalidValue(format!(
                "body has an unknown placeholder {{{{{shown}}}}}; placeholders are {{{{visitor.name}}}} and {{{{agent.name}}}}"
            )));
        }
        rest = &after[end + 2..];
    }
    Ok(())
}

impl utoipa::PartialSchema for CannedName {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::text(1, Self::MAX_CHARS).into()
    }
}
impl utoipa::ToSchema for CannedName {}

impl utoipa::PartialSchema for Shortcut {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .pattern(Some("^\\s*/?[a-z0-9_-]{1,32}\\s*$"))
            .into()
    }
}
impl utoipa::ToSchema for Shortcut {}

impl utoipa::PartialSchema for CannedBody {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        crate::schema::text(1, Self::MAX_CHARS).into()
    }
}
impl utoipa::ToSchema for CannedBody {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shortcuts_are_short_lowercase_words_and_a_leading_slash_is_dropped() {
        assert_eq!(Shortcut::parse("/refund").unwrap().as_str(), "refund");
        assert_eq!(Shortcut::parse("ship-eu_2").unwrap().as_str(), "ship-eu_2");
        for bad in ["", "/", "Refund", "two words", "ü", &"a".repeat(33)] {
            assert!(Shortcut::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bodies_take_the_two_placeholders_only() {
        assert!(CannedBody::parse("Hi {{visitor.name}}, {{ agent.name }} here.").is_ok());
        assert!(CannedBody::parse("Plain { braces } are fine").is_ok());
        let unknown = CannedBody::parse("Hi {{visitor.email}}").unwrap_err();
        assert!(unknown.0.contains("{{visitor.email}}"), "{}", unknown.0);
        assert!(CannedBody::parse("Hi {{visitor.name").is_err());
        assert!(CannedBody::parse("   ").is_err());
        assert!(CannedBody::parse(&"x".repeat(CannedBody::MAX_CHARS + 1)).is_err());
        assert!(CannedName::parse(&"n".repeat(81)).is_err());
        // U+0085 is white space and a control character: refused, as the description says,
        // not trimmed away.
        assert!(CannedBody::parse("\u{85}x").is_err());
        assert!(CannedName::parse("\u{85}x").is_err());
    }
}
