//! How numbers, times, data and node names look on screen.

use std::collections::VecDeque;

use ratatui::style::Color;

/// `HH:MM:SS` (UTC) of a time in ms since the Unix epoch.
pub fn fmt_hms(at_ms: u64) -> String {
    let s = (at_ms / 1000) % 86_400;
    format!("{:02}:{:02}:{:02}", s / 3600, s / 60 % 60, s % 60)
}

/// A duration in ms as the largest two units (`4m03s`, `2h05m`, `3d04h`).
pub fn fmt_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86_399 => format!("{}h{:02}m", s / 3600, s / 60 % 60),
        _ => format!("{}d{:02}h", s / 86_400, s / 3600 % 24),
    }
}

/// Bytes in binary units, short (`812K`, `12.3M`, `1.2G`).
pub fn fmt_bytes(b: u64) -> String {
    const K: f64 = 1024.0;
    let f = b as f64;
    if f < K {
        format!("{b}B")
    } else if f < K * K {
        format!("{:.0}K", f / K)
    } else if f < K * K * K {
        format!("{:.1}M", f / (K * K))
    } else {
        format!("{:.1}G", f / (K * K * K))
    }
}

/// A rate, short (`12`, `1.2k`, `3.4M`).
pub fn fmt_rate(r: f32) -> String {
    if !r.is_finite() || r < 0.0 {
        "-".to_owned()
    } else if r < 1_000.0 {
        format!("{r:.0}")
    } else if r < 1_000_000.0 {
        format!("{:.1}k", r / 1_000.0)
    } else {
        format!("{:.1}M", r / 1_000_000.0)
    }
}

/// The last `width` samples as block characters, scaled to their maximum (at least 1), right
/// aligned.
pub fn sparkline(history: &VecDeque<f32>, width: usize) -> String {
    const BARS: [char; 9] = [' ', '▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let skip = history.len().saturating_sub(width);
    let shown: Vec<f32> = history.iter().skip(skip).copied().collect();
    let max = shown
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(1.0f32, f32::max);
    let mut out: String = " ".repeat(width - shown.len());
    for v in shown {
        let v = if v.is_finite() { v.max(0.0) } else { 0.0 };
        // A non-zero rate always shows at least the lowest bar.
        let level = if v > 0.0 {
            ((v / max) * 8.0).ceil().clamp(1.0, 8.0) as usize
        } else {
            0
        };
        out.push(BARS[level]);
    }
    out
}

/// Data for one line: control characters shown as symbols, long data cut.
pub fn data_preview(data: &str, encoding: &str, max_chars: usize) -> String {
    let prefix = if encoding == "hex" { "0x" } else { "" };
    let mut out: String = prefix.to_owned();
    for (n, c) in data.chars().enumerate() {
        if n == max_chars {
            out.push('…');
            break;
        }
        out.push(match c {
            '\n' => '↵',
            '\t' => '→',
            c if c.is_control() => '·',
            c => c,
        });
    }
    out
}

/// A colour per node name, the same on every run and in every console.
pub fn node_color(name: &str) -> Color {
    const PALETTE: [Color; 12] = [
        Color::Cyan,
        Color::Green,
        Color::Yellow,
        Color::Magenta,
        Color::Blue,
        Color::Red,
        Color::LightCyan,
        Color::LightGreen,
        Color::LightYellow,
        Color::LightMagenta,
        Color::LightBlue,
        Color::LightRed,
    ];
    // FNV-1a: stable across runs and builds (unlike the std hasher).
    let mut h: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    PALETTE[h as usize % PALETTE.len()]
}
