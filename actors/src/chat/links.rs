//! Removes links and images that point outside a project's allowed hosts from the assistant's
//! answers.
//!
//! A model can be talked into writing links (by the visitor, or by text planted in the knowledge
//! base), and an image is worse than a link: the visitor's browser fetches it without a click,
//! so its URL can carry the conversation to whoever serves it. This module owns what counts as
//! a link here — markdown links, images and autolinks, bare URLs, `<a>` and `<img>` tags, and
//! destinations after a stray `](` or a `]:` — and which ones may stay.
//!
//! The answer arrives in pieces cut anywhere, so a piece can end inside something whose fate
//! depends on text not yet seen (`[docs](https://ev`). [`LinkFilter`] sends on what is decided
//! and holds back only the undecided rest, so ordinary text is not delayed. Every construct has
//! a length limit, so no decision needs more than a few kilobytes of look-ahead, and the streamed
//! output equals [`filter_links`] of the whole text however it was cut.
//!
//! Removing something joins what was on either side of it, and the join must not make a new
//! link (`[x]<a>(//evil.com)`, `http:/<a>/evil.com`). So a replacement goes back into the
//! input to be read again with what follows it, and where it meets text already sent, a space
//! is put between them if together they would make something the filter changes. The output
//! is thereby a fixed point: filtering it again changes nothing.

/// Longest link text we look for the closing `]` in.
const MAX_TEXT: usize = 1024;
/// Longest destination, between `(` and `)` or after `]:`.
const MAX_DEST: usize = 2048;
/// Longest `<…>` we wait for the `>` of.
const MAX_TAG: usize = 2000;
/// Longest bare URL; what follows is read as text again.
const MAX_URL: usize = 2048;
/// How deep allowed links' texts are filtered, each on its own.
const MAX_DEPTH: usize = 8;
/// Most input taken in at once; see [`LinkFilter::push`].
const FEED: usize = 1024;
/// Held-back bytes past which we stop waiting. The limits above keep the buffer below this; it
/// is a backstop so memory stays bounded whatever a future rule forgets.
const MAX_PENDING: usize = 4096;

const REMOVED: &str = "[link removed]";
/// Punctuation at the end of a bare URL is the sentence's, not the URL's.
const TRAILING: &[char] = &['.', ',', ';', ':', '!', '?', ')', '*', '_', '~', '\''];

/// Filters a model's answer as it streams in.
#[derive(Debug, Clone)]
pub struct LinkFilter {
    allowed: Vec<String>,
    /// Received but not yet decided.
    pending: String,
    sent: Sent,
}

impl LinkFilter {
    /// `allowed_hosts`: lower-case host names (optionally with :port) that links may point at,
    /// e.g. ["example.com", "localhost:3000"].
    pub fn new(allowed_hosts: Vec<String>) -> Self {
        Self {
            allowed: allowed_hosts,
            pending: String::new(),
            sent: Sent::default(),
        }
    }

    /// Feeds the next piece of model output; returns the text that is now safe to send (possibly
    /// empty).
    pub fn push(&mut self, piece: &str) -> String {
        let mut out = String::new();
        // In slices, so that a replacement never moves more than a few kilobytes of `pending`.
        let mut piece = piece;
        while !piece.is_empty() {
            let mut cut = piece.len().min(FEED);
            while !piece.is_char_boundary(cut) {
                cut += 1;
            }
            self.pending.push_str(&piece[..cut]);
            piece = &piece[cut..];
            out.push_str(&self.run(false));
            if self.pending.len() > MAX_PENDING {
                out.push_str(&self.run(true));
            }
        }
        out
    }

    /// The model is done: returns whatever is still held back, filtered.
    pub fn finish(&mut self) -> String {
        let out = self.run(true);
        self.sent = Sent::default();
        out
    }

    fn run(&mut self, fin: bool) -> String {
        let (out, used) = scan(&mut self.pending, &mut self.sent, &self.allowed, fin, 0);
        self.pending.drain(..used);
        out
    }
}

/// One-shot convenience: filter a whole text.
pub fn filter_links(text: &str, allowed_hosts: &[String]) -> String {
    let mut filter = LinkFilter::new(allowed_hosts.to_vec());
    let out = filter.push(text);
    out + &filter.finish()
}

/// What has been sent, as far as it matters to what comes next.
#[derive(Debug, Clone, Default)]
struct Sent {
    /// The output since its last whitespace: a construct can start there and go on in what is
    /// still to come (`https://example.com` + `@evil.com`).
    tail: String,
    /// Something was just removed or replaced, so `tail` now meets text it did not meet in the
    /// input.
    junction: bool,
    def: Def,
}

/// Where the output stands in a reference definition, `[label]: dest`, which any
/// `[text][label]` would turn into a link. Tracked on the output rather than looked ahead for in
/// the input, as a removal can bring `]:` and a destination together.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
enum Def {
    #[default]
    None,
    /// After `]:` and perhaps whitespace: what comes next is a destination.
    Colon,
    /// Inside the destination.
    Dest,
}

impl Sent {
    fn emit(&mut self, out: &mut String, s: &str) {
        out.push_str(s);
        for c in s.chars() {
            let space = is_space(c);
            self.def = match (self.def, c) {
                (_, ':') if self.tail.ends_with(']') => Def::Colon,
                (Def::Colon, _) if space => Def::Colon,
                (Def::Colon | Def::Dest, _) if !space => Def::Dest,
                _ => Def::None,
            };
            if space {
                self.tail.clear();
            } else {
                self.tail.push(c);
            }
        }
        if self.tail.len() > 2 * MAX_URL {
            let mut cut = self.tail.len() - MAX_URL;
            while !self.tail.is_char_boundary(cut) {
                cut += 1;
            }
            self.tail.drain(..cut);
        }
    }
}

/// What a parser makes of the text at the current position.
enum Scan<T> {
    /// It is this construct.
    Hit(T),
    /// It is not: the character there is plain text.
    Miss,
    /// The text ends before we can tell.
    Wait,
}
use Scan::{Hit, Miss, Wait};

/// Unwraps a `Hit`, or returns the `Miss` or `Wait` from the calling parser.
macro_rules! hit {
    ($e:expr) => {
        match $e {
            Hit(v) => v,
            Miss => return Miss,
            Wait => return Wait,
        }
    };
}

/// What to say when the text ran out: in final text, what is missing never comes.
fn wait<T>(fin: bool) -> Scan<T> {
    if fin {
        Miss
    } else {
        Wait
    }
}

/// A construct's length in bytes and what to put in its place.
type Found = Scan<(usize, String)>;

/// Filters `buf` up to the first construct it cannot decide yet (with `fin`, to the end).
/// Returns the output and how many bytes of `buf` it covers. A replacement is written back into
/// `buf` and scanned again, so that it is judged together with what follows it
/// (`[h](…)ttps://evil.com` becomes a bare URL once the link is gone).
fn scan(
    buf: &mut String,
    sent: &mut Sent,
    allowed: &[String],
    fin: bool,
    depth: usize,
) -> (String, usize) {
    let mut out = String::new();
    let mut i = 0;
    while let Some(c) = buf[i..].chars().next() {
        if sent.junction {
            match junction(sent, &buf[i..], allowed, fin, depth) {
                Wait => break,
                Hit(()) => sent.emit(&mut out, " "),
                Miss => {}
            }
            sent.junction = false;
        }
        let prev = sent.tail.chars().next_back();
        let found = match sent.def {
            Def::Colon if !is_space(c) => destination(&buf[i..], allowed, fin),
            _ => Miss,
        };
        let found = match found {
            Miss => step(&buf[i..], prev, allowed, fin, depth),
            other => other,
        };
        match found {
            Wait => break,
            Miss => {
                sent.emit(&mut out, &buf[i..i + c.len_utf8()]);
                i += c.len_utf8();
            }
            Hit((len, s)) if buf[i..i + len] == s => {
                sent.emit(&mut out, &s);
                i += len;
            }
            Hit((len, s)) => {
                buf.replace_range(i..i + len, &s);
                sent.junction = true;
            }
        }
    }
    (out, i)
}

/// Filters a link's text on its own: it is bracketed, so it cannot join what is around it.
fn filter_nested(text: &str, allowed: &[String], depth: usize) -> String {
    let mut buf = text.to_string();
    scan(&mut buf, &mut Sent::default(), allowed, true, depth).0
}

/// Decides what starts at `rest`; `prev` is the character sent before it.
fn step(rest: &str, prev: Option<char>, allowed: &[String], fin: bool, depth: usize) -> Found {
    match rest.chars().next() {
        Some('[') => link(rest, false, allowed, fin, depth),
        Some('!') => match rest.as_bytes().get(1) {
            Some(b'[') => match link(&rest[1..], true, allowed, fin, depth) {
                Hit((len, out)) => Hit((len + 1, out)),
                other => other,
            },
            Some(_) => Miss,
            None => wait(fin),
        },
        Some(']') => stray_bracket(rest, allowed, fin),
        Some('<') => angle(rest, allowed, fin),
        Some('h' | 'H') => scheme_url(rest, allowed, fin),
        // Mid-word (`awww.`) it is not a link to any renderer.
        Some('w' | 'W') if !prev.is_some_and(char::is_alphanumeric) => www_url(rest, allowed, fin),
        _ => Miss,
    }
}

/// Whether what was sent and `rest`, which a removal has just brought together, would form a
/// construct the filter changes; `Hit` means a space must keep them apart, as what was sent can
/// no longer be taken back. Only constructs that can reach past the sent `tail` are tried: a URL
/// in its last run of URL characters, its last `<`, a `]` right at its end, and a definition's
/// destination.
fn junction(sent: &Sent, rest: &str, allowed: &[String], fin: bool, depth: usize) -> Scan<()> {
    // Nothing longer than a URL can reach past the end.
    let mut from = sent.tail.len().saturating_sub(MAX_URL);
    while !sent.tail.is_char_boundary(from) {
        from += 1;
    }
    let tail = &sent.tail[from..];
    if sent.def == Def::Dest {
        let token = tail.rsplit("]:").next().unwrap_or(tail);
        let more = rest.find(is_space);
        if more.is_none() && !fin {
            return Wait;
        }
        if !dest_harmless(
            &format!("{token}{}", &rest[..more.unwrap_or(rest.len())]),
            allowed,
        ) {
            return Hit(());
        }
    }
    // URLs in the last run of URL characters that are close enough to the end to reach past it,
    // and in the last few bytes, what could still become the start of one.
    let run = tail
        .char_indices()
        .rev()
        .find(|&(_, c)| !is_url_char(c))
        .map_or(0, |(k, c)| k + c.len_utf8());
    let lower = tail[run..].to_ascii_lowercase();
    let ending = tail[run..]
        .char_indices()
        .rev()
        .take_while(|&(k, _)| run + k + 8 > tail.len());
    let mut urls: Vec<usize> = ["http://", "https://", "www."]
        .iter()
        .flat_map(|p| lower.match_indices(p).map(|(k, _)| k))
        .chain(ending.map(|(k, _)| k))
        .map(|k| run + k)
        .collect();
    urls.sort_unstable();
    urls.dedup();
    let others: Vec<usize> = tail
        .rfind('<')
        .into_iter()
        .chain(tail.ends_with(']').then(|| tail.len() - 1))
        .collect();
    let Some(first) = urls.iter().chain(&others).copied().min() else {
        return Miss;
    };
    let joined = format!("{}{rest}", &tail[first..]);
    let judge = |k: usize| {
        let at = &joined[k - first..];
        match step(at, tail[..k].chars().next_back(), allowed, fin, depth) {
            Hit((len, s)) if at[..len] != s => Hit(None),
            Hit((len, _)) => Hit(Some(k + len)),
            Miss => Miss,
            Wait => Wait,
        }
    };
    // Past the end of a URL that stays as it is, what looked like another is part of it.
    let mut kept_to = 0;
    for k in urls.into_iter().filter(|&k| tail.is_char_boundary(k)) {
        if k < kept_to {
            continue;
        }
        match judge(k) {
            Hit(Some(end)) => kept_to = end,
            Hit(None) => return Hit(()),
            Wait => return Wait,
            Miss => {}
        }
    }
    for k in others {
        match judge(k) {
            Hit(None) => return Hit(()),
            Wait => return Wait,
            _ => {}
        }
    }
    Miss
}

/// `[text](dest)`, or `![alt](dest)` if `image`, with `rest` starting at the `[`. The text is
/// filtered too: it can hold images (`[![badge](…)](…)`) or a URL posing as the link's target.
fn link(rest: &str, image: bool, allowed: &[String], fin: bool, depth: usize) -> Found {
    let close = hit!(matching(rest, b'[', b']', MAX_TEXT, fin));
    match rest.as_bytes().get(close + 1) {
        Some(b'(') => {}
        Some(_) => return Miss,
        None => return wait(fin),
    }
    let end = close + 2 + hit!(matching(&rest[close + 1..], b'(', b')', MAX_DEST, fin));
    let out = match (dest_ok(&rest[close + 2..end - 1], allowed), image) {
        // The text goes back into the stream to be judged where it now stands.
        (false, false) => rest[1..close].to_string(),
        (false, true) => String::new(),
        // Deeper than this, drop the link whole, text and all: it keeps the stack small.
        (true, _) if depth >= MAX_DEPTH => String::new(),
        (true, _) => {
            let text = filter_nested(&rest[1..close], allowed, depth + 1);
            let bang = if image { "!" } else { "" };
            format!("{bang}[{text}]{}", &rest[close + 1..end])
        }
    };
    Hit((end, out))
}

/// A `]` whose `[` we could not pair (a code span or an HTML attribute in the link text can hide
/// it from us, not from a renderer) still ends a link before `(dest)`: judge the destination
/// alone. A `](` we find no `)` for gets a space: a replacement further on could still balance
/// its parentheses.
fn stray_bracket(rest: &str, allowed: &[String], fin: bool) -> Found {
    match rest.as_bytes().get(1) {
        Some(b'(') => match matching(&rest[1..], b'(', b')', MAX_DEST, fin) {
            Hit(close) if dest_ok(&rest[2..close + 1], allowed) => {
                Hit((close + 2, rest[..close + 2].to_string()))
            }
            Hit(close) => Hit((close + 2, "]".to_string())),
            Miss => Hit((1, "] ".to_string())),
            Wait => Wait,
        },
        Some(_) => Miss,
        None => wait(fin),
    }
}

/// The destination of a reference definition, `rest` starting right after `]:` and whitespace.
/// It is replaced if it could lead off the site; otherwise it is read as ordinary text.
fn destination(rest: &str, allowed: &[String], fin: bool) -> Found {
    let mut limit = rest.len().min(MAX_DEST);
    while !rest.is_char_boundary(limit) {
        limit -= 1;
    }
    let window = &rest[..limit];
    let out_of_text = fin || rest.len() >= MAX_DEST;
    // `<…>` may hold spaces; a `<` without its `>` takes up to the first one.
    let angled = match window.strip_prefix('<').map(|w| w.find(['>', '<', '\n'])) {
        Some(Some(k)) => window[1 + k..].starts_with('>').then_some(k + 2),
        Some(None) if !out_of_text => return Wait,
        _ => None,
    };
    let end = match angled.or_else(|| window.find(is_space)) {
        Some(end) => end,
        None if out_of_text => limit,
        None => return Wait,
    };
    if end == 0 {
        return Miss;
    }
    let dest = &rest[..end];
    if !rest.starts_with('<') {
        return if dest_harmless(dest, allowed) {
            Miss
        } else {
            Hit((end, REMOVED.to_string()))
        };
    }
    match tag(&rest[1..], fin) {
        Hit(_) => return Miss, // `<img>`, `<a>`: removed as tags
        Wait => return Wait,
        Miss => {}
    }
    // `<…>` is kept whole or not at all: read on, a removal inside it could move its `>`, and
    // a `<` left open could be closed by one further on.
    let kept = angled.is_some() && {
        let inner = &dest[1..dest.len() - 1];
        inner.chars().all(is_plain)
            && (url_allowed(inner, allowed)
                || dest_harmless(inner, allowed) && !inner.contains(['!', 'h', 'H', 'w', 'W']))
    };
    Hit((end, if kept { dest } else { REMOVED }.to_string()))
}

/// Only a destination with `:`, `/`, `\` or `&` can leave the site; without, prose such as
/// "[Note]: done" stays as it is.
fn dest_harmless(token: &str, allowed: &[String]) -> bool {
    let dest = token
        .strip_prefix('<')
        .and_then(|d| d.strip_suffix('>'))
        .unwrap_or(token);
    !dest.contains([':', '/', '\\', '&']) || url_allowed(dest, allowed)
}

/// Index of the `close` pairing the `open` at `s[0]`, counting nesting and skipping backslash
/// escapes. A blank line ends the search: markdown links do not span paragraphs.
fn matching(s: &str, open: u8, close: u8, limit: usize, fin: bool) -> Scan<usize> {
    let b = s.as_bytes();
    let mut depth = 0usize;
    let mut i = 0;
    while i < b.len().min(limit) {
        match b[i] {
            b'\\' => i += 1,
            c if c == open => depth += 1,
            c if c == close => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return Hit(i);
                }
            }
            b'\n' if i > 0 && b[i - 1] == b'\n' => return Miss,
            _ => {}
        }
        i += 1;
    }
    if b.len() >= limit {
        Miss
    } else {
        wait(fin)
    }
}

/// `<img …>`, `<a …>` and `</a>` tags go; `<scheme:…>` autolinks are judged; any other `<` is
/// plain text.
fn angle(rest: &str, allowed: &[String], fin: bool) -> Found {
    let body = &rest[1..];
    match tag(body, fin) {
        Hit(len) => return Hit((1 + len, String::new())),
        Wait => return Wait,
        Miss => {}
    }
    let end = hit!(autolink(body, fin));
    let out = if url_allowed(&body[..end], allowed) {
        &rest[..end + 2]
    } else {
        REMOVED
    };
    Hit((end + 2, out.to_string()))
}

/// Length of the `img`/`a`/`/a` tag `body` starts with (after its `<`).
fn tag(body: &str, fin: bool) -> Scan<usize> {
    for name in ["img", "a", "/a"] {
        match starts(body, name, fin) {
            Hit(()) => {}
            Miss => continue,
            Wait => return Wait,
        }
        match body.as_bytes().get(name.len()) {
            // `<abbr>`, `<image>`: another tag. Any other character ends the name as far as we
            // care: were it removed, `<img` would be left open for what follows. `h` and `w` may
            // begin a URL that we replace.
            Some(c) if c.is_ascii_alphanumeric() && !b"hHwW".contains(c) => continue,
            Some(_) => {}
            None if fin => return Hit(name.len()),
            None => return Wait,
        }
        let window = &body.as_bytes()[..body.len().min(MAX_TAG)];
        return match window.iter().position(|&c| c == b'>') {
            Some(i) => Hit(i + 1),
            // A `>` beyond our patience would still close the tag in a browser: drop its opening
            // so no tag is left to close.
            None if fin || body.len() >= MAX_TAG => Hit(name.len()),
            None => Wait,
        };
    }
    Miss
}

/// Index in `body` of the `>` ending a CommonMark autolink `<scheme:…>`.
fn autolink(body: &str, fin: bool) -> Scan<usize> {
    let mut in_scheme = true;
    for (i, c) in body.char_indices().take_while(|&(i, _)| i < MAX_TAG) {
        if in_scheme {
            if c == ':' && (2..=32).contains(&i) {
                in_scheme = false;
            } else if !(c.is_ascii_alphabetic()
                || i > 0 && (c.is_ascii_digit() || matches!(c, '+' | '.' | '-')))
            {
                return Miss;
            }
        } else if c == '>' {
            return Hit(i);
        } else if c == ' ' || c.is_ascii_control() || c == '<' {
            return Miss; // but other spaces, such as U+00A0, may be in one
        }
    }
    if body.len() >= MAX_TAG {
        Miss
    } else {
        wait(fin)
    }
}

fn scheme_url(rest: &str, allowed: &[String], fin: bool) -> Found {
    match (starts(rest, "http://", fin), starts(rest, "https://", fin)) {
        (Hit(()), _) | (_, Hit(())) => bare_url(rest, url_allowed, allowed, fin),
        (Wait, _) | (_, Wait) => Wait,
        _ => Miss,
    }
}

/// `www.host…`, which renderers link as `http://www.host…`.
fn www_url(rest: &str, allowed: &[String], fin: bool) -> Found {
    hit!(starts(rest, "www.", fin));
    match rest[4..].chars().next() {
        Some(c) if c.is_ascii_alphanumeric() || c == '-' => {
            bare_url(rest, host_allowed, allowed, fin)
        }
        Some(_) => Miss,
        None => wait(fin),
    }
}

/// A bare URL runs to whitespace or `<`, as in GFM, and is judged by its host. An allowed one is
/// passed on only up to the first character outside the usual URL set: another renderer may end
/// the URL there, and what follows may be a link of its own (`https://example.com/[x](…)`).
fn bare_url(rest: &str, ok: fn(&str, &[String]) -> bool, allowed: &[String], fin: bool) -> Found {
    let end = match rest
        .char_indices()
        .find(|&(i, c)| i >= MAX_URL || !is_url_char(c))
    {
        Some((i, _)) => i,
        None if fin => rest.len(),
        None => return Wait,
    };
    let url = rest[..end].trim_end_matches(TRAILING);
    if !ok(url, allowed) {
        return Hit((url.len(), REMOVED.to_string()));
    }
    let keep = url
        .find(|c: char| !c.is_ascii_alphanumeric() && !"-._~:/?#@!$&*+,;=%".contains(c))
        .unwrap_or(url.len());
    Hit((keep, url[..keep].to_string()))
}

/// What a GFM autolink runs on through. Only ASCII whitespace ends one there: with a no-break
/// space ending ours, `https://example.com\u{a0}@evil.com` would pass as a link to us and lead
/// to `evil.com` in GFM.
fn is_url_char(c: char) -> bool {
    !(c.is_ascii_whitespace() || c == '<')
}

/// Whitespace as markdown has it: ASCII, with the vertical tab that Rust's ASCII set lacks.
fn is_space(c: char) -> bool {
    c.is_ascii_whitespace() || c == '\x0B'
}

/// A URL character that starts nothing when the URL is read as text.
fn is_plain(c: char) -> bool {
    is_url_char(c) && !matches!(c, '>' | '[' | ']')
}

/// Whether what a link has between its parentheses may stay: an allowed URL, alone or with a
/// plain quoted title. Anything else goes, since a renderer that did not take it for a link
/// would show it as text, and there a `<img …>` or `[x](…)` in it would come alive.
fn dest_ok(inner: &str, allowed: &[String]) -> bool {
    let inner = inner.trim_matches(is_space);
    let (url, title) = match inner.strip_prefix('<') {
        Some(d) => d.split_once('>').unwrap_or(("", "")),
        None => inner.split_once(is_space).unwrap_or((inner, "")),
    };
    let title = title.trim_start_matches(is_space);
    let plain_title = title.is_empty()
        || ['"', '\''].into_iter().any(|q| {
            let inside = title.strip_prefix(q).and_then(|t| t.strip_suffix(q));
            inside.is_some_and(|t| !t.contains([q, '<', '>', '[', ']', '\\']))
        });
    plain_title && url.chars().all(|c| c == ' ' || is_plain(c)) && url_allowed(url, allowed)
}

fn url_allowed(url: &str, allowed: &[String]) -> bool {
    strip_prefix_ci(url, "https://")
        .or_else(|| strip_prefix_ci(url, "http://"))
        .is_some_and(|rest| host_allowed(rest, allowed))
}

/// `rest` starts at the URL's authority. Anything unusual in it (backslashes, entities,
/// percent-escapes) is refused: a browser or renderer might read another host out of it than we
/// would.
fn host_allowed(rest: &str, allowed: &[String]) -> bool {
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    let plain = authority
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_' | ':' | '@'));
    // Browsers take the host after the last `@`; before it is a user name, whatever it looks like.
    let host = authority.rsplit('@').next().unwrap_or("");
    plain && !host.is_empty() && allowed.iter().any(|a| a.eq_ignore_ascii_case(host))
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let head = s.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &s[prefix.len()..])
}

/// Whether `s` starts with `p`, ignoring ASCII case; `Wait` while `s` is too short to tell.
fn starts(s: &str, p: &str, fin: bool) -> Scan<()> {
    let n = s.len().min(p.len());
    if !s.as_bytes()[..n].eq_ignore_ascii_case(&p.as_bytes()[..n]) {
        Miss
    } else if n == p.len() {
        Hit(())
    } else {
        wait(fin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hosts() -> Vec<String> {
        vec!["example.com".into(), "localhost:3000".into()]
    }

    fn f(text: &str) -> String {
        filter_links(text, &hosts())
    }

    fn stream(pieces: &[&str]) -> String {
        let mut filter = LinkFilter::new(hosts());
        let mut out: String = pieces.iter().map(|p| filter.push(p)).collect();
        out.push_str(&filter.finish());
        out
    }

    fn same(text: &str) {
        assert_eq!(f(text), text, "should pass unchanged");
    }

    /// The filtered text, which must hold nothing the filter would still change.
    fn clean(text: &str) -> String {
        let out = f(text);
        assert_eq!(f(&out), out, "{text:?} filtered is not clean");
        out
    }

    #[test]
    fn markdown_links() {
        same("see [docs](https://example.com/a) now");
        same(r#"[d](https://example.com/a "Title") [e](https://example.com 'T')"#);
        same("[d]( <https://example.com/a b> ) [wiki](https://example.com/Foo_(bar))");
        assert_eq!(f("see [docs](https://evil.com/a), now"), "see docs, now");
        assert_eq!(f(r#"[d](https://evil.com "Title")"#), "d");
        // Kept only whole: a title that is not one would leave the rest to be read as text.
        assert_eq!(f("[d](https://example.com <img src=x>)"), "d");
        assert_eq!(f("[d](https://example.com[@evil.com)"), "d");
        let dests = r"/relative page.html //example.com/x javascript:alert(1) JavaScript:x
            data:text/html,x vbscript:x file:///etc/passwd ftp://example.com https:example.com
            https:/\example.com https:///evil.com <> <//evil.com>";
        for dest in dests.split_whitespace().chain([""]) {
            assert_eq!(f(&format!("[d]({dest})")), "d", "{dest}");
        }
    }

    #[test]
    fn images() {
        same(r#"![logo](https://example.com/l.png) ![logo](https://example.com/l.png "Logo")"#);
        assert_eq!(f("a ![logo](https://evil.com/l.png?q=secret) b"), "a  b");
        assert_eq!(f(r#"![x](https://evil.com/p.png "t")"#), "");
        assert_eq!(f("![x](data:image/png;base64,AAAA)![y](/local.png)"), "");
        same("wow! ![not an image] !");
    }

    #[test]
    fn hosts_are_exact_with_port_and_ignore_case() {
        same("[a](HTTPS://EXAMPLE.COM/X) [b](http://Example.Com) [c](http://localhost:3000/x)");
        same("[a](https://evil.com@example.com/)"); // a user name; the host is example.com
        let urls = r"https://www.example.com https://sub.example.com https://example.com.evil.com
            https://example.com:443/ https://example.com@evil.com http://localhost:4000/x
            http://localhost/x https://example.com&#64;evil.com https://example.com\@evil.com
            https://example.com%2eevil.com https://exämple.com";
        for url in urls.split_whitespace() {
            assert_eq!(f(&format!("[a]({url})")), "a", "{url}");
        }
        let www = ["www.example.com".to_string()];
        assert_eq!(
            filter_links("[a](https://www.example.com)", &www),
            "[a](https://www.example.com)"
        );
        assert_eq!(filter_links("[a](https://example.com)", &www), "a");
    }

    #[test]
    fn autolinks() {
        same("go <https://example.com/a> now <http://localhost:3000>");
        assert_eq!(f("go <https://evil.com/a> now"), "go [link removed] now");
        assert_eq!(f("<HTTPS://EVIL.COM>"), "[link removed]");
        assert_eq!(f("<javascript:alert(1)>"), "[link removed]");
        assert_eq!(f("<mailto:a@evil.com>"), "[link removed]");
        assert_eq!(f("<javascript:alert(1)\u{a0}>"), "[link removed]");
        same("<alice@example.org>"); // an e-mail autolink, not a URL
    }

    #[test]
    fn bare_urls() {
        same("see https://example.com/a?b=c#d! or http://localhost:3000/x.");
        assert_eq!(f("see https://evil.com."), "see [link removed].");
        assert_eq!(f("(https://evil.com/a), ok"), "([link removed]), ok");
        assert_eq!(f("**https://evil.com**"), "**[link removed]**");
        assert_eq!(f("HTTP://EVIL.COM/x;"), "[link removed];");
        assert_eq!(f("xhttps://evil.com"), "x[link removed]");
        assert_eq!(f("a\nhttps://evil.com\nb"), "a\n[link removed]\nb");
        assert_eq!(f("visit www.evil.com/x now"), "visit [link removed] now");
        assert_eq!(f("visit www.example.com"), "visit [link removed]"); // `www.` is not implied
        assert_eq!(f("(WWW.evil.com)"), "([link removed])");
        let www = ["www.example.com".to_string()];
        assert_eq!(filter_links("www.example.com!", &www), "www.example.com!");
        assert_eq!(f("[1]: https://evil.example"), "[1]: [link removed]");
        // As in GFM, a bare URL runs to whitespace or `<`, and its host decides...
        assert_eq!(f("https://example.com[@evil.com"), "[link removed]");
        assert_eq!(f("https://example.com\u{a0}@evil.com"), "[link removed]");
        // ...but a link after an allowed one's path is a link of its own.
        assert_eq!(
            f("https://example.com/[x](https://evil.com)"),
            "https://example.com/x"
        );
        assert_eq!(f("https://example.com/<img src=x>"), "https://example.com/");
        "http https: https:/ www www. awww.evil.com"
            .split(' ')
            .for_each(same);
        same("www. x, the whole show");
    }

    #[test]
    fn reference_definitions() {
        same("[1]: https://example.com/a\n[2]: <https://example.com/b>");
        same("[Note]: done\n[Note]: done for today");
        assert_eq!(
            f("[1]: //evil.com/p.png\n\n![x][1]"),
            "[1]: [link removed]\n\n![x][1]"
        );
        assert_eq!(
            f("[1]:\n  javascript:alert(1)\n"),
            "[1]:\n  [link removed]\n"
        );
        assert_eq!(f("[1]: </x a> \"t\""), "[1]: [link removed] \"t\"");
    }

    #[test]
    fn html_tags() {
        assert_eq!(f("a <img src=\"https://example.com/p.png\"> b"), "a  b");
        assert_eq!(f("<IMG SRC=x>z<Img/src=x>"), "z");
        assert_eq!(f("<a href=\"https://evil.com\">click</a>"), "click");
        assert_eq!(f("<A\nHREF='x'>click</A >"), "click");
        assert_eq!(f("<img src=x"), " src=x");
        assert_eq!(f("<a"), ""); // an opening left at the very end goes too
        let long = format!("<a {}>", "x".repeat(3000));
        assert_eq!(f(&long), format!(" {}>", "x".repeat(3000)));
        assert_eq!(f("< https://evil.com >"), "< [link removed] >");
        "a < b, <3 <abbr>x</abbr> <image> <b>bold</b> <"
            .split(' ')
            .for_each(same);
    }

    #[test]
    fn nested_and_tricky_brackets() {
        assert_eq!(f("[a [b]](https://evil.com)"), "a [b]");
        assert_eq!(f("[a [b](https://evil.com)"), "[a b");
        // A `](` without its `)` is split, since a removal later on could supply one.
        assert_eq!(f("[x](https://evil.com"), "[x] ([link removed]");
        assert_eq!(f("[x] (https://evil.com)"), "[x] ([link removed])");
        let badge = "[![b](https://evil.com/b.png)](https://example.com)";
        assert_eq!(f(badge), "[](https://example.com)");
        let posing = "[https://evil.com](https://example.com)";
        assert_eq!(f(posing), "[[link removed]](https://example.com)");
        // Code spans and tags bind tighter than brackets in markdown; we cannot pair these `[`s,
        // but the destination after `](` is still judged.
        for text in [
            "[`]`](//evil.com)",
            "[<b title=\"]\">](//evil.com)",
            "[x\\]](//evil.com)",
        ] {
            assert!(!clean(text).contains("evil"), "{text}");
        }
        same("[citation needed] and [x]: y z, arr[0] = 1");
        assert_eq!(f("arr[0](1)"), "arr0"); // markdown reads a link to the relative `1`
                                            // Deep nesting must not exhaust a small stack, even unoptimised.
        let deep = format!(
            "{}x{}",
            "[".repeat(150),
            "](https://example.com)".repeat(40)
        );
        let out = std::thread::Builder::new()
            .stack_size(128 * 1024)
            .spawn(move || f(&deep))
            .and_then(|t| t.join().map_err(|_| std::io::Error::other("panicked")));
        assert!(out.is_ok());
    }

    #[test]
    fn removals_do_not_join_into_links() {
        for (text, out) in [
            ("[x]<a>(//evil.com)", "[x] (//evil.com)"),
            ("http:/<a>/evil.com", "http:/ /evil.com"),
            (
                "https://example.com<a>@evil.com",
                "https://example.com @evil.com",
            ),
            ("www<img>.evil.com", "www .evil.com"),
            (
                "<im<a>g src=//evil.com/p.png>",
                "<im g src=//evil.com/p.png>",
            ),
            ("<img<a> src=//evil.com/p.png>", " src=//evil.com/p.png>"),
            ("<javascript:<a>alert(1)>", "<javascript: alert(1)>"),
            ("[h](https://evil.com)ttps://evil.com", "[link removed]"),
            ("<https://evil.com>(//evil.com)", "link removed"),
            ("[1]<a>: //evil.com\n[x][1]", "[1]: [link removed]\n[x][1]"),
            ("[1]: <a href=x>//evil.com", "[1]: [link removed]"),
        ] {
            assert_eq!(clean(text), out, "{text}");
        }
    }

    #[test]
    fn passes_other_text_through() {
        same("héllo 👋 ü\n\n```rust\nlet v = a[0];\nif a < b { x!() }\n```\n\tend");
        same("Hello! What's up? [citation needed] (see below)");
        assert_eq!(f("héllo 👋 [x](https://evil.com) ü"), "héllo 👋 x ü");
        assert_eq!(f("👋https://evil.com/ü👋 ü"), "👋[link removed] ü");
        assert_eq!(
            stream(&["héllo 👋 [x](https://ev", "il.com) ü"]),
            "héllo 👋 x ü"
        );
    }

    /// Small xorshift PRNG, so the splits are random-looking but the same on every run.
    struct Rng(u64);
    impl Rng {
        fn below(&mut self, n: usize) -> usize {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            (self.0 % n as u64) as usize
        }
    }

    const SAMPLES: &[&str] = &[
        "Plain text, nothing to see.",
        "see [docs](https://example.com/a) and [bad](https://evil.com/x) now",
        "![logo](https://example.com/l.png) ![px](https://evil.com/p.png?c=secret) end",
        "go <https://evil.com/a> or <https://example.com> <3 a < b",
        "see https://evil.com. or www.evil.com/x, or https://example.com/ok!",
        "<a href=\"https://evil.com\">click</a> <IMG src=x> <abbr>y</abbr>",
        "[a [b]](https://evil.com) [x](https://evil.com [y] (z) [z]",
        "[1]: https://evil.example\n[2]: //evil.com\n\n![x][2] [Note]: done",
        "héllo 👋 [x](https://evil.com) ü www.ü http://localhost:3000/é",
        "[`]`](//evil.com) [x\\]](//evil.com) ![](javascript:x) **https://evil.com**",
        "[x]<a>(//evil.com) http:/<a>/evil.com <im<a>g src=x> [1]<a>: //evil.com",
        "hhttp wwww www. https:/ <i <im <img <a <h !! ![ ]( ]: [] <",
    ];

    fn check_all_splits(text: &str, rng: &mut Rng) {
        let whole = clean(text);
        let cuts: Vec<usize> = text.char_indices().map(|(i, _)| i).collect();
        for &cut in &cuts {
            let pieces = [&text[..cut], &text[cut..]];
            assert_eq!(stream(&pieces), whole, "{text:?} cut at {cut}");
        }
        for _ in 0..20 {
            let mut marks: Vec<usize> = (0..1 + rng.below(8))
                .map(|_| cuts[rng.below(cuts.len())])
                .collect();
            marks.extend([0, text.len()]);
            marks.sort_unstable();
            let pieces: Vec<&str> = marks.windows(2).map(|w| &text[w[0]..w[1]]).collect();
            assert_eq!(stream(&pieces), whole, "{text:?} as {pieces:?}");
        }
        let chars: Vec<String> = text.chars().map(String::from).collect();
        let chars: Vec<&str> = chars.iter().map(String::as_str).collect();
        assert_eq!(stream(&chars), whole, "{text:?} char by char");
    }

    #[test]
    fn streaming_equals_one_shot() {
        let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
        for text in SAMPLES {
            check_all_splits(text, &mut rng);
        }
        let all = clean(&SAMPLES.concat());
        for leak in ["](//evil", "](https://evil", "https://evil", "<img", "<a "] {
            assert!(!all.contains(leak), "{leak} in {all}");
        }
    }

    #[test]
    fn odd_inputs_stream_alike_and_come_out_clean() {
        let tokens = "[ ] ( ) ! < > https:// www. evil.com example.com é👋 \\ \n : <a> img / a";
        let tokens: Vec<&str> = tokens.split(' ').chain([" "]).collect();
        for a in &tokens {
            for b in &tokens {
                for c in &tokens {
                    let text = [*a, *b, *c].concat();
                    let whole = clean(&text);
                    for (cut, _) in text.char_indices() {
                        let pieces = [&text[..cut], &text[cut..]];
                        assert_eq!(stream(&pieces), whole, "{text:?} cut at {cut}");
                    }
                }
            }
        }
    }

    #[test]
    fn plain_text_is_not_held() {
        let mut filter = LinkFilter::new(hosts());
        let text = "Good morning. Your order is on its way; é 👋 (see above) 1 > 0\n";
        for piece in text.split_inclusive(' ') {
            assert_eq!(filter.push(piece), piece);
        }
        let mut rng = Rng(7);
        let plain: Vec<char> = "abcdefgijk .,;:()\n\té👋ü>".chars().collect();
        for _ in 0..200 {
            let piece: String = (0..rng.below(12))
                .map(|_| plain[rng.below(plain.len())])
                .collect();
            assert_eq!(filter.push(&piece), piece);
        }
        assert_eq!(filter.push("now"), "now"); // a `w` inside a word cannot start `www.`
        assert_eq!(filter.push(" wh"), " w"); // the `h` could begin `http`
        assert_eq!(filter.push("y"), "hy");
        assert_eq!(filter.push(" Wow!"), " Wow"); // `!` may begin an image
        assert_eq!(filter.push(" [x"), "! ");
        assert_eq!(filter.push("](https://evil.com) ok <"), "x ok ");
        assert_eq!(filter.finish(), "<");
    }

    #[test]
    fn held_text_stays_bounded() {
        for start in [
            "[",
            "![x](",
            "](",
            "<a ",
            "<https:",
            "https://example.com/",
            "[1]: //",
        ] {
            let mut filter = LinkFilter::new(hosts());
            let mut out = filter.push(start);
            for _ in 0..10_000 {
                out.push_str(&filter.push("é"));
                assert!(filter.pending.len() <= MAX_PENDING, "{start}");
            }
            out.push_str(&filter.finish());
            assert!(filter.pending.is_empty());
            let whole = f(&format!("{start}{}", "é".repeat(10_000)));
            assert_eq!(out, whole, "{start}");
        }
    }
}
