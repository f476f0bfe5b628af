//! Third-party DMA: the i8237 rules and the floppy read through channel 2.

use alloc::vec::Vec;

use super::{KTest, TestResult};
use crate::drivers::floppy;
use crate::drivers::i8237::{self as isadma, Direction, IsaDmaError};
use crate::kassert;

pub static TESTS: &[KTest] = &[
    KTest {
        name: "isadma::buffer_rules_and_channel_ownership",
        run: rules,
        profiles: &[],
        manual: false,
    },
    KTest {
        name: "floppy::sectors_match_the_image_across_tracks",
        run: sectors,
        profiles: &["floppy"],
        manual: false,
    },
];

fn rules() -> TestResult {
    kassert!(
        isadma::check_buffer(0x10_0000, 0x1_0000).is_ok(),
        "a whole aligned 64 KiB block refused"
    );
    kassert!(
        isadma::check_buffer(0x1_FF00, 512)
            == Err(IsaDmaError::CrossesBoundary {
                phys: 0x1_FF00,
                len: 512,
                boundary: 0x1_0000
            }),
        "the crossing QEMU would not catch (hw-facts §6.4) was accepted"
    );
    kassert!(
        matches!(
            isadma::check_buffer(0xFF_FF00, 512),
            Err(IsaDmaError::Above16M { .. })
        ),
        "above 16 MiB accepted"
    );
    kassert!(
        isadma::check_buffer(0, 0x1_0001) == Err(IsaDmaError::TooLong(0x1_0001)),
        "65537 bytes accepted"
    );
    kassert!(
        isadma::check_buffer(0x5000, 0) == Err(IsaDmaError::Empty),
        "empty accepted"
    );
    // Ownership: the cascade is taken; a free channel can be claimed once.
    kassert!(
        matches!(
            isadma::request(4, "ktest"),
            Err(IsaDmaError::Busy {
                owner: "cascade",
                ..
            })
        ),
        "cascade claimable"
    );
    kassert!(
        // SAFETY: refused (the channel is not claimed) before any port write.
        unsafe { isadma::program(3, 0x10_0000, 16, Direction::FromMemory) }
            == Err(IsaDmaError::NotOwner(3)),
        "unowned channel programmed"
    );
    isadma::request(3, "ktest").map_err(|e| alloc::format!("{e}"))?;
    kassert!(
        matches!(
            isadma::request(3, "other"),
            Err(IsaDmaError::Busy { owner: "ktest", .. })
        ),
        "double claim"
    );
    // Programmed but with no device asserting DREQ, nothing moves: the count
    // register still holds the whole length.
    // SAFETY: nothing asserts DREQ 3, so the controller never reads the memory.
    unsafe { isadma::program(3, 0x10_0000, 300, Direction::FromMemory) }
        .map_err(|e| alloc::format!("{e}"))?;
    let left = isadma::residue(3);
    isadma::mask(3);
    isadma::free(3);
    kassert!(left == 300, "residue {left} after programming 300 bytes");
    kassert!(
        isadma::status() & 0x08 == 0,
        "terminal count on channel 3 without a transfer"
    );
    Ok(())
}

/// The image the runner generates (boot/src/profile.rs, `floppy_sector`).
fn expected(lba: u32) -> Vec<u8> {
    crate::dmaengine::dmatest::floppy_sector(lba)
}

fn sectors() -> TestResult {
    kassert!(floppy::present(), "no floppy controller initialised");
    // 16..20 spans the end of track 0 head 0 (sector 18) and head 1; 35..37
    // the move to cylinder 1; 2879 is the last sector.
    for (lba, count) in [(0u32, 1u32), (16, 5), (35, 3), (2879, 1)] {
        let mut data = Vec::new();
        let phys =
            floppy::read(lba, count, &mut data).map_err(|e| alloc::format!("LBA {lba}: {e}"))?;
        kassert!(phys < 16 << 20 && phys % 0x1_0000 == 0, "buffer {phys:#x}");
        for i in 0..count {
            let got = &data[i as usize * 512..(i as usize + 1) * 512];
            kassert!(
                got == expected(lba + i).as_slice(),
                "sector {} differs from the image",
                lba + i
            );
        }
    }
    let mut data = Vec::new();
    kassert!(
        floppy::read(2880, 1, &mut data).is_err(),
        "read past the end accepted"
    );
    kassert!(
        floppy::read(0, 0, &mut data).is_err(),
        "empty read accepted"
    );
    Ok(())
}
