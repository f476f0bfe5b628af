//! The in-QEMU test tier: boots test kernels per profile, reads the serial
//! protocol (kernel/src/ktest/mod.rs), recovers from crashes and hangs by
//! booting again past the test that died, checks the harness's own deliberate
//! failures, and runs scripted shell sessions.

use std::time::Duration;

use crate::profile::{self, Firmware, Images, Launch, SerialMode};
use crate::qemu::{self, End, Limits, Session, Transcript};

/// One line of the kernel's test protocol.
#[derive(Debug, PartialEq, Eq)]
pub enum Proto<'a> {
    Begin { total: usize },
    Start(&'a str),
    Ok(&'a str),
    Fail(&'a str, &'a str),
    End,
}

pub fn parse_proto(line: &str) -> Option<Proto<'_>> {
    let rest = line
        .trim_end_matches('\r')
        .strip_prefix("BUSMASTER-TEST ")?;
    let (word, rest) = rest.split_once(' ').unwrap_or((rest, ""));
    match word {
        "begin" => {
            let total = rest
                .split_whitespace()
                .find_map(|w| w.strip_prefix("total="))
                .and_then(|v| v.parse().ok())?;
            Some(Proto::Begin { total })
        }
        "start" => Some(Proto::Start(rest.trim())),
        "ok" => Some(Proto::Ok(rest.split_whitespace().next()?)),
        "fail" => {
            let (name, reason) = rest.split_once(": ").unwrap_or((rest, "no reason given"));
            Some(Proto::Fail(name.trim(), reason.trim()))
        }
        "end" => Some(Proto::End),
        _ => None,
    }
}

#[derive(Debug, Clone)]
pub struct Record {
    pub name: String,
    pub ok: bool,
    pub reason: String,
    /// The crash report or last lines of output, for failures.
    pub context: String,
}

/// Counts and prints results as they come.
#[derive(Default)]
pub struct Tally {
    pub passed: usize,
    pub failed: usize,
    pub failures: Vec<String>,
}

impl Tally {
    pub fn record(&mut self, name: &str, ok: bool, detail: &str) {
        if ok {
            self.passed += 1;
            println!("test {name} ... ok");
        } else {
            self.failed += 1;
            println!("test {name} ... FAILED");
            for line in detail.lines() {
                println!("    {line}");
            }
            self.failures.push(name.to_string());
        }
    }
}

/// What QEMU's edu prints when a DMA address does not fit its mask (it then
/// silently uses the clamped address: hw-facts §5.3).
pub const CLAMP_TEXT: &str = "EDU: clamping DMA";
/// The record a boot that showed [`CLAMP_TEXT`] gets.
pub const CLAMP_GUARD: &str = "dma::edu_clamping_guard";

pub fn clamp_line(text: &str) -> Option<&str> {
    text.lines().find(|l| l.contains(CLAMP_TEXT))
}

/// Lines of the kernel's panic and exception reports (kernel/src/arch/idt.rs).
const REPORT_PREFIXES: [&str; 6] = ["!!!", "RIP=", "RAX=", "RSI=", "R9 =", "R13="];

pub fn crash_context(text: &str) -> String {
    let report: Vec<&str> = text
        .lines()
        .filter(|l| REPORT_PREFIXES.iter().any(|p| l.starts_with(p)))
        .collect();
    if !report.is_empty() {
        return report.join("\n");
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(12)..].join("\n")
}

pub struct SuiteRun {
    pub records: Vec<Record>,
    pub boots: usize,
    /// Total time spent in QEMU.
    pub elapsed: Duration,
}

/// Runs the kernel's tests for `launch.profile`, booting again past any test
/// that crashed or hung. `only` names one (manual) test.
pub fn run_suite(images: &Images, base: &Launch, only: Option<&str>, limits: &Limits) -> SuiteRun {
    let mut records = Vec::new();
    let mut skip = 0usize;
    let mut boots = 0usize;
    let mut elapsed = Duration::ZERO;
    loop {
        let mut launch = base.clone();
        launch.cmdline = format!("mode=test profile={} skip={skip}", base.profile.name);
        if let Some(name) = only {
            launch.cmdline.push_str(&format!(" only={name}"));
        }
        launch.no_reboot = true;
        boots += 1;
        let t = match Session::spawn(&launch, images) {
            Ok(s) => qemu::drive(s, limits, false),
            Err(e) => {
                records.push(Record {
                    name: "boot".into(),
                    ok: false,
                    reason: e,
                    context: String::new(),
                });
                break;
            }
        };
        elapsed += t.elapsed;
        if let Some(line) = clamp_line(&t.text) {
            records.push(Record {
                name: CLAMP_GUARD.into(),
                ok: false,
                reason: "QEMU clamped an edu DMA address: a device was given a bus address outside its 28-bit mask".into(),
                context: line.to_string(),
            });
        }
        let (mut total, mut begun, mut ended) = (0usize, false, false);
        let mut started = 0usize;
        let mut current: Option<String> = None;
        for line in t.text.lines() {
            match parse_proto(line) {
                Some(Proto::Begin { total: n }) => {
                    begun = true;
                    total = n;
                }
                Some(Proto::Start(name)) => {
                    started += 1;
                    current = Some(name.to_string());
                }
                Some(Proto::Ok(name)) => {
                    current = None;
                    records.push(Record {
                        name: name.into(),
                        ok: true,
                        reason: String::new(),
                        context: String::new(),
                    });
                }
                Some(Proto::Fail(name, reason)) => {
                    current = None;
                    let crashed = matches!(t.end, End::Exited(37));
                    records.push(Record {
                        name: name.into(),
                        ok: false,
                        reason: reason.into(),
                        context: if crashed {
                            crash_context(&t.text)
                        } else {
                            String::new()
                        },
                    });
                }
                Some(Proto::End) => ended = true,
                None => {}
            }
        }
        if !begun {
            records.push(Record {
                name: "boot".into(),
                ok: false,
                reason: format!(
                    "the test kernel never started its tests: {}",
                    t.end.describe()
                ),
                context: crash_context(&t.text),
            });
            break;
        }
        if ended {
            break;
        }
        // The boot died inside a test: blame it, then boot again past it.
        if let Some(name) = current {
            records.push(Record {
                name,
                ok: false,
                reason: format!("no verdict: {}", t.end.describe()),
                context: crash_context(&t.text),
            });
        }
        if started == 0 {
            records.push(Record {
                name: "boot".into(),
                ok: false,
                reason: format!("no progress: {}", t.end.describe()),
                context: crash_context(&t.text),
            });
            break;
        }
        skip += started;
        if skip >= total {
            break;
        }
    }
    SuiteRun {
        records,
        boots,
        elapsed,
    }
}

/// What a harness self-test must observe.
pub enum Expect {
    /// The kernel reported the test failed with all of these in the reason,
    /// and the whole output holds all of `output`.
    Reported {
        reason: &'static [&'static str],
        output: &'static [&'static str],
    },
    /// The runner had to time the test out.
    TimedOut,
    /// QEMU ended with no verdict and no report: a reset (triple fault).
    Reset,
    /// The runner's edu clamping guard fired.
    ClampGuard,
}

pub struct Meta {
    pub test: &'static str,
    pub expect: Expect,
}

/// The harness's deliberate failures (kernel/src/ktest/harness.rs).
pub const META_TESTS: &[Meta] = &[
    Meta {
        test: "harness::deliberate_page_fault",
        expect: Expect::Reported {
            reason: &["CPU exception vector 14"],
            output: &[
                "CPU EXCEPTION #PF (page fault)",
                "CR2=0x00000deadbeef000: page not present, read, kernel mode",
                "RAX=",
                "R15=",
            ],
        },
    },
    Meta {
        test: "harness::deliberate_panic",
        expect: Expect::Reported {
            reason: &[
                "panicked at kernel/src/ktest/harness.rs:",
                "deliberate panic for the harness self-test",
            ],
            output: &["KERNEL PANIC at kernel/src/ktest/harness.rs:"],
        },
    },
    Meta {
        test: "harness::deliberate_hang",
        expect: Expect::TimedOut,
    },
    Meta {
        test: "harness::deliberate_triple_fault",
        expect: Expect::Reset,
    },
    Meta {
        test: "harness::deliberate_edu_clamp",
        expect: Expect::ClampGuard,
    },
    Meta {
        test: "harness::deliberate_stack_overflow",
        expect: Expect::Reported {
            // The #PF on the guard page cannot push its frame, so the CPU
            // raises #DF, which runs on its own IST stack and reports.
            reason: &["CPU exception vector 8"],
            output: &["CPU EXCEPTION #DF (double fault)"],
        },
    },
];

/// Checks one harness self-test; returns the failure detail, if any.
pub fn check_meta(meta: &Meta, images: &Images, base: &Launch) -> Result<(), String> {
    let limits = Limits {
        // A hang is declared 4 s after the test starts; the boot before it may
        // be slow on a loaded host.
        idle: if matches!(meta.expect, Expect::TimedOut) {
            Duration::from_secs(4)
        } else {
            qemu::EVENT
        },
        idle_after: Some("BUSMASTER-TEST start "),
        overall: qemu::SESSION,
    };
    let run = run_suite(images, base, Some(meta.test), &limits);
    if let Expect::ClampGuard = meta.expect {
        return match run.records.iter().find(|r| r.name == CLAMP_GUARD) {
            Some(r) if !r.ok && r.context.contains(CLAMP_TEXT) => Ok(()),
            _ => Err(format!(
                "the clamping guard did not fire: {:?}",
                run.records
            )),
        };
    }
    let rec = run
        .records
        .iter()
        .find(|r| r.name == meta.test)
        .ok_or_else(|| format!("no record for {}: {:?}", meta.test, run.records))?;
    if rec.ok {
        return Err("the deliberate failure passed: the harness did not see it".into());
    }
    match &meta.expect {
        Expect::Reported { reason, output } => {
            for want in reason.iter() {
                if !rec.reason.contains(want) {
                    return Err(format!("reason {:?} lacks {want:?}", rec.reason));
                }
            }
            for want in output.iter() {
                if !rec.context.contains(want) {
                    return Err(format!("crash report lacks {want:?}:\n{}", rec.context));
                }
            }
            Ok(())
        }
        Expect::TimedOut => {
            if rec.reason.contains("timed out") {
                Ok(())
            } else {
                Err(format!("expected a timeout, got: {}", rec.reason))
            }
        }
        Expect::ClampGuard => unreachable!("handled above"),
        Expect::Reset => {
            if rec.reason.contains("no verdict: QEMU exited with status 0") {
                Ok(())
            } else {
                Err(format!(
                    "expected a reset with no verdict, got: {}",
                    rec.reason
                ))
            }
        }
    }
}

/// A scripted shell session and what its transcript must show.
pub struct ShellCase {
    pub name: &'static str,
    pub profile: &'static str,
    /// Boot options (fw_cfg command line).
    pub cmdline: &'static str,
    pub input: &'static [u8],
    /// The session must end this way.
    pub end: End,
    pub contains: &'static [&'static str],
    /// (line prefix, exact number of lines starting with it)
    pub line_counts: &'static [(&'static str, usize)],
    /// A further check of the transcript against an independent source.
    pub verify: Option<Verify>,
}

/// `dmesg` printed the boot log a second time, from the ring buffer.
fn verify_dmesg_replay(text: &str) -> Result<(), String> {
    match text.matches("memory map:").count() {
        n if n >= 2 => Ok(()),
        n => Err(format!(
            "'memory map:' appears {n} time(s); dmesg did not replay the boot log"
        )),
    }
}

/// A check of a transcript against an independent source.
pub type Verify = fn(&str) -> Result<(), String>;

/// In `attack-external`, only the function below the external-facing root
/// port is untrusted: the port itself is not (Linux marks what is below it).
fn verify_only_below_the_external_port(text: &str) -> Result<(), String> {
    let marked: Vec<&str> = text
        .lines()
        .filter(|l| l.contains(": untrusted: below external-facing port"))
        .collect();
    match marked.as_slice() {
        [one] if one.contains("pci 0000:01:00.0: ") => Ok(()),
        _ => Err(format!(
            "expected only 0000:01:00.0 marked untrusted, got {marked:?}"
        )),
    }
}

/// The bytes of the kernel's `offset: hex bytes |ascii|` dump lines in a transcript.
fn hexdump_bytes(text: &str) -> Result<Vec<u8>, String> {
    let mut got = Vec::new();
    for line in text.lines() {
        let Some((addr, rest)) = line.split_once(": ") else {
            continue;
        };
        if addr.len() != 8 || u64::from_str_radix(addr, 16).is_err() {
            continue;
        }
        let hex = rest.split('|').next().unwrap_or("");
        for b in hex.split_whitespace() {
            got.push(u8::from_str_radix(b, 16).map_err(|_| format!("bad byte {b:?} in {line:?}"))?);
        }
    }
    Ok(got)
}

fn compare_dump(got: &[u8], want: &[u8]) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        let at = got
            .iter()
            .zip(want)
            .position(|(a, b)| a != b)
            .unwrap_or(got.len().min(want.len()));
        Err(format!(
            "dump ({} bytes) differs from the image ({} bytes) at byte {at}",
            got.len(),
            want.len()
        ))
    }
}

/// The kernel's hexdump of `floppy read 0 2` must equal the image file's first
/// two sectors byte for byte.
fn verify_floppy_dump(text: &str) -> Result<(), String> {
    let got = hexdump_bytes(text)?;
    let want: Vec<u8> = (0..2).flat_map(crate::profile::floppy_sector).collect();
    compare_dump(&got, &want)
}

/// `blk read sda 0` (the AHCI driver reading the boot disk on port 0 by DMA) must
/// equal the first sector of the BIOS image file the runner attached.
fn verify_boot_sector(text: &str) -> Result<(), String> {
    let got = hexdump_bytes(text)?;
    let image =
        std::fs::read(env!("BIOS_PATH")).map_err(|e| format!("{}: {e}", env!("BIOS_PATH")))?;
    let want = image.get(..512).ok_or("image shorter than a sector")?;
    compare_dump(&got, want)
}

/// `blk read nvme0n1 0 2` (PRP1 and PRP2) and `blk read nvme0n1 100 64` (32 KiB: PRP1
/// and a PRP list), the NVMe driver reading namespace 1 by DMA through the IOMMU, must
/// equal those sectors of the image file the runner wrote.
fn verify_nvme_dump(text: &str) -> Result<(), String> {
    let got = hexdump_bytes(text)?;
    let want: Vec<u8> = (0..2)
        .chain(100..164)
        .flat_map(crate::profile::nvme_sector)
        .collect();
    compare_dump(&got, &want)
}

/// The storage cases' reads (`blk read sdb 0 2`, `sdb 65472 64` (the last 32 KiB),
/// `nvme0n1 0 2`, `nvme0n1 30000 64`) against the images the runner wrote, byte for
/// byte, and every `blkbench` table in the transcript for structure.
fn verify_storage(text: &str) -> Result<(), String> {
    use crate::profile::StorageDisk;
    let got = hexdump_bytes(text)?;
    let want: Vec<u8> = (0..2)
        .chain(65472..65536)
        .map(|l| StorageDisk::Ahci.sector(l))
        .chain(
            (0..2)
                .chain(30000..30064)
                .map(|l| StorageDisk::Nvme.sector(l)),
        )
        .flatten()
        .collect();
    compare_dump(&got, &want)?;
    check_blkbench_tables(text)
}

/// Every `blkbench` table: a row per mode (direct, swiotlb, strict, lazy), in that
/// order, each either "n/a (why)" or numbers that parse, with bytes moved = count x
/// block size and the data the same as direct's; as many tables as blkbench runs
/// that should have printed one. Speeds are not judged.
fn check_blkbench_tables(text: &str) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut tables = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("blkbench ") else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(": ") else {
            continue;
        };
        // "<count> x <bs> bytes, ..."
        let mut w = rest.split_whitespace();
        let (Some(count), Some("x"), Some(bs)) = (w.next(), w.next(), w.next()) else {
            continue;
        };
        let (count, bs): (u64, u64) = match (count.parse(), bs.parse()) {
            (Ok(c), Ok(b)) => (c, b),
            _ => return Err(format!("blkbench header does not parse: {l:?}")),
        };
        tables += 1;
        check_blkbench_turns(l, &lines[i + 1..])?;
        // The table's rows, past the column header; the log lines the rebinds
        // print in between ("[  time] ...") are not rows.
        let rows: Vec<&str> = lines[i + 1..]
            .iter()
            .filter(|r| !r.starts_with('['))
            .skip(1)
            .take(4)
            .copied()
            .collect();
        if rows.len() < 4 {
            return Err("blkbench table cut short".into());
        }
        for (row, mode) in rows.iter().zip(["direct", "swiotlb", "strict", "lazy"]) {
            let cols: Vec<&str> = row.split_whitespace().collect();
            if cols.first() != Some(&mode) {
                return Err(format!("blkbench row for {mode} missing: {row:?}"));
            }
            if cols.get(1) == Some(&"n/a") {
                if !row.contains("n/a (") {
                    return Err(format!("n/a without a reason: {row:?}"));
                }
                continue;
            }
            let nums: Vec<f64> = cols
                .get(1..7)
                .ok_or_else(|| format!("blkbench row too short: {row:?}"))?
                .iter()
                .map(|c| c.parse::<f64>())
                .collect::<Result<_, _>>()
                .map_err(|_| format!("blkbench row does not parse: {row:?}"))?;
            if nums[4] as u64 != count * bs {
                return Err(format!(
                    "blkbench row moved {} bytes, expected {}: {row:?}",
                    nums[4],
                    count * bs
                ));
            }
            if nums[0] <= 0.0 || nums[1] <= 0.0 || nums[2] <= 0.0 || nums[3] < nums[2] {
                return Err(format!("blkbench row has impossible figures: {row:?}"));
            }
            if !row.contains("  same as direct (") {
                return Err(format!("blkbench read other data than direct: {row:?}"));
            }
        }
    }
    // The commands typed that must print a table (not the error cases).
    let asked = lines
        .iter()
        .filter_map(|l| l.split_once("> blkbench "))
        .filter(|(_, a)| {
            !["--qd 1024", "nosuch", "--bs 1000", "--count 0", "--bogus"]
                .iter()
                .any(|bad| a.contains(bad))
        })
        .count();
    if tables != asked {
        return Err(format!("{tables} blkbench table(s) for {asked} command(s)"));
    }
    // Each table is followed by where a request's time goes, a line per mode
    // that ran, each splitting the request into the DMA API's part and the
    // device's (figures not judged).
    let splits = lines
        .iter()
        .filter(|l| l.starts_with("where a request's time goes"))
        .count();
    let split_rows = lines
        .iter()
        .filter(|l| l.contains(" us = DMA API ") && l.contains(" + device side "))
        .count();
    if splits != tables || split_rows < tables {
        return Err(format!(
            "{splits} time split(s) with {split_rows} row(s) for {tables} blkbench table(s)"
        ));
    }
    Ok(())
}

/// The blkbench tables (checked as [`check_blkbench_tables`] does) of the same reads
/// at qd 1 and at qd 8 read the same bytes: per workload (count, size, order), the
/// direct row's checksum (blkbench's order-independent sum of what it read, which
/// every other row matches) is the same at both depths.
fn verify_ncq_bench(text: &str) -> Result<(), String> {
    check_blkbench_tables(text)?;
    let lines: Vec<&str> = text.lines().collect();
    // workload -> [(qd, checksum)]
    let mut seen: std::collections::BTreeMap<&str, Vec<(&str, &str)>> = Default::default();
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix("blkbench ") else {
            continue;
        };
        let Some((_, rest)) = rest.split_once(": ") else {
            continue;
        };
        let Some((workload, rest)) = rest.split_once(", qd ") else {
            continue;
        };
        let qd = rest.split_whitespace().next().unwrap_or("");
        let sum = lines[i + 1..]
            .iter()
            .find(|r| r.starts_with("direct "))
            .and_then(|r| r.split_once("same as direct ("))
            .and_then(|(_, s)| s.split_once(')'))
            .map(|(s, _)| s)
            .ok_or_else(|| format!("no direct checksum after {l:?}"))?;
        seen.entry(workload).or_default().push((qd, sum));
    }
    if seen.is_empty() {
        return Err("no blkbench table".into());
    }
    for (w, runs) in &seen {
        if !runs.iter().any(|r| r.0 == "1") || !runs.iter().any(|r| r.0 == "8") {
            return Err(format!("{w}: not run at both qd 1 and qd 8: {runs:?}"));
        }
        if runs.iter().any(|r| r.1 != runs[0].1) {
            return Err(format!("{w}: qd 1 and qd 8 read different data: {runs:?}"));
        }
    }
    Ok(())
}

/// The modes took turns: the controller's re-binds between a blkbench header and
/// its table (the AHCI driver's probe line names the DMA device, "... [blkbench
/// strict]: AHCI ...") follow direct, swiotlb, strict, lazy (those available) round
/// after round, as many rounds as the header says. Headers without such lines
/// (the NVMe probe line names the disk, not the device) are not judged here.
fn check_blkbench_turns(header: &str, after: &[&str]) -> Result<(), String> {
    let rounds: usize = header
        .split_once("taking turns ")
        .and_then(|(_, r)| r.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("blkbench header names no rounds: {header:?}"))?;
    let turns: Vec<&str> = after
        .iter()
        .take_while(|l| !l.starts_with("mode "))
        .filter_map(|l| l.split_once(" [blkbench ")?.1.split_once(']'))
        // The probe line only ("...]: AHCI 1.0 ..."): the DMA layer's own
        // warnings name the device too.
        .filter(|(_, rest)| rest.starts_with(": AHCI "))
        .map(|(mode, _)| mode)
        .collect();
    if turns.is_empty() {
        return Ok(());
    }
    let order = ["direct", "swiotlb", "strict", "lazy"];
    let modes: Vec<&str> = order
        .iter()
        .copied()
        .filter(|m| turns.contains(m))
        .collect();
    let want: Vec<&str> = (0..rounds).flat_map(|_| modes.iter().copied()).collect();
    if turns != want {
        return Err(format!(
            "blkbench modes did not take {rounds} turns in order: {turns:?}"
        ));
    }
    Ok(())
}

pub const SHELL_CASES: &[ShellCase] = &[
    ShellCase {
        name: "help_meminfo_bogus_poweroff",
        profile: "default",
        cmdline: "",
        input: b"help\nmeminfo\nbogus\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "Commands:",
            "  meminfo",
            "  poweroff",
            "MemTotal:",
            "KernelHeap:",
            "error: bogus: unknown command ('help' lists the commands)",
        ],
        line_counts: &[("error:", 1)],
        verify: None,
    },
    ShellCase {
        name: "bad_arguments_get_usage_errors",
        profile: "default",
        cmdline: "",
        input: b"uptime now\nhelp nosuchcmd\nhelp uptime\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "error: uptime: takes no arguments",
            "usage: uptime   (examples: 'help uptime')",
            "error: help: no command 'nosuchcmd'",
            "time since boot",
        ],
        line_counts: &[("error:", 2)],
        verify: None,
    },
    ShellCase {
        name: "backspace_and_crlf_editing",
        profile: "default",
        cmdline: "",
        input: b"upx\x7ftime\r\nmeminfp\x08o\r\npoweroff\r\n",
        end: End::Exited(0),
        contains: &[" s (TSC ", "MemTotal:"],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        name: "tab_completion_history_and_help_examples",
        profile: "default",
        cmdline: "",
        // Tab completes a unique command; `i` is ambiguous, so Tab lists
        // the candidates and draws the line again (more i-commands may come,
        // but iommu, ioremap, irq, isadma stay neighbours); Up recalls the
        // previous line; Left moves into a word to insert a missing letter;
        // Ctrl-C drops a line; a typo gets a suggestion.
        input: b"mem\t\nhelp ed\t\nupt\t\n\x1b[A\nuptme\x1b[D\x1b[Di\ni\trq\nxyz\x03memnifo\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "busmaster> meminfo \r\nMemTotal:",
            "edu - QEMU's edu PCI device",
            "usage: edu info | dma <to|from> <len> [--high | --unmapped]",
            "examples:\r\n  edu info\r\n  edu dma to 4000",
            "iommu  ioremap  irq  isadma\r\nbusmaster> irq\r\n",
            "LAPIC timer:",
            "xyz^C",
            "error: memnifo: unknown command; did you mean 'meminfo'?",
        ],
        // uptime three times: completed, recalled with Up, edited with Left.
        line_counts: &[("error:", 1), ("up ", 3), ("MemTotal:", 1)],
        verify: None,
    },
    ShellCase {
        name: "dmesg_replays_the_boot_log",
        profile: "default",
        cmdline: "",
        input: b"dmesg\npoweroff\n",
        end: End::Exited(0),
        contains: &["memory map:", "command line:"],
        // once while booting, once from the ring buffer
        line_counts: &[],
        verify: Some(verify_dmesg_replay),
    },
    ShellCase {
        name: "input_closed_without_poweroff_ends_qemu",
        profile: "default",
        cmdline: "",
        input: b"uptime\n",
        end: End::InputDone,
        contains: &[" s (TSC "],
        line_counts: &[],
        verify: None,
    },
    ShellCase {
        name: "reboot_resets_the_machine",
        profile: "default",
        cmdline: "",
        input: b"reboot\n",
        // with -no-reboot a reset ends QEMU with status 0
        end: End::Exited(0),
        contains: &["power: reset"],
        line_counts: &[],
        verify: None,
    },
    ShellCase {
        name: "platform_views_lspci_dmar_acpi_irq",
        profile: "default",
        cmdline: "",
        input: b"lspci -v\ndmar\nacpi\nirq\nlspci -t\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "00:03.0 Unclassified device: Technical Corp. QEMU edu educational device [1234:11e8]",
            "Memory at fea00000 (32-bit, non-prefetchable) [size=1M]",
            "Kernel driver in use: edu",
            "MSI: Enable+ vector",
            "DMAR: host address width 39 bits",
            "[0] DRHD register base 0xfed90000",
            "scope: PCI endpoint 00:03.0",
            "DMAR  0x",
            "(6 tables)",
            "LAPIC timer",
            "-[0000:00]",
            "via ECAM",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        name: "lspci_through_legacy_ports",
        profile: "default",
        cmdline: "pci=legacy",
        input: b"lspci\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "[1234:11e8]",
            "(7 functions via legacy I/O ports 0xCF8/0xCFC)",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        name: "dmar_without_iommu_is_a_clear_error",
        profile: "noiommu",
        cmdline: "",
        input: b"dmar\nlspci -q\nioremap 0x1000 0\nioremap 0xfee00000 4G\nfloppy read 0\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "error: dmar: the firmware has no DMAR table",
            "error: lspci: wrong arguments",
            "usage: lspci [-v|-t|-m]",
            "error: ioremap: empty",
            "more than this command maps (16 MiB)",
            "error: floppy: no floppy drive",
        ],
        line_counts: &[("error:", 5)],
        verify: None,
    },
    ShellCase {
        name: "zones_on_bigmem_buddyinfo_zoneinfo",
        profile: "bigmem",
        cmdline: "",
        input: b"buddyinfo\nzoneinfo\nmeminfo\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "Node 0, zone      DMA",
            "Node 0, zone    DMA32",
            "Node 0, zone   Normal",
            // Normal starts above 4 GiB (after the allocator metadata) and ends at 8 GiB.
            "range    [0x0001",
            "-0x000200000000)",
            "Zone Normal",
            "MemFree:",
        ],
        line_counts: &[("error:", 0), ("Node 0, zone", 6)],
        verify: None,
    },
    ShellCase {
        name: "ioremap_and_edu_info",
        profile: "default",
        cmdline: "",
        input:
            b"ioremap 0xfed90000 0x1000\nioremap 0xfed90000 64 wc\nedu info\nedu bogus\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "uncached, PAT index 3",
            "first dword: 0x00000010",
            "write-combining, PAT index 4",
            "unmapped; translation now None",
            "version 1.0",
            "(alive)",
            "error: edu: unknown subcommand 'bogus'",
            "usage: edu info | dma <to|from> <len>",
        ],
        line_counts: &[("error:", 1)],
        verify: None,
    },
    ShellCase {
        name: "floppy_read_over_isa_dma_matches_image",
        profile: "floppy",
        cmdline: "",
        input: b"isadma\nfloppy read 0 2\nfloppy read 2880\nfloppy read x\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            " 2: floppy",
            " 4: cascade",
            "DMA'd by the 8237 to 0x",
            "error: floppy: sectors 2880..2881 are beyond the disk",
        ],
        line_counts: &[("error:", 2)],
        verify: Some(verify_floppy_dump),
    },
    ShellCase {
        name: "edu_dma_bounced_and_direct_dma_view_dmabench",
        profile: "noiommu",
        cmdline: "",
        input:
            b"edu dma to 4000 --high\nedu dma from 4000\nedu dma to 4096\ndma\ndmabench\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "(above edu's 28-bit reach)",
            "via swiotlb bounce buffer",
            "via direct (bus address = physical address)",
            "verified: 4000 bytes match",
            "error: edu: length '4096' must be 1..=4095",
            "dma_mask 0xfffffff",
            "swiotlb: [0x",
            "dma-debug: no errors",
            "bounce map+unmap (to device)",
        ],
        line_counts: &[("error:", 1), ("  verified: 4000 bytes match", 2)],
        verify: None,
    },
    ShellCase {
        // The issue's acceptance session, on the plain default machine.
        name: "iommu_translation_blocked_dma_and_faults",
        profile: "default",
        cmdline: "",
        input: b"iommu\nedu dma to 4000\nedu dma from 64 --unmapped\niommu faults\niommu domains\niommu translate 00:03.0 0x1000\niommu translate zz 1\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "translation ENABLED",
            "queued invalidation yes",
            "via IOMMU (bus address is an IOVA)",
            "verified: 4000 bytes match",
            "blocked by the IOMMU: 1 fault(s)",
            "DMAR fault: 00:03.0 write at 0x",
            "memory behind the old mapping: unchanged",
            "1 fault(s) recorded since boot",
            "0000:00:03.0: domain 1 (translated)",
            "(blocked: no driver, nothing mapped, every DMA faults; bus mastering off)",
            "error: iommu: bad device address 'zz'",
        ],
        line_counts: &[("error:", 2)],
        verify: None,
    },
    ShellCase {
        // Issue #15's attack bench, every cell of this mode's column checked.
        name: "attack_matrix_strict",
        profile: "attack",
        cmdline: "",
        input: b"attack matrix\nattack bogus\nattack kernel-write --device 00:09.0\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "kernel-write  blocked",
            "sub-page      ALLOWED",
            "stale-iotlb   blocked",
            "msi-inject    ALLOWED",
            "ats           n/a",
            "got: no stale write succeeded",
            "DMAR fault: 00:03.0 write at 0x",
            "error: attack: unknown attack 'bogus'",
            "error: attack: no edu bound at 0000:00:09.0",
            // Interrupt remapping is on (the default with VT-d): the three
            // forged messages and what QEMU 7.2 makes of each.
            "interrupt remapping on (intremap=on): device MSIs name IRTEs",
            "a unit that follows the spec blocks it, fault 0x25; QEMU 7.2 does not implement CFI)",
            "source-id check: requester 00:00.0 only)",
            "QEMU 7.2 checks it only for real MSIs, not for a device's DMA writes)",
            "got: 0 interrupt(s) on any vector but the IO-APIC lines' and edu's own (blocked: the entry is not present",
        ],
        line_counts: &[("error:", 2)],
        verify: None,
    },
    ShellCase {
        // Issue #15: the strict column again with interrupt remapping off:
        // the injected vector is named by the message itself.
        name: "attack_matrix_strict_without_interrupt_remapping",
        profile: "attack",
        cmdline: "intremap=off",
        input: b"attack msi-inject\nattack matrix\niommu ir\nirq\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu: interrupt remapping off (intremap=off); interrupts in compatibility format",
            "(no interrupt remapping: the message itself names the vector)",
            "interrupt remapping off: MSIs in compatibility format",
            "kernel-write  blocked",
            "sub-page      ALLOWED",
            "stale-iotlb   blocked",
            "msi-inject    ALLOWED",
            "ats           n/a",
            "interrupt remapping: off (intremap=off); MSIs and IO-APIC entries are in compatibility format",
            "interrupt remapping off: every interrupt message is in compatibility format",
        ],
        line_counts: &[("error:", 0), ("naming IRTE", 0), ("[remapped: IRTE", 0)],
        verify: None,
    },
    ShellCase {
        // Bad isolation options are named and the default kept, not a panic
        // or a silent change of mode.
        name: "bad_isolation_options_are_named_and_their_defaults_kept",
        profile: "attack",
        cmdline: "intremap=maybe iommu.fq_delay_ms=5 iommu.strict=0",
        input: b"iommu ir\niommu\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "warning: iommu: iommu.fq_delay_ms=5 is not 10..10000; using 100",
            "warning: iommu: unknown option intremap=maybe (on, off); taken as on",
            "interrupt remapping: on, 1 unit(s)",
            "lazy invalidation (flush queue)",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15 item 1: the interrupt remapping table as the unit reads
        // it, and which vectors come through it.
        name: "interrupt_remapping_table_and_remapped_vectors",
        profile: "default",
        cmdline: "",
        input: b"edu dma to 64\niommu ir\nirq\niommu\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu: interrupt remapping on (1 unit(s), xAPIC destinations, compatibility format blocked)",
            "interrupt remapping: on, 1 unit(s),",
            "compatibility format blocked (GSTS.CFIS=0; QEMU 7.2 delivers it anyway)",
            "IRTE  vector  dest  trigger  source-id check          used by",
            "IO-APIC 0 line, GSI 4",
            "requester 00:03.0",
            "MSI 00:03.0",
            "[remapped: IRTE",
            "interrupt remapping on: device MSIs and IO-APIC lines come through IRTEs",
            "interrupt remapping ENABLED, table 0x",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15's attack bench, every cell of this mode's column checked.
        name: "attack_matrix_lazy",
        profile: "attack",
        cmdline: "iommu.strict=0 iommu.fq_delay_ms=2000",
        input: b"attack matrix\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "kernel-write  blocked",
            "sub-page      ALLOWED",
            "stale-iotlb   ALLOWED",
            "msi-inject    ALLOWED",
            "ats           n/a",
            "stale write(s) succeeded; the window was still open",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15's attack bench, every cell of this mode's column checked.
        name: "attack_matrix_pass_through",
        profile: "attack",
        cmdline: "iommu=pt",
        input: b"attack matrix\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "kernel-write  ALLOWED",
            "sub-page      ALLOWED",
            "stale-iotlb   ALLOWED",
            "msi-inject    ALLOWED",
            "ats           n/a",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15's attack bench, every cell of this mode's column checked.
        name: "attack_matrix_iommu_off",
        profile: "attack",
        cmdline: "iommu=off",
        input: b"attack matrix\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "kernel-write  ALLOWED",
            "sub-page      ALLOWED",
            "stale-iotlb   ALLOWED",
            "msi-inject    ALLOWED",
            "ats           n/a",
            "no IOMMU translates edu's DMA",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15: the same lazy boot with edu untrusted: strict for it, its
        // sub-page buffers bounced; the mitigation's cost in dmabench.
        name: "attack_matrix_lazy_untrusted_and_its_cost",
        profile: "attack",
        cmdline: "iommu.strict=0 iommu.fq_delay_ms=2000 pci.untrusted=00:03.0,zz",
        input: b"attack matrix\ndmabench\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "pci.untrusted: 'zz' is not a bus:device.function; ignored",
            "edu: untrusted: strict invalidation, sub-page buffers bounced into zeroed pages",
            "attack matrix (mode lazy+untrusted; edu as the device)",
            "kernel-write  blocked",
            "sub-page      blocked",
            "stale-iotlb   blocked",
            "msi-inject    ALLOWED",
            "ats           n/a",
            "the device saw a bounce page, its 64 bytes then zeros",
            "iommu-strict 64 B sub-page, trusted",
            "iommu-strict 64 B sub-page, untrusted",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15: iommu=pt does not give an untrusted device pass-through.
        name: "attack_matrix_pass_through_untrusted",
        profile: "attack",
        cmdline: "iommu=pt pci.untrusted=00:03.0,00:1f.3",
        input: b"attack matrix\niommu domains\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "attack matrix (mode pt+untrusted; edu as the device)",
            "kernel-write  blocked",
            "sub-page      blocked",
            "stale-iotlb   blocked",
            "msi-inject    ALLOWED",
            // An untrusted function without a driver (the SMBus controller)
            // is blocked, not passed through, even with iommu=pt.
            "0000:00:1f.3: domain 254 (blocked: no driver, nothing mapped, every DMA faults; bus mastering off)",
            "other devices on unit 0xfed90000: domain 255 (pass-through: bus address = physical)",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #15: untrusted because the firmware says so. The profile's
        // SSDT gives root port 00:04.0 ACPI ExternalFacingPort; with no
        // pci.untrusted= the edu below it (01:00.0) is untrusted, so strict
        // mode blocks sub-page exposure with the bounce, and the port itself
        // is not marked. Port 00:05.0's _DSD is malformed: a warning, no mark.
        name: "attack_matrix_below_external_facing_port",
        profile: "attack-external",
        cmdline: "",
        input: b"attack matrix\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "aml: DSDT and 1 SSDT(s) loaded",
            "pci 0000:00:04.0: ACPI ExternalFacingPort: devices below it are untrusted",
            "pci 0000:01:00.0: untrusted: below external-facing port 0000:00:04.0",
            "pci 0000:00:05.0: not external-facing: \\_SB_.PCI0.S28_._DSD: property ExternalFacingPort is a string, not an integer",
            "edu: untrusted: strict invalidation, sub-page buffers bounced into zeroed pages",
            "attack matrix (mode strict+untrusted; edu as the device)",
            "kernel-write  blocked",
            "sub-page      blocked",
            "stale-iotlb   blocked",
            "the device saw a bounce page, its 64 bytes then zeros",
            "DMAR fault: 01:00.0 write at 0x",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_only_below_the_external_port),
    },
    ShellCase {
        // Issue #7's acceptance: channels listed, a summary per channel, 0 failures.
        name: "dmaengine_channels_and_dmatest_on_simulated_idma64",
        profile: "idma64-sim",
        cmdline: "",
        input: b"dma\ndmatest\nlspci\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "dma0: idma64 [MEMCPY|SLAVE|CYCLIC|PRIVATE]",
            "idma64 on 0000:00:15.0 (simulated)",
            "dma0chan0: free",
            "dma1: i8237 [SLAVE|PRIVATE]",
            "dma2: edu [MEMCPY|SLAVE|PRIVATE]",
            "dmatest: dma0chan0: summary 10 tests, 0 failures",
            "dmatest: dma0chan1: summary 10 tests, 0 failures",
            "dmatest: dma2chan0: summary 10 tests, 0 failures",
            "Sunrise Point-LP LPSS I2C #0 [8086:9d60] (rev 21) [simulated]",
        ],
        line_counts: &[("error:", 0), ("dmatest: ", 3)],
        verify: None,
    },
    ShellCase {
        name: "dmatest_reports_the_byte_the_model_corrupts",
        profile: "idma64-sim",
        cmdline: "",
        input: b"dmatest dma0chan1 3 4096 --corrupt\ndmatest dma2chan0 1 64 --corrupt\ndmatest dma7chan0\ndmatest dma0chan0 0\ndmatest xyz\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "not copied! Expected",
            "dmatest: dma0chan1-copy0: result #1: 'data error' with src_off=",
            "dmatest: dma0chan1: summary 3 tests, 1 failures",
            "dmatest: dma2chan0: --corrupt needs the simulated iDMA64",
            "dmatest: no DMA device for dma7chan0",
            "error: dmatest: iterations must be 1..=10000",
            "error: dmatest: wrong arguments",
            "usage: dmatest [dmaNchanM|all]",
        ],
        line_counts: &[("error:", 5), ("dmatest: dma0chan1: summary", 1)],
        verify: None,
    },
    ShellCase {
        name: "dmaengine_demo_walks_the_client_steps",
        profile: "idma64-sim",
        cmdline: "",
        input: b"dmaengine demo\ndmaengine demo cyclic\ndmaengine\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "1. request: dma_request_channel(mask MEMCPY)",
            "got dma0chan0 (idma64 on 0000:00:15.0 (simulated)",
            "4. submit: cookie 1 -> status InProgress, residue 8192 (queued, not running)",
            "6. callback: ran in interrupt context for cookie 1; tx_status Complete, residue 0",
            "verify: 8192 bytes match",
            "3. prep: dmaengine_prep_dma_cyclic(8192 bytes, period 2048)",
            "terminate_all: the ring stops",
            "7. release: dma0chan0 is free again",
            "error: dmaengine: wrong arguments",
            "usage: dmaengine demo [cyclic]",
        ],
        line_counts: &[("error:", 1)],
        verify: None,
    },
    ShellCase {
        name: "floppy_is_a_dmaengine_client_and_dmatest_reads_the_image",
        profile: "floppy",
        cmdline: "",
        input: b"dmatest dma0chan2 20\ndma\nisadma\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "dmatest: dma0chan2: summary 20 tests, 0 failures",
            "dma0chan2: in use by floppy",
            " 2: floppy",
            " 4: cascade",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Real firmware: a laptop's DMAR whose units this machine lacks.
        name: "laptop_dmar_units_missing_give_up_cleanly",
        profile: "laptop-dmar",
        cmdline: "",
        input: b"dmar\niommu\nedu dma to 4000\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "DMAR: host address width 39, 2 DRHD, 2 RMRR",
            "iommu 0xfed90000: bring-up failed: no VT-d unit answers at this address (VER reads 0x0)",
            "[1] DRHD register base 0xfed91000 (4 KiB), segment 0, flags 0x1 INCLUDE_PCI_ALL",
            "RMRR [0xad000000-0xaf7fffff] segment 0",
            "no units in use: no DRHD unit came up",
            "unit 0xfed91000 segment 0: not in use (bring-up failed); the devices it covers get no IOMMU",
            "iommu: 0000:00:03.0: its remapping unit 0xfed91000 failed to come up; no IOMMU for it",
            "via direct (bus address = physical address)",
            "verified: 4000 bytes match",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #17 item 9: a DMAR's ACPI namespace device (type-5 scope and
        // its ANDD) is named, with its requester ID and its unit's state.
        name: "laptop_dmar_acpi_namespace_device_is_named_with_its_requester_id",
        profile: "laptop-andd",
        cmdline: "",
        input: b"dmar\niommu\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu: ACPI namespace device \\_SB.PCI0.I2C0: its unit 0xfed91000 is not in use (bring-up failed)",
            "ANDD",
            "ACPI namespace device \\_SB.PCI0.I2C0 (requester 00:15.0): its unit 0xfed91000 is not in use (bring-up failed)",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #17: an edu behind a PCIe switch. QEMU's DMAR names only the
        // root port 00:04.0 (a sub-hierarchy scope); the kernel must walk
        // every bridge above 03:00.0 to find its unit, or its DMA faults.
        name: "pcie_switch_device_is_translated_through_the_root_port_scope",
        profile: "pcie-switch",
        cmdline: "",
        input: b"iommu domains\ndmatest all 2\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu: 0000:03:00.0 in its own domain 2 (unit 0xfed90000)",
            "dmaengine: dma2: edu on 0000:03:00.0",
            "0000:03:00.0: domain 2 (translated) on unit 0xfed90000",
            "0000:03:00.0 edu: 0 live mapping(s) in domain 2",
            "dmatest: dma1chan0: summary 2 tests, 0 failures",
            "dmatest: dma2chan0: summary 2 tests, 0 failures",
            "0 fault(s) recorded since boot",
        ],
        line_counts: &[("error:", 0), ("dmatest: ", 2)],
        verify: None,
    },
    ShellCase {
        // Issue #17: two conventional edus behind a PCIe-to-PCI bridge DMA with
        // the bridge's requester ID 02:00.0: context entries for the alias,
        // and one shared domain, shown as shared (no isolation claimed).
        name: "pci_bridge_devices_share_the_bridge_alias_and_one_domain",
        profile: "pci-bridge",
        cmdline: "",
        input: b"iommu domains\ndmatest all 2\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "DMAR: 02:00.0 attached to domain 2 (Translated)",
            "iommu: 0000:02:03.0 in domain 2 (unit 0xfed90000), also as requester ID 02:00.0",
            "iommu: 0000:02:05.0 shares domain 2 with the devices behind its bridge",
            "0000:02:03.0, 0000:02:05.0: domain 2 (translated, shared: DMA arrives as requester ID 02:00.0 for all; no isolation between them) on unit 0xfed90000",
            "0000:00:03.0: domain 1 (translated) on unit 0xfed90000",
            "dmatest: dma1chan0: summary 2 tests, 0 failures",
            "dmatest: dma2chan0: summary 2 tests, 0 failures",
            "dmatest: dma3chan0: summary 2 tests, 0 failures",
            "0 fault(s) recorded since boot",
        ],
        line_counts: &[("error:", 0), ("dmatest: ", 3)],
        verify: None,
    },
    ShellCase {
        // Issue #17 item 11: INTx behind a PCIe-to-PCI bridge. QEMU's root ports
        // and bridges carry no _PRT, so each pin is swizzled ((pin - 1 + device)
        // mod 4) up to the root-bus slot, whose q35 _PRT entry gives the GSI.
        name: "pci_bridge_intx_pins_swizzle_to_the_root_port_slot",
        profile: "pci-bridge",
        cmdline: "",
        input: b"irq\npoweroff\n",
        end: End::Exited(0),
        contains: &["PCI INTx pins, routed by _PRT:", "0000:00:1f.2 INTA -> GSI 16 (level, active high)"],
        line_counts: &[("error:", 0)],
        verify: Some(verify_bridge_swizzle),
    },
    ShellCase {
        // Mappings held for `iommu domains`, `dma` and `./run.sh report`; without
        // an IOMMU the streaming one bounces and holds swiotlb slots until released.
        name: "dmademo_keep_holds_mappings_until_release",
        profile: "noiommu",
        cmdline: "",
        input: b"dmademo release\ndmademo keep 0\ndmademo keep 8192\ndmademo keep 4096\ndma\ndmademo release\ndma\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "error: dmademo: nothing held ('dmademo keep <len>' first)",
            "error: dmademo: length '0' must be 1..=1048576",
            "dmademo: holding 2 mapping(s) for 0000:00:03.0 edu until 'dmademo release':",
            "(swiotlb bounce)",
            "error: dmademo: already holding mappings ('dmademo release' first)",
            "  2 live mapping(s)",
            "[mapped as coherent]",
            "4/2048 slots in use",
            "dmademo: released 2 mapping(s) of 0000:00:03.0 edu",
            "  0 live mapping(s)",
            "0/2048 slots in use",
        ],
        line_counts: &[("error:", 3)],
        verify: None,
    },
    ShellCase {
        name: "uefi_boot_and_poweroff",
        profile: "uefi",
        cmdline: "",
        input: b"meminfo\npoweroff\n",
        end: End::Exited(0),
        contains: &["MemTotal:", "requesting ACPI S5"],
        line_counts: &[],
        verify: None,
    },
    ShellCase {
        name: "fbinfo_shows_the_vesa_framebuffer_and_keyboard",
        profile: "default",
        cmdline: "",
        input: b"fbinfo\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "framebuffer: 1280x720, stride 1280 pixels, 3 bytes/pixel, format Bgr",
            "(write-combining)",
            "console: 142x45 cells of 9x16 pixels",
            "keyboard: PS/2 through the i8042, IRQ 1 at vector 0x31",
            "serial: COM1 (0x3f8) present, receive interrupt on",
        ],
        line_counts: &[("error:", 0), ("warning:", 0)],
        verify: None,
    },
    ShellCase {
        name: "ahci_reads_the_boot_disk",
        profile: "default",
        cmdline: "",
        input: b"lsblk\nblk read sda 0\nblk read sda 99999999\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sda      0000:00:1f.2 ahci   0",
            "QEMU HARDDISK",
            "sda: 1 sector(s) of 512 bytes from LBA 0, read by 0000:00:1f.2 ahci",
            "error: blk: sda: sectors 99999999+1 beyond the end of the disk",
        ],
        line_counts: &[("error:", 1)],
        verify: Some(verify_boot_sector),
    },
    ShellCase {
        name: "nvme_reads_the_namespace_image",
        profile: "nvme",
        cmdline: "",
        input: b"lsblk\nblk read nvme0n1 0 2\nblk read nvme0n1 100 64\nblk read nvme0n1 2048\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "nvme0n1  0000:",
            "2048        1.0 MiB    QEMU NVMe Ctrl",
            "nvme0n1: 2 sector(s) of 512 bytes from LBA 0, read by 0000:",
            "nvme0n1: 64 sector(s) of 512 bytes from LBA 100, read by 0000:",
            "error: blk: nvme0n1: sectors 2048+1 beyond the end of the disk (2048 sectors)",
        ],
        line_counts: &[("error:", 1)],
        verify: Some(verify_nvme_dump),
    },
    ShellCase {
        name: "no_screen_no_keyboard_serial_still_works",
        profile: "headless",
        cmdline: "",
        input: b"fbinfo\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "screen: no framebuffer from the bootloader; serial console only",
            "keyboard: no i8042 controller (status port reads 0xff)",
            "framebuffer: none",
            "keyboard: none (no i8042)",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #17 item 10: the simulated LPSS function starts in D3hot (BAR0 reads
        // all-ones); the bus brings it to D0 and restores BAR0 before the probe.
        name: "lpss_function_left_in_d3hot_is_powered_up_before_probe",
        profile: "idma64-sim-uart",
        cmdline: "",
        input: b"dmesg\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "pci 0000:00:1e.0: D3hot -> D0 (soft reset: BARs restored)",
            "lpss 0000:00:1e.0: UART function, CAPS 0x10, iDMA64 present (simulated)",
            "pci 0000:00:1e.0: bound to intel-lpss",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // Issue #17 item 6: translation is on before any driver binds, and a
        // unit whose enabling failed (here the debug option pretends so)
        // gives no driver a domain: edu and the AHCI disk DMA direct or
        // through swiotlb, never with IOVAs the unit does not translate.
        name: "iommu_enable_failure_falls_back_to_direct_dma",
        profile: "default",
        cmdline: "iommu.fail_enable=1",
        input: b"iommu\nedu dma to 4000\nblk read sda 0\ndmatest all 2\niommu faults\niommu domains\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu 0xfed90000: enabling translation failed: iommu.fail_enable=1 (debug option)",
            "iommu: 0000:00:03.0: translation is off on unit 0xfed90000 (enabling it failed)",
            "iommu: 0000:00:1f.2: translation is off on unit 0xfed90000 (enabling it failed)",
            "  not used for drivers' DMA: enabling translation failed",
            "via direct (bus address = physical address)",
            "verified: 4000 bytes match",
            "sda: 1 sector(s) of 512 bytes from LBA 0, read by 0000:00:1f.2 ahci",
            "dmatest: dma1chan0: summary 2 tests, 0 failures",
            "0 fault(s) recorded since boot",
            "(no driver: in the blocking domain, but translation is off on this unit, so only bus mastering off stops its DMA)",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_boot_sector),
    },
    ShellCase {
        // Issue #17 item 4: a real DMAR with DMA_CTRL_PLATFORM_OPT_IN forces
        // translation over iommu=off (the units are absent here, so bring-up
        // then fails cleanly and edu DMAs direct).
        name: "platform_opt_in_forces_the_iommu_over_iommu_off",
        profile: "laptop-optin",
        cmdline: "",
        input: b"iommu\nedu dma to 4000\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "command line: 'iommu=off'",
            "iommu: the firmware opts in to DMA protection (DMAR DMA_CTRL_PLATFORM_OPT_IN): translation forced on",
            "iommu 0xfed91000: bring-up failed: no VT-d unit answers at this address (VER reads 0x0)",
            "mode Translate, strict invalidation",
            "forced on by the firmware (DMAR DMA_CTRL_PLATFORM_OPT_IN); iommu=force-off keeps it off",
            "via direct (bus address = physical address)",
            "verified: 4000 bytes match",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        name: "nvme_completions_by_msix_per_queue",
        profile: "nvme",
        cmdline: "",
        input: b"blk read nvme0n1 0 2\nblk read nvme0n1 100 64\nblk read nvme0n1 7\nlsblk\nirq\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "nvme: completions by MSI-X, vectors 0x",
            " nvme: CQ 0 (MSI-X entry 0): ",
            " nvme: CQ 1 (MSI-X entry 1): ",
            "MSI-X nvme admin",
            "MSI-X nvme I/O",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_nvme_irq_counts),
    },
    ShellCase {
        name: "ahci_completions_by_msi",
        profile: "default",
        cmdline: "",
        input: b"blk read sda 0\nblk read sda 1 8\nlsblk\nirq\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "0000:00:1f.2 ahci: completions by MSI, vector 0x",
            "MSI ahci",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_ahci_irq_counts),
    },
    ShellCase {
        // No MSI: the HBA's INTA, routed by the DSDT's _PRT (q35: slot 0x1f INTA ->
        // link GSIA -> GSI 16, level, active high), shared-line handler chain.
        name: "ahci_completions_by_intx_routed_from_prt",
        profile: "default",
        cmdline: "ahci.intx=1",
        input: b"blk read sda 0\nblk read sda 1 8\nlsblk\nirq\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "0000:00:1f.2 ahci: completions by INTx on GSI 16 (from _PRT), vector 0x40",
            "INTx (IO-APIC, shared)",
            "55 aa",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_ahci_intx_counts),
    },
    ShellCase {
        name: "ahci_and_nvme_poll_options_keep_polling",
        profile: "nvme",
        cmdline: "ahci.poll=1 nvme.poll=1",
        input: b"blk read sda 0\nblk read nvme0n1 0 2\nlsblk\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "0000:00:1f.2 ahci: completions polled (ahci.poll=1): ",
            " nvme: completions polled (nvme.poll=1)",
            " nvme: CQ 1: 0 interrupts, 0 commands by interrupt, 1 polled",
            "sda: 1 sector(s) of 512 bytes from LBA 0, read by 0000:00:1f.2 ahci",
            "nvme0n1: 2 sector(s) of 512 bytes from LBA 0, read by 0000:",
        ],
        line_counts: &[("error:", 0)],
        verify: None,
    },
    ShellCase {
        // ...and iommu=force-off keeps VT-d off: each unit is only quiesced
        // (here it is absent, which is said).
        name: "iommu_force_off_beats_the_platform_opt_in",
        profile: "laptop-optin",
        cmdline: "iommu=force-off",
        input: b"iommu\nedu dma to 4000\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "iommu: off (boot with iommu=on or iommu=pt to use VT-d); DMA is untranslated",
            "iommu 0xfed91000: left off (iommu=off); turning off firmware state failed: no VT-d unit answers at this address (VER reads 0x0)",
            "mode Off, strict invalidation",
            "unit 0xfed90000 segment 0: not in use (iommu=off)",
            "verified: 4000 bytes match",
        ],
        line_counts: &[("error:", 0), ("forced on", 0)],
        verify: None,
    },
    // Issue 14 item 4: the storage profile (sdb on AHCI port 1, nvme0n1) in every
    // IOMMU mode: host-written images read back byte for byte (verify_storage), a
    // write/verify round trip, and blkbench's table checked for structure only
    // (never speed); the verify after blkbench shows the original attachment restored.
    ShellCase {
        name: "storage_both_disks_iommu_on",
        profile: "storage",
        cmdline: "",
        input: b"lsblk\nblk read sdb 0 2\nblk read sdb 65472 64\nblk read nvme0n1 0 2\nblk read nvme0n1 30000 64\nblk write nvme0n1 100 8 --pattern 7\nblk write sdb 100 8 --pattern 7\nblkbench nvme0n1 --bs 16k --count 8\nblkbench sdb --bs 4k --count 8 --random\nblkbench sdb --qd 1024\nblkbench sdb --bs 1000\nblkbench sdb --count 0\nblkbench sdb --bogus\nblkbench nosuch\nblk verify nvme0n1 100 8 --pattern 7\nblk verify sdb 100 8 --pattern 7\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sdb      0000:00:1f.2 ahci   1     65536       32.0 MiB",
            "65536       32.0 MiB   QEMU NVMe Ctrl",
            "sdb: queue depth 32 (NCQ tags)",
            "nvme0n1: queue depth 32 (command IDs on one I/O queue pair)",
            "nvme0n1: verified: 8 sectors match pattern 7 from LBA 100",
            "sdb: verified: 8 sectors match pattern 7 from LBA 100",
            "restored: nvme0n1 on 0000:00:04.0 nvme in domain",
            "restored: sdb on 0000:00:1f.2 ahci in domain",
            "error: blkbench: --qd 1024: the driver ",
            "error: blkbench: bad block size '1000' (a multiple of 512 from 512 to 1m)",
            "error: blkbench: bad count '0' (1..65536)",
            "error: blkbench: unknown option '--bogus'",
            "error: blkbench: no disk called 'nosuch' (see lsblk)",
            "0 fault(s) recorded since boot",
        ],
        line_counts: &[("error:", 5), ("warning:", 0)],
        verify: Some(verify_storage),
    },
    // NCQ on the ICH9 AHCI: blkbench keeps 8 reads in flight on sdb (READ FPDMA
    // QUEUED, a tag each) in every IOMMU mode; each table's rows must agree on the
    // data (check_blkbench_tables), and the qd 8 runs must read what qd 1 read.
    ShellCase {
        name: "ahci_ncq_blkbench_qd8",
        profile: "storage",
        cmdline: "",
        input: b"lsblk\nblkbench sdb --qd 1 --count 256\nblkbench sdb --qd 8 --count 256\nblkbench sdb --qd 8 --count 256 --bs 4k --random\nblkbench sdb --qd 1 --count 256 --bs 4k --random\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "ahci: port 1: sdb \"QEMU HARDDISK\" 65536 sectors of 512 bytes, NCQ depth 32",
            "qd 8 (8 reads kept in flight through the ahci driver)",
            "0 fault(s) recorded since boot",
        ],
        line_counts: &[
            ("error:", 0),
            ("warning:", 0),
        ],
        verify: Some(verify_ncq_bench),
    },
    ShellCase {
        name: "storage_both_disks_iommu_off",
        profile: "storage",
        cmdline: "iommu=off",
        input: b"lsblk\nblk read sdb 0 2\nblk read sdb 65472 64\nblk read nvme0n1 0 2\nblk read nvme0n1 30000 64\nblk write nvme0n1 100 8 --pattern 7\nblk write sdb 100 8 --pattern 7\nblkbench nvme0n1 --bs 8k --count 4\nblk verify nvme0n1 100 8 --pattern 7\nblk verify sdb 100 8 --pattern 7\nblk stray sdb\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sdb      0000:00:1f.2 ahci   1     65536       32.0 MiB",
            "65536       32.0 MiB   QEMU NVMe Ctrl",
            "nvme0n1: verified: 8 sectors match pattern 7 from LBA 100",
            "sdb: verified: 8 sectors match pattern 7 from LBA 100",
            "strict   n/a (VT-d left off this boot (iommu=off))",
            "lazy     n/a (VT-d left off this boot (iommu=off))",
            "restored: nvme0n1 on 0000:00:04.0 nvme",
            // No translation: the stray write would reach memory, so it is refused.
            "error: blk: blk stray: sdb's controller 0000:00:1f.2 is not translated (VT-d left off this boot (iommu=off)): the stray write would reach physical memory; refused",
        ],
        line_counts: &[("error:", 1), ("warning:", 0)],
        verify: Some(verify_storage),
    },
    ShellCase {
        name: "storage_both_disks_iommu_lazy",
        profile: "storage",
        cmdline: "iommu.strict=0",
        input: b"lsblk\nblk read sdb 0 2\nblk read sdb 65472 64\nblk read nvme0n1 0 2\nblk read nvme0n1 30000 64\nblk write nvme0n1 100 8 --pattern 7\nblk write sdb 100 8 --pattern 7\nblk verify nvme0n1 100 8 --pattern 7\nblk verify sdb 100 8 --pattern 7\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sdb      0000:00:1f.2 ahci   1     65536       32.0 MiB",
            "65536       32.0 MiB   QEMU NVMe Ctrl",
            "nvme0n1: verified: 8 sectors match pattern 7 from LBA 100",
            "sdb: verified: 8 sectors match pattern 7 from LBA 100",
            "lazy (flush queue)",
            "0 fault(s) recorded since boot",
        ],
        line_counts: &[("error:", 0), ("warning:", 0)],
        verify: Some(verify_storage),
    },
    ShellCase {
        name: "storage_both_disks_iommu_pt",
        profile: "storage",
        cmdline: "iommu=pt",
        input: b"lsblk\nblk read sdb 0 2\nblk read sdb 65472 64\nblk read nvme0n1 0 2\nblk read nvme0n1 30000 64\nblk write nvme0n1 100 8 --pattern 7\nblk write sdb 100 8 --pattern 7\nblkbench sdb --bs 8k --count 4\nblk verify nvme0n1 100 8 --pattern 7\nblk verify sdb 100 8 --pattern 7\nblk stray sdb\niommu faults\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sdb      0000:00:1f.2 ahci   1     65536       32.0 MiB",
            "65536       32.0 MiB   QEMU NVMe Ctrl",
            "nvme0n1: verified: 8 sectors match pattern 7 from LBA 100",
            "sdb: verified: 8 sectors match pattern 7 from LBA 100",
            "restored: sdb on 0000:00:1f.2 ahci in domain",
            "0 fault(s) recorded since boot",
            // Pass-through: the stray write would reach memory, so it is refused.
            "error: blk: blk stray: sdb's DMA device 0000:00:1f.2 ahci does not map through an IOMMU domain; refused",
        ],
        line_counts: &[("error:", 1), ("warning:", 0)],
        verify: Some(verify_storage),
    },
    // Issue 14 item 5 in QEMU: a command the device never completes ends in a timeout
    // error, not a hang, and the next requests work. QEMU 7.2's NVMe holds an
    // Asynchronous Event Request until it has an event (`nvme_aer`: NVME_NO_COMPLETE)
    // and has none, so `blk aer` waits the driver's 5 s timeout, the controller is
    // reset, and the reads after it must still match the images byte for byte.
    ShellCase {
        name: "storage_a_command_never_completed_times_out_and_the_next_works",
        profile: "storage",
        cmdline: "",
        input: b"blk aer nvme0n1\nblk read sdb 0 2\nblk read sdb 65472 64\nblk read nvme0n1 0 2\nblk read nvme0n1 30000 64\nblk aer sdb\nlsblk\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "error: blk: nvme0n1: nvme: command 0x0c on queue 0 did not complete in 5000 ms (controller reset)",
            "nvme0n1: controller reset, queues re-created",
            "nvme0n1: 2 sector(s) of 512 bytes from LBA 0, read by 0000:",
            "nvme0n1: 64 sector(s) of 512 bytes from LBA 30000, read by 0000:",
            "'sdb' is not an NVMe namespace",
            " nvme: completions by MSI-X, vectors 0x",
        ],
        line_counts: &[("error:", 2)],
        verify: Some(verify_storage),
    },
    // Several NVMe reads in flight (the driver's start/complete): `blkbench --qd 8`
    // and `--qd 32` read the same data as `--qd 1` in every mode (direct, swiotlb,
    // strict, lazy), and each table's checksum is the one the host computes from
    // the image the runner wrote.
    ShellCase {
        name: "storage_nvme_blkbench_qd8_reads_the_image_in_every_mode",
        profile: "storage",
        cmdline: "",
        input: b"blkbench nvme0n1 --qd 1 --count 256\nblkbench nvme0n1 --qd 8 --count 256\nblkbench nvme0n1 --qd 32 --bs 4k --count 256 --random\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "qd 1 (one request at a time through the nvme driver)",
            "qd 8 (8 reads kept in flight through the nvme driver)",
            "qd 32 (32 reads kept in flight through the nvme driver)",
            "restored: nvme0n1 on 0000:00:04.0 nvme in domain",
        ],
        line_counts: &[("error:", 0), ("warning:", 0), ("strict ", 3), ("lazy ", 3)],
        verify: Some(verify_blkbench_sums_of_the_nvme_image),
    },
    ShellCase {
        name: "storage_nvme_blkbench_qd8_reads_the_image_iommu_off",
        profile: "storage",
        cmdline: "iommu=off",
        input: b"blkbench nvme0n1 --qd 8 --count 256\nblkbench nvme0n1 --qd 8 --bs 4k --count 256 --random\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "qd 8 (8 reads kept in flight through the nvme driver)",
            "strict   n/a (VT-d left off this boot (iommu=off))",
            "restored: nvme0n1 on 0000:00:04.0 nvme",
        ],
        line_counts: &[("error:", 0), ("warning:", 0), ("swiotlb ", 2)],
        verify: Some(verify_blkbench_sums_of_the_nvme_image),
    },
    // Issue 14 item 5 in QEMU: under VT-d a DMA outside the request's buffers faults
    // and is reported. `blk stray sdb` has the HBA read sector 100 into a mapped
    // page and sector 101 to an IOVA reserved in its domain and never mapped. QEMU
    // 7.2 records the fault and drops the write, and the command still ends with
    // good status (DMA writes are posted; the HBA is not told), so the fault log is
    // the witness. The disk reads normally afterwards.
    ShellCase {
        name: "storage_a_stray_disk_write_is_stopped_by_vtd_and_reported",
        profile: "storage",
        cmdline: "",
        input: b"blk stray sdb\niommu faults\nblk read sdb 100 2\nblk stray nvme0n1\nblk stray nosuch\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "sdb: READ DMA EXT of sectors 100-101: sector 100 to 0x",
            "(reserved in the domain, never mapped: a write there faults with reason 0x5 (",
            "sdb: sector 100 reached the mapped page;",
            "IOMMU fault(s) from 0000:00:1f.2 writing 0x",
            "sdb: stopped by the IOMMU: nothing was written outside the request's mapping",
            "DMAR fault: 00:1f.2 write at 0x",
            "sdb: 2 sector(s) of 512 bytes from LBA 100, read by 0000:00:1f.2 ahci",
            "0000c800: 42 55 53 4d 41 53 54 45 52 20 41 48 43 49 20 4c |BUSMASTER AHCI L|",
            // Only AHCI disks: anything else is named and refused.
            "error: blk: blk stray: 'nvme0n1' is not an AHCI disk (see lsblk)",
            "error: blk: blk stray: 'nosuch' is not an AHCI disk (see lsblk)",
        ],
        line_counts: &[("error: blk: blk stray: ", 2), ("error:", 2)],
        verify: Some(verify_stray_fault_address),
    },
    // More reads in flight than the bounce pool can hold (32 x 512 KiB against 4
    // MiB): a start that finds the pool full waits for a completion and is tried
    // again (Linux's BLK_STS_RESOURCE) instead of failing, and with the AHCI
    // driver's NCQ tags ending several at a time, a tag is not given out again
    // before its completion has been returned.
    ShellCase {
        name: "storage_blkbench_qd32_waits_for_bounce_space",
        profile: "storage",
        cmdline: "",
        input: b"blkbench sdb --bs 512k --count 24 --qd 32 --rounds 1\nblkbench nvme0n1 --bs 512k --count 24 --qd 32 --rounds 1\npoweroff\n",
        end: End::Exited(0),
        contains: &[
            "qd 32 (32 reads kept in flight through the ahci driver)",
            "qd 32 (32 reads kept in flight through the nvme driver)",
            "restored: sdb on 0000:00:1f.2 ahci in domain",
            "restored: nvme0n1 on 0000:00:04.0 nvme in domain",
        ],
        line_counts: &[("error:", 0)],
        verify: Some(verify_bounce_pool_pressure),
    },
];

/// blkbench's checksum (`request_sum` in kernel/src/shell/blk_cmds/bench/run.rs),
/// computed here from a storage profile's 32 MiB image: `count` reads of `bs` bytes,
/// sequential or at blkbench's pseudo-random slots.
fn blkbench_image_sum(disk: crate::profile::StorageDisk, count: u64, bs: u64, random: bool) -> u64 {
    use block::pattern::mix;
    let ss = 512u64;
    let per = bs / ss;
    let slots = 65536 / per;
    let mut sum = 0u64;
    for i in 0..count {
        let slot = if random {
            mix(i ^ 0x2545_f491_4f6c_dd1d) % slots
        } else {
            i % slots
        };
        let lba = slot * per;
        for s in 0..per {
            let sector = disk.sector((lba + s) as usize);
            for (k, off) in [0, ss / 2, ss - 8].into_iter().enumerate() {
                let o = off as usize;
                let w = u64::from_le_bytes(sector[o..o + 8].try_into().unwrap_or([0; 8]));
                let v = w ^ (lba + s).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                sum = sum.wrapping_add(mix(v ^ k as u64));
            }
        }
    }
    sum
}

/// Every `blkbench nvme0n1` table: its structure ([`check_blkbench_tables`]), and
/// each mode's checksum equal to the one computed from the image.
fn verify_blkbench_sums_of_the_nvme_image(text: &str) -> Result<(), String> {
    check_blkbench_tables(text)?;
    check_blkbench_sums(text, "nvme0n1", crate::profile::StorageDisk::Nvme)
}

/// Each `blkbench <dev>` table's rows with figures carry the checksum the host
/// computes from `disk`'s image, and there is a table for every such command.
fn check_blkbench_sums(
    text: &str,
    dev: &str,
    disk: crate::profile::StorageDisk,
) -> Result<(), String> {
    let lines: Vec<&str> = text.lines().collect();
    let header = format!("blkbench {dev}: ");
    let mut checked = 0;
    for (i, l) in lines.iter().enumerate() {
        let Some(rest) = l.strip_prefix(header.as_str()) else {
            continue;
        };
        let w: Vec<&str> = rest.split_whitespace().collect();
        let (Some(Ok(count)), Some(Ok(bs))) = (
            w.first().map(|c| c.parse::<u64>()),
            w.get(2).map(|b| b.parse::<u64>()),
        ) else {
            return Err(format!("blkbench header does not parse: {l:?}"));
        };
        let random = rest.contains(" random reads");
        let want = format!("({:016x})", blkbench_image_sum(disk, count, bs, random));
        // The table's four mode rows (as `check_blkbench_tables` finds them), those
        // with figures (not "n/a").
        let rows: Vec<&str> = lines[i + 1..]
            .iter()
            .filter(|r| !r.starts_with('['))
            .skip(1)
            .take(4)
            .filter(|r| r.contains(" as direct ("))
            .copied()
            .collect();
        if rows.is_empty() {
            return Err(format!("{l:?}: no mode read anything"));
        }
        for r in rows {
            if !r.ends_with(&want) {
                return Err(format!("{l:?}: {r:?} is not the image's checksum {want}"));
            }
        }
        checked += 1;
    }
    let typed = format!("> blkbench {dev} ");
    let want = text.lines().filter(|l| l.contains(typed.as_str())).count();
    if checked != want {
        return Err(format!("{checked} blkbench {dev} tables for {want} runs"));
    }
    Ok(())
}

/// `blk stray`: the IOVA the fault log names is the one the command printed for
/// sector 101, and no fault names any other address.
fn verify_stray_fault_address(text: &str) -> Result<(), String> {
    let stray = text
        .lines()
        .find_map(|l| l.split_once("sector 101 to ")?.1.split_once(' '))
        .map(|(a, _)| a)
        .ok_or("no stray IOVA printed")?;
    let faults: Vec<&str> = text
        .lines()
        .filter(|l| l.trim_start().starts_with("DMAR fault: "))
        .collect();
    if faults.is_empty() {
        return Err("iommu faults listed none".into());
    }
    // The walk's prediction names the reason the unit then records.
    let predicted = text
        .lines()
        .find_map(|l| {
            l.split_once("a write there faults with reason ")?
                .1
                .split_once(' ')
        })
        .map(|(r, _)| r)
        .ok_or("no predicted fault reason printed")?;
    let want = format!("DMAR fault: 00:1f.2 write at {stray}, reason {predicted} ");
    if let Some(other) = faults.iter().find(|l| !l.contains(&want)) {
        return Err(format!(
            "a fault other than the stray write at {stray} with reason {predicted}: {other:?}"
        ));
    }
    Ok(())
}

/// 32 reads of 512 KiB in flight need 16 MiB of bounce slots and the swiotlb pool
/// holds 4 MiB: both disks' tables are whole, every mode (swiotlb included) read
/// the image's data, and each table says how many starts waited for bounce space.
fn verify_bounce_pool_pressure(text: &str) -> Result<(), String> {
    use crate::profile::StorageDisk;
    check_blkbench_tables(text)?;
    check_blkbench_sums(text, "sdb", StorageDisk::Ahci)?;
    check_blkbench_sums(text, "nvme0n1", StorageDisk::Nvme)?;
    let waited: Vec<u64> = text
        .lines()
        .filter(|l| l.starts_with("swiotlb: "))
        .map(|l| count_after(l, "swiotlb: ", "start(s) waited"))
        .collect::<Result<_, _>>()?;
    if waited.len() != 2 || waited.contains(&0) {
        return Err(format!(
            "expected a count of waiting starts for each disk's swiotlb row, got {waited:?}"
        ));
    }
    Ok(())
}

/// The numbers after `what` on the first line containing `key`: ("3 commands by
/// interrupt" → 3).
fn count_after(text: &str, key: &str, what: &str) -> Result<u64, String> {
    let line = text
        .lines()
        .find(|l| l.contains(key))
        .ok_or_else(|| format!("no line with '{key}'"))?;
    let end = line
        .find(what)
        .ok_or_else(|| format!("no '{what}' in '{line}'"))?;
    line[..end]
        .trim_end()
        .rsplit(|c: char| !c.is_ascii_digit())
        .next()
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("no count before '{what}' in '{line}'"))
}

/// The I/O queue's three reads came by interrupt, none polled; probe's admin
/// commands were polled (before the handler had the queues).
fn verify_nvme_irq_counts(text: &str) -> Result<(), String> {
    let io = " nvme: CQ 1 (MSI-X entry 1): ";
    let by_irq = count_after(text, io, "commands by interrupt")?;
    let polled = count_after(text, io, "polled")?;
    let irqs = count_after(text, io, "interrupts")?;
    if by_irq != 3 || polled != 0 || irqs < 3 {
        return Err(format!(
            "I/O CQ: {by_irq} by interrupt, {polled} polled, {irqs} interrupts; want 3, 0, >= 3"
        ));
    }
    let admin_polled = count_after(text, " nvme: CQ 0 (MSI-X entry 0): ", "polled")?;
    if admin_polled < 5 {
        return Err(format!(
            "admin CQ: {admin_polled} polled at probe, want >= 5"
        ));
    }
    Ok(())
}

/// Both reads (and the boot's earlier ones) came by interrupt; only probe's
/// IDENTIFYs were polled.
fn verify_ahci_irq_counts(text: &str) -> Result<(), String> {
    let key = "ahci: completions by MSI, vector";
    let by_irq = count_after(text, key, "commands by interrupt")?;
    let polled = count_after(text, key, "polled")?;
    let irqs = count_after(text, key, "interrupts")?;
    if by_irq < 2 || irqs < by_irq || polled > 6 {
        return Err(format!(
            "{by_irq} by interrupt, {irqs} interrupts, {polled} polled; want >= 2, >= that, <= 6 (IDENTIFY)"
        ));
    }
    Ok(())
}

/// The reads came by the INTx line, not by polling.
fn verify_ahci_intx_counts(text: &str) -> Result<(), String> {
    let key = "ahci: completions by INTx on GSI";
    let by_irq = count_after(text, key, "commands by interrupt")?;
    let irqs = count_after(text, key, "interrupts")?;
    let polled = count_after(text, key, "polled")?;
    if by_irq < 2 || irqs < by_irq || polled > 6 {
        return Err(format!(
            "{by_irq} by interrupt, {irqs} interrupts, {polled} polled; want >= 2, >= that, <= 6 (IDENTIFY)"
        ));
    }
    Ok(())
}

/// QEMU's q35 `PRTA`: the GSI of root-bus slot `slot`, pin `pin` (1 = INTA).
fn q35_gsi(slot: u8, pin: u8) -> u32 {
    let i = u32::from(pin - 1);
    match slot {
        0x00..=0x17 => 20 + ((u32::from(slot) & 3) + i) % 4,
        0x18 | 0x1e => 20 + i,
        _ => 16 + i,
    }
}

/// edu 02:03.0 INTA and 02:05.0 INTA swizzle through the bridge (device 0 on bus
/// 1) to INTD and INTB of the root port's slot, and get that slot's GSIs.
fn verify_bridge_swizzle(text: &str) -> Result<(), String> {
    for (bdf, want_pin) in [("0000:02:03.0 INTA", 'D'), ("0000:02:05.0 INTA", 'B')] {
        let line = text
            .lines()
            .find(|l| l.contains(bdf))
            .ok_or_else(|| format!("no route line for {bdf}"))?;
        let at = line
            .find("slot 0x")
            .ok_or_else(|| format!("{bdf}: not swizzled through the bridges: {line}"))?;
        let slot = u8::from_str_radix(&line[at + 7..at + 9], 16)
            .map_err(|e| format!("{bdf}: slot in '{line}': {e}"))?;
        let pin_at = &line[at + 10..];
        if !pin_at.starts_with(&format!("INT{want_pin})")) {
            return Err(format!(
                "{bdf}: want INT{want_pin} at the root slot: {line}"
            ));
        }
        let gsi = q35_gsi(slot, want_pin as u8 - b'A' + 1);
        if !line.contains(&format!("-> GSI {gsi} ")) {
            return Err(format!(
                "{bdf}: q35 gives GSI {gsi} for slot {slot:#x} INT{want_pin}: {line}"
            ));
        }
    }
    Ok(())
}

pub fn check_shell_case(case: &ShellCase, images: &Images) -> Result<Transcript, String> {
    let profile = profile::find(case.profile)
        .ok_or("unknown profile")?
        .clone();
    run_shell_case(case, images, profile, vec![])
}

/// Which disk a [`DiskCase`] gets a writable copy of.
#[derive(Clone, Copy, Debug)]
pub enum WritableDisk {
    /// The NVMe namespace (`nvme0n1`), in place of the profile's read-only one.
    Nvme,
    /// A second AHCI disk on port 1 (`sdb`), next to the boot disk.
    AhciPort1,
}

/// A shell case whose kernel writes to a disk: it runs on a per-run writable copy of
/// the NVMe image, and after QEMU has exited the host reads that copy and checks it.
pub struct DiskCase {
    pub case: ShellCase,
    pub disk: WritableDisk,
    /// Checks the image file's bytes after the run.
    pub check: fn(&[u8]) -> Result<(), String>,
    /// Attach the copy through QEMU's `blkdebug` driver with a rule that fails every
    /// read touching this sector with EIO (an injected media error).
    pub read_error_at: Option<u64>,
}

/// The image as generated, every byte: a run that only read must not have changed it.
fn check_unchanged_image(img: &[u8]) -> Result<(), String> {
    let ss = profile::NVME_SECTOR;
    if img.len() != ss * profile::NVME_SECTORS {
        return Err(format!(
            "image is {} bytes, expected {}",
            img.len(),
            ss * profile::NVME_SECTORS
        ));
    }
    for lba in 0..profile::NVME_SECTORS {
        if img[lba * ss..(lba + 1) * ss] != profile::nvme_sector(lba)[..] {
            return Err(format!("image LBA {lba} changed by a run that only read"));
        }
    }
    Ok(())
}

/// The written range of the disk cases: LBA 100, 8 sectors, pattern seed 42.
const WRITE_LBA: usize = 100;
const WRITE_COUNT: usize = 8;
const WRITE_SEED: u64 = 42;

/// Every byte of the image: the written range holds the seeded pattern (computed
/// here, on the host, from the image file), everything else the image as generated.
fn check_written_image(img: &[u8]) -> Result<(), String> {
    let ss = profile::NVME_SECTOR;
    if img.len() != ss * profile::NVME_SECTORS {
        return Err(format!(
            "image is {} bytes, expected {}",
            img.len(),
            ss * profile::NVME_SECTORS
        ));
    }
    let written = WRITE_LBA..WRITE_LBA + WRITE_COUNT;
    for lba in 0..profile::NVME_SECTORS {
        let got = &img[lba * ss..(lba + 1) * ss];
        let want = if written.contains(&lba) {
            let mut v = vec![0u8; ss];
            block::pattern::fill_pattern(WRITE_SEED, lba as u64, ss, &mut v);
            v
        } else {
            profile::nvme_sector(lba)
        };
        if let Some(i) = (0..ss).find(|&i| got[i] != want[i]) {
            return Err(format!(
                "image LBA {lba} byte {i}: {:#04x}, expected {:#04x} ({})",
                got[i],
                want[i],
                if written.contains(&lba) {
                    "written with the pattern"
                } else {
                    "outside the written range: must be unchanged"
                }
            ));
        }
    }
    Ok(())
}

pub const DISK_CASES: &[DiskCase] = &[
    DiskCase {
        case: ShellCase {
            name: "nvme_write_pattern_host_checks_image",
            profile: "nvme",
            cmdline: "",
            input: b"blk write nvme0n1 100 8 --pattern 42\nblk verify nvme0n1 100 8 --pattern 42\nblk verify nvme0n1 100 9 --pattern 42\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "nvme0n1: wrote 8 sector(s) of 512 bytes at LBA 100 with pattern 42",
                "nvme0n1: verified: 8 sectors match pattern 42 from LBA 100",
                "error: blk: nvme0n1: mismatch at LBA 108 byte 0:",
            ],
            line_counts: &[("error:", 1)],
            verify: None,
        },
        disk: WritableDisk::Nvme,
        check: check_written_image,
        read_error_at: None,
    },
    DiskCase {
        case: ShellCase {
            name: "ahci_write_pattern_host_checks_image",
            profile: "default",
            cmdline: "",
            input: b"lsblk\nblk write sdb 100 8 --pattern 42\nblk verify sdb 100 8 --pattern 42\nblk verify sdb 100 9 --pattern 42\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "sdb      0000:00:1f.2 ahci   1",
                "sdb: wrote 8 sector(s) of 512 bytes at LBA 100 with pattern 42",
                "sdb: verified: 8 sectors match pattern 42 from LBA 100",
                "error: blk: sdb: mismatch at LBA 108 byte 0:",
            ],
            line_counts: &[("error:", 1)],
            verify: None,
        },
        disk: WritableDisk::AhciPort1,
        check: check_written_image,
        read_error_at: None,
    },
    DiskCase {
        case: ShellCase {
            name: "nvme_injected_media_error",
            profile: "nvme",
            cmdline: "",
            input: b"blk read nvme0n1 200\nblk read nvme0n1 0\nblk read nvme0n1 201\nblk read nvme0n1 199 2\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "error: blk: nvme0n1: I/O error at sector 200: nvme: unrecovered read error (media error)",
                "nvme0n1: 1 sector(s) of 512 bytes from LBA 0, read by 0000:",
                "nvme0n1: 1 sector(s) of 512 bytes from LBA 201, read by 0000:",
                "error: blk: nvme0n1: I/O error at sector 199: nvme: unrecovered read error (media error)",
            ],
            line_counts: &[("error:", 2)],
            verify: None,
        },
        disk: WritableDisk::Nvme,
        check: check_unchanged_image,
        read_error_at: Some(200),
    },
    DiskCase {
        case: ShellCase {
            name: "ahci_injected_media_error",
            profile: "default",
            cmdline: "",
            input: b"blk read sdb 200\nblk read sdb 0\nblk read sdb 201\nblk read sda 0\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "error: blk: sdb: I/O error at sector 200: ahci port 1: command aborted",
                "warning: ahci: port 1: recovered (COMRESET)",
                "sdb: 1 sector(s) of 512 bytes from LBA 0, read by 0000:00:1f.2 ahci",
                "sdb: 1 sector(s) of 512 bytes from LBA 201, read by 0000:00:1f.2 ahci",
                "sda: 1 sector(s) of 512 bytes from LBA 0, read by 0000:00:1f.2 ahci",
            ],
            line_counts: &[("error:", 1)],
            verify: None,
        },
        disk: WritableDisk::AhciPort1,
        check: check_unchanged_image,
        read_error_at: Some(200),
    },
    DiskCase {
        // The same injected error with 8 NCQ reads in flight: the port is recovered,
        // the tags still outstanding run again one at a time, the one at sector 200
        // fails with its own error in every mode, the others complete, and the queue
        // works afterwards.
        case: ShellCase {
            name: "ahci_ncq_injected_media_error",
            profile: "default",
            cmdline: "",
            input: b"blkbench sdb --qd 8 --count 64 --bs 4k --rounds 1\nblk read sdb 201\nblkbench sdb --qd 8 --count 16 --bs 4k --rounds 1\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "warning: sdb: NCQ error (PxIS 0x4",
                "outstanding; COMRESET, then each again without NCQ",
                "(lba 200) failed again: ahci port 1: command aborted",
                "error: sdb: I/O error at sector 200: ahci port 1: command aborted (command 0x25, status 0x41, error 0x04, lba 200)",
                "sdb: 1 sector(s) of 512 bytes from LBA 201, read by 0000:00:1f.2 ahci",
                "qd 8 (8 reads kept in flight through the ahci driver)",
            ],
            // blkbench puts each mode's error in its row, not on a line of its own.
            line_counts: &[
                ("error:", 0),
                ("direct   error: sdb: I/O error at sector 200", 1),
                ("swiotlb  error: sdb: I/O error at sector 200", 1),
                ("strict   error: sdb: I/O error at sector 200", 1),
                ("lazy     error: sdb: I/O error at sector 200", 1),
            ],
            verify: None,
        },
        disk: WritableDisk::AhciPort1,
        check: check_unchanged_image,
        read_error_at: Some(200),
    },
];

/// Runs a [`DiskCase`] on a fresh writable copy of the NVMe image and checks the copy
/// after QEMU exits. The copy is removed when the check passes and kept (its path in
/// the error) when it fails.
pub fn check_disk_case(dc: &DiskCase, images: &Images) -> Result<Transcript, String> {
    let mut profile = profile::find(dc.case.profile)
        .ok_or("unknown profile")?
        .clone();
    profile::ensure_nvme_image(&images.nvme)?;
    let copy = std::env::temp_dir().join(format!(
        "busmaster-{}-{}.img",
        dc.case.name,
        std::process::id()
    ));
    std::fs::copy(&images.nvme, &copy).map_err(|e| {
        format!(
            "copying {} to {}: {e}",
            images.nvme.display(),
            copy.display()
        )
    })?;
    let file = match dc.read_error_at {
        None => copy.display().to_string(),
        Some(sector) => {
            let rules = copy.with_extension("blkdebug.conf");
            std::fs::write(
                &rules,
                format!(
                    "[inject-error]\nevent = \"read_aio\"\nsector = \"{sector}\"\nerrno = \"5\"\n"
                ),
            )
            .map_err(|e| format!("writing {}: {e}", rules.display()))?;
            format!("blkdebug:{}:{}", rules.display(), copy.display())
        }
    };
    let drive = |id: &str| format!("if=none,id={id},format=raw,file={file}");
    let extra = match dc.disk {
        WritableDisk::Nvme => {
            // The profile would attach the shared image read-only; attach the copy instead.
            profile.nvme = false;
            vec![
                "-drive".into(),
                drive("n0"),
                "-device".into(),
                "nvme,serial=busmaster,drive=n0".into(),
            ]
        }
        WritableDisk::AhciPort1 => vec![
            "-drive".into(),
            drive("d1"),
            "-device".into(),
            "ide-hd,drive=d1,bus=ide.1".into(),
        ],
    };
    let t = run_shell_case(&dc.case, images, profile, extra);
    let r = t.and_then(|t| {
        let img = std::fs::read(&copy).map_err(|e| format!("reading {}: {e}", copy.display()))?;
        (dc.check)(&img).map_err(|e| format!("{e} (image kept: {})", copy.display()))?;
        Ok(t)
    });
    if r.is_ok() {
        let _ = std::fs::remove_file(&copy);
        let _ = std::fs::remove_file(copy.with_extension("blkdebug.conf"));
    }
    r
}

fn run_shell_case(
    case: &ShellCase,
    images: &Images,
    profile: profile::Profile,
    extra: Vec<String>,
) -> Result<Transcript, String> {
    let launch = Launch {
        firmware: profile.firmware,
        profile,
        cmdline: case.cmdline.to_string(),
        serial: SerialMode::Piped,
        no_reboot: true,
        monitor: None,
        extra,
    };
    let session = Session::spawn(&launch, images)?;
    qemu::feed_input(&session, case.input);
    let t = qemu::drive(session, &Limits::generous(), false);
    let tail = || crash_context(&t.text);
    if t.end != case.end {
        return Err(format!(
            "ended with '{}', expected '{}'\n{}",
            t.end.describe(),
            case.end.describe(),
            tail()
        ));
    }
    for want in case.contains {
        if !t.text.contains(want) {
            return Err(format!("output lacks {want:?}\n{}", tail()));
        }
    }
    for (prefix, n) in case.line_counts {
        let got = t.text.lines().filter(|l| l.starts_with(prefix)).count();
        if got != *n {
            // Lines holding the prefix anywhere: a count off by an
            // interleaved line shows here.
            let near: Vec<&str> = t.text.lines().filter(|l| l.contains(prefix)).collect();
            return Err(format!(
                "{got} lines start with {prefix:?}, expected {n}; lines holding it:\n{}",
                near.join("\n")
            ));
        }
    }
    if let Some(line) = clamp_line(&t.text) {
        return Err(format!("QEMU clamped an edu DMA address: {line}"));
    }
    if let Some(verify) = case.verify {
        verify(&t.text)?;
    }
    Ok(t)
}

/// The profiles (and firmware) the kernel test suite runs under.
pub const SUITE_PROFILES: &[(&str, Firmware)] = &[
    ("default", Firmware::Bios),
    ("noiommu", Firmware::Bios),
    ("bigmem", Firmware::Bios),
    ("pcie", Firmware::Bios),
    ("iommu-lazy", Firmware::Bios),
    ("iommu-pt", Firmware::Bios),
    ("iommu-4level", Firmware::Bios),
    ("iommu-reginval", Firmware::Bios),
    ("two-edu", Firmware::Bios),
    ("floppy", Firmware::Bios),
    ("idma64-sim", Firmware::Bios),
    ("idma64-sim-intx", Firmware::Bios),
    ("idma64-sim-uart", Firmware::Bios),
    ("uefi", Firmware::Uefi),
];

/// A shell case booted from images written as `./run.sh image --cmdline`
/// writes them: its options reach the kernel through the image's options file
/// (the bootloader's ramdisk), as on a USB stick, where no fw_cfg exists.
pub struct ImageOptionsCase {
    /// `case.cmdline` and the profile's options still go by fw_cfg, after the
    /// file's.
    pub case: ShellCase,
    /// What `image --cmdline` writes into the options file.
    pub file_options: &'static str,
    /// Bytes then written over the whole file instead (a file that is not an
    /// options file).
    pub file_bytes: Option<&'static [u8]>,
}

/// The options file read by each firmware's loader (BIOS stage 2's own FAT
/// reader, OVMF's), acted on, and overridden by fw_cfg where a key is in both:
/// the file says `iommu=off`, the profile's fw_cfg options `iommu=on`, and
/// translation is on.
pub const IMAGE_OPTIONS_CASES: &[ImageOptionsCase] = &[
    ImageOptionsCase {
        case: ShellCase {
            name: "options_file_written_by_image_cmdline_bios",
            profile: "default",
            cmdline: "",
            input: b"iommu\niommu ir\npoweroff\n",
            end: End::Exited(0),
            contains: &IMAGE_OPTIONS_SEEN,
            line_counts: &[("error:", 0)],
            verify: None,
        },
        file_options: "intremap=off iommu.strict=0 iommu=off",
        file_bytes: None,
    },
    ImageOptionsCase {
        case: ShellCase {
            name: "options_file_written_by_image_cmdline_uefi",
            profile: "uefi",
            cmdline: "",
            input: b"iommu\niommu ir\npoweroff\n",
            end: End::Exited(0),
            contains: &IMAGE_OPTIONS_SEEN,
            line_counts: &[("error:", 0)],
            verify: None,
        },
        file_options: "intremap=off iommu.strict=0 iommu=off",
        file_bytes: None,
    },
    ImageOptionsCase {
        // Binary junk where the options file should be (here NUL bytes after
        // an option): the kernel says so and boots with fw_cfg's options only.
        case: ShellCase {
            name: "options_file_holding_binary_junk_is_ignored",
            profile: "default",
            cmdline: "",
            input: b"iommu\npoweroff\n",
            end: End::Exited(0),
            contains: &[
                "warning: cmdline: the image's options file (ramdisk) is ignored: byte 9 is NUL: binary data, not a text file",
                "command line: 'iommu=on'",
                "mode Translate, strict invalidation",
            ],
            line_counts: &[("error:", 0)],
            verify: None,
        },
        file_options: "",
        file_bytes: Some(b"iommu=off\0\x7fELF\x02\x01\x01\0\0\0\xff\xfe\r\n"),
    },
];

const IMAGE_OPTIONS_SEEN: [&str; 6] = [
    "cmdline: 3 option(s) from the image's options file (ramdisk): intremap=off iommu.strict=0 iommu=off",
    "cmdline: 1 option(s) from fw_cfg (opt/busmaster/cmdline): iommu=on",
    "command line: 'intremap=off iommu.strict=0 iommu=off iommu=on'",
    // iommu=on (fw_cfg) beat iommu=off (file); iommu.strict=0 (file) acted on
    "mode Translate, lazy invalidation (flush queue)",
    "iommu: interrupt remapping off (intremap=off); interrupts in compatibility format",
    "interrupt remapping: off (intremap=off); MSIs and IO-APIC entries are in compatibility format",
];

/// Writes the images with `c.file_options` through the `image` command's code
/// (and `c.file_bytes` over the file, if given), then boots the written file
/// and checks the case.
pub fn check_image_options_case(
    c: &ImageOptionsCase,
    images: &Images,
) -> Result<Transcript, String> {
    let profile = profile::find(c.case.profile)
        .ok_or("unknown profile")?
        .clone();
    let out = std::path::PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/tmp/options-images"
    ))
    .join(c.case.name);
    let [bios, uefi] = crate::write_images(images, &out, c.file_options)?;
    if let Some(bytes) = c.file_bytes {
        for img in [&bios, &uefi] {
            crate::imageopts::set_file_bytes(img, bytes)
                .map_err(|e| format!("{}: {e}", img.display()))?;
        }
    }
    let written = Images {
        bios,
        uefi,
        ..images.clone()
    };
    let r = run_shell_case(&c.case, &written, profile, vec![]);
    if r.is_ok() {
        let _ = std::fs::remove_dir_all(&out);
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn protocol_lines_parse() {
        assert_eq!(
            parse_proto("BUSMASTER-TEST begin profile=default total=8 skip=0\r"),
            Some(Proto::Begin { total: 8 })
        );
        assert_eq!(
            parse_proto("BUSMASTER-TEST start a::b"),
            Some(Proto::Start("a::b"))
        );
        assert_eq!(
            parse_proto("BUSMASTER-TEST ok a::b 123us"),
            Some(Proto::Ok("a::b"))
        );
        assert_eq!(
            parse_proto("BUSMASTER-TEST fail a::b: x: y (f.rs:3)"),
            Some(Proto::Fail("a::b", "x: y (f.rs:3)"))
        );
        assert_eq!(
            parse_proto("BUSMASTER-TEST end passed=1 failed=0"),
            Some(Proto::End)
        );
        assert_eq!(parse_proto("BUSMASTER-TEST begin total=x"), None);
        assert_eq!(parse_proto("[    0.1] BUSMASTER-TEST ok a"), None);
        assert_eq!(parse_proto("BUSMASTER-TEST bogus"), None);
    }

    #[test]
    fn crash_context_prefers_the_report() {
        let text = "a\nb\n!!! CPU EXCEPTION #PF\nRIP=0x1\nRAX=0x2\nz\n";
        assert_eq!(
            crash_context(text),
            "!!! CPU EXCEPTION #PF\nRIP=0x1\nRAX=0x2"
        );
        let plain: String = (0..20).map(|i| format!("l{i}\n")).collect();
        assert!(crash_context(&plain).starts_with("l8\n"));
    }
}
