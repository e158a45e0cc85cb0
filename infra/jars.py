"""Resolve the Kafka broker's jars from Maven Central once, into the project's cache."""

from __future__ import annotations

import fcntl
import hashlib
import shutil
import subprocess
from pathlib import Path

POM = Path(__file__).resolve().parent / "maven" / "pom.xml"
MARKER = ".resolved"
DEFAULT_KAFKA_VERSION = "4.1.1"


class JarResolutionError(RuntimeError):
    """Maven could not resolve the broker's jars."""


def _fingerprint(version: str) -> str:
    """What the marker records: the version and the pom, so a changed pom resolves again."""
    return f"{version} {hashlib.sha256(POM.read_bytes()).hexdigest()}\n"


def kafka_libs(cache_dir: Path, version: str = DEFAULT_KAFKA_VERSION) -> Path:
    """The folder of jars for `java -cp libs/*`, resolving it with Maven when incomplete."""
    libs = cache_dir / "kafka" / version / "libs"
    libs.parent.mkdir(parents=True, exist_ok=True)
    # Two test sessions may start at once; one resolves, the other waits and reuses.
    with (libs.parent / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        return _resolve(libs, version)


def _resolve(libs: Path, version: str) -> Path:
    """Run Maven unless the marker says the folder is complete for this version and pom."""
    marker = libs / MARKER
    if marker.is_file() and marker.read_text() == _fingerprint(version):
        return libs
    mvn = shutil.which("mvn")
    if mvn is None:
        raise JarResolutionError("Maven (mvn) is not on PATH; install it to resolve Kafka's jars")
    # Resolve into a sibling folder and swap it in, so a half copy is never used.
    staging = libs.with_name("libs.partial")
    shutil.rmtree(staging, ignore_errors=True)
    command = [
        mvn, "-q", "-B", "-f", str(POM), f"-Dkafka.version={version}",
        "dependency:copy-dependencies", f"-DoutputDirectory={staging}", "-DincludeScope=runtime",
    ]  # fmt: skip
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0 or not any(staging.glob(f"kafka_2.13-{version}.jar")):
        raise JarResolutionError(f"mvn failed ({done.returncode}):\n{done.stdout}{done.stderr}")
    (staging / MARKER).write_text(_fingerprint(version))
    shutil.rmtree(libs, ignore_errors=True)
    staging.rename(libs)
    return libs
