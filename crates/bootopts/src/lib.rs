//! `bootopts`: the boot options file a Busmaster disk image carries, so a PC
//! booted from a USB stick (no QEMU fw_cfg) can be given options.
//!
//! The file is the bootloader's *ramdisk*: bootloader 0.11 copies the file
//! named [`FILE_NAME`] from the image's FAT boot partition into memory (BIOS
//! and UEFI alike) and reports where in `BootInfo`. The build script puts
//! [`TEMPLATE`] there (comments only, no options); `./run.sh image --cmdline`
//! writes [`render`]'s text instead; a user may edit the file on the stick from
//! any OS. The kernel runs [`parse`] on what it finds: text lines, `#` starting
//! a comment, the other words being options (`key=value` or a bare `key`).
//!
//! Kept free of the kernel so both the host tools and the host tests use it.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

use alloc::string::String;
use core::fmt;

/// The file's name on the image's FAT partition, as bootloader 0.11 looks it
/// up (`RAMDISK_FILE_NAME` in its image builder, `"ramdisk"` in its BIOS
/// stage 2 and UEFI loader).
pub const FILE_NAME: &str = "ramdisk";

/// The largest file the kernel takes, in bytes; anything longer is ignored as
/// not being an options file.
pub const MAX_LEN: usize = 4096;

/// What a freshly built image carries: an explanation and no options.
///
/// Never empty: bootloader 0.11 cannot boot with an empty ramdisk (its UEFI
/// loader panics allocating zero pages, its BIOS stage 2 never reaches the
/// kernel); with no file at all it boots without one.
pub const TEMPLATE: &str = "\
# Busmaster boot options. Write them below, separated by spaces, e.g.
#   iommu=force-off iommu.igfx=off intremap=off
# (README.md \"Boot options\" lists them). A # starts a comment to the end
# of its line. Keep this file under 4096 bytes and never empty (an empty
# file stops the bootloader; delete the file instead). In QEMU the runner's
# --cmdline options come after these and win for a repeated key.
";

/// Why a file is not taken as an options file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Longer than [`MAX_LEN`].
    TooLong {
        /// The file's length in bytes.
        len: usize,
    },
    /// A NUL byte: binary data, not text.
    Nul {
        /// Offset of the first NUL.
        offset: usize,
    },
    /// Not UTF-8 text.
    NotUtf8 {
        /// Offset of the first byte that is not valid UTF-8.
        offset: usize,
    },
    /// A control character other than tab, line feed and carriage return.
    Control {
        /// Offset of the character.
        offset: usize,
        /// The byte.
        byte: u8,
    },
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseError::TooLong { len } => {
                write!(
                    f,
                    "{len} bytes, more than the {MAX_LEN} an options file may hold"
                )
            }
            ParseError::Nul { offset } => {
                write!(f, "byte {offset} is NUL: binary data, not a text file")
            }
            ParseError::NotUtf8 { offset } => write!(f, "byte {offset} is not UTF-8 text"),
            ParseError::Control { offset, byte } => write!(
                f,
                "byte {offset} is the control character {byte:#04x}: not a text file"
            ),
        }
    }
}

/// A parsed options file: its text, checked.
#[derive(Debug, Clone, Copy)]
pub struct Options<'a> {
    text: &'a str,
}

impl<'a> Options<'a> {
    /// The options, in file order: every word of every line up to a word
    /// starting with `#` (the rest of that line is a comment).
    pub fn words(&self) -> impl Iterator<Item = &'a str> + 'a {
        self.text.lines().flat_map(|line| {
            line.split_ascii_whitespace()
                .take_while(|w| !w.starts_with('#'))
        })
    }

    /// How many options [`Options::words`] gives.
    pub fn count(&self) -> usize {
        self.words().count()
    }
}

/// Checks that `bytes` are an options file (text of at most [`MAX_LEN`]
/// bytes, a UTF-8 byte order mark allowed) and gives its options. Only the
/// length is looked at when the file is too long.
pub fn parse(bytes: &[u8]) -> Result<Options<'_>, ParseError> {
    if bytes.len() > MAX_LEN {
        return Err(ParseError::TooLong { len: bytes.len() });
    }
    if let Some(offset) = bytes.iter().position(|&b| b == 0) {
        return Err(ParseError::Nul { offset });
    }
    let text = core::str::from_utf8(bytes).map_err(|e| ParseError::NotUtf8 {
        offset: e.valid_up_to(),
    })?;
    if let Some((offset, byte)) = text
        .bytes()
        .enumerate()
        .find(|&(_, b)| (b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r')) || b == 0x7f)
    {
        return Err(ParseError::Control { offset, byte });
    }
    Ok(Options {
        text: text.strip_prefix('\u{feff}').unwrap_or(text),
    })
}

/// Why options cannot be written into an options file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// The file would be longer than [`MAX_LEN`].
    TooLong {
        /// The length it would have, in bytes.
        len: usize,
    },
    /// A character that is not printable ASCII (options are ASCII words; line
    /// breaks and tabs only separate them).
    Unprintable {
        /// Its offset in the options.
        offset: usize,
        /// The character.
        ch: char,
    },
    /// A word starting with `#` would be read back as a comment.
    Comment {
        /// The word.
        word: String,
    },
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RenderError::TooLong { len } => write!(
                f,
                "the options file would be {len} bytes, more than the {MAX_LEN} the kernel reads (the header takes {})",
                TEMPLATE.len()
            ),
            RenderError::Unprintable { offset, ch } => write!(
                f,
                "character {offset} of the options ({ch:?}) is not printable ASCII"
            ),
            RenderError::Comment { word } => {
                write!(f, "the option {word:?} starts with '#', which begins a comment")
            }
        }
    }
}

/// The options file holding `options` (words separated by any whitespace):
/// [`TEMPLATE`], then the options on one line. [`parse`] of the result gives
/// the same words back.
pub fn render(options: &str) -> Result<String, RenderError> {
    if let Some((offset, ch)) = options
        .chars()
        .enumerate()
        .find(|&(_, c)| !(c.is_ascii_graphic() || c.is_ascii_whitespace()))
    {
        return Err(RenderError::Unprintable { offset, ch });
    }
    let mut text = String::from(TEMPLATE);
    let mut first = true;
    for word in options.split_ascii_whitespace() {
        if word.starts_with('#') {
            return Err(RenderError::Comment { word: word.into() });
        }
        if !first {
            text.push(' ');
        }
        text.push_str(word);
        first = false;
    }
    if !first {
        text.push('\n');
    }
    if text.len() > MAX_LEN {
        return Err(RenderError::TooLong { len: text.len() });
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(bytes: &[u8]) -> Vec<&str> {
        parse(bytes).unwrap().words().collect()
    }

    #[test]
    fn the_template_is_text_with_no_options() {
        assert!(TEMPLATE.starts_with('#'));
        assert!(TEMPLATE.len() < 512);
        assert_eq!(parse(TEMPLATE.as_bytes()).unwrap().count(), 0);
        assert_eq!(render("").unwrap(), TEMPLATE);
    }

    #[test]
    fn comments_and_blank_lines_are_skipped() {
        let file = b"# header\n\n   \n  # indented comment\niommu=force-off   iommu.igfx=off\n\tintremap=off # trailing comment pci=legacy\n#iommu=on\n";
        assert_eq!(
            words(file),
            ["iommu=force-off", "iommu.igfx=off", "intremap=off"]
        );
    }

    #[test]
    fn windows_line_ends_and_byte_order_mark_are_text() {
        let file = "\u{feff}# saved by Notepad\r\niommu=force-off\r\nintremap=off\r\n";
        assert_eq!(words(file.as_bytes()), ["iommu=force-off", "intremap=off"]);
        // no final line break, a bare key
        assert_eq!(words(b"iommu=pt nokey"), ["iommu=pt", "nokey"]);
        assert_eq!(words(b""), Vec::<&str>::new());
    }

    #[test]
    fn junk_is_refused_with_the_reason() {
        assert_eq!(
            parse(b"iommu=off\0\0").unwrap_err(),
            ParseError::Nul { offset: 9 }
        );
        assert_eq!(
            parse(b"iommu=\xff\xfe").unwrap_err(),
            ParseError::NotUtf8 { offset: 6 }
        );
        assert_eq!(
            parse(b"# x\niommu=on\x1b[2J").unwrap_err(),
            ParseError::Control {
                offset: 12,
                byte: 0x1b
            }
        );
        // An ELF header, as if a kernel had been copied over the file.
        let elf = b"\x7fELF\x02\x01\x01\x00";
        assert!(parse(elf).is_err());
        // Every error says what was wrong.
        for e in [
            parse(b"a\0").unwrap_err(),
            parse(b"\xc3").unwrap_err(),
            parse(b"\x07").unwrap_err(),
            parse(&[b' '; MAX_LEN + 1]).unwrap_err(),
        ] {
            assert!(!e.to_string().is_empty());
        }
    }

    #[test]
    fn too_long_is_refused_by_length_alone() {
        let mut big = vec![b'#'; MAX_LEN];
        assert_eq!(parse(&big).unwrap().count(), 0);
        big.push(b'\n');
        assert_eq!(
            parse(&big).unwrap_err(),
            ParseError::TooLong { len: MAX_LEN + 1 }
        );
        // Too long wins over junk: the bytes are not looked at.
        let junk = vec![0u8; 1 << 20];
        assert_eq!(
            parse(&junk).unwrap_err(),
            ParseError::TooLong { len: 1 << 20 }
        );
    }

    #[test]
    fn render_gives_the_same_words_back() {
        let text = render("  intremap=off\n iommu.strict=0\tpci.untrusted=00:03.0 ").unwrap();
        assert!(text.starts_with(TEMPLATE));
        assert!(text.ends_with("intremap=off iommu.strict=0 pci.untrusted=00:03.0\n"));
        assert_eq!(
            words(text.as_bytes()),
            ["intremap=off", "iommu.strict=0", "pci.untrusted=00:03.0"]
        );
    }

    #[test]
    fn render_refuses_what_would_not_read_back() {
        assert_eq!(
            render("iommu=on #x").unwrap_err(),
            RenderError::Comment { word: "#x".into() }
        );
        assert_eq!(
            render("iommu=é").unwrap_err(),
            RenderError::Unprintable {
                offset: 6, ch: 'é'
            }
        );
        assert!(matches!(
            render("a\u{7}").unwrap_err(),
            RenderError::Unprintable { offset: 1, .. }
        ));
        let room = MAX_LEN - TEMPLATE.len() - 1;
        let fits = "x".repeat(room);
        assert_eq!(render(&fits).unwrap().len(), MAX_LEN);
        let over = "x".repeat(room + 1);
        let e = render(&over).unwrap_err();
        assert_eq!(e, RenderError::TooLong { len: MAX_LEN + 1 });
        assert!(e.to_string().contains("4096"));
    }
}
