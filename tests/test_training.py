"""The shared training loop: seeded, checkpointed each epoch, and a resumed run equals an uninterrupted one."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from cellsynth.training import EMA, TrainingModule, loader, seed_everything, train


class Regression(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.Dropout(0.2), torch.nn.Linear(8, 1))

    def training_step(self, batch, batch_idx):
        x, y = batch
        noisy = x + 0.1 * torch.randn_like(x)  # randomness inside the step, as diffusion training has
        return torch.nn.functional.mse_loss(self.net(noisy), y)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def dataset():
    x = torch.randn(48, 3, generator=torch.Generator().manual_seed(0))
    return torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))


def fit(epochs, checkpoint_dir=None, seed=0):
    seed_everything(seed)
    module = Regression()
    return train(
        module,
        loader(dataset(), batch_size=16, seed=seed),
        max_epochs=epochs,
        stage="regression",
        seed=seed,
        checkpoint_dir=checkpoint_dir,
        progress=False,
    )


def weights(module):
    return torch.cat([p.detach().flatten() for p in module.parameters()])


def test_same_seed_same_weights_and_other_seed_differs():
    assert torch.equal(weights(fit(3)), weights(fit(3)))
    assert not torch.equal(weights(fit(3)), weights(fit(3, seed=1)))


def test_resume_after_interruption_is_exact(tmp_path):
    uninterrupted = weights(fit(4))
    fit(2, checkpoint_dir=tmp_path)  # "killed" after epoch 2
    assert (tmp_path / "checkpoints" / "regression" / "last.ckpt").exists()
    resumed = weights(fit(4, checkpoint_dir=tmp_path))
    assert torch.equal(resumed, uninterrupted)


def test_finished_stage_is_not_trained_again(tmp_path):
    done = weights(fit(3, checkpoint_dir=tmp_path))
    stamp = (tmp_path / "checkpoints" / "regression" / "last.ckpt").stat().st_mtime_ns
    again = weights(fit(3, checkpoint_dir=tmp_path))
    assert torch.equal(done, again)
    assert (tmp_path / "checkpoints" / "regression" / "last.ckpt").stat().st_mtime_ns == stamp


def test_training_reduces_the_loss():
    data = dataset()
    seed_everything(0)
    before = torch.nn.functional.mse_loss(Regression().eval().net(data.tensors[0]), data.tensors[1])
    after_module = fit(30).eval()
    after = torch.nn.functional.mse_loss(after_module.net(data.tensors[0]), data.tensors[1])
    assert after < 0.5 * before


class Logged(TrainingModule):
    """Regression's net, with one history entry per epoch (its epoch number)."""

    def __init__(self) -> None:
        super().__init__()
        self.net = torch.nn.Linear(3, 1)
        self.history: list[int] = []

    def training_step(self, batch, batch_idx):
        x, y = batch
        return torch.nn.functional.mse_loss(self.net(x), y)

    def on_train_epoch_end(self) -> None:
        self.history.append(self.current_epoch)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=1e-2)


def test_history_survives_resume_and_a_finished_stage(tmp_path):
    def run(epochs):
        seed_everything(0)
        kw = {
            "max_epochs": epochs,
            "stage": "logged",
            "seed": 0,
            "checkpoint_dir": tmp_path,
            "progress": False,
        }
        return train(Logged(), loader(dataset(), batch_size=16, seed=0), **kw).history

    assert run(2) == [0, 1]
    assert run(4) == [0, 1, 2, 3]  # resumed after epoch 2: the first two epochs are not lost
    assert run(4) == [0, 1, 2, 3]  # finished: nothing trained, the history still there


def test_a_damaged_last_checkpoint_is_set_aside_and_the_previous_one_resumes_exactly(tmp_path):
    uninterrupted = weights(fit(4))
    fit(2, checkpoint_dir=tmp_path)
    stage = tmp_path / "checkpoints" / "regression"
    last = stage / "last.ckpt"
    intact = last.read_bytes()
    last.write_bytes(intact[: len(intact) // 2])  # a kill while writing it
    with pytest.warns(UserWarning, match=r"last.ckpt \(truncated or corrupt.*resuming from epoch=0001.ckpt"):
        resumed = weights(fit(4, checkpoint_dir=tmp_path))
    assert torch.equal(resumed, uninterrupted)
    assert (stage / "last.ckpt.damaged").read_bytes() == intact[: len(intact) // 2]  # kept, not deleted


def test_checkpoints_that_are_not_checkpoints_restart_the_stage(tmp_path):
    fit(2, checkpoint_dir=tmp_path)
    stage = tmp_path / "checkpoints" / "regression"
    for checkpoint in stage.glob("*.ckpt"):
        checkpoint.write_bytes(b"not a checkpoint")
    with pytest.warns(UserWarning, match="no zip header.*training this stage from the start"):
        restarted = weights(fit(3, checkpoint_dir=tmp_path))
    assert torch.equal(restarted, weights(fit(3)))
    assert sorted(p.name for p in stage.glob("*.damaged")) == ["epoch=0001.ckpt.damaged", "last.ckpt.damaged"]


class Averaged(Regression):
    """Regression with an EMA of its net; ``seen`` records the net's weights after every optimiser step."""

    def __init__(self, decay: float) -> None:
        super().__init__()
        self.decay = decay
        self.seen: list[torch.Tensor] = []

    def configure_callbacks(self):
        return [EMA(self.decay)]

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        self.seen.append(weights(self.net).clone())


def fit_averaged(epochs, checkpoint_dir=None, decay=0.9):
    seed_everything(0)
    module = Averaged(decay)
    start = weights(module.net).clone()
    train(
        module,
        loader(dataset(), batch_size=16, seed=0),
        max_epochs=epochs,
        stage="averaged",
        seed=0,
        checkpoint_dir=checkpoint_dir,
        progress=False,
    )
    return module, start


def test_ema_follows_the_warmed_up_recursion():
    module, start = fit_averaged(3)
    assert len(module.seen) == 9  # 48 samples / 16 per batch, 3 epochs
    expected = start
    for n, current in enumerate(module.seen, start=1):  # global step n after the n-th optimiser step
        decay = min(0.9, (1 + n) / (10 + n))
        expected = decay * expected + (1 - decay) * current
    torch.testing.assert_close(weights(module.ema), expected)
    assert not torch.allclose(weights(module.ema), weights(module.net))
    assert not any(p.requires_grad for p in module.ema.parameters())
    last, _ = fit_averaged(2, decay=0.0)  # decay 0: the last weights
    assert torch.equal(weights(last.ema), weights(last.net))


def test_ema_resume_is_exact_and_a_finished_stage_keeps_its_average(tmp_path):
    uninterrupted = weights(fit_averaged(4)[0].ema)
    fit_averaged(2, checkpoint_dir=tmp_path)  # "killed" after epoch 2
    resumed, _ = fit_averaged(4, checkpoint_dir=tmp_path)
    assert len(resumed.seen) == 6  # only the last two epochs ran
    assert torch.equal(weights(resumed.ema), uninterrupted)
    finished, _ = fit_averaged(4, checkpoint_dir=tmp_path)  # nothing left to train: the average is reloaded
    assert finished.seen == [] and torch.equal(weights(finished.ema), uninterrupted)


def test_ema_decay_must_be_below_one():
    with pytest.raises(ValueError, match=r"EMA decay must be in \[0, 1\), got 1.0"):
        EMA(1.0)
