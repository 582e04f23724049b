//! Idempotency keys: a client that retries a post with the key it used before gets the
//! message it already made instead of a second copy.
//!
//! A ticket remembers keys as far back as the messages it keeps in memory (the newest 500),
//! which covers any retry a client makes after a dropped connection.

use crate::domain::{IdempotencyKey, Message, MessageBody, Participant};

/// What a post's idempotency key says about it.
#[derive(Debug, PartialEq, Eq)]
pub enum Retry {
    /// The key is new: make the message.
    New,
    /// The same post was made before: answer with the message it made.
    Repeat(Message),
    /// The key's first post is still on its way to the store: the client retries shortly.
    InProgress,
    /// The key was used for a different message.
    KeyReused,
}

/// Looks `key` up among the posts still on their way to the store and among the durable
/// messages kept in memory.
pub fn check<'a>(
    key: &IdempotencyKey,
    author: Participant,
    content: &MessageBody,
    queued: impl IntoIterator<Item = &'a Message>,
    recent: impl DoubleEndedIterator<Item = &'a Message>,
) -> Retry {
    let same_key = |m: &&Message| m.idempotency_key.as_ref() == Some(key);
    if queued.into_iter().any(|m| same_key(&m)) {
        return Retry::InProgress;
    }
    match recent.rev().find(same_key) {
        Some(m) if m.author == author && &m.content == content => Retry::Repeat(m.clone()),
        Some(_) => Retry::KeyReused,
        None => Retry::New,
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::MessageId;

    /// A message by the visitor, with its idempotency key if it has one.
    pub(crate) fn message(text: &str, key: Option<&str>) -> Message {
        let id = MessageId::next(None, chrono::Utc::now());
        Message {
            id,
            author: Participant::User,
            content: MessageBody::parse(text).unwrap(),
            timestamp: id.timestamp(),
            idempotency_key: key.map(|k| IdempotencyKey::parse(k).unwrap()),
        }
    }

    #[test]
    fn a_key_decides_between_new_repeat_in_progress_and_reused() {
        let key = IdempotencyKey::parse("k1").unwrap();
        let hello = MessageBody::parse("hello").unwrap();
        let stored = [message("hi", None), message("hello", Some("k1"))];
        let verdict = |key: &IdempotencyKey, queued: &[Message], author, content| {
            check(key, author, content, queued, stored.iter())
        };
        assert_eq!(
            verdict(&key, &[], Participant::User, &hello),
            Retry::Repeat(stored[1].clone())
        );
        let other = MessageBody::parse("something else").unwrap();
        assert_eq!(
            verdict(&key, &[], Participant::User, &other),
            Retry::KeyReused
        );
        assert_eq!(
            verdict(&key, &[], Participant::Admin, &hello),
            Retry::KeyReused
        );
        let queued = [message("hello", Some("k1"))];
        assert_eq!(
            verdict(&key, &queued, Participant::User, &hello),
            Retry::InProgress
        );
        let fresh = IdempotencyKey::parse("k2").unwrap();
        assert_eq!(verdict(&fresh, &[], Participant::User, &hello), Retry::New);
    }
}
