//! The serial shell: a prompt, a small line editor and one command table
//! (`commands::COMMANDS`) that every layer adds its commands to.

mod acpi_cmds;
mod commands;
pub mod dma_cmds;
mod fb_cmds;
mod iommu_cmds;
mod pci_cmds;

use alloc::string::String;
use core::fmt;

use crate::{kprint, kprintln, serial};

pub const PROMPT: &str = "busmaster> ";
/// Longest line the editor keeps; further characters are dropped.
pub const MAX_LINE: usize = 256;

/// What went wrong with a command line.
#[derive(Debug)]
pub enum CmdError {
    Unknown(String),
    Usage {
        cmd: &'static str,
        usage: &'static str,
    },
    Failed(String),
}

impl fmt::Display for CmdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CmdError::Unknown(name) => {
                write!(f, "unknown command '{name}' (type 'help' for the list)")
            }
            CmdError::Usage { cmd, usage } => write!(f, "usage: {cmd} {usage}"),
            CmdError::Failed(msg) => f.write_str(msg),
        }
    }
}

pub type CmdResult = Result<(), CmdError>;

/// One entry of the command table.
pub struct Command {
    pub name: &'static str,
    /// Argument synopsis, e.g. `"[cmd]"`; empty when the command takes none.
    pub usage: &'static str,
    pub summary: &'static str,
    pub run: fn(&Command, &[&str]) -> CmdResult,
}

impl Command {
    pub fn usage_error(&self) -> CmdError {
        CmdError::Usage {
            cmd: self.name,
            usage: if self.usage.is_empty() {
                "(takes no arguments)"
            } else {
                self.usage
            },
        }
    }

    /// For commands without arguments.
    pub fn no_args(&self, args: &[&str]) -> CmdResult {
        if args.is_empty() {
            Ok(())
        } else {
            Err(self.usage_error())
        }
    }
}

/// Parses a number as users type them: `0x` hex or decimal, with an optional
/// `K`, `M` or `G` suffix (binary multiples).
pub fn parse_u64(s: &str) -> Option<u64> {
    let (digits, mult) = match s.as_bytes().last()? {
        b'k' | b'K' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' | b'M' => (&s[..s.len() - 1], 1 << 20),
        b'g' | b'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let v = match digits
        .strip_prefix("0x")
        .or_else(|| digits.strip_prefix("0X"))
    {
        Some(hex) => u64::from_str_radix(hex, 16).ok()?,
        None => digits.parse().ok()?,
    };
    v.checked_mul(mult)
}

/// The `dmar` view into a string (for tests).
pub fn write_dmar_for_test(out: &mut alloc::string::String, d: &acpi_tables::dmar::Dmar) {
    let _ = acpi_cmds::write_dmar(out, d);
}

pub fn find(name: &str) -> Option<&'static Command> {
    commands::COMMANDS.iter().find(|c| c.name == name)
}

/// Runs one command line.
pub fn execute(line: &str) -> CmdResult {
    let mut words = line.split_ascii_whitespace();
    let Some(name) = words.next() else {
        return Ok(());
    };
    let args: alloc::vec::Vec<&str> = words.collect();
    match find(name) {
        Some(cmd) => (cmd.run)(cmd, &args),
        None => Err(CmdError::Unknown(name.into())),
    }
}

/// Result of feeding one input byte to the editor.
pub enum Edit {
    Pending,
    Line(String),
}

/// Line editing for a serial terminal: printable ASCII, backspace (BS or DEL),
/// Ctrl-C to drop the line, CR, LF or CR LF to end it. Escape sequences (arrow
/// keys) are swallowed.
pub struct LineEditor {
    line: String,
    last_was_cr: bool,
    escape: Escape,
}

#[derive(PartialEq)]
enum Escape {
    None,
    Esc,
    Csi,
}

impl Default for LineEditor {
    fn default() -> Self {
        Self::new()
    }
}

impl LineEditor {
    pub fn new() -> Self {
        LineEditor {
            line: String::new(),
            last_was_cr: false,
            escape: Escape::None,
        }
    }

    /// Feeds one byte; `echo` receives what the terminal should show.
    pub fn feed(&mut self, byte: u8, echo: &mut dyn FnMut(&str)) -> Edit {
        let after_cr = core::mem::replace(&mut self.last_was_cr, byte == b'\r');
        match self.escape {
            Escape::Esc => {
                self.escape = if byte == b'[' {
                    Escape::Csi
                } else {
                    Escape::None
                };
                return Edit::Pending;
            }
            Escape::Csi => {
                // Parameters and intermediates are 0x20..=0x3F; a final byte ends it.
                if (0x40..=0x7E).contains(&byte) {
                    self.escape = Escape::None;
                }
                return Edit::Pending;
            }
            Escape::None => {}
        }
        match byte {
            b'\n' if after_cr => Edit::Pending,
            b'\r' | b'\n' => {
                echo("\n");
                Edit::Line(core::mem::take(&mut self.line))
            }
            0x08 | 0x7F => {
                if self.line.pop().is_some() {
                    echo("\x08 \x08");
                }
                Edit::Pending
            }
            0x03 => {
                self.line.clear();
                echo("^C\n");
                Edit::Line(String::new())
            }
            0x1B => {
                self.escape = Escape::Esc;
                Edit::Pending
            }
            0x20..=0x7E => {
                if self.line.len() < MAX_LINE {
                    self.line.push(byte as char);
                    let mut buf = [0u8; 4];
                    echo((byte as char).encode_utf8(&mut buf));
                }
                Edit::Pending
            }
            _ => Edit::Pending,
        }
    }
}

/// The interactive loop; never returns (poweroff and reboot end it).
pub fn run() -> ! {
    kprintln!("Busmaster shell. Type 'help' for the commands.");
    let mut editor = LineEditor::new();
    kprint!("{PROMPT}");
    loop {
        let Some(byte) = serial::try_read_byte() else {
            if serial::rx_interrupt_enabled() {
                // Sleep until the UART (or the tick) interrupts; `sti; hlt`
                // is atomic, so a byte arriving in between still wakes us.
                x86_64::instructions::interrupts::enable_and_hlt();
            } else {
                core::hint::spin_loop();
            }
            continue;
        };
        if let Edit::Line(line) = editor.feed(byte, &mut |s| kprint!("{s}")) {
            if let Err(e) = execute(&line) {
                kprintln!("error: {e}");
            }
            kprint!("{PROMPT}");
        }
    }
}
