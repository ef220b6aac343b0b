//! Actors and where sentences mention them.
//!
//! An [`Actor`] is a name (what output rows and the stance model see as the target) and a
//! list of aliases: NATO is written "NATO", "the alliance" or "North Atlantic Treaty
//! Organization"; Russia is "Russia", "Moscow", "the Kremlin". An [`ActorSet`] compiles the
//! aliases once and finds every [`Mention`] in a sentence, as byte offsets.
//!
//! ```
//! # fn main() -> standpoint::Result<()> {
//! use standpoint::label::actors::{Actor, ActorSet};
//!
//! let actors = ActorSet::new(vec![
//!     Actor::new("NATO", ["the alliance", "North Atlantic Treaty Organization"]),
//!     Actor::new("Russia", ["Moscow", "the Kremlin", "Russian government"]),
//! ])?;
//! let sentence = "The Kremlin said NATO's expansion worries Russian officials.";
//! let found: Vec<&str> = actors.find(sentence).iter().map(|m| &sentence[m.start..m.end]).collect();
//! assert_eq!(found, ["The Kremlin", "NATO"]);
//!
//! // One row per (sentence, actor): the first mention of each actor, in actor order.
//! let rows: Vec<&str> = actors
//!     .mentioned(sentence)
//!     .iter()
//!     .map(|(actor, _)| actors.actors()[*actor].name.as_str())
//!     .collect();
//! assert_eq!(rows, ["NATO", "Russia"]);
//! # Ok(()) }
//! ```
//!
//! # Matching rules
//!
//! - **Whole words.** A *word character* is a letter or digit (`char::is_alphanumeric`, so
//!   accented and non-Latin letters count) or a combining mark. When an alias begins with a
//!   word character, the character before the match must not be one; when it ends with a word
//!   character, the character after the match must not be one. So "Russia" does not match
//!   inside "Russian" or "Belorussia", and "NATO" does not match "NATOs" (add "Russian" or
//!   "NATOs" as aliases if they should count). Hyphens and other punctuation separate words:
//!   "pro-Russia" and "Kremlin-backed" are mentions.
//! - **Possessives.** Apostrophes are not word characters, so "NATO's", "Russia’s" (curly)
//!   and "the United States'" match; the mention ends where the alias ends, before the apostrophe.
//!   Inside an alias, a straight `'`, a curly `’` and a modifier `ʼ` are the same character.
//! - **Case.** An alias whose letters are all capitals, with at least two letters (an
//!   acronym: "NATO", "EU", "OSCE", "U.S."), matches only as written, so the pronoun "us"
//!   never matches the actor "US". Every other alias matches regardless of case: "the
//!   Kremlin" matches "The Kremlin" at the start of a sentence and "Moscow" matches "MOSCOW"
//!   in a dateline. Case folding is per character (simple lowercase mapping).
//! - **Trailing punctuation.** An alias that ends in punctuation, like "U.S.", places no
//!   condition on what follows it, so "sanctions by the U.S." (the sentence's full stop being
//!   the abbreviation's) matches, and so does the start of "U.S.-led" or "U.S.A.". The dots
//!   must be written: "U.S." does not match "US" or "U.S".
//! - **Whitespace.** A space in an alias matches any run of whitespace in the text
//!   ("the  Kremlin", "the\nKremlin", no-break spaces). Names and aliases are trimmed and
//!   their inner whitespace runs collapsed to one space when the set is built.
//! - **Leftmost, then longest; no overlap.** The text is scanned from the start; at the
//!   first position where some alias matches, the longest match is taken, and scanning
//!   resumes after it. With actors "European Union" and "Union", "the European Union said"
//!   has one mention, of "European Union"; with "Russian government" (Russia) and
//!   "government" (another actor), "the Russian government" mentions only Russia.
//!
//! Aliases are indexed by their first (case-folded) character and only positions where a
//! word may begin are tried, so the time taken grows linearly with the sentence, times the
//! few aliases that share a first character. Matching never fails and never panics.
//!
//! # Files
//!
//! [`ActorSet::from_file`] reads JSON, in either of two forms:
//!
//! ```json
//! [{"name": "NATO", "aliases": ["the alliance"]}, {"name": "Russia", "aliases": ["Moscow"]}]
//! ```
//!
//! ```json
//! {"NATO": ["the alliance"], "Russia": ["Moscow"]}
//! ```
//!
//! or plain text, one actor per line, `NAME: ALIAS | ALIAS | ...` (a line holding only
//! `NAME` is an actor whose one alias is its name), with blank lines and lines starting with
//! `#` ignored (a `#` elsewhere is part of the text). The name ends at the first `:`, so
//! it cannot hold one; use JSON for such names.
//!
//! ```text
//! # actors for the diplomatic-news example
//! NATO: NATO | the alliance | North Atlantic Treaty Organization
//! Russia: Moscow | the Kremlin
//! ```
//!
//! Both JSON forms keep the file's order of actors, which is the order of
//! [`ActorSet::mentioned`] and so of output rows.

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One actor: the name used in output rows (and as the model's target), and its aliases.
///
/// The name is always an alias too: [`ActorSet::new`] adds it when the list lacks it.
///
/// ```
/// use standpoint::label::actors::Actor;
///
/// let nato = Actor::new("NATO", ["the alliance"]);
/// assert_eq!(nato.name, "NATO");
/// assert_eq!(nato.aliases, ["the alliance"]);
///
/// let russia: Actor = serde_json::from_str(r#"{"name": "Russia", "aliases": ["Moscow"]}"#).unwrap();
/// assert_eq!(russia.aliases, ["Moscow"]);
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Actor {
    /// The name used in output rows and as the stance model's target.
    pub name: String,
    /// Ways the actor is written in text (the name included, or added when the set is built).
    #[serde(default)]
    pub aliases: Vec<String>,
}

impl Actor {
    /// An actor with a name and aliases.
    ///
    /// ```
    /// use standpoint::label::actors::Actor;
    /// let eu = Actor::new("European Union", ["EU", "Brussels"]);
    /// assert_eq!(eu.aliases.len(), 2);
    /// ```
    pub fn new<S: Into<String>>(
        name: impl Into<String>,
        aliases: impl IntoIterator<Item = S>,
    ) -> Self {
        Actor {
            name: name.into(),
            aliases: aliases.into_iter().map(Into::into).collect(),
        }
    }
}

/// Where one actor is mentioned in a sentence.
///
/// `start..end` are byte offsets into the sentence, always on character boundaries;
/// `&sentence[start..end]` is the alias as written in the text, without a possessive
/// `'s`.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::actors::{ActorSet, Mention};
///
/// let actors = ActorSet::from_names(&["Russia".to_string()])?;
/// let sentence = "Russia’s reply came late.";
/// assert_eq!(actors.find(sentence), [Mention { actor: 0, start: 0, end: 6 }]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Mention {
    /// Index of the actor in [`ActorSet::actors`].
    pub actor: usize,
    /// Byte offset of the mention's first character.
    pub start: usize,
    /// Byte offset just past the alias (before a possessive suffix).
    pub end: usize,
}

/// A set of actors compiled for matching (see the [module documentation](self) for the
/// rules).
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::actors::{Actor, ActorSet};
///
/// let actors = ActorSet::new(vec![
///     Actor::new("United States", ["US", "U.S.", "Washington"]),
///     Actor::new("European Union", ["EU"]),
/// ])?;
/// let sentence = "Let us see what the U.S. and the EU decide.";
/// let names: Vec<&str> = actors
///     .find(sentence)
///     .iter()
///     .map(|m| &sentence[m.start..m.end])
///     .collect();
/// assert_eq!(names, ["U.S.", "EU"]);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct ActorSet {
    actors: Vec<Actor>,
    patterns: Vec<Pattern>,
    /// Patterns by their first (folded) character, for ASCII characters.
    ascii_index: Vec<Vec<usize>>,
    /// Patterns by their first (folded) character, for other characters.
    other_index: HashMap<char, Vec<usize>>,
}

/// One compiled alias.
#[derive(Debug, Clone)]
struct Pattern {
    actor: usize,
    tokens: Vec<Token>,
    /// Acronyms match as written; other aliases by folded characters.
    case_sensitive: bool,
    /// The alias ends with a word character, so the match must end at a word boundary.
    ends_word: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Token {
    /// One character: as written (apostrophes unified) for case-sensitive patterns,
    /// folded for the others.
    Char(char),
    /// One or more whitespace characters.
    Space,
}

/// What is wrong with a list of actors, before it is tied to a source.
struct Problem {
    /// The actor at fault, by index in the caller's list; `None` for the whole list.
    actor: Option<usize>,
    reason: String,
}

impl Problem {
    fn of(actor: usize, reason: String) -> Self {
        Problem {
            actor: Some(actor),
            reason,
        }
    }
}

impl ActorSet {
    /// Compiles a list of actors.
    ///
    /// Names and aliases are trimmed and their whitespace runs collapsed; each actor's name
    /// is added to its aliases when absent, and repeated aliases of one actor are dropped.
    /// Errors ([`Error::InvalidOption`], option `actors`): an empty list, an empty name or
    /// alias, an alias without any letter or digit, two actors whose names differ only in
    /// case, and an alias claimed by two actors (compared case-insensitively).
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::{Actor, ActorSet};
    ///
    /// let actors = ActorSet::new(vec![Actor::new("NATO", ["the  alliance "])])?;
    /// assert_eq!(actors.actors()[0].aliases, ["NATO", "the alliance"]);
    ///
    /// assert!(ActorSet::new(vec![]).is_err());
    /// assert!(ActorSet::new(vec![Actor::new("NATO", [""])]).is_err());
    /// assert!(ActorSet::new(vec![Actor::new("A", ["Moscow"]), Actor::new("B", ["moscow"])]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn new(actors: Vec<Actor>) -> Result<Self> {
        Self::compile(actors).map_err(|(problem, actors)| Error::InvalidOption {
            option: "actors",
            reason: match problem.actor {
                Some(i) => format!("actor {} ({:?}): {}", i + 1, actors[i].name, problem.reason),
                None => problem.reason,
            },
        })
    }

    /// Builds a set from `--actor NAME` flags: each NAME is its actor's only alias.
    ///
    /// Errors are [`Error::InvalidOption`] with option `actor`.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::ActorSet;
    ///
    /// let actors = ActorSet::from_names(&["NATO".to_string(), "Russia".to_string()])?;
    /// assert_eq!(actors.actors()[1].aliases, ["Russia"]);
    /// assert!(ActorSet::from_names(&["NATO".to_string(), "nato".to_string()]).is_err());
    /// # Ok(()) }
    /// ```
    pub fn from_names(names: &[String]) -> Result<Self> {
        let actors = names
            .iter()
            .map(|name| Actor::new(name.as_str(), [name.as_str()]))
            .collect();
        Self::compile(actors).map_err(|(problem, actors)| Error::InvalidOption {
            option: "actor",
            reason: match problem.actor {
                Some(i) => format!("{:?}: {}", actors[i].name, problem.reason),
                None => format!("{} (give at least one --actor NAME)", problem.reason),
            },
        })
    }

    /// Reads a set from a file (formats in the [module documentation](self)).
    ///
    /// A `.json` file is JSON, a `.txt` file is text; any other file is JSON when its first
    /// non-blank character is `[` or `{`, and text otherwise. Errors: [`Error::Io`] when the
    /// file cannot be read (or is not UTF-8); for JSON, [`Error::Json`] when it does not
    /// parse or has the wrong shape (with line and column) and [`Error::InvalidConfig`]
    /// whose key is the actor's name (or JSON path, for an empty name) when an actor is
    /// invalid; for text, [`Error::Record`] with the file and line; for a file with no
    /// actors, [`Error::InvalidConfig`] with key `actors`.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::ActorSet;
    ///
    /// let dir = tempfile::tempdir().unwrap();
    /// let path = dir.path().join("actors.txt");
    /// std::fs::write(&path, "# example\nNATO: NATO | the alliance\n\nRussia: Moscow\n").unwrap();
    /// let actors = ActorSet::from_file(&path)?;
    /// assert_eq!(actors.actors()[1].aliases, ["Russia", "Moscow"]);
    ///
    /// std::fs::write(&path, "NATO: NATO | | the alliance\n").unwrap();
    /// let error = ActorSet::from_file(&path).unwrap_err().to_string();
    /// assert!(error.ends_with("actors.txt:1: actor \"NATO\": alias 2 is empty"), "{error}");
    ///
    /// let actors = ActorSet::from_file(concat!(env!("CARGO_MANIFEST_DIR"), "/data/actors.json").as_ref())?;
    /// assert_eq!(actors.actors()[0].name, "NATO");
    /// # Ok(()) }
    /// ```
    pub fn from_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_ascii_lowercase);
        let json = match ext.as_deref() {
            Some("json") => true,
            Some("txt") => false,
            _ => matches!(text.trim_start().chars().next(), Some('[' | '{')),
        };
        if json {
            Self::from_json(path, text)
        } else {
            Self::from_text(path, text)
        }
    }

    fn from_json(path: &Path, text: &str) -> Result<Self> {
        let file: ActorsFile = serde_json::from_str(text).map_err(|source| Error::Json {
            path: path.to_path_buf(),
            source,
        })?;
        let list_form = file.list_form;
        Self::compile(file.actors).map_err(|(problem, actors)| {
            let key = match problem.actor {
                None => "actors".to_string(),
                Some(i) if !actors[i].name.trim().is_empty() || !list_form => {
                    actors[i].name.clone()
                }
                Some(i) => format!("[{i}].name"),
            };
            Error::config(path, &key, problem.reason)
        })
    }

    fn from_text(path: &Path, text: &str) -> Result<Self> {
        let source_name = path.display().to_string();
        let mut actors = Vec::new();
        let mut lines = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let (name, aliases) = match line.split_once(':') {
                Some((name, rest)) if rest.trim().is_empty() => (name, Vec::new()),
                Some((name, rest)) => (name, rest.split('|').collect()),
                None => (line, Vec::new()),
            };
            actors.push(Actor::new(name, aliases));
            lines.push(i + 1);
        }
        Self::compile(actors).map_err(|(problem, actors)| match problem.actor {
            Some(i) => Error::Record {
                source_name,
                line: lines[i],
                reason: format!("actor {:?}: {}", actors[i].name.trim(), problem.reason),
            },
            None => Error::config(path, "actors", problem.reason),
        })
    }

    /// Validates, normalises and compiles; on failure, returns the problem with the
    /// caller's list (as given) so that the caller can say where it lies.
    fn compile(given: Vec<Actor>) -> Result<Self, (Problem, Vec<Actor>)> {
        match Self::try_compile(&given) {
            Ok(set) => Ok(set),
            Err(problem) => Err((problem, given)),
        }
    }

    fn try_compile(given: &[Actor]) -> Result<Self, Problem> {
        if given.is_empty() {
            return Err(Problem {
                actor: None,
                reason: "no actors defined".into(),
            });
        }
        let mut actors = Vec::with_capacity(given.len());
        // Folded name -> actor; folded alias -> (actor, alias as written).
        let mut names: HashMap<String, usize> = HashMap::new();
        let mut claimed: HashMap<String, (usize, String)> = HashMap::new();
        let mut patterns = Vec::new();
        for (a, actor) in given.iter().enumerate() {
            let name = collapse_whitespace(&actor.name);
            if name.is_empty() {
                return Err(Problem::of(a, "empty actor name".into()));
            }
            if let Some(&other) = names.get(&fold_str(&name)) {
                return Err(Problem::of(
                    a,
                    format!(
                        "duplicate actor name (actor {} is {:?}; names are compared ignoring case)",
                        other + 1,
                        actors_name(&actors, other)
                    ),
                ));
            }
            names.insert(fold_str(&name), a);

            let mut aliases: Vec<String> = Vec::with_capacity(actor.aliases.len() + 1);
            for (k, alias) in actor.aliases.iter().enumerate() {
                let alias = collapse_whitespace(alias);
                if alias.is_empty() {
                    return Err(Problem::of(a, format!("alias {} is empty", k + 1)));
                }
                if !alias.chars().any(is_word_char) {
                    return Err(Problem::of(
                        a,
                        format!("alias {alias:?} has no letter or digit"),
                    ));
                }
                if !aliases.contains(&alias) {
                    aliases.push(alias);
                }
            }
            if !aliases.contains(&name) {
                aliases.insert(0, name.clone());
            }
            for alias in &aliases {
                let key = fold_str(alias);
                match claimed.get(&key) {
                    Some((other, written)) if *other != a => {
                        return Err(Problem::of(
                            a,
                            format!(
                                "alias {alias:?} is also an alias of {:?} (as {written:?}; aliases are compared ignoring case)",
                                actors_name(&actors, *other)
                            ),
                        ));
                    }
                    Some(_) => {}
                    None => {
                        claimed.insert(key, (a, alias.clone()));
                    }
                }
                patterns.push(Pattern::new(a, alias));
            }
            actors.push(Actor { name, aliases });
        }

        let mut ascii_index = vec![Vec::new(); 128];
        let mut other_index: HashMap<char, Vec<usize>> = HashMap::new();
        for (p, pattern) in patterns.iter().enumerate() {
            let Some(Token::Char(first)) = pattern.tokens.first() else {
                continue; // unreachable: aliases are trimmed and non-empty
            };
            let key = fold(*first);
            if key.is_ascii() {
                ascii_index[key as usize].push(p);
            } else {
                other_index.entry(key).or_default().push(p);
            }
        }
        Ok(ActorSet {
            actors,
            patterns,
            ascii_index,
            other_index,
        })
    }

    /// The actors, normalised (trimmed, names among the aliases), in the order given.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::{Actor, ActorSet};
    /// let actors = ActorSet::new(vec![Actor::new(" NATO ", ["the alliance"])])?;
    /// assert_eq!(actors.actors(), [Actor::new("NATO", ["NATO", "the alliance"])]);
    /// # Ok(()) }
    /// ```
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    /// Every mention of every actor in `sentence`, ordered by start, without overlaps.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::{Actor, ActorSet, Mention};
    ///
    /// let actors = ActorSet::new(vec![
    ///     Actor::new("European Union", ["EU"]),
    ///     Actor::new("Union", Vec::<String>::new()),
    /// ])?;
    /// let sentence = "The European Union and the EU's union.";
    /// assert_eq!(
    ///     actors.find(sentence),
    ///     [
    ///         Mention { actor: 0, start: 4, end: 18 },
    ///         Mention { actor: 0, start: 27, end: 29 },
    ///         Mention { actor: 1, start: 32, end: 37 },
    ///     ]
    /// );
    /// # Ok(()) }
    /// ```
    pub fn find(&self, sentence: &str) -> Vec<Mention> {
        let mut mentions = Vec::new();
        let mut prev_word = false;
        let mut i = 0;
        while let Some(c) = sentence.get(i..).and_then(|rest| rest.chars().next()) {
            let word = is_word_char(c);
            // Inside a word, no alias can start: one starting with a word character needs a
            // boundary before it, and c is not a boundary.
            if !(word && prev_word)
                && let Some((end, actor)) = self.longest_at(sentence, i, c)
            {
                mentions.push(Mention {
                    actor,
                    start: i,
                    end,
                });
                prev_word = sentence[..end]
                    .chars()
                    .next_back()
                    .is_some_and(is_word_char);
                i = end;
                continue;
            }
            prev_word = word;
            i += c.len_utf8();
        }
        mentions
    }

    /// The first mention of each actor mentioned in `sentence`, in actor order, with the
    /// actor's index: what labelling uses, one row per (sentence, actor).
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::label::actors::{Actor, ActorSet};
    ///
    /// let actors = ActorSet::new(vec![
    ///     Actor::new("NATO", ["the alliance"]),
    ///     Actor::new("Russia", ["Moscow"]),
    /// ])?;
    /// let sentence = "Moscow warned the alliance; NATO replied to Russia.";
    /// let first: Vec<(usize, &str)> = actors
    ///     .mentioned(sentence)
    ///     .into_iter()
    ///     .map(|(actor, m)| (actor, &sentence[m.start..m.end]))
    ///     .collect();
    /// assert_eq!(first, [(0, "the alliance"), (1, "Moscow")]);
    /// # Ok(()) }
    /// ```
    pub fn mentioned(&self, sentence: &str) -> Vec<(usize, Mention)> {
        let mut first: Vec<Option<Mention>> = vec![None; self.actors.len()];
        for mention in self.find(sentence) {
            if let Some(slot @ None) = first.get_mut(mention.actor) {
                *slot = Some(mention);
            }
        }
        first
            .into_iter()
            .enumerate()
            .filter_map(|(actor, mention)| mention.map(|m| (actor, m)))
            .collect()
    }

    /// The end and actor of the longest alias matching at byte `start` (whose character is
    /// `c`), if any.
    fn longest_at(&self, text: &str, start: usize, c: char) -> Option<(usize, usize)> {
        let key = fold(c);
        let candidates = if key.is_ascii() {
            self.ascii_index.get(key as usize)?
        } else {
            self.other_index.get(&key)?
        };
        let mut best: Option<(usize, usize)> = None;
        for &p in candidates {
            let pattern = &self.patterns[p];
            if let Some(end) = pattern.match_at(text, start)
                && best.is_none_or(|(best_end, _)| end > best_end)
            {
                best = Some((end, pattern.actor));
            }
        }
        best
    }
}

impl Pattern {
    fn new(actor: usize, alias: &str) -> Self {
        let letters: Vec<char> = alias.chars().filter(|c| c.is_alphabetic()).collect();
        let case_sensitive = letters.len() >= 2 && letters.iter().all(|c| c.is_uppercase());
        let tokens = alias
            .chars()
            .map(|c| {
                if c.is_whitespace() {
                    Token::Space
                } else if case_sensitive {
                    Token::Char(unify_apostrophe(c))
                } else {
                    Token::Char(fold(c))
                }
            })
            .collect();
        Pattern {
            actor,
            tokens,
            case_sensitive,
            ends_word: alias.chars().next_back().is_some_and(is_word_char),
        }
    }

    /// The end of this alias's match at byte `start` of `text`, if it matches there
    /// (the boundary before `start` is the caller's business).
    fn match_at(&self, text: &str, start: usize) -> Option<usize> {
        let rest = text.get(start..)?;
        let mut chars = rest.char_indices().peekable();
        for token in &self.tokens {
            match *token {
                Token::Space => {
                    chars.next_if(|(_, c)| c.is_whitespace())?;
                    while chars.next_if(|(_, c)| c.is_whitespace()).is_some() {}
                }
                Token::Char(expected) => {
                    let (_, c) = chars.next()?;
                    let c = if self.case_sensitive {
                        unify_apostrophe(c)
                    } else {
                        fold(c)
                    };
                    if c != expected {
                        return None;
                    }
                }
            }
        }
        let next = chars.peek().copied();
        if self.ends_word && next.is_some_and(|(_, c)| is_word_char(c)) {
            return None;
        }
        Some(start + next.map_or(rest.len(), |(offset, _)| offset))
    }
}

/// A letter, digit or combining mark: what cannot sit next to a whole-word match.
fn is_word_char(c: char) -> bool {
    c.is_alphanumeric()
        || matches!(c,
            '\u{0300}'..='\u{036f}'
            | '\u{1ab0}'..='\u{1aff}'
            | '\u{1dc0}'..='\u{1dff}'
            | '\u{20d0}'..='\u{20ff}'
            | '\u{fe20}'..='\u{fe2f}')
}

/// Curly and modifier apostrophes as the straight one.
fn unify_apostrophe(c: char) -> char {
    match c {
        '\u{2019}' | '\u{02bc}' => '\'',
        c => c,
    }
}

/// Simple case folding: the lowercase of `c` when it is one character (apostrophes
/// unified).
fn fold(c: char) -> char {
    if c.is_ascii() {
        return c.to_ascii_lowercase();
    }
    let c = unify_apostrophe(c);
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(l), None) => l,
        _ => c,
    }
}

/// `s` folded character by character, whitespace runs as one space (for duplicate checks).
fn fold_str(s: &str) -> String {
    collapse_whitespace(s).chars().map(fold).collect()
}

/// `s` trimmed, with each whitespace run replaced by one space.
fn collapse_whitespace(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn actors_name(actors: &[Actor], i: usize) -> &str {
    actors.get(i).map_or("", |a| a.name.as_str())
}

/// An actors JSON file in either form, actors in file order.
struct ActorsFile {
    actors: Vec<Actor>,
    list_form: bool,
}

impl<'de> Deserialize<'de> for ActorsFile {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(ActorsFileVisitor)
    }
}

struct ActorsFileVisitor;

impl<'de> Visitor<'de> for ActorsFileVisitor {
    type Value = ActorsFile;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(
            r#"a list of actors [{"name": "NATO", "aliases": ["the alliance"]}, ...] or an object {"NATO": ["the alliance"], ...}"#,
        )
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<ActorsFile, A::Error> {
        let mut actors = Vec::with_capacity(seq.size_hint().unwrap_or(0));
        while let Some(actor) = seq.next_element::<Actor>()? {
            actors.push(actor);
        }
        Ok(ActorsFile {
            actors,
            list_form: true,
        })
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<ActorsFile, A::Error> {
        let mut actors = Vec::with_capacity(map.size_hint().unwrap_or(0));
        while let Some(name) = map.next_key::<String>()? {
            let value: serde_json::Value = map.next_value()?;
            let aliases = match value {
                serde_json::Value::Array(items) => items
                    .into_iter()
                    .map(|item| match item {
                        serde_json::Value::String(alias) => Ok(alias),
                        other => Err(de::Error::custom(format_args!(
                            "actor {name:?}: alias {other} is not a string"
                        ))),
                    })
                    .collect::<Result<Vec<String>, A::Error>>()?,
                other => {
                    return Err(de::Error::custom(format_args!(
                        "actor {name:?}: expected a list of aliases, found {other}"
                    )));
                }
            };
            actors.push(Actor { name, aliases });
        }
        Ok(ActorsFile {
            actors,
            list_form: false,
        })
    }
}
