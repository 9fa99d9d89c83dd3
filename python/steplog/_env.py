"""Facts about this process that a run records: host, pid, ranks, versions, command line."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import socket
import sys
from typing import Any

_RANK_VARS = ("RANK", "SLURM_PROCID", "OMPI_COMM_WORLD_RANK", "PMI_RANK")
_LOCAL_RANK_VARS = ("LOCAL_RANK", "SLURM_LOCALID", "OMPI_COMM_WORLD_LOCAL_RANK")
_WORLD_VARS = ("WORLD_SIZE", "SLURM_NTASKS", "OMPI_COMM_WORLD_SIZE", "PMI_SIZE")


def _first_int(names: tuple[str, ...]) -> int | None:
    for name in names:
        value = os.environ.get(name)
        if value is not None:
            try:
                return int(value)
            except ValueError:
                continue
    return None


def identity() -> dict[str, Any]:
    """Who is writing: pid, host and, when a launcher set them, ranks."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "rank": _first_int(_RANK_VARS),
        "local_rank": _first_int(_LOCAL_RANK_VARS),
        "world_size": _first_int(_WORLD_VARS),
        "worker": _dataloader_worker(),
    }


def _dataloader_worker() -> int | None:
    """The PyTorch DataLoader worker id of this process, if it is one (torch is only asked
    when it is already imported)."""
    data = sys.modules.get("torch.utils.data")
    if data is None:
        return None
    try:
        info = data.get_worker_info()
    except Exception:
        return None
    return None if info is None else int(info.id)


def versions() -> dict[str, str]:
    from . import __version__

    return {
        "python": platform.python_version(),
        "steplog": __version__,
        "platform": platform.platform(),
    }


def argv() -> list[str]:
    return list(sys.argv)


def write_json_atomic(path: str, data: dict[str, Any]) -> None:
    """Writes `data` to `path` through a temporary file and a rename, so readers never see a
    half-written file. On failure the temporary file is removed and the error raised."""
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, default=repr, allow_nan=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        # A full disk (or any other failure) leaves no temporary file behind.
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
