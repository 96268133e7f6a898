"""Device strings as users write them, checked once, up front.

Every ``device=`` in cellweave (training through :func:`cellweave.train.fit`, the imputation
models, mapping, alignment, the mosaic model, the transport solvers) and the CLI's
``--device`` go through :func:`parse_device`:

========== ===================== ======================= ==========================
string      torch device          Lightning accelerator    Lightning devices
========== ===================== ======================= ==========================
``auto``    ``cuda`` if a GPU is  ``gpu`` (else ``cpu``)   ``[0]`` (else ``1``)
            visible, else ``cpu``
``cpu``     ``cpu``               ``cpu``                  ``1``
``cuda``    ``cuda`` (first GPU)  ``gpu``                  ``[0]``
``gpu``     ``cuda`` (first GPU)  ``gpu``                  ``[0]``
``cuda:N``  ``cuda:N``            ``gpu``                  ``[N]``
``mps``     ``mps``               ``mps``                  ``1``
========== ===================== ======================= ==========================

A device that is unknown (``"banana"``, ``"cuda:x"``) or not available here (``"cuda"``
without a GPU, ``"cuda:3"`` with one GPU, ``"mps"`` off Apple silicon) is one
:class:`~cellweave.errors.InvalidOptionError` naming the valid strings and what this machine
has, raised before any work. torch is imported only when a string is checked.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOptionError
from .registry import Option

__all__ = [
    "DEVICE_HELP",
    "DEVICE_WORDS",
    "DeviceOption",
    "TargetDevice",
    "available_devices",
    "check_device",
    "device_option",
    "parse_device",
]

#: The device strings users may write (``N``: a GPU index).
DEVICE_WORDS = ("auto", "cpu", "cuda", "cuda:N", "gpu", "mps")
#: One line for help texts.
DEVICE_HELP = "auto (CUDA when present, else CPU), cpu, cuda, cuda:N (GPU number N), gpu or mps"

_INDEXED = re.compile(r"^(cuda|gpu):(\d+)$")


@dataclass(frozen=True)
class TargetDevice:
    """A checked device: the torch device's name and the Lightning arguments.

    Attributes
    ----------
    name
        The torch device as a string: ``"cpu"``, ``"cuda"`` (the first GPU), ``"cuda:1"`` or
        ``"mps"``; :attr:`FitResult.device <cellweave.train.FitResult>` reports it.
    accelerator
        Lightning's ``accelerator``: ``"cpu"``, ``"gpu"`` or ``"mps"``.
    devices
        Lightning's ``devices``: ``1`` (CPU, MPS) or ``[index]`` (one CUDA GPU).
    """

    name: str
    accelerator: str
    devices: int | list[int]

    @property
    def type(self) -> str:
        """``"cpu"``, ``"cuda"`` or ``"mps"``."""
        return self.name.split(":")[0]

    @property
    def torch(self) -> Any:
        """The :class:`torch.device`."""
        import torch

        return torch.device(self.name)


def available_devices() -> list[str]:
    """The device strings this machine can use (``"cpu"``, then ``"cuda:N"`` per visible GPU,
    then ``"mps"`` when present)."""
    import torch

    found = ["cpu"]
    if torch.cuda.is_available():
        found += [f"cuda:{i}" for i in range(torch.cuda.device_count())]
    if _mps_available():
        found.append("mps")
    return found


def parse_device(device: Any = "auto", *, float64: bool = False) -> TargetDevice:
    """Check a device string and return where to compute (see the module's table).

    Parameters
    ----------
    device
        ``"auto"``, ``"cpu"``, ``"cuda"``, ``"cuda:N"``, ``"gpu"`` or ``"mps"`` (case and
        surrounding spaces ignored), or a :class:`torch.device`.
    float64
        The computation is in float64 (the transport solvers): MPS, which has no float64,
        is refused.

    Returns
    -------
    :class:`TargetDevice`.

    Raises
    ------
    InvalidOptionError
        The string is not a device, or the device is not available on this machine.
    """
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise _unknown(device)
    text = device.strip().lower()
    if text == "auto":
        text = "cuda" if torch.cuda.is_available() else "cpu"
    if text == "cpu":
        return TargetDevice("cpu", "cpu", 1)
    if text == "mps":
        if not _mps_available():
            raise _unavailable(device, "torch has no MPS (Apple GPU) backend here")
        if float64:
            raise _unavailable(device, "this computation is in float64, which MPS lacks")
        return TargetDevice("mps", "mps", 1)
    if text in ("cuda", "gpu"):
        _require_gpus(device, 1)
        return TargetDevice("cuda", "gpu", [0])
    match = _INDEXED.match(text)
    if match is None:
        raise _unknown(device)
    index = int(match.group(2))
    _require_gpus(device, index + 1)
    return TargetDevice(f"cuda:{index}", "gpu", [index])


def check_device(device: Any = "auto", *, float64: bool = False) -> str:
    """The torch device name of ``device`` (``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``),
    or :class:`~cellweave.errors.InvalidOptionError` (see :func:`parse_device`)."""
    return parse_device(device, float64=float64).name


class DeviceOption(Option):
    """A registry option holding a device string, checked by :func:`parse_device` when the
    method's options are checked (before any work); the value is kept as written."""

    def check(self, value: Any, *, owner: str) -> Any:
        """``value`` unchanged when it names an available device, else the error of
        :func:`parse_device` (prefixed by the option's owner)."""
        if value is None and (self.allow_none or self.default is None):
            return None
        try:
            parse_device(value)
        except InvalidOptionError as err:
            raise InvalidOptionError(f"{owner} option {self.name}: {err}") from None
        return value


def device_option(name: str = "device", default: str = "auto") -> DeviceOption:
    """A :class:`DeviceOption` for a :class:`~cellweave.registry.Method`'s options."""
    return DeviceOption(name, str, default, doc=DEVICE_HELP)


def _require_gpus(device: str, needed: int) -> None:
    import torch

    if not torch.cuda.is_available():
        raise _unavailable(device, "torch sees no CUDA GPU")
    count = torch.cuda.device_count()
    if count < needed:
        plural = "GPU" if count == 1 else "GPUs"
        raise _unavailable(device, f"torch sees {count} CUDA {plural} (cuda:0..cuda:{count - 1})")


def _mps_available() -> bool:
    import torch

    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def _choices() -> str:
    return ", ".join(repr(w) for w in DEVICE_WORDS)


def _unknown(device: Any) -> InvalidOptionError:
    return InvalidOptionError(
        f"device {device!r} is not a device; use one of {_choices()} "
        f"(available here: {', '.join(available_devices())})"
    )


def _unavailable(device: str, why: str) -> InvalidOptionError:
    return InvalidOptionError(
        f"device {device!r} is not available: {why}; use 'cpu' or 'auto' "
        f"(available here: {', '.join(available_devices())})"
    )
