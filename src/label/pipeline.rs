//! Documents → sentences → (sentence, actor) rows with stance and sentiment.
//!
//! Sentences are gathered across documents into windows; each window is classified in one
//! call (sorted by length inside, token-budget batches, one encoder pass per distinct
//! input), and its rows come out in input order, followed by a [`Event::Checkpoint`] that
//! says how far the input is done, so a writer can make the output resumable.

use indexmap::IndexMap;
use serde::Serialize;

use super::actors::ActorSet;
use super::documents::Document;
use super::quotes;
use super::segment::Segmenter;
use crate::classify::{Classifier, HeadPrediction, Query};
use crate::error::{Error, Result};
use crate::model::HeadInput;

/// How far labelling has gone: every sentence before `sentence` of document `document`
/// (0-based ordinals over the whole input, skipped documents included) is done.
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, serde::Deserialize,
)]
pub struct Position {
    /// Ordinal of the document in progress.
    pub document: usize,
    /// Index of its next sentence.
    pub sentence: usize,
}

/// One output row: a sentence and an actor (or no actor, for a sentence that mentions none).
///
/// Offsets count Unicode scalar values (characters) from the start of the document, so
/// `document.chars().skip(start).take(end - start)` is the sentence (or mention).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Row {
    /// Document identifier.
    pub document: String,
    /// 0-based ordinal of the document in the input (skipped ones included).
    #[serde(skip)]
    pub ordinal: usize,
    /// 0-based sentence index within the document.
    pub sentence_index: usize,
    /// Character offset where the sentence starts.
    pub sentence_start: usize,
    /// Character offset where the sentence ends (exclusive).
    pub sentence_end: usize,
    /// The sentence.
    pub sentence: String,
    /// The actor's name, if the row is about one.
    pub actor: Option<String>,
    /// The words that mention the actor, as written.
    pub mention: Option<String>,
    /// Character offset of the mention in the document.
    pub mention_start: Option<usize>,
    /// End of the mention (exclusive).
    pub mention_end: Option<usize>,
    /// Who speaks the sentence (a quote's speaker, or the source of reported speech), as
    /// named in the document; `None` when nobody is said to, or for a pronoun that could not
    /// be resolved (see [`crate::label::quotes`]).
    pub speaker: Option<String>,
    /// Character offset of the attribution (`he said`, `according to the envoy`), when the
    /// sentence has one.
    pub speaker_start: Option<usize>,
    /// End of the attribution (exclusive).
    pub speaker_end: Option<usize>,
    /// Whose attitude toward the actor the sentence expresses: an actor of the list (one the
    /// sentence mentions, or the speaker's, through the aliases), or `author` when none of
    /// them holds it. `None` for a neutral row, or a model without a directed head (see
    /// [`Labeller`] for how it is chosen).
    pub holder: Option<String>,
    /// The directed head's probability that the holder holds the row's stance (for `author`:
    /// that no candidate does).
    pub holder_probability: Option<f32>,
    /// The document's date, when the input names a date field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Every head's verdict that applies: pair heads for the actor, text heads for the
    /// sentence. Written as one field per head.
    #[serde(flatten)]
    pub predictions: IndexMap<String, HeadPrediction>,
    /// Model name and version (or its source).
    pub model: String,
}

/// What the stream produces.
#[derive(Debug)]
pub enum Event {
    /// A labelled row.
    Row(Box<Row>),
    /// A document that could not be read; the caller decides whether that is fatal.
    Skipped {
        /// Its ordinal.
        document: usize,
        /// What was wrong, naming source and line.
        error: Error,
    },
    /// Sentences read since the last checkpoint, rows or not (the next checkpoint covers them).
    Read {
        /// How many.
        sentences: usize,
        /// How many of them went through the model (those that get a row).
        classified: usize,
    },
    /// Everything before this position has been emitted.
    Checkpoint(Position),
}

/// Labelling settings.
#[derive(Debug, Clone)]
pub struct LabelOptions {
    /// Score every actor for every sentence, mentioned or not.
    pub all_actors: bool,
    /// Emit a row (actor empty, sentence heads only) for sentences that mention no actor.
    pub unmatched_rows: bool,
    /// Sentences classified per window (bounds memory; larger windows sort better).
    pub window: usize,
    /// Choose each non-neutral row's holder with the model's directed head, if it has one.
    pub holders: bool,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            all_actors: false,
            unmatched_rows: true,
            window: 1024,
            holders: true,
        }
    }
}

/// Below this probability no candidate holds a stance, and the holder is `author`.
pub const HOLDER_THRESHOLD: f32 = 0.5;

/// The holder of a row whose stance no listed actor holds.
pub const AUTHOR: &str = "author";

/// A classifier, actors and a segmenter, ready to label documents.
///
/// Holders: when the model has a directed head ([`HeadInput::Directed`]) with the labels of a
/// pair head (the stance head), each row whose stance is not `neutral` gets a holder.
/// Its candidates are the other actors the sentence mentions and the speaker's actor (an
/// actor alias in the speaker's name or attribution, e.g. `Russia's deputy foreign minister`,
/// remembered for that name through the document). The directed head scores each candidate
/// (candidate → actor); the best one holds the stance when its probability of the row's label
/// is at least [`HOLDER_THRESHOLD`], else the holder is [`AUTHOR`].
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::{actors::ActorSet, documents::Document, pipeline::{Event, LabelOptions, Labeller}};
/// use standpoint::{Classifier, ClassifierOptions};
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(model, &ClassifierOptions::default())?;
/// let actors = ActorSet::from_names(&["NATO".to_string()])?;
/// let labeller = Labeller::new(&classifier, &actors, LabelOptions::default());
/// let docs = vec![Ok(Document { id: "a".into(), text: "NATO refused. Talks ended.".into(), date: None })];
/// let rows: Vec<_> = labeller
///     .stream(docs.into_iter(), Default::default())
///     .filter_map(|e| match e { Ok(Event::Row(row)) => Some(row), _ => None })
///     .collect();
/// assert_eq!(rows.len(), 2);
/// assert_eq!(rows[0].actor.as_deref(), Some("NATO"));
/// # Ok(()) }
/// ```
pub struct Labeller<'a> {
    classifier: &'a Classifier,
    actors: &'a ActorSet,
    segmenter: Segmenter,
    options: LabelOptions,
    model_name: String,
}

impl<'a> Labeller<'a> {
    /// Prepares labelling with `classifier` for `actors`.
    pub fn new(classifier: &'a Classifier, actors: &'a ActorSet, options: LabelOptions) -> Self {
        let info = classifier.info();
        let model_name = match (info.name, info.version) {
            (Some(n), Some(v)) => format!("{n}@{v}"),
            (Some(n), None) => n,
            _ => info.source,
        };
        Labeller {
            classifier,
            actors,
            segmenter: Segmenter::new(),
            options,
            model_name,
        }
    }

    /// Labels `documents`, starting at `from` (for resuming; `Position::default()` otherwise).
    pub fn stream<I>(&'a self, documents: I, from: Position) -> LabelStream<'a, I>
    where
        I: Iterator<Item = Result<Document>>,
    {
        LabelStream {
            labeller: self,
            documents,
            from,
            ordinal: 0,
            pending: Vec::new(),
            ready: std::collections::VecDeque::new(),
            done: false,
        }
    }
}

/// A mention as written, with character offsets in the document.
struct Located {
    text: String,
    start: usize,
    end: usize,
    /// Byte span in the sentence, where a long sentence is cut around.
    bytes: (usize, usize),
}

/// An actor to score in a sentence, and where it is mentioned (if it is).
type ActorSlot = (usize, Option<Located>);

/// A sentence waiting for its window.
struct Pending {
    document: usize,
    document_id: std::rc::Rc<str>,
    date: Option<std::rc::Rc<str>>,
    index: usize,
    start: usize,
    end: usize,
    text: String,
    actors: Vec<ActorSlot>,
    /// The speaker's name, and the attribution's character offsets.
    speaker: Option<(Option<String>, usize, usize)>,
    /// The actor the speaker speaks for, when the aliases tell.
    speaker_actor: Option<usize>,
}

/// Byte offsets to character offsets of one text, counting from the last offset asked for.
struct CharOffsets<'t> {
    text: &'t str,
    byte: usize,
    chars: usize,
}

impl CharOffsets<'_> {
    fn at(&mut self, byte: usize) -> usize {
        if byte >= self.byte {
            self.chars += self.text[self.byte..byte].chars().count();
        } else {
            self.chars -= self.text[byte..self.byte].chars().count();
        }
        self.byte = byte;
        self.chars
    }
}

/// The iterator returned by [`Labeller::stream`].
pub struct LabelStream<'a, I> {
    labeller: &'a Labeller<'a>,
    documents: I,
    from: Position,
    ordinal: usize,
    pending: Vec<Pending>,
    ready: std::collections::VecDeque<Event>,
    done: bool,
}

impl<I: Iterator<Item = Result<Document>>> Iterator for LabelStream<'_, I> {
    type Item = Result<Event>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(event) = self.ready.pop_front() {
                return Some(Ok(event));
            }
            if self.done && self.pending.is_empty() {
                return None;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

impl<I: Iterator<Item = Result<Document>>> LabelStream<'_, I> {
    /// Reads documents until a window is full (or the input ends), then classifies one window:
    /// a document longer than a window is classified, and checkpointed, a window at a time.
    fn fill(&mut self) -> Result<()> {
        while !self.done && self.pending.len() < self.labeller.options.window {
            let Some(next) = self.documents.next() else {
                self.done = true;
                if self.ordinal < self.from.document {
                    return Err(Error::InvalidOption {
                        option: "resume",
                        reason: format!(
                            "the checkpoint is at document {} but the input has {} documents; the progress file does not belong to this input",
                            self.from.document + 1,
                            self.ordinal
                        ),
                    });
                }
                break;
            };
            let ordinal = self.ordinal;
            self.ordinal += 1;
            if ordinal < self.from.document {
                continue;
            }
            match next {
                Ok(document) => self.segment(ordinal, &document),
                Err(error @ Error::Record { .. }) => self.ready.push_back(Event::Skipped {
                    document: ordinal,
                    error,
                }),
                Err(fatal) => return Err(fatal),
            }
            if !self.ready.is_empty() && self.pending.is_empty() {
                // Skips with nothing pending: report them now, keeping the checkpoint honest.
                self.ready.push_back(Event::Checkpoint(Position {
                    document: ordinal + 1,
                    sentence: 0,
                }));
                return Ok(());
            }
        }
        if !self.pending.is_empty() {
            self.classify_window()?;
        } else if self.done {
            self.ready.push_back(Event::Checkpoint(Position {
                document: self.ordinal,
                sentence: 0,
            }));
        }
        Ok(())
    }

    fn segment(&mut self, ordinal: usize, document: &Document) {
        let labeller = self.labeller;
        let id: std::rc::Rc<str> = document.id.as_str().into();
        let date: Option<std::rc::Rc<str>> = document.date.as_deref().map(Into::into);
        let text = &document.text;
        let skip = if ordinal == self.from.document {
            self.from.sentence
        } else {
            0
        };
        let mut offsets = CharOffsets {
            text,
            byte: 0,
            chars: 0,
        };
        let spans = labeller.segmenter.split(text);
        let speakers = quotes::speakers(text, &spans);
        // Speaker names whose actor an earlier attribution told (`Grushko` after
        // `Russia's deputy foreign minister Alexander Grushko said`).
        let mut speaks_for: std::collections::HashMap<String, usize> = Default::default();
        for (index, (span, speaker)) in spans.into_iter().zip(speakers).enumerate() {
            let speaker_actor = speaker
                .as_ref()
                .and_then(|s| speaker_actor(labeller.actors, text, s, &mut speaks_for));
            if index < skip {
                // Done before the interruption.
                continue;
            }
            let speaker = speaker.map(|s| {
                let (from, to) = (
                    offsets.at(s.attribution.start),
                    offsets.at(s.attribution.end),
                );
                (s.name, from, to)
            });
            let start = offsets.at(span.start);
            let end = offsets.at(span.end);
            let sentence = &text[span.start..span.end];
            let mut mentioned: Vec<ActorSlot> = labeller
                .actors
                .mentioned(sentence)
                .into_iter()
                .map(|(actor, m)| {
                    let before = sentence[..m.start].chars().count();
                    let len = sentence[m.start..m.end].chars().count();
                    let located = Located {
                        text: sentence[m.start..m.end].to_string(),
                        start: start + before,
                        end: start + before + len,
                        bytes: (m.start, m.end),
                    };
                    (actor, Some(located))
                })
                .collect();
            if labeller.options.all_actors {
                for actor in 0..labeller.actors.actors().len() {
                    if !mentioned.iter().any(|(a, _)| *a == actor) {
                        mentioned.push((actor, None));
                    }
                }
                mentioned.sort_by_key(|(a, _)| *a);
            }
            self.pending.push(Pending {
                document: ordinal,
                document_id: id.clone(),
                date: date.clone(),
                index,
                start,
                end,
                text: sentence.to_string(),
                actors: mentioned,
                speaker,
                speaker_actor,
            });
        }
    }

    fn classify_window(&mut self) -> Result<()> {
        let labeller = self.labeller;
        let heads = labeller.classifier.heads();
        // A directed head reads neither a sentence nor an (actor, sentence) pair: only the
        // holder queries below.
        let has_text_heads = heads
            .iter()
            .any(|h| matches!(h.input, HeadInput::Text | HeadInput::Auto));
        let has_pair_heads = heads
            .iter()
            .any(|h| matches!(h.input, HeadInput::Pair | HeadInput::Auto));
        let names: Vec<&str> = labeller
            .actors
            .actors()
            .iter()
            .map(|a| a.name.as_str())
            .collect();
        let take = self.pending.len().min(labeller.options.window.max(1));
        let pending: Vec<Pending> = self.pending.drain(..take).collect();

        // One text query per sentence, one pair query per (sentence, actor).
        let mut queries: Vec<Query> = Vec::new();
        let mut slots: Vec<(Option<usize>, Vec<usize>)> = Vec::with_capacity(pending.len());
        for p in &pending {
            // A sentence that gets no row (no actor, no unmatched rows) costs no model work.
            let gets_row = !p.actors.is_empty() || labeller.options.unmatched_rows;
            let text_slot = (has_text_heads && gets_row).then(|| {
                queries.push(Query::text(&p.text));
                queries.len() - 1
            });
            let mut pair_slots = Vec::new();
            if has_pair_heads {
                for (actor, mention) in &p.actors {
                    let query = Query::pair(names[*actor], &p.text);
                    queries.push(match mention {
                        Some(m) => query.with_focus(m.bytes.0, m.bytes.1),
                        None => query,
                    });
                    pair_slots.push(queries.len() - 1);
                }
            }
            slots.push((text_slot, pair_slots));
        }
        let predictions = labeller.classifier.classify_each(&queries)?;
        let holders = if labeller.options.holders {
            self.holders(&pending, &slots, &predictions, &names)?
        } else {
            Default::default()
        };

        let mut last = Position::default();
        self.ready.push_back(Event::Read {
            sentences: pending.len(),
            classified: slots
                .iter()
                .filter(|(text, pairs)| text.is_some() || !pairs.is_empty())
                .count(),
        });
        for (p, (text_slot, pair_slots)) in pending.into_iter().zip(slots) {
            let sentence_heads = text_slot.map(|i| &predictions[i]);
            let row = |actor: Option<(usize, &Option<Located>)>, pair: Option<usize>| {
                let holder = pair.and_then(|i| holders.get(&i));
                let mut merged = IndexMap::new();
                // Config order: heads answered by either query.
                for head in heads {
                    let from_pair = pair.and_then(|i| predictions[i].get(&head.name));
                    let from_text = sentence_heads.and_then(|s| s.get(&head.name));
                    if let Some(v) = from_pair.or(from_text) {
                        merged.insert(head.name.clone(), v.clone());
                    }
                }
                let mention = actor.and_then(|(_, m)| m.as_ref());
                Row {
                    document: p.document_id.to_string(),
                    ordinal: p.document,
                    sentence_index: p.index,
                    sentence_start: p.start,
                    sentence_end: p.end,
                    sentence: p.text.clone(),
                    actor: actor.map(|(a, _)| names[a].to_string()),
                    mention: mention.map(|m| m.text.clone()),
                    mention_start: mention.map(|m| m.start),
                    mention_end: mention.map(|m| m.end),
                    speaker: p.speaker.as_ref().and_then(|s| s.0.clone()),
                    speaker_start: p.speaker.as_ref().map(|s| s.1),
                    speaker_end: p.speaker.as_ref().map(|s| s.2),
                    holder: holder.map(|h| h.0.clone()),
                    holder_probability: holder.map(|h| h.1),
                    date: p.date.as_deref().map(str::to_string),
                    predictions: merged,
                    model: labeller.model_name.clone(),
                }
            };
            if p.actors.is_empty() {
                if labeller.options.unmatched_rows {
                    self.ready.push_back(Event::Row(Box::new(row(None, None))));
                }
            } else {
                for (k, (actor, mention)) in p.actors.iter().enumerate() {
                    let pair = pair_slots.get(k).copied();
                    self.ready
                        .push_back(Event::Row(Box::new(row(Some((*actor, mention)), pair))));
                }
            }
            last = Position {
                document: p.document,
                sentence: p.index + 1,
            };
        }
        self.ready.push_back(Event::Checkpoint(last));
        Ok(())
    }

    /// The holder of every non-neutral pair query, keyed by query index (see [`Labeller`]).
    fn holders(
        &self,
        pending: &[Pending],
        slots: &[(Option<usize>, Vec<usize>)],
        predictions: &[crate::classify::Prediction],
        names: &[&str],
    ) -> Result<std::collections::HashMap<usize, (String, f32)>> {
        let heads = self.labeller.classifier.heads();
        let Some(directed) = heads.iter().find(|h| h.input == HeadInput::Directed) else {
            return Ok(Default::default());
        };
        let same_labels = |labels: &[String]| {
            labels.len() == directed.labels.len()
                && labels.iter().all(|l| directed.labels.contains(l))
        };
        let Some(stance) = heads.iter().find(|h| {
            matches!(h.input, HeadInput::Pair | HeadInput::Auto) && same_labels(&h.labels)
        }) else {
            return Ok(Default::default());
        };
        // (pair query, candidate actor, label asked) for each directed query.
        let mut asked: Vec<(usize, usize, String)> = Vec::new();
        let mut queries: Vec<Query> = Vec::new();
        let mut unheld: Vec<usize> = Vec::new();
        for (p, (_, pair_slots)) in pending.iter().zip(slots) {
            for ((target, mention), &slot) in p.actors.iter().zip(pair_slots) {
                let Some(verdict) = predictions[slot].get(&stance.name) else {
                    continue;
                };
                if verdict.label == "neutral" {
                    continue;
                }
                let mut candidates: Vec<usize> = p
                    .actors
                    .iter()
                    .filter(|(a, m)| m.is_some() && a != target)
                    .map(|(a, _)| *a)
                    .collect();
                if let Some(a) = p.speaker_actor.filter(|a| a != target)
                    && !candidates.contains(&a)
                {
                    candidates.push(a);
                }
                if candidates.is_empty() {
                    unheld.push(slot);
                }
                for candidate in candidates {
                    let query = Query::directed(names[candidate], names[*target], &p.text);
                    queries.push(match mention {
                        Some(m) => query.with_focus(m.bytes.0, m.bytes.1),
                        None => query,
                    });
                    asked.push((slot, candidate, verdict.label.clone()));
                }
            }
        }
        let mut holders: std::collections::HashMap<usize, (String, f32)> = unheld
            .into_iter()
            .map(|slot| (slot, (AUTHOR.to_string(), 1.0)))
            .collect();
        if queries.is_empty() {
            return Ok(holders);
        }
        let scored = self.labeller.classifier.classify_each(&queries)?;
        let mut best: std::collections::HashMap<usize, (usize, f32)> = Default::default();
        for ((slot, candidate, label), prediction) in asked.into_iter().zip(&scored) {
            let p = prediction
                .get(&directed.name)
                .and_then(|v| v.probabilities.get(&label).copied())
                .unwrap_or(0.0);
            let entry = best.entry(slot).or_insert((candidate, p));
            if p > entry.1 {
                *entry = (candidate, p);
            }
        }
        for (slot, (candidate, p)) in best {
            let holder = if p >= HOLDER_THRESHOLD {
                (names[candidate].to_string(), p)
            } else {
                (AUTHOR.to_string(), 1.0 - p)
            };
            holders.insert(slot, holder);
        }
        Ok(holders)
    }
}

/// The actor a speaker speaks for: remembered for the name, else an actor alias in the
/// speaker's name or attribution (the first one, as written).
fn speaker_actor(
    actors: &ActorSet,
    text: &str,
    speaker: &quotes::Speaker,
    speaks_for: &mut std::collections::HashMap<String, usize>,
) -> Option<usize> {
    if let Some(&actor) = speaker.name.as_ref().and_then(|n| speaks_for.get(n)) {
        return Some(actor);
    }
    let attribution = &text[speaker.attribution.start..speaker.attribution.end];
    let found = speaker
        .name
        .iter()
        .map(String::as_str)
        .chain([attribution])
        .find_map(|words| actors.find(words).first().map(|m| m.actor))?;
    if let Some(name) = &speaker.name {
        speaks_for.insert(name.clone(), found);
    }
    Some(found)
}
