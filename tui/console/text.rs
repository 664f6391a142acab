//! Small text helpers for the status line, notes and the event log.

/// The first line of a message (some errors explain themselves over several lines; the
/// status line has one).
pub fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

/// The plural `s` for a count.
pub fn plural(n: usize) -> &'static str {
    if n == 1 {
        ""
    } else {
        "s"
    }
}
