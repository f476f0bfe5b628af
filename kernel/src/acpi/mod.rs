//! Firmware tables and firmware interfaces (Linux: drivers/acpi/,
//! drivers/firmware/qemu_fw_cfg.c): the ACPI tables read once at boot
//! (`tables`: MADT, MCFG, HPET, FADT through `acpi_tables::platform`, on
//! the `acpi` crate; our own DMAR parser), QEMU's fw_cfg (`fwcfg`: the command line and files), and ACPI
//! power-off (`power`).

pub mod aml;
pub mod fwcfg;
pub mod power;
pub mod tables;

pub use tables::{get, init};
