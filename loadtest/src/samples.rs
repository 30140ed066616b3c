//! `imgfleet-loadtest samples`: photo-like JPEGs made with `imgfleet_worker::commands::demo::sample_jpeg`,
//! for machines without the shared corpus. Shapes vary (landscape, portrait, square, one tagged
//! with EXIF orientation 6) so the renditions exercise every path of the pipeline.

use anyhow::Context as _;
use std::path::{Path, PathBuf};

/// (width, height, EXIF orientation), cycled through.
const SHAPES: [(u32, u32, u8); 6] =
    [(2400, 1600, 1), (1600, 2400, 1), (2048, 1536, 6), (1200, 1200, 1), (3000, 2000, 1), (900, 1350, 1)];

/// Writes `count` samples as `DIR/sample-NNN.jpg`, all `size` (width, height) when given;
/// returns their paths.
pub fn write(dir: &Path, count: usize, size: Option<(u32, u32)>) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(count >= 1, "--count must be at least 1");
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    (0..count)
        .map(|i| {
            let (w, h, orientation) = size.map_or(SHAPES[i % SHAPES.len()], |(w, h)| (w, h, 1));
            let path = dir.join(format!("sample-{i:03}.jpg"));
            let jpeg = imgfleet_worker::commands::demo::sample_jpeg(w, h, i as u32, orientation);
            std::fs::write(&path, jpeg).with_context(|| format!("cannot write {}", path.display()))?;
            Ok(path)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn writes_decodable_jpegs() {
        let dir = tempfile::tempdir().unwrap();
        let written = super::write(dir.path(), 2, None).unwrap();
        assert_eq!(written.len(), 2);
        let sized = super::write(&dir.path().join("sized"), 1, Some((320, 200))).unwrap();
        let bytes = std::fs::read(&sized[0]).unwrap();
        let r =
            imgfleet_worker::pipeline::render(&bytes, &imgfleet_shared::Preset::default_profile(), &Default::default());
        assert_eq!(r.map(|r| (r.result.source.width, r.result.source.height)).ok(), Some((320, 200)));
        for path in written {
            let bytes = std::fs::read(path).unwrap();
            assert_eq!(imgfleet_worker::pipeline::sniff::sniff(&bytes).unwrap(), imgfleet_shared::ImageFormat::Jpeg);
        }
    }
}
