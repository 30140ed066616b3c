//! Rendition keys: where each rendition of a source object is stored.
//!
//! Keys are deterministic (the same source always maps to the same keys, so re-processing
//! overwrites rather than duplicates) and always under the output prefix: the source key is
//! cleaned of leading slashes, `.`/`..` segments and control characters before it is used.
//! A [`KeyTemplate`] is parsed once, when the configuration is read; a parsed template has only
//! known placeholders and always makes distinct keys for distinct sources and renditions.

use serde::{Deserialize, Deserializer};

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// The template used unless `IMGFLEET_KEY_TEMPLATE` says otherwise.
pub const DEFAULT_KEY_TEMPLATE: &str = "{prefix}{stem}/{rendition}.{ext}";

/// The placeholders a key template can use.
pub const TEMPLATE_FIELDS: &[&str] = &["prefix", "key", "stem", "preset", "rendition", "ext"];

/// Why no key could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rendition key for {source_key:?} would be {bytes} bytes; S3 allows {MAX_KEY_BYTES}")]
pub struct KeyError {
    pub source_key: String,
    pub bytes: usize,
}

/// Why a key template was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TemplateError(String);

/// The fields a key template can use.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    pub source_key: &'a str,
    pub preset: &'a str,
    pub rendition: &'a str,
    pub ext: &'a str,
}

/// A placeholder of a key template.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Field {
    Prefix,
    Key,
    Stem,
    Preset,
    Rendition,
    Ext,
}

/// A piece of a parsed template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Field(Field),
}

/// A parsed rendition key template, `{prefix}{stem}/{rendition}.{ext}` by default
/// ([`DEFAULT_KEY_TEMPLATE`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl Default for KeyTemplate {
    fn default() -> Self {
        Self::parse(DEFAULT_KEY_TEMPLATE).expect("the default template is valid")
    }
}

impl std::fmt::Display for KeyTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.text)
    }
}

impl<'de> Deserialize<'de> for KeyTemplate {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

impl KeyTemplate {
    /// Parses `text`: every placeholder one of [`TEMPLATE_FIELDS`], with `{rendition}`, `{ext}`
    /// and one of `{key}` or `{stem}`, so distinct sources and renditions get distinct keys.
    pub fn parse(text: &str) -> Result<Self, TemplateError> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find('{') {
            let close = rest[open..].find('}').ok_or_else(|| TemplateError("unclosed '{'".into()))? + open;
            let field = match &rest[open + 1..close] {
                "prefix" => Field::Prefix,
                "key" => Field::Key,
                "stem" => Field::Stem,
                "preset" => Field::Preset,
                "rendition" => Field::Rendition,
                "ext" => Field::Ext,
                other => {
                    return Err(TemplateError(format!("unknown placeholder {{{other}}}; use {TEMPLATE_FIELDS:?}")));
                }
            };
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            pieces.push(Piece::Field(field));
            rest = &rest[close + 1..];
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        let has = |f: Field| pieces.contains(&Piece::Field(f));
        for (field, name) in [(Field::Rendition, "{rendition}"), (Field::Ext, "{ext}")] {
            if !has(field) {
                return Err(TemplateError(format!("must contain {name} so renditions get distinct keys")));
            }
        }
        if !(has(Field::Key) || has(Field::Stem)) {
            return Err(TemplateError("must contain {key} or {stem} so sources get distinct keys".into()));
        }
        Ok(Self { text: text.to_owned(), pieces })
    }

    /// The template as written.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// The key of one rendition; always under `parts.prefix`.
    pub fn key(&self, parts: KeyParts<'_>) -> Result<String, KeyError> {
        let clean = clean_source_key(parts.source_key);
        let stem = stem(&clean);
        let prefix = parts.prefix.trim_start_matches('/');
        let mut out = String::with_capacity(self.text.len() + clean.len() + prefix.len());
        for piece in &self.pieces {
            out.push_str(match piece {
                Piece::Text(t) => t,
                Piece::Field(Field::Prefix) => prefix,
                Piece::Field(Field::Key) => &clean,
                Piece::Field(Field::Stem) => stem,
                Piece::Field(Field::Preset) => parts.preset,
                Piece::Field(Field::Rendition) => parts.rendition,
                Piece::Field(Field::Ext) => parts.ext,
            });
        }
        if !out.starts_with(prefix) {
            out.insert_str(0, prefix);
        }
        if out.len() > MAX_KEY_BYTES {
            return Err(KeyError { source_key: parts.source_key.into(), bytes: out.len() });
        }
        Ok(out)
    }

    /// Every key `preset` writes for `source_key`: each rendition in each of its formats.
    pub fn preset_keys(&self, prefix: &str, source_key: &str, preset: &crate::Preset) -> Result<Vec<String>, KeyError> {
        let mut keys = Vec::new();
        for r in &preset.renditions {
            for f in &r.formats {
                let parts = KeyParts {
                    prefix,
                    source_key,
                    preset: &preset.name,
                    rendition: &r.name,
                    ext: f.format.extension(),
                };
                keys.push(self.key(parts)?);
            }
        }
        Ok(keys)
    }
}

/// The source key made safe to embed: no leading `/`, no empty, `.` or `..` segments, no control characters.
pub fn clean_source_key(key: &str) -> String {
    let segments: Vec<String> = key
        .split('/')
        .filter(|s| !s.is_empty() && *s != ".")
        .map(|s| {
            let s: String = s.chars().map(|c| if c.is_control() { '_' } else { c }).collect();
            if s == ".." { "_".to_owned() } else { s }
        })
        .collect();
    if segments.is_empty() { "_".to_owned() } else { segments.join("/") }
}

/// The key without the extension of its last segment (`uploads/u/42/me.jpg` → `uploads/u/42/me`).
fn stem(key: &str) -> &str {
    let name_start = key.rfind('/').map_or(0, |i| i + 1);
    match key[name_start..].rfind('.') {
        Some(dot) if dot > 0 => &key[..name_start + dot],
        _ => key,
    }
}

/// True when `key` is under the output prefix, so it must never trigger processing.
pub fn is_output_key(key: &str, prefix: &str) -> bool {
    let prefix = prefix.trim_start_matches('/');
    !prefix.is_empty() && key.trim_start_matches('/').starts_with(prefix)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(source_key: &str) -> String {
        let parts = KeyParts { prefix: "renditions/", source_key, preset: "profile", rendition: "thumb", ext: "webp" };
        KeyTemplate::default().key(parts).unwrap()
    }

    #[test]
    fn default_template_matches_the_documented_example() {
        assert_eq!(key("uploads/u/42/me.jpg"), "renditions/uploads/u/42/me/thumb.webp");
        assert_eq!(key("uploads/my photo é+ü&x.jpeg"), "renditions/uploads/my photo é+ü&x/thumb.webp");
        assert_eq!(key("noext"), "renditions/noext/thumb.webp");
        assert_eq!(key(".hidden"), "renditions/.hidden/thumb.webp");
        assert_eq!(key("a.b/c"), "renditions/a.b/c/thumb.webp");
    }

    #[test]
    fn keys_cannot_escape_the_prefix() {
        for hostile in
            ["../../etc/passwd.jpg", "/abs/path.jpg", "a/./b/../../../x.jpg", "ctl\u{0}\u{7}\n.jpg", "//", ""]
        {
            let k = key(hostile);
            assert!(k.starts_with("renditions/"), "{hostile:?} -> {k:?}");
            assert!(!k.split('/').any(|s| s == ".." || s == "." || s.is_empty()), "{hostile:?} -> {k:?}");
            assert!(!k.chars().any(char::is_control), "{hostile:?} -> {k:?}");
        }
        let custom = KeyTemplate::parse("{key}-{rendition}.{ext}").unwrap().key(KeyParts {
            prefix: "out/",
            source_key: "../a.jpg",
            preset: "p",
            rendition: "r",
            ext: "jpg",
        });
        assert_eq!(custom.unwrap(), "out/_/a.jpg-r.jpg");
    }

    #[test]
    fn very_long_keys_are_refused() {
        let long = format!("uploads/{}.jpg", "x".repeat(1100));
        let parts = KeyParts { prefix: "renditions/", source_key: &long, preset: "p", rendition: "thumb", ext: "jpg" };
        assert!(KeyTemplate::default().key(parts).is_err());
    }

    #[test]
    fn templates_are_checked_when_parsed() {
        assert_eq!(KeyTemplate::default().as_str(), DEFAULT_KEY_TEMPLATE);
        for (bad, why) in [
            ("{prefix}{stem}/{rendition}.{ext", "unclosed"),
            ("{prefix}{stem}/{name}.{ext}", "unknown placeholder {name}"),
            ("{prefix}{stem}/thumb.{ext}", "{rendition}"),
            ("{prefix}{stem}/{rendition}", "{ext}"),
            ("{prefix}/{rendition}.{ext}", "{key} or {stem}"),
        ] {
            let e = KeyTemplate::parse(bad).unwrap_err();
            assert!(e.to_string().contains(why), "{bad}: {e}");
        }
        let t = KeyTemplate::parse("x/{preset}/{key}@{rendition}.{ext}").unwrap();
        let parts = KeyParts { prefix: "out/", source_key: "a/b.jpg", preset: "p", rendition: "r", ext: "webp" };
        assert_eq!(t.key(parts).unwrap(), "out/x/p/a/b.jpg@r.webp");
    }

    #[test]
    fn output_keys_are_recognised() {
        assert!(is_output_key("renditions/uploads/a/thumb.jpg", "renditions/"));
        assert!(!is_output_key("uploads/renditions/a.jpg", "renditions/"));
        assert!(!is_output_key("uploads/a.jpg", ""));
    }
}
