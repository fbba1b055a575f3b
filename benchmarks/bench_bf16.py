"""Whether bfloat16 pays on this CPU: plain `model.fit` faces/s under Keras' `float32` and `mixed_bfloat16` policies.

    python benchmarks/bench_bf16.py [--config cpu --config heatmap ...] [--set KEY=VALUE ...] [--rounds 3]

For each config's full-label network (default: the CPU profile's 48x48 network, the same at 96x96
(`model.input_downsample = 1`), and the heatmap U-Net), trains on preloaded random faces, alternating the two
policies round by round in this process (so a busy stretch of the machine touches both), and prints the best
round's faces/s and CPU seconds of each, and the ratio. Under `mixed_bfloat16` the layers compute in bfloat16
and keep float32 weights; the model's output is cast back to float32 before the loss. The CPU's flags that
decide it are printed first: oneDNN runs bfloat16 convolutions on AMX tiles (`amx_bf16`) or AVX-512 BF16
(`avx512_bf16`); without either it emulates them, slower than float32.
"""

from __future__ import annotations

import argparse
import time

import keras
import numpy as np
from common import cpu_flags, cpu_model, plain_model

from competition.config import load_config
from competition.machine import keep_freed_memory
from competition.models import target_statistics

DEFAULT_CONFIGS = (("cpu", ()), ("cpu", ("model.input_downsample=1",)), ("heatmap", ()))
FLAGS = ("amx_bf16", "amx_tile", "avx512_bf16", "avx512f")


def cpu_facts() -> str:
    """The CPU's model name and which of ``FLAGS`` it shows."""
    flags = cpu_flags()
    return f"{cpu_model()}; flags: " + ", ".join(f"{flag} {'yes' if flag in flags else 'no'}" for flag in FLAGS)


def timed_epoch(model, faces, targets, batch) -> tuple[float, float]:
    cpu, wall = time.process_time(), time.perf_counter()
    model.fit(faces, targets, batch_size=batch, epochs=1, verbose=0)
    return time.perf_counter() - wall, time.process_time() - cpu


def build(settings, targets, policy: str):
    keras.config.set_dtype_policy(policy)
    try:
        keras.utils.set_random_seed(0)
        model = plain_model(settings, *target_statistics(targets))
        if policy != "float32":  # the loss in float32: the model's output cast back
            inputs = keras.Input(model.input_shape[1:])
            outputs = keras.layers.Activation("linear", dtype="float32")(model(inputs))
            model = keras.Model(inputs, outputs)
            model.compile(optimizer=keras.optimizers.Adam(settings.train.learning_rate), loss="mse")
        return model
    finally:
        keras.config.set_dtype_policy("float32")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", action="append", help="config name or TOML path (repeatable) [default: see above]")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--faces", type=int, default=1024, help="faces per timed epoch [default: 1024]")
    parser.add_argument("--rounds", type=int, default=3, help="timed epochs per policy [default: 3]")
    args = parser.parse_args()

    keep_freed_memory()
    configs = [(name, tuple(args.overrides)) for name in args.config] if args.config else DEFAULT_CONFIGS
    rng = np.random.default_rng(0)
    faces = rng.integers(0, 256, (args.faces, 96, 96, 1)).astype(np.float32)
    targets = rng.uniform(20, 76, (args.faces, 30)).astype(np.float32)
    print(cpu_facts())
    print(f"backend {keras.backend.backend()}, {args.faces} random faces per epoch, best of {args.rounds} rounds")
    for name, overrides in configs:
        settings = load_config(name, list(overrides)).specialist("full")
        batch = settings.train.batch_size
        models = {policy: build(settings, targets, policy) for policy in ("float32", "mixed_bfloat16")}
        for model in models.values():  # tracing, untimed
            model.fit(faces[: 2 * batch], targets[: 2 * batch], batch_size=batch, epochs=1, verbose=0)
        best = {policy: (np.inf, np.inf) for policy in models}
        for _ in range(args.rounds):
            for policy, model in models.items():
                best[policy] = min(best[policy], timed_epoch(model, faces, targets, batch))
        (f32_wall, f32_cpu), (bf16_wall, bf16_cpu) = best["float32"], best["mixed_bfloat16"]
        print(
            f"{' '.join([name, *overrides])}: float32 {args.faces / f32_wall:.0f} faces/s ({f32_cpu:.2f} CPU s), "
            f"mixed_bfloat16 {args.faces / bf16_wall:.0f} faces/s ({bf16_cpu:.2f} CPU s): "
            f"x{f32_wall / bf16_wall:.2f} by wall, x{f32_cpu / bf16_cpu:.2f} by CPU"
        )


if __name__ == "__main__":
    main()
