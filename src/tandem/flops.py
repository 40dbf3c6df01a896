"""Floating-point operations of a piece of torch code, for the cost figures in benchmarks/.

torch's `FlopCounterMode` counts the matrix products and attention kernels it has formulas for, and counts every
other op as zero. Among those others are the in-place and matrix-vector products that hand-written kernels use:
tandem's DIN runs its activation unit through `addmm_` (forward and backward) and `mv`/`addmv_`, so the plain
counter missed the W_p (h * c) product, most of DIN's arithmetic. `count_flops` adds formulas for those ops (a
multiply-add counts as 2 FLOPs, as torch's own formulas count it) and reports by op.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten


def _matrix_product(self_shape: Any, mat1_shape: Any, mat2_shape: Any, *args: Any, out_shape: Any = None,
                    **kwargs: Any) -> int:
    """addmm_(self, mat1 [m, k], mat2 [k, n]): m n k multiply-adds."""
    (m, k), (_, n) = mat1_shape, mat2_shape
    return 2 * m * n * k


def _batched_product(self_shape: Any, batch1_shape: Any, batch2_shape: Any, *args: Any, out_shape: Any = None,
                     **kwargs: Any) -> int:
    """baddbmm_(self, batch1 [b, m, k], batch2 [b, k, n]): b m n k multiply-adds."""
    (b, m, k), (_, _, n) = batch1_shape, batch2_shape
    return 2 * b * m * n * k


def _matrix_vector(mat_shape: Any, vec_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    """mv(mat [m, n], vec [n]): m n multiply-adds."""
    m, n = mat_shape
    return 2 * m * n


def _add_matrix_vector(self_shape: Any, mat_shape: Any, vec_shape: Any, *args: Any, out_shape: Any = None,
                       **kwargs: Any) -> int:
    """addmv(self, mat [m, n], vec [n]) and its in-place form: m n multiply-adds."""
    return _matrix_vector(mat_shape, vec_shape)


EXTRA_FORMULAS: dict[Any, Callable[..., int]] = {
    aten.addmm_: _matrix_product,
    aten.baddbmm_: _batched_product,
    aten.mv: _matrix_vector,
    aten.addmv: _add_matrix_vector,
    aten.addmv_: _add_matrix_vector,
}
"""Ops torch's counter leaves at zero, with their formulas (keyed by overload packet, as torch keys its own)."""


def count_flops(run: Callable[[], object]) -> dict[str, int]:
    """FLOPs of one call of `run` (forward and any backward it runs), by torch's counter with `EXTRA_FORMULAS`
    added: {"total": n, "<op>": n, ...}."""
    counter = FlopCounterMode(display=False, custom_mapping=EXTRA_FORMULAS)
    with counter:
        run()
    by_op = {str(op): int(flops) for op, flops in counter.get_flop_counts().get("Global", {}).items()}
    return {"total": int(counter.get_total_flops()), **dict(sorted(by_op.items()))}
