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

Several devices (:func:`parse_training`): ``device`` stays the single-device spelling;
``accelerator``, ``devices``, ``strategy`` and ``precision`` are Lightning's, spelled as its
``Trainer`` spells them. ``device`` names the kind (and, as ``"cuda:N"``, the one GPU);
``devices`` says how many: ``device="cpu", devices=2`` is two CPU processes, ``devices=2``
alone (``device="auto"``) two GPUs when present, else two CPU processes. A contradiction
(``device="cpu", accelerator="gpu"``; ``device="cuda:1", devices=2``), an unknown
accelerator, strategy or precision, or more devices than the machine has is one
:class:`~cellweave.errors.InvalidOptionError`, before any work.
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
    "TrainingTarget",
    "available_devices",
    "check_device",
    "device_option",
    "launched_rank",
    "parse_device",
    "parse_training",
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


# ------------------------------------------------------------------------ several devices

#: Lightning's accelerator names cellweave accepts (``"cuda"`` is ``"gpu"``).
ACCELERATORS = ("auto", "cpu", "gpu", "cuda", "mps")


@dataclass(frozen=True)
class TrainingTarget:
    """Checked Lightning arguments of a training run (see :func:`parse_training`).

    Attributes
    ----------
    device
        The (first) device, as :func:`parse_device` gives it; ``FitResult.device`` reports it.
    accelerator, devices, strategy, precision
        Lightning's ``Trainer`` arguments (``precision=None``: Lightning's default).
    n_processes
        Training processes (devices) on this machine: above 1, data-parallel training.
    """

    device: TargetDevice
    accelerator: str
    devices: int | list[int]
    strategy: Any = "auto"
    precision: str | int | None = None
    n_processes: int = 1


def parse_training(
    device: Any = "auto",
    *,
    accelerator: str | None = None,
    devices: Any = None,
    strategy: Any = None,
    precision: Any = None,
) -> TrainingTarget:
    """Check the device arguments of a training run together, before any work: ``device``
    and Lightning's arguments for several devices (see the module's notes).

    Parameters
    ----------
    device
        The single-device spelling (:func:`parse_device`): it names the kind of device
        (``"auto"``: let ``accelerator`` decide), or one GPU (``"cuda:N"``).
    accelerator
        ``"auto"``, ``"cpu"``, ``"gpu"`` (``"cuda"``) or ``"mps"`` (``None``: from ``device``).
    devices
        How many devices (an int ≥ 1; ``-1`` or ``"auto"``: every GPU, one CPU process), or
        which GPUs (a list of indices, or a string ``"0,1"``); ``None``: one (``device``'s).
    strategy
        ``"auto"``, ``"ddp"``, ``"ddp_spawn"``, ... (a name of Lightning's strategy registry)
        or a Lightning ``Strategy`` object; ``None``: ``"auto"``.
    precision
        Lightning's ``precision`` (``"32-true"``, ``"16-mixed"``, ``"bf16-mixed"``, ``64``,
        ...); ``None``: Lightning's default.

    Raises
    ------
    InvalidOptionError
        An unknown value, a contradiction between ``device`` and the others, or a device
        this machine lacks.
    """
    target = parse_device(device)
    explicit = not (isinstance(device, str) and device.strip().lower() == "auto")
    if accelerator is None and devices is None:
        return TrainingTarget(
            target,
            target.accelerator,
            target.devices,
            check_strategy(strategy),
            check_precision(precision),
        )
    kind = _accelerator(accelerator, target, explicit, device)
    if kind != target.accelerator:  # device="auto" resolved otherwise: use the accelerator's
        target = parse_device({"gpu": "cuda"}.get(kind, kind))
    count = _devices(devices, kind, target, explicit, device)
    lightning_devices: int | list[int] = count
    if kind == "gpu":
        lightning_devices = count if isinstance(count, list) else list(range(count))
        first = lightning_devices[0]
        target = TargetDevice(f"cuda:{first}" if first else "cuda", "gpu", lightning_devices)
        count = len(lightning_devices)
    return TrainingTarget(
        target,
        kind,
        lightning_devices,
        check_strategy(strategy),
        check_precision(precision),
        int(count),
    )


def launched_rank() -> int:
    """The rank a launcher gave this process through the environment (``RANK``,
    ``LOCAL_RANK``, ``NODE_RANK``; Lightning's ``ddp`` launcher starts the extra processes with
    ``LOCAL_RANK`` set): ``0`` in a plain process and in the first one."""
    import os

    for name in ("RANK", "LOCAL_RANK", "NODE_RANK"):
        value = os.environ.get(name, "") or "0"
        if value.strip().isdigit() and int(value) != 0:
            return int(value)
    return 0


def _accelerator(accelerator: Any, target: TargetDevice, explicit: bool, device: Any) -> str:
    if accelerator is None:
        return target.accelerator
    text = str(accelerator).strip().lower()
    if text not in ACCELERATORS:
        raise InvalidOptionError(
            f"accelerator {accelerator!r} is unknown; use one of "
            f"{', '.join(repr(a) for a in ACCELERATORS)}"
        )
    kind = {"cuda": "gpu", "auto": target.accelerator}.get(text, text)
    if explicit and kind != target.accelerator:
        raise InvalidOptionError(
            f"device={device!r} and accelerator={accelerator!r} contradict each other: pass "
            "one of them (device names one device, accelerator the kind for devices=N)"
        )
    return kind


def _devices(devices: Any, kind: str, target: TargetDevice, explicit: bool, device: Any):
    """The number of devices (CPU, MPS) or the GPU indices (list) asked for."""
    import torch

    value = _device_count(devices)
    indexed = explicit and isinstance(target.devices, list) and ":" in str(device)
    if value is None:
        return list(target.devices) if indexed else 1
    if indexed and value not in (1, list(target.devices)):
        raise InvalidOptionError(
            f"device={device!r} names one GPU but devices={devices!r} asks for others: pass "
            f"device='cuda' (or 'auto') with devices={devices!r}"
        )
    if indexed:
        return list(target.devices)
    if kind == "cpu":
        if value == -1 or value == "auto":
            return 1
        if isinstance(value, list):
            raise _bad_devices(devices, "CPU processes are counted, not numbered: pass an int")
        return value
    if kind == "mps":
        if value not in (1, -1, "auto", [0]):
            raise _bad_devices(devices, "there is one MPS device")
        return 1
    count = torch.cuda.device_count()
    if value in (-1, "auto"):
        return list(range(count))
    wanted = value if isinstance(value, list) else list(range(value))
    if not wanted or max(wanted) >= count:
        raise _bad_devices(devices, f"torch sees {count} CUDA GPU(s)")
    return wanted


def _device_count(devices: Any) -> int | list[int] | str | None:
    """``devices`` normalised: ``None``, an int ≥ 1, ``-1``, ``"auto"`` or a list of ints."""
    if devices is None:
        return None
    if isinstance(devices, str):
        text = devices.strip().lower()
        if text == "auto":
            return "auto"
        try:
            if "," in text or text.startswith("["):
                return [int(p) for p in text.strip("[]").split(",") if p.strip()]
            devices = int(text)
        except ValueError:
            raise _bad_devices(devices, "not a number") from None
    if isinstance(devices, list | tuple):
        if not all(isinstance(d, int) and d >= 0 for d in devices) or not devices:
            raise _bad_devices(devices, "GPU indices are ints >= 0")
        return [int(d) for d in devices]
    if isinstance(devices, bool) or not isinstance(devices, int) or devices == 0 or devices < -1:
        raise _bad_devices(devices, "not a count")
    return int(devices)


def _bad_devices(devices: Any, why: str) -> InvalidOptionError:
    return InvalidOptionError(
        f"devices={devices!r} is invalid ({why}); pass a count (2), -1 or 'auto', or GPU "
        "indices ('0,1')"
    )


def check_strategy(strategy: Any) -> Any:
    """``strategy`` as Lightning spells it (``None``: ``"auto"``); an unknown name is one
    :class:`~cellweave.errors.InvalidOptionError` listing the DDP ones."""
    if strategy is None:
        return "auto"
    if not isinstance(strategy, str):
        return strategy  # a Lightning Strategy object: Lightning checks it
    from lightning.pytorch.strategies import StrategyRegistry

    text = strategy.strip().lower()
    if text != "auto" and text not in StrategyRegistry:
        common = ("auto", "ddp", "ddp_spawn", "ddp_fork", "ddp_find_unused_parameters_true")
        raise InvalidOptionError(
            f"strategy {strategy!r} is unknown; use one of {', '.join(map(repr, common))} or "
            "another name of Lightning's StrategyRegistry"
        )
    return text


def check_precision(precision: Any) -> str | int | None:
    """``precision`` as Lightning spells it (``None``: its default ``"32-true"``); an unknown
    value is one :class:`~cellweave.errors.InvalidOptionError` listing the valid ones."""
    if precision is None:
        return None
    from typing import get_args

    from lightning.fabric.connector import (
        _PRECISION_INPUT_INT,
        _PRECISION_INPUT_STR,
        _PRECISION_INPUT_STR_ALIAS,
    )

    valid = [*get_args(_PRECISION_INPUT_STR), *get_args(_PRECISION_INPUT_STR_ALIAS)]
    text = str(precision).strip().lower()
    if text not in valid and precision not in get_args(_PRECISION_INPUT_INT):
        raise InvalidOptionError(
            f"precision {precision!r} is unknown; use one of {', '.join(map(repr, valid))}"
        )
    return text
