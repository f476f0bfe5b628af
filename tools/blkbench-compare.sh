#!/usr/bin/env bash
# Reproduces the README's storage comparison (issue 14 item 6): Busmaster's
# `blkbench` in every IOMMU mode beside Debian's Linux (its ahci and nvme drivers,
# `dd iflag=direct` in a busybox initramfs, ../shared/tools/linux-oracle.sh) in the
# same QEMU machine: q35, 2 GiB, GenuineIntel `max` CPU, intel-iommu, edu, and the
# `storage` profile's two 32 MiB images (AHCI on ICH9 port 1, NVMe namespace 1).
#
#   ./run.sh blkbench-compare        (or tools/blkbench-compare.sh)
#
# Linux's modes: direct = intel_iommu=off; swiotlb = intel_iommu=off swiotlb=force;
# strict = intel_iommu=on iommu.strict=1; lazy = intel_iommu=on iommu.strict=0.
# Each dd runs twice and the second (warm) run counts, timed around the whole dd
# (its process start included); blkbench has one untimed request before its timed
# ones and sums the requests' own times. Both are qd 1 (dd with O_DIRECT waits for each read),
# and for 128 KiB also qd 8: blkbench --qd 8 keeps 8 reads in flight; Linux runs 8 dd
# processes at once, each over its own eighth of the same 32 MiB, timed around all 8.
# MB/s is 10^6 bytes per second on both sides. REPEAT=N (default 3) does all of it
# N times, alternating the two sides, and each cell is the median of the N runs, with
# the lowest and highest after it. Output: target/blkbench-compare/ (busmaster-<r>.log,
# linux-<mode>-<r>.log, table.md), and the table on stdout.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/blkbench-compare
mkdir -p "$out"
oracle=${LINUX_ORACLE:-../shared/tools/linux-oracle.sh}
[ -f "$oracle" ] || oracle=/work/shared/tools/linux-oracle.sh
oracle=$(cd "$(dirname "$oracle")" && pwd)/$(basename "$oracle")

rm -f "$out"/*.log "$out"/*.txt
: > "$out/busmaster.txt"; : > "$out/linux.txt"
for r in $(seq 1 "${REPEAT:-3}"); do
  # 1. Busmaster: one boot of the storage profile (it writes the images too).
  printf '%s\n' \
    "blkbench nvme0n1 --bs 128k --count 256" \
    "blkbench sdb --bs 128k --count 256" \
    "blkbench nvme0n1 --bs 128k --count 256 --qd 8" \
    "blkbench sdb --bs 128k --count 256 --qd 8" \
    "blkbench nvme0n1 --bs 4k --count 1024" \
    "blkbench sdb --bs 4k --count 1024" \
    "blkbench nvme0n1 --bs 4k --count 1024 --random" \
    "blkbench sdb --bs 4k --count 1024 --random" \
    poweroff | ./run.sh --profile storage > "$out/busmaster-$r.log" 2>&1
  # "<dev> <bs> <seq|rand> <qd> <mode> <MB/s>"
  awk '
    /^blkbench [a-z0-9]+: [0-9]+ x [0-9]+ bytes, / {
      dev = $2; sub(":", "", dev); bs = $5; pat = ($7 == "sequential") ? "seq" : "rand"
      qd = $10; sub(",", "", qd); next
    }
    /^error: blkbench/ { dev = ""; next }
    dev != "" && /^(direct|swiotlb|strict|lazy) / {
      if ($2 == "n/a" || $2 == "error:") v = "n/a"; else v = $2
      print dev, bs, pat, qd, $1, v
    }' "$out/busmaster-$r.log" >> "$out/busmaster.txt"

  # 2. Linux: one boot per mode, the same dd reads.
  img_ahci=$PWD/target/ahci.img
  img_nvme=$PWD/target/nvme-storage.img
  # busybox dd prints no timing and its date has no %N: the clock is the kernel's
  # "now at N nsecs" (the first line of /proc/timer_list that has it).
  init='now() { grep -m1 "now at" /proc/timer_list | cut -d" " -f3; };
  for d in nvme0n1 sda; do for x in 131072:256 4096:1024; do bs=${x%:*}; n=${x#*:};
    dd if=/dev/$d of=/dev/null bs=$bs count=$n iflag=direct 2>/dev/null;
    t0=$(now); dd if=/dev/$d of=/dev/null bs=$bs count=$n iflag=direct 2>/dev/null; t1=$(now);
    echo "DD $d $bs 1 $((bs * n)) $((t1 - t0))"; done;
    n=32; t0=$(now); for k in 0 1 2 3 4 5 6 7; do
      dd if=/dev/$d of=/dev/null bs=131072 count=$n skip=$((k * n)) iflag=direct 2>/dev/null & done; wait; t1=$(now);
    echo "DD $d 131072 8 $((131072 * n * 8)) $((t1 - t0))"; done'
  for mode in direct swiotlb strict lazy; do
    case $mode in
      direct) append="intel_iommu=off" ;;
      swiotlb) append="intel_iommu=off swiotlb=force" ;;
      strict) append="intel_iommu=on iommu.strict=1" ;;
      lazy) append="intel_iommu=on iommu.strict=0" ;;
    esac
    ORACLE_MODULES="ahci sd_mod nvme" ORACLE_INIT="$init" ORACLE_APPEND="$append" \
      "$oracle" -machine q35 -cpu max,vendor=GenuineIntel -m 2G -device intel-iommu -device edu \
        -drive "if=none,id=s1,format=raw,file=$img_ahci,snapshot=on" -device ide-hd,drive=s1,bus=ide.1 \
        -drive "if=none,id=s2,format=raw,file=$img_nvme,snapshot=on" -device nvme,serial=busmaster,drive=s2 \
        > "$out/linux-$mode-$r.log" 2>&1 || true
    # "OUT DD <dev> <bs> <qd> <bytes> <ns>"
    awk -v mode="$mode" '$1 == "OUT" && $2 == "DD" && $7 > 0 {
        dev = ($3 == "sda") ? "sdb" : $3
        printf "%s %s seq %s %s %.2f\n", dev, $4, $5, mode, $6 * 1000 / $7
      }' "$out/linux-$mode-$r.log" >> "$out/linux.txt"
  done
done

# 3. The table.
{
  echo "| device | reads | qd | mode | Busmaster MB/s | x direct | Linux MB/s | Linux x direct | Busmaster / Linux |"
  echo "|---|---|---:|---|---:|---:|---:|---:|---:|"
  for dev in nvme0n1 sdb; do for x in 131072:seq:1 131072:seq:8 4096:seq:1 4096:rand:1; do
    IFS=: read -r bs pat qd <<< "$x"
    for mode in direct swiotlb strict lazy; do
      # The median of the runs (the lower middle one for an even count).
      all() { awk -v d=$dev -v b=$bs -v p=$pat -v q=$qd -v m=$2 '$1==d && $2==b && $3==p && $4==q && $5==m && $6+0 > 0 {print $6}' "$1" | sort -g; }
      get() { all "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR) print v[int((NR + 1) / 2)] }'; }
      spread() { all "$1" "$2" | awk '{ v[NR] = $1 } END { if (NR > 1) printf " (%s-%s)", v[1], v[NR] }'; }
      ours=$(get "$out/busmaster.txt" $mode); base=$(get "$out/busmaster.txt" direct)
      lin=$(get "$out/linux.txt" $mode); lbase=$(get "$out/linux.txt" direct)
      ratio() { awk -v a="${1:-}" -v b="${2:-}" 'BEGIN { if (a+0 > 0 && b+0 > 0) printf "%.2f", a / b; else print "-" }'; }
      label="$((bs / 1024)) KiB $([ $pat = seq ] && echo sequential || echo random)"
      echo "| $dev | $label | $qd | $mode | ${ours:--}$(spread "$out/busmaster.txt" $mode) | $(ratio "$ours" "$base") | ${lin:--}$(spread "$out/linux.txt" $mode) | $(ratio "$lin" "$lbase") | $(ratio "$ours" "$lin") |"
    done
  done; done
} > "$out/table.md"
echo "# $(date -u '+%Y-%m-%d %H:%M UTC'), median of ${REPEAT:-3} run(s) (lowest-highest), on $(nproc) CPU(s): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
cat "$out/table.md"
