//! Ticket slugs: `adjective-noun-NNN`, drawn at random from word lists large enough that a slug
//! cannot practically be guessed (at least 2^30 combinations per project).

use rand::seq::IndexedRandom;
use rand::Rng;

use crate::domain::Slug;

/// Draws random slugs. Built once; cheap to share.
pub struct SlugGenerator {
    adjectives: Vec<&'static str>,
    nouns: Vec<&'static str>,
}

/// Words longer than this make slugs unwieldy to read aloud to an agent.
const MAX_WORD_LEN: usize = 10;

fn usable(word: &&'static str) -> bool {
    !word.is_empty() && word.len() <= MAX_WORD_LEN && word.bytes().all(|b| b.is_ascii_lowercase())
}

impl SlugGenerator {
    pub fn new() -> Self {
        let words = petname::lang::english::Petnames::medium();
        let mut adjectives: Vec<&'static str> =
            words.adjectives.iter().copied().filter(usable).collect();
        let mut nouns: Vec<&'static str> = words.nouns.iter().copied().filter(usable).collect();
        adjectives.sort_unstable();
        adjectives.dedup();
        nouns.sort_unstable();
        nouns.dedup();
        Self { adjectives, nouns }
    }

    /// How many distinct slugs this generator can produce.
    pub fn combinations(&self) -> u64 {
        self.adjectives.len() as u64 * self.nouns.len() as u64 * 1000
    }

    pub fn generate(&self) -> Slug {
        let mut rng = rand::rng();
        let adjective = self.adjectives.choose(&mut rng).copied().unwrap_or("quiet");
        let noun = self.nouns.choose(&mut rng).copied().unwrap_or("otter");
        let number: u16 = rng.random_range(0..1000);
        Slug::from_generated(format!("{adjective}-{noun}-{number:03}"))
    }
}

impl Default for SlugGenerator {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn there_are_at_least_two_to_the_thirty_slugs() {
        let generator = SlugGenerator::new();
        assert!(
            generator.combinations() >= 1 << 30,
            "only {} combinations",
            generator.combinations()
        );
    }

    #[test]
    fn generated_slugs_parse_and_rarely_repeat() {
        let generator = SlugGenerator::new();
        let mut seen = std::collections::HashSet::new();
        for _ in 0..10_000 {
            let slug = generator.generate();
            assert!(Slug::parse(slug.as_str()).is_ok(), "{slug}");
            seen.insert(slug);
        }
        // With ~1.2e9 slugs, 10k draws collide with probability ~4%; two collisions ~0.1%.
        assert!(seen.len() >= 9_998, "{} distinct of 10000", seen.len());
    }
}
