"""The zarr-python internals that pystack3d_dask.store relies on, one test each.

These are not zarr's documented API, or are behaviour zarr does not promise (the atomic
write of a chunk): a zarr release can change them without notice. Each test names the
internal and what the store uses it for, so that a failure says what broke, not only
that something did. ``pyproject.toml`` caps zarr below 4 for the same reason; see
``docs/dependencies.md``.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numcodecs
import numpy as np
import zarr
from zarr.codecs import BytesCodec, ZstdCodec

from pystack3d_dask.store.checkpoints import CHUNK_KEY_ENCODING, make_compressors

SHAPE = (2, 8, 5, 7)  # (channel, z, y, x): the store's stacks
CHUNKS = (1, 1, 5, 7)  # one slice a chunk, as Store creates them


def broken(what: str, module: str, purpose: str) -> str:
    """The message of a failed test: which internal changed, and who needs it."""
    return (f"zarr {zarr.__version__} no longer provides {what}, which "
            f"pystack3d_dask.store.{module} uses for {purpose}")


def stack(tmp_path: Path, **kwargs) -> zarr.Array:
    """An empty uint16 stack laid out as the store lays out its stacks."""
    options = {"chunks": CHUNKS, "dtype": "uint16", "fill_value": 0,
               "chunk_key_encoding": CHUNK_KEY_ENCODING, "compressors": make_compressors("zstd", 3),
               "zarr_format": 3, **kwargs}
    return zarr.create_array(str(tmp_path / "s.zarr"), name="g/stack", shape=SHAPE, **options)


def chunk_files(folder: Path) -> list[str]:
    """The files of an array's folder other than its metadata, relative to it."""
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                  if p.is_file() and p.name != "zarr.json")


def test_array_with_config_writes_empty_chunks(tmp_path):
    """``zarr.Array.with_config({"write_empty_chunks": True})``: store.chunks.array_handle
    writes every slice through such a handle, so that a slice equal to the fill value
    (a blank slice) still gets its chunk file, which is how a resumed write knows the
    slice is done (Store.missing_chunks lists the files)."""
    arr = stack(tmp_path)
    what = "Array.with_config({'write_empty_chunks': True})"
    purpose = "writing a blank slice's chunk file (resume counts the chunk files)"
    assert callable(getattr(arr, "with_config", None)), broken(what, "chunks", purpose)
    handle = arr.with_config({"write_empty_chunks": True})
    assert isinstance(handle, zarr.Array), broken(what, "chunks", purpose)
    handle[0, 3] = np.zeros(SHAPE[2:], dtype="uint16")  # all fill value
    folder = tmp_path / "s.zarr" / "g" / "stack"
    assert chunk_files(folder) == ["c.0.3.0.0"], broken(what, "chunks", purpose)


def test_metadata_encode_chunk_key_names_the_chunk_file(tmp_path):
    """``ArrayV3Metadata.encode_chunk_key``: store.chunks.FastChunks and
    store.checkpoints.Store._chunk_file name a slice's chunk file with it, and
    Store.missing_chunks expects the files of the ``"."`` separator
    (:data:`~pystack3d_dask.store.metadata.CHUNK_KEY_ENCODING`) side by side in the
    array's folder."""
    arr = stack(tmp_path)
    what = "Array.metadata.encode_chunk_key"
    purpose = "the path of a slice's chunk file"
    encode = getattr(arr.metadata, "encode_chunk_key", None)
    assert callable(encode), broken(what, "chunks", purpose)
    key = encode((1, 6, 0, 0))
    assert key == "c.1.6.0.0", broken(f"{what} giving 'c.1.6.0.0' (got {key!r})", "chunks", purpose)
    arr[1, 6] = np.ones(SHAPE[2:], dtype="uint16")
    folder = tmp_path / "s.zarr" / "g" / "stack"
    assert chunk_files(folder) == [key], broken(
        f"chunk files at {what}'s key (found {chunk_files(folder)})", "checkpoints", purpose)


def test_sharded_encode_chunk_key_names_the_shard_file(tmp_path):
    """``Array.shards`` and ``ArrayV3Metadata.encode_chunk_key`` of a sharded array:
    Store._chunk_file takes the file of slice z to be the key of shard
    ``z // shards[1]``, which resume looks for and store.write.link_chunks hard-links."""
    arr = stack(tmp_path, shards=(1, 4, *SHAPE[2:]))
    what = "Array.shards and Array.metadata.encode_chunk_key of the shard grid"
    purpose = "the file of a shard of slices"
    assert tuple(arr.shards or ()) == (1, 4, *SHAPE[2:]), broken(what, "checkpoints", purpose)
    arr[0, 4:8] = np.ones((4, *SHAPE[2:]), dtype="uint16")
    key = arr.metadata.encode_chunk_key((0, 1, 0, 0))
    folder = tmp_path / "s.zarr" / "g" / "stack"
    assert chunk_files(folder) == [key] == ["c.0.1.0.0"], broken(
        f"{what} (key {key!r}, files {chunk_files(folder)})", "checkpoints", purpose)


# Run in a child process: a chunk write in which every way to move a file into place
# (os.replace, os.rename, os.link) ends the process, as a SIGKILL would at that moment.
_KILLED_WRITER = textwrap.dedent("""
    import os, sys
    import numpy as np
    import zarr

    store, key = sys.argv[1], sys.argv[2]

    def killed_at_move(move):
        def wrapper(src, dst, *args, **kwargs):
            if os.path.basename(os.fspath(dst)) == key:
                os._exit(17)
            return move(src, dst, *args, **kwargs)
        return wrapper

    for name in ("replace", "rename", "link"):
        setattr(os, name, killed_at_move(getattr(os, name)))
    arr = zarr.open_array(store, path="g/stack", mode="r+")
    arr[1, 2] = np.arange(35, dtype="uint16").reshape(5, 7)
""")


def test_localstore_writes_a_chunk_to_a_partial_file_then_renames_it(tmp_path):
    """zarr's ``LocalStore`` (``zarr.storage._local._atomic_write``) writes a chunk whole
    to a temporary file named ``*.partial`` beside it, then renames it into place:
    checkpoints.Store.write resumes from the chunk files present, taking each as whole
    (a kill leaves a chunk whole or absent), and deletes the ``*.partial`` files under
    the group that a killed writer leaves."""
    arr = stack(tmp_path)
    key = arr.metadata.encode_chunk_key((1, 2, 0, 0))
    store = tmp_path / "s.zarr"
    folder = store / "g" / "stack"
    child = subprocess.run([sys.executable, "-c", _KILLED_WRITER, str(store), key],
                           capture_output=True, text=True, timeout=120)
    what = "the atomic write of a chunk (a '*.partial' file renamed into place)"
    purpose = "resuming a killed write from the chunk files present"
    assert child.returncode == 17, broken(
        f"{what}: the chunk was not moved into place by os.replace, os.rename or os.link "
        f"(exit {child.returncode}: {child.stderr[-2000:]})", "checkpoints", purpose)
    assert not (folder / key).exists(), broken(
        f"{what}: the chunk file exists before its rename", "checkpoints", purpose)
    left = sorted((store / "g").rglob("*.partial"))
    assert [p.parent for p in left] == [folder], broken(
        f"{what}: a killed write left {[str(p) for p in left]}, not one '*.partial' file "
        "beside the chunk", "checkpoints", "deleting a killed writer's temporary files")
    left[0].rename(folder / key)  # the temporary file held the whole chunk
    np.testing.assert_array_equal(
        zarr.open_array(str(store), path="g/stack", mode="r")[1, 2],
        np.arange(35, dtype="uint16").reshape(5, 7),
        err_msg=broken(f"{what}: the temporary file does not hold the whole chunk",
                       "checkpoints", purpose))


def test_metadata_codecs_are_bytes_then_zstd_as_numcodecs_encodes(tmp_path):
    """``ArrayV3Metadata.codecs`` (``BytesCodec.endian``, ``ZstdCodec.level`` and
    ``.checksum``): store.chunks.fast_chunks reads them to decide that a chunk file is
    the chunk's little-endian bytes compressed by numcodecs' Zstd, and then reads and
    writes such files without zarr."""
    arr = stack(tmp_path)
    what = "Array.metadata.codecs as (BytesCodec(endian=little), ZstdCodec(level, checksum))"
    purpose = "reading and writing chunk files directly"
    codecs = tuple(getattr(arr.metadata, "codecs", ()))
    assert len(codecs) == 2 and isinstance(codecs[0], BytesCodec), broken(
        f"{what} (got {codecs!r})", "chunks", purpose)
    assert isinstance(codecs[1], ZstdCodec), broken(f"{what} (got {codecs!r})", "chunks", purpose)
    assert getattr(codecs[0].endian, "value", None) == "little", broken(what, "chunks", purpose)
    assert (codecs[1].level, codecs[1].checksum) == (3, False), broken(what, "chunks", purpose)
    data = np.arange(35, dtype="uint16").reshape(5, 7) * 300
    arr[0, 5] = data
    payload = (tmp_path / "s.zarr" / "g" / "stack" / "c.0.5.0.0").read_bytes()
    raw = numcodecs.Zstd(level=codecs[1].level, checksum=codecs[1].checksum).decode(payload)
    np.testing.assert_array_equal(
        np.frombuffer(raw, dtype="<u2").reshape(5, 7), data,
        err_msg=broken(f"{what}: the chunk file is not numcodecs.Zstd of the raw bytes",
                       "chunks", purpose))


def test_metadata_codecs_compare_by_value(tmp_path):
    """``ArrayV3Metadata.codecs`` and ``.fill_value`` compared with ``==``:
    store.write.link_chunks hard-links a group's chunk files into another only when
    both arrays' codecs and fill values are equal."""
    a = zarr.create_array(str(tmp_path / "s.zarr"), name="a", shape=(2, 4), chunks=(1, 4),
                          dtype="uint16", compressors=make_compressors("zstd", 3))
    b = zarr.create_array(str(tmp_path / "s.zarr"), name="b", shape=(2, 4), chunks=(1, 4),
                          dtype="uint16", compressors=make_compressors("zstd", 3))
    c = zarr.create_array(str(tmp_path / "s.zarr"), name="c", shape=(2, 4), chunks=(1, 4),
                          dtype="uint16", compressors=make_compressors("zstd", 5))
    what = "Array.metadata.codecs and .fill_value that compare by value"
    purpose = "deciding whether chunk files can be hard-linked between groups"
    assert a.metadata.codecs == b.metadata.codecs, broken(what, "write", purpose)
    assert a.metadata.fill_value == b.metadata.fill_value, broken(what, "write", purpose)
    assert a.metadata.codecs != c.metadata.codecs, broken(what, "write", purpose)


def test_attributes_put_replaces_every_attribute(tmp_path):
    """``Group.attrs.put`` (``zarr.core.attributes.Attributes.put``):
    store.metadata.create_group replaces a group's attributes with it to drop the
    ``coordinates`` entry that xarray wrote, which ``attrs.update`` cannot do."""
    zarr.create_group(str(tmp_path / "s.zarr"), path="g", zarr_format=3,
                      attributes={"coordinates": "beam", "keep": 1})
    node = zarr.open_group(str(tmp_path / "s.zarr"), path="g", mode="r+")
    what = "Group.attrs.put replacing every attribute"
    purpose = "removing the coordinates attribute that xarray writes"
    assert callable(getattr(node.attrs, "put", None)), broken(what, "metadata", purpose)
    node.attrs.put({"keep": 1})
    back = dict(zarr.open_group(str(tmp_path / "s.zarr"), path="g", mode="r").attrs)
    assert back == {"keep": 1}, broken(f"{what} (got {back})", "metadata", purpose)

