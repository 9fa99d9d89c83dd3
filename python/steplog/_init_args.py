"""What `init` does with its arguments before a run exists: refusing unknown keywords (with
a suggestion), turning `config` into JSON-able values, and creating directories with errors
that name them. Nothing here touches a run; a failure leaves nothing behind."""

from __future__ import annotations

import difflib
import errno
import os
import sys
from collections.abc import Mapping
from typing import Any

from . import _core


def config_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, Mapping):
        items = dict(config)
    elif hasattr(config, "__dict__"):  # argparse.Namespace and similar
        items = dict(vars(config))
    else:
        raise TypeError(
            "steplog.init: config must be a dict or an argparse.Namespace, got "
            f"{type(config).__name__}"
        )
    return {k: config_value(v, f"config[{k!r}]", 0) for k, v in items.items()}


#: Deepest nesting of dicts and lists in `config` (a deeper one is most likely a cycle).
CONFIG_MAX_DEPTH = 64


def config_value(v: Any, where: str, depth: int) -> Any:
    """A config value as JSON can hold it and readers get it back: numpy scalars become
    Python numbers, arrays (numpy, and torch tensors when torch is imported) lists, tuples
    and sets lists; dicts keep their structure. Anything else is stored as its `repr`."""
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    if depth >= CONFIG_MAX_DEPTH:
        raise ValueError(
            f"steplog.init: {where}: nested more than {CONFIG_MAX_DEPTH} levels deep "
            "(does it contain itself?)"
        )
    if isinstance(v, Mapping):
        return {
            (k if isinstance(k, (str, int, float, bool)) or k is None else repr(k)): (
                config_value(x, f"{where}[{k!r}]", depth + 1)
            )
            for k, x in v.items()
        }
    if isinstance(v, (list, tuple)):
        return [config_value(x, f"{where}[{i}]", depth + 1) for i, x in enumerate(v)]
    if isinstance(v, (set, frozenset)):
        items = [config_value(x, where, depth + 1) for x in v]
        try:
            return sorted(items)
        except TypeError:  # mixed types: keep the set's order
            return items
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(v, np.ndarray):
            return config_value(v.tolist(), where, depth + 1)
        if isinstance(v, np.generic):
            if isinstance(v, np.bool_):
                return bool(v)
            if isinstance(v, np.integer):
                return int(v)
            if isinstance(v, np.floating):
                return float(v)  # longdouble included: .item() would keep it a longdouble
            if isinstance(v, np.str_):
                return str(v)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(v, torch.Tensor):
        return config_value(v.detach().cpu().tolist(), where, depth + 1)
    return repr(v)


#: wandb's `init` keywords that steplog does not take yet (they arrive with wandb
#: compatibility); until then they are refused with a message that says so.
WANDB_KEYWORDS = ("tags", "notes", "group", "job_type", "mode", "reinit", "id", "resume")


#: `init`'s own arguments, also suggested for a misspelt keyword.
INIT_ARGUMENTS = ("project", "name", "dir", "config", "sink", "token")


def check_settings(settings: dict[str, Any]) -> None:
    """Refuses an unknown keyword of `init`, naming it and its value, with the closest setting
    as a suggestion."""
    known = _core.SETTING_NAMES
    for name, value in settings.items():
        if name in known:
            continue
        shown = short_repr(value)
        if name in WANDB_KEYWORDS:
            raise TypeError(
                f"steplog.init: {name}={shown}: wandb's {name!r} is not supported by steplog "
                "yet; leave it out (it is accepted once wandb compatibility lands)"
            )
        close = difflib.get_close_matches(name, (*INIT_ARGUMENTS, *known), n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise TypeError(
            f"steplog.init: {name}={shown}: unknown keyword; {hint}init takes "
            f"{', '.join(INIT_ARGUMENTS[:4])} and the settings {', '.join(known)}"
        )


def short_repr(value: Any) -> str:
    try:
        text = repr(value)
    except Exception:
        text = f"<{type(value).__name__}>"
    return text if len(text) <= 80 else text[:77] + "..."


def make_dir(path: str, root: str, exist_ok: bool) -> None:
    """`os.makedirs(path)`; on failure, an OSError of the same kind (errno kept, the original
    chained) that says which directory could not be created for `dir=` and why."""
    try:
        os.makedirs(path, exist_ok=exist_ok)
    except FileExistsError:
        if not exist_ok:
            raise  # the caller picks another run id
        raise NotADirectoryError(
            errno.ENOTDIR, f"steplog.init: dir={root!r} exists and is not a directory", path
        ) from None
    except OSError as e:
        failed = e.filename if isinstance(e.filename, str) else path
        what = (
            f"the runs directory dir={root!r}"
            if path == root
            else f"the run directory {path!r} in dir={root!r}"
        )
        raise type(e)(
            e.errno, f"steplog.init: could not create {what}: {e.strerror or e}", failed
        ) from e
