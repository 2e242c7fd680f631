from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from pystack3d_dask.errors import ConfigError
from pystack3d_dask.workflow.config import load_workflow

PYSTACK3D_FILE = """
#project_dir = ""
ind_min = 0
ind_max = 99999
channels = ["."]
nproc = 2
process_steps = ["cropping", "bkg_removal", "intensity_rescaling", "intensity_rescaling_area",
    "registration_calculation", "registration_transformation", "destriping", "resampling",
    "cropping_final"]
history = []

[cropping]
area = [0, 99999, 0, 99999]

[bkg_removal]
dim = 3
orders = [1, 2, 1]
cross_terms = true
skip_factors = [10, 10, 10]
threshold_min = 2
threshold_max = ""
preserve_avg = true

[intensity_rescaling]
nbins = 256
filter_size = -1

[intensity_rescaling_area]
area = [0, 99999, 0, 99999]
factors_range = [0.8, 1.2]

[destriping]
cvg_threshold = 1e-2
filters = [{ name = "Gabor", noise_level = 20, sigma = [0.5, 200], theta = 0 }]

[registration_calculation]
area = [0, 99999, 0, 99999]
nb_blocks = [1, 1]
transformation = "TRANSLATION"

[registration_transformation]
mode = "edge"

[resampling]
policy = "slice_{slice_nb}_z={z_coord}um.tif"
dz = 0.01

[cropping_final]
area = [0, 99999, 0, 99999]
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.toml"
    path.write_text(text)
    return path


def test_pystack3d_file_loads_unchanged(tmp_path):
    wf = load_workflow(_write(tmp_path, PYSTACK3D_FILE))
    # PyStack3D's rule: without project_dir the slices sit beside the file
    assert wf.project_dir == tmp_path.resolve()
    assert wf.nproc == 2 and wf.scheduler["workers"] == 2
    assert wf.process_steps[0] == "cropping" and len(wf.process_steps) == 9
    assert wf.steps["bkg_removal"]["orders"] == [1, 2, 1]
    assert wf.steps["bkg_removal"]["threshold_max"] is None  # PyStack3D writes None as ""
    assert wf.steps["bkg_removal"]["weight_func"] == "HuberT"  # PyStack3D's default
    assert wf.steps["destriping"]["filters"][0]["sigma"] == [0.5, 200.0]
    assert wf.steps["destriping"]["maxit"] == 100
    assert wf.steps["cropping"]["checkpoint"] is True
    assert wf.policy == "slice_{slice_nb}_z={z_coord}um.tif"
    assert wf.store_path() == tmp_path.resolve() / "params.zarr"


@pytest.mark.parametrize("old", ["input_dirname", "dirname"])
def test_older_project_dir_names(tmp_path, old):
    with pytest.warns(FutureWarning, match=old):
        wf = load_workflow(_write(tmp_path, f'{old} = "data"\n'))
    assert wf.project_dir == tmp_path.resolve() / "data"


def test_slurm_table_is_checked(tmp_path):
    text = ('project_dir = "/abs/slices"\n[scheduler]\nname = "slurm"\n'
            '[scheduler.slurm]\nqueue = "debug"\nmaximum_jobs = 4\n'
            'job_extra_directives = ["--qos=low"]\n')
    wf = load_workflow(_write(tmp_path, text))
    # only the keys set are kept: the others come from the site's jobqueue.yaml
    assert wf.scheduler["slurm"] == {"queue": "debug", "maximum_jobs": 4,
                                     "job_extra_directives": ["--qos=low"]}
    assert wf.scheduler["slurm"]["job_extra_directives"] == ["--qos=low"]
    with pytest.raises(ConfigError, match="'walltme'.*did you mean 'walltime'"):
        load_workflow(_write(tmp_path, text + 'walltme = "1:00:00"\n'))


def test_own_tables_beside_pystack3d(tmp_path):
    text = ('project_dir = "/abs/slices"\nnproc = 3\nprocess_steps = ["cropping"]\n'
            '[cropping]\narea = [1, 5, 1, 5]\ncheckpoint = false\n'
            '[store]\npath = "out/s.zarr"\n[scheduler]\nname = "local"\nthreads_per_worker = 2\n'
            '[input]\nz_spacing = 0.02\n')
    wf = load_workflow(_write(tmp_path, text))
    assert wf.project_dir == Path("/abs/slices")
    assert wf.steps["cropping"]["checkpoint"] is False
    assert wf.step_params("cropping") == {"area": [1, 5, 1, 5], "rounding": False}
    assert wf.store_path() == tmp_path.resolve() / "out" / "s.zarr"
    assert wf.scheduler == {"name": "local", "workers": 3, "threads_per_worker": 2,
                            "memory_limit": "auto", "dashboard_address": "127.0.0.1:0",
                            "address": None, "slurm": None, "worker_timeout": 300.0,
                            "kind": "slurm", "jobqueue": None}
    assert wf.input["z_spacing"] == 0.02


@pytest.mark.parametrize(("text", "pieces"), [
    ('nprocs = 2', ["'nprocs'", "top level", "'nproc'"]),
    ('[cropping]\naera = [0, 1, 0, 1]', ["'aera'", "[cropping]", "'area'"]),
    ('[croping]\narea = [0, 1, 0, 1]', ["[croping]", "'cropping'"]),
    ('[destriping]\nfilters = [{ name = "Gabor", noise_level = 1, sigma = [1, 2], tehta = 0 }]',
     ["'tehta'", "destriping.filters[0]", "'theta'"]),
    ('[scheduler]\nnmae = "local"', ["'nmae'", "[scheduler]", "'name'"]),
])
def test_unknown_key_names_key_table_and_nearest(tmp_path, text, pieces):
    with pytest.raises(ConfigError) as err:
        load_workflow(_write(tmp_path, 'project_dir = "x"\n' + text))
    for piece in pieces:
        assert piece in str(err.value)


@pytest.mark.parametrize(("text", "pieces"), [
    ('nproc = 0', ["nproc", "0", ">= 1"]),
    ('nproc = "2"', ["nproc", "'2'", "integer"]),
    ('ind_min = 5\nind_max = 2', ["ind_min = 5", "ind_max = 2"]),
    ('[cropping]\narea = [10, 5, 0, 4]', ["[cropping] area", "[10, 5, 0, 4]", "xmin < xmax"]),
    ('[cropping]\narea = [0, 5, 0]', ["[cropping] area", "4 integers"]),
    ('[intensity_rescaling]\nnbins = 1', ["nbins", "1", ">= 2"]),
    ('[registration_transformation]\nmode = "edges"', ["mode", "'edges'", "'edge'"]),
    ('[scheduler]\nname = "dask"', ["name", "'dask'", "threads"]),
    ('[resampling]\ndz = -0.1', ["dz", "-0.1", "> 0"]),
    ('[bkg_removal]\ncross_terms = "yes"', ["cross_terms", "true or false"]),
    ('channels = "."', ["channels", "list"]),
    ('cropping = 3', ["cropping", "table"]),
])
def test_wrong_type_or_value_names_key_value_and_expectation(tmp_path, text, pieces):
    with pytest.raises(ConfigError) as err:
        load_workflow(_write(tmp_path, 'project_dir = "x"\n' + text))
    for piece in pieces:
        assert piece in str(err.value), str(err.value)


def test_unknown_and_repeated_steps_list_valid_names(tmp_path):
    with pytest.raises(ConfigError, match=r"unknown step 'croping'.*'cropping'.*cropping_final"):
        load_workflow(_write(tmp_path, 'project_dir = "x"\nprocess_steps = ["croping"]'))
    with pytest.raises(ConfigError, match=r"'cropping' is listed twice.*Valid steps"):
        load_workflow(_write(tmp_path, 'project_dir = "x"\n'
                                       'process_steps = ["cropping", "cropping"]'))


def test_toml_syntax_error_and_missing_file(tmp_path):
    with pytest.raises(ConfigError, match=r"not valid TOML.*line 2"):
        load_workflow(_write(tmp_path, 'nproc = 2\nprocess_steps = [1,,2]\n'))
    with pytest.raises(ConfigError, match="not found"):
        load_workflow(tmp_path / "absent.toml")


def test_byte_order_mark_is_read_past_and_other_encodings_named(tmp_path):
    path = tmp_path / "bom.toml"
    path.write_bytes(b"\xef\xbb\xbf" + b'project_dir = "x"\nnproc = 3\n')
    assert load_workflow(path).nproc == 3
    path.write_bytes('project_dir = "x"\n# 5 \u00b5m\n'.encode("latin-1"))
    with pytest.raises(ConfigError, match=r"bom.toml: not a text file in UTF-8.*save it as UTF-8"):
        load_workflow(path)


def test_dictionary_workflow_needs_project_dir_and_store():
    with pytest.raises(ConfigError, match="project_dir is missing"):
        load_workflow({"nproc": 1})
    wf = load_workflow({"project_dir": "rel"}, base_dir="/base")
    assert wf.project_dir == Path("/base/rel")
    with pytest.raises(ConfigError, match="no store path"):
        wf.store_path()


def test_shipped_example_workflow_is_valid():
    import pystack3d_dask

    example = Path(pystack3d_dask.__file__).parent / "configs" / "example.toml"
    wf = load_workflow(example)
    assert wf.process_steps == ["cropping", "destriping", "cropping_final"]
    assert wf.steps["destriping"]["only_striped"] is True
    assert wf.store_path() == example.parent / "example.zarr"
    assert wf.project_dir == example.parent / "pystack3d-dask-demo" / "data" / "slices"


def test_readme_workflow_example_is_valid():
    import re

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S).group(1)
    wf = load_workflow(tomllib.loads(block), base_dir="/data")
    assert wf.process_steps == ["cropping", "bkg_removal", "cropping_final"]
    assert wf.steps["bkg_removal"]["checkpoint"] is False
    assert wf.steps["bkg_removal"]["max_samples"] == 1_000_000
