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
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            all_actors: false,
            unmatched_rows: true,
            window: 1024,
        }
    }
}

/// A classifier, actors and a segmenter, ready to label documents.
///
/// ```
/// # fn main() -> standpoint::Result<()> {
/// use standpoint::label::{actors::ActorSet, documents::Document, pipeline::{Event, LabelOptions, Labeller}};
/// use standpoint::{Classifier, ClassifierOptions};
/// let model = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/tiny-bert");
/// let classifier = Classifier::load(model, &ClassifierOptions::default())?;
/// let actors = ActorSet::from_names(&["NATO".to_string()])?;
/// let labeller = Labeller::new(&classifier, &actors, LabelOptions::default());
/// let docs = vec![Ok(Document { id: "a".into(), text: "NATO refused. Talks ended.".into() })];
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
    index: usize,
    start: usize,
    end: usize,
    text: String,
    actors: Vec<ActorSlot>,
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
        let text = &document.text;
        let skip = if ordinal == self.from.document {
            self.from.sentence
        } else {
            0
        };
        // Byte offsets to character offsets, incrementally (sentences come in order).
        let (mut byte, mut chars) = (0usize, 0usize);
        let mut to_chars = |b: usize| {
            chars += text[byte..b].chars().count();
            byte = b;
            chars
        };
        for (index, span) in labeller.segmenter.split(text).into_iter().enumerate() {
            let start = to_chars(span.start);
            let end = to_chars(span.end);
            if index < skip {
                // Done before the interruption; offsets still advance.
                continue;
            }
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
                index,
                start,
                end,
                text: sentence.to_string(),
                actors: mentioned,
            });
        }
    }

    fn classify_window(&mut self) -> Result<()> {
        let labeller = self.labeller;
        let heads = labeller.classifier.heads();
        let has_text_heads = heads.iter().any(|h| h.input != HeadInput::Pair);
        let has_pair_heads = heads.iter().any(|h| h.input != HeadInput::Text);
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
}
