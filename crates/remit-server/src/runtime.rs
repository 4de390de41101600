//! Builds the gateway from a compiled register and keeps its background work running.

use remit_core::audit::checkpoint::{AuditKey, StatusToken};
use remit_core::checkpointer::Checkpointer;
use remit_core::pipeline::Gateway;
use remit_core::ports::{Clock, Store, SystemClock, Upstreams};
use remit_core::register::Register;
use remit_mcp::McpUpstreams;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The store could not be opened.
    #[error("cannot open the store: {0}")]
    Store(String),
    /// The audit key could not be read or written.
    #[error("cannot load the audit key: {0}")]
    Key(String),
}

/// A running gateway: the pipeline plus the tasks that keep it current.
#[derive(Debug)]
pub struct Runtime {
    /// The pipeline every entry point calls.
    pub gateway: Arc<Gateway>,
    /// The upstream clients.
    pub upstreams: Arc<McpUpstreams>,
    /// The audit verifier key text (public), for `audit verify` and proofs.
    pub verifier: String,
    /// The check of the operator's token for `/health`'s error details ([`AuditKey::status_token`]).
    pub status_token: StatusToken,
    /// Why the last checkpoint could not be signed, while it cannot (`/health` reports it).
    pub(crate) signing_error: Arc<std::sync::Mutex<Option<String>>>,
    /// Where the last checkpoint signed is kept ([`anchor_path`]).
    anchor: std::path::PathBuf,
    signer: Arc<tokio::sync::Mutex<Checkpointer>>,
    clock: Arc<dyn Clock>,
    tasks: Vec<JoinHandle<()>>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

/// Reads the audit signing key at `path`, or creates one (mode 0600) named after `origin`.
pub fn load_or_create_key(path: &Path, origin: &str) -> Result<AuditKey, RuntimeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => AuditKey::from_text(text.trim())
            .map_err(|e| RuntimeError::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = AuditKey::generate(origin).map_err(|e| RuntimeError::Key(e.to_string()))?;
            write_private(path, &key.to_text())
                .map_err(|e| RuntimeError::Key(format!("{}: {e}", path.display())))?;
            let pubpath = path.with_extension("pub");
            std::fs::write(&pubpath, format!("{}\n", key.verifier().to_text()))
                .map_err(|e| RuntimeError::Key(format!("{}: {e}", pubpath.display())))?;
            tracing::info!(key = %path.display(), "created a new audit signing key");
            Ok(key)
        }
        Err(e) => Err(RuntimeError::Key(format!("{}: {e}", path.display()))),
    }
}

/// The audit key for a store: the one that signed its checkpoints.
///
/// A store with checkpoints gets no new key (deleting the key file must not let a new one
/// sign over the log), and a key that did not sign the latest checkpoint is refused (a
/// swapped key file): either way remit does not start, and says which key it needs.
async fn key_for_store(
    store: &dyn Store,
    path: &Path,
    origin: &str,
) -> Result<AuditKey, RuntimeError> {
    let latest = store
        .latest_checkpoint()
        .await
        .map_err(|e| RuntimeError::Store(e.to_string()))?;
    let anchor = anchor_path(path);
    let Some(latest) = latest else {
        if let Ok(note) = std::fs::read_to_string(&anchor) {
            return Err(RuntimeError::Key(format!(
                "this store has no signed checkpoint, but {} says this key signed one ({}): its \
                 checkpoints were deleted, or this is another store; to start a new log here, \
                 move that file away",
                anchor.display(),
                note.lines().take(2).collect::<Vec<_>>().join(" at size ")
            )));
        }
        return load_or_create_key(path, origin);
    };
    let signer = remit_core::audit::checkpoint::signers(&latest.note)
        .last()
        .unwrap_or("?")
        .to_owned();
    if !path.exists() {
        return Err(RuntimeError::Key(format!(
            "{} is missing, but this store's checkpoints (the latest at size {}) were signed by \
             key `{signer}`: restore that key file; remit will not create a new key over a signed log",
            path.display(),
            latest.tree_size
        )));
    }
    let key = load_or_create_key(path, origin)?;
    key.verifier().verify(&latest.note).map_err(|_| {
        RuntimeError::Key(format!(
            "{} (key `{}`) did not sign this store's latest checkpoint (size {}, signed by key \
             `{signer}`): use the key that did",
            path.display(),
            key.name(),
            latest.tree_size
        ))
    })?;
    // the last checkpoint this key signed, kept beside it: the store must still reach it
    if let Ok(note) = std::fs::read_to_string(&anchor)
        && let Ok(signed) = key.verifier().verify(&note)
        && (latest.tree_size < signed.size
            || (latest.tree_size == signed.size && latest.root != signed.root))
    {
        return Err(RuntimeError::Key(format!(
            "this store's latest checkpoint is at size {}, but this key signed one at size {} \
             ({}): checkpoints were deleted from the store; run `remit audit verify`",
            latest.tree_size,
            signed.size,
            anchor.display()
        )));
    }
    Ok(key)
}

/// Where the last checkpoint a key signed is kept: beside the key, outside the store.
pub fn anchor_path(key: &Path) -> std::path::PathBuf {
    key.with_extension("checkpoint")
}

/// Keeps `note` as the last checkpoint signed, replacing the file in one step.
fn keep_anchor(path: &Path, note: &str) -> std::io::Result<()> {
    use std::io::Write;
    // a file of this process's own: replicas may share the key's directory
    let tmp = path.with_extension(format!("checkpoint.{}.tmp", std::process::id()));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(note.as_bytes())?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path)?;
    f.write_all(text.as_bytes())?;
    f.write_all(b"\n")?;
    f.sync_all()
}

impl Runtime {
    /// Opens the store, loads the key, starts the upstreams and the background tasks.
    pub async fn start(register: Register) -> Result<Self, RuntimeError> {
        let register = Arc::new(register);
        let store = remit_store::open(register.gateway.store.expose(), &register.gateway.base_dir)
            .await
            .map_err(|e| RuntimeError::Store(e.to_string()))?;
        let key = key_for_store(
            store.as_ref(),
            &register.gateway.audit_key,
            &register.gateway.audit_origin,
        )
        .await?;
        let verifier = key.verifier().to_text();
        let status_token = StatusToken::of(&key);
        let upstreams = McpUpstreams::start(register.upstreams.values().cloned());
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        // derived from the audit key: gateways sharing a store and its key file open each
        // other's sealed request states
        let gateway = Arc::new(Gateway::new(
            Arc::clone(&register),
            Arc::clone(&store),
            Arc::clone(&upstreams) as Arc<dyn Upstreams>,
            Arc::clone(&clock),
            key.request_state_key(),
        ));
        let _ = gateway.refresh_frozen().await;
        let mut tasks = Vec::new();
        // tool lists follow the upstreams
        {
            let gateway = Arc::clone(&gateway);
            let mut changes = upstreams.changes();
            tasks.push(tokio::spawn(async move {
                loop {
                    gateway.refresh_tools().await;
                    if changes.changed().await.is_err() {
                        return;
                    }
                }
            }));
        }
        // the kill switch, shared through the store, applies within a second everywhere
        {
            let gateway = Arc::clone(&gateway);
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(250));
                loop {
                    every.tick().await;
                    if let Err(e) = gateway.refresh_frozen().await {
                        tracing::warn!(error = %e, "could not refresh the kill switch");
                    }
                }
            }));
        }
        // a signed checkpoint at least every second while events arrive
        // nothing is signed until the rebuilt tree matches what this key signed before: the
        // store's latest checkpoint (checked on the first tick) and the one kept beside the key
        let mut checkpointer = Checkpointer::new(key, register.gateway.audit_origin.clone());
        let anchor = anchor_path(&register.gateway.audit_key);
        if let Ok(note) = std::fs::read_to_string(&anchor) {
            checkpointer.expect(
                &note,
                format!("the checkpoint kept in {}", anchor.display()),
            );
        }
        let signer = Arc::new(tokio::sync::Mutex::new(checkpointer));
        let signing_error: Arc<std::sync::Mutex<Option<String>>> = Arc::default();
        {
            let store: Arc<dyn Store> = Arc::clone(&store);
            let clock = Arc::clone(&clock);
            let signer = Arc::clone(&signer);
            let signing_error = Arc::clone(&signing_error);
            let anchor = anchor_path(&register.gateway.audit_key);
            tasks.push(tokio::spawn(async move {
                let mut every = tokio::time::interval(Duration::from_millis(1000));
                loop {
                    every.tick().await;
                    let signed = signer
                        .lock()
                        .await
                        .tick(store.as_ref(), clock.as_ref())
                        .await;
                    if let Err(e) = &signed {
                        tracing::error!(error = %e, "audit checkpoint failed");
                    }
                    if let Ok(Some(checkpoint)) = &signed {
                        let (anchor, note) = (anchor.clone(), checkpoint.note.clone());
                        let kept = tokio::task::spawn_blocking(move || keep_anchor(&anchor, &note)).await;
                        if let Ok(Err(e)) = kept {
                            tracing::warn!(error = %e, "cannot keep the latest checkpoint beside the audit key");
                        }
                    }
                    if let Ok(mut last) = signing_error.lock() {
                        *last = signed.err().map(|e| e.to_string());
                    }
                }
            }));
        }
        Ok(Self {
            gateway,
            upstreams,
            verifier,
            status_token,
            signing_error,
            anchor: anchor_path(&register.gateway.audit_key),
            signer,
            clock,
            tasks,
        })
    }

    /// Signs a checkpoint over everything recorded so far (on shutdown, or before a verify).
    pub async fn checkpoint_now(&self) -> Result<(), remit_core::ports::StoreError> {
        let store = Arc::clone(self.gateway.store());
        let signed = self
            .signer
            .lock()
            .await
            .tick(store.as_ref(), self.clock.as_ref())
            .await?;
        if let Some(checkpoint) = signed
            && let Err(e) = keep_anchor(&self.anchor, &checkpoint.note)
        {
            tracing::warn!(error = %e, "cannot keep the latest checkpoint beside the audit key");
        }
        Ok(())
    }

    /// Waits until each upstream has connected or failed once (at most `limit`), then loads tools.
    pub async fn settle(&self, limit: Duration) {
        self.upstreams.settle(limit).await;
        self.gateway.refresh_tools().await;
    }
}
