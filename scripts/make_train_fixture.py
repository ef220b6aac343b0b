"""Generate the reference for ONE training step of the Rust trainer of `standpoint`.

What it makes (under ``tests/fixtures/expected/``):

* ``tiny-bert-train-step.json``: the batch used (the ``pairs`` case of
  ``expected/tiny-bert.json`` with gold labels ``[0, 2, 1, 0, 2]``), the
  optimiser settings, and for each scenario the loss, the total gradient L2
  norm *before* clipping, the clipping coefficient, the name of the weights
  file, and the few "unstable" elements that no float32 implementation can be
  expected to reproduce (see below).
* ``tiny-bert-train-step.<scenario>.safetensors``: every parameter of the tiny
  BERT checkpoint after the step (float32, exactly the tensor names of
  ``tests/fixtures/tiny-bert/model.safetensors``).

The step, for the committed checkpoint ``tests/fixtures/tiny-bert/`` loaded with
``BertForSequenceClassification.from_pretrained(..., attn_implementation="eager")``
and kept in ``eval()`` mode (dropout off; gradients still flow):

1. forward on the 5-row batch, loss (see below), backward;
2. total gradient L2 norm over all parameters, then
   ``torch.nn.utils.clip_grad_norm_(params, max_norm)`` (which multiplies every
   gradient by ``min(1, max_norm / (total_norm + 1e-6))``);
3. one ``torch.optim.AdamW`` step (lr 1e-3, betas (0.9, 0.999), eps 1e-8, no
   amsgrad, constant lr) with two parameter groups: weight decay 0.01 for every
   parameter whose name neither ends in ``bias`` nor contains ``LayerNorm``,
   0.0 for the others.

Scenarios (each starts again from the checkpoint on disk):

* ``plain``: ``cross_entropy(logits, labels)``, mean over the batch;
* ``weighted_smoothed``: ``cross_entropy(logits, labels, weight=[0.5, 1, 2],
  label_smoothing=0.1)``; the JSON spells out how PyTorch combines the two
  (checked here against a by-hand recomputation from ``log_softmax``);
* ``masked``: the cross-entropy over rows 0, 2, 3 only (rows 1 and 4 count as
  unlabelled), mean over those rows.

Why: the Rust trainer re-implements the loss, the gradient clipping and AdamW
on candle; its tests run the same step from the same checkpoint and compare
the loss and every updated weight with these numbers (tolerance 1e-5).

Caveats, checked and recorded by the script:

* AdamW's first step moves an element by ``lr * g / (|g| + eps)``, whatever
  the scale of ``g``.  Where the clipped gradient is not well above ``eps`` the
  move follows float32 rounding noise: above all the attention *key* biases,
  whose exact gradient is 0 (softmax ignores a shift shared by all keys) but
  whose float32 gradient is ~1e-10 of noise, moved by up to ~1e-4.  The script
  reruns each step in float64 and lists those elements per scenario under
  ``unstable`` (skip them, or only check ``|after - before| <= lr * (1 +
  weight_decay * |before|)``); every other element agrees with float64 to
  ~6e-8.
* For the same reason clipping barely shows in the weights (< 1e-5 on the
  stable elements, recorded as ``max_abs_diff_without_clipping``): a test
  that wants to prove clipping should check ``grad_norm`` / ``clip_coef``, or
  compare the stable weights more tightly than that gap.

How to run (from the repository root, with the pinned versions of
``scripts/requirements-fixtures.txt``)::

    /work/venv/bin/python scripts/make_train_fixture.py

Nothing is downloaded (the Hugging Face hub is forced offline).  Everything
runs on one CPU thread with deterministic algorithms (float32, plus the
float64 cross-check), so re-running the script rewrites byte-identical files.  It only reads the existing fixtures
(it never rewrites them; ``scripts/make_fixtures.py`` owns those).
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
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import save_file  # noqa: E402
from transformers import BertForSequenceClassification  # noqa: E402

from make_fixtures import dump_json  # noqa: E402  (same folder: one JSON layout for all fixtures)

GENERATOR = "scripts/make_train_fixture.py"
MODEL = "tiny-bert"
CASE = "pairs"
LABELS = [0, 2, 1, 0, 2]
LR = 1e-3
BETAS = (0.9, 0.999)
EPS = 1e-8
WEIGHT_DECAY = 0.01
NO_DECAY = "names ending in bias or containing LayerNorm"
# Lowered (1.0 -> 0.1 -> 0.01) until clipping triggers in every scenario.
MAX_NORM_CANDIDATES = (1.0, 0.1, 0.01)
CLASS_WEIGHTS = [0.5, 1.0, 2.0]
LABEL_SMOOTHING = 0.1
MASKED_ROWS = [0, 2, 3]
MIN_CLASSIFIER_UPDATE = 1e-4
LOSS_CHECK_ATOL = 1e-7
# An element is "unstable" when its clipped float64 gradient is below this (and not exactly 0 in
# both precisions): there AdamW's first step lr * g / (|g| + eps) amplifies float32 rounding of g.
UNSTABLE_GRAD = 1e-6
UNSTABLE_RULE = (
    "per scenario, 'unstable' lists (row-major flat indices per tensor) the elements whose clipped gradient "
    "is below 1e-6 in a float64 rerun of the same step and not exactly 0 in both float32 and float64. "
    "AdamW's first step moves an element by lr * g / (|g| + eps) (plus the decay), so for these the "
    "update follows float32 rounding noise (the attention key biases have an exact gradient of 0) and "
    "cannot be reproduced to 1e-5; only |after - before| <= lr * (1 + weight_decay * |before|) holds. "
    "Every other element agrees with the float64 rerun within 'max_abs_diff_vs_float64'; "
    "'max_abs_diff_without_clipping' is how far those elements move if clipping is skipped"
)
WEIGHTED_SMOOTHED_FORMULA = (
    "lp = log_softmax(logits); W = sum_i w[y_i]; "
    "loss = (1 - s) * sum_i(-w[y_i] * lp[i, y_i]) / W "
    "+ (s / C) * sum_i sum_c(-w[c] * lp[i, c]) / W "
    "(s = label_smoothing, C = number of classes, w = class weights, y = gold labels; both terms are "
    "divided by the summed weight of the gold labels, not by the batch size)"
)


# --------------------------------------------------------------------------
# Output helpers (same float formatting as make_fixtures.py)
# --------------------------------------------------------------------------


def f32(value) -> float:
    """A float32 value as its shortest round-trip decimal."""
    return float(str(np.float32(value)))


def plain_loss(logits, labels):
    loss = F.cross_entropy(logits, labels)
    lp = torch.log_softmax(logits.detach().double(), dim=-1)
    by_hand = -lp[torch.arange(len(labels)), labels].mean()
    assert abs(loss.item() - by_hand.item()) <= LOSS_CHECK_ATOL, (loss.item(), by_hand.item())
    return loss


_REPORTED: set[str] = set()


def weighted_smoothed_loss(logits, labels):
    weight = torch.tensor(CLASS_WEIGHTS, dtype=logits.dtype)
    loss = F.cross_entropy(logits, labels, weight=weight, label_smoothing=LABEL_SMOOTHING)

    # By hand (float64 from the float32 logits), as written in WEIGHTED_SMOOTHED_FORMULA.
    lp = torch.log_softmax(logits.detach().double(), dim=-1)
    w = weight.double()
    s, n_classes = LABEL_SMOOTHING, logits.shape[-1]
    rows = torch.arange(len(labels))
    gold_w = w[labels]
    nll = (-gold_w * lp[rows, labels]).sum() / gold_w.sum()
    smooth = (-(lp * w).sum(dim=-1)).sum() / gold_w.sum()
    by_hand = (1 - s) * nll + s / n_classes * smooth
    assert abs(loss.item() - by_hand.item()) <= LOSS_CHECK_ATOL, (loss.item(), by_hand.item())

    # Plausible alternatives PyTorch does NOT use must be told apart at this tolerance.
    alternatives = {
        "smoothing term divided by the batch size":
            (1 - s) * nll + s / n_classes * smooth * gold_w.sum() / len(labels),
        "unweighted smoothing term (mean over rows)": (1 - s) * nll + s / n_classes * (-lp.sum(-1)).mean(),
        "smoothed target distribution, gold-label weight per row": (
            -((((1 - s) * F.one_hot(labels, n_classes).double() + s / n_classes) * lp).sum(-1) * gold_w).sum()
            / gold_w.sum()
        ),
    }
    for name, value in alternatives.items():
        gap = abs(loss.item() - value.item())
        if name not in _REPORTED:
            _REPORTED.add(name)
            print(f"    weighted_smoothed: alternative '{name}' would be off by {gap:.3g}")
        assert gap > 1e-4, name
    return loss


def masked_loss(logits, labels):
    rows = torch.tensor(MASKED_ROWS)
    loss = F.cross_entropy(logits[rows], labels[rows])
    lp = torch.log_softmax(logits.detach().double(), dim=-1)
    by_hand = -lp[rows, labels[rows]].mean()
    assert abs(loss.item() - by_hand.item()) <= LOSS_CHECK_ATOL, (loss.item(), by_hand.item())
    return loss


SCENARIOS = {
    "plain": (plain_loss, {}),
    "weighted_smoothed": (weighted_smoothed_loss, {
        "class_weights": CLASS_WEIGHTS, "label_smoothing": LABEL_SMOOTHING,
        "formula": WEIGHTED_SMOOTHED_FORMULA}),
    "masked": (masked_loss, {"rows": MASKED_ROWS}),
}

# --------------------------------------------------------------------------
# The step
# --------------------------------------------------------------------------


def load_batch(expected: Path) -> dict:
    cases = json.loads(expected.read_text(encoding="utf-8"))["cases"]
    (case,) = [c for c in cases if c["name"] == CASE]
    batch = {k: torch.tensor(case[k]) for k in ("input_ids", "token_type_ids", "attention_mask")}
    assert batch["input_ids"].shape[0] == len(LABELS)
    return batch


def load_model(folder: Path) -> BertForSequenceClassification:
    model = BertForSequenceClassification.from_pretrained(
        folder, attn_implementation="eager", dtype=torch.float32).eval()
    for param in model.parameters():
        param.requires_grad_(True)
    return model


def is_no_decay(name: str) -> bool:
    return name.endswith("bias") or "LayerNorm" in name


def forward_backward(folder: Path, batch: dict, loss_fn, dtype=torch.float32):
    model = load_model(folder).to(dtype)
    assert not model.training
    logits = model(**batch).logits
    loss = loss_fn(logits, torch.tensor(LABELS))
    loss.backward()
    return model, loss


def train_step(folder: Path, batch: dict, loss_fn, max_norm: float, dtype=torch.float32):
    """One step (max_norm None: no clipping).

    Returns (loss, grad norm before clipping, clip coefficient, {name: weight before},
    {name: gradient after clipping}, {name: weight after}).
    """
    model, loss = forward_backward(folder, batch, loss_fn, dtype)
    named = list(model.named_parameters())
    params = [p for _, p in named]
    assert all(p.grad is not None for p in params)
    before = {name: p.detach().clone() for name, p in named}

    norm = torch.nn.utils.get_total_norm([p.grad for p in params], norm_type=2.0, foreach=False)
    if max_norm is None:
        coef = 1.0
    else:
        returned = torch.nn.utils.clip_grad_norm_(params, max_norm=max_norm, norm_type=2.0, foreach=False)
        assert torch.equal(norm, returned)
        coef = min(1.0, max_norm / (norm.item() + 1e-6))
    grads = {name: p.grad.detach().clone() for name, p in named}

    groups = [
        {"params": [p for n, p in named if not is_no_decay(n)], "weight_decay": WEIGHT_DECAY},
        {"params": [p for n, p in named if is_no_decay(n)], "weight_decay": 0.0},
    ]
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=BETAS, eps=EPS, amsgrad=False, foreach=False,
                                  fused=False)
    optimizer.step()
    after = {name: p.detach().clone().contiguous() for name, p in named}
    return loss.item(), norm.item(), coef, before, grads, after


def choose_max_norm(folder: Path, batch: dict) -> float:
    norms = {}
    for name, (loss_fn, _) in SCENARIOS.items():
        model, _ = forward_backward(folder, batch, loss_fn)
        norms[name] = torch.nn.utils.get_total_norm([p.grad for p in model.parameters()], foreach=False).item()
    for max_norm in MAX_NORM_CANDIDATES:
        if all(n > max_norm for n in norms.values()):
            print(f"  grad norms before clipping: {norms}; max_norm {max_norm} clips all of them")
            return max_norm
    raise SystemExit(f"no max_norm candidate clips every scenario: {norms}")


def unstable_elements(grads32: dict, grads64: dict) -> dict:
    """{name: [flat indices]} of the elements whose update float32 rounding decides.

    At step 1, AdamW moves an element by lr * g / (|g| + eps) (plus the decay), so where the clipped
    gradient g is not well above eps the update follows the last bits of g.  The attention key
    biases are the main case: their exact gradient is 0 (softmax ignores a shift shared by all keys),
    so float32 leaves only rounding noise (~1e-10), which AdamW turns into moves of up to ~1e-4.
    Exact zeros in both precisions (e.g. embedding rows the batch does not use) are stable.
    """
    unstable = {}
    for name in sorted(grads32):
        g32, g64 = grads32[name].flatten(), grads64[name].flatten()
        both_zero = (g32 == 0) & (g64 == 0)
        mask = (g64.abs() < UNSTABLE_GRAD) & ~both_zero
        if mask.any():
            unstable[name] = torch.nonzero(mask).flatten().tolist()
    return unstable


def stable_max_diff(a: dict, b: dict, unstable: dict) -> float:
    worst = 0.0
    for name in a:
        diff = (a[name].double() - b[name].double()).abs().flatten()
        if name in unstable:
            diff[unstable[name]] = 0.0
        worst = max(worst, diff.max().item())
    return worst


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--fixtures", type=Path, default=Path("tests/fixtures"))
    args = parser.parse_args()

    transformers.utils.logging.disable_progress_bar()
    torch.set_num_threads(1)
    torch.use_deterministic_algorithms(True)
    print(f"torch {torch.__version__}, transformers {transformers.__version__}")

    folder = args.fixtures / MODEL
    out = args.fixtures / "expected"
    with safe_open(folder / "model.safetensors", "pt") as f:
        names = set(f.keys())
    batch = load_batch(out / f"{MODEL}.json")
    max_norm = choose_max_norm(folder, batch)

    scenarios = {}
    for name, (loss_fn, extra) in SCENARIOS.items():
        loss, norm, coef, before, grads, after = train_step(folder, batch, loss_fn, max_norm)
        assert set(after) == names, sorted(set(after) ^ names)
        assert all(t.dtype == torch.float32 for t in after.values())
        assert norm > max_norm and coef < 1.0, (name, norm, max_norm)

        # The same step in float64 tells which elements float32 can reproduce at all.
        loss64, norm64, _, _, grads64, after64 = train_step(folder, batch, loss_fn, max_norm, torch.float64)
        unstable = unstable_elements(grads, grads64)
        gap64 = stable_max_diff(after, after64, unstable)
        assert gap64 < 1e-6, (name, gap64)
        # Adam's first step is (nearly) invariant to the gradient scale, so clipping shows in the
        # weights only through eps: the weights cannot prove that clipping happened.
        unclipped = train_step(folder, batch, loss_fn, None)[-1]
        gap_clip = stable_max_diff(after, unclipped, unstable)

        updates = {n: (after[n] - before[n]).abs().max().item() for n in names}
        biggest = max(updates, key=updates.get)
        cls_update = updates["classifier.weight"]
        print(f"  {name}: loss {f32(loss)} (float64 {loss64:.9g}), grad norm {f32(norm)} (float64 {norm64:.9g}), "
              f"clip coef {coef:.6g}")
        print(f"    max |update| {updates[biggest]:.3g} ({biggest}), classifier.weight {cls_update:.3g}")
        print(f"    unstable elements: { {n: len(i) for n, i in unstable.items()} }")
        print(f"    stable elements: max |float32 - float64| {gap64:.3g}, "
              f"max |clipped - not clipped| {gap_clip:.3g}")
        assert cls_update > MIN_CLASSIFIER_UPDATE, (name, cls_update)
        for n, indices in unstable.items():
            moved = (after[n] - before[n]).flatten()[indices].abs()
            bound = LR * (1 + WEIGHT_DECAY * before[n].flatten()[indices].abs())
            assert (moved <= bound).all(), (name, n)

        weights_file = f"{MODEL}-train-step.{name}.safetensors"
        save_file({n: after[n] for n in sorted(names)}, out / weights_file, metadata={"format": "pt"})
        print(f"wrote {out / weights_file} ({(out / weights_file).stat().st_size} bytes)")
        scenarios[name] = {"loss": f32(loss), "grad_norm": f32(norm), "clip_coef": f32(coef),
                           "weights": weights_file, **extra,
                           "max_abs_update": f32(updates[biggest]),
                           "max_abs_diff_vs_float64": f32(gap64),
                           "max_abs_diff_without_clipping": f32(gap_clip),
                           "unstable": unstable}

    result = {
        "generator": GENERATOR, "torch": torch.__version__, "transformers": transformers.__version__,
        "model": MODEL, "case": CASE, "labels": LABELS,
        "optimizer": {"lr": LR, "betas": list(BETAS), "eps": EPS, "weight_decay": WEIGHT_DECAY,
                      "no_decay": NO_DECAY},
        "max_grad_norm": max_norm,
        "clipping": "every gradient *= min(1, max_grad_norm / (grad_norm + 1e-6)); grad_norm is the L2 norm "
                    "over all parameters before clipping",
        "unstable_rule": UNSTABLE_RULE,
        "scenarios": scenarios,
    }
    path = out / f"{MODEL}-train-step.json"
    path.write_text(dump_json(result) + "\n", encoding="utf-8")
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
