"""Workflow files: PyStack3D's TOML format plus this project's own tables.

A PyStack3D file loads unchanged: its top-level keys (``project_dir`` and its older
names ``input_dirname`` and ``dirname``, ``ind_min``, ``ind_max``, ``channels``,
``nproc``, ``process_steps``, ``history``) and one table per step. This project adds
``[store]``, ``[scheduler]`` and ``[input]`` tables and a ``checkpoint`` key in each
step table. Relative paths are resolved against the folder of the workflow file.
"""

from __future__ import annotations

import copy
import tomllib
import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, suggest
from ..params import (
    CHECKPOINT,
    DEFAULT_POLICY,
    PYSTACK3D_STEPS,
    ROUNDING,
    Param,
    integer,
    string,
    string_list,
    validate_table,
)
from ..steps import step_schemas
from ..store.location import StoreRef, is_url, store_ref
from .profiles import DEFAULT_PROFILE, PROFILES, profile_defaults
from .schema import OWN_TABLES

__all__ = ["DEFAULT_POLICY", "Workflow", "load_workflow"]


_PROJECT_DIR_NAMES = ("project_dir", "input_dirname", "dirname")


def _steps_list(table: str, key: str, value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a list of step names "
                          f"among {list(PYSTACK3D_STEPS)}")
    return list(value)


_TOP_LEVEL: dict[str, Param] = {
    "project_dir": Param(lambda t, k, v: _path_value(k, v), None,
                         "folder of the slices, or an array input ([input] path)"),
    "input_dirname": Param(lambda t, k, v: _path_value(k, v), None, "older name of project_dir"),
    "dirname": Param(lambda t, k, v: _path_value(k, v), None, "older name of project_dir"),
    "ind_min": Param(integer(0), 0, "first slice kept (inclusive)"),
    "ind_max": Param(integer(0), 99999, "last slice kept (inclusive)"),
    "channels": Param(string_list, ["."], 'channel sub-folders; ["."]: slices in project_dir'),
    "nproc": Param(integer(1), 1, "number of workers"),
    "process_steps": Param(_steps_list, [], "steps to run, in order"),
    "history": Param(_steps_list, [], "PyStack3D's list of finished steps (superseded here)"),
    "profile": Param(string(tuple(PROFILES)), DEFAULT_PROFILE,
                     '"pystack3d" (PyStack3D\'s results) or "recommended" (this project\'s '
                     "best-measured settings; keys set in the file still win). Not in PyStack3D"),
}


def _path_value(key: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{key} = {value!r} is invalid: expected a path (string)")
    return value


@dataclass
class Workflow:
    """A validated workflow.

    Attributes
    ----------
    project_dir
        Folder of the slices (or one multi-page TIFF file).
    steps
        Validated parameters of every step table (defaults, then the profile's values,
        filled in), including the ``checkpoint`` and ``rounding`` keys.
    store, scheduler, input
        This project's tables, validated.
    source
        The workflow file, or None when built from a dictionary.
    """

    project_dir: Path
    ind_min: int
    ind_max: int
    channels: list[str]
    nproc: int
    process_steps: list[str]
    history: list[str]
    steps: dict[str, dict[str, Any]]
    store: dict[str, Any]
    scheduler: dict[str, Any]
    input: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)
    source: Path | None = None
    profile: str = DEFAULT_PROFILE
    project_url: str | None = None

    @property
    def input_location(self) -> str:
        """The input: ``[input] path`` when set (it wins), else ``project_dir`` (a URL
        kept as written, a path absolute)."""
        return self.input["path"] or self.project_url or str(self.project_dir)

    def input_set(self, key: str) -> bool:
        """Whether the workflow sets ``[input] key`` itself (rather than its default)."""
        table = self.raw.get("input")
        return isinstance(table, Mapping) and table.get(key, "") != ""

    @property
    def policy(self) -> str:
        """File-name pattern giving each slice's z position."""
        return (self.input["policy"] or self.steps["resampling"]["policy"]) or DEFAULT_POLICY

    def store_path(self) -> Path | StoreRef:
        """The Zarr store this workflow writes to: a folder, or a store on object storage
        (its URL and ``[store] storage_options``)."""
        if self.store["path"] and is_url(self.store["path"]):
            return store_ref(self.store["path"], self.store.get("storage_options"))
        if self.store["path"]:
            return Path(self.store["path"])
        if self.source is None:
            raise ConfigError("no store path: set [store] path = ... or pass store=...")
        return self.source.with_suffix(".zarr")

    def set_store(self, store: str | Path | StoreRef) -> None:
        """Use another store than ``[store] path`` (a StoreRef brings its options)."""
        if isinstance(store, StoreRef):
            self.store["path"] = store.url
            self.store["storage_options"] = store.storage_options
        else:
            self.store["path"] = str(store) if is_url(store) else str(Path(store).resolve())

    def step_params(self, name: str) -> dict[str, Any]:
        """Parameters of one step without this project's ``checkpoint`` key."""
        return {k: v for k, v in self.steps[name].items() if k != "checkpoint"}


def _read_toml(path: Path) -> dict[str, Any]:
    if not path.exists():
        raise ConfigError(f"workflow file not found: {path}; expected the path of a .toml "
                          "workflow file")
    if path.is_dir():
        raise ConfigError(f"workflow path is a folder, expected a .toml file: {path}")
    try:
        # utf-8-sig: a byte-order mark (Windows editors write one) is not TOML's, but it
        # says nothing about the workflow: read past it
        return tomllib.loads(path.read_bytes().decode("utf-8-sig"))
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not a text file in UTF-8, as TOML must be ({exc}); "
                          "save it as UTF-8") from None


def load_workflow(workflow: str | Path | Mapping[str, Any] | Workflow,
                  base_dir: str | Path | None = None) -> Workflow:
    """Load and validate a workflow.

    Parameters
    ----------
    workflow
        Path of a TOML file, or its content as a dictionary, or a Workflow (returned
        as is).
    base_dir
        Folder against which relative paths of a dictionary are resolved (default:
        the current folder). A file's own folder is used for a file.

    Returns
    -------
    Workflow

    Raises
    ------
    ConfigError
        For a missing file, a TOML syntax error, an unknown key (with the nearest
        valid name), a wrong type or an out-of-range value.
    """
    if isinstance(workflow, Workflow):
        return workflow
    raw, source, base = _raw_workflow(workflow, base_dir)
    schemas = step_schemas()
    tables, top = _split_tables(raw, set(schemas) | set(OWN_TABLES))
    main = validate_table("", top, _TOP_LEVEL)
    input_table = tables.get("input")
    has_path = isinstance(input_table, Mapping) and input_table.get("path", "") != ""
    # [input] path names the input: project_dir may then be left out, even of a dictionary
    project_dir = base if has_path and not any(main[k] for k in _PROJECT_DIR_NAMES) else (
        _project_dir(main, source, base))
    given = next((main[k] for k in _PROJECT_DIR_NAMES if main[k]), None)
    if main["ind_min"] > main["ind_max"]:
        raise ConfigError(f"ind_min = {main['ind_min']} is larger than ind_max = "
                          f"{main['ind_max']}: expected ind_min <= ind_max")
    _check_step_names(main["process_steps"], main["history"], schemas)
    steps = _validated_steps(tables, schemas, main["profile"])
    own = _validated_own_tables(tables, base, main["nproc"])
    return Workflow(
        project_dir=project_dir,
        ind_min=main["ind_min"],
        ind_max=main["ind_max"],
        channels=main["channels"],
        nproc=main["nproc"],
        process_steps=main["process_steps"],
        history=main["history"],
        steps=steps,
        store=own["store"],
        scheduler=own["scheduler"],
        input=own["input"],
        raw=raw,
        source=source,
        profile=main["profile"],
        project_url=given if given is not None and is_url(given) else None,
    )


def _raw_workflow(workflow: str | Path | Mapping[str, Any], base_dir: str | Path | None
                  ) -> tuple[dict[str, Any], Path | None, Path]:
    """The workflow's content, its file (None for a dictionary) and the folder that
    relative paths are resolved against.

    Parameters
    ----------
    workflow, base_dir
        As :func:`load_workflow` takes them (a Workflow excepted).

    Returns
    -------
    tuple
        ``(raw, source, base)``: ``raw`` is a deep copy of a dictionary, so that
        validation never changes the caller's.
    """
    if isinstance(workflow, (str, Path)):
        source = Path(workflow).resolve()
        return _read_toml(source), source, source.parent
    if isinstance(workflow, Mapping):
        return copy.deepcopy(dict(workflow)), None, Path(base_dir or Path.cwd()).resolve()
    raise ConfigError(f"workflow must be a path or a dictionary, not {type(workflow).__name__}")


def _split_tables(raw: dict[str, Any], known_tables: set[str]
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The workflow's tables and its top-level values, refusing an unknown table (with
    the nearest valid name), a top-level key given as a table, or a table's name given
    as a value."""
    tables = {k: v for k, v in raw.items() if isinstance(v, dict)}
    top = {k: v for k, v in raw.items() if not isinstance(v, dict)}
    for name in tables:
        if name not in known_tables:
            if name in _TOP_LEVEL:
                raise ConfigError(f"{name} must be a value, not a table")
            raise ConfigError(f"unknown table [{name}]{suggest(name, sorted(known_tables))}; "
                              f"valid tables: {', '.join(sorted(known_tables))}")
    for key in top:
        if key in known_tables:
            raise ConfigError(f"{key} must be a table ([{key}]), not {top[key]!r}")
    return tables, top


def _project_dir(main: dict[str, Any], source: Path | None, base: Path) -> Path:
    """The folder (or multi-page TIFF) of the slices, absolute.

    From ``project_dir`` or its older names (which warn, at :func:`load_workflow`'s
    caller), else the workflow file's folder, as in PyStack3D.

    Raises
    ------
    ConfigError
        For a dictionary without any of the names.
    """
    given = [k for k in _PROJECT_DIR_NAMES if main[k]]
    for old in given:
        if old != "project_dir":
            warnings.warn(f"{old!r} is PyStack3D's older name of 'project_dir'; use "
                          "'project_dir'", FutureWarning, stacklevel=3)
    if given:
        project_dir = Path(main[given[0]])
    elif source is not None:
        project_dir = source.parent  # PyStack3D's rule: the slices sit beside the file
    else:
        raise ConfigError("project_dir is missing: the folder (or multi-page TIFF) of the slices")
    if not project_dir.is_absolute():
        project_dir = base / project_dir
    return project_dir


def _check_step_names(process_steps: list[str], history: list[str],
                      schemas: Mapping[str, Any]) -> None:
    """Refuse an unknown step (with the nearest valid name) in ``process_steps`` or
    ``history``, and a step listed twice in ``process_steps``."""
    seen: set[str] = set()
    for name in process_steps:
        if name not in schemas:
            raise ConfigError(f"unknown step {name!r} in process_steps"
                              f"{suggest(name, PYSTACK3D_STEPS)}; valid steps: "
                              f"{', '.join(PYSTACK3D_STEPS)}")
        if name in seen:
            raise ConfigError(f"step {name!r} is listed twice in process_steps; each step may "
                              f"run once. Valid steps: {', '.join(PYSTACK3D_STEPS)}")
        seen.add(name)
    for name in history:
        if name not in schemas:
            raise ConfigError(f"unknown step {name!r} in history{suggest(name, PYSTACK3D_STEPS)}")


def _validated_steps(tables: dict[str, Any], schemas: Mapping[str, Any], profile: str
                     ) -> dict[str, dict[str, Any]]:
    """Every step's table validated: the file's keys over the profile's values, then
    the defaults, with this project's ``checkpoint`` and ``rounding`` keys."""
    common = {"checkpoint": CHECKPOINT, "rounding": ROUNDING}
    steps = {}
    for name, schema in schemas.items():
        table = tables.get(name, {})
        if isinstance(table, Mapping):
            table = {**profile_defaults(profile, name, table), **table}
        steps[name] = validate_table(name, table, schema, common)
    return steps


def _validated_own_tables(tables: dict[str, Any], base: Path, nproc: int
                          ) -> dict[str, dict[str, Any]]:
    """This project's tables validated: the store path made absolute against ``base``,
    the batch-system tables checked, the workers defaulting to ``nproc``."""
    own = {name: validate_table(name, tables.get(name, {}), schema)
           for name, schema in OWN_TABLES.items()}
    for table in ("store", "input"):  # a path relative to the workflow's folder; a URL kept
        path = own[table]["path"]
        if path and not is_url(path) and not Path(path).is_absolute():
            own[table]["path"] = str(base / path)
    sched = own["scheduler"]
    for key, kind in (("slurm", "slurm"), ("jobqueue", sched["kind"])):
        if sched[key]:
            from ..runtime.jobqueue import check_table

            check_table(kind, sched[key], f"scheduler.{key}")
    if own["scheduler"]["workers"] is None:
        own["scheduler"]["workers"] = nproc
    return own
