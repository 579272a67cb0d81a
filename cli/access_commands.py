"""``leadflow keys`` and ``leadflow users``: API keys with roles and the users of the pages, straight in the
store (the same records the admin API writes).

leadflow keys create "crm sync" --role marketer [--expires-in-days 90] [--json]
leadflow keys create "aiko's phone" --role rep --rep rep-aiko
leadflow keys create "japan desk" --role manager --team japan
leadflow keys list [--json]          leadflow keys revoke ak_1a2b3c4d
leadflow users set mina --role manager --team inside-sales   (password from LEADFLOW_NEW_PASSWORD or a prompt)
leadflow users list [--json]         leadflow users disable mina
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import os
import sys
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

from cli.store_session import store_sessions
from rules.access import ROLES, Role
from store import access

PASSWORD_ENV = "LEADFLOW_NEW_PASSWORD"  # noqa: S105 - the name of a variable, not a password
MIN_PASSWORD = 12


def _scope_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--role", required=True, choices=[r.value for r in ROLES])
    parser.add_argument("--rep", help="role rep: the rep id whose leads it reaches")
    parser.add_argument("--team", action="append", default=[], help="role manager: a team it manages (repeatable)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON")


def add_parsers(sub: Any) -> None:
    keys = sub.add_parser("keys", help="API keys with roles: create, list, revoke")
    key_actions = keys.add_subparsers(dest="action", required=True)
    create = key_actions.add_parser("create", help="a new key (shown once)")
    create.add_argument("name")
    _scope_args(create)
    create.add_argument("--expires-in-days", type=int, help="the key stops working after this many days")
    listing = key_actions.add_parser("list", help="every key (never the keys themselves)")
    listing.add_argument("--json", action="store_true")
    revoke = key_actions.add_parser("revoke", help="revoke a key by its id (ak_...)")
    revoke.add_argument("key_id")
    revoke.add_argument("--json", action="store_true")

    users = sub.add_parser("users", help="users of the pages: set (create or change), list, disable")
    user_actions = users.add_subparsers(dest="action", required=True)
    put = user_actions.add_parser("set", help=f"create or change a user (password: ${PASSWORD_ENV} or a prompt)")
    put.add_argument("username")
    _scope_args(put)
    listing = user_actions.add_parser("list")
    listing.add_argument("--json", action="store_true")
    disable = user_actions.add_parser("disable", help="disable a user and end their sessions")
    disable.add_argument("username")
    disable.add_argument("--json", action="store_true")


def scope_problem(role: Role, rep: str | None, teams: list[str]) -> str | None:
    if role is Role.rep and not rep:
        return "a rep's key or login needs --rep (the rep whose leads it reaches)"
    if role is Role.manager and not teams:
        return "a manager's key or login needs --team (a team they manage)"
    if role is not Role.rep and rep:
        return "--rep is for --role rep only"
    if role is not Role.manager and teams:
        return "--team is for --role manager only"
    return None


def _plain(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def _record(info: Any) -> dict[str, Any]:
    return {k: _plain(v) for k, v in asdict(info).items()}


def _print(args: argparse.Namespace, payload: dict[str, Any] | list[dict[str, Any]], text: str) -> None:
    print(json.dumps(payload, ensure_ascii=False) if args.json else text)


async def _keys(args: argparse.Namespace) -> int:
    async with store_sessions() as sessions, sessions() as session:
        if args.action == "create":
            expires = None
            if args.expires_in_days is not None:
                expires = datetime.now(UTC) + timedelta(days=args.expires_in_days)
            info, key = await access.create_api_key(
                session, args.name, Role(args.role), rep_id=args.rep, teams=args.team, expires_at=expires
            )
            _print(args, {**_record(info), "key": key}, f"{info.id}  {info.role}  {info.name}\n{key}\n(shown once)")
        elif args.action == "revoke":
            if not await access.revoke_api_key(session, args.key_id):
                print(f"keys: no active key {args.key_id}", file=sys.stderr)
                return 1
            _print(args, {"revoked": args.key_id}, f"revoked {args.key_id}")
        else:
            rows = await access.list_api_keys(session)
            lines = []
            for row in rows:
                state = (
                    f"revoked {row.revoked_at:%Y-%m-%d}"
                    if row.revoked_at
                    else f"expires {row.expires_at:%Y-%m-%d}"
                    if row.expires_at
                    else "active"
                )
                scope = row.rep_id or ",".join(row.teams)
                lines.append(f"{row.id}  {row.role:<9} {state:<18} {scope:<20} {row.name}")
            _print(args, [_record(r) for r in rows], "\n".join(lines) or "no keys")
    return 0


def _new_password() -> str:
    given = os.environ.get(PASSWORD_ENV)
    if given:
        return given
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("users: the passwords differ")
    return first


async def _users(args: argparse.Namespace) -> int:
    async with store_sessions() as sessions, sessions() as session:
        if args.action == "set":
            password = _new_password()
            if len(password) < MIN_PASSWORD:
                print(f"users: a password needs at least {MIN_PASSWORD} characters", file=sys.stderr)
                return 2
            info = await access.put_user(
                session, args.username, password, Role(args.role), rep_id=args.rep, teams=args.team
            )
            _print(args, _record(info), f"{info.id}  {info.username}  {info.role}")
        elif args.action == "disable":
            if not await access.disable_user(session, args.username):
                print(f"users: no active user {args.username}", file=sys.stderr)
                return 1
            _print(args, {"disabled": args.username}, f"disabled {args.username}")
        else:
            rows = await access.list_users(session)
            lines = [
                f"{r.id}  {r.username:<20} {r.role:<9} {'disabled' if r.disabled_at else 'active':<9} "
                f"{r.rep_id or ','.join(r.teams)}"
                for r in rows
            ]
            _print(args, [_record(r) for r in rows], "\n".join(lines) or "no users")
    return 0


def run(args: argparse.Namespace, parser: argparse.ArgumentParser) -> int:
    if args.action in ("create", "set"):
        problem = scope_problem(Role(args.role), args.rep, args.team)
        if problem:
            parser.error(problem)
    return asyncio.run(_keys(args) if args.command == "keys" else _users(args))
