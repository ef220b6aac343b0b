#!/usr/bin/env python3
"""Score a model's holder choice (its directed head) against a first-mentioned baseline.

    python3 scripts/eval_holder.py CONVERTED MODEL [--bin target/release/standpoint] [--json OUT]

CONVERTED is the output of scripts/convert_data.py. Two dev sets:

- directed-holder-dev.jsonl (directed sentiment, political news): each entity pair as two
  rows, first-mentioned holder first. Holder accuracy: over the pairs with a gold direction,
  how often the model's holder (the direction whose probability of the gold polarity is
  higher) is the gold one. Directed label: the source's five classes (none, e1 favors e2,
  e2 favors e1, e1 against e2, e2 against e1), macro-F1; the model takes the direction whose
  non-neutral probability is higher, `none` when both directions read neutral. Baseline: the
  first-mentioned entity always holds, with the stance head's label toward the other one.
- diplomatic-holder-dev.jsonl (the project's diplomatic sets): per (sentence, target) with an
  actor holder, the candidates are the sentence's other actors; holder accuracy of the model
  (highest probability of the gold stance) and of the first-mentioned candidate.

Standard library only; the model runs through `standpoint classify` (queries with `holder`).
"""

import argparse
import json
import subprocess
import sys
from pathlib import Path

ARROW = " → "


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def classify(binary, model, queries):
    """Predictions of every head for each query (dicts with text, target, holder?)."""
    lines = "".join(json.dumps(q, ensure_ascii=False) + "\n" for q in queries)
    done = subprocess.run(
        [binary, "classify", "--model", str(model), "-i", "-"],
        input=lines.encode("utf-8"),
        capture_output=True,
        check=False,
    )
    if done.returncode != 0:
        raise SystemExit(f"standpoint classify failed: {done.stderr.decode(errors='replace')}")
    out = [json.loads(line) for line in done.stdout.decode("utf-8").splitlines()]
    assert len(out) == len(queries)
    return [row["predictions"] for row in out]


def macro_f1(gold, predicted, labels):
    scores = []
    for label in labels:
        tp = sum(1 for g, p in zip(gold, predicted) if g == label and p == label)
        fp = sum(1 for g, p in zip(gold, predicted) if g != label and p == label)
        fn = sum(1 for g, p in zip(gold, predicted) if g == label and p != label)
        precision = tp / (tp + fp) if tp + fp else 0.0
        recall = tp / (tp + fn) if tp + fn else 0.0
        scores.append(2 * precision * recall / (precision + recall) if precision + recall else 0.0)
    return sum(scores) / len(scores)


def split_target(row):
    holder, target = row["target"].split(ARROW, 1)
    return holder, target


def directed_label(direction, polarity):
    """The source's classes: 0 none, 1 e1 favor e2, 2 e2 favor e1, 3 e1 against e2, 4 e2 against e1."""
    if polarity == "neutral":
        return 0
    return {("e1", "favor"): 1, ("e2", "favor"): 2, ("e1", "against"): 3, ("e2", "against"): 4}[(direction, polarity)]


def directed(binary, model, rows):
    pairs = [(rows[i], rows[i + 1]) for i in range(0, len(rows), 2)]
    queries = []
    for forward, backward in pairs:
        e1, e2 = split_target(forward)
        assert split_target(backward) == (e2, e1), "rows come in pairs, first-mentioned holder first"
        queries.append({"text": forward["text"], "target": e2, "holder": e1})
        queries.append({"text": forward["text"], "target": e1, "holder": e2})
        queries.append({"text": forward["text"], "target": e2})
    predictions = classify(binary, model, queries)
    gold, model_labels, base_labels = [], [], []
    holder_right = holder_base = held = 0
    for k, (forward, backward) in enumerate(pairs):
        p12, p21, stance = (predictions[3 * k + j] for j in range(3))
        p12, p21 = p12["direction"]["probabilities"], p21["direction"]["probabilities"]
        if forward["direction"] != "neutral":
            g = directed_label("e1", forward["direction"])
        else:
            g = directed_label("e2", backward["direction"])
        gold.append(g)
        if g:
            held += 1
            polarity = forward["direction"] if g in (1, 3) else backward["direction"]
            chose_e1 = p12[polarity] >= p21[polarity]
            holder_right += chose_e1 == (g in (1, 3))
            holder_base += g in (1, 3)
        n12, n21 = 1 - p12["neutral"], 1 - p21["neutral"]
        if max(n12, n21) < 0.5:
            model_labels.append(0)
        elif n12 >= n21:
            model_labels.append(directed_label("e1", max(("against", "favor"), key=lambda l: p12[l])))
        else:
            model_labels.append(directed_label("e2", max(("against", "favor"), key=lambda l: p21[l])))
        base_labels.append(directed_label("e1", stance["stance"]["label"]))
    classes = [0, 1, 2, 3, 4]
    return {
        "pairs": len(pairs),
        "pairs_with_direction": held,
        "holder_accuracy": holder_right / held,
        "holder_accuracy_first_mentioned": holder_base / held,
        "directed_macro_f1": macro_f1(gold, model_labels, classes),
        "directed_macro_f1_first_mentioned": macro_f1(gold, base_labels, classes),
    }


def diplomatic(binary, model, rows):
    mentions = {}
    for row in rows:
        _, target = split_target(row)
        mentions.setdefault(row["text"], {})[target] = row["mention"]
    groups = {}
    for row in rows:
        holder, target = split_target(row)
        groups.setdefault((row["text"], target), []).append((holder, row["direction"]))
    cases = [(key, c) for key, c in groups.items() if any(d != "neutral" for _, d in c)]
    queries = [{"text": text, "target": target, "holder": h} for (text, target), c in cases for h, _ in c]
    predictions = iter(classify(binary, model, queries))
    right = base = confident = 0
    for (text, target), candidates in cases:
        gold, stance = next((h, d) for h, d in candidates if d != "neutral")
        scored = [(next(predictions)["direction"]["probabilities"][stance], h) for h, _ in candidates]
        best_p, best = max(scored)
        right += best == gold
        confident += best == gold and best_p >= 0.5

        def position(actor):
            for words in (mentions[text].get(actor), actor):
                if words and words in text:
                    return text.index(words)
            return len(text)

        base += min((h for h, _ in candidates), key=position) == gold
    return {
        "cases": len(cases),
        "holder_accuracy": right / len(cases),
        "holder_accuracy_above_threshold": confident / len(cases),
        "holder_accuracy_first_mentioned": base / len(cases),
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("converted", type=Path)
    parser.add_argument("model", type=Path)
    parser.add_argument("--bin", default="target/release/standpoint")
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    report = {
        "directed-holder-dev": directed(args.bin, args.model, read_jsonl(args.converted / "directed-holder-dev.jsonl")),
        "diplomatic-holder-dev": diplomatic(args.bin, args.model, read_jsonl(args.converted / "diplomatic-holder-dev.jsonl")),
    }
    text = json.dumps(report, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
