"""API pages written at build time: one page per public module of the package.

Public: every module whose dotted name has no part starting with ``_``, and in it the
names of its ``__all__`` (without one: the functions and classes it defines). A name that
a module only re-exports is documented in the module that defines it, and linked from
the others (``steps`` re-exports ``StepOutput`` from ``store.write``); the package's own
page, its front door, documents its whole ``__all__`` (``run``, ``open_result``). The kept import
paths (``pystack3d_dask.config`` and the like: ``sys.modules`` entries that are a module
of its new home) are listed as aliases, not documented twice. A module added to the
package gets its page on the next build; a page is rewritten only when its text changes,
so that an incremental build stays incremental.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path
from types import ModuleType
from typing import Any

PACKAGE = "pystack3d_dask"
#: Folder of the generated pages, under the documentation's source folder.
FOLDER = "api"
#: Values longer than this (as repr) are not shown beside a constant's name.
MAX_VALUE = 60

INDEX_INTRO = """\
API reference
=============

One page per public module of ``{package}``: every module whose name has no part
starting with ``_``. A module's page documents its ``__all__`` (where it has none, the
functions and classes it defines); a name it only re-exports links to the module that
defines it, except on the package's own page, which documents its whole ``__all__``.
Start with the package itself (:mod:`{package}`: ``run``, ``open_result``,
``checkpoint``, ``steps``) and :mod:`{package}.steps` (every correction step as a Python
function); the steps' parameters are on :doc:`../reference/steps`.

.. toctree::
   :maxdepth: 2

   {package}
"""


def public_modules(package: str = PACKAGE) -> tuple[list[str], dict[str, str]]:
    """The package's public modules, and its kept import paths.

    Parameters
    ----------
    package : str
        Dotted name of the package.

    Returns
    -------
    modules : list of str
        Dotted names of the public modules, the package first, sorted.
    aliases : dict
        Kept import path -> dotted name of the module it is (not in ``modules``).
    """
    root = importlib.import_module(package)
    modules, aliases = [package], {}
    for info in pkgutil.walk_packages(root.__path__, f"{package}."):
        if any(part.startswith("_") for part in info.name.split(".")):
            continue
        module = importlib.import_module(info.name)
        if module.__name__ != info.name:
            aliases[info.name] = module.__name__
        else:
            modules.append(info.name)
    return sorted(modules), aliases


def public_names(module: ModuleType) -> list[str]:
    """A module's ``__all__``, or the public functions and classes it defines."""
    if hasattr(module, "__all__"):
        return list(module.__all__)
    return [name for name, obj in vars(module).items()
            if not name.startswith("_") and (inspect.isclass(obj) or inspect.isfunction(obj))
            and obj.__module__ == module.__name__]


def _top_statements(body: list[ast.stmt]) -> list[ast.stmt]:
    """Module-level statements, looking into ``if`` and ``try`` blocks."""
    out = []
    for node in body:
        out.append(node)
        if isinstance(node, ast.If | ast.Try):
            inner = [*node.body, *node.orelse, *getattr(node, "finalbody", [])]
            for handler in getattr(node, "handlers", []):
                inner += handler.body
            out += _top_statements(inner)
    return out


def imported_from(module: ModuleType) -> dict[str, str]:
    """name -> the module it is imported from, for a module's ``from ... import`` lines."""
    try:
        tree = ast.parse(inspect.getsource(module))
    except (OSError, TypeError):
        return {}
    package = module.__name__ if hasattr(module, "__path__") else module.__name__.rpartition(".")[0]
    out = {}
    for node in _top_statements(tree.body):
        if not isinstance(node, ast.ImportFrom):
            continue
        base = node.module or ""
        if node.level:
            parts = package.split(".")
            base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
        for alias in node.names:
            out[alias.asname or alias.name] = base
    return out


def _documents(module_name: str, name: str, documented: set[str]) -> bool:
    return module_name in documented and name in public_names(importlib.import_module(module_name))


def home(module: ModuleType, name: str, documented: set[str]) -> str | None:
    """The module that defines ``module.name`` and documents it, when it is not ``module``
    (None: documented here)."""
    obj = getattr(module, name)
    if inspect.isclass(obj) or inspect.isroutine(obj):
        origin = getattr(obj, "__module__", None)
        found = origin != module.__name__ and _documents(origin, name, documented)
        return origin if found else None
    origin, current = None, module
    for _ in range(8):  # follow re-exports of re-exports to the defining module
        source = imported_from(current).get(name)
        if source is None or not _documents(source, name, documented):
            break
        origin, current = source, importlib.import_module(source)
    return origin


def commented(module_name: str) -> set[str]:
    """The module-level names a module documents with a ``#:`` comment (or a docstring
    after the assignment)."""
    from sphinx.pycode import ModuleAnalyzer, PycodeError

    try:
        docs = ModuleAnalyzer.for_module(module_name).find_attr_docs()
    except PycodeError:
        return set()
    return {name for scope, name in docs if not scope}


def _plain_value(obj: Any) -> bool:
    """A value worth showing beside its name: short, and a literal (not ``<object at
    0x...>``, which would also change the page at every build)."""
    text = repr(obj)
    try:
        ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return False
    return len(text) <= MAX_VALUE


def member_lines(fullname: str, obj: Any, documented_data: set[str]) -> list[str]:
    """The directive of one member: autodoc's, or, for a constant with no comment of its
    own, a bare entry (autodoc would show the docstring of its type: ``str(object='')``)."""
    if inspect.isclass(obj):
        kind = "exception" if issubclass(obj, BaseException) else "class"
        return [f".. auto{kind}:: {fullname}", "   :members:", "   :show-inheritance:", ""]
    if inspect.isroutine(obj):
        return [f".. autofunction:: {fullname}", ""]
    short = _plain_value(obj)
    if fullname.rpartition(".")[2] not in documented_data:
        return [f".. py:data:: {fullname}", *([f"   :value: {obj!r}"] if short else []), ""]
    return [f".. autodata:: {fullname}", *([] if short else ["   :no-value:"]), ""]


def _shadowed(name: str) -> bool:
    """A module hidden by a name of its package (``steps.cropping`` is a step function
    there): its module entry is not indexed, so that the function keeps the name."""
    parent, _, short = name.rpartition(".")
    return bool(parent) and getattr(importlib.import_module(parent), short, None) \
        is not importlib.import_module(name)


def module_page(name: str, modules: list[str]) -> str:
    """The reStructuredText of one module's page (a package's lists its modules)."""
    module = importlib.import_module(name)
    lines = [name, "=" * len(name), "", f".. automodule:: {name}"]
    lines += ["   :no-index:", ""] if _shadowed(name) else [""]
    lines += [f".. currentmodule:: {name}", ""]
    documented, reexported, data_docs = set(modules), [], commented(name)
    for member in public_names(module):
        obj = getattr(module, member)
        if inspect.ismodule(obj):
            origin = obj.__name__
        elif "." not in name:
            origin = None  # the package's front door documents its whole __all__
        else:
            origin = home(module, member, documented)
        if origin is not None:
            reexported.append((member, origin, inspect.ismodule(obj)))
        else:
            lines += member_lines(f"{name}.{member}", obj, data_docs)
    if reexported:
        lines += [".. rubric:: Re-exported here", ""]
        lines += [f"- :py:mod:`{member} <{origin}>`" if is_module else
                  f"- :py:obj:`{member} <{origin}.{member}>`, from :py:mod:`{origin}`"
                  for member, origin, is_module in reexported]
        lines.append("")
    depth = name.count(".") + 1
    children = [m for m in modules if m.startswith(f"{name}.") and m.count(".") == depth]
    if children:
        lines += [".. rubric:: Modules", "", ".. toctree::", "   :maxdepth: 1", ""]
        lines += [*(f"   {child}" for child in children), ""]
    return "\n".join(lines)


def index_page(aliases: dict[str, str], package: str = PACKAGE) -> str:
    """The reStructuredText of the API index: the package's page and the kept names."""
    text = INDEX_INTRO.format(package=package)
    if aliases:
        text += ("\nKept import paths\n-----------------\n\n"
                 "These names, shown by older examples and notebooks, import the very "
                 "module of their new home, documented there:\n\n")
        text += "".join(f"- ``{old}``: :py:mod:`{new}`\n" for old, new in sorted(aliases.items()))
    return text


def write_pages(srcdir: Path, package: str = PACKAGE) -> list[Path]:
    """Write the API pages under ``srcdir/api``, remove those of modules that are gone,
    and return the paths of the pages."""
    modules, aliases = public_modules(package)
    folder = srcdir / FOLDER
    folder.mkdir(exist_ok=True)
    pages = {folder / "index.rst": index_page(aliases, package)}
    pages.update({folder / f"{name}.rst": module_page(name, modules) for name in modules})
    for path, text in pages.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
    for stale in set(folder.glob("*.rst")) - set(pages):
        stale.unlink()
    return sorted(pages)


def _on_builder_inited(app: Any) -> None:
    write_pages(Path(app.srcdir))


def setup(app: Any) -> dict:
    """Sphinx extension entry point."""
    app.connect("builder-inited", _on_builder_inited)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
