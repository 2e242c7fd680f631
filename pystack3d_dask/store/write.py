"""The write path of a checkpoint: the tasks that write a stack slab by slab, each
slice's extras before it, and the per-slice statistics, cuts and derived quantities they
return; hard links for slices a step leaves unchanged.

:meth:`~pystack3d_dask.store.checkpoints.Store.write` decides what to write (reuse,
resume, create) and marks the group complete; this module builds and runs the tasks.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import xarray as xr
import zarr

from ..kernels.stats import cut_indices, slice_cuts, slice_stats
from .chunks import array_handle, fast_chunks, slab_chunks, slab_size, slice_bytes, stored_slice
from .location import StoreTarget, files_of
from .metadata import publish, split_extras, staged_store, to_json

__all__ = ["CUT_NAMES", "STAT_NAMES", "Derived", "StepOutput", "link_chunks", "link_files",
           "write_per_slice", "write_slabs"]

STAT_NAMES = ("min", "max", "mean")
#: Rows and columns of every slice kept as it is written (see
#: :func:`~pystack3d_dask.kernels.stats.slice_cuts`): (channel, z, cut_row, x) and
#: (channel, z, cut_column, y), their positions in the attributes ``rows`` and ``columns``.
CUT_NAMES = ("cut_rows", "cut_columns")


@dataclass(frozen=True)
class Derived:
    """A per-slice quantity computed from each output slice as it is written (and from
    the slices already on disk when a write resumes), stored as ``(channel, z, *dims)``.
    ``func(slice, c, z) -> array``: the steps' one per-slice convention, a 2D slice with
    its channel and slice indices (see :func:`~pystack3d_dask.steps.base.map_slices`).

    With ``source`` (a dask array of the same (channel, z) slices, whole slices per
    chunk: typically the step's input), ``func`` gets the source's slice instead, in the task
    that writes the output slice: a quantity of the input without a pass of its own
    over it. ``attrs`` are stored with the array.
    """

    func: Callable[[np.ndarray, int, int], np.ndarray]
    dims: tuple[str, ...] = ()
    source: Any = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass
class StepOutput:
    """A step's output stack and the arrays stored beside it: what a checkpoint holds.

    ``extras``: lazy ones along z (dims ``(channel, z, ...)`` or ``(z, ...)``) are
    written slice by slice with the stack; in-memory ones whole when the group is
    created. ``derived``: ``name -> Derived``, computed by the task that writes each
    slice, stored as ``(channel, z, *dims)`` at the end.
    """

    stack: xr.DataArray
    extras: dict[str, xr.DataArray] = field(default_factory=dict)
    derived: dict[str, Derived] = field(default_factory=dict)


def _derive(img: np.ndarray, c: int, z: int,
            derived: Sequence[Callable[[np.ndarray, int, int], Any]],
            sources: Sequence[Any] = ()) -> list[np.ndarray]:
    """Statistics and cuts of slice (c, z) ``img``, then each derived quantity: of
    ``img``, or of the slice of its source where ``sources`` has one (a (1, 1, y, x)
    block; None: ``img``)."""
    sources = list(sources) or [None] * len(derived)
    values = [np.asarray(f(img if s is None else np.asarray(s)[0, 0], c, z))
              for f, s in zip(derived, sources)]
    return [slice_stats(img), *slice_cuts(img), *values]


def _write_extras(extra_blocks: Sequence[Any], extra_specs: Sequence[tuple[str, bool]],
                  store: StoreTarget, group: str, c: int, z: int, k: int, token: str) -> None:
    """Write slice (c, z)'s per-slice extras, the ``k``-th slice of their slab blocks
    (None: an extra without channel, written with channel 0 only)."""
    for (name, with_channel), extra in zip(extra_specs, extra_blocks):
        if extra is None:
            continue
        value = np.asarray(extra)[0, k] if with_channel else np.asarray(extra)[k]
        index = (c, z) if with_channel else (z,)
        array_handle(store, f"{group}/{name}", token)[index] = value


def _write_slab(block: np.ndarray | None, extra_blocks: Sequence[Any],
                extra_specs: Sequence[tuple[str, bool]], store: StoreTarget, group: str, c: int,
                z0: int, n: int, todo: Sequence[int], token: str = "",
                derived: Sequence[Callable[[np.ndarray, int, int], Any]] = (),
                sources: Sequence[Any] = (), shard: bool = False) -> list[list[np.ndarray]]:
    """Write the slices ``z0 + k`` (``k`` in ``todo``) of a slab of ``n`` slices of
    channel ``c``, each slice's extras before it (so that a slice on disk always has
    what goes with it); return every slice's statistics (min, max, mean) and derived
    quantities (of the source slices given in ``sources``, see :func:`_derive`). Slices
    not in ``todo`` are on disk already: theirs are computed from the files (``block``
    is None when no slice of the slab is to be written).

    With ``shard``, the slab is one whole shard, written in one zarr write (a shard is
    rewritten whole on every update: two tasks writing into one shard would lose
    slices)."""
    todo = set(todo)
    imgs = [np.asarray(block)[0, k] if k in todo else None for k in range(n)]
    for k in sorted(todo):
        _write_extras(extra_blocks, extra_specs, store, group, c, z0 + k, k, token)
    if shard:
        array_handle(store, f"{group}/stack", token)[c, z0:z0 + n] = np.asarray(block)[0]
    elif todo:
        fast = fast_chunks(store, f"{group}/stack", token)
        if fast is not None:
            for k in sorted(todo):
                fast.write((c, z0 + k, 0, 0), imgs[k][None, None])
        else:  # one zarr write per run of slices: zarr sends their chunks at once
            for k0, k1 in runs(sorted(todo)):
                array_handle(store, f"{group}/stack", token)[c, z0 + k0:z0 + k1] = \
                    np.asarray(block)[0, k0:k1]
    out = []
    for k in range(n):
        img = imgs[k] if imgs[k] is not None else stored_slice(store, group, c, z0 + k, token)
        out.append(_derive(img, c, z0 + k, derived,
                           [None if s is None else np.asarray(s)[:, k:k + 1] for s in sources]))
    return out


def runs(indices: Sequence[int]) -> list[tuple[int, int]]:
    """The runs of consecutive ``indices`` (sorted) as ``(start, stop)`` ranges."""
    out: list[tuple[int, int]] = []
    for k in indices:
        if out and out[-1][1] == k:
            out[-1] = (out[-1][0], k + 1)
        else:
            out.append((k, k + 1))
    return out


def slabbed(stack: xr.DataArray, per_shard: int) -> da.Array:
    """The stack's dask array in the blocks its write goes by: one channel, whole slices,
    and along z the slabs it comes in (split where longer than
    :func:`~.chunks.slab_size`) or, in a sharded array, exactly the shards."""
    nc, nz, ny, nx = stack.shape
    one = slice_bytes(stack.shape, stack.dtype)
    data = stack.data
    if not isinstance(data, da.Array):
        data = da.from_array(np.asarray(data), chunks=(1, slab_chunks(nz, one), ny, nx))
    if per_shard > 1:
        zs = tuple(min(per_shard, nz - s) for s in range(0, nz, per_shard))
    elif max(data.chunks[1], default=1) > slab_size(one):
        zs = slab_chunks(nz, one)
    else:
        zs = data.chunks[1]
    wanted = ((1,) * nc, zs, (ny,), (nx,))
    return data if data.chunks == wanted else data.rechunk(wanted)


def along_z(value: xr.DataArray, zchunks: tuple[int, ...]) -> da.Array:
    """A per-slice extra in the z blocks of its stack's write (one channel a block)."""
    data = value.data
    if value.dims[:2] == ("channel", "z"):
        wanted = ((1,) * data.shape[0], zchunks, *((n,) for n in data.shape[2:]))
    else:
        wanted = (zchunks, *((n,) for n in data.shape[1:]))
    return data if data.chunks == wanted else data.rechunk(wanted)


def call_compute(compute: Callable[..., Sequence[Any]] | None, tasks: list[Any],
                  weights: list[int]) -> Sequence[Any]:
    """``compute(tasks)``, with the slices of each task as ``weights`` for a compute that
    takes them (the executor's, for its progress bar)."""
    if compute is None:
        return dask.compute(*tasks)
    try:
        takes_weights = "weights" in inspect.signature(compute).parameters
    except (TypeError, ValueError):  # no signature (some builtins)
        takes_weights = False
    return compute(tasks, weights=weights) if takes_weights else compute(tasks)



def _extra_picker(sliced: dict[str, xr.DataArray], zchunks: tuple[int, ...]
                  ) -> tuple[list[tuple[str, bool]], Callable[[int, int], list[Any]]]:
    """The per-slice extras' (name, has a channel) and ``pick(c, j)``: their delayed
    blocks for channel ``c``, slab ``j`` (None for an extra without channel, but on
    channel 0)."""
    specs = [(name, value.dims[0] == "channel") for name, value in sliced.items()]
    extra_blocks = [along_z(value, zchunks).to_delayed(optimize_graph=False)
                    for value in sliced.values()]

    def pick(c: int, j: int) -> list[Any]:
        out = []
        for (_, with_channel), delayed_blocks in zip(specs, extra_blocks):
            if with_channel:
                out.append(delayed_blocks[(c, j) + (0,) * (delayed_blocks.ndim - 2)])
            else:
                out.append(delayed_blocks[(j,) + (0,) * (delayed_blocks.ndim - 1)]
                           if c == 0 else None)
        return out

    return specs, pick


def _write_tasks(path: StoreTarget, group: str, data: da.Array, output: StepOutput,
                 todo: set[tuple[int, int]], token: str, sharded: bool
                 ) -> tuple[list[Any], list[int]]:
    """One delayed :func:`_write_slab` per slab of ``data`` (channel by channel, in z
    order), and the slices of each (its weight, for a progress bar)."""
    # unoptimised, so that the stack and its extras share their task keys: each
    # slab is computed once, and dask.compute optimises the whole graph
    blocks = data.to_delayed(optimize_graph=False)
    zchunks = data.chunks[1]
    specs, pick = _extra_picker(split_extras(output.extras)[0], zchunks)
    funcs = [d.func for d in output.derived.values()]
    # a source's slab is a key of the graph (the step's input, read once for the
    # step and for the quantity), handed to the task that writes the output slab
    source_blocks = [None if d.source is None else
                     d.source.rechunk({0: 1, 1: zchunks, 2: -1, 3: -1}).to_delayed(
                         optimize_graph=False) for d in output.derived.values()]
    write = dask.delayed(_write_slab, pure=False)
    tasks, weights = [], []
    bounds = np.concatenate([[0], np.cumsum(zchunks)]).astype(int)
    for c in range(data.shape[0]):
        for j in range(len(zchunks)):
            z0, z1 = int(bounds[j]), int(bounds[j + 1])
            ks = [z - z0 for z in range(z0, z1) if (c, z) in todo]
            block = blocks[c, j, 0, 0] if ks else None  # nothing computed for a done slab
            sources = [None if b is None else b[c, j, 0, 0] for b in source_blocks]
            tasks.append(write(block, pick(c, j) if ks else [], specs, path, group, c, z0,
                               z1 - z0, ks, token, funcs, sources, sharded and bool(ks)))
            weights.append(z1 - z0)
    return tasks, weights


def write_slabs(path: StoreTarget, group: str, output: StepOutput, per_shard: int,
                missing: Sequence[tuple[int, int]], token: str,
                compute: Callable[..., Sequence[Any]] | None) -> dict[str, np.ndarray]:
    """Write the ``missing`` (channel, z) slices of ``output`` into ``group``, slab by
    slab (``per_shard`` > 0: whole shards of that many slices), and return every slice's
    statistics (``"_stats"``), cuts and derived quantities, each as one
    (channel, z, ...) array. Slices already on disk are read back for theirs."""
    stack = output.stack
    data = slabbed(stack, per_shard)
    tasks, weights = _write_tasks(path, group, data, output, set(missing), token, per_shard > 0)
    # one result per slice, in (channel, z) order: the order the tasks were made in
    results = [values for block in call_compute(compute, tasks, weights) for values in block]
    per_slice: dict[str, np.ndarray] = {}
    for (c, z), values in zip(np.ndindex(*stack.shape[:2]), results):
        for name, value in zip(["_stats", *CUT_NAMES, *output.derived], values):
            if name not in per_slice:
                per_slice[name] = np.empty((*stack.shape[:2], *np.shape(value)),
                                           dtype=np.asarray(value).dtype)
            per_slice[name][c, z] = value
    return per_slice


def write_per_slice(path: StoreTarget, group: str, per_slice: dict[str, np.ndarray],
                    derived: dict[str, Derived]) -> None:
    """Write the per-slice statistics (``min``, ``max``, ``mean``), cuts
    (:data:`CUT_NAMES`) and derived quantities as data variables of dims (channel,
    z, ...), with their attributes."""
    dims = {n: d.dims for n, d in derived.items()}
    attrs = {n: d.attrs for n, d in derived.items()}
    stats = per_slice.pop("_stats")
    arrays = {name: (stats[..., i], ()) for i, name in enumerate(STAT_NAMES)}
    ny, nx = per_slice[CUT_NAMES[1]].shape[-1], per_slice[CUT_NAMES[0]].shape[-1]
    rows, columns = cut_indices(ny, nx)
    arrays.update({CUT_NAMES[0]: (per_slice.pop(CUT_NAMES[0]), ("cut_row", "x")),
                   CUT_NAMES[1]: (per_slice.pop(CUT_NAMES[1]), ("cut_column", "y"))})
    attrs = {**attrs, CUT_NAMES[0]: {"rows": list(rows)}, CUT_NAMES[1]: {"columns": list(columns)}}
    arrays.update({name: (values, dims[name]) for name, values in per_slice.items()})
    # zarr directly rather than xarray: xarray's append would replace the group's
    # attributes (the fingerprint among them); built in memory, every chunk written
    # (none left over from a killed run), then published at once
    memory, keys = staged_store()
    for name, (values, extra_dims) in arrays.items():
        zarr.create_array(memory, name=f"{group}/{name}", data=values,
                          dimension_names=("channel", "z", *extra_dims),
                          attributes=to_json(attrs.get(name) or {}),
                          config={"write_empty_chunks": True}, overwrite=True)
    publish(files_of(path), keys, [f"{group}/{name}" for name in arrays])


def link_chunks(path: StoreTarget, source: str | Callable[[int, int], Path | None], group: str,
                missing: Sequence[tuple[int, int]],
                chunk_file: Callable[[str, int, int], Path]) -> int:
    """Hard-link the chunk files of the complete group ``source`` into ``group`` for the
    ``missing`` slices (``chunk_file(group, c, z)``: the file of a slice); returns how
    many were linked. Nothing is linked unless both arrays have the same shape, dtype,
    chunks, shards and codecs (so that the files are valid here byte for byte), and
    linking stops at the first file system that refuses.

    ``source`` may instead be ``file(c, z)``, the chunk file of slice (c, z) outside the
    store, which its caller has checked is one of this group's byte for byte (an array
    input, see :mod:`pystack3d_dask.io.array_links`).

    A link is created whole or not at all, so a kill leaves a resumable group;
    removing the source's slices later leaves these files in place.
    """
    if callable(source):
        return link_files(missing, source, lambda c, z: chunk_file(group, c, z))
    try:
        src = zarr.open_array(path, path=f"{source}/stack", mode="r", zarr_format=3)
        dst = zarr.open_array(path, path=f"{group}/stack", mode="r", zarr_format=3)
    except Exception:
        return 0
    same = (src.shape == dst.shape and src.dtype == dst.dtype and src.chunks == dst.chunks
            and src.shards == dst.shards
            and src.metadata.codecs == dst.metadata.codecs
            and src.metadata.fill_value == dst.metadata.fill_value)
    if not same:
        return 0
    per_shard = dst.shards[1] if dst.shards is not None else 1
    # one link per shard file
    return link_files(missing, lambda c, z: None if z % per_shard else chunk_file(source, c, z),
                      lambda c, z: chunk_file(group, c, z))


def link_files(missing: Sequence[tuple[int, int]],
               source_file: Callable[[int, int], Path | None],
               target_file: Callable[[int, int], Path]) -> int:
    """Hard-link ``source_file(c, z)`` to ``target_file(c, z)`` for the ``missing``
    slices (a source None or absent: skipped, the slice is written as usual); returns
    how many were linked, stopping at the first file system that refuses."""
    linked = 0
    for c, z in missing:
        source = source_file(c, z)
        if source is None:
            continue
        target = target_file(c, z)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.link(source, target)
        except (FileExistsError, FileNotFoundError):  # there already; no chunk to link
            continue
        except OSError:  # no hard links here (another file system, FAT, some NFS)
            break
        linked += 1
    return linked
