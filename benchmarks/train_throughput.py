"""Training throughput: model-updates per second of the package's batched loops against a
plain single-model PyTorch loop of the same model, measured in the same run.

For each method (the linear LAM; ``vq-published``, the published grid VQ LAM at its
released batch of 1,024 on the 4×4 grid; ``laom`` with the published encoder and batch on
the 4×4 grid), on data on the device:

- ours:      ``M`` copies (seeds, or settings that share shapes) trained as one batched
             model by the package (``LAM.train`` on ``CopyBatches``: its real loop, with
             logging, divergence checks and, for vq-published, the dead-code resets);
- baseline:  one model (the same networks at M = 1) trained by a plain loop, the authors'
             way: ``for batch in loader: loss.backward(); opt.step()``, the data on the
             device, indices drawn there, nothing logged.

Augmentation is off in both (the baseline has none). Prints model-updates per second (M ×
updates/s) and CPU seconds per model-update for each, and the ratio ours / baseline; then
a projection of the issue's GPU targets from the measured costs per update (a projection,
not a measurement: run with ``--device cuda`` for GPU figures).

Usage:  python benchmarks/train_throughput.py [--device cpu] [--threads 1]
        python benchmarks/train_throughput.py --quick          # a smoke test, seconds
        python benchmarks/train_throughput.py --device cuda --compile reduce-overhead
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections.abc import Callable

import torch

COLUMNS = ("method", "frames", "batch", "M", "ours model-upd/s", "baseline upd/s", "ratio")


def make_data(kind: str, episodes: int, root: str, seeds: list[int]):
    """One split per seed of a small collected dataset (grid: 4×4 low noise; linear)."""
    from lam_envs.collect import CollectConfig, collect
    from lam_models.split import DataSplit

    env = {"grid": {}, "linear": {"env": "LinearLAM-v0", "preset": "other_agents"}}[kind]
    config = CollectConfig(**env, episodes=episodes, episode_length=200, label_fraction=0.1)
    path = collect(config, root=root, progress=False).path
    return [DataSplit(path, held_out=0.1, seed=s, label_fraction=0.01) for s in seeds]


def _timed(run: Callable[[], None], device: torch.device) -> tuple[float, float]:
    """Wall and CPU seconds of ``run()``."""
    if device.type == "cuda":
        torch.cuda.synchronize()
    wall, cpu = time.perf_counter(), time.process_time()
    run()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - wall, time.process_time() - cpu


def ours(method: str, config, splits, device, compile_mode: str | None) -> Callable[[], None]:
    from lam_models.lams.base import get_lam
    from lam_models.split import CopyBatches

    cls = get_lam(method)
    seeds = list(range(len(splits)))

    def run() -> None:
        data = CopyBatches(splits, seeds, device)
        cls.train(config, data, seeds, device=device, compile=compile_mode)

    return run


def baseline(method: str, config, split, device, steps: int) -> Callable[[], None]:
    """The plain loop of one model of ``method`` (the package's networks at M = 1)."""
    from lam_models.lams.base import get_lam

    cls = get_lam(method)
    train = split.train
    frames = torch.from_numpy(train.frames).float().to(device)
    start = torch.from_numpy(train.start).to(device)
    last = torch.from_numpy(train.last).to(device)
    n, b = len(start), config.batch_size

    def loader():
        for _ in range(steps):
            r = torch.randint(n, (b,), device=device)
            i = start[r]
            o, o_next = frames[i][None], frames[i + 1][None]
            j = torch.randint(1, getattr(config, "k_max", 1) + 1, (b,), device=device)
            yield o, o_next, frames[torch.minimum(i + j, last[r])][None]

    def run() -> None:
        lam = cls(config, split.spec, [0], device)
        net = lam.module.train()
        opt = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=config.lr)
        for o, o_next, o_far in loader():
            if method == "linear":
                o, o_next = o.flatten(2), o_next.flatten(2)
                loss = (net.predict(o, net.idm(o, o_next)) - o_next).pow(2).sum(-1).mean()
            elif method == "vq-published":
                latent = net.idm(o, o_next)
                code = net.lookup(net.nearest(latent))
                pred = net.fdm(o, latent + (code - latent).detach())
                loss = (pred - o_next).pow(2).mean() + 0.025 * (latent - code.detach()).pow(
                    2
                ).mean()
            else:  # laom
                s = net.embed(o)
                z = net.idm_head(torch.cat([s, net.embed(o_far)], dim=-1))
                with torch.no_grad():
                    target = net.embed(o_next, target=True)
                pred = net.fdm_head(torch.cat([s.detach(), z], dim=-1))
                loss = (pred - target).pow(2).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if method == "laom":
                net.update_target()

    return run


def cases(quick: bool) -> list[tuple[str, str, dict, int, int]]:
    """(method, data kind, config overrides, copies M, updates timed)."""
    if quick:
        small = {"batch_size": 16}
        laom = {**small, "variant": "package", "channels": (4,), "blocks": 1, "embed_dim": 16,
                "width": 16, "latent_dim": 16}  # fmt: skip
        return [
            ("linear", "linear", small, 2, 5),
            ("vq-published", "grid", {**small, "encoder_width": 8, "mlp_width": 16}, 2, 3),
            ("laom", "grid", laom, 2, 3),
        ]
    return [
        ("linear", "linear", {"kappa": 0.0}, 16, 600),  # the linear figures batch 16 copies
        ("vq-published", "grid", {}, 5, 12),  # Table 1: 5 seeds of a setting, batch 1,024
        # the card: 3 seeds, published sizes; the package variant (single frames, as the
        # plain loop below feeds them); the authors' stacked frames are not timed yet
        ("laom", "grid", {"variant": "package", "augment": False}, 3, 6),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu", help="cpu (default) or cuda")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: a smoke test")
    parser.add_argument("--compile", metavar="MODE", help="ours with torch.compile (CUDA)")
    parser.add_argument("--scale", type=float, default=1.0, help="multiply the updates timed")
    args = parser.parse_args(argv)
    from lam_models.lams.base import get_lam, resolve_device

    device = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    root = tempfile.mkdtemp(prefix="train-throughput-")
    os.environ["MINARI_DATASETS_PATH"] = root
    episodes = 20 if args.quick else 100
    load = open("/proc/loadavg").read().split()[0] if sys.platform == "linux" else "?"
    print(f"device {device}, torch threads {args.threads}, load average {load}")
    print(" | ".join(COLUMNS) + " | ours CPU-s/model-upd | baseline CPU-s/upd")
    data: dict[str, list] = {}
    costs: dict[str, float] = {}  # wall seconds per batched update of ours
    for method, kind, overrides, m, steps in cases(args.quick):
        steps = max(2, round(steps * (1 if args.quick else args.scale)))
        if kind not in data:
            data[kind] = make_data(kind, episodes, root, list(range(16)))
        cls = get_lam(method)
        fields = {"log_every": 50, **overrides, "steps": steps}
        if "score_updates" in cls.Config.__dataclass_fields__:
            fields["score_updates"] = 0  # the published losses: not part of training
        config = cls.Config(**fields)
        splits = data[kind][:m]
        warm = cls.Config(**{**config.__dict__, "steps": 2})
        ours(method, warm, splits, device, args.compile)()  # first calls, imports
        wall, cpu = _timed(ours(method, config, splits, device, args.compile), device)
        baseline(method, warm, splits[0], device, 2)()
        base_wall, base_cpu = _timed(baseline(method, config, splits[0], device, steps), device)
        rate, base_rate = m * steps / wall, steps / base_wall
        costs[method] = wall / steps
        frames = "x".join(map(str, splits[0].spec.obs_shape))
        print(
            f"{method} | {frames} | {config.batch_size} | {m} | {rate:,.1f} | {base_rate:,.1f} | "
            f"{rate / base_rate:.2f}x | {cpu / (m * steps):.4f} | {base_cpu / steps:.4f}"
        )
    vq = costs["vq-published"]  # seconds per update of 5 seeds at batch 1,024
    if args.quick:
        print("(--quick: tiny sizes; the projections below mean nothing)")
    print(
        f"PROJECTION (not a measurement; {device}, from the costs above): Table 1 (7 settings "
        f"× 5 seeds batched per setting) at 1,600 updates: {7 * 1600 * vq:,.0f} s (target "
        f"≤ 60 s on a GPU); at 16k updates: {7 * 16000 * vq / 60:,.1f} min (target ≤ 10 min)"
    )
    card = 5 * 1500 * costs["linear"] + 4 * 1500 * (vq + 2 * costs["laom"])
    print(
        f"PROJECTION (not a measurement): report card at --sizes published, linear (5 "
        f"settings) + vq-published and laom, laom+labels (4 grid settings), 1,500 updates, "
        f"seeds batched: {card / 60:,.1f} min; the 32x32 distracting settings are not "
        "measured here (target ≤ 60 min on a GPU for the whole card)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
