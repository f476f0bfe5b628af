//! The command table. Each layer adds its commands here, in one place, so
//! `help` and the test suite see them all.

use super::{CmdError, CmdResult, Command};
use crate::memmap::{self, Kind};
use crate::{heap, klog, kprint, kprintln, power, time};

pub static COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "[command]",
        summary: "list the commands, or show how to use one",
        run: help,
    },
    Command {
        name: "uptime",
        usage: "",
        summary: "time since boot, from the calibrated TSC",
        run: uptime,
    },
    Command {
        name: "meminfo",
        usage: "",
        summary: "physical memory by type, and the kernel heap",
        run: meminfo,
    },
    Command {
        name: "dmesg",
        usage: "",
        summary: "print the kernel log ring buffer",
        run: dmesg,
    },
    Command {
        name: "poweroff",
        usage: "",
        summary: "switch the machine off (ACPI S5; QEMU exits with status 0)",
        run: poweroff,
    },
    Command {
        name: "reboot",
        usage: "",
        summary: "reset the machine",
        run: reboot,
    },
];

fn help(cmd: &Command, args: &[&str]) -> CmdResult {
    match args {
        [] => {
            kprintln!("Commands:");
            for c in COMMANDS {
                let synopsis = alloc::format!("{} {}", c.name, c.usage);
                kprintln!("  {synopsis:<24} {}", c.summary);
            }
            kprintln!("'help <command>' shows one command.");
            Ok(())
        }
        [name] => match super::find(name) {
            Some(c) => {
                kprintln!("{} {}", c.name, c.usage);
                kprintln!("  {}", c.summary);
                Ok(())
            }
            None => Err(CmdError::Failed(alloc::format!(
                "help: no command '{name}' (type 'help' for the list)"
            ))),
        },
        _ => Err(cmd.usage_error()),
    }
}

fn uptime(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let ns = time::uptime_ns();
    let hz = time::tsc_hz();
    kprintln!(
        "up {}.{:06} s (TSC {}.{:03} GHz)",
        ns / 1_000_000_000,
        (ns / 1000) % 1_000_000,
        hz / 1_000_000_000,
        (hz / 1_000_000) % 1000
    );
    Ok(())
}

fn meminfo(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let kib = |b: u64| b / 1024;
    let all: u64 = memmap::regions().iter().map(|r| r.len()).sum();
    let ram = memmap::total(Kind::Usable) + memmap::total(Kind::Bootloader);
    kprintln!(
        "MemTotal:      {:>10} kB  (usable + in use by kernel/bootloader)",
        kib(ram)
    );
    for kind in Kind::ALL {
        let bytes = memmap::total(kind);
        if bytes > 0 {
            kprint!(
                "  {:<18}{:>10} kB\n",
                alloc::format!("{}:", kind.name()),
                kib(bytes)
            );
        }
    }
    kprintln!(
        "MapCovered:    {:>10} kB  in {} regions",
        kib(all),
        memmap::regions().len()
    );
    let (used, free) = heap::usage();
    kprintln!(
        "KernelHeap:    {:>10} kB used, {} kB free",
        used / 1024,
        free / 1024
    );
    Ok(())
}

fn dmesg(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    klog::with_ring(|chunk| kprint!("{}", alloc::string::String::from_utf8_lossy(chunk)));
    Ok(())
}

fn poweroff(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    power::poweroff()
}

fn reboot(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    power::reboot()
}
