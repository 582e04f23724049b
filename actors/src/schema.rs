//! The JSON Schemas of the domain's values, for the API description the server publishes.
//!
//! Each schema states the rule the value's `parse` applies, and is written next to the
//! constants that rule uses, so a generated client (or a fuzzer) can build and check a value the
//! server then accepts. The server derives its OpenAPI document from these and from the view
//! types in `events.rs`; this module knows nothing of HTTP.

use std::borrow::Cow;

use utoipa::openapi::schema::{ArrayBuilder, KnownFormat, ObjectBuilder, SchemaFormat, Type};
use utoipa::openapi::{Object, Ref, RefOr, Schema};
use utoipa::{PartialSchema, ToSchema};

use crate::domain::{IdempotencyKey, ProjectId, Slug, MAX_ORIGINS};
use crate::message_id::MessageId;

/// Control characters other than tab, line feed and carriage return, as a character-class body
/// (`char::is_control` is the Unicode category Cc: U+0000–U+001F and U+007F–U+009F).
const CONTROL: &str = r"\u0000-\u0008\u000B\u000C\u000E-\u001F\u007F-\u009F";

/// Free text of `min` (0 or 1) to `max` characters, counted before trimming, without control
/// characters other than tab and line breaks; when `min` is 1, at least one character is not
/// whitespace.
pub fn text(min: usize, max: usize) -> Object {
    let pattern = if min == 0 {
        format!("^[^{CONTROL}]*$")
    } else {
        format!(r"^[^{CONTROL}]*[^\s\u0000-\u001F\u007F-\u009F][^{CONTROL}]*$")
    };
    ObjectBuilder::new()
        .schema_type(Type::String)
        .min_length(Some(min))
        .max_length(Some(max))
        .pattern(Some(pattern))
        .build()
}

/// A string matching `pattern`.
fn pattern(pattern: &str, max: usize, description: &str) -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .max_length(Some(max))
        .pattern(Some(pattern))
        .description(Some(description))
        .build()
}

impl PartialSchema for ProjectId {
    fn schema() -> RefOr<Schema> {
        pattern(
            "^[A-Za-z0-9_-]{1,64}$",
            ProjectId::MAX_LEN,
            "A project's id: 1 to 64 letters, digits, '_' or '-'.",
        )
        .into()
    }
}
impl ToSchema for ProjectId {}

impl PartialSchema for Slug {
    fn schema() -> RefOr<Schema> {
        let mut schema = pattern(
            "^[a-z]{1,16}-[a-z]{1,16}-[0-9]{3}$",
            Slug::MAX_LEN,
            "A ticket's name in its project: adjective-noun-NNN.",
        );
        schema.examples = vec!["swift-otter-042".into()];
        schema.into()
    }
}
impl ToSchema for Slug {}

impl PartialSchema for IdempotencyKey {
    fn schema() -> RefOr<Schema> {
        pattern(
            "^[!-~]{1,128}$",
            IdempotencyKey::MAX_LEN,
            "1 to 128 printable ASCII characters without spaces.",
        )
        .into()
    }
}
impl ToSchema for IdempotencyKey {}

impl PartialSchema for MessageId {
    fn schema() -> RefOr<Schema> {
        let mut schema = pattern(
            "^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-1[0-9a-fA-F]{3}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$",
            36,
            "A message id: a time-based (version 1) UUID. Ids of one ticket order its messages.",
        );
        schema.format = Some(SchemaFormat::KnownFormat(KnownFormat::Uuid));
        schema.into()
    }
}
impl ToSchema for MessageId {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("MessageId")
    }
}

/// A browser origin a project allows: `scheme://host[:port]`, without a path; stored in lower
/// case. The schema of `domain::parse_origin`.
pub struct Origin;

impl PartialSchema for Origin {
    fn schema() -> RefOr<Schema> {
        let mut schema = pattern(
            r"^[hH][tT][tT][pP][sS]?://[A-Za-z0-9.\[\]-]([A-Za-z0-9.:\[\]-]{0,251}[A-Za-z0-9.\[\]-])?$",
            "https://".len() + 253,
            "A browser origin, scheme://host[:port], without a path.",
        );
        schema.examples = vec!["https://example.com".into()];
        schema.into()
    }
}
impl ToSchema for Origin {}

/// The origins a project allows, at most [`MAX_ORIGINS`].
pub struct Origins;

impl PartialSchema for Origins {
    fn schema() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name("Origin"))
            .max_items(Some(MAX_ORIGINS))
            .into()
    }
}
impl ToSchema for Origins {
    fn schemas(out: &mut Vec<(String, RefOr<Schema>)>) {
        out.push(("Origin".into(), Origin::schema()));
    }
}

/// An RFC 3339 instant, in UTC with milliseconds, as every timestamp of the API is written.
pub fn instant() -> Object {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::{Description, Title};

    /// The pattern as a Rust regex: its syntax for these patterns (`\uXXXX`, `\s` as Unicode
    /// White_Space, classes) reads as ECMA-262 and Python read them.
    fn accepts(schema: &Object, s: &str) -> bool {
        let re = regex::Regex::new(schema.pattern.as_deref().unwrap()).unwrap();
        re.is_match(s)
            && schema.max_length.is_none_or(|max| s.chars().count() <= max)
            && schema.min_length.is_none_or(|min| s.chars().count() >= min)
    }

    #[test]
    fn text_schemas_accept_exactly_what_parse_accepts() {
        let title = text(Title::MIN_CHARS, Title::MAX_CHARS);
        let description = text(Description::MIN_CHARS, Description::MAX_CHARS);
        let mut samples: Vec<String> = [
            "",
            " ",
            "\t\n",
            "a",
            "  padded  ",
            "tab\there",
            "line\r\nbreak",
            "bell\u{7}",
            "\u{85}",
            "x\u{9f}",
            "\u{a0}",
            "\u{2028}x",
            "\u{feff}",
            "nul\u{0}",
            "\u{1c}",
            "日本語",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        for n in [199, 200, 201, 9_999, 10_000, 10_001] {
            samples.push("x".repeat(n));
            samples.push(format!("{} ", "x".repeat(n)));
            samples.push(format!(" {}", "é".repeat(n)));
        }
        for s in &samples {
            assert_eq!(Title::parse(s).is_ok(), accepts(&title, s), "title {s:?}");
            assert_eq!(
                Description::parse(s).is_ok(),
                accepts(&description, s),
                "description {s:?}"
            );
        }
    }

    #[test]
    fn value_patterns_accept_what_parse_accepts() {
        let origin = match Origin::schema() {
            RefOr::T(Schema::Object(o)) => o,
            _ => unreachable!("an inline object schema"),
        };
        let long = format!("https://{}", "a".repeat(253));
        let longer = format!("https://{}", "a".repeat(254));
        for s in [
            "https://example.com",
            "HTTP://LocalHost:3000",
            "http://[::1]:8080",
            "https://a",
            "https://example.com/",
            "https://:80",
            "https://a:",
            "ftp://x",
            " https://a",
            "https://",
            &long,
            &longer,
        ] {
            assert_eq!(
                crate::domain::parse_origin(s).is_ok(),
                accepts(&origin, s),
                "{s}"
            );
        }

        let id = |s: &RefOr<Schema>| match s {
            RefOr::T(Schema::Object(o)) => o.clone(),
            _ => unreachable!("an inline object schema"),
        };
        let slug = id(&Slug::schema());
        let long = format!("{}-b-123", "a".repeat(17));
        for s in [
            "swift-otter-042",
            "a-b-123",
            "swift-otter-42",
            "Swift-otter-042",
            "a-b-c-123",
            "-a-123",
            &long,
        ] {
            assert_eq!(Slug::parse(s).is_ok(), accepts(&slug, s), "{s}");
        }
        let project = id(&ProjectId::schema());
        for s in [
            "demo",
            "proj_1-x",
            "",
            "has space",
            &"p".repeat(64),
            &"p".repeat(65),
        ] {
            assert_eq!(ProjectId::parse(s).is_ok(), accepts(&project, s), "{s}");
        }
        let key = id(&IdempotencyKey::schema());
        for s in ["k", "a b", "é", "~!", &"k".repeat(128), &"k".repeat(129)] {
            assert_eq!(IdempotencyKey::parse(s).is_ok(), accepts(&key, s), "{s}");
        }
        let message = id(&MessageId::schema());
        let now = chrono::Utc::now();
        let real = MessageId::next(None, now).to_string();
        for s in [
            real.as_str(),
            "3f0e8b1c-5d7a-4a53-9b5e-0c1d2e3f4a5b",
            "not-an-id",
        ] {
            assert_eq!(s.parse::<MessageId>().is_ok(), accepts(&message, s), "{s}");
        }
    }

    #[test]
    fn the_patterns_name_the_same_limits_as_the_types() {
        let title = text(Title::MIN_CHARS, Title::MAX_CHARS);
        assert_eq!(title.max_length, Some(200));
        assert!(title.pattern.unwrap().contains(r"[^\s"));
        let description = text(Description::MIN_CHARS, Description::MAX_CHARS);
        assert!(!description.pattern.unwrap().contains(r"[^\s"));
    }
}
