//! How caq reads the files it is given and writes the files it makes, in one place for every
//! crate. Inputs must be regular files: a FIFO would block the reader forever, a directory or a
//! device is never a model, config or data set, and each gets an error that says what the path
//! is. Outputs never leave a half-written file: a regular file (or a new path) is written to a
//! temporary file beside it and renamed over it; a path that is a character device or a FIFO
//! (`/dev/null`), or a link to a process's open file (`/dev/stdout`, `/proc/self/fd/1`), is
//! appended to in place, because renaming over it would replace the device node with a regular
//! file (or drop what the process already printed); anything else (a directory, a block device, a socket) is
//! refused. A symbolic link is followed: its target is what is replaced, the link stays. A
//! multi-file output (a directory) is built in a temporary directory and swapped in as a whole.
//!
//! Knows nothing of what the bytes mean; errors are `std::io::Error`s whose message names what
//! the path is, for the caller to wrap with the path and the flag it came from.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

/// What a path is, in words, for an error message.
fn kind_of(t: fs::FileType) -> &'static str {
    if t.is_dir() {
        "a directory"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else if t.is_symlink() {
        "a symbolic link"
    } else {
        "a regular file"
    }
}

fn not_regular(t: fs::FileType) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("is {}, expected a regular file", kind_of(t)),
    )
}

/// Opens `path` for reading, refusing anything that is not a regular file (checked before the
/// open, so a FIFO is never opened and cannot block, and again on the opened file).
pub fn open_regular(path: &Path) -> io::Result<File> {
    let t = fs::metadata(path)?.file_type();
    if !t.is_file() {
        return Err(not_regular(t));
    }
    let f = File::open(path)?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        return Err(not_regular(t));
    }
    Ok(f)
}

/// The whole content of a regular file.
pub fn read_regular(path: &Path) -> io::Result<Vec<u8>> {
    let mut f = open_regular(path)?;
    let mut v = Vec::new();
    f.read_to_end(&mut v)?;
    Ok(v)
}

/// The whole content of a regular file as UTF-8 text.
pub fn read_regular_to_string(path: &Path) -> io::Result<String> {
    String::from_utf8(read_regular(path)?).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "is not UTF-8 text (invalid byte at offset {})",
                e.utf8_error().valid_up_to()
            ),
        )
    })
}

/// Where an output to `path` goes.
enum Target {
    /// Replace this regular file (or create it) by rename.
    Replace(PathBuf),
    /// Write into this existing special file in place.
    InPlace(PathBuf),
}

fn target(path: &Path) -> io::Result<Target> {
    match fs::symlink_metadata(path) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Target::Replace(path.to_path_buf())),
        Err(e) => Err(e),
        // /dev/stdout and other links to a process's open files (/proc/self/fd/N): the open
        // file is the output, whatever it is; replacing the file behind it would drop what the
        // process already wrote there.
        Ok(m)
            if m.file_type().is_symlink()
                && (path.starts_with("/proc") || fs::read_link(path)?.starts_with("/proc")) =>
        {
            Ok(Target::InPlace(path.to_path_buf()))
        }
        Ok(m) if m.file_type().is_symlink() => match fs::metadata(path) {
            // A dangling link: create its target.
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let t = fs::read_link(path)?;
                let t = match path.parent() {
                    Some(dir) if t.is_relative() => dir.join(t),
                    _ => t,
                };
                Ok(Target::Replace(t))
            }
            Err(e) => Err(e),
            Ok(m) => classify(&fs::canonicalize(path)?, m.file_type()),
        },
        Ok(m) => classify(path, m.file_type()),
    }
}

fn classify(path: &Path, t: fs::FileType) -> io::Result<Target> {
    if t.is_file() {
        Ok(Target::Replace(path.to_path_buf()))
    } else if t.is_char_device() || t.is_fifo() {
        Ok(Target::InPlace(path.to_path_buf()))
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "is {}; an output must be a regular file, a new path, a character device or a FIFO",
                kind_of(t)
            ),
        ))
    }
}

/// The temporary name beside `path` that a write goes through.
fn temp_beside(path: &Path, what: &str) -> io::Result<PathBuf> {
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "does not name a file"))?;
    let dir = parent_dir(path);
    Ok(dir.join(format!(
        ".{}.{}.{what}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

fn parent_dir(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Writes `bytes` to `path` so that a reader sees the old content or the whole new one: a
/// temporary file in the same directory, fsync, rename. A character device or FIFO is written in
/// place instead (see the module doc); other special files are refused. Creates missing parent
/// directories.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> io::Result<()> {
    match target(path)? {
        Target::InPlace(p) => {
            // Append: for a device or a pipe it is the same as a write; for a process's stdout
            // redirected to a file it keeps what was printed before.
            let mut f = fs::OpenOptions::new().append(true).open(p)?;
            f.write_all(bytes)?;
            f.flush()
        }
        Target::Replace(p) => {
            fs::create_dir_all(parent_dir(&p))?;
            let tmp = temp_beside(&p, "tmp")?;
            let result = (|| {
                let mut f = File::create(&tmp)?;
                f.write_all(bytes)?;
                f.sync_all()?;
                fs::rename(&tmp, &p)
            })();
            if result.is_err() {
                let _ = fs::remove_file(&tmp);
            }
            result
        }
    }
}

/// Builds the directory `dir` as a whole: `fill` writes every file into a fresh temporary
/// directory beside it, which then takes `dir`'s place. If `fill` fails, `dir` is untouched and
/// the temporary directory removed; an existing `dir` is moved aside before the swap and removed
/// after it, so `dir` never holds a mixture of an old and a new output. `dir` must be a new path,
/// an empty directory or an earlier output of the same kind, recognised by the file `marker` in it
/// (a symbolic link to a directory is followed): a directory of other files is refused, never
/// swept away.
pub fn replace_dir<E>(
    dir: &Path,
    marker: &str,
    fill: impl FnOnce(&Path) -> Result<(), E>,
) -> Result<(), ReplaceDirError<E>> {
    let dir = match fs::metadata(dir) {
        Ok(m) if m.is_dir() => {
            let empty = fs::read_dir(dir)
                .map_err(ReplaceDirError::Io)?
                .next()
                .is_none();
            if !empty && !dir.join(marker).is_file() {
                return Err(ReplaceDirError::Io(io::Error::new(
                    io::ErrorKind::AlreadyExists,
                    format!(
                        "is a directory of other files (no {marker}); an output directory must be \
                         a new path, an empty directory or an earlier output of the same kind"
                    ),
                )));
            }
            fs::canonicalize(dir).map_err(ReplaceDirError::Io)?
        }
        Ok(m) => {
            return Err(ReplaceDirError::Io(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "is {}; an output directory must be a directory or a new path",
                    kind_of(m.file_type())
                ),
            )));
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => dir.to_path_buf(),
        Err(e) => return Err(ReplaceDirError::Io(e)),
    };
    fs::create_dir_all(parent_dir(&dir)).map_err(ReplaceDirError::Io)?;
    let tmp = temp_beside(&dir, "new").map_err(ReplaceDirError::Io)?;
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir(&tmp).map_err(ReplaceDirError::Io)?;
    if let Err(e) = fill(&tmp) {
        let _ = fs::remove_dir_all(&tmp);
        return Err(ReplaceDirError::Fill(e));
    }
    let swap = (|| {
        let old = temp_beside(&dir, "old")?;
        let had_old = dir.exists();
        if had_old {
            let _ = fs::remove_dir_all(&old);
            fs::rename(&dir, &old)?;
        }
        if let Err(e) = fs::rename(&tmp, &dir) {
            if had_old {
                let _ = fs::rename(&old, &dir);
            }
            return Err(e);
        }
        if had_old {
            fs::remove_dir_all(&old)?;
        }
        Ok(())
    })();
    if let Err(e) = swap {
        let _ = fs::remove_dir_all(&tmp);
        return Err(ReplaceDirError::Io(e));
    }
    Ok(())
}

/// Why [`replace_dir`] failed: the caller's `fill` or the directory swap.
#[derive(Debug)]
pub enum ReplaceDirError<E> {
    Fill(E),
    Io(io::Error),
}

/// True when `a` and `b` name the same existing file (after following links), so a command can
/// refuse to write its output over one of its inputs.
pub fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(x), Ok(y)) => x.dev() == y.dev() && x.ino() == y.ino(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        let ok = std::process::Command::new("mkfifo")
            .arg(path)
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "mkfifo {}", path.display());
    }

    #[test]
    fn a_fifo_or_directory_input_is_refused_without_blocking() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        mkfifo(&fifo);
        let e = read_regular(&fifo).unwrap_err().to_string();
        assert_eq!(e, "is a FIFO, expected a regular file");
        let e = read_regular(d.path()).unwrap_err().to_string();
        assert_eq!(e, "is a directory, expected a regular file");
        let e = read_regular(Path::new("/dev/null"))
            .unwrap_err()
            .to_string();
        assert_eq!(e, "is a character device, expected a regular file");
        let f = d.path().join("f");
        fs::write(&f, b"ok").unwrap();
        assert_eq!(read_regular(&f).unwrap(), b"ok");
    }

    #[test]
    fn writing_to_a_character_device_keeps_the_device() {
        // /dev/null is the one device every test machine has; as root the old rename would have
        // replaced it with a regular file.
        write_atomic(Path::new("/dev/null"), b"{}\n").unwrap();
        let t = fs::metadata("/dev/null").unwrap().file_type();
        assert!(t.is_char_device());
    }

    #[test]
    fn a_symlink_to_a_device_is_written_through_and_kept() {
        let d = tempfile::tempdir().unwrap();
        let link = d.path().join("out.json");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        write_atomic(&link, b"x").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    #[test]
    fn a_symlink_to_a_file_replaces_the_target_not_the_link() {
        let d = tempfile::tempdir().unwrap();
        let real = d.path().join("real");
        fs::write(&real, b"old").unwrap();
        let link = d.path().join("link");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        write_atomic(&link, b"new").unwrap();
        assert!(
            fs::symlink_metadata(&link)
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert_eq!(fs::read(&real).unwrap(), b"new");
    }

    #[test]
    fn a_directory_output_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let e = write_atomic(d.path(), b"x").unwrap_err().to_string();
        assert!(e.starts_with("is a directory; an output must be"), "{e}");
    }

    #[test]
    fn a_fifo_output_is_written_in_place() {
        let d = tempfile::tempdir().unwrap();
        let fifo = d.path().join("fifo");
        mkfifo(&fifo);
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        write_atomic(&fifo, b"through").unwrap();
        assert_eq!(reader.join().unwrap(), b"through");
        assert!(fs::metadata(&fifo).unwrap().file_type().is_fifo());
    }

    #[test]
    fn a_failed_directory_fill_leaves_the_old_directory_whole() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("rtl");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old.v"), b"old").unwrap();
        fs::write(out.join("manifest.json"), b"{}").unwrap();
        let r = replace_dir(&out, "manifest.json", |tmp| {
            fs::write(tmp.join("new.v"), b"new").unwrap();
            Err("disk full")
        });
        assert!(matches!(r, Err(ReplaceDirError::Fill("disk full"))));
        let names: Vec<_> = fs::read_dir(d.path())
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names, vec![std::ffi::OsString::from("rtl")]);
        assert_eq!(fs::read(out.join("old.v")).unwrap(), b"old");
        assert!(!out.join("new.v").exists());
    }

    #[test]
    fn a_filled_directory_replaces_the_old_one_whole() {
        let d = tempfile::tempdir().unwrap();
        let out = d.path().join("rtl");
        fs::create_dir(&out).unwrap();
        fs::write(out.join("old.v"), b"old").unwrap();
        fs::write(out.join("manifest.json"), b"{}").unwrap();
        replace_dir::<()>(&out, "manifest.json", |tmp| {
            fs::write(tmp.join("new.v"), b"new").unwrap();
            fs::write(tmp.join("manifest.json"), b"{}").unwrap();
            Ok(())
        })
        .unwrap();
        assert!(!out.join("old.v").exists());
        assert_eq!(fs::read(out.join("new.v")).unwrap(), b"new");
        assert_eq!(fs::read_dir(d.path()).unwrap().count(), 1);
    }

    #[test]
    fn a_directory_of_other_files_is_not_replaced() {
        let d = tempfile::tempdir().unwrap();
        fs::write(d.path().join("model.caqb"), b"precious").unwrap();
        let r = replace_dir::<()>(d.path(), "manifest.json", |_| Ok(()));
        let Err(ReplaceDirError::Io(e)) = r else {
            panic!("replaced a directory of other files")
        };
        assert!(e.to_string().contains("no manifest.json"), "{e}");
        assert_eq!(fs::read(d.path().join("model.caqb")).unwrap(), b"precious");
    }

    #[test]
    fn same_file_sees_through_links() {
        let d = tempfile::tempdir().unwrap();
        let a = d.path().join("a");
        fs::write(&a, b"x").unwrap();
        let b = d.path().join("b");
        std::os::unix::fs::symlink(&a, &b).unwrap();
        assert!(same_file(&a, &b));
        assert!(!same_file(&a, &d.path().join("missing")));
    }
}
