//! The boot options file inside a written disk image (`./run.sh image
//! --cmdline`): finds the FAT boot partition through the partition table (MBR
//! for the BIOS image, GPT for the UEFI one) and rewrites the file named
//! `bootopts::FILE_NAME` through the `fatfs` crate, so the result is an
//! ordinary FAT file any OS can read and edit.

use std::fmt;
use std::io::{Cursor, Read, Seek, SeekFrom, Write};
use std::path::Path;

const SECTOR: u64 = 512;
/// GPT's type GUID of an EFI system partition, C12A7328-F81F-11D2-BA4B-00A0C93EC93B,
/// as stored on disk (the first three fields little-endian).
const ESP_GUID: [u8; 16] = [
    0x28, 0x73, 0x2a, 0xc1, 0x1f, 0xf8, 0xd2, 0x11, 0xba, 0x4b, 0x00, 0xa0, 0xc9, 0x3e, 0xc9, 0x3b,
];
/// MBR partition types of FAT file systems (FAT12, FAT16 small/large/LBA, FAT32 CHS/LBA).
const FAT_TYPES: [u8; 6] = [0x01, 0x04, 0x06, 0x0e, 0x0b, 0x0c];

#[derive(Debug)]
pub enum OptionsError {
    /// The options cannot be put into an options file.
    Render(bootopts::RenderError),
    /// The file in the image is not an options file.
    Parse(bootopts::ParseError),
    /// Reading or writing the image file.
    Io(&'static str, std::io::Error),
    /// No MBR boot signature, no GPT header, or no FAT partition in either.
    NoPartition(&'static str),
    /// The FAT file system (opening it, the file, writing it).
    Fat(&'static str, std::io::Error),
}

impl fmt::Display for OptionsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OptionsError::Render(e) => write!(f, "{e}"),
            OptionsError::Parse(e) => write!(f, "not an options file: {e}"),
            OptionsError::Io(what, e) => write!(f, "{what}: {e}"),
            OptionsError::NoPartition(why) => write!(f, "no FAT boot partition: {why}"),
            OptionsError::Fat(what, e) => write!(f, "FAT partition: {what}: {e}"),
        }
    }
}

fn le32(b: &[u8], at: usize) -> u64 {
    u64::from(u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]))
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut v = [0u8; 8];
    v.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(v)
}

/// The FAT boot partition's byte range (start, length) in `image`.
fn fat_partition(image: &mut std::fs::File) -> Result<(u64, u64), OptionsError> {
    let io = |e| OptionsError::Io("reading the partition table", e);
    let mut head = [0u8; 2 * SECTOR as usize];
    image.seek(SeekFrom::Start(0)).map_err(io)?;
    image.read_exact(&mut head).map_err(io)?;
    if head[510..512] != [0x55, 0xaa] {
        return Err(OptionsError::NoPartition("no MBR boot signature"));
    }
    let entries: Vec<&[u8]> = (0..4).map(|i| &head[446 + 16 * i..462 + 16 * i]).collect();
    if entries.iter().any(|e| e[4] == 0xee) {
        // Protective MBR: the GPT header is in LBA 1.
        let gpt = &head[SECTOR as usize..];
        if &gpt[..8] != b"EFI PART" {
            return Err(OptionsError::NoPartition(
                "protective MBR without a GPT header",
            ));
        }
        let (table, count, size) = (le64(gpt, 72), le32(gpt, 80), le32(gpt, 84));
        if !(128..=4096).contains(&size) || count > 1024 {
            return Err(OptionsError::NoPartition("GPT header out of range"));
        }
        let mut raw = vec![0u8; (count * size) as usize];
        image.seek(SeekFrom::Start(table * SECTOR)).map_err(io)?;
        image.read_exact(&mut raw).map_err(io)?;
        return raw
            .chunks(size as usize)
            .find(|e| e[..16] == ESP_GUID)
            .map(|e| {
                let (first, last) = (le64(e, 32), le64(e, 40));
                (first * SECTOR, (last + 1).saturating_sub(first) * SECTOR)
            })
            .ok_or(OptionsError::NoPartition(
                "no EFI system partition in the GPT",
            ));
    }
    entries
        .iter()
        .find(|e| FAT_TYPES.contains(&e[4]))
        .map(|e| (le32(e, 8) * SECTOR, le32(e, 12) * SECTOR))
        .ok_or(OptionsError::NoPartition(
            "no FAT partition in the MBR's table",
        ))
}

/// Runs `f` on the image's FAT file system; with `write`, stores the
/// partition back afterwards.
fn with_fat<T>(
    image: &Path,
    write: bool,
    f: impl FnOnce(&fatfs::FileSystem<&mut Cursor<Vec<u8>>>) -> Result<T, OptionsError>,
) -> Result<T, OptionsError> {
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .write(write)
        .open(image)
        .map_err(|e| OptionsError::Io("opening the image", e))?;
    let (start, len) = fat_partition(&mut file)?;
    let io = |e| OptionsError::Io("reading the FAT partition", e);
    let mut part = vec![0u8; len as usize];
    file.seek(SeekFrom::Start(start)).map_err(io)?;
    file.read_exact(&mut part).map_err(io)?;
    let mut disk = Cursor::new(part);
    let out = {
        let fs = fatfs::FileSystem::new(&mut disk, fatfs::FsOptions::new())
            .map_err(|e| OptionsError::Fat("opening the file system", e))?;
        let out = f(&fs)?;
        fs.unmount()
            .map_err(|e| OptionsError::Fat("closing the file system", e))?;
        out
    };
    if write {
        let io = |e| OptionsError::Io("writing the FAT partition back", e);
        file.seek(SeekFrom::Start(start)).map_err(io)?;
        file.write_all(disk.get_ref()).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    Ok(out)
}

/// Checks that `options` fit an options file, before anything is written.
pub fn render(options: &str) -> Result<String, OptionsError> {
    bootopts::render(options).map_err(OptionsError::Render)
}

/// Rewrites the image's options file to hold `options` (after the template's
/// comment header).
pub fn set_options(image: &Path, options: &str) -> Result<(), OptionsError> {
    let text = render(options)?;
    set_file_bytes(image, text.as_bytes())
}

/// Replaces the options file's contents with `bytes`, whatever they are (the
/// suite's junk files; `set_options` for options).
pub fn set_file_bytes(image: &Path, bytes: &[u8]) -> Result<(), OptionsError> {
    with_fat(image, true, |fs| {
        let fat = |what| move |e| OptionsError::Fat(what, e);
        let mut file = fs
            .root_dir()
            .open_file(bootopts::FILE_NAME)
            .map_err(fat("opening the options file (ramdisk)"))?;
        file.truncate()
            .map_err(fat("truncating the options file"))?;
        file.write_all(bytes)
            .map_err(fat("writing the options file"))?;
        file.flush().map_err(fat("writing the options file"))
    })
}

/// The image's options file, as stored.
pub fn read_options(image: &Path) -> Result<Vec<u8>, OptionsError> {
    read_file(image, bootopts::FILE_NAME)
}

/// A file in the root of the image's FAT partition.
fn read_file(image: &Path, name: &str) -> Result<Vec<u8>, OptionsError> {
    with_fat(image, false, |fs| {
        let fat = |what| move |e| OptionsError::Fat(what, e);
        let mut file = fs
            .root_dir()
            .open_file(name)
            .map_err(fat("opening a file"))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(fat("reading a file"))?;
        Ok(bytes)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn scratch(name: &str) -> PathBuf {
        let dir = PathBuf::from(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../target/tmp/imageopts"
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir.join(format!("{name}-{}.img", std::process::id()))
    }

    fn built() -> [(&'static str, PathBuf); 2] {
        [
            ("bios", PathBuf::from(env!("BIOS_PATH"))),
            ("uefi", PathBuf::from(env!("UEFI_PATH"))),
        ]
    }

    #[test]
    fn built_images_carry_the_template_with_no_options() {
        for (label, img) in built() {
            let bytes = read_options(&img).unwrap_or_else(|e| panic!("{label}: {e}"));
            assert_eq!(bytes, bootopts::TEMPLATE.as_bytes(), "{label}");
            assert_eq!(bootopts::parse(&bytes).unwrap().count(), 0, "{label}");
        }
    }

    #[test]
    fn set_options_rewrites_the_file_in_both_images() {
        for (label, img) in built() {
            let copy = scratch(label);
            std::fs::copy(&img, &copy).unwrap();
            let kernel = read_file(&copy, "kernel-x86_64").unwrap();
            set_options(&copy, "intremap=off  iommu.strict=0").unwrap();
            let bytes = read_options(&copy).unwrap();
            let words: Vec<&str> = bootopts::parse(&bytes).unwrap().words().collect();
            assert_eq!(words, ["intremap=off", "iommu.strict=0"], "{label}");
            // The image is as long as before, the kernel beside the file intact.
            assert_eq!(
                std::fs::metadata(&copy).unwrap().len(),
                std::fs::metadata(&img).unwrap().len()
            );
            assert!(
                read_file(&copy, "kernel-x86_64").unwrap() == kernel,
                "{label}"
            );
            // No options: the template again.
            set_options(&copy, "").unwrap();
            assert_eq!(read_options(&copy).unwrap(), bootopts::TEMPLATE.as_bytes());
            std::fs::remove_file(&copy).unwrap();
        }
    }

    #[test]
    fn too_long_options_are_refused_before_the_image_is_touched() {
        let (_, img) = &built()[0];
        let copy = scratch("long");
        std::fs::copy(img, &copy).unwrap();
        let before = std::fs::read(&copy).unwrap();
        let e = set_options(&copy, &"x".repeat(bootopts::MAX_LEN)).unwrap_err();
        assert!(matches!(e, OptionsError::Render(_)), "{e}");
        assert!(e.to_string().contains("more than the 4096"), "{e}");
        assert!(std::fs::read(&copy).unwrap() == before);
        std::fs::remove_file(&copy).unwrap();
    }

    #[test]
    fn a_file_without_a_partition_table_is_refused() {
        let path = scratch("blank");
        std::fs::write(&path, vec![0u8; 4096]).unwrap();
        let e = set_options(&path, "iommu=on").unwrap_err();
        assert!(matches!(e, OptionsError::NoPartition(_)), "{e}");
        std::fs::remove_file(&path).unwrap();
    }
}
