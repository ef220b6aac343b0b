#!/usr/bin/env python3
"""PyTorch on one device (a GPU, or the CPU when testing the script) beside standpoint's
`cargo bench --bench infer|train -- --device ...`, same protocol as ../shared/bench/bench_torch.py:
all-MiniLM-L6-v2 + BertForSequenceClassification(num_labels=3), corpus tokenised once up front,
batches sorted by length with dynamic padding, median of --runs passes after a warm-up; training
AdamW (lr 2e-5, wd 0.01), batch 32 in corpus order, labels i % 3, max length 128, 3 warm-up steps,
then the mean over --steps steps. Prints RESULT lines.

  bench_torch_device.py --device cuda --dtype f32,bf16 --bs 32,64,128,256 [--model DIR] [--corpus FILE]
"""
import argparse
import statistics
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default="../shared/models/all-MiniLM-L6-v2")
    ap.add_argument("--corpus", default="../shared/bench/corpus.txt")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="f32,bf16")
    ap.add_argument("--bs", default="32,64,128,256")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--n", type=int, default=2048)
    ap.add_argument("--skip-train", action="store_true")
    a = ap.parse_args()

    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    device = torch.device(a.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    tok = AutoTokenizer.from_pretrained(a.model)
    with open(a.corpus) as f:
        sents = [l.rstrip("\n") for l in f if l.strip()][: a.n]
    toks = tok(sents, truncation=True, max_length=128, padding=False)["input_ids"]
    order = sorted(range(len(toks)), key=lambda i: len(toks[i]))

    def pad(seqs):
        width = max(len(s) for s in seqs)
        ids = torch.zeros((len(seqs), width), dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for i, s in enumerate(seqs):
            ids[i, : len(s)] = torch.tensor(s)
            mask[i, : len(s)] = 1
        return ids.to(device), mask.to(device)

    types = {"f32": torch.float32, "bf16": torch.bfloat16, "f16": torch.float16}
    for name in a.dtype.split(","):
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(a.model, num_labels=3)
        model = model.to(device=device, dtype=types[name]).eval()

        def run(seqs):
            ids, mask = pad(seqs)
            with torch.inference_mode():
                logits = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids)).logits
            return logits.float().softmax(-1).cpu()

        for bs in [int(b) for b in a.bs.split(",")]:
            for i in range(0, min(len(order), 2 * bs), bs):
                run([toks[j] for j in order[i : i + bs]])
            rates = []
            for _ in range(a.runs):
                sync()
                t0 = time.perf_counter()
                for i in range(0, len(order), bs):
                    run([toks[j] for j in order[i : i + bs]])
                sync()
                rates.append(len(toks) / (time.perf_counter() - t0))
            print(
                f"RESULT system=pytorch device={a.device} dtype={name} bs={bs} order=sorted "
                f"median_sent_per_s={statistics.median(rates):.1f} runs=[{','.join(f'{r:.1f}' for r in rates)}]",
                flush=True,
            )
    if a.skip_train:
        return

    for name in ("f32", "bf16-autocast"):
        torch.manual_seed(0)
        model = BertForSequenceClassification.from_pretrained(a.model, num_labels=3).to(device).train()
        opt = torch.optim.AdamW(model.parameters(), lr=2e-5, weight_decay=0.01)
        bs, warmup, times = 32, 3, []
        for step in range(warmup + a.steps):
            start = (step * bs) % (len(toks) - bs)
            labels = torch.tensor([i % 3 for i in range(start, start + bs)], device=device)
            sync()
            t0 = time.perf_counter()
            ids, mask = pad(toks[start : start + bs])
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=name != "f32"):
                loss = model(input_ids=ids, attention_mask=mask, token_type_ids=torch.zeros_like(ids), labels=labels).loss
            loss.backward()
            opt.step()
            opt.zero_grad(set_to_none=True)
            loss.item()
            sync()
            if step >= warmup:
                times.append(time.perf_counter() - t0)
        mean = statistics.mean(times)
        print(
            f"RESULT system=pytorch device={a.device} train precision={name} bs={bs} steps={a.steps} "
            f"step_s={mean:.4f} examples_per_s={bs / mean:.2f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
