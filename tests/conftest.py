"""Fixtures shared by the tests that need a real, small file system."""
import os
import subprocess
import uuid
from pathlib import Path

import pytest


@pytest.fixture
def small_disk(tmp_path):
    "A 4 MB tmpfs mounted at tmp_path/disk (unmounted afterwards): a disk, or a Google Drive quota, that fills up for real."
    disk = tmp_path / 'disk'
    disk.mkdir()
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', str(disk)], capture_output=True, text=True)
    if r.returncode:
        if os.environ.get('REQUIRE_MOUNT_TEST') == '1': raise RuntimeError(f'cannot mount a tmpfs: {r.stderr}')
        pytest.skip(f'mounting a tmpfs needs root ({r.stderr.strip()})')
    yield disk
    subprocess.run(['umount', '-l', str(disk)])


def fill(disk: Path, leave: int = 64 * 1024) -> Path:
    "Fill `disk` up to `leave` free bytes with one file; returns it."
    filler = disk / f'filler-{uuid.uuid4().hex[:6]}'
    st = os.statvfs(disk)
    with open(filler, 'wb') as f: f.write(b'\0' * max(0, st.f_bavail * st.f_frsize - leave))
    return filler
