//! The retrieval evaluation: the help center and labelled questions in `data/kb-eval/` (see its
//! README), searched exactly as the assistant searches them. It reports, for each half of the
//! questions, how often the right article comes first among answerable questions and how often
//! an unanswerable one gets no article at all, and fails below the thresholds. Run with
//! `-- --nocapture` to see the figures and every miss.

use std::collections::HashMap;
use std::path::Path;

use uuid::Uuid;

use super::index::{answering, KbIndex};
use crate::clock::now_millis;
use crate::domain::{Article, ArticleBody, ArticleTitle, ArticleUrl, Language, ProjectId};

/// Passages the assistant retrieves per question (`ChatConfig::passages`).
const PASSAGES: usize = 3;
/// The bars each half must clear: the right article first for answerable questions, and no
/// article for unanswerable ones. Each is one miss below the lower of the halves' figures
/// when they were set (docs/assistant.md has them).
const MIN_TOP1: f64 = 0.9;
const MIN_NO_ANSWER: f64 = 0.85;

fn data() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/kb-eval")
}

/// Reads `articles/<id>.md`: header lines, a blank line, the body.
fn load_articles() -> Vec<(String, Article)> {
    let project = ProjectId::parse("kbeval").unwrap();
    let mut out = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(data().join("articles"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    paths.sort();
    for path in paths {
        let id = path.file_stem().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).unwrap();
        let (header, body) = text.split_once("\n\n").unwrap();
        let mut article = Article {
            id: Uuid::new_v4(),
            project_id: project.clone(),
            title: ArticleTitle::parse("untitled").unwrap(),
            body: ArticleBody::parse(body).unwrap(),
            tags: vec![],
            created_at: now_millis(),
            updated_at: now_millis(),
            language: Language::En,
            url: None,
        };
        for line in header.lines() {
            let (key, value) = line.split_once(':').unwrap();
            let value = value.trim();
            match key {
                "title" => article.title = ArticleTitle::parse(value).unwrap(),
                "tags" => article.tags = value.split(',').map(|t| t.trim().into()).collect(),
                "language" => article.language = Language::parse(value).unwrap(),
                "url" => article.url = Some(ArticleUrl::parse(value).unwrap()),
                other => panic!("{id}: unknown header {other:?}"),
            }
        }
        out.push((id, article));
    }
    out
}

struct Question {
    split: String,
    language: Option<Language>,
    answer: Option<String>,
    text: String,
}

fn load_questions() -> Vec<Question> {
    let text = std::fs::read_to_string(data().join("questions.tsv")).unwrap();
    text.lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#'))
        .map(|line| {
            let cols: Vec<&str> = line.split('\t').collect();
            assert_eq!(cols.len(), 4, "{line:?}");
            Question {
                split: cols[0].into(),
                language: (cols[1] != "-").then(|| Language::parse(cols[1]).unwrap()),
                answer: (cols[2] != "none").then(|| cols[2].to_owned()),
                text: cols[3].into(),
            }
        })
        .collect()
}

#[derive(Default)]
struct Score {
    answerable: usize,
    right: usize,
    unanswerable: usize,
    silent: usize,
    misses: Vec<String>,
}

#[test]
fn kb_eval_the_right_article_comes_first_and_unanswerable_questions_get_none() {
    let articles = load_articles();
    assert!(
        articles.len() >= 24,
        "the set has {} articles",
        articles.len()
    );
    let names: HashMap<Uuid, &str> = articles.iter().map(|(n, a)| (a.id, n.as_str())).collect();
    let index = KbIndex::build(articles.iter().map(|(_, a)| a)).unwrap();
    let questions = load_questions();
    assert!(questions.len() >= 60);
    let mut scores: Vec<(String, Score)> = Vec::new();
    for q in &questions {
        if let Some(answer) = &q.answer {
            assert!(
                articles.iter().any(|(n, _)| n == answer),
                "{:?} names no article",
                q.text
            );
        }
        let searched = index.search(&q.text, q.language, PASSAGES).unwrap();
        let found = answering(searched.clone());
        let got = found.first().map(|p| names[&p.article_id].to_owned());
        if !scores.iter().any(|(s, _)| *s == q.split) {
            scores.push((q.split.clone(), Score::default()));
        }
        let (_, score) = scores.iter_mut().find(|(s, _)| *s == q.split).unwrap();
        let ok = got == q.answer;
        match &q.answer {
            Some(_) => {
                score.answerable += 1;
                score.right += usize::from(ok);
            }
            None => {
                score.unanswerable += 1;
                score.silent += usize::from(ok);
            }
        }
        if !ok {
            // What the search found, before the answer's cut-offs.
            let detail: Vec<String> = searched
                .iter()
                .map(|p| {
                    format!(
                        "{} ({:.2}, {:.2})",
                        names[&p.article_id], p.score, p.coverage
                    )
                })
                .collect();
            score.misses.push(format!(
                "  [{}] {:?}: expected {}, got {} [{}]",
                q.split,
                q.text,
                q.answer.as_deref().unwrap_or("none"),
                got.as_deref().unwrap_or("none"),
                detail.join(", ")
            ));
        }
    }
    let mut failed = Vec::new();
    for (split, s) in &scores {
        let top1 = s.right as f64 / s.answerable as f64;
        let silent = s.silent as f64 / s.unanswerable as f64;
        println!(
            "kb-eval {split}: top-1 {top1:.3} ({}/{} answerable), no answer {silent:.3} ({}/{} unanswerable)",
            s.right, s.answerable, s.silent, s.unanswerable
        );
        for miss in &s.misses {
            println!("{miss}");
        }
        if top1 < MIN_TOP1 || silent < MIN_NO_ANSWER {
            failed.push(split.clone());
        }
    }
    assert!(
        failed.is_empty(),
        "below {MIN_TOP1} top-1 or {MIN_NO_ANSWER} no-answer on {failed:?}"
    );
}
