"""The timing loop the HEIC peers of scripts/bench-heic.py share: runs `job` over `files` `reps` times and prints
one JSON line (images, seconds, JPEG and WebP bytes per image, versions). `job(path)` returns
(rendition, ext, bytes) triples, ext 'jpg' or 'webp'."""
import json, time


def run(job, files, reps, versions):
    t0 = time.perf_counter()
    jpeg = webp = n = 0
    for _ in range(reps):
        for f in files:
            for _name, ext, size in job(f):
                jpeg += size if ext == 'jpg' else 0
                webp += size if ext == 'webp' else 0
            n += 1
    wall = time.perf_counter() - t0
    print(json.dumps(dict(images=n, wall_s=round(wall, 3), jpeg_bytes_per_image=round(jpeg / n),
                          webp_bytes_per_image=round(webp / n), versions=versions)))
