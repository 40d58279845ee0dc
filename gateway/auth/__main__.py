"""``python -m gateway.auth new-key NAME [SCOPE ...] [--file KEYS.json]``: a fresh API key and its key-file entry.

Without ``--file`` the entry is printed; with it, the entry is added to that key file (created if missing),
which is checked the way the gateway reads it and replaced in one step, so a watching gateway never sees
half a file. The key itself goes to stderr only: it is not stored anywhere.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

import msgspec

from gateway.auth.api_keys import key_digest, load_api_keys, new_key


def add_entry(path: Path, entry: dict[str, Any]) -> None:
    """Add ``entry`` to the key file at ``path``; refuse a file that does not parse or a name already there."""
    document: dict[str, Any] = {"keys": []}
    if path.exists():
        text = path.read_bytes()
        load_api_keys(text)  # the gateway's own check: a broken file is not silently rewritten
        document = msgspec.json.decode(text)
    if any(existing.get("name") == entry["name"] for existing in document["keys"]):
        raise ValueError(f"{path} already has a key named '{entry['name']}'")
    document["keys"].append(entry)
    text = msgspec.json.format(msgspec.json.encode(document), indent=2) + b"\n"
    load_api_keys(text)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(text)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m gateway.auth", description="API keys of the gateway.")
    commands = parser.add_subparsers(dest="command", required=True)
    new = commands.add_parser("new-key", help="a fresh key (stderr) and its key-file entry")
    new.add_argument("name", help="the principal: shown in the access log and quota metrics")
    new.add_argument("scopes", nargs="*", help="read:<glob>, write:<glob>, group:<glob>, admin")
    new.add_argument("--file", type=Path, help="add the entry to this key file (created if missing)")
    args = parser.parse_args(argv)
    key = new_key()
    entry = {"name": args.name, "sha256": key_digest(key), "scopes": args.scopes}
    if args.file is not None:
        try:
            add_entry(args.file, entry)
        except (OSError, ValueError, msgspec.DecodeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 1
    print(f"key (give it to the client; it is not stored): {key}", file=sys.stderr)
    if args.file is None:
        print(msgspec.json.encode(entry).decode())
    else:
        print(f"added '{args.name}' to {args.file}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
