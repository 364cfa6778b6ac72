"""Downloads against a real HTTP server on 127.0.0.1, running the real download code (gdown underneath)."""
import dataclasses
import hashlib
import io
import os
import tarfile
import zipfile
from pathlib import Path

import pytest

from stackgan_nb.download import (BIRDS, CUB, DownloadError, FileSpec, UnsafeArchiveError, download_cub, download_main, fetch,
                                  safe_extract)
from stackgan_nb.testing import LocalServer


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch):
    "gdown keeps cookies under HOME: never touch the real one."
    monkeypatch.setenv('HOME', str(tmp_path / 'home'))


def tgz(entries, mode='w:gz') -> bytes:
    "A tar from (name, bytes | None (a folder) | ('sym'|'hard', target)) entries."
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as t:
        for name, data in entries:
            ti = tarfile.TarInfo(name)
            if data is None:
                ti.type = tarfile.DIRTYPE
                t.addfile(ti)
            elif isinstance(data, tuple):
                ti.type, ti.linkname = (tarfile.SYMTYPE if data[0] == 'sym' else tarfile.LNKTYPE), data[1]
                t.addfile(ti)
            else:
                ti.size = len(data)
                t.addfile(ti, io.BytesIO(data))
    return buf.getvalue()


def zipped(entries, compression=zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, 'w', compression) as z:
        for name, data in entries: z.writestr(name, data)
    return buf.getvalue()


CUB_TGZ = tgz([('CUB_200_2011/images.txt', b'1 001.A/a.jpg\n'), ('CUB_200_2011/bounding_boxes.txt', b'1 0 0 1 1\n'),
               ('CUB_200_2011/images/001.A/a.jpg', b'jpeg bytes'), ('attributes.txt', b'1 has_bill_shape::curved\n')])
BIRDS_ZIP = zipped([(f'birds/{s}/{f}', b'p') for s in ('train', 'test')
                    for f in ('filenames.pickle', 'char-CNN-RNN-embeddings.pickle', 'class_info.pickle')])
BIG = os.urandom(1_500_000)


@pytest.fixture
def server():
    with LocalServer({'cub.tgz': CUB_TGZ, 'birds.zip': BIRDS_ZIP, 'big.bin': BIG}) as srv: yield srv


def specs_for(srv, **kw):
    return {'cub': dataclasses.replace(CUB, url=f'{srv.url}/files/cub.tgz', md5=hashlib.md5(CUB_TGZ).hexdigest(), **kw),
            'birds': dataclasses.replace(BIRDS, url=f'{srv.url}/files/birds.zip', drive_id=None)}


def test_download_unpack_and_idempotence(tmp_path, server):
    specs = specs_for(server)
    root = download_cub(tmp_path / 'data', specs=specs, quiet=True)
    assert (root / 'CUB_200_2011/images/001.A/a.jpg').read_bytes() == b'jpeg bytes'
    assert (root / 'birds/train/char-CNN-RNN-embeddings.pickle').exists()
    assert (root / 'downloads/CUB_200_2011.tgz').exists() and (root / 'downloads/.CUB_200_2011.tgz.unpacked').exists()
    n = len(server.log)
    download_cub(root, specs=specs, quiet=True)
    assert len(server.log) == n                                   # verified and unpacked: nothing fetched
    (root / 'downloads/.birds.zip.unpacked').unlink()             # an interrupted unpacking ...
    (root / 'birds/test/filenames.pickle').unlink()
    download_cub(root, specs=specs, quiet=True)
    assert len(server.log) == n and (root / 'birds/test/filenames.pickle').exists()   # ... is redone from the archive
    (root / 'downloads/CUB_200_2011.tgz').unlink()                # archive deleted to save space: still complete
    download_cub(root, what=['cub'], specs=specs, quiet=True)
    assert len(server.log) == n


def test_unpacked_by_hand_is_accepted(tmp_path, server):
    root = tmp_path / 'data'
    for p in CUB.provides: (root / p).parent.mkdir(parents=True, exist_ok=True)
    for p in CUB.provides[:2]: (root / p).write_text('x')
    (root / 'CUB_200_2011/images').mkdir(exist_ok=True)
    download_cub(root, what=['cub'], specs=specs_for(server), quiet=True)
    assert server.log == []


def test_resume_after_interruption(tmp_path, server):
    spec = FileSpec('big', 'big.bin', 'a big file', url=f'{server.url}/cut/big.bin', md5=hashlib.md5(BIG).hexdigest())
    with pytest.raises(DownloadError) as e:
        fetch(spec, tmp_path, quiet=True, retries=0)
    assert 'big.bin' in str(e.value) and 'running again resumes' in str(e.value)
    assert not spec.path(tmp_path).exists()                       # nothing at the final path until verified
    assert fetch(spec, tmp_path, quiet=True, retries=0).read_bytes() == BIG
    path, rng = server.log[-1]
    assert rng is not None and int(rng.split('=')[1].rstrip('-')) > 0   # asked only for the missing bytes
    assert sorted(os.listdir(tmp_path)) == ['big.bin']


def test_retries_resume_within_one_call(tmp_path, server):
    spec = FileSpec('big', 'big.bin', url=f'{server.url}/cut/big.bin', md5=hashlib.md5(BIG).hexdigest())
    assert fetch(spec, tmp_path, quiet=True, retries=2).read_bytes() == BIG


@pytest.mark.parametrize('kind,message', [('dead', '404'), ('html', 'is a web page'), ('files', 'has MD5')])
def test_failures_name_file_url_and_fallback(tmp_path, server, kind, message):
    spec = FileSpec('big', 'big.bin', 'a big file', url=f'{server.url}/{kind}/big.bin',
                    md5='0' * 32 if kind == 'files' else hashlib.md5(BIG).hexdigest(), page='https://example.org/big')
    with pytest.raises(DownloadError) as e:
        fetch(spec, tmp_path, quiet=True)
    msg = str(e.value)
    assert message in msg and 'big.bin' in msg and f'{server.url}/{kind}/big.bin' in msg
    assert 'open https://example.org/big in a browser' in msg and str(spec.path(tmp_path)) in msg
    assert not spec.path(tmp_path).exists() and not list(tmp_path.glob('*.download'))


def test_existing_wrong_file_is_not_overwritten(tmp_path, server):
    spec = FileSpec('big', 'big.bin', url=f'{server.url}/files/big.bin', md5=hashlib.md5(BIG).hexdigest())
    spec.path(tmp_path).write_bytes(b'my own file')
    with pytest.raises(DownloadError, match='already there but has MD5'):
        fetch(spec, tmp_path, quiet=True)
    assert spec.path(tmp_path).read_bytes() == b'my own file' and server.log == []


def test_dead_url_falls_through_to_mirror(tmp_path, server):
    spec = FileSpec('big', 'big.bin', url=f'{server.url}/dead/big.bin', mirrors=(f'{server.url}/html/big.bin', f'{server.url}/files/big.bin'),
                    md5=hashlib.md5(BIG).hexdigest())
    assert fetch(spec, tmp_path, quiet=True).read_bytes() == BIG
    assert [p for p, _ in server.log] == ['/dead/big.bin', '/html/big.bin', '/files/big.bin']


def test_drive_sources_carry_resourcekey():
    urls = BIRDS.sources()
    assert urls[0].startswith('https://drive.usercontent.google.com/download?id=0B3y_msrWZaXLT1BZdVdycDY5TEE')
    assert 'resourcekey=0-sZrhftoEfdvHq6MweAeCjA' in urls[0] and 'confirm=t' in urls[0]
    assert urls[1] == 'https://drive.google.com/uc?id=0B3y_msrWZaXLT1BZdVdycDY5TEE'


@pytest.mark.parametrize('entries,why', [
    ([('../evil', b'x')], "'..'"),
    ([('/abs/evil', b'x')], 'absolute path'),
    ([('d/l', ('sym', '../../outside')), ('d/l/evil', b'x')], 'outside the folder'),
    ([('d/l', ('sym', '/etc'))], 'absolute path'),
    ([('h', ('hard', '../x'))], 'outside the folder'),
])
def test_safe_extract_refuses_escapes(tmp_path, entries, why):
    (tmp_path / 'a.tgz').write_bytes(tgz(entries))
    with pytest.raises(UnsafeArchiveError, match=why):
        safe_extract(tmp_path / 'a.tgz', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()                        # checked before anything (even the folder) is written
    assert not [p for p in tmp_path.parent.rglob('evil')]


def test_safe_extract_refuses_preexisting_link_out(tmp_path):
    "A link already inside the target that points outside is not written through."
    out = tmp_path / 'out'
    out.mkdir()
    os.symlink(tmp_path / 'elsewhere', out / 'd')
    (tmp_path / 'a.tgz').write_bytes(tgz([('d/evil', b'x')]))
    with pytest.raises(UnsafeArchiveError, match='outside the folder'):
        safe_extract(tmp_path / 'a.tgz', out)


def test_zip_traversal_refused(tmp_path):
    (tmp_path / 'a.zip').write_bytes(zipped([('ok.txt', 'x'), ('../../evil.txt', 'x')]))
    with pytest.raises(UnsafeArchiveError):
        safe_extract(tmp_path / 'a.zip', tmp_path / 'out')
    assert not (tmp_path / 'out' / 'ok.txt').exists()


def test_malicious_archive_through_download_cub(tmp_path):
    bad = tgz([('CUB_200_2011/images.txt', b'x'), ('../../escaped.txt', b'x')])
    with LocalServer({'cub.tgz': bad}) as srv:
        spec = dataclasses.replace(CUB, url=f'{srv.url}/files/cub.tgz', md5=hashlib.md5(bad).hexdigest())
        with pytest.raises(UnsafeArchiveError, match="Refusing to unpack"):
            download_cub(tmp_path / 'data', what=['cub'], specs=[spec], quiet=True)
    assert not (tmp_path / 'data' / 'CUB_200_2011').exists() and not list(tmp_path.rglob('escaped.txt'))


def test_unexpected_layout_is_explained(tmp_path):
    flat = zipped([('train/filenames.pickle', b'p')])              # no top-level birds/ folder
    with LocalServer({'birds.zip': flat}) as srv:
        spec = dataclasses.replace(BIRDS, url=f'{srv.url}/files/birds.zip', drive_id=None)
        with pytest.raises(DownloadError, match='holds train at its top level'):
            download_cub(tmp_path / 'data', what=['birds'], specs=[spec], quiet=True)


def test_download_main_unknown_name(tmp_path):
    with pytest.raises(DownloadError, match="Unknown download 'weights'"):
        download_main(str(tmp_path), ['weights'])


# ---------------------------------------------------------------- issue 18: archives and checksums

def test_link_chain_refused_before_anything_is_written(tmp_path):
    "'b' -> '.' is harmless alone, but 'a' -> 'b/../x' then leads out; the whole archive is refused, 'b' is not left behind."
    (tmp_path / 'a.tgz').write_bytes(tgz([('b', ('sym', '.')), ('ok.txt', b'x'), ('a', ('sym', 'b/../x'))]))
    with pytest.raises(UnsafeArchiveError, match="member 'a' is a link to b/../x, outside the folder"):
        safe_extract(tmp_path / 'a.tgz', tmp_path / 'out')
    assert not (tmp_path / 'out').exists() and not os.path.lexists(tmp_path / 'out' / 'b')


def test_links_inside_the_folder_still_unpack(tmp_path):
    (tmp_path / 'a.tgz').write_bytes(tgz([('d', None), ('d/f', b'1'), ('l', ('sym', 'd/f')), ('h', ('hard', 'd/f')),
                                          ('e', ('sym', 'd')), ('e/g', b'2')]))
    safe_extract(tmp_path / 'a.tgz', tmp_path / 'out')
    out = tmp_path / 'out'
    assert (out / 'l').read_bytes() == b'1' and (out / 'h').read_bytes() == b'1' and (out / 'd' / 'g').read_bytes() == b'2'


@pytest.mark.parametrize('kind', ['tgz', 'tar', 'zip'])
def test_truncated_or_damaged_archive_is_a_download_error(tmp_path, kind):
    files = [(f'd/f{i}', os.urandom(20_000)) for i in range(6)]
    data = tgz(files, 'w:gz' if kind == 'tgz' else 'w') if kind != 'zip' else zipped(files)
    if kind == 'zip':                                             # a changed byte inside the 4th member: its CRC fails
        data = bytearray(data); data[data.index(files[3][1][:100]) + 50] ^= 0xFF; data = bytes(data)
    else: data = data[:len(data) // 2]
    (tmp_path / f'a.{kind}').write_bytes(data)
    (tmp_path / 'out').mkdir(); (tmp_path / 'out' / 'mine.txt').write_text('already here')
    with pytest.raises(DownloadError, match='truncated or damaged|damaged: delete it') as e:
        safe_extract(tmp_path / f'a.{kind}', tmp_path / 'out')
    assert f'a.{kind}' in str(e.value) and 'download it again' in str(e.value)
    assert sorted(p.name for p in (tmp_path / 'out').rglob('*')) == ['mine.txt']   # what it had unpacked is gone again


@pytest.mark.parametrize('entries,existing,words', [
    ([('a', b'x'), ('a/b', b'y')], None, "'a' is a file in the archive, but 'a/b' needs it to be a folder"),
    ([('birds/x', b'1')], 'birds', 'needs'),
    ([('birds', b'1')], 'birds/', 'is a file in the archive, but'),
])
def test_file_folder_clash_is_refused_before_writing(tmp_path, entries, existing, words):
    out = tmp_path / 'out'
    out.mkdir()
    if existing == 'birds': (out / 'birds').write_text('a file where a folder goes')
    elif existing == 'birds/': (out / 'birds').mkdir()
    before = sorted(p.name for p in out.rglob('*'))
    for name, data in (('a.zip', zipped(entries)), ('a.tgz', tgz(entries))):
        (tmp_path / name).write_bytes(data)
        with pytest.raises(DownloadError, match=words):
            safe_extract(tmp_path / name, out)
        assert sorted(p.name for p in out.rglob('*')) == before


def test_unpacked_size_is_limited(tmp_path):
    bomb = zipped([('birds/zeros.bin', b'\0' * 80_000_000)], zipfile.ZIP_DEFLATED)   # 80 MB in about 80 KB
    (tmp_path / 'bomb.zip').write_bytes(bomb)
    with pytest.raises(UnsafeArchiveError, match=r'add up to 80.0 MB, more than the limit of 67.1 MB \(8 x the archive'):
        safe_extract(tmp_path / 'bomb.zip', tmp_path / 'out')
    assert not (tmp_path / 'out').exists()
    small = tgz([('d/f', b'x' * 5000)])
    (tmp_path / 'small.tgz').write_bytes(small)
    with pytest.raises(UnsafeArchiveError, match='more than the limit of 4,000 bytes'):
        safe_extract(tmp_path / 'small.tgz', tmp_path / 'out', max_bytes=4000)
    with LocalServer({'birds.zip': BIRDS_ZIP}) as srv:            # through the registry: FileSpec.max_unpacked
        spec = dataclasses.replace(BIRDS, url=f'{srv.url}/files/birds.zip', drive_id=None, max_unpacked=5)   # it holds 6 bytes
        with pytest.raises(UnsafeArchiveError, match='add up to 6 bytes, more than the limit of 5 bytes'):
            download_cub(tmp_path / 'data', what=['birds'], specs=[spec], quiet=True)
    assert not (tmp_path / 'data' / 'birds').exists()


def test_size_and_sha256_in_the_registry_are_verified(tmp_path, server):
    good = dict(url=f'{server.url}/files/big.bin', sha256=hashlib.sha256(BIG).hexdigest(), nbytes=len(BIG))
    assert fetch(FileSpec('big', 'big.bin', **good), tmp_path / 'a', quiet=True).read_bytes() == BIG
    for wrong, words in ((dict(sha256='0' * 64), 'has SHA256'), (dict(nbytes=len(BIG) + 1), f'has {len(BIG):,} bytes, expected')):
        with pytest.raises(DownloadError, match=words):
            fetch(FileSpec('big', 'big.bin', **{**good, **wrong}), tmp_path / 'b', quiet=True)
        assert not (tmp_path / 'b' / 'big.bin').exists()


def test_no_published_hash_pins_the_first_download(tmp_path):
    "Trust on first use: the first copy's SHA-256 is recorded beside it; a later different file is refused."
    first, other = os.urandom(3000), os.urandom(3000)
    with LocalServer({'x.bin': first}) as srv:
        spec = FileSpec('x', 'x.bin', 'a file without a published checksum', url=f'{srv.url}/files/x.bin')
        path = fetch(spec, tmp_path, quiet=True)
        pinned = tmp_path / 'x.bin.sha256'
        assert pinned.read_text() == f'{hashlib.sha256(first).hexdigest()}  x.bin\n'   # `sha256sum -c` format
        assert fetch(spec, tmp_path, quiet=True) == path          # the same file again: fine
        path.unlink()                                             # deleted to save space, then fetched again ...
        srv.files['x.bin'] = other                                # ... but the server now sends other bytes
        with pytest.raises(DownloadError, match='but the first copy downloaded here had') as e:
            fetch(spec, tmp_path, quiet=True)
        assert hashlib.sha256(first).hexdigest() in str(e.value) and str(pinned) in str(e.value)
        assert not path.exists() and not list(tmp_path.glob('*.download'))
        path.write_bytes(other)                                   # or replaced on disk by hand
        with pytest.raises(DownloadError, match='already there but has SHA-256'):
            fetch(spec, tmp_path, quiet=True)
        pinned.unlink()                                           # the user decides to trust the new file
        assert fetch(spec, tmp_path, quiet=True).read_bytes() == other and hashlib.sha256(other).hexdigest() in pinned.read_text()


def test_registry_carries_only_published_checksums():
    "CUB's MD5 is published by Caltech; the Drive files have none (they are pinned on first download, not invented)."
    from stackgan_nb.download import REGISTRY
    assert {n: (s.md5, s.sha256) for n, s in REGISTRY.items() if s.md5 or s.sha256} == {'cub': ('97eceeb196236b17998738112f37df78', None)}
