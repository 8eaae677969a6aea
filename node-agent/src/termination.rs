//! Termination messages, as the kubelet reads them: the last 4096 bytes of the file the
//! container wrote at its `terminationMessagePath`, or with `FallbackToLogsOnError` and a
//! failed, silent container, the tail of its log (80 lines, 2048 bytes). Appended to the
//! runtime's own message in `state.terminated.message`.

use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use k8s_openapi::api::core::v1::Pod;

use crate::observe::{Observed, State};
use crate::volumes::layout;

/// The most of the file that is read.
pub const MAX_MESSAGE: u64 = 4096;
/// The most of the log that is read.
pub const MAX_LOG_BYTES: usize = 2048;
/// The most log lines that are read.
pub const MAX_LOG_LINES: usize = 80;

/// The last `max` bytes of `path` (`None` when it does not exist).
fn read_tail(path: &Path, max: u64) -> std::io::Result<Vec<u8>> {
    let mut f = std::fs::File::open(path)?;
    let len = f.metadata()?.len();
    f.seek(SeekFrom::Start(len.saturating_sub(max)))?;
    let mut v = Vec::new();
    f.take(max).read_to_end(&mut v)?;
    Ok(v)
}

/// The text of the last lines of a CRI log (`TIMESTAMP STREAM TAG text`, `P` partial).
pub fn log_tail(cri_log: &str) -> String {
    let mut lines: Vec<String> = Vec::new();
    let mut partial = String::new();
    for l in cri_log.lines() {
        let mut parts = l.splitn(4, ' ');
        let (_, _, tag, text) = (
            parts.next(),
            parts.next(),
            parts.next(),
            parts.next().unwrap_or(""),
        );
        partial.push_str(text);
        if tag != Some("P") {
            lines.push(std::mem::take(&mut partial) + "\n");
        }
    }
    let start = lines.len().saturating_sub(MAX_LOG_LINES);
    let text: String = lines[start..].concat();
    let bytes = text.as_bytes();
    let mut cut = bytes.len().saturating_sub(MAX_LOG_BYTES);
    while cut < bytes.len() && !text.is_char_boundary(cut) {
        cut += 1;
    }
    text[cut..].to_string()
}

/// Fills in the termination messages of the pod's exited containers.
pub fn fill(root: &Path, log_dir: &Path, pod: &Pod, obs: &mut Observed) {
    let Some(uid) = layout::uid(pod) else { return };
    let Some(spec) = pod.spec.as_ref() else { return };
    for c in obs.containers.iter_mut().filter(|c| c.state == State::Exited) {
        let Some(sc) = spec
            .containers
            .iter()
            .chain(spec.init_containers.iter().flatten())
            .find(|s| s.name == c.name)
        else {
            continue;
        };
        if sc.termination_message_path.as_deref().is_none_or(str::is_empty) {
            continue;
        }
        let fallback = sc.termination_message_policy.as_deref() == Some("FallbackToLogsOnError")
            && c.exit_code != 0
            && c.reason != "ContainerCannotRun";
        let file = layout::termination_file(root, uid, &c.name, c.attempt);
        let mut message = match read_tail(&file, MAX_MESSAGE) {
            Ok(d) => String::from_utf8_lossy(&d).into_owned(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(e) => format!("Error on reading termination log {}: {e}", file.display()),
        };
        if message.is_empty() && fallback && !c.log_path.is_empty() {
            let log = log_dir.join(&c.log_path);
            message = match read_tail(&log, 64 * 1024) {
                Ok(d) => log_tail(&String::from_utf8_lossy(&d)),
                Err(e) => format!("Error on reading termination message from logs: {e}"),
            };
        }
        if message.is_empty() || c.message.ends_with(&message) {
            continue;
        }
        if !c.message.is_empty() {
            c.message.push_str(": ");
        }
        c.message.push_str(&message);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_tail_joins_partials_and_caps() {
        let log = "2026-12-02T07:00:00Z stdout P hel\n2026-12-02T07:00:00Z stdout F lo\n2026-12-02T07:00:01Z stderr F boom\n";
        assert_eq!(log_tail(log), "hello\nboom\n");
        let many: String = (0..100).map(|i| format!("t stdout F line{i}\n")).collect();
        let t = log_tail(&many);
        assert!(t.starts_with("line20\n") && t.ends_with("line99\n"), "{t}");
        let long: String = (0..10)
            .map(|_| format!("t stdout F {}\n", "x".repeat(500)))
            .collect();
        assert_eq!(log_tail(&long).len(), MAX_LOG_BYTES);
    }

    #[test]
    fn reads_the_last_bytes() {
        let d = tempfile::tempdir().expect("dir");
        let f = d.path().join("m");
        std::fs::write(&f, vec![b'a'; 5000]).unwrap();
        assert_eq!(read_tail(&f, MAX_MESSAGE).unwrap().len(), 4096);
        assert!(read_tail(&d.path().join("none"), 10).is_err());
    }
}
