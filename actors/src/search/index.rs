//! One project's ticket search index: the words of every ticket's title, description,
//! messages and notes, indexed by tantivy in memory, and the tickets' fields, so that a search
//! filters (status, tag), orders and pages its matches without reading the store.
//!
//! A document is one ticket's title and description, or one message, or one note, each tagged
//! with the ticket's number in this index (a fast field): a new message adds one document
//! instead of rewriting a whole ticket's text. A ticket matches a search when every word of
//! the search is somewhere in it, in any of its documents; the last word also matches as the
//! start of a longer word, so the inbox can search as the agent types.
//!
//! Words are cut as the knowledge base cuts them ([`crate::analysis`]) and lower-cased, but not
//! stemmed: a ticket's language is not known, and agents search for names, order numbers and
//! error codes as much as for words.

use std::collections::{BinaryHeap, HashMap};

use tantivy::collector::{Collector, SegmentCollector};
use tantivy::columnar::Column;
use tantivy::query::{FuzzyTermQuery, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, FAST, INDEXED, STRING,
};
use tantivy::tokenizer::{LowerCaser, RemoveLongFilter, TextAnalyzer, TokenStream};
use tantivy::{
    DocId, Index, IndexReader, IndexWriter, ReloadPolicy, Score, SegmentOrdinal, SegmentReader,
    TantivyDocument, Term,
};

use crate::analysis::{Words, MAX_WORD};
use crate::domain::{Message, Note, Slug, Ticket};
use crate::store::{TicketCursor, TicketPage, TicketQuery};

/// Memory tantivy's writer may use while indexing (its minimum is 15 MB per thread).
const WRITER_MEMORY: usize = 30_000_000;
/// A search is cut to this many words, so a pasted paragraph cannot make it expensive.
pub const MAX_SEARCH_WORDS: usize = 8;
/// The last word of a search matches longer words starting with it from this many characters:
/// a one- or two-letter prefix would expand to a large part of the dictionary.
const PREFIX_FROM: usize = 3;
const TOKENIZER: &str = "fleety_tickets";

#[derive(Debug, thiserror::Error)]
#[error("ticket search index: {0}")]
pub struct IndexError(String);

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError(e.to_string())
    }
}

/// A change to index, as the store took it.
#[derive(Debug, Clone)]
pub enum Item {
    /// A ticket's fields, new or changed.
    Ticket(Ticket),
    Message(Slug, Message),
    Note(Slug, Note),
}

#[derive(Clone, Copy)]
struct Fields {
    /// The ticket's number in this index ([`TicketIndex::tickets`]).
    ticket: Field,
    /// Names the document, so that indexing it again replaces it: `t <slug>` for a ticket's
    /// title, `m <slug> <id>` for a message, `n <slug> <id>` for a note.
    key: Field,
    text: Field,
}

/// The words of `text`, as the index holds them: at most `limit` distinct ones.
pub fn words(text: &str, limit: usize) -> Vec<String> {
    let mut analyzer = analyzer();
    let mut stream = analyzer.token_stream(text);
    let mut out: Vec<String> = Vec::new();
    while out.len() < limit && stream.advance() {
        let word = &stream.token().text;
        if !out.contains(word) {
            out.push(word.clone());
        }
    }
    out
}

fn analyzer() -> TextAnalyzer {
    TextAnalyzer::builder(Words)
        .filter(RemoveLongFilter::limit(MAX_WORD))
        .filter(LowerCaser)
        .build()
}

/// One project's search index. Not thread-safe by itself: its owner serialises changes and
/// searches ([`super::TicketSearch`]).
pub struct TicketIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    /// Every ticket indexed, by its number.
    tickets: Vec<Ticket>,
    numbers: HashMap<Slug, u32>,
    /// Open between [`apply`](Self::apply) and [`commit`](Self::commit).
    writer: Option<IndexWriter<TantivyDocument>>,
}

impl TicketIndex {
    pub fn new() -> Result<Self, IndexError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default().set_indexing_options(
            TextFieldIndexing::default()
                .set_tokenizer(TOKENIZER)
                .set_index_option(IndexRecordOption::Basic),
        );
        let fields = Fields {
            ticket: schema.add_u64_field("ticket", FAST | INDEXED),
            key: schema.add_text_field("key", STRING),
            text: schema.add_text_field("text", text),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(TOKENIZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        Ok(TicketIndex {
            index,
            reader,
            fields,
            tickets: Vec::new(),
            numbers: HashMap::new(),
            writer: None,
        })
    }

    /// Tickets indexed.
    pub fn len(&self) -> usize {
        self.tickets.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tickets.is_empty()
    }

    pub fn knows(&self, slug: &Slug) -> bool {
        self.numbers.contains_key(slug)
    }

    fn writer(&mut self) -> Result<&mut IndexWriter<TantivyDocument>, IndexError> {
        if self.writer.is_none() {
            self.writer = Some(self.index.writer_with_num_threads(1, WRITER_MEMORY)?);
        }
        Ok(self.writer.as_mut().expect("just opened"))
    }

    /// Indexes `items`, searchable once [`commit`](Self::commit)ted. Each item replaces what
    /// was indexed under its name, so an item indexed twice is there once; a ticket's fields
    /// older than those indexed (an earlier `updated_at`) are ignored. Returns the tickets of
    /// messages and notes that are not indexed: their ticket was made on another node, and
    /// must be read from the store.
    pub fn apply(&mut self, items: Vec<Item>) -> Result<Vec<Slug>, IndexError> {
        let f = self.fields;
        let mut unknown: Vec<Slug> = Vec::new();
        for item in items {
            let (key, number, text) = match item {
                Item::Ticket(ticket) => {
                    let number = match self.numbers.get(&ticket.slug) {
                        Some(&n) => {
                            let known = &mut self.tickets[n as usize];
                            if known.updated_at > ticket.updated_at {
                                continue;
                            }
                            let same_text = known.title.as_str() == ticket.title.as_str()
                                && known.description.as_str() == ticket.description.as_str();
                            *known = ticket;
                            if same_text {
                                continue;
                            }
                            n
                        }
                        None => {
                            let n = self.tickets.len() as u32;
                            self.numbers.insert(ticket.slug.clone(), n);
                            self.tickets.push(ticket);
                            n
                        }
                    };
                    let t = &self.tickets[number as usize];
                    let text = format!("{}\n{}", t.title.as_str(), t.description.as_str());
                    (format!("t {}", t.slug), number, text)
                }
                Item::Message(slug, m) => {
                    let Some(&number) = self.numbers.get(&slug) else {
                        unknown.push(slug);
                        continue;
                    };
                    let key = format!("m {slug} {}", m.id);
                    (key, number, m.content.as_str().to_owned())
                }
                Item::Note(slug, n) => {
                    let Some(&number) = self.numbers.get(&slug) else {
                        unknown.push(slug);
                        continue;
                    };
                    let key = format!("n {slug} {}", n.id);
                    (key, number, n.content.as_str().to_owned())
                }
            };
            let writer = self.writer()?;
            writer.delete_term(Term::from_field_text(f.key, &key));
            let mut doc = TantivyDocument::default();
            doc.add_u64(f.ticket, u64::from(number));
            doc.add_text(f.key, &key);
            doc.add_text(f.text, &text);
            writer.add_document(doc)?;
        }
        unknown.sort();
        unknown.dedup();
        Ok(unknown)
    }

    /// Makes everything [`apply`](Self::apply)'d searchable.
    pub fn commit(&mut self) -> Result<(), IndexError> {
        let Some(mut writer) = self.writer.take() else {
            return Ok(());
        };
        writer.commit()?;
        // Merges run on the writer's threads; wait for them so none outlives this call.
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The numbers of the tickets holding `word`, or a word starting with it, as a bit set.
    fn holding(&self, word: &str, prefix: bool) -> Result<Vec<u64>, IndexError> {
        let term = Term::from_field_text(self.fields.text, word);
        let query: Box<dyn Query> = match prefix && word.chars().count() >= PREFIX_FROM {
            true => Box::new(FuzzyTermQuery::new_prefix(term, 0, true)),
            false => Box::new(TermQuery::new(term, IndexRecordOption::Basic)),
        };
        let searcher = self.reader.searcher();
        let found = searcher.search(&*query, &TicketsOf(self.fields.ticket))?;
        let mut bits = vec![0u64; self.tickets.len().div_ceil(64)];
        for number in found {
            if let Some(word) = bits.get_mut(number as usize / 64) {
                *word |= 1 << (number % 64);
            }
        }
        Ok(bits)
    }

    /// A page of the tickets holding every word of `text` (see the module's doc) that `query`
    /// also wants, in the listing's order: newest first, continuing after `query.after`.
    /// Text without any word matches no ticket.
    pub fn search(&self, text: &str, query: &TicketQuery) -> Result<TicketPage, IndexError> {
        let limit = query.limit.clamp(1, 100);
        let words = words(text, MAX_SEARCH_WORDS);
        let Some(last) = words.len().checked_sub(1) else {
            return Ok(TicketPage::from_overfetch(Vec::new(), limit));
        };
        let mut all: Option<Vec<u64>> = None;
        for (i, word) in words.iter().enumerate() {
            let bits = self.holding(word, i == last)?;
            all = Some(match all {
                None => bits,
                Some(mut all) => {
                    all.iter_mut().zip(&bits).for_each(|(a, b)| *a &= b);
                    all
                }
            });
            if all.as_ref().is_some_and(|a| a.iter().all(|w| *w == 0)) {
                break;
            }
        }
        let all = all.unwrap_or_default();
        // The newest `limit + 1` of the matches, kept in a heap whose top is the oldest of
        // them: a search matching most tickets costs no more memory than a page.
        let mut newest: BinaryHeap<std::cmp::Reverse<Listed<'_>>> = BinaryHeap::new();
        for (w, &bits) in all.iter().enumerate() {
            let mut bits = bits;
            while bits != 0 {
                let number = w * 64 + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let Some(ticket) = self.tickets.get(number) else {
                    continue;
                };
                let position = Listed(ticket);
                let after_cursor = query.after.as_ref().is_none_or(|c| position.before(c));
                if !after_cursor || !query.matches_fields(ticket) {
                    continue;
                }
                newest.push(std::cmp::Reverse(position));
                if newest.len() > limit + 1 {
                    newest.pop();
                }
            }
        }
        let mut page: Vec<Listed<'_>> = newest.into_iter().map(|r| r.0).collect();
        page.sort_by(|a, b| b.cmp(a));
        let tickets = page.into_iter().map(|l| l.0.clone()).collect();
        Ok(TicketPage::from_overfetch(tickets, limit))
    }
}

/// A ticket in the listing's order: by creation, then slug.
struct Listed<'a>(&'a Ticket);

impl Listed<'_> {
    fn key(&self) -> (chrono::DateTime<chrono::Utc>, &Slug) {
        (self.0.created_at, &self.0.slug)
    }

    /// Whether it comes after `cursor` in the listing (newest first).
    fn before(&self, cursor: &TicketCursor) -> bool {
        self.key() < (cursor.created_at, &cursor.slug)
    }
}

impl PartialEq for Listed<'_> {
    fn eq(&self, other: &Self) -> bool {
        self.key() == other.key()
    }
}
impl Eq for Listed<'_> {}
impl PartialOrd for Listed<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Listed<'_> {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        self.key().cmp(&other.key())
    }
}

/// Collects the ticket numbers of the matching documents, unscored.
struct TicketsOf(Field);

struct SegmentTickets {
    column: Column<u64>,
    found: Vec<u64>,
}

impl Collector for TicketsOf {
    type Fruit = Vec<u64>;
    type Child = SegmentTickets;

    fn for_segment(
        &self,
        _: SegmentOrdinal,
        segment: &SegmentReader,
    ) -> tantivy::Result<SegmentTickets> {
        let name = segment.schema().get_field_name(self.0).to_owned();
        Ok(SegmentTickets {
            column: segment.fast_fields().u64(&name)?,
            found: Vec::new(),
        })
    }

    fn requires_scoring(&self) -> bool {
        false
    }

    fn merge_fruits(&self, fruits: Vec<Vec<u64>>) -> tantivy::Result<Vec<u64>> {
        Ok(fruits.into_iter().flatten().collect())
    }
}

impl SegmentCollector for SegmentTickets {
    type Fruit = Vec<u64>;

    fn collect(&mut self, doc: DocId, _: Score) {
        self.found.extend(self.column.first(doc));
    }

    fn harvest(self) -> Vec<u64> {
        self.found
    }
}

#[cfg(test)]
mod tests {
    use chrono::{DateTime, Utc};

    use super::*;
    use crate::domain::{
        Description, MessageBody, Participant, ProjectId, Tag, Tags, TicketSource, TicketStatus,
        Title,
    };
    use crate::message_id::MessageId;

    fn ticket(n: i64, title: &str) -> Ticket {
        Ticket::opened(
            ProjectId::parse("p").unwrap(),
            Slug::parse(&format!("calm-fox-{n:03}")).unwrap(),
            Title::parse(title).unwrap(),
            Description::parse("").unwrap(),
            TicketSource::Api,
            None,
            DateTime::<Utc>::from_timestamp(1_700_000_000 + n, 0).unwrap(),
        )
    }

    fn message(t: &Ticket, n: i64, text: &str) -> Item {
        let id = MessageId::next(None, t.created_at + chrono::Duration::seconds(n));
        Item::Message(
            t.slug.clone(),
            Message {
                id,
                author: Participant::User,
                content: MessageBody::parse(text).unwrap(),
                timestamp: t.created_at,
                idempotency_key: None,
                agent: None,
            },
        )
    }

    fn slugs(page: &TicketPage) -> Vec<String> {
        page.tickets.iter().map(|t| t.slug.to_string()).collect()
    }

    fn query(limit: usize) -> TicketQuery {
        TicketQuery {
            limit,
            ..TicketQuery::default()
        }
    }

    #[test]
    fn every_word_must_be_in_the_ticket_and_the_last_may_be_a_prefix() {
        let mut index = TicketIndex::new().unwrap();
        let (a, b) = (ticket(1, "Refund please"), ticket(2, "Login broken"));
        let items = vec![
            Item::Ticket(a.clone()),
            Item::Ticket(b.clone()),
            message(&a, 1, "I paid twice with PayPal"),
            message(&b, 1, "The password reset mail never came"),
        ];
        assert!(index.apply(items).unwrap().is_empty());
        index.commit().unwrap();
        let q = query(10);
        // A word of the title and one of a message, in any case.
        assert_eq!(
            slugs(&index.search("refund PAYPAL", &q).unwrap()),
            ["calm-fox-001"]
        );
        assert_eq!(slugs(&index.search("passw", &q).unwrap()), ["calm-fox-002"]);
        // Only the last word is a prefix; short prefixes must be whole words.
        assert!(index.search("passw reset", &q).unwrap().tickets.is_empty());
        assert!(index.search("pa", &q).unwrap().tickets.is_empty());
        assert!(index.search("refund login", &q).unwrap().tickets.is_empty());
        // Nothing but punctuation is no word, and matches nothing.
        assert!(index.search("?!", &q).unwrap().tickets.is_empty());
    }

    #[test]
    fn items_indexed_again_replace_themselves_and_older_fields_are_ignored() {
        let mut index = TicketIndex::new().unwrap();
        let mut a = ticket(1, "Invoice missing");
        let m = message(&a, 1, "where is my invoice");
        index
            .apply(vec![Item::Ticket(a.clone()), m.clone(), m])
            .unwrap();
        let stale = a.clone();
        a.status = TicketStatus::Closed;
        a.updated_at += chrono::Duration::seconds(5);
        a.title = Title::parse("Invoice found").unwrap();
        index.apply(vec![Item::Ticket(a.clone())]).unwrap();
        index.apply(vec![Item::Ticket(stale)]).unwrap();
        index.commit().unwrap();
        assert_eq!(index.len(), 1);
        let page = index.search("invoice", &query(10)).unwrap();
        assert_eq!(page.tickets.len(), 1);
        assert_eq!(page.tickets[0].status, TicketStatus::Closed);
        assert!(index
            .search("missing", &query(10))
            .unwrap()
            .tickets
            .is_empty());
        assert_eq!(index.search("found", &query(10)).unwrap().tickets.len(), 1);
    }

    #[test]
    fn a_message_of_an_unknown_ticket_is_reported_not_indexed() {
        let mut index = TicketIndex::new().unwrap();
        let a = ticket(1, "Elsewhere");
        let unknown = index.apply(vec![message(&a, 1, "hello")]).unwrap();
        assert_eq!(unknown, vec![a.slug.clone()]);
        assert!(!index.knows(&a.slug));
    }

    #[test]
    fn matches_are_filtered_and_paged_newest_first() {
        let mut index = TicketIndex::new().unwrap();
        let mut items = Vec::new();
        for n in 0..30 {
            let mut t = ticket(n, "Shipping question");
            if n % 2 == 0 {
                t.status = TicketStatus::Closed;
            }
            if n % 3 == 0 {
                t.tags = Tags::parse(&["vip"]).unwrap();
            }
            items.push(Item::Ticket(t));
        }
        items.push(Item::Ticket(ticket(99, "Unrelated")));
        index.apply(items).unwrap();
        index.commit().unwrap();
        let mut q = TicketQuery {
            status: Some(TicketStatus::Open),
            tag: Some(Tag::parse("vip").unwrap()),
            ..query(2)
        };
        let mut seen = Vec::new();
        loop {
            let page = index.search("shipping", &q).unwrap();
            seen.extend(slugs(&page));
            match page.next {
                Some(next) => q.after = Some(next),
                None => break,
            }
        }
        // Odd (open) and divisible by three (vip), newest first.
        assert_eq!(
            seen,
            [
                "calm-fox-027",
                "calm-fox-021",
                "calm-fox-015",
                "calm-fox-009",
                "calm-fox-003"
            ]
        );
    }
}
