"""Where the system has no ``fcntl`` (Windows): the package, its data, plots and training
modules import, and a run's lock still refuses a second holder (the pid-file lock, which
takes over the lock of a holder that is gone)."""

import subprocess
import sys

from conftest import ROOT

HIDE_FCNTL = """
import sys
class _NoFcntl:
    def find_spec(self, name, path=None, target=None):
        if name == "fcntl":
            raise ImportError("no fcntl here")
sys.modules.pop("fcntl", None)
sys.meta_path.insert(0, _NoFcntl())
"""


def _python(code, *args, **kw):
    return subprocess.run([sys.executable, "-c", HIDE_FCNTL + code, *map(str, args)],
                          capture_output=True, text=True, cwd=ROOT, timeout=300, **kw)


def test_imports_without_fcntl():
    proc = _python("import srsan_np.data, srsan_np.plots, srsan_np.train, srsan_np.run\n"
                   "print('imported')\n"
                   "try:\n    import fcntl\nexcept ImportError:\n    print('no fcntl')")
    assert proc.stdout.splitlines() == ["imported", "no fcntl"], proc.stderr


def test_the_lock_refuses_a_second_holder_without_fcntl(tmp_path):
    holder = subprocess.Popen(  # holds the lock until it is killed
        [sys.executable, "-c", HIDE_FCNTL + "from srsan_np.files import lock\n"
         "l = lock(sys.argv[1]); l.__enter__(); print('held', flush=True)\nsys.stdin.read()",
         str(tmp_path)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        assert holder.stdout.readline().strip() == "held"
        second = _python("from srsan_np.files import lock\nfrom srsan_np.errors import DataError\n"
                         "try:\n    lock(sys.argv[1]).__enter__()\nexcept DataError as e:\n"
                         "    print(e)\n", tmp_path)
        assert f"in use by another srsan-np run (pid {holder.pid})" in second.stdout, second
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone (killed: its pid file is left behind): the lock is taken over, and
    # released on exit
    taken = _python("from srsan_np.files import lock\nimport os, pathlib\n"
                    "with lock(sys.argv[1]):\n"
                    "    print(pathlib.Path(sys.argv[1], '.lock').read_text().strip() == str(os.getpid()))\n"
                    "print(pathlib.Path(sys.argv[1], '.lock').exists())", tmp_path)
    assert taken.stdout.split() == ["True", "False"], taken
