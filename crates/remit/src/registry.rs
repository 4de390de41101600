//! `remit check` and `remit register`: the register read, checked and printed for people.

use crate::Exit;
use anyhow::Context;
use remit_core::ports::Upstreams;
use remit_core::register::findings::against_tools;
use remit_core::register::{BudgetMeasure, Diagnostic, Register, Severity, Strictness, compile};
use serde_json::json;
use std::path::Path;
use std::time::Duration;

/// How `remit register` prints.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub(crate) enum Format {
    Text,
    Markdown,
    Json,
}

/// Reads and compiles a register; prints every diagnostic to stderr.
pub(crate) fn load(
    path: &Path,
    strictness: Strictness,
) -> anyhow::Result<(Option<Register>, Vec<Diagnostic>)> {
    let source = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read the register `{}`", path.display()))?;
    let env = |name: &str| std::env::var(name).ok();
    let (register, diags) = compile(&source, path, &env, strictness);
    if let Some(register) = &register {
        crate::log_lines::keep_out(register);
    }
    Ok((register, diags))
}

fn print_diagnostics(path: &Path, diags: &[Diagnostic]) {
    for d in diags {
        eprintln!("{}", d.render(&path.display().to_string()));
    }
}

/// Loads a register for running: any error is printed and ends the command.
pub(crate) fn load_for(path: &Path, strictness: Strictness) -> anyhow::Result<Register> {
    let (register, diags) = load(path, strictness)?;
    let errors: Vec<_> = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .cloned()
        .collect();
    print_diagnostics(path, &errors);
    register.ok_or_else(|| {
        anyhow::anyhow!(
            "the register `{}` has {} error(s); run `remit check`",
            path.display(),
            errors.len()
        )
    })
}

pub(crate) async fn check(path: &Path, offline: bool) -> anyhow::Result<Exit> {
    let (register, mut diags) = load(path, Strictness::Check)?;
    if let Some(register) = &register
        && !offline
        && !register.upstreams.is_empty()
    {
        let upstreams = remit_mcp::McpUpstreams::start(register.upstreams.values().cloned());
        upstreams.settle(Duration::from_secs(15)).await;
        let health = upstreams.health();
        let reachable: Vec<&str> = health
            .iter()
            .filter(|h| h.up)
            .map(|h| h.upstream.as_str())
            .collect();
        for h in health.iter().filter(|h| !h.up) {
            // located at the upstream's `[upstreams.NAME]`, which names what could not be reached
            let at = register
                .upstreams
                .get(&h.upstream)
                .map(|u| u.at)
                .unwrap_or_default();
            diags.push(Diagnostic::at(
                Severity::Warning,
                at,
                format!(
                    "upstream `{}` could not be reached: {}; its tools and argument names were not checked",
                    h.upstream,
                    h.last_error.as_deref().unwrap_or("no answer")
                ),
                Some("run `remit check --offline` to skip this, or start the upstream".to_owned()),
            ));
        }

        let tools = upstreams.tools().await;
        diags.extend(against_tools(register, &tools, &reachable));
        diags.sort_by_key(|d| (d.line, d.column, d.severity));
    }
    print_diagnostics(path, &diags);
    let errors = diags
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let warnings = diags.len() - errors;
    if errors > 0 || register.is_none() {
        eprintln!(
            "{}: {errors} error(s), {warnings} warning(s)",
            path.display()
        );
        return Ok(Exit::Findings);
    }
    let actions = register.as_ref().map(|r| r.actions.len()).unwrap_or(0);
    crate::outln!(
        "{}: ok, {actions} action(s), {warnings} warning(s)",
        path.display()
    );
    Ok(Exit::Ok)
}

/// The paths an action redacts in the audit, as the register writes them.
fn redacted(a: &remit_core::register::Action) -> Vec<String> {
    let args = a.redact.iter().map(|p| format!("args.{}", p.join(".")));
    let result = a
        .redact_result
        .iter()
        .map(|p| format!("result.{}", p.join(".")));
    args.chain(result).collect()
}

fn budget_text(r: &remit_core::register::Action) -> Vec<String> {
    r.budgets.iter().map(ToString::to_string).collect()
}

fn row(a: &remit_core::register::Action) -> serde_json::Value {
    let pending = |p: &Option<remit_core::register::Pending>| {
        p.as_ref().map(|p| format!("{} (not yet enforced)", p.text))
    };
    json!({
        "action": a.name.as_str(),
        "exposed_as": a.exposed,
        "agents": a.agents.iter().map(|x| x.as_str()).collect::<Vec<_>>(),
        "tier": a.tier.as_str(),
        "description": a.description,
        "conditions": a.conditions.iter().map(|c| c.source()).collect::<Vec<_>>(),
        "budgets": budget_text(a),
        "sums": a.budgets.iter().filter_map(|b| match &b.measure { BudgetMeasure::Sum(c) => Some(c.source()), BudgetMeasure::Count => None }).collect::<Vec<_>>(),
        "redact": redacted(a),
        "approval": pending(&a.approve),
        "delay": pending(&a.delay),
        "verification": pending(&a.verify),
        "undo": pending(&a.undo),
    })
}

pub(crate) fn print(path: &Path, format: Format) -> anyhow::Result<Exit> {
    let register = load_for(path, Strictness::Check)?;
    let out = match format {
        Format::Json => {
            let agents: Vec<_> = register
                .agents
                .values()
                .map(|a| {
                    json!({
                        "agent": a.id.as_str(),
                        "owner": a.owner,
                        "description": a.description,
                    })
                })
                .collect();
            let rows: Vec<_> = register.actions.values().map(row).collect();
            let mut json = serde_json::to_string_pretty(&json!({
                "register": register.version.as_str(),
                "agents": agents,
                "actions": rows,
            }))?;
            json.push('\n');
            json
        }
        Format::Markdown => markdown(path, &register),
        Format::Text => text(path, &register),
    };
    crate::out::text(&out)?;
    Ok(Exit::Ok)
}

/// Text on one line of a terminal's output: a line break, another control character or a
/// bidirectional override is written escaped (`\n`, `\u{202e}`), so a description or an
/// agent's stated reason cannot add a line (a fake heading or entry), reorder what is shown,
/// or send the terminal an escape sequence.
pub(crate) fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_control() || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}') {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// The risk register as text, for a terminal.
fn text(path: &Path, register: &Register) -> String {
    use std::fmt::Write;
    let mut out = format!(
        "Risk register {} ({})\nAnything not listed here is refused.\n\n",
        one_line(&path.display().to_string()),
        register.version
    );
    for a in register.agents.values() {
        let _ = writeln!(out, "agent {}", one_line(a.id.as_str()));
        let _ = writeln!(
            out,
            "  owner:        {}",
            a.owner
                .as_deref()
                .map_or_else(|| "none".to_owned(), one_line)
        );
        if let Some(d) = &a.description {
            let _ = writeln!(out, "  what:         {}", one_line(d));
        }
        out.push('\n');
    }
    for a in register.actions.values() {
        let agents: Vec<&str> = a.agents.iter().map(|x| x.as_str()).collect();
        let _ = writeln!(out, "{}  [{}]", a.name, a.tier.as_str());
        if let Some(d) = &a.description {
            let _ = writeln!(out, "  what:         {}", one_line(d));
        }
        let _ = writeln!(out, "  agents:       {}", one_line(&agents.join(", ")));
        for c in &a.conditions {
            let _ = writeln!(out, "  only if:      {}", one_line(c.source()));
        }
        for b in budget_text(a) {
            let _ = writeln!(out, "  budget:       {}", one_line(&b));
        }
        let r = redacted(a);
        if !r.is_empty() {
            let _ = writeln!(out, "  redacted:     {}", one_line(&r.join(", ")));
        }
        for (label, p) in [
            ("approval:", &a.approve),
            ("delay:", &a.delay),
            ("verification:", &a.verify),
            ("undo:", &a.undo),
        ] {
            let _ = match p {
                Some(p) => writeln!(
                    out,
                    "  {label:<13} {} (declared, not yet enforced)",
                    one_line(&p.text)
                ),
                None => writeln!(out, "  {label:<13} none"),
            };
        }
        out.push('\n');
    }
    out
}

/// Text for one cell of a Markdown table: a `|` would end the cell (even inside a code
/// span, in GitHub's tables) and a line break the row, shifting every later column.
fn md_cell(text: &str) -> String {
    text.replace('|', "\\|")
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

/// The risk register as a Markdown table.
fn markdown(path: &Path, register: &Register) -> String {
    use std::fmt::Write;
    let none = "none".to_owned();
    let mut out = format!(
        "# Risk register\n\nRegister `{}` ({}). Anything not listed here is refused.\n\n",
        path.display(),
        register.version
    );
    if !register.agents.is_empty() {
        out.push_str("| agent | owner | description |\n|---|---|---|\n");
        for a in register.agents.values() {
            let _ = writeln!(
                out,
                "| `{}` | {} | {} |",
                md_cell(a.id.as_str()),
                a.owner.as_deref().map_or_else(|| none.clone(), md_cell),
                a.description.as_deref().map(md_cell).unwrap_or_default(),
            );
        }
        out.push('\n');
    }
    out.push_str(
        "| action | description | agents | tier | conditions | budgets | approval | delay | verification | undo | redacted in the audit |\n",
    );
    out.push_str("|---|---|---|---|---|---|---|---|---|---|---|\n");
    for a in register.actions.values() {
        let agents: Vec<&str> = a.agents.iter().map(|x| x.as_str()).collect();
        let conds: Vec<String> = a
            .conditions
            .iter()
            .map(|c| format!("`{}`", c.source()))
            .collect();
        let p = |x: &Option<remit_core::register::Pending>| {
            x.as_ref()
                .map(|_| "declared, not yet enforced".to_owned())
                .unwrap_or_else(|| none.clone())
        };
        let _ = writeln!(
            out,
            "| `{}` | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
            a.name,
            a.description.as_deref().map(md_cell).unwrap_or_default(),
            md_cell(&agents.join(", ")),
            a.tier.as_str(),
            if conds.is_empty() {
                none.clone()
            } else {
                md_cell(&conds.join(" and "))
            },
            if a.budgets.is_empty() {
                none.clone()
            } else {
                md_cell(&budget_text(a).join("; "))
            },
            p(&a.approve),
            p(&a.delay),
            p(&a.verify),
            p(&a.undo),
            match redacted(a) {
                r if r.is_empty() => none.clone(),
                r => md_cell(
                    &r.iter()
                        .map(|p| format!("`{p}`"))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            },
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_cells_keep_a_condition_with_a_pipe_or_a_line_break_in_its_column() {
        let src = r#"
[agents.bot]
[upstreams.billing]
command = ["x"]
[actions."billing.issue_refund"]
agents = ["bot"]
tier = "write"
require = """
args.amount <= 100
|| args.currency == 'JPY'"""
budget = [{ sum = "args.amount", max = 1000, per = "24h" }]
delay = "1h"
redact = ["args.card", "result.card_number"]
"#;
        let (register, diags) = compile(src, Path::new("r.toml"), &|_| None, Strictness::Check);
        let register = register.unwrap_or_else(|| panic!("{diags:?}"));
        let text = markdown(Path::new("r.toml"), &register);
        let row = text
            .lines()
            .find(|l| l.starts_with("| `billing.issue_refund`"))
            .unwrap_or_else(|| panic!("no row in {text}"));
        // a GitHub table splits cells at every `|` not escaped by a backslash
        let cells = row.matches('|').count() - row.matches("\\|").count();
        assert_eq!(cells, 12, "11 columns, 12 bars expected: {row}");
        assert!(
            row.contains("`args.amount <= 100 \\|\\| args.currency == 'JPY'`"),
            "{row}"
        );
        assert!(
            row.contains("| sum of `args.amount` at most 1000 per 24h |"),
            "{row}"
        );
        // what keeps the action closed, and what the audit does not keep, are shown too
        assert!(
            row.contains("| none | declared, not yet enforced | none | none |"),
            "{row}"
        );
        assert!(
            row.ends_with("| `args.card`, `result.card_number` |"),
            "{row}"
        );
    }

    /// A register whose agent and action say who and what, with a line break, a `|` and a
    /// terminal escape in their words.
    fn described() -> Register {
        let src = r#"
[agents.a]
owner = "payments-team@example.com"
description = "answers customers\n# agent b"
[agents.b]
[upstreams.u]
command = ["x"]
[actions."u.t"]
agents = ["a"]
tier = "write"
description = "Danger | drop `all` tables\n# injected heading\u001b[2J"
require = "args.x == \"a|b\""
"#;
        let (register, diags) = compile(src, Path::new("r.toml"), &|_| None, Strictness::Check);
        register.unwrap_or_else(|| panic!("{diags:?}"))
    }

    #[test]
    fn text_shows_each_agents_owner_and_description_and_keeps_words_on_their_line() {
        let out = text(Path::new("r.toml"), &described());
        assert!(
            out.contains(
                "agent a\n  owner:        payments-team@example.com\n  what:         answers customers\\n# agent b\n"
            ),
            "{out}"
        );
        assert!(out.contains("agent b\n  owner:        none\n"), "{out}");
        assert!(
            out.contains(
                "u.t  [write]\n  what:         Danger | drop `all` tables\\n# injected heading\\u{1b}[2J\n"
            ),
            "{out}"
        );
        // no line but the register's own starts where a heading or an entry would
        assert!(!out.lines().any(|l| l.starts_with('#')), "{out}");
        assert!(!out.contains('\u{1b}'), "{out}");
    }

    #[test]
    fn markdown_shows_each_agent_and_each_actions_description_in_its_cell() {
        let out = markdown(Path::new("r.toml"), &described());
        assert!(
            out.contains("| `a` | payments-team@example.com | answers customers # agent b |\n"),
            "{out}"
        );
        assert!(out.contains("| `b` | none |  |\n"), "{out}");
        let row = out
            .lines()
            .find(|l| l.starts_with("| `u.t`"))
            .unwrap_or_else(|| panic!("no row in {out}"));
        let cells = row.matches('|').count() - row.matches("\\|").count();
        assert_eq!(cells, 12, "11 columns, 12 bars expected: {row}");
        assert!(
            row.starts_with(
                "| `u.t` | Danger \\| drop `all` tables # injected heading [2J | a | write |"
            ),
            "{row}"
        );
        assert!(
            !out.lines()
                .any(|l| l.starts_with('#') && l != "# Risk register"),
            "{out}"
        );
    }
}
