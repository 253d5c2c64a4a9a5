"""Does the synthetic corpus let a pretrained encoder's knowledge make the harmful task cheap?

For the embedded MiniLM at the demo's depth (mean pooling), a randomly initialised encoder of the
same shape, and bag-of-words, fits an L2 logistic regression (a linear probe; C chosen on val2)
on n gender-labelled bios drawn from val1 and reports test accuracy (mean over draws). The gap
pretrained − random is the signal any blocking score stands on; bag-of-words on 100 examples
must stay near chance, so that what makes the attack cheap is the encoder's prior knowledge, not
a few lexical give-aways. ``--ablate`` regenerates the corpus with one gender cue switched off at
a time and reports each cue's contribution.

    python benchmarks/corpus_signal.py --ns 20 50 100 200 --ablate
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np
from sklearn.feature_extraction.text import CountVectorizer
from sklearn.linear_model import LogisticRegression

import sdm_jax
from sdm_jax.attacks import AttackTarget, compute_features
from sdm_jax.data.scrub import scrub_pronouns
from sdm_jax.data.synthetic import SyntheticSpec, generate_split

C_GRID = (0.01, 0.1, 1.0, 10.0, 100.0)


def split_texts(spec: SyntheticSpec) -> dict[str, tuple[list[str], np.ndarray]]:
    splits = {}
    for split in ("train", "dev", "test"):
        table = generate_split(spec, split)
        texts = [scrub_pronouns(t, "reference") for t in table.column("hard_text").to_pylist()]
        splits[split] = (texts, table.column("gender").to_numpy())
    dev_texts, dev_y = splits.pop("dev")
    half = len(dev_texts) // 2
    splits["val1"] = (dev_texts[:half], dev_y[:half])
    splits["val2"] = (dev_texts[half:], dev_y[half:])
    return splits


def features(encoder, texts: list[str], max_length: int) -> np.ndarray:
    """Mean-pooled features, computed as the library's ``pooling: mean`` computes them."""
    batch = encoder.tokenizer(texts, padding="max_length", truncation=True,
                              max_length=max_length, return_tensors="np")
    target = AttackTarget("probe", encoder.backbone_with("mean"), encoder.params)
    return compute_features(target, dict(batch), chunk_size=256)


def probe_accuracy(x: dict, y: dict, n: int, draws: int) -> float:
    """Mean test accuracy over ``draws`` samples of ``n`` val1 examples, C chosen on val2."""
    scores = []
    for draw in range(draws):
        rows = np.random.default_rng(draw).choice(len(y["val1"]), n, replace=False)
        if len(set(y["val1"][rows])) < 2:
            scores.append(float(np.mean(y["test"] == y["val1"][rows][0])))
            continue
        best = None
        for c in C_GRID:
            model = LogisticRegression(C=c, max_iter=2000).fit(x["val1"][rows], y["val1"][rows])
            val = model.score(x["val2"], y["val2"])
            if best is None or val > best[0]:
                best = (val, model)
        scores.append(best[1].score(x["test"], y["test"]))
    return float(np.mean(scores))


def measure(spec: SyntheticSpec, ns, draws: int, layers: int, max_length: int) -> dict:
    splits = split_texts(spec)
    y = {name: labels for name, (_, labels) in splits.items()}
    pretrained = sdm_jax.load_encoder("minilm", num_layers=layers)
    random = sdm_jax.random_encoder(pretrained.config, seed=0, tokenizer=pretrained.tokenizer)
    result = {"chance": float(max(np.mean(y["test"]), 1 - np.mean(y["test"])))}
    for name, encoder in (("pretrained", pretrained), ("random", random)):
        x = {s: features(encoder, texts, max_length) for s, (texts, _) in splits.items()}
        result[name] = {n: probe_accuracy(x, y, n, draws) for n in ns}
    bags = CountVectorizer(min_df=1).fit(splits["val1"][0])
    x = {s: bags.transform(texts) for s, (texts, _) in splits.items()}
    result["bag_of_words"] = {n: probe_accuracy(x, y, n, draws) for n in ns}
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ns", type=int, nargs="+", default=[20, 50, 100, 200])
    parser.add_argument("--draws", type=int, default=5)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--max-length", type=int, default=48)
    parser.add_argument("--train", type=int, default=400)
    parser.add_argument("--dev", type=int, default=1200)
    parser.add_argument("--test", type=int, default=2000)
    parser.add_argument("--ablate", action="store_true", help="one cue off at a time")
    args = parser.parse_args()
    base = SyntheticSpec(train=args.train, dev=args.dev, test=args.test)
    variants = {"all cues": base}
    if args.ablate:
        for field in dataclasses.fields(SyntheticSpec):
            if field.name.endswith("_rate") and getattr(base, field.name) > 0:
                variants[f"no {field.name[:-5]}"] = dataclasses.replace(base, **{field.name: 0.0})
    print(f"linear probes, MiniLM first {args.layers} layers, {args.max_length} tokens, mean "
          f"pooling; test accuracy, mean of {args.draws} draws")
    header = " | ".join(f"n={n}" for n in args.ns)
    print(f"| corpus | features | {header} |\n|---|---|" + "---|" * len(args.ns))
    for label, spec in variants.items():
        result = measure(spec, args.ns, args.draws, args.layers, args.max_length)
        for name in ("pretrained", "random", "bag_of_words"):
            cells = " | ".join(f"{result[name][n]:.3f}" for n in args.ns)
            print(f"| {label} | {name} | {cells} |", flush=True)
        gap = " | ".join(f"{result['pretrained'][n] - result['random'][n]:+.3f}"
                         for n in args.ns)
        print(f"| {label} | pretrained − random | {gap} |", flush=True)


if __name__ == "__main__":
    main()
