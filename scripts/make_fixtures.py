"""Generate the reference fixtures for the Rust parity tests of `standpoint`.

What it makes (under ``--out``, default ``tests/fixtures``):

* ``tiny-bert/``, ``tiny-distilbert/``, ``tiny-roberta/``: three tiny, randomly
  initialised ``*ForSequenceClassification`` checkpoints (3 labels:
  against / neutral / favor), each as ``config.json`` + ``model.safetensors``
  (float32) + ``tokenizer.json``.  Every parameter (LayerNorm weights and
  biases, embeddings, pooler, classifier, ...) is perturbed with Gaussian
  noise, so that default values such as LN weight 1 / bias 0 cannot hide a
  loading or wiring mistake on the Rust side.
* ``expected/<model>.json``: what Hugging Face ``transformers`` computes for
  those checkpoints on fixed inputs (single texts, target/text pairs, and pairs
  whose text must be truncated): the token ids, the full padded
  ``last_hidden_state``, the ``pooled`` vector (the input of the final linear
  layer) and the ``logits``.
* ``expected/minilm.json``: token ids, unnormalised mean-pooled embeddings and
  ``sentence-transformers`` embeddings of the real all-MiniLM-L6-v2 encoder for
  ~20 fixed sentences.  The model itself is read from a local folder and is
  not copied into the repository; this part is skipped if the folder is absent.

Why: the Rust crate re-implements these encoders on candle; its tests load the
tiny checkpoints (and, when available, the real MiniLM folder) and compare
against the numbers recorded here.

How to run (from the repository root)::

    python -m venv venv && venv/bin/pip install -r scripts/requirements-fixtures.txt
    venv/bin/python scripts/make_fixtures.py [--out tests/fixtures] \\
        [--minilm ../shared/models/all-MiniLM-L6-v2]

The MiniLM folder defaults to ``$STANDPOINT_MINILM_DIR`` or
``../shared/models/all-MiniLM-L6-v2``.  Nothing is downloaded (the Hugging
Face hub is forced offline).  Seeds are fixed and the computation runs on one
CPU thread, so re-running the script with the pinned versions rewrites
byte-identical files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import tokenizers  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402
from tokenizers.implementations import ByteLevelBPETokenizer  # noqa: E402
from transformers import (  # noqa: E402
    AutoModel,
    AutoModelForSequenceClassification,
    BertConfig,
    BertForSequenceClassification,
    BertTokenizerFast,
    DistilBertConfig,
    DistilBertForSequenceClassification,
    DistilBertTokenizerFast,
    RobertaConfig,
    RobertaForSequenceClassification,
    RobertaTokenizerFast,
)

GENERATOR = "scripts/make_fixtures.py"
MAX_LENGTH = 64
HIDDEN = 32
LAYERS = 2
HEADS = 4
INTERMEDIATE = 37
SEED = 1234
NOISE_STD = 0.2
BPE_VOCAB_SIZE = 500
ID2LABEL = {0: "against", 1: "neutral", 2: "favor"}
LABEL2ID = {label: i for i, label in ID2LABEL.items()}
# The Rust side only reads these files from a checkpoint folder.
CHECKPOINT_FILES = {"config.json", "model.safetensors", "tokenizer.json"}
MINILM_MAX_SEQ_LENGTH = 256  # sentence-transformers' max_seq_length for all-MiniLM-L6-v2

# --------------------------------------------------------------------------
# Inputs
# --------------------------------------------------------------------------

SINGLES = [
    "NATO has refused practical cooperation.",
    "There is an objective need for political dialogue.",
    "Moscow said cooperation with the alliance has completely ended.",
    "Ceasefire",
    'The Kremlin\'s spokesman, Dmitry Peskov, called the EU\'s latest sanctions package "unacceptable" '
    "and warned of a firm response.",
]

PAIRS = [
    ("NATO", "The alliance will keep its door open to new members, the Secretary General said."),
    ("Russia", "Moscow accused Western governments of escalating tensions in the region."),
    ("the European Union", "Brussels approved a new aid package for Ukraine on Thursday."),
    ("China", "Beijing urged restraint!"),
    (
        "the United Nations",
        "The Security Council failed to adopt a resolution on the ceasefire, with two permanent "
        "members voting against it.",
    ),
]

TRUNCATED_PAIRS = [
    (
        "NATO",
        "Speaking after the meeting in Brussels, the Secretary General said that the alliance remained "
        "open to dialogue with Moscow, but that practical cooperation could not resume while Russian "
        "forces continued their military operations in Ukraine. He added that member states had agreed "
        "to increase support for Kyiv, to strengthen the defence of the eastern flank, and to keep "
        "channels of communication open in order to avoid dangerous incidents and misunderstandings. "
        "Several foreign ministers welcomed the decision, while others called for new talks.",
    ),
    (
        "Russia",
        "The foreign minister told reporters in Moscow that Russia had never refused political dialogue "
        "and was ready for serious negotiations on European security, provided that the legitimate "
        "interests of all parties were taken into account. At the same time, he accused Western "
        "governments of using sanctions, military aid and propaganda to prolong the conflict, and he "
        "warned that any further expansion of the alliance towards the Russian border would be met "
        "with a firm response. Officials in Washington dismissed the remarks as an attempt to divide "
        "the allies.",
    ),
    (
        "the European Union",
        "European Union leaders meeting in Brussels on Thursday approved a new package of sanctions "
        "and financial support, and said that the union would continue to stand with Ukraine for as "
        "long as necessary. The president of the commission called the agreement an important signal "
        "of unity, although two member states expressed concern about the economic cost of the "
        "measures and asked for more time to review the proposals before the next summit.",
    ),
]

MINILM_SENTENCES = [
    "NATO has refused practical cooperation.",
    "There is an objective need for political dialogue.",
    "Moscow said cooperation with the alliance has completely ended.",
    "Ceasefire.",
    "Lavrov’s remarks were dismissed in Brussels as “pure propaganda”.",
    "The European Union approved a new sanctions package on Thursday.",
    "Beijing urged all parties to exercise restraint and return to the negotiating table.",
    "Ukraine’s president thanked allies for their continued military and financial support.",
    "The UN Security Council failed to adopt a resolution on the humanitarian ceasefire.",
    "Officials met over coffee at a small café near the Élysée Palace to discuss the summit agenda.",
    "Washington announced additional air-defence systems for Kyiv.",
    "The talks in Geneva ended without agreement.",
    "Turkey offered to mediate between the two sides.",
    "Germany’s chancellor called for a diplomatic solution to the crisis.",
    "The alliance will keep its door open to new members, the Secretary General said.",
    "Moscow accused Western governments of escalating tensions in the region.",
    "Critics argue that the sanctions have hurt ordinary citizens more than the political elite, "
    "while supporters insist that sustained economic pressure is the only peaceful way to change "
    "the Kremlin's calculations and bring the war to an end.",
    "Peace!",
    "India abstained in the vote, citing its long-standing ties with Russia.",
    "The foreign ministers of the G7 issued a joint statement condemning the attack.",
]

# --------------------------------------------------------------------------
# Tokenizers
# --------------------------------------------------------------------------

SPECIAL_WORDPIECE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
PUNCTUATION = list(".,;:!?'\"-()")
# Whole words.  Deliberately missing (-> [UNK]): e.g. kremlin, dmitry, peskov,
# beijing, thursday, restraint, brussels.
WORDS = """
the a an and or of to in on at for with by from as that this there it its is was were be been
has have had will would could not never no new need objective political dialogue said says
nato russia russian moscow ukraine china european union united nations eu s
alliance cooperation practical completely ended refused called latest package warned firm response
keep door open members member secretary general accused western governments region aid
security council failed adopt resolution two permanent against voting all while but more
foreign minister ministers president leaders support military talks meeting state states
""".split()
# Pieces so that other words split into several tokens (e.g. cease ##fire,
# sanction ##s, escalat ##ing, tension ##s, un ##accept ##able).
STEMS = ["cease", "sanction", "escalat", "tension", "spoke", "un", "approv", "urg", "continu", "agree"]
SUFFIXES = ["##fire", "##s", "##ed", "##ing", "##e", "##sman", "##accept", "##able", "##ly", "##ment", "##al"]


def wordpiece_vocab() -> dict[str, int]:
    tokens = SPECIAL_WORDPIECE + PUNCTUATION + WORDS + STEMS + SUFFIXES
    assert len(tokens) == len(set(tokens)), "duplicate vocab entry"
    return {token: i for i, token in enumerate(tokens)}


def bpe_corpus() -> list[str]:
    texts = list(SINGLES)
    for cases in (PAIRS, TRUNCATED_PAIRS):
        for target, text in cases:
            texts += [target, text]
    return texts


def train_bpe_tokenizer() -> RobertaTokenizerFast:
    """Byte-level BPE trained on the fixture texts, wrapped as a RoBERTa tokenizer."""
    specials = ["<s>", "<pad>", "</s>", "<unk>", "<mask>"]
    bpe = ByteLevelBPETokenizer(add_prefix_space=False)
    bpe.train_from_iterator(bpe_corpus(), vocab_size=BPE_VOCAB_SIZE, min_frequency=2, special_tokens=specials,
                            show_progress=False)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(pair) for pair in model["merges"]]
    vocab = model["vocab"]
    assert [vocab[t] for t in specials] == [0, 1, 2, 3, 4]
    return RobertaTokenizerFast(vocab=vocab, merges=merges, add_prefix_space=False, trim_offsets=True,
                                model_max_length=MAX_LENGTH)


# --------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------


def perturb(model: torch.nn.Module) -> None:
    """Add N(0, NOISE_STD) to every parameter so no default value survives."""
    generator = torch.Generator().manual_seed(SEED)
    with torch.no_grad():
        for _, param in sorted(model.named_parameters()):
            param.add_(torch.randn(param.shape, generator=generator) * NOISE_STD)


def tiny_bert(vocab_size: int) -> BertForSequenceClassification:
    config = BertConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_LENGTH, type_vocab_size=2,
        hidden_act="gelu", layer_norm_eps=1e-12, pad_token_id=0,
        id2label=ID2LABEL, label2id=LABEL2ID,
    )
    return BertForSequenceClassification(config)


def tiny_distilbert(vocab_size: int) -> DistilBertForSequenceClassification:
    config = DistilBertConfig(
        vocab_size=vocab_size, dim=HIDDEN, n_layers=LAYERS, n_heads=HEADS, hidden_dim=INTERMEDIATE,
        max_position_embeddings=MAX_LENGTH, activation="gelu", sinusoidal_pos_embds=False, pad_token_id=0,
        id2label=ID2LABEL, label2id=LABEL2ID,
    )
    return DistilBertForSequenceClassification(config)


def tiny_roberta(vocab_size: int) -> RobertaForSequenceClassification:
    config = RobertaConfig(
        vocab_size=vocab_size, hidden_size=HIDDEN, num_hidden_layers=LAYERS, num_attention_heads=HEADS,
        intermediate_size=INTERMEDIATE, max_position_embeddings=MAX_LENGTH + 2, type_vocab_size=1,
        hidden_act="gelu", layer_norm_eps=1e-5, pad_token_id=1, bos_token_id=0, eos_token_id=2,
        id2label=ID2LABEL, label2id=LABEL2ID,
    )
    return RobertaForSequenceClassification(config)


def bert_forward(model, batch):
    out = model.bert(**batch)
    return out.last_hidden_state, out.pooler_output, model.classifier


def distilbert_forward(model, batch):
    hidden = model.distilbert(**batch).last_hidden_state
    pooled = torch.relu(model.pre_classifier(hidden[:, 0]))
    return hidden, pooled, model.classifier


def roberta_forward(model, batch):
    hidden = model.roberta(**batch).last_hidden_state
    pooled = torch.tanh(model.classifier.dense(hidden[:, 0]))
    return hidden, pooled, model.classifier.out_proj


KINDS = {
    # name: (tokenizer factory, model factory, forward returning (hidden, pooled, final linear))
    "tiny-bert": (lambda: BertTokenizerFast(vocab=wordpiece_vocab(), model_max_length=MAX_LENGTH),
                  tiny_bert, bert_forward),
    "tiny-distilbert": (lambda: DistilBertTokenizerFast(vocab=wordpiece_vocab(), model_max_length=MAX_LENGTH),
                        tiny_distilbert, distilbert_forward),
    "tiny-roberta": (train_bpe_tokenizer, tiny_roberta, roberta_forward),
}

# --------------------------------------------------------------------------
# Output helpers
# --------------------------------------------------------------------------


def floats(tensor) -> list:
    """Nested lists of the float32 values, each as its shortest round-trip decimal."""
    array = np.asarray(tensor, dtype=np.float32)
    if array.ndim == 0:
        return float(str(array))
    return [floats(row) for row in array]


def dump_json(obj, indent: int = 0) -> str:
    """JSON with one line per innermost list (readable, still compact)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(obj, dict):
        items = [f"{inner}{json.dumps(k)}: {dump_json(v, indent + 2)}" for k, v in obj.items()]
        return "{\n" + ",\n".join(items) + f"\n{pad}}}"
    if isinstance(obj, list) and any(isinstance(v, (list, dict)) for v in obj):
        items = [f"{inner}{dump_json(v, indent + 2)}" for v in obj]
        return "[\n" + ",\n".join(items) + f"\n{pad}]"
    return json.dumps(obj, ensure_ascii=False, separators=(", ", ": "))


def write_json(path: Path, obj) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dump_json(obj) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")


def header(name: str) -> dict:
    return {"model": name, "generator": GENERATOR, "torch": torch.__version__,
            "transformers": transformers.__version__}


# --------------------------------------------------------------------------
# Tiny checkpoints
# --------------------------------------------------------------------------


def save_checkpoint(model, tokenizer, folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.iterdir():
        stale.unlink()
    model.save_pretrained(folder, safe_serialization=True)
    tokenizer.save_pretrained(folder)
    for extra in folder.iterdir():
        if extra.name not in CHECKPOINT_FILES:
            extra.unlink()
    assert {p.name for p in folder.iterdir()} == CHECKPOINT_FILES


def encode_case(tokenizer, texts, targets, with_token_types: bool) -> dict:
    if targets is None:
        enc = tokenizer(texts, padding=True, truncation=True, max_length=MAX_LENGTH)
    else:
        enc = tokenizer(targets, texts, padding=True, truncation="only_second", max_length=MAX_LENGTH)
    ids = enc["input_ids"]
    token_types = enc["token_type_ids"] if with_token_types else [[0] * len(row) for row in ids]
    return {"input_ids": ids, "token_type_ids": token_types, "attention_mask": enc["attention_mask"]}


def check_plain_tokenizer(folder: Path, hf_tokenizer, case: dict, texts, targets) -> None:
    """The saved tokenizer.json alone (as the Rust `tokenizers` crate sees it) gives the same ids."""
    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    tok.enable_truncation(MAX_LENGTH, strategy="longest_first" if targets is None else "only_second")
    tok.enable_padding(pad_id=hf_tokenizer.pad_token_id, pad_token=hf_tokenizer.pad_token)
    encs = tok.encode_batch(texts if targets is None else list(zip(targets, texts)))
    assert [e.ids for e in encs] == case["input_ids"]
    assert [e.attention_mask for e in encs] == case["attention_mask"]


def make_tiny(name: str, out: Path) -> None:
    make_tokenizer, make_model, forward = KINDS[name]
    tokenizer = make_tokenizer()
    torch.manual_seed(SEED)
    model = make_model(len(tokenizer))
    perturb(model)
    folder = out / name
    save_checkpoint(model, tokenizer, folder)

    # Reference outputs come from the checkpoint as saved on disk.
    model = AutoModelForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32).eval()
    with_token_types = name == "tiny-bert"
    cases = []
    inputs = [
        ("singles", SINGLES, None),
        ("pairs", [t for _, t in PAIRS], [g for g, _ in PAIRS]),
        ("truncated_pairs", [t for _, t in TRUNCATED_PAIRS], [g for g, _ in TRUNCATED_PAIRS]),
    ]
    for case_name, texts, targets in inputs:
        case = encode_case(tokenizer, texts, targets, with_token_types)
        check_plain_tokenizer(folder, tokenizer, case, texts, targets)
        lengths = [sum(mask) for mask in case["attention_mask"]]
        if case_name == "truncated_pairs":
            full = [len(tokenizer(t, verbose=False)["input_ids"]) for t in texts]
            assert all(n > MAX_LENGTH for n in full) and set(lengths) == {MAX_LENGTH}, (full, lengths)
            print(f"  {name}: truncated texts have {full} tokens on their own")
        else:
            assert len(set(lengths)) > 1, f"{name}/{case_name}: no padding exercised"

        batch = {"input_ids": torch.tensor(case["input_ids"]),
                 "attention_mask": torch.tensor(case["attention_mask"])}
        if with_token_types:
            batch["token_type_ids"] = torch.tensor(case["token_type_ids"])
        with torch.no_grad():
            logits = model(**batch).logits
            hidden, pooled, final_linear = forward(model, batch)
            torch.testing.assert_close(final_linear(pooled), logits, rtol=0, atol=1e-6)
        probs = torch.softmax(logits, dim=-1)
        assert probs.max() < 0.99 and probs.min() > 0.01, f"{name}/{case_name}: saturated {probs}"

        cases.append({"name": case_name, "texts": texts, "targets": targets, **case,
                      "last_hidden_state": floats(hidden), "pooled": floats(pooled),
                      "logits": floats(logits)})
    write_json(out / "expected" / f"{name}.json", {**header(name), "max_length": MAX_LENGTH, "cases": cases})


# --------------------------------------------------------------------------
# Real encoder: all-MiniLM-L6-v2
# --------------------------------------------------------------------------


def load_sentence_transformer(folder: Path):
    """The ST pipeline from modules.json, or Transformer+Pooling(mean)+Normalize built explicitly.

    Returns the model and a note for the JSON saying which way it was built.
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    try:
        model = SentenceTransformer(str(folder), device="cpu")
        note = "SentenceTransformer(folder) loaded the pipeline from modules.json"
        if not (folder / "2_Normalize").is_dir():
            note += " (the folder has no 2_Normalize/ directory; Normalize() takes no files)"
    except Exception as err:  # e.g. a version that insists on the missing 2_Normalize/ folder
        transformer = Transformer(str(folder), max_seq_length=MINILM_MAX_SEQ_LENGTH)
        pooling = Pooling(transformer.get_embedding_dimension(), pooling_mode="mean")
        model = SentenceTransformer(modules=[transformer, pooling, Normalize()], device="cpu")
        note = (f"loading the pipeline from modules.json failed ({type(err).__name__}), so it was built "
                "explicitly as Transformer(max_seq_length=256) + Pooling(mean) + Normalize() "
                "(sentence_transformers modules) from the same folder")
    modules = [type(m).__name__ for m in model]
    assert modules == ["Transformer", "Pooling", "Normalize"], modules
    return model, note


def make_minilm(folder: Path, out: Path) -> None:
    import sentence_transformers

    tok = Tokenizer.from_file(str(folder / "tokenizer.json"))
    # The shipped tokenizer.json pads/truncates to 128; the ST pipeline uses 256 and no padding per text.
    tok.no_padding()
    tok.enable_truncation(MINILM_MAX_SEQ_LENGTH)
    input_ids = [tok.encode(s).ids for s in MINILM_SENTENCES]

    model = AutoModel.from_pretrained(folder, attn_implementation="eager", dtype=torch.float32).eval()
    mean_pooled = []
    with torch.no_grad():
        for ids in input_ids:
            ids_t = torch.tensor([ids])
            hidden = model(input_ids=ids_t, attention_mask=torch.ones_like(ids_t),
                           token_type_ids=torch.zeros_like(ids_t)).last_hidden_state[0]
            mean_pooled.append(hidden.mean(dim=0))
    mean_pooled = torch.stack(mean_pooled)

    st_model, note = load_sentence_transformer(folder)
    assert st_model.max_seq_length == MINILM_MAX_SEQ_LENGTH, st_model.max_seq_length
    st_features = st_model.preprocess(MINILM_SENTENCES)
    st_ids = [row[mask.bool()].tolist() for row, mask in zip(st_features["input_ids"],
                                                           st_features["attention_mask"])]
    assert st_ids == input_ids, "tokenizer.json and sentence-transformers disagree on token ids"
    st_embeddings = torch.from_numpy(st_model.encode(MINILM_SENTENCES, convert_to_numpy=True))
    normalised = torch.nn.functional.normalize(mean_pooled, dim=-1)
    torch.testing.assert_close(normalised, st_embeddings, rtol=0, atol=1e-5)

    write_json(out / "expected" / "minilm.json", {
        **header("all-MiniLM-L6-v2"),
        "sentence_transformers_version": sentence_transformers.__version__,
        "max_seq_length": MINILM_MAX_SEQ_LENGTH,
        "note": note,
        "sentences": MINILM_SENTENCES,
        "input_ids": input_ids,
        "mean_pooled": floats(mean_pooled),
        "sentence_transformers": floats(st_embeddings),
    })


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("tests/fixtures"))
    parser.add_argument("--minilm", type=Path, default=Path(os.environ.get(
        "STANDPOINT_MINILM_DIR", "../shared/models/all-MiniLM-L6-v2")))
    args = parser.parse_args()

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}, "
          f"tokenizers {tokenizers.__version__}")
    for name in KINDS:
        make_tiny(name, args.out)
    if (args.minilm / "config.json").is_file():
        make_minilm(args.minilm, args.out)
    else:
        print(f"skipping minilm.json: no model folder at {args.minilm} (set --minilm or STANDPOINT_MINILM_DIR)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
