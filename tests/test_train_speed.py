"""The GPU-readiness of the training loops: the throughput benchmark's smoke run, the
opt-in ``--compile`` path (refused off CUDA; the same training when traced), and the dead
codes found as before while the VQ quantiser reads the device only when a code can be dead."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch
from conftest import REPO

from lam_models.lams.base import get_lam
from lam_models.lams.training import compile_networks
from lam_models.nn import VectorQuantiser
from lam_models.split import DataSpec, Transitions


def test_the_throughput_benchmark_prints_its_table_quickly():
    out = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "train_throughput.py"), "--quick"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    header = next(line for line in out.splitlines() if line.startswith("method |"))
    for column in ("ours model-upd/s", "baseline upd/s", "ratio", "CPU-s"):
        assert column in header
    rows = [line.split(" | ") for line in out.splitlines() if line.count(" | ") >= 6]
    assert [r[0] for r in rows[1:]] == ["linear", "vq-published", "laom"]
    assert all(float(r[4].replace(",", "")) > 0 and r[6].endswith("x") for r in rows[1:])
    assert out.count("PROJECTION (not a measurement") == 2


class _Noise:
    """Random 4×4 frames for two copies (the data interface of CopyBatches)."""

    num_copies, spec = 2, DataSpec("grid", (1, 4, 4), True, 5)
    has_labels = torch.ones(2, dtype=torch.bool)

    def __init__(self):
        self.g = torch.Generator().manual_seed(0)

    def sample(self, b, **_):
        o, o_next = (torch.rand(2, b, 1, 4, 4, generator=self.g) for _ in range(2))
        none = torch.zeros(2, b, dtype=torch.bool)
        return Transitions(o, o_next, o_next, torch.full((2, b), -1), none)


def test_compiled_networks_train_exactly_as_eager_ones():
    cls = get_lam("vq-published")
    c = cls.Config(steps=4, batch_size=8, encoder_width=4, mlp_width=8, fdm_width=4, log_every=2)
    eager = cls.train(c, _Noise(), [0, 1], device="cpu")
    traced = cls(c, _Noise.spec, [0, 1], "cpu")
    assert compile_networks(traced.module, "cpu", backend="eager") == 5
    traced.module.train()
    traced.fit(_Noise())
    state = traced.module.state_dict()
    assert list(state) == list(eager.module.state_dict())  # names kept: saved runs load
    assert all(torch.equal(v, state[k]) for k, v in eager.module.state_dict().items())


def test_compile_is_refused_off_cuda_before_any_work():
    from lam_models import train

    with pytest.raises(ValueError, match="--compile needs a CUDA device"):
        get_lam("linear").train(
            get_lam("linear").Config(), _Noise(), [0, 1], "cpu", compile="default"
        )
    code = train.main(["linear", "--env", "LinearLAM-v0", "--compile", "--steps", "1"])
    assert code == 2


def test_a_code_unused_for_dead_code_steps_updates_is_revived_then_and_only_then():
    q = VectorQuantiser(1, 3, 2, dead_code_steps=4)
    generators = [torch.Generator().manual_seed(0)]
    latent = torch.randn(1, 8, 2, generator=generators[0])
    revived = []
    for _ in range(10):  # code 0 always chosen, codes 1 and 2 never
        revived.append(int(q.update(latent, torch.zeros(1, 8, dtype=torch.long), generators)[1]))
    assert revived == [0, 0, 0, 2, 0, 0, 0, 2, 0, 0]
