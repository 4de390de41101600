//! `remit demo`: a gateway with the example register and billing system, and a scripted agent.

use crate::Exit;
use anyhow::Context;
use remit_core::audit::checkpoint::Verifier;
use remit_core::audit::verify::LogVerifier;
use remit_core::ids::AgentId;
use remit_core::ports::FreezeTarget;
use remit_core::register::{Severity, Strictness, compile};
use serde_json::{Value, json};

/// The example register, shipped in `examples/`.
const REGISTER: &str = include_str!("../../../examples/support-bot.toml");

fn say(text: &str) -> std::io::Result<()> {
    crate::out::line(format_args!("{text}"))
}

fn fresh_token() -> String {
    remit_core::ids::fresh("demo")
}

pub(crate) async fn run(exit: bool, port: u16) -> anyhow::Result<Exit> {
    let dir = std::env::temp_dir().join(remit_core::ids::fresh("remit-demo"));
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let exe = std::env::current_exe().context("cannot find the remit executable")?;
    let exe_text = serde_json::to_string(&exe.display().to_string())?;
    let source = REGISTER
        .replace("command = [\"remit\",", &format!("command = [{exe_text},"))
        .replace(
            "listen = \"127.0.0.1:8470\"",
            &format!("listen = \"127.0.0.1:{port}\""),
        );
    let path = dir.join("remit.toml");
    std::fs::write(&path, &source)?;
    let token = fresh_token();
    let lookup = |name: &str| (name == "REMIT_TOKEN_SUPPORT_BOT").then(|| token.clone());
    let (register, diags) = compile(&source, &path, &lookup, Strictness::Serve);
    for d in diags.iter().filter(|d| d.severity == Severity::Error) {
        eprintln!("{}", d.render(&path.display().to_string()));
    }
    let register = register.context("the bundled demo register does not compile")?;

    let listener = match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => l,
        Err(_) if port != 0 => tokio::net::TcpListener::bind(("127.0.0.1", 0)).await?,
        Err(e) => return Err(e.into()),
    };
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let runtime = crate::serve::serve_register(register, listener, async {
        let _ = stop_rx.await;
    })
    .await?;

    say("remit demo")?;
    say("==========")?;
    say(&format!(
        "A gateway is running at {base} with the register {}.",
        path.display()
    ))?;
    say(
        "Behind it sits an example billing system (customers, charges, refunds) as an MCP server over stdio.",
    )?;
    say("A scripted support agent now connects over MCP (Streamable HTTP) and tries things.\n")?;

    let mut n = 0;
    let mut surprises = 0;
    // the first failure to print a step (stdout closed), returned once the script is done
    let mut unprinted: Option<std::io::Error> = None;
    let mut on_step = |step: &remit_billing::Step| {
        n += 1;
        let verdict = match &step.outcome {
            remit_billing::StepOutcome::Result(v) => {
                format!("allowed; the upstream answered {}", short(v))
            }
            remit_billing::StepOutcome::ToolError(m) => {
                format!("allowed; the upstream answered with a tool error: {m}")
            }
            remit_billing::StepOutcome::Refused { code, message } => {
                format!("REFUSED ({code}): {message}")
            }
        };
        let mut printed = say(&format!(
            "{n}. {}\n   {} {}\n   -> {verdict}",
            step.title, step.tool, step.arguments
        ));
        if !step.as_expected {
            printed = printed.and_then(|()| say("   !! not what the register should have done"));
        }
        if let Err(e) = printed {
            unprinted.get_or_insert(e);
        }
    };
    let steps = remit_billing::run_support_agent(
        &format!("{base}/mcp"),
        &token,
        remit_billing::Route::Gateway,
        &mut on_step,
    )
    .await
    .context("the scripted agent failed")?;
    if let Some(e) = unprinted {
        return Err(e.into());
    }
    surprises += steps.iter().filter(|s| !s.as_expected).count();

    // the kill switch, and the HTTP API for agents that do not speak MCP
    n += 1;
    runtime
        .gateway
        .set_frozen(
            FreezeTarget::Agent(AgentId::new("support-bot")),
            true,
            "demo-operator",
        )
        .await?;
    let answer = reqwest::Client::new()
        .post(format!("{base}/v1/calls"))
        .bearer_auth(&token)
        .json(&json!({ "tool": "billing.get_customer", "arguments": { "id": "cus_001" }, "reason": "after the freeze" }))
        .send()
        .await?;
    let status = answer.status();
    let body: Value = answer.json().await.unwrap_or(Value::Null);
    say(&format!(
        "{n}. An operator runs `remit freeze support-bot`; the agent tries a read over the HTTP API (POST /v1/calls)\n   -> HTTP {status}: {}",
        body.get("message").and_then(Value::as_str).unwrap_or("?")
    ))?;
    if status != reqwest::StatusCode::FORBIDDEN {
        surprises += 1;
        say("   !! the kill switch did not refuse the call")?;
    }
    runtime
        .gateway
        .set_frozen(
            FreezeTarget::Agent(AgentId::new("support-bot")),
            false,
            "demo-operator",
        )
        .await?;

    // the record
    runtime.checkpoint_now().await?;
    let store = runtime.gateway.store();
    let verifier = Verifier::from_text(&runtime.verifier).map_err(|e| anyhow::anyhow!("{e}"))?;
    let checkpoints = store.checkpoints().await?;
    let mut v = LogVerifier::new(
        &verifier,
        &runtime.gateway.register().gateway.audit_origin,
        &checkpoints,
    );
    let mut from = 0;
    loop {
        let batch = store.events(from, 10_000).await?;
        for e in &batch {
            v.push(e);
        }
        if batch.len() < 10_000 {
            break;
        }
        from += 10_000;
    }
    let report = v.finish();
    n += 1;
    say(&format!(
        "{n}. `remit audit verify`: {} events, {} signed checkpoints, {}",
        report.events,
        report.checkpoints_checked,
        if report.is_ok() {
            "the log is intact"
        } else {
            "PROBLEMS FOUND"
        }
    ))?;
    if !report.is_ok() {
        surprises += 1;
    }

    say("\nEvery step above is in the tamper-evident audit log. Look at it with:")?;
    say(&format!("  remit audit show --register {}", path.display()))?;
    say(&format!(
        "  remit audit verify --register {}",
        path.display()
    ))?;
    say(&format!(
        "  remit register --register {}      (the risk register)",
        path.display()
    ))?;
    say(&format!(
        "\nHealth: {base}/health   OpenAPI: {base}/v1/openapi.json   MCP: {base}/mcp"
    ))?;
    say("Console: not in this version yet (the web console arrives with approvals).")?;
    say(&format!(
        "Agent token for this run: REMIT_TOKEN_SUPPORT_BOT={token}"
    ))?;
    if surprises > 0 {
        say(&format!(
            "\n{surprises} step(s) did not go as the register says they should."
        ))?;
    }
    if !exit {
        say("\nThe gateway keeps running; press Ctrl-C to stop.")?;
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = stop_tx.send(());
    drop(runtime);
    Ok(if surprises == 0 {
        Exit::Ok
    } else {
        Exit::Findings
    })
}

fn short(v: &Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 160 {
        format!("{}…", s.chars().take(160).collect::<String>())
    } else {
        s
    }
}
