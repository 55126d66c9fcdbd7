"""Whatever a user types -- any of `train`'s flags and config values, any malformed line in
a click log -- the outcome is exit 0 or 2: never a traceback, never a signal.

Most examples call ``cli.main`` in-process (fast); a few go through a subprocess, where a
crash of the interpreter itself would show as a signal.
"""

import contextlib
import io
import json
import signal
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from srsan_np.cli import main

SETTINGS = dict(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture],
                derandomize=True)


def _outcome(argv):
    """``(exit status, stderr)`` of ``main(argv)`` in this process."""
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            status = main([str(a) for a in argv])
        except SystemExit as stop:  # argparse
            status = stop.code
    return status, err.getvalue()


def _assert_clean(status, err):
    assert status in (0, 2), (status, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if status == 2:
        assert err.strip().splitlines()[-1].startswith("srsan-np "), err


# --------------------------------------------------------------------------- train's flags

HOSTILE = ["nan", "inf", "-1e400", "x", "1.5", ""]


def _ints(low, high):
    """Mostly integers a user might type, some that no integer flag takes."""
    return st.one_of(st.integers(low, high).map(str), st.integers(low, high).map(str),
                     st.sampled_from(HOSTILE))


def _floats(*values):
    return st.one_of(st.sampled_from([str(v) for v in values]), st.sampled_from(HOSTILE))


FLAGS = {
    "--epochs": _ints(-1, 2),
    "--batch-size": _ints(-1, 40),
    "--hidden": _ints(-2, 12),
    "--heads": _ints(-1, 4),
    "--layers": _ints(-1, 2),
    "--dropout": _floats(0, 0.3, 0.99, 1, -0.1),
    "--n-items": _ints(-5, 200),
    "--lr": _floats(1e-3, 0.1, 0, -1, 1e30),
    "--l2": _floats(0, 1e-5, -1, 1e30),
    "--lr-dc": _floats(0.1, 1, 0, 2),
    "--lr-dc-step": _ints(-1, 3),
    "--patience": _ints(-1, 3),
    "--valid-fraction": _floats(0, 0.2, 0.99, 1, -0.1),
    "--seed": st.one_of(_ints(-1, 3), st.just(str(2 ** 70))),
    "--bootstrap": _ints(-5, 10),
    "--sample-seed": _ints(-1, 2),
    "--select": st.sampled_from(["HR@20", "MRR@5", "NDCG@10", "HR@7", "AUC", "HR@", "@", ""]),
    "--mode": st.sampled_from(["faithful", "sequence", "sequence", "graph"]),
}
SWITCHES = ["--positions", "--no-baselines", "--resume", "--overwrite"]

JSON_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-2, 6), st.integers(-2, 6),
                        st.sampled_from([0.0, 0.1, 0.5, 1e-3, "sequence", "faithful", "HR@20", [5, 20]]),
                        st.floats(allow_nan=True, allow_infinity=True, width=32),
                        st.text(max_size=4), st.lists(st.integers(-1, 25), max_size=3),
                        st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))
MODEL_KEYS = ["n_items", "hidden", "heads", "layers", "ff_mult", "dropout", "mode", "positions",
              "max_len", "colour"]
TRAIN_KEYS = ["epochs", "batch_size", "lr", "l2", "lr_dc", "lr_dc_step", "patience",
              "valid_fraction", "select", "ks", "seed", "speed"]
# One field set to anything, the rest left to the defaults: reaches every field's check.
ONE_FIELD = st.tuples(st.sampled_from([("model", k) for k in MODEL_KEYS] +
                                      [("train", k) for k in TRAIN_KEYS]),
                      JSON_VALUES).map(lambda kv: {kv[0][0]: {kv[0][1]: kv[1]}})
CONFIGS = st.one_of(
    ONE_FIELD, ONE_FIELD, ONE_FIELD,
    st.fixed_dictionaries({}, optional={
        "model": st.one_of(st.dictionaries(st.sampled_from(MODEL_KEYS), JSON_VALUES, max_size=3),
                           JSON_VALUES),
        "train": st.one_of(st.dictionaries(st.sampled_from(TRAIN_KEYS), JSON_VALUES, max_size=3),
                           JSON_VALUES),
        "extra": JSON_VALUES}),
    JSON_VALUES)


@st.composite
def train_argv(draw):
    flags = draw(st.one_of(st.just({}),
                           st.dictionaries(st.sampled_from(sorted(FLAGS)), st.none(), max_size=4)))
    argv = []
    for flag in flags:
        argv += [flag, draw(FLAGS[flag])]
    argv += draw(st.lists(st.sampled_from(SWITCHES), max_size=2, unique=True))
    return argv, draw(st.one_of(st.none(), CONFIGS))  # None: no config of its own


@settings(max_examples=50, **SETTINGS)
@given(case=train_argv())
def test_any_train_flags_and_config_exit_0_or_2(tiny_data, tmp_path, case):
    argv, config = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    # short runs: two epochs, unless the config file or a flag sets another (small) number
    if config is None:
        config = {"train": {"epochs": 2}}
    elif isinstance(config, dict) and isinstance(config.get("train", {}), dict):
        config.setdefault("train", {}).setdefault("epochs", 2)
    else:
        argv = ["--epochs", "2", *argv]
    (work / "c.json").write_text(json.dumps(config))
    argv = ["train", "--data", tiny_data, "--out", work / "run", "--bootstrap", "0",
            "--no-baselines", "--config", work / "c.json", *argv]
    _assert_clean(*_outcome(argv))


WRONG = [None, True, 0, 1, -1, 3, 1.5, 1e308, float("nan"), float("inf"), "", "x", "sequence",
         [], [1, 2], [1e-3, 1e-2], {}, {"a": 1}]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # a huge lr overflows, then diverges: exit 2
@settings(max_examples=150, **SETTINGS)
@given(section_key=st.sampled_from([("model", k) for k in MODEL_KEYS] +
                                   [("train", k) for k in TRAIN_KEYS]),
       value=st.sampled_from(WRONG))
def test_any_single_config_value_exits_0_or_2(tiny_data, tmp_path, section_key, value):
    section, key = section_key
    config = {"model": {}, "train": {"epochs": 1}}
    config[section][key] = value
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "c.json").write_text(json.dumps(config))
    _assert_clean(*_outcome(["train", "--data", tiny_data, "--out", work / "run", "--bootstrap",
                             "0", "--no-baselines", "--config", work / "c.json"]))


# --------------------------------------------------------------------------- malformed logs

GOOD_DIGINETICA = "".join(f"{1 + k // 4};NA;{1 + k % 9};{k};2016-0{1 + k // 300}-{1 + k % 28:02d}\n"
                          for k in range(1200))
GOOD_YOOCHOOSE = "".join(f"{1 + k // 4},2016-04-{1 + k // 50:02d}T10:{k % 60:02d}:00.000Z,{1 + k % 9},0\n"
                         for k in range(1200))
PIECES = st.sampled_from(["1", "42", "-7", "99999999999999999999", ";", ",", "NA", "2016-13-14",
                          "2016-02-30", "2016-04-01T24:00:00Z", "2016-04-01T10:00:00.000Z",
                          "T", ":", "-", " ", "\t", "\r", "\x00", "\xef\xbb\xbf", "é", "1e5",
                          "", "\"", "sessionId", "0x1f"])
LINES = st.lists(PIECES, max_size=8).map("".join)


def _log(dataset, header, insert):
    body = GOOD_DIGINETICA if dataset == "diginetica" else GOOD_YOOCHOOSE
    head = "session_id;user_id;item_id;timeframe;eventdate\n" if dataset == "diginetica" else ""
    lines = (head + body).splitlines(keepends=True)
    if header is not None:
        lines[0] = header + "\n"
    for position, line in insert:
        lines.insert(position % (len(lines) + 1), line + "\n")
    return "".join(lines).encode("utf-8", errors="surrogateescape")


GOOD_ROW = {"diginetica": (";", ["7", "NA", "3", "12", "2016-01-05"]),
            "yoochoose": (",", ["7", "2016-04-02T10:00:00.000Z", "3", "0"])}


@st.composite
def logs(draw):
    """``(dataset, header or None, [(position, line)])``: lines of loose pieces, or rows with
    the right number of fields, each one a good value for its column or anything."""
    dataset = draw(st.sampled_from(sorted(GOOD_ROW)))
    delimiter, good = GOOD_ROW[dataset]
    rows = st.tuples(*[st.one_of(st.just(g), PIECES) for g in good]).map(delimiter.join)
    header = st.one_of(st.none(), st.none(), st.none(), LINES)
    return (dataset, draw(header),
            draw(st.lists(st.tuples(st.integers(0, 1300), st.one_of(LINES, rows, rows)),
                          min_size=1, max_size=3)))


LOGS = logs()


@settings(max_examples=200, **SETTINGS)
@given(case=LOGS)
@example(case=("diginetica", None, [(50, "99999999999999999999;NA;3;12;2016-01-05")]))
@example(case=("yoochoose", None, [(700, "7,2016-13-14T00:00:00Z,3,0")]))
@example(case=("yoochoose", "\ufeff1,2016-04-02T10:00:00.000Z,3,0", [(0, "")]))
def test_any_malformed_log_line_exits_0_or_2(tmp_path, case):
    dataset, header, insert = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "log").write_bytes(_log(dataset, header, insert))
    _assert_clean(*_outcome(["preprocess", "--dataset", dataset, "--input", work / "log",
                             "--out", work / "out"]))


@settings(max_examples=4, **SETTINGS)
@given(case=LOGS, flags=train_argv())
def test_in_a_subprocess_no_signal_and_no_traceback(cli, tiny_data, tmp_path, case, flags):
    dataset, header, insert = case
    work = Path(tempfile.mkdtemp(dir=tmp_path))
    (work / "log").write_bytes(_log(dataset, header, insert))
    proc = cli("preprocess", "--dataset", dataset, "--input", work / "log", "--out", work / "out")
    assert proc.returncode != -signal.SIGSEGV
    _assert_clean(proc.returncode, proc.stderr)
    argv, _ = flags
    proc = cli("train", "--data", tiny_data, "--out", work / "run", "--bootstrap", "0",
               "--no-baselines", "--epochs", "1", *argv)
    _assert_clean(proc.returncode, proc.stderr)
