"""Train rows of the paper's tables and gather their evaluations into one markdown table.

    # train the chosen rows one after another (or -m: as one Hydra multirun), then gather
    python scripts/paper_table.py run --rows ablation --out logs/paper_table/ablation \
        [--multirun] [--preset cpu_tiny] [-- extra train.py overrides]
    # evaluate and tabulate runs that already exist (e.g. a multirun folder of train.py)
    python scripts/paper_table.py gather logs/train/multiruns/2026-11-26_10-00-00
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from srn_deblur.paper_runs import PRESETS, gather, load_protocol, train_rows  # noqa: E402
from srn_deblur.paper_table import CONFIG_DIR, ROW_SETS, ROWS, resolve_rows  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="train rows, then gather the table")
    run.add_argument(
        "--rows",
        default="all",
        help=f"comma-separated rows or sets ({', '.join(ROW_SETS)}): {', '.join(ROWS)}",
    )
    run.add_argument("--out", type=Path, required=True, help="folder for the runs and the table")
    run.add_argument(
        "--multirun", action="store_true", help="train all rows as one Hydra multirun (train.py -m)"
    )
    run.add_argument(
        "--preset", choices=sorted(PRESETS), help="a budget of train.py overrides (e.g. cpu_tiny)"
    )
    run.add_argument("overrides", nargs="*", help="more train.py overrides, after --")
    gat = sub.add_parser("gather", help="evaluate existing runs and print the table")
    gat.add_argument("folders", nargs="+", type=Path, help="run folders, or folders holding runs")
    gat.add_argument("--out", type=Path, help="also write the table to this file")
    for p in (run, gat):
        p.add_argument(
            "--checkpoint",
            choices=("last", "best"),
            default="last",
            help="which checkpoint of a run to score",
        )
        p.add_argument("--limit-images", type=int, help="score only the first N test images")
        p.add_argument("--device", default="auto")
        p.add_argument(
            "--protocol",
            default="default",
            choices=sorted(f.stem for f in (CONFIG_DIR / "protocol").glob("*.yaml")),
            help="scoring protocol (configs/protocol/), printed under the table",
        )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")

    eval_kwargs = {
        "limit_images": args.limit_images,
        "device": args.device,
        "protocol": load_protocol(args.protocol),
    }
    if args.command == "run":
        rows = resolve_rows(args.rows.split(","))
        overrides = [*PRESETS.get(args.preset, []), *args.overrides]
        train_rows(rows, args.out, overrides, args.multirun)
        folders, table_file = [args.out], args.out / "table.md"
    else:
        folders, table_file = args.folders, args.out
    table = gather(folders, args.checkpoint, **eval_kwargs)
    print(table)
    if table_file is not None:
        Path(table_file).write_text(table)
        print(f"table written to {table_file}")


if __name__ == "__main__":
    main()
