"""Issue 24's classes of hostile but realistic use, one test each (class 5, the learner's
code, is the exercises' own), through the command line in a subprocess: the exit code, the
one line, and what is left on disk -- a user's files intact, byte for byte."""

import io
import json
import os
import resource
import shutil
import signal
import stat
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from conftest import TINY_TRAIN, snapshot
from srsan_np.data import Dataset, Sessions, save_dataset

GB = 1 << 30


def train(cli, out, data, *more, epochs=1, **kw):
    return cli("train", "--data", data, "--out", out, "--epochs", epochs, *TINY_TRAIN, *more, **kw)


def preprocess(cli, log, out, *more, **kw):
    return cli("preprocess", "--dataset", "diginetica", "--input", log, "--out", out, *more, **kw)


@pytest.fixture(scope="module")
def finished(cli, tiny_data, tmp_path_factory):
    """A finished one-epoch run (copy it before changing it)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    assert train(cli, out, tiny_data).returncode == 0
    return out


def _unlocked(directory):
    """:func:`snapshot` of ``directory`` but for its lock (whose pid each start rewrites)."""
    kind, entries = snapshot(directory)
    return kind, {name: entry for name, entry in entries.items() if name != ".lock"}


def _copy(directory, tmp_path, name="copy"):
    shutil.copytree(directory, tmp_path / name, symlinks=True)
    return tmp_path / name


# --------------------------------------------------------------------------- 1. --overwrite

def test_1_overwrite_replaces_only_what_srsan_np_wrote(cli, tiny_data, tiny_log, finished,
                                                       tmp_path):
    run = _copy(finished, tmp_path, "run")
    (run / "NOTES.md").write_text("notes\n")
    (run / "analysis").mkdir()
    (run / "analysis" / "fig.py").write_bytes(b"\x00mine")
    mine = {n: snapshot(run / n) for n in ("NOTES.md", "analysis")}
    before = (run / "last.npz").read_bytes()
    assert train(cli, run, tiny_data, "--overwrite", "--seed", "1").returncode == 0
    assert {n: snapshot(run / n) for n in mine} == mine
    assert (run / "last.npz").read_bytes() != before  # the run itself was replaced

    # a user's folder where a new learning rate's run would go: refused by name, nothing changed
    (run / "lr-0.5").mkdir()
    (run / "lr-0.5" / "x").write_text("mine")
    whole = _unlocked(run)
    cli.error(train(cli, run, tiny_data, "--overwrite", "--valid-fraction", "0.2", "--lr", "0.5",
                    "0.1"), "lr-0.5 exists and was not written by srsan-np")
    assert _unlocked(run) == whole

    # a dataset directory where the user keeps runs: `preprocess --overwrite` keeps them
    data = tmp_path / "data"
    assert preprocess(cli, tiny_log, data).returncode == 0
    shutil.copytree(run, data / "my-run", symlinks=True)
    (data / "README").write_text("about this data")
    kept = {n: snapshot(data / n) for n in ("my-run", "README")}
    assert preprocess(cli, tiny_log, data, "--overwrite").returncode == 0
    assert {n: snapshot(data / n) for n in kept} == kept
    assert cli("stats", data).returncode == 0


# --------------------------------------------------------------------------- 2. locks, links

def test_2_a_users_lock_and_planted_links_are_never_followed(cli, tiny_data, tiny_log, finished,
                                                             tmp_path):
    lonely = tmp_path / "lonely"  # a user's file that happens to be called .lock
    lonely.mkdir()
    (lonely / ".lock").write_text("my lock\n")
    cli.error(preprocess(cli, tiny_log, lonely), "not empty and not written by srsan-np")
    cli.error(train(cli, lonely, tiny_data), "not empty and not written by srsan-np")
    assert snapshot(lonely) == ("dir", {".lock": ("file", b"my lock\n")})

    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "diary.txt").write_text("dear diary\n")
    (outside / "last.npz").write_bytes(b"not a checkpoint")
    there = snapshot(outside)
    run = _copy(finished, tmp_path, "run")
    (run / ".lock").unlink()
    (run / ".lock").symlink_to(outside / "diary.txt")
    cli.error(train(cli, run, tiny_data, "--resume"), "lock .lock is a symbolic link")
    cli.error(train(cli, run, tiny_data, "--overwrite"), "lock .lock is a symbolic link")
    (run / ".lock").unlink()
    shutil.rmtree(run / "plots", ignore_errors=True)
    (run / "summary.json").unlink()
    (run / "summary.json").symlink_to(outside / "diary.txt")
    cli.error(train(cli, run, tiny_data, "--overwrite"), "summary.json is a symbolic link")

    several = tmp_path / "several"  # a learning rate's folder swapped for a link outside
    assert train(cli, several, tiny_data, "--valid-fraction", "0.2", "--lr", "0.01", "0.02",
                 "--bootstrap", "0").returncode == 0
    shutil.rmtree(several / "lr-0.01")
    (several / "lr-0.01").symlink_to(outside, target_is_directory=True)
    for flag in ("--resume", "--overwrite"):
        cli.error(train(cli, several, tiny_data, flag, "--valid-fraction", "0.2", "--lr", "0.01",
                        "0.02"), "lr-0.01 is a symbolic link")
    assert snapshot(outside) == there and (several / "lr-0.01").is_symlink()


# --------------------------------------------------------------------------- 3. non-regular

def test_3_a_fifo_or_a_device_is_never_replaced(cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cli.error(cli("generate", "--out", fifo, "--overwrite"), "is a FIFO, not a regular file")
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    cli.error(cli("generate", "--out", "/dev/null", "--overwrite"), "is a device")
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    link = tmp_path / "link.csv"
    (tmp_path / "target.csv").write_text("mine")
    link.symlink_to(tmp_path / "target.csv")
    cli.error(cli("generate", "--out", link, "--overwrite"), "is a symbolic link")
    assert link.is_symlink() and (tmp_path / "target.csv").read_text() == "mine"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fifo", "link.csv", "target.csv"]


# --------------------------------------------------------------------------- 4. memory

def _limited(cli, *args, cwd=None, timeout=120):
    """The command line with an address space of 2 GB (``ulimit -v``)."""
    def limit():
        resource.setrlimit(resource.RLIMIT_AS, (2 * GB, 2 * GB))
    return subprocess.run([sys.executable, "-m", "srsan_np", *map(str, args)], capture_output=True,
                          text=True, env=cli.env(), preexec_fn=limit, cwd=cwd, timeout=timeout)


def _zip(path, members):
    """A zip archive of ``members``: ``(name, deflated bytes, crc, inflated size)`` each."""
    local, central = b"", b""
    for name, data, crc, size in members:
        fields = (20, 0, 8, 0, 0x21, crc, len(data), size, len(name), 0)
        central += struct.pack("<IH" + "HHHHHIIIHH" + "HHHII", 0x02014B50, 20, *fields, 0, 0, 0,
                               0, len(local))
        central += name.encode()
        local += struct.pack("<I" + "HHHHHIIIHH", 0x04034B50, *fields) + name.encode() + data
    end = struct.pack("<IHHHHIIH", 0x06054B50, 0, 0, len(members), len(members), len(central),
                      len(local), 0)
    path.write_bytes(local + central + end)


def _deflated(data):
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(data) + c.flush()


def _bomb(path, template):
    """``template``'s .npz with its ``items`` made 4.0 GB of zeros, deflated to a few MB: a
    deflate stream of identical fully flushed blocks. Its CRC is left 0 (only inflating
    all of it could tell, which is what must not happen)."""
    members = []
    with np.load(template) as z:
        for name in z.files:
            if name == "items":
                continue
            buf = io.BytesIO()
            np.lib.format.write_array(buf, z[name])
            members.append((f"{name}.npy", _deflated(buf.getvalue()), zlib.crc32(buf.getvalue()),
                            len(buf.getvalue())))
    chunk, repeats = bytes(16 << 20), 238  # 4.0e9 bytes: within a zip entry's 32-bit size
    header = io.BytesIO()
    np.lib.format.write_array_header_1_0(header, {"descr": "<i4", "fortran_order": False,
                                                  "shape": (len(chunk) * repeats // 4,)})
    head = zlib.compressobj(9, zlib.DEFLATED, -15)
    block = zlib.compressobj(9, zlib.DEFLATED, -15)
    stream = (head.compress(header.getvalue()) + head.flush(zlib.Z_FULL_FLUSH)
              + (block.compress(chunk) + block.flush(zlib.Z_FULL_FLUSH)) * repeats
              + zlib.compressobj(9, zlib.DEFLATED, -15).flush())
    members.insert(0, ("items.npy", stream, 0, len(header.getvalue()) + len(chunk) * repeats))
    _zip(path, members)


def test_4_memory_is_checked_before_it_is_spent(cli, tiny_data, tmp_path):
    # a tiny run fits in 2 GB: the check refuses what does not fit, not what does
    proc = _limited(cli, "train", "--data", tiny_data, "--out", tmp_path / "fits", "--epochs", "1",
                    *TINY_TRAIN)
    assert proc.returncode == 0, proc.stderr
    cases = [(["--layers", "100000000000"], ["argument --layers: training needs about"]),
             (["--n-items", "6000000"], ["argument --n-items: training needs about", "--n-items"]),
             (["--config", "/dev/zero"], ["/dev/zero: a device, not a JSON file"])]
    fifo = tmp_path / "config-fifo"
    os.mkfifo(fifo)
    cases.append((["--config", fifo], [f"{fifo}: a FIFO, not a JSON file"]))
    big = tmp_path / "big.json"
    big.write_text('{"train": {"epochs": 1}}' + " " * (2 << 20))
    cases.append((["--config", big], ["big.json: larger than 1 MB"]))
    for args, fragments in cases:
        out = tmp_path / "r"
        proc = _limited(cli, "train", "--data", tiny_data, "--out", out, *TINY_TRAIN, *args)
        cli.error(proc, *fragments)
        assert not out.exists()

    bombed = tmp_path / "bombed"
    shutil.copytree(tiny_data, bombed)
    _bomb(bombed / "train.npz", tiny_data / "train.npz")
    assert (bombed / "train.npz").stat().st_size < 8 << 20
    for args in (["stats", bombed],
                 ["train", "--data", bombed, "--out", tmp_path / "r", *TINY_TRAIN]):
        cli.error(_limited(cli, *args), "train.npz: its arrays take about 4.0 GB", "once read")
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 6. tracebacks

def _tiny_dataset(directory, n_train):
    """A dataset of ``n_train`` training examples over three items."""
    prefixes = [[1], [2], [1, 2], [2, 1], [3], [1, 3]][:n_train]
    save_dataset(Dataset(Sessions.from_lists(prefixes, [2, 3, 3, 1, 1, 2][:n_train]),
                         Sessions.from_lists([[1], [2]], [2, 3]), 3, {}), directory)
    return directory


@pytest.mark.parametrize("args, fragment", [
    (["--valid-fraction", "1e-9"], "argument --valid-fraction: valid_fraction 1e-09 of the"),
    (["--valid-fraction", "0.99999999"],
     "valid_fraction 0.99999999 of the 299 training examples leaves none"),
    (["--valid-fraction", "0.2", "--select", "HR@020"], "argument --select"),
    (["--n-items", "100000000000000000000"], "argument --n-items: training needs"),
])
def test_6_bad_flags_are_refused_before_anything_is_written(cli, tiny_data, tmp_path, args,
                                                            fragment):
    out = tmp_path / "r"
    cli.error(cli("train", "--data", tiny_data, "--out", out, "--epochs", "1", "--hidden", "8",
                  "--no-baselines", "--bootstrap", "0", *args), fragment)
    assert not out.exists()


def test_6_a_dataset_too_small_for_a_validation_split_and_a_deep_config(cli, tmp_path):
    small = _tiny_dataset(tmp_path / "small", 4)
    out = tmp_path / "r"
    cli.error(cli("train", "--data", small, "--out", out, "--epochs", "1", "--hidden", "8",
                  "--no-baselines", "--bootstrap", "0"),
              "valid_fraction 0.1 of the 4 training examples holds none out")
    deep = tmp_path / "deep.json"
    deep.write_text('{"train": ' + "[" * 100_000 + "]" * 100_000 + "}")
    cli.error(cli("train", "--data", small, "--out", out, "--config", deep),
              "deep.json: nested more than 32 deep")
    assert not out.exists()


def _edit(run, case):
    """Hand-edit a copy of a finished run; return the command that reads it."""
    if case == "diagnostics version only":
        (run / "diagnostics.json").write_text('{"version": 1}')
    elif case == "ragged diagnostics":
        d = json.loads((run / "diagnostics.json").read_text())
        d["steps"]["loss"].append(1.0)
        (run / "diagnostics.json").write_text(json.dumps(d))
    elif case == "summary without history":
        s = json.loads((run / "summary.json").read_text())
        del s["history"]
        (run / "summary.json").write_text(json.dumps(s))
    elif case in ("negative sample seed", "boolean sample seed"):
        seed = -1 if case == "negative sample seed" else True
        (run / "data.json").write_text(json.dumps({"sample_seed": seed}))
        return ["evaluate", run, "--bootstrap", "0"]
    return ["plot", run]


@pytest.mark.parametrize("case, fragment", [
    ("diagnostics version only", "diagnostics.json: not an srsan-np diagnostics file (params"),
    ("ragged diagnostics", "diagnostics.json: not an srsan-np diagnostics file (steps"),
    ("summary without history", "summary.json: not a run's history"),
    ("negative sample seed", "data.json: not the description of a run's data"),
    ("boolean sample seed", "data.json: not the description of a run's data"),
])
def test_6_hand_edited_run_files_are_one_line_and_leave_no_figure(cli, finished, tmp_path, case,
                                                                   fragment):
    run = _copy(finished, tmp_path, "run")
    cli.error(cli(*_edit(run, case)), fragment)
    assert not list(run.rglob("*.png")) and not list(run.rglob("*.tmp"))


# --------------------------------------------------------------------------- 7. silently wrong

def test_7_what_used_to_be_silently_wrong_is_refused(cli, tiny_data, tmp_path):
    out = tmp_path / "r"
    cli.error(cli("train", "--data", tiny_data, "--out", out, "--valid-fraction", "0.2", "--lr",
                  "0.01", "0.0100000001"), "argument --lr", "differ in their first six digits")
    assert not out.exists()

    with np.load(tiny_data / "train.npz") as z:
        arrays = dict(z)
    for bad, fragment in [(2 ** 32 + 1, "outside the int32 range"),
                          (-(2 ** 32) + 5, "outside the int32 range"),
                          (1.7, "must be integers, got float64")]:
        data = tmp_path / "data"
        shutil.rmtree(data, ignore_errors=True)
        shutil.copytree(tiny_data, data)
        items = arrays["items"].astype(np.float64 if isinstance(bad, float) else np.int64)
        items[3] = bad
        np.savez(data / "train.npz", **{**arrays, "items": items})
        cli.error(cli("stats", data), "train.npz: not a prepared split", fragment)

    log = tmp_path / "log.csv"
    log.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                   "1;NA;5;1;2016-01-01\n 1_0;NA;6;2;2016-01-01\n")
    cli.error(preprocess(cli, log, tmp_path / "o"), "line 3", "session id ' 1_0' is not an integer")
    assert not (tmp_path / "o").exists()


# --------------------------------------------------------------------------- 8. existing folders

def test_8_an_existing_folder_is_kept_not_swapped(cli, tiny_data, tiny_log, tmp_path):
    inodes = {}
    for command in ("preprocess", "train"):
        out = tmp_path / command
        out.mkdir()
        out.chmod(0o700)
        inodes[command] = out.stat().st_ino
        proc = (preprocess(cli, tiny_log, out) if command == "preprocess"
                else train(cli, out, tiny_data))
        assert proc.returncode == 0, proc.stderr
        assert out.stat().st_ino == inodes[command] and stat.S_IMODE(out.stat().st_mode) == 0o700

    here = tmp_path / "preprocess"  # `--out .` from inside it: the shell stays in a folder
    proc = subprocess.run(f"{sys.executable} -m srsan_np preprocess --dataset diginetica "
                          f"--input {tiny_log} --out . --overwrite >/dev/null && pwd -P && ls",
                          shell=True, cwd=here, env=cli.env(), capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == [str(here.resolve()), "raw_ids.npy", "stats.json", "test.npz",
                                   "train.npz"]
    assert here.stat().st_ino == inodes["preprocess"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["preprocess", "train"]


def test_8_a_fill_killed_half_way_says_so_until_it_is_done_again(cli, tiny_log, tmp_path):
    out = tmp_path / "data"
    assert preprocess(cli, tiny_log, out).returncode == 0
    (out / "mine.txt").write_text("mine")
    # the marker's writes in place: the staged copy's, "being written" (2), the final one
    proc = preprocess(cli, tiny_log, out, "--overwrite",
                      env={"SRSAN_NP_TEST_KILL_AT": ".srsan-np:after:2"})
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    cli.error(cli("stats", out), "being replaced when srsan-np stopped", "--overwrite")
    assert preprocess(cli, tiny_log, out, "--overwrite").returncode == 0
    assert cli("stats", out).returncode == 0
    assert (out / "mine.txt").read_text() == "mine" and not list(out.glob(".*.tmp"))


# --------------------------------------------------------------------------- 9. the smaller ones

def test_9_a_write_that_fails_names_its_file_and_leaves_nothing(cli, tmp_path):
    out = tmp_path / "log.csv"

    def small_files():
        resource.setrlimit(resource.RLIMIT_FSIZE, (64 << 10, 64 << 10))
    proc = subprocess.run([sys.executable, "-m", "srsan_np", "generate", "--out", str(out)],
                          capture_output=True, text=True, env=cli.env(), preexec_fn=small_files)
    cli.error(proc, f"{out}: File too large")
    assert list(tmp_path.iterdir()) == []


def test_9_a_full_disk_names_the_file_in_out(cli, tmp_path):
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode:
        pytest.skip("cannot mount a small file system here (no unshare)")
    disk = tmp_path / "disk"
    disk.mkdir()
    script = (f'mount -t tmpfs -o size=256k tmpfs "{disk}" || exit 99; '
              f'{sys.executable} -m srsan_np generate --out "{disk}/log.csv"; rc=$?; '
              f'ls -A "{disk}"; exit $rc')
    proc = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True,
                          env=cli.env())
    if proc.returncode == 99:
        pytest.skip("cannot mount a tmpfs here")
    cli.error(proc, f"{disk}/log.csv: No space left on device")
    assert proc.stdout.strip() == ""  # no temporary file left behind


def test_9_inputs_that_are_not_files(cli, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cli.error(preprocess(cli, fifo, tmp_path / "o"), "fifo: not a regular file (a FIFO")
    cli.error(preprocess(cli, tmp_path, tmp_path / "o"), "a directory, not a click log")
    assert not (tmp_path / "o").exists()


def test_9_sigterm_exits_143_with_the_resume_hint(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "srsan_np", "train", "--data", str(tiny_data),
                             "--out", str(out), "--epochs", "200", *TINY_TRAIN],
                            env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    for line in proc.stdout:
        if line.startswith("epoch"):
            break
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 143, err
    assert "Traceback" not in err and "terminated" in err
    assert f"resume with --resume --out {out}" in err
    assert (out / "last.npz").exists() and not list(out.glob(".*.tmp"))


def test_9_the_advice_names_l2_and_a_folder_does_not_shadow_a_preset(cli, tiny_data, tmp_path):
    line = cli.error(train(cli, tmp_path / "r", tiny_data, "--l2", "1e30", epochs=2),
                     "training diverged", "lower --l2")
    assert "lower --lr" not in line
    (tmp_path / "sample").mkdir()  # a folder of the user's called like the preset
    proc = cli("train", "--data", tiny_data, "--out", tmp_path / "s", "--config", "sample",
               "--epochs", "1", "--hidden", "8", "--no-baselines", "--bootstrap", "0",
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "srsan_np/configs/sample.json" in proc.stdout
