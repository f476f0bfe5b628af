//! The Busmaster runner: builds nothing itself (the build script made the disk
//! images), boots them in QEMU with named profiles, and runs the test tiers.
//!
//! ```text
//! boot [run] [--profile NAME] [--uefi] [--cmdline "k=v ..."] [-- QEMU ARGS]
//! boot test [--host-log FILE --host-status N] [--only SUBSTRING] [--repeat N] [--jobs N]
//! boot image [--out DIR] [--cmdline "k=v ..."]
//! boot report [--profile NAME] [--out FILE] [--log FILE]
//! boot boot-time [--runs N] [--oracle SCRIPT | --no-oracle]
//! boot profiles
//! boot exercise list | start <name> | cut <name> --out DIR
//! boot grade <name> [--repo PATH] [--host-only]
//! ```

mod boottime;
mod exercise;
mod imageopts;
mod ktest;
mod labs;
mod oracle;
mod profile;
mod qemu;
mod report;
mod screencheck;
// The build script writes the attack-external profile's SSDT with it; the
// binary only tests it.
#[cfg(test)]
mod ssdt;
mod tier;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::time::Duration;

use profile::{Firmware, Images, Launch, SerialMode};
use qemu::{End, Limits, Session};

fn images() -> Images {
    Images {
        usb: false,
        bios: PathBuf::from(env!("BIOS_PATH")),
        uefi: PathBuf::from(env!("UEFI_PATH")),
        floppy: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/floppy.img")),
        nvme: PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target/nvme.img")),
    }
}

const USAGE: &str = "usage:
  run.sh [run] [--profile NAME] [--uefi] [--cmdline \"k=v ...\"] [-- QEMU ARGS...]
  run.sh test [--only SUBSTRING] [--repeat N] [--jobs N]
  run.sh image [--out DIR] [--cmdline \"k=v ...\"]
  run.sh report [--profile NAME] [--out FILE.html] [--log SERIAL_LOG]
  run.sh boot-time [--runs N] [--oracle SCRIPT | --no-oracle]
  run.sh profiles
  run.sh exercise list | start <name> | cut <name> --out DIR
  run.sh grade <name> [--repo PATH] [--host-only]";

fn fail(msg: &str) -> ! {
    eprintln!("boot: {msg}");
    eprintln!("{USAGE}");
    std::process::exit(2)
}

#[derive(Clone)]
struct Args {
    command: String,
    profile: String,
    uefi: bool,
    cmdline: String,
    qemu_extra: Vec<String>,
    host_log: Option<PathBuf>,
    host_status: i32,
    only: Option<String>,
    /// `image`: a directory (default target/images); `report`: the page
    /// (default target/report/index.html).
    out: Option<PathBuf>,
    /// `report --log`: render this serial log instead of booting.
    log: Option<PathBuf>,
    runs: usize,
    /// `test --repeat N`: run the QEMU tier N times and count failures per test.
    repeat: usize,
    /// `test --jobs N`: QEMU instances at a time (default: one per CPU).
    jobs: Option<usize>,
    /// `boot-time --oracle SCRIPT`: the Linux oracle to compare with.
    oracle: Option<PathBuf>,
    /// `boot-time --no-oracle`: our boots only.
    no_oracle: bool,
}

fn parse_args(argv: Vec<String>) -> Result<Args, String> {
    let mut a = Args {
        command: "run".into(),
        profile: "default".into(),
        uefi: false,
        cmdline: String::new(),
        qemu_extra: vec![],
        host_log: None,
        host_status: 0,
        only: None,
        out: None,
        log: None,
        runs: 5,
        repeat: 1,
        jobs: None,
        oracle: None,
        no_oracle: false,
    };
    let mut it = argv.into_iter();
    let mut first = true;
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().ok_or_else(|| format!("{name} needs a value"));
        match arg.as_str() {
            "run" | "test" | "image" | "report" | "boot-time" | "profiles" if first => {
                a.command = arg.clone()
            }
            "--profile" => a.profile = value("--profile")?,
            "--uefi" => a.uefi = true,
            "--cmdline" => a.cmdline = value("--cmdline")?,
            "--host-log" => a.host_log = Some(value("--host-log")?.into()),
            "--host-status" => {
                a.host_status = value("--host-status")?
                    .parse()
                    .map_err(|_| "--host-status takes a number")?
            }
            "--only" => a.only = Some(value("--only")?),
            "--out" => a.out = Some(value("--out")?.into()),
            "--log" => a.log = Some(value("--log")?.into()),
            "--repeat" => {
                a.repeat = value("--repeat")?
                    .parse()
                    .ok()
                    .filter(|&n| n >= 1)
                    .ok_or("--repeat takes a number of runs (1 or more)")?
            }
            "--jobs" => {
                a.jobs = Some(
                    value("--jobs")?
                        .parse()
                        .ok()
                        .filter(|&n| n >= 1)
                        .ok_or("--jobs takes a number of QEMU instances (1 or more)")?,
                )
            }
            "--oracle" => a.oracle = Some(value("--oracle")?.into()),
            "--no-oracle" => a.no_oracle = true,
            "--runs" => {
                a.runs = value("--runs")?
                    .parse()
                    .map_err(|_| "--runs takes a number")?
            }
            "--" => {
                a.qemu_extra = it.by_ref().collect();
            }
            "-h" | "--help" | "help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument '{other}'")),
        }
        first = false;
    }
    Ok(a)
}

fn main() {
    // The exercise commands take positional words; they parse their own arguments.
    let argv: Vec<String> = std::env::args().skip(1).collect();
    if let Some(cmd @ ("exercise" | "grade")) = argv.first().map(String::as_str) {
        std::process::exit(exercise::main(cmd, &argv[1..]));
    }
    let args = parse_args(argv).unwrap_or_else(|e| fail(&e));
    let code = match args.command.as_str() {
        "run" => run(&args),
        "test" => test(&args),
        "image" => image(&args),
        "report" => report_cmd(&args),
        "boot-time" => boot_time(&args),
        "profiles" => {
            use std::io::Write;
            let mut o = std::io::stdout();
            for p in profile::PROFILES {
                let _ = writeln!(o, "{:<10} {}", p.name, p.summary);
            }
            0
        }
        _ => unreachable!("parse_args only accepts known commands"),
    };
    std::process::exit(code);
}

fn launch_for(args: &Args, serial: SerialMode) -> Launch {
    let profile = profile::find(&args.profile)
        .unwrap_or_else(|| {
            let names: Vec<&str> = profile::PROFILES.iter().map(|p| p.name).collect();
            fail(&format!(
                "unknown profile '{}' (profiles: {})",
                args.profile,
                names.join(", ")
            ))
        })
        .clone();
    Launch {
        firmware: if args.uefi {
            Firmware::Uefi
        } else {
            profile.firmware
        },
        profile,
        cmdline: args.cmdline.clone(),
        serial,
        no_reboot: false,
        monitor: None,
        extra: args.qemu_extra.clone(),
    }
}

/// Boots the shell. On a terminal QEMU owns it; otherwise the serial port is
/// piped and our stdin is fed to the shell once it is ready.
fn run(args: &Args) -> i32 {
    if args
        .qemu_extra
        .iter()
        .any(|a| a == "-s" || a == "-S" || a.starts_with("-gdb"))
    {
        eprintln!(
            "boot: GDB: gdb {} -ex 'target remote :1234' (the images carry a copy without debug info)",
            env!("KERNEL_ELF")
        );
    }
    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    if interactive {
        let launch = launch_for(args, SerialMode::Terminal);
        let vars;
        let ovmf = if launch.firmware == Firmware::Uefi {
            let fw = profile::Ovmf::locate().unwrap_or_else(|e| fail(&e));
            let path =
                std::env::temp_dir().join(format!("busmaster-vars-{}.fd", std::process::id()));
            if let Err(e) = std::fs::copy(&fw.vars_template, &path) {
                fail(&format!("copying OVMF variables: {e}"));
            }
            vars = Some(path);
            Some(fw)
        } else {
            vars = None;
            None
        };
        if launch.profile.floppy {
            if let Err(e) = profile::ensure_floppy_image(&images().floppy) {
                fail(&e);
            }
        }
        if launch.profile.nvme {
            if let Err(e) = profile::ensure_nvme_image(&images().nvme) {
                fail(&e);
            }
        }
        if let Err(e) = profile::ensure_storage_images(launch.profile.name, &images()) {
            fail(&e);
        }
        let qargs = profile::qemu_args(&launch, &images(), ovmf.as_ref(), vars.as_deref());
        eprintln!(
            "boot: profile '{}'; Ctrl-A X quits QEMU, Ctrl-A C opens its monitor",
            launch.profile.name
        );
        let status = std::process::Command::new(qemu::qemu_binary())
            .args(&qargs)
            .status();
        if let Some(v) = vars {
            let _ = std::fs::remove_file(v);
        }
        return match status {
            Ok(s) => profile::exit_meaning(s.code().unwrap_or(-1)).0,
            Err(e) => {
                eprintln!("boot: cannot start {}: {e}", qemu::qemu_binary());
                1
            }
        };
    }
    let launch = launch_for(args, SerialMode::Piped);
    let session = match Session::spawn(&launch, &images()) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("boot: {e}");
            return 1;
        }
    };
    qemu::forward_stdin(&session);
    let limits = Limits {
        idle: Duration::from_secs(120),
        idle_after: None,
        overall: Duration::from_secs(24 * 3600),
    };
    let t = qemu::drive(session, &limits, true);
    match t.end {
        qemu::End::Exited(s) => {
            let (code, meaning) = profile::exit_meaning(s);
            if code != 0 {
                eprintln!("boot: {meaning} (QEMU status {s})");
            }
            code
        }
        qemu::End::InputDone => {
            eprintln!("\nboot: {}", t.end.describe());
            0
        }
        other => {
            eprintln!("\nboot: {}", other.describe());
            1
        }
    }
}

/// Sums `cargo test` result lines: `test result: ok. 12 passed; 0 failed; ...`.
fn parse_host_log(text: &str) -> (usize, usize) {
    let mut passed = 0;
    let mut failed = 0;
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("test result: ") else {
            continue;
        };
        for part in rest.split(';') {
            let mut words = part.split_whitespace().rev();
            let (Some(kind), Some(n)) = (words.next(), words.next()) else {
                continue;
            };
            let Ok(n) = n.parse::<usize>() else { continue };
            match kind {
                "passed" => passed += n,
                "failed" => failed += n,
                _ => {}
            }
        }
    }
    (passed, failed)
}

fn test(args: &Args) -> i32 {
    let mut tally = ktest::Tally::default();
    let (mut host_passed, mut host_failed) = (0, 0);
    if let Some(path) = &args.host_log {
        match std::fs::read_to_string(path) {
            Ok(text) => (host_passed, host_failed) = parse_host_log(&text),
            Err(e) => {
                eprintln!("boot: reading host test log {}: {e}", path.display());
                host_failed = 1;
            }
        }
        if args.host_status != 0 && host_failed == 0 {
            // cargo failed without a failing test: a build error.
            println!(
                "host tests: cargo test exited with status {} (build failure?)",
                args.host_status
            );
            host_failed = 1;
        }
    }
    let images = images();
    let wanted = |name: &str| args.only.as_ref().is_none_or(|o| name.contains(o.as_str()));
    // Jobs share no files; each QEMU is one busy thread, so one per core.
    let workers = args
        .jobs
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let floppy = profile::ensure_floppy_image(&images.floppy);
    let profile_launch = |name: &str| {
        launch_for(
            &Args {
                profile: name.to_string(),
                ..args.clone()
            },
            SerialMode::Piped,
        )
    };
    let base = launch_for(&args.clone(), SerialMode::Piped);
    let mut flakes = tier::Flakes::default();
    let repeat = args.repeat.max(1);
    let mut run_summaries = Vec::new();
    for round in 1..=repeat {
        if repeat > 1 {
            println!("\nrunning in-QEMU tests (run {round} of {repeat}, {workers} at a time)");
        } else {
            println!("\nrunning in-QEMU tests ({workers} at a time)");
        }
        let clock = tier::Clock::start();
        let jobs = tier::jobs(&images, &base, &profile_launch, args.only.as_deref());
        let (before_p, before_f) = (tally.passed, tally.failed);
        let tier_run = tier::run(jobs, workers, |o| {
            if wanted(&o.name) {
                tally.record(&o.name, o.ok, &o.detail);
            }
        });
        println!("{}", tier_run.time_summary(6));
        let mut outcomes = tier_run.outcomes;
        if let Err(e) = &floppy {
            let o = tier::Outcome {
                name: "qemu::floppy::image".into(),
                ok: false,
                detail: e.clone(),
            };
            tally.record(&o.name, false, e);
            outcomes.push(o);
        }
        outcomes.retain(|o| wanted(&o.name));
        flakes.add_run(&outcomes);
        let line = format!(
            "run {round}: {} passed, {} failed in {:.0} s",
            tally.passed - before_p,
            tally.failed - before_f,
            clock.secs()
        );
        println!("{line}");
        run_summaries.push(line);
    }
    println!();
    if repeat > 1 {
        for line in &run_summaries {
            println!("{line}");
        }
        print!("{}", flakes.report());
    }
    println!(
        "host: {host_passed} passed, {host_failed} failed; qemu: {} passed, {} failed",
        tally.passed, tally.failed
    );
    let mut failures = tally.failures.clone();
    failures.sort();
    failures.dedup();
    for f in &failures {
        println!("failed: {f}");
    }
    let passed = host_passed + tally.passed;
    let failed = host_failed + tally.failed;
    println!("{passed} passed, {failed} failed");
    if failed == 0 {
        0
    } else {
        1
    }
}

/// Writes the images as `./run.sh image` does, then boots the written file as a USB
/// stick (xHCI + usb-storage, the firmware's own USB boot) and runs a command.
pub(crate) fn usb_boot(images: &Images, firmware: Firmware, label: &str) -> Result<(), String> {
    // One folder per firmware: the two checks may run side by side.
    let out = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/tmp/usb-images"
    ))
    .join(label);
    let [bios, uefi] = write_images(images, &out, "")?;
    let stick = Images {
        usb: true,
        bios,
        uefi,
        floppy: images.floppy.clone(),
        nvme: images.nvme.clone(),
    };
    let mut launch = launch_for(&parse_args(Vec::new())?, SerialMode::Piped);
    launch.firmware = firmware;
    let session = Session::spawn(&launch, &stick)?;
    qemu::feed_input(&session, b"uptime\npoweroff\n");
    let t = qemu::drive(session, &Limits::generous(), false);
    if t.first_prompt.is_none() {
        return Err(format!(
            "no shell prompt from the USB stick ({})",
            t.end.describe()
        ));
    }
    if !t.text.contains(" s (TSC ") {
        return Err("the shell did not run 'uptime'".into());
    }
    match t.end {
        End::Exited(0) => Ok(()),
        other => Err(format!("ended with {}", other.describe())),
    }
}

/// `report`: boots the profile with the report's commands (or takes `--log`),
/// keeps the serial log beside the page, and prints the page's path.
fn report_cmd(args: &Args) -> i32 {
    let page = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/report/index.html"));
    if let Some(log) = &args.log {
        return match ::report::write_page(log, &page) {
            Ok(()) => {
                println!("{}", page.display());
                0
            }
            Err(e) => {
                eprintln!("boot: report: {e}");
                1
            }
        };
    }
    let launch = launch_for(args, SerialMode::Piped);
    eprintln!(
        "boot: report: booting profile '{}' and typing: {}",
        launch.profile.name,
        ::report::COMMANDS.join("; ")
    );
    let dir = page
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."))
        .to_path_buf();
    let result =
        report::boot_log(&images(), &launch).and_then(|log| report::save(&log, &dir, &page));
    match result {
        Ok(log) => {
            eprintln!("boot: report: serial log in {}", log.display());
            println!("{}", page.display());
            0
        }
        Err(e) => {
            eprintln!("boot: report: {e}");
            1
        }
    }
}

/// Copies the BIOS and UEFI disk images into `out`, their options files
/// holding `options` (none: the template as built); returns their paths.
pub(crate) fn write_images(
    images: &Images,
    out: &std::path::Path,
    options: &str,
) -> Result<[PathBuf; 2], String> {
    // Refuse options that do not fit before anything is written.
    imageopts::render(options).map_err(|e| format!("--cmdline: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for (src, name) in [
        (&images.bios, "busmaster-bios.img"),
        (&images.uefi, "busmaster-uefi.img"),
    ] {
        let dst = out.join(name);
        std::fs::copy(src, &dst)
            .map_err(|e| format!("copying {} to {}: {e}", src.display(), dst.display()))?;
        if !options.trim().is_empty() {
            imageopts::set_options(&dst, options).map_err(|e| {
                format!(
                    "writing the options file ({}) of {}: {e}",
                    bootopts::FILE_NAME,
                    dst.display()
                )
            })?;
        }
        written.push(dst);
    }
    Ok([written[0].clone(), written[1].clone()])
}

/// Copies the disk images somewhere stable, with `--cmdline`'s options in
/// their options file, and says how to use them.
fn image(args: &Args) -> i32 {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/images"));
    let written = match write_images(&images(), &out, &args.cmdline) {
        Ok(w) => w,
        Err(e) => {
            eprintln!("boot: {e}");
            return 1;
        }
    };
    // writeln! rather than println!: `./run.sh image | head` must not panic on a
    // closed pipe.
    use std::io::Write;
    let mut o = std::io::stdout();
    for dst in &written {
        let size = std::fs::metadata(dst).map(|m| m.len()).unwrap_or(0);
        let _ = writeln!(o, "{} ({} KiB)", dst.display(), size / 1024);
    }
    // What a booting kernel will find: the file read back from each image.
    let mut options = Vec::new();
    for dst in &written {
        let words = imageopts::read_options(dst).and_then(|bytes| {
            Ok(bootopts::parse(&bytes)
                .map_err(imageopts::OptionsError::Parse)?
                .words()
                .collect::<Vec<_>>()
                .join(" "))
        });
        match words {
            Ok(w) => options.push(w),
            Err(e) => {
                eprintln!(
                    "boot: reading back the options file of {}: {e}",
                    dst.display()
                );
                return 1;
            }
        }
    }
    if options[0] != options[1] {
        eprintln!("boot: the two images' options files differ: {options:?}");
        return 1;
    }
    let options = &options[0];
    let _ = if options.is_empty() {
        writeln!(
            o,
            "\nBoot options: none. Set them with --cmdline \"k=v ...\", or on the stick: edit the \
             file '{}' on its FAT partition (README \"Boot options\").",
            bootopts::FILE_NAME
        )
    } else {
        writeln!(
            o,
            "\nBoot options (the file '{}' on the FAT partition): {options}",
            bootopts::FILE_NAME,
        )
    };
    let _ = writeln!(
        o,
        "\nTo boot a PC from a USB stick, write one image to the whole stick (not a partition):\n  \
         sudo dd if={}/busmaster-uefi.img of=/dev/sdX bs=4M conv=fsync   # UEFI machines\n  \
         sudo dd if={}/busmaster-bios.img of=/dev/sdX bs=4M conv=fsync   # legacy BIOS / CSM\n\
         Check /dev/sdX with 'lsblk' first: everything on it is overwritten.",
        out.display(),
        out.display()
    );
    0
}

/// Measures QEMU start to the first shell prompt, BIOS and UEFI.
fn boot_time(args: &Args) -> i32 {
    let images = images();
    let launch = |profile_name: &str| {
        launch_for(
            &Args {
                profile: profile_name.into(),
                ..args.clone()
            },
            SerialMode::Piped,
        )
    };
    let oracle = if args.no_oracle {
        None
    } else {
        Some(args.oracle.clone().unwrap_or_else(boottime::default_oracle))
    };
    match boottime::measure(&images, &launch, args.runs.max(1), oracle.as_deref()) {
        Ok(report) => {
            print!("{report}");
            0
        }
        Err(e) => {
            eprintln!("boot: {e}");
            1
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_log_sums_every_result_line() {
        let log = "running 3 tests\ntest a ... ok\n\
                   test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s\n\
                   test result: FAILED. 5 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out\n";
        assert_eq!(parse_host_log(log), (8, 2));
        assert_eq!(parse_host_log("error[E0425]: cannot find value"), (0, 0));
    }

    #[test]
    fn args_parse_profiles_and_qemu_passthrough() {
        let a = parse_args(
            ["--profile", "bigmem", "--uefi", "--", "-s", "-S"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        assert_eq!(a.command, "run");
        assert_eq!(a.profile, "bigmem");
        assert!(a.uefi);
        assert_eq!(a.qemu_extra, ["-s", "-S"]);
        let t = parse_args(["test", "--only", "shell"].map(String::from).to_vec()).unwrap();
        assert_eq!(t.command, "test");
        assert_eq!(t.only.as_deref(), Some("shell"));
        assert!(parse_args(vec!["--bogus".into()]).is_err());
        assert!(parse_args(vec!["--profile".into()]).is_err());
        let r = parse_args(
            ["report", "--log", "x.log", "--out", "p.html"]
                .map(String::from)
                .to_vec(),
        )
        .unwrap();
        assert_eq!(r.command, "report");
        assert_eq!(r.log.as_deref(), Some(std::path::Path::new("x.log")));
        assert_eq!(r.out.as_deref(), Some(std::path::Path::new("p.html")));
        // a command word is only a command in first position
        assert!(parse_args(["--uefi", "test"].map(String::from).to_vec()).is_err());
    }
}
