"""The compiled parts of the gateway (everything else is in pyproject.toml).

- ``gateway._frames``: the SSE encoding loop.
- ``gateway._records``: the per-record loop of produce requests (``records.prepare``).
- ``gateway.kafka._rdkafka``: the producer's hot path on librdkafka itself (batched delivery reports).
  It declares the part of librdkafka's C API it uses (``gateway/kafka/_rdkafka.h``) and links to the
  librdkafka that confluent-kafka's manylinux wheel bundles, found in the build environment by the
  exact name the pinned wheel gives it; at run time that library is already loaded by ``import
  confluent_kafka`` (same soname), or found next to the installed package (rpath).
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

from setuptools import Extension, setup


def bundled_librdkafka() -> tuple[str, str]:
    spec = importlib.util.find_spec("confluent_kafka")
    if spec is None or spec.origin is None:
        raise SystemExit("building gateway.kafka._rdkafka needs confluent-kafka installed (a build requirement)")
    libs = Path(spec.origin).parent.parent / "confluent_kafka.libs"
    found = sorted(libs.glob("librdkafka*.so*"))
    if not found:
        raise SystemExit(f"no bundled librdkafka in {libs}: confluent-kafka must be a manylinux wheel")
    return str(libs), found[0].name


libs_dir, lib_name = bundled_librdkafka()

setup(
    ext_modules=[
        Extension("gateway._frames", ["gateway/_frames.pyx"]),
        Extension("gateway._records", ["gateway/_records.pyx"]),
        Extension(
            "gateway.kafka._rdkafka",
            ["gateway/kafka/_rdkafka.pyx"],
            include_dirs=["gateway/kafka"],
            library_dirs=[libs_dir],
            extra_link_args=[f"-l:{lib_name}", "-Wl,-rpath,$ORIGIN/../../confluent_kafka.libs"],
        ),
    ]
)
