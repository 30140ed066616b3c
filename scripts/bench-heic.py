#!/usr/bin/env python3
"""HEIC photos through the rendition job, imgfleet against Pillow + pillow-heif and libvips, side by side.

Each round runs, one after the other on one core, `imgfleet process --jobs 1` (release, heic feature),
scripts/peer_pillow_heic.py and scripts/peer_pyvips_heic.py over the same HEIC files REPS times, each
under /usr/bin/time -v
(wall time, peak RSS; process start-up included, no warm-up pass). The table gives medians over
rounds and the median of the per-round ratio, which cancels the drift of a shared machine.

  scripts/bench-heic.py [--rounds 5] [--reps 3] [FILE...]   # default: the iPhone photos in
                                                             # worker/tests/fixtures/heif
The Pillow peer is installed into /tmp/heic-peer-venv on first use (pip: pillow, pillow-heif); the libvips
peer uses Debian's libvips (apt-get install libvips42; the pyvips-binary wheel's libvips cannot decode HEVC)
through pyvips in /tmp/heic-vips-venv, and is skipped when libvips42 is missing.
"""
import argparse, glob, json, os, re, shutil, statistics, subprocess, sys, tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument('--rounds', type=int, default=5)
ap.add_argument('--reps', type=int, default=3)
ap.add_argument('files', nargs='*')
a = ap.parse_args()
files = a.files or sorted(glob.glob(os.path.join(ROOT, 'worker', 'tests', 'fixtures', 'heif', 'iphone-*.heic')))

VENV = '/tmp/heic-peer-venv'
PY = os.path.join(VENV, 'bin', 'python')
def imports(python, modules):
    return os.path.exists(python) and subprocess.run([python, '-c', f'import {modules}'], capture_output=True).returncode == 0


if not imports(PY, 'pillow_heif, PIL.ImageCms'):
    subprocess.run([sys.executable, '-m', 'venv', VENV], check=True)
    subprocess.run([PY, '-m', 'pip', 'install', '-q', 'pillow==12.0.0', 'pillow-heif==1.8.1'], check=True)
VIPS_PY = '/tmp/heic-vips-venv/bin/python'
have_vips = os.path.exists('/usr/share/doc/libvips42')
if have_vips and not imports(VIPS_PY, 'pyvips'):
    subprocess.run([sys.executable, '-m', 'venv', '/tmp/heic-vips-venv'], check=True)
    subprocess.run([VIPS_PY, '-m', 'pip', 'install', '-q', 'pyvips==3.2.0'], check=True)
if not shutil.which('nasm'):
    sys.exit('needs nasm, or libjpeg-turbo is built without its SIMD kernels (apt-get install nasm; then cargo clean -p mozjpeg-sys --release)')
print('building imgfleet (release, heic)…', file=sys.stderr)
subprocess.run(['cargo', 'build', '--release', '--locked', '-p', 'imgfleet-worker', '--features', 'heic', '--bin', 'imgfleet'],
               cwd=ROOT, check=True)
IMGFLEET = os.path.join(ROOT, 'target', 'release', 'imgfleet')


def timed(cmd):
    p = subprocess.run(['/usr/bin/time', '-v', *cmd], capture_output=True, text=True)
    if p.returncode != 0:
        sys.exit(f'{cmd[0]} failed: {p.stderr[-2000:]}')
    rss = int(re.search(r'Maximum resident set size \(kbytes\): (\d+)', p.stderr).group(1)) / 1024
    wall = re.search(r'Elapsed \(wall clock\) time \(h:mm:ss or m:ss\): (\S+)', p.stderr).group(1)
    secs = sum(float(x) * 60 ** i for i, x in enumerate(reversed(wall.split(':'))))
    return p.stdout, secs, rss


def imgfleet():
    out = tempfile.mkdtemp(prefix='imgfleet-heic-')
    stdout, wall, rss = timed([IMGFLEET, 'process', '--json', '--jobs', '1', '--out', out, *(files * a.reps)])
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith('{')]
    assert all(l['status'] == 'ok' for l in lines), lines
    per = lambda fmt: sum(r['bytes'] for l in lines for r in l['renditions'] if r['format'] == fmt) / len(lines)
    return dict(images=len(lines), wall_s=wall, rss_mb=rss, jpeg=per('jpeg'), webp=per('webp'))


def peer(python, script):
    stdout, wall, rss = timed([python, os.path.join(ROOT, 'scripts', script), '--reps', str(a.reps), *files])
    r = json.loads(stdout.strip().splitlines()[-1])
    return dict(images=r['images'], wall_s=wall, rss_mb=rss, jpeg=r['jpeg_bytes_per_image'], webp=r['webp_bytes_per_image'],
                versions=r['versions'])


configs = [('imgfleet process', imgfleet), ('Pillow + pillow-heif', lambda: peer(PY, 'peer_pillow_heic.py'))]
if have_vips:
    configs.append(('libvips 8.14 (Debian)', lambda: peer(VIPS_PY, 'peer_pyvips_heic.py')))
rows = {label: [] for label, _ in configs}
for i in range(a.rounds):
    for label, run in configs:
        r = run()
        r['images_per_s'] = r['images'] / r['wall_s']
        rows[label].append(r)
        print(f'round {i + 1} {label}: {r["images_per_s"]:.2f} images/s, {r["rss_mb"]:.0f} MB', file=sys.stderr)

med = lambda rs, k: statistics.median(r[k] for r in rs)
base = rows['Pillow + pillow-heif']
versions = {label: rs[0]['versions'] for label, rs in rows.items() if 'versions' in rs[0]}
print(f'{len(files)} HEIC files x {a.reps} per pass, {a.rounds} rounds, one core; versions {versions}')
print('| config | images/s (median) | vs Pillow + pillow-heif, same round (median) | peak RSS MB | JPEG bytes/image | WebP bytes/image |')
print('|---|---|---|---|---|---|')
for label, rs in rows.items():
    ratio = statistics.median(r['images_per_s'] / b['images_per_s'] for r, b in zip(rs, base))
    print(f'| {label} | {med(rs, "images_per_s"):.2f} | {ratio:.2f}x | {med(rs, "rss_mb"):.0f} | {med(rs, "jpeg"):.0f} | {med(rs, "webp"):.0f} |')
