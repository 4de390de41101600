//! Why an upstream could not be reached or answered wrongly, as one sentence for the person
//! running remit.
//!
//! rmcp's errors print its transports' Rust type names and reqwest's and hyper's `Debug`
//! output, and an HTTP client's errors carry the upstream's URL (which may hold a
//! credential). Each kind of failure is named here in plain words instead: the status the
//! upstream answered, or that the connection was refused at the upstream's origin (scheme,
//! host and port: never its path, query or user info, never a header).

use rmcp::service::{ClientInitializeError, ServiceError};
use rmcp::transport::DynamicTransportError;
use rmcp::transport::streamable_http_client::StreamableHttpError;

/// Why the handshake with an upstream failed; `url` is an HTTP upstream's URL.
pub(crate) fn handshake(error: &ClientInitializeError, url: Option<&str>) -> String {
    match error {
        ClientInitializeError::TransportError { error, .. } => {
            transport(error, url, "the handshake")
        }
        ClientInitializeError::ConnectionClosed(_) => {
            "the upstream closed the connection before answering the handshake".to_owned()
        }
        ClientInitializeError::JsonRpcError(e) => {
            format!("the upstream refused the handshake: {}", e.message)
        }
        ClientInitializeError::NoCompatibleProtocolVersion {
            server_supported, ..
        } => {
            let offered: Vec<String> = server_supported.iter().map(ToString::to_string).collect();
            format!(
                "the upstream speaks no protocol revision remit speaks (it offers {})",
                if offered.is_empty() {
                    "none".to_owned()
                } else {
                    offered.join(", ")
                }
            )
        }
        ClientInitializeError::LegacyFallbackFailed { discover, fallback } => {
            // the upstream that could not be connected to is reported as such; otherwise
            // what the last attempt (`initialize`) got
            let first = handshake(discover, url);
            if first.starts_with("connection refused") || first.starts_with("could not connect") {
                first
            } else {
                handshake(fallback, url)
            }
        }
        ClientInitializeError::Cancelled => "the handshake was cancelled".to_owned(),
        _ => "the upstream's answer to the handshake is not a valid MCP answer".to_owned(),
    }
}

/// Why a request after the handshake (such as `tools/list`) failed.
pub(crate) fn request(error: &ServiceError, url: Option<&str>, what: &str) -> String {
    match error {
        ServiceError::McpError(e) => {
            format!("the upstream answered {what} with an error: {}", e.message)
        }
        ServiceError::TransportSend(e) => transport(e, url, what),
        ServiceError::TransportClosed => {
            format!("the upstream closed the connection before answering {what}")
        }
        ServiceError::Timeout { timeout } => {
            format!("no answer to {what} within {}s", timeout.as_secs())
        }
        _ => format!("the upstream's answer to {what} is not a valid MCP answer"),
    }
}

/// Why a message could not be sent to an upstream, or its answer read.
fn transport(error: &DynamicTransportError, url: Option<&str>, what: &str) -> String {
    let at = url.map_or_else(|| "the upstream".to_owned(), origin);
    if let Some(redirect) = crate::upstream::redirect_of(error.error.as_ref()) {
        return redirect.to_string();
    }
    let Some(e) = error
        .error
        .downcast_ref::<StreamableHttpError<reqwest::Error>>()
    else {
        // a child process (stdio): writing to it failed
        return match io_kind(error.error.as_ref()) {
            Some(std::io::ErrorKind::BrokenPipe) => {
                format!("the upstream process exited (or closed its stdin) before {what}")
            }
            _ => format!("the upstream process could not be written to for {what}"),
        };
    };
    let unauthorized = || {
        format!(
            "the upstream answered HTTP 401 (authentication required) to {what}: check its headers in the register"
        )
    };
    match e {
        StreamableHttpError::Client(client) if client.is_connect() => match io_kind(client) {
            Some(std::io::ErrorKind::ConnectionRefused) => format!("connection refused at {at}"),
            Some(std::io::ErrorKind::TimedOut) => format!("could not connect to {at} (timed out)"),
            _ => format!("could not connect to {at}"),
        },
        StreamableHttpError::Client(client) if client.is_timeout() => {
            format!("no answer from {at} in time")
        }
        StreamableHttpError::Client(_) | StreamableHttpError::Io(_) => {
            format!("the connection to {at} failed during {what}")
        }
        StreamableHttpError::AuthRequired(_) => unauthorized(),
        StreamableHttpError::InsufficientScope(_) => format!(
            "the upstream answered HTTP 403 (insufficient scope) to {what}: check its headers in the register"
        ),
        StreamableHttpError::HttpStatus(s) => status(s.status, what),
        StreamableHttpError::UnexpectedServerResponse(message) => {
            // rmcp writes `HTTP <status>: <body>`; the body is the upstream's and may echo
            // the request, headers included, so only the status is kept
            match message
                .strip_prefix("HTTP ")
                .and_then(|m| m.get(..3))
                .and_then(|code| code.parse::<u16>().ok())
            {
                Some(401) => unauthorized(),
                Some(code) => status(code, what),
                None => format!("the upstream's answer to {what} is not a valid MCP answer"),
            }
        }
        StreamableHttpError::UnexpectedContentType(Some(ct)) => format!(
            "the upstream answered {what} with content type `{}`, not JSON or an event stream: is the url an MCP endpoint?",
            ct.chars().take(80).collect::<String>()
        ),
        StreamableHttpError::UnexpectedContentType(None) => format!(
            "the upstream answered {what} with no content type: is the url an MCP endpoint?"
        ),
        StreamableHttpError::ServerDoesNotSupportSse => {
            format!("the upstream answered HTTP 405 to {what}: is the url an MCP endpoint?")
        }
        StreamableHttpError::SessionExpired => {
            format!("the upstream answered HTTP 404 to {what}: is the url an MCP endpoint?")
        }
        StreamableHttpError::Deserialize(_) => {
            format!("the upstream's answer to {what} is not JSON-RPC")
        }
        StreamableHttpError::ResponseBodyTooLarge { max_size } => {
            format!("the upstream's answer to {what} is over {max_size} bytes")
        }
        _ => format!("the upstream's answer to {what} is not a valid MCP answer"),
    }
}

/// "the upstream answered HTTP `code` to `what`", with a hint for the statuses that have one.
fn status(code: u16, what: &str) -> String {
    let hint = match code {
        404 | 405 => ": is the url an MCP endpoint?",
        _ => "",
    };
    format!("the upstream answered HTTP {code} to {what}{hint}")
}

/// The kind of the first I/O error among `error`'s sources.
fn io_kind(error: &(dyn std::error::Error + 'static)) -> Option<std::io::ErrorKind> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        next = e.source();
    }
    None
}

/// An upstream URL's scheme, host and port: its path, query and user info may hold a
/// credential, and are left out.
fn origin(url: &str) -> String {
    reqwest::Url::parse(url)
        .ok()
        .map(|u| u.origin().ascii_serialization())
        .filter(|o| o != "null")
        .unwrap_or_else(|| "the upstream".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_leaves_out_the_path_query_and_user_info() {
        assert_eq!(
            origin("http://user:pw-secret@crm.example:8080/s/k-secret/mcp?token=q-secret"),
            "http://crm.example:8080"
        );
        assert_eq!(origin("not a url"), "the upstream");
    }
}
