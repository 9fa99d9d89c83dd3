"""steplog: experiment logging whose `log()` costs about a function call.

>>> import steplog
>>> run = steplog.init(project="demo", config={"lr": 1e-3})
>>> for step in range(3):
...     steplog.log({"loss": 1.0 / (step + 1)})
>>> run.finish()
>>> steplog.open(run.dir).scalars("loss")
"""

from ._core import (
    ClosedError,
    CorruptRunError,
    FlushTimeout,
    Histogram,
    Metric,
    SteplogError,
    SteplogWarning,
    __version__,
    log,
    set_reporting_inf_value,
    set_reporting_nan_value,
)
from ._reader import RunReader, open
from ._run import Run, current, define_metric, finish, init
from ._summary import Summary

__all__ = [
    "ClosedError",
    "CorruptRunError",
    "FlushTimeout",
    "Histogram",
    "Metric",
    "Run",
    "RunReader",
    "SteplogError",
    "SteplogWarning",
    "Summary",
    "__version__",
    "current",
    "define_metric",
    "finish",
    "init",
    "log",
    "open",
    "set_reporting_inf_value",
    "set_reporting_nan_value",
]
