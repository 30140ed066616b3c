#!/usr/bin/env python3
"""imgfleet's AVIF against sharp's AVIF and against imgfleet's WebP, at equal SSIMULACRA2, in one run.

Answers three questions (with --avifenc a fourth), per rendition size and per target SSIMULACRA2 score
(default 60, 70, 80):
  (a) imgfleet AVIF bytes <= 0.8x imgfleet WebP bytes at the same score?
  (b) imgfleet AVIF bytes against sharp AVIF bytes at the same score: sharp at its default effort 4
      and at imgfleet's effort (--imgfleet-effort), each with sharp's default chroma (4:4:4) and with
      4:2:0 (what imgfleet writes).
  (c) imgfleet AVIF encode CPU time <= sharp's at equal bytes? sharp 4:2:0 is swept over efforts
      (--sharp-efforts, plus 4 and imgfleet's effort); at each target score the sharp effort whose bytes
      match imgfleet's (bracketing pair, log-interpolated, else the closest) gives the time to compare;
      sharp at its default effort 4 (4:2:0 and 4:4:4) is reported beside it.
  (d) with --avifenc: which AV1 encoder? libavif's avifenc with its built-in encoders (aom = libaom, the
      library imgfleet links; rav1e, what the `ravif` crate uses; svt = SVT-AV1), each at the given speeds:
      bytes and CPU ms/image at each target score against imgfleet AVIF at its default effort 4 (also in (b)).

Usage (from the repo root; imgfleet's release build must exist, nothing is built here):
  scripts/bench-avif.py [--json out.json] [--quick] [--rounds 2] [--imgfleet-effort 4]
                        [--sizes 800:inside,400:cover] [--targets 60,70,80] [--limit N]
                        [--skip-imgfleet-avif] [--skip-imgfleet-webp] [--no-sharp-sweep] [--keep]
                        [--avifenc rav1e:6,svt:8,aom:5] [--avifenc-q 8,12,17,23,29,36,44]
                        [--avifenc-svt-q 24,30,36,42,48,54,60]
The Markdown report goes to stdout, progress to stderr, raw data (every encode, score and timing)
to --json FILE. Any python3 can start it: when Pillow (with AVIF) is missing it re-executes itself
with the venv's python (--venv, default TOOLS/venv), which decodes AVIF/WebP for the metric.

Tool setup, into TOOLS ($IMGFLEET_BENCH_TOOLS, default target/bench-tools; the paths are options with
these defaults):
  mkdir -p target/bench-tools && cd target/bench-tools && npm init -y && npm install sharp@0.35.6  # --sharp-dir
  cargo install --locked ssimulacra2_rs@0.5.2 --no-default-features --root target/bench-tools
                                                              # --ssimulacra2 TOOLS/bin/ssimulacra2_rs
  python3 -m venv target/bench-tools/venv && target/bench-tools/venv/bin/pip install pillow numpy  # --venv
  (Pillow >= 11.3: its wheels carry libavif; numpy is not needed by this script.)
  For --avifenc: avifenc in PATH (--avifenc-bin; Debian's libavif-bin: libavif 0.11.1 with aom 3.6.0, rav1e 0.5.1
  and SVT-AV1 1.4.1 built in).

Method
 1. References: every JPEG in --photos (default ../shared/corpus/photos) is turned once by sharp into
    a PNG per size: auto-oriented, resized (default 800x800 `inside` without enlargement, and 400x400
    `cover`), sRGB, 8-bit RGB, no metadata. These PNGs are the pixels every encoder gets and the
    reference of the metric. imgfleet gets them with a rendition box equal to their size, so it does
    not resize; sharp gets their decoded pixels (raw, held in memory).
 2. Sweeps: imgfleet AVIF at effort 4 and --imgfleet-effort over --avif-q; imgfleet WebP over --webp-q
    (effort --webp-effort, default imgfleet's own default); sharp AVIF at effort 4 and imgfleet's effort
    over --avif-q with 4:4:4 (sharp's default) and 4:2:0; sharp 4:2:0 at --sharp-efforts over --sweep-q
    (default the same grid, so that every curve is interpolated on the same q points; --no-sharp-sweep:
    none, sharp only at 4 and imgfleet's effort). sharp's other
    AVIF options stay at their defaults (bitdepth 8, tune 'auto', which sharp 0.35's libvips/libaom
    resolve to libaom's tune=iq: the output is byte-identical to tune 'iq'; --sharp-tune ssim|psnr to
    see what that tune is worth, since libaom before 3.12 has no tune=iq). The references are PNGs, so
    imgfleet encodes from RGB like sharp; its JPEG-source path (YCbCr planes passed straight to the
    encoder) is not what is measured here.
    --avifenc CODEC:SPEED,...: every reference PNG through
      avifenc -j 1 -c CODEC -s SPEED -y 420 -d 8 -r full --ignore-icc --ignore-exif --ignore-xmp --min Q --max Q
    over a quantizer grid (0..63, lower is better): --avifenc-q for aom and rav1e (default 8,12,17,23,29,36,44),
    --avifenc-svt-q for svt (default 24,30,36,42,48,54,60: libavif hands Q to SVT-AV1 as its qp, which gives
    far higher quality than the same Q in aom or rav1e: SSIMULACRA2 ~80 at Q 36, against Q 12-14). The grids
    were chosen so that every curve spans SSIMULACRA2 60..80 at 800 px inside and 400 px cover on the
    corpus' hardest images. libavif's defaults otherwise (its own nclx: BT.601 matrix, full range; svt gets
    preset = speed, tune PSNR, adaptive quantization off). libavif 0.11 clamps svt speeds to 0..8 and aom's to
    0..9 (svt:10 writes the same files as svt:8; the report says so when two configs are identical). Inside
    the script q = -Q, so that q rises with quality for every config. SVT-AV1 1.4 refuses 4:2:0 input of odd
    width or height: svt gets such references padded by one repeated column/row, and its decoded output is
    cropped back to the reference before scoring.
 3. Metric: every output is decoded by Pillow (libavif / libwebp) to PNG and scored with
    `ssimulacra2_rs image REF OUT`; bytes are the file sizes.
 4. CPU time. Round 1 runs every encode (and keeps the outputs); later rounds repeat the timed runs only:
    the JPEG-85 baselines, imgfleet AVIF and sharp AVIF at effort 4 and imgfleet's effort up to --rounds
    (default 2), the other sweep efforts and WebP (whose time is not compared) up to --sweep-rounds
    (default 1: neighbouring efforts differ in time by factors of 1.3 to 4, far above round-to-round
    noise). In each round imgfleet and sharp runs are interleaved (same size, same q, one after the
    other), the order reversed every other round, the metric not running yet:
    - imgfleet: user+sys CPU (os.wait4) of `imgfleet process --jobs 1 --json` over all reference PNGs
      of a size with a one-format preset, minus the same run with the baseline preset (same rendition,
      jpeg quality 85), divided by the number of images. The subtraction removes PNG decode, process
      start-up and the rest of the pipeline; what is left is AVIF encode minus JPEG-85 encode.
    - sharp: one node process, sharp.concurrency(1), sharp.cache(false); process.cpuUsage() around each
      toBuffer() from the raw pixels (--sharp-reps times, median), averaged over the images, minus the
      same for jpeg quality 85 (sharp's defaults), so it too is AVIF encode minus JPEG-85 encode.
    - The JPEG-85 encode itself is measured on both sides and added back to get "AVIF encode ms"
      (imgfleet: a preset with two jpeg-85 renditions minus the one-rendition baseline; sharp: the jpeg
      toBuffer() directly), since the two JPEG encoders do not cost the same. Both definitions appear
      in (c): "enc" = difference + own JPEG-85, "diff" = difference only (the JPEG-85 costs are listed).
    - avifenc: user+sys CPU (os.wait4, all threads) of each avifenc process, summed over the images, minus
      the same for a run that only starts and reads the PNG (avifenc -g COLSx1 with COLS not dividing the width:
      it decodes the PNG, converts it to YUV 4:2:0, then fails splitting it into a grid; a few ms, measured in
      every round like the JPEG-85 baselines), divided by the number of images. So "enc" = AV1 encode and
      AVIF write, without PNG decode and start-up. Timed in --sweep-rounds (default 1) rounds, interleaved
      (spread evenly, lowest quality first) among the imgfleet and sharp runs of the same size.
    Medians over rounds. Per-image times at a target come from interpolating the per-q run averages at
    each image's interpolated q (the same way for imgfleet and sharp).
 5. Equal score: per image and config, the curve score -> log(bytes) is linearly interpolated between
    neighbouring q points (the first crossing from low q); no extrapolation: an image whose curve does
    not reach a target is left out of every total of that table, and listed. Totals are sums over the
    images common to all configs of the table.
 6. Equal bytes (c): at each target, the total bytes of each swept sharp 4:2:0 effort are compared with
    imgfleet's; if two adjacent efforts bracket imgfleet's bytes (the lowest such pair, i.e. sharp's
    cheapest way to those bytes), sharp's time is interpolated between them in log(bytes) -> log(time),
    else the closest effort is used and the report says so.
 7. Encoder choice (d): per target, over the images every config of (b) reaches, each config's total bytes
    and mean "enc" ms/image at the target, divided by imgfleet AVIF e4's.

Run time: sharp (libaom 3.15, one thread) takes about 0.07 / 0.12 / 0.16 / 0.35 / 1.5 / 1.9 / 4.1 / 5.8 /
7.0 / 17 s of CPU per 800 px photo at q 60 for efforts 0..9 (400 px: about a quarter), hence the default
sweep 0-3,5,6 (--sharp-efforts 0-9 adds about an hour). Defaults, 10 photos, 2 cores: see the
"timing phase" line of the report; --quick: 1 round, q 20,35,50,65,80, WebP q 40,55,70,80,90,95, efforts 2,4,6,
avifenc Q 10,18,26,34,42 (svt 24,33,42,51,60). avifenc CPU per 800 px photo, mean over the default grid:
about 0.75 s rav1e:6, 0.45 s rav1e:8, 0.35 s svt:8 (svt:6 about twice that), 0.8 s aom:5, 0.12 s aom:6,
0.07 s aom:7 (rav1e:4, ravif's default speed, about 7 s). An encoder-choice run (10 photos, both sizes,
--rounds 1 --no-sharp-sweep --skip-imgfleet-webp --avifenc rav1e:6,rav1e:8,svt:8,aom:6,aom:7) takes about
10 minutes on 2 cores; aom:5 (the same libaom and speed as imgfleet's effort 4) adds about 2.
"""
import argparse, concurrent.futures, filecmp, glob, json, math, os, re, shutil, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def csv_ints(s):
    out = []
    for x in s.split(','):
        lo, _, hi = x.strip().partition('-')
        if lo:
            out += list(range(int(lo), int(hi) + 1)) if hi else [int(lo)]
    return out


ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
ap.add_argument('--imgfleet', default=os.path.join(ROOT, 'target', 'release', 'imgfleet'))
ap.add_argument('--photos', default=os.path.join(ROOT, '..', 'shared', 'corpus', 'photos'), help='folder of *.jpg inputs')
ap.add_argument('--limit', type=int, default=0, help='use only the first N photos (for trying the script)')
ap.add_argument('--sizes', default='800:inside,400:cover', help='SIZE:inside|cover,...')
ap.add_argument('--targets', default='60,70,80', help='SSIMULACRA2 target scores')
ap.add_argument('--avif-q', default=None, help='default 20,30,40,50,60,70,80 (--quick: 20,35,50,65,80)')
ap.add_argument('--webp-q', default=None, help='default 30,40,45,...,95 (--quick: 40,55,70,80,90,95)')
ap.add_argument('--sweep-q', default=None, help='q grid of the sharp effort sweep (default: --avif-q)')
ap.add_argument('--imgfleet-effort', type=int, default=4, help='imgfleet AVIF effort besides 4 (0..9)')
ap.add_argument('--webp-effort', type=int, default=None, help='imgfleet WebP effort (default: imgfleet default)')
ap.add_argument('--sharp-efforts', default=None, help='sharp 4:2:0 effort sweep, default 0-3,5,6 (--quick: 2,6); '
                'e.g. 0-9; 4 and --imgfleet-effort are always added')
ap.add_argument('--rounds', type=int, default=None, help='timing rounds of imgfleet AVIF, sharp at effort 4 and '
                'imgfleet\'s effort, and the baselines: default 2 (--quick: 1)')
ap.add_argument('--sweep-rounds', type=int, default=1, help='timing rounds of the other sweep efforts and of WebP')
ap.add_argument('--sharp-tune', default=None, choices=['auto', 'iq', 'ssim', 'psnr'],
                help="sharp's AVIF tune (default: sharp's default, 'auto', which is libaom tune=iq with sharp 0.35)")
ap.add_argument('--sharp-reps', type=int, default=1, help='toBuffer() calls per image per round (median)')
ap.add_argument('--score-jobs', type=int, default=2, help='metric processes at once (after all timing)')
ap.add_argument('--quick', action='store_true')
ap.add_argument('--skip-imgfleet-avif', action='store_true')
ap.add_argument('--skip-imgfleet-webp', action='store_true')
ap.add_argument('--no-sharp-sweep', action='store_true', help='sharp AVIF only at effort 4 and --imgfleet-effort '
                '(the same as --sharp-efforts ""): table (c) then has no effort sweep to match bytes in')
ap.add_argument('--avifenc', default='', metavar='CONFIGS', help='extra AV1 encoders through libavif\'s avifenc: '
                'comma list of CODEC:SPEED, CODEC aom|rav1e|svt, SPEED 0..10, e.g. rav1e:6,svt:8,aom:5 (default: none)')
ap.add_argument('--avifenc-q', default=None, help='avifenc quantizer grid of aom and rav1e (--min = --max = Q, 0..63, '
                'lower is better quality), default 8,12,17,23,29,36,44 (--quick: 10,18,26,34,42)')
ap.add_argument('--avifenc-svt-q', default=None, help='the same for svt (whose Q scale differs), default '
                '24,30,36,42,48,54,60 (--quick: 24,33,42,51,60)')
ap.add_argument('--avifenc-bin', default='avifenc')
TOOLS = os.environ.get('IMGFLEET_BENCH_TOOLS', os.path.join(ROOT, 'target', 'bench-tools'))
ap.add_argument('--sharp-dir', default=TOOLS, help='folder whose node_modules has sharp')
ap.add_argument('--ssimulacra2', default=os.path.join(TOOLS, 'bin', 'ssimulacra2_rs'))
ap.add_argument('--venv', default=os.path.join(TOOLS, 'venv'))
ap.add_argument('--node', default='node')
ap.add_argument('--workdir', default=None, help='where references and outputs go (default: a new temp folder)')
ap.add_argument('--keep', action='store_true', help='keep the workdir')
ap.add_argument('--json', default=None, metavar='FILE', help='raw data')
a = ap.parse_args()

# --- Pillow with AVIF, else re-run under the venv ---------------------------------------------------
try:
    from PIL import Image, features
    if not features.check('avif'):
        raise ImportError('Pillow without AVIF')
except ImportError as e:
    vpy = os.path.join(a.venv, 'bin', 'python')
    if os.path.exists(vpy) and os.path.realpath(sys.prefix) != os.path.realpath(a.venv) and not os.environ.get('BENCH_AVIF_REEXEC'):
        os.environ['BENCH_AVIF_REEXEC'] = '1'
        os.execv(vpy, [vpy, os.path.abspath(__file__), *sys.argv[1:]])
    sys.exit(f'needs Pillow >= 11.3 with AVIF ({e}); set it up with:\n'
             f'  python3 -m venv {a.venv} && {a.venv}/bin/pip install pillow numpy')

for opt, normal, quick in (('avif_q', '20,30,40,50,60,70,80', '20,35,50,65,80'),
                            ('webp_q', '30,40,45,50,55,60,65,70,75,80,85,90,95', '40,55,70,80,90,95'),
                            ('avifenc_q', '8,12,17,23,29,36,44', '10,18,26,34,42'),
                            ('avifenc_svt_q', '24,30,36,42,48,54,60', '24,33,42,51,60'),
                            ('sharp_efforts', '0-3,5,6', '2,6'), ('rounds', 2, 1)):
    if getattr(a, opt) is None:
        setattr(a, opt, quick if a.quick else normal)
AVIF_Q, WEBP_Q, TARGETS = csv_ints(a.avif_q), csv_ints(a.webp_q), [float(x) for x in a.targets.split(',')]
SWEEP_Q = csv_ints(a.sweep_q) if a.sweep_q else AVIF_Q
if a.no_sharp_sweep:
    a.sharp_efforts = ''
AVIFENC_Q = {'aom': sorted(set(csv_ints(a.avifenc_q))), 'rav1e': sorted(set(csv_ints(a.avifenc_q))),
             'svt': sorted(set(csv_ints(a.avifenc_svt_q)))}
AVIFENC = []  # (codec, speed)
for x in filter(None, (x.strip() for x in a.avifenc.split(','))):
    codec, _, speed = x.partition(':')
    if codec not in ('aom', 'rav1e', 'svt') or not speed.isdigit() or not 0 <= int(speed) <= 10:
        sys.exit(f'--avifenc: {x!r} is not CODEC:SPEED with CODEC aom|rav1e|svt and SPEED 0..10')
    if (codec, int(speed)) not in AVIFENC:
        AVIFENC.append((codec, int(speed)))
for codec, speed in AVIFENC:
    if (codec, speed) in (('svt', 9), ('svt', 10), ('aom', 10)):
        print(f'note: libavif 0.11 clamps {codec} speed {speed} to {8 if codec == "svt" else 9}', file=sys.stderr)
if AVIFENC and not all(0 <= q <= 63 for c, _ in AVIFENC for q in AVIFENC_Q[c]):
    sys.exit('--avifenc-q and --avifenc-svt-q must be 0..63')
IF_EFFORTS = sorted({4, a.imgfleet_effort})
SWEEP_EFFORTS = sorted(set(csv_ints(a.sharp_efforts)) | set(IF_EFFORTS))
SIZES = []
for s in a.sizes.split(','):
    px, _, fit = s.partition(':')
    SIZES.append((int(px), fit or 'inside'))
    assert SIZES[-1][1] in ('inside', 'cover'), s
if not (0 <= a.imgfleet_effort <= 9):
    sys.exit('--imgfleet-effort must be 0..9')
SKIP_AVIF, SKIP_WEBP = a.skip_imgfleet_avif, a.skip_imgfleet_webp
NEED_IMGFLEET = not (SKIP_AVIF and SKIP_WEBP)


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


# --- tools -------------------------------------------------------------------------------------------
sharp_mod = os.path.join(a.sharp_dir, 'node_modules', 'sharp')
if not os.path.isdir(sharp_mod):
    sys.exit(f'no sharp in {a.sharp_dir}/node_modules: mkdir -p {a.sharp_dir} && cd {a.sharp_dir} && npm init -y && npm install sharp@0.35.6')
if not os.access(a.ssimulacra2, os.X_OK):
    sys.exit(f'no {a.ssimulacra2}: nice -n 19 cargo install --locked -j 1 ssimulacra2_rs@0.5.2 --no-default-features --root {TOOLS}')
if NEED_IMGFLEET and not os.access(a.imgfleet, os.X_OK):
    sys.exit(f'no imgfleet binary at {a.imgfleet}: build it first (cargo build --release --locked -p imgfleet-worker '
             f'--features heic --bin imgfleet), pass --imgfleet PATH, or run with --skip-imgfleet-avif --skip-imgfleet-webp')
if AVIFENC and not shutil.which(a.avifenc_bin):
    sys.exit(f'no {a.avifenc_bin} in PATH (Debian: apt-get install libavif-bin), or drop --avifenc')
photos = sorted(glob.glob(os.path.join(a.photos, '*.jpg')) + glob.glob(os.path.join(a.photos, '*.jpeg')))
if a.limit:
    photos = photos[:a.limit]
if not photos:
    sys.exit(f'no *.jpg in {a.photos}')

work = os.path.abspath(a.workdir) if a.workdir else tempfile.mkdtemp(prefix='bench-avif-')
os.makedirs(work, exist_ok=True)

NODE_WORKER = r'''
const path = require('path'), fs = require('fs'), readline = require('readline');
const sharp = require(process.env.SHARP_MODULE);
sharp.concurrency(1);
sharp.cache(false);
const raws = new Map();
async function raw(p) {
  if (!raws.has(p)) raws.set(p, await sharp(p).raw().toBuffer({ resolveWithObject: true }));
  return raws.get(p);
}
const cpuMs = (c) => (c.user + c.system) / 1000;
const median = (xs) => { const s = [...xs].sort((x, y) => x - y); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
async function handle(m) {
  if (m.cmd === 'versions') return { versions: sharp.versions, concurrency: sharp.concurrency() };
  if (m.cmd === 'ref') {
    let img = sharp(m.src).autoOrient();
    img = m.fit === 'cover' ? img.resize(m.size, m.size, { fit: 'cover' })
                            : img.resize(m.size, m.size, { fit: 'inside', withoutEnlargement: true });
    const info = await img.toColourspace('srgb').removeAlpha().png({ compressionLevel: 6 }).toFile(m.out);
    return { width: info.width, height: info.height };
  }
  if (m.cmd === 'encode') {
    const results = [];
    for (const inp of m.inputs) {
      const { data, info } = await raw(inp);
      const cpu = [], wall = [];
      let buf;
      for (let r = 0; r < m.reps; r++) {
        let img = sharp(data, { raw: { width: info.width, height: info.height, channels: info.channels } });
        if (m.format === 'avif') img = img.avif({ quality: m.quality, effort: m.effort, chromaSubsampling: m.chroma,
                                                  ...(m.tune ? { tune: m.tune } : {}) });
        else if (m.format === 'jpeg') img = img.jpeg({ quality: m.quality });
        else throw new Error('format ' + m.format);
        const c0 = process.cpuUsage(), w0 = process.hrtime.bigint();
        buf = await img.toBuffer();
        wall.push(Number(process.hrtime.bigint() - w0) / 1e6);
        cpu.push(cpuMs(process.cpuUsage(c0)));
      }
      let out = null;
      if (m.outdir) {
        out = path.join(m.outdir, path.basename(inp, path.extname(inp)) + '.' + (m.format === 'jpeg' ? 'jpg' : m.format));
        fs.writeFileSync(out, buf);
      }
      results.push({ input: inp, bytes: buf.length, cpu_ms: median(cpu), wall_ms: median(wall), out });
    }
    return { results };
  }
  throw new Error('unknown command ' + m.cmd);
}
(async () => {
  const rl = readline.createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let reply;
    try { reply = await handle(JSON.parse(line)); } catch (e) { reply = { error: String(e && e.stack || e) }; }
    process.stdout.write(JSON.stringify(reply) + '\n');
  }
})();
'''
worker_js = os.path.join(work, 'sharp-worker.js')
open(worker_js, 'w').write(NODE_WORKER)
node = subprocess.Popen([a.node, worker_js], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, bufsize=1,
                        env={**os.environ, 'SHARP_MODULE': sharp_mod})


def sharp_call(**msg):
    node.stdin.write(json.dumps(msg) + '\n')
    node.stdin.flush()
    line = node.stdout.readline()
    if not line:
        sys.exit('the sharp worker (node) died')
    r = json.loads(line)
    if 'error' in r:
        sys.exit(f'sharp worker: {r["error"]}')
    return r


def run_cmd(cmd):
    try:
        return subprocess.run(cmd, capture_output=True, text=True).stdout.strip()
    except OSError as e:
        return f'({e})'


versions = {'sharp': sharp_call(cmd='versions')['versions'], 'ssimulacra2_rs': run_cmd([a.ssimulacra2, '--version']),
            'pillow': __import__('PIL').__version__, 'pillow_libavif': features.version('avif'),
            'pillow_libwebp': features.version('webp'), 'node': run_cmd([a.node, '--version'])}
if NEED_IMGFLEET:
    versions['imgfleet'] = run_cmd([a.imgfleet, '--version'])
    libs = []
    for line in run_cmd(['ldd', a.imgfleet]).splitlines():
        m = re.match(r'\s*(\S+) => (\S+)', line)
        if m and re.search(r'aom|heif|dav1d|webp|de265', m.group(1)):
            libs.append(f'{m.group(1)} -> {os.path.realpath(m.group(2))}')
    versions['imgfleet_shared_libs'] = libs or ['(no shared libaom/libheif/libwebp: linked statically)']
if AVIFENC:
    versions['avifenc'] = (run_cmd([a.avifenc_bin, '--version']).splitlines() or ['?'])[0]


# --- 1. references -----------------------------------------------------------------------------------
refs = {}  # size -> list of dicts(name, path, width, height)
log(f'{len(photos)} photos; making reference PNGs with sharp into {work}/refs')
for size, fit in SIZES:
    d = os.path.join(work, 'refs', str(size))
    os.makedirs(d, exist_ok=True)
    refs[size] = []
    for p in photos:
        name = os.path.splitext(os.path.basename(p))[0]
        out = os.path.join(d, name + '.png')
        info = sharp_call(cmd='ref', src=os.path.abspath(p), size=size, fit=fit, out=out)
        refs[size].append(dict(name=name, path=out, width=info['width'], height=info['height']))

# --- configs -------------------------------------------------------------------------------------------
# A config: key (str), encoder, format, effort, chroma, q list.
configs = {}


def add_config(key, **kw):
    configs[key] = dict(key=key, **kw)


for e in IF_EFFORTS:
    if not SKIP_AVIF:
        add_config(f'imgfleet avif e{e}', enc='imgfleet', fmt='avif', effort=e, chroma='4:2:0', qs=AVIF_Q)
if not SKIP_WEBP:
    add_config('imgfleet webp', enc='imgfleet', fmt='webp', effort=a.webp_effort, chroma='4:2:0', qs=WEBP_Q)
for e in SWEEP_EFFORTS:
    for chroma in ('4:4:4', '4:2:0'):
        if e in IF_EFFORTS:
            add_config(f'sharp avif {chroma} e{e}', enc='sharp', fmt='avif', effort=e, chroma=chroma,
                       qs=sorted(set(AVIF_Q) | (set(SWEEP_Q) if chroma == '4:2:0' else set())))
        elif chroma == '4:2:0':
            add_config(f'sharp avif {chroma} e{e}', enc='sharp', fmt='avif', effort=e, chroma=chroma, qs=SWEEP_Q)
# avifenc configs: q is -Q internally (Q = libavif's quantizer, lower is better), so that q rises with quality
# for every config and the interpolation code (first crossing from low q, sorted q grids) is shared.
for codec, speed in AVIFENC:
    add_config(f'avifenc {codec} s{speed}', enc='avifenc', fmt='avif', codec=codec, speed=speed, effort=None,
               chroma='4:2:0', qs=sorted(-Q for Q in AVIFENC_Q[codec]))
AVIFENC_KEYS = [k for k, c in configs.items() if c['enc'] == 'avifenc']


def qlabel(key, q):
    """q as the report shows it: imgfleet/sharp quality, or avifenc's quantizer as 'Q<n>'."""
    return f'Q{-q:g}' if configs[key]['enc'] == 'avifenc' else f'{q:g}'


def preset_toml(size, formats):
    """formats: list of (rendition name, format, quality, effort or None)."""
    out = ['[[presets]]', 'name = "bench"']
    for name, fmt, q, effort in formats:
        f = f'{{ format = "{fmt}", quality = {q}' + (f', effort = {effort}' if effort is not None else '') + ' }'
        out += ['[[presets.renditions]]', f'name = "{name}"', f'width = {size}', f'height = {size}', 'fit = "inside"',
                f'formats = [{f}]']
    return '\n'.join(out) + '\n'


def imgfleet_run(size, formats, outdir):
    """Runs `imgfleet process --jobs 1` over the size's references; returns CPU ms (user+sys), wall ms
    and the parsed JSON lines."""
    pdir = os.path.join(work, 'presets')
    os.makedirs(pdir, exist_ok=True)
    preset = os.path.join(pdir, f'{size}-' + '-'.join(f'{n}{f}{q}e{e}' for n, f, q, e in formats) + '.toml')
    open(preset, 'w').write(preset_toml(size, formats))
    os.makedirs(outdir, exist_ok=True)
    cmd = [a.imgfleet, 'process', '--jobs', '1', '--json', '--out', outdir, '--preset', preset, *[r['path'] for r in refs[size]]]
    with tempfile.TemporaryFile() as so, tempfile.TemporaryFile() as se:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=so, stderr=se)
        _, status, ru = os.wait4(p.pid, 0)
        wall = (time.perf_counter() - t0) * 1000
        p.returncode = os.waitstatus_to_exitcode(status)
        so.seek(0); se.seek(0)
        stdout, stderr = so.read().decode(errors='replace'), se.read().decode(errors='replace')
    lines = [json.loads(l) for l in stdout.splitlines() if l.startswith('{')]
    bad = [l for l in lines if l.get('status') != 'ok']
    if p.returncode != 0 or bad or len(lines) != len(refs[size]):
        sys.exit(f'imgfleet failed (exit {p.returncode}) with preset\n{open(preset).read()}\n{" ".join(cmd[:9])} ...\n'
                 f'stderr: {stderr[-3000:]}\nreports: {json.dumps(bad)[:3000]}')
    return (ru.ru_utime + ru.ru_stime) * 1000, wall, lines


def avifenc_cmd(codec, speed, Q, src, out):
    return [a.avifenc_bin, '-j', '1', '-c', codec, '-s', str(speed), '-y', '420', '-d', '8', '-r', 'full', '--ignore-icc',
            '--ignore-exif', '--ignore-xmp', '--min', str(Q), '--max', str(Q), src, out]


def avifenc_base_cmd(ref, out):
    """avifenc's fixed costs without the AV1 encode: it starts, reads the PNG (decode and RGB -> YUV 4:2:0, done
    at load), then fails splitting the image into a grid whose column count does not divide the width."""
    cols = 256 if ref['width'] % 256 else 255
    return [a.avifenc_bin, '-j', '1', '-c', 'aom', '-y', '420', '-d', '8', '-r', 'full', '--ignore-icc', '--ignore-exif',
            '--ignore-xmp', '-g', f'{cols}x1', ref['path'], out]


def timed_run(cmd):
    """Runs cmd; returns (exit code, CPU ms user+sys of the process and its threads, wall ms, stdout+stderr)."""
    with tempfile.TemporaryFile() as f:
        t0 = time.perf_counter()
        p = subprocess.Popen(cmd, stdout=f, stderr=subprocess.STDOUT)
        _, status, ru = os.wait4(p.pid, 0)
        wall = (time.perf_counter() - t0) * 1000
        f.seek(0)
        text = f.read().decode(errors='replace')
    return os.waitstatus_to_exitcode(status), (ru.ru_utime + ru.ru_stime) * 1000, wall, text


even_refs = {}  # ref path -> padded copy with even width and height (for svt)


def avifenc_src(codec, ref):
    """The PNG avifenc reads. SVT-AV1 1.4 refuses 4:2:0 input of odd width or height, so svt gets a copy padded to
    even dimensions by repeating the last column / row; its decoded output is cropped back before scoring."""
    if codec != 'svt' or (ref['width'] % 2 == 0 and ref['height'] % 2 == 0):
        return ref['path'], False
    if ref['path'] not in even_refs:
        im = Image.open(ref['path']).convert('RGB')
        w, h = im.size
        W, H = w + w % 2, h + h % 2
        pad = Image.new('RGB', (W, H))
        pad.paste(im, (0, 0))
        if W > w:
            pad.paste(im.crop((w - 1, 0, w, h)), (w, 0))
        if H > h:
            pad.paste(pad.crop((0, h - 1, W, h)), (0, h))
        d = os.path.join(work, 'refs-even', os.path.basename(os.path.dirname(ref['path'])))
        os.makedirs(d, exist_ok=True)
        even_refs[ref['path']] = os.path.join(d, os.path.basename(ref['path']))
        pad.save(even_refs[ref['path']], compress_level=6)
    return even_refs[ref['path']], True


def avifenc_base_ok(ref, out):
    rc, cpu, wall, text = timed_run(avifenc_base_cmd(ref, out))
    return rc != 0 and "Can't split image" in text and not os.path.exists(out), cpu, wall, text


# Probe avifenc's codecs and its read-only baseline once (not timed).
AVIFENC_BASE = False
if AVIFENC:
    r0 = refs[SIZES[0][0]][0]
    pdir = os.path.join(work, 'probe', 'avifenc')
    os.makedirs(pdir, exist_ok=True)
    for codec, speed in AVIFENC:
        out = os.path.join(pdir, f'{codec}{speed}.avif')
        rc, _, _, text = timed_run(avifenc_cmd(codec, speed, 50, avifenc_src(codec, r0)[0], out))
        if rc != 0 or not os.path.exists(out):
            sys.exit(f'avifenc -c {codec} -s {speed} failed (exit {rc}): {text.strip()[-1500:]}')
        im = Image.open(out)
        if im.size != (r0['width'] + r0['width'] % 2 * (codec == 'svt'), r0['height'] + r0['height'] % 2 * (codec == 'svt')):
            sys.exit(f'avifenc -c {codec}: {out} decodes to {im.size}, not {r0["width"]}x{r0["height"]}')
    AVIFENC_BASE, _, _, text = avifenc_base_ok(r0, os.path.join(pdir, 'base.avif'))
    if not AVIFENC_BASE:
        log(f'avifenc baseline (PNG read, failing grid split) did not behave as expected; avifenc times are raw: {text.strip()[-500:]}')

# Probe imgfleet's AVIF / WebP support once, with a clear message.
if NEED_IMGFLEET:
    s0 = SIZES[0][0]
    for skip, fmt, eff in ((SKIP_AVIF, 'avif', a.imgfleet_effort), (SKIP_WEBP, 'webp', a.webp_effort)):
        if skip:
            continue
        probe = os.path.join(work, 'probe', fmt)
        preset = os.path.join(work, f'probe-{fmt}.toml')
        open(preset, 'w').write(preset_toml(s0, [('r', fmt, 60, eff)]))
        p = subprocess.run([a.imgfleet, 'process', '--jobs', '1', '--json', '--out', probe, '--preset', preset, refs[s0][0]['path']],
                           capture_output=True, text=True)
        ok = p.returncode == 0 and os.path.exists(os.path.join(probe, refs[s0][0]['name'], f'r.{fmt}'))
        if not ok:
            sys.exit(f'{a.imgfleet} cannot write {fmt} (exit {p.returncode}): {p.stderr.strip()[-1500:]} {p.stdout.strip()[-1500:]}\n'
                     f'(build with the heic feature for AVIF; or pass --skip-imgfleet-{fmt})')

# --- 2 + 4. sweeps and timing, interleaved -----------------------------------------------------------
# Task: (kind, size, config key or baseline name, q). Each task over all references of the size.
outputs = {}   # (size, config, q, image) -> dict(path, bytes)
timings = []   # dict(round, size, task, config, q, cpu_ms_per_image, wall_ms_per_image, per_image?)


def tasks_for_size(size):
    ts = []
    if NEED_IMGFLEET:
        ts += [('imgfleet-base', size, 'imgfleet jpeg85', 85), ('imgfleet-base2', size, 'imgfleet jpeg85 x2', 85)]
    ts.append(('sharp-base', size, 'sharp jpeg85', 85))
    if AVIFENC_BASE:
        ts.append(('avifenc-base', size, 'avifenc png-read', 0))
    qs = sorted({q for c in configs.values() if c['fmt'] == 'avif' and c['enc'] != 'avifenc' for q in c['qs']})
    main = [('avif', size, c['key'], q) for q in qs for c in configs.values()
            if c['fmt'] == 'avif' and c['enc'] != 'avifenc' and q in c['qs']]
    # avifenc tasks, lowest quality first like the rest, spread evenly among them (stable merge by position).
    extra = [('avif', size, k, q) for q in sorted({q for k in AVIFENC_KEYS for q in configs[k]['qs']})
             for k in AVIFENC_KEYS if q in configs[k]['qs']]
    pos = [((i + 0.5) / len(main), 0, t) for i, t in enumerate(main)] + [((j + 0.5) / len(extra), 1, t) for j, t in enumerate(extra)]
    ts += [t for _, _, t in sorted(pos, key=lambda x: x[:2])]
    if not SKIP_WEBP:
        ts += [('webp', size, 'imgfleet webp', q) for q in WEBP_Q]
    # Interleave imgfleet and sharp within each q group (already adjacent); sharp sweeps sit between.
    return ts


def headline(task):
    """Timed in every round: baselines, imgfleet AVIF, sharp at effort 4 and imgfleet's effort."""
    kind, _, key, _ = task
    if kind == 'avif' and configs[key]['enc'] == 'avifenc':
        return False  # --sweep-rounds: these are for choosing an encoder, not the head-to-head with sharp
    return kind != 'webp' and (kind != 'avif' or configs[key]['enc'] == 'imgfleet' or configs[key]['effort'] in IF_EFFORTS)


def run_task(rnd, task, write):
    kind, size, key, q = task
    n = len(refs[size])
    sub = os.path.join(work, 'out' if write else 'scratch', str(size), key.replace(' ', '_').replace(':', ''), f'q{q}')
    if kind == 'avifenc-base' or (kind == 'avif' and configs[key]['enc'] == 'avifenc'):
        os.makedirs(sub, exist_ok=True)
        per, cpus, walls = {}, [], []
        for ref in refs[size]:
            out = os.path.join(sub, ref['name'] + '.avif')
            if kind == 'avifenc-base':
                ok, cpu, wall, text = avifenc_base_ok(ref, out)
                if not ok:
                    sys.exit(f'avifenc baseline on {ref["path"]} did not fail at the grid split: {text.strip()[-1500:]}')
                per[ref['name']] = dict(cpu_ms=cpu, wall_ms=wall)
            else:
                c = configs[key]
                src, padded = avifenc_src(c['codec'], ref)
                rc, cpu, wall, text = timed_run(avifenc_cmd(c['codec'], c['speed'], -q, src, out))
                if rc != 0 or not os.path.exists(out):
                    sys.exit(f'avifenc failed (exit {rc}) on {src}: {text.strip()[-1500:]}')
                per[ref['name']] = dict(bytes=os.path.getsize(out), cpu_ms=cpu, wall_ms=wall, padded=padded)
                if write:
                    outputs[(size, key, q, ref['name'])] = dict(path=out, bytes=per[ref['name']]['bytes'], padded=padded)
            cpus.append(cpu)
            walls.append(wall)
        rec = dict(round=rnd, size=size, config=key, q=q, enc='avifenc', cpu_ms=statistics.mean(cpus),
                   wall_ms=statistics.mean(walls), per_image=per)
        if not write or kind == 'avifenc-base':
            shutil.rmtree(sub, ignore_errors=True)
    elif kind.startswith('imgfleet-base') or (kind in ('avif', 'webp') and configs[key]['enc'] == 'imgfleet'):
        if kind == 'imgfleet-base':
            formats = [('r', 'jpeg', 85, None)]
        elif kind == 'imgfleet-base2':
            formats = [('r', 'jpeg', 85, None), ('r2', 'jpeg', 85, None)]
        else:
            c = configs[key]
            formats = [('r', c['fmt'], q, c['effort'])]
        cpu, wall, lines = imgfleet_run(size, formats, sub)
        rec = dict(round=rnd, size=size, config=key, q=q, enc='imgfleet', cpu_ms_run=cpu, wall_ms_run=wall,
                   cpu_ms=cpu / n, wall_ms=wall / n)
        if write and kind in ('avif', 'webp'):
            ext = configs[key]['fmt']
            for r in refs[size]:
                path = os.path.join(sub, r['name'], f'r.{ext}')
                outputs[(size, key, q, r['name'])] = dict(path=path, bytes=os.path.getsize(path))
        if not write:
            shutil.rmtree(sub, ignore_errors=True)
    else:
        if kind == 'sharp-base':
            msg = dict(format='jpeg', quality=85)
        else:
            c = configs[key]
            msg = dict(format='avif', quality=q, effort=c['effort'], chroma=c['chroma'], tune=a.sharp_tune)
        if write:
            os.makedirs(sub, exist_ok=True)
        r = sharp_call(cmd='encode', inputs=[x['path'] for x in refs[size]], reps=a.sharp_reps,
                       outdir=sub if (write and kind == 'avif') else None, **msg)['results']
        rec = dict(round=rnd, size=size, config=key, q=q, enc='sharp', cpu_ms=statistics.mean(x['cpu_ms'] for x in r),
                   wall_ms=statistics.mean(x['wall_ms'] for x in r),
                   per_image={os.path.splitext(os.path.basename(x['input']))[0]: dict(bytes=x['bytes'], cpu_ms=x['cpu_ms'], wall_ms=x['wall_ms']) for x in r})
        if write and kind == 'avif':
            for x, ref in zip(r, refs[size]):
                outputs[(size, key, q, ref['name'])] = dict(path=x['out'], bytes=x['bytes'])
    timings.append(rec)
    return rec


all_tasks = [t for size, _ in SIZES for t in tasks_for_size(size)]
log(f'{len(configs)} configs, {len(all_tasks)} timed tasks per round, {a.rounds} round(s); '
    f'sharp efforts {SWEEP_EFFORTS}, imgfleet AVIF efforts {IF_EFFORTS if not SKIP_AVIF else "skipped"}')
t_start = time.time()
round_secs, task_secs = [], {}
for rnd in range(1, max(a.rounds, a.sweep_rounds) + 1):
    order = [t for t in all_tasks if rnd <= (max(a.rounds, a.sweep_rounds) if 'base' in t[0]
                                             else a.rounds if headline(t) else a.sweep_rounds)]
    order = order if rnd % 2 else list(reversed(order))
    t_round = time.time()
    for i, task in enumerate(order, 1):
        t0 = time.time()
        rec = run_task(rnd, task, write=(rnd == 1))
        task_secs.setdefault(task, time.time() - t0)
        eta = ''
        if rnd > 1:
            eta = f', round ETA {sum(task_secs[t] for t in order[i:]) / 60:.1f} min'
        ql = qlabel(task[2], task[3]) if task[2] in AVIFENC_KEYS else f'q{task[3]}'
        log(f'round {rnd} task {i}/{len(order)}: {task[1]} px {task[2]} {ql}: '
            f'{rec["cpu_ms"]:.0f} ms CPU/image{eta}')
    round_secs.append(time.time() - t_round)
    log(f'round {rnd} took {round_secs[-1] / 60:.1f} min')
node.stdin.close()
node.wait()
t_timing = time.time() - t_start

# --- 3. metric -------------------------------------------------------------------------------------------
refpath = {(size, r['name']): r for size in refs for r in refs[size]}
decoded_dir = os.path.join(work, 'decoded')
os.makedirs(decoded_dir, exist_ok=True)


def score(item):
    (size, key, q, name), o = item
    ref = refpath[(size, name)]
    im = Image.open(o['path'])
    icc = len(im.info.get('icc_profile') or b'')
    if o.get('padded') and im.size == (ref['width'] + ref['width'] % 2, ref['height'] + ref['height'] % 2):
        im = im.convert('RGB').crop((0, 0, ref['width'], ref['height']))
    if im.size != (ref['width'], ref['height']):
        raise RuntimeError(f'{o["path"]}: {im.size} is not the reference size {ref["width"]}x{ref["height"]}')
    png = os.path.join(decoded_dir, f'{size}-{key}-q{q}-{name}.png'.replace(' ', '_').replace(':', ''))
    im.convert('RGB').save(png, compress_level=1)
    p = subprocess.run([a.ssimulacra2, 'image', ref['path'], png], capture_output=True, text=True)
    m = re.search(r'(-?[\d.]+)\s*$', p.stdout.strip())
    if p.returncode != 0 or not m:
        raise RuntimeError(f'ssimulacra2 failed on {o["path"]}: {p.stderr.strip()} {p.stdout.strip()}')
    os.remove(png)
    return (size, key, q, name), float(m.group(1)), icc


log(f'scoring {len(outputs)} outputs with SSIMULACRA2 ({a.score_jobs} at once)')
t0 = time.time()
with concurrent.futures.ThreadPoolExecutor(a.score_jobs) as ex:
    for i, (k, s, icc) in enumerate(ex.map(score, outputs.items()), 1):
        outputs[k].update(score=s, icc_bytes=icc)
        if i % 100 == 0 or i == len(outputs):
            log(f'scored {i}/{len(outputs)}')
t_score = time.time() - t0

# --- 5. analysis ---------------------------------------------------------------------------------------


def med(xs):
    return statistics.median(xs) if xs else float('nan')


def ms_table(size):
    """(config, q) -> dict(diff=AVIF minus own JPEG-85, enc=diff + own JPEG-85, raw=...) ms/image, medians over rounds.
    avifenc: diff = enc = the avifenc run minus the PNG-read baseline (raw if that baseline could not be measured)."""
    by = {}
    for t in timings:
        if t['size'] == size:
            by.setdefault((t['round'], t['config'], t['q']), t)
    rounds = sorted({t['round'] for t in timings})
    jpeg = {}
    for enc, base in (('imgfleet', 'imgfleet jpeg85'), ('sharp', 'sharp jpeg85')):
        per = []
        for r in rounds:
            if (r, base, 85) not in by:
                continue
            if enc == 'imgfleet':
                two = by.get((r, 'imgfleet jpeg85 x2', 85))
                per.append(two['cpu_ms'] - by[(r, base, 85)]['cpu_ms'] if two else float('nan'))
            else:
                per.append(by[(r, base, 85)]['cpu_ms'])
        jpeg[enc] = med(per)
    base_ms = {'imgfleet': ('imgfleet jpeg85', 85), 'sharp': ('sharp jpeg85', 85), 'avifenc': ('avifenc png-read', 0)}
    avifenc_base = med([by[(r, 'avifenc png-read', 0)]['cpu_ms'] for r in rounds if (r, 'avifenc png-read', 0) in by])
    jpeg['avifenc'] = 0.0
    out = {}
    for key, c in configs.items():
        bk = base_ms[c['enc']]
        for q in c['qs']:
            if c['enc'] == 'avifenc' and not AVIFENC_BASE:
                diffs = [by[(r, key, q)]['cpu_ms'] for r in rounds if (r, key, q) in by]
            else:
                diffs = [by[(r, key, q)]['cpu_ms'] - by[(r, *bk)]['cpu_ms'] for r in rounds if (r, key, q) in by and (r, *bk) in by]
            raws = [by[(r, key, q)]['cpu_ms'] for r in rounds if (r, key, q) in by]
            walls = [by[(r, key, q)]['wall_ms'] for r in rounds if (r, key, q) in by]
            d = med(diffs)
            out[(key, q)] = dict(diff=d, enc=d + jpeg[c['enc']], raw=med(raws), wall=med(walls), n_rounds=len(diffs))
    if AVIFENC_KEYS:
        jpeg['avifenc_png_read'] = avifenc_base
    return out, jpeg


def crossing(points, target):
    """points: [(q, score, bytes)] sorted by q. Returns (q*, bytes*) at the first crossing, or (None, reason)."""
    for (q0, s0, b0), (q1, s1, b1) in zip(points, points[1:]):
        if min(s0, s1) <= target <= max(s0, s1):
            if s0 == s1:
                return q0, b0
            f = (target - s0) / (s1 - s0)
            return q0 + f * (q1 - q0), math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0)))
    if len(points) == 1 and points[0][1] == target:
        return points[0][0], points[0][2]
    ss = [p[1] for p in points]
    return None, (f'max score {max(ss):.1f} < target' if max(ss) < target else f'min score {min(ss):.1f} > target')


def interp_q(table, key, qs, qstar, field):
    qs = sorted(qs)
    for q0, q1 in zip(qs, qs[1:]):
        if q0 <= qstar <= q1:
            f = (qstar - q0) / (q1 - q0)
            return table[(key, q0)][field] + f * (table[(key, q1)][field] - table[(key, q0)][field])
    return table[(key, qs[0])][field] if qstar == qs[0] else float('nan')


skipped = []  # (size, target, config, image, reason)
at_target = {}  # (size, target, config) -> {image: dict(q, bytes, enc_ms, diff_ms)}
ms = {}
jpeg_ms = {}
for size, _ in SIZES:
    ms[size], jpeg_ms[size] = ms_table(size)
    for key, c in configs.items():
        for T in TARGETS:
            d = {}
            for r in refs[size]:
                pts = [(q, outputs[(size, key, q, r['name'])]['score'], outputs[(size, key, q, r['name'])]['bytes']) for q in sorted(c['qs'])]
                qstar, b = crossing(pts, T)
                if qstar is None:
                    skipped.append((size, T, key, r['name'], b))
                    continue
                d[r['name']] = dict(q=qstar, bytes=b, enc_ms=interp_q(ms[size], key, c['qs'], qstar, 'enc'),
                                    diff_ms=interp_q(ms[size], key, c['qs'], qstar, 'diff'))
            at_target[(size, T, key)] = d


def common(size, T, keys):
    sets = [set(at_target[(size, T, k)]) for k in keys]
    return sorted(set.intersection(*sets)) if sets else []


def total_bytes(size, T, key, imgs):
    return sum(at_target[(size, T, key)][i]['bytes'] for i in imgs)


def mean_ms(size, T, key, imgs, field='enc_ms'):
    return statistics.mean(at_target[(size, T, key)][i][field] for i in imgs) if imgs else float('nan')


def fmt_b(b):
    return f'{b / 1024:,.1f} KiB'


def ratio(x, y):
    return f'{x / y:.3f}' if y and not (math.isnan(x) or math.isnan(y)) else '–'


L = []
sv = versions['sharp']
L.append('# imgfleet AVIF vs sharp AVIF vs imgfleet WebP at equal SSIMULACRA2')
L.append('')
L.append(f'- sharp {sv.get("sharp")} (libvips {sv.get("vips")}, libheif {sv.get("heif")}, libaom {sv.get("aom")}, libwebp {sv.get("webp")}), '
         f'node {versions["node"]}; sharp AVIF defaults: 4:4:4, bitdepth 8, tune auto (= libaom tune=iq here); '
         f'tune used: {a.sharp_tune or "default"}')
L.append(f'- {versions["ssimulacra2_rs"]}; decoding for the metric: Pillow {versions["pillow"]} (libavif {versions["pillow_libavif"]}, libwebp {versions["pillow_libwebp"]})')
if NEED_IMGFLEET:
    L.append(f'- {versions["imgfleet"]}: {"; ".join(versions["imgfleet_shared_libs"])}')
if AVIFENC:
    L.append(f'- avifenc {versions["avifenc"]}: configs {", ".join(f"{c}:{sp}" for c, sp in AVIFENC)}; quantizer Q (--min = --max) '
             f'{"; ".join(f"{c} {AVIFENC_Q[c]}" for c in dict.fromkeys(c for c, _ in AVIFENC))}; `-j 1 -y 420 -d 8 -r full --ignore-icc --ignore-exif --ignore-xmp`, everything else libavif\'s '
             f'defaults; {a.sweep_rounds} timing round(s); CPU of each avifenc process (os.wait4, all its threads) '
             + ('minus a run that only starts and reads the PNG (decode + RGB->YUV; its ms/image is under each sweep table)'
                if AVIFENC_BASE else 'as it is (PNG read and process start included: the baseline run could not be made)'))
    if even_refs:
        nref = sum(len(v) for v in refs.values())
        L.append(f'- svt: {len(even_refs)} of {nref} references have an odd width or height, which SVT-AV1 1.4 refuses in 4:2:0; '
                 'svt got them padded to even by repeating the last column/row, and their decoded outputs were cropped back '
                 'before scoring (their bytes include that extra row/column, about 0.1-0.3 % of the pixels)')
L.append(f'- {len(photos)} photos ({os.path.relpath(a.photos, ROOT)}/*.jpg{f", first {a.limit}" if a.limit else ""}); sizes {a.sizes}; '
         f'targets {", ".join(f"{t:g}" for t in TARGETS)}; AVIF q {AVIF_Q}; sweep q {SWEEP_Q}; WebP q {WEBP_Q} '
         f'(effort {a.webp_effort if a.webp_effort is not None else "imgfleet default"}); sharp 4:2:0 efforts {SWEEP_EFFORTS}; '
         f'{a.rounds} timing round(s) of the imgfleet AVIF, sharp e{"/".join(map(str, IF_EFFORTS))} and JPEG-85 baseline runs, '
         f'{a.sweep_rounds} of the rest; sharp reps {a.sharp_reps}')
L.append(f'- timing phase {t_timing / 60:.1f} min, metric phase {t_score / 60:.1f} min (rounds: {", ".join(f"{s / 60:.1f}" for s in round_secs)} min)')
if SKIP_AVIF:
    L.append('- imgfleet AVIF: skipped (--skip-imgfleet-avif)')
if SKIP_WEBP:
    L.append('- imgfleet WebP: skipped (--skip-imgfleet-webp)')
icc = sorted({(k[1], o.get('icc_bytes', 0)) for k, o in outputs.items() if o.get('icc_bytes')})
L.append(f'- outputs carrying an ICC profile: {", ".join(f"{c} ({b} B)" for c, b in icc) if icc else "none"}')
L.append('')

if_avif = [k for k in configs if k.startswith('imgfleet avif')]
sharp_main = [f'sharp avif {ch} e{e}' for e in IF_EFFORTS for ch in ('4:4:4', '4:2:0')]
sweep_keys = [f'sharp avif 4:2:0 e{e}' for e in SWEEP_EFFORTS]

for size, fit in SIZES:
    n = len(refs[size])
    L.append(f'## {size} px {fit} ({n} images)')
    L.append('')
    # Sweep summary.
    L.append('### Sweep: total bytes, mean SSIMULACRA2 (min-max), CPU ms/image (AVIF minus own JPEG-85 / raw)')
    L.append('')
    L.append('| config | q | total bytes | mean score | min-max | ms enc | ms diff | ms raw | ms wall | rounds |')
    L.append('|---|---|---|---|---|---|---|---|---|---|')
    for key, c in configs.items():
        for q in sorted(c['qs']):
            os_ = [outputs[(size, key, q, r['name'])] for r in refs[size]]
            t = ms[size][(key, q)]
            sc = [o['score'] for o in os_]
            L.append(f'| {key} | {qlabel(key, q)} | {sum(o["bytes"] for o in os_):,} | {statistics.mean(sc):.2f} | {min(sc):.1f}-{max(sc):.1f} | '
                     f'{t["enc"]:.1f} | {t["diff"]:.1f} | {t["raw"]:.1f} | {t["wall"]:.1f} | {t["n_rounds"]} |')
    L.append('')
    L.append(f'JPEG q85 encode, ms/image: imgfleet {jpeg_ms[size].get("imgfleet", float("nan")):.1f} (second jpeg-85 rendition '
             f'minus the one-rendition run), sharp {jpeg_ms[size]["sharp"]:.1f}. "ms enc" = "ms diff" + that; "ms raw" is the whole '
             f'run (imgfleet: process incl. PNG decode) or toBuffer() (sharp) per image.'
             + (f' avifenc (Q = its quantizer, lower is better): "ms enc" = "ms diff" = the avifenc process minus one that '
                f'only starts and reads the PNG ({jpeg_ms[size]["avifenc_png_read"]:.1f} ms/image); "ms raw" = the whole process.'
                if AVIFENC_BASE else ' avifenc (Q = its quantizer, lower is better): the whole process, PNG read included.'
                if AVIFENC else ''))
    L.append('')

    # (a)
    L.append('### (a) imgfleet AVIF vs imgfleet WebP at equal score (target: AVIF <= 0.8x WebP)')
    L.append('')
    if SKIP_AVIF or SKIP_WEBP:
        L.append('skipped (imgfleet AVIF or WebP not run)')
    else:
        L.append('| target | images | WebP bytes | ' + ' | '.join(f'{k} bytes | ratio | <= 0.8 | per-image median (min-max)' for k in if_avif) + ' |')
        L.append('|---|---|---|' + '---|---|---|---|' * len(if_avif))
        for T in TARGETS:
            imgs = common(size, T, if_avif + ['imgfleet webp'])
            w = total_bytes(size, T, 'imgfleet webp', imgs)
            cells = []
            for k in if_avif:
                b = total_bytes(size, T, k, imgs)
                per = [at_target[(size, T, k)][i]['bytes'] / at_target[(size, T, 'imgfleet webp')][i]['bytes'] for i in imgs]
                cells.append(f'{fmt_b(b)} | {ratio(b, w)} | {"yes" if imgs and b <= 0.8 * w else "no"} | '
                             + (f'{med(per):.3f} ({min(per):.3f}-{max(per):.3f})' if per else '–'))
            L.append(f'| {T:g} | {len(imgs)}/{n} | {fmt_b(w)} | ' + ' | '.join(cells) + ' |')
    L.append('')

    # (b)
    L.append('### (b) imgfleet AVIF vs sharp AVIF' + (' and avifenc' if AVIFENC else '') + ' at equal score '
             '(ratio = imgfleet / ' + ('other' if AVIFENC else 'sharp') + '; < 1: imgfleet smaller)')
    L.append('')
    cols = sharp_main + AVIFENC_KEYS
    heads = if_avif + cols + [f'{k} / {c}' for k in if_avif for c in cols]
    L.append('| target | images | ' + ' | '.join(heads) + ' |')
    L.append('|---|---|' + '---|' * len(heads))
    for T in TARGETS:
        imgs = common(size, T, if_avif + cols)
        cells = [fmt_b(total_bytes(size, T, k, imgs)) for k in if_avif + cols]
        cells += [ratio(total_bytes(size, T, k, imgs), total_bytes(size, T, c, imgs)) for k in if_avif for c in cols]
        L.append(f'| {T:g} | {len(imgs)}/{n} | ' + ' | '.join(cells) + ' |')
    L.append('')

    # (c)
    L.append('### (c) CPU ms/image at equal bytes: sharp 4:2:0 effort sweep (and sharp 4:4:4 e4, its default)')
    L.append('')
    for T in TARGETS:
        keys = if_avif + sweep_keys + [f'sharp avif 4:4:4 e{e}' for e in IF_EFFORTS]
        imgs = common(size, T, keys)
        L.append(f'**target {T:g}**, {len(imgs)}/{n} images (those every config below reaches)')
        L.append('')
        L.append('| config | total bytes | bytes vs imgfleet e' + str(a.imgfleet_effort) + ' | ms enc | ms diff | mean q |')
        L.append('|---|---|---|---|---|---|')
        ref_key = f'imgfleet avif e{a.imgfleet_effort}'
        ref_b = total_bytes(size, T, ref_key, imgs) if ref_key in configs else float('nan')
        for k in keys:
            b = total_bytes(size, T, k, imgs)
            qm = statistics.mean(at_target[(size, T, k)][i]['q'] for i in imgs) if imgs else float('nan')
            L.append(f'| {k} | {fmt_b(b)} | {ratio(b, ref_b)} | {mean_ms(size, T, k, imgs):.1f} | {mean_ms(size, T, k, imgs, "diff_ms"):.1f} | {qm:.1f} |')
        L.append('')
        for k in if_avif:
            if not imgs:
                continue
            B = total_bytes(size, T, k, imgs)
            pts = [(e, total_bytes(size, T, f'sharp avif 4:2:0 e{e}', imgs),
                    mean_ms(size, T, f'sharp avif 4:2:0 e{e}', imgs), mean_ms(size, T, f'sharp avif 4:2:0 e{e}', imgs, 'diff_ms'))
                   for e in SWEEP_EFFORTS]
            match = None
            for (e0, b0, t0, d0), (e1, b1, t1, d1) in zip(pts, pts[1:]):
                if min(b0, b1) <= B <= max(b0, b1) and b0 != b1:
                    f = (math.log(B) - math.log(b0)) / (math.log(b1) - math.log(b0))
                    lt = lambda x, y: math.exp(math.log(x) + f * (math.log(y) - math.log(x))) if x > 0 and y > 0 else x + f * (y - x)
                    e, b, t, _ = min(pts, key=lambda p: abs(math.log(p[1] / B)))
                    match = (f'between sharp e{e0} and e{e1} (effort ~{e0 + f * (e1 - e0):.2f}; the closest, e{e}, has '
                             f'{ratio(b, B)}x imgfleet\'s bytes at {t:.1f} ms enc)', lt(t0, t1), lt(d0, d1))
                    break
            if match is None:
                e, b, t, d = min(pts, key=lambda p: abs(math.log(p[1] / B)))
                side = 'smaller' if B < min(p[1] for p in pts) else 'larger' if B > max(p[1] for p in pts) else 'between'
                match = (f'not bracketed (imgfleet is {side} than every swept sharp effort): closest sharp e{e} '
                         f'({ratio(B, b)}x its bytes)', t, d)
            tk, dk = mean_ms(size, T, k, imgs), mean_ms(size, T, k, imgs, 'diff_ms')
            s4 = mean_ms(size, T, 'sharp avif 4:2:0 e4', imgs)
            s4d = mean_ms(size, T, 'sharp avif 4:2:0 e4', imgs, 'diff_ms')
            s444 = mean_ms(size, T, 'sharp avif 4:4:4 e4', imgs)
            s444d = mean_ms(size, T, 'sharp avif 4:4:4 e4', imgs, 'diff_ms')
            L.append(f'- {k}: {fmt_b(B)}, {tk:.1f} ms enc ({dk:.1f} diff). Equal bytes: {match[0]}: {match[1]:.1f} ms enc '
                     f'({match[2]:.1f} diff) -> imgfleet/sharp time {ratio(tk, match[1])} enc, {ratio(dk, match[2])} diff '
                     f'({"<= 1: yes" if tk <= match[1] else "> 1: no"} on enc). Against sharp e4 4:2:0: {ratio(tk, s4)} enc, '
                     f'{ratio(dk, s4d)} diff; against sharp e4 4:4:4 (default): {ratio(tk, s444)} enc, {ratio(dk, s444d)} diff.')
        L.append('')

    # (d) encoder choice
    if AVIFENC:
        ref_key = 'imgfleet avif e4'
        keys = if_avif + sharp_main + AVIFENC_KEYS
        L.append('### (d) Encoder choice at equal score: bytes and CPU against imgfleet AVIF e4 (its default effort)')
        L.append('')
        L.append('| target | images | config | total bytes | bytes vs imgfleet e4 | ms enc | time vs imgfleet e4 | mean q |')
        L.append('|---|---|---|---|---|---|---|---|')
        for T in TARGETS:
            imgs = common(size, T, keys)
            rb = total_bytes(size, T, ref_key, imgs) if ref_key in configs else float('nan')
            rt = mean_ms(size, T, ref_key, imgs) if ref_key in configs else float('nan')
            for k in keys:
                b, t = total_bytes(size, T, k, imgs), mean_ms(size, T, k, imgs)
                qm = statistics.mean(at_target[(size, T, k)][i]['q'] for i in imgs) if imgs else float('nan')
                L.append(f'| {T:g} | {len(imgs)}/{n} | {k} | {fmt_b(b)} | {ratio(b, rb)} | {t:.1f} | {ratio(t, rt)} | '
                         f'{qlabel(k, round(qm, 1)) if imgs else "–"} |')
        L.append('')
        L.append('Images: those every config of the table reaches (as in (b)). "ms enc": imgfleet and sharp as in (c) (AVIF '
                 'encode = run minus own JPEG-85 run plus own JPEG-85 encode); avifenc: its process minus '
                 + (f'a PNG-read-only run ({jpeg_ms[size]["avifenc_png_read"]:.1f} ms/image)' if AVIFENC_BASE else
                    'nothing (PNG read and start-up included)')
                 + f'. Times at the target are interpolated from the per-q run averages at each image\'s q; avifenc '
                 f'{a.sweep_rounds} round(s), imgfleet and sharp e{"/".join(map(str, IF_EFFORTS))} median of {a.rounds}. '
                 '"mean q": quality (imgfleet, sharp) or avifenc quantizer Q.')
        L.append('')

# avifenc configs whose outputs are the same files (e.g. libavif 0.11 clamps SVT-AV1 speeds above 8 to 8).
same = []
for i, k0 in enumerate(AVIFENC_KEYS):
    for k1 in AVIFENC_KEYS[i + 1:]:
        keys01 = [(s_, q, r['name']) for s_, _ in SIZES for q in configs[k0]['qs'] for r in refs[s_]]
        if configs[k0]['codec'] == configs[k1]['codec'] and all(
                filecmp.cmp(outputs[(s_, k0, q, nm)]['path'], outputs[(s_, k1, q, nm)]['path'], shallow=False)
                for s_, q, nm in keys01):
            same.append((k0, k1))
if same:
    L.append('## Identical avifenc configs')
    L.append('')
    for k0, k1 in same:
        L.append(f'- {k1} wrote the same files as {k0} for every image and Q: the speed made no difference '
                 '(libavif before 1.0 clamps SVT-AV1 speeds to 0..8 and aom\'s to 0..9); its time differences are noise.')
    L.append('')

if skipped:
    L.append('## Left out (a curve that does not reach a target; no extrapolation)')
    L.append('')
    L.append('| size | target | config | image | why |')
    L.append('|---|---|---|---|---|')
    for s, T, k, i, why in skipped:
        L.append(f'| {s} | {T:g} | {k} | {i} | {why} |')
    L.append('')

print('\n'.join(L))

if a.json:
    raw = dict(versions=versions, args=vars(a), sizes=SIZES, refs=refs, configs=configs,
               outputs=[dict(size=k[0], config=k[1], q=k[2], image=k[3], **{x: v for x, v in o.items() if x != 'path'})
                        for k, o in outputs.items()],
               timings=timings, jpeg_ms={str(s): v for s, v in jpeg_ms.items()},
               ms={str(s): [dict(config=k[0], q=k[1], **v) for k, v in t.items()] for s, t in ms.items()},
               at_target=[dict(size=k[0], target=k[1], config=k[2], images=v) for k, v in at_target.items()],
               skipped=[dict(size=s, target=T, config=k, image=i, why=w) for s, T, k, i, w in skipped],
               phases=dict(timing_s=t_timing, score_s=t_score, rounds_s=round_secs))
    with open(a.json, 'w') as f:
        json.dump(raw, f, indent=1)
    log(f'raw data: {a.json}')
if a.keep or a.workdir:
    log(f'references and outputs kept in {work}')
else:
    shutil.rmtree(work, ignore_errors=True)
