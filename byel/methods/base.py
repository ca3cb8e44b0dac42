"""What every stage-1 method shares: the backbone, per-sample augmentation on the batch's
device, the optimiser with warm-up + cosine LR (a schedule computed once, byel.optim), checkpoint
metadata, the held-out score logged every epoch (solo-learn's online evaluation) — and, for the
momentum methods, the EMA target network with its schedule."""

from __future__ import annotations

import copy
import random

import lightning as L
import numpy as np
import torch
from torch import nn

from byel.checkpoint import metadata
from byel.config import from_dict
from byel.errors import ByelError
from byel.data.augment import EvalTransform, TrainAugment
from byel.metrics import confusion_matrix, macro_f1
from byel.methods.classifier import backbone_from_config  # noqa: F401 (re-exported)
from byel.optim import ScheduledLR, at, build_optimizer, ema_schedule, lr_schedule, scaled_lr


def rng_state() -> dict:
    """The random streams byel draws from, as tensors and ints (loadable with weights_only=True)."""
    np_state = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *np_state[2:]],
        "python": random.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    name, keys, *rest = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), *rest))
    random.setstate(tuple(tuple(x) if isinstance(x, list) else x for x in state["python"]))
    if "cuda" in state and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(state["cuda"])


# Checkpoint metadata keys that say which unlabelled real images the weights learned from
# (byel.provenance.real_uses): the warp generator's source faces behind the training data,
# stage 1's --unlabelled images, byel adapt's.
LEARNED_FROM = ("generator_sources", "unlabelled", "adaptations")


class NumericalError(ByelError):
    """The loss became NaN or infinite."""


class ByelModule(L.LightningModule):
    """What every byel LightningModule shares: the typed config, the backbone, per-sample
    training augmentation, checkpoint metadata, and a stop on non-finite losses."""

    kind = "?"

    def __init__(self, config: dict):
        super().__init__()
        # The config travels as a plain dict: it is saved in every checkpoint and must load
        # with torch.load(weights_only=True).
        self.save_hyperparameters({"config": config})
        self.cfg = from_dict(config)
        self.backbone = backbone_from_config(self.cfg)
        self.augment = TrainAugment(self.cfg.aug, self.cfg.data.image_size)
        # The unlabelled real images behind these weights (tier C, byel.provenance), saved in the
        # checkpoint's metadata: "generator_sources" (warp faces' source faces), "unlabelled"
        # (stage 1 --unlabelled), "adaptations" (byel adapt); and "train_data", the fingerprint of
        # this stage's own training data (byel.train.data_record), which a resumed run must match.
        self.learned_from: dict = {}

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["byel"] = {**metadata(self.kind, self.cfg), **self.learned_from}
        checkpoint["rng"] = rng_state()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        # Resuming restores the random streams too, so a killed run continues with the same
        # shuffling and augmentation draws as an uninterrupted one (bit-exact on CPU).
        if "rng" in checkpoint:
            set_rng_state(checkpoint["rng"])
        self.learned_from.update({k: v for k, v in checkpoint.get("byel", {}).items() if k in LEARNED_FROM})

    def guard(self, loss: torch.Tensor) -> torch.Tensor | None:
        """Every training_step returns through here. A NaN/Inf loss either stops the run before
        the weights change (the last checkpoint on disk stays good) or, with
        optim.nonfinite=skip, skips that step (Lightning skips a step whose loss is None)."""
        if torch.isfinite(loss).all():
            return loss
        if self.cfg.optim.nonfinite == "skip":
            self.skipped_steps = getattr(self, "skipped_steps", 0) + 1
            self.log("train/skipped_steps", float(self.skipped_steps))
            return None
        raise NumericalError(
            f"the loss became {loss.item()} at step {self.global_step} (epoch {self.current_epoch}); "
            "stopped before updating the weights — lower the learning rate, set optim.grad_clip or "
            "optim.nonfinite=skip, then --resume from the last checkpoint"
        )


class DetachedProbe:
    """A linear classifier on detached backbone features, for a method without a classifier of its
    own (byol): trained by its own Adam step on each labelled batch (`step`, from training_step),
    its gradient never reaching the backbone, and scored on the held-out images like any method's
    classifier. It stays outside the module's parameters, so the method's optimiser, gradient
    clipping, DDP and state_dict never see it; its initialisation draws from a generator of its
    own, not the global stream that augmentation and shuffling draw from. Under DDP its gradients
    are averaged over the processes, so every process holds the same probe."""

    lr = 1e-3

    def __init__(self, dim: int, n_classes: int, seed: int):
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self.linear = nn.Linear(dim, n_classes)
        self.optimizer = torch.optim.Adam(self.linear.parameters(), lr=self.lr)

    def to(self, device) -> "DetachedProbe":
        self.linear.to(device)
        self.optimizer.load_state_dict(self.optimizer.state_dict())  # its moments follow the weights
        return self

    def __call__(self, features: torch.Tensor) -> torch.Tensor:
        return self.linear(features.float())

    def step(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        with torch.enable_grad(), torch.autocast(features.device.type, enabled=False):
            loss = nn.functional.cross_entropy(self(features.detach()), labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
        grads = [p.grad for p in self.linear.parameters()]
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            flat = torch.cat([g.flatten() for g in grads])
            torch.distributed.all_reduce(flat)
            flat /= torch.distributed.get_world_size()
            for g, part in zip(grads, flat.split([g.numel() for g in grads])):
                g.copy_(part.view_as(g))
        if all(torch.isfinite(g).all() for g in grads):  # the same decision on every process
            self.optimizer.step()

    def state_dict(self) -> dict:
        return {"linear": self.linear.state_dict(), "optimizer": self.optimizer.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.linear.load_state_dict(state["linear"])
        self.optimizer.load_state_dict(state["optimizer"])


class PretrainMethod(ByelModule):
    """Base class of stage-1 methods. Subclasses build their heads and implement `training_step`;
    `heldout_logits` gives the held-out score (solo-learn's online evaluation)."""

    kind = "pretrain"
    # uint8 images (N, H, W, 3) and labels held out from training, scored at every epoch's end
    heldout: tuple[torch.Tensor, torch.Tensor] | None = None
    probe: DetachedProbe | None = None

    # --- online evaluation ------------------------------------------------------------------
    def set_heldout(self, images: np.ndarray, labels: np.ndarray) -> None:
        """Log `val/macro_f1` at every epoch's end: the macro-F1 of the method's own classifier
        (`heldout_logits`) on these images held out from training (byel.train.pretrain's `val`).
        Without a call nothing is scored. Scoring draws no random number and updates no
        BatchNorm statistics (eval mode): the trained weights are those of a run without it."""
        self.heldout = (torch.from_numpy(np.ascontiguousarray(images)),
                        torch.as_tensor(np.asarray(labels), dtype=torch.int64))
        if self.needs_probe():
            self.probe = DetachedProbe(self.backbone.out_dim, self.cfg.data.classes, self.cfg.seed)

    def needs_probe(self) -> bool:
        """Whether the method has no classifier of its own to score (then a DetachedProbe is trained)."""
        return False

    def heldout_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Class logits of preprocessed images x from the method's own classifier (in eval mode)."""
        raise NotImplementedError

    @torch.no_grad()
    def heldout_f1(self) -> torch.Tensor | None:
        """The macro-F1 on the held-out images (None: none were given). Under DDP each process
        scores its share and the confusion matrices are summed."""
        if self.heldout is None:
            return None
        images, labels = self.heldout
        rank, world, n = self.global_rank, self.trainer.world_size, self.cfg.data.classes
        images, labels = images[rank::world], labels[rank::world]
        preprocess = EvalTransform(self.cfg.aug, self.cfg.data.image_size).to(self.device)
        cm = torch.zeros(n, n, dtype=torch.long, device=self.device)
        modes = [(m, m.training) for m in self.modules()]
        self.eval()  # BatchNorm normalises with its running statistics and updates none
        try:
            for i in range(0, len(labels), self.cfg.data.batch_size):
                x = preprocess(images[i:i + self.cfg.data.batch_size].to(self.device))
                y = labels[i:i + self.cfg.data.batch_size].to(self.device)
                cm += confusion_matrix(self.heldout_logits(x).argmax(-1), y, n)
        finally:
            for m, mode in modes:
                m.training = mode
        return macro_f1(self.trainer.strategy.reduce(cm, reduce_op="sum")).float()

    def on_fit_start(self) -> None:
        if self.probe is not None:
            self.probe.to(self.device)

    def on_train_epoch_end(self) -> None:
        score = self.heldout_f1()
        if score is not None:
            self.log("val/macro_f1", score, prog_bar=True, sync_dist=True)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.probe is not None:
            checkpoint["online_probe"] = self.probe.state_dict()

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        if self.probe is not None and "online_probe" in checkpoint:
            self.probe.load_state_dict(checkpoint["online_probe"])

    # --- optimisation -----------------------------------------------------------------------
    def total_steps(self) -> int:
        return int(self.trainer.estimated_stepping_batches)

    def make_schedules(self) -> dict[str, np.ndarray]:
        """This run's schedules, computed once, indexed by the global optimiser step (byel.optim):
        {"lr": ...} here, and "tau" for the momentum methods."""
        batches = self.trainer.world_size * self.trainer.accumulate_grad_batches
        return {"lr": lr_schedule(self.cfg.optim, self.total_steps(), self.trainer.max_epochs, batches)}

    def configure_optimizers(self):
        o = self.cfg.optim
        trainable = nn.ModuleList([m for name, m in self.named_children() if not name.startswith("target")])
        lr = scaled_lr(o.lr, o.lr_scaling, self.trainer.world_size * self.trainer.accumulate_grad_batches)
        optimizer = build_optimizer(trainable, o.optimizer, lr, o.weight_decay, o.momentum)
        self.on_optimizer_created(optimizer)
        self.schedules = self.make_schedules()  # byel.train saves them beside the run
        schedule = ScheduledLR(optimizer, self.schedules["lr"])
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    def on_optimizer_created(self, optimizer: torch.optim.Optimizer) -> None:
        """Called by configure_optimizers with the new optimiser (a hook for subclasses)."""

    def on_train_batch_start(self, batch, batch_idx):
        self.log("train/lr", self.trainer.optimizers[0].param_groups[0]["lr"], prog_bar=False)


class MomentumMethod(PretrainMethod):
    """A method with an online network and an EMA target copy of some of its modules."""

    # Online module name -> target copy name; the targets never receive gradients.
    momentum_pairs: tuple[tuple[str, str], ...] = ()

    def init_targets(self) -> None:
        for online, target in self.momentum_pairs:
            copy_ = copy.deepcopy(getattr(self, online))
            copy_.requires_grad_(False)
            setattr(self, target, copy_)

    def make_schedules(self) -> dict[str, np.ndarray]:
        return {**super().make_schedules(), "tau": ema_schedule(self.cfg.method, self.total_steps())}

    def current_tau(self) -> float:
        return at(self.schedules["tau"], self.trainer.global_step)

    def on_optimizer_created(self, optimizer: torch.optim.Optimizer) -> None:
        # The target follows the online weights once per real optimiser step: not on a step whose
        # loss guard() skipped (optim.nonfinite=skip), nor one the AMP grad scaler drops, nor on
        # the micro-batches of gradient accumulation. The update itself stays in
        # on_train_batch_end, where global_step (and so a scheduled τ) already counts the step.
        self._stepped = False
        optimizer.register_step_post_hook(self._after_optimizer_step)

    def _after_optimizer_step(self, optimizer, args, kwargs) -> None:
        # Lightning still calls step() after a skipped loss, with the gradients zeroed to None:
        # then the optimiser changed nothing.
        self._stepped = any(p.grad is not None for group in optimizer.param_groups for p in group["params"])

    @torch.no_grad()
    def on_train_batch_end(self, outputs, batch, batch_idx):
        if not getattr(self, "_stepped", False):
            return
        self._stepped = False
        self.update_targets(self.current_tau())

    @torch.no_grad()
    def update_targets(self, tau: float) -> None:
        """target = τ·target + (1 − τ)·online, for every (online, target) pair."""
        for online, target in self.momentum_pairs:
            for po, pt in zip(getattr(self, online).parameters(), getattr(self, target).parameters()):
                pt.mul_(tau).add_(po.detach(), alpha=1 - tau)
            # BatchNorm running statistics are buffers: copy them (BYOL targets use batch stats
            # in training anyway; these matter only if the target is ever evaluated).
            for bo, bt in zip(getattr(self, online).buffers(), getattr(self, target).buffers()):
                bt.copy_(bo)
        self.log("train/tau", tau, prog_bar=False)
