//! Turning texts and (target, text) pairs into padded id batches.

use std::path::Path;

use candle_core::{Device, Tensor};
use tokenizers::{
    PostProcessor, Tokenizer, TruncationDirection, TruncationParams, TruncationStrategy,
};

use crate::error::{Error, Result};
use crate::model::EncoderInput;

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
    max_length: usize,
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
            max_length,
        })
    }

    /// The longest encoding produced, in tokens.
    pub fn max_length(&self) -> usize {
        self.max_length
    }

    /// Size of the vocabulary, added tokens included.
    pub fn vocab_size(&self) -> usize {
        self.texts.get_vocab_size(true)
    }

    /// Tokenizes `text`, or the pair (`target`, `text`) when a target is given.
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
