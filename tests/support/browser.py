"""A real browser for the dashboard's tests: Debian's chromium (installed with apt-get when missing),
driven by the playwright package; playwright's own browser downloads are never used."""

from __future__ import annotations

import shutil
import subprocess

CHROMIUM_NAMES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The system chromium, installing Debian's package first when the machine has none."""
    for name in CHROMIUM_NAMES:
        found = shutil.which(name)
        if found:
            return found
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", "chromium"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        # a fresh machine may have no package lists yet
        subprocess.run(["apt-get", "update", "-q"], env=env, check=True, capture_output=True)
        subprocess.run(install, env=env, check=True, capture_output=True)
    found = shutil.which("chromium")
    if found is None:
        raise RuntimeError("apt-get installed chromium but it is not on PATH")
    return found
