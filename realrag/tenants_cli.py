"""`realrag tenants add NAME [--role admin]`: a fresh API key and its REALRAG_TENANTS entry.

The key is printed once and never stored; the entry carries only its SHA-256, so the configuration
(env, Kubernetes Secret, compose file) never holds a usable key.
"""

from __future__ import annotations

import argparse
import json

from pydantic import ValidationError

from services.settings import TenantConfig
from services.tenants import hash_key, new_key


def tenant_entry(name: str, key: str, role: str = "user") -> dict:
    """The REALRAG_TENANTS entry of `key` (validated like the settings will be)."""
    return TenantConfig(name=name, key_sha256=hash_key(key), role=role).model_dump(exclude_none=True)  # type: ignore[arg-type]


def cmd_tenants_add(args: argparse.Namespace) -> int:
    key = new_key()
    try:
        entry = tenant_entry(args.name, key, args.role)
    except ValidationError:
        args.parser.error(f"invalid tenant name {args.name!r}: use a-z 0-9 _ - (starting with a letter or digit), up to 63 characters")
    print(f"API key of tenant {args.name!r} (shown once, store it now): {key}")
    print("Add this entry to the JSON list in REALRAG_TENANTS:")
    print(json.dumps(entry))
    return 0


def add_tenants_parser(sub: argparse._SubParsersAction) -> None:
    tenants = sub.add_parser("tenants", help="manage API tenants (REALRAG_TENANTS)")
    actions = tenants.add_subparsers(dest="tenants_command", required=True)
    add = actions.add_parser("add", help="print a fresh API key and its REALRAG_TENANTS entry (the key's SHA-256)")
    add.add_argument("name", help="tenant name: a-z 0-9 _ - (starting with a letter or digit), up to 63 characters")
    add.add_argument("--role", choices=["user", "admin"], default="user")
    add.set_defaults(func=cmd_tenants_add, parser=add)
