"""Compare runs: `emoclip-report PATH [PATH ...]` (or `python -m emoclip.report`).

One row per configuration (runs that differ only in seed, fold or output paths), mean ± std;
writes report.md and report.html (emoclip.output.comparison builds them).
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from emoclip.cli.entry import run_reporting_errors
from emoclip.output.comparison import write_report
from emoclip.study.trust import Trust, allowed_prefixes


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="emoclip-report",
        description="Compare run folders: one row per configuration, mean ± std over seeds "
        "or folds; writes report.md and report.html.",
    )
    parser.add_argument(
        "paths", nargs="+", type=Path, help="sweep folders and/or run folders to compare"
    )
    parser.add_argument(
        "--out", type=Path, help="where to write the report (default: the given folder)"
    )
    parser.add_argument(
        "--allow-targets",
        action="append",
        default=[],
        metavar="MODULE",
        help="let the run folders' configs name targets under this module (your own code)",
    )
    parser.add_argument(
        "--trust-config",
        action="store_true",
        help="read the run folders' configs unchecked (only folders you made or trust)",
    )
    args = parser.parse_args(argv)

    def report() -> list[Path]:
        trust = Trust(args.trust_config, allowed_prefixes(args.allow_targets))
        return write_report(args.paths, args.out, trust)

    for path in run_reporting_errors(report):
        print(path)


if __name__ == "__main__":
    main()
