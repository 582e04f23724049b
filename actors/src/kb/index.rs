//! The full-text index of one project's knowledge base: articles cut into passages, indexed by
//! tantivy in memory and ranked by BM25.
//!
//! Passages rather than whole articles are the unit of retrieval, because the assistant quotes
//! a few paragraphs, not a manual. The index lives in RAM and is rebuilt from the store when a
//! project's knowledge base is activated; the store is the source of truth.

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{
    Language, LowerCaser, RemoveLongFilter, SimpleTokenizer, Stemmer, StopWordFilter, TextAnalyzer,
};
use tantivy::{doc, Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use crate::domain::Article;
use crate::llm::Passage;

const ANALYZER: &str = "fleety_en";
/// Passages grow paragraph by paragraph up to about this many characters.
const PASSAGE_CHARS: usize = 700;
/// Memory tantivy's writer may use while indexing (its minimum is 15 MB per thread).
const WRITER_MEMORY: usize = 15_000_000;
/// A query is cut to this many terms, so a pasted essay cannot make a search expensive.
const MAX_QUERY_TERMS: usize = 32;

/// Words of a question that say nothing about its topic ("How do I get ..."): left out when
/// measuring how much of a question a passage covers. The analyser's stop words are Lucene's
/// short English list, so pronouns and question words are here too.
const FILLER: &[&str] = &[
    "i",
    "me",
    "my",
    "mine",
    "myself",
    "you",
    "your",
    "yours",
    "we",
    "us",
    "our",
    "he",
    "she",
    "him",
    "her",
    "his",
    "its",
    "them",
    "how",
    "what",
    "why",
    "when",
    "where",
    "which",
    "who",
    "whom",
    "whose",
    "do",
    "does",
    "did",
    "doing",
    "done",
    "have",
    "has",
    "had",
    "having",
    "am",
    "was",
    "were",
    "been",
    "being",
    "should",
    "so",
    "than",
    "too",
    "very",
    "from",
    "about",
    "up",
    "out",
    "any",
    "some",
    "all",
    "each",
    "every",
    "here",
    "now",
    "again",
    "don",
    "doesn",
    "didn",
    "can't",
    "t",
    "s",
    "m",
    "ve",
    "ll",
    "d",
    "re",
    "want",
    "wanted",
    "wants",
    "need",
    "needs",
    "get",
    "gets",
    "got",
    "please",
    "pls",
    "help",
    "hi",
    "hello",
    "hey",
    "thanks",
    "thank",
    "know",
    "like",
    "would",
    "could",
    "can",
    "will",
    "shall",
    "may",
    "might",
    "must",
    "use",
    "using",
    "way",
    "possible",
    "tell",
    "able",
    "anyone",
    "someone",
    "something",
    "anything",
    "thing",
    "things",
    "also",
    "really",
    "just",
    "still",
    "already",
    "ok",
    "okay",
    "yes",
    "make",
    "let",
    "go",
    "one",
    "much",
    "many",
    "there",
    "there's",
    "it's",
    "i'm",
    "long",
    "take",
    "takes",
    "took",
    "time",
    "soon",
    "often",
    "happen",
    "happens",
    "even",
    "ever",
    "anymore",
];

/// Field weights: a word in the title says more about an article than one in its body.
const TITLE_BOOST: f32 = 2.0;
const TAGS_BOOST: f32 = 1.5;

#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct IndexError(String);

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError(e.to_string())
    }
}

#[derive(Clone, Copy)]
struct Fields {
    article_id: Field,
    title: Field,
    body: Field,
    tags: Field,
}

/// One project's search index.
pub struct KbIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
}

/// Splits an article's body into passages: paragraphs (separated by blank lines) are joined
/// until a passage would pass [`PASSAGE_CHARS`]; a longer paragraph is cut at whitespace, so no
/// passage is much longer than that and three of them fit any model's context.
pub fn passages(body: &str) -> Vec<String> {
    let body = body.replace("\r\n", "\n");
    let mut out: Vec<String> = Vec::new();
    let mut current = String::new();
    for paragraph in body.split("\n\n").map(str::trim).filter(|p| !p.is_empty()) {
        for piece in cut(paragraph) {
            if !current.is_empty() && current.len() + piece.len() + 2 > PASSAGE_CHARS {
                out.push(std::mem::take(&mut current));
            }
            if !current.is_empty() {
                current.push_str("\n\n");
            }
            current.push_str(piece);
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// Cuts a paragraph into pieces of at most [`PASSAGE_CHARS`] bytes, at whitespace where there
/// is some, at a character boundary otherwise.
fn cut(mut text: &str) -> Vec<&str> {
    let mut pieces = Vec::new();
    while text.len() > PASSAGE_CHARS {
        let mut end = PASSAGE_CHARS;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        let at = text[..end]
            .rfind(char::is_whitespace)
            .filter(|&i| i > PASSAGE_CHARS / 2)
            .unwrap_or(end);
        pieces.push(text[..at].trim_end());
        text = text[at..].trim_start();
    }
    if !text.is_empty() {
        pieces.push(text);
    }
    pieces
}

fn analyzer() -> TextAnalyzer {
    // English stop words keep "how do I ..." from matching every article.
    let stop = StopWordFilter::new(Language::English)
        .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new()));
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The analyser for measuring coverage: the index's, without filler words.
fn topic_analyzer() -> TextAnalyzer {
    let stop = StopWordFilter::new(Language::English)
        .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new()));
    TextAnalyzer::builder(SimpleTokenizer::default())
        .filter(RemoveLongFilter::limit(40))
        .filter(LowerCaser)
        .filter(stop)
        .filter(StopWordFilter::remove(FILLER.iter().map(|w| w.to_string())))
        .filter(Stemmer::new(Language::English))
        .build()
}

/// The distinct tokens `analyzer` makes of `text`, at most `limit` of them.
fn tokens(mut analyzer: TextAnalyzer, text: &str, limit: usize) -> Vec<String> {
    let mut stream = analyzer.token_stream(text);
    let mut terms: Vec<String> = Vec::new();
    while stream.advance() {
        let text = &stream.token().text;
        if !terms.contains(text) {
            terms.push(text.clone());
        }
        if terms.len() == limit {
            break;
        }
    }
    terms
}

impl KbIndex {
    /// An index holding `articles`.
    pub fn build<'a>(articles: impl IntoIterator<Item = &'a Article>) -> Result<Self, IndexError> {
        let mut schema = Schema::builder();
        let text = TextOptions::default()
            .set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(ANALYZER)
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            )
            .set_stored();
        let fields = Fields {
            article_id: schema.add_text_field("article_id", STRING | STORED),
            title: schema.add_text_field("title", text.clone()),
            body: schema.add_text_field("body", text.clone()),
            tags: schema.add_text_field("tags", text),
        };
        let index = Index::create_in_ram(schema.build());
        index.tokenizers().register(ANALYZER, analyzer());
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let kb = KbIndex {
            index,
            reader,
            fields,
        };
        kb.change(articles, [])?;
        Ok(kb)
    }

    /// Adds or replaces `put` and removes `removed`, in one commit.
    pub fn change<'a>(
        &self,
        put: impl IntoIterator<Item = &'a Article>,
        removed: impl IntoIterator<Item = Uuid>,
    ) -> Result<(), IndexError> {
        let f = self.fields;
        let mut writer: IndexWriter<TantivyDocument> =
            self.index.writer_with_num_threads(1, WRITER_MEMORY)?;
        for id in removed {
            writer.delete_term(Term::from_field_text(f.article_id, &id.to_string()));
        }
        for article in put {
            let id = article.id.to_string();
            writer.delete_term(Term::from_field_text(f.article_id, &id));
            let tags = article.tags.join(" ");
            for passage in passages(article.body.as_str()) {
                writer.add_document(doc!(
                    f.article_id => id.as_str(),
                    f.title => article.title.as_str(),
                    f.body => passage,
                    f.tags => tags.as_str(),
                ))?;
            }
        }
        writer.commit()?;
        // Merges run on the writer's threads; wait for them so none outlives this call.
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The query's words as the index stores them (lower-cased, stemmed, no stop words).
    fn terms(&self, query: &str) -> Vec<String> {
        tokens(analyzer(), query, MAX_QUERY_TERMS)
    }

    /// Each topic word of a question with its weight: its smoothed inverse document frequency
    /// (the highest over the fields). A word no article has weighs most: a question about
    /// "PDF" is not answered by a passage that shares only "export" with it. Smoothed, so that
    /// in a small knowledge base the words it has still count.
    fn topic_weights(
        &self,
        searcher: &tantivy::Searcher,
        query: &str,
    ) -> Result<Vec<(String, f32)>, IndexError> {
        let f = self.fields;
        let docs = searcher.num_docs() as f32;
        let mut out = Vec::new();
        for term in tokens(topic_analyzer(), query, MAX_QUERY_TERMS) {
            let mut df: u64 = 0;
            for field in [f.title, f.body, f.tags] {
                df = df.max(searcher.doc_freq(&Term::from_field_text(field, &term))?);
            }
            let df = df as f32;
            let idf = ((docs + 1.0) / (df + 1.0)).ln() + 1.0;
            out.push((term, idf));
        }
        Ok(out)
    }

    /// The best passages for `query`, best first. The query is plain words: nothing in it is
    /// query syntax, so a visitor's text cannot form an expensive or failing query.
    pub fn search(&self, query_text: &str, limit: usize) -> Result<Vec<Passage>, IndexError> {
        let f = self.fields;
        let terms = self.terms(query_text);
        if terms.is_empty() || limit == 0 {
            return Ok(Vec::new());
        }
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for term in &terms {
            for (field, boost) in [(f.title, TITLE_BOOST), (f.body, 1.0), (f.tags, TAGS_BOOST)] {
                let q = TermQuery::new(
                    Term::from_field_text(field, term),
                    IndexRecordOption::WithFreqs,
                );
                clauses.push((Occur::Should, Box::new(BoostQuery::new(Box::new(q), boost))));
            }
        }
        let query = BooleanQuery::new(clauses);
        let searcher = self.reader.searcher();
        let hits = searcher.search(&query, &TopDocs::with_limit(limit))?;
        let topics = self.topic_weights(&searcher, query_text)?;
        let total: f32 = topics.iter().map(|(_, w)| w).sum();
        let mut out = Vec::with_capacity(hits.len());
        for (score, address) in hits {
            let doc: TantivyDocument = searcher.doc(address)?;
            let text = |field: Field| {
                doc.get_first(field)
                    .and_then(|v| v.as_str())
                    .unwrap_or_default()
                    .to_owned()
            };
            let Ok(article_id) = Uuid::parse_str(&text(f.article_id)) else {
                continue;
            };
            let (title, body) = (text(f.title), text(f.body));
            let words = tokens(
                analyzer(),
                &format!("{title}\n{body}\n{}", text(f.tags)),
                usize::MAX,
            );
            let covered: f32 = topics
                .iter()
                .filter(|(t, _)| words.contains(t))
                .map(|(_, w)| w)
                .sum();
            out.push(Passage {
                article_id,
                title,
                text: body,
                score,
                // A question of filler words only ("can you help?") is covered by nothing.
                coverage: if total > 0.0 { covered / total } else { 0.0 },
            });
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::now_millis;
    use crate::domain::{ArticleBody, ArticleTitle, ProjectId};

    fn article(title: &str, body: &str, tags: &[&str]) -> Article {
        Article {
            id: Uuid::new_v4(),
            project_id: ProjectId::parse("kbtest").unwrap(),
            title: ArticleTitle::parse(title).unwrap(),
            body: ArticleBody::parse(body).unwrap(),
            tags: tags.iter().map(|t| t.to_string()).collect(),
            created_at: now_millis(),
            updated_at: now_millis(),
        }
    }

    #[test]
    fn paragraphs_are_joined_into_passages_of_bounded_size() {
        let short = "One.\n\nTwo.\n\n\n\nThree.";
        assert_eq!(passages(short), vec!["One.\n\nTwo.\n\nThree."]);
        let long = format!("{}\n\n{}", "a".repeat(600), "b".repeat(600));
        assert_eq!(passages(&long).len(), 2);
        assert!(passages("  \n\n  ").is_empty());
        // Windows line ends separate paragraphs too.
        assert_eq!(passages("One.\r\n\r\nTwo.").len(), 1);
        assert_eq!(
            passages(&format!("{}\r\n\r\n{}", "a".repeat(600), "b".repeat(600))).len(),
            2
        );
        // One huge paragraph is cut at whitespace, and multi-byte text at a character boundary.
        let words = "word ".repeat(1000);
        let cut = passages(&words);
        assert!(
            cut.len() > 5
                && cut
                    .iter()
                    .all(|p| p.len() <= PASSAGE_CHARS && p.ends_with("word"))
        );
        let wide = "é".repeat(2000);
        assert!(passages(&wide).iter().all(|p| p.len() <= PASSAGE_CHARS));
        assert_eq!(passages(&wide).concat(), wide);
    }

    #[test]
    fn the_most_relevant_article_ranks_first_and_stems_match() {
        let reset = article(
            "Resetting your password",
            "Open the sign-in page and choose 'Forgot password'. We email you a reset link.",
            &["account"],
        );
        let billing = article(
            "Billing and invoices",
            "Invoices are emailed monthly. You can change your payment method in Billing.",
            &["billing"],
        );
        let mention = article(
            "Security overview",
            "We hash every password. Two-factor authentication protects your account.",
            &[],
        );
        let kb = KbIndex::build([&reset, &billing, &mention]).unwrap();
        let hits = kb.search("How do I reset my password?", 5).unwrap();
        assert_eq!(hits[0].article_id, reset.id, "{hits:?}");
        assert!(hits.iter().all(|h| h.article_id != billing.id));
        // "invoice" finds "Invoices" through stemming; tags count too.
        assert_eq!(kb.search("invoice", 5).unwrap()[0].article_id, billing.id);
        // Stop words alone match nothing.
        assert!(kb.search("how do I", 5).unwrap().is_empty());
    }

    #[test]
    fn coverage_tells_an_answer_from_a_shared_word() {
        let delete = article(
            "Deleting your account",
            "Before you delete your account, export your data from Settings, then Privacy.",
            &["account"],
        );
        let reset = article(
            "Resetting your password",
            "Choose 'Forgot password' on the sign-in page, or in the app under Account.",
            &["login"],
        );
        let backup = article(
            "Backing up a workspace",
            "Export the whole workspace as a ZIP archive from Settings, then Backup.",
            &[],
        );
        let kb = KbIndex::build([&delete, &reset, &backup]).unwrap();
        let best = |q: &str| kb.search(q, 5).unwrap().first().cloned();
        let answered = best("How do I reset my password?").unwrap();
        assert_eq!(answered.article_id, reset.id);
        assert!(answered.coverage > 0.99, "{answered:?}");
        // One shared word among rare ones is not an answer.
        let pdf = best("Can I export my dashboards to PDF?").unwrap();
        assert!(pdf.coverage < 0.5, "{pdf:?}");
        let app = best("Do you have a mobile app?").unwrap();
        assert!(app.coverage < 0.5, "{app:?}");
        // Filler words do not count against a question.
        let hit = best("Hi, I need help, how can I get my workspace backed up please?").unwrap();
        assert_eq!(hit.article_id, backup.id);
        assert!(hit.coverage > 0.99, "{hit:?}");
    }

    #[test]
    fn query_syntax_is_treated_as_words() {
        let a = article("Shipping", "We ship worldwide.", &[]);
        let kb = KbIndex::build([&a]).unwrap();
        for q in [
            "title:ship*",
            "\"unterminated",
            "+ship -nothing",
            "(((",
            "AND OR NOT",
        ] {
            kb.search(q, 5).unwrap();
        }
        assert_eq!(kb.search("title:ship", 5).unwrap()[0].article_id, a.id);
    }

    #[test]
    fn changes_replace_and_remove_articles() {
        let mut a = article("Refunds", "Refunds take five days.", &[]);
        let b = article("Returns", "Returns are free within 30 days.", &[]);
        let kb = KbIndex::build([&a, &b]).unwrap();
        assert_eq!(kb.search("refunds", 5).unwrap().len(), 1);
        a.title = ArticleTitle::parse("Money back").unwrap();
        a.body = ArticleBody::parse("We pay you back within a week.").unwrap();
        kb.change([&a], [b.id]).unwrap();
        assert!(kb.search("refunds", 5).unwrap().is_empty());
        assert!(kb.search("returns", 5).unwrap().is_empty());
        assert_eq!(kb.search("money", 5).unwrap()[0].article_id, a.id);
    }
}
