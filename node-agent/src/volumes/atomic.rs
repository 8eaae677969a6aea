//! Writing a volume's files the way the kubelet's `AtomicWriter` does, so a running container
//! sees either the old or the new set, never a mix: the files go into a fresh timestamped
//! directory `..2026_12_02_07_04_05.123456789`, the symlink `..data` is swapped to it by a
//! rename, and each top-level name is a symlink `name -> ..data/name`. Old directories and
//! names no longer in the payload are then removed. Nothing is written when nothing changed.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};

/// One file of a volume: its bytes and mode. Its `Debug` never shows the bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct File {
    /// The content.
    pub data: Vec<u8>,
    /// Its permission bits (`defaultMode` or the item's `mode`).
    pub mode: u32,
}

impl std::fmt::Debug for File {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "File({} bytes, mode {:o})", self.data.len(), self.mode)
    }
}

/// The files of a volume by relative path.
pub type Payload = BTreeMap<String, File>;

const DATA: &str = "..data";
const DATA_TMP: &str = "..data_tmp";

/// Checks a payload path as the kubelet's `validatePath`: relative, no `..` element, not
/// starting with `..`.
pub fn validate_path(p: &str) -> Result<(), String> {
    if p.is_empty() {
        return Err("empty path".into());
    }
    if p.starts_with('/') {
        return Err(format!("{p:?}: must be a relative path"));
    }
    if p.starts_with("..") {
        return Err(format!("{p:?}: must not start with '..'"));
    }
    if p.split('/').any(|item| item == "..") {
        return Err(format!("{p:?}: must not contain '..'"));
    }
    Ok(())
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// Reads what `dir`'s `..data` currently holds for the paths of `payload` (to skip rewrites).
fn unchanged(dir: &Path, payload: &Payload) -> bool {
    let data = dir.join(DATA);
    let Ok(target) = std::fs::read_link(&data) else {
        return false;
    };
    let current = dir.join(target);
    let mut existing = BTreeSet::new();
    for entry in walk(&current) {
        if let Ok(rel) = entry.strip_prefix(&current) {
            existing.insert(rel.to_string_lossy().into_owned());
        }
    }
    if existing != payload.keys().cloned().collect() {
        return false;
    }
    payload.iter().all(|(p, f)| {
        let path = current.join(p);
        let mode_ok =
            std::fs::metadata(&path).is_ok_and(|m| m.permissions().mode() & 0o7777 == f.mode & 0o7777);
        mode_ok && std::fs::read(&path).is_ok_and(|d| d == f.data)
    })
}

/// Every regular file below `dir` (not following symlinks).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(t) = e.file_type() else { continue };
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out
}

fn timestamp_dir_name() -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let ts = k8s_openapi::jiff::Timestamp::from_second(i64::try_from(now.as_secs()).unwrap_or(0))
        .unwrap_or(k8s_openapi::jiff::Timestamp::UNIX_EPOCH);
    format!("..{}.{:09}", ts.strftime("%Y_%m_%d_%H_%M_%S"), now.subsec_nanos())
}

/// Writes `payload` into `dir` atomically; `fs_group` makes the files group-owned and
/// group-readable as the kubelet's `SetVolumeOwnership` (read-only volumes). Returns whether
/// anything was written.
pub fn write(dir: &Path, payload: &Payload, fs_group: Option<u32>) -> Result<bool, String> {
    for p in payload.keys() {
        validate_path(p)?;
    }
    std::fs::create_dir_all(dir).map_err(|e| io("creating", dir, e))?;
    if unchanged(dir, payload) {
        return Ok(false);
    }
    let old = std::fs::read_link(dir.join(DATA)).ok();
    let mut name = timestamp_dir_name();
    while dir.join(&name).exists() {
        name.push('_');
    }
    let ts = dir.join(&name);
    std::fs::create_dir(&ts).map_err(|e| io("creating", &ts, e))?;
    for (p, f) in payload {
        let path = ts.join(p);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|e| io("creating", parent, e))?;
        }
        std::fs::write(&path, &f.data).map_err(|e| io("writing", &path, e))?;
        let mut mode = f.mode & 0o7777;
        if let Some(g) = fs_group {
            std::os::unix::fs::lchown(&path, None, Some(g)).map_err(|e| io("chown", &path, e))?;
            mode |= 0o440;
        }
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("chmod", &path, e))?;
    }
    let mut dirs: Vec<PathBuf> = vec![ts.clone()];
    for p in payload.keys() {
        let mut cur = ts.join(p);
        while let Some(parent) = cur.parent().map(Path::to_path_buf) {
            if !parent.starts_with(&ts) || parent == ts {
                break;
            }
            dirs.push(parent.clone());
            cur = parent;
        }
    }
    for d in &dirs {
        let mut mode = 0o755;
        if let Some(g) = fs_group {
            std::os::unix::fs::lchown(d, None, Some(g)).map_err(|e| io("chown", d, e))?;
            mode |= 0o2550;
        }
        std::fs::set_permissions(d, std::fs::Permissions::from_mode(mode)).map_err(|e| io("chmod", d, e))?;
    }
    let tmp = dir.join(DATA_TMP);
    let _ = std::fs::remove_file(&tmp);
    symlink(&name, &tmp).map_err(|e| io("linking", &tmp, e))?;
    std::fs::rename(&tmp, dir.join(DATA)).map_err(|e| io("renaming", &tmp, e))?;
    // The user-visible names: one symlink per top-level element.
    let top: BTreeSet<String> = payload
        .keys()
        .filter_map(|p| p.split('/').next().map(str::to_string))
        .collect();
    for t in &top {
        let link = dir.join(t);
        if std::fs::symlink_metadata(&link).is_err() {
            symlink(Path::new(DATA).join(t), &link).map_err(|e| io("linking", &link, e))?;
        }
    }
    // Names of the previous payload that are gone, and the previous directory.
    if let Ok(rd) = std::fs::read_dir(dir) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().into_owned();
            if n.starts_with("..") || top.contains(&n) {
                continue;
            }
            if e.file_type().is_ok_and(|t| t.is_symlink()) {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
    if let Some(old) = old.filter(|o| o.as_os_str() != name.as_str()) {
        let old = dir.join(old);
        if old
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with(".."))
        {
            let _ = std::fs::remove_dir_all(old);
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(s: &str, mode: u32) -> File {
        File {
            data: s.as_bytes().to_vec(),
            mode,
        }
    }

    #[test]
    fn paths_are_validated() {
        assert!(validate_path("a/b.txt").is_ok());
        for bad in ["", "/etc/passwd", "../x", "a/../../x", "..data"] {
            assert!(validate_path(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn writes_swaps_and_cleans_up() {
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().join("vol");
        let mut p = Payload::new();
        p.insert("a".into(), file("one", 0o644));
        p.insert("sub/b".into(), file("two", 0o400));
        assert!(write(&d, &p, None).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "one");
        assert_eq!(std::fs::read_to_string(d.join("sub/b")).unwrap(), "two");
        assert_eq!(std::fs::read_link(d.join("a")).unwrap(), Path::new("..data/a"));
        let mode = std::fs::metadata(d.join("sub/b")).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o400);
        let first = std::fs::read_link(d.join(DATA)).unwrap();

        // Same payload: nothing written.
        assert!(!write(&d, &p, None).unwrap());
        assert_eq!(std::fs::read_link(d.join(DATA)).unwrap(), first);

        // New content, a key gone: a new directory, the old one and the old name removed.
        let mut q = Payload::new();
        q.insert("a".into(), file("uno", 0o644));
        assert!(write(&d, &q, None).unwrap());
        assert_eq!(std::fs::read_to_string(d.join("a")).unwrap(), "uno");
        assert!(std::fs::symlink_metadata(d.join("sub")).is_err());
        assert!(!d.join(&first).exists());
        let entries: Vec<String> = std::fs::read_dir(&d)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(entries.len(), 3, "{entries:?}"); // a, ..data, ..<timestamp>

        // Empty payload (an optional source that is missing): an empty volume.
        assert!(write(&d, &Payload::new(), None).unwrap());
        assert!(std::fs::symlink_metadata(d.join("a")).is_err());
    }

    #[test]
    fn fs_group_owns_and_reads_the_files() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().expect("dir");
        let d = dir.path().join("vol");
        let mut p = Payload::new();
        p.insert("k/f".into(), file("x", 0o600));
        // chown to another group needs root (the agent runs as root); skip otherwise.
        if std::fs::metadata(dir.path()).map(|m| m.uid()).unwrap_or(1) != 0 {
            return;
        }
        write(&d, &p, Some(4242)).unwrap();
        let f = std::fs::metadata(d.join("k/f")).unwrap();
        assert_eq!(f.gid(), 4242);
        assert_eq!(f.mode() & 0o777, 0o640);
        let sub = std::fs::metadata(d.join("k")).unwrap();
        assert_eq!(sub.gid(), 4242);
        assert_eq!(sub.mode() & 0o2000, 0o2000, "set-gid directory");
    }

    #[test]
    fn debug_never_shows_content() {
        assert_eq!(format!("{:?}", file("hunter2", 0o600)), "File(7 bytes, mode 600)");
    }
}
