//! What rmcp 3.11 hands a hand-written `ServerHandler::call_tool`, per
//! transport and era: the request `_meta`, the negotiated version, the
//! progress token, the HTTP request parts, and a peer that can notify.
//! These tests pin the facts the gateway relies on.

use std::sync::{Arc, Mutex};

use axum::http::request::Parts;
use rmcp::{
    ClientHandler, ErrorData, RoleClient, RoleServer, ServerHandler, ServiceExt,
    model::{
        CallToolRequestParams, CallToolResponse, CallToolResult, ClientConfig, ContentBlock,
        ListToolsResult, NumberOrString, PaginatedRequestParams, ProgressNotificationParam,
        ProgressToken, RequestMetaObject, ServerCapabilities, ServerConfig, Tool,
    },
    service::{NotificationContext, RequestContext},
    transport::{
        StreamableHttpClientTransport, StreamableHttpServerConfig, StreamableHttpService,
        streamable_http_client::StreamableHttpClientTransportConfig,
        streamable_http_server::session::local::LocalSessionManager,
    },
};
use serde_json::{Value, json};

use crate::support::{Era, client_config, connect_with, object};

/// What one `call_tool` saw.
#[derive(Debug, Clone)]
struct Seen {
    meta: Value,
    params_meta: bool,
    protocol_version: Option<String>,
    client_name: Option<String>,
    progress_token: Option<ProgressToken>,
    authorization: Option<String>,
    session_id: Option<String>,
    peer_info: bool,
}

/// A hand-written server with one tool, `probe`, that records its context
/// and reports progress when asked to.
#[derive(Debug, Clone, Default)]
struct Probe {
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl ServerHandler for Probe {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().build())
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let schema = object(json!({"type": "object"}));
        Ok(ListToolsResult::with_all_items(vec![Tool::new(
            "probe",
            "records its context",
            Arc::new(schema),
        )]))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, ErrorData> {
        let parts = context.extensions.get::<Parts>();
        let header = |name: &str| {
            parts
                .and_then(|parts| parts.headers.get(name))
                .map(|value| value.to_str().unwrap().to_owned())
        };
        let seen = Seen {
            meta: serde_json::to_value(&context.meta).unwrap(),
            params_meta: request.meta.is_some(),
            protocol_version: context.protocol_version().map(|v| v.to_string()),
            client_name: context.client_info().map(|info| info.name),
            progress_token: context.meta.get_progress_token(),
            authorization: header("authorization"),
            session_id: header("mcp-session-id"),
            peer_info: context.peer.peer_info().is_some(),
        };
        if let Some(token) = &seen.progress_token {
            let mut progress = ProgressNotificationParam::new(token.clone(), 1.0);
            progress.total = Some(2.0);
            context.peer.notify_progress(progress).await.unwrap();
        }
        self.seen.lock().unwrap().push(seen);
        Ok(CallToolResult::success(vec![ContentBlock::text("ok")]).into())
    }
}

/// A client that keeps the progress notifications it receives.
#[derive(Debug, Clone)]
struct ProgressSink {
    config: ClientConfig,
    received: Arc<Mutex<Vec<ProgressNotificationParam>>>,
}

impl ClientHandler for ProgressSink {
    fn get_info(&self) -> ClientConfig {
        self.config.clone()
    }

    async fn on_progress(
        &self,
        params: ProgressNotificationParam,
        _context: NotificationContext<RoleClient>,
    ) {
        self.received.lock().unwrap().push(params);
    }
}

fn probe_call() -> CallToolRequestParams {
    let mut call = CallToolRequestParams::new("probe").with_arguments(object(json!({})));
    let mut meta = RequestMetaObject::with_progress_token(ProgressToken(NumberOrString::Number(7)));
    meta.0
        .0
        .insert("example.com/trace".to_owned(), json!("t-1"));
    call.meta = Some(meta);
    call
}

async fn probe_once<T, E, A>(probe: &Probe, transport: T, era: Era) -> (Seen, usize)
where
    T: rmcp::transport::IntoTransport<RoleClient, E, A>,
    E: std::error::Error + Send + Sync + 'static,
{
    let sink = ProgressSink {
        config: client_config(era),
        received: Arc::default(),
    };
    let client = connect_with(sink.clone(), transport, era).await;
    let result = client.call_tool(probe_call()).await.unwrap();
    assert_eq!(result.is_error, Some(false));
    client.cancel().await.unwrap();
    let seen = probe.seen.lock().unwrap().pop().unwrap();
    let progress = sink.received.lock().unwrap().len();
    (seen, progress)
}

#[tokio::test]
async fn in_process_duplex_handler_sees_meta_version_and_progress_token() {
    for era in Era::ALL {
        let probe = Probe::default();
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = probe.clone();
        tokio::spawn(async move {
            let running = server.serve(server_io).await.unwrap();
            running.waiting().await.unwrap();
        });
        let (seen, progress) = probe_once(&probe, client_io, era).await;

        // `_meta` is moved off the params into `context.meta`. Custom keys
        // pass through, but rmcp's client stamps its own progress token (a
        // per-connection counter) over the one the caller set.
        assert!(!seen.params_meta, "{era:?}");
        assert_eq!(seen.meta["example.com/trace"], "t-1", "{era:?}");
        assert!(seen.meta["progressToken"].is_number(), "{era:?}");
        assert_ne!(seen.meta["progressToken"], 7, "{era:?}");
        assert!(seen.progress_token.is_some());
        assert_eq!(
            seen.protocol_version.as_deref(),
            Some(era.version().as_str())
        );
        assert_eq!(seen.client_name.as_deref(), Some("remit-billing-tests"));
        assert_eq!(
            progress, 1,
            "{era:?}: progress notification reached the client"
        );
        match era {
            // The legacy era keeps the client context in the session...
            Era::Initialize => {
                assert!(seen.peer_info);
                assert!(
                    seen.meta
                        .get("io.modelcontextprotocol/protocolVersion")
                        .is_none()
                );
            }
            // ...the 2026 era sends it in every request's `_meta`.
            Era::Discover => {
                assert_eq!(
                    seen.meta["io.modelcontextprotocol/protocolVersion"],
                    "2026-07-28"
                );
                assert!(seen.meta["io.modelcontextprotocol/clientCapabilities"].is_object());
                assert_eq!(
                    seen.meta["io.modelcontextprotocol/clientInfo"]["name"],
                    "remit-billing-tests"
                );
            }
        }
        assert!(seen.authorization.is_none());
    }
}

#[tokio::test]
async fn http_handler_sees_request_headers_in_extensions() {
    let probe = Probe::default();
    let factory = probe.clone();
    let service: StreamableHttpService<Probe, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(factory.clone()),
        Arc::default(),
        StreamableHttpServerConfig::default().with_json_response(true),
    );
    let router = axum::Router::new().nest_service("/mcp", service);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, router).await });

    for era in Era::ALL {
        let transport = StreamableHttpClientTransport::from_config(
            StreamableHttpClientTransportConfig::with_uri(url.clone()).auth_header("s3cret"),
        );
        let (seen, progress) = probe_once(&probe, transport, era).await;
        assert_eq!(
            seen.authorization.as_deref(),
            Some("Bearer s3cret"),
            "{era:?}"
        );
        assert_eq!(
            seen.protocol_version.as_deref(),
            Some(era.version().as_str())
        );
        assert!(seen.progress_token.is_some());
        assert_eq!(seen.meta["example.com/trace"], "t-1", "{era:?}");
        assert_eq!(
            progress, 1,
            "{era:?}: progress notification reached the client"
        );
        match era {
            Era::Initialize => assert!(seen.session_id.is_some()),
            Era::Discover => assert!(seen.session_id.is_none()),
        }
    }
}
