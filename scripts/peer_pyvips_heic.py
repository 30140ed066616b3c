#!/usr/bin/env python3
"""The rendition job on HEIC photos done with libvips through pyvips, for scripts/bench-heic.py.

Debian 12's libvips 8.14 (apt-get install libvips42: libheif 1.15 with libde265; the libvips of the
pyvips-binary wheel has no HEVC decoder) as the peer benchmark's pyvips peer runs it in "once" mode: one
Image.thumbnail to the size that serves all three renditions (libvips may read the file's embedded
thumbnail instead when that is large enough), the Display P3 profile converted to sRGB
(export_profile), thumbnail_image for each rendition (centred crop for cover), JPEG Q85 + WebP Q80,
stripped. One libvips thread.

  python peer_pyvips_heic.py [--reps R] FILE...     # one JSON line: images, seconds, bytes per image
"""
import argparse, math, os, sys

os.environ['VIPS_CONCURRENCY'] = '1'
import pyvips

pyvips.cache_set_max(0)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heic_peer import run  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--reps', type=int, default=1)
ap.add_argument('files', nargs='+')
a = ap.parse_args()

SIZES = [('thumb', 150, dict(height=150, crop='centre')),
         ('medium', 400, dict(height=400, crop='centre')),
         ('large', 800, dict(height=800, size='down'))]


def job(path):
    hdr = pyvips.Image.new_from_file(path)
    w, h = hdr.width, hdr.height
    if hdr.get_typeof('orientation') and hdr.get('orientation') in (5, 6, 7, 8):
        w, h = h, w
    s = min(1.0, max(400 / min(w, h), min(800 / w, 800 / h)))
    box = math.ceil(max(w, h) * s)
    colour = {'export_profile': 'srgb'} if hdr.get_typeof('icc-profile-data') else {}
    base = pyvips.Image.thumbnail(path, box, height=box, size='down', **colour).copy_memory()
    outs = []
    for name, t, opts in SIZES:
        im = base.thumbnail_image(t, **opts)
        outs.append((name, 'jpg', len(im.jpegsave_buffer(Q=85, strip=True))))
        outs.append((name, 'webp', len(im.webpsave_buffer(Q=80, strip=True))))
    return outs


run(job, a.files, a.reps, dict(libvips='.'.join(str(pyvips.version(i)) for i in range(3)), pyvips=pyvips.__version__))
