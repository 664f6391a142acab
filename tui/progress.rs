//! Progress lines of the commands that run for a while (`demo`, `bench`): each starts with
//! the command's label (`demo: mesh up: …`) and is written at once. A closed stdout or
//! stderr must never stop a command before it has cleaned up, so writing them cannot fail.

use std::fmt::Display;
use std::io::Write;

/// Prints a line on stdout, flushed; a closed stdout is ignored.
pub fn say(line: impl Display) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints a line on stderr, like [`say`] (`eprintln!` would panic once the terminal is gone).
pub fn warn(line: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// Where a command's progress lines go and what they start with.
#[derive(Debug, Clone, Copy)]
pub struct ProgressLines {
    label: &'static str,
    to_stderr: bool,
}

impl ProgressLines {
    /// `LABEL: …` lines on stdout.
    pub const fn stdout(label: &'static str) -> ProgressLines {
        ProgressLines {
            label,
            to_stderr: false,
        }
    }

    /// `LABEL: …` lines on stderr (for commands whose stdout carries results, such as JSON).
    pub const fn stderr(label: &'static str) -> ProgressLines {
        ProgressLines {
            label,
            to_stderr: true,
        }
    }

    /// The command's label (`demo`, `bench`).
    pub fn label(self) -> &'static str {
        self.label
    }

    /// Prints `LABEL: line`.
    pub fn line(self, line: impl Display) {
        let line = format!("{}: {line}", self.label);
        if self.to_stderr {
            warn(line);
        } else {
            say(line);
        }
    }
}
