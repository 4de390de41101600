//! Upstream lifecycle: upstreams that fail after taking a call, hang, never list their
//! tools, or die right after connecting; and credentials kept out of the log.
//!
//! The faults here are ones a real MCP server cannot be made to produce on demand, so the
//! upstreams are fakes, named as such: `FakeStdioUpstream` (a shell script) and
//! `FakeHttpUpstreamFailingAfterTheCall` (a few lines of HTTP on a thread).

use crate::support::{Remit, STANDARD};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Read, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// FakeStdioUpstream: answers `initialize` and `tools/list` (one tool, `poke`) like a
/// 2025-11-25 server; then, by mode, `hang` answers nothing more (calls, pings), `hang_list`
/// never answers `tools/list`, `exit_after_list` exits once it has listed its tools.
const FAKE_STDIO_UPSTREAM: &str = r#"#!/bin/sh
mode=$1
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      [ "$mode" = hang_list ] && continue
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":{"type":"object"}}]}}\n' "$id"
      [ "$mode" = exit_after_list ] && exit 0 ;;
    *) ;;
  esac
done
"#;

/// remit with the billing upstream and a `FakeStdioUpstream` named `fake` in `mode`; the
/// folder holding the fake's script goes with it.
fn remit_with_fake_stdio(mode: &str, keys: &str) -> (Remit, tempfile::TempDir) {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, FAKE_STDIO_UPSTREAM).unwrap();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.fake]\ncommand = [\"sh\", \"{script}\", \"{mode}\"]\nprotocol = \"2025-11-25\"\n{keys}\n\n[actions.\"fake.poke\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]",
                script = script.display()
            ),
        )
    });
    (r, scripts)
}

fn upstream_in(h: &Value, name: &str) -> Value {
    h["upstreams"]
        .as_array()
        .unwrap()
        .iter()
        .find(|u| u["upstream"] == name)
        .unwrap_or_else(|| panic!("no upstream `{name}` in {h}"))
        .clone()
}

/// Waits (at most `limit`) until `ready` holds for the operator's view of upstream `name`.
fn wait_for(r: &Remit, name: &str, limit: Duration, ready: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + limit;
    loop {
        let u = upstream_in(&r.health_as_operator(), name);
        if ready(&u) {
            return u;
        }
        assert!(Instant::now() < deadline, "gave up waiting: {u}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn an_upstream_that_hangs_is_reported_down_and_restarted() {
    let (r, _scripts) = remit_with_fake_stdio("hang", "timeout = \"1s\"");
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    let (status, body) = r.call("fake.poke", json!({}));
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may or may not have run"),
        "{body}"
    );
    // at once: not reported up, with the reason, and the gateway degraded
    let h = r.health_as_operator();
    let fake = upstream_in(&h, "fake");
    assert_eq!(fake["up"], json!(false), "{h}");
    assert!(
        fake["last_error"]
            .as_str()
            .unwrap()
            .contains("did not answer within 1s"),
        "{h}"
    );
    assert_eq!(h["status"], "degraded", "{h}");
    // it answers no ping either, so it is restarted
    let fake = wait_for(&r, "fake", Duration::from_secs(20), |u| {
        u["restarts"].as_u64().unwrap() >= 1 && u["up"] == json!(true)
    });
    assert_eq!(fake["tools"], 1, "{fake}");
    // the other upstream went on as before
    assert_eq!(
        r.call("billing.get_customer", json!({ "id": "cus_001" })).0,
        200
    );
}

#[test]
fn an_upstream_that_never_answers_tools_list_is_reported_and_tried_again() {
    let (r, _scripts) = remit_with_fake_stdio("hang_list", "");
    let fake = wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["last_error"]
            .as_str()
            .is_some_and(|e| e.contains("tools/list"))
    });
    assert_eq!(fake["up"], json!(false), "{fake}");
    // its child was ended, not left waiting: at most the one being tried now is alive
    let children = crate::support::children_of(r.pid());
    assert!(children.len() <= 2, "{children:?}");
}

#[test]
fn an_upstream_that_exits_right_after_connecting_is_restarted_with_growing_backoff() {
    let (r, _scripts) = remit_with_fake_stdio("exit_after_list", "");
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["restarts"].as_u64().unwrap() >= 1
    });
    std::thread::sleep(Duration::from_secs(6));
    // 250 ms, 500 ms, 1 s, 2 s, 4 s: a handful in 6 s, not one every 250 ms (about 20)
    let fake = upstream_in(&r.health_as_operator(), "fake");
    assert!(fake["restarts"].as_u64().unwrap() <= 7, "{fake}");
}

/// FakeHttpUpstreamFailingAfterTheCall: a 2025-11-25 Streamable HTTP server that answers
/// the handshake and `tools/list`, takes each `tools/call` (counting it: the tool ran) and
/// then answers HTTP 500, as a server that crashes after the work, or a proxy in front of
/// it, does. Returns its URL and the count of calls it took.
fn fake_http_upstream_failing_after_the_call() -> (String, Arc<AtomicUsize>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let calls = Arc::new(AtomicUsize::new(0));
    let taken = Arc::clone(&calls);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let taken = Arc::clone(&taken);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    let mut first = String::new();
                    if reader.read_line(&mut first).unwrap_or(0) == 0 {
                        return;
                    }
                    loop {
                        let mut line = String::new();
                        reader.read_line(&mut line).unwrap();
                        if line == "\r\n" {
                            break;
                        }
                        if let Some((k, v)) = line.split_once(':')
                            && k.eq_ignore_ascii_case("content-length")
                        {
                            length = v.trim().parse().unwrap();
                        }
                    }
                    if !first.starts_with("POST") {
                        writer
                            .write_all(
                                b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n",
                            )
                            .unwrap();
                        continue;
                    }
                    let mut body = vec![0; length];
                    reader.read_exact(&mut body).unwrap();
                    let m: Value = serde_json::from_slice(&body).unwrap();
                    let id = m["id"].clone();
                    let (status, answer) = match m["method"].as_str().unwrap_or("") {
                        "initialize" => (
                            "200 OK",
                            json!({"jsonrpc": "2.0", "id": id, "result": {
                            "protocolVersion": "2025-11-25", "capabilities": {"tools": {}},
                            "serverInfo": {"name": "fake", "version": "0"}}})
                            .to_string(),
                        ),
                        _ if id.is_null() => ("202 Accepted", String::new()),
                        "tools/list" => (
                            "200 OK",
                            json!({"jsonrpc": "2.0", "id": id, "result": {
                            "tools": [{"name": "refund", "inputSchema": {"type": "object"}}]}})
                            .to_string(),
                        ),
                        "tools/call" => {
                            taken.fetch_add(1, Ordering::SeqCst);
                            (
                                "500 Internal Server Error",
                                "{\"error\":\"crashed\"}".to_owned(),
                            )
                        }
                        _ => (
                            "200 OK",
                            json!({"jsonrpc": "2.0", "id": id, "error": {
                            "code": -32601, "message": "no such method"}})
                            .to_string(),
                        ),
                    };
                    let head = format!(
                        "HTTP/1.1 {status}\r\ncontent-type: application/json\r\nmcp-session-id: s1\r\ncontent-length: {}\r\n\r\n",
                        answer.len()
                    );
                    writer.write_all(head.as_bytes()).unwrap();
                    writer.write_all(answer.as_bytes()).unwrap();
                }
            });
        }
    });
    (url, calls)
}

#[test]
fn an_http_upstream_failing_after_it_took_the_call_is_reported_as_may_have_run() {
    let (url, calls) = fake_http_upstream_failing_after_the_call();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.crm]\nurl = \"{url}\"\nprotocol = \"2025-11-25\"\n\n[actions.\"crm.refund\"]\nagents = [\"support-bot\"]\ntier = \"write\"\nbudget = [{{ count = 5, per = \"1h\" }}]\n\n[upstreams.billing]"
            ),
        )
    });
    r.wait_for_upstream("crm");
    let (status, body) = r.call("crm.refund", json!({ "amount": 5 }));
    assert_eq!(
        calls.load(Ordering::SeqCst),
        1,
        "the upstream took the call"
    );
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "failed", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("may or may not have run"), "{body}");
    assert!(!message.contains("could not be sent"), "{body}");
    // and the record does not say it was never sent
    let failed = r
        .events()
        .into_iter()
        .find(|l| l["event"]["stage"] == "failed" && l["event"]["action"] == "crm.refund")
        .unwrap();
    assert_eq!(failed["event"]["detail"]["sent"], json!(true), "{failed}");
}

#[test]
fn credentials_in_an_upstreams_url_never_reach_the_log_or_health() {
    let mut r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            // no path: an HTTP client prints it as `http://127.0.0.1:1/?token=...`
            "[upstreams.crm]\nurl = \"http://127.0.0.1:1?token=url-secret-4711\"\n\n[upstreams.billing]",
        )
    });
    let crm = wait_for(&r, "crm", Duration::from_secs(30), |u| {
        u["last_error"].is_string()
    });
    assert!(!crm.to_string().contains("url-secret-4711"), "{crm}");
    // let it retry once or twice, so every line about it is written
    std::thread::sleep(Duration::from_secs(1));
    let log = r.stop_and_read_log();
    assert!(log.contains("upstream unavailable"), "{log}");
    assert!(!log.contains("url-secret-4711"), "{log}");
}

/// FakeHttpUpstreamRedirecting: answers every request with a redirect (307) to a second
/// listener, which records the head of each request it gets. Gives the fake's URL, the
/// second listener's origin and what it got.
fn fake_http_upstream_redirecting() -> (String, String, Arc<std::sync::Mutex<Vec<String>>>) {
    let recorder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let origin = format!("http://{}", recorder.local_addr().unwrap());
    let got = Arc::new(std::sync::Mutex::new(Vec::new()));
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        while let Ok((stream, _)) = recorder.accept() {
            let mut head = String::new();
            let mut reader = BufReader::new(&stream);
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) && line != "\r\n" {
                head.push_str(&line);
                line.clear();
            }
            seen.lock().unwrap().push(head);
            let _ = (&stream).write_all(
                b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/mcp", listener.local_addr().unwrap());
    let location = format!("{origin}/elsewhere");
    std::thread::spawn(move || {
        while let Ok((stream, _)) = listener.accept() {
            let location = location.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(&stream);
                loop {
                    let mut length = 0usize;
                    let mut line = String::new();
                    loop {
                        line.clear();
                        if !reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                            return;
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let answer = format!(
                        "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\n\r\n"
                    );
                    if (&stream).write_all(answer.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    (url, origin, got)
}

/// An HTTP upstream whose endpoint redirects elsewhere is reported down with the status
/// and the target's origin (rmcp's client followed a redirect on the same origin, and
/// reported one elsewhere as an answer it could not read); its credential header, taken
/// from the environment, reaches neither the other listener nor the log nor `/health`.
#[test]
fn an_http_upstream_that_redirects_is_reported_and_its_credential_goes_nowhere_else() {
    let (url, origin, got) = fake_http_upstream_redirecting();
    let mut r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.shop]\nurl = \"{url}\"\nheaders = {{ X-Api-Key = {{ env = \"REMIT_TOKEN_OTHER_BOT\" }} }}\n\n[upstreams.billing]"
            ),
        )
    });
    let shop = wait_for(&r, "shop", Duration::from_secs(30), |u| {
        u["last_error"].is_string()
    });
    let error = shop["last_error"].as_str().unwrap();
    assert!(
        error.contains(&format!("HTTP 307 redirecting to {origin},")),
        "{shop}"
    );
    assert!(error.contains("does not follow"), "{shop}");
    assert_eq!(shop["up"], json!(false), "{shop}");
    std::thread::sleep(Duration::from_secs(1));
    let log = r.stop_and_read_log();
    assert!(!log.contains(crate::support::OTHER_TOKEN), "{log}");
    assert!(!shop.to_string().contains(crate::support::OTHER_TOKEN));
    let got = got.lock().unwrap();
    assert!(got.is_empty(), "the redirect was followed: {got:?}");
}

/// FakeStdioUpstreamIgnoringStdinClose: answers `initialize` and `tools/list` (one tool,
/// `poke`) and nothing else; ignores `SIGTERM`, carries on after its stdin closes, and
/// starts a process of its own that does the same (as a wrapper script's server would).
/// Every pid it starts is appended to `$1/pids`; with `$2` = `hang_list` it never answers
/// `tools/list`.
const FAKE_STDIO_UPSTREAM_IGNORING_STDIN_CLOSE: &str = r#"#!/bin/sh
trap '' TERM
echo $$ >> "$1/pids"
( trap '' TERM; while :; do sleep 1; done ) &
echo $! >> "$1/pids"
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      [ "$2" = hang_list ] && continue
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
    *) ;;
  esac
done
while :; do sleep 1; done
"#;

/// remit with the billing upstream and a `FakeStdioUpstreamIgnoringStdinClose` named `fake`
/// in `mode` (`""` or `hang_list`), `keys` added to its table; the folder holding its script
/// and `pids` goes with it.
fn remit_with_fake_ignoring_stdin_close(mode: &str, keys: &str) -> (Remit, tempfile::TempDir) {
    remit_with_fake_script(FAKE_STDIO_UPSTREAM_IGNORING_STDIN_CLOSE, mode, keys)
}

/// remit with the billing upstream and the shell script `fake` as the stdio upstream `fake`
/// (its tool `poke` open to support-bot), run as `sh SCRIPT DIR MODE`, `keys` added to its
/// table; the folder `DIR` holding the script goes with it.
fn remit_with_fake_script(fake: &str, mode: &str, keys: &str) -> (Remit, tempfile::TempDir) {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, fake).unwrap();
    let r = Remit::start_with(|port| {
        crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.fake]\ncommand = [\"sh\", \"{script}\", \"{dir}\", \"{mode}\"]\nprotocol = \"2025-11-25\"\n{keys}\n\n[actions.\"fake.poke\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]",
                script = script.display(),
                dir = scripts.path().display()
            ),
        )
    });
    (r, scripts)
}

/// The pids `FakeStdioUpstreamIgnoringStdinClose` wrote to `dir/pids`.
fn fake_pids(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("pids"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// Whether a process is alive, from the OS (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|stat| {
        stat.rsplit_once(") ")
            .is_some_and(|(_, after)| !after.starts_with('Z'))
    })
}

/// Sends `SIGTERM` to remit and waits (at most 30 s) until it has shut down.
fn terminate(r: &Remit) {
    let term = std::process::Command::new("kill")
        .args(["-TERM", &r.pid().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while alive(r.pid()) {
        assert!(Instant::now() < deadline, "remit did not shut down");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Waits (at most `limit`) until none of `pids` is alive; gives those still alive.
fn wait_until_gone(pids: &[u32], limit: Duration) -> Vec<u32> {
    let deadline = Instant::now() + limit;
    loop {
        let left: Vec<u32> = pids.iter().copied().filter(|p| alive(*p)).collect();
        if left.is_empty() || Instant::now() >= deadline {
            return left;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A stdio upstream that ignores its stdin closing and `SIGTERM`, and has started a
/// process of its own, is ended for sure, whole process group, when remit restarts it
/// (it hung) and when `remit serve` shuts down on `SIGTERM`.
#[test]
fn a_stdio_upstream_ignoring_stdin_close_and_sigterm_ends_on_restart_and_on_shutdown() {
    let (mut r, scripts) = remit_with_fake_ignoring_stdin_close("", "timeout = \"1s\"");
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    let first = fake_pids(scripts.path());
    assert_eq!(first.len(), 2, "{first:?}");
    // the call times out, the ping too: the upstream is restarted
    let (status, body) = r.call("fake.poke", json!({}));
    assert_eq!(status, 502, "{body}");
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["restarts"].as_u64().unwrap() >= 1 && u["up"] == json!(true)
    });
    let left = wait_until_gone(&first, Duration::from_secs(15));
    assert!(left.is_empty(), "outlived its restart: {left:?}");
    let all = fake_pids(scripts.path());
    assert!(all.len() >= 4, "{all:?}");
    // SIGTERM to remit: it shuts down, and takes the upstream with it
    terminate(&r);
    let left = wait_until_gone(&all, Duration::from_secs(5));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    r.kill9();
}

/// A shutdown that comes while an upstream has answered the handshake but not yet
/// `tools/list` closes that connection too, whole process group, before remit exits (it
/// sat out the `tools/list` limit, and the close it then began was cut off at exit: what the
/// child started outlived remit).
#[test]
fn a_shutdown_while_an_upstream_lists_its_tools_still_ends_its_process_group() {
    let (mut r, scripts) = remit_with_fake_ignoring_stdin_close("hang_list", "");
    let deadline = Instant::now() + Duration::from_secs(30);
    while fake_pids(scripts.path()).len() < 2 {
        assert!(Instant::now() < deadline, "the fake upstream did not start");
        std::thread::sleep(Duration::from_millis(100));
    }
    // the handshake answered, `tools/list` waiting
    std::thread::sleep(Duration::from_secs(1));
    let all = fake_pids(scripts.path());
    terminate(&r);
    let left = wait_until_gone(&all, Duration::from_secs(5));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    r.kill9();
}

/// FakeStdioUpstreamThatCrashesLeavingAGrandchild: answers `initialize` and `tools/list` (one
/// tool, `poke`); starts two processes of its own (`sleep`, one of them ignoring `SIGTERM`)
/// with their own stdin and stdout, appending their pids to `$1/grandchildren`; exits at
/// once on a `tools/call` (a crash), and when its stdin closes, leaving both running.
const FAKE_STDIO_UPSTREAM_THAT_CRASHES_LEAVING_A_GRANDCHILD: &str = r#"#!/bin/sh
# with "once", it starts only once: every later start fails before it starts anything
if [ "$2" = once ] && [ -e "$1/started" ]; then exit 4; fi
touch "$1/started"
sleep 300 </dev/null >/dev/null 2>&1 &
echo $! >> "$1/grandchildren"
( trap '' TERM; exec sleep 300 ) </dev/null >/dev/null 2>&1 &
echo $! >> "$1/grandchildren"
# with "handshake-crash", it dies before it answers anything
if [ "$2" = handshake-crash ]; then exit 5; fi
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
    *'"method":"tools/call"'*) exit 3 ;;
    *) ;;
  esac
done
"#;

/// remit in front of `FakeStdioUpstreamThatCrashesLeavingAGrandchild` (started with `mode`),
/// once it is up, and the two processes it started.
fn remit_with_fake_crasher(mode: &str) -> (Remit, tempfile::TempDir, Vec<u32>) {
    let (r, scripts) = remit_with_fake_script(
        FAKE_STDIO_UPSTREAM_THAT_CRASHES_LEAVING_A_GRANDCHILD,
        mode,
        "",
    );
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    let started = grandchildren(scripts.path());
    assert_eq!(started.len(), 2, "{started:?}");
    assert!(started.iter().all(|p| alive(*p)), "{started:?}");
    (r, scripts, started)
}

/// The pids `FakeStdioUpstreamThatCrashesLeavingAGrandchild` wrote to `dir/grandchildren`.
fn grandchildren(dir: &std::path::Path) -> Vec<u32> {
    std::fs::read_to_string(dir.join("grandchildren"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// A stdio upstream that crashes, leaving what it started running in its process group, has
/// that group ended (`SIGTERM`, then `SIGKILL` for the one ignoring it) while remit carries on
/// and starts the upstream again (before, the group was signalled only while the child itself
/// ran: each crash left its processes behind).
#[test]
fn a_stdio_upstream_that_crashes_leaving_a_grandchild_has_its_group_ended_and_is_restarted() {
    let (mut r, scripts, first) = remit_with_fake_crasher("");
    // the call makes the upstream exit at once: the call fails
    let (status, body) = r.call("fake.poke", json!({}));
    assert_ne!(status, 200, "{body}");
    let left = wait_until_gone(&first, Duration::from_secs(10));
    assert!(left.is_empty(), "outlived the upstream's crash: {left:?}");
    assert!(alive(r.pid()), "remit ended");
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["restarts"].as_u64().unwrap() >= 1 && u["up"] == json!(true)
    });
    // started again once: the failed call's own request to reconnect, about the connection
    // that had ended, does not end the new one
    std::thread::sleep(Duration::from_secs(2));
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    let all = grandchildren(scripts.path());
    assert_eq!(all.len(), 4, "started more than twice: {all:?}");
    let (earlier, current) = all.split_at(all.len() - 2);
    let left = wait_until_gone(earlier, Duration::from_secs(10));
    assert!(left.is_empty(), "outlived their upstream: {left:?}");
    assert!(
        current.iter().all(|p| alive(*p)),
        "the running upstream's were ended: {current:?}"
    );
    terminate(&r);
    r.kill9();
}

/// A stdio upstream that crashes just before remit shuts down, leaving what it started in its
/// process group, has that group ended before remit exits: the one ignoring `SIGTERM` gets
/// its `SIGKILL` 3 s after the crash, and the shutdown waits for it (before, the ending
/// was a task of its own, cut off when remit exited).
#[test]
fn a_stdio_upstream_crashing_just_before_shutdown_has_its_group_ended_before_remit_exits() {
    // started once: after the crash, remit's attempts to start it again fail at once
    let (mut r, _scripts, all) = remit_with_fake_crasher("once");
    let (status, body) = r.call("fake.poke", json!({}));
    assert_ne!(status, 200, "{body}");
    terminate(&r);
    let left = wait_until_gone(&all, Duration::from_secs(1));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    r.kill9();
}

/// A stdio upstream that dies before it answers `initialize`, leaving what it started in its
/// process group, has that group ended after each failed attempt, and at shutdown: dropping a
/// child whose handshake failed kills its whole group (`kill_on_drop` through the group),
/// which a change to how connections end must keep.
#[test]
fn a_stdio_upstream_dying_during_its_handshake_leaves_nothing_behind() {
    let (mut r, scripts) = remit_with_fake_script(
        FAKE_STDIO_UPSTREAM_THAT_CRASHES_LEAVING_A_GRANDCHILD,
        "handshake-crash",
        "",
    );
    // tried twice: the first attempt's processes have had their 3 s of grace
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut started = grandchildren(scripts.path());
    while started.len() < 4 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
        started = grandchildren(scripts.path());
    }
    assert!(started.len() >= 4, "not tried twice: {started:?}");
    let left = wait_until_gone(&started[..2], Duration::from_secs(10));
    assert!(left.is_empty(), "outlived a failed handshake: {left:?}");
    assert!(alive(r.pid()), "remit ended");
    terminate(&r);
    let all = grandchildren(scripts.path());
    let left = wait_until_gone(&all, Duration::from_secs(5));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    r.kill9();
}

/// A stdio upstream that exits as soon as its stdin closes, leaving what it started running
/// in its process group, has that group ended when `remit serve` shuts down on `SIGTERM`
/// (before, rmcp signalled the group only while the child itself ran).
#[test]
fn a_stdio_upstream_exiting_when_its_stdin_closes_leaves_nothing_running_after_shutdown() {
    let (mut r, _scripts, all) = remit_with_fake_crasher("");
    terminate(&r);
    let left = wait_until_gone(&all, Duration::from_secs(5));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    r.kill9();
}

/// A stdio MCP server that answers every call with a JSON-RPC error quoting its own key
/// (`FAKE_KEY` in its environment) and the call's `card`: the fault of a careless upstream.
/// With "bad-schema", its tool's input schema refers to a remote schema remit will not fetch.
/// Each call it receives is appended to `$1/calls`.
const FAKE_STDIO_UPSTREAM_QUOTING_ITS_KEY: &str = r#"#!/bin/sh
schema='{"type":"object"}'
if [ "$2" = bad-schema ]; then
  schema='{"type":"object","properties":{"n":{"type":"integer","maximum":5}},"$ref":"https://example.invalid/x.json"}'
fi
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":%s}]}}\n' "$id" "$schema" ;;
    *'"method":"tools/call"'*)
      printf '%s\n' "$line" >> "$1/calls"
      card=$(printf '%s\n' "$line" | sed -n 's/.*"card":"\([^"]*\)".*/\1/p')
      if [ "$2" = result ]; then
        printf '{"jsonrpc":"2.0","id":%s,"result":{"content":[{"type":"text","text":"card %s charged with key=%s"}],"structuredContent":{"key":"%s","card":"%s"}}}\n' "$id" "$card" "$FAKE_KEY" "$FAKE_KEY" "$card"
      else
        printf '{"jsonrpc":"2.0","id":%s,"error":{"code":-32603,"message":"bad card %s key=%s","data":{"key":"%s"}}}\n' "$id" "$card" "$FAKE_KEY" "$FAKE_KEY"
      fi ;;
    *) ;;
  esac
done
"#;

/// remit in front of `FAKE_STDIO_UPSTREAM_QUOTING_ITS_KEY` (in `mode`), with the
/// action `fake.poke` redacting `args.card`, once the upstream is up.
fn remit_with_fake_quoter(mode: &str) -> (Remit, tempfile::TempDir) {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, FAKE_STDIO_UPSTREAM_QUOTING_ITS_KEY).unwrap();
    let r = Remit::launch(
        |port| {
            crate::support::register(STANDARD, port).replace(
            "[upstreams.billing]",
            &format!(
                "[upstreams.fake]\ncommand = [\"sh\", \"{script}\", \"{dir}\", \"{mode}\"]\nprotocol = \"2025-11-25\"\nenv = {{ FAKE_KEY = {{ env = \"REMIT_TEST_FAKE_KEY\" }} }}\n\n[actions.\"fake.poke\"]\nagents = [\"support-bot\"]\ntier = \"write\"\nredact = [\"args.card\"]\n\n[upstreams.billing]",
                script = script.display(),
                dir = scripts.path().display()
            ),
        )
        },
        &[("REMIT_TEST_FAKE_KEY", "upstreamSECRETkey99")],
    );
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    (r, scripts)
}

/// An upstream's error that quotes its credential reaches neither the agent nor the audit
/// with it, nor `/health`; a redacted argument it echoes is scrubbed from the audit; and an
/// error other than a refused request is not recorded as "did not run" (before: the key went
/// to the agent and into the audit, the card into the audit, and `ran: false` for any code).
#[test]
fn an_upstream_error_quoting_its_key_or_a_redacted_argument_is_scrubbed() {
    let (r, scripts) = remit_with_fake_quoter("");
    let (status, body) = r.call("fake.poke", json!({ "card": "4111111111111111" }));
    assert_eq!(status, 502, "{body}");
    assert_eq!(body["code"], "rejected", "{body}");
    let text = body.to_string();
    assert!(!text.contains("upstreamSECRETkey99"), "{body}");
    assert!(text.contains("key=[redacted]"), "{body}");
    // the agent sent the card: its own value comes back to it
    assert!(text.contains("bad card 4111111111111111"), "{body}");
    assert!(text.contains("may or may not have run"), "{body}");
    let calls = std::fs::read_to_string(scripts.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    assert!(!export.contains("upstreamSECRETkey99"), "{export}");
    assert!(!export.contains("4111111111111111"), "{export}");
    let failed: Vec<Value> = export
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap()["event"].clone())
        .filter(|e| e["stage"] == "failed")
        .collect();
    assert_eq!(failed.len(), 1, "{export}");
    assert_eq!(failed[0]["detail"]["code"], -32603, "{export}");
    assert!(failed[0]["detail"].get("ran").is_none(), "{export}");
    let health = r.health_as_operator().to_string();
    assert!(!health.contains("4111111111111111"), "{health}");
    assert!(!health.contains("upstreamSECRETkey99"), "{health}");
}

/// An upstream's successful result that quotes its credential reaches neither the agent nor
/// the audit with it (before: the agent read the key the register keeps from it, and the
/// audit kept it); the agent's own argument comes back to it, and only the audit loses the
/// redacted card.
#[test]
fn an_upstream_result_quoting_its_key_is_scrubbed() {
    let (r, scripts) = remit_with_fake_quoter("result");
    let (status, body) = r.call("fake.poke", json!({ "card": "4111111111111111" }));
    assert_eq!(status, 200, "{body}");
    let text = body.to_string();
    assert!(!text.contains("upstreamSECRETkey99"), "{body}");
    assert!(text.contains("key=[redacted]"), "{body}");
    assert_eq!(
        body["result"]["structuredContent"]["key"], "[redacted]",
        "{body}"
    );
    assert_eq!(
        body["result"]["structuredContent"]["card"], "4111111111111111",
        "{body}"
    );
    let calls = std::fs::read_to_string(scripts.path().join("calls")).unwrap();
    assert_eq!(calls.lines().count(), 1, "{calls}");
    let (_, export, _) = r.audit(&["export", "--format", "jsonl"]);
    assert!(!export.contains("upstreamSECRETkey99"), "{export}");
    assert!(!export.contains("4111111111111111"), "{export}");
}

/// A tool whose input schema remit cannot compile is refused, not called unchecked (before:
/// its arguments went to the upstream without any check); the refusal says retrying will not
/// help.
#[test]
fn a_tool_whose_input_schema_does_not_compile_is_refused_not_called_unchecked() {
    let (r, scripts) = remit_with_fake_quoter("bad-schema");
    let (status, body) = r.call("fake.poke", json!({ "n": 999 }));
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "unavailable", "{body}");
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains("input schema cannot be checked"),
        "{message}"
    );
    assert!(message.contains("retrying will not help"), "{message}");
    assert!(
        !scripts.path().join("calls").exists(),
        "the upstream got the call"
    );
    assert_eq!(r.stages_of("fake.poke"), ["proposed", "refused"]);
}

/// The standard register with the billing server started by the shell script `script`
/// (which gets remit's path as `$0`: `exec "$0" billing-server --db billing.db` serves MCP)
/// and `BILLING_KEY` in its environment, read from remit's `REMIT_TEST_BILLING_KEY`.
fn billing_behind_script(port: u16, script: &str) -> String {
    let register = crate::support::register(STANDARD, port);
    let command = format!(
        "command = [\"{}\", \"billing-server\", \"--db\", \"billing.db\"]",
        crate::support::remit()
    );
    assert!(register.contains(&command), "{register}");
    register.replace(
        &command,
        &format!(
            "command = [\"sh\", \"-c\", '{script}', \"{}\"]\nenv = {{ BILLING_KEY = {{ env = \"REMIT_TEST_BILLING_KEY\" }} }}",
            crate::support::remit()
        ),
    )
}

/// What a stdio upstream writes to its stderr reaches remit's log as a line of its own,
/// named for the upstream and with the upstream's credential replaced (before, the child
/// inherited remit's stderr: its lines reached the log, or a `remit stdio` client's, as
/// written, credential included and with nothing to say which upstream wrote them).
#[test]
fn a_stdio_upstreams_stderr_reaches_the_log_named_and_without_its_credential() {
    let (r, log) = Remit::launch_following_log(
        |port| {
            billing_behind_script(
                port,
                r#"echo "billing starting, key $BILLING_KEY" >&2; exec "$0" billing-server --db billing.db"#,
            )
        },
        &[("REMIT_TEST_BILLING_KEY", "billingSECRETkey42")],
    );
    let line = log.wait_for_line(&["billing starting"], Duration::from_secs(10));
    assert!(line.contains("billing starting, key [redacted]"), "{line}");
    assert!(line.contains("upstream=billing"), "{line}");
    assert_eq!(
        r.call("billing.get_customer", json!({ "id": "cus_001" })).0,
        200
    );
    terminate(&r);
    let log = log.all();
    assert!(!log.contains("billingSECRETkey42"), "{log}");
}

/// A stdio upstream that floods its stderr does not flood remit's log: at most 100 of its
/// lines a second are logged, the rest counted once a second; the child is not held to the
/// log's pace (it wrote far more than was logged), and its calls go on working.
#[test]
fn a_stdio_upstream_flooding_its_stderr_is_held_to_a_rate_in_the_log_and_its_calls_still_work() {
    let started = Instant::now();
    let (r, log) = Remit::launch_following_log(
        |port| {
            billing_behind_script(
                port,
                r#"(i=0; while :; do i=$((i+1)); echo "flood $i"; done) >&2 & exec "$0" billing-server --db billing.db"#,
            )
        },
        &[("REMIT_TEST_BILLING_KEY", "billingSECRETkey42")],
    );
    for _ in 0..20 {
        let (status, body) = r.call("billing.get_customer", json!({ "id": "cus_001" }));
        assert_eq!(status, 200, "{body}");
    }
    let dropped = log.wait_for_line(
        &["upstream=billing", "lines were left out of the log"],
        Duration::from_secs(10),
    );
    assert!(dropped.contains("dropped="), "{dropped}");
    std::thread::sleep(Duration::from_secs(1));
    let text = log.text();
    let seconds = started.elapsed().as_secs() + 1;
    let logged = text.lines().filter(|l| l.contains(" flood ")).count();
    let left_out: u64 = text
        .lines()
        .filter(|l| l.contains("lines were left out of the log"))
        .filter_map(|l| {
            l.split("dropped=")
                .nth(1)?
                .split(' ')
                .next()?
                .parse::<u64>()
                .ok()
        })
        .sum();
    assert!(logged > 0, "{text}");
    assert!(
        logged as u64 <= 100 * seconds,
        "{logged} lines of the flood logged in {seconds}s"
    );
    assert!(
        left_out > 10 * logged as u64,
        "the child was held back: {left_out} lines dropped, {logged} logged"
    );
    terminate(&r);
}

/// The register `STANDARD` with a stdio upstream `fake` that runs `sh SCRIPT DIR` (in the
/// 2025-11-25 era, with `keys` added to its table) and a read action `fake.poke` for
/// support-bot.
fn register_with_fake(
    port: u16,
    script: &std::path::Path,
    dir: &std::path::Path,
    keys: &str,
) -> String {
    crate::support::register(STANDARD, port).replace(
        "[upstreams.billing]",
        &format!(
            "[upstreams.fake]\ncommand = [\"sh\", \"{script}\", \"{dir}\"]\nprotocol = \"2025-11-25\"\n{keys}\n\n[actions.\"fake.poke\"]\nagents = [\"support-bot\"]\ntier = \"read\"\n\n[upstreams.billing]",
            script = script.display(),
            dir = dir.display()
        ),
    )
}

/// FakeStdioUpstreamThatStopsReadingItsStdin: answers `initialize` and `tools/list` (one tool,
/// `poke`), then reads nothing more from its stdin (a hung server), ignoring `SIGTERM`, as
/// does a process it started; appends its pid and that process's to `$1/pids`.
const FAKE_STDIO_UPSTREAM_THAT_STOPS_READING_ITS_STDIN: &str = r#"#!/bin/sh
trap '' TERM
echo $$ >> "$1/pids"
( trap '' TERM; while :; do sleep 1; done ) &
echo $! >> "$1/pids"
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":{"type":"object"}}]}}\n' "$id"
      while :; do sleep 1; done ;;
    *) ;;
  esac
done
"#;

/// A shutdown whose wait for the upstreams runs out (10 s) kills the process group of each
/// child still there, and says which: here a child that stopped reading its stdin while remit
/// was writing it a call larger than the pipe holds, so rmcp's close of the connection waits
/// on that write forever and never gets to its `SIGTERM` and `SIGKILL` (before, the child's
/// group outlived remit).
#[test]
fn a_shutdown_that_runs_out_of_time_kills_the_process_groups_left() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, FAKE_STDIO_UPSTREAM_THAT_STOPS_READING_ITS_STDIN).unwrap();
    let (mut r, log) = Remit::launch_following_log(
        |port| register_with_fake(port, &script, scripts.path(), "timeout = \"60s\""),
        &[],
    );
    r.wait_for_upstream("fake");
    let pids = fake_pids(scripts.path());
    assert_eq!(pids.len(), 2, "{pids:?}");
    // a call four times what a pipe holds: remit's write of it stops once the pipe is full
    let url = r.url("/v1/calls");
    let big = "x".repeat(256 * 1024);
    std::thread::spawn(move || {
        let _ = reqwest::blocking::Client::new()
            .post(url)
            .bearer_auth(crate::support::TOKEN)
            .json(&json!({ "tool": "fake.poke", "arguments": { "big": big } }))
            .send();
    });
    std::thread::sleep(Duration::from_secs(1));
    terminate(&r);
    let left = wait_until_gone(&pids, Duration::from_secs(2));
    assert!(left.is_empty(), "outlived remit: {left:?}");
    let log = log.all();
    let warning = log
        .lines()
        .find(|l| l.contains("not closed within 10s"))
        .unwrap_or_else(|| panic!("no warning: {log}"));
    assert!(
        warning.contains("sent SIGKILL to the process groups of fake"),
        "{warning}"
    );
    r.kill9();
}

/// A call to a stdio upstream that stopped reading its stdin ends at its timeout, with the
/// upstream reported down: rmcp's own timeout starts once the request is written, and a call
/// larger than the pipe holds is never written whole (before: the call hung for as long as
/// the child did, and `/health` showed the upstream up).
#[test]
fn a_call_to_an_upstream_that_stopped_reading_ends_at_its_timeout() {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, FAKE_STDIO_UPSTREAM_THAT_STOPS_READING_ITS_STDIN).unwrap();
    let mut r = Remit::launch(
        |port| register_with_fake(port, &script, scripts.path(), "timeout = \"1s\""),
        &[],
    );
    wait_for(&r, "fake", Duration::from_secs(30), |u| {
        u["up"] == json!(true)
    });
    let started = Instant::now();
    let (status, body) = r.call("fake.poke", json!({ "big": "x".repeat(256 * 1024) }));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "{:?}",
        started.elapsed()
    );
    assert_eq!(status, 502, "{body}");
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("may or may not have run"),
        "{body}"
    );
    let h = r.health_as_operator();
    assert_eq!(upstream_in(&h, "fake")["up"], json!(false), "{h}");
    assert_eq!(r.stages_of("fake.poke"), ["proposed", "decided", "failed"]);
    let pids = fake_pids(scripts.path());
    r.kill9();
    for pid in pids {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
}

/// FakeStdioUpstreamSlowToStart: writes its pid to `$1/pids`, then waits 3 s before it
/// reads anything (a server slow to start), then answers `initialize` and `tools/list`.
const FAKE_STDIO_UPSTREAM_SLOW_TO_START: &str = r#"#!/bin/sh
echo $$ >> "$1/pids"
sleep 3
while IFS= read -r line; do
  id=$(printf '%s\n' "$line" | sed -n 's/.*"id":\([0-9][0-9]*\).*/\1/p')
  case "$line" in
    *'"method":"initialize"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"protocolVersion":"2025-11-25","capabilities":{"tools":{}},"serverInfo":{"name":"fake","version":"0"}}}\n' "$id" ;;
    *'"method":"tools/list"'*)
      printf '{"jsonrpc":"2.0","id":%s,"result":{"tools":[{"name":"poke","inputSchema":{"type":"object"}}]}}\n' "$id" ;;
    *) ;;
  esac
done
"#;

/// A `SIGTERM` that reaches `remit serve` while it is still starting (its upstreams not yet
/// up) is kept, and the orderly shutdown follows the start: the upstreams' children end
/// with remit (before: remit ended at once and left its children running).
#[test]
fn a_sigterm_while_remit_starts_still_ends_its_upstreams() {
    sigterm_while_starting(&["serve"]);
}

/// The same for `remit stdio`, which had no handler at all: a client that ends its server
/// with `SIGTERM` (as many do) left the upstreams' children running.
#[test]
fn a_sigterm_to_remit_stdio_ends_its_upstreams() {
    sigterm_while_starting(&["stdio", "--agent", "support-bot"]);
}

/// Starts remit with `command` in front of `FAKE_STDIO_UPSTREAM_SLOW_TO_START`, sends it
/// `SIGTERM` once the child runs, and checks that remit exits 0 and the child with it.
fn sigterm_while_starting(command: &[&str]) {
    let scripts = tempfile::tempdir().unwrap();
    let script = scripts.path().join("fake-upstream.sh");
    std::fs::write(&script, FAKE_STDIO_UPSTREAM_SLOW_TO_START).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let register = dir.path().join("remit.toml");
    let port = crate::support::free_port();
    std::fs::write(
        &register,
        register_with_fake(port, &script, scripts.path(), ""),
    )
    .unwrap();
    let mut remit = std::process::Command::new(crate::support::remit())
        .args(command)
        .arg("--register")
        .arg(&register)
        .current_dir(dir.path())
        .stdin(std::process::Stdio::piped())
        .env("REMIT_TOKEN_SUPPORT_BOT", crate::support::TOKEN)
        .env("REMIT_TOKEN_OTHER_BOT", crate::support::OTHER_TOKEN)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // the child has started, and remit is still waiting for it to answer
    let deadline = Instant::now() + Duration::from_secs(20);
    let pids = loop {
        let pids = fake_pids(scripts.path());
        if !pids.is_empty() {
            break pids;
        }
        assert!(Instant::now() < deadline, "the upstream was never started");
        std::thread::sleep(Duration::from_millis(50));
    };
    std::thread::sleep(Duration::from_millis(300));
    let term = std::process::Command::new("kill")
        .args(["-TERM", &remit.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    // stdin stays open until remit has exited: its end would be a reason of its own to stop
    let stdin = remit.stdin.take();
    let status = remit.wait().unwrap();
    drop(stdin);
    let left = wait_until_gone(&pids, Duration::from_secs(2));
    for pid in &left {
        let _ = std::process::Command::new("kill")
            .args(["-9", &pid.to_string()])
            .status();
    }
    assert!(left.is_empty(), "outlived remit: {left:?}");
    assert!(status.success(), "{status:?}");
}
