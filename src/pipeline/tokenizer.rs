//! CLIP's byte-level BPE, built from a bundle's `vocab.json` + `merges.txt`.
//!
//! Uses the `tokenizers` crate (the engine behind Hugging Face's fast
//! tokenizers) configured exactly as transformers' `CLIPTokenizer`: NFC,
//! whitespace folding, lower-casing, CLIP's split pattern, byte-level BPE with
//! a `</w>` word suffix. Prompts past 77 tokens are truncated as diffusers
//! does, and the dropped text is reported, never silently lost.

use std::path::Path;

use serde::Deserialize;
use tokenizers::models::bpe::BPE;
use tokenizers::normalizers::{Lowercase, NFC, Replace, Sequence as NormalizerSequence};
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence as PreTokenizerSequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::error::{Error, ModelFault, Result};

/// CLIP's context length: BOS + 75 tokens + EOS.
pub const CONTEXT_LENGTH: usize = 77;

/// The pre-tokenizer pattern of transformers' CLIPTokenizer.
const CLIP_SPLIT: &str =
    r"<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+";

/// A prompt turned into the 77 ids the text encoder takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tokens {
    /// BOS, up to 75 prompt tokens, EOS, then padding.
    pub ids: Vec<i64>,
    /// Prompt tokens that did not fit and were dropped (0 when none).
    pub dropped_tokens: usize,
    /// The tail of the prompt that was dropped, for the warning a user sees.
    pub dropped_text: String,
}

/// The special-token names a bundle's `tokenizer_config.json` may override.
#[derive(Deserialize, Default)]
struct TokenizerConfig {
    bos_token: Option<SpecialToken>,
    eos_token: Option<SpecialToken>,
    pad_token: Option<SpecialToken>,
}

/// transformers writes special tokens either as a plain string or as an
/// AddedToken object with a `content` field.
#[derive(Deserialize)]
#[serde(untagged)]
enum SpecialToken {
    Plain(String),
    Added { content: String },
}

impl SpecialToken {
    fn content(self) -> String {
        match self {
            SpecialToken::Plain(s) | SpecialToken::Added { content: s } => s,
        }
    }
}

/// CLIP tokenizer for one bundle.
pub struct ClipTokenizer {
    inner: Tokenizer,
    bos: i64,
    eos: i64,
    pad: i64,
}

impl std::fmt::Debug for ClipTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClipTokenizer")
            .field("bos", &self.bos)
            .field("eos", &self.eos)
            .field("pad", &self.pad)
            .finish_non_exhaustive()
    }
}

impl ClipTokenizer {
    /// Load from a bundle's `tokenizer/` folder.
    pub fn load(folder: &Path) -> Result<Self> {
        let vocab = folder.join("vocab.json");
        let merges = folder.join("merges.txt");
        let invalid = |file: &Path, e: String| Error::model(file, ModelFault::Invalid(e));
        let bpe = BPE::from_file(&vocab.to_string_lossy(), &merges.to_string_lossy())
            .continuing_subword_prefix(String::new())
            .end_of_word_suffix("</w>".into())
            .unk_token("<|endoftext|>".into())
            .build()
            .map_err(|e| {
                invalid(
                    &vocab,
                    format!("cannot build BPE with {}: {e}", merges.display()),
                )
            })?;
        let mut inner = Tokenizer::new(bpe);
        let whitespace = Replace::new(
            tokenizers::normalizers::replace::ReplacePattern::Regex(r"\s+".into()),
            " ",
        )
        .map_err(|e| invalid(folder, e.to_string()))?;
        inner
            .with_normalizer(Some(NormalizerSequence::new(vec![
                NFC.into(),
                whitespace.into(),
                Lowercase.into(),
            ])))
            .map_err(|e| invalid(folder, e.to_string()))?;
        let split = Split::new(
            SplitPattern::Regex(CLIP_SPLIT.into()),
            SplitDelimiterBehavior::Removed,
            true,
        )
        .map_err(|e| invalid(folder, e.to_string()))?;
        inner.with_pre_tokenizer(Some(PreTokenizerSequence::new(vec![
            split.into(),
            ByteLevel::new(false, true, true).into(),
        ])));

        // As in transformers, the special tokens written in a prompt are
        // matched verbatim (not normalized, not split by BPE).
        inner
            .add_special_tokens([
                AddedToken::from("<|startoftext|>", true),
                AddedToken::from("<|endoftext|>", true),
            ])
            .map_err(|e| invalid(folder, e.to_string()))?;

        let config_path = folder.join("tokenizer_config.json");
        let config: TokenizerConfig = if config_path.is_file() {
            crate::bundle::read_json(&config_path)?
        } else {
            TokenizerConfig::default()
        };
        let id_of = |token: Option<SpecialToken>, default: &str| -> Result<i64> {
            let token = token
                .map(SpecialToken::content)
                .unwrap_or_else(|| default.to_string());
            inner.token_to_id(&token).map(i64::from).ok_or_else(|| {
                invalid(
                    &vocab,
                    format!("special token {token:?} is not in the vocabulary"),
                )
            })
        };
        let bos = id_of(config.bos_token, "<|startoftext|>")?;
        let eos = id_of(config.eos_token, "<|endoftext|>")?;
        let pad = id_of(config.pad_token, "<|endoftext|>")?;
        Ok(ClipTokenizer {
            inner,
            bos,
            eos,
            pad,
        })
    }

    /// Tokenize a prompt into exactly [`CONTEXT_LENGTH`] ids.
    pub fn encode(&self, prompt: &str) -> Result<Tokens> {
        let encoding = self
            .inner
            .encode(prompt, false)
            .map_err(|e| Error::invalid("prompt", format!("cannot tokenize: {e}")))?;
        let room = CONTEXT_LENGTH - 2;
        let all = encoding.get_ids();
        let kept = all.len().min(room);
        let (dropped_tokens, dropped_text) = if all.len() > room {
            let start = encoding.get_offsets()[room].0;
            let tail = prompt.get(start..).unwrap_or_default().trim().to_string();
            (all.len() - room, tail)
        } else {
            (0, String::new())
        };
        let mut ids = Vec::with_capacity(CONTEXT_LENGTH);
        ids.push(self.bos);
        ids.extend(all[..kept].iter().map(|&id| i64::from(id)));
        ids.push(self.eos);
        ids.resize(CONTEXT_LENGTH, self.pad);
        Ok(Tokens {
            ids,
            dropped_tokens,
            dropped_text,
        })
    }
}
