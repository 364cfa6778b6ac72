"""The data pipeline end to end on the synthetic CUB: read -> validate -> cache -> batches; errors; resume."""
import json
import os
import pickle
import random
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from stackgan_nb.data import (Batcher, DataError, OfficialCUBDataset, UnsafePickleError, build_cache, cache_paths, crop_box,
                              load_images, load_pickle, read_cub, verify_cache)
from stackgan_nb.synthetic import TINY, make_synthetic_cub, write_pickle
from stackgan_nb.text import text_encoder_from_spec

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope='module')
def world(tmp_path_factory):
    return make_synthetic_cub(tmp_path_factory.mktemp('cub'), **dict(TINY, images_per_species=10), progress=False)


@pytest.fixture
def copy(world, tmp_path):
    dst = tmp_path / 'copy'
    shutil.copytree(world, dst, ignore=shutil.ignore_patterns('cache'))
    return dst


def test_round_trip(world, tmp_path):
    split = read_cub(world, 'train')
    assert len(split) == 30 and split.embeddings.shape == (30, 10, 1024) and split.class_ids.dtype == np.int64
    enc = text_encoder_from_spec(split.text_encoder_spec)
    assert np.allclose(enc([split.captions[4][2]])[0].numpy(), split.embeddings[4, 2], atol=1e-6)  # row i = caption i
    manifest = build_cache(split, tmp_path / 'cache', sizes=(76, 304), progress=False)
    assert set(manifest) == {76, 304} and manifest[76]['shape'] == [30, 3, 76, 76]
    for size, crop in ((76, 64), (304, 256)):
        imgs = load_images(split, size, tmp_path / 'cache')
        assert isinstance(imgs, np.memmap) and imgs.shape == (30, 3, size, size) and imgs.dtype == np.uint8
        for wrong in ('shift', 'class'):
            b = next(iter(Batcher(imgs, split.embeddings, split.class_ids, 8, crop, wrong=wrong, captions_per_sample=4)))
            assert b.images.shape == (8, 3, crop, crop) and b.images.dtype == torch.float32
            assert -1.0 <= b.images.min().item() and b.images.max().item() <= 1.0 and b.images.std() > 0.1
            assert b.embeddings.shape == (8, 1024) and b.index.shape == (8,)
            assert (b.wrong_idx is None) == (wrong == 'shift')


def test_cache_equals_official_preprocessing(world, tmp_path):
    split = read_cub(world, 'test')
    imgs = load_images(split, 304, tmp_path / 'c', progress=False)
    ds = OfficialCUBDataset(split, 256)
    for i in range(len(split)):
        assert np.array_equal(np.asarray(ds.get_img(i)).transpose(2, 0, 1), imgs[i])


def test_crop_box_matches_official_formula():
    rng = np.random.default_rng(1)
    for _ in range(5000):
        W, H = (int(v) for v in rng.integers(20, 800, 2))
        x, y = float(rng.integers(0, W - 1)), float(rng.integers(0, H - 1))
        w, h = float(rng.integers(1, W - x + 1)), float(rng.integers(1, H - y + 1))
        R = int(max(w, h) * 0.75)
        cx, cy = int((2 * x + w) / 2), int((2 * y + h) / 2)
        assert crop_box((x, y, w, h), W, H) == (max(0, cx - R), max(0, cy - R), min(W, cx + R), min(H, cy + R))


def test_malicious_pickle_is_rejected(copy, tmp_path):
    class Payload:
        def __reduce__(self): return (os.system, (f'touch {tmp_path}/pwned',))
    (copy / 'birds/train/filenames.pickle').write_bytes(pickle.dumps([Payload()], protocol=2))
    with pytest.raises(UnsafePickleError, match='wants to call posix.system'):
        read_cub(copy)
    assert not (tmp_path / 'pwned').exists()
    (copy / 'x.pickle').write_bytes(pickle.dumps(Path('/etc'), protocol=2))
    with pytest.raises(UnsafePickleError, match='pathlib'):
        load_pickle(copy / 'x.pickle')


def test_missing_and_inconsistent_files(copy):
    split = read_cub(copy)
    for p in split.image_paths[:7]: p.unlink()
    with pytest.raises(DataError, match=r'7 of 30 images are missing: .*\(and 2 more\)'):
        read_cub(copy)
    (copy / 'birds/train/class_info.pickle').write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    with pytest.raises(DataError, match='3 class ids but filenames.pickle lists 30'):
        read_cub(copy)
    os.remove(copy / 'CUB_200_2011/bounding_boxes.txt')
    with pytest.raises(FileNotFoundError, match='bounding_boxes.txt.*stackgan download --root'):
        read_cub(copy)


def test_truncated_image_named(copy):
    split = read_cub(copy)
    data = split.image_paths[11].read_bytes()
    split.image_paths[11].write_bytes(data[:200])
    with pytest.raises(DataError, match=f'{split.image_paths[11].name}: cannot decode'):
        build_cache(read_cub(copy), copy / 'cache', sizes=(76,), progress=False)
    assert not list((copy / 'cache').glob('*.npy*'))


def test_grayscale_and_cmyk_become_rgb(copy):
    split = read_cub(copy)
    Image.open(split.image_paths[0]).convert('CMYK').save(split.image_paths[0])
    Image.open(split.image_paths[1]).convert('L').save(split.image_paths[1])
    split = read_cub(copy)                                   # file sizes changed
    imgs = load_images(split, 76, copy / 'cache', progress=False)
    rgb = imgs[0].astype(int)
    assert np.abs(rgb[0] - rgb[1]).mean() > 5                 # CMYK image still coloured
    assert np.array_equal(imgs[1][0], imgs[1][1]) and np.array_equal(imgs[1][1], imgs[1][2])   # gray -> R = G = B


def test_stale_and_partial_cache_rebuilt(copy):
    split = read_cub(copy)
    cache = copy / 'cache'
    build_cache(split, cache, sizes=(76,), progress=False)
    arr, man = cache_paths(cache, 'train', 76)
    first = np.array(np.load(arr))

    def stamp(): return arr.stat().st_mtime_ns

    s = stamp(); build_cache(split, cache, sizes=(76,), progress=False); assert stamp() == s          # current: kept
    # stale: an image replaced by another picture
    Image.new('RGB', (120, 90), (255, 0, 0)).save(split.image_paths[2])
    split2 = read_cub(copy)
    s = stamp(); imgs = load_images(split2, 76, cache, progress=False); assert stamp() != s
    assert (imgs[2][0] > 200).all() and np.array_equal(imgs[3], first[3])
    # stale: a box changed in bounding_boxes.txt
    lines = (copy / 'CUB_200_2011/bounding_boxes.txt').read_text().splitlines()
    parts = lines[0].split(); parts[1] = str(float(parts[1]) + 3)
    (copy / 'CUB_200_2011/bounding_boxes.txt').write_text('\n'.join([' '.join(parts)] + lines[1:]) + '\n')
    s = stamp(); load_images(read_cub(copy), 76, cache, progress=False); assert stamp() != s
    # partial: the array cut short (e.g. an interrupted copy), or the manifest missing
    split3 = read_cub(copy)
    with open(arr, 'r+b') as f: f.truncate(arr.stat().st_size // 2)
    assert not verify_cache(split3, 76, cache)
    load_images(split3, 76, cache, progress=False)
    assert verify_cache(split3, 76, cache)
    man.unlink()
    with pytest.raises(DataError, match='run build_cache'):
        load_images(split3, 76, cache, build=False)


def run(b, n):
    out = []
    while len(out) < n:
        for x in b:
            out.append(x)
            if len(out) == n: return out
    return out


@pytest.mark.parametrize('kw', [dict(), dict(wrong='class', captions_per_sample=4), dict(world_size=2, rank=1)])
def test_resume_mid_epoch_is_bit_identical(world, tmp_path, kw):
    split = read_cub(world)
    imgs = load_images(split, 76, tmp_path / 'c', progress=False)
    make = lambda: Batcher(imgs, split.embeddings, split.class_ids, 4, 64, seed=11, **kw)
    ref = run(make(), 3 * len(make()) + 1)
    for stop in (1, len(make()), len(make()) + 2):
        a = make()
        head = run(a, stop)
        state = json.loads(json.dumps(a.state_dict()))          # through JSON: builtins only
        b = make()
        b.load_state_dict(state)
        tail = run(b, len(ref) - stop)
        for x, y in zip(head + tail, ref):
            assert torch.equal(x.images, y.images) and torch.equal(x.embeddings, y.embeddings) and torch.equal(x.index, y.index)
            assert (x.wrong_idx is None and y.wrong_idx is None) or torch.equal(x.wrong_idx, y.wrong_idx)


def test_state_dict_during_iteration_does_not_replay(world, tmp_path):
    "A checkpoint taken right after an epoch's last batch (state_dict() mid-loop) must not make the loop replay the epoch."
    split = read_cub(world)
    imgs = load_images(split, 76, tmp_path / 'c', progress=False)
    b = Batcher(imgs, split.embeddings, split.class_ids, 4, 64, seed=3)
    seen = []
    for batch in b:
        seen.append(batch.index)
        b.state_dict()                                           # as the trainer's autosave does
        if len(seen) > 2 * len(b): break                         # (fail, do not loop forever)
    assert len(seen) == len(b) and b.state_dict() == {**b.state_dict(), 'epoch': 1, 'position': 0}


def test_global_rng_untouched_and_seed_matters(world, tmp_path):
    split = read_cub(world)
    imgs = load_images(split, 76, tmp_path / 'c', progress=False)
    torch.manual_seed(5); np.random.seed(5); random.seed(5)
    before = torch.rand(3), np.random.rand(3), random.random()
    torch.manual_seed(5); np.random.seed(5); random.seed(5)
    list(Batcher(imgs, split.embeddings, split.class_ids, 4, 64))
    after = torch.rand(3), np.random.rand(3), random.random()
    assert torch.equal(before[0], after[0]) and np.array_equal(before[1], after[1]) and before[2] == after[2]
    b0 = next(iter(Batcher(imgs, split.embeddings, split.class_ids, 4, 64, seed=0)))
    b1 = next(iter(Batcher(imgs, split.embeddings, split.class_ids, 4, 64, seed=1)))
    assert not torch.equal(b0.images, b1.images)


def test_ranks_shard_one_permutation(world, tmp_path):
    split = read_cub(world)
    imgs = load_images(split, 76, tmp_path / 'c', progress=False)
    seen = [torch.cat([b.index for b in Batcher(imgs, split.embeddings, split.class_ids, 3, 64, rank=r, world_size=4)])
            for r in range(4)]
    assert all(len(s) == 6 for s in seen)                       # 30 // 4 = 7 per rank, 2 batches of 3
    allidx = torch.cat(seen)
    assert len(allidx.unique()) == len(allidx)
    single = Batcher(imgs, split.embeddings, split.class_ids, 3, 64)
    assert torch.equal(torch.stack(seen[:4], 1).reshape(-1)[:12], torch.stack([single.order(0)[r::4][:6] for r in range(4)], 1).reshape(-1)[:12])


def test_wrong_class_pairs(world, tmp_path):
    split = read_cub(world)
    imgs = load_images(split, 76, tmp_path / 'c', progress=False)
    cls = torch.as_tensor(split.class_ids)
    for b in Batcher(imgs, split.embeddings, split.class_ids, 10, 64, wrong='class'):
        assert (cls[b.index][b.wrong_idx] != cls[b.index]).all()


def test_official_dataset_with_dataloader(world):
    split = read_cub(world)
    dl = torch.utils.data.DataLoader(OfficialCUBDataset(split, 64), batch_size=5, shuffle=True, drop_last=True, num_workers=0)
    x, e = next(iter(dl))
    assert x.shape == (5, 3, 64, 64) and e.shape == (5, 1024) and -1 <= x.min() and x.max() <= 1


def test_benchmark_smoke():
    out = subprocess.run([sys.executable, str(REPO / 'bench/data_speed.py'), '--smoke', '--seconds', '0.2', '--workers', '0',
                          '--batch-size', '16', '--threads', '1'],
                         capture_output=True, text=True, timeout=300, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert '| ours: uint8 cache + Batcher | 64 |' in out.stdout and '| official PIL + DataLoader | 256 |' in out.stdout


# ---------------------------------------------------------------- issue 18: data validated at the door

def png16(path, rgb16):
    "A real 16-bit RGB PNG (PIL cannot write one): rows of big-endian samples, zlib, CRCs."
    import struct
    import zlib
    h, w, _ = rgb16.shape
    raw = b''.join(b'\0' + rgb16[y].astype('>u2').tobytes() for y in range(h))
    def chunk(t, d): return struct.pack('>I', len(d)) + t + d + struct.pack('>I', zlib.crc32(t + d) & 0xffffffff)
    path.write_bytes(b'\x89PNG\r\n\x1a\n' + chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 16, 2, 0, 0, 0)) +
                     chunk(b'IDAT', zlib.compress(raw)) + chunk(b'IEND', b''))


def test_deep_and_transparent_images_are_scaled_not_clipped(copy):
    "16-bit PNG, float and 32-bit TIFF, transparency: real files under the image's .jpg name (PIL reads the content)."
    split = read_cub(copy)
    writers = {
        0: lambda p, W, H: Image.fromarray(np.full((H, W), 32768, np.uint16)).save(p, format='PNG'),        # I;16 gray
        1: lambda p, W, H: Image.fromarray(np.full((H, W), 0.5, np.float32), 'F').save(p, format='TIFF'),   # float 0..1
        2: lambda p, W, H: Image.fromarray(np.full((H, W), 2**30, np.int32), 'I').save(p, format='TIFF'),   # 32-bit
        3: lambda p, W, H: png16(p, np.tile(np.array([65535, 32768, 0], np.uint16), (H, W, 1))),             # RGB 16-bit
        4: lambda p, W, H: Image.new('RGBA', (W, H), (0, 0, 0, 0)).save(p, format='PNG'),                    # transparent
    }
    for i, write in writers.items():
        write(split.image_paths[i], *Image.open(split.image_paths[i]).size)
    imgs = load_images(read_cub(copy), 76, copy / 'cache', progress=False)
    assert imgs.dtype == np.uint8
    assert (imgs[0] == 128).all()                                # 32768 / 65535 of white, not clipped to 255
    assert (imgs[1] == 128).all()                                # 0.5 of white, not 0 or 1
    assert (np.abs(imgs[2].astype(int) - 64) <= 1).all()          # 2**30 of a 32-bit range: a quarter
    assert (imgs[3][0] == 255).all() and (imgs[3][1] == 128).all() and (imgs[3][2] == 0).all()
    assert (imgs[4] == 255).all()                                # transparent over white, not black


@pytest.mark.parametrize('value,words', [(float('nan'), 'the F pixels hold NaN or inf'), (float('inf'), 'the F pixels hold NaN or inf'),
                                         (70000.0, 'float pixels up to 70000'), (-3.0, 'F pixels down to -3')])
def test_deep_images_that_cannot_be_scaled_are_named(copy, value, words):
    split = read_cub(copy)
    a = np.full((40, 50), 0.5, np.float32)
    a[3, 4] = value
    Image.fromarray(a, 'F').save(split.image_paths[6], format='TIFF')
    with pytest.raises(DataError, match=f'{split.image_paths[6].name}: .*{words}'):
        build_cache(read_cub(copy), copy / 'cache', sizes=(76,), progress=False)


def _set_box(root, image_index, text):
    "Replace the box of the `image_index`-th image of the train split in bounding_boxes.txt; returns (line number, key)."
    split = read_cub(root)
    key = split.filenames[image_index]
    ids = {line.split()[1][:-4]: line.split()[0] for line in (root / 'CUB_200_2011/images.txt').read_text().splitlines()}
    path = root / 'CUB_200_2011/bounding_boxes.txt'
    lines = path.read_text().splitlines()
    n = next(i for i, line in enumerate(lines) if line.split()[0] == ids[key])
    lines[n] = f'{ids[key]} {text}'
    path.write_text('\n'.join(lines) + '\n')
    return n + 1, key


@pytest.mark.parametrize('box,why', [('10 10 0 0', 'is empty'), ('10 10 0.5 40', 'is empty'), ('-5 3 40 40', 'negative'),
                                     ('nan 3 40 40', 'NaN or inf'), ('3 3 inf 40', 'NaN or inf'),
                                     ('3 3 1 1', 'too small'), ('3 3 abc 40', 'not a number')])
def test_impossible_boxes_are_refused_with_file_and_line(copy, box, why):
    line, key = _set_box(copy, 4, box)
    with pytest.raises(DataError) as e:
        read_cub(copy)
    msg = str(e.value)
    assert 'bounding_boxes.txt' in msg and f'line {line} ' in msg and key in msg and why in msg


@pytest.mark.parametrize('case', ['1x1 image', 'box outside', 'box beyond the edge'])
def test_box_that_does_not_fit_its_image_is_named(copy, case):
    split = read_cub(copy)
    path = split.image_paths[7]
    if case == '1x1 image': Image.new('RGB', (1, 1), (200, 10, 10)).save(path, format='JPEG')
    line, _ = _set_box(copy, 7, {'1x1 image': '3 4 30 30', 'box outside': '5000 10 30 30', 'box beyond the edge': '10 10 500 20'}[case])
    split = read_cub(copy)
    for attempt in (lambda: build_cache(split, copy / 'cache', sizes=(76,), progress=False),
                    lambda: OfficialCUBDataset(split, 64)[7]):
        with pytest.raises(DataError) as e:
            attempt()
        msg = str(e.value)
        assert str(path) in msg and f'bounding_boxes.txt, line {line}' in msg and 'reaches beyond' in msg
    assert not list((copy / 'cache').glob('*.npy*'))


def _damage(root, name, obj):
    write_pickle(obj, root / 'birds/train' / name)
    return root / 'birds/train' / name


@pytest.mark.parametrize('name,make,words', [
    ('char-CNN-RNN-embeddings.pickle', lambda s: [[['a'] * 4] * 10] * len(s), 'holds <U1 values, not caption embeddings'),
    ('char-CNN-RNN-embeddings.pickle', lambda s: {'emb': 1}, 'holds dict, not caption embeddings'),
    ('char-CNN-RNN-embeddings.pickle', lambda s: [[1.0, 2.0], [3.0]] * len(s), 'does not hold caption embeddings'),
    ('char-CNN-RNN-embeddings.pickle', lambda s: np.where(np.arange(len(s))[:, None, None] == 5, np.nan, s.embeddings),
     'embeddings of 1 images hold NaN or inf, first row 5'),
    ('class_info.pickle', lambda s: [float(c) + 0.5 for c in s.class_ids], 'holds float64 values, not class ids'),
    ('class_info.pickle', lambda s: np.asarray(s.class_ids).reshape(-1, 1), 'shape (30, 1): expected a flat list'),
    ('class_info.pickle', lambda s: [-2**62] + list(s.class_ids[1:]), 'class id -4611686018427387904 of row 0'),
    ('class_info.pickle', lambda s: [True] * len(s), 'holds bool values'),
    ('filenames.pickle', lambda s: s.filenames[:-1] + [s.filenames[3]], 'lists 1 images twice'),
    ('filenames.pickle', lambda s: s.filenames[:-1] + ['../../../etc/passwd'], 'leave the images folder'),
])
def test_wrong_metadata_is_named(copy, name, make, words):
    split = read_cub(copy)
    path = _damage(copy, name, make(split))
    with pytest.raises(DataError) as e:
        read_cub(copy)
    assert str(path) in str(e.value) and words in str(e.value), str(e.value)
    if name == 'char-CNN-RNN-embeddings.pickle' and 'NaN' in words:
        assert split.filenames[5] in str(e.value)


def test_cli_reports_wrong_metadata_in_one_line(copy, tmp_path):
    "A dict where the embeddings should be: `stackgan train` prints one line and exits 2 (it was a traceback)."
    _damage(copy, 'char-CNN-RNN-embeddings.pickle', {'not': 'an array'})
    exe = Path(sys.executable).parent / 'stackgan'
    r = subprocess.run([str(exe), 'train', '--data', str(copy), '--run', 'x', '--runs-root', str(tmp_path / 'runs'), '--device',
                        'cpu', '-q'], capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and 'Traceback' not in r.stderr, r.stderr[-2000:]
    assert r.stderr.startswith('stackgan: error: ') and 'char-CNN-RNN-embeddings.pickle holds dict' in r.stderr


def _temp_in_child(target, wait: bool):
    "A real second process that makes a temp file for `target` with `core.temp_path`; it exits at once or waits for stdin."
    code = (f'import sys; from stackgan_nb.core import temp_path; p = temp_path({str(target)!r}); p.write_bytes(b"x" * 1000); '
            f'print(p, flush=True); {"sys.stdin.read()" if wait else ""}')
    child = subprocess.Popen([sys.executable, '-c', code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    return child, Path(child.stdout.readline().strip())


def test_temp_files_of_dead_builders_are_removed_and_live_ones_kept(world, tmp_path):
    split, cache = read_cub(world), tmp_path / 'cache'
    cache.mkdir()
    dead, dead_tmp = _temp_in_child(cache_paths(cache, 'train', 76)[0], wait=False)
    dead.wait(30)                                                  # its writer is gone: a killed build's leftover
    live, live_tmp = _temp_in_child(cache_paths(cache, 'train', 304)[0], wait=True)   # another build still writing
    elsewhere = cache / '.train_76.npy.some-other-machine-4242-0123abcd.tmp'          # a writer on another host (Drive)
    elsewhere.write_bytes(b'x')
    try:
        assert dead_tmp.exists() and live_tmp.exists() and str(dead.pid) in dead_tmp.name
        build_cache(split, cache, sizes=(76,), progress=False)
        assert not dead_tmp.exists() and live_tmp.exists() and elsewhere.exists()
    finally:
        live.stdin.close(); live.wait(30)
    build_cache(split, cache, sizes=(76,), progress=False)         # now its writer is gone too
    assert not live_tmp.exists() and elsewhere.exists()
