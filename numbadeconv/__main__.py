"""``python -m numbadeconv`` runs the tutorial; ``python -m numbadeconv bench`` the benchmarks."""

from __future__ import annotations

import argparse
import sys


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    parser = argparse.ArgumentParser(prog="python -m numbadeconv", description=__doc__)
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("tutorial", help="reproduce the tutorial (the default)")
    bench = sub.add_parser("bench", help="time the benchmark suite against installed peers")
    bench.add_argument("--quick", action="store_true", help="a small subset of the cases")
    bench.add_argument("--repeat", type=int, default=7, help="timed runs per case (median)")
    bench.add_argument("--threads", type=int, default=None, help="threads (default: all)")
    bench.add_argument("--peers", default="torch,tensorflow,jax,numpy",
                       help="comma-separated peers to time when installed")
    bench.add_argument("--case", action="append", default=None,
                       help="only cases whose name contains this (repeatable)")
    args = parser.parse_args(argv)
    if args.command == "bench":
        from . import bench as bench_module

        return bench_module.main(quick=args.quick, repeat=args.repeat, threads=args.threads,
                                 peers=[p for p in args.peers.split(",") if p],
                                 only=args.case)
    from . import tutorial

    print("\n".join(tutorial.run()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
