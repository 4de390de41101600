//! A CEL expression that does not parse, told as a person reads it: where in the file the
//! parser stopped (inside the TOML string, escapes and all), and what it expected there in
//! words rather than the parser's token names.

use std::ops::Range;

/// Where a CEL syntax error is and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct SyntaxError {
    /// The byte offset in the file where the parser stopped.
    pub(super) offset: usize,
    /// What is wrong, one line (`unexpected `&&`: expected a value`).
    pub(super) message: String,
    /// What to write instead, when the mistake is a common one.
    pub(super) help: Option<String>,
}

/// The syntax error in `expr`, written as the TOML string at `span` of `source`, if it
/// has one (`None`: it parses, and whatever else is wrong with it is not a syntax error).
pub(super) fn syntax_error(source: &str, span: &Range<usize>, expr: &str) -> Option<SyntaxError> {
    let errors = cel::parser::Parser::new().parse(expr).err()?.errors;
    // the parser's own syntax error, before any it reports while building what it could read
    let e = errors
        .iter()
        .find(|e| e.msg.starts_with("Syntax error: "))
        .or_else(|| errors.first())?;
    let (line, column) = e.pos;
    let offset = offset_in_string(source, span, expr, line, column)
        .unwrap_or_else(|| text_start(source, span));
    let (message, help) = in_words(&e.msg);
    Some(SyntaxError {
        offset,
        message,
        help,
    })
}

/// Where the text of the string written at `span` starts: past its opening quotes, and past
/// the line break a multi-line string may open with (which is not part of its text).
pub(super) fn text_start(source: &str, span: &Range<usize>) -> usize {
    let written = source.get(span.clone()).unwrap_or_default();
    for quotes in ["\"\"\"", "'''"] {
        if let Some(rest) = written.strip_prefix(quotes) {
            let newline = if rest.starts_with("\r\n") {
                2
            } else {
                usize::from(rest.starts_with('\n'))
            };
            return span.start + quotes.len() + newline;
        }
    }
    span.start + usize::from(written.starts_with(['"', '\'']))
}

/// The byte offset in `source` of the character at 1-based `line` and `column` (counted in
/// characters, as CEL counts them) of `value`, the text of the TOML string written at
/// `span`. Past the last character, the closing quotes. `None` if what is written there does
/// not decode to `value` (then the caller points at the start of the string).
pub(super) fn offset_in_string(
    source: &str,
    span: &Range<usize>,
    value: &str,
    line: isize,
    column: isize,
) -> Option<usize> {
    let offsets = char_offsets(source, span, value)?;
    // the index in `value` of the character CEL names
    let line = usize::try_from(line).ok()?.max(1);
    let column = usize::try_from(column).ok()?.max(1);
    let mut index = 0;
    let mut current = 1;
    for c in value.chars() {
        if current == line {
            break;
        }
        index += 1;
        if c == '\n' {
            current += 1;
        }
    }
    let line_len = value.chars().skip(index).take_while(|c| *c != '\n').count();
    let index = index + (column - 1).min(line_len);
    offsets.get(index).copied()
}

/// The byte offset in `source` of each character of `value` as written in the TOML string
/// at `span`, then that of its closing quotes; `None` if the text written there does not
/// decode to `value`.
fn char_offsets(source: &str, span: &Range<usize>, value: &str) -> Option<Vec<usize>> {
    let written = source.get(span.clone())?;
    let (quotes, basic) = ["\"\"\"", "'''", "\"", "'"]
        .iter()
        .find(|q| written.starts_with(**q) && written.len() >= 2 * q.len())
        .map(|q| (*q, q.starts_with('"')))?;
    let multi = quotes.len() == 3;
    let body_start = span.start + quotes.len();
    let body_end = span.end.checked_sub(quotes.len())?;
    let body = source.get(body_start..body_end)?;
    let mut offsets = Vec::new();
    let mut decoded = String::new();
    let mut chars = body.char_indices().peekable();
    // a multi-line string's first line break is not part of its text
    if multi {
        if body.starts_with("\r\n") {
            chars.next();
            chars.next();
        } else if body.starts_with('\n') {
            chars.next();
        }
    }
    // CR LF in a multi-line string may be read as LF
    let crlf_as_lf = !value.contains('\r');
    while let Some((i, c)) = chars.next() {
        let at = body_start + i;
        if c == '\r' && crlf_as_lf && chars.peek().is_some_and(|(_, n)| *n == '\n') {
            continue;
        }
        if !(basic && c == '\\') {
            offsets.push(at);
            decoded.push(c);
            continue;
        }
        let (_, e) = chars.next()?;
        let simple = match e {
            'b' => Some('\u{8}'),
            't' => Some('\t'),
            'n' => Some('\n'),
            'f' => Some('\u{c}'),
            'r' => Some('\r'),
            'e' => Some('\u{1b}'),
            '"' => Some('"'),
            '\\' => Some('\\'),
            _ => None,
        };
        if let Some(d) = simple {
            offsets.push(at);
            decoded.push(d);
            continue;
        }
        let digits = match e {
            'x' => 2,
            'u' => 4,
            'U' => 8,
            // a line-ending backslash: the line break and the white space after it go
            ' ' | '\t' | '\r' | '\n' if multi => {
                while chars
                    .peek()
                    .is_some_and(|(_, n)| matches!(n, ' ' | '\t' | '\r' | '\n'))
                {
                    chars.next();
                }
                continue;
            }
            _ => return None,
        };
        let mut hex = String::new();
        for _ in 0..digits {
            hex.push(chars.next()?.1);
        }
        let d = u32::from_str_radix(&hex, 16)
            .ok()
            .and_then(char::from_u32)?;
        offsets.push(at);
        decoded.push(d);
    }
    offsets.push(body_end);
    (decoded == value).then_some(offsets)
}

/// The parser's message in words, and a hint for the common mistakes.
fn in_words(msg: &str) -> (String, Option<String>) {
    let Some(m) = msg.strip_prefix("Syntax error: ") else {
        return (msg.to_owned(), None);
    };
    if let Some(token) = m.strip_prefix("token recognition error at: ") {
        let token = unquote(token);
        return unknown_token(token);
    }
    for prefix in ["extraneous input ", "mismatched input "] {
        if let Some(rest) = m.strip_prefix(prefix)
            && let Some((token, expected)) = rest.split_once(" expecting ")
        {
            return unexpected(unquote(token), expected);
        }
    }
    if let Some(rest) = m.strip_prefix("missing ")
        && let Some((missing, at)) = rest.split_once(" at ")
    {
        let missing = unquote(missing);
        let at = unquote(at);
        let message = if at == "<EOF>" {
            format!("`{missing}` is missing at the end")
        } else {
            format!("`{missing}` is missing before `{at}`")
        };
        return (message, None);
    }
    if let Some(rest) = m.strip_prefix("no viable alternative at input ") {
        let token = unquote(rest);
        if token.ends_with('.') {
            return (
                "a field name is missing after `.`".to_owned(),
                Some("name the field, e.g. `args.amount`, `result.refund_id`".to_owned()),
            );
        }
        return (format!("`{token}` is not valid CEL here"), None);
    }
    (m.to_owned(), None)
}

/// `'&&'` without its quotes.
fn unquote(token: &str) -> &str {
    let token = token.trim();
    token
        .strip_prefix('\'')
        .and_then(|t| t.strip_suffix('\''))
        .unwrap_or(token)
}

/// Text the parser could not read as any token.
fn unknown_token(token: &str) -> (String, Option<String>) {
    let first = token.chars().next().unwrap_or(' ');
    match first {
        '"' | '\'' => (
            format!("the string `{}` is not closed", token.trim_end()),
            Some(format!(
                "end it with `{first}`; in a TOML string in double quotes, a CEL string is easiest written in single quotes: `require = \"args.currency == 'EUR'\"`"
            )),
        ),
        '=' => (
            "`=` is not an operator: a comparison is written `==`".to_owned(),
            Some("for example `args.currency == 'EUR'`".to_owned()),
        ),
        '&' | '|' => (
            format!("`{first}` is not an operator"),
            Some("write `&&` (and) or `||` (or)".to_owned()),
        ),
        _ => (format!("`{first}` is not allowed here in CEL"), None),
    }
}

/// An unexpected token, and what the parser expected instead, in words.
fn unexpected(token: &str, expected: &str) -> (String, Option<String>) {
    let what = if expected.contains("IDENTIFIER") {
        "expected a value".to_owned()
    } else if expected == "<EOF>" {
        "expected the end of the expression".to_owned()
    } else if expected.contains("'&&'") {
        "expected an operator such as `&&`, `||`, `==` or `<`, or the end of the expression"
            .to_owned()
    } else {
        let tokens: Vec<String> = expected
            .trim_start_matches('{')
            .trim_end_matches('}')
            .split(", ")
            .map(|t| match unquote(t) {
                "<EOF>" => "the end of the expression".to_owned(),
                t => format!("`{t}`"),
            })
            .collect();
        format!("expected {}", tokens.join(" or "))
    };
    let message = if token == "<EOF>" {
        format!("the expression ends too soon: {what}")
    } else {
        format!("unexpected `{token}`: {what}")
    };
    let help = match token {
        "and" | "or" | "not" => {
            Some("CEL writes them `&&` (and), `||` (or) and `!` (not)".to_owned())
        }
        "<EOF>" if what == "expected a value" => Some(
            "finish the expression: an operator is followed by a value, e.g. `args.amount <= 500`"
                .to_owned(),
        ),
        _ => None,
    };
    (message, help)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The offset in `source` of the error in the one string it holds.
    fn located(source: &str, expr: &str) -> Option<SyntaxError> {
        let start = source.find(['"', '\'']).unwrap();
        let end = source.rfind(['"', '\'']).unwrap() + 1;
        syntax_error(source, &(start..end), expr)
    }

    #[test]
    fn the_error_is_at_the_token_the_parser_stopped_at_past_escapes() {
        // (as written in the file, its text, what the error points at)
        let cases = [
            (
                r#"x = "args.amount > && 5""#,
                "args.amount > && 5",
                "&& 5\"",
            ),
            (
                r#"x = 'args.x == "a" && && 1'"#,
                r#"args.x == "a" && && 1"#,
                "&& 1'",
            ),
            (
                r#"x = "args.x == \"a\" && && 1""#,
                r#"args.x == "a" && && 1"#,
                "&& 1\"",
            ),
            (
                r#"x = "args.x == '\u00e9' && && 1""#,
                "args.x == '\u{e9}' && && 1",
                "&& 1\"",
            ),
            (
                "x = \"args.x == 'é' && && 1\"",
                "args.x == 'é' && && 1",
                "&& 1\"",
            ),
            (r#"x = "args.x >""#, "args.x >", "\""),
            (
                "x = \"\"\"\nargs.amount > 0 &&\n  )\"\"\"",
                "args.amount > 0 &&\n  )",
                ")\"\"\"",
            ),
            (
                "x = '''\nargs.amount > 0 &&\n  )'''",
                "args.amount > 0 &&\n  )",
                ")'''",
            ),
            (
                "x = \"\"\"\nargs.amount > 0 && \\\n   && 1\"\"\"",
                "args.amount > 0 && && 1",
                "&& 1\"\"\"",
            ),
        ];
        for (source, expr, at) in cases {
            let e = located(source, expr).unwrap_or_else(|| panic!("{source}: parses"));
            assert_eq!(source.get(e.offset..), Some(at), "{source}: {}", e.message);
        }
    }

    #[test]
    fn the_message_is_in_words() {
        for (expr, message) in [
            ("args.amount > && 5", "unexpected `&&`: expected a value"),
            (
                "args.amount >",
                "the expression ends too soon: expected a value",
            ),
            (
                "args.x > 1 )",
                "unexpected `)`: expected the end of the expression",
            ),
            ("(args.x > 1", "`)` is missing at the end"),
            (
                "args.x in [1, 2",
                "the expression ends too soon: expected `]` or `,`",
            ),
            (
                "args.x = 1",
                "`=` is not an operator: a comparison is written `==`",
            ),
            ("args.x == \"abc", "the string `\"abc` is not closed"),
            (
                "args.x == 'a' and args.y",
                "unexpected `and`: expected an operator such as `&&`",
            ),
        ] {
            let e = syntax_error(expr, &(0..expr.len()), expr).unwrap();
            assert!(e.message.starts_with(message), "{expr}: {}", e.message);
            assert!(!e.message.contains("IDENTIFIER"), "{expr}: {}", e.message);
        }
        assert!(syntax_error("args.x > 1", &(0..10), "args.x > 1").is_none());
    }
}
