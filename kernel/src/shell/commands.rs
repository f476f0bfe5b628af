//! The command table. Each layer adds its commands here, in one place, so
//! `help` and the test suite see them all.

use mm::pat::CacheType;

use super::{parse_u64, CmdError, CmdResult, Command};
use crate::acpi::power;
use crate::arch::{apic, tsc};
use crate::console::printk;
use crate::console::Out;
use crate::mm::memmap::{self, Kind};
use crate::mm::{self as kmm, heap};
use crate::{kprint, kprintln};

pub static COMMANDS: &[Command] = &[
    Command {
        name: "help",
        usage: "[<command>]",
        summary: "list the commands, or show how to use one",
        examples: &["help", "help edu"],
        run: help,
    },
    Command {
        name: "uptime",
        usage: "",
        summary: "time since boot, from the calibrated TSC",
        examples: &["uptime"],
        run: uptime,
    },
    Command {
        name: "meminfo",
        usage: "",
        summary: "physical memory by type, and the kernel heap",
        examples: &["meminfo"],
        run: meminfo,
    },
    Command {
        name: "buddyinfo",
        usage: "",
        summary: "free blocks per order (4 KiB .. 4 MiB) in each zone, like /proc/buddyinfo",
        examples: &["buddyinfo"],
        run: buddyinfo,
    },
    Command {
        name: "zoneinfo",
        usage: "",
        summary: "range, managed and free pages of the DMA, DMA32 and Normal zones",
        examples: &["zoneinfo"],
        run: zoneinfo,
    },
    Command {
        name: "ioremap",
        usage: "<phys> <size> [uc|uc-|wc|wt|wb]",
        summary:
            "map device memory (uncached by default), show the mapping and its first dword, unmap",
        examples: &[
            "ioremap 0xfed90000 0x1000     # the IOMMU's registers, uncached",
            "ioremap 0xfed90000 64 wc      # the same page write-combining (PAT index 4)",
        ],
        run: ioremap,
    },
    Command {
        name: "lspci",
        usage: "[-v|-t|-m]",
        summary: "PCI functions; -v BARs, capabilities, BusMaster, MSI, driver; -t tree; -m machine-readable",
        examples: &["lspci", "lspci -v", "lspci -t"],
        run: super::pci_cmds::lspci,
    },
    Command {
        name: "acpi",
        usage: "",
        summary: "the ACPI tables the firmware lists (signature, address, length, revision, OEM)",
        examples: &["acpi"],
        run: super::acpi_cmds::acpi,
    },
    Command {
        name: "dmar",
        usage: "",
        summary: "the DMAR table as our parser reads it: remapping units, RMRRs, device scopes",
        examples: &["dmar"],
        run: super::acpi_cmds::dmar,
    },
    Command {
        name: "edu",
        usage: "info | dma <to|from> <len> [--high | --unmapped]",
        summary: "QEMU's edu PCI device: info; DMA through the mapping API (--high: buffer above 256 MiB, must bounce)",
        examples: &[
            "edu info",
            "edu dma to 4000               # CPU -> device -> CPU through the mapping API",
            "edu dma to 4000 --high        # buffer above edu's 28-bit reach: bounces",
            "edu dma from 64 --unmapped    # device writes after unmap (iommu profile: blocked)",
        ],
        run: edu,
    },
    Command {
        name: "floppy",
        usage: "read <lba> [count]",
        summary: "read sectors from the floppy through ISA DMA channel 2 (third-party DMA) and dump them",
        examples: &["floppy read 0", "floppy read 0 2     # two sectors (floppy profile)"],
        run: floppy,
    },
    Command {
        name: "lsblk",
        usage: "",
        summary: "block devices: AHCI disks and NVMe namespaces with their controller, port, size and model",
        examples: &["lsblk"],
        run: super::blk_cmds::lsblk,
    },
    Command {
        name: "blk",
        usage: "read <dev> <lba> [count] | read <dev> <lba> <count> --show-sg [--first N] [--mask BITS] | write <dev> <lba> <count> --pattern <seed> | verify <dev> <lba> <count> --pattern <seed> | aer <nvme…> | stray <sd…>",
        summary: "read sectors from a disk by DMA through the block layer and hex-dump them; write a seeded pattern (then FLUSH) or check one; aer: an NVMe command QEMU never completes (timeout, reset); stray: an AHCI read whose second sector goes to an unmapped IOVA (VT-d fault, timeout, reset)",
        examples: &["blk read sda 0          # the boot disk's first sector", "blk read sda 2048 4", "blk read nvme0n1 0 2    # nvme profile", "blk write nvme0n1 100 8 --pattern 42", "blk verify nvme0n1 100 8 --pattern 42   # 'verified: 8 sectors match'", "blk read sdb 0 16 --show-sg   # scattered buffer: segments, PRDT (Lab 08)", "blk stray sdb           # storage profile: the IOMMU stops a stray disk write"],
        run: super::blk_cmds::blk,
    },
    Command {
        name: "blkbench",
        usage: "<dev> [--bs N] [--count N] [--qd N] [--rounds N] [--random] [--contig]",
        summary: "read throughput, IOPS and latency of a disk in every IOMMU mode (direct, swiotlb, strict, lazy) in one boot; the modes take turns (--rounds, 4), --qd keeps N reads in flight",
        examples: &["blkbench nvme0n1                  # 256 x 128 KiB sequential", "blkbench sda --bs 4k --count 512 --random", "blkbench nvme0n1 --qd 8           # 8 reads in flight"],
        run: super::blk_cmds::blkbench,
    },
    Command {
        name: "isadma",
        usage: "",
        summary: "ISA DMA channels in use, like /proc/dma",
        examples: &["isadma"],
        run: isadma,
    },
    Command {
        name: "dma",
        usage: "",
        summary: "DMA controllers and channels (dmaengine), devices with masks and live mappings, swiotlb, dma-debug",
        examples: &["dma"],
        run: super::dma_cmds::dma,
    },
    Command {
        name: "dmademo",
        usage: "coherent | streaming [--nosync] | sg [--pages | --maxseg N] | keep <len> | release",
        summary: "watch coherent vs streaming memory, a missing sync, and a scatter list, with edu; keep mappings alive to look at",
        examples: &[
            "dmademo streaming --nosync",
            "dmademo sg --pages",
            "dmademo sg --maxseg 512",
            "dmademo keep 8192        # hold a coherent and a streaming mapping (see 'iommu domains')",
            "dmademo release",
        ],
        run: super::dmademo_cmds::dmademo,
    },
    Command {
        name: "dmatest",
        usage: "[dmaNchanM|all] [iterations] [size] [--corrupt]",
        summary: "Linux-style dmatest: patterned copies verified with guard bytes, a summary per channel",
        examples: &["dmatest", "dmatest dma0chan0 20 4096", "dmatest dma0chan1 5 4096 --corrupt"],
        run: super::dmaengine_cmds::dmatest,
    },
    Command {
        name: "dmaengine",
        usage: "demo [cyclic]",
        summary: "walk the client steps: request, config, prep, submit, issue_pending, callback",
        examples: &["dmaengine demo", "dmaengine demo cyclic"],
        run: super::dmaengine_cmds::dmaengine_cmd,
    },
    Command {
        name: "dmabench",
        usage: "",
        summary: "time map+unmap of 4 KiB per backend against a 4 KiB memcpy",
        examples: &["dmabench"],
        run: super::dma_cmds::dmabench,
    },
    Command {
        name: "attack",
        usage: "[list] | <name> [--device <bb:dd.f>] | matrix",
        summary: "edu as a malicious device against the IOMMU: what it tried, what it got, what the kernel saw",
        examples: &["attack list", "attack kernel-write", "attack matrix"],
        run: super::attack_cmds::attack,
    },
    Command {
        name: "iommu",
        usage: "[domains | ir | faults | translate <bb:dd.f> <iova>]",
        summary: "VT-d units (CAP/ECAP decoded, mode), domains and mappings, the interrupt remapping table, fault history, table walks",
        examples: &[
            "iommu",
            "iommu domains",
            "iommu ir",
            "iommu faults",
            "iommu translate 00:03.0 0x1000",
        ],
        run: super::iommu_cmds::iommu,
    },
    Command {
        name: "irq",
        usage: "",
        summary: "interrupt counts per vector, with what each vector is for",
        examples: &["irq"],
        run: irq,
    },
    Command {
        name: "fbinfo",
        usage: "",
        summary: "the consoles: framebuffer geometry, pixel format and mapping, text grid, keyboard, serial",
        examples: &["fbinfo"],
        run: super::fb_cmds::fbinfo,
    },
    Command {
        name: "dmesg",
        usage: "",
        summary: "print the kernel log ring buffer",
        examples: &["dmesg"],
        run: dmesg,
    },
    Command {
        name: "poweroff",
        usage: "",
        summary: "switch the machine off (ACPI S5; QEMU exits with status 0)",
        examples: &["poweroff"],
        run: poweroff,
    },
    Command {
        name: "reboot",
        usage: "",
        summary: "reset the machine",
        examples: &["reboot"],
        run: reboot,
    },
];

fn help(cmd: &Command, args: &[&str]) -> CmdResult {
    match args {
        [] => {
            kprintln!("Commands:");
            let width = COMMANDS.iter().map(|c| c.name.len()).max().unwrap_or(0);
            for c in COMMANDS {
                kprintln!("  {:<width$}  {}", c.name, c.summary);
            }
            kprintln!("'help <command>' shows its usage and examples.");
            kprintln!("Tab completes commands and subcommands; Up/Down recall earlier lines.");
            Ok(())
        }
        [name] => match super::find(name) {
            Some(c) => {
                kprintln!("{} - {}", c.name, c.summary);
                if c.usage.is_empty() {
                    kprintln!("usage: {}   (no arguments)", c.name);
                } else {
                    kprintln!("usage: {} {}", c.name, c.usage);
                }
                kprintln!("example{}:", if c.examples.len() == 1 { "" } else { "s" });
                for e in c.examples {
                    kprintln!("  {e}");
                }
                Ok(())
            }
            None => Err(CmdError::Failed(match super::suggest(name) {
                Some(s) => alloc::format!("help: no command '{name}'; did you mean '{s}'?"),
                None => alloc::format!("help: no command '{name}' ('help' lists the commands)"),
            })),
        },
        _ => Err(cmd.usage_error()),
    }
}

fn uptime(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let ns = tsc::uptime_ns();
    let hz = tsc::tsc_hz();
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
    let mut free_pages = 0;
    for z in kmm::zone_stats() {
        free_pages += z.free_pages;
        kprintln!(
            "Zone {:<7}     {:>10} kB managed, {:>10} kB free",
            z.kind.name(),
            z.managed_pages * 4,
            z.free_pages * 4
        );
    }
    kprintln!("MemFree:       {:>10} kB", free_pages * 4);
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
    printk::with_ring(|chunk| kprint!("{}", alloc::string::String::from_utf8_lossy(chunk)));
    Ok(())
}

fn poweroff(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    power::poweroff()
}

fn reboot(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    crate::arch::reboot::reboot()
}

fn buddyinfo(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    kprintln!("order:                 0      1      2      3      4      5      6      7      8      9     10");
    let _ = kmm::write_buddyinfo(&mut Out);
    Ok(())
}

fn zoneinfo(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    let _ = kmm::write_zoneinfo(&mut Out);
    Ok(())
}

fn ioremap(cmd: &Command, args: &[&str]) -> CmdResult {
    let (phys, size, cache) = match args {
        [p, s] => (p, s, CacheType::Uncached),
        [p, s, c] => {
            let cache = match *c {
                "uc" => CacheType::Uncached,
                "uc-" => CacheType::UncachedMinus,
                "wc" => CacheType::WriteCombining,
                "wt" => CacheType::WriteThrough,
                "wb" => CacheType::WriteBack,
                other => {
                    return Err(cmd.bad_arg(alloc::format!(
                        "cache type '{other}' is not uc, uc-, wc, wt or wb"
                    )))
                }
            };
            (p, s, cache)
        }
        _ => return Err(cmd.usage_error()),
    };
    let phys =
        parse_u64(phys).ok_or_else(|| cmd.bad_arg(alloc::format!("bad address '{phys}'")))?;
    let size = parse_u64(size).ok_or_else(|| cmd.bad_arg(alloc::format!("bad size '{size}'")))?;
    // A viewing command: one page-table entry per 4 KiB, so keep it small.
    const MAX_VIEW: u64 = 16 << 20;
    if size > MAX_VIEW {
        return Err(CmdError::Failed(alloc::format!(
            "ioremap: {size:#x} bytes is more than this command maps (16 MiB)"
        )));
    }
    let region = kmm::ioremap_with(phys, size, cache)
        .map_err(|e| CmdError::Failed(alloc::format!("ioremap: {e}")))?;
    let va = region.virt();
    let page = va.align_down(4096u64);
    match kmm::translate(page) {
        Some(t) => kprintln!(
            "ioremap {phys:#x}+{size:#x} -> {:#x}: {}, PAT index {}, PTE {:#018x}",
            va.as_u64(),
            t.cache.name(),
            mm::pat::pat_index(t.cache),
            t.raw
        ),
        None => kprintln!(
            "ioremap {phys:#x}+{size:#x} -> {:#x}: no translation?",
            va.as_u64()
        ),
    }
    kprintln!(
        "region: phys {:#x}, {} bytes, requested type {}",
        region.phys(),
        region.size(),
        region.cache().name()
    );
    if size >= 4 && phys % 4 == 0 {
        kprintln!("first dword: {:#010x}", region.read32(0));
    }
    drop(region);
    kprintln!(
        "unmapped; translation now {:?}",
        kmm::translate(page).map(|t| t.phys)
    );
    Ok(())
}

fn irq(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    kprintln!("vector  count       source");
    for v in 32..=255u8 {
        let n = crate::arch::idt::irq_count(v);
        if n > 0 {
            match crate::arch::irq_remap::irte_of(v) {
                Some(i) => kprintln!(
                    "{v:#04x}    {n:<10}  {}  [remapped: IRTE {i}]",
                    apic::vector_name(v)
                ),
                None => kprintln!("{v:#04x}    {n:<10}  {}", apic::vector_name(v)),
            }
        }
    }
    if crate::arch::irq_remap::enabled() {
        kprintln!(
            "interrupt remapping on: device MSIs and IO-APIC lines come through IRTEs (`iommu ir`)"
        );
    } else {
        kprintln!("interrupt remapping off: every interrupt message is in compatibility format");
    }
    kprintln!(
        "LAPIC timer: {} ticks at {} Hz (timer clock {} kHz)",
        apic::ticks(),
        apic::TICK_HZ,
        apic::timer_hz() / 1000
    );
    intx_routes();
    Ok(())
}

/// Each PCI function's INTx pin and the IO-APIC input the firmware's `_PRT`
/// routes it to, with the line's state when a driver took it.
fn intx_routes() {
    let routes = crate::pci::intx::routes();
    if routes.is_empty() {
        kprintln!("PCI INTx: no routes (no function with a pin, or the AML did not load)");
        return;
    }
    kprintln!("PCI INTx pins, routed by _PRT:");
    for (bdf, pin, r) in routes {
        let pin_name = crate::pci::intx::pin_name(pin);
        match r {
            Ok(r) => {
                let swizzled = if r.looked_up != (bdf.device, pin) || bdf.bus != 0 {
                    alloc::format!(
                        " (through the bridges: slot {:#04x} INT{})",
                        r.looked_up.0,
                        crate::pci::intx::pin_name(r.looked_up.1)
                    )
                } else {
                    alloc::string::String::new()
                };
                let line = match apic::shared_gsi_info(r.gsi) {
                    Some((_, _, n, unclaimed)) => alloc::format!(
                        "; line in use by {n} handler(s), {unclaimed} interrupt(s) nobody claimed"
                    ),
                    None => alloc::string::String::new(),
                };
                kprintln!(
                    "  {bdf} INT{pin_name} -> GSI {} ({}, active {}) via {}{}{swizzled}{line}",
                    r.gsi,
                    if r.level { "level" } else { "edge" },
                    if r.active_low { "low" } else { "high" },
                    r.prt,
                    r.link
                        .as_deref()
                        .map_or(alloc::string::String::new(), |l| alloc::format!(
                            " link {l}"
                        ))
                );
            }
            Err(e) => kprintln!("  {bdf} INT{pin_name}: no route ({e})"),
        }
    }
}

fn edu(cmd: &Command, args: &[&str]) -> CmdResult {
    match args {
        ["info"] => crate::drivers::edu::info(&mut Out)
            .map_err(|e| CmdError::Failed(alloc::format!("edu: {e}"))),
        ["dma", ..] => super::dma_cmds::edu_dma(cmd, args),
        [sub, ..] if !["info", "dma"].contains(sub) => {
            Err(cmd.bad_arg(alloc::format!("unknown subcommand '{sub}'")))
        }
        _ => Err(cmd.usage_error()),
    }
}

fn floppy(cmd: &Command, args: &[&str]) -> CmdResult {
    let (lba, count) = match args {
        ["read", lba] => (lba, "1"),
        ["read", lba, count] => (lba, *count),
        _ => return Err(cmd.usage_error()),
    };
    let bad = |what: &str, v: &str| cmd.bad_arg(alloc::format!("bad {what} '{v}'"));
    let lba = parse_u64(lba)
        .and_then(|v| u32::try_from(v).ok())
        .ok_or_else(|| bad("sector number", lba))?;
    let count = parse_u64(count)
        .and_then(|v| u32::try_from(v).ok())
        .filter(|c| (1..=36).contains(c))
        .ok_or_else(|| bad("count (1..36)", count))?;
    let mut data = alloc::vec::Vec::new();
    let phys = crate::drivers::floppy::read(lba, count, &mut data)
        .map_err(|e| CmdError::Failed(alloc::format!("floppy: {e}")))?;
    kprintln!("floppy: {count} sector(s) from LBA {lba}, DMA'd by the 8237 to {phys:#x}");
    hexdump(&data, lba as u64 * 512);
    Ok(())
}

/// `offset: 16 hex bytes |ascii|` lines.
pub fn hexdump(data: &[u8], base: u64) {
    for (i, chunk) in data.chunks(16).enumerate() {
        let mut line = alloc::format!("{:08x}: ", base + i as u64 * 16);
        for b in chunk {
            let _ = core::fmt::Write::write_fmt(&mut line, format_args!("{b:02x} "));
        }
        line.push('|');
        line.extend(chunk.iter().map(|&b| {
            if (0x20..0x7f).contains(&b) {
                b as char
            } else {
                '.'
            }
        }));
        line.push('|');
        kprintln!("{line}");
    }
}

fn isadma(cmd: &Command, args: &[&str]) -> CmdResult {
    cmd.no_args(args)?;
    for (ch, owner) in crate::drivers::i8237::claimed() {
        kprintln!("{ch:>2}: {owner}");
    }
    Ok(())
}
