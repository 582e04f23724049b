//! Tool calls written as text. Small models served by llama.cpp or Ollama often answer with
//! the `create_ticket` call as bare JSON in the message (`{"name": "create_ticket",
//! "arguments": {...}}`, sometimes in a Markdown fence or `<tool_call>` tags) instead of a
//! tool call. [`BareCalls`] sits on the text stream, holds back anything that may be such a
//! call until it knows, and turns it into a [`ToolCall`]: the visitor never sees the JSON.

use crate::llm::offline::CREATE_TICKET;
use crate::llm::ToolCall;

/// Text held back while it may still be a call; past this it is shown as what it is.
const MAX_HELD: usize = 8 * 1024;

/// What the filter lets out, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    Text(String),
    Call(ToolCall),
}

#[derive(Debug, Default)]
pub struct BareCalls {
    held: String,
}

/// Openings a call may start with: the JSON itself, a Markdown fence, Hermes-style tags.
const OPENINGS: [&str; 3] = ["{", "```", "<tool_call>"];

impl BareCalls {
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes the next piece of the model's text.
    pub fn push(&mut self, piece: &str) -> Vec<Piece> {
        let mut out = Vec::new();
        let mut pending = piece.to_owned();
        loop {
            if self.held.is_empty() {
                // Text before anything that could open a call passes at once.
                match pending.find(['{', '`', '<']) {
                    Some(at) => {
                        out.push(Piece::Text(pending[..at].to_owned()));
                        self.held = pending.split_off(at);
                    }
                    None => {
                        out.push(Piece::Text(pending));
                        break;
                    }
                }
            } else {
                self.held.push_str(&pending);
            }
            pending = match self.examine() {
                Verdict::Wait => break,
                Verdict::NotACall => {
                    // The first character opens no call: let it out, and look again at what
                    // follows it.
                    let mut held = std::mem::take(&mut self.held);
                    let first = held.chars().next().map_or(0, char::len_utf8);
                    let after = held.split_off(first);
                    out.push(Piece::Text(held));
                    after
                }
                Verdict::Call(call, used) => {
                    let after = self.held.split_off(used);
                    self.held.clear();
                    out.push(Piece::Call(call));
                    after
                }
            };
            if pending.is_empty() {
                break;
            }
        }
        merge(out)
    }

    /// The model has finished: whatever is still held was not a call.
    pub fn finish(&mut self) -> Vec<Piece> {
        let held = std::mem::take(&mut self.held);
        if held.is_empty() {
            Vec::new()
        } else {
            vec![Piece::Text(held)]
        }
    }

    fn examine(&self) -> Verdict {
        let held = self.held.as_str();
        if held.len() > MAX_HELD {
            return Verdict::NotACall;
        }
        // Still a possible opening, too short to tell.
        if OPENINGS
            .iter()
            .any(|o| o.len() > held.len() && o.starts_with(held))
        {
            return Verdict::Wait;
        }
        let Some(opening) = OPENINGS.iter().find(|o| held.starts_with(**o)) else {
            return Verdict::NotACall;
        };
        let mut body = &held[opening.len()..];
        if *opening == "```" {
            // An optional language tag, then a line break.
            let Some(line_end) = body.find('\n') else {
                return if body.len() < 16 && body.chars().all(char::is_alphanumeric) {
                    Verdict::Wait
                } else {
                    Verdict::NotACall
                };
            };
            body = &body[line_end + 1..];
        }
        let object_at = if *opening == "{" {
            0
        } else {
            let trimmed = body.trim_start();
            if trimmed.is_empty() {
                return Verdict::Wait;
            }
            if !trimmed.starts_with('{') {
                return Verdict::NotACall;
            }
            held.len() - trimmed.len()
        };
        // A JSON object's first token is a key or its end: "{name}" is no call.
        match held[object_at + 1..].trim_start().chars().next() {
            None => return Verdict::Wait,
            Some('"' | '}') => {}
            Some(_) => return Verdict::NotACall,
        }
        let Some(object_len) = json_object_len(&held[object_at..]) else {
            return Verdict::Wait;
        };
        let object_end = object_at + object_len;
        let Some(call) = as_create_ticket(&held[object_at..object_end]) else {
            return Verdict::NotACall;
        };
        // The closing fence or tag goes with the call.
        let closing = match *opening {
            "```" => "```",
            "<tool_call>" => "</tool_call>",
            _ => "",
        };
        let after = &held[object_end..];
        let trimmed = after.trim_start();
        let used = if closing.is_empty() {
            object_end
        } else if trimmed.starts_with(closing) {
            held.len() - trimmed.len() + closing.len()
        } else if closing.starts_with(trimmed) {
            // The closing may still be on its way.
            return Verdict::Wait;
        } else {
            object_end
        };
        Verdict::Call(call, used)
    }
}

enum Verdict {
    Wait,
    NotACall,
    /// The call, and how many held bytes it took.
    Call(ToolCall, usize),
}

/// Adjacent text pieces as one.
fn merge(pieces: Vec<Piece>) -> Vec<Piece> {
    let mut out: Vec<Piece> = Vec::new();
    for piece in pieces {
        match (out.last_mut(), piece) {
            (Some(Piece::Text(last)), Piece::Text(next)) => last.push_str(&next),
            (_, piece) => out.push(piece),
        }
    }
    out.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
    out
}

/// The length of the JSON object `text` starts with, once it is complete.
fn json_object_len(text: &str) -> Option<usize> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for (i, c) in text.char_indices() {
        if in_string {
            match c {
                _ if escaped => escaped = false,
                '\\' => escaped = true,
                '"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match c {
            '"' => in_string = true,
            '{' => depth += 1,
            '}' => {
                depth = depth.checked_sub(1)?;
                if depth == 0 {
                    return Some(i + 1);
                }
            }
            _ => {}
        }
    }
    None
}

/// A `create_ticket` call in one of the shapes models write it in, with its arguments as
/// JSON text.
fn as_create_ticket(object: &str) -> Option<ToolCall> {
    let value: serde_json::Value = serde_json::from_str(object).ok()?;
    let map = value.as_object()?;
    let call = |arguments: Option<&serde_json::Value>| {
        let arguments = match arguments {
            Some(serde_json::Value::String(s)) => s.clone(),
            Some(v @ serde_json::Value::Object(_)) => v.to_string(),
            _ => "{}".to_owned(),
        };
        Some(ToolCall {
            name: CREATE_TICKET.to_owned(),
            arguments,
        })
    };
    fn arguments_of(m: &serde_json::Map<String, serde_json::Value>) -> Option<&serde_json::Value> {
        m.get("arguments").or_else(|| m.get("parameters"))
    }
    // {"name": "create_ticket", "arguments": {...}} and its "tool"/"function" spellings.
    for key in ["name", "tool", "function", "tool_name"] {
        if map.get(key).and_then(|v| v.as_str()) == Some(CREATE_TICKET) {
            return call(arguments_of(map));
        }
    }
    // {"function": {"name": "create_ticket", "arguments": ...}}, OpenAI's own shape.
    if let Some(function) = map.get("function").and_then(|f| f.as_object()) {
        if function.get("name").and_then(|v| v.as_str()) == Some(CREATE_TICKET) {
            return call(arguments_of(function));
        }
    }
    // The arguments alone: create_ticket is the only tool offered, and this is its shape.
    let only_arguments = !map.is_empty()
        && map.get("title").is_some_and(|t| t.is_string())
        && map.keys().all(|k| k == "title" || k == "description");
    if only_arguments {
        return call(Some(&value));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(pieces: &[&str]) -> Vec<Piece> {
        let mut f = BareCalls::new();
        let mut out: Vec<Piece> = pieces.iter().flat_map(|p| f.push(p)).collect();
        out.extend(f.finish());
        merge(out)
    }

    fn text(s: &str) -> Piece {
        Piece::Text(s.to_owned())
    }

    fn title_of(piece: &Piece) -> String {
        let Piece::Call(call) = piece else {
            panic!("not a call: {piece:?}");
        };
        assert_eq!(call.name, CREATE_TICKET);
        let args: serde_json::Value = serde_json::from_str(&call.arguments).unwrap();
        args["title"].as_str().unwrap().to_owned()
    }

    #[test]
    fn a_bare_call_in_fragments_becomes_a_call() {
        let out = run(&[
            "{\"na",
            "me\": \"create_ticket\", \"argu",
            "ments\": {\"title\": \"Card {declined}\", \"description\": \"a \\\"quote\\\"\"}}",
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(title_of(&out[0]), "Card {declined}");
    }

    #[test]
    fn fenced_tagged_and_openai_shaped_calls_are_recognised() {
        let out = run(&[
            "Sure, I'll pass this on.\n```json\n{\"function\": {\"name\": \"create_ticket\", ",
            "\"arguments\": \"{\\\"title\\\": \\\"Export stuck\\\"}\"}}\n``",
            "`\nDone.",
        ]);
        assert_eq!(out[0], text("Sure, I'll pass this on.\n"));
        assert_eq!(title_of(&out[1]), "Export stuck");
        assert_eq!(out[2], text("\nDone."));
        let out = run(&[
            "<tool_call>\n{\"name\": \"create_ticket\", \"parameters\": {\"title\": \"Hacked\"}}\n</tool_call>",
        ]);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(title_of(&out[0]), "Hacked");
        let out = run(&["{\"title\": \"Refund missing\", \"description\": \"x\"}"]);
        assert_eq!(title_of(&out[0]), "Refund missing");
    }

    #[test]
    fn other_text_with_braces_fences_and_tags_passes_unchanged() {
        for pieces in [
            &["Use {name} in templates, like {\"a\": 1}."][..],
            &["Run `sync` or ", "```bash\nls\n```", " then <b>stop</b>."],
            &["An unclosed {", " brace"],
            &["<", "tool", " and 3 < 4 and {\"name\": \"delete_all\"}"],
            &["{\"title\": 5}"],
        ] {
            let out = run(pieces);
            assert_eq!(out, vec![text(&pieces.concat())], "{pieces:?}");
        }
    }

    #[test]
    fn plain_text_is_not_held() {
        let mut f = BareCalls::new();
        assert_eq!(f.push("Hello"), vec![text("Hello")]);
        assert_eq!(f.push(" there {"), vec![text(" there ")]);
        assert_eq!(f.push("x"), vec![text("{x")]);
    }

    #[test]
    fn held_text_is_bounded() {
        let mut f = BareCalls::new();
        let mut out = f.push("{\"name\": \"create_ticket\", \"arguments\": \"");
        out.extend(f.push(&"x".repeat(MAX_HELD + 10)));
        assert!(matches!(&out[..], [Piece::Text(t)] if t.starts_with("{\"name\"")));
    }
}
