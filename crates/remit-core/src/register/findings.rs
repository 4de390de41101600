//! Risk findings for `remit check`: what the register allows that the person accountable should see.

use super::raw::RawRegister;
use super::{Diagnostic, Position, Register, Severity, Tier};
use crate::condition::arg_fields;
use crate::ports::ToolSpec;

fn warn(at: Position, message: String, help: Option<String>) -> Diagnostic {
    Diagnostic::at(Severity::Warning, at, message, help)
}

/// Warnings about risk in a register that compiled.
pub fn risks(register: &Register, _raw: &RawRegister, _source: &str) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for a in register.actions.values() {
        let unbounded = a.conditions.is_empty() && a.budgets.is_empty();
        if a.tier != Tier::Read && unbounded && a.approve.is_none() {
            out.push(warn(
                a.at.name,
                format!("{} action `{}` has no condition, no budget and no approval", a.tier.as_str(), a.name),
                Some("bound it: `require = \"args.amount <= 500\"`, `budget = [{ count = 20, per = \"1h\" }]`".to_owned()),
            ));
        }
        if a.tier == Tier::Irreversible && a.approve.is_none() {
            out.push(warn(
                a.at.tier,
                format!("irreversible action `{}` needs no approval", a.name),
                Some("add `approve = { by = \"GROUP\" }`".to_owned()),
            ));
        }
        for (key, block) in [("approve", &a.approve), ("delay", &a.delay)] {
            if let Some(p) = block {
                out.push(warn(
                    p.at,
                    format!("`{key}` on `{}` is not yet enforced by this version: every call of it is refused", a.name),
                    Some("remove the block to let calls through without it, or keep it to keep the action closed".to_owned()),
                ));
            }
        }
        for (key, block) in [("verify", &a.verify), ("undo", &a.undo)] {
            if let Some(p) = block {
                out.push(warn(
                    p.at,
                    format!(
                        "`{key}` on `{}` is not yet enforced by this version",
                        a.name
                    ),
                    Some(format!(
                        "calls go through without it for now; it is checked and shown in `remit register` so that it is ready when `{key}` is enforced"
                    )),
                ));
            }
        }
    }
    out
}

/// What to write instead of a tool an upstream does not list: the closest of those it
/// lists, or all of them (a few), or that it lists none.
fn tool_hint<'a>(tool: &str, names: impl Iterator<Item = &'a str> + Clone) -> String {
    if let Some(guess) = super::compile::did_you_mean(tool, names.clone()) {
        return guess;
    }
    let listed: Vec<String> = names.map(|n| format!("`{n}`")).collect();
    match listed.len() {
        0 => "the upstream lists no tools: check that it is the server you meant".to_owned(),
        1..=12 => format!("its tools are: {}", listed.join(", ")),
        n => {
            format!("it lists {n} tools, none close to this name: see the upstream's `tools/list`")
        }
    }
}

/// Errors and warnings from comparing the register with the tools the upstreams actually list.
pub fn against_tools(
    register: &Register,
    tools: &[ToolSpec],
    reachable: &[&str],
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for a in register.actions.values() {
        // the tools `verify.probe` and `undo` name, on the upstreams that answered
        for named in &a.named_tools {
            if !reachable.contains(&named.upstream.as_str())
                || tools
                    .iter()
                    .any(|t| t.upstream == named.upstream && t.name == named.tool)
            {
                continue;
            }
            let names = tools
                .iter()
                .filter(|t| t.upstream == named.upstream)
                .map(|t| t.name.as_str());
            out.push(Diagnostic::at(
                Severity::Error,
                named.at,
                format!(
                    "`{}` names `{}.{}`, but upstream `{}` has no tool `{}`",
                    named.key, named.upstream, named.tool, named.upstream, named.tool
                ),
                Some(tool_hint(&named.tool, names)),
            ));
        }
        if !reachable.contains(&a.upstream.as_str()) {
            continue;
        }
        let Some(spec) = tools
            .iter()
            .find(|t| t.upstream == a.upstream && t.name == a.tool)
        else {
            let names = tools
                .iter()
                .filter(|t| t.upstream == a.upstream)
                .map(|t| t.name.as_str());
            out.push(Diagnostic::at(
                Severity::Error,
                a.at.name,
                format!("upstream `{}` has no tool `{}`", a.upstream, a.tool),
                Some(tool_hint(&a.tool, names)),
            ));
            continue;
        };
        let props = spec
            .input_schema()
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.as_object());
        // each expression with where it is written: the finding points at it, not at the action
        let mut exprs: Vec<(&str, Position)> = a
            .conditions
            .iter()
            .enumerate()
            .map(|(i, c)| (c.source(), a.at.nth(&a.at.conditions, i)))
            .collect();
        for b in &a.budgets {
            if let super::BudgetMeasure::Sum(c) = &b.measure {
                exprs.push((c.source(), b.at));
            }
        }
        for (expr, at) in exprs {
            for field in arg_fields(expr) {
                if let Some(props) = props
                    && !props.contains_key(&field)
                {
                    let hint =
                        super::compile::did_you_mean(&field, props.keys().map(String::as_str));
                    out.push(Diagnostic::at(
                        Severity::Error,
                        at,
                        format!(
                            "`{expr}` reads `args.{field}`, but tool `{}` has no argument `{field}`",
                            a.name
                        ),
                        hint.or_else(|| {
                            Some(format!(
                                "its arguments are: {}",
                                props.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                            ))
                        }),
                    ));
                }
            }
        }
        // a redacted path the tool has no argument (or, with an output schema, no result
        // field) for redacts nothing: the value it was meant to hide would be written in
        // clear into a log that cannot be edited
        let output = spec
            .definition
            .get("outputSchema")
            .and_then(|s| s.get("properties"))
            .and_then(|p| p.as_object());
        for (paths, positions, props, prefix, what) in [
            (&a.redact, &a.at.redact, props, "args", "argument"),
            (
                &a.redact_result,
                &a.at.redact_result,
                output,
                "result",
                "result field",
            ),
        ] {
            let Some(props) = props else { continue };
            for (i, path) in paths.iter().enumerate() {
                let Some(field) = path.first() else { continue };
                if props.contains_key(field) {
                    continue;
                }
                let hint = super::compile::did_you_mean(field, props.keys().map(String::as_str));
                out.push(Diagnostic::at(
                    Severity::Error,
                    a.at.nth(positions, i),
                    format!(
                        "`redact` names `{prefix}.{}`, but tool `{}` has no {what} `{field}`: nothing would be redacted",
                        path.join("."),
                        a.name
                    ),
                    hint.or_else(|| {
                        Some(format!(
                            "its {what}s are: {}",
                            props.keys().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ")
                        ))
                    }),
                ));
            }
        }
        if let Some(ann) = spec.definition.get("annotations")
            && a.tier == Tier::Read
            && ann.get("readOnlyHint").and_then(|v| v.as_bool()) != Some(true)
            && ann.get("destructiveHint").and_then(|v| v.as_bool()) == Some(true)
        {
            out.push(warn(
                a.at.tier,
                format!(
                    "`{}` is registered as `read` but the upstream marks it destructive",
                    a.name
                ),
                Some("register it as `write` or `irreversible`".to_owned()),
            ));
        }
    }
    out
}
