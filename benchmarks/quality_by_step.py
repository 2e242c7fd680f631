"""Quality of every correction step against the ground truth: PyStack3D, this project with
PyStack3D's parameters, and this project with its recommended profile.

Usage::

    python benchmarks/quality_by_step.py [--shape 60 192 192] [--seeds 0 1 2]
        [--cases default strong_curtains few_weak_curtains] [--workers 2] [--dir TMP]
        [--json OUT]

For each case (a set of defect strengths of :func:`pystack3d_dask.datasets.synthetic.generate`)
and seed, the synthetic stack is written with its PyStack3D workflow and corrected by
three tools:

* ``ps3d``: PyStack3D itself (a child process, ``tests/pystack3d_runner.py``);
* ``ours``: this project on the same workflow (``profile`` absent: PyStack3D's values);
* ``rec``: this project with ``profile = "recommended"``, the keys that profile sets
  being removed from the step tables so that its values apply (skipped, and said so,
  while ``pystack3d_dask.workflow.profiles`` does not exist).

Every step's output is scored against the truth slice by slice, then averaged over the
slices: MAE, SSIM, PSNR (of the mean squared error; data range: the dtype's) and the
contrast (least-squares slope of the output on the truth; 1 = contrast kept). Before
``registration_transformation`` the truth is moved by the known drift of each slice;
from it on, by the residual misalignment that phase correlation finds between the
slice and the truth (the same estimate for every tool, so intensity steps are judged on
intensity alone). The output itself is never interpolated: that would smooth its noise
and flatter it. Pixels whose truth comes from within a few pixels of the frame's edge
are left out. A step is flagged when it made things worse than its input: ``M`` for an
MAE more than 2 % higher, ``C`` for a contrast moved by more than 2 % away from 1, both
averaged over the slices the two have in common (those that resampling adds in the gaps
have no input).

The last step's output is scored once more as a volume, with one (dy, dx) translation
for all its slices (the median of the per-slice estimates, or none, whichever gives the
lower MAE), so that an offset of the whole volume is not counted. The oracle floor is
the same seed with only noise, drift and missing slices, corrected by this project's
registration and resampling alone (recommended profile when there is one): what the
truth plus noise looks like after the same resampling and its residual misalignment,
scored on the pixels of ``ours``' final output. Printed last: the final volumes, then
per case and seed ``rec`` minus ``ps3d`` SSIM, ``rec`` / ``ps3d`` MAE and the oracle's
SSIM minus ``rec``'s (and the same for ``ours``).
"""

from __future__ import annotations

import os

# Set before numpy loads OpenBLAS: its threads cost more than they save on the small
# complex matrix products of phase_cross_correlation (10x slower with 2 threads here),
# and both tools already run one worker per core.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse
import json
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))
# This checkout's package, wherever the script is run from: a plain (non-editable)
# install elsewhere would otherwise be scored instead of the code beside the script.
sys.path.insert(0, str(HERE.parent))

from harness import format_table  # noqa: E402
from quality_runs import CASES, TOOLS, _jsonable, load_profile, run_case  # noqa: E402
from quality_scoring import Stack  # noqa: E402

# ----------------------------------------------------------------------------- output


def step_table(run: Mapping[str, Any]) -> str:
    """Text table of one case and seed: a row per step, MAE/SSIM/PSNR/contrast/flag per tool."""
    tools = [t for t in TOOLS if any(t in run["steps"][s] for s in run["steps_order"])]
    columns = ["step"]
    for tool in tools:
        columns += [f"{tool} MAE", f"{tool} SSIM", f"{tool} PSNR", f"{tool} contr", f"{tool} !"]
    rows = []
    for step in run["steps_order"]:
        row: dict[str, Any] = {"step": step}
        for tool in tools:
            sc = run["steps"][step].get(tool)
            if sc is None:
                continue
            row.update({f"{tool} MAE": sc["mae"], f"{tool} SSIM": sc["ssim"],
                        f"{tool} PSNR": sc["psnr"], f"{tool} contr": sc["contrast"],
                        f"{tool} !": run["flags"][step].get(tool, "")})
        rows.append(row)
    title = (f"case {run['case']}, seed {run['seed']}: per-step scores against the truth "
             f"(mean over slices; contr = contrast; ! = worse than the step's input: "
             f"M = MAE +2 %, C = contrast 2 % further from 1; - = no slices written)")
    return format_table(rows, columns, float_format=".4g", title=title)


def summary_tables(runs: Sequence[Mapping[str, Any]]) -> str:
    """The final volume of every tool and the oracle, then the requested comparisons."""
    names = [*TOOLS, "oracle"]
    present = [n for n in names if any(n in r["final"] for r in runs)]
    rows, comp = [], []
    for r in runs:
        row: dict[str, Any] = {"case": r["case"], "seed": r["seed"]}
        for n in present:
            f = r["final"].get(n)
            if f is not None:
                row.update({f"{n} SSIM": f["ssim"], f"{n} MAE": f["mae"], f"{n} PSNR": f["psnr"]})
        rows.append(row)
        comp.append({"case": r["case"], "seed": r["seed"], **comparisons(r["final"])})
    cols = ["case", "seed", *(f"{n} {m}" for m in ("SSIM", "MAE", "PSNR") for n in present)]
    ccols = ["case", "seed", "rec-ps3d SSIM", "rec/ps3d MAE", "oracle-rec SSIM",
             "ours-ps3d SSIM", "oracle-ours SSIM"]
    means: dict[str, Any] = {"case": "mean", "seed": ""}
    for c in ccols[2:]:
        vals = [x[c] for x in comp if isinstance(x.get(c), float)]
        means[c] = float(np.mean(vals)) if vals else None
    comp.append(means)
    return "\n\n".join([
        format_table(rows, cols, float_format=".4g",
                     title="final volume against the truth (one translation for the whole volume)"),
        format_table(comp, ccols, float_format=".4f",
                     title="recommended (rec) against PyStack3D (ps3d) and the oracle floor"),
    ])


def comparisons(final: Mapping[str, Mapping[str, float]]) -> dict[str, float | None]:
    """Differences of final SSIM and ratio of final MAE between the contenders."""

    def get(name: str, metric: str) -> float | None:
        f = final.get(name)
        return None if f is None else float(f[metric])

    def diff(a: str, b: str) -> float | None:
        va, vb = get(a, "ssim"), get(b, "ssim")
        return None if va is None or vb is None else va - vb

    mae_rec, mae_ref = get("rec", "mae"), get("ps3d", "mae")
    return {"rec-ps3d SSIM": diff("rec", "ps3d"),
            "rec/ps3d MAE": None if mae_rec is None or not mae_ref else mae_rec / mae_ref,
            "oracle-rec SSIM": diff("oracle", "rec"),
            "ours-ps3d SSIM": diff("ours", "ps3d"),
            "oracle-ours SSIM": diff("oracle", "ours")}



def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[60, 192, 192],
                        metavar=("NZ", "NY", "NX"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--cases", nargs="+", choices=sorted(CASES), default=list(CASES))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--dir", type=Path, default=None, help="folder of the temporary files")
    parser.add_argument("--json", type=Path, default=None, help="write every number there")
    args = parser.parse_args()
    shape = (args.shape[0], args.shape[1], args.shape[2])

    # A terminated run still removes its temporary stores (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    import pystack3d_dask

    profile, line = load_profile()
    print(f"pystack3d_dask from {Path(pystack3d_dask.__file__).parent}")
    print(line)
    start = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(dir=args.dir, prefix="p3d-quality-"))
    runs = []
    oracles: dict[str, tuple[Stack, float]] = {}
    changes = None
    try:
        for case in args.cases:
            for seed in args.seeds:
                run = run_case(case, seed, shape, args.workers, scratch, profile, oracles)
                runs.append(run)
                if run["rec_changes"] not in (None, changes):
                    changes = run["rec_changes"]
                    print(changes)
                print()
                print(step_table(run))
                for note in run["notes"]:
                    print(f"  note: {note}")
                print("  wall: " + ", ".join(f"{k} {v:.1f} s" for k, v in run["wall_s"].items()),
                      flush=True)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    print()
    print(summary_tables(runs))
    total = time.perf_counter() - start
    print(f"\n{'x'.join(map(str, shape))} stacks, {len(runs)} runs, {total:.0f} s in all")
    if args.json is not None:
        doc = {"shape": shape, "seeds": args.seeds, "cases": {c: CASES[c] for c in args.cases},
               "workers": args.workers, "profile": line, "tools": TOOLS, "runs": runs,
               "total_s": total}
        args.json.write_text(json.dumps(_jsonable(doc), indent=1), encoding="utf-8")
        print(f"every number written to {args.json}")


if __name__ == "__main__":
    main()
