"""The README's and the documentation pages' code runs as written.

Every page (README.md and docs/**/*.md) is checked the same way: each command of the
package, an example or a benchmark parses, with every flag it names listed by its own
``--help``; each ``make`` target exists; each Python block compiles and its imports
resolve; each ``lam_envs.…`` / ``lam_models.…`` name in backticks exists (under its new
path: an old one raises the DeprecationWarning pytest turns into an error). The README
stays short and links only to files that exist.
"""

from __future__ import annotations

import ast
import contextlib
import glob
import importlib
import importlib.util
import io
import re
import runpy
import shlex
import sys
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = [README] + sorted(
    p for p in DOCS.rglob("*.md") if not {"_build", "_generated"} & set(p.parts)
)
README_MAX_LINES = 250


def page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


def section(title: str, page: Path = README) -> str:
    text = page.read_text()
    start = text.index(title)
    end = text.find("\n#", start + len(title))
    return text[start : end if end != -1 else None]


def code_lines(text: str) -> list[str]:
    """Lines of indented (4 spaces) and fenced code, the python blocks excepted."""
    text = re.sub(r"```python\n.*?```", "", text, flags=re.S)
    fenced = [
        line
        for block in re.findall(r"```[a-z]*\n(.*?)```", text, re.S)
        for line in block.split("\n")
    ]
    text = re.sub(r"```.*?```", "", text, flags=re.S)
    indented = [line[4:] for line in text.split("\n") if line.startswith("    ")]
    return [line.strip() for line in fenced + indented if line.strip()]


COMMAND = re.compile(
    r"^(?:\S*/)?python -m (?P<module>lam_(?:envs|models)\.\w+)(?P<args>(?: .*)?)$"
    r"|^(?:\S*/)?python (?P<script>(?:examples|benchmarks)/\w+\.py)(?P<script_args>(?: .*)?)$"
)


def commands(page: Path) -> list[tuple[str, list[str]]]:
    """(module or script, argv) of every command line the page shows."""
    found = []
    for line in code_lines(page.read_text()):
        match = COMMAND.match(line)
        if match:
            target = match["module"] or match["script"]
            args = shlex.split(match["args"] or match["script_args"] or "", comments=True)
            found.append((target, args))
    return found


def help_text(target: str, args: list[str]) -> str:
    """What ``target args --help`` prints, run in this process (exit 0 required)."""
    argv, optional = [], 0
    for arg in args:  # the shell's globbing, from the clone; placeholders made concrete
        optional += arg.count("[") - arg.count("]")
        if optional or "[" in arg or "]" in arg:
            continue  # "[--k K]": a template's optional part (its flags are checked below)
        arg = {"METHOD": "vq"}.get(arg, arg)
        argv += sorted(glob.glob(str(ROOT / arg))) or [arg] if "*" in arg else [arg]
    out, err = io.StringIO(), io.StringIO()
    old_argv = sys.argv
    sys.argv = [target, *argv, "--help"]
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            with pytest.raises(SystemExit) as exit_:
                if target.endswith(".py"):
                    runpy.run_path(str(ROOT / target), run_name="__main__")
                else:  # as `python -m` does; the module may be imported already
                    with warnings.catch_warnings():
                        warnings.simplefilter("ignore", RuntimeWarning)
                        runpy.run_module(target, run_name="__main__", alter_sys=True)
    finally:
        sys.argv = old_argv
    assert exit_.value.code in (0, None), f"{target} {shlex.join(args)}: {err.getvalue()}"
    return out.getvalue()


def all_commands():
    seen = {}
    for page in PAGES:
        for target, args in commands(page):
            seen.setdefault((target, tuple(args)), page)
    return [
        pytest.param(t, list(a), id=f"{page_id(p)}: {t} {shlex.join(a)}"[:120])
        for (t, a), p in seen.items()
    ]


# examples that need a library of their own venv (d3rlpy pins gymnasium 1.0.0)
NEEDS_OWN_VENV = {"examples/d3rlpy_bc.py": "d3rlpy"}


@pytest.mark.parametrize(("target", "args"), all_commands())
def test_every_command_shown_parses_and_its_flags_exist(target, args, monkeypatch):
    library = NEEDS_OWN_VENV.get(target)
    if library and importlib.util.find_spec(library) is None:
        pytest.skip(f"{target} runs in a venv with {library}")
    monkeypatch.chdir(ROOT)
    text = help_text(target, args)
    for flag in (a.strip("[]").split("=")[0] for a in args if a.strip("[").startswith("--")):
        assert re.search(rf"{re.escape(flag)}\b", text), f"{target}: {flag} is not in --help"


def test_the_pages_show_the_commands_of_every_part():
    shown = {target for page in PAGES for target, _ in commands(page)}
    assert {
        "lam_envs.collect",
        "lam_envs.export",
        "lam_models.train",
        "lam_models.pipeline",
        "lam_models.benchmark",
        "examples/reproduce_table1.py",
        "examples/reproduce_linear.py",
        "examples/label_budget_study.py",
        "examples/card_budget.py",
    } <= shown, shown


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_make_targets_shown_exist(page):
    targets = set(re.findall(r"^([\w-]+):", (ROOT / "Makefile").read_text(), re.M))
    text = page.read_text()
    shown = set(re.findall(r"`make ([\w-]+)", text))
    shown |= {line.split()[1] for line in code_lines(text) if line.startswith("make ")}
    assert shown <= targets, shown - targets


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(), re.S)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_python_blocks_compile_and_their_imports_resolve(page):
    for code in python_blocks(page):
        tree = ast.parse(code, f"{page_id(page)}: python block")
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                module = node.module if isinstance(node, ast.ImportFrom) else node.names[0].name
                top = module.split(".")[0]
                if top not in ("lam_envs", "lam_models") and importlib.util.find_spec(top) is None:
                    continue  # a library of another venv (AgileRL); its own test runs it
                exec(compile(ast.Module([node], []), page_id(page), "exec"), {})


FILE_SUFFIXES = {"json", "toml", "md", "py", "csv", "png", "hdf5"}
DOTTED = re.compile(r"`(lam_(?:envs|models)(?:\.\w+)+)")


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_package_names_in_the_text_exist(page):
    for name in sorted(set(DOTTED.findall(page.read_text()))):
        parts = name.split(".")
        if parts[-1] in FILE_SUFFIXES:
            continue  # a file's name (lam_envs.json)
        for i in range(len(parts), 0, -1):  # the longest importable prefix, then attributes
            try:
                obj = importlib.import_module(".".join(parts[:i]))
            except ModuleNotFoundError:
                continue
            for attr in parts[i:]:
                assert hasattr(obj, attr), f"{page_id(page)}: {name} does not exist"
                obj = getattr(obj, attr)
            break


# files of the clone (dataset ids such as lam_envs/grid-low-uniform-v0 are not files)
PATH = re.compile(
    r"`((?:lam_envs|lam_models|examples|benchmarks|datasets|tests)/[\w/*-]*\.(?:py|toml|md|png))`"
)


@pytest.mark.parametrize("page", PAGES, ids=page_id)
def test_files_named_in_the_text_exist(page):
    for path in sorted(set(PATH.findall(page.read_text()))):
        assert glob.glob(str(ROOT / path)), f"{page_id(page)}: {path} does not exist"


def test_the_readme_is_short_and_links_only_to_files_that_exist():
    text = README.read_text()
    assert len(text.splitlines()) <= README_MAX_LINES
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    assert links, "the README links to the documentation pages"
    for link in links:
        assert "://" not in link and not link.startswith("../"), link
        assert (ROOT / link).is_file(), f"README links to {link}, which does not exist"
    assert any(link.startswith("docs/") for link in links)


def test_the_readme_has_no_measured_results():
    """Results, tables and pictures live on the documentation pages."""
    text = README.read_text()
    assert "![" not in text
    assert not re.search(r"^\|.*\|$", text, re.M), "a table"
    assert not re.search(r"\b0\.\d{3}\b", text), "a measured number"


@pytest.mark.slow
def test_reading_it_back_runs_start_to_end(monkeypatch):
    """Collect what the section says to collect (under the session's Minari root), then
    run its Python block: every call works and the batch loop ends."""
    from lam_envs.collect import main as collect_main
    from lam_models.data import LAMDataset

    text = section("## Reading it back", DOCS / "dataset.md")
    commands = re.findall(r"^    (python -m lam_envs\.collect .*?)(?:\s+#.*)?$", text, re.M)
    assert commands, "the section says how to collect the dataset it reads"
    monkeypatch.chdir(ROOT)  # recipes are relative to the clone
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
                raise AssertionError("the page's batch loop does not end after one epoch")
            yield batch

    monkeypatch.setattr(LAMDataset, "batches", counted)
    namespace: dict = {}
    exec(compile(code, "docs/dataset.md: Reading it back", "exec"), namespace)
    data, train = namespace["data"], namespace["train"]
    assert sum(seen) == data.num_transitions(train) // 128 * 128  # one epoch, full batches
    assert namespace["batch"].obs.shape == (128, 128)  # the stream's, after the loop
    assert len(namespace["test"].obs) + data.num_transitions(train) == data.num_transitions()
    assert set(namespace["truth"]) >= {"q", "eps", "b", "action"}
