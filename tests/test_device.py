"""Device strings as users write them: parsing, errors, what fit hands Lightning, the CLI.

CUDA and MPS cases monkeypatch torch's availability checks (this machine may have neither):
they check the parsing and the Lightning arguments chosen; the tests that really compute on a
GPU skip without one.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from lightning.pytorch.accelerators import CPUAccelerator

import cellweave as cw
import cellweave.train as train_module
from cellweave.cli import main
from cellweave.device import (
    DEVICE_WORDS,
    TargetDevice,
    available_devices,
    check_device,
    parse_device,
)
from cellweave.errors import InputError, InvalidOptionError
from cellweave.train import CellweaveModule, fit

HAS_CUDA = torch.cuda.is_available()


def gpus(monkeypatch, count: int) -> None:
    """Pretend torch sees ``count`` CUDA GPUs."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)


def mps(monkeypatch, present: bool) -> None:
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: present)


def assert_one_line(err: Exception, *words: str) -> None:
    text = str(err)
    assert "\n" not in text, text
    for word in words:
        assert word in text, text


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "name", "accelerator", "devices"),
    [
        ("auto", "cuda", "gpu", [0]),
        ("cpu", "cpu", "cpu", 1),
        ("cuda", "cuda", "gpu", [0]),
        ("gpu", "cuda", "gpu", [0]),
        ("cuda:0", "cuda:0", "gpu", [0]),
        ("cuda:1", "cuda:1", "gpu", [1]),
        ("gpu:1", "cuda:1", "gpu", [1]),
        (" CUDA:1 ", "cuda:1", "gpu", [1]),
        ("mps", "mps", "mps", 1),
    ],
)
def test_parsing_table_with_two_gpus_and_mps(monkeypatch, text, name, accelerator, devices):
    gpus(monkeypatch, 2)
    mps(monkeypatch, True)
    target = parse_device(text)
    assert target == TargetDevice(name, accelerator, devices)
    assert target.torch == torch.device(name)
    assert target.type == name.split(":")[0]
    assert check_device(text) == name


def test_auto_is_cpu_without_a_gpu_and_torch_devices_are_taken(monkeypatch):
    gpus(monkeypatch, 0)
    mps(monkeypatch, True)  # auto never picks MPS: only CUDA, else CPU
    assert parse_device("auto") == TargetDevice("cpu", "cpu", 1)
    assert parse_device(torch.device("cpu")).name == "cpu"
    gpus(monkeypatch, 2)
    assert parse_device(torch.device("cuda", 1)) == TargetDevice("cuda:1", "gpu", [1])


def test_available_devices(monkeypatch):
    gpus(monkeypatch, 2)
    mps(monkeypatch, False)
    assert available_devices() == ["cpu", "cuda:0", "cuda:1"]
    gpus(monkeypatch, 0)
    mps(monkeypatch, True)
    assert available_devices() == ["cpu", "mps"]


@pytest.mark.parametrize("text", ["banana", "cuda:x", "cuda:-1", "cuda1", "", "tpu", "cpu:0"])
def test_unknown_devices_are_one_line_naming_the_valid_strings(monkeypatch, text):
    gpus(monkeypatch, 1)
    with pytest.raises(InvalidOptionError) as info:
        parse_device(text)
    assert isinstance(info.value, InputError) and isinstance(info.value, ValueError)
    words = ", ".join(repr(w) for w in DEVICE_WORDS)
    assert_one_line(info.value, repr(text), "is not a device", words, "available here: cpu, cuda:0")


@pytest.mark.parametrize("value", [None, 3, 1.5])
def test_non_strings_are_refused(value):
    with pytest.raises(InvalidOptionError, match="is not a device"):
        parse_device(value)


@pytest.mark.parametrize("text", ["cuda", "gpu", "cuda:0", "CUDA"])
def test_cuda_without_a_gpu_is_unavailable(monkeypatch, text):
    gpus(monkeypatch, 0)
    mps(monkeypatch, False)
    with pytest.raises(InvalidOptionError) as info:
        parse_device(text)
    assert_one_line(info.value, "is not available", "no CUDA GPU", "available here: cpu)")


def test_a_gpu_index_beyond_the_visible_gpus_is_unavailable(monkeypatch):
    gpus(monkeypatch, 1)
    assert parse_device("cuda:0").name == "cuda:0"
    with pytest.raises(InvalidOptionError) as info:
        parse_device("cuda:3")
    assert_one_line(info.value, "'cuda:3' is not available", "1 CUDA GPU", "cuda:0")


def test_mps_without_mps_is_unavailable(monkeypatch):
    gpus(monkeypatch, 0)
    mps(monkeypatch, False)
    with pytest.raises(InvalidOptionError) as info:
        parse_device("mps")
    assert_one_line(info.value, "'mps' is not available", "MPS")


def test_float64_computations_refuse_mps(monkeypatch):
    gpus(monkeypatch, 0)
    mps(monkeypatch, True)
    assert parse_device("mps").name == "mps"
    with pytest.raises(InvalidOptionError) as info:
        parse_device("mps", float64=True)
    assert_one_line(info.value, "'mps' is not available", "float64")
    assert check_device("cpu", float64=True) == "cpu"
    C, a = np.ones((2, 2)), np.full(2, 0.5)
    with pytest.raises(InvalidOptionError, match="float64"):
        cw.ot.sinkhorn(C, a, a, device="mps")
    with pytest.raises(InvalidOptionError, match="float64"):
        cw.tl.align_sections(None, None, device="mps")


def test_the_registry_option_checks_and_keeps_the_value(monkeypatch):
    from cellweave.impute import get_method

    spec = get_method("mf")
    assert spec.check_options({"device": "CPU"}) == {"device": "CPU"}
    with pytest.raises(InvalidOptionError, match="'mf' option device: device 'banana'"):
        spec.check_options({"device": "banana"})
    gpus(monkeypatch, 0)
    with pytest.raises(InvalidOptionError, match="not available"):
        spec.check_options({"device": "cuda"})


# ---------------------------------------------------------------------------- fit


class Line(CellweaveModule):
    """``y ~ x w``; records the device of its parameters during training."""

    def __init__(self):
        super().__init__(lr=0.05)
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(32, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.w = torch.nn.Parameter(torch.zeros(3))
        self.seen: set[str] = set()

    def move_data(self, device) -> None:
        self.x, self.y = self.x.to(device), self.y.to(device)

    def loss(self, index):
        self.seen.add(str(self.w.device))
        return ((self.x[index] @ self.w - self.y[index]) ** 2).mean()


class _Built(Exception):
    """Raised by the fake Trainer once it has recorded its arguments."""


def fake_trainer(monkeypatch) -> dict:
    """Replace Lightning's Trainer in :mod:`cellweave.train` by one that records its
    keyword arguments and stops."""
    seen: dict = {}

    def build(**kwargs):
        seen.update(kwargs)
        raise _Built

    monkeypatch.setattr(train_module, "Trainer", build)
    return seen


@pytest.mark.parametrize(
    ("text", "accelerator", "devices"),
    [
        ("cuda:1", "gpu", [1]),
        ("gpu", "gpu", [0]),
        ("cuda", "gpu", [0]),
        ("auto", "gpu", [0]),
        ("cpu", "cpu", 1),
        ("mps", "mps", 1),
    ],
)
def test_fit_hands_lightning_the_device_asked_for(monkeypatch, text, accelerator, devices):
    gpus(monkeypatch, 2)
    mps(monkeypatch, True)
    seen = fake_trainer(monkeypatch)
    with pytest.raises(_Built):
        fit(Line(), n_train=32, max_epochs=1, device=text)
    assert (seen["accelerator"], seen["devices"]) == (accelerator, devices)


def test_fit_refuses_a_bad_device_before_any_work(monkeypatch):
    seen = fake_trainer(monkeypatch)
    gpus(monkeypatch, 0)
    for text in ("banana", "cuda", "cuda:0"):
        with pytest.raises(InvalidOptionError):
            fit(Line(), n_train=32, max_epochs=1, device=text)
    assert seen == {}  # no Trainer was built


def test_fit_on_cpu_trains_there_and_reports_it(monkeypatch):
    built = []

    class Recording(train_module.Trainer):
        def __init__(self, **kwargs):
            super().__init__(**kwargs)
            built.append(self)

    monkeypatch.setattr(train_module, "Trainer", Recording)
    module = Line()
    result = fit(module, n_train=32, max_epochs=2, device="CPU", seed=0)
    assert result.device == "cpu"
    assert isinstance(built[0].accelerator, CPUAccelerator)
    assert built[0].strategy.root_device == torch.device("cpu")
    assert module.seen == {"cpu"}


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
@pytest.mark.parametrize("text", ["cuda", "gpu", "cuda:0", "auto", "last"])
def test_fit_trains_on_the_gpu_asked_for(text):
    last = torch.cuda.device_count() - 1
    text = f"cuda:{last}" if text == "last" else text
    module = Line()
    result = fit(module, n_train=32, max_epochs=2, device=text, seed=0)
    expected = parse_device(text).torch
    assert result.device == str(expected)
    index = expected.index or 0
    assert module.seen == {f"cuda:{index}"}
    assert module.w.device.type == "cpu"  # handed back on the CPU


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA GPU")
def test_sinkhorn_computes_on_the_gpu_asked_for():
    rng = np.random.default_rng(0)
    C = rng.random((5, 4))
    a, b = np.full(5, 0.2), np.full(4, 0.25)
    plan = cw.ot.sinkhorn(torch.as_tensor(C), torch.as_tensor(a), torch.as_tensor(b), device="gpu")
    assert plan.device.type == "cuda"


# ---------------------------------------------------------------------------- models and API


@pytest.fixture(scope="module")
def tissue():
    spatial, _ = cw.sim.simulate_spatial(n_spots=80, n_genes=40, random_state=0)
    return spatial


@pytest.mark.parametrize("method", ["mf", "ae", "auto"])
def test_imputation_models_train_on_the_device_asked_for(monkeypatch, tissue, method):
    gpus(monkeypatch, 2)
    seen = fake_trainer(monkeypatch)
    with pytest.raises(_Built):
        cw.tl.impute(tissue.copy(), method=method, device="cuda:1", max_epochs=1)
    assert (seen["accelerator"], seen["devices"]) == ("gpu", [1])


def test_the_mosaic_model_trains_on_the_device_asked_for(monkeypatch):
    mdata = cw.sim.simulate_mosaic(
        n_cells=120, batches={"a": ("rna",), "b": ("rna",)}, n_genes=30, random_state=0
    )
    gpus(monkeypatch, 2)
    seen = fake_trainer(monkeypatch)
    with pytest.raises(_Built):
        cw.tl.integrate(mdata["rna"].copy(), modality="rna", batch_key="batch", device="gpu")
    assert (seen["accelerator"], seen["devices"]) == ("gpu", [0])


def test_every_api_refuses_a_bad_device_before_reading_its_data(monkeypatch):
    """``None`` for the data: the device is checked (after the options) before the data
    are touched."""
    calls = [
        lambda d: cw.tl.map_cells(None, None, device=d),
        lambda d: cw.tl.align_sections(None, None, device=d),
        lambda d: cw.tl.integrate(None, device=d),
        lambda d: cw.tl.transport_batches(None, "a", device=d),
        lambda d: cw.impute.evaluate(None, methods="knn", device=d),
        lambda d: cw.tl.impute(None, method="mf", device=d),
        lambda d: cw.ot.sinkhorn(np.ones((2, 2)), np.full(2, 0.5), np.full(2, 0.5), device=d),
        lambda d: cw.ot.fused_gromov_wasserstein(*[np.ones((2, 2))] * 3, device=d),
        lambda d: cw.ot.topk_similar(np.ones((2, 2)), np.ones((2, 2)), k=1, device=d),
    ]
    gpus(monkeypatch, 0)
    for call in calls:
        for text in ("banana", "cuda", "cuda:1"):
            with pytest.raises(InvalidOptionError, match=f"device '{text}'"):
                call(text)


def test_evaluate_passes_the_device_to_the_models_only(tissue):
    result = cw.impute.evaluate(
        tissue,
        methods=["knn", "mf"],
        seeds=(0,),
        masked_fraction=None,
        method_params={"mf": {"max_epochs": 1}},
        device="cpu",
    )
    params = result.protocol["method_params"]
    assert params["mf"]["device"] == "cpu"
    assert "knn" not in params


# ---------------------------------------------------------------------------- CLI


def _commands(tmp_path):
    missing = str(tmp_path / "missing.h5ad")
    out = str(tmp_path / "out.h5ad")
    return {
        "impute": ["impute", missing, "-o", out, "--method", "mf"],
        "impute --evaluate": ["impute", missing, "--evaluate"],
        "map": ["map", missing, missing, "-o", out],
        "align": ["align", missing, missing, "-o", out],
        "integrate": ["integrate", missing, "-o", out],
    }


@pytest.mark.parametrize("command", ["impute", "impute --evaluate", "map", "align", "integrate"])
@pytest.mark.parametrize(
    ("device", "words"),
    [("banana", ("'banana' is not a device", "'cuda:N'")), ("cuda", ("'cuda' is not available",))],
)
def test_cli_refuses_a_bad_device_before_reading(
    monkeypatch, tmp_path, capsys, command, device, words
):
    gpus(monkeypatch, 0)
    args = _commands(tmp_path)[command]
    code = main([*args, "--device", device])
    err = capsys.readouterr().err
    assert code == 2, err
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "internal error" not in err and "Traceback" not in err
    for word in words:
        assert word in err, err
    # the same command with a valid device fails on the missing input: it was never read
    code = main([*args, "--device", "cpu"])
    assert code == 2
    assert "missing.h5ad" in capsys.readouterr().err


def test_cli_impute_refuses_a_gpu_for_a_cpu_only_method(monkeypatch, tmp_path, capsys):
    gpus(monkeypatch, 1)
    args = _commands(tmp_path)["impute"]
    args[args.index("mf")] = "knn"
    code = main([*args, "--device", "cuda"])
    err = capsys.readouterr().err
    assert code == 2 and "runs on the CPU only" in err and "mf" in err, err
    assert len(err.strip().splitlines()) == 1
