"""Where a dataset comes from: a prepared directory, a raw log prepared in memory, or the
built-in generated sample -- what a run records so that the same data can be loaded again."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from srsan_np.errors import DataError

__all__ = ["DataSource", "FORMATS"]

FORMATS = ("diginetica", "yoochoose")  # the raw logs' formats


@dataclass(frozen=True)
class DataSource:
    """One of: ``data``, a prepared dataset directory; ``input``, a raw click log in the
    format ``dataset``, prepared in memory; neither, the built-in sample of ``sample_seed``.

    Paths are kept absolute, so that a run can reload its data from anywhere.
    """

    data: str | None = None
    input: str | None = None
    dataset: str = "diginetica"
    sample_seed: int = 0

    def __post_init__(self):
        for name in ("data", "input"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, str(Path(value).resolve()))

    def load(self):
        """The :class:`~srsan_np.data.Dataset` this names."""
        from srsan_np.data import load_dataset, preprocess, sample_dataset
        from srsan_np.data.readers import READERS

        if self.data is not None:
            return load_dataset(self.data)
        if self.input is not None:
            return preprocess(READERS[self.dataset](Path(self.input)), self.dataset).dataset
        return sample_dataset(self.sample_seed)

    def describe(self) -> str:
        """One line for a person: what the data is."""
        if self.data is not None:
            from srsan_np.data import reads_as_pickles

            return (f"the SR-GNN folder {self.data} (the original code's pickles)"
                    if reads_as_pickles(self.data) else f"the prepared dataset {self.data}")
        if self.input is not None:
            return f"the {self.dataset} log {self.input}, prepared as SR-GNN does"
        return f"the built-in generated sample (seed {self.sample_seed})"

    def to_json(self) -> dict:
        """What a run records: only the fields that say where the data is."""
        if self.data is not None:
            return {"data": self.data}
        if self.input is not None:
            return {"input": self.input, "dataset": self.dataset}
        return {"sample_seed": self.sample_seed}

    @classmethod
    def from_json(cls, obj, path) -> "DataSource | None":
        """The source :meth:`to_json` described (None if ``obj`` names none: only a
        fingerprint); :class:`DataError` naming ``path`` if ``obj`` is not such a
        description."""
        types = {"data": str, "input": str, "dataset": str, "sample_seed": int}
        fields = {k: v for k, v in obj.items() if k != "fingerprint"} if isinstance(obj, dict) else None
        if (fields is None or not set(fields) <= set(types)
                or not all(isinstance(v, types[k]) and not isinstance(v, bool)
                           for k, v in fields.items())
                or fields.get("dataset", "diginetica") not in FORMATS
                or fields.get("sample_seed", 0) < 0
                or ("data" in fields) + ("input" in fields) + ("sample_seed" in fields) > 1
                or ("dataset" in fields and "input" not in fields)):
            raise DataError(f"{path}: not the description of a run's data (keys: "
                            f"{', '.join(types)}, fingerprint)")
        return cls(**fields) if fields else None
