//! File-system helpers shared by everything that writes run files (checkpoints, the memory
//! bank's state): the atomic file write and the directory sync behind it.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> Error + '_ {
    move |source| Error::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Flushes a directory entry (a rename or a new file inside `dir`) to disk. Directories
/// cannot be opened for `fsync` outside Unix; there it is a no-op.
pub fn sync_dir(dir: &Path) -> Result<()> {
    #[cfg(unix)]
    {
        let d = if dir.as_os_str().is_empty() {
            Path::new(".")
        } else {
            dir
        };
        fs::File::open(d)
            .and_then(|f| f.sync_all())
            .map_err(io_err(d))?;
    }
    #[cfg(not(unix))]
    let _ = dir;
    Ok(())
}

/// Distinguishes the temporary files of concurrent writers in one process.
static TMP_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes `bytes` to `path` atomically: a temporary file `.NAME.tmp.PID.N` in the same
/// directory (so the rename never crosses file systems), `fsync`, `rename` over `path`,
/// `fsync` of the directory. Readers see the old content or the new, never a torn file.
/// The parent directory must exist.
pub fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let name = path
        .file_name()
        .ok_or_else(|| Error::Data {
            path: path.to_path_buf(),
            msg: "not a file path".into(),
        })?
        .to_string_lossy();
    let dir = path.parent().unwrap_or(Path::new(""));
    let n = TMP_COUNTER.fetch_add(1, Ordering::Relaxed);
    let tmp = dir.join(format!(".{name}.tmp.{}.{n}", std::process::id()));
    let write = || -> Result<()> {
        let mut f = fs::File::create(&tmp).map_err(io_err(&tmp))?;
        f.write_all(bytes).map_err(io_err(&tmp))?;
        f.sync_all().map_err(io_err(&tmp))?;
        drop(f);
        fs::rename(&tmp, path).map_err(io_err(path))
    };
    if let Err(e) = write() {
        // Best effort: the temporary file is useless now, and the error above matters more.
        let _ = fs::remove_file(&tmp);
        return Err(e);
    }
    sync_dir(dir)
}

/// The sibling `NAME.SUFFIX` of a path (`last.tmp`, `last.old` beside `last`).
pub fn sibling(dir: &Path, suffix: &str) -> PathBuf {
    let mut s = dir.file_name().unwrap_or_default().to_os_string();
    s.push(suffix);
    dir.with_file_name(s)
}
