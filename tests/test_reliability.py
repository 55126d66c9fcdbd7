"""Issue 16's defects, one test each, through the command line in a subprocess: the exit code,
the one-line message, and what is left on disk."""

import gzip
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import ROOT, TINY_TRAIN


def tree(directory):
    """``{relative path: bytes}`` of every file under ``directory`` (the lock's pid left out)."""
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(Path(directory).rglob("*"))
            if p.is_file() and p.name != ".lock"}


def train(cli, out, data, *more, epochs=2, **kw):
    return cli("train", "--data", data, "--out", out, "--epochs", epochs, *TINY_TRAIN, *more, **kw)


@pytest.fixture
def run(cli, tiny_data, tmp_path):
    """A finished two-epoch run directory."""
    out = tmp_path / "run"
    assert train(cli, out, tiny_data).returncode == 0
    return out


# --------------------------------------------------------------------------- 1. data loss

def test_1_preprocess_never_replaces_what_it_did_not_write(cli, tiny_log, tmp_path):
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "ideas.txt").write_text("mine")
    cli.error(cli("preprocess", "--dataset", "diginetica", "--input", tiny_log, "--out", notes,
                  "--overwrite"), "not written by srsan-np")
    assert tree(notes) == {"ideas.txt": b"mine"}

    proj = tmp_path / "proj"
    proj.mkdir()
    raw = proj / "raw.csv"
    shutil.copy(tiny_log, raw)
    cli.error(cli("preprocess", "--dataset", "diginetica", "--input", raw, "--out", proj),
              "holds the input")
    cli.error(cli("preprocess", "--dataset", "diginetica", "--input", raw, "--out", raw),
              "holds the input")
    assert tree(proj) == {"raw.csv": tiny_log.read_bytes()}

    out = tmp_path / "prepared"
    assert cli("preprocess", "--dataset", "diginetica", "--input", raw, "--out", out).returncode == 0
    before = tree(out)
    cli.error(cli("preprocess", "--dataset", "diginetica", "--input", raw, "--out", out),
              "already holds a dataset", "--overwrite")
    assert tree(out) == before
    assert cli("preprocess", "--dataset", "diginetica", "--input", raw, "--out", out,
               "--overwrite").returncode == 0
    assert tree(out) == before and sorted(p.name for p in tmp_path.iterdir()) == ["notes", "prepared", "proj"]

    cli.error(cli("generate", "--out", raw), "exists", "--overwrite")
    assert raw.read_bytes() == tiny_log.read_bytes()


# --------------------------------------------------------------------------- 2. the segfault

def test_2_an_impossible_timestamp_in_a_large_log_is_one_line(cli, tmp_path):
    rows = [f"{1 + k // 4},2016-04-{1 + k % 28:02d}T10:00:00.000Z,{214536500 + k % 50},0"
            for k in range(3000)]
    rows[1234] = "309,2016-13-14T00:00:00Z,214536502,0"
    log = tmp_path / "clicks.dat"
    log.write_text("\n".join(rows) + "\n")
    cli.error(cli("preprocess", "--dataset", "yoochoose", "--input", log, "--out", tmp_path / "o"),
              "line 1235", "2016-13-14T00:00:00Z", "timestamp")
    cli.error(cli("train", "--dataset", "yoochoose", "--input", log, "--out", tmp_path / "r"),
              "line 1235")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clicks.dat"]


# --------------------------------------------------------------------------- 3. tracebacks

def _damage(run_dir, data_dir, case):
    """Damage a copy of a run or of a dataset; return the command that must fail cleanly."""
    if case == "truncated checkpoint":
        for name in ("last.npz", "best.npz"):
            path = run_dir / name
            path.write_bytes(path.read_bytes()[:300])
        return ["evaluate", run_dir]
    if case == "checkpoint is a directory":
        (run_dir / "last.npz").unlink()
        (run_dir / "best.npz").unlink()
        (run_dir / "best.npz").mkdir()
        return ["recommend", run_dir, "1", "2"]
    if case == "resume a corrupt checkpoint":
        (run_dir / "last.npz").write_bytes(b"PK\x03\x04 not really")
        return ["train", "--resume", "--data", data_dir, "--out", run_dir, "--epochs", "2", *TINY_TRAIN]
    if case == "junk data.json":
        (run_dir / "data.json").write_text('["not", "a", "source"]')
        return ["evaluate", run_dir]
    if case == "truncated train.npz":
        path = data_dir / "train.npz"
        path.write_bytes(path.read_bytes()[:200])
        return ["stats", data_dir]
    if case == "stats.json holds a list":
        (data_dir / "stats.json").write_text("[1, 2]")
        return ["stats", data_dir]
    if case == "empty split":
        np.savez(data_dir / "test.npz", items=np.zeros(0, np.int32), offsets=np.zeros(1, np.int64),
                 targets=np.zeros(0, np.int32), n_items=np.int64(62))
        return ["baselines", "--data", data_dir]
    raise AssertionError(case)


@pytest.mark.parametrize("case, fragment", [
    ("truncated checkpoint", "not a readable srsan-np checkpoint"),
    ("checkpoint is a directory", "best.npz"),
    ("resume a corrupt checkpoint", "last.npz"),
    ("junk data.json", "data.json"),
    ("truncated train.npz", "train.npz: not a prepared split"),
    ("stats.json holds a list", "stats.json: expected a JSON object"),
    ("empty split", "test.npz: no examples"),
])
def test_3_damaged_files_are_one_line(cli, run, tiny_data, tmp_path, case, fragment):
    data = tmp_path / "data-copy"
    shutil.copytree(tiny_data, data)
    cli.error(cli(*_damage(run, data, case)), fragment)


def _config(tmp_path, body, raw=False):
    path = tmp_path / "c.json"
    path.write_bytes(body if raw else json.dumps(body).encode())
    return path


@pytest.mark.parametrize("args, fragment", [
    (["--seed", "-1"], "argument --seed: TrainConfig: seed must be >= 0"),
    (["--sample-seed", "-1"], "argument --sample-seed"),
    (["--bootstrap", "-5"], "argument --bootstrap"),
    (["--heads", "0"], "argument --heads"),
    (["--epochs", "2.5"], "argument --epochs"),
    ({"train": {"epochs": 2.5}}, "c.json: TrainConfig: epochs must be an integer"),
    ({"train": {"batch_size": 1.5}}, "c.json: TrainConfig: batch_size must be an integer"),
    ({"model": []}, "c.json: section 'model' must be a JSON object"),
    ({"model": {"n_items": "many"}}, "c.json: model.n_items must be an integer"),
    ({"model": {"mode": "sequence", "positions": True, "max_len": 2}}, "max_len 2 is shorter"),
    ({"train": {"select": 5}}, "select must be a string"),
    (b"\xff\xfe{}", "c.json: not UTF-8 text"),
])
def test_3_bad_flags_and_configs_are_refused_before_anything_is_written(cli, tiny_data, tmp_path,
                                                                        args, fragment):
    if not isinstance(args, list):
        args = ["--config", _config(tmp_path, args, raw=isinstance(args, bytes))]
    out = tmp_path / "r"
    cli.error(cli("train", "--data", tiny_data, "--out", out, "--epochs", "1", *TINY_TRAIN[:-2],
                  *args), fragment)
    assert not out.exists()


def test_3_ids_beyond_int64(cli, run, tmp_path):
    log = tmp_path / "big.csv"
    log.write_text("session_id;user_id;item_id;timeframe;eventdate\n"
                   "1;NA;99999999999999999999;1;2016-01-01\n")
    cli.error(cli("preprocess", "--dataset", "diginetica", "--input", log, "--out", tmp_path / "o"),
              "line 2", "int64")
    cli.error(cli("recommend", run, "1", "99999999999999999999"), "argument ITEM")


# --------------------------------------------------------------------------- 4. resume

def test_4_a_refused_resume_changes_nothing(cli, run, tiny_data, tmp_path):
    before = tree(run)
    cli.error(train(cli, run, tiny_data, "--resume", "--hidden", "16"),
              "cannot resume", "model.hidden 8 -> 16")
    assert tree(run) == before
    assert cli("evaluate", run, "--bootstrap", "0").returncode == 0

    other = tmp_path / "other"  # the same item count, other examples
    shutil.copytree(tiny_data, other)
    with np.load(other / "test.npz") as z:
        arrays = dict(z)
    arrays["targets"] = arrays["targets"][::-1].copy()
    np.savez(other / "test.npz", **arrays)
    cli.error(train(cli, run, other, "--resume"), "fingerprint")
    assert tree(run) == before


# --------------------------------------------------------------------------- 5. checkpoint pair

def test_5_killed_between_the_two_checkpoints_the_pair_stays_consistent(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    killed = train(cli, out, tiny_data, epochs=3, env={"SRSAN_NP_TEST_KILL_AT": "best.npz:before:2"})
    assert killed.returncode == -signal.SIGKILL
    ev = cli("evaluate", out, "--bootstrap", "0")
    assert ev.returncode == 0 and "(best checkpoint, epoch 1)" in ev.stdout, ev.stdout
    resumed = train(cli, out, tiny_data, "--resume", epochs=3)
    assert resumed.returncode == 0 and "resumed from" in resumed.stdout and "after epoch 1" in resumed.stdout
    assert "SR-SAN at epoch 2" in resumed.stdout


# --------------------------------------------------------------------------- 6. the lock

def test_6_a_second_run_on_a_locked_directory_is_refused(cli, run, tiny_data):
    from srsan_np.files import lock

    before = tree(run)
    # the holder keeps the lock until it is killed, however long the machine takes meanwhile
    holder = subprocess.Popen([sys.executable, "-c", "import sys; from srsan_np.files import "
                               "lock; l = lock(sys.argv[1]); l.__enter__(); print('held', "
                               "flush=True); sys.stdin.read()", str(run)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                              env=cli.env())
    try:
        assert holder.stdout.readline().strip() == "held"
        cli.error(train(cli, run, tiny_data, "--resume"), "in use", f"pid {holder.pid}")
        assert tree(run) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is dead: its lock is taken over
    assert train(cli, run, tiny_data, "--resume").returncode == 0
    with lock(run):
        assert (run / ".lock").read_text().strip() == str(os.getpid())


# --------------------------------------------------------------------------- 7. read-only install

def _read_only(command, folders):
    """``command`` with ``folders`` not writable: ``chmod`` for a user, a read-only bind mount
    in a private mount namespace for root (whom permissions do not stop)."""
    if os.getuid() != 0:
        for folder in folders:
            for p in (folder, *folder.rglob("*")):
                p.chmod(stat.S_IMODE(p.stat().st_mode) & ~0o222)
        return command
    if not shutil.which("unshare") or subprocess.run(["unshare", "-rm", "true"]).returncode:
        pytest.skip("root without unshare: cannot make a folder read-only")
    script = ('for d in "$@"; do [ "$d" = -- ] && break; mount --bind "$d" "$d" && '
              'mount -o remount,ro,bind "$d" "$d" || exit 99; shift; done; shift; exec "$@"')
    return ["unshare", "-rm", "sh", "-c", script, "sh", *map(str, folders), "--", *command]


def test_7_a_read_only_install_works_with_one_warning(cli, tiny_data, tmp_path):
    package = tmp_path / "ro"
    shutil.copytree(ROOT / "srsan_np", package / "srsan_np", ignore=shutil.ignore_patterns("__pycache__"))
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = cli.env(PYTHONPATH=str(package), HOME=str(home), XDG_CACHE_HOME=None, NUMBA_CACHE_DIR=None,
                  TMPDIR=str(tmp))
    try:
        for args in (["--help"], ["stats", tiny_data]):
            command = _read_only([sys.executable, "-m", "srsan_np", *map(str, args)], [package, home])
            proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300,
                                  cwd=tmp_path)  # not the checkout: `-m` imports from the cwd
            assert proc.returncode == 0, proc.stderr
            assert "Traceback" not in proc.stderr
            warnings = [line for line in proc.stderr.splitlines() if "warning" in line]
            assert len(warnings) == 1 and "Numba's cache" in warnings[0], proc.stderr
        assert list(tmp.glob("srsan-np-numba-cache-*"))
        if os.getuid() != 0:
            return  # a user cannot take away every temporary folder (as root: bind mounts)
        # no writable temporary folder either: no cache at all, and still one warning
        temporary = [tmp] + [Path(d) for d in ("/tmp", "/var/tmp", "/usr/tmp") if Path(d).is_dir()]
        command = _read_only([sys.executable, "-m", "srsan_np", "stats", str(tiny_data)],
                             [package, home, *temporary])
        proc = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
        assert [line for line in proc.stderr.splitlines() if "warning" in line] == [
            "srsan-np: warning: cannot write Numba's cache beside the package or in the user cache "
            "folder; compiled code is not cached (each command compiles what it uses)"]
    finally:
        for p in (package, *package.rglob("*"), home, tmp, *tmp.rglob("*")):
            p.chmod(0o755)


# --------------------------------------------------------------------------- 8. divergence

def test_8_divergence_stops_with_advice_and_keeps_a_finite_state(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    line = cli.error(train(cli, out, tiny_data, "--lr", "1e6", epochs=3), "training diverged",
                     "lower --lr")
    assert "nothing was kept" in line or "last good state" in line
    if (out / "last.npz").exists():
        with np.load(out / "last.npz") as z:
            assert all(np.isfinite(z[k]).all() for k in z.files if z[k].dtype.kind == "f")


# --------------------------------------------------------------------------- 9. silent overwrite

def test_9_train_into_an_existing_run_needs_resume_or_overwrite(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    assert train(cli, out, tiny_data, "--valid-fraction", "0.2", "--lr", "1e-3", "3e-3").returncode == 0
    assert sorted(p.name for p in out.glob("lr-*")) == ["lr-0.001", "lr-0.003"]
    before = tree(out)
    cli.error(train(cli, out, tiny_data), "already holds a training run", "--resume", "--overwrite")
    assert tree(out) == before
    assert train(cli, out, tiny_data, "--overwrite").returncode == 0
    assert not list(out.glob("lr-*")) and (out / ".srsan-np").exists()


# --------------------------------------------------------------------------- 10. messages and modes

def test_10_compressed_and_binary_inputs_get_a_short_message(cli, tiny_log, tmp_path):
    packed = tmp_path / "log.csv.gz"
    packed.write_bytes(gzip.compress(tiny_log.read_bytes()))
    line = cli.error(cli("preprocess", "--dataset", "diginetica", "--input", packed, "--out",
                         tmp_path / "o"), "gzip")
    assert len(line) < 300
    binary = tmp_path / "log.bin"
    binary.write_bytes(bytes(range(256)) * 4000)
    line = cli.error(cli("preprocess", "--dataset", "yoochoose", "--input", binary, "--out",
                         tmp_path / "o"))
    assert len(line) < 300


def test_10_a_byte_order_mark_is_accepted(cli, tiny_log, tmp_path):
    bom = tmp_path / "bom.csv"
    bom.write_bytes(b"\xef\xbb\xbf" + tiny_log.read_bytes())
    assert cli("preprocess", "--dataset", "diginetica", "--input", bom, "--out", tmp_path / "a").returncode == 0
    plain = "".join(f"{1 + k // 5},2016-04-{1 + k // 500:02d}T10:00:{k % 60:02d}.000Z,{1 + k % 7},0\n"
                    for k in range(6000))
    dat = tmp_path / "bom.dat"
    dat.write_bytes(b"\xef\xbb\xbf" + plain.encode())
    proc = cli("preprocess", "--dataset", "yoochoose", "--input", dat, "--out", tmp_path / "b")
    assert proc.returncode == 0, proc.stderr


def test_10_a_bad_flag_is_blamed_on_the_flag_not_the_preset(cli, tmp_path):
    line = cli.error(cli("train", "--heads", "0", "--out", tmp_path / "r"), "argument --heads")
    assert "sample.json" not in line


@pytest.mark.parametrize("umask", [0o022, 0o077])
def test_10_files_and_folders_follow_the_umask(cli, tiny_data, tmp_path, umask):
    out = tmp_path / "run"
    proc = subprocess.run([sys.executable, "-m", "srsan_np", "train", "--data", str(tiny_data),
                           "--out", str(out), "--epochs", "1", *TINY_TRAIN],
                          env=cli.env(), capture_output=True, preexec_fn=lambda: os.umask(umask))
    assert proc.returncode == 0
    for args in (["generate", "--out", tmp_path / "g.csv"],
                 ["preprocess", "--dataset", "diginetica", "--input", tmp_path / "g.csv", "--out",
                  tmp_path / "prepared"]):
        proc = subprocess.run([sys.executable, "-m", "srsan_np", *map(str, args)], env=cli.env(),
                              capture_output=True, preexec_fn=lambda: os.umask(umask))
        assert proc.returncode == 0
    prepared = tmp_path / "prepared"
    for path in [*out.iterdir(), out, tmp_path / "g.csv", *prepared.iterdir(), prepared]:
        mode = stat.S_IMODE(path.stat().st_mode)
        expected = (0o777 if path.is_dir() else 0o666) & ~umask
        assert mode == expected, (path, oct(mode))


def test_10_out_dot_leaves_nothing_beside_it(cli, tiny_log, tmp_path):
    out = tmp_path / "prepared"
    assert cli("preprocess", "--dataset", "diginetica", "--input", tiny_log, "--out", out).returncode == 0
    assert cli("preprocess", "--dataset", "diginetica", "--input", tiny_log, "--out", ".",
               "--overwrite", cwd=out).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["prepared"]


def test_10_a_killed_write_leaves_no_temporary_file_after_the_next_start(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = train(cli, out, tiny_data, env={"SRSAN_NP_TEST_KILL_AT": "last.npz:during:1"})
    assert proc.returncode == -signal.SIGKILL
    assert len(list(out.glob(".last.npz.*.tmp"))) == 1
    assert train(cli, out, tiny_data, "--resume").returncode == 0
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


@pytest.mark.parametrize("stop", [KeyboardInterrupt, SystemExit])
def test_10_a_signal_between_writing_and_renaming_leaves_no_temporary_file(tmp_path, monkeypatch,
                                                                          stop):
    """Ctrl-C or SIGTERM (the CLI raises on both) arriving after a temporary file is written
    and closed, before its rename: the target keeps what it held and no temporary is left.
    CI once found a ``.train.log.*.tmp`` after a SIGTERM landed in that gap."""
    from srsan_np import files

    def interrupted(name, point):
        if point == "during":
            raise stop

    monkeypatch.setattr(files, "_kill_point", interrupted)
    (tmp_path / "train.log").write_text("what it held")
    with pytest.raises(stop):
        files.write_json(tmp_path / "train.log", {"new": 1})
    with pytest.raises(stop):
        files._create(tmp_path / "new.json", b"{}")
    assert (tmp_path / "train.log").read_text() == "what it held"
    assert [p.name for p in tmp_path.iterdir()] == ["train.log"]


def test_10_a_signal_right_after_the_temporary_is_created_leaves_none(tmp_path, monkeypatch):
    """The same, the signal raised as the temporary file comes into existence (where a test
    sending SIGTERM just after an epoch line landed most of the time)."""
    from srsan_np import files
    real_open = os.open

    def open_then_interrupted(*args, **kwargs):
        os.close(real_open(*args, **kwargs))
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "open", open_then_interrupted)
    with pytest.raises(KeyboardInterrupt):
        files.write_json(tmp_path / "train.log", {"new": 1})
    monkeypatch.undo()
    assert list(tmp_path.iterdir()) == []


def test_ctrl_c_exits_130_with_the_resume_hint(cli, tiny_data, tmp_path):
    out = tmp_path / "run"
    proc = subprocess.Popen([sys.executable, "-m", "srsan_np", "train", "--data", str(tiny_data),
                             "--out", str(out), "--epochs", "200", *TINY_TRAIN],
                            env=cli.env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("epoch"):
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted" in err and "resume with --resume" in err
    assert (out / "last.npz").exists()


def test_a_run_from_before_markers_still_resumes(cli, run, tiny_data):
    (run / ".srsan-np").unlink()
    proc = train(cli, run, tiny_data, "--resume")
    assert proc.returncode == 0, proc.stderr
    (run / ".srsan-np").unlink()
    (run / "data.json").unlink()  # no longer the full layout: not recognised as a run
    cli.error(train(cli, run, tiny_data, "--overwrite"), "not written by srsan-np")
