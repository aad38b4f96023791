"""``max_memory``: the most memory a training process may use. Beyond it the job fails
with ``out_of_memory``, the way it fails when the machine runs out.

On CPU it is the process's address-space limit (``RLIMIT_AS``), in force while the
trainer trains: torch's allocator then refuses what would pass it, as it refuses when
memory is exhausted. The figure counts everything the process maps, torch and the model
included (2-3 GB once torch, transformers and TRL are loaded). On CUDA and MPS it is the
device memory torch's allocator may hand out. Without it, a training takes what it needs.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator

_UNITS = {
    "": 1, "b": 1,
    "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
    "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
}  # fmt: skip


def parse_memory(value: object) -> int | None:
    """Bytes from ``8GB``, ``512 MiB`` or a number of bytes; ValueError when it is not one."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    found = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", str(value))
    unit = found.group(2).lower() if found else ""
    if found is None or unit not in _UNITS or float(found.group(1)) <= 0:
        raise ValueError(
            f"max_memory: expected a size such as 8GB, 512MiB or a number of bytes, not {value!r}"
        )
    return int(float(found.group(1)) * _UNITS[unit])


@contextlib.contextmanager
def limited(max_memory: int | None, device: str) -> Iterator[None]:
    """Hold the training process to ``max_memory`` bytes on ``device`` inside the block."""
    if max_memory is None:
        yield
        return
    import torch

    if device.startswith("cuda"):
        index = torch.device(device).index or 0
        total = torch.cuda.get_device_properties(index).total_memory
        torch.cuda.set_per_process_memory_fraction(min(1.0, max_memory / total), index)
        yield
        return
    if device == "mps":
        total = torch.mps.recommended_max_memory()
        torch.mps.set_per_process_memory_fraction(min(1.0, max_memory / total))
        yield
        return
    import resource

    # torch's worker threads start on its first parallel operation; started under the
    # limit, a thread's stack could be refused and abort the process instead.
    torch.ones(256, 256) @ torch.ones(256, 256)
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    wanted = max_memory if hard == resource.RLIM_INFINITY else min(max_memory, hard)
    resource.setrlimit(resource.RLIMIT_AS, (wanted, hard))
    try:
        yield
    finally:
        # Lifted again, so that the failure can be written down.
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


__all__ = ["limited", "parse_memory"]
