"""Data: raw readers, SR-GNN preprocessing, the ragged ``.npz`` store, the original's
pickles, the built-in sample generator, and batching."""

from __future__ import annotations

from srsan_np.data.batching import Batch, iterate_batches, make_batch, split_validation
from srsan_np.data.generate import generate_clicks
from srsan_np.data.preprocess import preprocess
from pathlib import Path

from srsan_np.data.pickles import import_pickles, is_pickle_folder
from srsan_np.data.store import DataError, Dataset, Sessions, load_prepared, save_dataset


def load_dataset(directory) -> Dataset:
    """A dataset directory: one ``srsan-np preprocess`` (:func:`save_dataset`) wrote, or a
    folder of the original code's pickles (``train.txt`` or ``all_train_seq.txt``, and
    ``test.txt``; :func:`srsan_np.data.pickles.import_pickles`), told apart by what it
    holds."""
    return import_pickles(directory) if reads_as_pickles(directory) else load_prepared(directory)


def reads_as_pickles(directory) -> bool:
    """Whether :func:`load_dataset` reads ``directory`` as a folder of the original code's
    pickles: it holds some of them and no ``train.npz``."""
    return not (Path(directory) / "train.npz").exists() and is_pickle_folder(directory)


def sample_dataset(seed: int = 0, preset: str = "sample") -> Dataset:
    """The built-in generated dataset, prepared in memory (about a second for "sample").

    Equivalent to ``srsan-np generate --preset PRESET --seed SEED`` followed by
    ``srsan-np preprocess --dataset diginetica``.
    """
    return preprocess(generate_clicks(preset, seed), "diginetica").dataset


__all__ = ["Batch", "DataError", "Dataset", "Sessions", "generate_clicks", "iterate_batches",
           "load_dataset", "make_batch", "preprocess", "reads_as_pickles", "sample_dataset",
           "save_dataset", "split_validation"]
