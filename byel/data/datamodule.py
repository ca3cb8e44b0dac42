"""Lightning data module over in-memory uint8 images.

Images are decoded once (see `byel.data.sources`) and kept as a uint8 tensor; batches travel to
the device as uint8 (4× less traffic than float) and are augmented there, per sample.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler


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
    ):
        super().__init__()
        self.train_set = ArrayDataset(*train)
        self.val_set = ArrayDataset(*val) if val is not None else None
        self.batch_size, self.num_workers = batch_size, num_workers
        self.balanced, self.drop_last = balanced, drop_last

    def _loader(self, dataset, shuffle: bool, sampler=None, drop_last: bool = False) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            shuffle=shuffle if sampler is None else False,
            sampler=sampler,
            drop_last=drop_last,
            num_workers=self.num_workers,
            persistent_workers=self.num_workers > 0,
            collate_fn=_identity,  # __getitems__ already returns stacked tensors
        )

    def train_dataloader(self) -> DataLoader:
        # A drop_last batch of 1 would break BatchNorm; keep at least one full batch.
        drop_last = self.drop_last and len(self.train_set) >= self.batch_size
        sampler = None
        if self.balanced:
            w = balanced_weights(self.train_set.labels.numpy())
            sampler = WeightedRandomSampler(w, num_samples=len(w), replacement=True)
        return self._loader(self.train_set, shuffle=True, sampler=sampler, drop_last=drop_last)

    def val_dataloader(self):
        return [] if self.val_set is None else self._loader(self.val_set, shuffle=False)
