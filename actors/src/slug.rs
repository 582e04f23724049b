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
        self.generate_with(&mut rand::rng())
    }

    /// A slug drawn with `rng`: the thread's generator in [`generate`](Self::generate), a seeded
    /// one in tests, so a test of the draws gives the same answer every run.
    pub fn generate_with<R: Rng + ?Sized>(&self, rng: &mut R) -> Slug {
        let adjective = self.adjectives.choose(rng).copied().unwrap_or("quiet");
        let noun = self.nouns.choose(rng).copied().unwrap_or("otter");
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
        use rand::SeedableRng;
        let generator = SlugGenerator::new();
        // Seeded, so the draws and the outcome are the same every run.
        let mut rng = rand::rngs::StdRng::seed_from_u64(23);
        let draws = 10_000;
        let mut seen = std::collections::HashSet::new();
        let (mut adjectives, mut nouns, mut numbers) = (
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
            std::collections::HashSet::new(),
        );
        for _ in 0..draws {
            let slug = generator.generate_with(&mut rng);
            assert!(Slug::parse(slug.as_str()).is_ok(), "{slug}");
            let mut parts = slug.as_str().splitn(3, '-');
            adjectives.extend(parts.next().map(str::to_owned));
            nouns.extend(parts.next().map(str::to_owned));
            numbers.extend(parts.next().map(str::to_owned));
            seen.insert(slug);
        }
        // Over ~1.2e9 slugs, 10k draws repeat one about 4 % of the time: at most one repeat.
        assert!(
            seen.len() >= draws - 1,
            "{} distinct of {draws}",
            seen.len()
        );
        // Each part is drawn from the whole of its list, not from a corner of it: a fair draw
        // leaves only a handful of words unused in 10k draws.
        let covers = |used: usize, all: usize| used * 100 >= all * 99;
        assert!(covers(numbers.len(), 1000), "{} numbers", numbers.len());
        let (all_adjectives, all_nouns) = (generator.adjectives.len(), generator.nouns.len());
        assert!(
            covers(adjectives.len(), all_adjectives),
            "{} of {all_adjectives} adjectives",
            adjectives.len()
        );
        assert!(
            covers(nouns.len(), all_nouns),
            "{} of {all_nouns} nouns",
            nouns.len()
        );
    }
}
