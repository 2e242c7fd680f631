"""Per-step figures, drawn from what a step's checkpoint stores (never by recomputing it).

Every function takes the step's group as an xarray Dataset (and, where useful, its
input's) and returns a matplotlib Figure, or None when the group has nothing to show.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import xarray as xr

from ..runtime.jupyter import kernel_shell
from .sections import span

__all__ = ["STEP_FIGURES", "decompose", "fit", "new_figure", "statistics_figure", "step_figures",
           "subplots"]


def new_figure(figsize: tuple[float, float]) -> Any:
    """A matplotlib Figure of its own, made without pyplot: no backend is chosen or
    switched (a notebook's stays as it is), pyplot keeps no reference to it, and
    figures can be drawn on several threads at once. A notebook shows it inline."""
    from matplotlib.figure import Figure

    _inline_display()
    return Figure(figsize=figsize)


def fit(fig: Any, left: float = 0.65, right: float = 0.2, bottom: float = 0.5,
        top: float = 0.45, wspace: float = 0.55, hspace: float = 0.55) -> Any:
    """Margins and gaps of ``fig``'s grid, in inches: a fixed layout where
    ``tight_layout`` would draw the figure once more to measure its text."""
    from matplotlib.ticker import MaxNLocator

    for ax in fig.axes:  # each tick is several artists to make and draw: a few suffice
        for axis in (ax.xaxis, ax.yaxis):
            if isinstance(axis.get_major_locator(), MaxNLocator):  # not ticks set by name
                axis.get_major_locator().set_params(nbins=4)
    if fig._suptitle is not None:  # the figure's title above the axes' titles
        top += 0.2
    width, height = fig.get_size_inches()
    ncols, nrows = 1, 1
    for ax in fig.axes:
        spec = ax.get_subplotspec()
        if spec is not None:
            nrows, ncols = spec.get_gridspec().get_geometry()
            break
    plot_w = width - left - right - wspace * (ncols - 1)
    plot_h = height - bottom - top - hspace * (nrows - 1)
    fig.subplots_adjust(left=left / width, right=1 - right / width, bottom=bottom / height,
                        top=1 - top / height, wspace=wspace * ncols / max(plot_w, 1e-3),
                        hspace=hspace * nrows / max(plot_h, 1e-3))
    return fig


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float],
             **kwargs: Any) -> tuple[Any, Any]:
    """``pyplot.subplots`` on a :func:`new_figure`."""
    fig = new_figure(figsize)
    return fig, fig.subplots(nrows, ncols, **kwargs)


def _inline_display() -> None:
    """In a Jupyter kernel, have Figure objects shown as PNG images, as the inline
    backend does for the figures of pyplot (it registers that display only once pyplot
    draws its first figure, which a figure made without pyplot never does)."""
    shell = kernel_shell()
    if shell is None:
        return
    from matplotlib.figure import Figure

    try:
        shell.display_formatter.formatters["image/png"].lookup_by_type(Figure)
    except KeyError:
        from IPython.core.pylabtools import select_figure_formats

        select_figure_formats(shell, {"png"})


def _z(ds: xr.Dataset) -> np.ndarray:
    return np.asarray(ds["z"].values, dtype=np.float64)


def statistics_figure(output: xr.Dataset, input_: xr.Dataset | None = None, title: str = "") -> Any:
    """Per-slice min, max and mean along z, of the step's input (dashed) and output."""
    fig, axes = subplots(1, 3, figsize=(11, 3), sharex=True)
    channels = output["channel"].values
    for ax, name in zip(axes, ("min", "max", "mean")):
        for c, label in enumerate(channels):
            if input_ is not None and name in input_:
                ax.plot(_z(input_), input_[name].values[c], "--", lw=0.8,
                        label=f"input {label}")
            ax.plot(_z(output), output[name].values[c], lw=0.9, label=f"output {label}")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("z (um)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fig.suptitle(title, fontsize=9)
    fit(fig)
    return fig


def decompose(tmats: np.ndarray) -> dict[str, np.ndarray]:
    """Translation (x, y), rotation (degrees), scales (x, y) and shear of affine
    matrices (..., 3, 3) acting on (x, y, 1): ``A = R(theta) @ [[sx, m], [0, sy]]``,
    shear = m / sy."""
    a, b = tmats[..., 0, 0], tmats[..., 0, 1]
    c, d = tmats[..., 1, 0], tmats[..., 1, 1]
    theta = np.arctan2(c, a)
    sx = np.hypot(a, c)
    m = b * np.cos(theta) + d * np.sin(theta)
    sy = d * np.cos(theta) - b * np.sin(theta)
    return {"tx": tmats[..., 0, 2], "ty": tmats[..., 1, 2], "rotation": np.degrees(theta),
            "scale x": sx, "scale y": sy, "shear": np.divide(m, sy, out=np.zeros_like(m),
                                                              where=sy != 0)}


def _matrices_figure(tmats: np.ndarray, z: np.ndarray, title: str,
                     cumulative: np.ndarray | None = None) -> Any:
    parts = decompose(tmats[:, 0])
    cum = decompose(cumulative[:, 0]) if cumulative is not None else None
    fig, axes = subplots(2, 3, figsize=(11, 5.5), sharex=True)
    panels = [("translation (px)", ("tx", "ty")), ("rotation (deg)", ("rotation",)),
              ("scale", ("scale x", "scale y")), ("shear", ("shear",))]
    flat = axes.ravel()
    for ax, (label, keys) in zip(flat, panels):
        for key in keys:
            ax.plot(z, parts[key], lw=0.8, label=f"{key}, pair")
            if cum is not None:
                ax.plot(z, cum[key], lw=1.2, label=f"{key}, cumulative")
        ax.set_title(label, fontsize=9)
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    if cum is not None:
        flat[4].plot(cum["tx"], cum["ty"], lw=0.9)
        flat[4].set_title("cumulative path (x, y) px", fontsize=9)
        flat[4].tick_params(labelsize=7)
    else:
        flat[4].axis("off")
    flat[5].axis("off")
    for ax in axes[1]:
        ax.set_xlabel("z (um)", fontsize=8)
    fig.suptitle(title, fontsize=9)
    fit(fig)
    return fig


def _registration_calculation(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    from ..kernels.registration import cumulative

    tmats = np.asarray(ds["tmats"].values, dtype=np.float64)
    return [("matrices", _matrices_figure(tmats, _z(ds), "registration matrices (pairs and "
                                          "cumulative, first block)", cumulative(tmats)))]


def _registration_transformation(ds: xr.Dataset, input_: xr.Dataset | None
                                 ) -> list[tuple[str, Any]]:
    cumul = np.asarray(ds["tmats_cumul"].values, dtype=np.float64)
    z = _z(input_) if input_ is not None else np.arange(len(cumul), dtype=float)
    title = "cumulative matrices applied"
    if "crop" in ds:
        title += f"; kept rows, columns {[int(v) for v in ds['crop'].values]}"
    return [("matrices", _matrices_figure(cumul, z[: len(cumul)], title))]


def _histogram_maps(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    names = [n for n in ("histos_orig", "histos_ref", "histos_final") if n in ds]
    if not names:
        return []
    fig, axes = subplots(1, len(names), figsize=(4 * len(names), 3.4), squeeze=False)
    z = _z(ds)
    low, high = (ds["value_range"].values[0] if "value_range" in ds else (0, 1))
    for ax, name in zip(axes[0], names):
        counts = np.asarray(ds[name].values[0], dtype=np.float64)
        ax.imshow(np.log1p(counts).T, origin="lower", aspect="auto", cmap="magma",
                  extent=[*span(z[0], z[-1]), *span(low, high)])
        ax.set_title(name.replace("histos_", "histograms, "), fontsize=9)
        ax.set_xlabel("z (um)", fontsize=8)
        ax.set_ylabel("grey level", fontsize=8)
        ax.tick_params(labelsize=7)
    fit(fig)
    return [("histograms", fig)]


def _area_factors(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    fig, axes = subplots(1, 2, figsize=(9, 3))
    z = _z(ds)
    for c, label in enumerate(ds["channel"].values):
        axes[0].plot(z, ds["means"].values[c], lw=0.9, label=str(label))
        axes[1].plot(z, ds["factors"].values[c], lw=0.9, label=str(label))
    axes[0].set_title("mean of the area", fontsize=9)
    axes[1].set_title("factor applied", fontsize=9)
    for ax in axes:
        ax.set_xlabel("z (um)", fontsize=8)
        ax.tick_params(labelsize=7)
    axes[0].legend(fontsize=6)
    fit(fig)
    return [("factors", fig)]


def _background(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    figures = []
    if "coefs_3d" in ds:
        coefs = ds["coefs_3d"]
        fig, ax = subplots(figsize=(7, 3))
        terms = [str(t) for t in coefs["term"].values]
        for c, label in enumerate(coefs["channel"].values):
            ax.bar(np.arange(len(terms)) + 0.8 * c / coefs.sizes["channel"], coefs.values[c],
                   width=0.8 / coefs.sizes["channel"], label=str(label))
        ax.set_xticks(np.arange(len(terms)), terms, rotation=45, fontsize=7)
        ax.set_title("3D background coefficients (x, y, z scaled to [0, 1])", fontsize=9)
        ax.legend(fontsize=6)
        fit(fig, bottom=0.8)
        figures.append(("coefficients", fig))
    if "coefs" in ds:
        coefs = ds["coefs"]
        fig, ax = subplots(figsize=(7, 3))
        for t, term in enumerate(coefs["term"].values):
            ax.plot(_z(ds), coefs.values[0, :, t], lw=0.8, label=str(term))
        ax.set_title("2D background coefficients per slice (first channel)", fontsize=9)
        ax.set_xlabel("z (um)", fontsize=8)
        ax.legend(fontsize=6, ncol=2)
        fit(fig)
        figures.append(("coefficients", fig))
    if input_ is not None:
        # the background removed is what separates the stored input and output slices
        nz = ds.sizes["z"]
        picks = sorted({0, nz // 2, nz - 1})
        fig, axes = subplots(1, len(picks), figsize=(3.6 * len(picks), 3), squeeze=False)
        for ax, k in zip(axes[0], picks):
            removed = (input_["stack"][0, k].values.astype(np.float64)
                       - ds["stack"][0, k].values.astype(np.float64))
            im = ax.imshow(removed, cmap="coolwarm")
            ax.set_title(f"removed at z = {_z(ds)[k]:g} um", fontsize=8)
            ax.axis("off")
            fig.colorbar(im, ax=ax, fraction=0.046)
        fit(fig, left=0.2, right=0.55, wspace=0.75)
        figures.append(("background", fig))
    return figures


def _resampling(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    fig, axes = subplots(1, 2, figsize=(9, 3))
    zout = _z(ds)
    if input_ is not None:
        zin = _z(input_)
        axes[0].plot(np.arange(len(zin)), zin, ".", ms=2, label="input")
        axes[1].plot(zin[1:], np.diff(zin), ".", ms=3, label="input")
    axes[0].plot(np.arange(len(zout)), zout, ".", ms=2, label="output")
    axes[1].plot(zout[1:], np.diff(zout), ".", ms=3, label="output")
    axes[0].set_title("z positions", fontsize=9)
    axes[0].set_xlabel("slice index", fontsize=8)
    axes[1].set_title("z increments (um)", fontsize=9)
    axes[1].set_xlabel("z (um)", fontsize=8)
    for ax in axes:
        ax.legend(fontsize=6)
        ax.tick_params(labelsize=7)
    fit(fig)
    return [("z", fig)]


def _destriping(ds: xr.Dataset, input_: xr.Dataset | None) -> list[tuple[str, Any]]:
    fig, ax = subplots(figsize=(8, 3))
    z = _z(ds)
    score = ds["stripe_score"].values[0]
    ax.plot(z, score, ".", ms=3, label="input")
    if "stripe_score_out" in ds:
        ax.plot(z, ds["stripe_score_out"].values[0], ".", ms=3, label="output")
    if "treated" in ds:
        treated = ds["treated"].values[0].astype(bool)
        ax.plot(z[treated], score[treated], "o", mfc="none", ms=5, lw=0, label="treated")
    threshold = ds["stripe_score"].attrs.get("threshold")
    if threshold is not None:
        ax.axhline(threshold, color="k", lw=0.8, ls="--", label=f"threshold {threshold:.2f}")
    ax.set_title("stripe score (1: no stripes)", fontsize=9)
    ax.set_xlabel("z (um)", fontsize=8)
    ax.legend(fontsize=6)
    fit(fig)
    return [("stripe_score", fig)]


#: Each step's own views, beside the statistics every step gets.
STEP_FIGURES = {
    "bkg_removal": _background,
    "intensity_rescaling": _histogram_maps,
    "intensity_rescaling_area": _area_factors,
    "registration_calculation": _registration_calculation,
    "registration_transformation": _registration_transformation,
    "destriping": _destriping,
    "resampling": _resampling,
}


def step_figures(step: str, output: xr.Dataset, input_: xr.Dataset | None = None
                 ) -> list[tuple[str, Any]]:
    """``[(name, Figure), ...]``: the statistics, then the step's own views."""
    figures = [("statistics", statistics_figure(output, input_, f"{step}: per-slice statistics"))]
    if step in STEP_FIGURES:
        figures.extend(STEP_FIGURES[step](output, input_))
    return figures


def beam_current_figure(ds: xr.Dataset) -> Any:
    """The beam current of every slice (Fibics ``Ext I``) beside each channel's mean: a
    jump in one often explains a jump in the other."""
    fig, ax = subplots(figsize=(8, 3))
    current = ds["beam_current"]
    ax.plot(_z(ds), current.values, color="black", lw=1.0, label="beam current")
    ax.set_xlabel("z (um)", fontsize=8)
    ax.set_ylabel(f"beam current ({current.attrs.get('units', '?')})", fontsize=8)
    if "mean" in ds:
        twin = ax.twinx()
        for c, label in enumerate(ds["channel"].values):
            twin.plot(_z(ds), ds["mean"].values[c], lw=0.7, alpha=0.7, label=f"mean {label}")
        twin.set_ylabel("slice mean", fontsize=8)
        twin.legend(fontsize=6, loc="lower right")
    ax.legend(fontsize=6, loc="upper left")
    ax.set_title("input: beam current and slice mean along z", fontsize=9)
    fit(fig, right=0.75)
    return fig
