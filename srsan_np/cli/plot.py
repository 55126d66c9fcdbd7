"""``plot``: a run's figures as PNG files."""

from __future__ import annotations

from pathlib import Path

from srsan_np.errors import DataError


def _run(args) -> int:
    from srsan_np.figures import run_figures
    from srsan_np.files import claim
    from srsan_np.run import Run

    if not args.run_dir.is_dir():
        raise DataError(f"{args.run_dir}: no such run directory")
    top = Run(args.run_dir)
    run = top.plotted()
    if run.directory != args.run_dir:
        print(f"{args.run_dir} holds one run per learning rate; plotting {run.directory}")
    figures = run_figures(top)
    if not figures:
        raise DataError(f"{run.directory}: nothing to plot yet (no epoch finished, no diagnostics)")
    out = args.out or args.run_dir / "plots"
    if args.out is None and out.is_symlink():  # inside the run: never followed
        raise DataError(f"{out}: a symbolic link srsan-np did not make; remove it, or name "
                        f"the folder to draw into with --out")
    claim(out, "plots", list(figures))
    for name, draw in figures.items():
        draw(out / name)
        print(out / name)
    return 0


def add(sub) -> None:
    p = sub.add_parser("plot", help="draw a run: curves, diagnostics, attention maps (PNG)",
                       description="Write PNG files of a training run, finished or still "
                                   "training: the training curves (loss, validation and test "
                                   "metrics, learning rate, the selected epoch dashed), the "
                                   "training diagnostics (loss per step, gradient norms and "
                                   "update ratios, attention entropy and padding mass) and the "
                                   "attention maps of a few test examples. Prints the paths.")
    p.add_argument("run_dir", type=Path, help="a training run directory")
    p.add_argument("--out", type=Path, help="the directory for the PNG files (default: "
                   "RUN_DIR/plots); a file in it that plot did not write is never replaced")
    p.set_defaults(func=_run)
