#!/usr/bin/env bash
# Builds deploy/Dockerfile with podman and runs the image for real against the test services:
#
#   1. Base images: the Dockerfile's two base images (ARG RUST_IMAGE, ARG RUNTIME_IMAGE) are
#      replaced, through those build arguments only, by local stand-ins assembled from Debian's
#      packages with mmdebstrap (bookworm) and `podman import`, so no container registry is needed:
#        builder  Debian + gcc/make/pkg-config/git/curl/ca-certificates and this machine's Rust
#                 toolchain (`rustc --print sysroot`, without its HTML docs) laid out as in the
#                 official rust image: RUSTUP_HOME=/usr/local/rustup, CARGO_HOME=/usr/local/cargo,
#                 cargo and rustc in /usr/local/cargo/bin on PATH; it also trusts the CA
#                 certificates this machine trusts beyond Debian's (a TLS-inspecting proxy), as
#                 the build downloads nasm and the crates through the same network
#        runtime  distroless/cc-like: libc6, libgcc-s1, libstdc++6, libssl3, ca-certificates,
#                 tzdata, netbase; no shell, no package manager; user nonroot = 65532:65532
#      Built once and reused (tagged localhost/imgfleet-check/...; `podman rmi` them to rebuild).
#   2. Build: `podman build -f deploy/Dockerfile` (docker format, so HEALTHCHECK is kept), with
#      every step of the Dockerfile as written (apt-get of nasm, cargo fetch, the release build).
#   3. Run: scripts/services.sh start (moto S3+SQS, Redis), a fresh bucket whose uploads/ notify a
#      fresh queue + DLQ, then the image started as deploy/ecs/task-definition.json describes it
#      (its environment with only the <placeholder> values replaced by local ones, plus
#      AWS_ENDPOINT_URL and test credentials; its command, readonlyRootFilesystem, cpu, memory
#      and stopTimeout), on the host network.
#   4. Checks, one "ok"/"FAIL" line each: image config (user, entrypoint, HEALTHCHECK = the task
#      definition's healthCheck), the container's main process runs as 65532 (/proc/<pid>/status),
#      its root filesystem is read-only, the health check answers (`podman healthcheck run` and
#      the task definition's command through `podman exec`), photos uploaded to the bucket get
#      rendition.completed events on the Redis stream and channel and their renditions are in S3,
#      a non-image gets rendition.failed, and `podman stop` (SIGTERM) with uploads in flight
#      drains, loses no upload and exits 0 within the task definition's stopTimeout.
#   5. Reports the image size and how long each phase took.
#
#   scripts/check-image.sh          (as root: rootful podman and mmdebstrap)
#
# Installs what it needs when missing (idempotent): podman, runc and mmdebstrap from Debian's
# packages, and a venv with boto3, Pillow and redis under ${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}.
# Containers run with runc and a containers.conf written to .services/check-image/ (cgroupfs
# cgroup manager, no default ulimits). Logs (build.log, worker.log) are kept there too.
# Too slow for every test run (a full release build inside the image); not part of scripts/test.sh.
# Exits non-zero when any check fails; removes its container, bucket and queues on exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)

STATE="${IMGFLEET_STATE:-$ROOT/.services}/check-image"
TOOLS="${IMGFLEET_TOOLS:-$HOME/.cache/imgfleet-tools}"
VENV="$TOOLS/check-image-venv"
MOTO_PORT="${MOTO_PORT:-5000}"
REDIS_PORT="${REDIS_PORT:-6379}"
TASKDEF=deploy/ecs/task-definition.json
SUITE=bookworm
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
SECURITY_MIRROR="${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}"
IMAGE="${IMGFLEET_CHECK_IMAGE:-localhost/imgfleet:check}"
BUILD_TIMEOUT="${IMGFLEET_CHECK_BUILD_TIMEOUT:-2h}"
RUNTIME_STANDIN="localhost/imgfleet-check/distroless-cc:nonroot-$SUITE"
# Pinned so that a new release cannot change the outcome on an unchanged tree.
PY_PACKAGES=(boto3==1.44.8 pillow==12.1.1 redis==6.4.0)

RUN_ID="$(date +%s)-$$"
BUCKET="imgfleet-image-check-$RUN_ID"
QUEUE="imgfleet-jobs-check-$RUN_ID"
CTR="imgfleet-check-$$"
START_S=$(date +%s)
START_MS=$((START_S * 1000))

export AWS_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT" AWS_REGION=us-east-1
export AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
REDIS_URL="redis://127.0.0.1:$REDIS_PORT"

log() { printf '%s\n' "$*" >&2; }
die() { log "check-image: $*"; exit 2; }
elapsed() { local s=$(($(date +%s) - $1)); printf '%dm%02ds' $((s / 60)) $((s % 60)); }

if [[ "$(id -u)" != 0 ]]; then
    die "run as root (rootful podman and mmdebstrap): sudo $0"
fi
command -v rustc >/dev/null 2>&1 || die "rustc not found: the builder base image takes this machine's Rust toolchain"
mkdir -p "$STATE"

FAILED=0
ok() { printf 'ok   %s\n' "$*"; }
fail() { printf 'FAIL %s\n' "$*"; FAILED=1; }

# --------------------------------------------------------------------------- tools
ensure_packages() {
    local missing=() cmd pkg
    for pair in podman:podman runc:runc mmdebstrap:mmdebstrap; do
        cmd=${pair%%:*} pkg=${pair#*:}
        command -v "$cmd" >/dev/null 2>&1 || missing+=("$pkg")
    done
    [[ ${#missing[@]} -eq 0 ]] && return 0
    log "setup: installing ${missing[*]} (Debian packages)"
    local apt=(env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}")
    "${apt[@]}" >&2 || { env DEBIAN_FRONTEND=noninteractive apt-get update -q >&2 && "${apt[@]}" >&2; }
}

ensure_venv() {
    if [[ ! -x "$VENV/bin/python" ]]; then
        log "setup: creating venv $VENV"
        python3 -m venv "$VENV"
    fi
    local want have
    want=$(printf '%s\n' "${PY_PACKAGES[@]}" | tr '[:upper:]' '[:lower:]' | sort)
    have=$("$VENV/bin/python" -m pip freeze --disable-pip-version-check 2>/dev/null | tr '[:upper:]' '[:lower:]' | sort)
    if [[ -n "$(comm -23 <(echo "$want") <(echo "$have"))" ]]; then
        log "setup: installing ${PY_PACKAGES[*]} into $VENV"
        "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PY_PACKAGES[@]}" >&2
    fi
}

# Debian's podman with Debian's runc: crun (the default) fails on hosts that refuse its rlimits,
# and the systemd cgroup manager needs a systemd that may not be running.
export CONTAINERS_CONF="$STATE/containers.conf"
cat >"$CONTAINERS_CONF" <<'EOF'
[containers]
default_ulimits = []
[engine]
cgroup_manager = "cgroupfs"
EOF
PODMAN=(podman --runtime runc)

# ------------------------------------------------------------ stand-in base images
SOURCES=("deb $MIRROR $SUITE main" "deb $MIRROR $SUITE-updates main" "deb $SECURITY_MIRROR $SUITE-security main")

# mmdebstrap SUITE-tarball into TAG with `podman import` CHANGES...; extra mmdebstrap options first.
import_rootfs() { # tag mmdebstrap-options... -- import-changes...
    local tag=$1; shift
    local opts=() changes=()
    while [[ $# -gt 0 && $1 != -- ]]; do opts+=("$1"); shift; done
    shift
    for c in "$@"; do changes+=(--change "$c"); done
    local tar="$STATE/rootfs.tar"
    mmdebstrap --mode=root --quiet --format=tar "${opts[@]}" "$SUITE" "$tar" "${SOURCES[@]}" >&2
    "${PODMAN[@]}" import --quiet "${changes[@]}" "$tar" "$tag" >/dev/null
    rm -f "$tar"
}

ensure_builder_standin() {
    local sysroot release host toolchain hook
    sysroot=$(rustc --print sysroot)
    release=$(rustc -vV | sed -n 's/^release: //p')
    host=$(rustc -vV | sed -n 's/^host: //p')
    toolchain="$release-$host"
    BUILDER_STANDIN="localhost/imgfleet-check/rust:$release-$SUITE"
    if "${PODMAN[@]}" image exists "$BUILDER_STANDIN"; then
        log "base: $BUILDER_STANDIN present"
        return
    fi
    log "base: assembling $BUILDER_STANDIN (Debian $SUITE + rustc $release from $sysroot)"
    hook="$STATE/builder-hook.sh"
    {
        printf '#!/bin/sh\nsysroot=%q\ntoolchain=%q\n' "$sysroot" "$toolchain"
        cat <<'EOF'
# mmdebstrap customize hook: the host's Rust toolchain, laid out as in the official rust image.
set -e
r=${1:?chroot directory}
dest="$r/usr/local/rustup/toolchains/$toolchain"
mkdir -p "$dest" "$r/usr/local/cargo/bin"
tar -C "$sysroot" --exclude=./share/doc -cf - . | tar -C "$dest" -xf -
for b in "$dest"/bin/*; do ln -s "/usr/local/rustup/toolchains/$toolchain/bin/${b##*/}" "$r/usr/local/cargo/bin/"; done
# CA certificates this machine trusts beyond Debian's (a TLS-inspecting proxy, say): the build's
# downloads (apt, crates.io) leave through the same network as this machine's.
local_cas="$r/usr/local/share/ca-certificates/host"
mkdir -p "$local_cas"
awk -v dir="$local_cas" '/BEGIN CERTIFICATE/ { n++; f = sprintf("%s/host-%03d.crt", dir, n) }
    f { print > f } /END CERTIFICATE/ { close(f); f = "" }' /etc/ssl/certs/ca-certificates.crt
for c in "$local_cas"/*.crt; do
    [ -e "$c" ] || continue
    if grep -qF "$(sed -n 2p "$c")" "$r/etc/ssl/certs/ca-certificates.crt"; then rm "$c"; fi
done
chroot "$r" update-ca-certificates >/dev/null 2>&1
EOF
    } >"$hook"
    chmod +x "$hook"
    import_rootfs "$BUILDER_STANDIN" --variant=minbase \
        --include=ca-certificates,curl,wget,git,gcc,g++,libc6-dev,make,pkg-config,file,patch,xz-utils,procps \
        --customize-hook="$hook" -- \
        'ENV RUSTUP_HOME=/usr/local/rustup' 'ENV CARGO_HOME=/usr/local/cargo' \
        'ENV PATH=/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        "ENV RUST_VERSION=$release" 'CMD ["bash"]'
}

ensure_runtime_standin() {
    if "${PODMAN[@]}" image exists "$RUNTIME_STANDIN"; then
        log "base: $RUNTIME_STANDIN present"
        return
    fi
    log "base: assembling $RUNTIME_STANDIN (distroless/cc-like, Debian $SUITE)"
    local hook="$STATE/runtime-hook.sh"
    cat >"$hook" <<'EOF'
#!/bin/sh
# mmdebstrap extract hook: what distroless does after unpacking the packages (no maintainer
# scripts ran): the CA bundle, the users, home and /tmp, and no executables besides the loader.
set -e
r=${1:?chroot directory}
mkdir -p "$r/etc/ssl/certs"
cat "$r"/usr/share/ca-certificates/*/*.crt >"$r/etc/ssl/certs/ca-certificates.crt"
printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$r/etc/passwd"
printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'tty:x:5:' 'staff:x:50:' 'nonroot:x:65532:' >"$r/etc/group"
install -d -m 0700 -o 65532 -g 65532 "$r/home/nonroot"
install -d -m 1777 "$r/tmp"
rm -rf "${r:?}"/bin/* "${r:?}"/sbin/* "${r:?}"/usr/bin/* "${r:?}"/usr/sbin/* "$r"/usr/share/doc \
    "$r"/usr/share/man "$r"/usr/share/perl5 "$r"/usr/share/debconf "$r"/var/cache/debconf
EOF
    chmod +x "$hook"
    # The extract variant only unpacks (no maintainer scripts); it runs extract hooks, not customize ones.
    import_rootfs "$RUNTIME_STANDIN" --variant=extract \
        --include=libc6,libgcc-s1,libstdc++6,libssl3,ca-certificates,tzdata,netbase,base-files \
        --extract-hook="$hook" -- \
        'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' \
        'USER 65532' 'WORKDIR /home/nonroot'
}

# ------------------------------------------------------------------ python helper
HELPER="$STATE/check_image.py"
cat >"$HELPER" <<'PY'
"""Helper of scripts/check-image.sh: AWS (moto) setup, the task definition, photos, events."""
import argparse, io, json, os, re, shutil, socket, sys, time, urllib.request

PLACEHOLDER = re.compile(r"<[^>]*>")


def task_container(path):
    td = json.load(open(path))
    return td, td["containerDefinitions"][0]


def cmd_taskdef(a):
    td, c = task_container(a.taskdef)
    if a.field == "command":
        print("\n".join(c.get("command", [])))
    elif a.field == "health":
        test = c["healthCheck"]["command"]
        if test[0] != "CMD":
            sys.exit(f"healthCheck {test[0]} needs a shell, which the image does not have")
        print("\n".join(test[1:]))
    elif a.field == "stop-timeout":
        print(c.get("stopTimeout", 30))
    elif a.field == "read-only":
        print("true" if c.get("readonlyRootFilesystem") else "false")
    elif a.field == "cpus":
        print(int(c.get("cpu", td.get("cpu", "1024"))) / 1024)
    elif a.field == "memory":
        print(f'{int(c.get("memory", td.get("memory", "2048")))}m')
    elif a.field == "metrics-addr":
        print(next((e["value"] for e in c["environment"] if e["name"] == "IMGFLEET_METRICS_ADDR"), "0.0.0.0:9090"))
    elif a.field == "visibility":
        print(next((e["value"] for e in c["environment"] if e["name"] == "IMGFLEET_VISIBILITY_TIMEOUT_SECS"), "120"))


def cmd_env(a):
    """The task definition's environment as an env file, placeholders replaced by local values."""
    _, c = task_container(a.taskdef)
    local = {
        "AWS_REGION": os.environ["AWS_REGION"],
        "IMGFLEET_QUEUE_URL": a.queue_url,
        "IMGFLEET_DLQ_URL": a.dlq_url,
        "IMGFLEET_REDIS_URL": a.redis_url,
        "IMGFLEET_SSE": "AES256",
        "IMGFLEET_SSE_KMS_KEY_ID": None,  # only with aws:kms; "remove this entry otherwise"
    }
    out = []
    for e in c["environment"]:
        name, value = e["name"], e["value"]
        if PLACEHOLDER.search(value):
            if name not in local:
                sys.exit(f"{a.taskdef}: {name}={value!r} is a placeholder with no local value")
            value = local[name]
        if name == "IMGFLEET_METRICS_ADDR" and a.metrics_addr:
            value = a.metrics_addr
        if value is not None:
            out.append(f"{name}={value}")
    for name in ("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        out.append(f"{name}={os.environ[name]}")
    print("\n".join(out))


def cmd_image_config(a):
    """The built image's config against the Dockerfile's intent and the task definition."""
    _, c = task_container(a.taskdef)
    image = json.loads(sys.stdin.read())[0]
    cfg = image["Config"]
    problems = []
    # podman shows the HEALTHCHECK beside Config (docker format only: OCI images have none).
    hc = image.get("Healthcheck") or cfg.get("Healthcheck") or {}
    want = c["healthCheck"]
    have_health = hc.get("Test")
    if have_health != want["command"]:
        problems.append(f"HEALTHCHECK {have_health} != task definition healthCheck {want['command']}")
    for key, field, scale in (("interval", "Interval", 1e9), ("timeout", "Timeout", 1e9),
                              ("startPeriod", "StartPeriod", 1e9), ("retries", "Retries", 1)):
        if key in want and hc.get(field, 0) / scale != want[key]:
            problems.append(f"HEALTHCHECK {field} {hc.get(field, 0) / scale:g} != task definition {key} {want[key]}")
    if cfg.get("User") not in ("65532:65532", "65532"):
        problems.append(f"user {cfg.get('User')!r}, not 65532:65532")
    if cfg.get("Entrypoint") != ["/usr/local/bin/imgfleet"]:
        problems.append(f"entrypoint {cfg.get('Entrypoint')}")
    if cfg.get("Cmd") != c.get("command"):
        problems.append(f"CMD {cfg.get('Cmd')} != task definition command {c.get('command')}")
    if cfg.get("StopSignal") not in ("SIGTERM", "15"):
        problems.append(f"STOPSIGNAL {cfg.get('StopSignal')}")
    ports = {f'{p["containerPort"]}/tcp' for p in c.get("portMappings", [])}
    if not ports <= set(cfg.get("ExposedPorts") or {}):
        problems.append(f"exposes {sorted(cfg.get('ExposedPorts') or {})}, task definition maps {sorted(ports)}")
    if problems:
        print("\n".join(problems))
        sys.exit(1)
    print(f"user {cfg['User']}, entrypoint {cfg['Entrypoint'][0]} {' '.join(cfg['Cmd'])}, "
          f"HEALTHCHECK {' '.join(have_health[1:])} (every {hc['Interval'] / 1e9:g}s) as the task definition's")


def cmd_services_up(a):
    """Exit 0 when moto and Redis both answer."""
    import redis

    urllib.request.urlopen(f"{os.environ['AWS_ENDPOINT_URL']}/moto-api/", timeout=2).read()
    redis.Redis.from_url(a.redis_url, socket_timeout=2).ping()


def cmd_free_port(a):
    """Exit 0 when HOST:PORT can be bound (the worker binds it on the host network)."""
    host, port = a.addr.rsplit(":", 1)
    s = socket.socket()
    try:
        s.bind((host, int(port)))
    except OSError:
        s2 = socket.socket()
        s2.bind((host, 0))
        print(f"{host}:{s2.getsockname()[1]}")
        sys.exit(1)


# ---------------------------------------------------------------------------- AWS
def clients():
    import boto3
    from botocore.config import Config

    kw = dict(endpoint_url=os.environ["AWS_ENDPOINT_URL"], region_name=os.environ["AWS_REGION"])
    return (boto3.client("s3", config=Config(s3={"addressing_style": "path"}), **kw), boto3.client("sqs", **kw))


def cmd_setup(a):
    """Bucket, queue + DLQ with a redrive policy, and the bucket's notification of uploads/."""
    s3, sqs = clients()
    s3.create_bucket(Bucket=a.bucket)
    dlq_url = sqs.create_queue(QueueName=f"{a.queue}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": "5"})
    url = sqs.create_queue(QueueName=a.queue, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": a.visibility})[
        "QueueUrl"
    ]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = {
        "Version": "2012-10-17",
        "Statement": [{"Effect": "Allow", "Principal": {"Service": "s3.amazonaws.com"}, "Action": "sqs:SendMessage",
                       "Resource": arn, "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{a.bucket}"}}}],
    }
    sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": json.dumps(policy)})
    s3.put_bucket_notification_configuration(
        Bucket=a.bucket,
        NotificationConfiguration={"QueueConfigurations": [{
            "Id": "imgfleet-uploads", "QueueArn": arn, "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "uploads/"}]}},
        }]},
    )
    print(url)
    print(dlq_url)


def cmd_teardown(a):
    s3, sqs = clients()
    try:
        for page in s3.get_paginator("list_objects_v2").paginate(Bucket=a.bucket):
            for o in page.get("Contents", []):
                s3.delete_object(Bucket=a.bucket, Key=o["Key"])
        s3.delete_bucket(Bucket=a.bucket)
    except Exception as e:  # best effort: moto keeps state in memory only
        print(f"teardown {a.bucket}: {e}", file=sys.stderr)
    for url in a.queue_urls:
        try:
            sqs.delete_queue(QueueUrl=url)
        except Exception as e:
            print(f"teardown {url}: {e}", file=sys.stderr)


# ------------------------------------------------------------------------- photos
def picture(w, h, seed):
    from PIL import Image, ImageDraw

    r = Image.linear_gradient("L").resize((w, h))
    g = Image.radial_gradient("L").resize((w, h))
    b = Image.linear_gradient("L").rotate(90 + seed * 30).resize((w, h))
    im = Image.merge("RGB", (r, g, b))
    d = ImageDraw.Draw(im)
    for i in range(12):
        x, y = (i * 97 + seed * 53) % w, (i * 61 + seed * 29) % h
        d.ellipse((x, y, x + w // 6, y + h // 6), fill=((i * 40) % 256, (seed * 70) % 256, (i * 90) % 256))
    return im


def cmd_photos(a):
    from PIL import Image

    os.makedirs(a.out, exist_ok=True)
    picture(2400, 1600, 1).save(f"{a.out}/landscape.jpg", quality=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display; stored 1600x1200, upright 1200x1600
    picture(1600, 1200, 2).save(f"{a.out}/rotated.jpg", quality=90, exif=exif)
    logo = picture(900, 600, 3).convert("RGBA")
    logo.putalpha(Image.radial_gradient("L").resize((900, 600)))
    logo.save(f"{a.out}/logo.png")
    picture(1200, 800, 4).save(f"{a.out}/photo.webp", quality=85)
    # A real iPhone photo held upright (HEIC grid turned by irot): the image is built with the heic feature.
    shutil.copy("worker/tests/fixtures/heif/iphone-portrait.heic", f"{a.out}/iphone.heic")
    with open(f"{a.out}/not-an-image.jpg", "w") as f:
        f.write("this is text, not a JPEG\n")
    os.makedirs(f"{a.out}/drain", exist_ok=True)
    for i in range(4):  # large progressive JPEGs: still being rendered when SIGTERM arrives
        picture(6000, 4000, 10 + i).save(f"{a.out}/drain/big-{i}.jpg", quality=92, progressive=True)


def upload(s3, bucket, key, path):
    ctype = {"jpg": "image/jpeg", "png": "image/png", "webp": "image/webp", "heic": "image/heic"}[path.rsplit(".", 1)[1]]
    with open(path, "rb") as f:
        s3.put_object(Bucket=bucket, Key=key, Body=f.read(), ContentType=ctype)


def our_events(r, stream, since_ms, bucket):
    out = []
    for _id, fields in r.xrange(stream, min=f"{since_ms}-0", max="+"):
        ev = json.loads(fields[b"event"])
        if ev.get("source", {}).get("bucket") == bucket:
            out.append(ev)
    return out


def cmd_flow(a):
    """Uploads the photos and a non-image, waits for their events, checks the renditions."""
    import redis
    from PIL import Image

    s3, _ = clients()
    r = redis.Redis.from_url(a.redis_url)
    channel_events = []

    def on_message(m):
        try:
            ev = json.loads(m["data"])
        except (TypeError, ValueError):
            return
        if ev.get("source", {}).get("bucket") == a.bucket:
            channel_events.append(ev)

    pubsub = r.pubsub(ignore_subscribe_messages=True)
    pubsub.subscribe(**{a.stream: on_message})
    listener = pubsub.run_in_thread(sleep_time=0.1, daemon=True)
    photos = ["landscape.jpg", "rotated.jpg", "logo.png", "photo.webp", "iphone.heic"]
    keys = {f"uploads/check/{p}": p for p in photos + ["not-an-image.jpg"]}
    started = time.monotonic()
    for key, name in keys.items():
        upload(s3, a.bucket, key, f"{a.photos}/{name}")
    deadline = started + a.timeout
    while True:
        events = {e["source"]["key"]: e for e in our_events(r, a.stream, a.since_ms, a.bucket)
                  if e["source"]["key"] in keys}
        if len(events) == len(keys) or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    took = time.monotonic() - started
    failed = False

    def check(good, what, detail=""):
        nonlocal failed
        print(f"{'ok  ' if good else 'FAIL'} {what}")
        if not good:
            failed = True
            for line in detail.splitlines():
                print(f"     | {line}")

    completed = {k: e for k, e in events.items() if e["type"] == "rendition.completed"}
    photo_keys = [k for k, p in keys.items() if p in photos]
    missing = [k for k in photo_keys if k not in completed]
    check(not missing, f"events: rendition.completed for {len(photo_keys) - len(missing)}/{len(photo_keys)} photos "
          f"(JPEG, JPEG with EXIF orientation, PNG with alpha, WebP, iPhone HEIC) on stream {a.stream} in {took:.1f}s",
          "\n".join(f"{k}: {json.dumps(events.get(k))}" for k in missing))
    bad = events.get("uploads/check/not-an-image.jpg")
    check(bad is not None and bad["type"] == "rendition.failed" and bad["error"]["kind"] == "unsupported",
          "events: rendition.failed (unsupported) for a text file named .jpg", json.dumps(bad))

    problems, count = [], 0
    for key, ev in completed.items():
        if len(ev["renditions"]) != 6:
            problems.append(f"{key}: {len(ev['renditions'])} renditions, not 6 (3 sizes x JPEG + WebP)")
        for rd in ev["renditions"]:
            head = s3.head_object(Bucket=rd["bucket"], Key=rd["key"])
            body = s3.get_object(Bucket=rd["bucket"], Key=rd["key"])["Body"].read()
            im = Image.open(io.BytesIO(body))
            count += 1
            want = (rd["bytes"], rd["content_type"], "AES256", (rd["width"], rd["height"]), rd["format"])
            have = (head["ContentLength"], head["ContentType"], head.get("ServerSideEncryption"), im.size,
                    {"JPEG": "jpeg", "WEBP": "webp"}.get(im.format))
            if want != have:
                problems.append(f"{rd['key']}: event says {want}, S3 has {have}")
    check(not problems and count == 6 * len(photo_keys),
          f"renditions: {count} objects in S3 under renditions/ with the size, type, SSE and pixels the events report",
          "\n".join(problems))
    rot = completed.get("uploads/check/rotated.jpg")
    large = next((rd for rd in (rot or {}).get("renditions", []) if rd["name"] == "large"), None)
    check(large is not None and (large["width"], large["height"]) == (600, 800),
          "orientation: a 1600x1200 JPEG with EXIF orientation 6 gives an upright 600x800 large rendition",
          json.dumps(large))
    heic = completed.get("uploads/check/iphone.heic")
    large = next((rd for rd in (heic or {}).get("renditions", []) if rd["name"] == "large"), None)
    check(heic is not None and heic["source"].get("format") == "heic" and large is not None
          and (large["width"], large["height"]) == (600, 800),
          "HEIC: an iPhone photo held upright (4032x3024 turned by irot) gives an upright 600x800 large rendition",
          json.dumps(heic))
    time.sleep(0.5)
    listener.stop()
    on_channel = {e["source"]["key"] for e in channel_events}
    check(on_channel >= set(events), f"pub/sub: the same {len(events)} events published on channel {a.stream}",
          f"stream: {sorted(events)}\nchannel: {sorted(on_channel)}")
    sys.exit(1 if failed else 0)


def metric(addr, name):
    text = urllib.request.urlopen(f"http://{addr}/metrics", timeout=2).read().decode()
    return sum(float(line.split()[-1]) for line in text.splitlines()
               if line.startswith(name) and line[len(name)] in " {")


def cmd_drain_upload(a):
    """Uploads the large photos and returns once the worker is rendering one (or after 30 s)."""
    s3, _ = clients()
    names = sorted(os.listdir(f"{a.photos}/drain"))
    for n in names:
        upload(s3, a.bucket, f"uploads/drain/{n}", f"{a.photos}/drain/{n}")
    addr = a.metrics_addr.replace("0.0.0.0", "127.0.0.1")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if metric(addr, "imgfleet_jobs_in_flight") > 0:
            print(f"{len(names)} uploads, a job in flight")
            return
        time.sleep(0.05)
    print(f"{len(names)} uploads, no job seen in flight")


def cmd_drain_verify(a):
    """Every drain upload either completed or is back in the queue for another worker."""
    import redis

    _, sqs = clients()
    r = redis.Redis.from_url(a.redis_url)
    done = {e["source"]["key"] for e in our_events(r, a.stream, a.since_ms, a.bucket)
            if e["source"]["key"].startswith("uploads/drain/") and e["type"] == "rendition.completed"}
    attrs = sqs.get_queue_attributes(QueueUrl=a.queue_url, AttributeNames=[
        "ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    visible, hidden = int(attrs["ApproximateNumberOfMessages"]), int(attrs["ApproximateNumberOfMessagesNotVisible"])
    print(f"{len(done)} completed before the exit, {visible} back in the queue (visible), {hidden} in flight")
    sys.exit(0 if len(done) + visible >= a.uploads and hidden == 0 else 1)


def main():
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("taskdef"); s.add_argument("taskdef"); s.add_argument("field")
    s = sub.add_parser("env"); s.add_argument("taskdef")
    for o in ("--queue-url", "--dlq-url", "--redis-url"):
        s.add_argument(o, required=True)
    s.add_argument("--metrics-addr")
    s = sub.add_parser("image-config"); s.add_argument("taskdef")
    s = sub.add_parser("free-port"); s.add_argument("addr")
    s = sub.add_parser("services-up"); s.add_argument("--redis-url")
    s = sub.add_parser("setup"); s.add_argument("--bucket"); s.add_argument("--queue"); s.add_argument("--visibility")
    s = sub.add_parser("teardown"); s.add_argument("--bucket"); s.add_argument("queue_urls", nargs="*")
    s = sub.add_parser("photos"); s.add_argument("--out")
    for name in ("flow", "drain-upload", "drain-verify"):
        s = sub.add_parser(name)
        for o in ("--bucket", "--photos", "--redis-url", "--stream", "--metrics-addr", "--queue-url"):
            s.add_argument(o)
        s.add_argument("--since-ms", type=int, default=0)
        s.add_argument("--timeout", type=float, default=180)
        s.add_argument("--uploads", type=int, default=0)
    a = p.parse_args()
    {"taskdef": cmd_taskdef, "env": cmd_env, "image-config": cmd_image_config, "free-port": cmd_free_port,
     "services-up": cmd_services_up,
     "setup": cmd_setup, "teardown": cmd_teardown, "photos": cmd_photos, "flow": cmd_flow,
     "drain-upload": cmd_drain_upload, "drain-verify": cmd_drain_verify}[a.cmd](a)


main()
PY
py() { "$VENV/bin/python" "$HELPER" "$@"; }

# --------------------------------------------------------------------------- cleanup
QUEUE_URL="" DLQ_URL="" OUT=""
cleanup() {
    local rc=$?
    [[ -z "$OUT" ]] || rm -f "$OUT"
    if "${PODMAN[@]}" container exists "$CTR" 2>/dev/null; then
        "${PODMAN[@]}" logs "$CTR" >"$STATE/worker.log" 2>&1 || true
        "${PODMAN[@]}" rm -f -t 0 "$CTR" >/dev/null 2>&1 || true
    fi
    if [[ -n "$QUEUE_URL" ]]; then
        py teardown --bucket "$BUCKET" "$QUEUE_URL" "$DLQ_URL" >/dev/null 2>&1 || true
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Containers of an earlier run that was killed before its trap ran (its pid is gone).
for old in $("${PODMAN[@]}" ps -a --filter label=imgfleet.check-image.pid --format '{{.Names}}' 2>/dev/null || true); do
    pid=$("${PODMAN[@]}" inspect --format '{{index .Config.Labels "imgfleet.check-image.pid"}}' "$old" 2>/dev/null || true)
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then
        log "setup: removing $old, left by an earlier run"
        "${PODMAN[@]}" rm -f -t 0 "$old" >/dev/null 2>&1 || true
    fi
done

# ------------------------------------------------------------------------------ run
ensure_packages
ensure_venv

t=$(date +%s)
ensure_runtime_standin
ensure_builder_standin
log "base: ready in $(elapsed "$t")"

# The build: the Dockerfile as written, with the base images from the build arguments.
t=$(date +%s)
OLD_ID=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
log "build: podman build -f deploy/Dockerfile -t $IMAGE . (a release build; log in $STATE/build.log)"
set +e
# --layers=false: no intermediate images are kept; the cache mounts keep the crates and the target.
# A stuck build ends after BUILD_TIMEOUT (podman exits 0 when stopped: the image is checked too).
timeout "$BUILD_TIMEOUT" "${PODMAN[@]}" build --pull=never --layers=false --network host --format docker \
    -f deploy/Dockerfile -t "$IMAGE" \
    --build-arg RUST_IMAGE="$BUILDER_STANDIN" --build-arg RUNTIME_IMAGE="$RUNTIME_STANDIN" . \
    >"$STATE/build.log" 2>&1
build_rc=$?
set -e
BUILD_TIME=$(elapsed "$t")
NEW_ID=$("${PODMAN[@]}" image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)
if [[ $build_rc == 0 ]] && { [[ -z "$NEW_ID" ]] || ! grep -qx "Successfully tagged $IMAGE" "$STATE/build.log"; }; then
    build_rc="0 but no image tagged"
fi
if [[ $build_rc != 0 ]]; then
    fail "build deploy/Dockerfile (exit $build_rc after $BUILD_TIME)"
    tail -n 40 "$STATE/build.log" | sed 's/^/     | /'
    printf 'check-image: FAILED\n'
    exit 1
fi
ok "build deploy/Dockerfile in $BUILD_TIME ($(grep -c 'STEP [0-9]*/[0-9]*:' "$STATE/build.log") steps, podman $(podman --version | awk '{print $3}') with runc)"
if [[ -n "$OLD_ID" && "$OLD_ID" != "$NEW_ID" ]]; then
    "${PODMAN[@]}" rmi "$OLD_ID" >/dev/null 2>&1 || true # the previous build of this tag
fi

size_mb() { awk -v b="$1" 'BEGIN { printf "%.1f MB", b / 1e6 }'; }
IMAGE_SIZE=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$IMAGE")
BASE_SIZE=$("${PODMAN[@]}" image inspect --format '{{.Size}}' "$RUNTIME_STANDIN")
ok "image size: $(size_mb "$IMAGE_SIZE") ($(size_mb "$BASE_SIZE") runtime base + $(size_mb $((IMAGE_SIZE - BASE_SIZE))) imgfleet)"

OUT=$(mktemp)
if "${PODMAN[@]}" image inspect "$IMAGE" | py image-config "$TASKDEF" >"$OUT" 2>&1; then
    ok "image config: $(cat "$OUT")"
else
    fail "image config matches the Dockerfile and $TASKDEF"
    sed 's/^/     | /' "$OUT"
fi

# Test services, bucket and queues, photos.
if py services-up --redis-url "$REDIS_URL" >/dev/null 2>&1; then
    log "services: moto ($AWS_ENDPOINT_URL) and redis ($REDIS_URL) answer"
else
    scripts/services.sh start >&2
fi
mapfile -t urls < <(py setup --bucket "$BUCKET" --queue "$QUEUE" --visibility "$(py taskdef "$TASKDEF" visibility)")
[[ ${#urls[@]} == 2 ]] || die "could not create the bucket and queues in moto ($AWS_ENDPOINT_URL)"
QUEUE_URL=${urls[0]} DLQ_URL=${urls[1]}
PHOTOS="$STATE/photos"
rm -rf "$PHOTOS"
py photos --out "$PHOTOS"

# The container, as the task definition describes it.
mapfile -t TD_COMMAND < <(py taskdef "$TASKDEF" command)
mapfile -t TD_HEALTH < <(py taskdef "$TASKDEF" health)
STOP_TIMEOUT=$(py taskdef "$TASKDEF" stop-timeout)
METRICS_ADDR=$(py taskdef "$TASKDEF" metrics-addr)
METRICS_OVERRIDE=()
if ! free=$(py free-port "$METRICS_ADDR"); then
    log "run: $METRICS_ADDR is in use on this host; the worker gets $free instead"
    METRICS_ADDR=$free
    METRICS_OVERRIDE=(--metrics-addr "$free")
fi
ENV_FILE="$STATE/worker.env"
py env "$TASKDEF" --queue-url "$QUEUE_URL" --dlq-url "$DLQ_URL" --redis-url "$REDIS_URL" "${METRICS_OVERRIDE[@]}" >"$ENV_FILE"
RUN_OPTS=(--network host --env-file "$ENV_FILE" --stop-timeout "$STOP_TIMEOUT"
    --cpus "$(py taskdef "$TASKDEF" cpus)" --memory "$(py taskdef "$TASKDEF" memory)")
if [[ "$(py taskdef "$TASKDEF" read-only)" == true ]]; then
    # ECS mounts no tmpfs of its own: nothing in the root filesystem is writable.
    RUN_OPTS+=(--read-only --read-only-tmpfs=false)
fi
log "run: podman run ${RUN_OPTS[*]} $IMAGE ${TD_COMMAND[*]}"
# podman's own messages go to podman.log: without systemd it cannot schedule the periodic health
# checks (and says so at run and stop); `podman healthcheck run` below runs the check itself.
PODMAN_LOG="$STATE/podman.log"
"${PODMAN[@]}" run -d --name "$CTR" --label imgfleet.check-image.pid=$$ "${RUN_OPTS[@]}" "$IMAGE" "${TD_COMMAND[@]}" \
    >/dev/null 2>"$PODMAN_LOG" || { cat "$PODMAN_LOG" >&2; die "podman run failed"; }

# Health check: the image's HEALTHCHECK, then the task definition's command.
healthy=0
for _ in $(seq 1 120); do
    if "${PODMAN[@]}" healthcheck run "$CTR" >/dev/null 2>&1; then healthy=1; break; fi
    [[ "$("${PODMAN[@]}" inspect --format '{{.State.Running}}' "$CTR")" == true ]] || break
    sleep 0.5
done
if [[ $healthy == 1 ]]; then
    ok "health: podman healthcheck run (the image's HEALTHCHECK) reports healthy"
else
    fail "health: podman healthcheck run (the image's HEALTHCHECK) never reported healthy"
    "${PODMAN[@]}" logs --tail 20 "$CTR" 2>&1 | sed 's/^/     | /'
fi
if "${PODMAN[@]}" exec "$CTR" "${TD_HEALTH[@]}" >"$OUT" 2>&1; then
    ok "health: the task definition's healthCheck (${TD_HEALTH[*]}) exits 0"
else
    fail "health: the task definition's healthCheck (${TD_HEALTH[*]})"
    sed 's/^/     | /' "$OUT"
fi

# Who and where the main process runs, seen from the host.
PID=$("${PODMAN[@]}" inspect --format '{{.State.Pid}}' "$CTR")
if [[ "$PID" -gt 0 ]] && [[ -r /proc/$PID/status ]]; then
    uids=$(awk '/^Uid:/ {print $2, $3, $4, $5}' "/proc/$PID/status")
    gids=$(awk '/^Gid:/ {print $2, $3, $4, $5}' "/proc/$PID/status")
    comm=$(cat "/proc/$PID/comm")
    if [[ "$uids" == "65532 65532 65532 65532" && "$gids" == "65532 65532 65532 65532" ]]; then
        ok "user: the main process ($comm, host pid $PID) runs as uid/gid 65532 (real, effective, saved, fs)"
    else
        fail "user: the main process ($comm, host pid $PID) has Uid: $uids Gid: $gids"
    fi
    root_opts=$(awk '$5 == "/" {print $6}' "/proc/$PID/mountinfo" | tail -n 1)
    if [[ "$(py taskdef "$TASKDEF" read-only)" != true ]]; then
        ok "read-only root: not asked for by the task definition (root mounted $root_opts)"
    elif [[ "$root_opts" == ro,* || "$root_opts" == ro ]]; then
        ok "read-only root: / is mounted $root_opts (readonlyRootFilesystem), and the worker runs under it"
    else
        fail "read-only root: / is mounted $root_opts"
    fi
else
    fail "user: no main process (pid '$PID'); the container exited"
    "${PODMAN[@]}" logs --tail 20 "$CTR" 2>&1 | sed 's/^/     | /'
fi

# The flow: uploads -> events on the stream and channel -> renditions in S3.
STREAM=imgfleet:events # the worker's default: the task definition does not set IMGFLEET_EVENTS_STREAM
if ! py flow --bucket "$BUCKET" --photos "$PHOTOS" --redis-url "$REDIS_URL" --stream "$STREAM" \
    --since-ms "$START_MS" --timeout 180; then
    FAILED=1
    "${PODMAN[@]}" logs --tail 20 "$CTR" 2>&1 | sed 's/^/     | /'
fi

# SIGTERM with work in flight: drain, lose nothing, exit 0 within stopTimeout.
drain_note=$(py drain-upload --bucket "$BUCKET" --photos "$PHOTOS" --metrics-addr "$METRICS_ADDR" 2>&1) \
    || drain_note="drain uploads: $drain_note"
t0=$(date +%s%N)
"${PODMAN[@]}" stop -t "$STOP_TIMEOUT" "$CTR" >/dev/null 2>>"$PODMAN_LOG"
stop_ms=$((($(date +%s%N) - t0) / 1000000))
"${PODMAN[@]}" logs "$CTR" >"$STATE/worker.log" 2>&1 || true
exit_code=$("${PODMAN[@]}" inspect --format '{{.State.ExitCode}}' "$CTR")
stop_s=$(awk -v m="$stop_ms" 'BEGIN { printf "%.1f", m / 1000 }')
if [[ "$exit_code" == 0 && $stop_ms -lt $((STOP_TIMEOUT * 1000)) ]] \
    && grep -q '"draining"\|draining' "$STATE/worker.log" && grep -q 'drained' "$STATE/worker.log"; then
    ok "stop: podman stop (SIGTERM; $drain_note) drained and exited 0 in ${stop_s}s (stopTimeout ${STOP_TIMEOUT}s)"
else
    fail "stop: podman stop exit code $exit_code after ${stop_s}s (stopTimeout ${STOP_TIMEOUT}s; $drain_note)"
    tail -n 20 "$STATE/worker.log" | sed 's/^/     | /'
fi
sleep 1 # moto counts a message released at the exit as visible once its visibility change lands
if py drain-verify --bucket "$BUCKET" --redis-url "$REDIS_URL" --stream "$STREAM" --since-ms "$START_MS" \
    --queue-url "$QUEUE_URL" --uploads 4 >"$OUT" 2>&1; then
    ok "stop: no upload lost by the drain: $(cat "$OUT")"
else
    fail "stop: uploads lost by the drain"
    sed 's/^/     | /' "$OUT"
fi

if [[ "$FAILED" != 0 ]]; then
    printf 'check-image: FAILED after %s (worker log: %s)\n' "$(elapsed "$START_S")" "$STATE/worker.log"
    exit 1
fi
printf 'check-image: all checks passed in %s (image %s, %s)\n' "$(elapsed "$START_S")" "$IMAGE" "$(size_mb "$IMAGE_SIZE")"
