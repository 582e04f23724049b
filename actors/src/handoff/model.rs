//! The hand-off classifier: a multinomial logistic regression over hashed word and character
//! n-grams of one message. Its weights are trained from the labelled corpus in
//! `actors/data/handoff/` by `examples/train_handoff.rs` and ship in the binary
//! (`handoff.model`); reading them needs no network and no ML crate.

use std::sync::OnceLock;

/// What a visitor's message is about, as far as handing over to a person goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Intent {
    /// Asks for a person, an agent or a ticket.
    Human,
    /// A problem only someone with access to the account can solve: a disputed or unknown
    /// charge, data that disappeared, a reproducible bug, a stuck export, a security incident,
    /// restoring what self-service cannot.
    Account,
    /// The visitor is fed up with the answers.
    Frustration,
    /// A question the help center may answer.
    HowTo,
    /// Greetings, thanks and small talk.
    Chat,
    /// "Yes please", "sure": agrees to what the assistant offered.
    Yes,
    /// "No thanks".
    No,
}

impl Intent {
    pub const ALL: [Intent; 7] = [
        Intent::Human,
        Intent::Account,
        Intent::Frustration,
        Intent::HowTo,
        Intent::Chat,
        Intent::Yes,
        Intent::No,
    ];

    /// The label the corpus uses.
    pub fn label(self) -> &'static str {
        match self {
            Intent::Human => "human",
            Intent::Account => "account",
            Intent::Frustration => "frustration",
            Intent::HowTo => "howto",
            Intent::Chat => "chat",
            Intent::Yes => "yes",
            Intent::No => "no",
        }
    }

    pub fn from_label(label: &str) -> Option<Intent> {
        Intent::ALL.into_iter().find(|i| i.label() == label)
    }

    /// Whether a message of this kind, on its own, is for a person rather than the assistant.
    pub fn needs_person(self) -> bool {
        matches!(self, Intent::Human | Intent::Account | Intent::Frustration)
    }
}

/// The trained weights, and the features they read.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    /// Hash buckets of the features.
    dims: usize,
    classes: Vec<Intent>,
    /// One per class.
    bias: Vec<f32>,
    /// `dims` rows of one weight per class: a message's few features read a few rows.
    weights: Vec<f32>,
    /// The [`corpus_hash`] of the training set: a test notices a corpus changed without
    /// retraining.
    pub corpus_hash: u64,
}

/// The model as trained from the corpus in the repository.
const SHIPPED: &[u8] = include_bytes!("handoff.model");
const MAGIC: &[u8; 8] = b"FLYHOFF1";

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("hand-off model: {0}")]
pub struct ModelError(String);

/// The model that ships in the binary. `None` only if the file built in is damaged, which a
/// unit test rules out; the assistant then treats every message as a question.
pub fn shipped() -> Option<&'static Model> {
    static MODEL: OnceLock<Option<Model>> = OnceLock::new();
    MODEL
        .get_or_init(|| match Model::from_bytes(SHIPPED) {
            Ok(m) => Some(m),
            Err(e) => {
                tracing::error!(error = %e, "the built-in hand-off model cannot be read");
                None
            }
        })
        .as_ref()
}

/// The intent of one message, by the shipped model; a question when there is no model.
pub fn classify(text: &str) -> Intent {
    shipped().map_or(Intent::HowTo, |m| m.predict(text).0)
}

/// FNV-1a, 64 bits: stable across Rust versions and platforms, unlike std's hasher, so the
/// buckets the trainer used are the buckets the server reads.
fn fnv1a(parts: &[&str]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            hash ^= 0x1f;
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        for b in part.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    hash
}

/// A fingerprint of corpus files, as the trainer records it in the model.
pub fn corpus_hash(text: &str) -> u64 {
    fnv1a(&[text])
}

/// Lower-cased words: letters and digits of any script; apostrophes join ("don't" is "dont"),
/// everything else separates.
fn words(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut word = String::new();
    for c in text.chars().flat_map(char::to_lowercase) {
        if c.is_alphanumeric() {
            word.push(c);
        } else if matches!(c, '\'' | '’') {
            continue;
        } else if !word.is_empty() {
            out.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        out.push(word);
    }
    out
}

/// A message's features as (bucket, value) pairs, sorted by bucket, L2-normalised: words,
/// pairs of words, the character 3- and 4-grams of each word (which carry inflections and
/// typos across languages), and whether it asks or exclaims.
pub fn features(text: &str, dims: usize) -> Vec<(usize, f32)> {
    // Only the start of a very long message counts: its cost stays bounded.
    let words: Vec<String> = words(text).into_iter().take(200).collect();
    let mut buckets: Vec<usize> = Vec::new();
    let dims_u64 = dims.max(1) as u64;
    let mut add = |parts: &[&str]| buckets.push((fnv1a(parts) % dims_u64) as usize);
    for (i, w) in words.iter().enumerate() {
        add(&["w", w]);
        if let Some(next) = words.get(i + 1) {
            add(&["b", w, next]);
        }
        let chars: Vec<char> = format!("<{w}>").chars().collect();
        for n in [3, 4] {
            for gram in chars.windows(n) {
                let gram: String = gram.iter().collect();
                add(&["c", &gram]);
            }
        }
    }
    if text.contains('?') || text.contains('¿') || text.contains('؟') {
        add(&["p", "?"]);
    }
    if text.contains('!') {
        add(&["p", "!"]);
    }
    if words.len() <= 2 {
        add(&["n", "short"]);
    }
    buckets.sort_unstable();
    let mut out: Vec<(usize, f32)> = Vec::new();
    for b in buckets {
        match out.last_mut() {
            Some((last, v)) if *last == b => *v += 1.0,
            _ => out.push((b, 1.0)),
        }
    }
    let norm = out.iter().map(|(_, v)| v * v).sum::<f32>().sqrt();
    if norm > 0.0 {
        for (_, v) in &mut out {
            *v /= norm;
        }
    }
    out
}

impl Model {
    /// A model from trained parameters: `weights` holds `dims` rows of one weight per class.
    pub fn new(
        dims: usize,
        classes: Vec<Intent>,
        bias: Vec<f32>,
        weights: Vec<f32>,
        corpus_hash: u64,
    ) -> Result<Model, ModelError> {
        if classes.is_empty()
            || bias.len() != classes.len()
            || weights.len() != dims * classes.len()
        {
            return Err(ModelError("the weights do not match the classes".into()));
        }
        Ok(Model {
            dims,
            classes,
            bias,
            weights,
            corpus_hash,
        })
    }

    pub fn dims(&self) -> usize {
        self.dims
    }

    /// The most likely intent of `text`, and its probability.
    pub fn predict(&self, text: &str) -> (Intent, f32) {
        let k = self.classes.len();
        let mut scores = self.bias.clone();
        for (bucket, value) in features(text, self.dims) {
            let row = &self.weights[bucket * k..(bucket + 1) * k];
            for (s, w) in scores.iter_mut().zip(row) {
                *s += w * value;
            }
        }
        let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        let total: f32 = scores.iter().map(|s| (s - max).exp()).sum();
        let (best, score) =
            scores
                .iter()
                .enumerate()
                .fold(
                    (0, f32::NEG_INFINITY),
                    |acc, (i, &s)| {
                        if s > acc.1 {
                            (i, s)
                        } else {
                            acc
                        }
                    },
                );
        (self.classes[best], (score - max).exp() / total)
    }

    /// The file format: magic, dimensions, classes, corpus hash, then little-endian f32
    /// biases and weights.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32 + 4 * self.weights.len());
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&(self.dims as u32).to_le_bytes());
        out.extend_from_slice(&(self.classes.len() as u32).to_le_bytes());
        out.extend_from_slice(&self.corpus_hash.to_le_bytes());
        for c in &self.classes {
            let label = c.label().as_bytes();
            out.push(label.len() as u8);
            out.extend_from_slice(label);
        }
        for v in self.bias.iter().chain(&self.weights) {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out
    }

    pub fn from_bytes(bytes: &[u8]) -> Result<Model, ModelError> {
        let mut rest = bytes;
        let mut take = |n: usize| -> Result<&[u8], ModelError> {
            if rest.len() < n {
                return Err(ModelError("the file is cut short".into()));
            }
            let (head, tail) = rest.split_at(n);
            rest = tail;
            Ok(head)
        };
        if take(8)? != MAGIC {
            return Err(ModelError("not a hand-off model".into()));
        }
        let u32_at = |b: &[u8]| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize;
        let dims = u32_at(take(4)?);
        let count = u32_at(take(4)?);
        let hash_bytes = take(8)?;
        let mut hash = [0u8; 8];
        hash.copy_from_slice(hash_bytes);
        let corpus_hash = u64::from_le_bytes(hash);
        if !(1..=1 << 20).contains(&dims) || !(1..=64).contains(&count) {
            return Err(ModelError("implausible dimensions".into()));
        }
        let mut classes = Vec::with_capacity(count);
        for _ in 0..count {
            let len = usize::from(take(1)?[0]);
            let label = std::str::from_utf8(take(len)?)
                .map_err(|_| ModelError("a class label is not UTF-8".into()))?;
            classes.push(
                Intent::from_label(label)
                    .ok_or_else(|| ModelError(format!("unknown class {label:?}")))?,
            );
        }
        let floats = count * (dims + 1);
        let raw = take(floats * 4)?;
        if !rest.is_empty() {
            return Err(ModelError("trailing bytes".into()));
        }
        let mut values = raw
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]));
        let bias: Vec<f32> = values.by_ref().take(count).collect();
        let weights: Vec<f32> = values.collect();
        Model::new(dims, classes, bias, weights, corpus_hash)
    }
}
