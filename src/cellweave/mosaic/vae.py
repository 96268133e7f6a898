"""The mosaic variational autoencoder as a :class:`~cellweave.train.CellweaveModule`.

Per cell: one encoder per measured modality (an MLP on its representation) gives an embedding
``e_m``; gated attention over the measured modalities fuses them; a linear head gives
``q(z | x) = N(mu, diag(sigma^2))``. The prior of ``z`` is the mixture of
:class:`~.modules.MixturePrior`; the decoders reconstruct every measured modality from ``z``
through the feature embeddings ``V`` of the guidance graph. The training loss per batch is

    mean_cells[ -sum_m w_m log p(x_m | z) + beta * KL ] / nll_scale
    + graph_weight * (graph reconstruction + graph KL / n_cells)
    + CE(discriminator(grad_reverse(mu, adversarial_weight)), batch)
    + mmd_weight * sum_b MMD(mu of batch b, mu of all cells)
    + classification_weight * CE(q(c | z), label)         (labelled cells)
    + align_weight * |mu_m - sg(mu)|^2                    (cells with >= 2 modalities)

where ``nll_scale`` is the per-cell negative log-likelihood of the initial (feature-mean)
model, so the ELBO term starts near 1 whatever the data's depth and the other weights are
comparable across data sets. During training a cell with several modalities hides each
from the encoder with probability ``modality_dropout`` (at least one kept) but still
reconstructs all of them, which teaches cross-modal prediction. ``beta`` rises linearly to 1
over ``kl_warmup`` epochs. The validation loss is the (beta = 1) negative ELBO.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from scipy import sparse
from torch import nn

from ..nn import MLP, grad_reverse, take_rows
from ..train import CellweaveModule
from .clusters import choose_k, fit_components
from .config import MosaicConfig
from .data import MosaicData
from .guidance import GraphEncoder
from .modules import GatedAttentionFusion, HybridDecoder, MixturePrior, normal_log_prob
from .tensors import Batch

__all__ = ["MosaicConfig", "MosaicModule"]


def _absolute(m) -> bool:
    """Whether the modality's decoder predicts absolute counts (its kind says so: protein,
    NB/ZINB): see :class:`~.modules.HybridDecoder`."""
    return m.kind_spec.absolute_decoder(m.likelihood)


def _initial_bias(m) -> torch.Tensor:
    """Initial logits per feature of the modality ``m``, by its likelihood's head (NB: log
    mean profile, or log mean count for an absolute decoder; Bernoulli: logit of the mean
    open fraction; binomial: logit of the pooled rate)."""
    if m.counts is not None:
        rows = m.counts[m.present]
        layers = {k: v[m.present] for k, v in m.layers.items()}
    else:  # backed: a block of rows is enough for an initial value
        cells = np.flatnonzero(m.present)[:20000]
        rows, layers = m.read_counts(cells), m.read_layers(cells)
    bias = m.head.initial_bias(rows, layers, absolute=_absolute(m))
    return torch.as_tensor(bias, dtype=torch.float32)


class MosaicModule(CellweaveModule):
    """The mosaic VAE: parameters and losses only, trained with :func:`cellweave.train.fit`
    on the :class:`~.tensors.Batch` objects of a :class:`~.datamodule.MosaicDataModule`.

    Parameters
    ----------
    data
        The mosaic arrays (their shapes, kinds and feature means set up the layers; not kept).
    config
        Architecture and loss weights.
    sample
        A batch of cells sorted by batch (:meth:`~.datamodule.MosaicDataModule.sample`): the
        initial model's likelihood on it scales the ELBO term.
    graph
        Guidance graph over the concatenated features of ``data``'s modalities (or ``None``).
    lr, weight_decay
        Adam settings.
    """

    def __init__(
        self,
        data: MosaicData,
        config: MosaicConfig,
        *,
        sample: Batch,
        graph: sparse.csr_matrix | None = None,
        lr: float = 2e-3,
        weight_decay: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay)
        self.config = config
        self.n_cells = data.n_cells
        cfg = config
        self.n_classes = len(data.label_classes)
        self.n_batches = len(data.batch_names)
        self.encoders = nn.ModuleList(
            MLP(
                m.n_inputs + (self.n_batches if cfg.encode_batch else 0),
                tuple(cfg.encoder_hidden),
                cfg.n_embedding,
                dropout=cfg.dropout,
            )
            for m in data.modalities
        )
        self.fusion = GatedAttentionFusion(cfg.n_embedding)
        self.head = nn.Linear(cfg.n_embedding, 2 * cfg.n_latent)
        self.prior = MixturePrior(
            cfg.n_latent,
            cfg.n_clusters,
            cfg.n_continuous,
            mode=cfg.mixture,
            temperature=cfg.temperature,
        )
        self.discriminator = (
            MLP(cfg.n_latent, (128, 128), self.n_batches, norm="layer")
            if self.n_batches > 1 and cfg.adversarial_weight > 0
            else None
        )
        sizes = [m.n_features for m in data.modalities]
        self.offsets = np.concatenate([[0], np.cumsum(sizes)]).tolist()
        self.graph = GraphEncoder(int(sum(sizes)), cfg.n_latent, graph)
        self.decoders = nn.ModuleList(
            HybridDecoder(
                cfg.n_latent,
                m.n_features,
                self.n_batches,
                likelihood=m.likelihood,
                hidden=tuple(cfg.decoder_hidden),
                bias=_initial_bias(m),
                mean_library=float(m.library[m.present].mean()),
                absolute=_absolute(m),
            )
            for m in data.modalities
        )
        self.mod_weights = [float(cfg.modality_weights.get(m.name, 1.0)) for m in data.modalities]
        self.register_buffer("nll_scale", torch.tensor(self._baseline_nll(sample)))
        self.history: list[dict[str, float]] = []
        # query mapping (:mod:`.surgery`): a per-batch shift of each encoder's input, and the
        # batch-mixing terms off (they need the reference cells)
        self.input_shift: nn.ParameterList | None = None
        self.batch_terms = True
        # the mixture is fitted to the latent after cluster_warmup epochs (:mod:`.clusters`)
        # choose_clusters: also pick how many of its slots to use
        # (``"marginal"`` only: there q(c | z) is the mixture's own; a separate classifier
        # lags each refit, which cost the exact mode's generation on the simulator)
        self.fit_mixture = cfg.cluster_warmup > 0 and cfg.mixture == "marginal"
        self.choose_clusters = False
        self.seed = 0

    # ------------------------------------------------------------------ setup
    @torch.no_grad()
    def _baseline_nll(self, b: Batch) -> float:
        """Mean per-cell NLL of the initial model at ``z = 0`` (feature means) on a sample."""
        z = torch.zeros(b.cells.numel(), self.config.n_latent)
        vs = [torch.zeros(n, self.config.n_latent) for n in np.diff(self.offsets).tolist()]
        return max(float(self.reconstruction(b, z, vs, subsample=False).mean()), 1.0)

    # ------------------------------------------------------------------ forward pieces
    def embed(self, inputs: list[torch.Tensor], batch: torch.Tensor) -> torch.Tensor:
        """Modality embeddings ``(B, M, H)`` (batch one-hot appended with ``encode_batch``)."""
        if self.input_shift is not None:
            shifts = self.input_shift
            inputs = [x + take_rows(s, batch) for x, s in zip(inputs, shifts, strict=True)]
        if self.config.encode_batch:
            onehot = F.one_hot(batch, self.n_batches).to(inputs[0].dtype)
            inputs = [torch.cat([x, onehot], 1) for x in inputs]
        return torch.stack([enc(x) for enc, x in zip(self.encoders, inputs, strict=True)], 1)

    def posterior(self, e: torch.Tensor, mask: torch.Tensor):
        """``mu, log_var, attention`` of ``q(z | x)`` from embeddings and a presence mask."""
        h, attention = self.fusion(e, mask)
        mu, log_var = self.head(h).chunk(2, -1)
        return mu, log_var.clamp(-10.0, 10.0), attention

    def feature_embeddings(self, v: torch.Tensor) -> list[torch.Tensor]:
        """``V`` (all features, from the graph encoder) split per modality."""
        return [v[self.offsets[i] : self.offsets[i + 1]] for i in range(len(self.decoders))]

    def _hide(self, mask: torch.Tensor) -> torch.Tensor:
        """Hide each present modality with prob. ``modality_dropout``, keeping at least one."""
        p = self.config.modality_dropout
        if p <= 0 or mask.shape[1] < 2:
            return mask
        keep = mask & (torch.rand(mask.shape, device=mask.device) >= p)
        empty = ~keep.any(1)
        if empty.any():  # restore one random present modality
            score = torch.rand(mask.shape, device=mask.device).masked_fill(~mask, -1.0)
            pick = F.one_hot(score.argmax(1), mask.shape[1]).bool()
            keep = torch.where(empty.unsqueeze(1), pick, keep)
        return keep

    def _beta(self) -> float:
        warm = max(int(self.config.kl_warmup), 0)
        return 1.0 if warm == 0 else min(1.0, (int(self.current_epoch) + 1) / warm)

    def reconstruction(
        self, b, z: torch.Tensor, vs: list[torch.Tensor], *, subsample: bool
    ) -> torch.Tensor:
        """``-sum_m w_m log p(x_m | z)`` per cell; cells must be sorted by batch (each batch's
        decoder parameters then apply to one contiguous block of rows)."""
        recon = torch.zeros(z.shape[0], device=z.device)
        for i, dec in enumerate(self.decoders):
            rows = b.present[:, i].nonzero().squeeze(1)
            if rows.numel() == 0:
                continue
            cols = None
            n_feat = dec.scale.shape[1]
            limit = self.config.max_decoded_features
            if subsample and dec.head.subsample and limit and n_feat > limit:
                cols = torch.randperm(n_feat, device=z.device)[:limit]
            batches, counts = torch.unique_consecutive(b.batch[rows], return_counts=True)
            parts, start = [], 0
            for code, n in zip(batches.tolist(), counts.tolist(), strict=True):
                pos = rows[start : start + n]
                logits = dec.logits(z[pos], vs[i], code, cols)
                x = b.counts(i, pos, cols)
                layers = b.layer_values(i, pos, cols)
                parts.append(dec.log_prob(x, logits, b.library[i][pos], code, cols, layers))
                start += n
            recon = recon.index_add(0, rows, -self.mod_weights[i] * torch.cat(parts))
        return recon

    def objective(self, b: Batch, *, train: bool) -> dict[str, torch.Tensor]:
        """Every loss term of the batch ``b`` (cells sorted by batch; see the module
        docstring)."""
        cfg = self.config
        e = self.embed(b.inputs, b.batch)
        mask = self._hide(b.present) if train else b.present
        mu, log_var, _ = self.posterior(e, mask)
        z = mu + torch.randn_like(mu) * torch.exp(0.5 * log_var)
        log_qz = normal_log_prob(z, mu, log_var)
        v_mean = self.graph.mean()  # one propagation per step, shared by V and the graph KL
        v = self.graph(v_mean)
        vs = self.feature_embeddings(v)
        recon = self.reconstruction(b, z, vs, subsample=train)
        labels = b.label if self.n_classes else None
        kl, logits_c = self.prior.kl(z, log_qz, labels)
        out = {"recon": recon.mean(), "kl": kl.mean()}
        beta = self._beta() if train else 1.0
        out["elbo"] = (recon + beta * kl).mean() / self.nll_scale
        if not train:
            out["loss"] = (recon + kl).mean() / self.nll_scale
            return out
        loss = out["elbo"]
        if self.graph.has_graph and cfg.graph_weight > 0:
            graph = self.graph.loss(v, n_samples=cfg.graph_samples)
            out["graph"] = graph
            loss = loss + cfg.graph_weight * (graph + self.graph.kl(v_mean) / self.n_cells)
        if self.discriminator is not None and self.batch_terms:
            # the discriminator learns at full strength (Adam); the encoder gets its reversed
            # gradient scaled by adversarial_weight
            adv = F.cross_entropy(
                self.discriminator(grad_reverse(mu, cfg.adversarial_weight)), b.batch
            )
            out["adversarial"] = adv
            loss = loss + adv
        if cfg.mmd_weight > 0 and self.n_batches > 1 and self.batch_terms:
            scale_free = self.prior.mode == "marginal"
            out["mmd"] = _batch_mmd(mu, b.batch, self.n_batches, scale_free=scale_free)
            loss = loss + cfg.mmd_weight * out["mmd"]
        if labels is not None and bool((labels >= 0).any()):
            known = labels >= 0
            if self.prior.mode == "marginal":  # the mixture learns it, not the latent (a
                # discriminative pull on z itself split the batches on the simulator)
                logits_c = self.prior.logits(z[known].detach())
                cls = F.cross_entropy(logits_c, labels[known])
            else:
                cls = F.cross_entropy(logits_c[known], labels[known])
            out["classification"] = cls
            loss = loss + cfg.classification_weight * cls
        if cfg.align_weight > 0 and b.present.shape[1] > 1:
            multi = b.present.sum(1) > 1
            if bool(multi.any()):
                out["align"] = self._align(e[multi], b.present[multi])
                loss = loss + cfg.align_weight * out["align"]
        out["loss"] = loss
        return out

    def _align(self, e: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Mean over a cell's modalities of ``|mu_m - sg(mu)|^2``: each single-modality
        posterior mean is pulled towards the (gradient-stopped) posterior mean of all its
        modalities, so a weak modality learns from a strong one without dragging it down."""
        target = self.posterior(e, mask)[0].detach()
        mus = self.head(e).chunk(2, -1)[0]  # (B, M, d): one modality's attention weight is 1
        dist = ((mus - target.unsqueeze(1)) ** 2).sum(-1)  # (B, M)
        m = mask.float()
        return (dist * m).sum() / m.sum().clamp_min(1.0)

    # ------------------------------------------------------------------ CellweaveModule
    def configure_optimizers(self):
        """Adam; the discriminator learns ``discriminator_lr`` times faster (two time scales
        keep the adversarial game from cycling)."""
        disc = list(self.discriminator.parameters()) if self.discriminator is not None else []
        ids = {id(p) for p in disc}
        rest = [p for p in self.parameters() if id(p) not in ids]
        groups = [{"params": rest, "lr": self.lr}]
        if disc:
            groups.append({"params": disc, "lr": self.lr * self.config.discriminator_lr})
        return torch.optim.Adam(groups, lr=self.lr, weight_decay=self.weight_decay)

    def loss(self, b: Batch) -> torch.Tensor:
        out = self.objective(b, train=True)
        self.log_dict(
            {f"train_{k}": v.detach() for k, v in out.items() if k != "loss"},
            on_step=False,
            on_epoch=True,
            batch_size=len(b),
            sync_dist=True,  # averaged over processes at the epoch's end (DDP)
        )
        return out["loss"]

    def validation_loss(self, b: Batch) -> torch.Tensor:
        """The batch's share of the validation loss (mean over the split's ``b.total``)."""
        return self.objective(b, train=False)["loss"] * b.cells.numel() / max(b.total, 1)

    def on_train_epoch_start(self) -> None:
        """Fit the mixture to the latent at epoch ``cluster_warmup`` and every
        ``cluster_refit`` epochs after it (with :attr:`choose_clusters`, ``k`` is chosen
        again at ``cluster_warmup`` x 1, 2, 4, ... epochs: the latent still sharpens)."""
        epoch, warm = int(self.current_epoch), int(self.config.cluster_warmup)
        every = int(self.config.cluster_refit)
        if not self.fit_mixture or epoch < warm:
            return
        if epoch == warm or (every > 0 and (epoch - warm) % every == 0):
            ratio = epoch // warm
            doubling = epoch % warm == 0 and ratio & (ratio - 1) == 0
            self.init_mixture(self.trainer.datamodule, choose=self.choose_clusters and doubling)

    @torch.no_grad()
    def init_mixture(self, datamodule, n_cells: int = 5000, *, choose: bool = False) -> None:
        """Fit the mixture prior to the posterior means of (a sample of) the training cells
        (:func:`~.clusters.fit_components`; with :attr:`choose_clusters` the number of
        components by :func:`~.clusters.choose_k`, the other slots pruned)."""
        was = self.training
        self.eval()
        cells = np.asarray(datamodule.train_cells)
        rng = np.random.default_rng(self.seed)
        cells = np.sort(rng.choice(cells, min(n_cells, cells.size), replace=False))
        b = datamodule.batch(torch.as_tensor(cells, device=self.device), counts=False)
        mu, log_var, _ = self.posterior(self.embed(b.inputs, b.batch), b.present)
        self.train(was)
        z = mu.cpu().numpy().astype(np.float64)
        noise = torch.exp(log_var).mean(0).cpu().numpy()
        slots = self.prior.k
        k = int(self.prior.active().sum())  # all slots, or those a choice kept
        centres: dict[int, np.ndarray] = {}  # k-means of z per k the choice fitted
        if choose:
            k = choose_k(z, slots, random_state=self.seed, centres=centres)
        labels = b.label.cpu().numpy() if self.n_classes else None
        means, variances, weights = fit_components(
            z, noise, k, n_slots=slots, labels=labels, random_state=self.seed,
            centres=centres.get(k),
        )  # fmt: skip
        self.prior.set_mixture(means, variances, weights)

    def on_train_epoch_end(self) -> None:
        metrics = self.trainer.callback_metrics if self._trainer is not None else {}
        self.history.append(
            {"epoch": int(self.current_epoch), **{k: float(v) for k, v in metrics.items()}}
        )

    # ------------------------------------------------------------------ inference
    @torch.no_grad()
    def infer(self, b: Batch, *, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """Posterior mean, log variance, attention and cluster logits of the batch's cells
        (``mask``: which modalities the encoder may use; default all measured)."""
        use = b.present if mask is None else (b.present & mask.to(b.present.device))
        mu, log_var, attention = self.posterior(self.embed(b.inputs, b.batch), use)
        return {
            "mean": mu,
            "log_var": log_var,
            "attention": attention,
            "logits": self.prior.logits(mu),
            "batch": b.batch,
        }

    @torch.no_grad()
    def feature_embedding(self, index: int) -> torch.Tensor:
        """Mean feature embeddings ``V`` of the modality ``index`` (from the graph encoder)."""
        return self.graph.mean()[self.offsets[index] : self.offsets[index + 1]]

    @torch.no_grad()
    def expected(
        self,
        index: int,
        z: torch.Tensor,
        batch: int,
        library: float | None,
        v: torch.Tensor,
    ) -> torch.Tensor:
        """Expected values of the modality ``index`` at ``z`` with the decoder parameters of
        ``batch``; ``library=None`` (absolute decoders only): the decoder's own totals
        (Bernoulli always uses the mean library). ``v``: :meth:`feature_embedding`."""
        dec = self.decoders[index]
        logits = dec.logits(z, v, batch)
        library = dec.head.decode_library(dec, library)  # Bernoulli: the mean depth
        lib = None if library is None else torch.full((z.shape[0],), float(library))
        return dec.expected(logits, lib, batch)


def _batch_mmd(
    x: torch.Tensor, batch: torch.Tensor, n_batches: int, *, scale_free: bool = True
) -> torch.Tensor:
    """Sum over batches of the MMD (Gaussian kernels, median-distance bandwidths) between a
    batch's latents and all latents.

    ``scale_free``: the bandwidth is not detached, so the MMD of ``c * x`` is that of ``x``.
    With a detached bandwidth (``False``, the exact and Gumbel mixtures' measured setting)
    shrinking the latent lowers the MMD, and the term drives the latent below the posterior
    noise (spread of means 0.07 against noise 0.09 on the simulator): a mixture prior then
    cannot separate clusters, so the ``"marginal"`` mixture uses ``True``."""
    d2 = torch.cdist(x, x) ** 2
    scale = (d2 if scale_free else d2.detach()).median().clamp_min(1e-6)
    k = sum(torch.exp(-d2 / (scale * f)) for f in (0.25, 1.0, 4.0))
    total = torch.zeros((), device=x.device)
    for b in range(n_batches):
        m = batch == b
        if int(m.sum()) < 2:
            continue
        w = m.float() / m.sum()
        u = torch.full_like(w, 1.0 / x.shape[0])
        diff = w - u
        total = total + diff @ k @ diff
    return total
