//! Sentence segmentation of English news text, with byte offsets into the original string.
//!
//! ```
//! use standpoint::label::segment::sentences;
//!
//! let text = "Moscow was hit by sanctions imposed by the U.S. The Kremlin said it would retaliate.";
//! let found: Vec<&str> = sentences(text).iter().map(|s| s.text(text)).collect();
//! assert_eq!(found, ["Moscow was hit by sanctions imposed by the U.S.", "The Kremlin said it would retaliate."]);
//! ```
//!
//! # Why `sentencex`
//!
//! Boundaries come from the [`sentencex`] crate (Wikimedia; abbreviation lists, name initials,
//! quote- and parenthesis-aware rules, sentence-starter overrides), plus the small layer below.
//! Exact cases of the 54 in `tests/fixtures/segmentation-gold.jsonl` when quotes were still kept
//! whole, each splitter fed line by line: UAX #29 (`unicode-segmentation` 1.13) 33, ICU4X
//! `icu_segmenter` 2.4 33, `sentencex` 0.1.33 alone 49, `sentencex` + this layer 54. Not scored: `punkt` 1.0.5 (needs nightly Rust),
//! `srx` 0.1.4 (ships no rules; LanguageTool's `segment.srx` is not packaged).
//!
//! # Rules
//!
//! * **Lines.** Any line break (`\n`, `\r\n`, `\r`, U+2028, …) ends a sentence: headlines,
//!   datelines and bullet items are separate. Each line is segmented on its own.
//! * **Abbreviations** (`U.S.`, `U.K.`, `Gen.`, `Jan.`, `etc.`, `Inc.`, `a.m.`, `approx.`, …) end a
//!   sentence only when the next word is one of `sentencex`'s English sentence starters (`The`,
//!   `But`, `He`, `It`, `They`, …): "by the U.S. The Kremlin said" splits, "the U.S. Senate" and
//!   "8 p.m. Moscow time" do not. `sentencex` applies this rule itself except to `a.m.`/`p.m.`
//!   (it splits before any capitalised word) and `approx.` (unknown to it); this layer adds those.
//! * **Quotes.** A closing quote after the final `.`, `?` or `!` belongs to that sentence. A quoted
//!   passage of several sentences is split into its sentences (`“We agree. We will sign,” he
//!   said.` gives `“We agree.` and `We will sign,” he said.`); the attribution stays with the
//!   sentence it is written in, and [`crate::label::quotes`] gives every sentence of the quote
//!   its speaker.
//! * **Added by this layer:** `…` is read as `...`; a line-initial enumerator (`1.`, `iv.`, `b.`)
//!   stays with its item; a sentence closes after `.)`/`?)`/`!)` when a capital follows.
//!
//! Lines over 16 KiB (or with more than 128 quote marks) are fed to `sentencex` in windows,
//! restarting at the last sentence start found, so time stays linear even on a 5 MB line
//! (`sentencex`'s quote pairing is quadratic in the number of quote marks). Should `sentencex`
//! ever panic on a window, that window yields no boundary instead of the panic propagating.

use std::borrow::Cow;
use std::panic::{AssertUnwindSafe, catch_unwind};

use sentencex::languages::{English, Language};

/// One sentence of a text: a byte range into the text, trimmed of surrounding whitespace.
///
/// ```
/// use standpoint::label::segment::{Span, sentences};
///
/// let text = "  NATO met.  Russia objected. ";
/// assert_eq!(sentences(text), [Span { start: 2, end: 11 }, Span { start: 13, end: 29 }]);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Span {
    /// Byte offset of the sentence's first character.
    pub start: usize,
    /// Byte offset just past the sentence's last character.
    pub end: usize,
}

impl Span {
    /// The sentence's text in `source`, the string it was found in.
    ///
    /// Returns `""` rather than panicking when the span does not fit `source` (a different string).
    ///
    /// ```
    /// use standpoint::label::segment::sentences;
    ///
    /// let text = "Talks failed. Gen. Smith left.";
    /// let spans = sentences(text);
    /// assert_eq!(spans[1].text(text), "Gen. Smith left.");
    /// assert_eq!(spans[1].text("short"), "");
    /// ```
    pub fn text<'a>(&self, source: &'a str) -> &'a str {
        source.get(self.start..self.end).unwrap_or("")
    }
}

/// Splits `text` into sentences, in order.
///
/// Spans never overlap, are never empty, never cover only whitespace, and always lie on char
/// boundaries. A line break always ends a sentence. Empty or whitespace-only input gives no
/// span. Never panics. Same as [`Segmenter::split`] (construction is free).
///
/// ```
/// use standpoint::label::segment::sentences;
///
/// let text = "EU extends sanctions\n\nThe decision by Mr. Michel was unanimous. Hungary abstained.";
/// let found: Vec<&str> = sentences(text).iter().map(|s| s.text(text)).collect();
/// assert_eq!(
///     found,
///     ["EU extends sanctions", "The decision by Mr. Michel was unanimous.", "Hungary abstained."]
/// );
/// assert!(sentences(" \n\t ").is_empty());
/// ```
pub fn sentences(text: &str) -> Vec<Span> {
    Segmenter::new().split(text)
}

/// A sentence segmenter for English news text; see the [module docs](self) for its rules.
///
/// Holds no state: construction is free, and one value can be shared across threads.
///
/// ```
/// use standpoint::label::segment::Segmenter;
///
/// let segmenter = Segmenter::new();
/// let text = "John F. Kennedy spoke in Berlin. \u{201c}Ich bin ein Berliner.\u{201d} The crowd cheered.";
/// let found: Vec<&str> = segmenter.split(text).iter().map(|s| s.text(text)).collect();
/// assert_eq!(
///     found,
///     ["John F. Kennedy spoke in Berlin.", "\u{201c}Ich bin ein Berliner.\u{201d}", "The crowd cheered."]
/// );
/// ```
#[derive(Debug, Clone)]
pub struct Segmenter {
    english: English,
}

impl Default for Segmenter {
    fn default() -> Self {
        Self::new()
    }
}

/// Longest slice of a line handed to `sentencex` at once.
const MAX_WINDOW: usize = 16 * 1024;
/// Most quote marks in one window (`sentencex`'s quote pairing is quadratic in their number).
const MAX_QUOTES: usize = 128;
/// How far back a window restarts when it found no boundary, so one at its very end is not missed.
const OVERLAP: usize = 256;
/// Abbreviations after which a sentence ends only before a sentence-starter word; `sentencex`
/// handles the rest of its list that way already (compared lowercased).
const END_ONLY_BEFORE_STARTER: [&str; 3] = ["a.m.", "p.m.", "approx."];

impl Segmenter {
    /// A segmenter. Free: the rules are compiled once per process, on first use.
    ///
    /// ```
    /// use standpoint::label::segment::Segmenter;
    ///
    /// let text = "Talks began at 9 a.m. and ended at 6 p.m. The statement came later.";
    /// assert_eq!(Segmenter::new().split(text).len(), 2);
    /// ```
    pub fn new() -> Self {
        Segmenter {
            english: English {},
        }
    }

    /// Splits `text` into sentences; see [`sentences`] for the guarantees.
    ///
    /// ```
    /// use standpoint::label::segment::{Segmenter, Span};
    ///
    /// let text = "Turkey abstained (as expected).\r\nHungary voted against.";
    /// let spans = Segmenter::default().split(text);
    /// assert_eq!(spans, [Span { start: 0, end: 31 }, Span { start: 33, end: 55 }]);
    /// ```
    pub fn split(&self, text: &str) -> Vec<Span> {
        let mut spans = Vec::new();
        // A byte loop rather than `str::split`: this runs over every byte, in debug builds too.
        let bytes = text.as_bytes();
        let (mut start, mut i) = (0, 0);
        while i < bytes.len() {
            match line_break_at(text, i) {
                Some(c) => {
                    self.split_line(&text[start..i], start, &mut spans);
                    i += c.len_utf8();
                    start = i;
                }
                None => i += 1,
            }
        }
        self.split_line(&text[start..], start, &mut spans);
        spans
    }

    /// Appends the sentences of one line (no line break inside) found at `offset` of the text.
    fn split_line(&self, line: &str, offset: usize, spans: &mut Vec<Span>) {
        if line.trim().is_empty() {
            return;
        }
        let mut cuts = self.crate_cuts(line);
        cuts.extend(parenthesis_cuts(line));
        cuts.sort_unstable();
        cuts.dedup();
        let mut cuts = self.merge_cuts(line, &cuts);
        cuts.extend(self.quote_cuts(line));
        cuts.sort_unstable();
        cuts.dedup();

        let mut start = 0;
        for end in cuts.into_iter().chain([line.len()]) {
            let piece = &line[start..end];
            let body = piece.trim_start();
            let first = start + (piece.len() - body.len());
            let last = first + body.trim_end().len();
            if last > first {
                spans.push(Span {
                    start: offset + first,
                    end: offset + last,
                });
            }
            start = end;
        }
    }

    /// `sentencex`'s boundaries in `line`: sorted byte offsets strictly inside it, each where a
    /// sentence (with its trailing whitespace) ends. Long lines go through in windows.
    fn crate_cuts(&self, line: &str) -> Vec<usize> {
        let mut cuts: Vec<usize> = Vec::new();
        let mut pos = 0;
        while pos < line.len() {
            let end = window_end(line, pos);
            let found = self.window_cuts(&line[pos..end]);
            for cut in &found {
                if cuts.last().is_none_or(|&last| pos + cut > last) {
                    cuts.push(pos + cut);
                }
            }
            if end == line.len() {
                break;
            }
            // Boundaries are trusted up to the last one; what follows it may continue past the
            // window, so the next window starts there, unless that would advance too little.
            let len = end - pos;
            pos = match found.last() {
                Some(&cut) if cut >= len / 2 => pos + cut,
                _ => restart_point(line, pos, end),
            };
        }
        cuts
    }

    /// `sentencex`'s boundaries inside one window, as offsets in `(0, window.len())`.
    fn window_cuts(&self, window: &str) -> Vec<usize> {
        // `…` and `...` are both 3 bytes, so offsets are unchanged.
        let text: Cow<'_, str> = if window.contains('…') {
            Cow::Owned(window.replace('…', "..."))
        } else {
            Cow::Borrowed(window)
        };
        let ends = catch_unwind(AssertUnwindSafe(|| {
            self.english
                .get_sentence_boundaries(&text)
                .iter()
                .map(|b| b.end_byte)
                .collect::<Vec<_>>()
        }))
        .unwrap_or_default();
        let mut cuts = Vec::with_capacity(ends.len());
        for end in ends {
            if end > cuts.last().copied().unwrap_or(0)
                && end < window.len()
                && window.is_char_boundary(end)
            {
                cuts.push(end);
            }
        }
        cuts
    }

    /// Cuts between the sentences of each quoted passage of `line`: `sentencex` keeps a
    /// quote of several sentences as one, so its inner text is split on its own.
    fn quote_cuts(&self, line: &str) -> Vec<usize> {
        let mut cuts = Vec::new();
        for (open, close) in quote_regions(line) {
            let inner = &line[open..close];
            if inner.len() > MAX_WINDOW {
                continue;
            }
            let found = self.merge_cuts(inner, &self.window_cuts(inner));
            cuts.extend(found.into_iter().map(|cut| open + cut));
        }
        cuts
    }

    /// Drops the cuts that end a sentence on a line-initial enumerator, or on an abbreviation of
    /// [`END_ONLY_BEFORE_STARTER`] not followed by a sentence starter.
    fn merge_cuts(&self, line: &str, cuts: &[usize]) -> Vec<usize> {
        let mut kept: Vec<usize> = Vec::with_capacity(cuts.len());
        for &cut in cuts {
            let previous = kept.last().copied().unwrap_or(0);
            let before = line[previous..cut].trim();
            let list_marker = previous == 0 && is_enumerator(before);
            let last_word = before.rsplit(char::is_whitespace).next().unwrap_or("");
            let weak_end = END_ONLY_BEFORE_STARTER
                .iter()
                .any(|a| a.eq_ignore_ascii_case(last_word))
                && !self
                    .english
                    .next_word_is_sentence_starter(prefix(&line[cut..], 64));
            if !list_marker && !weak_end {
                kept.push(cut);
            }
        }
        kept
    }
}

/// Cuts after a closing parenthesis that ends a sentence (`.)`, `?)`, `!)`, maybe with a quote
/// mark between) when the next word starts with a capital: "(It was postponed.) They met."
fn parenthesis_cuts(line: &str) -> impl Iterator<Item = usize> + '_ {
    line.match_indices(')').filter_map(move |(at, _)| {
        let before = line[..at].trim_end_matches(is_quote_mark);
        let after = &line[at + 1..];
        let next = after.trim_start();
        let ends_sentence = before.ends_with(['.', '?', '!'])
            && next.len() < after.len()
            && next.chars().next().is_some_and(char::is_uppercase);
        ends_sentence.then_some(at + 1)
    })
}

/// The quoted passages of `line`, as byte ranges of their inner text (marks excluded): curly
/// `“…”`, low `„…“`, guillemets `«…»` and straight `"…"` pairs. A quote still open at the end
/// of the line runs to its end (news quotes of several paragraphs close only in the last).
/// Single marks (`‘…’`, `'`) are left alone: they are apostrophes too often.
pub(crate) fn quote_regions(line: &str) -> Vec<(usize, usize)> {
    let mut regions = Vec::new();
    let mut open: Option<(usize, char)> = None;
    for (at, c) in line.char_indices() {
        match open {
            None => {
                let closer = match c {
                    '“' => '”',
                    '„' => '“',
                    '«' => '»',
                    '"' => '"',
                    _ => continue,
                };
                open = Some((at + c.len_utf8(), closer));
            }
            Some((start, closer)) if c == closer || (closer == '“' && c == '”') => {
                regions.push((start, at));
                open = None;
            }
            Some(_) => {}
        }
    }
    if let Some((start, _)) = open {
        regions.push((start, line.len()));
    }
    regions.retain(|(start, end)| end > start);
    regions
}

/// Whether `word` is a list enumerator such as `1.`, `12)`, `iv.` or `b.`.
fn is_enumerator(word: &str) -> bool {
    let Some(body) = word.strip_suffix(['.', ')']) else {
        return false;
    };
    let digits = !body.is_empty() && body.len() <= 3 && body.bytes().all(|b| b.is_ascii_digit());
    let roman = !body.is_empty() && body.len() <= 4 && body.bytes().all(|b| b"ivx".contains(&b));
    let letter = body.len() == 1 && body.bytes().all(|b| b.is_ascii_lowercase());
    digits || roman || letter
}

/// End of the window that starts at `pos`: at most [`MAX_WINDOW`] bytes and [`MAX_QUOTES`] quote
/// marks, cut at whitespace when one is in its second half; always past `pos`, on a char boundary.
fn window_end(line: &str, pos: usize) -> usize {
    let mut limit = (pos + MAX_WINDOW).min(line.len());
    while !line.is_char_boundary(limit) {
        limit -= 1;
    }
    let mut quotes = 0;
    for i in pos..limit {
        if quote_mark_at(line, i) {
            quotes += 1;
            if quotes > MAX_QUOTES {
                limit = i;
                break;
            }
        }
    }
    if limit == line.len() {
        return limit;
    }
    let bytes = line.as_bytes();
    let half = pos + (limit - pos) / 2;
    (half + 1..limit)
        .rev()
        .find(|&i| matches!(bytes[i], b' ' | b'\t'))
        .unwrap_or(limit)
}

/// Where the next window starts after `[pos, end)` found no usable boundary: [`OVERLAP`] bytes
/// before `end` (at a word start when possible), but at least half-way through the window.
fn restart_point(line: &str, pos: usize, end: usize) -> usize {
    let at = end.saturating_sub(OVERLAP).max(pos + (end - pos) / 2);
    let bytes = line.as_bytes();
    let at = (at..end)
        .find(|&i| matches!(bytes[i], b' ' | b'\t'))
        .unwrap_or(end);
    // Always advance, by one char at least.
    at.max(pos + line[pos..].chars().next().map_or(1, char::len_utf8))
}

/// The line break starting at byte `i` of `text`, if one does. The `match` on the byte is a
/// cheap pre-filter (ASCII and lead bytes are always char boundaries).
fn line_break_at(text: &str, i: usize) -> Option<char> {
    match text.as_bytes().get(i)? {
        b'\n' | b'\r' | 0x0b | 0x0c | 0xc2 | 0xe2 => {
            text.get(i..)?.chars().next().filter(|&c| is_line_break(c))
        }
        _ => None,
    }
}

/// Whether a quote mark starts at byte `i` of `text` (pre-filtered like [`line_break_at`]).
fn quote_mark_at(text: &str, i: usize) -> bool {
    match text.as_bytes().get(i) {
        Some(b'"' | b'\'' | b'`' | 0xc2 | 0xe2 | 0xe3) => text
            .get(i..)
            .and_then(|rest| rest.chars().next())
            .is_some_and(is_quote_mark),
        _ => false,
    }
}

/// At most `max` bytes from the start of `text`, cut on a char boundary.
fn prefix(text: &str, max: usize) -> &str {
    let mut end = max.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// Line terminators of Unicode (UAX #14 mandatory breaks).
fn is_line_break(c: char) -> bool {
    matches!(
        c,
        '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' | '\u{2028}' | '\u{2029}'
    )
}

/// Characters `sentencex` may pair as quotation marks.
fn is_quote_mark(c: char) -> bool {
    matches!(
        c,
        '"' | '\'' | '`' | '«' | '»' | '‹' | '›' | '《' | '》' | '「' | '」'
    ) || ('\u{2018}'..='\u{201F}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn windows_find_the_same_boundaries_as_one_pass() {
        let pool = [
            "Sanctions imposed by the U.S. hit Gazprom Inc. hard, Mr. Smith said.",
            "The Kremlin said it would respond by Jan. 15 at 10 a.m. Moscow time.",
            "\u{201c}We will not back down. Never,\u{201d} the minister told reporters.",
            "Ukraine\u{2019}s economy grew 3.5 percent (officials expected less.) The IMF agreed.",
            "Did NATO really say \"no\"? Diplomats were unsure... Talks went on.",
            "John F. Kennedy and J. R. R. Tolkien never met, the U.N. envoy said.",
        ];
        let mut state = 7u64;
        let mut line = String::new();
        while line.len() < 60_000 {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1);
            line.push_str(pool[(state >> 33) as usize % pool.len()]);
            line.push(' ');
        }
        let segmenter = Segmenter::new();
        let windowed = segmenter.crate_cuts(&line);
        let one_pass = segmenter.window_cuts(&line);
        assert!(windowed.len() > 1000);
        assert_eq!(windowed, one_pass);
    }

    #[test]
    fn enumerators() {
        for yes in ["1.", "12)", "iv.", "b.", "x)"] {
            assert!(is_enumerator(yes), "{yes}");
        }
        for no in ["No.", "U.S.", "1234.", "A.", "", ".", "ab.", "1"] {
            assert!(!is_enumerator(no), "{no}");
        }
    }
}
