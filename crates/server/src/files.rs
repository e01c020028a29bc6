//! Small file helpers.

use std::io::Write as _;
use std::path::Path;

/// Writes `bytes` to `path` readable only by the owner (0600), durably (fsync), replacing any
/// existing file atomically through a temporary file and a rename.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let mut file = options.open(&tmp)?;
        file.write_all(bytes)?;
        file.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        // The rename is durable only once the directory entry is.
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}
