#!/usr/bin/env python3
"""Agreement between the first and the blind second labelling of a double-labelled sample.

    python3 scripts/agreement.py data/diplomatic/agreement/*.jsonl

Each row holds `first` (the annotator's label), `second` (the blind second label) and
`settled` (the label the guide decides, which the dataset carries). Prints, per file, the
pairs, raw agreement, Cohen's kappa and the confusion of first (rows) by second (columns).
Standard library only.
"""

import json
import sys
from collections import Counter

LABELS = ["against", "favor", "neutral"]


def kappa(pairs):
    n = len(pairs)
    observed = sum(a == b for a, b in pairs) / n
    first = Counter(a for a, _ in pairs)
    second = Counter(b for _, b in pairs)
    expected = sum(first[label] * second[label] for label in LABELS) / (n * n)
    return observed, (observed - expected) / (1 - expected)


def main():
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    for path in sys.argv[1:]:
        pairs = []
        with open(path, encoding="utf-8") as f:
            for number, line in enumerate(f, 1):
                if not line.strip():
                    continue
                row = json.loads(line)
                for key in ("first", "second", "settled"):
                    if row.get(key) not in LABELS:
                        raise SystemExit(f"{path}:{number}: {key} is {row.get(key)!r}, not one of {LABELS}")
                pairs.append((row["first"], row["second"]))
        observed, k = kappa(pairs)
        print(f"{path}: {len(pairs)} pairs, agreement {100 * observed:.1f}%, Cohen's kappa {k:.3f}")
        confusion = Counter(pairs)
        print("  first \\ second " + " ".join(f"{label:>8}" for label in LABELS))
        for a in LABELS:
            print(f"  {a:>14} " + " ".join(f"{confusion[(a, b)]:>8}" for b in LABELS))


if __name__ == "__main__":
    main()
