"""`run.summary`: a dict-like view of a run's live summary that reads the writer's summary
only when it changed, and copies it once per whole-mapping read."""

from __future__ import annotations

from collections.abc import ItemsView, Iterator, KeysView, MutableMapping, ValuesView
from typing import TYPE_CHECKING, Any

from . import _core

if TYPE_CHECKING:
    from ._run import Run


class Summary(MutableMapping):
    """A run's summary: the last value of each scalar or text key, or, for a key whose
    `define_metric` asks for statistics, a dict of them (`{"min": 0.1, "max": 2.0}`).
    `run.summary[key] = value` overrides a key until it is logged again; `del
    run.summary[key]` removes it (from the run's files too) until it is logged again.

    Reading reflects every `log()`, override and deletion made before it, in any thread of
    this process: the writer is flushed only when something changed since the last read.
    Reading the whole mapping (`dict(run.summary)`, iteration, `len`, `.items()`, `==`)
    copies the summary once and serves every key of that read from the copy; a single key
    (`run.summary["loss"]`) is looked up alone. Values are fresh objects: changing a returned
    dict of statistics changes nothing in the run.
    """

    def __init__(self, run: Run) -> None:
        self._run = run

    def _version(self) -> tuple[int, int, int]:
        """The summary's version, with the writer flushed if it changed since the last read:
        the writer's summary covers everything queued before the returned version."""
        run = self._run
        version = _core._summary_version(run)
        if run._summary_flushed != version:
            run.flush()
            run._summary_flushed = version
        return version

    def _snapshot(self) -> dict[str, Any]:
        """The whole summary, copied once per change (shared: callers copy what they hand out)."""
        run = self._run
        version = self._version()
        cached = run._summary_cache
        if cached is None or cached[0] != version:
            cached = (version, _core._summary_read(run, False))
            run._summary_cache = cached
        return cached[1]

    def __getitem__(self, key: str) -> Any:
        if not isinstance(key, str):
            raise KeyError(key)
        run = self._run
        cached = run._summary_cache
        if cached is not None and cached[0] == _core._summary_version(run):
            value = cached[1][key]
        else:
            self._version()
            value = _core._summary_get(run, key, False)
        return dict(value) if isinstance(value, dict) else value

    def __setitem__(self, key: str, value: Any) -> None:
        if not isinstance(key, str):
            raise TypeError(f"run.summary: keys must be str, got {type(key).__name__}")
        self._run._set_summary(key, value)

    def __delitem__(self, key: str) -> None:
        if not isinstance(key, str) or key not in self:
            raise KeyError(key)
        _core._summary_delete(self._run, key)

    def __iter__(self) -> Iterator[str]:
        return iter(list(self._snapshot()))

    def __len__(self) -> int:
        return len(self._snapshot())

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, str):
            return False
        try:
            self[key]
        except KeyError:
            return False
        return True

    def _copy(self) -> dict[str, Any]:
        return {k: dict(v) if isinstance(v, dict) else v for k, v in self._snapshot().items()}

    def keys(self) -> KeysView[str]:
        # NOTE: a view of the shared copy is safe: a copy is replaced, never changed.
        return self._snapshot().keys()

    def items(self) -> ItemsView[str, Any]:
        return self._copy().items()

    def values(self) -> ValuesView[Any]:
        return self._copy().values()

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Summary):
            other = other._copy()
        return self._copy() == other

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Summary({self._copy()!r})"
