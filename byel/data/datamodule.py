"""Lightning data module over in-memory uint8 images.

Images are decoded once (see `byel.data.sources`) and kept as a uint8 tensor; batches travel to
the device as uint8 (4× less traffic than float) and are augmented there, per sample.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler, WeightedRandomSampler


class ArrayDataset(Dataset):
    def __init__(self, images: np.ndarray, labels: np.ndarray):
        self.images = torch.from_numpy(np.ascontiguousarray(images))
        self.labels = torch.from_numpy(np.asarray(labels, dtype=np.int64))

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.images[i], self.labels[i]

    def __getitems__(self, indices):
        # Batched fetch: one gather instead of one tensor per sample.
        idx = torch.as_tensor(indices)
        return self.images[idx], self.labels[idx]


def _identity(batch):
    return batch


class CycledSampler(Sampler):
    """`num_samples` indices of n: reshuffled passes, one after another, from a random stream of
    its own (seed + epoch, set by Lightning's set_epoch). It draws nothing from the global stream,
    so the labelled loader beside it shuffles its first epoch exactly as it would alone (later
    epochs differ: the unlabelled views' augmentation draws from the global stream)."""

    def __init__(self, n: int, num_samples: int, seed: int = 0):
        self.n, self.num_samples, self.seed, self.epoch = n, num_samples, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.num_samples

    def __iter__(self):
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.cat([torch.randperm(self.n, generator=g) for _ in range(-(-self.num_samples // self.n))])
        return iter(order[: self.num_samples].tolist())


def balanced_weights(labels: np.ndarray) -> torch.Tensor:
    """Per-sample weights so each class is drawn equally often."""
    counts = np.bincount(labels, minlength=labels.max() + 1).astype(np.float64)
    return torch.from_numpy(1.0 / counts[labels])


class ArrayDataModule(L.LightningDataModule):
    def __init__(
        self,
        train: tuple[np.ndarray, np.ndarray],
        val: tuple[np.ndarray, np.ndarray] | None = None,
        batch_size: int = 256,
        num_workers: int = 0,
        balanced: bool = False,
        drop_last: bool = True,
        unlabelled: np.ndarray | None = None,
        seed: int = 0,
        unlabelled_ratio: int = 1,
    ):
        """`unlabelled`: uint8 images without labels, served beside the labelled training batches
        (see train_dataloader), `unlabelled_ratio` of them per labelled image."""
        super().__init__()
        self.train_set = ArrayDataset(*train)
        self.unlabelled_set = None if unlabelled is None else ArrayDataset(unlabelled, np.full(len(unlabelled), -1))
        self.val_set = ArrayDataset(*val) if val is not None else None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced, self.drop_last, self.seed = balanced, drop_last, seed
        self.unlabelled_ratio = unlabelled_ratio

    def _loader(self, dataset, shuffle: bool, sampler=None, drop_last: bool = False, generator=None,
                batch_size: int | None = None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=batch_size or self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_identity,  # __getitems__ already returns stacked tensors
            generator=generator,
        )

    def train_dataloader(self) -> DataLoader:
        # Under DDP each process sees its share of the images (Lightning's DistributedSampler). A
        # batch never exceeds that share, so drop_last (a last batch of 1 would break BatchNorm)
        # always leaves every process at least one full batch.
        world = getattr(self.trainer, "world_size", 1) if self.trainer is not None else 1
        batch_size = min(self.batch_size, -(-len(self.train_set) // world))
        sampler = None
        if self.balanced:
            w = balanced_weights(self.train_set.labels.numpy())
            sampler = WeightedRandomSampler(w, num_samples=len(w), replacement=True)
        labelled = self._loader(self.train_set, shuffle=True, sampler=sampler, drop_last=self.drop_last,
                                batch_size=batch_size)
        if self.unlabelled_set is None:
            return labelled
        # Each step also gets a batch of unlabelled images, unlabelled_ratio × the labelled batch:
        # the unlabelled loader is exactly as long as the labelled one (reshuffled passes, repeated
        # as needed), so the number of steps and the labelled data are those of a run without it.
        from lightning.pytorch.utilities import CombinedLoader

        u_batch = batch_size * self.unlabelled_ratio
        n = len(labelled) * u_batch
        # its own generator too: a DataLoader draws its workers' base seed when iterated
        unlabelled = self._loader(self.unlabelled_set, shuffle=False, drop_last=True,
                                  sampler=CycledSampler(len(self.unlabelled_set), n, self.seed),
                                  generator=torch.Generator().manual_seed(self.seed), batch_size=u_batch)
        return CombinedLoader({"labelled": labelled, "unlabelled": unlabelled}, mode="max_size_cycle")

    def val_dataloader(self):
        return [] if self.val_set is None else self._loader(self.val_set, shuffle=False)
