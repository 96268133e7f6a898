"""The shared Lightning wrapper: early stopping, seeding, checkpoints and resume, device."""

from __future__ import annotations

import os

import lightning.pytorch
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


class Rows(torch.utils.data.Dataset):
    def __init__(self, x, y):
        self.x, self.y = x, y

    def __len__(self):
        return len(self.y)

    def __getitem__(self, i):
        return self.x[i], self.y[i]


class EpochSampler(torch.utils.data.Sampler):
    """Rows in an order fixed by the epoch (Lightning calls ``set_epoch``)."""

    def __init__(self, n):
        self.n, self.epochs = n, []

    def set_epoch(self, epoch):
        self.epochs.append(epoch)

    def __len__(self):
        return self.n

    def __iter__(self):
        g = torch.Generator().manual_seed(self.epochs[-1] if self.epochs else -1)
        return iter(torch.randperm(self.n, generator=g).tolist())


class LinearData(lightning.pytorch.LightningDataModule):
    def __init__(self, *, validate=True):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.x = torch.randn(96, 3, generator=g)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5])
        self.validate = validate
        self.sampler = EpochSampler(64)
        self.setups = 0

    def setup(self, stage=None):
        self.setups += 1

    def train_dataloader(self):
        data = Rows(self.x[:64], self.y[:64])
        return torch.utils.data.DataLoader(data, batch_size=16, sampler=self.sampler)

    def val_dataloader(self):
        n = 32 if self.validate else 0
        return torch.utils.data.DataLoader(Rows(self.x[64 : 64 + n], self.y[64 : 64 + n]), 32)


class LinearModule(lightning.pytorch.LightningModule):
    """Parameters and losses only: the batches come from the datamodule."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(3))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return ((x @ self.w - y) ** 2).mean()

    def validation_step(self, batch, batch_idx):
        x, y = batch
        self.log("val_loss", ((x @ self.w - y) ** 2).mean())

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=0.05)


def test_fit_with_a_datamodule_validates_and_sets_sampler_epochs():
    module, data = LinearModule(), LinearData()
    result = fit(module, datamodule=data, max_epochs=150, patience=10, seed=0)
    torch.testing.assert_close(module.w.detach(), torch.tensor([1.0, -2.0, 0.5]), atol=2e-2, rtol=0)
    assert result.best_score is not None and result.best_score < 1e-3
    assert data.sampler.epochs[:3] == [0, 1, 2]
    assert module.device.type == "cpu"


def test_fit_with_a_datamodule_without_validation_runs_all_epochs():
    module, data = LinearModule(), LinearData(validate=False)
    result = fit(module, datamodule=data, max_epochs=3, seed=0)
    assert result.epochs == [0, 1, 2] and result.best_score is None
    again = LinearModule()
    fit(again, datamodule=LinearData(validate=False), max_epochs=3, seed=0)
    torch.testing.assert_close(again.w.detach(), module.w.detach(), rtol=0, atol=0)


def test_fit_needs_rows_or_a_datamodule():
    with pytest.raises(TypeError, match="datamodule"):
        fit(LinearFit(), max_epochs=1)
