"""`lss-pipeline` command line: ``synth`` and ``contact-sheet`` (more subcommands register here).

Each subcommand is a pair: ``add_<name>(subparsers)`` declares its arguments and binds
``func``; ``func(args) -> int`` does the work. Add a pair to ``SUBCOMMANDS`` to extend.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lss_pipeline.core.team.commands import add_team


def _cmd_synth(args: argparse.Namespace) -> int:
    from lss_pipeline.core.synth import generate_dataset

    def progress(done: int, total: int) -> None:
        if not args.quiet and (done == total or done % 10 == 0):
            print(f"  studies {done}/{total}", file=sys.stderr)

    options = {
        k: v
        for k, v in {
            "rows": args.rows,
            "sagittal_slices": args.sagittal_slices,
            "axial_slices_per_level": args.axial_slices_per_level,
        }.items()
        if v is not None
    }
    summary = generate_dataset(
        args.out,
        n_studies=args.studies,
        seed=args.seed,
        faults=args.faults,
        n_test_studies=args.test_studies,
        overwrite=args.overwrite,
        workers=args.workers,
        progress=progress,
        sites=args.sites,
        **options,
    )
    print(
        f"wrote {summary.n_train_studies} train + {summary.n_test_studies} test studies, "
        f"{summary.n_instances} DICOM files, {summary.n_coordinates} coordinates, "
        f"{len(summary.faults)} planted faults to {summary.out_dir} in {summary.seconds:.1f} s"
    )
    return 0


def add_synth(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("synth", help="write a synthetic RSNA 2024 lumbar-spine dataset")
    p.add_argument("--out", required=True, type=Path, help="output folder (the RSNA raw folder)")
    p.add_argument("--studies", type=int, default=60, help="training studies (default 60)")
    p.add_argument("--test-studies", type=int, default=2, help="unlabelled test studies (default 2)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--faults", action="store_true", help="plant the real dataset's faults at low rates")
    p.add_argument(
        "--sites",
        type=int,
        default=0,
        help="spread studies over this many imaging sites (1-8): "
        "per-series orientation, order, matrix, spacing, stacks and transfer syntax, grades "
        "correlated like the real set (default 0: one plain protocol)",
    )
    p.add_argument("--rows", type=int, default=None, help="image side in pixels (default 256)")
    p.add_argument(
        "--sagittal-slices", type=int, default=None, help="slices per sagittal series (default 17)"
    )
    p.add_argument(
        "--axial-slices-per-level", type=int, default=None, help="axial slices per disc level (default 5)"
    )
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_cmd_synth)


def _cmd_contact_sheet(args: argparse.Namespace) -> int:
    from lss_pipeline.core.synth import render_contact_sheet

    out = render_contact_sheet(args.data, study_id=args.study, out_png=args.out)
    print(f"wrote {out}")
    return 0


def add_contact_sheet(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("contact-sheet", help="PNG of one study's labelled instances with the points drawn")
    p.add_argument("--data", required=True, type=Path, help="RSNA folder (real or synthetic)")
    p.add_argument("--study", type=int, default=None, help="study id (default: a study with severe labels)")
    p.add_argument("--out", required=True, type=Path, help="PNG to write")
    p.set_defaults(func=_cmd_contact_sheet)


def _cmd_demo(args: argparse.Namespace) -> int:
    # Imported here: the Dagster layer is heavy and `synth` does not need it.
    from lss_pipeline.core.settings import Settings
    from lss_pipeline.demo import run_demo, summary_lines

    settings = Settings.from_env()
    print(f"lss_pipeline demo: profile {settings.profile_name}, data {settings.data_dir}", flush=True)
    given = (("n_studies", args.studies), ("seed", args.seed), ("sites", args.sites))
    chosen = {k: v for k, v in given if v is not None}
    outcome = run_demo(settings, **chosen, say=lambda m: print(m, flush=True))
    print()
    print("\n".join(summary_lines(settings, outcome["seconds"])))
    return 0


def add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo",
        help="synthetic data when none is configured, every asset in dependency order, a summary",
    )
    p.add_argument(
        "--studies", type=int, default=None, help="studies of the synthetic set, if one is made (default 100)"
    )
    p.add_argument("--seed", type=int, default=None, help="seed of the synthetic set (default 0)")
    p.add_argument(
        "--sites",
        type=int,
        default=None,
        help="the synthetic set, if one is made, spread over this many imaging sites (1-8; see "
        "`lss-pipeline synth --sites`; default 0: one plain protocol)",
    )
    p.set_defaults(func=_cmd_demo)


def _cmd_summary(args: argparse.Namespace) -> int:
    from lss_pipeline.core.settings import Settings
    from lss_pipeline.demo import summary_lines

    print("\n".join(summary_lines(Settings.from_env())))
    return 0


def add_summary(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("summary", help="where the report is, the champion per category, the UI commands")
    p.set_defaults(func=_cmd_summary)


def _cmd_predict(args: argparse.Namespace) -> int:
    from lss_pipeline.core.predict.folder import predict_folder
    from lss_pipeline.core.predict.run import load_models
    from lss_pipeline.core.predict.study import NotAStudyError
    from lss_pipeline.core.settings import Settings

    settings = Settings.from_env()
    models = load_models(settings, grader_ref=args.grader, localiser_ref=args.localizer)
    if not models.localisers:
        where = f"{settings.mlflow_tracking_uri} or {settings.paths.localisers_dir}"
        print(f"error: no level localiser in {where}: run `lss-pipeline demo` first", file=sys.stderr)
        return 1
    try:
        result = predict_folder(args.study, args.out, settings, study_id=args.study_id,
                                series_csv=args.series_csv, models=models)  # fmt: skip
    except NotAStudyError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    table = result.grades.table
    graded = int(table["graded"].sum())
    print(f"study {result.scan.study_id}: {graded} of {table.height} grades given")
    for message in result.messages:
        print(f"  note: {message}")
    timings = ", ".join(f"{k.removesuffix('_s')} {v:.2f} s" for k, v in result.grades.timings.items())
    print(f"  time: {timings}")
    for path in result.written:
        print(f"  wrote {path}")
    return 0


def add_predict(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="grade one study folder ({series_id}/{instance}.dcm) from its DICOMs alone"
    )
    p.add_argument("--study", required=True, type=Path, help="the study folder (its name is the study id)")
    p.add_argument("--out", required=True, type=Path, help="folder for grades.csv, grades.json and the PNGs")
    p.add_argument("--study-id", type=int, default=None, help="study id when the folder name is not one")
    p.add_argument(
        "--series-csv",
        type=Path,
        default=None,
        help="a series-description CSV naming the study's series (default: DICOM SeriesDescription)",
    )
    p.add_argument("--grader", default="champion", help="alias or version of the lss-{category} graders")
    p.add_argument(
        "--localizer", default="latest", help="version, latest or @alias of lss-localizer-{category}"
    )
    p.set_defaults(func=_cmd_predict)


SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_synth,
    add_contact_sheet,
    add_demo,
    add_summary,
    add_team,
    add_predict,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lss-pipeline", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
