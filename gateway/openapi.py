"""``python -m gateway.openapi``: print the OpenAPI document the app serves (``make openapi``)."""

from __future__ import annotations

import json
import sys

from gateway.app import create_app
from gateway.settings import Settings


def render() -> str:
    # Default settings: the document does not depend on configuration, and no Kafka is contacted.
    return json.dumps(create_app(Settings()).openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
