"""The plan of a run (reuse, resume or compute, and why), on its own and against the run
that carries it out."""

from __future__ import annotations

import copy
import subprocess
import sys
import tomllib

import pytest

import pystack3d_dask as p3d
from pystack3d_dask.datasets.synthetic import write_synthetic
from pystack3d_dask.store.checkpoints import Store
from pystack3d_dask.workflow.plan import format_plan, plan

STEPS = ["cropping", "bkg_removal", "intensity_rescaling", "cropping_final"]
STATUS = {"compute": "computed", "reuse": "reused", "resume": "resumed",
          "keep removed": "removed"}


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    root = tmp_path_factory.mktemp("plan")
    files = write_synthetic(root / "syn", shape=(10, 60, 70), seed=3)
    params = tomllib.loads(files.workflow.read_text())
    return files.slices_dir, params, files.workflow


def _workflow(project, store, **store_table):
    slices, params, _ = project
    wf = copy.deepcopy(params)
    wf.update({"project_dir": str(slices), "process_steps": list(STEPS),
               "store": {"path": str(store), **store_table}})
    return wf


def _actions(groups):
    return [(g.group.split("/")[-1], g.action) for g in groups]


def _run_matches(project, store, groups, **store_table):
    """Run the workflow and check that each group went as planned."""
    result = p3d.run(_workflow(project, store, **store_table), progress=False)
    assert [r.group for r in result.reports] == [g.group for g in groups]
    assert [r.status for r in result.reports] == [STATUS[g.action] for g in groups]
    return result


def test_plan_says_what_the_run_does_and_why(project, tmp_path):
    store = tmp_path / "s.zarr"
    fresh = plan(_workflow(project, store))
    assert {g.action for g in fresh} == {"compute"}
    assert all(g.why == "no store yet" for g in fresh)
    assert not store.exists()  # planning writes nothing
    _run_matches(project, store, fresh)

    again = plan(_workflow(project, store))
    assert {g.action for g in again} == {"reuse"}
    assert [g.fingerprint for g in again] == [g.fingerprint for g in fresh]
    _run_matches(project, store, again)

    # the last step's parameters change: its group alone is computed again
    wf = _workflow(project, store)
    area = wf["cropping_final"]["area"]
    wf["cropping_final"]["area"] = [area[0] + 2, area[1], area[2] + 2, area[3]]
    changed = plan(wf)
    assert _actions(changed)[:-1] == [(g, "reuse") for g, _ in _actions(again)[:-1]]
    assert changed[-1].action == "compute" and "other parameters" in changed[-1].why

    # an interrupted write: resumed
    Store(store, create=False).update_attrs("steps/03_intensity_rescaling", complete=False)
    interrupted = plan(_workflow(project, store))
    assert _actions(interrupted)[3] == ("03_intensity_rescaling", "resume")
    assert "interrupted" in interrupted[3].why
    _run_matches(project, store, interrupted)


def test_plan_of_removed_slices(project, tmp_path):
    store = tmp_path / "s.zarr"
    p3d.run(_workflow(project, store, keep="last"), progress=False)
    kept = plan(_workflow(project, store, keep="last"))
    assert [a for _, a in _actions(kept)] == ["keep removed"] * 4 + ["reuse"]
    _run_matches(project, store, kept, keep="last")

    # the last step changes: every group before it is needed again, up to the input
    wf = _workflow(project, store, keep="last")
    wf["cropping_final"]["area"][0] += 2
    changed = plan(wf)
    assert [a for _, a in _actions(changed)] == ["compute"] * 5
    assert all("removed" in g.why for g in changed[:-1])


def test_dry_run_prints_the_plan_and_writes_nothing(project, tmp_path):
    path = project[2]  # the synthetic stack's workflow file, all its steps
    store = tmp_path / "s.zarr"
    out = subprocess.run([sys.executable, "-m", "pystack3d_dask.cli", "run", str(path),
                          "--store", str(store), "--dry-run"], capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0].split() == ["group", "action", "why"]
    n_steps = len(tomllib.loads(path.read_text())["process_steps"])
    assert out.stdout.count("no store yet") == n_steps + 1
    assert not store.exists()
    assert format_plan(plan(path, store)) == out.stdout.rstrip("\n")


def test_execute_carries_out_the_plan_it_is_given(project, tmp_path):
    """execute(plan, ...) on its own: a group removed since the last run is computed from
    the group before it, the others are left as they are (not even rewritten)."""
    from pystack3d_dask.runtime.cluster import executor
    from pystack3d_dask.workflow.config import load_workflow
    from pystack3d_dask.workflow.execute import execute
    from pystack3d_dask.workflow.plan import plan_run, source_of

    store = tmp_path / "s.zarr"
    p3d.run(_workflow(project, store), progress=False)
    st = Store(store, create=False)
    wf = load_workflow(_workflow(project, store))
    source = source_of(wf)
    finished = {g: st.attrs(g)["finished"] for g in ["input", *st.step_groups()]}
    st.delete_group(st.step_groups()[1])
    groups = plan_run(wf, st, source)
    assert [g.action for g in groups] == ["reuse", "reuse", "compute", "reuse", "reuse"]
    with executor("threads", 2, progress=False) as ex:
        reports = execute(groups, wf, st, source, ex, {"input_manifest": {"fingerprint": "x"}},
                          progress=False)
    assert [r.status for r in reports] == ["reused", "reused", "computed", "reused", "reused"]
    assert reports[2].chunks_computed == reports[2].chunks_total == len(source.pages)
    after = {g: st.attrs(g)["finished"] for g in finished}
    changed = [g for g in finished if after[g] != finished[g]]
    assert changed == [groups[2].group]
    assert st.attrs(groups[2].group)["index"] == 2
