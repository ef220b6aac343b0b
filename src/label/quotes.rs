//! Who is speaking: the speaker of each sentence of a news text, from its quotes and
//! reported speech.
//!
//! ```
//! use standpoint::label::quotes::speakers;
//! use standpoint::label::segment::sentences;
//!
//! let text = "Deputy Foreign Minister Alexander Grushko spoke to reporters on Monday. \
//!             \u{201c}Cooperation has completely ended. NATO refused it,\u{201d} he said.";
//! let spans = sentences(text);
//! let found = speakers(text, &spans);
//! assert_eq!(spans.len(), 3);
//! assert_eq!(found[1].as_ref().unwrap().name.as_deref(), Some("Alexander Grushko"));
//! assert_eq!(found[2].as_ref().unwrap().attribution.text(text), "he said");
//! ```
//!
//! # Rules
//!
//! * **Quotes** are the passages [`crate::label::segment`] recognises (`“…”`, `„…“`, `«…»`,
//!   `"…"`); a quote left open at the end of a paragraph continues when the next paragraph opens
//!   with a quote mark (the wire convention for quotes of several paragraphs).
//! * **Attribution** is looked for right after the quote (`,” he said`, `,” said Grushko`,
//!   `,” the deputy minister told reporters`, `,” according to the ministry`), then right before
//!   it (`Grushko said: “…`, `According to the envoy, “…`, `… he said. “…`), then in the
//!   paragraphs the quote runs across. Every sentence of the quote gets that speaker.
//! * **Reported speech** outside quotes: a sentence that opens with (or ends with) a speaker and
//!   a speech verb (`Grushko said cooperation had ended.`, `…, the ministry said.`) gets that
//!   speaker.
//! * **Names.** A named speaker loses leading titles (`Deputy Foreign Minister Alexander
//!   Grushko` → `Alexander Grushko`, `Turkish Foreign Minister Hakan Fidan` → `Hakan Fidan`); a later mention of the same surname is the same speaker.
//!   A descriptive speaker (`the deputy foreign minister`) is kept as written.
//! * **Pronouns** resolve to the last speaker before them in the document that they can stand
//!   for: `he`/`she` a named speaker or a person (`the deputy minister`), `it`/`they` a named
//!   speaker or a body (`the ministry`, `diplomats`). When the two last such speakers differ and
//!   were both named in the same paragraph (the reader cannot tell which), or there is none,
//!   `name` is `None` and the attribution is still given.
//! * A sentence with a quote whose attribution is not found falls back to reported speech
//!   (`Russia's deputy foreign minister said that cooperation "has completely ended."`).

use std::sync::LazyLock;

use regex::Regex;

use super::segment::{Span, quote_regions};

/// Who speaks in a sentence, and the words that say so.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Speaker {
    /// The speaker, as named in the text (a pronoun resolved to a name), or `None` for a
    /// pronoun that could not be resolved.
    pub name: Option<String>,
    /// Byte range of the attribution in the text (`he said`, `according to the envoy`).
    pub attribution: Span,
}

const VERBS: &str = "said|says|told|tells|added|adds|stated|noted|stressed|pointed out|warned|\
     declared|insisted|argued|explained|asserted|announced|claimed|wrote|tweeted|replied|\
     remarked|emphasi[sz]ed|underlined|continued|concluded|acknowledged|admitted|recalled|\
     urged|asked|complained|charged|accused|criticised|criticized|vowed|promised|suggested|observed|commented|spoke";
/// An adverb between a speaker and the verb: `he also said`, `Fidan later told`.
const ADVERB: &str =
    r"(?:\s+(?:also|later|then|again|further|repeatedly|previously|separately|earlier|once))?";
const PRONOUNS: &str = "he|she|they|it|He|She|They|It";
/// A capitalised name of up to six words (titles included, stripped later).
const NAME: &str = r"(?:(?:Mr|Mrs|Ms|Dr|Gen|Sen|Lt|Col)\.\s+)?(?:[A-Z]\.|[A-Z][\p{L}'’\-]*)(?:\s+(?:(?:de|van|von|bin|al|der|la)\s+)?(?:[A-Z]\.|[A-Z][\p{L}'’\-]*)){0,5}";
/// A descriptive speaker: `the deputy foreign minister`, `a senior official`, `Russia's envoy`,
/// `one former diplomat`.
const DESCRIPTION: &str = r"(?:(?:[Tt]he|[Aa]n?|[Hh]is|[Hh]er|[Ii]ts|[Tt]heir|[Oo]ne|[Aa]nother|[Ss]everal|[Ss]ome|[Mm]any|[Tt]wo|[Tt]hree|[A-Z][\p{L}]*['’]s)\s+(?:[\p{L}.\-]+\s+){0,5}?(?i:minister|ministry|spokes(?:man|woman|person)|officials?|president|ambassador|envoy|secretary|chief|leaders?|diplomats?|sources?|statement|embassy|government|chancellor|premier|general|commander|advis[eo]r|aide|negotiator|representative|kremlin|white house|mission|office|delegation))";

fn speaker_pattern() -> String {
    format!(r"(?:{PRONOUNS}|{DESCRIPTION}|{NAME})")
}

/// After a quote closes: `, he said` / `, said Grushko` / `, according to the envoy`.
static AFTER: LazyLock<Regex> = LazyLock::new(|| {
    let s = speaker_pattern();
    Regex::new(&format!(
        r"^[\s,.;:!?—–\-]*(?:(?P<a>(?P<s1>{s})(?:,[^,]{{1,80}},)?{ADVERB}\s+(?:{VERBS})\b)|(?P<b>(?:{VERBS})\s+(?P<s2>{s}))|(?P<c>according to (?P<s3>{s})))"
    ))
    .expect("valid pattern")
});

/// Before a quote opens: `Grushko said: ` / `According to the envoy, ` / `he said. `.
static BEFORE: LazyLock<Regex> = LazyLock::new(|| {
    let s = speaker_pattern();
    Regex::new(&format!(
        r"(?:(?P<a>(?P<s1>{s})(?:,[^,]{{1,80}},)?{ADVERB}\s+(?:{VERBS})\b)(?:\s+[\p{{L}}\-]+){{0,3}}?|(?P<c>[Aa]ccording to (?P<s3>{s})))\s*(?:that\s*)?[:,.]?\s*$"
    ))
    .expect("valid pattern")
});

/// Reported speech opening a sentence: `Grushko said ...`, `On Monday, the ministry said ...`.
static OPENING: LazyLock<Regex> = LazyLock::new(|| {
    let s = speaker_pattern();
    Regex::new(&format!(
        r"^(?:[^–—“”«»]{{0,60}}\s[-–—]\s+)?(?:[^,“”«»]{{0,40}},\s*)?(?P<a>(?P<s1>{s})(?:,[^,]{{1,80}},)?{ADVERB}\s+(?:{VERBS})\b)"
    ))
    .expect("valid pattern")
});

/// Reported speech closing a sentence: `..., the ministry said.`, `..., said Grushko.`.
static CLOSING: LazyLock<Regex> = LazyLock::new(|| {
    let s = speaker_pattern();
    Regex::new(&format!(
        r",\s*(?:(?P<a>(?P<s1>{s}){ADVERB}\s+(?:{VERBS}))|(?P<b>(?:{VERBS})\s+(?P<s2>{s})))\s*[.!?]?$"
    ))
    .expect("valid pattern")
});

const TITLES: [&str; 24] = [
    "President",
    "Prime",
    "Minister",
    "Foreign",
    "Deputy",
    "Defence",
    "Defense",
    "Secretary",
    "General",
    "Chancellor",
    "Spokesman",
    "Spokeswoman",
    "Ambassador",
    "Envoy",
    "Mr.",
    "Mrs.",
    "Ms.",
    "Dr.",
    "Gen.",
    "Sen.",
    "Senator",
    "Vice",
    "Chief",
    "State",
];

/// Words that start a sentence with a capital but never name a speaker.
const NOT_NAMES: [&str; 8] = ["The", "A", "An", "This", "That", "These", "Those", "There"];

/// A speaker as found, before pronouns are resolved.
#[derive(Debug, Clone)]
struct Found {
    phrase: String,
    attribution: Span,
}

fn found(captures: &regex::Captures<'_>, offset: usize) -> Option<Found> {
    let whole = ["a", "b", "c"].iter().find_map(|g| captures.name(g))?;
    let phrase = ["s1", "s2", "s3"].iter().find_map(|g| captures.name(g))?;
    let text = phrase.as_str().trim();
    if NOT_NAMES.contains(&text) {
        return None;
    }
    Some(Found {
        phrase: text.to_string(),
        attribution: Span {
            start: offset + whole.start(),
            end: offset + whole.end(),
        },
    })
}

fn is_pronoun(phrase: &str) -> bool {
    PRONOUNS.split('|').any(|p| p == phrase)
}

/// Whether a phrase names someone (capitalised, not a description or a pronoun).
fn is_named(phrase: &str) -> bool {
    !is_pronoun(phrase)
        && phrase.starts_with(char::is_uppercase)
        && !phrase.contains(['\'', '’'])
        && !phrase
            .split_whitespace()
            .next()
            .is_some_and(|w| ["The", "A", "An", "His", "Her", "Its", "Their"].contains(&w))
}

/// A name without the titles before it: `Turkish Foreign Minister Hakan Fidan` → `Hakan
/// Fidan` (what follows the last title word; a name that ends in a title is kept whole).
fn strip_titles(name: &str) -> &str {
    let words: Vec<(usize, &str)> = name
        .split_whitespace()
        .map(|w| (w.as_ptr() as usize - name.as_ptr() as usize, w))
        .collect();
    match words.iter().rposition(|(_, w)| TITLES.contains(w)) {
        Some(last) if last + 1 < words.len() => &name[words[last + 1].0..],
        _ => name,
    }
}

/// The speaker of every sentence in `spans` (the sentences of `text`, in order), or `None`
/// where the sentence is neither quoted nor reported speech.
///
/// ```
/// use standpoint::label::quotes::speakers;
/// use standpoint::label::segment::sentences;
///
/// let text = "\u{201c}We are ready to talk,\u{201d} said Sergei Lavrov. Markets rose.";
/// let spans = sentences(text);
/// let found = speakers(text, &spans);
/// assert_eq!(found[0].as_ref().unwrap().name.as_deref(), Some("Sergei Lavrov"));
/// assert_eq!(found[1], None);
/// ```
pub fn speakers(text: &str, spans: &[Span]) -> Vec<Option<Speaker>> {
    let lines = lines(text);
    let quotes = quotes(text, &lines);
    // Per sentence, the raw speaker: from a quote overlapping it, else reported speech.
    let mut raw: Vec<Option<Found>> = Vec::with_capacity(spans.len());
    for span in spans {
        let quoted = quotes
            .iter()
            .find(|q| q.regions.iter().any(|r| r.0 < span.end && r.1 > span.start));
        let speaker = quoted
            .and_then(|q| q.speaker.clone())
            .or_else(|| reported(text, *span));
        raw.push(speaker);
    }
    resolve(&lines, raw)
}

/// Byte ranges of the lines (paragraphs) of `text`.
fn lines(text: &str) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut start = 0;
    for (at, c) in text.char_indices() {
        if matches!(c, '\n' | '\r' | '\u{2028}' | '\u{2029}') {
            out.push((start, at));
            start = at + c.len_utf8();
        }
    }
    out.push((start, text.len()));
    out
}

/// One quote: its regions (inner text, one per paragraph it runs across) and its speaker.
struct Quote {
    regions: Vec<(usize, usize)>,
    speaker: Option<Found>,
}

fn quotes(text: &str, lines: &[(usize, usize)]) -> Vec<Quote> {
    let mut out: Vec<Quote> = Vec::new();
    // Whether the last quote of the previous non-empty paragraph was left open.
    let mut open_from_before = false;
    let mut previous_line: Option<(usize, &str)> = None;
    for &(start, end) in lines {
        let line = &text[start..end];
        if line.trim().is_empty() {
            continue;
        }
        let regions = quote_regions(line);
        let first_opens_line = regions
            .first()
            .is_some_and(|&(open, _)| line[..open].trim_start().chars().count() == 1);
        for (k, &(open, close)) in regions.iter().enumerate() {
            let region = (start + open, start + close);
            // Between the previous quote's closing mark and this one's opening mark.
            let previous_end = regions
                .get(k.wrapping_sub(1))
                .map_or(0, |r| after_mark(line, r.1));
            let opening_mark = line[..open].chars().next_back().map_or(0, char::len_utf8);
            let before = line.get(previous_end..open - opening_mark).unwrap_or("");
            let after_start = after_mark(line, close);
            let after_end = regions.get(k + 1).map_or(line.len(), |r| r.0);
            let after = line.get(after_start..after_end).unwrap_or("");
            let introduced = || {
                BEFORE
                    .captures(before)
                    .and_then(|c| found(&c, start + previous_end))
            };
            // An attribution after the quote, unless it introduces the next one (`He added:`)
            // or this quote was introduced with a colon (`Wang Yi said: “...`).
            // A quote that ends its sentence with a full stop is not attributed by the capitalised
            // sentence after it (`“... look.” Several officials warned ...`).
            let ends_sentence = line
                .get(open..close)
                .is_some_and(|q| q.trim_end().ends_with('.'))
                && after
                    .trim_start()
                    .chars()
                    .next()
                    .is_some_and(char::is_uppercase);
            let after_speaker = AFTER
                .captures(after)
                .filter(|_| !ends_sentence)
                .and_then(|c| {
                    let end = c.get(0).map_or(0, |m| m.end());
                    let introduces_next = after[end..].trim_start().starts_with(':');
                    (!introduces_next)
                        .then(|| found(&c, start + after_start))
                        .flatten()
                });
            let speaker = if before.trim_end().ends_with(':') {
                introduced().or(after_speaker)
            } else {
                after_speaker.or_else(introduced)
            }
            .or_else(|| {
                // `Peskov told reporters:` closing the paragraph before the quote.
                let (at, previous) = previous_line?;
                let introduces =
                    k == 0 && before.trim().is_empty() && previous.trim_end().ends_with(':');
                introduces
                    .then(|| BEFORE.captures(previous.trim_end()))
                    .flatten()
                    .and_then(|c| found(&c, at))
            });
            let continues = k == 0 && open_from_before && first_opens_line;
            match out.last_mut() {
                Some(quote) if continues => {
                    quote.regions.push(region);
                    if quote.speaker.is_none() {
                        quote.speaker = speaker;
                    }
                }
                _ => out.push(Quote {
                    regions: vec![region],
                    speaker,
                }),
            }
        }
        open_from_before = regions
            .last()
            .is_some_and(|&(_, close)| close == line.len());
        previous_line = Some((start, line));
    }
    // A quote across paragraphs attributed in a later paragraph than its first: already
    // merged above. Quotes of one line with no attribution take the speaker of the quote just
    // before on the same line (`“A,” he said. “B.”` is handled by BEFORE; this covers `“A.”
    // “B,” he said.`).
    for k in (0..out.len().saturating_sub(1)).rev() {
        if out[k].speaker.is_none() {
            let (this_end, next_start) = (out[k].regions[0].1, out[k + 1].regions[0].0);
            let between = text.get(this_end..next_start).unwrap_or("");
            if between.chars().filter(|c| c.is_alphanumeric()).count() == 0
                && !between.contains('\n')
            {
                out[k].speaker = out[k + 1].speaker.clone();
            }
        }
    }
    out
}

/// The byte just past the closing mark at `close` (or `close` itself at the end of the line).
fn after_mark(line: &str, close: usize) -> usize {
    close + line[close..].chars().next().map_or(0, char::len_utf8)
}

/// The speaker of a sentence that reports speech without quoting it.
fn reported(text: &str, span: Span) -> Option<Found> {
    let sentence = span.text(text);
    OPENING
        .captures(sentence)
        .and_then(|c| found(&c, span.start))
        .or_else(|| {
            CLOSING
                .captures(sentence)
                .and_then(|c| found(&c, span.start))
        })
}

/// Names the speakers: titles stripped, later surnames mapped to the full name, pronouns
/// resolved (or not) to the last named speaker.
fn resolve(lines: &[(usize, usize)], raw: Vec<Option<Found>>) -> Vec<Option<Speaker>> {
    let paragraph = |at: usize| lines.iter().position(|&(_, end)| at <= end).unwrap_or(0);
    // (name, paragraph, kind) of every speaker so far that a pronoun may stand for, in order.
    let mut known: Vec<(String, usize, Kind)> = Vec::new();
    let mut out = Vec::with_capacity(raw.len());
    for found in raw {
        let Some(found) = found else {
            out.push(None);
            continue;
        };
        let phrase = found.phrase.as_str();
        let at = paragraph(found.attribution.start);
        let name = if is_pronoun(phrase) {
            let person = matches!(phrase, "he" | "she" | "He" | "She");
            let fits: Vec<&(String, usize, Kind)> = known
                .iter()
                .filter(|(_, _, kind)| match kind {
                    Kind::Named => true,
                    Kind::Person => person,
                    Kind::Group => !person,
                })
                .collect();
            match fits.as_slice() {
                [] => None,
                [.., b, a] if a.0 != b.0 && a.1 == b.1 => None,
                [.., a] => Some(a.0.clone()),
            }
        } else {
            let (name, kind) = if is_named(phrase) {
                let name = strip_titles(phrase);
                let surname = name.rsplit(' ').next().unwrap_or(name);
                let full = known
                    .iter()
                    .rev()
                    .filter(|(_, _, kind)| *kind == Kind::Named)
                    .find(|(k, _, _)| k == name || k.rsplit(' ').next() == Some(surname))
                    .map_or_else(|| name.to_string(), |(k, _, _)| k.clone());
                (full, Kind::Named)
            } else {
                (phrase.to_string(), description_kind(phrase))
            };
            let entry = (name.clone(), at, kind);
            if known.last() != Some(&entry) {
                known.push(entry);
            }
            Some(name)
        };
        out.push(Some(Speaker {
            name,
            attribution: found.attribution,
        }));
    }
    out
}

/// What a speaker phrase can be referred back to with: a name by any pronoun, a person by `he`
/// or `she`, a body or a group by `it` or `they`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Named,
    Person,
    Group,
}

fn description_kind(phrase: &str) -> Kind {
    const GROUPS: [&str; 14] = [
        "ministry",
        "statement",
        "embassy",
        "government",
        "kremlin",
        "house",
        "mission",
        "office",
        "delegation",
        "source",
        "sources",
        "officials",
        "leaders",
        "diplomats",
    ];
    let last = phrase.rsplit(' ').next().unwrap_or(phrase).to_lowercase();
    if GROUPS.contains(&last.as_str()) {
        Kind::Group
    } else {
        Kind::Person
    }
}
