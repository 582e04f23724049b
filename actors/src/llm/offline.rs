//! The offline provider: a deterministic stand-in for a language model that needs no network,
//! so a fresh install answers real questions from its knowledge base.
//!
//! What it does with a message is the hand-off decision ([`crate::handoff::decide`]): it calls
//! `create_ticket` at once when the visitor asks for a person, has a problem only a person can
//! solve, or is fed up; streams the best passage word by word when the knowledge base has one
//! close to the question; and otherwise says it has no answer and offers a person, whom a "yes"
//! then brings in.

use async_trait::async_trait;
use futures_util::stream;

use super::{LlmError, LlmEvent, LlmProvider, LlmRequest, LlmRole, LlmStream, ToolCall};
use crate::handoff::{self, Next, OFFER};

/// The tool the assistant opens tickets with; its name is part of the tool-calling contract.
pub const CREATE_TICKET: &str = "create_ticket";

#[derive(Debug, Default, Clone)]
pub struct OfflineProvider;

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
pub fn title_from(text: &str) -> String {
    let line = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("");
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
        handoff::FALLBACK_TITLE.into()
    } else {
        title
    }
}

fn estimate_tokens(text: &str) -> u32 {
    u32::try_from(text.len().div_ceil(4)).unwrap_or(u32::MAX)
}

const NO_TOOL: &str = "I can't open a ticket from this chat, but the support team can help: \
                       please open a support ticket and they will reply there.";
const NOTHING_FOUND: &str = "I couldn't find anything about that in our help articles. Please \
                             open a support ticket and the support team will reply there.";
const SMALL_TALK: &str = "Happy to help! Ask me anything about the product, or ask for a \
                          person at any time.";
const DECLINED: &str = "Alright. If there is anything else, just ask.";

/// A friendly word: the project's greeting to open a conversation, else the default, which
/// names the assistant when it has a name ("Hi, I'm Ava from Acme!").
fn small_talk(request: &LlmRequest) -> String {
    let persona = &request.persona;
    let opening = !request
        .messages
        .iter()
        .any(|m| m.role == LlmRole::Assistant);
    match (&persona.greeting, &persona.name) {
        (Some(greeting), _) if opening => greeting.clone(),
        (_, Some(name)) if opening && !persona.project.is_empty() => {
            format!("Hi, I'm {name} from {}! {SMALL_TALK}", persona.project)
        }
        (_, Some(name)) => format!("I'm {name}. {SMALL_TALK}"),
        _ => SMALL_TALK.to_owned(),
    }
}

#[async_trait]
impl LlmProvider for OfflineProvider {
    fn name(&self) -> &'static str {
        "offline"
    }

    async fn stream(&self, request: LlmRequest) -> Result<LlmStream, LlmError> {
        let can_open_ticket = request.tools.iter().any(|t| t.name == CREATE_TICKET);
        // The chat turn hands over only passages close to the question.
        let best = request.passages.first();
        let next = handoff::decide(&request.messages, best.is_some());
        let mut events: Vec<Result<LlmEvent, LlmError>> = Vec::new();
        let answer = match (next, best) {
            (Next::HandOver(_), _) if can_open_ticket => {
                let conversation = &request.messages;
                let problem = handoff::substantive(conversation);
                let arguments = serde_json::json!({
                    "title": problem.map_or_else(|| handoff::FALLBACK_TITLE.to_owned(), title_from),
                    "description": problem.unwrap_or(request.question().trim()),
                });
                events.push(Ok(LlmEvent::ToolCall(ToolCall {
                    name: CREATE_TICKET.into(),
                    arguments: arguments.to_string(),
                })));
                String::new()
            }
            (Next::HandOver(_), _) => NO_TOOL.to_owned(),
            (Next::Answer, Some(p)) => match &p.url {
                Some(url) => format!("From \"{}\" ({url}): {}", p.title, p.text),
                None => format!("From \"{}\": {}", p.title, p.text),
            },
            (Next::Offer | Next::Answer, _) if can_open_ticket => {
                format!("I couldn't find an answer to that in our help center. {OFFER}")
            }
            (Next::Offer | Next::Answer, _) => NOTHING_FOUND.to_owned(),
            (Next::SmallTalk, _) => small_talk(&request),
            (Next::Declined, _) => DECLINED.to_owned(),
        };
        events.extend(words(&answer).into_iter().map(|w| Ok(LlmEvent::Text(w))));
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
            persona: Default::default(),
        }
    }

    fn passage() -> Passage {
        Passage {
            article_id: Uuid::new_v4(),
            title: "Resetting your password".into(),
            text: "Choose 'Forgot password' on the sign-in page.".into(),
            url: None,
            score: 3.2,
            coverage: 1.0,
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
    async fn it_cites_the_article_with_its_link_when_it_has_one() {
        let mut p = passage();
        p.url = Some("https://help.example.com/reset".into());
        let events = run(request("reset password", vec![p], true)).await;
        assert!(
            text_of(&events).starts_with(
                "From \"Resetting your password\" (https://help.example.com/reset): Choose"
            ),
            "{events:?}"
        );
    }

    fn text_of(events: &[LlmEvent]) -> String {
        events
            .iter()
            .filter_map(|e| match e {
                LlmEvent::Text(t) => Some(t.as_str()),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn it_opens_a_ticket_on_request_and_offers_one_when_nothing_matches() {
        let events = run(request("I want to talk to a human", vec![passage()], true)).await;
        let LlmEvent::ToolCall(call) = &events[0] else {
            panic!("{events:?}");
        };
        assert_eq!(call.name, CREATE_TICKET);
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args["title"], handoff::FALLBACK_TITLE);
        assert_eq!(args["description"], "I want to talk to a human");

        // No answer: an offer, not a ticket, and no unrelated article.
        let events = run(request(
            "My parcel never arrived, where is it?",
            vec![],
            true,
        ))
        .await;
        assert!(events.iter().all(|e| !matches!(e, LlmEvent::ToolCall(_))));
        assert!(text_of(&events).ends_with(OFFER), "{events:?}");

        // A greeting gets a friendly word, whatever the knowledge base holds.
        let events = run(request("Hello!", vec![], true)).await;
        assert_eq!(text_of(&events), SMALL_TALK);

        // Without the tool it says how to reach a person instead.
        let events = run(request("I want to talk to a human", vec![passage()], false)).await;
        assert_eq!(text_of(&events), NO_TOOL);
        assert!(events.iter().all(|e| !matches!(e, LlmEvent::ToolCall(_))));
    }

    #[tokio::test]
    async fn a_yes_to_the_offer_opens_a_ticket_titled_by_the_question() {
        let mut req = request("Can I export my dashboards to PDF?", vec![], true);
        req.messages.push(LlmMessage::new(
            LlmRole::Assistant,
            format!("I couldn't find an answer to that in our help center. {OFFER}"),
        ));
        req.messages
            .push(LlmMessage::new(LlmRole::User, "yes please"));
        let events = run(req).await;
        let LlmEvent::ToolCall(call) = &events[0] else {
            panic!("{events:?}");
        };
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        assert_eq!(args["title"], "Can I export my dashboards to PDF?");
    }

    #[tokio::test]
    async fn the_greeting_and_name_of_the_project_open_the_conversation() {
        let persona = |name: Option<&str>, greeting: Option<&str>| crate::llm::Persona {
            project: "Acme".into(),
            name: name.map(Into::into),
            greeting: greeting.map(Into::into),
        };
        let mut req = request("Hello!", vec![], true);
        req.persona = persona(Some("Ava"), Some("Welcome to Acme, I'm Ava."));
        assert_eq!(
            text_of(&run(req.clone()).await),
            "Welcome to Acme, I'm Ava."
        );
        req.persona = persona(Some("Ava"), None);
        assert!(text_of(&run(req.clone()).await).starts_with("Hi, I'm Ava from Acme! "));
        // Later in the conversation a thank-you is not greeted again.
        req.messages
            .push(LlmMessage::new(LlmRole::Assistant, "Hi!"));
        req.messages.push(LlmMessage::new(LlmRole::User, "Thanks!"));
        req.persona = persona(Some("Ava"), Some("Welcome to Acme, I'm Ava."));
        assert_eq!(text_of(&run(req).await), format!("I'm Ava. {SMALL_TALK}"));
    }

    #[test]
    fn titles_are_cut_at_a_word() {
        let long = "word ".repeat(40);
        let t = title_from(&long);
        assert!(t.len() <= 80 && t.ends_with("word"));
        assert_eq!(title_from("   "), handoff::FALLBACK_TITLE);
    }
}
