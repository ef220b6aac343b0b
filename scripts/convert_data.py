#!/usr/bin/env python3
"""Convert the public stance and sentiment datasets into standpoint's labelled JSONL.

    python3 scripts/convert_data.py SOURCE_DIR OUT_DIR

SOURCE_DIR holds each dataset in its original repository layout (what
`scripts/fetch-data.sh` downloads). OUT_DIR receives `<dataset>-train.jsonl` and
`<dataset>-dev.jsonl` files, one JSON object per line:

    {"text": ..., "target": ..., "stance": "against|neutral|favor", "dataset": ...}
    {"text": ..., "sentiment": "negative|neutral|positive", "dataset": ...}
    {"text": ..., "relation": "hostile|neutral|cooperative", "dataset": ...}
    {"text": ..., "target": "HOLDER → TARGET", "mention": ..., "direction": "against|neutral|favor", "dataset": ...}

The last kind trains a directed head (`--head direction:directed`): the attitude the
sentence gives HOLDER toward TARGET, `neutral` when it gives that holder none. It comes from
the directed sentiment set (both directions of every entity pair: `directed-holder-*`) and
from the holders of the diplomatic sets (`diplomatic-holder-*`: the annotated holder toward
the target with the row's stance, every other actor of the sentence toward it `neutral`).

Datasets whose folder is missing are skipped with a message. Dev splits are carved
deterministically (hash of the post or sentence) where a dataset has none. Standard
library only, so it runs anywhere Python 3.8+ does.

The project's diplomatic sets (data/diplomatic/, labelled by data/STANCE_GUIDE.md) are
written too: `cameo-stance-{train,dev}.jsonl` joins the committed CAMEO annotations with
the sentences of SOURCE_DIR (refusing a row whose sentence hash does not match), and
`written-{train,dev}.jsonl`, `written-hard-{train,dev}.jsonl` and
`written-events-{train,dev}.jsonl` are the project's own sentences (the second batch aimed at
the hard cases of the guide, the third at event reports).
"""

import csv
import hashlib
import json
import re
import sys
from pathlib import Path

STANCE = {"against", "neutral", "favor"}


def carve_dev(key, percent):
    """True for about `percent`% of keys, the same keys on every run and machine."""
    digest = hashlib.sha256(key.encode("utf-8")).digest()
    return int.from_bytes(digest[:4], "big") % 100 < percent


def clean(text):
    return " ".join(text.split())


def write(out_dir, name, rows):
    path = out_dir / f"{name}.jsonl"
    tmp = path.with_suffix(".jsonl.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    tmp.replace(path)
    print(f"  {path.name}: {len(rows)} rows", file=sys.stderr)


def directed_target(holder, target):
    """The first segment of a directed head's pair, as standpoint's Query::directed writes it."""
    return f"{clean(holder)} → {clean(target)}"


def direction_row(dataset, text, holder, target, mention, direction):
    assert direction in STANCE, direction
    return {"text": clean(text), "target": directed_target(holder, target), "mention": clean(mention), "direction": direction, "dataset": dataset}


# Holders that are no actor: nothing expressed, or the text's own voice.
NOT_ACTORS = ("none", "author", "writer")


def holder_rows(rows):
    """Direction examples from stance rows with holders: per sentence, the annotated holder
    toward each target with the row's stance, every other actor of the sentence `neutral`."""
    by_text = {}
    for row in rows:
        by_text.setdefault(row["text"], []).append(row)
    out = []
    for text, group in by_text.items():
        actors = []
        for row in group:
            for name in (row["target"], row["holder"]):
                if name not in NOT_ACTORS and name not in actors:
                    actors.append(name)
        for row in group:
            holder = row["holder"] if row["stance"] != "neutral" else "none"
            for actor in actors:
                if actor == row["target"]:
                    continue
                direction = row["stance"] if actor == holder else "neutral"
                out.append(direction_row("diplomatic-holder", text, actor, row["target"], row["mention"], direction))
    return out


def stance_row(dataset, text, target, stance, **extra):
    assert stance in STANCE, stance
    return {"text": clean(text), "target": clean(target), "stance": stance, "dataset": dataset, **extra}


# NewsMTSC: sentiment toward a person mention -> stance toward that person.
def newsmtsc(src):
    root = src / "newsmtsc/NewsSentiment"
    polarity = {2.0: "against", 4.0: "neutral", 6.0: "favor"}

    def read(path):
        rows = []
        with open(path, encoding="utf-8") as f:
            for line in f:
                if not line.strip():
                    continue
                doc = json.loads(line)
                for t in doc["targets"]:
                    rows.append(stance_row("newsmtsc", doc["sentence_normalized"], t["mention"], polarity[float(t["polarity"])]))
        return rows

    out = {"newsmtsc-train": read(root / "controller_data/datasets/NewsMTSC-dataset/train.jsonl")}
    for variant in ("rw", "mt"):
        out[f"newsmtsc-{variant}-dev"] = read(root / f"experiments/default/datasets/newsmtsc-{variant}/dev.jsonl")
    return out


# TweetEval stance: five SemEval-2016 Task 6 targets, named as in the original task.
TWEETEVAL_TARGETS = {
    "abortion": "Legalization of Abortion",
    "atheism": "Atheism",
    "climate": "Climate Change is a Real Concern",
    "feminist": "Feminist Movement",
    "hillary": "Hillary Clinton",
}


def tweeteval_stance(src):
    root = src / "tweeteval/datasets/stance"
    labels = {"0": "neutral", "1": "against", "2": "favor"}
    out = {}
    for split, name in (("train", "train"), ("val", "dev")):
        rows = []
        for folder, target in TWEETEVAL_TARGETS.items():
            texts = (root / folder / f"{split}_text.txt").read_text(encoding="utf-8").splitlines()
            golds = (root / folder / f"{split}_labels.txt").read_text(encoding="utf-8").split()
            if len(texts) != len(golds):
                raise SystemExit(f"{root / folder}: {split} has {len(texts)} texts but {len(golds)} labels")
            rows += [stance_row("tweeteval-stance", t, target, labels[g]) for t, g in zip(texts, golds)]
        out[f"tweeteval-stance-{name}"] = rows
    return out


# VAST: NYT comments toward free-text topics. No dev split here: carve 10% by post.
def vast(src):
    labels = {"0": "against", "1": "favor", "2": "neutral"}
    train, dev = [], []
    with open(src / "vast/data/VAST/vast_train.csv", encoding="utf-8", newline="") as f:
        for r in csv.DictReader(f):
            row = stance_row("vast", r["post"], r["topic_str"], labels[r["label"]])
            (dev if carve_dev(r["post"], 10) else train).append(row)
    return {"vast-train": train, "vast-dev": dev}


# P-Stance: favor/against toward Trump, Biden, Sanders (no neutral class).
def pstance(src):
    root = src / "pstance/data/pstance"
    out = {}
    for split, name in (("train", "train"), ("val", "dev")):
        rows = []
        for who in ("trump", "biden", "bernie"):
            with open(root / f"raw_{split}_{who}.csv", encoding="utf-8", newline="") as f:
                for r in csv.DictReader(f):
                    rows.append(stance_row("pstance", r["Tweet"], r["Target"], r["Stance"].strip().lower()))
        out[f"pstance-{name}"] = rows
    return out


# RUW: one tweet, stance toward Russia and toward Ukraine (cp1252-encoded CSV).
def ruw(src):
    labels = {"AGAINST": "against", "FAVOR": "favor", "NONE": "neutral"}
    out = {}
    for split, name in (("train", "train"), ("val", "dev")):
        rows = []
        with open(src / f"ruw/raw_{split}_Russia_Ukraine.csv", encoding="cp1252", errors="replace", newline="") as f:
            for r in csv.DictReader(f):
                for i in ("1", "2"):
                    rows.append(stance_row("ruw", r["Tweet"], r[f"Target {i}"], labels[r[f"Stance {i}"].strip().upper()]))
        out[f"ruw-{name}"] = rows
    return out


# Directed sentiment: "[e1] ... [e2]" with the direction in the label. The receiver of
# the sentiment gets the stance; the brackets are removed (the model never sees them).
def directed_sentiment(src):
    root = src / "directed_sentiment/dataset"
    # label -> (receiver index, stance)
    labels = {"0": (1, "neutral"), "1": (1, "favor"), "2": (0, "favor"), "3": (1, "against"), "4": (0, "against")}
    bracket = re.compile(r"\[([^\[\]]*)\]")

    def entities(marked):
        """Plain sentence and the marked spans, widened to whole words (the source cuts some)."""
        plain, spans, last = [], [], 0
        for m in bracket.finditer(marked):
            plain.append(marked[last:m.start()])
            start = sum(map(len, plain))
            plain.append(m.group(1))
            last = m.end()
            spans.append(start)
        plain.append(marked[last:])
        text = "".join(plain)
        names = []
        for m, start in zip(bracket.finditer(marked), spans):
            end = start + len(m.group(1))
            while end < len(text) and text[end].isalnum():
                end += 1
            name = re.sub(r"(['’]s?)$", "", text[start:end]).strip()
            names.append(name)
        return text, names

    def read(path):
        rows = []
        with open(path, encoding="utf-8") as f:
            for n, line in enumerate(f, 1):
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) < 4:
                    continue
                text, names = entities(parts[0])
                if len(names) != 2 or not all(names):
                    continue
                receiver, stance = labels[parts[3].strip()]
                rows.append(stance_row("directed-sentiment", text, names[receiver], stance))
                # Both directions: the holder's attitude toward the receiver, none the other way.
                for holder in (0, 1):
                    target = 1 - holder
                    direction = stance if target == receiver and stance != "neutral" else "neutral"
                    directed.append(direction_row("directed-holder", text, names[holder], names[target], names[target], direction))
        return rows

    out = {}
    for split, file in (("train", "train.txt"), ("dev", "valid.txt")):
        directed = []
        out[f"directed-sentiment-{split}"] = read(root / file)
        out[f"directed-holder-{split}"] = directed
    return out


# CAMEO PentaClass event sentences -> a cooperation/conflict head. Label names are
# inferred from the examples (the source does not document them). Dev: 15% carved.
def cameo(src):
    relation = {"0": "neutral", "1": "cooperative", "2": "cooperative", "3": "hostile", "4": "hostile"}
    train, dev = [], []
    with open(src / "conflibert_cameo/data/cameo_class/train.tsv", encoding="utf-8", newline="") as f:
        for line in f:
            parts = line.rstrip("\r\n").split("\t")
            if len(parts) != 2:
                continue
            row = {"text": clean(parts[0]), "relation": relation[parts[1].strip()], "dataset": "cameo"}
            (dev if carve_dev(parts[0], 15) else train).append(row)
    return {"cameo-train": train, "cameo-dev": dev}


PROJECT_DATA = Path(__file__).resolve().parent.parent / "data" / "diplomatic"


def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def annotation_rows(path):
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, 1):
            if line.strip():
                try:
                    yield number, json.loads(line)
                except json.JSONDecodeError as e:
                    raise SystemExit(f"{path}:{number}: invalid JSON: {e}")


# Stance toward each actor of the CAMEO sentences, annotated by the project (the sentences
# stay in SOURCE_DIR; the annotations name file, line and the sentence's SHA-256).
def cameo_stance(src):
    path = PROJECT_DATA / "cameo-annotations.jsonl"
    sources = {}
    train, dev = [], []
    for number, row in annotation_rows(path):
        where = f"{path}:{number}"
        source = src / row["source"]
        if source not in sources:
            with open(source, encoding="utf-8", newline="") as f:
                sources[source] = [line.rstrip("\r\n").split("\t")[0] for line in f]
        lines = sources[source]
        if not 1 <= row["line"] <= len(lines):
            raise SystemExit(f"{where}: {row['source']} has no line {row['line']}")
        text = lines[row["line"] - 1]
        if sha256(text) != row["sha256"]:
            raise SystemExit(f"{where}: the text of {row['source']}:{row['line']} does not match its hash")
        if row["mention"] not in text:
            raise SystemExit(f"{where}: mention {row['mention']!r} is not in the sentence")
        if row["split"] != ("dev" if carve_dev(text, 15) else "train"):
            raise SystemExit(f"{where}: split {row['split']!r} differs from the carved one")
        out = stance_row("cameo-stance", text, row["target"], row["stance"], mention=row["mention"], holder=row["holder"])
        (dev if row["split"] == "dev" else train).append(out)
    return {"cameo-stance-train": train, "cameo-stance-dev": dev}


def written(_src):
    sets = {}
    for name in ("written", "written-hard", "written-events"):
        for split in ("train", "dev"):
            path = PROJECT_DATA / f"{name}-{split}.jsonl"
            rows = []
            for number, row in annotation_rows(path):
                if row["mention"] not in row["text"]:
                    raise SystemExit(f"{path}:{number}: mention {row['mention']!r} is not in the sentence")
                rows.append(stance_row(name, row["text"], row["target"], row["stance"], mention=row["mention"], holder=row["holder"]))
            sets[f"{name}-{split}"] = rows
    return sets


def normalise_tweet(text):
    text = re.sub(r"https?://\S+", "", text.lower())
    text = re.sub(r"@\w+", "@user", text)
    return " ".join(text.split())


# Sentence sentiment: the SemEval 2013-2016 pool minus TweetEval's validation tweets
# (TweetEval's sentiment dev split, which is the dev set here).
def sentiment(src):
    tweeteval = src / "tweeteval/datasets/sentiment"
    names = {"0": "negative", "1": "neutral", "2": "positive"}
    texts = (tweeteval / "val_text.txt").read_text(encoding="utf-8").splitlines()
    golds = (tweeteval / "val_labels.txt").read_text(encoding="utf-8").split()
    dev = [{"text": clean(t), "sentiment": names[g], "dataset": "tweeteval-sentiment"} for t, g in zip(texts, golds)]
    held = {normalise_tweet(t) for t in texts}

    train, seen = [], set()
    pool = src / "semeval2017_task4a/dataset/Subtask_A/downloaded"
    for path in sorted(pool.glob("*.tsv")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                parts = line.rstrip("\r\n").split("\t")
                if len(parts) < 3 or parts[1] not in ("positive", "neutral", "negative"):
                    continue
                key = normalise_tweet(parts[2])
                if not key or key in held or key in seen:
                    continue
                seen.add(key)
                train.append({"text": clean(parts[2]), "sentiment": parts[1], "dataset": "semeval2017"})
    return {"sentiment-train": train, "tweeteval-sentiment-dev": dev}


CONVERTERS = {
    "newsmtsc": newsmtsc,
    "tweeteval": tweeteval_stance,
    "vast": vast,
    "pstance": pstance,
    "ruw": ruw,
    "directed_sentiment": directed_sentiment,
    "conflibert_cameo": cameo,
    "semeval2017_task4a": sentiment,
}


def main():
    if len(sys.argv) != 3:
        raise SystemExit(__doc__)
    src, out = Path(sys.argv[1]), Path(sys.argv[2])
    out.mkdir(parents=True, exist_ok=True)
    for folder, convert in CONVERTERS.items():
        if not (src / folder).is_dir():
            print(f"{folder}: not found under {src}, skipped", file=sys.stderr)
            continue
        print(folder, file=sys.stderr)
        for name, rows in convert(src).items():
            write(out, name, rows)
    holders = {}
    for name, convert, needs in (("cameo stance", cameo_stance, "conflibert_cameo"), ("written", written, None)):
        if needs and not (src / needs).is_dir():
            continue
        if not PROJECT_DATA.is_dir():
            print(f"{PROJECT_DATA}: not found, {name} skipped", file=sys.stderr)
            continue
        print(name, file=sys.stderr)
        for file, rows in convert(src).items():
            write(out, file, rows)
            holders.setdefault(file.rsplit("-", 1)[1], []).extend(rows)
    for split, rows in holders.items():
        write(out, f"diplomatic-holder-{split}", holder_rows(rows))


if __name__ == "__main__":
    main()
