"""The shared Lightning wrapper: early stopping, seeding, checkpoints and resume, device."""

from __future__ import annotations

import os

import pytest
import torch

from cellweave.train import CellweaveModule, fit, index_loader


class LinearFit(CellweaveModule):
    """Least squares ``y ~ x w`` on fixed data; validation on a separate (noisy) set."""

    def __init__(self, *, lr: float = 0.05, n: int = 64, noise: float = 0.0, seed: int = 0):
        super().__init__(lr=lr)
        g = torch.Generator().manual_seed(seed)
        self.x = torch.randn(n, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5]) + noise * torch.randn(n, generator=g)
        self.x_val = torch.randn(n, 3, generator=g)
        self.y_val = self.x_val @ torch.tensor([1.0, -2.0, 0.5])
        self.w = torch.nn.Parameter(torch.randn(3, generator=g))
        self.seen_epochs: list[int] = []

    def loss(self, index):
        return ((self.x[index] @ self.w - self.y[index]) ** 2).mean()

    def validation_loss(self, index):
        return ((self.x_val[index] @ self.w - self.y_val[index]) ** 2).sum()

    def on_train_epoch_start(self):
        self.seen_epochs.append(int(self.current_epoch))


class Plateau(LinearFit):
    """Validation loss that never improves after the first epoch."""

    def validation_loss(self, index):
        return torch.ones(()) * 1.0


def test_trains_to_solution_and_resolves_cpu():
    module = LinearFit()
    result = fit(module, n_train=64, n_val=64, max_epochs=200, patience=10, seed=0)
    assert result.device == "cpu"
    torch.testing.assert_close(module.w.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=1e-2, rtol=0)
    assert result.best_score is not None and result.best_score < 1e-3


def test_early_stopping_stops():
    module = Plateau()
    result = fit(module, n_train=64, n_val=64, max_epochs=100, patience=3, seed=0)
    assert result.stopped_early
    # first validation sets the best, then 3 checks without improvement
    assert len(result.epochs) == 4
    assert result.best_epoch == 0


def test_best_weights_are_restored():
    module = Plateau()
    module_w0 = None

    class Record(Plateau):
        def on_validation_epoch_end(self):
            nonlocal module_w0
            if module_w0 is None:
                module_w0 = self.w.detach().clone()
            super().on_validation_epoch_end()

    module = Record()
    fit(module, n_train=64, n_val=64, max_epochs=20, patience=5, seed=0)
    torch.testing.assert_close(module.w.detach(), module_w0)


def test_seeds_reproduce_and_differ():
    def run(seed):
        module = LinearFit(lr=0.01, noise=1.0)
        fit(module, n_train=64, n_val=None, batch_size=8, max_epochs=2, seed=seed)
        return module.w.detach().clone()

    torch.testing.assert_close(run(3), run(3), rtol=0, atol=0)
    assert not torch.equal(run(3), run(4))


def test_max_steps_limits_training():
    module = LinearFit()
    result = fit(module, n_train=64, batch_size=16, max_epochs=100, max_steps=6, seed=0)
    assert result.global_step == 6


def test_checkpoint_and_resume_continue_from_saved_epoch(tmp_path):
    first = LinearFit(lr=0.01)
    fit(first, n_train=64, max_epochs=3, checkpoint_dir=tmp_path, seed=0)
    assert (tmp_path / "last.ckpt").exists()
    assert first.seen_epochs == [0, 1, 2]
    second = LinearFit(lr=0.01)
    result = fit(second, n_train=64, max_epochs=5, checkpoint_dir=tmp_path, resume=True, seed=0)
    assert second.seen_epochs == [3, 4]
    assert result.epochs == [3, 4]
    # the same 5 epochs in one go give the same weights
    straight = LinearFit(lr=0.01)
    fit(straight, n_train=64, max_epochs=5, seed=0)
    torch.testing.assert_close(second.w.detach(), straight.w.detach())


def test_no_log_folders_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    fit(LinearFit(), n_train=64, n_val=64, max_epochs=2, seed=0)
    assert os.listdir(tmp_path) == []


def test_index_loader_batches():
    full = list(index_loader(10, steps_per_epoch=3))
    assert len(full) == 3 and all(sorted(b.tolist()) == list(range(10)) for b in full)
    mini = list(index_loader(10, batch_size=4, seed=1))
    assert [b.numel() for b in mini] == [4, 4, 4]
    assert set(torch.cat(mini).tolist()) <= set(range(10))
    again = list(index_loader(10, batch_size=4, seed=1))
    assert all(torch.equal(a, b) for a, b in zip(mini, again, strict=True))
    ordered = list(index_loader(10, batch_size=4, shuffle=False))
    assert torch.cat(ordered).tolist() == list(range(10))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_auto_device_uses_cuda_when_present():
    result = fit(LinearFit(), n_train=64, max_epochs=1, seed=0)
    assert result.device == "cuda"
