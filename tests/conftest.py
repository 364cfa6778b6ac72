"""Fixtures shared by the tests that need a real, small file system."""
import contextlib
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


@contextlib.contextmanager
def read_only(folder: Path):
    "Make `folder` read-only for real: chmod for a user; for root (whom permissions do not stop) a read-only bind mount."
    if os.geteuid() != 0:
        modes = {p: p.stat().st_mode for p in [folder, *folder.rglob('*')]}
        for p in modes: p.chmod(modes[p] & ~0o222)
        try: yield folder
        finally:
            for p, mode in modes.items(): p.chmod(mode)
        return
    if subprocess.run(['mount', '--bind', folder, folder], capture_output=True).returncode != 0:
        pytest.skip('root without permission to mount: cannot make a folder read-only here')
    try:
        subprocess.run(['mount', '-o', 'remount,bind,ro', folder], check=True, capture_output=True)
        with pytest.raises(OSError): (folder / 'probe').write_text('x')           # the condition is real
        yield folder
    finally: subprocess.run(['umount', folder], check=True)
