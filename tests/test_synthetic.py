"""The synthetic CUB: fast, deterministic, and its ground truth agrees with its pixels and its captions."""
import json

import numpy as np
import pytest
from PIL import Image

from stackgan_nb.synthetic import (PALETTE, PARTS, TEMPLATES, TINY, caption_attributes, make_species, make_synthetic_cub,
                                   synthetic_attributes)
from stackgan_nb.text import HashTextEncoder


def nearest_colour(rgb):
    names = list(PALETTE)
    d = ((np.array([PALETTE[n] for n in names], float) - np.asarray(rgb, float)) ** 2).sum(1)
    return names[int(d.argmin())]


def test_tiny_is_deterministic(tmp_path):
    a = make_synthetic_cub(tmp_path / 'a', **TINY, progress=False)
    b = make_synthetic_cub(tmp_path / 'b', **TINY, progress=False)
    files = sorted(p.relative_to(a) for p in a.rglob('*') if p.is_file() and p.name != 'synthetic.json')
    assert files == sorted(p.relative_to(b) for p in b.rglob('*') if p.is_file() and p.name != 'synthetic.json')
    assert all((a / f).read_bytes() == (b / f).read_bytes() for f in files)
    c = make_synthetic_cub(tmp_path / 'c', **dict(TINY, seed=1), progress=False)
    assert (a / 'CUB_200_2011/bounding_boxes.txt').read_text() != (c / 'CUB_200_2011/bounding_boxes.txt').read_text()


def test_default_size_and_idempotent(tmp_path):
    "(How long it takes is printed in nbs/13_synthetic.ipynb, not asserted: a busy machine is slower, not wrong.)"
    root = make_synthetic_cub(tmp_path, progress=False)
    info = json.loads((root / 'birds/synthetic.json').read_text())
    assert (info['n_train'], info['n_test'], info['n_species']) == (900, 300, 40)
    written = {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()}
    make_synthetic_cub(tmp_path, progress=False)                    # idempotent: a no-op
    assert {p: p.stat().st_mtime_ns for p in root.rglob('*') if p.is_file()} == written


def test_attributes_match_pixels_and_captions(tmp_path):
    root = make_synthetic_cub(tmp_path, n_species=6, images_per_species=5, image_size=256, grayscale_every=7, progress=False)
    attrs = synthetic_attributes(root)
    boxes = {}
    ids = dict(line.split() for line in (root / 'CUB_200_2011/images.txt').read_text().splitlines())
    for line in (root / 'CUB_200_2011/bounding_boxes.txt').read_text().splitlines():
        i, *box = line.split()
        boxes[ids[i][:-4]] = [float(v) for v in box]
    hits = total = 0
    for key, a in attrs.items():
        img = Image.open(root / 'CUB_200_2011/images' / f'{key}.jpg')
        assert img.size == tuple(a['image_size'])
        assert (img.mode == 'L') == a['grayscale']
        x, y, w, h = boxes[key]
        assert 0 <= x and 0 <= y and x + w <= img.size[0] and y + h <= img.size[1] and min(w, h) > 20
        for part in ('crown', 'breast', 'wings', 'tail'):
            px, py = a['parts_xy'][part]
            assert x - 1 <= px <= x + w + 1 and y - 1 <= py <= y + h + 1
            if not a['grayscale']:
                hits += nearest_colour(img.convert('RGB').getpixel((int(px), int(py)))) == a[part]
                total += 1
        for cap in (root / 'birds/text_c10' / f'{key}.txt').read_text().splitlines():
            for k, v in caption_attributes(cap).items(): assert a[k] == v, (cap, k)
    assert any(a['grayscale'] for a in attrs.values())
    assert hits / total > 0.97, (hits, total)


def test_every_template_binds_colour_to_part():
    enc = HashTextEncoder(32)
    for s in make_species(60, seed=3):
        for t in TEMPLATES:
            cap = t.format(**s, size='medium')
            _, pairs = enc.features(cap)
            named = caption_attributes(cap)
            assert set(named) <= set(PARTS) | {'size'} and len(named) >= 2
            for part, colour in named.items():
                if part == 'size': continue
                assert colour == s[part]
                assert any(f'{colour}+' in p or f'+{colour}' in p for p in pairs), cap


def test_species_split_is_disjoint_and_image_split_is_not(tmp_path):
    for split_by, disjoint in (('species', True), ('image', False)):
        root = make_synthetic_cub(tmp_path / split_by, **dict(TINY, split_by=split_by), progress=False)
        attrs = synthetic_attributes(root)
        tr = {a['class_id'] for a in attrs.values() if a['split'] == 'train'}
        te = {a['class_id'] for a in attrs.values() if a['split'] == 'test'}
        assert te and (not tr & te) == disjoint


def test_refuses_real_data_folder(tmp_path):
    (tmp_path / 'birds').mkdir()
    with pytest.raises(FileExistsError, match='did not write'):
        make_synthetic_cub(tmp_path, **TINY, progress=False)
