//! The full-text index of one project's knowledge base: articles cut into passages, indexed by
//! tantivy in memory and ranked by BM25.
//!
//! Passages rather than whole articles are the unit of retrieval, because the assistant quotes
//! a few paragraphs, not a manual. The index lives in RAM and is rebuilt from the store when a
//! project's knowledge base is activated; the store is the source of truth.
//!
//! Each article is analysed in its own language: its words are cut, lower-cased, stripped of
//! that language's stop words and stemmed by its stemmer, into fields of that language. A
//! question is analysed the same way in the language it is asked in, when that is known and
//! the knowledge base has articles in it; otherwise in every language the knowledge base has,
//! each analysis matched against the articles of its language.

use tantivy::collector::TopDocs;
use tantivy::query::{BooleanQuery, BoostQuery, Occur, Query, TermQuery};
use tantivy::schema::{
    Field, IndexRecordOption, Schema, TextFieldIndexing, TextOptions, Value, STORED, STRING,
};
use tantivy::tokenizer::{
    LowerCaser, RemoveLongFilter, Stemmer, StopWordFilter, TextAnalyzer, TokenStream,
};
use tantivy::{Index, IndexReader, IndexWriter, ReloadPolicy, TantivyDocument, Term};
use uuid::Uuid;

use super::words;
use crate::analysis::{Words, MAX_WORD};
use crate::domain::{Article, Language};
use crate::llm::Passage;

/// Passages grow paragraph by paragraph up to about this many characters.
const PASSAGE_CHARS: usize = 700;
/// Memory tantivy's writer may use while indexing (its minimum is 15 MB per thread).
const WRITER_MEMORY: usize = 15_000_000;
/// A query is cut to this many terms, so a pasted essay cannot make a search expensive.
const MAX_QUERY_TERMS: usize = 32;
/// Passages BM25 proposes for ranking, at least.
const CANDIDATES: usize = 20;

/// Field weights: a word in the title says more about an article than one in its body.
const TITLE_BOOST: f32 = 2.0;
const TAGS_BOOST: f32 = 1.5;
/// A synonym of a question's word counts for this share of the word itself in the ranking.
const SYNONYM_WEIGHT: f32 = 0.5;

/// Passages covering less of the question than this are not an answer to it (see
/// [`Passage::coverage`]): the assistant says it has none rather than quote an unrelated
/// article.
pub const MIN_COVERAGE: f32 = 0.5;
/// Passages scoring below this share of the best passage's score are left out of an answer.
pub const RELEVANCE_CUTOFF: f32 = 0.5;

#[derive(Debug, thiserror::Error)]
#[error("search index: {0}")]
pub struct IndexError(String);

impl From<tantivy::TantivyError> for IndexError {
    fn from(e: tantivy::TantivyError) -> Self {
        IndexError(e.to_string())
    }
}

/// The searched fields of one language.
#[derive(Clone, Copy)]
struct Text {
    title: Field,
    body: Field,
    tags: Field,
}

#[derive(Clone)]
struct Fields {
    article_id: Field,
    language: Field,
    /// The passage as written, stored for the answer; searched through the language's fields.
    title: Field,
    body: Field,
    tags: Field,
    url: Field,
    text: Vec<(Language, Text)>,
}

impl Fields {
    fn of(&self, language: Language) -> Option<Text> {
        self.text
            .iter()
            .find(|(l, _)| *l == language)
            .map(|(_, t)| *t)
    }
}

/// One project's search index.
pub struct KbIndex {
    index: Index,
    reader: IndexReader,
    fields: Fields,
    synonyms: Vec<(Language, Vec<Vec<String>>)>,
}

/// A topic word of a question: the stems that count as it (its own first), and its weight.
struct Topic {
    alike: Vec<String>,
    weight: f32,
}

fn tokenizer_name(language: Language) -> String {
    format!("fleety_{}", language.as_str())
}

fn stemming(language: Language) -> tantivy::tokenizer::Language {
    use tantivy::tokenizer::Language as T;
    match language {
        Language::Ar => T::Arabic,
        Language::De => T::German,
        Language::En => T::English,
        Language::Es => T::Spanish,
        Language::Fr => T::French,
        Language::It => T::Italian,
        Language::Nl => T::Dutch,
        Language::Pt => T::Portuguese,
    }
}

fn filler(language: Language) -> &'static [&'static str] {
    match language {
        Language::Ar => words::AR_FILLER,
        Language::De => words::DE_FILLER,
        Language::En => words::EN_FILLER,
        Language::Es => words::ES_FILLER,
        Language::Fr => words::FR_FILLER,
        Language::It => words::IT_FILLER,
        Language::Nl => words::NL_FILLER,
        Language::Pt => words::PT_FILLER,
    }
}

fn synonym_words(language: Language) -> &'static [&'static [&'static str]] {
    match language {
        Language::De => words::DE_SYNONYMS,
        Language::En => words::EN_SYNONYMS,
        Language::Es => words::ES_SYNONYMS,
        Language::Fr => words::FR_SYNONYMS,
        Language::Ar | Language::It | Language::Nl | Language::Pt => &[],
    }
}

/// A language's synonym groups as the index stores their words (stemmed).
fn synonym_groups(language: Language) -> Vec<Vec<String>> {
    synonym_words(language)
        .iter()
        .map(|group| {
            let mut stems: Vec<String> = Vec::new();
            for word in *group {
                for stem in tokens(analyzer(language), word, usize::MAX) {
                    if !stems.contains(&stem) {
                        stems.push(stem);
                    }
                }
            }
            stems
        })
        .collect()
}

fn stop_words(language: Language) -> StopWordFilter {
    match language {
        // tantivy has no Arabic list.
        Language::Ar => StopWordFilter::remove(words::AR_STOP.iter().map(|w| w.to_string())),
        // These keep "how do I ..." from matching every article.
        other => StopWordFilter::new(stemming(other))
            .unwrap_or_else(|| StopWordFilter::remove(Vec::<String>::new())),
    }
}

/// The analyser of `language`: words, lower-cased, without stop words, stemmed.
fn analyzer(language: Language) -> TextAnalyzer {
    TextAnalyzer::builder(Words)
        .filter(RemoveLongFilter::limit(MAX_WORD))
        .filter(LowerCaser)
        .filter(stop_words(language))
        .filter(Stemmer::new(stemming(language)))
        .build()
}

/// The analyser for measuring coverage: the language's, without its filler words either.
fn topic_analyzer(language: Language) -> TextAnalyzer {
    let filler = filler(language).iter().map(|w| w.to_string());
    TextAnalyzer::builder(Words)
        .filter(RemoveLongFilter::limit(MAX_WORD))
        .filter(LowerCaser)
        .filter(stop_words(language))
        .filter(StopWordFilter::remove(filler))
        .filter(Stemmer::new(stemming(language)))
        .build()
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

/// What the assistant may answer with: the passages close enough to the question, best first.
/// Far below the best, a passage is noise that would dilute the prompt and the citations; one
/// that covers too little of the question is no answer to it.
pub fn answering(mut passages: Vec<Passage>) -> Vec<Passage> {
    passages.retain(|x| x.coverage >= MIN_COVERAGE);
    let best = passages.first().map_or(0.0, |b| b.score);
    passages.retain(|x| x.score >= best * RELEVANCE_CUTOFF);
    passages
}

impl KbIndex {
    /// An index holding `articles`.
    pub fn build<'a>(articles: impl IntoIterator<Item = &'a Article>) -> Result<Self, IndexError> {
        let mut schema = Schema::builder();
        let mut text = Vec::new();
        for language in Language::ALL {
            let options = TextOptions::default().set_indexing_options(
                TextFieldIndexing::default()
                    .set_tokenizer(&tokenizer_name(language))
                    .set_index_option(IndexRecordOption::WithFreqsAndPositions),
            );
            let l = language.as_str();
            let fields = Text {
                title: schema.add_text_field(&format!("title_{l}"), options.clone()),
                body: schema.add_text_field(&format!("body_{l}"), options.clone()),
                tags: schema.add_text_field(&format!("tags_{l}"), options),
            };
            text.push((language, fields));
        }
        let fields = Fields {
            article_id: schema.add_text_field("article_id", STRING | STORED),
            language: schema.add_text_field("language", STRING | STORED),
            title: schema.add_text_field("title", STORED),
            body: schema.add_text_field("body", STORED),
            tags: schema.add_text_field("tags", STORED),
            url: schema.add_text_field("url", STORED),
            text,
        };
        let index = Index::create_in_ram(schema.build());
        for language in Language::ALL {
            index
                .tokenizers()
                .register(&tokenizer_name(language), analyzer(language));
        }
        let reader = index
            .reader_builder()
            .reload_policy(ReloadPolicy::Manual)
            .try_into()?;
        let synonyms = Language::ALL
            .into_iter()
            .map(|l| (l, synonym_groups(l)))
            .collect();
        let kb = KbIndex {
            index,
            reader,
            fields,
            synonyms,
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
        let f = &self.fields;
        let mut writer: IndexWriter<TantivyDocument> =
            self.index.writer_with_num_threads(1, WRITER_MEMORY)?;
        for id in removed {
            writer.delete_term(Term::from_field_text(f.article_id, &id.to_string()));
        }
        for article in put {
            let id = article.id.to_string();
            writer.delete_term(Term::from_field_text(f.article_id, &id));
            let Some(text) = f.of(article.language) else {
                continue;
            };
            let tags = article.tags.join(" ");
            for passage in passages(article.body.as_str()) {
                let mut doc = TantivyDocument::default();
                doc.add_text(f.article_id, &id);
                doc.add_text(f.language, article.language.as_str());
                doc.add_text(f.title, article.title.as_str());
                doc.add_text(f.body, &passage);
                doc.add_text(f.tags, &tags);
                if let Some(url) = &article.url {
                    doc.add_text(f.url, url.as_str());
                }
                doc.add_text(text.title, article.title.as_str());
                doc.add_text(text.body, &passage);
                doc.add_text(text.tags, &tags);
                writer.add_document(doc)?;
            }
        }
        writer.commit()?;
        // Merges run on the writer's threads; wait for them so none outlives this call.
        writer.wait_merging_threads()?;
        self.reader.reload()?;
        Ok(())
    }

    /// The languages the knowledge base has articles in.
    fn languages(&self, searcher: &tantivy::Searcher) -> Result<Vec<Language>, IndexError> {
        let mut out = Vec::new();
        for language in Language::ALL {
            let term = Term::from_field_text(self.fields.language, language.as_str());
            if searcher.doc_freq(&term)? > 0 {
                out.push(language);
            }
        }
        Ok(out)
    }

    /// The stems that count as `term` in `language`: itself and its synonyms.
    fn alike(&self, language: Language, term: &str) -> Vec<String> {
        let mut out = vec![term.to_owned()];
        let groups = self.synonyms.iter().find(|(l, _)| *l == language);
        for group in groups.map(|(_, g)| g.as_slice()).unwrap_or_default() {
            if group.iter().any(|s| s == term) {
                out.extend(
                    group
                        .iter()
                        .filter(|s| !out.contains(s))
                        .cloned()
                        .collect::<Vec<_>>(),
                );
            }
        }
        out
    }

    /// Each topic word of a question, analysed in `language`, with its weight: its smoothed
    /// inverse document frequency (the highest over the fields). Its synonyms cover it, but
    /// do not make it commoner: "mobile" stays a rare word in a help center that speaks of
    /// phones, so "Do you have a mobile app?" is not answered by an article on other apps.
    /// A word no article has weighs most: a question about "PDF" is not answered by a passage
    /// that shares only "export" with it. Smoothed, so that in a small knowledge base the words
    /// it has still count.
    fn topics(
        &self,
        searcher: &tantivy::Searcher,
        language: Language,
        query: &str,
    ) -> Result<Vec<Topic>, IndexError> {
        let Some(f) = self.fields.of(language) else {
            return Ok(Vec::new());
        };
        let docs = searcher.num_docs() as f32;
        let mut out = Vec::new();
        for term in tokens(topic_analyzer(language), query, MAX_QUERY_TERMS) {
            let mut df: u64 = 0;
            for field in [f.title, f.body, f.tags] {
                df = df.max(searcher.doc_freq(&Term::from_field_text(field, &term))?);
            }
            let alike = self.alike(language, &term);
            let df = df as f32;
            let weight = ((docs + 1.0) / (df + 1.0)).ln() + 1.0;
            out.push(Topic { alike, weight });
        }
        Ok(out)
    }

    /// The best passages for `query`, best first, asked in `language` when that is known. The
    /// query is plain words: nothing in it is query syntax, so a visitor's text cannot form an
    /// expensive or failing query.
    ///
    /// A question in a language the knowledge base has is searched in that language's
    /// articles; if none of them covers it well enough (see [`MIN_COVERAGE`]), in all of them,
    /// and the search whose best passage covers more wins. A question in an unknown language,
    /// or in one the knowledge base has no article in, is searched in every language it has.
    pub fn search(
        &self,
        query_text: &str,
        language: Option<Language>,
        limit: usize,
    ) -> Result<Vec<Passage>, IndexError> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let searcher = self.reader.searcher();
        let present = self.languages(&searcher)?;
        let best_coverage = |p: &[Passage]| p.first().map_or(0.0, |p| p.coverage);
        match language.filter(|l| present.contains(l)) {
            Some(language) if present.len() > 1 => {
                let own = self.search_in(&searcher, query_text, &[language], limit)?;
                if best_coverage(&own) >= MIN_COVERAGE {
                    return Ok(own);
                }
                let all = self.search_in(&searcher, query_text, &present, limit)?;
                Ok(if best_coverage(&all) > best_coverage(&own) {
                    all
                } else {
                    own
                })
            }
            _ => self.search_in(&searcher, query_text, &present, limit),
        }
    }

    fn search_in(
        &self,
        searcher: &tantivy::Searcher,
        query_text: &str,
        languages: &[Language],
        limit: usize,
    ) -> Result<Vec<Passage>, IndexError> {
        let f = &self.fields;
        let mut clauses: Vec<(Occur, Box<dyn Query>)> = Vec::new();
        for &language in languages {
            let Some(text) = f.of(language) else { continue };
            // Filler words ("how do I", "my", "we") would rank passages by how chatty they are:
            // the question's topic words are searched, or all its words when it has none.
            let mut terms = tokens(topic_analyzer(language), query_text, MAX_QUERY_TERMS);
            if terms.is_empty() {
                terms = tokens(analyzer(language), query_text, MAX_QUERY_TERMS);
            }
            for term in terms {
                for word in self.alike(language, &term) {
                    let weight = if word == term { 1.0 } else { SYNONYM_WEIGHT };
                    for (field, boost) in [
                        (text.title, TITLE_BOOST),
                        (text.body, 1.0),
                        (text.tags, TAGS_BOOST),
                    ] {
                        let q = TermQuery::new(
                            Term::from_field_text(field, &word),
                            IndexRecordOption::WithFreqs,
                        );
                        let q = BoostQuery::new(Box::new(q), boost * weight);
                        clauses.push((Occur::Should, Box::new(q)));
                    }
                }
            }
        }
        if clauses.is_empty() {
            return Ok(Vec::new());
        }
        let query = BooleanQuery::new(clauses);
        // BM25 finds the candidates; they are then ranked by how much of the question they
        // cover too, so a passage that repeats one word of the question often does not beat
        // one that has all of them.
        let hits = searcher.search(&query, &TopDocs::with_limit(limit.max(CANDIDATES)))?;
        // Topic words per language, computed once for the languages the hits are in.
        let mut topics: Vec<(Language, Vec<Topic>, f32)> = Vec::new();
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
            let language = Language::parse(&text(f.language)).unwrap_or_default();
            if !topics.iter().any(|(l, _, _)| *l == language) {
                let weights = self.topics(searcher, language, query_text)?;
                let total = weights.iter().map(|t| t.weight).sum();
                topics.push((language, weights, total));
            }
            let Some((_, weights, total)) = topics.iter().find(|(l, _, _)| *l == language) else {
                continue;
            };
            let (title, body, url) = (text(f.title), text(f.body), text(f.url));
            let words = tokens(
                analyzer(language),
                &format!("{title}\n{body}\n{}", text(f.tags)),
                usize::MAX,
            );
            let covered: f32 = weights
                .iter()
                .filter(|t| t.alike.iter().any(|w| words.contains(w)))
                .map(|t| t.weight)
                .sum();
            out.push(Passage {
                article_id,
                title,
                text: body,
                url: (!url.is_empty()).then_some(url),
                score,
                // A question of filler words only ("can you help?") is covered by nothing.
                coverage: if *total > 0.0 { covered / total } else { 0.0 },
            });
        }
        let rank = |p: &Passage| p.score * p.coverage;
        out.sort_by(|a, b| {
            rank(b)
                .total_cmp(&rank(a))
                .then(b.score.total_cmp(&a.score))
        });
        out.truncate(limit);
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
            language: Default::default(),
            url: None,
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

    /// Bodies of the largest size with the shapes that could stall a cutting loop: each
    /// passage takes at least half a passage's worth of text (so the count is bounded by the
    /// body's length), none is over the limit, and no word is lost.
    #[test]
    fn adversarial_bodies_are_cut_in_bounded_steps() {
        let max = 50_000;
        let bodies = [
            "a".repeat(max),
            "a ".repeat(max / 2),
            "漢".repeat(max),
            "😀".repeat(max),
            "# h\n\n".repeat(max / 5),
            format!("{}x", "\n\n".repeat(max / 2 - 1)),
            format!("{}x", "\r\n".repeat(max / 2 - 1)),
            format!("{}x", " ".repeat(max - 1)),
            format!("a{}", "\u{0301}".repeat(max - 1)),
            "x\u{00a0}".repeat(max / 2),
            format!("{} {}", "b".repeat(PASSAGE_CHARS / 2), "c".repeat(max)),
        ];
        for body in &bodies {
            let cut = passages(body);
            let text: usize = cut.iter().map(|p| p.len()).sum();
            assert!(cut
                .iter()
                .all(|p| p.len() <= PASSAGE_CHARS && !p.is_empty()));
            assert!(
                cut.len() <= body.len() / (PASSAGE_CHARS / 2) + 1,
                "{}",
                cut.len()
            );
            let words = |s: &str| s.split_whitespace().collect::<String>();
            assert_eq!(words(&cut.concat()), words(body));
            assert!(text <= body.len());
        }
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
        let hits = kb.search("How do I reset my password?", None, 5).unwrap();
        assert_eq!(hits[0].article_id, reset.id, "{hits:?}");
        assert!(hits.iter().all(|h| h.article_id != billing.id));
        // "invoice" finds "Invoices" through stemming; tags count too.
        assert_eq!(
            kb.search("invoice", None, 5).unwrap()[0].article_id,
            billing.id
        );
        // Stop words alone match nothing.
        assert!(kb.search("how do I", None, 5).unwrap().is_empty());
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
        let best = |q: &str| kb.search(q, None, 5).unwrap().first().cloned();
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
            kb.search(q, None, 5).unwrap();
        }
        assert_eq!(
            kb.search("title:ship", None, 5).unwrap()[0].article_id,
            a.id
        );
    }

    #[test]
    fn changes_replace_and_remove_articles() {
        let mut a = article("Refunds", "Refunds take five days.", &[]);
        let b = article("Returns", "Returns are free within 30 days.", &[]);
        let kb = KbIndex::build([&a, &b]).unwrap();
        assert_eq!(kb.search("refunds", None, 5).unwrap().len(), 1);
        a.title = ArticleTitle::parse("Shipping").unwrap();
        a.body = ArticleBody::parse("Parcels leave within a week.").unwrap();
        kb.change([&a], [b.id]).unwrap();
        assert!(kb.search("refunds", None, 5).unwrap().is_empty());
        assert!(kb.search("returns", None, 5).unwrap().is_empty());
        assert_eq!(kb.search("parcels", None, 5).unwrap()[0].article_id, a.id);
    }

    #[test]
    fn each_article_is_searched_in_its_own_language() {
        let mut de = article(
            "Passwort zurücksetzen",
            "Wählen Sie „Passwort vergessen?“ auf der Anmeldeseite. Wir schicken Ihnen einen Link.",
            &[],
        );
        de.language = Language::De;
        let mut es = article(
            "Reembolsos",
            "Los reembolsos tardan de 5 a 10 días hábiles.",
            &[],
        );
        es.language = Language::Es;
        let mut ar = article(
            "العمل دون اتصال",
            "تعمل التطبيقات بدون اتصال بالإنترنت، وتُرفع التغييرات عندما تعود متصلًا.",
            &[],
        );
        ar.language = Language::Ar;
        let en = article("Refunds", "Refunds take five to ten days.", &[]);
        let kb = KbIndex::build([&de, &es, &ar, &en]).unwrap();
        let best = |q: &str, l: Option<Language>| {
            answering(kb.search(q, l, 3).unwrap())
                .first()
                .map(|p| p.article_id)
        };
        // German stemming: "Passwörter"/"vergessen" find the German article, asked in German
        // or in an unknown language.
        assert_eq!(best("Passwort vergessen", Some(Language::De)), Some(de.id));
        assert_eq!(best("Passwort vergessen", None), Some(de.id));
        // Spanish plural and singular meet; the question's own language comes first.
        assert_eq!(
            best("¿Cuánto tardan los reembolsos?", Some(Language::Es)),
            Some(es.id)
        );
        assert_eq!(best("refund", Some(Language::En)), Some(en.id));
        // Vowel marks and the tatweel do not split or change an Arabic word.
        assert_eq!(
            best("هل يعمل التطبيق بدون اتصال؟", Some(Language::Ar)),
            Some(ar.id)
        );
        assert_eq!(best("اتّـصال", Some(Language::Ar)), Some(ar.id));
        // A question in a language the knowledge base lacks is searched in all it has.
        assert_eq!(best("refunds", Some(Language::Fr)), Some(en.id));
        // Filler words of each language do not count against a question.
        let hit = kb.search(
            "Wie kann ich mein Passwort zurücksetzen, bitte?",
            Some(Language::De),
            3,
        );
        assert!(hit.unwrap()[0].coverage > 0.99);
    }
}
