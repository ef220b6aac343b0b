//! Turning texts and (target, text) pairs into padded id batches.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{
    PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};
use crate::model::{EncoderInput, MentionMarkers};

/// Token ids of one input, before padding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Vocabulary ids, special tokens included.
    pub ids: Vec<u32>,
    /// Segment ids: 0 for the target (or the lone text), 1 for the text of a pair.
    pub type_ids: Vec<u32>,
}

impl Encoded {
    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.ids.len()
    }

    /// True when there are no tokens at all.
    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }
}

/// A `tokenizer.json` with standpoint's truncation rules.
///
/// Pairs are truncated in the text only, so the target always survives; should the
/// target alone exceed the limit, both are cut, longest first.
#[derive(Debug, Clone)]
pub struct TextEncoder {
    texts: Tokenizer,
    pairs: Tokenizer,
    long_target_pairs: Tokenizer,
    /// No truncation, byte offsets: finds where to cut a long text around a mention.
    untruncated: Tokenizer,
    max_length: usize,
    markers: Option<MentionMarkers>,
}

fn with_truncation(
    mut tokenizer: Tokenizer,
    max_length: usize,
    strategy: TruncationStrategy,
) -> Result<Tokenizer, tokenizers::Error> {
    tokenizer.with_padding(None);
    tokenizer.with_truncation(Some(TruncationParams {
        max_length,
        strategy,
        stride: 0,
        direction: TruncationDirection::Right,
    }))?;
    Ok(tokenizer)
}

impl TextEncoder {
    /// Loads `tokenizer.json`, truncating every input to `max_length` tokens.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    /// let encoder = standpoint::TextEncoder::from_file(&dir.join("tokenizer.json"), 64)?;
    /// let pair = encoder.encode(Some("NATO"), "NATO has refused practical cooperation.")?;
    /// assert_eq!(pair.type_ids.first(), Some(&0));
    /// assert_eq!(pair.type_ids.last(), Some(&1));
    /// # Ok(()) }
    /// ```
    pub fn from_file(path: &Path, max_length: usize) -> Result<Self> {
        if !path.is_file() {
            return Err(Error::MissingFile {
                path: path.to_path_buf(),
                hint: None,
            });
        }
        let load_error = |source| Error::TokenizerLoad {
            path: path.to_path_buf(),
            source,
        };
        let tokenizer = Tokenizer::from_file(path).map_err(load_error)?;
        // The tokenizers crate underflows when the limit cannot hold the special tokens
        // plus one token of each sequence; refuse such limits up front.
        let specials = tokenizer
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        if max_length < specials + 2 {
            return Err(Error::InvalidOption {
                option: "max_length",
                reason: format!(
                    "{max_length} tokens cannot hold a pair: this tokenizer adds {specials} special tokens, so at least {} are needed",
                    specials + 2
                ),
            });
        }
        let build =
            |strategy| with_truncation(tokenizer.clone(), max_length, strategy).map_err(load_error);
        Ok(TextEncoder {
            texts: build(TruncationStrategy::LongestFirst)?,
            pairs: build(TruncationStrategy::OnlySecond)?,
            long_target_pairs: build(TruncationStrategy::LongestFirst)?,
            untruncated: {
                let mut t = tokenizer.clone();
                t.with_padding(None);
                t.with_truncation(None).map_err(load_error)?;
                t
            },
            max_length,
            markers: None,
        })
    }

    /// Puts `markers` around the target's mention in the text of every pair from now on
    /// (`None`: pairs are read unmarked). A model trained with markers must read with them:
    /// [`crate::ModelConfig::mention_markers`] says which.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// use standpoint::{MentionMarkers, TextEncoder};
    /// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    /// let plain = TextEncoder::from_file(&dir.join("tokenizer.json"), 64)?;
    /// let marking = plain.clone().with_mention_markers(Some(MentionMarkers::default()));
    /// let text = "NATO has refused practical cooperation.";
    /// assert_eq!(
    ///     marking.encode(Some("NATO"), text)?,
    ///     plain.encode(Some("NATO"), "«NATO» has refused practical cooperation.")?,
    /// );
    /// # Ok(()) }
    /// ```
    pub fn with_mention_markers(mut self, markers: Option<MentionMarkers>) -> Self {
        self.markers = markers;
        self
    }

    /// The markers put around a pair's mention, if any.
    pub fn mention_markers(&self) -> Option<&MentionMarkers> {
        self.markers.as_ref()
    }

    /// The longest encoding produced, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.texts.get_vocab_size(true)
    }

    /// Tokenizes `text`, or the pair (`target`, `text`) when a target is given (with the
    /// target's first mention in `text` marked, when the encoder marks mentions).
    pub fn encode(&self, target: Option<&str>, text: &str) -> Result<Encoded> {
        self.encode_raw(target, text)
            .map_err(|source| Error::Tokenize { index: 0, source })
    }

    /// [`TextEncoder::encode`] with the tokenizers crate's error, for callers that add the index.
    pub(crate) fn encode_raw(
        &self,
        target: Option<&str>,
        text: &str,
    ) -> Result<Encoded, tokenizers::Error> {
        match self.marked(target, text, None) {
            Some((marked, _)) => self.encode_plain(target, &marked),
            None => self.encode_plain(target, text),
        }
    }

    /// `text` with the markers around the mention at `focus` (`None`: the target's first
    /// occurrence) and the marked span, or `None` when nothing is marked.
    fn marked(
        &self,
        target: Option<&str>,
        text: &str,
        focus: Option<(usize, usize)>,
    ) -> Option<(String, (usize, usize))> {
        let (markers, target) = (self.markers.as_ref()?, target?);
        let (start, end) = focus.or_else(|| find_ascii_case_insensitive(text, target))?;
        if start >= end
            || end > text.len()
            || !text.is_char_boundary(start)
            || !text.is_char_boundary(end)
        {
            return None;
        }
        let marked = format!(
            "{}{}{}{}{}",
            &text[..start],
            markers.open,
            &text[start..end],
            markers.close,
            &text[end..]
        );
        let marked_end = end + markers.open.len() + markers.close.len();
        Some((marked, (start, marked_end)))
    }

    /// Tokenizes as given: no marking, no cut around a mention.
    fn encode_plain(&self, target: Option<&str>, text: &str) -> Result<Encoded, tokenizers::Error> {
        let text = self.pre_cut(text);
        let target = target.map(|t| self.pre_cut(t));
        let encoding = match target {
            None => self.texts.encode_fast(text, true)?,
            Some(target) => match self.pairs.encode_fast((target, text), true) {
                Ok(encoding) => encoding,
                // The target alone is longer than the limit: cut both.
                Err(_) => self.long_target_pairs.encode_fast((target, text), true)?,
            },
        };
        Ok(Encoded {
            ids: encoding.get_ids().to_vec(),
            type_ids: encoding.get_type_ids().to_vec(),
        })
    }
}

impl TextEncoder {
    /// Tokenizes like [`TextEncoder::encode`], but a text too long for the limit is cut around
    /// `focus` (a byte span of `text`; `None`: the target's first occurrence in it) rather than
    /// at its end, so the target's mention stays in what the model reads.
    ///
    /// ```
    /// # fn main() -> standpoint::Result<()> {
    /// let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
    /// let encoder = standpoint::TextEncoder::from_file(&dir.join("tokenizer.json"), 16)?;
    /// let text = "one two three four five six seven eight nine ten eleven twelve NATO refused";
    /// let start = text.find("NATO").unwrap();
    /// let cut = encoder.encode(Some("NATO"), text)?;
    /// let around = encoder.encode_around(Some("NATO"), text, Some((start, start + 4)))?;
    /// let nato = encoder.encode(None, "NATO")?.ids[1];
    /// assert_eq!(cut.ids.iter().filter(|&&id| id == nato).count(), 1, "only the target's");
    /// assert_eq!(around.ids.iter().filter(|&&id| id == nato).count(), 2, "and the mention");
    /// assert!(around.len() <= 16);
    /// # Ok(()) }
    /// ```
    pub fn encode_around(
        &self,
        target: Option<&str>,
        text: &str,
        focus: Option<(usize, usize)>,
    ) -> Result<Encoded> {
        self.encode_around_raw(target, text, focus)
            .map_err(|source| Error::Tokenize { index: 0, source })
    }

    /// [`TextEncoder::encode_around`] with the tokenizers crate's error.
    pub(crate) fn encode_around_raw(
        &self,
        target: Option<&str>,
        text: &str,
        focus: Option<(usize, usize)>,
    ) -> Result<Encoded, tokenizers::Error> {
        let marked = self.marked(target, text, focus);
        let (text, focus) = match &marked {
            Some((marked, span)) => (marked.as_str(), Some(*span)),
            None => (text, focus),
        };
        let encoded = self.encode_plain(target, text)?;
        let Some(target) = target else {
            return Ok(encoded);
        };
        if encoded.len() < self.max_length {
            return Ok(encoded);
        }
        let Some((start, end)) = focus.or_else(|| find_ascii_case_insensitive(text, target)) else {
            return Ok(encoded);
        };
        let end = end.min(text.len());
        if start >= end || !text.is_char_boundary(start) || !text.is_char_boundary(end) {
            return Ok(encoded);
        }
        // Bound the work on a huge text: a window of the pre-cut's size on each side.
        let reach = self.max_length.saturating_mul(CHARS_PER_TOKEN_BOUND);
        let from_byte = text[..start]
            .char_indices()
            .rev()
            .nth(reach)
            .map_or(0, |(i, _)| i);
        let text = &text[from_byte..];
        let (start, end) = (start - from_byte, end - from_byte);
        let text = match text.char_indices().nth(2 * reach) {
            Some((cut, _)) => &text[..cut],
            None => text,
        };
        let specials = self
            .pairs
            .get_post_processor()
            .map_or(0, |p| p.added_tokens(true));
        let target_tokens = self.untruncated.encode(target, false)?.len();
        // Tokens of the text that fit beside the target and the special tokens.
        let budget = self.max_length.saturating_sub(specials + target_tokens);
        let full = self.untruncated.encode(text, false)?;
        let offsets = full.get_offsets();
        if budget == 0 || offsets.len() <= budget {
            return Ok(encoded);
        }
        let first = offsets.iter().position(|o| o.1 > start).unwrap_or(0);
        let last = offsets
            .iter()
            .rposition(|o| o.0 < end)
            .unwrap_or(first)
            .max(first);
        if from_byte == 0 && last < budget {
            return Ok(encoded);
        }
        let span = last - first + 1;
        let from = if span >= budget {
            first
        } else {
            first
                .saturating_sub((budget - span) / 2)
                .min(offsets.len() - budget)
        };
        let to = (from + budget).min(offsets.len()) - 1;
        self.encode_plain(Some(target), &text[offsets[from].0..offsets[to].1])
    }

    /// Cuts `text` to a length that still yields more than `max_length` tokens, so a
    /// multi-megabyte input costs no more to tokenize than a long paragraph. A token spans at
    /// most [`CHARS_PER_TOKEN_BOUND`] characters in practice (WordPiece maps longer words to
    /// `[UNK]`), so the cut never changes the truncated encoding of real text.
    fn pre_cut<'t>(&self, text: &'t str) -> &'t str {
        let budget = self.max_length.saturating_mul(CHARS_PER_TOKEN_BOUND);
        match text.char_indices().nth(budget) {
            Some((end, _)) => &text[..end],
            None => text,
        }
    }
}

/// The byte span of the first ASCII-case-insensitive occurrence of `needle` in `haystack`
/// that stands as a whole word (so `he` is not found inside `the`), else of the first
/// occurrence at all.
pub(crate) fn find_ascii_case_insensitive(haystack: &str, needle: &str) -> Option<(usize, usize)> {
    let (h, n) = (haystack.as_bytes(), needle.as_bytes());
    if n.is_empty() || n.len() > h.len() {
        return None;
    }
    let mut found = (0..=h.len() - n.len())
        .filter(|&i| haystack.is_char_boundary(i) && h[i..i + n.len()].eq_ignore_ascii_case(n))
        .map(|i| (i, i + n.len()));
    let first = found.next()?;
    let whole_word = |&(start, end): &(usize, usize)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[end..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    };
    if whole_word(&first) {
        return Some(first);
    }
    Some(found.find(whole_word).unwrap_or(first))
}

/// Upper bound on the characters one token covers, used by the pre-cut of huge inputs.
pub const CHARS_PER_TOKEN_BOUND: usize = 128;

/// Pads `items` to the longest of them and stacks them into `(batch, seq)` tensors.
pub fn pad_batch(
    items: &[&Encoded],
    pad_id: u32,
    device: &Device,
) -> candle_core::Result<EncoderInput> {
    let seq = items.iter().map(|e| e.len()).max().unwrap_or(0);
    let batch = items.len();
    let mut ids = Vec::with_capacity(batch * seq);
    let mut types = Vec::with_capacity(batch * seq);
    let mut mask = Vec::with_capacity(batch * seq);
    for item in items {
        let pad = seq - item.len();
        ids.extend_from_slice(&item.ids);
        ids.extend(std::iter::repeat_n(pad_id, pad));
        types.extend_from_slice(&item.type_ids);
        types.extend(std::iter::repeat_n(0, pad));
        mask.extend(std::iter::repeat_n(1u32, item.len()));
        mask.extend(std::iter::repeat_n(0u32, pad));
    }
    Ok(EncoderInput {
        input_ids: Tensor::from_vec(ids, (batch, seq), device)?,
        token_type_ids: Tensor::from_vec(types, (batch, seq), device)?,
        attention_mask: Tensor::from_vec(mask, (batch, seq), device)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoder(max_length: usize) -> TextEncoder {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny-bert");
        TextEncoder::from_file(&dir.join("tokenizer.json"), max_length).unwrap()
    }

    fn count(encoded: &Encoded, id: u32) -> usize {
        encoded.ids.iter().filter(|&&i| i == id).count()
    }

    #[test]
    fn a_mention_past_the_pre_cut_of_a_huge_text_is_still_read() {
        let encoder = encoder(32);
        let nato = encoder.encode(None, "NATO").unwrap().ids[1];
        let text = format!("{}NATO refused.", "word ".repeat(100_000));
        let around = encoder.encode_around(Some("NATO"), &text, None).unwrap();
        assert_eq!(count(&around, nato), 2, "the target and its mention");
        assert!(around.len() <= 32);
        let short = "NATO refused.";
        assert_eq!(
            encoder.encode_around(Some("NATO"), short, None).unwrap(),
            encoder.encode(Some("NATO"), short).unwrap(),
            "a text that fits is not touched"
        );
    }

    #[test]
    fn a_focus_off_char_boundaries_is_ignored() {
        let encoder = encoder(16);
        let text = format!("{}é NATO", "word ".repeat(40));
        let bad = text.find('é').unwrap() + 1;
        let got = encoder.encode_around(Some("NATO"), &text, Some((bad, bad + 2)));
        assert_eq!(got.unwrap(), encoder.encode(Some("NATO"), &text).unwrap());
    }

    #[test]
    fn a_mention_is_found_as_a_whole_word_first() {
        let text = "In the end he refused.";
        assert_eq!(find_ascii_case_insensitive(text, "He"), Some((11, 13)));
        assert_eq!(find_ascii_case_insensitive("Othello", "he"), Some((2, 4)));
        assert_eq!(find_ascii_case_insensitive("Kyiv", "Moscow"), None);
    }

    #[test]
    fn markers_go_around_the_focused_mention() {
        let plain = encoder(64);
        let marking = plain
            .clone()
            .with_mention_markers(Some(MentionMarkers::default()));
        let text = "NATO said NATO refused.";
        let second = (10, 14);
        assert_eq!(
            marking
                .encode_around(Some("NATO"), text, Some(second))
                .unwrap(),
            plain
                .encode(Some("NATO"), "NATO said «NATO» refused.")
                .unwrap(),
        );
        assert_eq!(
            marking.encode(Some("NATO"), text).unwrap(),
            plain
                .encode(Some("NATO"), "«NATO» said NATO refused.")
                .unwrap(),
            "without a focus, the first mention"
        );
        assert_eq!(
            marking.encode(None, text).unwrap(),
            plain.encode(None, text).unwrap(),
            "a text without a target is not marked"
        );
        assert_eq!(
            marking.encode(Some("Kyiv"), text).unwrap(),
            plain.encode(Some("Kyiv"), text).unwrap(),
            "a target not in the text is not marked"
        );
    }

    #[test]
    fn markers_survive_the_cut_around_a_mention() {
        let marking = encoder(24).with_mention_markers(Some(MentionMarkers::default()));
        let unk = marking.encode(None, "«").unwrap().ids[1];
        let text = format!("{}NATO refused.{}", "word ".repeat(60), " word".repeat(60));
        let around = marking.encode_around(Some("NATO"), &text, None).unwrap();
        assert!(around.len() <= 24);
        let nato = marking.encode(None, "NATO").unwrap().ids[1];
        let at = around.ids.iter().rposition(|&i| i == nato).unwrap();
        assert_eq!((around.ids[at - 1], around.ids[at + 1]), (unk, unk));
    }
}
