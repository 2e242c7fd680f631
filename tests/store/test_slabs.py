"""Slabs: small slices go a few per task in the graph, one file per slice on disk."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from pystack3d_dask.steps.base import map_slice_values, map_slices
from pystack3d_dask.store.checkpoints import Store
from pystack3d_dask.store.chunks import MAX_SLAB, SLAB_BYTES, slab_chunks, slab_size


def test_slab_size_is_bounded_by_bytes_and_count():
    assert slab_size(300 * 340) == MAX_SLAB
    assert slab_size(1024 * 1024) == SLAB_BYTES // (1024 * 1024) == 4
    assert slab_size(4096 * 4096 * 2) == 1  # a 32 MiB slice goes alone
    assert slab_chunks(19, 1000) == (8, 8, 3)
    assert sum(slab_chunks(1001, 1024 * 1024)) == 1001
    assert slab_chunks(0, 10) == (0,)


def _stack(nc: int = 2, nz: int = 11, k: int = 4) -> xr.DataArray:
    values = np.arange(nc * nz * 3 * 5, dtype=np.float32).reshape(nc, nz, 3, 5)
    return xr.DataArray(da.from_array(values, chunks=(1, k, 3, 5)),
                        dims=("channel", "z", "y", "x"))


def test_kernels_see_one_slice_with_its_channel_and_index():
    stack = _stack()
    seen = []

    def kernel(img, c, z, offsets):
        assert img.shape == (3, 5)  # one slice, as map_slice_values and Derived get it
        seen.append((c, z))
        return img + offsets[c, z]

    offsets = np.arange(22, dtype=np.float32).reshape(2, 11) * 1000
    out = map_slices(kernel, stack.data, {"offsets": offsets}, np.float32)
    assert out.chunks == stack.data.chunks
    np.testing.assert_array_equal(out.compute(scheduler="sync"),
                                  stack.values + offsets[:, :, None, None])
    assert sorted(seen) == [(c, z) for c in range(2) for z in range(11)]
    sums = map_slice_values(lambda img, c, z, scale: [img.sum() * scale, c, z], stack.data,
                            (3,), np.float64, scale=2.0)
    expected = np.stack([stack.values.sum(axis=(2, 3)) * 2,
                         np.broadcast_to(np.arange(2)[:, None], (2, 11)),
                         np.broadcast_to(np.arange(11)[None], (2, 11))], axis=-1)
    np.testing.assert_array_equal(sums.compute(scheduler="sync"), expected)


@pytest.mark.parametrize("shard_slices", [1, 4])
def test_a_resumed_slab_writes_only_its_missing_slices(tmp_path, shard_slices):
    stack = _stack(nz=11, k=4)
    st = Store(tmp_path / "s.zarr", shard_slices=shard_slices)
    st.write("g", stack, "fp")
    files = {(c, z): st._chunk_file("g", c, z) for c in range(2) for z in range(11)}
    removed = [(0, 5), (1, 9)] if shard_slices == 1 else [(0, 4)]  # a shard: 4 to 7
    for cz in removed:
        files[cz].unlink(missing_ok=True)
    inodes = {cz: f.stat().st_ino for cz, f in files.items() if f.exists()}
    st.update_attrs("g", complete=False)
    report = st.write("g", stack, "fp")
    missing = 2 if shard_slices == 1 else 4
    assert report.status == "resumed" and report.chunks_computed == missing
    kept = {cz: f.stat().st_ino for cz, f in files.items() if cz in inodes}
    assert kept == inodes  # no finished slice was written again
    ds = st.open_dataset("g")
    np.testing.assert_array_equal(ds["stack"].values, stack.values)
    np.testing.assert_allclose(ds["mean"].values, stack.values.mean(axis=(2, 3)))
    np.testing.assert_array_equal(st.open_stack("g").values, stack.values)


def test_missing_slices_of_a_store_with_nested_chunk_files(tmp_path):
    """Stores written before the '.' chunk names keep their nested files (c/0/3/0/0):
    the slices on disk are found there too."""
    import zarr

    st = Store(tmp_path / "s.zarr")
    arr = zarr.create_array(str(st.path), name="g/stack", shape=(2, 6, 3, 5), chunks=(1, 1, 3, 5),
                            dtype="u1", zarr_format=3)
    arr[0, 1] = 1
    arr[1, 4] = 2
    assert (st.group_dir("g") / "stack" / "c" / "0" / "1" / "0" / "0").is_file()
    done = {(0, 1), (1, 4)}
    assert st.missing_chunks("g", (2, 6)) == [(c, z) for c in range(2) for z in range(6)
                                              if (c, z) not in done]


def test_an_in_memory_stack_is_written_in_slabs(tmp_path):
    """A stack backed by a NumPy array (not dask) is cut into slabs and written whole."""
    data = np.arange(2 * 5 * 6 * 7, dtype=np.uint16).reshape(2, 5, 6, 7)
    stack = xr.DataArray(data, dims=("channel", "z", "y", "x"),
                         coords={"channel": ["a", "b"], "z": np.arange(5) * 0.1})
    store = Store(tmp_path / "s.zarr")
    store.write("steps/01_mem", stack, "fp", {})
    assert store.is_complete("steps/01_mem")
    np.testing.assert_array_equal(store.read_slice("steps/01_mem", 1, 3), data[1, 3])
