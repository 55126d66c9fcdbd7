"""Data: raw readers, SR-GNN preprocessing, the ragged ``.npz`` store, the original's
pickles, the built-in sample generator, and batching."""

from __future__ import annotations

from srsan_np.data.batching import Batch, iterate_batches, make_batch, split_validation
from srsan_np.data.generate import generate_clicks
from srsan_np.data.preprocess import preprocess
from srsan_np.data.store import DataError, Dataset, Sessions, load_dataset, save_dataset


def sample_dataset(seed: int = 0, preset: str = "sample") -> Dataset:
    """The built-in generated dataset, prepared in memory (about a second for "sample").

    Equivalent to ``srsan-np generate --preset PRESET --seed SEED`` followed by
    ``srsan-np preprocess --dataset diginetica``.
    """
    return preprocess(generate_clicks(preset, seed), "diginetica").dataset


__all__ = ["Batch", "DataError", "Dataset", "Sessions", "generate_clicks", "iterate_batches",
           "load_dataset", "make_batch", "preprocess", "sample_dataset", "save_dataset",
           "split_validation"]
