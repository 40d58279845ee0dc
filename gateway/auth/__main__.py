"""``python -m gateway.auth new-key NAME [SCOPE ...]``: a fresh API key and its key-file entry."""

from __future__ import annotations

import sys

import msgspec

from gateway.auth.api_keys import key_digest, new_key


def _main(argv: list[str]) -> int:
    """``python -m gateway.auth new-key NAME [SCOPE ...]``: a fresh key and its key-file entry."""
    if len(argv) < 2 or argv[0] != "new-key":
        print("usage: python -m gateway.auth new-key NAME [SCOPE ...]", file=sys.stderr)
        return 2
    key = new_key()
    entry = {"name": argv[1], "sha256": key_digest(key), "scopes": argv[2:]}
    print(f"key (give it to the client; it is not stored): {key}", file=sys.stderr)
    print(msgspec.json.encode(entry).decode())
    return 0


if __name__ == "__main__":
    raise SystemExit(_main(sys.argv[1:]))
