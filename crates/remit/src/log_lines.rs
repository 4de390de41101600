//! Where log lines go: stderr, with every upstream credential of the register blanked out.
//!
//! remit's own messages name no credential, but the libraries under it do not know which
//! text is secret: rmcp's HTTP client, for one, logs its failures with the upstream's full
//! URL, query string included. So each line is scrubbed of the register's credentials
//! ([`remit_mcp::secret_words`]) on its way out, whatever logged it and at whatever level.

use remit_core::register::Register;
use std::io::Write;
use std::sync::RwLock;

/// The credentials of the register in force, longest first.
static SECRETS: RwLock<Vec<String>> = RwLock::new(Vec::new());

/// Keeps `register`'s upstream credentials out of every log line from now on.
pub(crate) fn keep_out(register: &Register) {
    let mut words: Vec<String> = register
        .upstreams
        .values()
        .flat_map(remit_mcp::secret_words)
        .collect();
    words.sort_by(|a, b| b.len().cmp(&a.len()).then_with(|| a.cmp(b)));
    words.dedup();
    *SECRETS
        .write()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = words;
}

/// The writer `tracing_subscriber` gets: one per event, which writes the event's formatted
/// line at once.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Scrubbed;

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Scrubbed {
    type Writer = Line;
    fn make_writer(&'a self) -> Line {
        Line
    }
}

/// One event's output.
#[derive(Debug)]
pub(crate) struct Line;

impl Write for Line {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        // a poisoned lock still holds the secrets: a panic elsewhere must not let them out
        let secrets = SECRETS
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if secrets.is_empty() {
            std::io::stderr().write_all(buf)?;
        } else {
            let text = String::from_utf8_lossy(buf);
            std::io::stderr().write_all(remit_mcp::redact_secrets(&text, &secrets).as_bytes())?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use remit_core::register::{Strictness, compile};

    #[test]
    fn a_log_line_naming_an_upstreams_url_or_header_is_scrubbed() {
        let src = r#"
[agents.a]
[upstreams.crm]
url = { env = "CRM_URL" }
headers = { X-Api-Key = { env = "CRM_KEY" } }
[actions."crm.t"]
agents = ["a"]
tier = "read"
"#;
        let env = |name: &str| match name {
            "CRM_URL" => Some("http://crm.example:1?token=q-secret-1".to_owned()),
            "CRM_KEY" => Some("h-secret-2".to_owned()),
            _ => None,
        };
        let (register, diags) =
            compile(src, std::path::Path::new("r.toml"), &env, Strictness::Serve);
        let register = register.unwrap_or_else(|| panic!("{diags:?}"));
        keep_out(&register);
        let secrets = SECRETS.read().unwrap().clone();
        // as rmcp's worker logs it: the URL as reqwest prints it, normalized
        let line = r#"worker quit: reqwest::Error { url: "http://crm.example:1/?token=q-secret-1" } header h-secret-2"#;
        let out = remit_mcp::redact_secrets(line, &secrets);
        assert!(
            !out.contains("q-secret-1") && !out.contains("h-secret-2"),
            "{out}"
        );
        assert!(out.contains("[redacted]"), "{out}");
    }
}
