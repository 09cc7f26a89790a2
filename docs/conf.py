"""Sphinx configuration of the lam-envs documentation (``make docs``).

Sphinx with the furo theme and MyST markdown, the stack of Gymnasium and Minari: the pages
are markdown, and the environment pages and the API reference are generated from the
package's docstrings.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # document this checkout, not whatever is installed
os.environ.setdefault("MPLBACKEND", "Agg")

import lam_envs  # noqa: E402

project = "lam-envs"
author = "lam-envs contributors"
copyright = "lam-envs contributors"
release = version = lam_envs.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
source_suffix = {".md": "markdown", ".rst": "restructuredtext"}  # .rst: autosummary's stubs
root_doc = "index"
exclude_patterns = ["_build"]

myst_enable_extensions = ["colon_fence", "dollarmath"]
myst_heading_anchors = 3  # [text](page.md#a-heading) links resolve

html_theme = "furo"
html_title = f"lam-envs {release}"

autodoc_default_options = {"members": True, "show-inheritance": True}
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_inherit_docstrings = False  # not Gymnasium's text for our step() and reset()
autosummary_generate = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
autodoc_default_options["ignore-module-all"] = True  # each object documented where defined

# --- The package's docstring style, read as reStructuredText -----------------------------
# The docstrings are written to be read in a terminal (help(), an editor): "name: text"
# lines with hanging indents for parameters, example code indented under a line ending
# in ":", and shapes such as (B, *obs_shape). The hook below reads that style as RST
# (definition lists, literal blocks, a literal asterisk), so new docstrings in the house style
# build without warnings and nobody has to write RST markup into them.

import re  # noqa: E402

_FIELD = re.compile(r"^(?P<indent>\s*)(?P<names>[A-Za-z_]\w*(?:, [A-Za-z_]\w*)*): (?P<rest>\S.*)$")
_STAR = re.compile(r"(?<![\\*\w])\*(?=[A-Za-z_][\w.]*\*?[)\],\]])")
_LITERAL_SUFFIX = re.compile(r"(?<![`\w])(``[^`\s][^`]*``)(?=[A-Za-z])")


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _outside_literals(line: str, fix) -> str:
    parts = re.split(r"(``[^`]*``|`[^`]*`)", line)
    return "".join(p if i % 2 else fix(p) for i, p in enumerate(parts))


def _house_style(lines: list[str]) -> list[str]:
    out: list[str] = []
    literal = -1  # indentation of the text that introduced a literal block; -1: none
    field = -1  # indentation of the "name: text" list being written; -1: none
    for i, line in enumerate(lines):
        indent, stripped = _indent(line), line.strip()
        if literal >= 0:
            if not stripped or indent > literal:
                out.append(line)
                continue
            literal = -1
        if not stripped:
            field = -1
            previous = next((x for x in reversed(out) if x.strip()), "")
            following = next((x for x in lines[i + 1 :] if x.strip()), "")
            head = previous.strip()
            if following and previous and _indent(following) > _indent(previous):
                # an indented block after a blank line: example code, as a literal block
                if head.startswith((":", "..")) or head.endswith("::"):
                    pass  # a field's or a directive's own body
                elif head.endswith(":"):
                    out[len(out) - 1 - out[::-1].index(previous)] = previous + ":"
                    literal = _indent(previous)
                else:
                    out += ["", " " * _indent(previous) + "::"]
                    literal = _indent(previous)
            out.append(line)
            continue
        match = _FIELD.match(line)
        previous = out[-1] if out else ""
        if match and (not previous.strip() or field == indent):
            names = ", ".join(f"``{name}``" for name in match["names"].split(", "))
            out.append(f"{match['indent']}{names}")  # a definition list: the name,
            line = f"{match['indent']}    {match['rest']}"  # then its text, indented
            field = indent
        elif field >= 0 and indent <= field:
            out.append("")  # the list ends before this paragraph
            field = -1
        out.append(_fix_inline(line))
    return out


def _fix_inline(line: str) -> str:
    line = _LITERAL_SUFFIX.sub(r"\1\\ ", line)
    return _outside_literals(line, lambda text: _STAR.sub(r"\\*", text))


def _process_docstring(app, what, name, obj, options, lines):
    lines[:] = _house_style(lines)


def setup(app):
    app.connect("autodoc-process-docstring", _process_docstring)
