#!/usr/bin/env python3
"""The rendition job, imgfleet against the peer libraries, side by side in one run.

Each round runs the peer benchmark (a copy of PEERS/bench.py: libvips, sharp, Pillow, Pillow-SIMD, each
under /usr/bin/time -v, interleaved) and then `imgfleet-loadtest pipeline` with 1 and 2 threads under
the same protocol: wait for a quiet machine, one untimed warm-up pass, REPS timed passes over
photos/*.jpg, CPU used by other processes counted as foreign load (a run over --max-foreign is
repeated). The table gives medians over rounds, each row's speed as a ratio of the fastest peer's,
and the median over rounds of that ratio within each round (which cancels drift between rounds).

  scripts/bench-side-by-side.py [--peers ../shared/bench/peers] [--rounds 3] [--reps 3] [--only LABELS]

PEERS/run.sh installs the peers (under /tmp) on first use; this script calls it for that.
Rows `pillow-simd draft+icc wN` run scripts/peer_pillow_icc.py: the Pillow-SIMD peer's job plus the ICC -> sRGB
conversion imgfleet does (needs a Pillow-SIMD built with liblcms2-dev installed; skipped otherwise).
Rows `imgfleet wN` are `imgfleet-loadtest pipeline` (sources held in memory, like the peers' outputs;
its peak RSS includes the sources); rows `imgfleet process wN` are the `imgfleet process` command
(files read and renditions written, process start-up included).
Results go to loadtest-report/side-by-side-<stamp>.{md,jsonl}.
"""
import argparse, glob, json, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ap = argparse.ArgumentParser()
ap.add_argument('--peers', default=os.path.join(ROOT, '..', 'shared', 'bench', 'peers'))
ap.add_argument('--rounds', type=int, default=3)
ap.add_argument('--reps', type=int, default=3)
ap.add_argument('--only', default='pillow-simd draft,pillow draft,pyvips once,pyvips x3,sharp raw',
                help='peer configs (substrings of bench.py labels); w1 and w2 of each run')
ap.add_argument('--imgfleet-preset', action='append', default=[], metavar='LABEL=FILE',
                help='also run imgfleet with this preset file (repeatable), e.g. effort5=loadtest/presets/profile-webp-effort5.toml')
ap.add_argument('--max-foreign', type=float, default=0.05)
ap.add_argument('--quiet-wait', type=float, default=120)
a = ap.parse_args()

peers = os.path.abspath(a.peers)
corpus = os.path.join(peers, '..', '..', 'corpus')
photos = os.path.join(corpus, 'photos')
if not os.path.isdir(photos):
    sys.exit(f'no corpus at {photos}: pass --peers DIR (the folder holding bench.py and run.sh)')
PHOTO_FILES = sorted(glob.glob(os.path.join(photos, '*.jpg')))

if not shutil.which('nasm'):
    sys.exit('needs nasm, or libjpeg-turbo is built without its SIMD kernels (apt-get install nasm; then cargo clean -p mozjpeg-sys)')
print('building imgfleet-loadtest (release)…', file=sys.stderr)
subprocess.run(['cargo', 'build', '--release', '--locked', '-p', 'imgfleet-loadtest'], cwd=ROOT, check=True)
LOADTEST = os.path.join(ROOT, 'target', 'release', 'imgfleet-loadtest')
# Work on a copy: the peer benchmark writes its results beside itself, and PEERS stays untouched.
work = tempfile.mkdtemp(prefix='imgfleet-peers-')
shutil.copytree(peers, os.path.join(work, 'peers'))
bench = os.path.join(work, 'peers', 'bench.py')
results = os.path.join(work, 'peers', 'results')
print('installing peers if missing…', file=sys.stderr)
subprocess.run(['bash', os.path.join(work, 'peers', 'run.sh'), '--corpus', corpus, '--rounds', '1', '--reps', '1',
                '--only', 'no-such-config'], capture_output=True)
PY = '/tmp/peers-venv/bin/python'
# The same job as the Pillow-SIMD peer plus the ICC -> sRGB conversion imgfleet does (scripts/peer_pillow_icc.py).
SIMD_PY = '/tmp/peers-venv-simd/bin/python'
ICC_PEER = os.path.join(work, 'peers', 'peer_pillow_icc.py')
shutil.copy(os.path.join(ROOT, 'scripts', 'peer_pillow_icc.py'), ICC_PEER)
with_icc_peer = 'pillow-simd' in a.only and subprocess.run(
    [SIMD_PY, '-c', 'from PIL import ImageCms; ImageCms.createProfile("sRGB")'], capture_output=True).returncode == 0
if 'pillow-simd' in a.only and not with_icc_peer:
    print('Pillow-SIMD has no littlecms: the colour-managed Pillow-SIMD rows are skipped '
          '(apt-get install liblcms2-dev; rm -rf /tmp/peers-venv-simd; run again)', file=sys.stderr)

NCPU, HZ = os.cpu_count(), os.sysconf('SC_CLK_TCK')
def busy_s():
    v = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    return (sum(v) - v[3] - v[4]) / HZ
def wait_quiet():
    t0 = time.time()
    while time.time() - t0 < a.quiet_wait:
        b = busy_s(); time.sleep(1.0)
        if (busy_s() - b) / NCPU < 0.10: return

def measured(label, cmd, record):
    """Runs `cmd` under /usr/bin/time -v on a quiet machine (again, up to twice, if other processes
    used over --max-foreign of the CPUs meanwhile); `record(stdout)` turns its output into the record."""
    for attempt in range(3):
        wait_quiet()
        b0, t0 = busy_s(), time.time()
        p = subprocess.run(['/usr/bin/time', '-v', *cmd], capture_output=True, text=True)
        wall, busy = time.time() - t0, busy_s() - b0
        if p.returncode != 0:
            sys.exit(f'{label} failed:\n{p.stderr[-3000:]}')
        g = lambda k: float(re.search(re.escape(k) + r':\s*([\d.]+)', p.stderr).group(1))
        own = g('User time (seconds)') + g('System time (seconds)')
        rec = record(p.stdout, wall)
        rec.update(label=label, peer='imgfleet', rss_mb=round(g('Maximum resident set size (kbytes)') / 1024, 1),
                   foreign=round(max(0.0, busy - own) / (wall * NCPU), 3))
        if rec['foreign'] <= a.max_foreign or attempt == 2:
            return rec

def run_imgfleet(label, threads, preset):
    out = os.path.join(work, 'imgfleet.json')
    cmd = [LOADTEST, 'pipeline', '--input', photos, '--threads', str(threads), '--iterations', str(a.reps), '--json', out]
    if preset: cmd += ['--preset', preset]
    return measured(label, cmd, lambda stdout, wall: {**json.load(open(out)), 'variant': label})

def run_process(label, threads):
    """`imgfleet process` as a user runs it: files read from disk, outputs written, process start-up
    included (REPS passes over the photos in one invocation)."""
    out = tempfile.mkdtemp(prefix='imgfleet-process-', dir=work)
    cmd = [os.path.join(ROOT, 'target', 'release', 'imgfleet'), 'process', '--json', '--jobs', str(threads), '--out', out, *(PHOTO_FILES * a.reps)]
    def record(stdout, wall):
        results = [json.loads(l) for l in stdout.splitlines() if l.strip()]
        n = len(results)
        per = lambda fmt: round(sum(x['bytes'] for r in results for x in r['renditions'] if x['format'] == fmt) / max(n, 1))
        return dict(variant='process', workers=threads, images=n, wall_s=round(wall, 3), images_per_s=round(n / wall, 3),
                    median_ms=statistics.median(sum(r['timings'].values()) for r in results),
                    jpeg_bytes_per_image=per('jpeg'), webp_bytes_per_image=per('webp'))
    rec = measured(label, cmd, record)
    shutil.rmtree(out, ignore_errors=True)
    return rec

def run_icc_peer(label, threads):
    cmd = [SIMD_PY, ICC_PEER, '--workers', str(threads), '--reps', str(a.reps), *PHOTO_FILES]
    rec = measured(label, cmd, lambda stdout, wall: json.loads(stdout.strip().splitlines()[-1]))
    rec['peer'] = 'pillow-simd'
    return rec

recs = []
stamp = time.strftime('%Y%m%d-%H%M%S')
os.makedirs(os.path.join(ROOT, 'loadtest-report'), exist_ok=True)
raw_path = os.path.join(ROOT, 'loadtest-report', f'side-by-side-{stamp}.jsonl')
ours = [('imgfleet w1', 1, None), ('imgfleet w2', 2, None)]
for spec in a.imgfleet_preset:
    name, path = spec.split('=', 1)
    ours += [(f'imgfleet {name} w1', 1, path), (f'imgfleet {name} w2', 2, path)]
with open(raw_path, 'w') as raw:
    for rnd in range(1, a.rounds + 1):
        shutil.rmtree(results, ignore_errors=True)
        subprocess.run([PY, bench, '--corpus', corpus, '--rounds', '1', '--reps', str(a.reps), '--only', a.only,
                        '--max-foreign', str(a.max_foreign), '--quiet-wait', str(a.quiet_wait)], check=True,
                       stdout=subprocess.DEVNULL)
        for path in glob.glob(os.path.join(results, 'raw-*.jsonl')):
            for line in open(path):
                r = json.loads(line); r['round'] = rnd; r['threads'] = 2 if 'vips2' in r['label'] else r.get('workers', 1)
                recs.append(r); raw.write(json.dumps(r) + '\n')
        runs = [(label, threads, lambda l=label, t=threads, p=preset: run_imgfleet(l, t, p)) for label, threads, preset in ours]
        runs += [(f'imgfleet process w{t}', t, lambda t=t: run_process(f'imgfleet process w{t}', t)) for t in (1, 2)]
        if with_icc_peer:
            runs += [(f'pillow-simd draft+icc w{t}', t, lambda t=t: run_icc_peer(f'pillow-simd draft+icc w{t}', t)) for t in (1, 2)]
        for label, threads, measure in runs:
            r = measure(); r['round'] = rnd; r['threads'] = threads
            recs.append(r); raw.write(json.dumps(r) + '\n')
            print(f"round {rnd}: {label}: {r['images_per_s']:.2f} img/s, rss {r['rss_mb']} MB, foreign {r['foreign']}", file=sys.stderr)

by = {}
for r in recs:
    by.setdefault(r['label'], []).append(r)
def med(rs, k): return statistics.median(x[k] for x in rs)
rows = []
for label, rs in by.items():
    rows.append(dict(label=label, threads=rs[0]['threads'], ips=med(rs, 'images_per_s'), lo=min(x['images_per_s'] for x in rs),
                     hi=max(x['images_per_s'] for x in rs), median_ms=med(rs, 'median_ms'), rss=med(rs, 'rss_mb'),
                     jpeg=rs[0]['jpeg_bytes_per_image'], webp=rs[0]['webp_bytes_per_image'], foreign=max(x['foreign'] for x in rs)))
def same_round(label, threads):
    """The median over rounds of `label`'s speed against the fastest peer of the same round (which
    cancels the drift between rounds on a shared machine), or None without peers."""
    ratios = []
    for rnd in {x['round'] for x in recs}:
        mine = [x['images_per_s'] for x in recs if x['round'] == rnd and x['label'] == label]
        peers = [x['images_per_s'] for x in recs
                 if x['round'] == rnd and x['threads'] == threads and not x['label'].startswith('imgfleet')]
        if mine and peers:
            ratios.append(mine[0] / max(peers))
    return statistics.median(ratios) if ratios else None

lines = [f'photos/*.jpg, {a.reps} timed passes per run, {a.rounds} interleaved rounds; medians over rounds (min-max)', '',
         '| config | threads | images/s | vs fastest peer | same round, median | median ms/image | peak RSS MB | JPEG bytes/image | WebP bytes/image | max foreign |',
         '|---|---|---|---|---|---|---|---|---|---|']
for threads in (1, 2):
    group = sorted((r for r in rows if r['threads'] == threads), key=lambda r: -r['ips'])
    best_peer = max((r['ips'] for r in group if not r['label'].startswith('imgfleet')), default=None)
    for r in group:
        ratio = f"{r['ips'] / best_peer:.2f}x" if best_peer else '–'
        same = same_round(r['label'], threads)
        same = f'{same:.2f}x' if same is not None else '–'
        lines.append(f"| {r['label']} | {threads} | {r['ips']:.2f} ({r['lo']:.2f}-{r['hi']:.2f}) | {ratio} | {same} | {r['median_ms']:.1f} | "
                     f"{r['rss']:.0f} | {r['jpeg']} | {r['webp']} | {r['foreign']:.2f} |")
table = '\n'.join(lines) + '\n'
open(raw_path.replace('.jsonl', '.md'), 'w').write(table)
print(table)
print(f'raw: {raw_path}', file=sys.stderr)
shutil.rmtree(work, ignore_errors=True)
