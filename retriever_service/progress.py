"""Progress bars for long offline jobs (re-index, training): on a terminal only, never in logs."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any


def progress(iterable: Iterable[Any] | None = None, *, total: int | None = None, desc: str = "", unit: str = "it",
             initial: int = 0) -> Any:
    from tqdm.auto import tqdm

    return tqdm(
        iterable,
        total=total,
        desc=desc,
        unit=unit,
        initial=initial,
        dynamic_ncols=True,
        # None: tqdm shows bars on a terminal only (logs and CI stay clean)
        disable=True if os.environ.get("REALRAG_NO_PROGRESS") == "1" else None,
        leave=False,
    )
