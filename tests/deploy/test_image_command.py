"""The container's exact command line runs the gateway (no Docker engine here: run it on the host).

Takes ENTRYPOINT, CMD and ENV of the final stage from the Dockerfile, runs that command with that
environment (only the port and the Kafka address changed, and the image's own PATH replaced by the
project's venv), checks it serves and becomes ready on a real broker, and stops cleanly on the image's
STOPSIGNAL.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from localkafka import free_port
from tests.deploy.test_dockerfile import DOCKERFILE, parse, stages


def _image_env(args: list[str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for arg in args:
        for word in shlex.split(arg):
            name, _, value = word.partition("=")
            env[name] = value
    return env


def test_the_images_command_line_serves_and_stops_cleanly(bootstrap: str) -> None:
    final = stages(parse(DOCKERFILE.read_text()))[-1]
    [entry] = final.all("ENTRYPOINT")
    command = json.loads(entry.args) + [arg for c in final.all("CMD") for arg in json.loads(c.args)]
    image_env = _image_env([i.args for i in final.all("ENV")])
    image_env.pop("PATH", None)  # /opt/venv/bin in the image; here the project's venv holds kafka-gateway
    port = free_port()
    env = {
        **image_env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        "GATEWAY_PORT": str(port),
        "GATEWAY_KAFKA__BOOTSTRAP_SERVERS": bootstrap,
    }
    assert env.get("GATEWAY_HOST") == "0.0.0.0"
    proc = subprocess.Popen(command, env=env)
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        status = None
        while time.monotonic() < deadline:
            try:
                status = httpx.get(url + "/readyz", timeout=2).status_code
                if status == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        assert status == 200, f"the image's command never became ready ({status})"
        assert httpx.get(url + "/healthz").json() == {"status": "ok"}
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
    # uvicorn re-raises SIGTERM after its graceful shutdown.
    assert code in (0, -signal.SIGTERM)
