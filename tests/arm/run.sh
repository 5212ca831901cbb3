#!/usr/bin/env bash
# Proves the device runtime works on 64-bit ARM (Raspberry Pi 4: Cortex-A72, Debian bookworm,
# Python 3.11) under qemu-user emulation, and gives the same answers as on x86:
#   1. builds (or reuses) an arm64 Debian root with Python 3.11, outside the repo;
#   2. unpacks the runtime's aarch64 wheels (the pyproject.toml ranges) into that root;
#   3. on x86: trains the demo's int8 model and scans its photos (--json);
#   4. on emulated ARM: `edgeface --version`, `info --json` and `scan --json` of the same photos;
#   5. compares the two (tests/arm/compare.py) and fails loudly on any difference.
#
# usage: tests/arm/run.sh [--rebuild] [--keep] [--no-fake-cpu]
#   --rebuild      build the arm64 root and the wheel folder again, from scratch
#   --keep         keep the work folder (model, photos, logs) even when everything passes
#   --no-fake-cpu  leave out the fake Pi 4 CPU topology, to show LiteRT crashing without it
# environment:
#   EDGEFACE_ARM_CACHE   where the root is cached (default: ~/.cache/edgeface-arm)
#   EDGEFACE_X86_PYTHON  the x86 Python with edgeface[demo] installed (default: the repo's .venv)
#   EDGEFACE_ARM_MIRROR  a Debian mirror to use instead of the one in this machine's apt sources
# Needs root (or password-less sudo) only to apt-get install qemu-user-static and debootstrap.
set -euo pipefail

REPO=$(cd "$(dirname "$0")/../.." && pwd)
HERE="$REPO/tests/arm"
CACHE=${EDGEFACE_ARM_CACHE:-$HOME/.cache/edgeface-arm}
ROOT="$CACHE/root"
SITE_IN_ROOT=/opt/edgeface-site        # the runtime's wheels, unpacked; on PYTHONPATH in the guest
X86_PYTHON=${EDGEFACE_X86_PYTHON:-$REPO/.venv/bin/python}
SUITE=bookworm                         # what 64-bit Raspberry Pi OS is based on: Python 3.11
# Changing this recipe makes cached roots stale, so they are rebuilt.
ROOT_RECIPE="debootstrap arm64 minbase $SUITE +python3 v1"
GUEST_TIMEOUT=900                      # seconds; a hung emulated command must not hang CI

REBUILD=0 KEEP=0 FAKE_CPU=1
START=$SECONDS

say() { printf '== %s\n' "$*" >&2; }
die() { printf '\nFAIL (tests/arm): %s\n' "$*" >&2; exit 1; }

parse_args() {
    local arg
    for arg in "$@"; do
        case $arg in
            --rebuild) REBUILD=1 ;;
            --keep) KEEP=1 ;;
            --no-fake-cpu) FAKE_CPU=0 ;;
            -h|--help) sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "$0"; exit 0 ;;
            *) die "unknown argument '$arg' (see --help)" ;;
        esac
    done
}

as_root() {
    if [[ $(id -u) == 0 ]]; then "$@"
    elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo -n "$@"
    else die "need root to run: $*"
    fi
}

install_host_tools() {
    command -v qemu-aarch64-static >/dev/null && command -v debootstrap >/dev/null && return
    say "installing qemu-user-static and debootstrap with apt-get"
    local packages=(qemu-user-static debootstrap)
    local log=$CACHE/apt-get.log
    export DEBIAN_FRONTEND=noninteractive
    # A fresh machine may have no package lists yet; update only when the first try fails.
    as_root apt-get install -y -q --no-install-recommends "${packages[@]}" >"$log" 2>&1 \
        || { as_root apt-get update -q >>"$log" 2>&1 && as_root apt-get install -y -q --no-install-recommends "${packages[@]}" >>"$log" 2>&1; } \
        || { tail -n 20 "$log" >&2; die "apt-get could not install ${packages[*]} (log: $log)"; }
}

# The Debian mirror this machine already uses (the first `deb` source of a release suite, not
# -security or -updates), so that no mirror address lives in the repo.
debian_mirror() {
    if [[ -n ${EDGEFACE_ARM_MIRROR:-} ]]; then echo "$EDGEFACE_ARM_MIRROR"; return; fi
    local mirror
    mirror=$(
        {
            # One-line format: deb [options] URI SUITE COMPONENTS...
            [[ -f /etc/apt/sources.list ]] && awk '$1 == "deb" {
                    sub(/^deb +(\[[^]]*\] +)?/, ""); if ($2 !~ /-/) print $1 }' /etc/apt/sources.list
            # deb822 format: stanzas of Types/URIs/Suites/Enabled fields, separated by blank lines.
            for file in /etc/apt/sources.list.d/*.sources; do
                [[ -f $file ]] && awk 'BEGIN { RS = ""; FS = "\n" } {
                        deb = release = 0; uri = ""
                        for (i = 1; i <= NF; i++) {
                            split($i, words, /[ \t]+/)
                            if (words[1] == "Types:") for (w in words) if (words[w] == "deb") deb = 1
                            if (words[1] == "URIs:") uri = words[2]
                            if (words[1] == "Suites:") for (w = 2; w in words; w++) if (words[w] !~ /-/) release = 1
                            if (words[1] == "Enabled:" && words[2] == "no") deb = 0
                        }
                        if (deb && release && uri != "") print uri
                    }' "$file"
            done
        } | head -n 1
    )
    [[ -n $mirror ]] || die "no Debian mirror found in /etc/apt/sources.list{,.d/*.sources}; set EDGEFACE_ARM_MIRROR"
    echo "$mirror"
}

# debootstrap's first stage (--foreign: no arm64 code runs) unpacks only the base system and
# downloads the rest; unpacking every .deb gives a root whose python3.11 runs under qemu-user.
build_root() {
    local mirror tmp=$ROOT.tmp deb
    mirror=$(debian_mirror)
    say "building the arm64 $SUITE root in $ROOT (mirror from apt sources: $mirror)"
    rm -rf "$tmp"
    debootstrap --arch=arm64 --foreign --variant=minbase --include=python3 "$SUITE" "$tmp" "$mirror" \
        >"$CACHE/debootstrap.log" 2>&1 || { tail -n 20 "$CACHE/debootstrap.log" >&2; die "debootstrap failed (log: $CACHE/debootstrap.log)"; }
    for deb in "$tmp"/var/cache/apt/archives/*.deb; do
        dpkg-deb -x "$deb" "$tmp" || die "could not unpack $deb"
    done
    rm -f "$tmp"/var/cache/apt/archives/*.deb
    [[ -x $tmp/usr/bin/python3.11 ]] || die "the arm64 root has no usr/bin/python3.11"
    echo "$ROOT_RECIPE" >"$tmp/.edgeface-recipe"
    mv "$tmp" "$ROOT"   # only a finished root is ever reused
}

ensure_root() {
    if [[ $REBUILD == 1 || ! -f $ROOT/.edgeface-recipe || $(cat "$ROOT/.edgeface-recipe") != "$ROOT_RECIPE" ]]; then
        rm -rf "$ROOT"
        build_root
    else
        say "reusing the arm64 root in $ROOT (--rebuild builds it again)"
    fi
}

# Writes a Raspberry Pi 4 CPU (4 Cortex-A72 cores, 1 cluster; L1d 32K, L1i 48K, shared L2 1M)
# into ROOT/sys and ROOT/proc. qemu-user looks paths up under -L ROOT first; without this the
# guest reads the host's x86 topology and LiteRT >= 2.2 segfaults while creating the interpreter.
write_fake_pi4_cpu() {
    local cpus="$ROOT/sys/devices/system/cpu" n dir index name
    rm -rf "$cpus" "$ROOT/proc/cpuinfo"
    [[ $FAKE_CPU == 1 ]] || { say "NOT writing the fake Pi 4 CPU topology (--no-fake-cpu): expect LiteRT to crash"; return; }
    mkdir -p "$cpus" "$ROOT/proc"
    for name in possible present online; do echo 0-3 >"$cpus/$name"; done
    for n in 0 1 2 3; do
        dir="$cpus/cpu$n"
        mkdir -p "$dir/topology" "$dir/cpufreq"
        echo 1 >"$dir/online"
        write_files "$dir/topology" \
            core_id "$n" physical_package_id 0 cluster_id 0 die_id 0 \
            thread_siblings_list "$n" thread_siblings "$((1 << n))" core_cpus_list "$n" core_cpus "$((1 << n))" \
            core_siblings_list 0-3 core_siblings f package_cpus_list 0-3 package_cpus f \
            cluster_cpus_list 0-3 cluster_cpus f die_cpus_list 0-3 die_cpus f
        write_files "$dir/cpufreq" cpuinfo_min_freq 600000 cpuinfo_max_freq 1500000 scaling_cur_freq 1500000
        for index in 0 1 2; do mkdir -p "$dir/cache/index$index"; done
        write_files "$dir/cache/index0" level 1 type Data size 32K shared_cpu_list "$n" shared_cpu_map "$((1 << n))" \
            coherency_line_size 64 ways_of_associativity 2 number_of_sets 256
        write_files "$dir/cache/index1" level 1 type Instruction size 48K shared_cpu_list "$n" shared_cpu_map "$((1 << n))" \
            coherency_line_size 64 ways_of_associativity 3 number_of_sets 256
        write_files "$dir/cache/index2" level 2 type Unified size 1024K shared_cpu_list 0-3 shared_cpu_map f \
            coherency_line_size 64 ways_of_associativity 16 number_of_sets 1024
    done
    for n in 0 1 2 3; do
        printf 'processor\t: %s\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\n' "$n"
        printf 'CPU implementer\t: 0x41\nCPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n'
    done >"$ROOT/proc/cpuinfo"
    printf 'Hardware\t: BCM2835\nRevision\t: c03111\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n' >>"$ROOT/proc/cpuinfo"
}

# write_files DIR NAME VALUE [NAME VALUE]...: one sysfs-style file per pair.
write_files() {
    local dir=$1; shift
    while (($#)); do echo "$2" >"$dir/$1"; shift 2; done
}

# Runs the root's Python 3.11 on an emulated Cortex-A72, with only the runtime wheels and a copy
# of edgeface/ on its path (no host site-packages, no TensorFlow).
guest_python() {
    timeout "$GUEST_TIMEOUT" env -i PATH=/usr/bin:/bin HOME="$WORK" LANG=C.UTF-8 PYTHONNOUSERSITE=1 \
        PYTHONPATH="$WORK/guest:$ROOT$SITE_IN_ROOT" \
        qemu-aarch64-static -cpu cortex-a72 -L "$ROOT" "$ROOT/usr/bin/python3.11" "$@"
}

# The runtime's requirements, read from pyproject.toml so that they never drift from it.
runtime_requirements() {
    "$X86_PYTHON" -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' \
        "$REPO/pyproject.toml"
}

# pip wants every platform tag the target accepts: manylinux_2_17 up to the root's glibc.
manylinux_platforms() {
    local glibc minor
    glibc=$(guest_python -c 'import platform; print(platform.libc_ver()[1])') || die "the arm64 Python does not run under qemu"
    for ((minor = 17; minor <= ${glibc#2.}; minor++)); do printf -- '--platform manylinux_2_%s_aarch64 ' "$minor"; done
}

ensure_wheels() {
    local site=$ROOT$SITE_IN_ROOT wanted platforms wheel requirements
    mapfile -t requirements < <(runtime_requirements)
    platforms=$(manylinux_platforms)
    wanted="${requirements[*]} | $platforms"
    if [[ $REBUILD == 0 && -f $site/.edgeface-wheels && $(cat "$site/.edgeface-wheels") == "$wanted" ]]; then
        say "reusing the aarch64 wheels in $site"
        return
    fi
    say "fetching aarch64 wheels for Python 3.11: ${requirements[*]}"
    rm -rf "$site" "$site.tmp" "$CACHE/wheels"
    # shellcheck disable=SC2086  # $platforms is a list of options
    "$X86_PYTHON" -m pip download -q --disable-pip-version-check --only-binary=:all: --python-version 3.11 \
        --implementation cp $platforms -d "$CACHE/wheels" "${requirements[@]}" >"$CACHE/pip.log" 2>&1 \
        || { tail -n 20 "$CACHE/pip.log" >&2; die "pip could not download the aarch64 wheels (log: $CACHE/pip.log)"; }
    mkdir -p "$site.tmp"
    for wheel in "$CACHE"/wheels/*.whl; do
        "$X86_PYTHON" -m zipfile -e "$wheel" "$site.tmp" || die "could not unpack $wheel"
    done
    (cd "$CACHE/wheels" && ls *.whl) >"$site.tmp/.edgeface-wheel-files"
    echo "$wanted" >"$site.tmp/.edgeface-wheels"
    mv "$site.tmp" "$site"
    rm -rf "$CACHE/wheels"
}

# The device gets what `pip install .` installs: edgeface/ and edgeface_convert/, whose option and argument modules
# the CLI imports to show train's and convert's flags; its command modules need TensorFlow, which the device lacks.
copy_runtime_package() {
    mkdir -p "$WORK/guest"
    cp -r "$REPO/edgeface" "$REPO/convert/edgeface_convert" "$WORK/guest/"
    find "$WORK/guest" -name __pycache__ -prune -exec rm -rf {} +
}

x86_side() {
    say "x86: training the demo's int8 model (edgeface demo, ~20 s)"
    "$X86_PYTHON" -m edgeface demo --dir "$WORK/demo" >"$WORK/x86-demo.log" 2>&1 \
        || { tail -n 20 "$WORK/x86-demo.log" >&2; die "x86: edgeface demo failed (log: $WORK/x86-demo.log)"; }
    MODEL=$WORK/demo/face_or_not.tflite PHOTOS=$WORK/demo/photos
    [[ -f $MODEL && -d $PHOTOS ]] || die "x86: edgeface demo left no $MODEL or $PHOTOS"
    say "x86: edgeface scan"
    "$X86_PYTHON" -m edgeface scan "$PHOTOS" --model "$MODEL" --db "$WORK/x86.db" --json >"$WORK/x86.jsonl" \
        || die "x86: edgeface scan failed"
    "$X86_PYTHON" -m edgeface info "$MODEL" --json >"$WORK/x86-info.json" || die "x86: edgeface info failed"
}

# Runs one emulated command; a crash is reported with its signal, since that is how LiteRT fails.
guest_step() {
    local what=$1 out=$2 rc=0; shift 2
    say "arm64: $what"
    guest_python "$@" >"$out" || rc=$?
    ((rc == 0)) && return
    if ((rc == 124)); then die "arm64: $what timed out after $GUEST_TIMEOUT s"; fi
    if ((rc > 128)); then
        die "arm64: $what was killed by signal $((rc - 128)) ($(kill -l $((rc - 128)) 2>/dev/null || echo '?'))$(
            [[ $FAKE_CPU == 0 ]] && echo '; expected with --no-fake-cpu: LiteRT needs the fake Pi 4 CPU topology')"
    fi
    die "arm64: $what exited with status $rc"
}

arm_side() {
    local version
    guest_step "python3 -m edgeface --version" "$WORK/arm-version.txt" -m edgeface --version
    version=$(cat "$WORK/arm-version.txt")
    say "arm64: $version on $(guest_python -c 'import platform, sys; print(platform.machine(), "Python", sys.version.split()[0])')"
    if "$X86_PYTHON" -m edgeface info --help >/dev/null 2>&1; then
        guest_step "edgeface info" "$WORK/arm-info.json" -m edgeface info "$MODEL" --json
    else
        say "note: this edgeface has no \`info\` command yet; skipping it"
        rm -f "$WORK/x86-info.json"
    fi
    # One worker: a spawned worker would start the aarch64 python3 directly, which the x86 kernel
    # cannot run without binfmt_misc (qemu-user only emulates the process it was started with).
    guest_step "edgeface scan" "$WORK/arm.jsonl" -m edgeface scan "$PHOTOS" --model "$MODEL" --db "$WORK/arm.db" \
        --json --workers 1
}

keep_on_failure() {
    (($1 == 0)) || echo "work folder kept for inspection: $WORK" >&2
}

main() {
    parse_args "$@"
    [[ -x $X86_PYTHON ]] || die "no x86 Python at $X86_PYTHON (make the repo's .venv, or set EDGEFACE_X86_PYTHON)"
    mkdir -p "$CACHE"
    ulimit -c 0   # a crashing guest (see --no-fake-cpu) must not leave qemu core files behind
    exec 9>"$CACHE/.lock"
    flock -w 1800 9 || die "another tests/arm/run.sh holds $CACHE/.lock"
    install_host_tools
    WORK=$(mktemp -d "${TMPDIR:-/tmp}/edgeface-arm.XXXXXX")
    trap 'keep_on_failure $?' EXIT
    ensure_root
    write_fake_pi4_cpu
    ensure_wheels
    say "aarch64 wheels: $(sed 's/-cp.*\|-py.*//' "$ROOT$SITE_IN_ROOT/.edgeface-wheel-files" | tr '\n' ' ')"
    copy_runtime_package
    x86_side
    arm_side
    "$X86_PYTHON" "$HERE/compare.py" "$WORK" || die "x86 and arm64 results differ (files in $WORK)"
    if [[ $KEEP == 1 ]]; then echo "work folder: $WORK"; else rm -rf "$WORK"; fi
    echo "PASS (tests/arm): edgeface runs on emulated arm64 (Cortex-A72) and agrees with x86; $((SECONDS - START)) s"
}

main "$@"
