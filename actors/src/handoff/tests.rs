use super::*;

const TRAIN: &str = include_str!("../../data/handoff/train.tsv");
const HELDOUT: &str = include_str!("../../data/handoff/heldout.tsv");

fn user(text: &str) -> LlmMessage {
    LlmMessage::new(LlmRole::User, text)
}

fn assistant(text: &str) -> LlmMessage {
    LlmMessage::new(LlmRole::Assistant, text)
}

fn model() -> &'static Model {
    shipped().expect("the built-in model is readable")
}

#[test]
fn the_shipped_model_was_trained_on_the_corpus_in_the_repository() {
    assert_eq!(
        model().corpus_hash,
        corpus_hash(TRAIN),
        "train.tsv changed: retrain with `cargo run -p fleety-actors --features train \
         --example train_handoff`"
    );
    // Round trip of the file format.
    assert_eq!(&Model::from_bytes(&model().to_bytes()).unwrap(), model());
}

#[test]
fn the_held_out_set_is_handed_over_with_precision_and_recall_of_at_least_0_9() {
    let train = read_corpus(TRAIN).unwrap();
    let heldout = read_corpus(HELDOUT).unwrap();
    // The held-out messages are not in the training set.
    for (_, text) in &heldout {
        assert!(
            !train
                .iter()
                .any(|(_, t)| t.to_lowercase() == text.to_lowercase()),
            "{text}"
        );
    }
    let e = evaluate(model(), &heldout);
    println!(
        "hand-off classifier, held out ({} messages, {} for training): intent accuracy {:.3}, \
         needs a person: precision {:.3}, recall {:.3}",
        heldout.len(),
        train.len(),
        e.accuracy,
        e.precision,
        e.recall
    );
    for (expected, got, text) in &e.mistakes {
        println!("  {} taken for {}: {text}", expected.label(), got.label());
    }
    assert!(e.precision >= 0.9, "precision {:.3}", e.precision);
    assert!(e.recall >= 0.9, "recall {:.3}", e.recall);
}

#[test]
fn greetings_and_thanks_never_hand_over_in_any_language() {
    for text in [
        "Hi",
        "Hello!",
        "Thanks!",
        "thank you, bye",
        "Hallo",
        "Danke",
        "مرحبا",
        "شكرا",
        "Hola",
        "Gracias",
        "Bonjour",
        "Merci",
    ] {
        let next = decide(&[user(text)], false);
        assert_eq!(next, Next::SmallTalk, "{text}");
    }
}

#[test]
fn asking_for_a_human_hands_over_in_every_language_of_the_widget_and_spanish() {
    for text in [
        "I want to talk to a human",
        "I'd like to talk to a person, please.",
        "Ich möchte bitte mit einer Person sprechen.",
        "Ich möchte mit einem Menschen sprechen",
        "أود التحدث إلى شخص من فضلك.",
        "أريد التحدث إلى إنسان",
        "Quiero hablar con una persona",
        "Quiero hablar con un humano, por favor",
        "Je veux parler à un humain",
    ] {
        let next = decide(&[user(text)], true);
        assert_eq!(next, Next::HandOver(Reason::ExplicitRequest), "{text}");
    }
}

#[test]
fn problems_only_a_person_can_solve_hand_over_and_questions_do_not() {
    for text in [
        "I was charged twice for my subscription",
        "There's a charge on my card I don't recognise",
        "All my notes disappeared yesterday",
        "My export has been stuck for five hours",
        "Someone logged into my account from another country",
        "I deleted my workspace by mistake, please restore it",
    ] {
        assert_eq!(
            decide(&[user(text)], true),
            Next::HandOver(Reason::NeedsAccount),
            "{text}"
        );
    }
    for text in [
        "How do I reset my password?",
        "Can I export my dashboards to PDF?",
        "Do you have a mobile app?",
        "How do I delete my workspace?",
    ] {
        assert_eq!(decide(&[user(text)], true), Next::Answer, "{text}");
        assert_eq!(decide(&[user(text)], false), Next::Offer, "{text}");
    }
}

#[test]
fn yes_opens_a_ticket_only_after_the_offer() {
    let offered = [
        user("Can I export my dashboards to PDF?"),
        assistant(&format!("I couldn't find an answer to that. {OFFER}")),
    ];
    let mut yes = offered.to_vec();
    yes.push(user("yes please"));
    assert_eq!(decide(&yes, false), Next::HandOver(Reason::NoAnswer));
    let mut no = offered.to_vec();
    no.push(user("no thanks"));
    assert_eq!(decide(&no, false), Next::Declined);
    // Without an offer, "yes" is only small talk.
    assert_eq!(decide(&[user("yes please")], false), Next::SmallTalk);
}

#[test]
fn the_title_comes_from_the_substantive_message() {
    let conversation = [
        user("Hi"),
        assistant("Hello! What can I help you with?"),
        user("My export has been stuck at 40% since this morning"),
        assistant("Exports usually take minutes."),
        user("I want to talk to a human"),
    ];
    assert_eq!(
        substantive(&conversation),
        Some("My export has been stuck at 40% since this morning")
    );
    assert_eq!(substantive(&[user("I want to talk to a human")]), None);
    assert!(says_nothing("Talk to a human"));
    assert!(says_nothing("  "));
    assert!(!says_nothing("Card declined at checkout"));
}

#[test]
fn the_note_gives_the_reason_and_a_summary_not_the_conversation() {
    let conversation = [
        user("How do I change my card?"),
        assistant("Go to Settings, then Billing."),
        user("That did not work, I want to talk to a human"),
    ];
    let written = note(Reason::ExplicitRequest, &conversation);
    assert!(written.contains("Reason: explicit request"), "{written}");
    assert!(written.contains("the visitor wrote 2 messages, the assistant answered 1 time"));
    assert!(
        written.contains("The problem: \"How do I change my card?\""),
        "{written}"
    );
    assert!(
        written.contains("Their last message: \"That did not work, I want to talk to a human\""),
        "{written}"
    );
    // The conversation is the ticket's first messages: the note does not copy it.
    assert!(!written.contains("Go to Settings"), "{written}");
    assert!(!written.contains("- Visitor:"), "{written}");
    // The problem is not quoted twice when it was also the last thing said.
    let once = note(
        Reason::NeedsAccount,
        &[user("I was charged twice this month")],
    );
    assert_eq!(once.matches("charged twice").count(), 1, "{once}");
    let long = "word ".repeat(100);
    assert!(note(Reason::NoAnswer, &[user(&long)]).contains('…'));
}

#[test]
fn features_are_bounded_and_normalised() {
    // An empty message has only its length.
    assert_eq!(features("", 64).len(), 1);
    let f = features(&"talk to a human ".repeat(1000), 1024);
    assert!(f.iter().all(|(b, _)| *b < 1024));
    let norm: f32 = f.iter().map(|(_, v)| v * v).sum();
    assert!((norm - 1.0).abs() < 1e-4);
    // Any script, apostrophes joined.
    assert!(!features("مرحبا", 64).is_empty());
    assert_eq!(features("don't", 4096), features("dont", 4096));
}

#[test]
fn damaged_model_files_are_refused() {
    let bytes = model().to_bytes();
    assert!(Model::from_bytes(&bytes[..bytes.len() - 1]).is_err());
    assert!(Model::from_bytes(b"not a model").is_err());
    let mut extra = bytes.clone();
    extra.push(0);
    assert!(Model::from_bytes(&extra).is_err());
}

#[test]
fn the_corpus_is_well_formed_and_covers_every_intent() {
    let train = read_corpus(TRAIN).unwrap();
    let heldout = read_corpus(HELDOUT).unwrap();
    assert!(train.len() + heldout.len() >= 600);
    for intent in Intent::ALL {
        assert!(train.iter().any(|(i, _)| *i == intent), "{intent:?}");
        assert!(heldout.iter().any(|(i, _)| *i == intent), "{intent:?}");
    }
    assert!(read_corpus("human").is_err());
    assert!(read_corpus("robot\thello").is_err());
}
