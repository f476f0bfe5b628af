//! The Busmaster runner: builds nothing itself (the build script made the disk
//! images), boots them in QEMU with named profiles, and runs the test tiers.
//!
//! ```text
//! boot [run] [--profile NAME] [--uefi] [--cmdline "k=v ..."] [-- QEMU ARGS]
//! boot test [--host-log FILE --host-status N] [--only SUBSTRING]
//! boot image [--out DIR]
//! boot report [--profile NAME] [--out FILE] [--log FILE]
//! boot boot-time [--runs N]
//! boot profiles
//! ```

mod ktest;
mod labs;
mod oracle;
mod profile;
mod qemu;
mod report;
mod screencheck;

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
  run.sh test [--only SUBSTRING]
  run.sh image [--out DIR]
  run.sh report [--profile NAME] [--out FILE.html] [--log SERIAL_LOG]
  run.sh boot-time [--runs N]
  run.sh profiles";

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
    let args = parse_args(std::env::args().skip(1).collect()).unwrap_or_else(|e| fail(&e));
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

    println!("\nrunning in-QEMU tests");
    let limits = Limits {
        idle: Duration::from_secs(60),
        idle_after: None,
        overall: Duration::from_secs(600),
    };
    // `--only qemu::<profile>::...` names one profile: boot only that one.
    let only_profile = args
        .only
        .as_deref()
        .and_then(|o| o.strip_prefix("qemu::"))
        .and_then(|r| r.split("::").next())
        .filter(|p| !p.is_empty());
    for (name, firmware) in ktest::SUITE_PROFILES {
        if only_profile.is_some_and(|p| p != *name) {
            continue;
        }
        let mut launch = launch_for(
            &Args {
                profile: name.to_string(),
                ..args.clone()
            },
            SerialMode::Piped,
        );
        launch.firmware = *firmware;
        let run = ktest::run_suite(&images, &launch, None, &limits);
        for r in &run.records {
            let full = format!("qemu::{name}::{}", r.name);
            if !wanted(&full) {
                continue;
            }
            let detail = if r.context.is_empty() {
                r.reason.clone()
            } else {
                format!("{}\n{}", r.reason, r.context)
            };
            tally.record(&full, r.ok, &detail);
        }
        println!(
            "profile {name}: {} boot(s), {:.1} s in QEMU",
            run.boots,
            run.elapsed.as_secs_f64()
        );
    }
    let base = launch_for(&args.clone(), SerialMode::Piped);
    for meta in ktest::META_TESTS {
        let full = format!("qemu::default::{} (caught)", meta.test);
        if !wanted(&full) {
            continue;
        }
        match ktest::check_meta(meta, &images, &base) {
            Ok(()) => tally.record(&full, true, ""),
            Err(e) => tally.record(&full, false, &e),
        }
    }
    for profile_name in ["default", "pcie"] {
        let full = format!("qemu::{profile_name}::oracle::lspci_matches_qemu_info_pci");
        if !wanted(&full) {
            continue;
        }
        match oracle::check_pci(&images, profile_name) {
            Ok(n) => tally.record(&format!("{full} ({n} functions)"), true, ""),
            Err(e) => tally.record(&full, false, &e),
        }
    }
    // Keyboard and screen: BIOS gives a VESA mode (3 bytes/pixel), OVMF a
    // GOP mode (4 bytes/pixel).
    for profile_name in ["default", "uefi"] {
        let full = format!("qemu::{profile_name}::console::keyboard_types_and_screen_shows");
        if !wanted(&full) {
            continue;
        }
        match screencheck::check(&images, profile_name) {
            Ok(summary) => tally.record(&format!("{full} ({summary})"), true, ""),
            Err(e) => tally.record(&full, false, &e),
        }
    }
    match labs::load() {
        Ok(all) => {
            for lab in all {
                let full = format!("qemu::{}::lab::{}", lab.profile, lab.name);
                if !wanted(&full) {
                    continue;
                }
                match labs::run(&lab, &images) {
                    Ok(()) => tally.record(&full, true, ""),
                    Err(e) => tally.record(&full, false, &e),
                }
            }
        }
        Err(e) => tally.record("qemu::labs::load", false, &e),
    }
    for (fw, label) in [(Firmware::Bios, "bios"), (Firmware::Uefi, "uefi")] {
        let full = format!("qemu::default::image::written_{label}_image_boots_from_a_usb_stick");
        if !wanted(&full) {
            continue;
        }
        match usb_boot(&images, fw) {
            Ok(()) => tally.record(&full, true, ""),
            Err(e) => tally.record(&full, false, &e),
        }
    }
    let full = "qemu::default::report::html_renders_in_chromium";
    if wanted(full) {
        let launch = launch_for(
            &Args {
                profile: "default".into(),
                cmdline: String::new(),
                ..args.clone()
            },
            SerialMode::Piped,
        );
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/report-test"
        ));
        match report::check_in_chromium(&images, &launch, &dir) {
            Ok(shot) => tally.record(&format!("{full} (screenshot {shot})"), true, ""),
            Err(e) => tally.record(full, false, &e),
        }
    }
    for case in ktest::SHELL_CASES {
        let full = format!("qemu::{}::shell::{}", case.profile, case.name);
        if !wanted(&full) {
            continue;
        }
        match ktest::check_shell_case(case, &images) {
            Ok(_) => tally.record(&full, true, ""),
            Err(e) => tally.record(&full, false, &e),
        }
    }
    println!();
    println!(
        "host: {host_passed} passed, {host_failed} failed; qemu: {} passed, {} failed",
        tally.passed, tally.failed
    );
    for f in &tally.failures {
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
fn usb_boot(images: &Images, firmware: Firmware) -> Result<(), String> {
    let out = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../target/tmp/usb-images"
    ));
    let [bios, uefi] = write_images(images, &out)?;
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
    let limits = Limits {
        idle: Duration::from_secs(60),
        idle_after: None,
        overall: Duration::from_secs(120),
    };
    let t = qemu::drive(session, &limits, false);
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

/// Copies the BIOS and UEFI disk images into `out`; returns their paths.
fn write_images(images: &Images, out: &std::path::Path) -> Result<[PathBuf; 2], String> {
    std::fs::create_dir_all(out).map_err(|e| format!("creating {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for (src, name) in [
        (&images.bios, "busmaster-bios.img"),
        (&images.uefi, "busmaster-uefi.img"),
    ] {
        let dst = out.join(name);
        std::fs::copy(src, &dst)
            .map_err(|e| format!("copying {} to {}: {e}", src.display(), dst.display()))?;
        written.push(dst);
    }
    Ok([written[0].clone(), written[1].clone()])
}

/// Copies the disk images somewhere stable and says how to use them.
fn image(args: &Args) -> i32 {
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from("target/images"));
    let written = match write_images(&images(), &out) {
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
    for (label, profile_name) in [("bios", "default"), ("uefi", "uefi")] {
        let mut times = Vec::new();
        for _ in 0..args.runs.max(1) {
            let launch = launch_for(
                &Args {
                    profile: profile_name.into(),
                    ..args.clone()
                },
                SerialMode::Piped,
            );
            let session = match Session::spawn(&launch, &images) {
                Ok(s) => s,
                Err(e) => {
                    eprintln!("boot: {e}");
                    return 1;
                }
            };
            qemu::feed_input(&session, b"poweroff\n");
            let limits = Limits {
                idle: Duration::from_secs(30),
                idle_after: None,
                overall: Duration::from_secs(60),
            };
            let t = qemu::drive(session, &limits, false);
            match t.first_prompt {
                Some(d) => times.push(d.as_secs_f64()),
                None => {
                    eprintln!("boot: {label}: no prompt ({})", t.end.describe());
                    return 1;
                }
            }
        }
        times.sort_by(|a, b| a.total_cmp(b));
        let median = times[times.len() / 2];
        let list: Vec<String> = times.iter().map(|t| format!("{t:.2}")).collect();
        println!(
            "boot-time {label}: QEMU start -> prompt median {median:.2} s over {} runs [{}]",
            times.len(),
            list.join(", ")
        );
    }
    0
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
