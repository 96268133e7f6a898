"""The base class of cellweave models whose data is a few tensors kept on the module."""

from __future__ import annotations

from typing import Any

import torch
from lightning.pytorch import LightningModule

__all__ = ["CellweaveModule"]


class CellweaveModule(LightningModule):
    """Base class of cellweave models trained with :func:`~cellweave.train.fit`.

    Subclasses implement :meth:`loss` (training objective of a batch of row indices) and,
    when validated, :meth:`validation_loss`; they keep their data as tensors moved to the
    training device in :meth:`move_data` (called at the start of fitting).

    Parameters
    ----------
    lr
        Adam learning rate.
    weight_decay
        Adam weight decay (L2 on every parameter; models usually put explicit penalties in
        their loss instead).
    """

    def __init__(self, *, lr: float = 1e-2, weight_decay: float = 0.0) -> None:
        super().__init__()
        self.lr = float(lr)
        self.weight_decay = float(weight_decay)

    # -- to implement -----------------------------------------------------------------
    def loss(self, index: torch.Tensor) -> torch.Tensor:
        """Training loss of the rows ``index`` (a scalar)."""
        raise NotImplementedError

    def validation_loss(self, index: torch.Tensor) -> torch.Tensor:
        """Validation metric of the rows ``index`` (a scalar; summed over batches)."""
        raise NotImplementedError

    def move_data(self, device: torch.device) -> None:
        """Move the model's data tensors to ``device`` (no-op by default)."""

    # -- Lightning hooks ----------------------------------------------------------------
    def on_fit_start(self) -> None:
        self.move_data(self.device)
        self._val_total = torch.zeros((), device=self.device)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        loss = self.loss(_on_device(batch, self.device))
        self.log(
            "train_loss",
            loss.detach(),
            on_step=False,
            on_epoch=True,
            prog_bar=True,
            batch_size=len(batch),
            sync_dist=True,  # the mean over processes (a no-op in one process)
        )
        return loss

    def on_validation_epoch_start(self) -> None:
        self._val_total = torch.zeros((), device=self.device)

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        loss = self.validation_loss(_on_device(batch, self.device))
        self._val_total = self._val_total + loss.detach()

    def on_validation_epoch_end(self) -> None:
        # each process validated its share of the rows: the sum over processes is the total
        self.log("val_loss", self._val_total, prog_bar=True, sync_dist=True, reduce_fx="sum")

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)


def _on_device(batch: Any, device: torch.device) -> Any:
    """A batch of row indices moved to ``device``; a datamodule's batch as it comes (its
    ``transfer_batch_to_device`` already placed it)."""
    return batch.to(device) if isinstance(batch, torch.Tensor) else batch
