//! Turns the kernel (an artifact dependency built for x86_64-unknown-none)
//! into BIOS and UEFI disk images.
//!
//! The images get a copy of the kernel without debug info or symbols: the
//! BIOS loader reads the whole ELF through real-mode disk calls and copies it
//! a byte at a time, and under emulation an 11 MiB file took about 5 s of
//! every boot (the symbol table alone is a quarter of the stripped file). The
//! unstripped ELF stays where cargo built it, for GDB (its path is exported as
//! KERNEL_ELF).
//!
//! The loaders log warnings and errors only. At their default (trace) level
//! they draw every line on the framebuffer, pixel by pixel, which under
//! emulation was about a third of the time from power-on to the shell (see
//! docs/boot-time.md); a boot that goes wrong still says why, on the screen
//! and the serial port.
//!
//! Both images carry the boot options file (crates/bootopts): the bootloader's
//! ramdisk, a FAT file named `ramdisk` holding only a commented header, for a
//! user to fill in on the stick (or `./run.sh image --cmdline` to write).

use std::path::{Path, PathBuf};
use std::process::Command;

#[allow(dead_code)] // the build script uses only the table it writes
#[path = "src/ssdt.rs"]
mod ssdt;

/// llvm-objcopy from the toolchain's llvm-tools component, if installed.
fn objcopy() -> Option<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let out = Command::new(rustc)
        .arg("--print")
        .arg("sysroot")
        .output()
        .ok()?;
    let sysroot = PathBuf::from(String::from_utf8(out.stdout).ok()?.trim());
    let host = std::env::var("HOST").ok()?;
    let tool = sysroot
        .join("lib/rustlib")
        .join(host)
        .join("bin/llvm-objcopy");
    tool.exists().then_some(tool)
}

/// A debug-info-free copy of `kernel` in `out_dir`, or the original when the
/// tool is missing or fails (the images then just boot more slowly).
fn stripped(kernel: &Path, out_dir: &Path) -> PathBuf {
    let dst = out_dir.join("kernel-stripped");
    let Some(tool) = objcopy() else {
        println!("cargo:warning=llvm-objcopy not found (rustup component llvm-tools); images carry debug info");
        return kernel.to_path_buf();
    };
    match Command::new(&tool)
        .arg("--strip-all")
        .arg(kernel)
        .arg(&dst)
        .status()
    {
        Ok(s) if s.success() => dst,
        _ => {
            println!("cargo:warning=stripping the kernel failed; images carry debug info");
            kernel.to_path_buf()
        }
    }
}

fn main() {
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let kernel = PathBuf::from(
        std::env::var_os("CARGO_BIN_FILE_KERNEL_kernel").expect("the kernel artifact dependency"),
    );
    let image_kernel = stripped(&kernel, &out_dir);

    let mut config = bootloader::BootConfig::default();
    config.log_level = bootloader_boot_config::LevelFilter::Warn;
    let options_file = out_dir.join("boot-options.txt");
    std::fs::write(&options_file, bootopts::TEMPLATE).expect("writing the boot options template");
    let uefi_path = out_dir.join("busmaster-uefi.img");
    bootloader::UefiBoot::new(&image_kernel)
        .set_boot_config(&config)
        .set_ramdisk(&options_file)
        .create_disk_image(&uefi_path)
        .expect("creating the UEFI disk image");
    let bios_path = out_dir.join("busmaster-bios.img");
    bootloader::BiosBoot::new(&image_kernel)
        .set_boot_config(&config)
        .set_ramdisk(&options_file)
        .create_disk_image(&bios_path)
        .expect("creating the BIOS disk image");

    // The attack-external profile's SSDT (src/ssdt.rs), beside the images.
    std::fs::write(
        out_dir.join(ssdt::EXTERNAL_PORT_SSDT),
        ssdt::attack_external_ssdt(),
    )
    .expect("writing the external-facing-port SSDT");

    println!("cargo:rustc-env=UEFI_PATH={}", uefi_path.display());
    println!("cargo:rustc-env=BIOS_PATH={}", bios_path.display());
    println!("cargo:rustc-env=KERNEL_ELF={}", kernel.display());
}
