//! The spool part of the configuration (`spool-dir`, `spool-bytes`): validated like every
//! other key, and the directory checked once at start-up (made if missing, mode 0700, and
//! written to), so a spool that cannot work is a configuration error naming the key and the
//! fix, not a surprise at the first report.

use std::path::{Path, PathBuf};

use bytesize::ByteSize;

use super::{ConfigError, invalid};
use crate::pipeline::SpoolConfig;

/// `spool-bytes` when `spool-dir` is given without it.
pub const DEFAULT_SPOOL_BYTES: u64 = 1 << 30;

/// The spool, when `spool-dir` is set.
pub(super) fn spool(
    dir: Option<PathBuf>,
    bytes: Option<ByteSize>,
    max_message_bytes: usize,
) -> Result<Option<SpoolConfig>, ConfigError> {
    let Some(dir) = dir else {
        return match bytes {
            Some(size) => Err(invalid(
                "spool-bytes",
                size,
                "nothing without spool-dir: set spool-dir (CUBESAT_SPOOL_DIR) to turn the spool on",
            )),
            None => Ok(None),
        };
    };
    let limit_bytes = bytes.map_or(DEFAULT_SPOOL_BYTES, |b| b.as_u64());
    if limit_bytes < max_message_bytes as u64 {
        return Err(invalid(
            "spool-bytes",
            ByteSize(limit_bytes),
            format!(
                "at least max-message-bytes ({}), so any accepted report fits: raise spool-bytes or lower max-message-bytes",
                ByteSize(max_message_bytes as u64)
            ),
        ));
    }
    check_writable(&dir).map_err(|error| {
        invalid(
            "spool-dir",
            dir.display(),
            format!(
                "a directory cubesat can create and write files in ({error}): fix its owner or mode, or point spool-dir elsewhere"
            ),
        )
    })?;
    Ok(Some(SpoolConfig { dir, limit_bytes }))
}

/// Makes `dir` (owner-only) if missing and writes and removes a probe file in it.
fn check_writable(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let probe = dir.join(format!(".cubesat-probe-{}", std::process::id()));
    std::fs::write(&probe, b"")?;
    std::fs::remove_file(&probe)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Config, Flags, Mode};

    #[test]
    fn the_file_keys_work_like_the_flags_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!(
            "spool-dir = \"{}\"\nspool-bytes = \"64MiB\"\n",
            dir.path().join("file").display()
        );
        let file: Flags = toml::from_str(&text).unwrap();
        let config = Config::merge(Mode::Serve, Flags::default(), file.clone()).unwrap();
        let spool = config.spool.unwrap();
        assert_eq!(spool.dir, dir.path().join("file"));
        assert_eq!(spool.limit_bytes, 64 << 20);
        let flags = Flags {
            spool_bytes: Some(ByteSize::mib(32)),
            ..Flags::default()
        };
        let config = Config::merge(Mode::Serve, flags, file).unwrap();
        assert_eq!(config.spool.unwrap().limit_bytes, 32 << 20);
        let config = Config::merge(Mode::Serve, Flags::default(), Flags::default()).unwrap();
        assert!(config.spool.is_none(), "off by default");
    }

    #[test]
    fn spool_keys_are_checked_and_name_the_fix() {
        assert_eq!(spool(None, None, 1 << 20).unwrap(), None);
        let err = spool(None, Some(ByteSize::mib(64)), 1 << 20).unwrap_err();
        assert!(err.to_string().contains("`spool-bytes`"), "{err}");
        assert!(err.to_string().contains("set spool-dir"), "{err}");

        let dir = tempfile::tempdir().unwrap();
        let made = dir.path().join("a/b");
        let config = spool(Some(made.clone()), None, 1 << 20).unwrap().unwrap();
        assert_eq!(config.limit_bytes, DEFAULT_SPOOL_BYTES);
        assert!(made.is_dir());

        let err = spool(Some(made), Some(ByteSize::mib(1)), 16 << 20).unwrap_err();
        assert!(
            err.to_string().contains("at least max-message-bytes"),
            "{err}"
        );

        let file = dir.path().join("file");
        std::fs::write(&file, b"x").unwrap();
        let err = spool(Some(file), None, 1 << 20).unwrap_err().to_string();
        assert!(
            err.contains("`spool-dir`") && err.contains("point spool-dir elsewhere"),
            "{err}"
        );
    }
}
