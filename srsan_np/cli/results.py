"""``evaluate`` and ``recommend``: what a trained run does."""

from __future__ import annotations

from pathlib import Path

from srsan_np.errors import DataError

from .common import INT64_MAX, add_data_args, data_source, gives_data, integer


def _evaluate(args) -> int:
    from srsan_np.report import results_table
    from srsan_np.run import Run

    run = Run(args.run_dir)
    params, config, meta = run.load_model(args.which)
    dataset = data_source(args).load() if gives_data(args) else run.load_data()
    if dataset.n_items > config.n_items:
        raise DataError(f"{args.run_dir}: the model scores {config.n_items} items, the data has "
                        f"{dataset.n_items}: not the data it was trained on")
    epoch = meta["best"]["epoch"] if args.which == "best" else meta["epoch"]
    print(f"{args.run_dir} ({args.which} checkpoint, epoch {epoch}):")
    print(results_table(params, config, dataset, tuple(meta["config"]["train"]["ks"]),
                        args.bootstrap, args.kernels, baselines=args.baselines))
    return 0


def add_evaluate(sub) -> None:
    p = sub.add_parser("evaluate", help="test metrics of a trained run",
                       description="HR@K, MRR@K, NDCG@K over the full catalogue (ties ranked "
                                   "pessimistically), with bootstrap intervals.")
    p.add_argument("run_dir", type=Path, help="a training run directory")
    add_data_args(p)
    p.add_argument("--which", choices=["best", "last"], default="best",
                   help="the selected epoch's weights or the last epoch's (default: best)")
    p.add_argument("--baselines", action="store_true", help="also evaluate the baselines (default: off)")
    p.add_argument("--kernels", choices=["fast", "reference"], default="fast",
                   help="the kernel set that scores: fast (default) or the textbook ops")
    p.add_argument("--bootstrap", type=integer(0), default=1000, metavar="N",
                   help="bootstrap resamples for the uncertainty (0: none; default 1000)")
    p.set_defaults(func=_evaluate)


def _recommend(args) -> int:
    from srsan_np.recommend import Recommender

    rec = Recommender.from_run(args.run_dir, args.which)
    try:
        items, scores = rec.recommend(args.items, args.k, drop_unknown=args.drop_unknown,
                                      raw=args.raw)
    except ValueError as err:
        raise DataError(str(err)) from err
    for rank, (item, score) in enumerate(zip(items, scores), 1):
        print(f"{rank:3d}  item {item:>7d}  score {score: .4f}")
    return 0


def add_recommend(sub) -> None:
    p = sub.add_parser("recommend", help="the top K next items of a session",
                       description="Recommend the next items after the session ITEM ITEM ... "
                                   "(item ids as numbered by the preprocessing, oldest first).")
    p.add_argument("run_dir", type=Path, help="a training run directory")
    p.add_argument("items", type=integer(-INT64_MAX - 1), nargs="+", metavar="ITEM",
                   help="the session's clicks, oldest first")
    p.add_argument("-k", type=integer(1), default=20, help="how many items (default: 20)")
    p.add_argument("--which", choices=["best", "last"], default="best",
                   help="the selected epoch's weights or the last epoch's (default: best)")
    p.add_argument("--drop-unknown", action="store_true", help="ignore item ids the model does not know (default: refused)")
    p.add_argument("--raw", action="store_true",
                   help="the ITEMs, and the recommendations, are the raw log's item ids (default: "
                        "the ids the preprocessing gave)")
    p.set_defaults(func=_recommend)
