"""Direct chunk I/O: what it writes, zarr reads back, and the other way round."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from pystack3d_dask.store.checkpoints import make_compressors
from pystack3d_dask.store.chunks import fast_chunks


@pytest.mark.parametrize("codec", ["zstd", "none"])
@pytest.mark.parametrize("dtype", ["uint8", "uint16", "float32"])
def test_roundtrip_with_zarr(tmp_path, codec, dtype):
    arr = zarr.create_array(str(tmp_path / "s.zarr"), name="g/stack", shape=(2, 3, 5, 7),
                            chunks=(1, 1, 5, 7), dtype=dtype,
                            compressors=make_compressors(codec, 3))
    fast = fast_chunks(str(tmp_path / "s.zarr"), "g/stack", codec + dtype)
    assert fast is not None
    rng = np.random.default_rng(0)
    data = (rng.random((2, 3, 5, 7)) * 200).astype(dtype)
    for c in range(2):
        for z in range(3):
            fast.write((c, z, 0, 0), data[c:c + 1, z:z + 1])
    np.testing.assert_array_equal(arr[...], data)  # zarr reads what was written here
    arr[1, 2] = data[0, 0] + 1  # and this module reads what zarr wrote
    back = fast.read((1, 2, 0, 0))
    np.testing.assert_array_equal(back[0, 0], data[0, 0] + 1)
    assert back.flags.writeable
    assert not list((tmp_path / "s.zarr").rglob("*.partial"))


def test_other_layouts_fall_back_to_zarr(tmp_path):
    zarr.create_array(str(tmp_path / "s.zarr"), name="b", shape=(2, 4), chunks=(1, 4),
                      dtype="uint16", compressors=make_compressors("blosc-lz4", 5))
    assert fast_chunks(str(tmp_path / "s.zarr"), "b") is None
    zarr.create_array(str(tmp_path / "s.zarr"), name="sh", shape=(4, 4), chunks=(1, 4),
                      shards=(2, 4), dtype="uint8")
    assert fast_chunks(str(tmp_path / "s.zarr"), "sh") is None
    assert fast_chunks(str(tmp_path / "s.zarr"), "absent") is None
