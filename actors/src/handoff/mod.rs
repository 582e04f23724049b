//! When the assistant hands a conversation to a person, and what the person gets.
//!
//! The decision reads the visitor's words with a small trained classifier ([`model`]), not a
//! phrase list. The offline provider follows it; beside a remote model it is the server's
//! safety net: an explicit request for a person opens a ticket even when the model does not
//! call the tool. See `docs/assistant.md`.

mod model;

pub use model::{classify, corpus_hash, features, shipped, Intent, Model, ModelError};

use crate::llm::{LlmMessage, LlmRole};

/// What the assistant says when it has no answer; a "yes" to a message containing it opens a
/// ticket. Remote models are asked to end such answers with it too.
pub const OFFER: &str = "Shall I pass this to the team?";

/// Why a conversation went to a person: the first line of the note agents get.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The visitor asked for a person or a ticket.
    ExplicitRequest,
    /// A problem that needs someone with access to the account.
    NeedsAccount,
    /// The help center had no answer, and the visitor accepted the offer of a person (or the
    /// model handed over by itself).
    NoAnswer,
    /// The visitor was fed up with the answers.
    Frustration,
}

impl Reason {
    pub fn describe(self) -> &'static str {
        match self {
            Reason::ExplicitRequest => "explicit request: the visitor asked for a person",
            Reason::NeedsAccount => {
                "needs account access: a problem the assistant cannot solve from the help center"
            }
            Reason::NoAnswer => "no answer found: the help center had nothing on the question",
            Reason::Frustration => "frustration: the visitor was not helped by the answers",
        }
    }
}

/// What the assistant does with the visitor's newest message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Open a ticket now.
    HandOver(Reason),
    /// Answer from the help center (or let the model answer).
    Answer,
    /// The help center has nothing close: say so and offer a person.
    Offer,
    /// A greeting, thanks or small talk: a friendly word, never a ticket.
    SmallTalk,
    /// The visitor declined the offer of a person.
    Declined,
}

/// Decides the next step from the conversation (oldest first, ending with the visitor's
/// message) and whether retrieval found an article close to the question.
pub fn decide(conversation: &[LlmMessage], answerable: bool) -> Next {
    let Some(question) = conversation.iter().rev().find(|m| m.role == LlmRole::User) else {
        return Next::SmallTalk;
    };
    let offered = last_answer(conversation).is_some_and(|a| a.contains(OFFER));
    match classify(&question.content) {
        Intent::Human => Next::HandOver(Reason::ExplicitRequest),
        Intent::Account => Next::HandOver(Reason::NeedsAccount),
        Intent::Frustration => Next::HandOver(Reason::Frustration),
        Intent::Yes if offered => Next::HandOver(Reason::NoAnswer),
        Intent::No if offered => Next::Declined,
        Intent::HowTo if !answerable => Next::Offer,
        _ if answerable => Next::Answer,
        Intent::Chat | Intent::Yes | Intent::No => Next::SmallTalk,
        Intent::HowTo => Next::Answer,
    }
}

/// The assistant's answer just before the visitor's newest message, if any.
fn last_answer(conversation: &[LlmMessage]) -> Option<&str> {
    let mut it = conversation.iter().rev();
    // Skip the newest run of the visitor's messages.
    for m in it.by_ref() {
        if m.role == LlmRole::Assistant {
            return Some(&m.content);
        }
        if m.role == LlmRole::System {
            return None;
        }
    }
    None
}

/// The visitor's message that says what the problem is: the newest that is a problem or a
/// question rather than a request for a person, a "yes" or small talk. `None` when the visitor
/// only asked for a person.
pub fn substantive(conversation: &[LlmMessage]) -> Option<&str> {
    let said = || {
        conversation
            .iter()
            .rev()
            .filter(|m| m.role == LlmRole::User)
            .map(|m| m.content.trim())
            .filter(|t| !t.is_empty())
    };
    // A problem beats a question, and either beats an outburst.
    for wanted in [
        &[Intent::Account][..],
        &[Intent::HowTo],
        &[Intent::Frustration],
    ] {
        if let Some(text) = said().find(|t| wanted.contains(&classify(t))) {
            return Some(text);
        }
    }
    None
}

/// Whether a ticket title the model wrote says nothing about the problem ("Talk to a human").
pub fn says_nothing(title: &str) -> bool {
    let title = title.trim();
    title.is_empty()
        || matches!(
            classify(title),
            Intent::Human | Intent::Chat | Intent::Yes | Intent::No
        )
}

/// Title for a ticket with nothing substantive to go on.
pub const FALLBACK_TITLE: &str = "Visitor asked to talk to a person";

/// The note agents get with a hand-off: why, and the conversation in numbers, with the
/// problem in the visitor's words and what they said last. Not the conversation itself: it is
/// the ticket's first messages, which the inbox shows right beside the note.
pub fn note(reason: Reason, conversation: &[LlmMessage]) -> String {
    const CHARS: usize = 200;
    let turns: Vec<&LlmMessage> = conversation
        .iter()
        .filter(|m| m.role != LlmRole::System && !m.content.trim().is_empty())
        .collect();
    let asked = turns.iter().filter(|m| m.role == LlmRole::User).count();
    let answered = turns.len() - asked;
    let mut note = format!(
        "Handed over by the assistant. Reason: {}.\n\nSummary: the visitor wrote {asked} \
         message{}, the assistant answered {answered} time{}.",
        reason.describe(),
        if asked == 1 { "" } else { "s" },
        if answered == 1 { "" } else { "s" },
    );
    let words = |text: &str| text.split_whitespace().collect::<Vec<_>>().join(" ");
    let problem = substantive(conversation);
    if let Some(problem) = problem {
        note.push_str(&format!(
            " The problem: \"{}\".",
            clip(&words(problem), CHARS)
        ));
    }
    // The words that made the hand-off (a request for a person, an outburst, a "yes"), unless
    // they are the problem already quoted.
    let last = turns.iter().rev().find(|m| m.role == LlmRole::User);
    if let Some(last) = last.filter(|m| Some(m.content.trim()) != problem) {
        note.push_str(&format!(
            " Their last message: \"{}\".",
            clip(&words(&last.content), CHARS)
        ));
    }
    note
}

/// At most `max` characters, with an ellipsis when cut.
fn clip(text: &str, max: usize) -> String {
    match text.char_indices().nth(max) {
        Some((i, _)) => format!("{}…", text[..i].trim_end()),
        None => text.to_owned(),
    }
}

/// A labelled corpus file: `label<TAB>text` per line; blank lines and `#` comments skipped.
pub fn read_corpus(text: &str) -> Result<Vec<(Intent, String)>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let (label, message) = line
            .split_once('\t')
            .ok_or_else(|| format!("line {}: no tab between label and text", n + 1))?;
        let intent = Intent::from_label(label.trim())
            .ok_or_else(|| format!("line {}: unknown label {label:?}", n + 1))?;
        out.push((intent, message.trim().to_owned()));
    }
    Ok(out)
}

/// How a model does on a labelled set.
#[derive(Debug, Clone)]
pub struct Evaluation {
    /// Share of messages given their exact intent.
    pub accuracy: f64,
    /// Of the messages the model sends to a person, the share that need one.
    pub precision: f64,
    /// Of the messages that need a person, the share the model sends to one.
    pub recall: f64,
    /// (expected, predicted, text) of every wrong intent.
    pub mistakes: Vec<(Intent, Intent, String)>,
}

pub fn evaluate(model: &Model, set: &[(Intent, String)]) -> Evaluation {
    let (mut right, mut tp, mut fp, mut fn_) = (0usize, 0usize, 0usize, 0usize);
    let mut mistakes = Vec::new();
    for (expected, text) in set {
        let (got, _) = model.predict(text);
        if got == *expected {
            right += 1;
        } else {
            mistakes.push((*expected, got, text.clone()));
        }
        match (expected.needs_person(), got.needs_person()) {
            (true, true) => tp += 1,
            (false, true) => fp += 1,
            (true, false) => fn_ += 1,
            (false, false) => {}
        }
    }
    let ratio = |a: usize, b: usize| if b == 0 { 1.0 } else { a as f64 / b as f64 };
    Evaluation {
        accuracy: ratio(right, set.len()),
        precision: ratio(tp, tp + fp),
        recall: ratio(tp, tp + fn_),
        mistakes,
    }
}

#[cfg(test)]
mod tests;
