//! Where a command's answers go: stdout, where a reader that closed it ends the command quietly.
//!
//! `println!` panics when stdout is a pipe its reader closed (`remit register | head -1`),
//! and a Rust program ignores `SIGPIPE` (restoring it would take `unsafe`, which remit
//! forbids). So every answer is written through [`stdout`], which turns the closed pipe into
//! a [`Closed`] error; `main` ends the command with no message (as ripgrep does): the reader
//! took what it wanted. The exit is 0, or the verdict a command recorded before its report
//! ([`verdict`]: a failed `audit verify` still exits 1).

use std::fmt;
use std::io::{self, Write};

/// The verdict a command has reached before it writes its report (`Exit` as a number).
static VERDICT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// Records `exit` as the command's verdict before its report is written, and gives it back:
/// a reader that closes stdout midway (`remit audit verify | head -1`) must not turn a
/// failed verification into success.
pub(crate) fn verdict(exit: crate::Exit) -> crate::Exit {
    let code = match exit {
        crate::Exit::Ok => 0,
        crate::Exit::Findings => 1,
        crate::Exit::Error => 2,
    };
    VERDICT.store(code, std::sync::atomic::Ordering::SeqCst);
    exit
}

/// The verdict recorded by [`verdict`], for a command whose stdout was closed (`Ok` if none).
pub(crate) fn verdict_so_far() -> crate::Exit {
    match VERDICT.load(std::sync::atomic::Ordering::SeqCst) {
        0 => crate::Exit::Ok,
        1 => crate::Exit::Findings,
        _ => crate::Exit::Error,
    }
}

/// Stdout was closed by its reader.
#[derive(Debug)]
pub(crate) struct Closed;

impl fmt::Display for Closed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("stdout was closed by its reader")
    }
}

impl std::error::Error for Closed {}

/// Stdout, whose closing by its reader is reported as [`Closed`].
#[derive(Debug)]
pub(crate) struct Stdout(io::Stdout);

/// The command's stdout.
pub(crate) fn stdout() -> Stdout {
    Stdout(io::stdout())
}

/// `error`, or [`Closed`] (inside an I/O error of the same kind) if it is a closed pipe.
fn closed(error: io::Error) -> io::Error {
    if error.kind() == io::ErrorKind::BrokenPipe {
        io::Error::new(io::ErrorKind::BrokenPipe, Closed)
    } else {
        error
    }
}

impl Write for Stdout {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf).map_err(closed)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush().map_err(closed)
    }
}

/// Writes `text` to stdout as it is, at once.
pub(crate) fn text(text: &str) -> io::Result<()> {
    let mut out = stdout();
    out.write_all(text.as_bytes())?;
    out.flush()
}

/// Writes one line to stdout (used by [`outln!`](crate::outln)).
pub(crate) fn line(args: fmt::Arguments<'_>) -> io::Result<()> {
    let mut out = stdout();
    out.write_fmt(args)?;
    out.write_all(b"\n")
}

/// Whether a command ended because its stdout was closed by the reader.
pub(crate) fn is_closed(error: &anyhow::Error) -> bool {
    error.chain().any(|e| {
        e.is::<Closed>()
            || e.downcast_ref::<io::Error>()
                .and_then(io::Error::get_ref)
                .is_some_and(|inner| inner.is::<Closed>())
    })
}
