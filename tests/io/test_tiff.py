from __future__ import annotations

import numpy as np
import pytest
import tifffile
import xarray as xr
from helpers import write_stack

from pystack3d_dask.errors import InputError
from pystack3d_dask.io.tiff import discover, lazy_stack, natural_key, policy_regex, read_slice
from pystack3d_dask.store.chunks import slab_chunks


def test_natural_sort_and_inclusive_index_range(tmp_path):
    folder = tmp_path / "s"
    folder.mkdir()
    for k in (1, 2, 10, 11, 3):
        tifffile.imwrite(folder / f"img_{k}.tif", np.full((4, 5), k, np.uint8))
    with pytest.warns(UserWarning, match="z_spacing"):
        src = discover(folder, ind_min=1, ind_max=3, z_spacing=0.5)
    assert [p.name for p in src.files[0]] == ["img_2.tif", "img_3.tif", "img_10.tif"]
    np.testing.assert_allclose(src.z, [0.0, 0.5, 1.0])  # position x spacing
    assert not src.z_from_names
    values = lazy_stack(src).values[0, :, 0, 0]
    np.testing.assert_array_equal(values, [2, 3, 10])
    assert sorted(["a10", "a9", "a100"], key=natural_key) == ["a9", "a10", "a100"]


def test_z_from_policy_and_custom_policy(tmp_path):
    folder = tmp_path / "s"
    write_stack(folder, n=4, dz=0.025, start=3)
    src = discover(folder)
    np.testing.assert_allclose(src.z, [0.075, 0.1, 0.125, 0.15])
    assert src.z_from_names
    regex = policy_regex("img{slice_nb}-at-{z_coord}nm.tiff")
    assert float(regex.match("img7-at-1.5e2nm.tiff")["z_coord"]) == 150.0
    assert regex.match("img7-at-1.5nm.tif") is None
    with pytest.raises(InputError, match="unknown field"):
        policy_regex("slice_{index}.tif")


def test_lazy_stack_labels_and_values(stack_dir):
    folder, data = stack_dir
    arr = lazy_stack(discover(folder))
    assert arr.dims == ("channel", "z", "y", "x")
    # one channel and whole slices a block, a few slices (a slab) along z
    assert arr.data.chunks == ((1,), slab_chunks(len(data), 48 * 64 * 2), (48,), (64,))
    assert max(arr.data.chunks[1]) > 1
    assert arr.dtype == np.uint16
    assert arr["z"].attrs["units"] == "um"
    np.testing.assert_array_equal(arr.values[0], data)


def test_channels_folders(tmp_path):
    a = write_stack(tmp_path / "SE2", n=5, seed=1)
    b = write_stack(tmp_path / "InLens", n=5, seed=2)
    src = discover(tmp_path, channels=["SE2", "InLens"])
    arr = lazy_stack(src)
    assert list(arr["channel"].values) == ["SE2", "InLens"]
    np.testing.assert_array_equal(arr.values[1], b)
    np.testing.assert_array_equal(arr.values[0], a)
    write_stack(tmp_path / "short", n=4)
    with pytest.raises(InputError, match=r"different numbers of slices.*'short': 4"):
        discover(tmp_path, channels=["SE2", "short"])
    with pytest.raises(InputError, match="not found.*missing"):
        discover(tmp_path, channels=["SE2", "missing"])


def test_multipage_tiff(tmp_path):
    data = np.arange(6 * 4 * 5, dtype=np.float32).reshape(6, 4, 5)
    tifffile.imwrite(tmp_path / "stack.tif", data)
    src = discover(tmp_path / "stack.tif", ind_min=1, ind_max=4, z_spacing=0.1)
    arr = lazy_stack(src)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr.values[0], data[1:5])
    np.testing.assert_allclose(arr["z"].values, [0.1, 0.2, 0.3, 0.4])


def test_multipage_pages_read_at_their_offsets(tmp_path):
    """Pages written one by one, some compressed and some not, so that tifffile cannot
    take them for one contiguous series: every page is read at its own IFD offset."""
    rng = np.random.default_rng(5)
    data = rng.integers(0, 60000, (9, 16, 12), dtype=np.uint16)
    path = tmp_path / "pages.tif"
    with tifffile.TiffWriter(path) as writer:
        for k, page in enumerate(data):
            writer.write(page, metadata=None, compression="zlib" if k % 2 else None)
    src = discover(path, ind_min=2, ind_max=8)
    with tifffile.TiffFile(path) as tif:
        assert src.offsets == [tif.pages[k].offset for k in range(2, 9)]
    np.testing.assert_array_equal(lazy_stack(src).values[0], data[2:9])
    for k, offset in zip(src.pages, src.offsets):
        np.testing.assert_array_equal(read_slice(path, k, (16, 12), data.dtype, offset), data[k])


def test_multipage_file_changed_after_discovery_named(tmp_path):
    """A page offset that no longer points at an IFD (the file was rewritten) is an
    InputError naming the file, not a wrong slice."""
    path = tmp_path / "stack.tif"
    tifffile.imwrite(path, np.ones((5, 16, 16), np.uint8))
    src = discover(path)
    tifffile.imwrite(path, np.ones((16, 16), np.uint8))
    with pytest.raises(InputError, match=r"stack\.tif"):
        read_slice(path, 3, (16, 16), np.dtype(np.uint8), src.offsets[3])


def test_pixel_size_gives_micrometre_coordinates(stack_dir):
    folder, _ = stack_dir
    arr = lazy_stack(discover(folder), pixel_size=0.005)
    assert arr["x"].attrs["units"] == "um"
    assert arr["x"].values[2] == pytest.approx(0.01)


# -- bad input -----------------------------------------------------------------------------

def test_missing_and_empty_folder(tmp_path):
    with pytest.raises(InputError, match="not found"):
        discover(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match=r"no \.tif/\.tiff files in .*empty"):
        discover(tmp_path / "empty")
    write_stack(tmp_path / "few", n=3)
    with pytest.raises(InputError, match="ind_min = 5 is past the last slice"):
        discover(tmp_path / "few", ind_min=5)


def test_corrupt_tiff_named(tmp_path):
    folder = tmp_path / "s"
    write_stack(folder, n=4)
    bad = folder / "slice_0002_z=0.0200um.tif"
    bad.write_bytes(b"this is not a tiff at all")
    with pytest.raises(InputError, match=r"slice_0002_z=0.0200um.tif.*not a readable TIFF"):
        discover(folder)


def test_truncated_tiff_named_when_read(tmp_path):
    folder = tmp_path / "s"
    write_stack(folder, n=4, shape=(128, 128))
    victim = folder / "slice_0001_z=0.0100um.tif"
    raw = victim.read_bytes()
    victim.write_bytes(raw[: len(raw) // 2])
    with pytest.raises(InputError, match="slice_0001_z=0.0100um.tif"):
        src = discover(folder)
        lazy_stack(src).compute()


def test_mixed_shapes_and_dtypes_name_first_offender(tmp_path):
    folder = tmp_path / "s"
    write_stack(folder, n=5)
    tifffile.imwrite(folder / "slice_0003_z=0.0300um.tif", np.zeros((48, 65), np.uint16))
    tifffile.imwrite(folder / "slice_0004_z=0.0400um.tif", np.zeros((40, 64), np.uint16))
    with pytest.raises(InputError, match=r"slice_0003.*shape \(48, 65\) differs from \(48, 64\)"):
        discover(folder)
    folder2 = tmp_path / "d"
    write_stack(folder2, n=3)
    tifffile.imwrite(folder2 / "slice_0001_z=0.0100um.tif", np.zeros((48, 64), np.uint8))
    with pytest.raises(InputError, match=r"slice_0001.*dtype uint8 differs from uint16"):
        discover(folder2)


def test_rgb_and_unsupported_dtype_refused(tmp_path):
    folder = tmp_path / "rgb"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.zeros((8, 8, 3), np.uint8), photometric="rgb")
    with pytest.raises(InputError, match="2D grey-level"):
        discover(folder)
    folder = tmp_path / "f64"
    folder.mkdir()
    tifffile.imwrite(folder / "a.tif", np.zeros((8, 8), np.float64))
    with pytest.raises(InputError, match="float64 is not supported"):
        discover(folder)


def test_names_partly_following_policy(tmp_path):
    folder = tmp_path / "s"
    write_stack(folder, n=3)
    tifffile.imwrite(folder / "zz_extra.tif", np.zeros((48, 64), np.uint16))
    with pytest.raises(InputError, match="zz_extra.tif: file name does not follow the policy"):
        discover(folder)


def test_lazy_stack_is_an_xarray_dataarray(stack_dir):
    folder, _ = stack_dir
    assert isinstance(lazy_stack(discover(folder)), xr.DataArray)


def test_every_entry_named_like_a_slice_is_accounted_for(tmp_path):
    folder = tmp_path / "slices"
    write_stack(folder, n=4)
    # an offline share: a link named like a slice whose target is gone
    link = folder / "slice_0004_z=0.0400um.tif"
    link.symlink_to(tmp_path / "share" / "slice_0004.tif")
    with pytest.raises(InputError, match=r"slice_0004_z=0.0400um.tif: a link to .*share.*"
                       r"which does not exist"):
        discover(folder)
    link.unlink()
    (folder / "slice_0004_z=0.0400um.tif").mkdir()
    with pytest.raises(InputError, match="named like a slice but not a file"):
        discover(folder)
    (folder / "slice_0004_z=0.0400um.tif").rmdir()
    # macOS resource forks beside the slices are not slices
    (folder / "._slice_0001_z=0.0100um.tif").write_bytes(b"\x00\x05\x16\x07" + b"\x00" * 60)
    src = discover(folder)
    assert [p.name for p in src.files[0]] == [f"slice_{k:04d}_z={k * 0.01:.4f}um.tif"
                                              for k in range(4)]


def test_upper_case_extension_follows_the_policy(tmp_path):
    folder = tmp_path / "slices"
    write_stack(folder, n=3, names="slice_{k:04d}_z={z:.4f}um.TIF")
    src = discover(folder)  # no warning: the names give z
    np.testing.assert_allclose(src.z, [0.0, 0.01, 0.02])
    assert src.z_from_names


def test_slices_taken_in_z_order_when_names_disagree(tmp_path):
    import pystack3d_dask as p3d

    folder = tmp_path / "slices"
    folder.mkdir()
    rng = np.random.default_rng(0)
    data = (rng.random((4, 16, 20)) * 200).astype(np.uint8)
    for k in range(4):  # numbered upwards, milled downwards: z decreases along the names
        tifffile.imwrite(folder / f"slice_{k:04d}_z={0.03 - 0.01 * k:.4f}um.tif", data[k])
    with pytest.warns(UserWarning, match=r"slice_0001_z=0.0200um.tif \(z = 0.02 um\) comes "
                      r"after slice_0000_z=0.0300um.tif"):
        src = discover(folder)
    np.testing.assert_allclose(src.z, [0.0, 0.01, 0.02, 0.03])
    assert [p.name[:10] for p in src.files[0]] == [f"slice_{k:04d}" for k in (3, 2, 1, 0)]
    wf = {"project_dir": str(folder), "process_steps": ["resampling"],
          "resampling": {"policy": "slice_{slice_nb}_z={z_coord}um.tif", "dz": 0.01},
          "store": {"path": str(tmp_path / "s.zarr")}}
    with pytest.warns(UserWarning, match="comes after"):
        p3d.run(wf, progress=False)
    out = p3d.open_result(tmp_path / "s.zarr", "resampling").values[0]
    # z = 0, 0.01, 0.02 (the output range stops before the last z, as in PyStack3D)
    np.testing.assert_array_equal(out, data[::-1][:3])  # distinct slices, in z order
