#!/usr/bin/env python3
"""The plain transformers fine-tune the default model is compared with (issue 18).

    python scripts/reference_finetune.py CONVERTED OUT [--base DIR] [--threads N]

CONVERTED is the output folder of scripts/convert_data.py. Two models, the plain settings:
`BertForSequenceClassification` from the same base encoder, AdamW lr 5e-5, weight decay 0.01
(not on biases and LayerNorm, as transformers' Trainer does), 6% linear warm-up then linear
decay, batch 32, max length 128, seed 42:

- stance: 2 epochs over the public stance mix, (target, sentence) pairs, drawn once with the
  per-file fractions of scripts/train-default.sh;
- sentiment: 1 epoch over 20,000 tweets drawn from sentiment-train.jsonl.

Each dev split is scored with its official metric on three-way predictions; OUT/scores.json and a
Markdown table (stdout) hold the results. Needs torch and transformers
(scripts/requirements-fixtures.txt).
"""

import argparse
import json
import math
import random
import sys
import time
from pathlib import Path

import torch
from transformers import AutoTokenizer, BertForSequenceClassification, get_linear_schedule_with_warmup

STANCE_MIX = [
    ("newsmtsc-train.jsonl", 1.0),
    ("tweeteval-stance-train.jsonl", 1.0),
    ("pstance-train.jsonl", 0.2),
    ("vast-train.jsonl", 0.12),
    ("ruw-train.jsonl", 0.35),
    ("directed-sentiment-train.jsonl", 0.15),
]
STANCE_LABELS = ["against", "favor", "neutral"]
SENTIMENT_LABELS = ["negative", "neutral", "positive"]
# (dev file, head, metric); diplomatic files are scored when present.
DEV = [
    ("tweeteval-stance-dev.jsonl", "stance", "favor_against_f1"),
    ("newsmtsc-rw-dev.jsonl", "stance", "macro_f1"),
    ("newsmtsc-mt-dev.jsonl", "stance", "macro_f1"),
    ("pstance-dev.jsonl", "stance", "per_target_favor_against_f1"),
    ("vast-dev.jsonl", "stance", "macro_f1"),
    ("ruw-dev.jsonl", "stance", "macro_f1"),
    ("directed-sentiment-dev.jsonl", "stance", "macro_f1"),
    ("cameo-stance-dev.jsonl", "stance", "macro_f1"),
    ("written-dev.jsonl", "stance", "macro_f1"),
    ("tweeteval-sentiment-dev.jsonl", "sentiment", "macro_recall"),
]


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def per_class(golds, preds, labels):
    scores = {}
    for label in labels:
        tp = sum(g == label and p == label for g, p in zip(golds, preds))
        fp = sum(g != label and p == label for g, p in zip(golds, preds))
        fn = sum(g == label and p != label for g, p in zip(golds, preds))
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        scores[label] = (precision, recall, f1)
    return scores


def metric(name, rows, preds, head, labels):
    golds = [r[head] for r in rows]
    if name == "macro_f1":
        return sum(s[2] for s in per_class(golds, preds, labels).values()) / len(labels)
    if name == "macro_recall":
        return sum(s[1] for s in per_class(golds, preds, labels).values()) / len(labels)
    if name == "favor_against_f1":
        s = per_class(golds, preds, labels)
        return (s["favor"][2] + s["against"][2]) / 2
    if name == "per_target_favor_against_f1":
        targets = sorted({r["target"] for r in rows})
        values = []
        for t in targets:
            idx = [i for i, r in enumerate(rows) if r["target"] == t]
            values.append(metric("favor_against_f1", [rows[i] for i in idx], [preds[i] for i in idx], head, labels))
        return sum(values) / len(values)
    raise ValueError(name)


def batches(examples, tokenizer, pair, shuffle, rng, batch_size=32):
    order = list(range(len(examples)))
    if shuffle:
        rng.shuffle(order)
    for start in range(0, len(order), batch_size):
        chunk = [examples[i] for i in order[start : start + batch_size]]
        texts = [e[0] for e in chunk]
        if pair:
            enc = tokenizer([e[2] for e in chunk], texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        else:
            enc = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        yield enc, torch.tensor([e[1] for e in chunk])


def fine_tune(base, examples, labels, epochs, pair, seed):
    torch.manual_seed(seed)
    rng = random.Random(seed)
    tokenizer = AutoTokenizer.from_pretrained(base)
    model = BertForSequenceClassification.from_pretrained(base, num_labels=len(labels))
    no_decay = ("bias", "LayerNorm.weight")
    groups = [
        {"params": [p for n, p in model.named_parameters() if not any(k in n for k in no_decay)], "weight_decay": 0.01},
        {"params": [p for n, p in model.named_parameters() if any(k in n for k in no_decay)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=5e-5)
    steps = epochs * math.ceil(len(examples) / 32)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.06 * steps), steps)
    model.train()
    done, started = 0, time.time()
    for epoch in range(epochs):
        for enc, y in batches(examples, tokenizer, pair, True, rng):
            loss = model(**enc, labels=y).loss
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
            done += 1
            if done % 50 == 0:
                rate = done * 32 / (time.time() - started)
                print(f"  step {done}/{steps} loss {loss.item():.4f} ({rate:.1f} ex/s)", file=sys.stderr, flush=True)
    model.eval()
    return tokenizer, model


@torch.no_grad()
def predict(tokenizer, model, rows, labels, pair):
    examples = [(r["text"], 0, r.get("target", "")) for r in rows]
    preds = []
    for enc, _ in batches(examples, tokenizer, pair, False, None, batch_size=64):
        preds.extend(labels[i] for i in model(**enc).logits.argmax(-1).tolist())
    return preds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("converted", type=Path)
    parser.add_argument("out", type=Path)
    parser.add_argument("--base", default="../shared/models/all-MiniLM-L6-v2")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    rng = random.Random(args.seed)

    stance = []
    for name, fraction in STANCE_MIX:
        rows = [r for r in read_jsonl(args.converted / name) if r.get("stance") in STANCE_LABELS]
        rows = rng.sample(rows, int(len(rows) * fraction)) if fraction < 1.0 else rows
        stance += [(r["text"], STANCE_LABELS.index(r["stance"]), r["target"]) for r in rows]
        print(f"{name}: {len(rows)} rows", file=sys.stderr)
    sentiment_rows = [r for r in read_jsonl(args.converted / "sentiment-train.jsonl") if r.get("sentiment")]
    sentiment = [(r["text"], SENTIMENT_LABELS.index(r["sentiment"]), "") for r in rng.sample(sentiment_rows, 20000)]

    models = {}
    started = time.time()
    print(f"stance: {len(stance)} examples x 2 epochs", file=sys.stderr)
    models["stance"] = (*fine_tune(args.base, stance, STANCE_LABELS, 2, True, args.seed), STANCE_LABELS, True)
    print(f"sentiment: {len(sentiment)} examples x 1 epoch", file=sys.stderr)
    models["sentiment"] = (*fine_tune(args.base, sentiment, SENTIMENT_LABELS, 1, False, args.seed), SENTIMENT_LABELS, False)
    train_seconds = time.time() - started

    scores = {}
    for name, head, metric_name in DEV:
        path = args.converted / name
        if not path.exists():
            continue
        rows = [r for r in read_jsonl(path) if r.get(head)]
        tokenizer, model, labels, pair = models[head]
        preds = predict(tokenizer, model, rows, labels, pair)
        scores[name] = {"head": head, "metric": metric_name, "score": metric(metric_name, rows, preds, head, labels), "rows": len(rows)}
        with open(args.out / name.replace(".jsonl", ".predictions.txt"), "w", encoding="utf-8") as f:
            f.write("\n".join(preds) + "\n")
    result = {
        "base": args.base,
        "stance_examples": len(stance),
        "sentiment_examples": len(sentiment),
        "train_seconds": round(train_seconds),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "scores": scores,
    }
    (args.out / "scores.json").write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    print("| dev file | metric | reference |")
    print("|---|---|---|")
    for name, s in scores.items():
        print(f"| `{name}` | {s['head']}.{s['metric']} | {100 * s['score']:.1f} |")


if __name__ == "__main__":
    main()
