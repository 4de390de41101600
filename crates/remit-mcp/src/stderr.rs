//! What a child upstream writes to its stderr, into remit's log: line by line, named for the
//! upstream, without its credentials, a long line cut and a flood of lines counted, not logged.
//!
//! The lines are logged at `warn`, under the target [`TARGET`]: remit cannot tell a stack
//! trace from a greeting, and a child's stderr is where its failures go; at `info` they would
//! not show in `remit stdio`'s log (whose default is `warn`), where an inherited stderr used to
//! put them. `REMIT_LOG=warn,remit_mcp::upstream::stderr=error` leaves them out.

use remit_core::ids::UpstreamName;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::time::Instant;

/// The tracing target of an upstream's stderr lines.
pub(crate) const TARGET: &str = "remit_mcp::upstream::stderr";

/// The longest line logged whole; a longer one is cut here and marked.
const LONGEST_LINE: usize = 4 * 1024;

/// How many lines of one child are logged in a second; the rest are counted and dropped.
const LINES_PER_SECOND: u32 = 100;

/// How often a count of dropped lines is logged (when there are any).
const DROPPED_EVERY: Duration = Duration::from_secs(1);

/// Reads `stderr` until it closes (when the child, and whatever it started that shares its
/// stderr, have ended), logging each line as the upstream `upstream`'s, with `secrets`
/// replaced. It never stops reading to wait for the log: lines past the rate are dropped.
pub(crate) async fn relay(
    mut stderr: impl AsyncRead + Unpin,
    upstream: UpstreamName,
    secrets: Vec<String>,
) {
    let mut lines = Lines::default();
    let mut rate = Rate::new(Instant::now());
    let mut buf = vec![0u8; 8 * 1024];
    let mut every = tokio::time::interval(DROPPED_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let log = |line: &[u8], cut: bool, rate: &mut Rate| {
        if rate.allow(Instant::now()) {
            let text = printable(line, cut, &secrets);
            if cut {
                tracing::warn!(target: TARGET, upstream = %upstream, "{text} [cut at {LONGEST_LINE} bytes]");
            } else {
                tracing::warn!(target: TARGET, upstream = %upstream, "{text}");
            }
        }
    };
    loop {
        tokio::select! {
            read = stderr.read(&mut buf) => match read {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let read = buf.get(..n).unwrap_or_default();
                    lines.take(read, |line, cut| log(line, cut, &mut rate));
                }
            },
            _ = every.tick() => report_dropped(&upstream, &mut rate),
        }
    }
    lines.finish(|line, cut| log(line, cut, &mut rate));
    report_dropped(&upstream, &mut rate);
}

/// Logs how many lines were dropped since the last report, if any.
fn report_dropped(upstream: &UpstreamName, rate: &mut Rate) {
    let dropped = rate.take_dropped();
    if dropped > 0 {
        tracing::warn!(
            target: TARGET,
            upstream = %upstream,
            dropped,
            "the upstream wrote more than {LINES_PER_SECOND} lines a second to stderr; {dropped} lines were left out of the log"
        );
    }
}

/// A line as it is logged: without the upstream's credentials (nor, for a cut line, the start
/// of one cut through), as text, with control characters escaped (a child's line cannot move
/// the terminal's cursor or pass for another log line).
fn printable(line: &[u8], cut: bool, secrets: &[String]) -> String {
    let mut line = line.strip_suffix(b"\r").unwrap_or(line);
    if cut {
        // a credential cut through at the end would be left as its first bytes
        while let Some(start) = secrets
            .iter()
            .filter_map(|s| start_of_at_end(line, s.as_bytes()))
            .max()
        {
            line = line.get(..line.len() - start).unwrap_or_default();
        }
    }
    let text = crate::upstream::redact_secrets(&String::from_utf8_lossy(line), secrets);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        // a bidirectional override would reorder what the log shows, as `remit register`
        // and `remit audit show` escape them too
        if (c.is_control() && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
        {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// The length of the longest start of `secret` (not all of it) that `line` ends with.
fn start_of_at_end(line: &[u8], secret: &[u8]) -> Option<usize> {
    (1..secret.len())
        .rev()
        .find(|&n| secret.get(..n).is_some_and(|start| line.ends_with(start)))
}

/// Splits what is read into lines, at most [`LONGEST_LINE`] bytes each.
#[derive(Debug, Default)]
struct Lines {
    /// The line read so far.
    line: Vec<u8>,
    /// Set after a line was cut: the rest of it, to its newline, is dropped.
    skipping: bool,
}

impl Lines {
    /// Takes `bytes` as read; gives `each` every line they complete (without its newline) and
    /// every line cut at [`LONGEST_LINE`] (`true` with it).
    fn take(&mut self, mut bytes: &[u8], mut each: impl FnMut(&[u8], bool)) {
        while !bytes.is_empty() {
            if self.skipping {
                match bytes.iter().position(|b| *b == b'\n') {
                    Some(end) => {
                        self.skipping = false;
                        bytes = bytes.get(end + 1..).unwrap_or_default();
                    }
                    None => return,
                }
                continue;
            }
            let room = LONGEST_LINE - self.line.len();
            // one byte more than there is room for: the newline that ends a line of full length
            let (look, _) = bytes.split_at(bytes.len().min(room + 1));
            match look.iter().position(|b| *b == b'\n') {
                Some(end) => {
                    self.line
                        .extend_from_slice(look.get(..end).unwrap_or_default());
                    each(&self.line, false);
                    self.line.clear();
                    bytes = bytes.get(end + 1..).unwrap_or_default();
                }
                None if look.len() > room => {
                    self.line
                        .extend_from_slice(look.get(..room).unwrap_or_default());
                    each(&self.line, true);
                    self.line.clear();
                    self.skipping = true;
                    bytes = bytes.get(room..).unwrap_or_default();
                }
                None => {
                    self.line.extend_from_slice(look);
                    return;
                }
            }
        }
    }

    /// At the end of the stream: a last line without a newline.
    fn finish(&mut self, mut each: impl FnMut(&[u8], bool)) {
        if !self.line.is_empty() {
            each(&self.line, false);
            self.line.clear();
        }
    }
}

/// How many lines may be logged now: [`LINES_PER_SECOND`] in each second, and a count of the
/// lines dropped past it.
#[derive(Debug)]
struct Rate {
    second: Instant,
    logged: u32,
    dropped: u64,
}

impl Rate {
    fn new(now: Instant) -> Self {
        Self {
            second: now,
            logged: 0,
            dropped: 0,
        }
    }

    /// Whether a line may be logged at `now`; one that may not is counted as dropped.
    fn allow(&mut self, now: Instant) -> bool {
        if now.duration_since(self.second) >= Duration::from_secs(1) {
            self.second = now;
            self.logged = 0;
        }
        if self.logged < LINES_PER_SECOND {
            self.logged += 1;
            true
        } else {
            self.dropped += 1;
            false
        }
    }

    /// The lines dropped since this was last asked.
    fn take_dropped(&mut self) -> u64 {
        std::mem::take(&mut self.dropped)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines_of(chunks: &[&[u8]]) -> Vec<(Vec<u8>, bool)> {
        let mut lines = Lines::default();
        let mut out = Vec::new();
        for chunk in chunks {
            lines.take(chunk, |l, cut| out.push((l.to_vec(), cut)));
        }
        lines.finish(|l, cut| out.push((l.to_vec(), cut)));
        out
    }

    #[test]
    fn lines_are_split_across_reads_and_a_long_one_is_cut_once_and_skipped_to_its_end() {
        assert_eq!(
            lines_of(&[b"one\ntw", b"o\n", b"\nthree"]),
            [
                (b"one".to_vec(), false),
                (b"two".to_vec(), false),
                (Vec::new(), false),
                (b"three".to_vec(), false)
            ]
        );
        let full = vec![b'a'; LONGEST_LINE];
        let mut exactly = full.clone();
        exactly.push(b'\n');
        assert_eq!(lines_of(&[&exactly]), [(full, false)]);
        let mut long = vec![b'b'; LONGEST_LINE * 3];
        long.extend_from_slice(b"\nafter\n");
        let (first, rest) = long.split_at(100);
        assert_eq!(
            lines_of(&[first, rest]),
            [(vec![b'b'; LONGEST_LINE], true), (b"after".to_vec(), false)]
        );
    }

    #[test]
    fn a_credential_is_replaced_and_one_cut_through_is_left_out_whole() {
        let secrets = vec!["sk-live-0123456789".to_owned()];
        assert_eq!(
            printable(b"key sk-live-0123456789 refused\r", false, &secrets),
            "key [redacted] refused"
        );
        assert_eq!(
            printable(b"key is sk-live-01", true, &secrets),
            "key is ",
            "the start of a credential at a cut"
        );
        assert_eq!(
            printable(b"moved \x1b[2Kfake line\x07", false, &[]),
            "moved \\u{1b}[2Kfake line\\u{7}"
        );
        assert_eq!(
            printable("error \u{202e}gnp.exe".as_bytes(), false, &[]),
            "error \\u{202e}gnp.exe"
        );
    }

    #[test]
    fn past_its_rate_a_line_is_counted_not_logged_until_the_next_second() {
        let start = Instant::now();
        let mut rate = Rate::new(start);
        for _ in 0..LINES_PER_SECOND {
            assert!(rate.allow(start));
        }
        assert!(!rate.allow(start + Duration::from_millis(999)));
        assert!(!rate.allow(start + Duration::from_millis(999)));
        assert_eq!(rate.take_dropped(), 2);
        assert_eq!(rate.take_dropped(), 0);
        assert!(rate.allow(start + Duration::from_secs(1)));
    }
}
