//! Questions the assistant could not answer, kept per project so that admins know which
//! help-center article to write next (`docs/assistant.md`).
//!
//! A question is recorded when the help center had nothing close to it (the assistant offered
//! a person instead), and when the visitor handed the conversation to a person right after an
//! answer (the answer did not help). Trivial variants of a question group under one entry: its
//! [`normalise`]d text, whose [`id_of`] names it. Each project keeps at most [`MAX_PER_PROJECT`]
//! entries; a new one beyond that pushes out the one asked least recently.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::ProjectId;

/// Entries a project keeps at most.
pub const MAX_PER_PROJECT: usize = 500;
/// Characters of the normalised question kept (and grouped on).
pub const MAX_QUESTION_CHARS: usize = 200;
/// Characters of the example wording kept.
pub const MAX_EXAMPLE_CHARS: usize = 500;

/// One question, as often as it was asked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UnansweredQuestion {
    pub project_id: ProjectId,
    /// Names the entry: [`id_of`] its normalised question.
    pub id: String,
    /// The normalised question ([`normalise`]).
    pub question: String,
    /// The newest wording a visitor used, trimmed and cut to [`MAX_EXAMPLE_CHARS`].
    pub example: String,
    pub count: u64,
    pub first_seen: DateTime<Utc>,
    pub last_seen: DateTime<Utc>,
}

/// One more asking of a question, ready to be recorded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Asked {
    pub id: String,
    pub question: String,
    pub example: String,
    pub at: DateTime<Utc>,
}

impl Asked {
    /// `None` for a text with nothing to group on (only punctuation, say).
    pub fn new(text: &str, at: DateTime<Utc>) -> Option<Asked> {
        let question = normalise(text);
        if question.is_empty() {
            return None;
        }
        let example = text.split_whitespace().collect::<Vec<_>>().join(" ");
        Some(Asked {
            id: id_of(&question),
            example: clip(&example, MAX_EXAMPLE_CHARS).to_owned(),
            question,
            at,
        })
    }

    /// The entry after this asking: `before` counted once more, or a new entry.
    pub fn apply(
        &self,
        project: &ProjectId,
        before: Option<UnansweredQuestion>,
    ) -> UnansweredQuestion {
        match before {
            Some(mut q) => {
                q.count = q.count.saturating_add(1);
                q.example.clone_from(&self.example);
                q.first_seen = q.first_seen.min(self.at);
                q.last_seen = q.last_seen.max(self.at);
                q
            }
            None => UnansweredQuestion {
                project_id: project.clone(),
                id: self.id.clone(),
                question: self.question.clone(),
                example: self.example.clone(),
                count: 1,
                first_seen: self.at,
                last_seen: self.at,
            },
        }
    }
}

/// Lower case, letters and digits only (of any script), single spaces: "How do I export
/// to PDF?" and "how do i export to pdf" are one question. Apostrophes join ("don't" is
/// "dont"). Cut to [`MAX_QUESTION_CHARS`].
pub fn normalise(text: &str) -> String {
    let mut out = String::new();
    let mut space = false;
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.push(c);
        } else if !matches!(c, '\'' | '’') {
            space = true;
        }
    }
    clip(&out, MAX_QUESTION_CHARS).trim_end().to_owned()
}

/// A stable id for a normalised question: 16 hex digits of its 64-bit FNV-1a hash. Stable
/// across versions and nodes (unlike the standard library's hasher), so every node and both
/// backends name a question alike.
pub fn id_of(question: &str) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for b in question.bytes() {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{hash:016x}")
}

/// Whether `raw` has the shape of an id from [`id_of`].
pub fn is_id(raw: &str) -> bool {
    raw.len() == 16 && raw.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Most asked first, then most recently asked; ties by id, so the order is total.
pub fn sort(entries: &mut [UnansweredQuestion]) {
    entries.sort_by(|a, b| {
        b.count
            .cmp(&a.count)
            .then(b.last_seen.cmp(&a.last_seen))
            .then(a.id.cmp(&b.id))
    });
}

/// The entries to drop so that `entries` keeps [`MAX_PER_PROJECT`] at most: those asked
/// least recently.
pub fn overflow(entries: &[UnansweredQuestion]) -> Vec<String> {
    let excess = entries.len().saturating_sub(MAX_PER_PROJECT);
    if excess == 0 {
        return Vec::new();
    }
    let mut by_age: Vec<&UnansweredQuestion> = entries.iter().collect();
    by_age.sort_by(|a, b| a.last_seen.cmp(&b.last_seen).then(a.id.cmp(&b.id)));
    by_age
        .into_iter()
        .take(excess)
        .map(|q| q.id.clone())
        .collect()
}

fn clip(text: &str, max: usize) -> &str {
    match text.char_indices().nth(max) {
        Some((i, _)) => &text[..i],
        None => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trivial_variants_normalise_alike() {
        let a = normalise("Can I export my dashboards to PDF?");
        assert_eq!(a, "can i export my dashboards to pdf");
        assert_eq!(normalise("  can i EXPORT my dashboards, to pdf!!"), a);
        assert_eq!(normalise("Don't you have an app?"), "dont you have an app");
        assert_eq!(
            normalise("¿Tienen una aplicación móvil?"),
            "tienen una aplicación móvil"
        );
        assert_eq!(normalise("?!…"), "");
        assert_eq!(normalise(&"word ".repeat(100)).chars().count(), 199);
        assert_eq!(
            id_of(&a),
            id_of(&normalise("can i export my dashboards to pdf"))
        );
        assert_ne!(id_of(&a), id_of("something else"));
        assert!(is_id(&id_of(&a)));
        assert!(!is_id("not-an-id"));
    }

    #[test]
    fn an_asking_counts_up_and_keeps_the_newest_wording() {
        let p = ProjectId::parse("p").unwrap();
        let t0 = DateTime::from_timestamp(1_000, 0).unwrap();
        let t1 = DateTime::from_timestamp(2_000, 0).unwrap();
        let first = Asked::new("Mobile app?", t0).unwrap().apply(&p, None);
        assert_eq!(
            (first.count, first.first_seen, first.last_seen),
            (1, t0, t0)
        );
        let again = Asked::new("  mobile   APP ", t1)
            .unwrap()
            .apply(&p, Some(first));
        assert_eq!(again.count, 2);
        assert_eq!(again.example, "mobile APP");
        assert_eq!((again.first_seen, again.last_seen), (t0, t1));
        assert!(Asked::new("???", t0).is_none());
    }

    #[test]
    fn the_least_recently_asked_overflow() {
        let p = ProjectId::parse("p").unwrap();
        let entries: Vec<UnansweredQuestion> = (0..MAX_PER_PROJECT + 2)
            .map(|i| {
                let at = DateTime::from_timestamp(10_000 - i as i64, 0).unwrap();
                Asked::new(&format!("question {i}"), at)
                    .unwrap()
                    .apply(&p, None)
            })
            .collect();
        let gone = overflow(&entries);
        assert_eq!(gone.len(), 2);
        assert!(gone.contains(&entries[MAX_PER_PROJECT + 1].id));
        assert!(gone.contains(&entries[MAX_PER_PROJECT].id));
        assert!(overflow(&entries[..MAX_PER_PROJECT]).is_empty());
    }
}
