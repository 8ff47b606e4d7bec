r"""TuckER knowledge-graph embeddings (Balažević, Allen & Hospedales, EMNLP 2019), our own implementation.

The score of a triplet ``(e_s, r, e_o)`` is the Tucker decomposition of the binary triplet tensor::

    phi(e_s, r, e_o) = W x_1 w_r x_2 e_s x_3 e_o,     p = sigmoid(phi)

with entity embeddings ``E [n_e, d_e]``, relation embeddings ``R [n_r, d_r]`` and a core tensor
``W [d_r, d_e, d_e]`` shared by all relations (``W x_1 w_r`` is the relation's ``d_e x d_e`` matrix).
As in the paper, batch normalisation is applied to the subject embedding and to the hidden vector
``e_s^T (W x_1 w_r)``, with dropout on the input, on the relation matrix and on the hidden vector.

Training is *1-N scoring*: each ``(e_s, r)`` pair in the training set is scored against every entity at
once, against a multi-hot target of all its known objects, with binary cross-entropy and label smoothing
(target ``(1 - eps) y + 1 / n_e``, the paper's code). Each triplet ``(h, r, t)`` is also added as the
reciprocal ``(t, r^{-1}, h)`` (relation id ``r + n_r``), so predicting a head is predicting the tail of the
inverse relation (Lacroix et al. 2018; the TuckER code does the same).

:func:`fit_tucker` trains through :func:`cellsynth.training.train` (Lightning, checkpoints, exact
resume) and returns the trained :class:`TuckER`; ``.entity_embeddings()`` gives ``E`` as numpy, whose station
rows (:func:`cellsynth.graphs.transitions.station_embeddings`) define MSTDiff's transition graph.
:func:`link_prediction_metrics` gives the filtered MRR and hits@k of the standard evaluation.
"""

from __future__ import annotations

import os

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from cellsynth.errors import ConfigError, DataError
from cellsynth.training import Placement, loader, seed_everything, train

__all__ = [
    "OneToNDataset",
    "TuckER",
    "TuckERModule",
    "add_reciprocals",
    "fit_tucker",
    "link_prediction_metrics",
]


def _check_triplets(triplets, n_entities: int, n_relations: int) -> np.ndarray:
    t = np.asarray(triplets)
    if t.ndim != 2 or t.shape[1] != 3 or t.shape[0] == 0:
        raise DataError(
            f"triplets must be a non-empty int array [M, 3] (head, relation, tail), got {t.shape}"
        )
    if not np.issubdtype(t.dtype, np.integer):
        raise DataError(f"triplets must be integer codes (KnowledgeGraph.encode()), got dtype {t.dtype}")
    t = t.astype(np.int64)
    for col, name, limit in ((0, "head", n_entities), (1, "relation", n_relations), (2, "tail", n_entities)):
        bad = (t[:, col] < 0) | (t[:, col] >= limit)
        if bad.any():
            i = int(np.argmax(bad))
            raise DataError(f"triplet {i} has {name} code {t[i, col]}, outside 0..{limit - 1}")
    return t


def add_reciprocals(triplets, n_relations: int) -> np.ndarray:
    """``[(h, r, t)] + [(t, r + n_r, h)]``: ``int64 [2M, 3]`` (relation ``r + n_r`` is the inverse of ``r``)."""
    t = np.asarray(triplets, dtype=np.int64)
    return np.concatenate([t, np.stack([t[:, 2], t[:, 1] + n_relations, t[:, 0]], axis=1)])


class TuckER(nn.Module):
    """The TuckER scorer. ``forward(heads, relations)`` gives the logits ``phi`` of every entity as object:
    ``[B, n_entities]``. With ``reciprocal=True`` (default) it holds ``2 n_relations`` relation embeddings,
    the second half being the inverse relations."""

    def __init__(
        self,
        n_entities: int,
        n_relations: int,
        *,
        dim: int = 32,
        relation_dim: int | None = None,
        reciprocal: bool = True,
        input_dropout: float = 0.1,
        hidden_dropout1: float = 0.1,
        hidden_dropout2: float = 0.2,
    ) -> None:
        super().__init__()
        if n_entities < 2 or n_relations < 1 or dim < 1:
            raise ConfigError(
                f"need n_entities >= 2, n_relations >= 1, dim >= 1; got {n_entities}, {n_relations}, {dim}"
            )
        d_e, d_r = int(dim), int(relation_dim or dim)
        self.n_entities, self.n_relations, self.reciprocal = (
            int(n_entities),
            int(n_relations),
            bool(reciprocal),
        )
        self.E = nn.Embedding(n_entities, d_e)
        self.R = nn.Embedding(n_relations * (2 if reciprocal else 1), d_r)
        # The paper's initialisation: Xavier-normal embeddings, core uniform in [-1, 1].
        nn.init.xavier_normal_(self.E.weight)
        nn.init.xavier_normal_(self.R.weight)
        self.W = nn.Parameter(torch.empty(d_r, d_e, d_e).uniform_(-1.0, 1.0))
        self.bn0 = nn.BatchNorm1d(d_e)
        self.bn1 = nn.BatchNorm1d(d_e)
        self.input_dropout = nn.Dropout(input_dropout)
        self.hidden_dropout1 = nn.Dropout(hidden_dropout1)
        self.hidden_dropout2 = nn.Dropout(hidden_dropout2)

    def _bn(self, bn: nn.BatchNorm1d, x: torch.Tensor) -> torch.Tensor:
        # A training batch of one (the last, short batch) has no batch statistics: use the running ones.
        if self.training and x.shape[0] == 1:
            return F.batch_norm(x, bn.running_mean, bn.running_var, bn.weight, bn.bias, False, 0.0, bn.eps)
        return bn(x)

    def forward(self, heads: torch.Tensor, relations: torch.Tensor) -> torch.Tensor:
        e_s = self.input_dropout(self._bn(self.bn0, self.E(heads)))  # [B, d_e]
        w_r = self.R(relations)  # [B, d_r]
        d_e = e_s.shape[1]
        w = (w_r @ self.W.reshape(w_r.shape[1], -1)).reshape(-1, d_e, d_e)  # W x_1 w_r: [B, d_e, d_e]
        w = self.hidden_dropout1(w)
        x = torch.bmm(e_s.unsqueeze(1), w).squeeze(1)  # e_s^T (W x_1 w_r): [B, d_e]
        x = self.hidden_dropout2(self._bn(self.bn1, x))
        return x @ self.E.weight.T  # x_3 e_o for every entity: [B, n_e]

    def score(self, triplets) -> torch.Tensor:
        """``phi`` of given triplets ``int [M, 3]`` (eval mode is the caller's choice): ``[M]``."""
        t = torch.as_tensor(np.asarray(triplets), dtype=torch.long, device=self.E.weight.device)
        return self(t[:, 0], t[:, 1]).gather(1, t[:, 2:3]).squeeze(1)

    def entity_embeddings(self) -> np.ndarray:
        """``E`` as ``float32 [n_entities, dim]``."""
        return self.E.weight.detach().cpu().numpy().copy()


class OneToNDataset(torch.utils.data.Dataset):
    """The distinct ``(head, relation)`` pairs of ``triplets`` with the multi-hot target of all their tails.

    Item ``i``: ``(pair long [2], target float32 [n_entities])``. Targets are built per item from a
    compressed index, so memory is ``O(M)``, not ``O(pairs x entities)``.
    """

    def __init__(self, triplets, n_entities: int) -> None:
        t = np.asarray(triplets, dtype=np.int64)
        order = np.lexsort((t[:, 2], t[:, 1], t[:, 0]))
        t = t[order]
        key = t[:, 0] * (t[:, 1].max() + 1) + t[:, 1]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        self.pairs = torch.as_tensor(t[starts, :2])
        self.indptr = np.r_[starts, len(t)]
        self.tails = torch.as_tensor(t[:, 2])
        self.n_entities = int(n_entities)

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, i: int):
        target = torch.zeros(self.n_entities)
        target[self.tails[self.indptr[i] : self.indptr[i + 1]]] = 1.0
        return self.pairs[i], target


class TuckERModule(L.LightningModule):
    """Lightning wrapper: 1-N BCE with label smoothing, Adam with exponential learning-rate decay per epoch.

    ``epoch_losses`` records the mean training loss of each epoch run in this process.
    """

    def __init__(
        self,
        n_entities: int,
        n_relations: int,
        *,
        dim: int = 32,
        relation_dim: int | None = None,
        input_dropout: float = 0.1,
        hidden_dropout1: float = 0.1,
        hidden_dropout2: float = 0.2,
        lr: float = 0.01,
        lr_decay: float = 0.995,
        label_smoothing: float = 0.1,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.model = TuckER(
            n_entities,
            n_relations,
            dim=dim,
            relation_dim=relation_dim,
            input_dropout=input_dropout,
            hidden_dropout1=hidden_dropout1,
            hidden_dropout2=hidden_dropout2,
        )
        self.epoch_losses: list[float] = []
        self._sum, self._count = 0.0, 0

    def training_step(self, batch, batch_idx):
        pairs, target = batch
        logits = self.model(pairs[:, 0], pairs[:, 1])
        eps = self.hparams.label_smoothing
        target = (1.0 - eps) * target + 1.0 / target.shape[1]
        loss = F.binary_cross_entropy_with_logits(logits, target)
        self._sum += float(loss.detach()) * len(pairs)
        self._count += len(pairs)
        return loss

    def on_train_epoch_end(self) -> None:
        if self._count:
            self.epoch_losses.append(self._sum / self._count)
        self._sum, self._count = 0.0, 0

    def configure_optimizers(self):
        opt = torch.optim.Adam(self.parameters(), lr=self.hparams.lr)
        sched = torch.optim.lr_scheduler.ExponentialLR(opt, gamma=self.hparams.lr_decay)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "epoch"}}


def fit_tucker(
    triplets,
    n_entities: int,
    n_relations: int,
    *,
    dim: int = 32,
    epochs: int = 200,
    batch_size: int = 128,
    seed: int = 0,
    progress: bool = False,
    checkpoint_dir: str | os.PathLike | None = None,
    placement: Placement | None = None,
    **hparams,
) -> TuckER:
    """Train TuckER on integer triplets ``[M, 3]`` (``KnowledgeGraph.encode()[0]``) and return the trained
    :class:`TuckER` in eval mode on the CPU; its ``.entity_embeddings()`` is ``float32 [n_entities, dim]``.

    Reciprocal triplets are added here. ``hparams`` go to :class:`TuckERModule` (``relation_dim``,
    dropouts, ``lr``, ``lr_decay``, ``label_smoothing``). With ``checkpoint_dir``, training checkpoints
    under ``checkpoint_dir/checkpoints/tucker/`` and a rerun resumes. Same seed, same machine, same result.
    """
    t = _check_triplets(triplets, n_entities, n_relations)
    if epochs < 1 or batch_size < 1:
        raise ConfigError(f"epochs and batch_size must be >= 1, got {epochs}, {batch_size}")
    seed_everything(seed)  # before building the module: its initial weights are part of the run
    module = TuckERModule(n_entities, n_relations, dim=dim, **hparams)
    data = OneToNDataset(add_reciprocals(t, n_relations), n_entities)
    module = train(
        module,
        loader(data, batch_size=batch_size, seed=seed),
        max_epochs=epochs,
        stage="tucker",
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        progress=progress,
        placement=placement,
    )
    model = module.model.eval()
    model.epoch_losses = list(module.epoch_losses)  # handy for callers and tests
    return model


@torch.no_grad()
def link_prediction_metrics(
    model: TuckER, test_triplets, known_triplets, *, hits=(1, 3, 10)
) -> dict[str, float]:
    """Filtered link-prediction metrics of ``model`` on ``test_triplets`` (both directions: tails with ``r``,
    heads with the reciprocal ``r + n_r``).

    For each query the true answer is ranked against every entity, after removing the other true answers
    found in ``known_triplets`` (train + test, the "filtered" setting of Bordes et al. 2013). Ties count
    half (the mean of the optimistic and pessimistic rank). Returns ``{"mrr", "hits@k"...}``.
    """
    n_r = model.n_relations
    test = add_reciprocals(_check_triplets(test_triplets, model.n_entities, n_r), n_r)
    known = add_reciprocals(_check_triplets(known_triplets, model.n_entities, n_r), n_r)
    answers: dict[tuple[int, int], list[int]] = {}
    for h, r, t in known.tolist():
        answers.setdefault((h, r), []).append(t)
    was_training = model.training
    model.eval()
    ranks = []
    for start in range(0, len(test), 1024):
        batch = test[start : start + 1024]
        device = model.E.weight.device
        scores = model(
            torch.as_tensor(batch[:, 0], device=device), torch.as_tensor(batch[:, 1], device=device)
        )
        scores = scores.double().cpu()
        for row, (h, r, t) in zip(scores, batch.tolist(), strict=True):
            target = row[t].item()
            others = [o for o in answers.get((h, r), []) if o != t]
            row = row.clone()
            row[others] = -np.inf
            greater = int((row > target).sum())
            ties = int((row == target).sum()) - 1
            ranks.append(1.0 + greater + 0.5 * ties)
    model.train(was_training)
    ranks = np.asarray(ranks)
    out = {"mrr": float(np.mean(1.0 / ranks))}
    for k in hits:
        out[f"hits@{k}"] = float(np.mean(ranks <= k))
    return out
