"""Find Debian's Chromium and its driver for browser tests, installing them when missing."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
PACKAGES = ("chromium", "chromium-driver")

# The closed network answers nothing but package registries and 127.0.0.1: every feature
# that phones home (updates, sync, QUIC probes, field trials) is off, so pages load fast.
HEADLESS_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
)


class ChromiumNotFoundError(RuntimeError):
    """No Chromium (or no chromedriver) here, and they could not be installed."""


@dataclass(frozen=True)
class Chromium:
    """Where the browser and its WebDriver are."""

    browser: Path
    driver: Path


def ensure_chromium(install: bool = True) -> Chromium:
    """Debian's chromium and chromium-driver; apt-get installs them as root when missing."""
    if install and not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        _apt_install()
    if not CHROMIUM.is_file() or not CHROMEDRIVER.is_file():
        raise ChromiumNotFoundError(
            f"{CHROMIUM} or {CHROMEDRIVER} is missing; install Debian's "
            f"{' and '.join(PACKAGES)} packages (apt-get, as root)"
        )
    return Chromium(CHROMIUM, CHROMEDRIVER)


def _apt_install(attempts: int = 20) -> None:
    """Install the packages non-interactively (root only), waiting out another apt's lock."""
    apt = shutil.which("apt-get")
    if apt is None or os.geteuid() != 0:
        return
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    commands = (
        [apt, "update", "-q"],
        [apt, "install", "-y", "-q", "--no-install-recommends", *PACKAGES],
    )
    for command in commands:
        for attempt in range(attempts):
            done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
            if done.returncode == 0:
                break
            # Another process (a second test session, unattended upgrades) may hold dpkg's lock.
            if "lock" not in done.stderr.lower() or attempt == attempts - 1:
                raise ChromiumNotFoundError(f"{' '.join(command)} failed:\n{done.stderr[-2000:]}")
            time.sleep(3)


def headless_arguments(user_data_dir: Path) -> list[str]:
    """Chromium's command-line flags for a headless run with a fresh profile."""
    return [*HEADLESS_FLAGS, f"--user-data-dir={user_data_dir}", "--window-size=1400,1000"]
