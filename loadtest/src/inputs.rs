//! The images a run works on: the files under a folder (walked like `imgfleet process` does,
//! hidden entries skipped, sorted) whose names match a shell-style pattern, read into memory.

use anyhow::Context as _;
use std::path::Path;

/// One image, read before any timing starts.
#[derive(Debug, Clone)]
pub struct Image {
    pub name: String,
    pub bytes: bytes::Bytes,
}

/// Reads every file under `dir` whose file name matches `pattern`; an error when there are none.
pub fn load(dir: &Path, pattern: &str) -> anyhow::Result<Vec<Image>> {
    let files = imgfleet_worker::commands::process::collect_inputs(&[dir.to_owned()])
        .with_context(|| format!("cannot list {}", dir.display()))?;
    let mut images = Vec::new();
    for path in files {
        let name = path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        if !glob_match(pattern, &name) {
            continue;
        }
        let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
        images.push(Image { name, bytes: bytes.into() });
    }
    anyhow::ensure!(!images.is_empty(), "no file under {} matches {pattern:?}", dir.display());
    Ok(images)
}

/// Shell-style match of a whole file name: `*` is any run of characters, `?` any one character.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n): (Vec<char>, Vec<char>) = (pattern.chars().collect(), name.chars().collect());
    // Iterative matching with backtracking to the last `*`: linear in practice, no recursion.
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        match p.get(pi) {
            Some('*') => {
                star = Some((pi, ni));
                pi += 1;
            }
            Some(&c) if c == '?' || c == n[ni] => {
                pi += 1;
                ni += 1;
            }
            _ => match star {
                Some((sp, sn)) => {
                    pi = sp + 1;
                    ni = sn + 1;
                    star = Some((sp, sn + 1));
                }
                None => return false,
            },
        }
    }
    p[pi..].iter().all(|&c| c == '*')
}

/// The `Content-Type` an upload is sent with, from the file name.
pub fn content_type(name: &str) -> &'static str {
    let ext = name.rsplit_once('.').map(|(_, e)| e.to_ascii_lowercase()).unwrap_or_default();
    match ext.as_str() {
        "jpg" | "jpeg" => "image/jpeg",
        "png" => "image/png",
        "webp" => "image/webp",
        _ => "application/octet-stream",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        assert!(glob_match("*.jpg", "a.jpg"));
        assert!(glob_match("*.jpg", ".jpg"));
        assert!(!glob_match("*.jpg", "a.jpeg"));
        assert!(!glob_match("*.jpg", "a.jpg.png"));
        assert!(glob_match("*", "anything"));
        assert!(glob_match("ph?to-*-o6.jpg", "photo-4032-o6.jpg"));
        assert!(glob_match("*a*b*", "xxaxxbxx"));
        assert!(!glob_match("*a*b", "xxaxxbxx"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn content_types() {
        assert_eq!(content_type("x.JPG"), "image/jpeg");
        assert_eq!(content_type("x.webp"), "image/webp");
        assert_eq!(content_type("noext"), "application/octet-stream");
    }
}
