//! Ticket search at 100,000 tickets: one project's index ([`TicketIndex`]) of 100,000 tickets
//! with three messages each, generated deterministically, searched for words of different
//! frequencies; set against the title scan that answered `q` before the index (every title
//! lower-cased and searched for the text, newest first, until a page is full), over the same
//! tickets held in memory, so the scan pays no storage reads: a floor for what it cost.
//! Also the cost of keeping the index in step: one new message applied and committed.
//!
//! Run: `cargo bench -p fleety-benches --bench search`.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use criterion::{criterion_group, BenchmarkId, Criterion};
use fleety_actors::domain::*;
use fleety_actors::search::index::{Item, TicketIndex};
use fleety_actors::store::TicketQuery;
use fleety_actors::MessageId;

const TICKETS: usize = 100_000;
const MESSAGES: usize = 3;
const VOCABULARY: usize = 5_000;

/// A deterministic stream of numbers (an LCG): the same tickets on every run.
struct Draw(u64);

impl Draw {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    /// A word's rank, skewed towards the first ones as natural text is: rank r comes up
    /// about as often as 1/r.
    fn rank(&mut self) -> usize {
        let u = (self.next() % 1_000_000) as f64 / 1_000_000.0;
        ((VOCABULARY as f64).powf(u) as usize - 1).min(VOCABULARY - 1)
    }
}

/// Pronounceable made-up words, distinct per rank.
fn word(rank: usize) -> String {
    const SYLLABLES: [&str; 20] = [
        "ka", "lo", "mi", "ne", "po", "ru", "sa", "te", "vi", "zo", "ba", "de", "fi", "go", "hu",
        "ja", "ke", "li", "mo", "nu",
    ];
    let mut n = rank + 20;
    let mut out = String::new();
    while n > 0 {
        out.push_str(SYLLABLES[n % 20]);
        n /= 20;
    }
    out
}

/// The `i`th ticket's slug, shaped as slugs are (`word-word-NNN`): the thousands spelled in
/// letters in the first word, the rest as the number.
fn slug(i: usize) -> Slug {
    let mut thousands = i / 1000;
    let mut word = String::from("bench");
    loop {
        word.push((b'a' + (thousands % 26) as u8) as char);
        thousands /= 26;
        if thousands == 0 {
            break;
        }
    }
    Slug::parse(&format!("{word}-ticket-{:03}", i % 1000)).unwrap()
}

fn sentence(draw: &mut Draw, words: usize) -> String {
    (0..words)
        .map(|_| word(draw.rank()))
        .collect::<Vec<_>>()
        .join(" ")
}

fn tickets() -> Vec<(Ticket, Vec<Message>)> {
    let project = ProjectId::parse("bench").unwrap();
    let start = DateTime::<Utc>::from_timestamp(1_700_000_000, 0).unwrap();
    let mut draw = Draw(42);
    (0..TICKETS)
        .map(|i| {
            let created = start + chrono::Duration::seconds(i as i64);
            let mut ticket = Ticket::opened(
                project.clone(),
                slug(i),
                Title::parse(&sentence(&mut draw, 4)).unwrap(),
                Description::parse("").unwrap(),
                TicketSource::Api,
                None,
                created,
            );
            ticket.status = [TicketStatus::Open, TicketStatus::Closed][i % 2];
            let mut last = None;
            let messages = (0..MESSAGES)
                .map(|m| {
                    let id = MessageId::next(last, created + chrono::Duration::minutes(m as i64));
                    last = Some(id);
                    Message {
                        id,
                        author: [Participant::User, Participant::Admin][m % 2],
                        content: MessageBody::parse(&sentence(&mut draw, 15)).unwrap(),
                        timestamp: id.timestamp(),
                        idempotency_key: None,
                        agent: None,
                    }
                })
                .collect();
            (ticket, messages)
        })
        .collect()
}

/// The title scan `q` used before the index: newest first, a page of `limit` at most.
fn title_scan(newest_first: &[Ticket], needle: &str, limit: usize) -> usize {
    let needle = needle.to_lowercase();
    newest_first
        .iter()
        .filter(|t| t.title.as_str().to_lowercase().contains(&needle))
        .take(limit + 1)
        .count()
}

fn search(c: &mut Criterion) {
    let made = tickets();
    let started = Instant::now();
    let mut index = TicketIndex::new().unwrap();
    for chunk in made.chunks(1_000) {
        let items = chunk
            .iter()
            .flat_map(|(t, messages)| {
                std::iter::once(Item::Ticket(t.clone())).chain(
                    messages
                        .iter()
                        .map(|m| Item::Message(t.slug.clone(), m.clone())),
                )
            })
            .collect();
        index.apply(items).unwrap();
    }
    index.commit().unwrap();
    eprintln!(
        "indexed {TICKETS} tickets ({} documents) in {:.2?}",
        TICKETS * (MESSAGES + 1),
        started.elapsed()
    );
    let mut newest_first: Vec<Ticket> = made.iter().map(|(t, _)| t.clone()).collect();
    newest_first.reverse();

    let page = TicketQuery {
        limit: 50,
        ..TicketQuery::default()
    };
    let closed = TicketQuery {
        status: Some(TicketStatus::Closed),
        ..page.clone()
    };
    // A common word, a rare one, two words together, a prefix of a rare word.
    let common = word(0);
    let rare = word(VOCABULARY - 10);
    let cases = [
        ("common", common.clone(), &page),
        ("rare", rare.clone(), &page),
        ("two_words", format!("{} {}", word(3), word(40)), &page),
        ("prefix", rare[..rare.len() - 2].to_owned(), &page),
        ("common_closed", common.clone(), &closed),
    ];
    for (name, text, query) in &cases {
        let found = index.search(text, query).unwrap();
        eprintln!(
            "{name} ({text:?}): a page of {} tickets",
            found.tickets.len()
        );
    }

    let mut group = c.benchmark_group("ticket_search_100k");
    group.sample_size(20);
    group.warm_up_time(Duration::from_millis(500));
    group.measurement_time(Duration::from_secs(2));
    for (name, text, query) in &cases {
        group.bench_with_input(BenchmarkId::new("index", name), text, |b, text| {
            b.iter(|| index.search(text, query).unwrap())
        });
    }
    // The scan, on the two single words: a common word fills a page early, a rare one makes
    // it read every title.
    for (name, text) in [("common", &common), ("rare", &rare)] {
        group.bench_with_input(BenchmarkId::new("title_scan", name), text, |b, text| {
            b.iter(|| title_scan(&newest_first, text, 50))
        });
    }
    // Keeping in step: one message more, made searchable.
    let slug = made[TICKETS / 2].0.slug.clone();
    let mut last = made[TICKETS / 2].1.last().map(|m| m.id);
    let body = MessageBody::parse(&format!("{common} {rare} and a new word")).unwrap();
    group.bench_function("apply_one_message", |b| {
        b.iter(|| {
            let id = MessageId::next(last, Utc::now());
            last = Some(id);
            let message = Message {
                id,
                author: Participant::User,
                content: body.clone(),
                timestamp: id.timestamp(),
                idempotency_key: None,
                agent: None,
            };
            index
                .apply(vec![Item::Message(slug.clone(), message)])
                .unwrap();
            index.commit().unwrap();
        })
    });
    group.finish();
}

criterion_group!(benches, search);
criterion::criterion_main!(benches);
