#!/usr/bin/env bash
# Busmaster's one entry point: installs what is missing, then boots or tests.
#
#   ./run.sh                      boot the kernel in QEMU (default profile), shell on this terminal
#   ./run.sh --profile NAME       boot another profile (./run.sh profiles lists them)
#   ./run.sh --uefi               boot through OVMF instead of BIOS
#   ./run.sh -- QEMU ARGS         extra QEMU arguments, unchanged (e.g. -s -S for GDB)
#   ./run.sh test                 host tests of every crate + the in-QEMU tests
#                                 (--only SUBSTRING, --repeat N: count failures per test, --jobs N)
#   ./run.sh image [--cmdline "opts"]  write BIOS and UEFI disk images to target/images/
#                                 (their options file holding opts)
#   ./run.sh report               boot, then one HTML page of the PCI tree, memory zones, IOMMU domains
#                                 (target/report/index.html; --log FILE renders an existing serial log)
#   ./run.sh boot-time            measure QEMU start -> shell prompt (BIOS and UEFI) beside Linux
#   ./run.sh blkbench-compare     blkbench in every IOMMU mode beside Linux's dd on the same disks
#   ./run.sh exercise list        the graded exercises (exercises/*/exercise.txt)
#   ./run.sh exercise start NAME  branch exercise/NAME with the exercise's code cut to stubs
#   ./run.sh grade NAME           grade an exercise (--repo PATH: another checkout; --host-only)
set -euo pipefail
cd "$(dirname "$0")"

say() { printf 'run.sh: %s\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" = 0 ]; then "$@"
    elif command -v sudo >/dev/null 2>&1; then sudo "$@"
    else say "need root for: $*"; return 1
    fi
}

ensure_toolchain() {
    if ! command -v rustup >/dev/null 2>&1; then
        say "rustup is not installed. Install it (https://rustup.rs), then run this again."
        exit 1
    fi
    # RUSTUP_AUTO_INSTALL=0 may be set, so cargo will not fetch the toolchain
    # itself: install what rust-toolchain.toml pins (channel, components, targets).
    if ! rustup toolchain install >/tmp/busmaster-rustup.log 2>&1; then
        cat /tmp/busmaster-rustup.log >&2
        say "could not install the pinned toolchain (see above)"
        exit 1
    fi
}

ensure_qemu() {
    local ovmf=""
    for d in /usr/share/OVMF /usr/share/ovmf; do
        [ -f "$d/OVMF_CODE_4M.fd" ] && ovmf="$d"
    done
    if command -v qemu-system-x86_64 >/dev/null 2>&1 && [ -n "$ovmf" ]; then
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "QEMU (qemu-system-x86_64) and OVMF are needed; install them with your package manager."
        exit 1
    fi
    say "installing QEMU and OVMF (apt-get install qemu-system-x86 ovmf)"
    if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq qemu-system-x86 ovmf; } >/tmp/busmaster-apt.log 2>&1; then
        tail -n 20 /tmp/busmaster-apt.log >&2
        say "could not install QEMU/OVMF (see above); install qemu-system-x86 and ovmf by hand"
        exit 1
    fi
}

# The suite renders the report page in headless Chromium (Debian's package).
# When it cannot be installed the suite's report check fails and says why.
ensure_chromium() {
    if command -v "${BUSMASTER_CHROMIUM:-chromium}" >/dev/null 2>&1; then
        return
    fi
    if ! command -v apt-get >/dev/null 2>&1; then
        say "chromium is not installed and there is no apt-get: the report check will fail"
        return
    fi
    say "installing Chromium for the report check (apt-get install chromium)"
    if ! { as_root apt-get update -qq && DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq chromium; } >/tmp/busmaster-apt-chromium.log 2>&1; then
        tail -n 20 /tmp/busmaster-apt-chromium.log >&2
        say "could not install chromium (see above): the report check will fail"
    fi
}

ensure_toolchain
ensure_qemu

cmd="${1:-run}"
case "$cmd" in
test)
    shift
    ensure_chromium
    mkdir -p target
    say "host tests (cargo test --workspace --exclude kernel --no-fail-fast)"
    set +e
    cargo test --workspace --exclude kernel --no-fail-fast 2>&1 | tee target/host-tests.log
    status=${PIPESTATUS[0]}
    set -e
    exec cargo run -q -p boot -- test --host-log target/host-tests.log --host-status "$status" "$@"
    ;;
blkbench-compare)
    shift
    exec tools/blkbench-compare.sh "$@"
    ;;
run | image | report | boot-time | profiles | exercise | grade)
    # `./run.sh` alone means run: there may be nothing to shift (and a failed
    # shift would end the script under set -e).
    if [ $# -gt 0 ]; then shift; fi
    exec cargo run -q -p boot -- "$cmd" "$@"
    ;;
*)
    # Options only (./run.sh --profile bigmem): boot.
    exec cargo run -q -p boot -- run "$@"
    ;;
esac
