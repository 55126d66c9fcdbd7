"""Benchmark: generate a Diginetica-scale log (and optionally a 33-million-row Yoochoose
one), then time ``srsan-np preprocess`` on it and measure its peak memory.

The preprocessing runs in a child process, so its peak resident set size
(``ru_maxrss`` of the child) is its own, not the generator's.

    python benchmarks/bench_preprocess.py                       # diginetica preset
    python benchmarks/bench_preprocess.py --yoochoose-rows 33000000 --skip-diginetica

Prints a table and writes the figures as JSON (``--json``).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from srsan_np.data.generate import PRESETS, scaled, write_diginetica_csv, write_yoochoose_dat

# Yoochoose's clicks file: 33 M rows, 9.2 M sessions (3.57 clicks each), ~52 k items kept.
YOOCHOOSE_CLICKS_PER_SESSION = 3.57


def _preprocess_in_child(dataset: str, path: Path, out: Path, fraction=None) -> dict:
    cmd = [sys.executable, "-m", "srsan_np", "preprocess", "--dataset", dataset,
           "--input", str(path), "--out", str(out)]
    if fraction:
        cmd += ["--fraction", str(fraction)]
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - start
    # ru_maxrss of RUSAGE_CHILDREN is the largest peak among waited-for children (KiB on
    # Linux); with one case per run that is this child's. Several cases report the max so far.
    peak_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    stats = json.loads((out / "stats.json").read_text())
    return {"seconds": round(seconds, 1), "peak_rss_mb": round(peak_mb), **{
        k: stats[k] for k in ("n_rows", "n_items", "n_train", "n_test", "avg_length")}}


def _run(name, write, dataset, workdir: Path, fraction=None) -> dict:
    path = workdir / f"{name}.log"
    start = time.perf_counter()
    write(path)
    generate_s = time.perf_counter() - start
    result = _preprocess_in_child(dataset, path, workdir / f"{name}.prepared", fraction)
    result = {"case": name, "file_mb": round(path.stat().st_size / 2**20), "generate_seconds": round(generate_s, 1),
              **result}
    path.unlink()
    return result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--yoochoose-rows", type=int, default=0,
                        help="also benchmark a generated Yoochoose-format file of about this many rows")
    parser.add_argument("--fraction", type=int, choices=[4, 64], default=4,
                        help="the Yoochoose fraction to prepare (default 4)")
    parser.add_argument("--skip-diginetica", action="store_true")
    parser.add_argument("--workdir", type=Path, help="where to write the logs (default: a temp dir)")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()

    results = []
    with tempfile.TemporaryDirectory(dir=args.workdir) as tmp:
        tmp = Path(tmp)
        if not args.skip_diginetica:
            results.append(_run("diginetica",
                                lambda p: write_diginetica_csv(PRESETS["diginetica"], p, args.seed),
                                "diginetica", tmp))
        if args.yoochoose_rows:
            config = scaled(PRESETS["diginetica"], int(args.yoochoose_rows / YOOCHOOSE_CLICKS_PER_SESSION),
                            n_items=70_000, n_days=183, mean_extra_clicks=YOOCHOOSE_CLICKS_PER_SESSION - 1)
            results.append(_run(f"yoochoose1_{args.fraction}",
                                lambda p: write_yoochoose_dat(config, p, args.seed),
                                "yoochoose", tmp, args.fraction))

    header = ["case", "file_mb", "n_rows", "generate_seconds", "seconds", "peak_rss_mb",
              "n_items", "n_train", "n_test", "avg_length"]
    print(" | ".join(header))
    for r in results:
        print(" | ".join(f"{r[h]:.3f}" if isinstance(r[h], float) and h == "avg_length" else str(r[h])
                         for h in header))
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
