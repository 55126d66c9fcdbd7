"""SR-GNN dataset folders as datasets: ``train.txt`` + ``test.txt``, or ``all_train_seq.txt``
+ ``test.txt`` (training examples rebuilt by SR-GNN's prefix expansion), detected by
``load_dataset`` and so accepted by every command that takes a dataset; the real Diginetica
folder's first sessions through both forms; malformed folders as one line and exit 2."""

import json
import pickle

import numpy as np
import pytest
from conftest import SHARED_DATA, TINY_TRAIN

from srsan_np.data import load_dataset
from srsan_np.data.pickles import export_pickles, write_pickle_files
from srsan_np.data.preprocess import preprocess
from srsan_np.errors import DataError

DIGINETICA = SHARED_DATA / "diginetica"
N_SESSIONS = 2_000  # of the real training sessions: about 7,800 examples
N_TEST = 1_000


def process_seqs(sessions):
    """SR-GNN's ``process_seqs``, as its preprocess.py writes it: the reference."""
    prefixes, targets = [], []
    for seq in sessions:
        for i in range(1, len(seq)):
            targets.append(seq[-i])
            prefixes.append(seq[:-i])
    return prefixes, targets


def write(folder, **objects):
    folder.mkdir(parents=True, exist_ok=True)
    for name, obj in objects.items():
        (folder / f"{name}.txt").write_bytes(pickle.dumps(obj))
    return folder


def as_lists(dataset):
    return dataset.train.to_lists(), dataset.test.to_lists()


# --------------------------------------------------------------------------- both forms, by hand

SESSIONS = [[1, 2, 3], [4, 5], [3, 3, 5, 1], [6], []]   # the last two give no example
TEST = ([[5], [2, 4]], [4, 1])


def test_both_forms_give_sr_gnn_s_examples_in_its_order(tmp_path):
    seq = write(tmp_path / "seq", all_train_seq=SESSIONS, test=TEST)
    txt = write(tmp_path / "txt", train=process_seqs(SESSIONS), test=TEST)
    for folder in (seq, txt):
        dataset = load_dataset(folder)
        assert as_lists(dataset) == (process_seqs(SESSIONS), TEST)
        assert dataset.n_items == 5  # the largest id of the examples: [6] gives none
    assert load_dataset(seq).stats["form"] == "all_train_seq.txt + test.txt"
    assert load_dataset(txt).stats["form"] == "train.txt + test.txt"


def test_train_txt_wins_over_all_train_seq(tmp_path):
    folder = write(tmp_path / "f", train=([[7]], [8]), all_train_seq=SESSIONS, test=TEST)
    assert load_dataset(folder).train.to_lists() == ([[7]], [8])


def test_a_prepared_directory_with_exported_pickles_stays_a_prepared_directory(tmp_path):
    from srsan_np.data import sample_dataset, save_dataset
    dataset = sample_dataset()
    save_dataset(dataset, tmp_path / "d")
    write(tmp_path / "d", train=([[1]], [2]), test=([[1]], [2]))  # beside train.npz: not read
    back = load_dataset(tmp_path / "d")
    assert "form" not in back.stats and as_lists(back) == as_lists(dataset)


@pytest.mark.parametrize("files, fragment", [
    ({"test": TEST}, "no train.txt or all_train_seq.txt"),
    ({"train": TEST}, "no test.txt beside train.txt"),
    ({"all_train_seq": SESSIONS}, "no test.txt beside all_train_seq.txt"),
    ({"all_train_seq": [[1, 2], 3], "test": TEST}, "all_train_seq.txt: session 1 is not a list of item ids"),
    ({"all_train_seq": [[1, 2], [3, [4]]], "test": TEST}, "all_train_seq.txt: session 1 is not a list"),
    ({"all_train_seq": ([1, 2],), "test": TEST}, "expected a list of sessions"),
    ({"all_train_seq": [[1, 2], [3, 0]], "test": TEST}, "session 1 holds the item id 0; ids must be 1.."),
    ({"all_train_seq": [[1, -4]], "test": TEST}, "session 0 holds the item id -4"),
    ({"all_train_seq": [[1, 2 ** 40]], "test": TEST}, f"session 0 holds the item id {2 ** 40}"),
    ({"all_train_seq": [[], [1, 2 ** 70]], "test": TEST}, "session 1 is not a list of item ids"),
    ({"all_train_seq": [[1], [2]], "test": TEST}, "all_train_seq.txt: no training examples"),
    ({"train": ([[1], [2, 3]], [2]), "test": TEST}, "train.txt: 2 prefixes but 1 targets"),
    ({"train": ([[1], []], [2, 3]), "test": TEST}, "train.txt: prefix 1 is empty"),
    ({"train": ([[1], [2]], [2, [3]]), "test": TEST}, "train.txt: target 1 is not an item id"),
    ({"train": ([[1], [2]], [2, 0]), "test": TEST}, "train.txt: target 1 holds the item id 0"),
    ({"train": [[1], [2]], "test": TEST}, "train.txt: prefix 0 is not a list of item ids (expected "
                                          "(list_of_prefixes, list_of_targets))"),
    ({"train": [[[1]], [2], [3]], "test": TEST}, "train.txt: expected (list_of_prefixes, list_of_targets)"),
    ({"train": ([[1]], [2]), "test": ([], [])}, "test.txt: no test examples"),
])
def test_malformed_folders_name_the_file_and_the_entry(tmp_path, files, fragment):
    with pytest.raises(DataError, match=None) as err:
        load_dataset(write(tmp_path / "f", **files))
    assert fragment in str(err.value)


# --------------------------------------------------------------------------- the command line

@pytest.mark.parametrize("case, fragment", [
    ("truncated pickle", "all_train_seq.txt: not a readable pickle"),
    ("wrong shape", "test.txt: expected (list_of_prefixes, list_of_targets)"),
    ("id 0", "all_train_seq.txt: session 1 holds the item id 0"),
    ("test.txt alone", "no train.txt or all_train_seq.txt"),
])
def test_malformed_folders_are_one_line_and_exit_2(cli, tmp_path, case, fragment):
    folder = write(tmp_path / "f", all_train_seq=SESSIONS, test=TEST)
    if case == "truncated pickle":
        path = folder / "all_train_seq.txt"
        path.write_bytes(path.read_bytes()[:-7])
    elif case == "wrong shape":
        write(folder, test=[[1, 2], [3], [4, 5]])  # sessions where examples belong
    elif case == "id 0":
        write(folder, all_train_seq=[[1, 2], [3, 0]])
    else:
        (folder / "all_train_seq.txt").unlink()
    for command in (["stats", folder], ["baselines", "--data", folder]):
        line = cli.error(cli(*command), fragment)
        assert str(folder) in line


def test_a_folder_trains_evaluates_and_refuses_changed_data(cli, tmp_path):
    folder = write(tmp_path / "f", all_train_seq=SESSIONS * 20, test=TEST)
    proc = cli("stats", folder, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["n_train"] == 6 * 20
    out = tmp_path / "run"
    proc = cli("train", "--data", folder, "--config", "original", "--out", out, "--epochs", "1",
               *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr
    assert f"data: the SR-GNN folder {folder.resolve()}" in proc.stdout
    assert json.loads((out / "data.json").read_text())["data"] == str(folder.resolve())
    proc = cli("evaluate", out, "--bootstrap", "0")   # the data reloaded from data.json
    assert proc.returncode == 0 and "SR-SAN" in proc.stdout, proc.stderr
    write(folder, test=([[5]], [4]))
    cli.error(cli("evaluate", out), "is not the data the run was trained on")


def test_a_pickle_given_as_a_click_log_points_at_its_folder(cli, tmp_path):
    folder = write(tmp_path / "f", train=process_seqs(SESSIONS), test=TEST)
    cli.error(cli("stats", folder / "train.txt"), "no such dataset directory")
    cli.error(cli("train", "--input", folder / "train.txt", "--out", tmp_path / "r"),
              "a pickle", "--data")


# --------------------------------------------------------------------------- Yoochoose, generated

@pytest.mark.parametrize("fraction", [4, 64])
def test_a_yoochoose_fraction_folder_works_the_same_way(tmp_path, fraction):
    from srsan_np.data.generate import generate_blocks, preset_config, scaled
    from srsan_np.data.readers import Clicks
    blocks = list(generate_blocks(scaled(preset_config("sample"), 1_500), seed=3))
    clicks = Clicks(*(np.concatenate(c) for c in zip(*(b[:4] for b in blocks))), source="gen")
    clicks = clicks._replace(timeframe=None)  # Yoochoose has none: file order
    prepared = preprocess(clicks, "yoochoose", fraction)
    export_pickles(prepared.dataset, tmp_path / "p", prepared.train_sessions)
    back = load_dataset(tmp_path / "p")
    assert as_lists(back) == as_lists(prepared.dataset)
    # all_train_seq.txt alone starts at the fraction's first session, expanded in full:
    # the fraction's examples are its last ones.
    (tmp_path / "p" / "train.txt").unlink()
    expanded = load_dataset(tmp_path / "p")
    n = len(prepared.dataset.train)
    first_session_examples = len(expanded.train) - n
    assert 0 <= first_session_examples < prepared.train_sessions[1][1] - 1
    assert expanded.train.subset(np.arange(first_session_examples, len(expanded.train))).to_lists() \
        == prepared.dataset.train.to_lists()
    assert expanded.test.to_lists() == prepared.dataset.test.to_lists()


# --------------------------------------------------------------------------- real Diginetica

@pytest.fixture(scope="module")
def real_slice(tmp_path_factory):
    """The first N_SESSIONS training sessions of the shared Diginetica folder and its first
    N_TEST test examples, as an ``all_train_seq.txt`` folder and a ``train.txt`` one."""
    if not (DIGINETICA / "all_train_seq.txt").is_file():
        pytest.skip(f"{DIGINETICA} not present (the shared data beside the checkout)")
    from srsan_np.data.pickles import safe_load
    sessions = safe_load(DIGINETICA / "all_train_seq.txt")[:N_SESSIONS]
    prefixes, targets = safe_load(DIGINETICA / "test.txt")
    test = (prefixes[:N_TEST], targets[:N_TEST])
    root = tmp_path_factory.mktemp("diginetica")
    return {"sessions": sessions, "test": test,
            "seq": write(root / "seq", all_train_seq=sessions, test=test),
            "txt": write(root / "txt", train=process_seqs(sessions), test=test)}


def test_real_sessions_load_the_same_through_both_forms(real_slice, tmp_path):
    expected = (process_seqs(real_slice["sessions"]), real_slice["test"])
    seq, txt = load_dataset(real_slice["seq"]), load_dataset(real_slice["txt"])
    assert as_lists(seq) == as_lists(txt) == expected
    assert seq.n_items == txt.n_items == max(max(s) for s in real_slice["sessions"] + expected[1][0])
    # exported as preprocess --export-pickles writes them, and read back: the same
    (tmp_path / "export").mkdir()
    write_pickle_files(seq, tmp_path / "export")
    assert pickle.loads((tmp_path / "export" / "all_train_seq.txt").read_bytes()) == real_slice["sessions"]
    assert pickle.loads((tmp_path / "export" / "train.txt").read_bytes()) == expected[0]
    assert as_lists(load_dataset(tmp_path / "export")) == expected


def test_a_short_faithful_training_on_real_sessions(cli, real_slice, tmp_path):
    from srsan_np.evaluate import evaluate
    from srsan_np.run import Run
    from srsan_np.train import model_scorer
    out = tmp_path / "run"
    proc = cli("train", "--data", real_slice["seq"], "--config", "original", "--epochs", "1",
               "--out", out, "--no-baselines", "--bootstrap", "0")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((out / "summary.json").read_text())
    dataset = load_dataset(real_slice["seq"])
    # one epoch of 78 steps: below a uniform guess's loss, nowhere near the paper
    assert summary["history"][0]["train_loss"] < np.log(dataset.n_items) - 0.1, summary["history"]
    params, config, _ = Run(out).load_model()
    assert config.mode == "faithful" and config.n_items == dataset.n_items
    again = evaluate(model_scorer(params, config, dataset.test), dataset.test)
    assert again == summary["test_at_selected"]
