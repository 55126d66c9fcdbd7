"""Configurations: the presets, a JSON config file, and settings on top, merged and checked
in one place -- every impossible value blamed on what set it.

A configuration is ``{"model": {...}, "train": {...}}``: fields of
:class:`srsan_np.model.Config` (but ``n_items``, which comes from the data) and of
:class:`srsan_np.train.TrainConfig`. :func:`merge` takes layers of them, lowest priority
first -- the defaults, a file or preset, then each flag -- builds both configurations once,
and, when they are impossible, names the last layer that set a field the error names
(:class:`~srsan_np.errors.ConfigError` carries them).
"""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path

from srsan_np.errors import ConfigError, DataError
from srsan_np.files import read_json

__all__ = ["PRESETS_DIR", "preset_path", "load_preset", "read_config", "merge", "SECTIONS"]

PRESETS_DIR = Path(__file__).resolve().parent / "configs"
SECTIONS = ("model", "train")
CONFIG_LIMIT = 1 << 20  # a config file's largest size (a few dozen settings: a few hundred bytes)


def preset_path(name):
    """The file of the named configuration in ``srsan_np/configs``; ValueError naming the
    known ones."""
    path = PRESETS_DIR / f"{name}.json"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in PRESETS_DIR.glob("*.json")))
        raise ValueError(f"no preset {name!r} (presets: {known})")
    return path


def load_preset(name):
    """A named configuration ``{"model": {...}, "train": {...}}`` from ``srsan_np/configs``.

    ``sample``: the configuration chosen on the built-in sample's validation split
    (sequence mode); ``original``: the original code's protocol (faithful mode, no
    validation split).
    """
    return read_config(preset_path(name))


def _fields(section):
    from srsan_np.model import Config
    from srsan_np.train import TrainConfig

    config = {"model": Config, "train": TrainConfig}[section]
    return [f.name for f in dataclasses.fields(config)]


# names other code gives a setting of ours: PyTorch's optimisers call the L2 weight_decay
ALIASES = {"weight_decay": "l2"}


def _unknown(key, known):
    """"unknown setting", with the known one meant if it can be told: an alias, the
    initials of the key's words (``learning_rate``: ``lr``), or the closest spelling."""
    initials = "".join(word[0] for word in key.replace("-", "_").split("_") if word)
    close = [name for name in (ALIASES.get(key), initials) if name in known]
    close += difflib.get_close_matches(key, known, n=1)
    return f"unknown setting {key!r}" + (f" (did you mean {close[0]!r}?)" if close else
                                         f" (known: {', '.join(known)})")


def read_config(path):
    """``{"model": {...}, "train": {...}}`` from the JSON file ``path``, its sections and keys
    checked (an unknown key gets a "did you mean"); :class:`DataError` naming the file."""
    config = read_json(path, "no such config file", CONFIG_LIMIT)
    if not isinstance(config, dict):
        raise DataError(f"{path}: expected a JSON object "
                        f"{{\"model\": {{...}}, \"train\": {{...}}}}")
    unknown = sorted(set(config) - set(SECTIONS))
    if unknown:
        raise DataError(f"{path}: unknown sections {unknown} (expected 'model', 'train')")
    for section in SECTIONS:
        if not isinstance(config.setdefault(section, {}), dict):
            raise DataError(f"{path}: section {section!r} must be a JSON object")
        for key in config[section]:
            if key not in _fields(section):
                raise DataError(f"{path}: {section}: {_unknown(key, _fields(section))}")
    n_items = config["model"].get("n_items", 0)
    if isinstance(n_items, bool) or not isinstance(n_items, int):
        raise DataError(f"{path}: model.n_items must be an integer, got {n_items!r}")
    return config


def merge(layers, n_items, longest=None, n_train=None):
    """``(model.Config, TrainConfig)`` from ``layers``, later ones on top.

    The configurations must fit in what this process can allocate
    (:func:`srsan_np.memory.check_training`: with ``n_items`` and ``longest`` from the data
    once they are known).

    Parameters
    ----------
    layers : list of (str, dict)
        ``(who, {"model": {...}, "train": {...}})``, lowest priority first; ``who`` is what
        an error names (a file, ``"argument --hidden"``).
    n_items : int
        The data's item count: ``n_items`` is the largest of it and any layer's.
    longest : int or None
        The data's longest prefix, which ``max_len`` must cover when ``positions``.
    n_train : int or None
        The data's training examples, which the validation split must leave some of and
        (with a split) take some of.

    Raises
    ------
    DataError
        ``"<who>: <what is impossible>"``, ``who`` the last layer that set a field the
        error names (else the first layer). The first layer is checked alone too: a bad
        value in a file is an error even where a flag replaces it.
    """
    for upto in sorted({1, len(layers)}):  # the first layer (a file) alone too, then all
        configs = _build(layers[:upto], n_items, longest, n_train, upto == len(layers))
    return configs


def _build(layers, n_items, longest, n_train, final):
    from srsan_np.memory import check_training
    from srsan_np.model import Config
    from srsan_np.train import TrainConfig

    merged = {section: {} for section in SECTIONS}
    for _, layer in layers:
        for section in SECTIONS:
            merged[section].update(layer.get(section, {}))
    merged["model"]["n_items"] = max([n_items] + [layer.get("model", {}).get("n_items", 0)
                                                  for _, layer in layers])
    try:
        model_config = Config(**merged["model"])
        train_config = TrainConfig(**merged["train"])
        if longest is not None:
            model_config.check_length(longest, "the longest session prefix in the data")
        if final and n_train is not None:
            train_config.check_split(n_train)
        if final:
            check_training(model_config, train_config, longest, n_train)
    except ConfigError as err:
        setters = [who for who, layer in layers
                   if any(f in layer.get(s, {}) for s in SECTIONS for f in err.fields)]
        raise DataError(f"{(setters or [layers[0][0]])[-1]}: {err}") from None
    return model_config, train_config
