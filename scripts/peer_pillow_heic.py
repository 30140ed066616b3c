#!/usr/bin/env python3
"""The rendition job on HEIC photos done with Pillow and pillow-heif (libheif with libde265), for
scripts/bench-heic.py: the same job as the peer benchmark's Pillow peer (LANCZOS, centred crop box for
cover, JPEG q85 + WebP q80 at Pillow's defaults) plus what imgfleet does for these photos: the HEIF
transforms (pillow-heif applies them), the embedded Display P3 profile converted to sRGB with ImageCms
(littlecms), one decode serving the three renditions. libheif decodes with one thread, as imgfleet's does.

  python peer_pillow_heic.py [--reps R] FILE...     # one JSON line: images, seconds, bytes per image
"""
import argparse, io, os, sys

import pillow_heif
from PIL import Image, ImageCms

pillow_heif.register_heif_opener(thumbnails=False, depth_images=False, aux_images=False)
pillow_heif.options.DECODE_THREADS = 1
SRGB = ImageCms.ImageCmsProfile(ImageCms.createProfile('sRGB'))
TARGETS = [('thumb', 150, True), ('medium', 400, True), ('large', 800, False)]  # (name, box, cover?)

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from heic_peer import run  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument('--reps', type=int, default=1)
ap.add_argument('files', nargs='+')
a = ap.parse_args()


def job(path):
    im = Image.open(path)
    profile = im.info.get('icc_profile')
    im.load()
    if im.mode != 'RGB':
        im = im.convert('RGB')
    if profile:
        src = ImageCms.ImageCmsProfile(io.BytesIO(profile))
        im = ImageCms.profileToProfile(im, src, SRGB, renderingIntent=ImageCms.Intent.PERCEPTUAL, outputMode='RGB')
    W, H = im.size
    outs = []
    for name, t, cover in TARGETS:
        if cover:
            c = t / max(t / W, t / H)
            r = im.resize((t, t), Image.LANCZOS, box=((W - c) / 2, (H - c) / 2, (W + c) / 2, (H + c) / 2))
        else:
            s = min(1.0, t / W, t / H)
            size = (max(1, round(W * s)), max(1, round(H * s)))
            r = im if size == im.size else im.resize(size, Image.LANCZOS)
        for ext, fmt, q in (('jpg', 'JPEG', 85), ('webp', 'WEBP', 80)):
            b = io.BytesIO()
            r.save(b, fmt, quality=q)
            outs.append((name, ext, len(b.getvalue())))
    return outs


run(job, a.files, a.reps, dict(pillow=Image.__version__, pillow_heif=pillow_heif.__version__,
                  libheif=pillow_heif.libheif_version()))
