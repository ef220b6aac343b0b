//! Output files that appear whole or not at all.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use tempfile::NamedTempFile;

use crate::error::{Error, Result};

/// Where an output path really leads, decided before anything is written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    /// A regular file, existing or not, at `path` (symlinks followed, so a link keeps
    /// pointing at the new file): written to a temporary sibling and renamed over it.
    Replace {
        /// The file that will be replaced or created.
        path: PathBuf,
        /// The existing file's permission bits, kept on the replacement.
        mode: Option<u32>,
    },
    /// A device, FIFO or socket (or anything under `/dev` or `/proc`, such as
    /// `/dev/stdout`): written through, never renamed over.
    WriteThrough(PathBuf),
}

impl Destination {
    /// Resolves `path`; a directory is refused up front, before any work is done.
    ///
    /// ```
    /// use standpoint::output::Destination;
    /// let dir = tempfile::tempdir().unwrap();
    /// let file = dir.path().join("out.jsonl");
    /// assert!(matches!(Destination::of(&file).unwrap(), Destination::Replace { .. }));
    /// assert!(Destination::of(dir.path()).is_err());
    /// # #[cfg(unix)]
    /// assert_eq!(
    ///     Destination::of("/dev/null".as_ref()).unwrap(),
    ///     Destination::WriteThrough("/dev/null".into())
    /// );
    /// ```
    pub fn of(path: &Path) -> Result<Self> {
        let is_directory = || Error::InvalidOption {
            option: "output",
            reason: format!("{} is a directory; name a file", path.display()),
        };
        let system = |p: &Path| p.starts_with("/dev") || p.starts_with("/proc");
        // Written where it leads, as a shell would (a directory still refused).
        let write_through = || match std::fs::metadata(path) {
            Ok(meta) if meta.is_dir() => Err(is_directory()),
            _ => Ok(Destination::WriteThrough(path.to_path_buf())),
        };
        if system(path) {
            return write_through();
        }
        let meta = match std::fs::symlink_metadata(path) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Destination::Replace {
                    path: path.to_path_buf(),
                    mode: None,
                });
            }
            Err(e) => return Err(Error::io(path, e)),
        };
        if meta.file_type().is_symlink() {
            // A dangling link or one into /dev or /proc is written through.
            return match std::fs::canonicalize(path) {
                Ok(real) if !system(&real) => Destination::of(&real),
                _ => write_through(),
            };
        }
        if meta.is_dir() {
            return Err(is_directory());
        }
        if meta.is_file() {
            return Ok(Destination::Replace {
                path: path.to_path_buf(),
                mode: permission_bits(&meta),
            });
        }
        Ok(Destination::WriteThrough(path.to_path_buf()))
    }
}

#[cfg(unix)]
fn permission_bits(meta: &std::fs::Metadata) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt;
    Some(meta.permissions().mode() & 0o7777)
}

#[cfg(not(unix))]
fn permission_bits(_meta: &std::fs::Metadata) -> Option<u32> {
    None
}

/// Opens a non-regular destination for writing, without truncating or replacing it.
pub(crate) fn open_write_through(path: &Path) -> Result<File> {
    // No truncation: a device or FIFO has nothing to cut.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| Error::io(path, e))
}

/// A file written to a temporary sibling and renamed into place by [`AtomicFile::commit`].
///
/// Dropped without `commit` (an error, a panic, Ctrl-C), it leaves the destination untouched.
///
/// ```
/// use std::io::Write;
/// # fn main() -> standpoint::Result<()> {
/// let dir = tempfile::tempdir().unwrap();
/// let path = dir.path().join("out.jsonl");
/// let mut out = standpoint::output::AtomicFile::create(&path)?;
/// writeln!(out, "{{}}").unwrap();
/// assert!(!path.exists());
/// out.commit()?;
/// assert_eq!(std::fs::read_to_string(&path).unwrap(), "{}\n");
/// # Ok(()) }
/// ```
pub struct AtomicFile {
    writer: Writer,
    path: PathBuf,
}

enum Writer {
    Temp(BufWriter<NamedTempFile>),
    Through(BufWriter<File>),
}

impl AtomicFile {
    /// Starts writing what will become `path`. A symlink is followed (the file it points at
    /// is replaced, the link stays); a device or FIFO is written through; a directory is
    /// refused; an existing file's permissions are kept.
    pub fn create(path: &Path) -> Result<Self> {
        let (real, mode) = match Destination::of(path)? {
            Destination::Replace { path, mode } => (path, mode),
            Destination::WriteThrough(real) => {
                return Ok(AtomicFile {
                    writer: Writer::Through(BufWriter::new(open_write_through(&real)?)),
                    path: path.to_path_buf(),
                });
            }
        };
        let dir = parent_dir(&real);
        let mut builder = tempfile::Builder::new();
        builder.prefix(".standpoint-").suffix(".partial");
        // Readable like any file the user creates (umask applies), not tempfile's 0600,
        // unless the file it replaces had other permissions.
        #[cfg(unix)]
        builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(
            mode.unwrap_or(0o644),
        ));
        #[cfg(not(unix))]
        let _ = mode;
        let temp = builder.tempfile_in(dir).map_err(|e| Error::io(path, e))?;
        Ok(AtomicFile {
            writer: Writer::Temp(BufWriter::new(temp)),
            path: real,
        })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(self) -> Result<()> {
        let path = self.path;
        match self.writer {
            Writer::Temp(writer) => {
                let temp = writer
                    .into_inner()
                    .map_err(|e| Error::io(&path, e.into_error()))?;
                temp.as_file().sync_all().map_err(|e| Error::io(&path, e))?;
                temp.persist(&path).map_err(|e| Error::io(&path, e.error))?;
            }
            Writer::Through(mut writer) => writer.flush().map_err(|e| Error::io(&path, e))?,
        }
        Ok(())
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.writer {
            Writer::Temp(w) => w.write(buf),
            Writer::Through(w) => w.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.writer {
            Writer::Temp(w) => w.flush(),
            Writer::Through(w) => w.flush(),
        }
    }
}

/// Where results go: standard output, or a file that appears only when complete.
pub enum Sink {
    /// Standard output, buffered.
    Stdout(BufWriter<std::io::Stdout>),
    /// An [`AtomicFile`].
    File(AtomicFile),
}

impl Sink {
    /// A file sink for `Some(path)`, stdout for `None`.
    pub fn open(path: Option<&Path>) -> Result<Self> {
        Ok(match path {
            Some(path) => Sink::File(AtomicFile::create(path)?),
            None => Sink::Stdout(BufWriter::new(std::io::stdout())),
        })
    }

    /// Flushes stdout, or commits the file.
    pub fn finish(self) -> Result<()> {
        match self {
            Sink::Stdout(mut out) => out.flush().map_err(|e| Error::io("<stdout>", e)),
            Sink::File(file) => file.commit(),
        }
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            Sink::Stdout(out) => out.write(buf),
            Sink::File(file) => file.write(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Sink::Stdout(out) => out.flush(),
            Sink::File(file) => file.flush(),
        }
    }
}

/// Refuses an output that is one of the inputs (the same file under any name), before the
/// run would replace what it reads.
///
/// ```
/// use standpoint::output::ensure_not_input;
/// let dir = tempfile::tempdir().unwrap();
/// let input = dir.path().join("in.jsonl");
/// std::fs::write(&input, "{}\n").unwrap();
/// assert!(ensure_not_input(&input, &[input.clone()]).is_err());
/// assert!(ensure_not_input(&dir.path().join("out.jsonl"), &[input]).is_ok());
/// ```
pub fn ensure_not_input(output: &Path, inputs: &[PathBuf]) -> Result<()> {
    for input in inputs {
        if same_file(output, input) {
            return Err(Error::InvalidOption {
                option: "output",
                reason: format!(
                    "{} is also an input ({}); write the output elsewhere",
                    output.display(),
                    input.display()
                ),
            });
        }
    }
    Ok(())
}

/// Whether two existing paths name one file, from their metadata (never opened: a FIFO
/// would block).
pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        #[cfg(unix)]
        (Ok(a), Ok(b)) => {
            use std::os::unix::fs::MetadataExt;
            (a.dev(), a.ino()) == (b.dev(), b.ino())
        }
        #[cfg(not(unix))]
        (Ok(_), Ok(_)) => match (std::fs::canonicalize(a), std::fs::canonicalize(b)) {
            (Ok(a), Ok(b)) => a == b,
            _ => false,
        },
        _ => false,
    }
}

/// The folder `path` is in (`.` for a bare file name).
pub(crate) fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to `path` atomically.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let mut file = AtomicFile::create(path)?;
    file.write_all(bytes).map_err(|e| Error::io(path, e))?;
    file.commit()
}
