"""Grid VQ-LAM training speed: 5 seeds trained together against one model, in one run.

Both use ``VQLAM.train`` (``lam_models.lams.vq``) with the defaults of ``VQConfig`` (K = 5
codes, batch 128), on a pool of low-noise ``GridLAM-v0`` transitions drawn once from the
native vector env (uniform policy), batches by random index, the way a dataset's split is
sampled in memory:

- baseline:  one model (M = 1), the way a single ``python -m lam_models.train vq`` trains.
- batched:   M = 5 seeds as one batched model (the way ``examples/reproduce_table1.py``
             trains the seeds of a setting).

Prints batched updates per second and model-updates per second (M × updates/s) for each,
and the ratio of model-updates per second, batched / baseline: how many times faster 5
seeds train together than one after another.

Usage:  python benchmarks/train_vq.py [--threads 1] [--steps 1500] [--augment]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from lam_models.data import EnvStream
from lam_models.lams.vq import VQLAM, VQConfig
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


def updates_per_second(pool: dict, seeds: list[int], steps: int, augment: bool) -> float:
    """Batched updates per second of ``len(seeds)`` models trained together."""
    config = VQConfig(steps=steps, augment=augment, log_every=steps)

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

    start = time.perf_counter()
    VQLAM.train(config, Pool(), seeds, device="cpu")
    return steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--steps", type=int, default=1500, help="updates timed per case")
    parser.add_argument("--seeds", type=int, default=5, help="models trained together (5)")
    parser.add_argument("--augment", action="store_true", help="time with augmentation on")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    pool = grid_pool()
    updates_per_second(pool, [0], 50, args.augment)  # warm up: lazy imports, first calls
    single = updates_per_second(pool, [0], args.steps, args.augment)
    batched = updates_per_second(pool, list(range(args.seeds)), args.steps, args.augment)
    m = args.seeds
    print(
        f"grid VQ LAM, K=5, batch 128, augmentation {'on' if args.augment else 'off'}, "
        f"{args.steps} updates per case, torch threads={args.threads}"
    )
    print(f"{'case':<28}{'updates/s':>12}{'model-updates/s':>18}")
    print(f"{'baseline: 1 model':<28}{single:>12,.1f}{single:>18,.1f}")
    print(f"{f'batched: {m} seeds together':<28}{batched:>12,.1f}{m * batched:>18,.1f}")
    print(
        f"ratio of model-updates/s, {m} seeds together / 1 model: {m * batched / single:.2f}x "
        f"({m} seeds × 1,000 updates: {1000 * m / single:.1f} s one after another, "
        f"{1000 / batched:.1f} s together)"
    )


if __name__ == "__main__":
    main()
