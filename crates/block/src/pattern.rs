//! The test pattern `blk write --pattern` puts on a disk and `blk verify` checks: a
//! pure function of the seed, the sector number and the byte's place in the sector,
//! so the host can compute the same bytes from the image file (an external check).
//!
//! Byte `i` of sector `lba` is byte `i % 8` (little-endian) of
//! `splitmix64(seed·φ ⊕ lba·K ⊕ i/8)`, where φ = `0x9E37_79B9_7F4A_7C15`,
//! K = `0xBF58_476D_1CE4_E5B9` and `splitmix64` is the finaliser of Vigna's SplitMix64
//! (`z ^= z >> 30; z *= 0xBF58476D1CE4E5B9; z ^= z >> 27; z *= 0x94D049BB133111EB;
//! z ^= z >> 31`). Every sector differs from every other and from every other seed's.

const PHI: u64 = 0x9E37_79B9_7F4A_7C15;
const K: u64 = 0xBF58_476D_1CE4_E5B9;

/// The finaliser of Vigna's SplitMix64: a bijective mix of all 64 bits (also
/// blkbench's checksum, which the host recomputes from the images).
pub fn mix(mut z: u64) -> u64 {
    z ^= z >> 30;
    z = z.wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z ^= z >> 27;
    z = z.wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Byte `i` of sector `lba` of the pattern for `seed`.
pub fn pattern_byte(seed: u64, lba: u64, i: usize) -> u8 {
    let w = mix(seed.wrapping_mul(PHI) ^ lba.wrapping_mul(K) ^ (i / 8) as u64);
    w.to_le_bytes()[i % 8]
}

/// Fills `buf` (whole sectors of `sector_size` bytes, the first being `lba`) with the
/// pattern for `seed`. A partial last sector is filled as far as it goes.
pub fn fill_pattern(seed: u64, lba: u64, sector_size: usize, buf: &mut [u8]) {
    if sector_size == 0 {
        return;
    }
    for (s, sector) in buf.chunks_mut(sector_size).enumerate() {
        let lba = lba.wrapping_add(s as u64);
        for (w, word) in sector.chunks_mut(8).enumerate() {
            let v = mix(seed.wrapping_mul(PHI) ^ lba.wrapping_mul(K) ^ w as u64).to_le_bytes();
            word.copy_from_slice(&v[..word.len()]);
        }
    }
}

/// The first byte of `buf` (read from sector `lba` on) that differs from the pattern:
/// `(byte offset in buf, found, expected)`, or `None` if all match.
pub fn first_mismatch(
    seed: u64,
    lba: u64,
    sector_size: usize,
    buf: &[u8],
) -> Option<(usize, u8, u8)> {
    if sector_size == 0 {
        return None;
    }
    buf.iter().enumerate().find_map(|(off, &b)| {
        let want = pattern_byte(
            seed,
            lba.wrapping_add((off / sector_size) as u64),
            off % sector_size,
        );
        (b != want).then_some((off, b, want))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fill_agrees_with_pattern_byte_and_first_mismatch() {
        let mut buf = vec![0u8; 3 * 512];
        fill_pattern(7, 100, 512, &mut buf);
        for (off, &b) in buf.iter().enumerate() {
            assert_eq!(b, pattern_byte(7, 100 + off as u64 / 512, off % 512));
        }
        assert_eq!(first_mismatch(7, 100, 512, &buf), None);
        // Another seed, another LBA: different bytes.
        assert!(first_mismatch(8, 100, 512, &buf).is_some());
        assert!(first_mismatch(7, 101, 512, &buf).is_some());
        let want = buf[700];
        buf[700] ^= 0x40;
        assert_eq!(
            first_mismatch(7, 100, 512, &buf),
            Some((700, want ^ 0x40, want))
        );
    }

    #[test]
    fn sectors_differ_and_a_known_value_is_stable() {
        let mut a = vec![0u8; 512];
        let mut b = vec![0u8; 512];
        fill_pattern(1, 0, 512, &mut a);
        fill_pattern(1, 1, 512, &mut b);
        assert_ne!(a, b);
        // Pinned so the host-side copy of the formula (boot/src) cannot drift silently.
        assert_eq!(pattern_byte(0, 0, 0), mix(0).to_le_bytes()[0]);
        assert_eq!(mix(0), 0);
        assert_eq!(
            mix(1),
            u64::from_le_bytes(core::array::from_fn(|i| pattern_byte(0, 0, 8 + i)))
        );
    }
}
