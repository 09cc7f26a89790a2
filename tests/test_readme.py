"""The README's code runs as written."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def section(title: str) -> str:
    text = README.read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end != -1 else None]


@pytest.mark.slow
def test_reading_it_back_runs_start_to_end(monkeypatch):
    """Collect what the section says to collect (under the session's Minari root), then
    run its Python block: every call works and the batch loop ends."""
    from lam_envs.collect import main as collect_main
    from lam_models.data import LAMDataset

    text = section("### Reading it back")
    commands = re.findall(r"^    (python -m lam_envs\.collect .*?)(?:\s+#.*)?$", text, re.M)
    assert commands, "the section says how to collect the dataset it reads"
    monkeypatch.chdir(README.parent)  # recipes are relative to the clone
    for command in commands:
        assert collect_main(shlex.split(command)[3:] + ["--quiet"]) == 0
    (code,) = re.findall(r"```python\n(.*?)```", text, re.S)
    seen = []
    batches = LAMDataset.batches

    def counted(self, batch_size, *args, **kwargs):  # an endless loop fails, not hangs
        limit = self.num_transitions() // batch_size + 1
        for batch in batches(self, batch_size, *args, **kwargs):
            seen.append(len(batch.obs))
            if len(seen) > limit:
                raise AssertionError("the README's batch loop does not end after one epoch")
            yield batch

    monkeypatch.setattr(LAMDataset, "batches", counted)
    namespace: dict = {}
    exec(compile(code, "README.md: Reading it back", "exec"), namespace)
    data, train = namespace["data"], namespace["train"]
    assert sum(seen) == data.num_transitions(train) // 128 * 128  # one epoch, full batches
    assert namespace["batch"].obs.shape == (128, 128)  # the stream's, after the loop
    assert len(namespace["test"].obs) + data.num_transitions(train) == data.num_transitions()
    assert set(namespace["truth"]) >= {"q", "eps", "b", "action"}
