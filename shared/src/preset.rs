//! Rendition presets and source limits.
//!
//! A [`Preset`] is a list of [`RenditionSpec`]s; each names a box, a [`Fit`] and the output formats.
//! Operators define their own in a TOML file ([`PresetCatalog::from_toml`]); without one the built-in
//! profile-photo preset ([`Preset::default_profile`]) applies: `thumb` 150x150 and `medium` 400x400 cover,
//! cropped around the faces, `large` inside 800x800, each as JPEG q85 and WebP q80.

use crate::ImageFormat;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;

/// How a rendition fills its box.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fit {
    /// Fill the box exactly, cropping the overflow: equally on both sides, or as [`CropMode`] says.
    /// A source smaller than the box is not upscaled: the crop keeps the box's aspect ratio instead.
    Cover,
    /// Fit within the box keeping the aspect ratio; never upscale.
    Inside,
}

/// Which part of the source a `cover` rendition keeps when the box's aspect cuts some off.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CropMode {
    /// The middle: the overflow is cut equally on both sides.
    #[default]
    Centre,
    /// The most salient region, in the spirit of libvips' `attention` smart crop: edges, skin tones and
    /// saturated colour on a small copy, blurred; the crop is centred on the strongest region, as far as
    /// the image allows.
    Attention,
    /// The faces: a face detector runs on a small upright copy, and the crop is centred on the box around
    /// the detected faces with headroom above each (as many as fit in the crop, largest first). An image
    /// without a face falls back to `attention`.
    Face,
}

impl CropMode {
    pub fn is_centre(&self) -> bool {
        *self == Self::Centre
    }
}

/// One encoded output of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    pub format: ImageFormat,
    /// Encoder quality, 1–100.
    pub quality: u8,
    /// Encoder effort, higher is smaller and slower. WebP: libwebp's `method`, 0–6, default
    /// [`OutputSpec::DEFAULT_WEBP_EFFORT`]. AVIF: 0–9, libaom's `cpu-used` 9 − effort as in sharp, default
    /// [`OutputSpec::DEFAULT_AVIF_EFFORT`]. Not used for JPEG.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub effort: Option<u8>,
    /// A progressive JPEG (libjpeg's standard progression: a coarse image first, refined by later
    /// scans) instead of a baseline one. JPEG only; default off.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub progressive: bool,
}

impl OutputSpec {
    /// The WebP effort used when a preset names none: libwebp's own default, the setting of the
    /// libraries imgfleet is measured against; 5 is 2 % smaller and 8 % slower (docs/performance.md).
    pub const DEFAULT_WEBP_EFFORT: u8 = 4;
    /// The AVIF effort used when a preset names none: sharp's default (libaom `cpu-used` 5).
    pub const DEFAULT_AVIF_EFFORT: u8 = 4;

    pub const fn new(format: ImageFormat, quality: u8) -> Self {
        Self { format, quality, effort: None, progressive: false }
    }
}

/// One rendition: a named box, a fit and the formats to encode it in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RenditionSpec {
    pub name: String,
    pub width: u32,
    pub height: u32,
    pub fit: Fit,
    /// What a `cover` crop keeps (default `centre`). Not allowed on `inside`, which never crops.
    #[serde(default, skip_serializing_if = "CropMode::is_centre")]
    pub crop: CropMode,
    pub formats: Vec<OutputSpec>,
}

/// A named list of renditions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Preset {
    pub name: String,
    pub renditions: Vec<RenditionSpec>,
}

/// Limits a source must meet before it is decoded. Checked from the header, before any big allocation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted source object, in bytes.
    pub max_source_bytes: u64,
    /// Largest accepted width × height.
    pub max_source_pixels: u64,
    /// Largest accepted width or height.
    pub max_side: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self { max_source_bytes: 20 * 1024 * 1024, max_source_pixels: 40_000_000, max_side: 16_384 }
    }
}

/// A preset TOML file: limits, the JPEG background, and presets (the first is the default).
///
/// ```toml
/// default = "profile"          # optional; otherwise the first preset
/// background = [255, 255, 255] # optional; what alpha is flattened onto for JPEG
/// [limits]
/// max_source_pixels = 40000000
/// [[presets]]
/// name = "profile"
/// [[presets.renditions]]
/// name = "thumb"
/// width = 150
/// height = 150
/// fit = "cover"
/// formats = [{ format = "jpeg", quality = 85 }, { format = "webp", quality = 80 }]
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PresetCatalog {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
    #[serde(default = "white")]
    pub background: [u8; 3],
    #[serde(default)]
    pub limits: Limits,
    pub presets: Vec<Preset>,
}

fn white() -> [u8; 3] {
    [255, 255, 255]
}

/// Why a preset file or preset was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresetError {
    #[error("preset file is not valid TOML for a preset catalog: {0}")]
    Toml(#[from] toml::de::Error),
    #[error("preset catalog defines no presets")]
    Empty,
    #[error("default preset {0:?} is not defined")]
    UnknownDefault(String),
    #[error("preset {preset:?}: {problem}")]
    Invalid { preset: String, problem: String },
}

impl Preset {
    /// The built-in profile-photo preset.
    pub fn default_profile() -> Self {
        let formats = vec![OutputSpec::new(ImageFormat::Jpeg, 85), OutputSpec::new(ImageFormat::Webp, 80)];
        let spec = |name: &str, side, fit, crop| RenditionSpec {
            name: name.to_owned(),
            width: side,
            height: side,
            fit,
            crop,
            formats: formats.clone(),
        };
        Self {
            name: "profile".to_owned(),
            renditions: vec![
                spec("thumb", 150, Fit::Cover, CropMode::Face),
                spec("medium", 400, Fit::Cover, CropMode::Face),
                spec("large", 800, Fit::Inside, CropMode::Centre),
            ],
        }
    }

    /// This preset with every `cover` rendition cropped by `mode` (`inside` renditions never crop).
    pub fn with_crop(mut self, mode: CropMode) -> Self {
        for r in self.renditions.iter_mut().filter(|r| r.fit == Fit::Cover) {
            r.crop = mode;
        }
        self
    }

    /// Checks names, sizes, qualities and formats; everything a worker relies on later.
    pub fn validate(&self) -> Result<(), PresetError> {
        let invalid = |problem: String| PresetError::Invalid { preset: self.name.clone(), problem };
        if self.name.is_empty() {
            return Err(invalid("empty preset name".into()));
        }
        if self.renditions.is_empty() {
            return Err(invalid("no renditions".into()));
        }
        let mut names = BTreeSet::new();
        for r in &self.renditions {
            let safe = !r.name.is_empty() && r.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
            if !safe {
                return Err(invalid(format!("rendition name {:?} must be [A-Za-z0-9_-]+", r.name)));
            }
            if !names.insert(&r.name) {
                return Err(invalid(format!("rendition {:?} is defined twice", r.name)));
            }
            if r.width == 0 || r.height == 0 || r.width > 8192 || r.height > 8192 {
                return Err(invalid(format!("rendition {:?}: box must be 1..=8192 on each side", r.name)));
            }
            if r.formats.is_empty() {
                return Err(invalid(format!("rendition {:?} has no formats", r.name)));
            }
            if r.fit == Fit::Inside && !r.crop.is_centre() {
                return Err(invalid(format!(
                    "rendition {:?}: crop is for cover renditions (inside never crops)",
                    r.name
                )));
            }
            for o in &r.formats {
                if matches!(o.format, ImageFormat::Png | ImageFormat::Gif | ImageFormat::Heic) {
                    return Err(invalid(format!("rendition {:?}: {} output is not supported", r.name, o.format)));
                }
                if !(1..=100).contains(&o.quality) {
                    return Err(invalid(format!("rendition {:?}: quality must be 1..=100", r.name)));
                }
                if o.progressive && o.format != ImageFormat::Jpeg {
                    return Err(invalid(format!("rendition {:?}: progressive is for jpeg only", r.name)));
                }
                let most = if o.format == ImageFormat::Avif { 9 } else { 6 };
                if o.effort.is_some_and(|e| e > most) {
                    return Err(invalid(format!("rendition {:?}: {} effort must be 0..={most}", r.name, o.format)));
                }
            }
        }
        Ok(())
    }

    /// A short, stable fingerprint of the preset's content (FNV-1a over its canonical JSON), recorded
    /// with the renditions so a changed preset can be recognised later.
    pub fn fingerprint(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for b in json.bytes() {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        format!("{hash:016x}")
    }
}

impl Default for PresetCatalog {
    fn default() -> Self {
        Self { default: None, background: white(), limits: Limits::default(), presets: vec![Preset::default_profile()] }
    }
}

/// Why a preset file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PresetFileError {
    #[error("cannot read preset file {}: {source}", path.display())]
    Read { path: std::path::PathBuf, source: std::io::Error },
    #[error("preset file {}: {source}", path.display())]
    Invalid { path: std::path::PathBuf, source: PresetError },
}

impl PresetCatalog {
    /// Reads and validates the preset file at `path`; the built-in catalog when there is none.
    pub fn load(path: Option<&std::path::Path>) -> Result<Self, PresetFileError> {
        let Some(path) = path else { return Ok(Self::default()) };
        let text =
            std::fs::read_to_string(path).map_err(|source| PresetFileError::Read { path: path.to_owned(), source })?;
        Self::from_toml(&text).map_err(|source| PresetFileError::Invalid { path: path.to_owned(), source })
    }

    /// Parses and validates a preset TOML file.
    pub fn from_toml(text: &str) -> Result<Self, PresetError> {
        let catalog: Self = toml::from_str(text)?;
        catalog.validate()?;
        Ok(catalog)
    }

    /// Checks every preset, unique preset names and the default.
    pub fn validate(&self) -> Result<(), PresetError> {
        if self.presets.is_empty() {
            return Err(PresetError::Empty);
        }
        let mut names = BTreeSet::new();
        for p in &self.presets {
            p.validate()?;
            if !names.insert(&p.name) {
                return Err(PresetError::Invalid { preset: p.name.clone(), problem: "defined twice".into() });
            }
        }
        if let Some(d) = &self.default
            && !names.contains(d)
        {
            return Err(PresetError::UnknownDefault(d.clone()));
        }
        Ok(())
    }

    /// The preset used when a job names none.
    pub fn default_preset(&self) -> &Preset {
        self.default.as_deref().and_then(|d| self.get(d)).unwrap_or(&self.presets[0])
    }

    /// A preset by name.
    pub fn get(&self, name: &str) -> Option<&Preset> {
        self.presets.iter().find(|p| p.name == name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_preset_matches_the_brief() {
        let p = Preset::default_profile();
        p.validate().unwrap();
        let boxes: Vec<_> = p.renditions.iter().map(|r| (r.name.as_str(), r.width, r.height, r.fit)).collect();
        assert_eq!(
            boxes,
            [("thumb", 150, 150, Fit::Cover), ("medium", 400, 400, Fit::Cover), ("large", 800, 800, Fit::Inside)]
        );
        for r in &p.renditions {
            assert_eq!(r.formats, [OutputSpec::new(ImageFormat::Jpeg, 85), OutputSpec::new(ImageFormat::Webp, 80)]);
        }
        let crops: Vec<_> = p.renditions.iter().map(|r| r.crop).collect();
        assert_eq!(crops, [CropMode::Face, CropMode::Face, CropMode::Centre], "issue 20: face crops on the covers");
    }

    #[test]
    fn with_crop_sets_every_cover_rendition_and_only_those() {
        for mode in [CropMode::Centre, CropMode::Attention, CropMode::Face] {
            let p = Preset::default_profile().with_crop(mode);
            p.validate().unwrap();
            let crops: Vec<_> = p.renditions.iter().map(|r| r.crop).collect();
            assert_eq!(crops, [mode, mode, CropMode::Centre], "{mode:?}");
        }
        let centred = Preset::default_profile().with_crop(CropMode::Centre);
        assert!(!serde_json::to_string(&centred).unwrap().contains("crop"), "absent when centre");
        // The example files say the same: profile-centre.toml is the built-in with centred crops (the preset
        // before issue 20), profile-face.toml the built-in itself.
        let example = |file: &str| {
            let path = format!("{}/../loadtest/presets/{file}", env!("CARGO_MANIFEST_DIR"));
            let p = PresetCatalog::from_toml(&std::fs::read_to_string(path).unwrap()).unwrap().presets.remove(0);
            Preset { name: "profile".into(), ..p }
        };
        assert_eq!(example("profile-centre.toml"), centred);
        assert_eq!(example("profile-face.toml"), Preset::default_profile());
    }

    #[test]
    fn catalog_round_trips_through_toml() {
        let catalog = PresetCatalog::default();
        let text = toml::to_string(&catalog).unwrap();
        let back = PresetCatalog::from_toml(&text).unwrap();
        assert_eq!(back, catalog);
        assert_eq!(back.default_preset().name, "profile");
    }

    #[test]
    fn catalog_reads_operator_toml() {
        let text = r#"
            default = "avatar"
            background = [0, 0, 0]
            [limits]
            max_source_pixels = 1000000
            [[presets]]
            name = "banner"
            [[presets.renditions]]
            name = "wide"
            width = 1200
            height = 300
            fit = "cover"
            formats = [{ format = "webp", quality = 70 }]
            [[presets]]
            name = "avatar"
            [[presets.renditions]]
            name = "small"
            width = 64
            height = 64
            fit = "inside"
            formats = [{ format = "jpeg", quality = 90, progressive = true }]
        "#;
        let c = PresetCatalog::from_toml(text).unwrap();
        assert!(c.get("avatar").unwrap().renditions[0].formats[0].progressive);
        assert!(!c.get("banner").unwrap().renditions[0].formats[0].progressive, "off unless asked");
        assert_eq!(c.default_preset().name, "avatar");
        assert_eq!(c.background, [0, 0, 0]);
        assert_eq!(c.limits.max_source_pixels, 1_000_000);
        assert_eq!(c.limits.max_side, Limits::default().max_side);
        assert_eq!(c.get("banner").unwrap().renditions[0].width, 1200);
    }

    #[test]
    fn progressive_is_for_jpeg_only_and_leaves_other_fingerprints_alone() {
        let base = Preset::default_profile();
        let mut p = base.clone();
        p.renditions[0].formats[0].progressive = true;
        p.validate().unwrap();
        assert_ne!(p.fingerprint(), base.fingerprint());
        assert!(!serde_json::to_string(&base).unwrap().contains("progressive"), "absent when off");
        p.renditions[0].formats[1].progressive = true;
        assert!(p.validate().unwrap_err().to_string().contains("jpeg only"));
    }

    #[test]
    fn attention_crop_is_for_cover_only_and_leaves_other_fingerprints_alone() {
        let base = Preset::default_profile().with_crop(CropMode::Centre);
        assert!(!serde_json::to_string(&base).unwrap().contains("crop"), "absent when centre");
        let text = r#"
            [[presets]]
            name = "avatar"
            [[presets.renditions]]
            name = "thumb"
            width = 150
            height = 150
            fit = "cover"
            crop = "attention"
            formats = [{ format = "jpeg", quality = 85 }]
            [[presets.renditions]]
            name = "plain"
            width = 150
            height = 150
            fit = "cover"
            formats = [{ format = "jpeg", quality = 85 }]
        "#;
        let c = PresetCatalog::from_toml(text).unwrap();
        let avatar = c.get("avatar").unwrap();
        assert_eq!(avatar.renditions[0].crop, CropMode::Attention);
        assert_eq!(avatar.renditions[1].crop, CropMode::Centre, "centre unless asked");
        let mut p = base.clone();
        p.renditions[0].crop = CropMode::Attention;
        p.validate().unwrap();
        assert_ne!(p.fingerprint(), base.fingerprint());
        p.renditions[2].crop = CropMode::Attention;
        assert!(p.validate().unwrap_err().to_string().contains("cover"), "large is inside");
        assert!(PresetCatalog::from_toml(&text.replace("\"attention\"", "\"middle\"")).is_err(), "unknown mode");
        let face = PresetCatalog::from_toml(&text.replace("\"attention\"", "\"face\"")).unwrap();
        assert_eq!(face.get("avatar").unwrap().renditions[0].crop, CropMode::Face);
    }

    #[test]
    fn the_example_preset_files_are_valid() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../loadtest/presets");
        let mut files = 0;
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "toml") {
                let text = std::fs::read_to_string(&path).unwrap();
                PresetCatalog::from_toml(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                files += 1;
            }
        }
        assert!(files >= 2, "{files} preset files in {dir}");
    }

    #[test]
    fn bad_presets_are_refused_with_a_reason() {
        let base = Preset::default_profile();
        let mut dup = base.clone();
        dup.renditions[1].name = "thumb".into();
        assert!(dup.validate().unwrap_err().to_string().contains("twice"));
        let mut zero = base.clone();
        zero.renditions[0].width = 0;
        assert!(zero.validate().is_err());
        let mut q = base.clone();
        q.renditions[0].formats[0].quality = 0;
        assert!(q.validate().unwrap_err().to_string().contains("quality"));
        let mut effort = base.clone();
        effort.renditions[0].formats[1].effort = Some(7);
        assert!(effort.validate().unwrap_err().to_string().contains("webp effort must be 0..=6"));
        // AVIF's effort goes to 9 (libaom cpu-used 0), as sharp's does.
        let mut avif = base.clone();
        avif.renditions[0].formats[1] = OutputSpec { effort: Some(9), ..OutputSpec::new(ImageFormat::Avif, 50) };
        avif.validate().unwrap();
        avif.renditions[0].formats[1].effort = Some(10);
        assert!(avif.validate().unwrap_err().to_string().contains("avif effort must be 0..=9"));
        avif.renditions[0].formats[1].effort = None;
        avif.renditions[0].formats[1].progressive = true;
        assert!(avif.validate().unwrap_err().to_string().contains("progressive is for jpeg only"));
        for read_only in [ImageFormat::Png, ImageFormat::Gif, ImageFormat::Heic] {
            let mut p = base.clone();
            p.renditions[2].formats[0].format = read_only;
            assert!(p.validate().unwrap_err().to_string().contains("output is not supported"), "{read_only}");
        }
        let mut path = base.clone();
        path.renditions[0].name = "../x".into();
        assert!(path.validate().is_err());
        assert!(matches!(PresetCatalog::from_toml("presets = []"), Err(PresetError::Empty)));
        assert!(PresetCatalog::from_toml("nonsense = 1").is_err());
    }

    #[test]
    fn fingerprint_changes_with_content() {
        let a = Preset::default_profile();
        let mut b = a.clone();
        b.renditions[0].formats[0].quality = 84;
        assert_eq!(a.fingerprint(), Preset::default_profile().fingerprint());
        assert_ne!(a.fingerprint(), b.fingerprint());
    }
}
