//! Newline framing for Stratum V1: bytes in, complete lines out, with a bound on how long a line may
//! grow before it is refused.
//!
//! Miners end lines with `\n` or `\r\n`; blank lines and surrounding whitespace are skipped. The
//! limit counts every byte before the newline. A line that passes the limit without a newline is an
//! error and the connection should be closed: nothing a
//! real miner sends comes near it, and buffering it would let one peer hold memory without bound.

/// The default for [`LineFramer`]'s limit, in bytes, newline excluded. A `mining.submit` is about 200
/// bytes; a `mining.configure` with every extension about 300.
pub const DEFAULT_MAX_LINE_LENGTH: usize = 4096;

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("line longer than {limit} bytes")]
    LineTooLong { limit: usize },
}

/// Accumulates bytes from a connection and hands out whole lines.
#[derive(Debug)]
pub struct LineFramer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already handed out.
    consumed: usize,
    max_line: usize,
    failed: bool,
}

impl LineFramer {
    pub fn new(max_line: usize) -> LineFramer {
        assert!(max_line > 0, "a line limit of zero admits nothing");
        LineFramer {
            buf: Vec::new(),
            consumed: 0,
            max_line,
            failed: false,
        }
    }

    /// Adds bytes read from the connection.
    pub fn push(&mut self, data: &[u8]) {
        if self.failed {
            return;
        }
        if self.consumed > 0 {
            self.buf.drain(..self.consumed);
            self.consumed = 0;
        }
        self.buf.extend_from_slice(data);
    }

    /// Bytes held that are not yet part of a handed-out line.
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.consumed
    }

    /// The next complete, non-blank line with its line ending and surrounding whitespace removed.
    /// After an error every call returns the same error.
    pub fn next_line(&mut self) -> Option<Result<&[u8], FrameError>> {
        let err = FrameError::LineTooLong {
            limit: self.max_line,
        };
        if self.failed {
            return Some(Err(err));
        }
        loop {
            let pending = &self.buf[self.consumed..];
            let Some(nl) = pending.iter().position(|&b| b == b'\n') else {
                if pending.len() > self.max_line {
                    self.failed = true;
                    return Some(Err(err));
                }
                return None;
            };
            let start = self.consumed;
            self.consumed += nl + 1;
            // The limit counts every byte before the newline (a `\r` and spaces included), the
            // same bytes the check on a partial line counts, so a line is accepted or refused
            // however the connection splits it.
            if nl > self.max_line {
                self.failed = true;
                return Some(Err(err));
            }
            let line = self.buf[start..start + nl].trim_ascii();
            if !line.is_empty() {
                // Re-borrow so the returned slice is tied to `self` only once.
                let line = self.buf[start..start + nl].trim_ascii();
                return Some(Ok(line));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(framer: &mut LineFramer) -> Vec<Result<Vec<u8>, FrameError>> {
        let mut out = Vec::new();
        while let Some(l) = framer.next_line() {
            let stop = l.is_err();
            out.push(l.map(<[u8]>::to_vec));
            if stop {
                break;
            }
        }
        out
    }

    #[test]
    fn splits_on_lf_and_crlf_and_skips_blanks() {
        let mut f = LineFramer::new(64);
        f.push(b"  {\"a\":1}\r\n\r\n\n{\"b\"");
        assert_eq!(lines(&mut f), vec![Ok(b"{\"a\":1}".to_vec())]);
        f.push(b":2}\n");
        assert_eq!(lines(&mut f), vec![Ok(b"{\"b\":2}".to_vec())]);
        assert_eq!(f.buffered(), 0);
    }

    #[test]
    fn line_at_the_limit_passes_one_over_fails() {
        let mut f = LineFramer::new(8);
        f.push(b"12345678\n");
        assert_eq!(lines(&mut f), vec![Ok(b"12345678".to_vec())]);
        f.push(b"12345678");
        assert!(
            lines(&mut f).is_empty(),
            "exactly the limit without newline still waits"
        );
        f.push(b"9");
        assert_eq!(
            lines(&mut f),
            vec![Err(FrameError::LineTooLong { limit: 8 })]
        );
        f.push(b"\n{}\n");
        assert_eq!(
            lines(&mut f),
            vec![Err(FrameError::LineTooLong { limit: 8 })]
        );
    }

    #[test]
    fn the_verdict_does_not_depend_on_how_bytes_arrive() {
        // A CR counts: "12345678\r" is nine bytes before the newline, whole or split.
        let mut whole = LineFramer::new(8);
        whole.push(b"12345678\r\n");
        assert_eq!(
            lines(&mut whole),
            vec![Err(FrameError::LineTooLong { limit: 8 })]
        );
        let mut split = LineFramer::new(8);
        split.push(b"12345678\r");
        split.push(b"\n");
        assert_eq!(
            lines(&mut split),
            vec![Err(FrameError::LineTooLong { limit: 8 })]
        );
        let mut fits = LineFramer::new(8);
        fits.push(b" 123456\r");
        fits.push(b"\n");
        assert_eq!(lines(&mut fits), vec![Ok(b"123456".to_vec())]);
    }

    #[test]
    fn terminated_long_line_fails() {
        let mut f = LineFramer::new(4);
        f.push(b"ok\n123456\nlater\n");
        assert_eq!(
            lines(&mut f),
            vec![
                Ok(b"ok".to_vec()),
                Err(FrameError::LineTooLong { limit: 4 })
            ]
        );
    }
}
