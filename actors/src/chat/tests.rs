//! The chat session actor with the offline assistant, on the in-memory store.

use super::*;
use crate::domain::ChatRole;
use crate::llm::LlmRole;
use crate::store::ChatStore;
use crate::testkit::{eventually, kit, kit_with, quick_passivation, Kit};

fn ask(question: &str) -> TurnRequest {
    TurnRequest {
        mode: ChatMode::Conversation { tools: true },
        messages: vec![LlmMessage::new(LlmRole::User, question)],
        project_name: "Acme".into(),
        allowed_hosts: vec![],
        assistant: Default::default(),
        language: None,
        visitor: None,
        contact: None,
    }
}

fn session(k: &Kit, id: &str) -> SessionKey {
    SessionKey {
        project: k.project.clone(),
        session: id.into(),
    }
}

/// Everything a turn streams, up to its end.
async fn answer(turn: Turn) -> Vec<TurnEvent> {
    let mut turn = turn;
    let mut events = Vec::new();
    while let Some(event) = turn.events.recv().await {
        let end = matches!(event, TurnEvent::Done | TurnEvent::Error(_));
        events.push(event);
        if end {
            break;
        }
    }
    events
}

/// Asks `question` in the session and reads the whole answer.
async fn ask_in(k: &Kit, key: &SessionKey, question: &str) -> Vec<TurnEvent> {
    answer(k.system.chats.turn(key, ask(question)).await.unwrap()).await
}

fn refused_for_quota(events: &[TurnEvent]) -> bool {
    let quota = |e: &TurnEvent| matches!(e, TurnEvent::Error(ChatError::Quota { .. }));
    events.iter().any(quota)
}

fn text(events: &[TurnEvent]) -> String {
    events
        .iter()
        .filter_map(|e| match e {
            TurnEvent::Text(t) | TurnEvent::Sources { text: t, .. } => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_question_is_answered_from_the_knowledge_base_and_the_transcript_is_kept() {
    let k = kit().await;
    let refunds = k.article(
        "Refunds",
        "Refunds reach your card within five working days.",
    );
    k.system.kb.put(refunds).await.unwrap();
    let key = session(&k, "s1");

    let turn = k.system.chats.turn(&key, ask("How long do refunds take?"));
    let events = answer(turn.await.unwrap()).await;
    assert!(text(&events).contains("five working days"), "{events:?}");
    assert_eq!(events.last(), Some(&TurnEvent::Done));

    // The question and the answer are written once the turn ends.
    eventually("the transcript is stored", async || {
        let turns = k.store.list_chat_turns(&k.project, "s1", 10).await.unwrap();
        turns.len() == 2
    })
    .await;
    let turns = k
        .system
        .chats
        .transcript(&k.project, "s1", 10)
        .await
        .unwrap();
    assert_eq!(turns[0].content, "How long do refunds take?");
    assert!(turns[1].content.contains("five working days"));
}

#[tokio::test]
async fn asking_for_a_person_opens_a_ticket_until_the_session_quota_is_spent() {
    let (tickets, kb, mut chat) = (
        Default::default(),
        Default::default(),
        ChatConfig::default(),
    );
    chat.quotas.session_tickets = 1;
    let k = kit_with(tickets, kb, chat).await;
    let key = session(&k, "s2");

    let events = ask_in(&k, &key, "I want to talk to a human").await;
    let Some(TurnEvent::TicketOpened { slug, .. }) = events.first() else {
        panic!("no ticket opened: {events:?}");
    };
    let ticket = k
        .system
        .tickets
        .find(&crate::ticket::TicketKey {
            project: k.project.clone(),
            slug: slug.clone(),
        })
        .await
        .unwrap();
    assert_eq!(ticket.session_id.as_deref(), Some("s2"));

    let again = ask_in(&k, &key, "A human, please").await;
    assert!(
        refused_for_quota(&again),
        "a second ticket for the session is refused: {again:?}"
    );
}

#[tokio::test]
async fn a_session_over_its_request_quota_is_refused_with_a_retry_time() {
    let mut chat = ChatConfig::default();
    chat.quotas.session_requests_per_minute = 2;
    let k = kit_with(Default::default(), Default::default(), chat).await;
    let key = session(&k, "s3");
    for _ in 0..2 {
        ask_in(&k, &key, "Hello").await;
    }
    match k.system.chats.turn(&key, ask("Hello")).await {
        Err(ChatError::Quota { retry_after, .. }) => assert!(retry_after.is_some()),
        other => panic!("expected a quota refusal, got {:?}", other.map(|_| ())),
    }
    // Another session has its own quota.
    let other = session(&k, "s4");
    assert!(k.system.chats.turn(&other, ask("Hello")).await.is_ok());
}

#[tokio::test]
async fn no_more_sessions_start_than_the_configured_maximum() {
    let chat = ChatConfig {
        max_sessions: 1,
        ..ChatConfig::default()
    };
    let k = kit_with(Default::default(), Default::default(), chat).await;
    ask_in(&k, &session(&k, "a"), "Hi").await;
    let refused = k.system.chats.turn(&session(&k, "b"), ask("Hi")).await;
    assert!(matches!(refused, Err(ChatError::Unavailable(_))));
    // The running session is still served.
    assert!(k
        .system
        .chats
        .turn(&session(&k, "a"), ask("Hi"))
        .await
        .is_ok());
}

#[tokio::test]
async fn an_idle_session_passivates_and_comes_back_with_its_spending_from_the_store() {
    let (tickets, kb, mut chat) = quick_passivation();
    chat.quotas.session_tickets = 1;
    let k = kit_with(tickets, kb, chat).await;
    let key = session(&k, "s5");
    let events = ask_in(&k, &key, "Talk to a person").await;
    assert!(matches!(
        events.first(),
        Some(TurnEvent::TicketOpened { .. })
    ));
    eventually("the transcript is stored", async || {
        let usage = k.store.chat_session_usage(&k.project, "s5").await.unwrap();
        usage.tickets == 1
    })
    .await;

    eventually("the idle session passivates", async || {
        k.system.chats.active() == 0
    })
    .await;
    // A fresh actor reads the transcript: the ticket it opened still counts.
    let again = ask_in(&k, &key, "Talk to a person").await;
    assert!(refused_for_quota(&again), "{again:?}");
}

/// The conversation a ticket is opened from goes into the store with the ticket, in one write:
/// nothing passes through the ticket's actor one message at a time, so the visitor waits for
/// one write and nobody ever sees the ticket half-filled.
#[tokio::test]
async fn a_ticket_opened_from_a_chat_is_written_with_its_whole_conversation_at_once() {
    use crate::domain::{MessageBody, Participant};
    use crate::store::{MessageRange, TicketStore};
    let k = kit().await;
    let key = session(&k, "s6");
    let mut feed = k.system.feeds.subscribe(&k.project);
    let request = TurnRequest {
        messages: vec![
            LlmMessage::new(LlmRole::User, "I was charged twice"),
            LlmMessage::new(LlmRole::Assistant, "Refunds take five days."),
            LlmMessage::new(LlmRole::User, "I want to talk to a human"),
        ],
        ..ask("")
    };
    let events = answer(k.system.chats.turn(&key, request).await.unwrap()).await;
    let Some(TurnEvent::TicketOpened { slug, .. }) = events.first() else {
        panic!("no ticket opened: {events:?}");
    };

    // The hand-off note is the one write through the ticket's actor, after the ticket.
    assert_eq!(
        k.store.batch_sizes(),
        vec![1],
        "no message went through the ticket's actor"
    );
    let messages = k
        .store
        .list_messages(&k.project, slug, MessageRange::all())
        .await
        .unwrap();
    let said: Vec<(Participant, &str)> = messages
        .iter()
        .map(|m| (m.author, m.content.as_str()))
        .collect();
    assert_eq!(
        said,
        [
            (Participant::User, "I was charged twice"),
            (
                Participant::User,
                "(earlier answer, as the visitor's browser reports it) Refunds take five days."
            ),
            (Participant::User, "I want to talk to a human"),
        ]
    );
    assert!(messages.windows(2).all(|w| w[0].id < w[1].id));
    assert!(messages.iter().all(|m| m.timestamp == m.id.timestamp()));
    // The agents' feed hears of the ticket once, not of each copied message, then of the note.
    let heard: serde_json::Value = serde_json::from_slice(&feed.recv().await.unwrap()).unwrap();
    assert_eq!(heard["type"], "ticket_created");
    // The title is the problem, not the request for a person.
    assert_eq!(heard["payload"]["title"], "I was charged twice", "{heard}");
    let heard: serde_json::Value = serde_json::from_slice(&feed.recv().await.unwrap()).unwrap();
    assert_eq!(heard["type"], "note_added");
    assert!(feed.try_recv().is_err(), "nothing else was announced");
    let notes = k.store.list_notes(&k.project, slug).await.unwrap();
    assert_eq!(notes.len(), 1);
    assert_eq!(notes[0].author.as_str(), "Assistant");
    assert!(
        notes[0]
            .content
            .as_str()
            .contains("Reason: explicit request"),
        "{notes:?}"
    );
    // The ticket's actor carries on after the copied history.
    let ticket = crate::ticket::TicketKey {
        project: k.project.clone(),
        slug: slug.clone(),
    };
    let content = MessageBody::parse("An agent here").unwrap();
    let post = crate::ticket::Command::Post {
        author: Participant::Admin,
        content,
        idempotency_key: None,
        agent: None,
    };
    let reply = k.system.tickets.run(&ticket, post);
    assert!(reply.await.unwrap().into_message().unwrap().id > messages[2].id);
}

/// A clean stop waits for the transcript a turn is still writing: the actor system stops only
/// once it is stored, so the store can be flushed after it.
#[tokio::test(start_paused = true)]
async fn stopping_the_system_waits_for_a_transcript_still_being_written() {
    let k = kit().await;
    k.store.hold_transcripts();
    let key = session(&k, "s7");
    let events = ask_in(&k, &key, "Hello").await;
    assert!(matches!(events.last(), Some(TurnEvent::Done)), "{events:?}");
    k.store.holding_transcripts(1).await;

    let system = k.system.clone();
    let mut stopping = tokio::spawn(async move { system.stop().await });
    // Paused time moves on only once every task is waiting, so this returns once the stop has
    // gone as far as it can without the write (a wait on the clock, not for it).
    tokio::select! {
        _ = &mut stopping => panic!("the system stopped with a transcript write still held"),
        _ = tokio::time::sleep(Duration::from_secs(1)) => {}
    }
    k.store.release_transcript();
    stopping.await.unwrap();
    let stored = k.store.list_chat_turns(&k.project, "s7", 10).await.unwrap();
    assert_eq!(stored.len(), 2, "the question and its answer are stored");
}

/// An answer older than the turns a session keeps in memory is rated from the store, and a
/// visitor's own message is no answer to rate.
#[tokio::test]
async fn an_older_answer_is_rated_from_the_store_and_a_question_is_not_an_answer() {
    let k = kit().await;
    let mut turns = Vec::new();
    let mut last = None;
    let at = crate::clock::now_millis();
    for i in 0..30 {
        let role = if i % 2 == 0 {
            ChatRole::User
        } else {
            ChatRole::Assistant
        };
        let id = MessageId::next(last, at);
        last = Some(id);
        turns.push(crate::domain::ChatTurn {
            id,
            role,
            content: format!("turn {i}"),
            at,
            ticket_slug: None,
            citations: vec![],
            tokens: 0,
            feedback: None,
        });
    }
    k.store
        .append_chat_turns(&k.project, "s8", &turns)
        .await
        .unwrap();
    let key = session(&k, "s8");
    let (oldest_question, oldest_answer) = (turns[0].id, turns[1].id);
    k.system
        .chats
        .rate(&key, oldest_answer, Rating::Up)
        .await
        .unwrap();
    let stored = k.store.chat_turn(&k.project, "s8", oldest_answer).await;
    assert_eq!(stored.unwrap().unwrap().feedback, Some(Rating::Up));
    let refused = k.system.chats.rate(&key, oldest_question, Rating::Up).await;
    assert_eq!(refused, Err(ChatError::UnknownTurn));
    // Another session does not know it.
    let other = k
        .system
        .chats
        .rate(&session(&k, "s9"), oldest_answer, Rating::Down)
        .await;
    assert_eq!(other, Err(ChatError::UnknownTurn));
}
