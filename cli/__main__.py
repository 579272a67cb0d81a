"""``leadflow`` (or ``python -m cli``): validate a playbook and simulate scenarios without a server.

leadflow validate playbooks/default.yaml [--json]
leadflow simulate playbooks/examples/seed_story.yaml [--playbook draft.yaml] [--json]
leadflow publish playbooks/default.yaml --note "why" [--author NAME] [--json]
leadflow rewrap-keys   (master key rotation: LEADFLOW_MASTER_KEY new, LEADFLOW_MASTER_KEY_PREVIOUS old)
leadflow import leads.csv [--source expo-2026] [--consent-basis consent] [--map 'E-mail=email'] [--json]
leadflow report sources --month 2026-01 [--by category] [--format json]   (see leadflow report -h)
leadflow write-key create NAME | list | revoke ID   (tracking write keys for the Segment-compatible API)
leadflow keys create NAME --role ROLE [--rep ID | --team KEY] [--expires-in-days N] | list | revoke ID
leadflow users set NAME --role ROLE [--rep ID | --team KEY] | list | disable NAME   (logins of the pages)
leadflow export leads|followups|audit [--out FILE] [--json]    leadflow overdue [--team KEY] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path

import yaml
from pydantic import ValidationError

from activities.rendering import EmailRenderer
from cli import access_commands, export_commands, import_command, report
from rules.playbook import CompiledPlaybook, PlaybookError, load_playbook_text
from rules.simulate import Scenario, SimulationResult, result_as_dict, simulate
from settings import ROOT


def load(path: Path) -> CompiledPlaybook:
    templates = EmailRenderer(ROOT / "templates").available()
    return load_playbook_text(path.read_text(encoding="utf-8"), templates=templates)


def render(result: SimulationResult, start) -> str:  # type: ignore[no-untyped-def]
    lines = [f"== {result.scenario}"]
    for entry in result.trace:
        offset = entry.at - start
        hours, rem = divmod(int(offset.total_seconds()), 3600)
        stamp = f"+{hours // 24}d{hours % 24:02d}h{rem // 60:02d}m"
        detail = ", ".join(f"{k}={v}" for k, v in entry.detail.items() if v not in (None, [], ""))
        lines.append(f"{stamp:>12}  {entry.kind:<8} {detail}")
    lines.append("final: " + ", ".join(f"{k}={v}" for k, v in result.final.items()))
    lines += [f"EXPECTATION FAILED: {f}" for f in result.failures]
    return "\n".join(lines)


async def rewrap_keys() -> int:
    from cli.keys import rewrap_all
    from cli.store_session import store_sessions
    from privacy.keys import KeyUnavailable
    from runtime import key_ring
    from settings import get_settings

    settings = get_settings()
    async with store_sessions(settings) as sessions:
        try:
            masters = key_ring(settings, sessions).masters
            changed = await rewrap_all(sessions, masters)
        except KeyUnavailable as exc:
            print(f"rewrap-keys: {exc}", file=sys.stderr)
            return 1
    print(f"re-wrapped {changed} data keys with master key {masters.current.key_id}")
    return 0


async def write_key_command(action: str, value: str | None) -> int:
    from cli.store_session import store_sessions
    from settings import get_settings
    from store import ingest

    async with store_sessions(get_settings()) as sessions:
        async with sessions() as session:
            if action == "create":
                info, key = await ingest.create_write_key(session, value or "default")
                print(f"{info.id}  {info.name}\n{key}\n(shown once: use it as the Segment/RudderStack write key)")
            elif action == "revoke":
                if not await ingest.revoke_write_key(session, value or ""):
                    print(f"write-key: no active key {value}", file=sys.stderr)
                    return 1
                print(f"revoked {value}")
            else:
                for row in await ingest.list_write_keys(session):
                    state = f"revoked {row.revoked_at:%Y-%m-%d}" if row.revoked_at else "active"
                    print(f"{row.id}  {row.created_at:%Y-%m-%d}  {state:<18} {row.name}")
    return 0


def _issues(args: argparse.Namespace, exc: PlaybookError) -> int:
    """A bad playbook: each issue at its line (as JSON with --json), exit status 1."""
    if getattr(args, "json", False):
        issues = [{"line": i.line, "path": i.path, "message": i.message} for i in exc.issues]
        print(json.dumps({"valid": False, "issues": issues}, ensure_ascii=False))
    for issue in exc.issues:
        print(f"{args.playbook}:{issue}", file=sys.stderr)
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="leadflow", description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    validate = sub.add_parser("validate", help="validate a playbook file")
    validate.add_argument("playbook", type=Path)
    validate.add_argument("--json", action="store_true", help="print the outcome (and each issue) as JSON")
    sim = sub.add_parser("simulate", help="run scenario files through a playbook on a virtual clock")
    sim.add_argument("scenarios", type=Path, nargs="+")
    sim.add_argument("--playbook", type=Path, default=ROOT / "playbooks" / "default.yaml")
    sim.add_argument("--json", action="store_true", help="print the trace as JSON")
    sub.add_parser("rewrap-keys", help="re-wrap every lead's data key with the current master key")
    import_command.add_parser(sub)
    report.add_parser(sub)
    keys = sub.add_parser("write-key", help="create, list or revoke tracking write keys")
    keys.add_argument("action", choices=["create", "list", "revoke"])
    keys.add_argument("value", nargs="?", help="create: a name for the key; revoke: its id (wk_...)")
    access_commands.add_parsers(sub)
    export_commands.add_parsers(sub)
    args = parser.parse_args(argv)
    if args.command in ("keys", "users"):
        return access_commands.run(args, parser)
    if args.command == "export":
        return export_commands.run_export(args)
    if args.command == "overdue":
        return export_commands.run_overdue(args)
    if args.command == "publish":
        try:
            return export_commands.run_publish(args, EmailRenderer(ROOT / "templates").available())
        except PlaybookError as exc:
            return _issues(args, exc)
    if args.command == "write-key":
        if args.action == "revoke" and not args.value:
            parser.error("write-key revoke needs the key id (see write-key list)")
        return asyncio.run(write_key_command(args.action, args.value))
    if args.command == "rewrap-keys":
        return asyncio.run(rewrap_keys())
    if args.command == "import":
        return import_command.run_import(args)
    if args.command == "report":
        return report.run(args)
    try:
        pb = load(args.playbook)
    except PlaybookError as exc:
        return _issues(args, exc)
    if args.command == "validate":
        counts = f"{len(pb.scoring)} scoring rules, {len(pb.journeys)} journeys"
        if args.json:
            print(
                json.dumps(
                    {"valid": True, "hash": pb.hash, "scoring_rules": len(pb.scoring), "journeys": len(pb.journeys)}
                )
            )
        else:
            print(f"{args.playbook}: valid (hash {pb.hash[:12]}, {counts})")
        return 0
    failed = 0
    for path in args.scenarios:
        try:
            scenario = Scenario.model_validate(yaml.safe_load(path.read_text(encoding="utf-8")))
        except (ValidationError, yaml.YAMLError) as exc:
            print(f"{path}: not a valid scenario: {exc}", file=sys.stderr)
            failed += 1
            continue
        result = simulate(pb, scenario)
        print(
            json.dumps(result_as_dict(result), default=str, indent=2) if args.json else render(result, scenario.start)
        )
        failed += bool(result.failures)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
