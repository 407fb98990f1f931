"""``tilefn token|namespace|member ...``: administer identities in the local store.

Runs against the server's state database (``--store``, env TILEFN_STORE: the SQLite file, on
the server's host, or the PostgreSQL URI, with its password in TILEFN_STORE_PASSWORD or
``--store-password-file``), with no server needed; remote administration uses AdminService
with an admin token. Examples:

    tilefn namespace create alice --kind user
    tilefn namespace create acme --kind organisation
    tilefn member add acme alice
    tilefn token create alice --scopes run,read_arrays --days 30 --description laptop
    tilefn token list
    tilefn token revoke 3f9c0a1b2c4d
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from . import _admin
from ._config import ConfigError, ServerConfig
from ._status import R, ServiceError
from ._store import SCOPES, Store, TokenRecord
from ._stores import open_store

USER_SCOPES = ("run", "read_arrays", "manage_udfs", "manage_arrays")


def main(argv: Sequence[str] | None = None) -> None:
    options = _parser().parse_args(_store_first(list(sys.argv[1:] if argv is None else argv)))
    try:
        store = open_store(options.store, options.store_password_file)
    except ConfigError as exc:
        raise SystemExit(f"tilefn: {exc}") from None
    try:
        options.run(store, options)
    except ServiceError as exc:
        raise SystemExit(f"tilefn: {exc.message}") from None
    finally:
        store.close()


#: Top-level options that may come anywhere on the command line.
ANYWHERE = ("--store", "--store-password-file")


def _store_first(argv: list[str]) -> list[str]:
    """``--store PATH`` (and ``--store-password-file FILE``) may come anywhere (``tilefn token
    list --store s.db``): move them first, where argparse expects top-level options."""
    first: list[str] = []
    rest = list(argv)
    for option in ANYWHERE:
        for i, arg in enumerate(rest):
            if arg.startswith(f"{option}="):
                first, rest = [*first, arg], [*rest[:i], *rest[i + 1 :]]
                break
            if arg == option and i + 1 < len(rest):
                first, rest = [*first, arg, rest[i + 1]], [*rest[:i], *rest[i + 2 :]]
                break
    return [*first, *rest]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="tilefn", description=__doc__.split("\n\n")[0])
    default = os.environ.get("TILEFN_STORE", ServerConfig.store)
    parser.add_argument(
        "--store", default=default, help=f"SQLite file or postgresql:// URI (default {default})"
    )
    parser.add_argument(
        "--store-password-file",
        default=os.environ.get("TILEFN_STORE_PASSWORD_FILE", ""),
        help="file holding the PostgreSQL store's password (else env TILEFN_STORE_PASSWORD)",
    )
    groups = parser.add_subparsers(required=True, metavar="GROUP")
    _namespace_commands(groups.add_parser("namespace", help="users and organisations"))
    _member_commands(groups.add_parser("member", help="organisation membership"))
    _token_commands(groups.add_parser("token", help="bearer tokens"))
    return parser


def _namespace_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="create a user or organisation")
    create.add_argument("name")
    create.add_argument("--kind", choices=("user", "organisation"), default="user")
    create.set_defaults(run=lambda s, o: print(_admin.create_namespace(s, o.name, o.kind).name))
    listing = commands.add_parser("list", help="list namespaces")
    listing.set_defaults(run=_list_namespaces)


def _member_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    for name, change in (("add", "add_member"), ("remove", "remove_member")):
        command = commands.add_parser(name, help=f"{name} a user to/from an organisation")
        command.add_argument("organisation")
        command.add_argument("user")
        command.set_defaults(
            run=lambda s, o, change=change: print(
                " ".join(getattr(s, change)(o.organisation, o.user).members)
            )
        )


def _token_commands(parser: argparse.ArgumentParser) -> None:
    commands = parser.add_subparsers(required=True, metavar="COMMAND")
    create = commands.add_parser("create", help="issue a token and print its secret once")
    create.add_argument("namespace", help="the user (or organisation) the token acts as")
    create.add_argument(
        "--scopes",
        default=",".join(USER_SCOPES),
        help=f"comma-separated, of {','.join(SCOPES)} (default {','.join(USER_SCOPES)})",
    )
    create.add_argument("--days", type=float, default=90.0, help="lifetime (default 90)")
    create.add_argument("--description", default="")
    create.add_argument("--create-namespace", action="store_true", help="create the user first")
    create.add_argument(
        "--secret-file", type=Path, help="also write the secret to this file (mode 0600)"
    )
    create.set_defaults(run=_create_token)
    listing = commands.add_parser("list", help="list tokens (never their secrets)")
    listing.add_argument("--namespace", default="")
    listing.set_defaults(run=_list_tokens)
    revoke = commands.add_parser("revoke", help="revoke a token by id")
    revoke.add_argument("id")
    revoke.set_defaults(run=lambda s, o: _print_token(s.revoke_token(o.id)))


def _create_token(store: Store, options: argparse.Namespace) -> None:
    if options.create_namespace and store.namespace(options.namespace) is None:
        try:
            _admin.create_namespace(store, options.namespace, "user")
        except ServiceError as exc:  # another admin (or replica) created it meanwhile
            if exc.reason != R.ERROR_REASON_NAMESPACE_EXISTS:
                raise
    scopes = [s.strip() for s in options.scopes.split(",") if s.strip()]
    secret, record = _admin.create_token(
        store, options.namespace, scopes, options.days * 86400, options.description
    )
    if options.secret_file:
        options.secret_file.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(options.secret_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secret + "\n")
    print(secret)
    print(f"token {record.id} for {record.namespace}: {' '.join(record.scopes)}", file=sys.stderr)


def _list_namespaces(store: Store, options: argparse.Namespace) -> None:
    for namespace in store.namespaces():
        print(f"{namespace.name}\t{namespace.kind}\t{','.join(namespace.members)}")


def _list_tokens(store: Store, options: argparse.Namespace) -> None:
    for record in store.tokens(options.namespace):
        _print_token(record)


def _print_token(record: TokenRecord) -> None:
    state = "revoked" if record.revoked_at else "expired" if record.expires_at < time.time() else ""
    expires = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(record.expires_at))
    print(
        f"{record.id}\t{record.namespace}\t{','.join(record.scopes)}\texpires {expires}\t"
        f"{state or 'valid'}\t{record.description}"
    )


if __name__ == "__main__":
    main()
