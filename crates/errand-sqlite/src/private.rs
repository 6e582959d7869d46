//! Files that hold task data are private to the user running errand: directories errand
//! creates are mode 0700, database files 0600 (SQLite gives a database's `-wal` and `-shm`
//! files the database file's mode).

use std::io;
use std::path::Path;

/// Creates `dir` and its missing parents (mode 0700 on Unix, as far as the umask allows).
/// An existing directory is left as it is.
pub fn private_dir(dir: &Path) -> io::Result<()> {
    let mut builder = std::fs::DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder.create(dir)
}

/// Creates the file `path` empty with mode 0600 if it does not exist, and takes the group's
/// and others' permissions away from an existing one, so a database is never readable by
/// other users, from its first byte on.
///
/// An existing file is never opened: closing any descriptor of a SQLite database drops the
/// locks this process's connections hold on it (POSIX record locks belong to the process), so
/// its mode is changed by path.
pub fn private_file(path: &Path) -> io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    match options.open(path) {
        Ok(file) => {
            drop(file);
            return Ok(());
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode & 0o700))?;
        }
    }
    Ok(())
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path)
            .expect("exists")
            .permissions()
            .mode()
            & 0o777
    }

    #[test]
    fn new_and_loose_files_end_private() {
        let dir = tempfile::tempdir().expect("temp dir");
        let nested = dir.path().join("a/b");
        private_dir(&nested).expect("created");
        assert_eq!(mode(&nested), 0o700);
        let file = nested.join("db");
        private_file(&file).expect("created");
        assert_eq!(mode(&file), 0o600);
        std::fs::write(&file, b"data").expect("write");
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        private_file(&file).expect("tightened");
        assert_eq!(mode(&file), 0o600);
        assert_eq!(
            std::fs::read(&file).expect("read"),
            b"data",
            "contents kept"
        );
    }
}
