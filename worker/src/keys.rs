//! Rendition keys: where each rendition of a source object is stored.
//!
//! Keys are deterministic (the same source always maps to the same keys, so re-processing
//! overwrites rather than duplicates) and always under the output prefix: the source key is
//! cleaned of leading slashes, `.`/`..` segments and control characters before it is used.

/// The longest key S3 accepts, in bytes.
pub const MAX_KEY_BYTES: usize = 1024;

/// Why no key could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("rendition key for {source_key:?} would be {bytes} bytes; S3 allows {MAX_KEY_BYTES}")]
pub struct KeyError {
    pub source_key: String,
    pub bytes: usize,
}

/// The fields a key template can use.
#[derive(Debug, Clone, Copy)]
pub struct KeyParts<'a> {
    pub prefix: &'a str,
    pub source_key: &'a str,
    pub preset: &'a str,
    pub rendition: &'a str,
    pub ext: &'a str,
}

/// Expands `template` (`{prefix}{stem}/{rendition}.{ext}` by default).
pub fn rendition_key(template: &str, parts: KeyParts<'_>) -> Result<String, KeyError> {
    let clean = clean_source_key(parts.source_key);
    let stem = stem(&clean);
    let prefix = parts.prefix.trim_start_matches('/');
    let mut out = String::with_capacity(template.len() + clean.len() + prefix.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find('}').map(|c| c + open) else { break };
        out.push_str(match &rest[open + 1..close] {
            "prefix" => prefix,
            "key" => &clean,
            "stem" => stem,
            "preset" => parts.preset,
            "rendition" => parts.rendition,
            "ext" => parts.ext,
            other => other,
        });
        rest = &rest[close + 1..];
    }
    out.push_str(rest);
    if !out.starts_with(prefix) {
        out.insert_str(0, prefix);
    }
    if out.len() > MAX_KEY_BYTES {
        return Err(KeyError { source_key: parts.source_key.into(), bytes: out.len() });
    }
    Ok(out)
}

/// Every key `preset` writes for `source_key`: each rendition in each of its formats.
pub fn preset_keys(
    template: &str,
    prefix: &str,
    source_key: &str,
    preset: &imgfleet_shared::Preset,
) -> Result<Vec<String>, KeyError> {
    let mut keys = Vec::new();
    for r in &preset.renditions {
        for f in &r.formats {
            let parts =
                KeyParts { prefix, source_key, preset: &preset.name, rendition: &r.name, ext: f.format.extension() };
            keys.push(rendition_key(template, parts)?);
        }
    }
    Ok(keys)
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
    use imgfleet_shared::config::DEFAULT_KEY_TEMPLATE;

    fn key(source_key: &str) -> String {
        let parts = KeyParts { prefix: "renditions/", source_key, preset: "profile", rendition: "thumb", ext: "webp" };
        rendition_key(DEFAULT_KEY_TEMPLATE, parts).unwrap()
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
        let custom = rendition_key(
            "{key}-{rendition}.{ext}",
            KeyParts { prefix: "out/", source_key: "../a.jpg", preset: "p", rendition: "r", ext: "jpg" },
        );
        assert_eq!(custom.unwrap(), "out/_/a.jpg-r.jpg");
    }

    #[test]
    fn very_long_keys_are_refused() {
        let long = format!("uploads/{}.jpg", "x".repeat(1100));
        let parts = KeyParts { prefix: "renditions/", source_key: &long, preset: "p", rendition: "thumb", ext: "jpg" };
        assert!(rendition_key(DEFAULT_KEY_TEMPLATE, parts).is_err());
    }

    #[test]
    fn output_keys_are_recognised() {
        assert!(is_output_key("renditions/uploads/a/thumb.jpg", "renditions/"));
        assert!(!is_output_key("uploads/renditions/a.jpg", "renditions/"));
        assert!(!is_output_key("uploads/a.jpg", ""));
    }
}
