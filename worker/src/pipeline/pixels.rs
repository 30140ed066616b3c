//! The in-memory image every stage after decode works on: 8-bit, interleaved, sRGB once colour is done.

/// An 8-bit interleaved image with 1 (gray), 3 (RGB), or 4 (RGBA, or CMYK before colour conversion) channels.
#[derive(Clone, PartialEq, Eq)]
pub struct Pixels {
    pub width: u32,
    pub height: u32,
    pub channels: u8,
    pub data: Vec<u8>,
}

impl std::fmt::Debug for Pixels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Pixels({}x{}x{}, {} bytes)", self.width, self.height, self.channels, self.data.len())
    }
}

impl Pixels {
    pub fn new(width: u32, height: u32, channels: u8, data: Vec<u8>) -> Self {
        debug_assert_eq!(data.len(), width as usize * height as usize * channels as usize);
        Self { width, height, channels, data }
    }

    pub fn has_alpha(&self) -> bool {
        self.channels == 4
    }

    /// Row stride in bytes.
    pub fn stride(&self) -> usize {
        self.width as usize * self.channels as usize
    }

    /// The pixel at (x, y) as a slice of `channels` bytes.
    pub fn pixel(&self, x: u32, y: u32) -> &[u8] {
        let c = self.channels as usize;
        let i = y as usize * self.stride() + x as usize * c;
        &self.data[i..i + c]
    }

    /// The same image as RGBA (alpha 255 where there was none), as ThumbHash wants it.
    pub fn to_rgba(&self) -> Vec<u8> {
        match self.channels {
            4 => self.data.clone(),
            3 => self.data.chunks_exact(3).flat_map(|p| [p[0], p[1], p[2], 255]).collect(),
            _ => self.data.iter().flat_map(|&g| [g, g, g, 255]).collect(),
        }
    }

    /// Drops alpha by compositing onto `background` (for JPEG). RGB images are returned borrowed.
    pub fn flatten(&self, background: [u8; 3]) -> std::borrow::Cow<'_, [u8]> {
        if self.channels != 4 {
            return std::borrow::Cow::Borrowed(&self.data);
        }
        let out = self
            .data
            .chunks_exact(4)
            .flat_map(|p| {
                let a = u32::from(p[3]);
                let mix = |c: u8, bg: u8| ((u32::from(c) * a + u32::from(bg) * (255 - a) + 127) / 255) as u8;
                [mix(p[0], background[0]), mix(p[1], background[1]), mix(p[2], background[2])]
            })
            .collect();
        std::borrow::Cow::Owned(out)
    }

    /// True when every alpha value is 255 (or there is no alpha).
    pub fn is_opaque(&self) -> bool {
        self.channels != 4 || self.data.chunks_exact(4).all(|p| p[3] == 255)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flatten_composites_onto_the_background() {
        let p = Pixels::new(2, 1, 4, vec![0, 0, 0, 0, 200, 100, 50, 255]);
        assert_eq!(&*p.flatten([255, 255, 255]), &[255, 255, 255, 200, 100, 50]);
        let half = Pixels::new(1, 1, 4, vec![0, 0, 0, 128]);
        assert_eq!(&*half.flatten([255, 0, 255]), &[127, 0, 127]);
    }
}
