"""Type stubs for the Rust extension `steplog._core`."""

from os import PathLike
from typing import Any, final

import numpy as np
import numpy.typing as npt
from typing_extensions import disjoint_base

__all__ = [
    "FORMAT_VERSION",
    "SETTING_NAMES",
    "ClosedError",
    "CorruptRunError",
    "FlushTimeout",
    "Histogram",
    "HistorySummary",
    "Metric",
    "Run",
    "SteplogError",
    "SteplogWarning",
    "_EmptyCall",
    "__version__",
    "_summary_delete",
    "_summary_get",
    "_summary_read",
    "_summary_version",
    "current_run",
    "glob_match",
    "log",
    "push",
    "read_shard",
    "serve",
    "set_reporting_inf_value",
    "set_reporting_nan_value",
]
__version__: str
FORMAT_VERSION: int
SETTING_NAMES: list[str]

class SteplogError(Exception): ...
class ClosedError(SteplogError): ...
class FlushTimeout(SteplogError): ...
class CorruptRunError(SteplogError): ...
class SteplogWarning(UserWarning): ...

@final
class Histogram:
    def __new__(
        cls,
        sequence: Any = None,
        num_bins: int = ...,  # 64
        np_histogram: tuple[Any, Any] | None = None,
    ) -> Histogram: ...
    @property
    def counts(self) -> npt.NDArray[np.int64]: ...
    @property
    def edges(self) -> npt.NDArray[np.float64]: ...
    @property
    def nan_count(self) -> int: ...
    @property
    def inf_count(self) -> tuple[int, int]: ...

@final
class Metric:
    def log(self, value: Any, step: int | None = None, commit: bool | None = None) -> None: ...
    @property
    def name(self) -> str: ...

@final
class _EmptyCall:
    """`log` takes the arguments of `log()` and does nothing: the floor `steplog bench` times."""

    def log(self, value: Any, step: int | None = None, commit: bool | None = None) -> None: ...

@disjoint_base
class Run:
    def __new__(
        cls,
        shard_path: str | PathLike[str],
        info: dict[str, Any],
        settings: dict[str, Any] | None = None,
    ) -> Run: ...
    def log(
        self, data: dict[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None: ...
    def flush(self, timeout_s: float | None = None) -> None: ...
    def sync(self, timeout_s: float | None = None) -> None: ...
    def stats(self) -> dict[str, Any]: ...
    def _finish(self) -> dict[str, Any]: ...
    def _set_summary(self, key: str, value: Any) -> None: ...
    def _define_metric(
        self,
        name: str,
        step_metric: str | None = None,
        summary: str | None = None,
        goal: str | None = None,
    ) -> None: ...
    def _make_current(self) -> None: ...
    def metric(self, name: str) -> Metric: ...
    def _attach_shard(self, shard_path: str | PathLike[str], info: dict[str, Any]) -> None: ...
    def _put_run_meta(self, json: str) -> None: ...
    @property
    def _networked(self) -> bool: ...
    def _after_fork_child(self) -> None: ...
    def _hand_over(self) -> None: ...
    @property
    def _has_shard(self) -> bool: ...
    @property
    def step(self) -> int: ...
    @property
    def finished(self) -> bool: ...
    @property
    def shard_path(self) -> str | None: ...

def log(data: dict[str, Any], step: int | None = None, commit: bool | None = None) -> None: ...
def current_run() -> Run | None: ...

@final
class HistorySummary:
    """A shard's statistics replayed from its history (a shard without a summary frame)."""

    def summary(self, metrics: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]: ...
    def __len__(self) -> int: ...

def read_shard(path: str | PathLike[str]) -> dict[str, Any]: ...
def glob_match(pattern: str, name: str) -> bool: ...
def push(
    path: str | PathLike[str],
    sink: str,
    token: str,
    tls_ca: str | PathLike[str] | None = None,
    timeout_s: float = 30.0,
    run_meta: str | None = None,
) -> tuple[int, bool]: ...
def set_reporting_nan_value(value: float | None = None) -> None: ...
def set_reporting_inf_value(value: float | None = None) -> None: ...
def _summary_version(run: Run) -> tuple[int, int, int]: ...
def _summary_read(run: Run, flush_first: bool = True) -> dict[str, Any]: ...
def _summary_get(run: Run, key: str, flush_first: bool = True) -> Any: ...
def _summary_delete(run: Run, key: str) -> None: ...
def serve(
    listen: str,
    dir: str | PathLike[str],
    token: str | bytes,
    *,
    max_frame_bytes: int | None = None,
    max_memory_bytes: int | None = None,
    max_connections: int | None = None,
    idle_timeout_s: float | None = None,
    handshake_timeout_s: float | None = None,
    fsync_interval_s: float | None = None,
    tls_cert: str | PathLike[str] | None = None,
    tls_key: str | PathLike[str] | None = None,
    frame_timeout_s: float | None = None,
    min_frame_rate: int | None = None,
) -> dict[str, int]: ...
