"""``make demo``: load the embedded encoder, encode a few bios, print shapes and timing."""

from __future__ import annotations

import time

import jax
import numpy as np

from sdm_jax.models import load_encoder

BIOS = [
    "She is a registered nurse who has worked in paediatric care for ten years.",
    "He is a software engineer building distributed databases.",
    "They teach mathematics at a public high school in Ohio.",
    "Dr. Okafor is a surgeon specialising in cardiac procedures.",
]


def main() -> None:
    started = time.perf_counter()
    encoder = load_encoder("all-MiniLM-L6-v2")
    print(f"loaded {encoder.source} in {time.perf_counter() - started:.1f} s: "
          f"{encoder.config.num_hidden_layers} layers, hidden {encoder.config.hidden_size}")
    batch = encoder.tokenizer(BIOS, padding="max_length", max_length=64, truncation=True,
                              return_tensors="np")
    forward = jax.jit(encoder.apply)
    args = (encoder.params, batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    started = time.perf_counter()
    jax.block_until_ready(forward(*args))
    compile_s = time.perf_counter() - started
    started = time.perf_counter()
    hidden, pooled = jax.block_until_ready(forward(*args))
    run_ms = (time.perf_counter() - started) * 1e3
    print(f"last hidden state {hidden.shape}, pooler output {pooled.shape} "
          f"on {jax.devices()[0].platform}: first call {compile_s:.1f} s, then {run_ms:.1f} ms")
    normed = np.asarray(pooled) / np.linalg.norm(pooled, axis=1, keepdims=True)
    print("pooler cosine similarity of the bios:\n" + np.array2string(normed @ normed.T,
                                                                      precision=2))


if __name__ == "__main__":
    main()
