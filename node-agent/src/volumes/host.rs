//! The host side of volumes: tmpfs mounts (with `mount(8)`, as the kubelet's mount-utils),
//! the mount table, directory ownership for `fsGroup`, hostPath type checks, and removing a
//! pod's directory only once nothing is mounted below it.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Unescapes a mountinfo path (`\040` for a space).
fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\'
            && i + 3 < b.len()
            && let Ok(n) = u8::from_str_radix(&s[i + 1..i + 4], 8)
        {
            out.push(n);
            i += 4;
            continue;
        }
        out.push(b[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The mount points listed in `mountinfo` text.
pub fn mount_points(mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(|p| PathBuf::from(unescape(p)))
        .collect()
}

/// The mount points at or below `dir`, deepest first.
pub fn mounts_under(mountinfo: &str, dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = mount_points(mountinfo)
        .into_iter()
        .filter(|p| p.starts_with(dir))
        .collect();
    v.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    v.dedup();
    v
}

/// True when the mount holding `path` propagates new mounts to its peers (`shared:N` in
/// mountinfo): then a tmpfs mounted below it reaches a runtime in another mount namespace.
pub fn propagates(mountinfo: &str, path: &Path) -> bool {
    let mut best: Option<(usize, bool)> = None;
    for line in mountinfo.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(point) = fields.get(4).map(|p| PathBuf::from(unescape(p))) else {
            continue;
        };
        if !path.starts_with(&point) {
            continue;
        }
        let depth = point.components().count();
        let shared = fields
            .iter()
            .skip(6)
            .take_while(|f| **f != "-")
            .any(|f| f.starts_with("shared:"));
        if best.is_none_or(|(d, _)| depth >= d) {
            best = Some((depth, shared));
        }
    }
    best.is_some_and(|(_, s)| s)
}

/// [`propagates`] for this process's mounts.
pub fn root_propagates(path: &Path) -> bool {
    propagates(&mountinfo(), path)
}

fn mountinfo() -> String {
    std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default()
}

/// True when `dir` is a mount point.
pub fn is_mount_point(dir: &Path) -> bool {
    mount_points(&mountinfo()).iter().any(|p| p == dir)
}

fn run(cmd: &mut Command) -> Result<(), String> {
    let out = cmd.output().map_err(|e| format!("running {cmd:?}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "{cmd:?} failed: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Makes `dir` a tmpfs (once), of `size` bytes when given.
pub fn ensure_tmpfs(dir: &Path, size: Option<i64>) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let mut cmd = Command::new("mount");
    cmd.args(["-t", "tmpfs"]);
    if let Some(n) = size {
        cmd.args(["-o", &format!("size={n}")]);
    }
    cmd.arg("tmpfs").arg(dir);
    run(&mut cmd)
}

/// Unmounts everything at or below `dir`, deepest first (lazily when busy).
pub fn unmount_under(dir: &Path) -> Result<(), String> {
    for m in mounts_under(&mountinfo(), dir) {
        if run(Command::new("umount").arg(&m)).is_err() {
            run(Command::new("umount").arg("-l").arg(&m))?;
        }
    }
    Ok(())
}

/// Unmounts and removes `dir`, refusing to remove anything while a mount remains below it
/// (so a mount is never emptied through its mount point).
pub fn remove_dir(dir: &Path) -> Result<(), String> {
    if std::fs::symlink_metadata(dir).is_err() {
        return Ok(());
    }
    unmount_under(dir)?;
    let left = mounts_under(&mountinfo(), dir);
    if !left.is_empty() {
        return Err(format!("still mounted below {}: {left:?}", dir.display()));
    }
    std::fs::remove_dir_all(dir).map_err(|e| format!("removing {}: {e}", dir.display()))
}

/// The disk space used below `dir` (allocated blocks, as `du`), not following symlinks nor
/// crossing into other mounts' directories more than the walk finds.
pub fn usage(dir: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    let mut total = 0u64;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(rd) = std::fs::read_dir(&d) else { continue };
        for e in rd.flatten() {
            let Ok(m) = e.metadata() else { continue };
            total = total.saturating_add(m.blocks().saturating_mul(512));
            if m.is_dir() {
                stack.push(e.path());
            }
        }
    }
    total
}

/// Sets the mode of an emptyDir (0777, as the kubelet's), and for `fs_group` its group, the
/// set-gid bit and group write access of everything in it (`SetVolumeOwnership`).
pub fn empty_dir_ownership(dir: &Path, fs_group: Option<u32>) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", dir.display());
    let mut mode = 0o777;
    if let Some(g) = fs_group {
        std::os::unix::fs::lchown(dir, None, Some(g)).map_err(err)?;
        mode |= 0o2000;
    }
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).map_err(err)
}

/// Checks (or creates) a hostPath of type `ty` as the kubelet's `checkType`.
pub fn check_host_path(path: &Path, ty: &str) -> Result<(), String> {
    let meta = std::fs::metadata(path);
    let name = path.display();
    match ty {
        "" => Ok(()),
        "DirectoryOrCreate" if meta.is_err() => {
            std::fs::create_dir_all(path).map_err(|e| format!("creating {name}: {e}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755))
                .map_err(|e| format!("{name}: {e}"))
        }
        "FileOrCreate" if meta.is_err() => {
            if let Some(p) = path.parent() {
                std::fs::create_dir_all(p).map_err(|e| format!("creating {}: {e}", p.display()))?;
            }
            std::fs::File::create(path).map_err(|e| format!("creating {name}: {e}"))?;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
                .map_err(|e| format!("{name}: {e}"))
        }
        _ => {
            let m = meta.map_err(|_| format!("hostPath type check failed: {name} does not exist"))?;
            let t = m.file_type();
            let ok = match ty {
                "DirectoryOrCreate" | "Directory" => t.is_dir(),
                "FileOrCreate" | "File" => t.is_file(),
                "Socket" => t.is_socket(),
                "CharDevice" => t.is_char_device(),
                "BlockDevice" => t.is_block_device(),
                _ => false,
            };
            if ok {
                Ok(())
            } else {
                Err(format!("hostPath type check failed: {name} is not a {ty}"))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /r/pods/u1/volumes/kubernetes.io~secret/tok rw - tmpfs tmpfs rw
91 22 0:51 / /r/pods/u1/volumes/kubernetes.io~empty-dir/my\\040cache rw - tmpfs tmpfs rw
92 22 0:52 / /r/pods/u10/volumes/kubernetes.io~secret/x rw - tmpfs tmpfs rw
93 90 0:53 / /r/pods/u1/volumes/kubernetes.io~secret/tok/inner rw - tmpfs tmpfs rw
";

    #[test]
    fn mounts_below_a_pod_deepest_first() {
        let m = mounts_under(MOUNTINFO, Path::new("/r/pods/u1"));
        assert_eq!(
            m,
            vec![
                PathBuf::from("/r/pods/u1/volumes/kubernetes.io~secret/tok/inner"),
                PathBuf::from("/r/pods/u1/volumes/kubernetes.io~secret/tok"),
                PathBuf::from("/r/pods/u1/volumes/kubernetes.io~empty-dir/my cache"),
            ]
        );
    }

    #[test]
    fn shared_mounts_propagate() {
        let private = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n";
        assert!(!propagates(private, Path::new("/var/lib/berth-agent")));
        let bound = "22 1 8:1 / / rw,relatime - ext4 /dev/sda1 rw\n\
                     80 22 8:1 /s/agent /s/agent rw,relatime shared:7 - ext4 /dev/sda1 rw\n";
        assert!(propagates(bound, Path::new("/s/agent/pods/u1")));
        assert!(!propagates(bound, Path::new("/s/other")));
        assert!(propagates(MOUNTINFO, Path::new("/var/lib/x")));
    }

    #[test]
    fn host_path_types() {
        let d = tempfile::tempdir().expect("dir");
        let dir = d.path().join("made");
        check_host_path(&dir, "DirectoryOrCreate").unwrap();
        assert!(dir.is_dir());
        check_host_path(&dir, "Directory").unwrap();
        assert!(check_host_path(&dir, "File").is_err());
        let f = d.path().join("sub/f");
        check_host_path(&f, "FileOrCreate").unwrap();
        assert!(f.is_file());
        assert!(check_host_path(&d.path().join("none"), "Directory").is_err());
        check_host_path(&d.path().join("none"), "").unwrap();
    }

    #[test]
    fn usage_counts_allocated_blocks() {
        let d = tempfile::tempdir().expect("dir");
        std::fs::create_dir_all(d.path().join("a/b")).unwrap();
        std::fs::write(d.path().join("a/b/f"), vec![1u8; 100_000]).unwrap();
        let u = usage(d.path());
        assert!(u >= 100_000, "{u}");
    }

    #[test]
    fn empty_dirs_are_world_writable_and_group_owned_with_fs_group() {
        use std::os::unix::fs::MetadataExt;
        let d = tempfile::tempdir().expect("dir");
        let dir = d.path().join("e");
        std::fs::create_dir(&dir).unwrap();
        empty_dir_ownership(&dir, None).unwrap();
        assert_eq!(std::fs::metadata(&dir).unwrap().mode() & 0o7777, 0o777);
        if std::fs::metadata(d.path()).map(|m| m.uid()).unwrap_or(1) != 0 {
            return;
        }
        empty_dir_ownership(&dir, Some(4242)).unwrap();
        let m = std::fs::metadata(&dir).unwrap();
        assert_eq!((m.gid(), m.mode() & 0o7777), (4242, 0o2777));
    }

    #[test]
    fn a_directory_without_mounts_is_removed() {
        let d = tempfile::tempdir().expect("dir");
        let pod = d.path().join("pods/u1");
        std::fs::create_dir_all(pod.join("volumes/kubernetes.io~empty-dir/x")).unwrap();
        remove_dir(&pod).unwrap();
        assert!(!pod.exists());
        remove_dir(&pod).unwrap();
    }
}
