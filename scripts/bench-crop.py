#!/usr/bin/env python3
"""What a crop mode costs: `imgfleet process` on one core with centred crops (--base, default
loadtest/presets/profile-centre.toml) and with a preset whose crops follow the image (--preset, default
loadtest/presets/profile-attention.toml; the built-in preset's face crops are
loadtest/presets/profile-face.toml), alternating in one run, so both see the same machine. Reports ms per
image for each (median over rounds) and the difference, which is the crop mode's cost per image.

  scripts/bench-crop.py PHOTOS_DIR [--imgfleet target/release/imgfleet] [--base FILE] [--preset FILE] [--rounds 5]
"""
import argparse, os, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument('photos')
ap.add_argument('--imgfleet', default=os.path.join(ROOT, 'target', 'release', 'imgfleet'))
ap.add_argument('--base', default=os.path.join(ROOT, 'loadtest', 'presets', 'profile-centre.toml'))
ap.add_argument('--preset', default=os.path.join(ROOT, 'loadtest', 'presets', 'profile-attention.toml'))
ap.add_argument('--rounds', type=int, default=5)
a = ap.parse_args()

files = sorted(os.path.join(a.photos, f) for f in os.listdir(a.photos) if f.lower().endswith(('.jpg', '.jpeg')))
if not files:
    sys.exit(f'no JPEG photos in {a.photos}')


def run(preset):
    """Seconds of CPU (user + system) that one `process --jobs 1` pass over the photos takes."""
    with tempfile.TemporaryDirectory() as out:
        args = [a.imgfleet, 'process', '--jobs', '1', '--json', '--out', out, '--preset', preset]
        before = os.times()
        subprocess.run(args + files, check=True, stdout=subprocess.DEVNULL)
        after = os.times()
    return (after.children_user - before.children_user) + (after.children_system - before.children_system)


run(a.base), run(a.preset)  # warm-up: page cache, CPU frequency
times = {'centre': [], 'crop': []}
for _ in range(a.rounds):
    times['centre'].append(run(a.base))
    times['crop'].append(run(a.preset))
per = {k: statistics.median(v) * 1000 / len(files) for k, v in times.items()}
diffs = [(c - b) * 1000 / len(files) for b, c in zip(times['centre'], times['crop'])]
print(f'{len(files)} photos, {a.rounds} rounds, CPU ms per image (median)')
print(f'{os.path.basename(a.base):20}{per["centre"]:8.1f}')
print(f'{os.path.basename(a.preset):20}{per["crop"]:8.1f}')
print(f'cost per image      {statistics.median(diffs):8.1f}  (median of per-round differences; ratio {per["centre"] / per["crop"]:.3f})')
