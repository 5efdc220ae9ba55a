//! Everything sluicectl prints on stdout: aligned tables for people, JSON for machines (one pretty
//! document per command, or one compact object per line while following a stream).
//!
//! Much of what it prints was chosen by miners (worker names, user agents, session fields) or
//! written by whoever can write to Redis. A terminal obeys escape sequences, so none of that may
//! reach it raw: [`sanitize`] is the one function that makes a string safe to show, and every
//! printer here goes through it (table cells, each line of text, and the JSON documents).

use std::borrow::Cow;
use std::io::Write;

use serde_json::Value;

use crate::error::{CtlError, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Align {
    Left,
    /// Numbers, so their digits line up.
    Right,
}

/// A table built row by row and printed with every column as wide as its widest cell.
pub struct Table {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
    min_widths: Vec<usize>,
}

impl Table {
    pub fn new(columns: &[(&'static str, Align)]) -> Table {
        Table {
            columns: columns.to_vec(),
            rows: Vec::new(),
            min_widths: vec![0; columns.len()],
        }
    }

    /// Widths a column keeps even when its cells are narrower: a followed stream is printed a few
    /// rows at a time, and its columns should line up from one batch to the next.
    pub fn min_widths(mut self, widths: &[usize]) -> Table {
        for (m, w) in self.min_widths.iter_mut().zip(widths) {
            *m = *w;
        }
        self
    }

    /// A row; each cell is sanitised, so a newline or an escape in it cannot break the table.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(
            cells
                .into_iter()
                .map(|c| match sanitize(&c) {
                    Cow::Borrowed(_) => c,
                    Cow::Owned(safe) => safe,
                })
                .collect(),
        );
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn render(&self) -> String {
        self.render_with(true)
    }

    /// The rows alone, for every batch of a followed stream after the first.
    pub fn render_rows(&self) -> String {
        self.render_with(false)
    }

    fn render_with(&self, header: bool) -> String {
        let mut widths: Vec<usize> = self
            .columns
            .iter()
            .zip(&self.min_widths)
            .map(|((h, _), m)| h.len().max(*m))
            .collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let line = |cells: &mut dyn Iterator<Item = &str>| {
            let mut out = String::new();
            for (i, cell) in cells.enumerate() {
                let (w, align) = (widths[i], self.columns[i].1);
                let pad = w - cell.chars().count();
                if i > 0 {
                    out.push_str("  ");
                }
                match align {
                    Align::Left => {
                        out.push_str(cell);
                        out.push_str(&" ".repeat(pad));
                    }
                    Align::Right => {
                        out.push_str(&" ".repeat(pad));
                        out.push_str(cell);
                    }
                }
            }
            out.truncate(out.trim_end().len());
            out.push('\n');
            out
        };
        let mut text = String::new();
        if header {
            text = line(&mut self.columns.iter().map(|(h, _)| *h));
        }
        for row in &self.rows {
            text.push_str(&line(&mut row.iter().map(String::as_str)));
        }
        text
    }
}

/// Whether a character acts on a terminal instead of showing: the C0 controls (newline and tab
/// included), DEL, the C1 controls (0x9b alone starts an escape sequence on many terminals), and
/// the bidirectional overrides and isolates, which make text read other than it is.
fn is_unsafe(c: char) -> bool {
    c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `s` with every unsafe character replaced by a visible escape: `\x1b` below 0x80, `\u{9b}` or
/// `\u{202e}` above. What is already safe is returned as it is, without copying.
pub fn sanitize(s: &str) -> Cow<'_, str> {
    if !s.chars().any(is_unsafe) {
        return Cow::Borrowed(s);
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if (c as u32) < 0x80 {
            out.push_str(&format!("\\x{:02x}", c as u32));
        } else {
            out.push_str(&format!("\\u{{{:x}}}", c as u32));
        }
    }
    Cow::Owned(out)
}

/// Writes text to stdout and flushes it (a follower's lines must show as they come). Each line is
/// sanitised: the line breaks are the printer's, anything else unsafe is escaped.
pub fn print(text: &str) -> Result<()> {
    let mut safe = String::with_capacity(text.len());
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            safe.push('\n');
        }
        safe.push_str(&sanitize(line));
    }
    print_raw(&safe)
}

/// Writes text that sluicectl made itself and nothing else chose (shell completion scripts).
pub fn print_raw(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CtlError::Output)
}

/// JSON text with the unsafe characters serde_json leaves raw (DEL, C1, bidi) escaped as
/// `\u00XX`: serde_json already escapes C0 (ESC is `\u001b`). Outside strings JSON text holds
/// none of them, so the document means exactly what it did: a script reading it gets the miner's
/// string back byte for byte, and a terminal showing it gets nothing to obey.
fn escape_json(text: String) -> String {
    if !text.chars().any(is_unsafe_in_json) {
        return text;
    }
    let mut out = String::with_capacity(text.len() + 12);
    for c in text.chars() {
        if is_unsafe_in_json(c) {
            out.push_str(&format!("\\u{:04x}", c as u32));
        } else {
            out.push(c);
        }
    }
    out
}

/// The unsafe characters serde_json does not escape (and the newlines of pretty printing, which
/// are not unsafe there: they only ever fall between tokens).
fn is_unsafe_in_json(c: char) -> bool {
    is_unsafe(c) && (c as u32) >= 0x20
}

/// The command's one JSON document.
pub fn json(doc: &Value) -> Result<()> {
    let mut text = escape_json(serde_json::to_string_pretty(doc).expect("a JSON value serializes"));
    text.push('\n');
    print(&text)
}

/// One JSON object on one line (a stream being followed).
pub fn json_line(doc: &Value) -> Result<()> {
    let mut text = escape_json(doc.to_string());
    text.push('\n');
    print(&text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_align_and_lines_carry_no_trailing_space() {
        let mut t = Table::new(&[
            ("ID", Align::Left),
            ("N", Align::Right),
            ("NOTE", Align::Left),
        ]);
        t.row(vec!["engine-1".into(), "7".into(), String::new()]);
        t.row(vec!["jm".into(), "1234".into(), "leader".into()]);
        assert_eq!(
            t.render(),
            "ID           N  NOTE\nengine-1     7\njm        1234  leader\n"
        );
    }

    #[test]
    fn unsafe_characters_show_as_escapes() {
        assert!(matches!(sanitize("rig-1.a_b"), Cow::Borrowed(_)));
        assert_eq!(sanitize("\x1b[31mred"), "\\x1b[31mred");
        assert_eq!(sanitize("a\nb\tc\rd\0"), "a\\x0ab\\x09c\\x0dd\\x00");
        assert_eq!(sanitize("del\x7f"), "del\\x7f");
        assert_eq!(sanitize("csi\u{9b}31m"), "csi\\u{9b}31m");
        assert_eq!(sanitize("\u{202e}gpj.exe"), "\\u{202e}gpj.exe");
        assert_eq!(sanitize("\u{2066}x\u{2069}"), "\\u{2066}x\\u{2069}");
        // Ordinary non-ASCII text is shown as it is.
        assert_eq!(sanitize("矿工-ü"), "矿工-ü");
        // A cell cannot add a row or colour the table.
        let mut t = Table::new(&[("W", Align::Left)]);
        t.row(vec!["a\nFAKE ROW\x1b[2J".into()]);
        assert_eq!(t.render(), "W\na\\x0aFAKE ROW\\x1b[2J\n");
    }

    #[test]
    fn json_escapes_every_unsafe_character_and_keeps_the_value() {
        let value = serde_json::json!({"worker": "\x1b[31m\u{7f}\u{85}\u{9b}\u{202e}\u{2069}ok"});
        for text in [
            escape_json(serde_json::to_string_pretty(&value).unwrap()),
            escape_json(value.to_string()),
        ] {
            assert!(!text.chars().any(|c| is_unsafe(c) && c != '\n'), "{text:?}");
            assert!(
                text.contains("\\u001b[31m\\u007f\\u0085\\u009b\\u202e\\u2069ok"),
                "{text}"
            );
            assert_eq!(serde_json::from_str::<Value>(&text).unwrap(), value);
        }
    }
}
