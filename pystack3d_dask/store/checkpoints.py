"""The Zarr v3 store: layout, checkpoints, resume.

Layout::

    STORE/                      root attributes: layout version, package version, workflow
      input/                    the ingested stack (an xarray Dataset)
      steps/01_cropping/        one group per checkpointed step, in the workflow's order
      steps/02_.../

Every group is an xarray Dataset: variable ``stack`` with dims (channel, z, y, x) and
chunks (1, 1, Y, X), per-slice statistics ``min``, ``max``, ``mean`` (channel, z), and
attributes: the step's name and parameters, its fingerprint, timings and ``complete``.

A checkpoint is written chunk by chunk. zarr's LocalStore writes each chunk to a
temporary file and renames it into place, so a chunk file is whole or absent even after
a SIGKILL: the chunks present are the ones finished, and a resumed write computes only
the others. Each task returns its slice's statistics (those of slices already on disk
are read back on resume); ``complete`` is set last, after every chunk and the
statistics are on disk.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
import zarr
import zarr.codecs

from ..errors import StoreError
from ..runtime.faults import fault_point
from .chunks import array_handle, fast_chunks, read_block, slab_chunks, slice_bytes, stored_slice
from .location import StoreRef, StoreTarget, files_of, is_url, store_ref, zarr_store
from .metadata import CHUNK_KEY_ENCODING, create_group, make_compressors, split_extras, to_json
from .root import LAYOUT_VERSION, ROOT_KEY, check_or_create, existing_store
from .write import CUT_NAMES, STAT_NAMES, StepOutput, link_chunks, write_per_slice, write_slabs

__all__ = ["CHUNK_KEY_ENCODING", "CUT_NAMES", "INPUT_GROUP", "LAYOUT_VERSION", "STAT_NAMES", "Store",
           "WriteReport", "existing_store", "make_compressors", "to_json"]

#: The group of the ingested input slices (steps are under ``steps/``).
INPUT_GROUP = "input"


@dataclass
class WriteReport:
    """What a checkpoint write did."""

    group: str
    status: str  # "reused", "computed" or "resumed"
    chunks_total: int
    chunks_computed: int
    seconds: float


def _marked(attrs: dict[str, Any] | None, flag: str, fingerprint: str | None) -> bool:
    """Whether a group's attributes carry ``flag`` (``complete``, ``removed``), with this
    fingerprint when one is given."""
    if not attrs or not attrs.get(flag):
        return False
    return fingerprint is None or attrs.get("fingerprint") == fingerprint


class Store:
    """A pystack3d-dask Zarr v3 store on a local (or shared) file system.

    Parameters
    ----------
    path
        Folder of the store; created when absent.
    compressors
        Codecs for new arrays (see :func:`make_compressors`).
    create
        Create the store when absent (else an error).
    shard_slices
        Slices per Zarr v3 shard of new stacks (1: no sharding, one file per slice).
        A shard is written whole by one task.
    """

    def __init__(self, path: str | Path | StoreRef, compressors: Sequence[Any] | None = None,
                 create: bool = True, shard_slices: int = 1,
                 storage_options: dict[str, Any] | None = None) -> None:
        if isinstance(path, StoreRef) or is_url(path):
            self.ref: StoreRef | None = store_ref(path, storage_options)
            self.path: Path | StoreRef = self.ref
            self.target: StoreTarget = self.ref
        else:
            self.ref = None
            self.path = Path(path).resolve()
            self.target = str(self.path)
        self.files = files_of(self.target)
        self.compressors = list(make_compressors() if compressors is None else compressors)
        if not isinstance(shard_slices, int) or shard_slices < 1:
            raise StoreError(f"shard_slices = {shard_slices!r}: expected an integer >= 1")
        self.shard_slices = shard_slices
        if self.ref is not None:
            self.files.check()
        check_or_create(self.path, self.files, self.target, create)

    @property
    def remote(self) -> bool:
        """Whether the store is on object storage (a URL), not a local folder."""
        return self.ref is not None

    @property
    def name(self) -> str:
        """The store's name (last part of its path or URL)."""
        return self.path.name

    # -- layout -------------------------------------------------------------------------
    @property
    def info(self) -> dict[str, Any]:
        """This package's root attributes of the store."""
        root = zarr.open_group(zarr_store(self.target), mode="r", zarr_format=3)
        return dict(root.attrs.get(ROOT_KEY, {}))

    def update_info(self, **values: Any) -> None:
        """Update this package's root attributes."""
        root = zarr.open_group(zarr_store(self.target), mode="r+", zarr_format=3)
        info = dict(root.attrs.get(ROOT_KEY, {}))
        info.update(values)
        root.attrs[ROOT_KEY] = info

    def group_dir(self, group: str) -> Path:
        """Folder of a group (a local store's)."""
        if self.remote:
            raise StoreError(f"{self.path}: a store on object storage has no folders")
        return self.path / group

    def has_group(self, group: str) -> bool:
        """Whether the group exists (complete or not)."""
        return self.files.exists(f"{group}/zarr.json")

    def attrs(self, group: str) -> dict[str, Any] | None:
        """A group's attributes, or None when it does not exist."""
        try:  # no check that it exists first: one round trip less on object storage
            return dict(zarr.open_group(zarr_store(self.target), path=group, mode="r",
                                        zarr_format=3).attrs)
        except Exception:
            return None

    def update_attrs(self, group: str, **values: Any) -> None:
        """Update a group's attributes."""
        # one write of zarr.json: ``attrs.update`` writes it once per key (eleven times
        # when a group is created)
        node = zarr.open_group(zarr_store(self.target), path=group, mode="r+", zarr_format=3)
        node.update_attributes(values)

    def is_complete(self, group: str, fingerprint: str | None = None) -> bool:
        """Whether the group is complete (with this fingerprint, when given)."""
        return _marked(self.attrs(group), "complete", fingerprint)

    def is_removed(self, group: str, fingerprint: str | None = None) -> bool:
        """Whether the group was complete (with this fingerprint, when given) and its
        slices were removed by the retention policy: its small outputs remain."""
        return _marked(self.attrs(group), "removed", fingerprint)

    def group_bytes(self, group: str, name: str | None = None, only_here: bool = False) -> int:
        """Bytes on disk of a group (or of one of its arrays), each file counted once
        even when hard-linked twice below it; ``only_here``: only the files no other
        group links (what deleting them frees)."""
        return self.files.size(f"{group}/{name}" if name else group, only_here)

    def remove_slices(self, group: str, reason: str) -> int:
        """Remove a complete group's slices (its ``stack`` array), keep everything else
        (statistics, extras, parameters, fingerprint) and record it; returns the bytes
        freed. The group is no longer complete: a run that needs its slices computes them
        again from the nearest group that has them.

        ``complete`` is cleared before anything is deleted, so that a crash in between
        leaves a group that is recomputed, never one marked complete without slices.
        """
        if not self.is_complete(group):
            raise StoreError(f"{self.path}: group {group!r} is not complete; only complete "
                             "checkpoints lose their slices")
        freed = self.group_bytes(group, "stack", only_here=True)
        self.update_attrs(group, complete=False, removed=True, removed_at=time.time(),
                          removed_bytes=freed, removed_reason=reason)
        self.files.remove(f"{group}/stack")
        array_handle.cache_clear()
        fast_chunks.cache_clear()
        return freed

    def step_groups(self) -> list[str]:
        """Groups under ``steps/``, in order."""
        return sorted(f"steps/{name}" for name in self.files.children("steps")
                      if self.files.exists(f"steps/{name}/zarr.json"))

    def delete_group(self, group: str) -> None:
        """Remove a group and everything in it."""
        self.files.remove(group)
        array_handle.cache_clear()
        fast_chunks.cache_clear()

    def clear(self) -> None:
        """Remove every group (input and steps), keeping the store itself."""
        for name in ("input", "steps"):
            self.delete_group(name)
        self.update_info(workflow=[])

    # -- reading ------------------------------------------------------------------------
    def open_dataset(self, group: str, chunks: Any = "auto") -> xr.Dataset:
        """A group as a lazy xarray Dataset: dask arrays, or with ``chunks=None``
        xarray's lazily indexed arrays (a selection reads its chunks directly, without a
        graph: for reading a few small pieces)."""
        kwargs = {} if chunks == "auto" else {"chunks": chunks}
        try:
            return xr.open_zarr(zarr_store(self.target), group=group, consolidated=False,
                                zarr_format=3, **kwargs)
        except zarr.errors.GroupNotFoundError:
            raise StoreError(f"{self.path}: no group {group!r}") from None

    def load_extras(self, group: str, names: Sequence[str]) -> dict[str, xr.DataArray] | None:
        """In-memory copies of a group's extra arrays, or None when one is missing."""
        if not all(self.files.exists(f"{group}/{name}/zarr.json") for name in names):
            return None
        ds = self.open_dataset(group)
        return {name: ds[name].load() for name in names}

    def open_stack(self, group: str, ds: xr.Dataset | None = None) -> xr.DataArray:
        """A group's stack as a lazy DataArray (channel, z, y, x) in slabs of a few
        slices (one file per slice, see :func:`~.chunks.slab_chunks`; ``ds``: the
        group's Dataset, when the caller has already opened it)."""
        ds = self.open_dataset(group) if ds is None else ds
        stack = ds["stack"]
        token = ds.attrs.get("fingerprint") or ""
        fast = fast_chunks(self.target, f"{group}/stack", token)
        # read in slabs, by direct chunk access (a local store), or by zarr on object
        # storage (the slab's chunks fetched at once, not one slice a task)
        if self.remote or (fast is not None and fast.chunk_shape == (1, 1, *stack.shape[2:])):
            reader = functools.partial(read_block, self.target, f"{group}/stack", token)
            zs = slab_chunks(stack.shape[1], slice_bytes(stack.shape, stack.dtype))
            data = da.map_blocks(reader, chunks=((1,) * stack.shape[0], zs,
                                                 (stack.shape[2],), (stack.shape[3],)),
                                 dtype=stack.dtype, meta=np.empty((0,) * 4, stack.dtype),
                                 name=f"read-{group.replace('/', '-')}-{token[:16]}")
            stack = stack.copy(data=data)
        stack.attrs.update({"group": group, "fingerprint": ds.attrs.get("fingerprint"),
                            "store": str(self.path)})
        return stack

    def slice_count(self, group: str) -> int:
        """Slices of a group's stack, all channels, from the metadata of its statistics
        (kept when the slices are removed)."""
        shape = zarr.open_array(zarr_store(self.target), path=f"{group}/{STAT_NAMES[0]}",
                                mode="r", zarr_format=3).shape
        return int(shape[0] * shape[1])

    def read_slice(self, group: str, c: int, z: int) -> np.ndarray:
        """One stored slice (channel ``c``, index ``z``), read at once without a graph."""
        token = (self.attrs(group) or {}).get("fingerprint") or ""
        return stored_slice(self.target, group, c, z, token)

    # -- writing ------------------------------------------------------------------------
    def _chunk_key(self, group: str, c: int, z: int) -> str:
        """Key of slice (c, z) below the group's ``stack``: its chunk, or the shard
        holding it (written whole)."""
        arr = array_handle(self.target, f"{group}/stack")
        per_shard = arr.shards[1] if arr.shards is not None else 1
        return arr.metadata.encode_chunk_key((c, z // per_shard, 0, 0))

    def _chunk_file(self, group: str, c: int, z: int) -> Path:
        """File of slice (c, z) in a local store (see :meth:`_chunk_key`)."""
        return self.group_dir(group) / "stack" / self._chunk_key(group, c, z)

    def _shard_slices(self, group: str) -> int:
        """Slices per shard of a group's stack (0: not sharded)."""
        shards = array_handle(self.target, f"{group}/stack").shards
        return int(shards[1]) if shards is not None else 0

    def missing_chunks(self, group: str, shape: tuple[int, ...]) -> list[tuple[int, int]]:
        """The (channel, z) slices of a group not yet on disk."""
        # one listing, not a request per slice (chunk keys of "/" stores are nested)
        present = self.files.files(f"{group}/stack")
        out = []
        for c in range(shape[0]):
            for z in range(shape[1]):
                key = self._chunk_key(group, c, z)
                if not (key in present if "/" not in key
                        else self.files.exists(f"{group}/stack/{key}")):
                    out.append((c, z))
        return out

    def _matches(self, group: str, stack: xr.DataArray, fingerprint: str,
                 extras: dict[str, xr.DataArray], attrs: dict[str, Any] | None) -> bool:
        """Whether the incomplete group (of attributes ``attrs``) is this write's, to
        resume."""
        if not attrs or attrs.get("fingerprint") != fingerprint:
            return False
        if not all(self.files.exists(f"{group}/{name}/zarr.json") for name in extras):
            return False
        try:
            arr = zarr.open_array(zarr_store(self.target), path=f"{group}/stack", mode="r", zarr_format=3)
        except Exception:
            return False
        return arr.shape == stack.shape and arr.dtype == stack.dtype

    def _create(self, group: str, stack: xr.DataArray, attrs: dict[str, Any],
                extras: dict[str, xr.DataArray]) -> None:
        create_group(self.target, group, stack, attrs, extras, self.compressors,
                     self.shard_slices)
        # handles on the group's arrays before it was replaced
        array_handle.cache_clear()
        fast_chunks.cache_clear()

    def write(self, group: str, output: StepOutput | xr.DataArray, fingerprint: str,
              attrs: dict[str, Any] | None = None, *,
              compute: Callable[[list[Any]], Sequence[Any]] | None = None,
              link_from: str | Callable | None = None, started: float | None = None) -> WriteReport:
        """Write a step's lazy output as a checkpoint, resuming a partial write of the
        same fingerprint, and mark it complete.

        Parameters
        ----------
        group
            Group path, e.g. ``steps/01_cropping``.
        output
            The step's output: its lazy (channel, z, y, x) stack backed by dask (any
            chunks; it is written one slab of slices a task, see
            :func:`~.chunks.slab_chunks`, one slice a file), the extras stored beside it
            and the per-slice quantities derived from it (see :class:`~.write.StepOutput`);
            or the stack alone.
        fingerprint
            Identity of the content; a group with another fingerprint is replaced.
        attrs
            Attributes stored with the group (parameters, provenance).
        compute
            ``compute(delayed_list) -> results``: runs the tasks on the chosen
            scheduler; one that takes a ``weights`` keyword also gets the slices of
            each task (for a progress bar). Default: ``dask.compute``.
        link_from
            A complete group whose slices are the stack unchanged (a step of small outputs only),
            or ``file(c, z)``, slice (c, z)'s chunk file outside the store (an input stored as
            this stack): the files are hard-linked here, no byte copied, when the layout and file
            system match; otherwise (or where not linked) the slices are written as usual.
        started
            ``time.perf_counter()`` when the step began (its preparation included): the
            ``seconds`` recorded count from then. Default: when this call began.

        Returns
        -------
        WriteReport
        """
        out = output if isinstance(output, StepOutput) else StepOutput(output)
        stack = out.stack
        if stack.dims != ("channel", "z", "y", "x"):
            raise StoreError(f"stack dims {stack.dims}: expected (channel, z, y, x)")
        start = time.perf_counter()
        slices = int(np.prod(stack.shape[:2]))
        found = self.attrs(group)
        if _marked(found, "complete", fingerprint):
            return WriteReport(group, "reused", slices, 0, 0.0)
        resumed = self._matches(group, stack, fingerprint, out.extras, found)
        if resumed:
            # a killed writer can leave the temporary files of the chunks it was writing
            self.files.remove_partial(group)
            missing = self.missing_chunks(group, stack.shape)
        else:  # created anew (what was there removed first): no slice is there
            self._create(group, stack, {"fingerprint": fingerprint, **(attrs or {}),
                                        "started": time.time(), "extras": sorted(out.extras)},
                         out.extras)
            missing = list(np.ndindex(*stack.shape[:2]))
        linked = {}
        if link_from is not None and missing and not self.remote and (callable(link_from) or (
                not split_extras(out.extras)[0] and not out.derived
                and self.is_complete(link_from))):
            linked["linked_chunks"] = link_chunks(self.target, link_from, group, missing,
                                                  self._chunk_file)
            missing = self.missing_chunks(group, stack.shape)
        per_slice = write_slabs(self.target, group, out, self._shard_slices(group),
                                missing, fingerprint, compute)
        still = self.missing_chunks(group, stack.shape)
        if still:
            raise StoreError(f"{group}: {len(still)} slices were not written (first: channel "
                             f"{still[0][0]}, z index {still[0][1]})")
        fault_point("chunks-written", group)
        write_per_slice(self.target, group, per_slice, out.derived)
        fault_point("mark-complete", group)
        seconds = time.perf_counter() - (start if started is None else started)
        self.update_attrs(group, complete=True, finished=time.time(), seconds=seconds,
                          chunks_computed=len(missing), **linked)
        status = "resumed" if resumed and len(missing) < slices else "computed"
        return WriteReport(group, status, slices, len(missing), seconds)
