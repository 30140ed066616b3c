//! EXIF orientation: the tag read from a TIFF-structured EXIF block, and what its values mean.

/// Reads tag 0x0112 (Orientation) from IFD0 of a TIFF-structured EXIF block (starting at `II`/`MM`).
/// Anything missing, truncated or out of range reads as 1 (as stored).
pub fn exif_orientation(tiff: &[u8]) -> u8 {
    read_orientation(tiff).filter(|o| (1..=8).contains(o)).unwrap_or(1)
}

fn read_orientation(tiff: &[u8]) -> Option<u8> {
    let tiff = tiff.strip_prefix(b"Exif\0\0").unwrap_or(tiff);
    let big_endian = match tiff.get(0..2)? {
        b"II" => false,
        b"MM" => true,
        _ => return None,
    };
    let u16_at = |i: usize| -> Option<u16> {
        let b: [u8; 2] = tiff.get(i..i + 2)?.try_into().ok()?;
        Some(if big_endian { u16::from_be_bytes(b) } else { u16::from_le_bytes(b) })
    };
    let u32_at = |i: usize| -> Option<u32> {
        let b: [u8; 4] = tiff.get(i..i + 4)?.try_into().ok()?;
        Some(if big_endian { u32::from_be_bytes(b) } else { u32::from_le_bytes(b) })
    };
    if u16_at(2)? != 42 {
        return None;
    }
    let ifd = u32_at(4)? as usize;
    let count = usize::from(u16_at(ifd)?);
    (0..count.min(512)).find_map(|n| {
        let entry = ifd + 2 + n * 12;
        (u16_at(entry)? == 0x0112).then(|| u16_at(entry + 8).map(|v| v.min(255) as u8)).flatten()
    })
}

/// True when the orientation swaps width and height (5–8).
pub const fn transposes(orientation: u8) -> bool {
    matches!(orientation, 5..=8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiff(big_endian: bool, orientation: u16) -> Vec<u8> {
        let mut t = Vec::new();
        let p16 = |v: u16| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        let p32 = |v: u32| if big_endian { v.to_be_bytes() } else { v.to_le_bytes() };
        t.extend_from_slice(if big_endian { b"MM" } else { b"II" });
        t.extend_from_slice(&p16(42));
        t.extend_from_slice(&p32(8));
        t.extend_from_slice(&p16(2));
        for (tag, value) in [(0x010F_u16, 0_u16), (0x0112, orientation)] {
            t.extend_from_slice(&p16(tag));
            t.extend_from_slice(&p16(3));
            t.extend_from_slice(&p32(1));
            t.extend_from_slice(&p16(value));
            t.extend_from_slice(&[0, 0]);
        }
        t.extend_from_slice(&p32(0));
        t
    }

    #[test]
    fn reads_orientation_in_both_byte_orders() {
        for o in 1..=8 {
            assert_eq!(exif_orientation(&tiff(false, o)), o as u8);
            assert_eq!(exif_orientation(&tiff(true, o)), o as u8);
        }
    }

    #[test]
    fn bad_exif_reads_as_one() {
        assert_eq!(exif_orientation(&tiff(false, 9)), 1);
        assert_eq!(exif_orientation(&tiff(false, 0)), 1);
        assert_eq!(exif_orientation(b"II*\0\xff\xff\xff\xff"), 1);
        assert_eq!(exif_orientation(b""), 1);
        let t = tiff(true, 6);
        for cut in 0..t.len() {
            assert!(exif_orientation(&t[..cut]) <= 8);
        }
    }
}
