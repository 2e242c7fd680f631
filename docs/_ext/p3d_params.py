"""The parameter tables of the documentation, drawn at build time from the code's schemas.

Each step's table (``Step.params``, the schema the workflow file and the Python functions
are both validated against), the keys every step table has (``params.CHECKPOINT`` and
``params.ROUNDING``), the profiles' values (``workflow.profiles.PROFILES``) and the
workflow file's own tables (``workflow.schema.OWN_TABLES`` and the top-level keys) are
rendered as reStructuredText, one section per table. Nothing is restated here: the type is
what the key's check says it expects (the text of its error message), the unit is the one
its documentation line or its check's docstring names, and the default is the schema's.

``.. p3d-parameters:: steps`` renders the steps' sections, in PyStack3D's order;
``.. p3d-parameters:: workflow`` the workflow file's own tables.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Units as the documentation lines and the checks' docstrings write them: "(um)",
#: "in pixels", "seconds to wait". A bare word ("pixels below are left out") is no unit.
_UNIT = re.compile(r"\((um|pixels|degrees|seconds)\)|\bin (um|pixels|degrees|seconds)\b"
                   r"|^(seconds)\b")

#: Shown for a key without a default value.
UNSET = "unset"
REQUIRED_TEXT = "required"

_HEADER = ("Key", "Type", "Default", "Unit", "Description")


class _Sentinel:
    """A value no check accepts as it is, so that the check says what it expects."""

    def __repr__(self) -> str:
        return "<value>"


def expected(check: Any) -> str:
    """What a key's check expects, in its own words (its error message).

    A string that is no valid choice comes first, so that a check of choices names them;
    a check that takes any string then gets a value of no type at all.
    """
    from pystack3d_dask.errors import ConfigError

    for value in ("\0", _Sentinel()):
        try:
            check("", "key", value)
        except ConfigError as exc:
            message = str(exc)
            return message.split("expected ", 1)[1] if "expected " in message else message
    return "any value"


def unit(param: Any) -> str:
    """The unit that the key's documentation line (or its check's docstring) names."""
    for text in (param.doc, getattr(param.check, "__doc__", None) or ""):
        found = _UNIT.search(text)
        if found:
            return next(group for group in found.groups() if group)
    return ""


def literal(value: Any) -> str:
    """A default as the workflow file (TOML) writes it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{ " + ", ".join(f"{k} = {literal(v)}" for k, v in value.items()) + " }"
    return repr(value)


def default_text(value: Any) -> str:
    """The Default cell's value: a TOML literal, ``unset`` or ``required``."""
    from pystack3d_dask.params import REQUIRED

    if value is REQUIRED:
        return REQUIRED_TEXT
    if value is None:
        return UNSET
    return literal(value)


def profile_values(step: str | None) -> dict[str, dict[str, Any]]:
    """key -> {profile name: value} for one step (None: the keys of every step table)."""
    from pystack3d_dask.workflow.profiles import DEFAULT_PROFILE, PROFILES

    out: dict[str, dict[str, Any]] = {}
    for name, steps in PROFILES.items():
        if name == DEFAULT_PROFILE:
            continue
        values = steps.get("*", {}) if step is None else steps.get(step, {})
        for key, value in values.items():
            out.setdefault(key, {})[name] = value
    return out


def rows(schema: Mapping[str, Any], profiles: Mapping[str, Mapping[str, Any]] | None = None
         ) -> list[dict[str, str]]:
    """One row per key of a schema: key, type, default, unit, description, and the
    profiles' values of the key (``profiles``: key -> {profile: value})."""
    profiles = profiles or {}
    return [{"key": key, "type": expected(param.check), "default": default_text(param.default),
             "unit": unit(param), "doc": param.doc,
             "profiles": {name: literal(v) for name, v in profiles.get(key, {}).items()}}
            for key, param in schema.items()]


def _escape(text: str) -> str:
    """Plain text in reStructuredText: no emphasis, literal, reference or substitution."""
    return re.sub(r"([\\*`_|])", r"\\\1", text)


def _cell(text: str) -> str:
    return text if text else "\\"  # an empty cell, explicitly (docutils wants content)


def table(schema_rows: list[dict[str, str]]) -> list[str]:
    """A list-table of the rows."""
    lines = [".. list-table::", "   :header-rows: 1", "   :widths: 16 22 16 8 38", ""]
    lines += ["   * - " + _HEADER[0], *(f"     - {h}" for h in _HEADER[1:])]
    for row in schema_rows:
        default = f"``{row['default']}``" if row["default"] not in (UNSET, REQUIRED_TEXT) \
            else f"*{row['default']}*"
        default += "".join(f" (profile ``{name}``: ``{value}``)"
                           for name, value in row["profiles"].items())
        lines += [f"   * - ``{row['key']}``", f"     - {_cell(_escape(row['type']))}",
                  f"     - {default}", f"     - {_cell(row['unit'])}",
                  f"     - {_cell(_escape(row['doc']))}"]
    return [*lines, ""]


def section(title: str, intro: list[str], schema_rows: list[dict[str, str]],
            underline: str = "-") -> list[str]:
    """A titled section: its introduction, then its table."""
    return [title, underline * len(title), "", *intro, "", *table(schema_rows)]


def _step_intro(step: Any) -> list[str]:
    doc = step.doc[:1].upper() + step.doc[1:] if step.doc else ""
    intro = [f"{_escape(doc)}. A {step.kind} step: table ``[{step.name}]`` of the workflow "
             f"file; :func:`pystack3d_dask.steps.{step.name}` from Python."]
    if step.needs:
        unless = ", ".join(f"``{k}``" for k in step.needs_unless)
        intro.append("")
        intro.append("Needs " + ", ".join(f"``{n}``" for n in step.needs) + " earlier in "
                     "``process_steps``" + (f" (unless {unless} is set)." if unless else "."))
    return intro


def steps_rst() -> str:
    """The steps' sections, in PyStack3D's order, then the keys every step table has."""
    from pystack3d_dask.params import CHECKPOINT, ROUNDING
    from pystack3d_dask.steps import REGISTRY, available_steps

    lines: list[str] = []
    for name in available_steps():
        step = REGISTRY[name]
        lines += section(name, _step_intro(step), rows(step.params, profile_values(name)))
    # the keys the workflow adds to every step table (workflow.config); a Python call
    # takes rounding, and a checkpoint is pystack3d_dask.checkpoint there
    common = {"checkpoint": CHECKPOINT, "rounding": ROUNDING}
    lines += section("Keys of every step table", [
        "Every step table also takes these keys (``checkpoint`` only in the workflow file; "
        "from Python, :func:`pystack3d_dask.checkpoint` writes a result)."],
        rows(common, profile_values(None)))
    return "\n".join(lines)


def workflow_rst() -> str:
    """The workflow file's top-level keys and its own tables, beside the steps'."""
    from pystack3d_dask.workflow.config import _TOP_LEVEL
    from pystack3d_dask.workflow.schema import _JOBQUEUE, OWN_TABLES

    lines = section("Top-level keys", [
        "Keys outside any table: PyStack3D's, plus ``profile``."], rows(_TOP_LEVEL))
    for name, schema in OWN_TABLES.items():
        lines += section(f"[{name}]", [f"Table ``[{name}]``: not in PyStack3D."], rows(schema))
    lines += section("[scheduler.slurm] and [scheduler.jobqueue]", [
        "The batch system's cluster keywords (dask-jobqueue). The keys below are checked; "
        "any other keyword of the cluster class is passed on for it to check. An unset key "
        "is not passed, so that the site's dask configuration gives it."], rows(_JOBQUEUE))
    return "\n".join(lines)


RENDERERS = {"steps": steps_rst, "workflow": workflow_rst}


def _directive() -> type:
    """The ``p3d-parameters`` directive (Sphinx imported only when building)."""
    from docutils import nodes
    from docutils.statemachine import StringList
    from sphinx.util.docutils import SphinxDirective
    from sphinx.util.nodes import nested_parse_with_titles

    class ParametersDirective(SphinxDirective):
        required_arguments = 1

        def run(self) -> list:
            which = self.arguments[0]
            if which not in RENDERERS:
                raise self.error(f"p3d-parameters: expected one of {sorted(RENDERERS)}, "
                                 f"not {which!r}")
            # the schemas live in the package: a changed table rebuilds this page
            self.env.note_reread()
            node = nodes.section()
            node.document = self.state.document
            text = StringList(RENDERERS[which]().splitlines(), source=f"<p3d-parameters {which}>")
            nested_parse_with_titles(self.state, text, node)
            return node.children

    return ParametersDirective


def setup(app) -> dict:
    """Sphinx extension entry point."""
    app.add_directive("p3d-parameters", _directive())
    return {"parallel_read_safe": True, "parallel_write_safe": True}
