"""Polynomial bases in normalised coordinates: PyStack3D's ``orders`` and ``poly_basis``.

A basis is a list of powers, one tuple ``(px, py)`` or ``(px, py, pz)`` per term, with
x along columns, y along rows (from the top row, as PyStack3D) and z along slices, each
normalised to [0, 1].
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence

import numpy as np

from ..errors import ConfigError

__all__ = [
    "Powers",
    "accumulate_outer",
    "evaluate_slice",
    "parse_poly_basis",
    "powers_from_orders",
    "separable_factors",
    "term_names",
    "vandermonde",
]

Powers = list[tuple[int, ...]]

_TOKEN = re.compile(r"\s*(?:(?P<num>\d+)|(?P<var>[A-Za-z_]\w*)|(?P<op>\*\*|\^|\*|\+))")


def powers_from_orders(orders: Sequence[int], cross_terms: bool) -> Powers:
    """Terms of a polynomial of the given order along each axis.

    Parameters
    ----------
    orders
        ``[ox, oy]`` or ``[ox, oy, oz]``.
    cross_terms
        With cross terms, every product ``x**i * y**j (* z**k)`` with each power up to
        its order; without, the constant and the pure powers only.

    Returns
    -------
    list of tuple
        Powers in PyStack3D's order (the product order of the axes).
    """
    if len(orders) not in (2, 3) or any(int(o) != o or o < 0 for o in orders):
        raise ConfigError(f"orders = {list(orders)}: expected 2 or 3 integers >= 0")
    out = []
    for powers in itertools.product(*(range(int(o) + 1) for o in orders)):
        if cross_terms or sum(p > 0 for p in powers) <= 1:
            out.append(tuple(powers))
    return out


def parse_poly_basis(expr: str, dim: int) -> Powers:
    """Parse a basis written as a sum of monomials, e.g. ``"1 + x + y + x*y + x**2 + z"``.

    The grammar is small and closed: a sum (``+``) of products (``*``) of ``1`` (or any
    integer, which only marks the constant term) and the variables ``x``, ``y`` (and
    ``z`` when ``dim = 3``), each optionally raised to an integer power with ``**`` or
    ``^``. Nothing is evaluated. The constant term is always included.

    Returns
    -------
    list of tuple
        The distinct powers, sorted (PyStack3D's order).

    Raises
    ------
    ConfigError
        For any other symbol or a malformed expression, naming the offending text.
    """
    if dim not in (2, 3):
        raise ConfigError(f"dim = {dim}: expected 2 or 3")
    variables = "xyz"[:dim]
    tokens, pos = [], 0
    text = expr.strip()
    while pos < len(text):
        match = _TOKEN.match(text, pos)
        if match is None or match.end() == pos:
            raise ConfigError(f"poly_basis {expr!r}: unexpected {text[pos:].strip()!r}; expected "
                              f"a sum of products of 1, {', '.join(variables)} and integer powers")
        kind = match.lastgroup
        tokens.append((kind, match.group(kind)))
        pos = match.end()
        while pos < len(text) and text[pos].isspace():
            pos += 1
    terms: set[tuple[int, ...]] = {(0,) * dim}
    i = 0

    def fail(what: str) -> ConfigError:
        return ConfigError(f"poly_basis {expr!r}: {what}; expected a sum of products of 1, "
                           f"{', '.join(variables)} and integer powers (e.g. '1 + x + y + x*y')")

    while True:
        powers = [0] * dim
        while True:  # one product
            if i >= len(tokens):
                raise fail("the expression ends too early")
            kind, value = tokens[i]
            i += 1
            if kind == "num":
                pass
            elif kind == "var":
                if value not in variables:
                    raise fail(f"unknown symbol {value!r}")
                exponent = 1
                if i < len(tokens) and tokens[i][1] in ("**", "^"):
                    if i + 1 >= len(tokens) or tokens[i + 1][0] != "num":
                        raise fail(f"power of {value!r} is not an integer")
                    exponent = int(tokens[i + 1][1])
                    i += 2
                powers[variables.index(value)] += exponent
            else:
                raise fail(f"unexpected {value!r}")
            if i < len(tokens) and tokens[i][1] == "*":
                i += 1
                continue
            break
        terms.add(tuple(powers))
        if i >= len(tokens):
            break
        if tokens[i][1] != "+":
            raise fail(f"unexpected {tokens[i][1]!r}")
        i += 1
    return sorted(terms)


def term_names(powers: Powers) -> np.ndarray:
    """Readable names of the terms, e.g. ``["1", "y", "x", "x*y"]`` (an object array, which
    zarr v3 stores as variable-length strings)."""
    names = []
    for term in powers:
        parts = [v if p == 1 else f"{v}**{p}" for v, p in zip("xyz", term) if p]
        names.append("*".join(parts) or "1")
    return np.array(names, dtype=object)


def vandermonde(coords: Sequence[np.ndarray], powers: Powers) -> np.ndarray:
    """Design matrix ``(n, len(powers))`` of the basis at points given per axis.

    ``coords`` holds one 1D array per axis (x, y[, z]) of the same length n.
    """
    n = len(coords[0])
    # powers of each axis by repeated products (cheaper than float ** int), then one
    # product per term
    axis_powers = []
    for axis, values in enumerate(coords):
        top = max(term[axis] for term in powers)
        cols = [np.ones(n), np.asarray(values, dtype=np.float64)]
        for _ in range(2, top + 1):
            cols.append(cols[-1] * cols[1])
        axis_powers.append(cols)
    # one contiguous row per term, returned transposed: (n, terms) in Fortran order
    out = np.empty((len(powers), n), dtype=np.float64)
    for j, term in enumerate(powers):
        factors = [axis_powers[axis][p] for axis, p in enumerate(term) if p]
        if not factors:
            out[j] = 1.0
            continue
        np.copyto(out[j], factors[0])
        for factor in factors[1:]:
            out[j] *= factor
    return out.T


def separable_factors(coefs: np.ndarray, powers: Powers, shape: tuple[int, int],
                       zpos: float = 0.0, skip_constant: bool = False
                       ) -> tuple[np.ndarray, np.ndarray]:
    """The polynomial on an (H, W) slice as ``left @ right``: ``left`` (H, r) holds the
    y powers times the coefficients, ``right`` (r, W) the x powers, r = max x power + 1.

    Parameters are those of :func:`evaluate_slice`.
    """
    height, width = shape
    xs = np.linspace(0.0, 1.0, width)
    ys = np.linspace(0.0, 1.0, height)
    max_px = max(t[0] for t in powers)
    max_py = max(t[1] for t in powers)
    grid = np.zeros((max_py + 1, max_px + 1), dtype=np.float64)
    for c, term in zip(coefs, powers):
        if skip_constant and not any(term):
            continue
        weight = float(zpos) ** term[2] if len(term) == 3 else 1.0
        grid[term[1], term[0]] += c * weight
    ypow = np.stack([ys**p for p in range(max_py + 1)], axis=1)  # (H, py)
    xpow = np.stack([xs**p for p in range(max_px + 1)], axis=0)  # (px, W)
    return ypow @ grid, xpow


def accumulate_outer(out: np.ndarray, left: np.ndarray, right: np.ndarray,
                     sign: float = 1.0) -> np.ndarray:
    """``out += sign * left @ right`` in place, one rank-one term at a time.

    The rank is a handful: a broadcast product per term is several times faster than
    a BLAS product with so small an inner dimension, whose threads also compete with
    the scheduler's.
    """
    term = np.empty_like(out)
    for j in range(left.shape[1]):
        np.multiply(left[:, j:j + 1], right[j], out=term)
        if sign < 0:
            out -= term
        else:
            out += term
    return out


def evaluate_slice(coefs: np.ndarray, powers: Powers, shape: tuple[int, int],
                   zpos: float = 0.0, skip_constant: bool = False) -> np.ndarray:
    """The polynomial on a whole (H, W) slice, in O(H * W) memory.

    The sum of ``c * x**px * y**py * z**pz`` is evaluated separably (see
    :func:`separable_factors`), never forming an (H * W, terms) matrix.

    Parameters
    ----------
    coefs
        One coefficient per term.
    powers
        Terms (2 or 3 powers each); a z power is evaluated at ``zpos``.
    shape
        ``(H, W)``; x = column / (W - 1), y = row / (H - 1).
    skip_constant
        Leave out the constant term.
    """
    left, right = separable_factors(coefs, powers, shape, zpos, skip_constant)
    return accumulate_outer(np.zeros(shape, dtype=np.float64), left, right)
