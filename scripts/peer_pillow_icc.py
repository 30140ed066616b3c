#!/usr/bin/env python3
"""The Pillow / Pillow-SIMD peer's rendition job with one step added: colour management.

Identical to the peer benchmark's peer_pillow.py (draft = libjpeg DCT shrink-on-load, exif_transpose,
LANCZOS, centred crop box for cover, JPEG q85 + WebP q80 at Pillow's defaults), except that an embedded
ICC profile other than sRGB is converted to sRGB with ImageCms (littlecms) once per image, after the
drafted decode and before the resizes. That is the job imgfleet does (it converts every non-sRGB
profile to sRGB); the peer benchmark leaves wide-gamut photos unconverted, so their renditions show
wrong (washed-out) colours and, being less saturated, take fewer bytes.

Run from a copy of the peer benchmark folder (it imports that folder's common.py), with a Pillow
built against littlecms (Pillow-SIMD needs liblcms2-dev at build time):
  python peer_pillow_icc.py --workers 1 --reps 3 FILE...   # one JSON line on stdout, as the peers print
"""
import argparse, io, math, os, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import PIL
from PIL import Image, ImageCms, ImageOps, features
from common import run_bench

try:
    SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB'))
except ImportError as e:
    sys.exit(f'this Pillow has no littlecms ({e}); build it with liblcms2-dev installed')

ap = argparse.ArgumentParser()
ap.add_argument('--workers', type=int, default=1)
ap.add_argument('--reps', type=int, default=3)
ap.add_argument('--out')
ap.add_argument('files', nargs='+')
a = ap.parse_args()

TARGETS = [('thumb', 150, True), ('medium', 400, True), ('large', 800, False)]  # (name, box, cover?)


def to_srgb(im, profile):
    head = profile[:4096]
    if b'sRGB' in head or 's\0R\0G\0B\0'.encode() in head:   # the test imgfleet uses: a profile naming itself sRGB
        return im
    src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
    return ImageCms.profileToProfile(im, src, SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode='RGB')


def job(path):
    im = Image.open(path)
    w, h = im.size
    if im.format == 'JPEG':
        s = min(1.0, max(150 / min(w, h), 400 / min(w, h), min(800 / w, 800 / h)))
        im.draft('RGB', (math.ceil(w * s), math.ceil(h * s)))
    if im.getexif().get(0x0112, 1) in (5, 6, 7, 8):
        w, h = h, w
    profile = im.info.get('icc_profile')
    im = ImageOps.exif_transpose(im)
    if im.mode != 'RGB':
        im = im.convert('RGB')
    if profile:
        im = to_srgb(im, profile)
    W, H = im.size
    outs = []
    for name, t, cover in TARGETS:
        if cover:
            c = t / max(t / W, t / H)
            r = im.resize((t, t), Image.LANCZOS, box=((W - c) / 2, (H - c) / 2, (W + c) / 2, (H + c) / 2))
        else:
            s = min(1.0, t / w, t / h)
            size = (max(1, round(w * s)), max(1, round(h * s)))
            r = im if size == im.size else im.resize(size, Image.LANCZOS)
        for ext, fmt, q in (('jpg', 'JPEG', 85), ('webp', 'WEBP', 80)):
            b = io.BytesIO(); r.save(b, fmt, quality=q); outs.append((name, ext, b.getvalue()))
    return outs


simd = 'post' in PIL.__version__
versions = {'pillow-simd' if simd else 'pillow': PIL.__version__, 'libjpeg_turbo': features.version('libjpeg_turbo'),
            'libwebp': features.version('webp'), 'littlecms': features.version('littlecms2')}
run_bench('pillow-simd' if simd else 'pillow', 'draft + ICC to sRGB', job, a, versions)
