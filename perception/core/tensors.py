"""Named tensor specs: what an engine takes and gives, and what a decoder checks against."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class TensorSpec:
    """A named tensor; dims are ints, or str/None where the model leaves them dynamic."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str

    def accepts(self, array: np.ndarray) -> bool:
        if array.ndim != len(self.shape) or np.dtype(self.dtype) != array.dtype:
            return False
        return all(not isinstance(d, int) or d == s for d, s in zip(self.shape, array.shape, strict=True))
