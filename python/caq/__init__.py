"""caq: context-adaptive quantized inference on caq FPGA accelerators.

The driver for Python applications on Zynq boards (and, through the functional model of the
accelerator, on any machine): open the accelerator, load a nested bundle, switch precision by
gate or per layer, run inference on numpy arrays, read cycles and energy per inference, and
choose gates from the live context. docs/bindings.md.

    import numpy as np, caq
    acc = caq.Accelerator.uio("pynq-z2.toml")      # or caq.Accelerator.sim("pynq-z2.toml")
    acc.load("lenet.caqb")
    acc.apply_gate("battery-low")
    codes = acc.infer(image)                        # uint8 codes, or floats to quantize
    print(codes.argmax(), acc.last_report.energy_j)
"""

import json as _json

from . import _native
from ._native import (
    Accelerator,
    ArgumentError,
    BusyError,
    CaqError,
    DeviceError,
    DmaMemoryError,
    FileFormatError,
    NotFoundError,
    PermissionDeniedError,
    Report,
    __version__,
)

__all__ = [
    "Accelerator",
    "ArgumentError",
    "BusyError",
    "CaqError",
    "ContextProbe",
    "DeviceError",
    "DmaMemoryError",
    "FileFormatError",
    "GateSelector",
    "NotFoundError",
    "PermissionDeniedError",
    "Report",
    "__version__",
]


class ContextProbe:
    """Reads the context the application runs in (battery, external power, free memory, cgroup
    limit, temperature) from sysfs and procfs under `root` ("/" by default)."""

    def __init__(self, root=None):
        self._probe = _native._ContextProbe(None if root is None else str(root))

    def read(self) -> dict:
        """The context now: a dict of the fields that could be read (others are left out)."""
        return _json.loads(self._probe.read_json())

    @property
    def warnings(self) -> list:
        """What could not be read in the last `read`."""
        return self._probe.warnings()


class GateSelector:
    """Chooses a context class, whose gate the application applies, for each context; with
    hysteresis, so that a value hovering at a threshold does not flip the gate back and forth.
    `policy` is a policy file (TOML, docs/driver.md), or None for the default policy."""

    def __init__(self, policy=None):
        self._selector = _native._GateSelector(None if policy is None else str(policy))

    def select(self, context: dict, t_s: float) -> tuple:
        """(class name, switched) for `context` at time `t_s` seconds (non-decreasing);
        apply the class's gate when `switched` is True."""
        return self._selector.select_json(_json.dumps(context), float(t_s))

    @property
    def classes(self) -> list:
        """The policy's classes in priority order."""
        return self._selector.classes()
