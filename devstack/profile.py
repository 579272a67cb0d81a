"""The shape of the stack ``python -m devstack.run`` starts: the one-process default, or the scale-out
profile (``--postgres URL --workers 2 --api-processes 2``): the store on PostgreSQL, several worker
processes on the one task queue and several API processes behind one port (uvicorn's workers), which is
how leadflow runs in production, minus the Temporal cluster (README "Production").
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

MAX_PROCESSES = 16  # per kind: a profile for one machine, not a cluster


class ProfileError(ValueError):
    """An option of the profile cannot be used; the message says what to pass instead."""


@dataclass(frozen=True)
class Profile:
    postgres_url: str | None = None
    workers: int = 1
    api_processes: int = 1

    def worker_names(self) -> list[str]:
        return ["worker"] if self.workers == 1 else [f"worker-{n}" for n in range(1, self.workers + 1)]

    def api_args(self) -> list[str]:
        # uvicorn's supervisor forks the API processes; they share the port (the kernel spreads connections).
        return [] if self.api_processes == 1 else ["--workers", str(self.api_processes)]

    def describe(self) -> str:
        parts = [f"{self.workers} worker process{'es' if self.workers > 1 else ''}"]
        parts.append(f"{self.api_processes} API process{'es' if self.api_processes > 1 else ''}")
        return ", ".join(parts)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--postgres",
        metavar="URL",
        help="keep the store in this PostgreSQL database (postgresql://user:password@host:5432/db; it must "
        "exist, migrations run at start) instead of the SQLite file in the data dir",
    )
    parser.add_argument(
        "--workers", type=int, default=1, metavar="N", help="worker processes on the task queue (default 1)"
    )
    parser.add_argument(
        "--api-processes", type=int, default=1, metavar="N", help="API processes behind the one port (default 1)"
    )


def from_args(args: argparse.Namespace) -> Profile:
    for option, value in (("--workers", args.workers), ("--api-processes", args.api_processes)):
        if not 1 <= value <= MAX_PROCESSES:
            raise ProfileError(f"{option} {value}: give a number from 1 to {MAX_PROCESSES}")
    url = args.postgres
    if url is not None:
        try:
            backend = make_url(url).get_backend_name()
        except ArgumentError:
            backend = ""
        if backend != "postgresql":
            raise ProfileError(
                f"--postgres takes a PostgreSQL URL such as postgresql://user:password@127.0.0.1:5432/leadflow, "
                f"not {url.split('://', 1)[0]!r}"
            )
    return Profile(postgres_url=url, workers=args.workers, api_processes=args.api_processes)
