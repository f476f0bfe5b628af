//! Boot options: `key=value` words separated by spaces (`mode=test skip=3`),
//! read once at boot (Linux: `saved_command_line`) from the disk image's
//! options file and from QEMU's fw_cfg. A leaf: every layer may ask for an
//! option.

use alloc::string::String;
use alloc::vec::Vec;

pub struct Cmdline {
    raw: String,
    words: Vec<(String, String)>,
}

impl Cmdline {
    pub fn parse(raw: &str) -> Self {
        let words = raw
            .split_ascii_whitespace()
            .map(|w| match w.split_once('=') {
                Some((k, v)) => (k.into(), v.into()),
                None => (w.into(), String::new()),
            })
            .collect();
        Cmdline {
            raw: raw.trim().into(),
            words,
        }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.words
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    pub fn raw(&self) -> &str {
        &self.raw
    }
}

/// The boot options from both sources, in the order the kernel reads them:
/// the image's options file (`file`: the bootloader's ramdisk, if it loaded
/// one), then fw_cfg's command line. [`Cmdline::get`] takes a key's last
/// value, so QEMU's `--cmdline` overrides the file. A file that is not an
/// options file (binary, too long) is ignored with a warning. Logs where the
/// options came from.
pub fn assemble(file: Option<&[u8]>, fw_cfg: &str) -> String {
    let mut words: Vec<&str> = Vec::new();
    match file.map(bootopts::parse) {
        None => log::info!(
            "cmdline: the image has no options file (the bootloader found no file '{}')",
            bootopts::FILE_NAME
        ),
        Some(Err(e)) => log::warn!(
            "cmdline: the image's options file ({}) is ignored: {e}",
            bootopts::FILE_NAME
        ),
        Some(Ok(opts)) => {
            words.extend(opts.words());
            if words.is_empty() {
                log::info!(
                    "cmdline: no options in the image's options file ({})",
                    bootopts::FILE_NAME
                );
            } else {
                log::info!(
                    "cmdline: {} option(s) from the image's options file ({}):{}",
                    words.len(),
                    bootopts::FILE_NAME,
                    Joined(&words)
                );
            }
        }
    }
    let from_file = words.len();
    words.extend(fw_cfg.split_ascii_whitespace());
    if words.len() > from_file {
        log::info!(
            "cmdline: {} option(s) from fw_cfg (opt/busmaster/cmdline):{}",
            words.len() - from_file,
            Joined(&words[from_file..])
        );
    }
    words.join(" ")
}

/// Words, each after a space.
struct Joined<'a>(&'a [&'a str]);

impl core::fmt::Display for Joined<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        self.0.iter().try_for_each(|w| write!(f, " {w}"))
    }
}

static CMDLINE: spin::Once<Cmdline> = spin::Once::new();

/// Records the boot options (main, once [`assemble`] has read them); later
/// calls keep the first.
pub fn set_boot_cmdline(raw: &str) -> &'static Cmdline {
    CMDLINE.call_once(|| Cmdline::parse(raw))
}

/// The boot options (empty if asked before `set_boot_cmdline`).
pub fn boot_cmdline() -> &'static Cmdline {
    CMDLINE.call_once(|| Cmdline::parse(""))
}
