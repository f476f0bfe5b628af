//! Boot options: `key=value` words separated by spaces (`mode=test skip=3`),
//! read once from fw_cfg (Linux: `saved_command_line`). A leaf: every layer may
//! ask for an option.

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

static CMDLINE: spin::Once<Cmdline> = spin::Once::new();

/// Records the boot options (main, once fw_cfg has been read); later calls keep
/// the first.
pub fn set_boot_cmdline(raw: &str) -> &'static Cmdline {
    CMDLINE.call_once(|| Cmdline::parse(raw))
}

/// The boot options (empty if asked before `set_boot_cmdline`).
pub fn boot_cmdline() -> &'static Cmdline {
    CMDLINE.call_once(|| Cmdline::parse(""))
}
