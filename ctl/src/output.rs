//! Everything sluicectl prints on stdout: aligned tables for people, JSON for machines (one pretty
//! document per command, or one compact object per line while following a stream).

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

    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "one cell per column");
        self.rows.push(cells);
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

/// Writes text to stdout and flushes it (a follower's lines must show as they come).
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(CtlError::Output)
}

/// The command's one JSON document.
pub fn json(doc: &Value) -> Result<()> {
    let mut text = serde_json::to_string_pretty(doc).expect("a JSON value serializes");
    text.push('\n');
    print(&text)
}

/// One JSON object on one line (a stream being followed).
pub fn json_line(doc: &Value) -> Result<()> {
    let mut text = doc.to_string();
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
}
