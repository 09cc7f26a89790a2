"""Grid VQ-LAM training speed: 5 seeds trained together against one model, in one run.

Both train the ``--method`` (``vq``, ours, by default; ``vq-published``, the published
model) with its defaults (K = 5 codes; batch 128 for ours, 1,024 for the published one;
``--batch-size`` overrides), on a pool of low-noise ``GridLAM-v0`` transitions drawn once
from the native vector env (uniform policy), batches by random index, the way a dataset's
split is sampled in memory:

- baseline:  one model (M = 1), the way a single ``python -m lam_models.train vq`` trains.
- batched:   M = 5 seeds as one batched model (the way ``examples/reproduce_table1.py``
             trains the seeds of a setting).

Prints batched updates per second, model-updates per second (M × updates/s) and CPU
seconds per model-update (the process's CPU time: on a machine shared with other work it
is steadier than the wall clock) for each, and the ratio of model-updates per second,
batched / baseline: how many times faster 5 seeds train together than one after another.

Usage:  python benchmarks/train_vq.py [--threads 1] [--steps 1500] [--augment]
        python benchmarks/train_vq.py --method vq-published --steps 20
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np
import torch

from lam_models.data import EnvStream
from lam_models.lams.base import get_lam
from lam_models.split import DataSpec, Transitions

POOL = 65_536


def grid_pool(seed: int = 0) -> dict[str, torch.Tensor]:
    """POOL low-noise grid transitions under the uniform policy, all labelled as unlabelled."""
    stream = EnvStream("GridLAM-v0", 8192, episode_length=200, seed=seed, preset="low")
    parts = [stream.next_numpy()[0] for _ in range(POOL // 8192)]
    pool = {k: torch.from_numpy(np.concatenate([p[k] for p in parts])) for k in parts[0]}
    pool["actions"] = torch.full_like(pool["actions"], -1).long()
    pool["label_mask"] = torch.zeros_like(pool["label_mask"])
    return pool


def updates_per_second(
    pool: dict, seeds: list[int], steps: int, augment: bool, method: str, batch_size: int | None
) -> tuple[float, float]:
    """Batched updates per second of ``len(seeds)`` models trained together, and CPU
    seconds per update."""
    cls = get_lam(method)
    sizes = {"batch_size": batch_size} if batch_size else {}
    config = cls.Config(steps=steps, augment=augment, log_every=steps, **sizes)

    class Pool:  # the data interface of lam_models.split.CopyBatches, on the pool
        spec, num_copies = DataSpec("grid", (1, 4, 4), True, 5), len(seeds)
        has_labels = torch.zeros(len(seeds), dtype=torch.bool)
        gens = [torch.Generator().manual_seed(s) for s in seeds]

        def sample(self, batch_size, **_):
            index = torch.stack(
                [torch.randint(POOL, (batch_size,), generator=g) for g in self.gens]
            )
            o, o_next = pool["obs"][index].float(), pool["next_obs"][index].float()
            return Transitions(o, o_next, o_next, pool["actions"][index], pool["label_mask"][index])

    start, cpu = time.perf_counter(), time.process_time()
    cls.train(config, Pool(), seeds, device="cpu")
    return steps / (time.perf_counter() - start), (time.process_time() - cpu) / steps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--steps", type=int, default=1500, help="updates timed per case")
    parser.add_argument("--seeds", type=int, default=5, help="models trained together (5)")
    parser.add_argument("--augment", action="store_true", help="time with augmentation on")
    parser.add_argument("--method", default="vq", help="vq (ours, default) or vq-published")
    parser.add_argument("--batch-size", type=int, help="default: the method's own")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = grid_pool()
    case = (args.augment, args.method, args.batch_size)
    updates_per_second(pool, [0], min(args.steps, 50), *case)  # warm up: imports, first calls
    single, single_cpu = updates_per_second(pool, [0], args.steps, *case)
    batched, batched_cpu = updates_per_second(pool, list(range(args.seeds)), args.steps, *case)
    m = args.seeds
    batch = args.batch_size or get_lam(args.method).Config().batch_size
    load = open("/proc/loadavg").read().split()[0] if sys.platform == "linux" else "?"
    print(
        f"grid VQ LAM {args.method}, K=5, batch {batch}, augmentation "
        f"{'on' if args.augment else 'off'}, {args.steps} updates per case, torch "
        f"threads={args.threads}, load average {load}"
    )
    print(f"{'case':<28}{'updates/s':>12}{'model-updates/s':>18}{'CPU-s/model-update':>20}")
    print(f"{'baseline: 1 model':<28}{single:>12,.2f}{single:>18,.2f}{single_cpu:>20,.4f}")
    print(
        f"{f'batched: {m} seeds together':<28}{batched:>12,.2f}{m * batched:>18,.2f}"
        f"{batched_cpu / m:>20,.4f}"
    )
    print(
        f"ratio of model-updates/s, {m} seeds together / 1 model: {m * batched / single:.2f}x "
        f"({m} seeds × 1,000 updates: {1000 * m / single:.1f} s one after another, "
        f"{1000 / batched:.1f} s together)"
    )


if __name__ == "__main__":
    main()
