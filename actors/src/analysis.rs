//! Text analysis shared by the full-text indexes (the knowledge base's, [`crate::kb::index`],
//! and the tickets', [`crate::search`]): how text is cut into words.

use tantivy::tokenizer::{Token, TokenStream, Tokenizer};

/// Longest word indexed, in bytes; longer ones are noise (hashes, base64).
pub const MAX_WORD: usize = 40;

/// Marks written on letters that do not change the word for search: Arabic short vowels and
/// other diacritics, the tatweel (a stretch of the line), and combining accents of decomposed
/// Latin text. They are part of a word (a tokenizer splitting at every non-letter would cut
/// vowelled Arabic into pieces) but left out of its token.
fn is_mark(c: char) -> bool {
    matches!(c,
        '\u{0300}'..='\u{036F}'
        | '\u{0610}'..='\u{061A}'
        | '\u{0640}'
        | '\u{064B}'..='\u{065F}'
        | '\u{0670}'
        | '\u{06D6}'..='\u{06ED}')
}

/// Cuts text into words: runs of letters and digits (marks included, then dropped).
#[derive(Clone, Default)]
pub struct Words;

pub struct WordStream {
    tokens: Vec<Token>,
    /// One past the current token: 0 before the first `advance`.
    next: usize,
    none: Token,
}

impl Tokenizer for Words {
    type TokenStream<'a> = WordStream;

    fn token_stream<'a>(&'a mut self, text: &'a str) -> WordStream {
        let mut tokens: Vec<Token> = Vec::new();
        let mut current: Option<Token> = None;
        for (at, c) in text.char_indices() {
            let end = at + c.len_utf8();
            if c.is_alphanumeric() || (is_mark(c) && current.is_some()) {
                let token = current.get_or_insert_with(|| Token {
                    offset_from: at,
                    position: tokens.len(),
                    ..Token::default()
                });
                if !is_mark(c) {
                    token.text.push(c);
                }
                token.offset_to = end;
            } else if let Some(done) = current.take() {
                tokens.push(done);
            }
        }
        tokens.extend(current);
        WordStream {
            tokens,
            next: 0,
            none: Token::default(),
        }
    }
}

impl TokenStream for WordStream {
    fn advance(&mut self) -> bool {
        if self.next < self.tokens.len() {
            self.next += 1;
            true
        } else {
            false
        }
    }

    fn token(&self) -> &Token {
        self.next
            .checked_sub(1)
            .and_then(|i| self.tokens.get(i))
            .unwrap_or(&self.none)
    }

    fn token_mut(&mut self) -> &mut Token {
        match self.next.checked_sub(1) {
            Some(i) if i < self.tokens.len() => &mut self.tokens[i],
            _ => &mut self.none,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_their_marks_out_and_stay_whole() {
        let mut words = Words;
        let mut stream = words.token_stream("Ça va? مَرْحَبًا  x2");
        let mut out = Vec::new();
        while stream.advance() {
            out.push(stream.token().text.clone());
        }
        assert_eq!(out, vec!["Ça", "va", "مرحبا", "x2"]);
    }
}
