//! Replies by email, read: the raw RFC 5322 message a mail server pipes in, parsed with
//! `mail-parser`, reduced to what the sender wrote (without the quoted history and the
//! signature). The endpoint that posts it is `http/inbound.rs`; the addresses it answers are
//! made by `reply_address.rs`.

use mail_parser::{HeaderName, HeaderValue, MessageParser};

/// A raw message larger than this is refused (413): a reply with a photo or two fits, and a
/// request holds no more than this in memory.
pub const MAX_MESSAGE_BYTES: u64 = 10 * 1024 * 1024;

/// What the endpoint needs of a delivered mail.
#[derive(Debug)]
pub struct Mail {
    /// Where the mail was delivered and addressed, most telling first: `Delivered-To` and
    /// `X-Original-To` (this delivery's recipient, as the mail server wrote it), then `To`
    /// and `Cc`.
    pub recipients: Vec<String>,
    /// The sender's address, as written.
    pub from: Option<String>,
    /// The `Message-ID`, without angle brackets; none if the mail has none.
    pub message_id: Option<String>,
    /// The text part, or the HTML part as text when that is all; none when the mail has
    /// neither.
    pub text: Option<String>,
}

/// Parses a raw message; none when it is not one: the parser is lenient, so a body that names
/// neither a sender nor a recipient is not taken for a message.
pub fn read(raw: &[u8]) -> Option<Mail> {
    let message = MessageParser::default().parse(raw)?;
    let mut recipients = Vec::new();
    for name in ["Delivered-To", "X-Original-To", "To", "Cc"] {
        for header in message.headers() {
            if header.name.as_str().eq_ignore_ascii_case(name) {
                addresses(&header.value, &mut recipients);
            }
        }
    }
    let from = message
        .from()
        .and_then(|a| a.first())
        .and_then(|a| a.address())
        .map(str::to_owned);
    let message_id = message
        .header(HeaderName::MessageId)
        .and_then(HeaderValue::as_text)
        .map(str::trim)
        .filter(|id| !id.is_empty())
        .map(str::to_owned);
    if from.is_none() && recipients.is_empty() {
        return None;
    }
    let text = message.body_text(0).map(|t| t.into_owned());
    Some(Mail {
        recipients,
        from,
        message_id,
        text,
    })
}

/// The addresses a header names: parsed ones, or the text of a header that is not an address
/// header to mail-parser (`Delivered-To`, `X-Original-To`).
fn addresses(value: &HeaderValue<'_>, out: &mut Vec<String>) {
    match value {
        HeaderValue::Address(list) => {
            out.extend(list.iter().filter_map(|a| a.address()).map(str::to_owned));
        }
        HeaderValue::Text(text) => out.push(text.trim().to_owned()),
        HeaderValue::TextList(list) => out.extend(list.iter().map(|t| t.trim().to_owned())),
        _ => {}
    }
}

/// What the sender wrote: the text without the quoted history (lines quoted with `>`, and
/// everything from an attribution line such as "On … wrote:", Outlook's "-----Original
/// Message-----" or its "From: … Sent: …" header block) and without the signature (from a
/// "-- " line, or a client's "Sent from my iPhone"), trimmed.
pub fn strip(text: &str) -> String {
    let text = text.replace("\r\n", "\n");
    let lines: Vec<&str> = text.lines().collect();
    let mut kept: Vec<&str> = Vec::new();
    for (i, line) in lines.iter().enumerate() {
        let next = lines.get(i + 1..).unwrap_or_default();
        if ends_the_reply(line, next) {
            break;
        }
        if line.trim_start().starts_with('>') {
            continue;
        }
        kept.push(line.trim_end());
    }
    while kept.last().is_some_and(|l| l.trim().is_empty()) {
        kept.pop();
    }
    let start = kept.iter().position(|l| !l.trim().is_empty());
    kept[start.unwrap_or(kept.len())..].join("\n")
}

/// Whether the history or the signature starts at `line` (`next`: the lines after it).
fn ends_the_reply(line: &str, next: &[&str]) -> bool {
    let trimmed = line.trim();
    // The signature delimiter of RFC 3676, its trailing space often lost on the way.
    if line == "-- " || line == "--" {
        return true;
    }
    let lower = trimmed.to_lowercase();
    if SENT_FROM.iter().any(|s| lower.starts_with(s)) {
        return true;
    }
    // Outlook: "-----Original Message-----", or a rule of underscores before the header block.
    if lower.trim_matches('-').trim() == "original message" && lower.starts_with("---") {
        return true;
    }
    if trimmed.len() >= 10 && trimmed.bytes().all(|b| b == b'_') {
        return next
            .iter()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| header_line(l, "from"));
    }
    // Outlook's header block: "From: …" followed shortly by "Sent: …" (or "Date: …").
    if header_line(trimmed, "from") {
        return next
            .iter()
            .take(4)
            .any(|l| header_line(l, "sent") || header_line(l, "date"));
    }
    // "On <date>, <someone> wrote:", which Gmail may wrap over two or three lines.
    if ATTRIBUTION_STARTS.iter().any(|s| lower.starts_with(s)) {
        let mut joined = lower.clone();
        for l in next.iter().take(2) {
            if ATTRIBUTION_ENDS
                .iter()
                .any(|e| joined.trim_end().ends_with(e))
            {
                break;
            }
            joined.push(' ');
            joined.push_str(&l.trim().to_lowercase());
        }
        return ATTRIBUTION_ENDS
            .iter()
            .any(|e| joined.trim_end().ends_with(e));
    }
    false
}

fn header_line(line: &str, name: &str) -> bool {
    let line = line.trim().trim_start_matches('*').to_lowercase();
    line.strip_prefix(name)
        .is_some_and(|rest| rest.trim_start_matches('*').starts_with(':'))
}

/// How mail clients begin the line that introduces the quoted message.
const ATTRIBUTION_STARTS: &[&str] = &["on ", "le ", "am ", "el ", "op ", "il "];
/// How they end it.
const ATTRIBUTION_ENDS: &[&str] = &[
    "wrote:",
    "a écrit :",
    "a écrit:",
    "schrieb:",
    "escribió:",
    "geschreven:",
    "scritto:",
];
/// The signatures mobile clients add.
const SENT_FROM: &[&str] = &[
    "sent from my ",
    "sent from outlook",
    "sent from mail for windows",
    "get outlook for ",
    "sent from yahoo mail",
    "envoyé de mon ",
    "von meinem ",
];

/// Names a mail for idempotency: lowercase hex of the SHA-256 of its `Message-ID`, or of the
/// whole message without one.
pub fn mail_key(mail: &Mail, raw: &[u8]) -> String {
    use sha2::Digest;
    let digest = match &mail.message_id {
        Some(id) => sha2::Sha256::digest(id.as_bytes()),
        None => sha2::Sha256::digest(raw),
    };
    crate::auth::hex(&digest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gmail_history_is_dropped() {
        let text = "Yes, that fixed it, thank you!\r\n\r\nOn Mon, Dec 7, 2026 at 10:04 AM Acme Support <\r\nreply+swift-bear-053.abc@replies.acme.com> wrote:\r\n\r\n> Could you try restarting the app?\r\n>\r\n> Dana\r\n";
        assert_eq!(strip(text), "Yes, that fixed it, thank you!");
        let one_line = "Thanks!\n\nOn Mon, Dec 7, 2026 at 10:04 AM Dana <d@x.org> wrote:\n> hi\n";
        assert_eq!(strip(one_line), "Thanks!");
    }

    #[test]
    fn outlook_history_is_dropped() {
        let block = "It still crashes.\r\nSee the log below.\r\n\r\n________________________________\r\nFrom: Acme Support <reply+x@replies.acme.com>\r\nSent: Monday, December 7, 2026 10:04 AM\r\nTo: Sam <sam@example.com>\r\nSubject: Re: The app crashes\r\n\r\nCould you try restarting the app?\r\n";
        assert_eq!(strip(block), "It still crashes.\nSee the log below.");
        let original =
            "Fine now.\n\n-----Original Message-----\nFrom: Acme\nSent: today\n\nold text\n";
        assert_eq!(strip(original), "Fine now.");
        let bold = "Done.\n\n*From:* Acme Support\n*Sent:* Monday\n*To:* Sam\n\nold\n";
        assert_eq!(strip(bold), "Done.");
    }

    #[test]
    fn apple_mail_history_and_mobile_signatures_are_dropped() {
        let text = "Perfect, thanks.\n\nSent from my iPhone\n\n> On Dec 7, 2026, at 10:04, Acme Support <reply+x@replies.acme.com> wrote:\n>\n> Could you try restarting the app?\n";
        assert_eq!(strip(text), "Perfect, thanks.");
        let text = "Perfect.\n\nOn Dec 7, 2026, at 10:04, Acme Support <reply+x@replies.acme.com> wrote:\n\n> old\n";
        assert_eq!(strip(text), "Perfect.");
    }

    #[test]
    fn the_signature_after_the_delimiter_is_dropped() {
        let text = "Here is the order number: 4417.\n\n-- \nSam Jones\nACME Corp, +1 555 0100\n";
        assert_eq!(strip(text), "Here is the order number: 4417.");
        let lost_space = "Order 4417.\n--\nSam\n";
        assert_eq!(strip(lost_space), "Order 4417.");
    }

    #[test]
    fn what_the_sender_wrote_is_kept_as_written() {
        // A line that only mentions writing, a dash list, a "from:" in a sentence stay.
        let text =
            "On Monday I wrote the report.\n- first\n-- not a delimiter\nThe mail from: my boss\n";
        assert_eq!(strip(text), text.trim_end());
        // Inline quotes are dropped, the answers between them kept.
        let inline = "> Which version?\n2.3.1\n> Which phone?\nA Pixel 8\n";
        assert_eq!(strip(inline), "2.3.1\nA Pixel 8");
        // Only history is nothing.
        assert_eq!(
            strip("\n\nOn Mon, Dec 7, 2026 Dana <d@x.org> wrote:\n> hi\n"),
            ""
        );
        assert_eq!(strip("Sent from my iPhone"), "");
    }

    #[test]
    fn a_raw_message_gives_its_recipients_sender_id_and_text() {
        let raw = b"Delivered-To: reply+a.b@replies.acme.com\r\nFrom: Sam <Sam@Example.com>\r\nTo: Acme <reply+c.d@replies.acme.com>, other@x.org\r\nCc: cc@x.org\r\nMessage-ID: <abc@mail.example.com>\r\nSubject: Re: hi\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nThanks!\r\n";
        let mail = read(raw).unwrap();
        assert_eq!(
            mail.recipients,
            [
                "reply+a.b@replies.acme.com",
                "reply+c.d@replies.acme.com",
                "other@x.org",
                "cc@x.org"
            ]
        );
        assert_eq!(mail.from.as_deref(), Some("Sam@Example.com"));
        assert_eq!(mail.message_id.as_deref(), Some("abc@mail.example.com"));
        assert_eq!(mail.text.as_deref().map(str::trim), Some("Thanks!"));
        // The key is the Message-ID's: the same mail delivered again has it.
        let again = read(raw).unwrap();
        assert_eq!(mail_key(&mail, raw), mail_key(&again, b"other bytes"));
    }

    #[test]
    fn html_only_mail_is_read_as_text_and_a_mail_without_text_has_none() {
        let html = b"From: s@x.org\r\nTo: t@x.org\r\nContent-Type: text/html\r\n\r\n<p>Hello <b>there</b></p><blockquote>old</blockquote>\r\n";
        let text = read(html).unwrap().text.unwrap();
        assert!(text.contains("Hello there"), "{text}");
        let image = b"From: s@x.org\r\nTo: t@x.org\r\nContent-Type: image/png\r\nContent-Transfer-Encoding: base64\r\n\r\niVBORw0KGgo=\r\n";
        assert_eq!(read(image).unwrap().text, None);
        assert!(read(b"").is_none());
        assert!(read(b"this is not an email").is_none());
    }
}
