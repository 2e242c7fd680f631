"""The ``pystack3d-dask`` command."""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
import warnings
from pathlib import Path

from ._version import __version__
from .errors import Pystack3dDaskError
from .workflow.profiles import PROFILES

__all__ = ["main"]


def store_location(text: str) -> str | Path:
    """A store argument: a URL (``s3://bucket/run.zarr``) as it is, else a path."""
    from .store.location import is_url

    return text if is_url(text) else Path(text)


def _add_run_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--scheduler", choices=["threads", "processes", "local", "synchronous",
                                                "address", "slurm", "jobqueue"],
                        help="dask scheduler (default: [scheduler] name, else threads)")
    parser.add_argument("--workers", type=int, help="number of workers; for slurm and jobqueue, of jobs "
                        "(default: nproc)")
    parser.add_argument("--address", help="with --scheduler address: the dask scheduler to "
                                          "connect to (tcp://host:port)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pystack3d-dask",
        description="Correct 3D image stacks (FIB-SEM, ...) out of core, with PyStack3D's "
                    "workflow files, on dask and Zarr.")
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run a workflow file (ingest + every step, checkpointed)")
    p.add_argument("workflow", type=Path, help="workflow file (.toml, PyStack3D format)")
    p.add_argument("--store", type=store_location, help="Zarr store (default: WORKFLOW with .zarr)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace a store that was made from another input")
    p.add_argument("--no-report", action="store_true",
                   help="do not write the figures of every step after the run")
    p.add_argument("--report-dir", type=Path,
                   help="folder of the figures (default: STORE-report beside the store)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what the run would do with each group (reuse, resume, compute) "
                        "and why, and stop: nothing is written")
    _add_run_options(p)

    p = sub.add_parser("demo", help="make a synthetic stack, run the workflow, score it")
    p.add_argument("dir", nargs="?", type=Path, default=Path("pystack3d-dask-demo"),
                   help="folder for the stack, store and results (default: %(default)s)")
    p.add_argument("--shape", type=int, nargs=3, metavar=("NZ", "NY", "NX"),
                   help="synthetic stack size (default: the synthetic default)")
    p.add_argument("--no-report", action="store_true", help="do not write the figures")
    _add_run_options(p)

    p = sub.add_parser("synth", help="write a synthetic stack with its ground truth")
    p.add_argument("dir", type=Path, help="output folder")
    p.add_argument("--shape", type=int, nargs=3, metavar=("NZ", "NY", "NX"))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--overwrite", action="store_true", help="write into a non-empty folder")
    p.add_argument("--profile", choices=tuple(PROFILES), default="recommended",
                   help="workflow.toml's profile (pystack3d: a file PyStack3D runs as is)")

    p = sub.add_parser("report", help="write every step's figures (PNG) from a store")
    p.add_argument("store", type=store_location)
    p.add_argument("out", nargs="?", type=Path,
                   help="output folder (default: STORE-report beside the store)")
    p.add_argument("--no-sections", action="store_true", help="no cut planes")
    p.add_argument("--no-cube", action="store_true", help="no 3D view")

    p = sub.add_parser("status", help="show the steps of a store")
    p.add_argument("store", type=store_location)
    p.add_argument("--json", action="store_true", help="machine-readable output")

    p = sub.add_parser("clean", help="remove the slices of checkpoints not kept (resume-safe)")
    p.add_argument("store", type=store_location)
    p.add_argument("--keep", nargs="+", default=["last"], metavar="STEP",
                   help="'last' (default: only the last step's slices), 'all', or step names; "
                        "statistics and parameters always stay")

    p = sub.add_parser("export", help="export a step of a store")
    p.add_argument("store", type=store_location)
    p.add_argument("out", type=Path, help="output folder")
    p.add_argument("--step", help="step name, group name or 'input' (default: the last step)")
    p.add_argument("--format", choices=["tiff", "ome-zarr"], default="tiff",
                   help="tiff: PyStack3D-named slices; ome-zarr: an OME-NGFF multiscale "
                        "image (napari, neuroglancer)")
    p.add_argument("--levels", type=int, help="ome-zarr pyramid levels (default: down to "
                                              "about 64 pixels)")
    p.add_argument("--overwrite", action="store_true", help="write into non-empty folders")
    _add_workflow_file_commands(sub)
    return parser


def _add_workflow_file_commands(sub: argparse._SubParsersAction) -> None:
    """The commands that write a workflow file: from a Zeiss acquisition, or the example."""
    p = sub.add_parser("metadata", help="a workflow file from a Zeiss Atlas 3D acquisition's "
                                        "metadata (channels, cropping area, dz)")
    p.add_argument("dir", type=Path, help="acquisition folder: Atlas3D.a3d-setup and the slices "
                                          "(or one sub-folder of slices per detector)")
    p.add_argument("--out", type=Path, help="workflow file to write (default: print the TOML)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out file")

    p = sub.add_parser("init", help="write the example workflow file, every table commented")
    p.add_argument("out", type=Path, nargs="?", default=Path("workflow.toml"),
                   help="workflow file to write (default: workflow.toml)")
    p.add_argument("--project-dir", help="the input, relative to the file (default: the "
                                         "slices of `pystack3d-dask demo` run in its folder)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing file")


def _cmd_run(args: argparse.Namespace) -> int:
    if args.dry_run:
        from .workflow.config import load_workflow
        from .workflow.plan import format_plan, plan

        wf = load_workflow(args.workflow)
        if args.overwrite:
            wf.store["overwrite"] = True
        print(format_plan(plan(wf, store=args.store)))
        return 0
    from .workflow.pipeline import run

    result = run(args.workflow, store=args.store, scheduler=args.scheduler,
                 workers=args.workers, overwrite=args.overwrite or None, progress=not args.quiet,
                 address=args.address)
    if not args.no_report:
        # scoring against a synthetic truth costs more than the figures: `report` does it
        _report(result.store, args.report_dir, score=False)
    return 0


def _report(store: Path, out: Path | None, score: bool = True, **kwargs: bool) -> None:
    from .report.figures import default_report_dir, write_report
    from .report.html import write_html_report

    start = time.perf_counter()
    where = out if out is not None else default_report_dir(store)
    files = write_report(store, where, truth=score, **kwargs)
    page = write_html_report(store, where / "report.html", figures_dir=where, score=score)
    print(f"report: {len(files)} figures and {page} ({time.perf_counter() - start:.2f} s)",
          file=sys.stderr)


def _cmd_report(args: argparse.Namespace) -> int:
    _report(args.store, args.out, sections=not args.no_sections, cube=not args.no_cube)
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .datasets.demo import demo

    demo(args.dir, shape=tuple(args.shape) if args.shape else None, scheduler=args.scheduler,
         workers=args.workers, progress=not args.quiet, report=not args.no_report)
    return 0


def _cmd_synth(args: argparse.Namespace) -> int:
    from .datasets.synthetic import write_synthetic

    kwargs = {"seed": args.seed, "overwrite": args.overwrite, "profile": args.profile}
    if args.shape:
        kwargs["shape"] = tuple(args.shape)
    start = time.perf_counter()
    write_synthetic(args.dir, **kwargs)
    print(f"synthetic stack written to {args.dir} in {time.perf_counter() - start:.1f} s "
          f"(slices/, truth.zarr, workflow.toml)")
    return 0


def _cmd_status(args: argparse.Namespace) -> int:
    from .workflow.status import format_status, store_status

    rows = store_status(args.store)
    print(json.dumps(rows, indent=2) if args.json else format_status(rows))
    return 0


def _cmd_clean(args: argparse.Namespace) -> int:
    from .workflow.clean import clean

    keep = args.keep[0] if args.keep in (["last"], ["all"]) else list(args.keep)
    print(clean(args.store, keep).summary())
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from .io.export import export_tiff
    from .runtime.cluster import executor
    from .workflow.pipeline import open_result

    stack = open_result(args.store, args.step)
    with executor("threads", 2) as ex:
        if args.format == "ome-zarr":
            from .io.ome import export_ome_zarr

            shapes = export_ome_zarr(stack, args.out, levels=args.levels,
                                     overwrite=args.overwrite, compute=ex.as_compute("export"))
            print(f"OME-Zarr with {len(shapes)} levels written to {args.out} "
                  f"({stack.attrs.get('group')}): " + ", ".join("x".join(map(str, s))
                                                             for s in shapes))
            return 0
        files = export_tiff(stack, args.out, overwrite=args.overwrite,
                            compute=ex.as_compute("export"))
    print(f"{len(files)} slices written to {args.out} ({stack.attrs.get('group')})")
    return 0


def _cmd_metadata(args: argparse.Namespace) -> int:
    from .io.zeiss import workflow_from_zeiss
    from .workflow.config import load_workflow, tomllib
    from .workflow.example import write_workflow_file

    text = workflow_from_zeiss(args.dir)
    load_workflow(tomllib.loads(text), base_dir=args.dir)  # what is written must load
    if args.out is None:
        print(text, end="")
        return 0
    write_workflow_file(args.out, text, overwrite=args.overwrite)
    print(f"workflow written to {args.out}", file=sys.stderr)
    return 0


def _cmd_init(args: argparse.Namespace) -> int:
    from .workflow.example import write_example

    path = write_example(args.out, args.project_dir, overwrite=args.overwrite)
    print(f"workflow written to {path}; run it with: pystack3d-dask run {path}",
          file=sys.stderr)
    return 0


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"warning: {message}", file=sys.stderr)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``pystack3d-dask`` command; returns the exit status."""
    args = _parser().parse_args(argv)
    if not args.debug:
        warnings.showwarning = _show_warning
    commands = {"run": _cmd_run, "demo": _cmd_demo, "synth": _cmd_synth,
                "status": _cmd_status, "export": _cmd_export, "clean": _cmd_clean,
                "report": _cmd_report, "metadata": _cmd_metadata, "init": _cmd_init}
    try:
        return commands[args.command](args)
    except Pystack3dDaskError as exc:
        if args.debug:
            traceback.print_exc()
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: the finished slices are kept; run again to resume",
              file=sys.stderr)
        return 130
    except Exception as exc:  # not one of ours: one line, unless asked for the traceback
        if args.debug:
            raise
        print(f"error: {unexpected_message(exc, args.command)}", file=sys.stderr)
        return 1


def unexpected_message(exc: BaseException, command: str) -> str:
    """One line for an error this package did not raise on purpose: what it is, where
    (the step, the file), and how to see more."""
    where = getattr(exc, "pystack3d_step", None)
    place = f" in step {where}" if where else ""
    name = getattr(exc, "filename", None)
    about = f" ({name})" if name and str(name) not in str(exc) else ""
    return (f"{command}{place} failed: {type(exc).__name__}: {exc}{about}. Run again with "
            "--debug for the traceback, and report it if the input looks right")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
