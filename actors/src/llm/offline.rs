//! The offline provider: a deterministic stand-in for a language model that needs no network,
//! so a fresh install answers real questions from its knowledge base.
//!
//! It streams the best retrieved passage word by word, and calls `create_ticket` when the
//! visitor asks for a person or a ticket, or when the knowledge base has nothing on the question.

use async_trait::async_trait;
use futures_util::stream;

use super::{LlmError, LlmEvent, LlmProvider, LlmRequest, LlmStream, ToolCall};

/// The tool the assistant opens tickets with; its name is part of the tool-calling contract.
pub const CREATE_TICKET: &str = "create_ticket";

/// Phrases that mean "let me talk to a person". Matched on whole words of the lower-cased text.
const HANDOFF_PHRASES: &[&str] = &[
    "human",
    "person",
    "real person",
    "someone",
    "agent",
    "representative",
    "operator",
    "support team",
    "ticket",
    "escalate",
    "talk to",
    "speak to",
    "speak with",
    "talk with",
    "contact support",
];

#[derive(Debug, Default, Clone)]
pub struct OfflineProvider;

/// Whether the visitor asks to be handed over to a person.
pub fn wants_handoff(question: &str) -> bool {
    let words: Vec<String> = question
        .to_lowercase()
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| w.strip_suffix('s').unwrap_or(w).to_owned())
        .collect();
    let text = format!(" {} ", words.join(" "));
    HANDOFF_PHRASES
        .iter()
        .any(|phrase| text.contains(&format!(" {phrase} ")))
}

/// Splits text into pieces that concatenate back to it: each word with the space before it.
fn words(text: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for c in text.chars() {
        if c.is_whitespace() && !current.trim().is_empty() {
            out.push(std::mem::take(&mut current));
        }
        current.push(c);
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A ticket title from the visitor's words: the first line, cut at a word near 80 characters.
fn title_from(question: &str) -> String {
    let line = question
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("");
    let mut title = String::new();
    for word in line.split_whitespace() {
        if title.len() + word.len() + 1 > 80 {
            break;
        }
        if !title.is_empty() {
            title.push(' ');
        }
        title.push_str(word);
    }
    if title.is_empty() {
        "Support request from chat".into()
    } else {
        title
    }
}

fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

#[async_trait]
impl LlmProvider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        let question = request.question().trim().to_owned();
        let can_open_ticket = request.tools.iter().any(|t| t.name == CREATE_TICKET);
        let best = request.passages.first();
        let handoff = wants_handoff(&question);
        let mut events: Vec<Result<LlmEvent, LlmError>> = Vec::new();
        let answer = if can_open_ticket && (handoff || best.is_none()) {
            let arguments = serde_json::json!({
                "title": title_from(&question),
                "description": question,
            });
            events.push(Ok(LlmEvent::ToolCall(ToolCall {
                name: CREATE_TICKET.into(),
                arguments: arguments.to_string(),
            })));
            String::new()
        } else {
            let answer = match best {
                Some(p) if !handoff => format!("From \"{}\": {}", p.title, p.text),
                _ if handoff => "I can't open a ticket from this chat, but the support team can \
                                 help: please open a support ticket and they will reply there."
                    .to_owned(),
                _ => "I couldn't find anything about that in our help articles. Please open a \
                      support ticket and the support team will reply there."
                    .to_owned(),
            };
            events.extend(words(&answer).into_iter().map(|w| Ok(LlmEvent::Text(w))));
            answer
        };
        let prompt: usize = request.messages.iter().map(|m| m.content.len()).sum();
        events.push(Ok(LlmEvent::Usage {
            prompt_tokens: u32::try_from(prompt.div_ceil(4)).unwrap_or(u32::MAX),
            completion_tokens: estimate_tokens(&answer),
        }));
        Ok(Box::pin(stream::iter(events)))
    }
}

#[cfg(test)]
mod tests {
    use futures_util::StreamExt;
    use uuid::Uuid;

    use super::*;
    use crate::llm::{LlmMessage, LlmRole, Passage, ToolSpec};

    fn request(question: &str, passages: Vec<Passage>, tools: bool) -> LlmRequest {
        LlmRequest {
            messages: vec![
                LlmMessage::new(LlmRole::System, "You are a support assistant."),
                LlmMessage::new(LlmRole::User, question),
            ],
            tools: if tools {
                vec![ToolSpec {
                    name: CREATE_TICKET,
                    description: "Open a ticket",
                    parameters: serde_json::json!({}),
                }]
            } else {
                vec![]
            },
            passages,
            max_tokens: 100,
        }
    }

    fn passage() -> Passage {
        Passage {
            article_id: Uuid::new_v4(),
            title: "Resetting your password".into(),
            text: "Choose 'Forgot password' on the sign-in page.".into(),
            score: 3.2,
        }
    }

    async fn run(req: LlmRequest) -> Vec<LlmEvent> {
        OfflineProvider
            .stream(req)
            .await
            .unwrap()
            .map(|e| e.unwrap())
            .collect()
            .await
    }

    #[test]
    fn handoff_is_recognised_on_whole_words() {
        for q in [
            "Can I talk to a human?",
            "I want to speak with someone",
            "please open a TICKET",
            "Are there agents online?",
        ] {
            assert!(wants_handoff(q), "{q}");
        }
        for q in [
            "How do I reset my password?",
            "humanitarian aid",
            "tickety-boo",
        ] {
            assert!(!wants_handoff(q), "{q}");
        }
    }

    #[test]
    fn words_concatenate_back_to_the_text() {
        let text = "From \"A\":  two  spaces\nand a line.";
        assert_eq!(words(text).concat(), text);
        assert_eq!(words("one two"), vec!["one", " two"]);
    }

    #[tokio::test]
    async fn it_streams_the_best_passage_word_by_word() {
        let events = run(request("reset password", vec![passage()], true)).await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                LlmEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            text,
            "From \"Resetting your password\": Choose 'Forgot password' on the sign-in page."
        );
        assert!(events.len() > 5);
        assert!(matches!(events.last(), Some(LlmEvent::Usage { .. })));
    }

    #[tokio::test]
    async fn it_opens_a_ticket_on_request_or_when_nothing_matches() {
        for (q, passages) in [
            ("I want to talk to a human", vec![passage()]),
            ("My parcel never arrived", vec![]),
        ] {
            let events = run(request(q, passages, true)).await;
            let LlmEvent::ToolCall(call) = &events[0] else {
                panic!("{events:?}");
            };
            assert_eq!(call.name, CREATE_TICKET);
            let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
            assert_eq!(args["title"], q);
            assert_eq!(args["description"], q);
        }
        // Without the tool it says how to reach a person instead.
        let events = run(request("I want to talk to a human", vec![passage()], false)).await;
        assert!(matches!(&events[0], LlmEvent::Text(_)));
        assert!(events.iter().all(|e| !matches!(e, LlmEvent::ToolCall(_))));
    }

    #[test]
    fn titles_are_cut_at_a_word() {
        let long = "word ".repeat(40);
        let t = title_from(&long);
        assert!(t.len() <= 80 && t.ends_with("word"));
        assert_eq!(title_from("   "), "Support request from chat");
    }
}
