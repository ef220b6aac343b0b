#!/usr/bin/env python3
"""Per-head label agreement of two `standpoint classify` outputs on the same input rows, and the
largest probability difference; exits 1 if any head agrees on fewer than MIN of the rows.
  compare-labels.py A.jsonl B.jsonl [MIN]     (MIN: a fraction, default 0 = report only)
"""
import json
import sys

a = [json.loads(line) for line in open(sys.argv[1])]
b = [json.loads(line) for line in open(sys.argv[2])]
least = float(sys.argv[3]) if len(sys.argv) > 3 else 0.0
if len(a) != len(b) or not a:
    sys.exit(f"{sys.argv[1]} has {len(a)} rows, {sys.argv[2]} has {len(b)}")
worst = 1.0
for head in a[0]["predictions"]:
    pairs = [(x["predictions"][head], y["predictions"][head]) for x, y in zip(a, b)]
    same = sum(p["label"] == q["label"] for p, q in pairs)
    moved = max(abs(p["probabilities"][k] - q["probabilities"][k]) for p, q in pairs for k in p["probabilities"])
    worst = min(worst, same / len(a))
    print(f"RESULT agreement head={head} {same}/{len(a)} = {same / len(a):.4f} max_probability_diff={moved:.3f}")
sys.exit(0 if worst >= least else 1)
