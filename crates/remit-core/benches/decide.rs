//! Decision time with a register of 1,000 actions: look up, bind the arguments, decide
//! (kill switch, CEL conditions, budget charges).
//!
//! `cargo bench -p remit-core --bench decide`. The register is generated: 10 upstreams
//! of 100 tools, 10 agents, each action granted to 3 of them, each with a two-clause
//! CEL condition, a count budget and a sum budget (whose CEL expression is evaluated
//! to price the charge). Calls cycle through all 1,000 actions so no single entry
//! stays hot in cache. The store's side of the budget (the SQL charge) is I/O and is
//! measured by the load harness in `bench/`, not here.
//!
//! These conditions have the common shape that `remit_core::condition` evaluates in
//! native form, on the JSON arguments; binding is free until a condition needs the CEL
//! interpreter, so there is no separate "bind" figure.

use criterion::{Criterion, criterion_group, criterion_main};
use remit_core::condition::Bindings;
use remit_core::decision::{Decision, decide};
use remit_core::ids::{ActionName, AgentId};
use remit_core::ports::FreezeTarget;
use remit_core::register::Register;
use remit_core::register::compile::{Strictness, compile};
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};
use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;

const UPSTREAMS: usize = 10;
const TOOLS: usize = 100;
const AGENTS: usize = 10;

fn token(agent: usize) -> String {
    format!("token-of-agent-{agent}")
}

/// A register of `UPSTREAMS * TOOLS` actions.
fn source() -> String {
    let mut s = String::from("[gateway]\nstore = \"sqlite://bench.db\"\n\n");
    for a in 0..AGENTS {
        let hash = hex::encode(Sha256::digest(token(a).as_bytes()));
        s.push_str(&format!(
            "[agents.agent-{a}]\nowner = \"team-{a}@example.com\"\ntoken_sha256 = \"{hash}\"\n\n"
        ));
    }
    for u in 0..UPSTREAMS {
        s.push_str(&format!(
            "[upstreams.sys{u}]\nurl = \"http://127.0.0.1:{}/mcp\"\n\n",
            9000 + u
        ));
    }
    for u in 0..UPSTREAMS {
        for t in 0..TOOLS {
            let n = u * TOOLS + t;
            let agents: Vec<String> = (0..3)
                .map(|k| format!("\"agent-{}\"", (n + k) % AGENTS))
                .collect();
            let tier = match n % 3 {
                0 => "read",
                1 => "write",
                _ => "irreversible",
            };
            s.push_str(&format!(
                "[actions.\"sys{u}.tool_{t}\"]\n\
                 agents = [{}]\n\
                 tier = \"{tier}\"\n\
                 require = \"args.amount > 0 && args.amount <= 500 && args.currency in ['EUR', 'USD']\"\n\
                 budget = [{{ count = 20, per = \"1h\" }}, {{ sum = \"args.amount\", max = 1000, per = \"24h\" }}]\n\n",
                agents.join(", ")
            ));
        }
    }
    s
}

fn register() -> Register {
    let source = source();
    let (register, diags) = compile(
        &source,
        Path::new("bench.toml"),
        &|_| None,
        Strictness::Check,
    );
    let register = register
        .unwrap_or_else(|| unreachable!("the generated register does not compile: {diags:?}"));
    assert_eq!(register.actions.len(), UPSTREAMS * TOOLS);
    register
}

/// One call per action: its exposed name, an agent it is granted to, that agent's token, and arguments.
struct Call {
    tool: String,
    agent: AgentId,
    token: String,
    args: Map<String, Value>,
}

fn calls() -> Vec<Call> {
    (0..UPSTREAMS * TOOLS)
        .map(|n| {
            let (u, t) = (n / TOOLS, n % TOOLS);
            let agent = (n + 1) % AGENTS;
            let Value::Object(args) = json!({
                "amount": 40 + (n % 400),
                "currency": "EUR",
                "customer": format!("cus_{n:06}"),
                "reason_code": "duplicate_charge"
            }) else {
                unreachable!()
            };
            Call {
                tool: format!("sys{u}.tool_{t}"),
                agent: AgentId::new(format!("agent-{agent}")),
                token: token(agent),
                args,
            }
        })
        .collect()
}

/// Look up (exposed name, then the agent's grant), bind the arguments, decide.
fn look_up_and_decide(
    register: &Register,
    call: &Call,
    frozen: &HashSet<FreezeTarget>,
) -> Decision {
    let action = register
        .action_exposed_as(&call.tool)
        .unwrap_or_else(|| unreachable!("unlisted {}", call.tool));
    assert!(action.agents.contains(&call.agent));
    let bindings = Bindings::for_args(&call.args);
    decide(action, call.agent.as_str(), &bindings, frozen)
}

fn is_allow(d: &Decision) -> bool {
    matches!(d, Decision::Allow(c) if c.len() == 2)
}

fn decision(c: &mut Criterion) {
    let register = register();
    let calls = calls();
    let none = HashSet::new();
    // A kill switch with entries that do not match: the lookups run, nothing is refused.
    let some: HashSet<FreezeTarget> = (0..20)
        .map(|i| FreezeTarget::Action(ActionName::new(format!("other{i}.tool"))))
        .chain([FreezeTarget::Agent(AgentId::new("agent-x"))])
        .collect();
    assert!(
        calls
            .iter()
            .all(|call| is_allow(&look_up_and_decide(&register, call, &none)))
    );

    let mut group = c.benchmark_group("decide_1000_actions");
    let mut i = 0usize;
    let mut next = || {
        i = (i + 1) % calls.len();
        calls.get(i).unwrap_or_else(|| unreachable!())
    };
    group.bench_function("lookup+bind+decide", |b| {
        b.iter(|| look_up_and_decide(&register, black_box(next()), &none));
    });
    group.bench_function("lookup+bind+decide, 21 frozen targets", |b| {
        b.iter(|| look_up_and_decide(&register, black_box(next()), &some));
    });
    group.bench_function("authenticate+lookup+bind+decide", |b| {
        b.iter(|| {
            let call = black_box(next());
            let hash: [u8; 32] = Sha256::digest(call.token.as_bytes()).into();
            let agent = register.agent_by_token_hash(&hash);
            assert!(agent.is_some_and(|a| a.id == call.agent));
            look_up_and_decide(&register, call, &none)
        });
    });
    let prepared: Vec<(&remit_core::register::Action, Bindings<'_>, &Call)> = calls
        .iter()
        .map(|call| {
            let action = register
                .action_exposed_as(&call.tool)
                .unwrap_or_else(|| unreachable!());
            (action, Bindings::for_args(&call.args), call)
        })
        .collect();
    let mut j = 0usize;
    group.bench_function("decide only (bound arguments)", |b| {
        b.iter(|| {
            j = (j + 1) % prepared.len();
            let (action, bindings, call) = prepared.get(j).unwrap_or_else(|| unreachable!());
            decide(action, call.agent.as_str(), black_box(bindings), &none)
        });
    });
    group.finish();
}

criterion_group!(benches, decision);
criterion_main!(benches);
