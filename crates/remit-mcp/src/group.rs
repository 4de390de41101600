//! What a stdio upstream leaves in its process group once its connection has ended.
//!
//! Each child upstream leads a process group of its own (its pid is the group's id), so that
//! rmcp's `SIGTERM` and `SIGKILL` reach whatever it started. rmcp signals the group only while
//! the child itself still runs: a child that exits on its own (a crash, or at once when its
//! stdin closes) is reaped and nobody signals the group, so what it started outlives it, one
//! more process each time the upstream is restarted. [`end`] signals what is left.
//!
//! Signalling a group by number after its leader has gone is safe against pid reuse here:
//! Linux does not hand out a pid again while a live process still has it as its process-group
//! id, so the number can only have been reused once the group was empty, by a new process
//! that made itself a group leader. Before each signal remit looks, in `/proc/*/stat`, for
//! processes whose group is that number and whose session is remit's own (a process can join
//! a group only within its own session, so a number reused by a `setsid` process shows another
//! session), and signals nothing if there are none. A new group leader can still share
//! remit's session: a child upstream remit started since (the pids of the children remit runs
//! are kept, [`Group`], and their groups are never signalled), a job of the shell that
//! started remit, or a descendant of an upstream that makes itself a group leader. Each
//! needs the number to come round again (pids are handed out in turn, so only after every
//! other free pid) in the instant between the look and the signal, or, for a child, between
//! its start and [`Group::started`]. remit's own group and pid are never signalled.
//!
//! Each upstream keeps its children's groups ([`Groups`]) from a child's start until its
//! group has been ended, so that a shutdown whose wait runs out can `SIGKILL` what is left
//! ([`Groups::kill`]): rmcp's close of a connection can wait forever on a write to a child
//! that stopped reading its stdin, and then never signals the child at all.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

/// How long what is left in a group has, after `SIGTERM`, before it is sent `SIGKILL`
/// (rmcp's own grace for a child).
const GRACE: Duration = Duration::from_secs(3);

/// How often the group is looked at during [`GRACE`]: an empty group is done with at once.
const LOOK: Duration = Duration::from_millis(100);

/// The pids of the child upstreams remit runs (each its group's id).
static RUNNING: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// The process group a child upstream leads, counted as running while this is held (until
/// [`end`] takes it), and kept in its upstream's [`Groups`] until it is dropped.
#[derive(Debug)]
pub(crate) struct Group {
    led: Arc<Led>,
}

/// A group's id, and whether its leader is still counted as one of the running children.
#[derive(Debug)]
struct Led {
    pgid: u32,
    running: AtomicBool,
}

/// The process groups of one upstream's children that may still have members: each from its
/// child's start until its [`Group`] is dropped (the connection closed and [`end`] done).
#[derive(Debug, Default)]
pub(crate) struct Groups(Mutex<Vec<Weak<Led>>>);

impl Group {
    /// The group of the child just started with pid `pid`, kept in `groups` while it lives.
    pub(crate) fn started(pid: u32, groups: &Groups) -> Self {
        if let Ok(mut running) = RUNNING.lock() {
            running.insert(pid);
        }
        let led = Arc::new(Led {
            pgid: pid,
            running: AtomicBool::new(true),
        });
        if let Ok(mut all) = groups.0.lock() {
            all.retain(|g| g.strong_count() > 0);
            all.push(Arc::downgrade(&led));
        }
        Self { led }
    }

    /// No longer one of the running children: its leader has exited.
    fn leave_running(&self) {
        if self.led.running.swap(false, Ordering::SeqCst)
            && let Ok(mut running) = RUNNING.lock()
        {
            running.remove(&self.led.pgid);
        }
    }
}

impl Drop for Group {
    fn drop(&mut self) {
        self.leave_running();
    }
}

impl Groups {
    /// For a shutdown that ran out of time: `SIGKILL` to each of these groups that still has
    /// members in remit's session (a running child's group too, which [`end`] never signals);
    /// whether any was sent.
    pub(crate) fn kill(&self) -> bool {
        let led: Vec<Arc<Led>> = match self.0.lock() {
            Ok(all) => all.iter().filter_map(Weak::upgrade).collect(),
            Err(_) => return false,
        };
        let mut killed = false;
        for group in led {
            // a group whose leader is no longer counted as running may have had its number
            // reused by another child of remit's since: `signal` leaves such a group alone
            let sent = if group.running.load(Ordering::SeqCst) {
                signal_in_session(group.pgid, Signal::Kill)
            } else {
                signal(group.pgid, Signal::Kill)
            };
            killed |= sent;
        }
        killed
    }
}

/// After a child's connection has ended (the child exited or was ended): `SIGTERM` to what is
/// left in its group, and `SIGKILL` to what is still there [`GRACE`] later. Nothing for an
/// upstream that is not a child.
pub(crate) async fn end(group: Option<Group>) {
    let Some(group) = group else {
        return;
    };
    let pgid = group.led.pgid;
    // no longer one of the running children: its own group is what is ended here (and it
    // stays in its upstream's groups until this is done, for a shutdown that runs out of time)
    group.leave_running();
    if !signal(pgid, Signal::Term) {
        return;
    }
    tracing::info!(
        pgid,
        "a child upstream's process group outlived it; sent SIGTERM"
    );
    let deadline = tokio::time::Instant::now() + GRACE;
    while tokio::time::Instant::now() < deadline {
        tokio::time::sleep(LOOK).await;
        if !has_members(pgid) {
            return;
        }
    }
    if signal(pgid, Signal::Kill) {
        tracing::warn!(
            pgid,
            "a child upstream's process group ignored SIGTERM; sent SIGKILL"
        );
    }
}

/// The two signals [`end`] sends.
#[derive(Clone, Copy)]
enum Signal {
    Term,
    Kill,
}

/// Sends `signal` to group `pgid` if it still has members in remit's session and is not the
/// group of a child remit runs, nor remit's own (nor 0 or 1, init's); whether it was sent.
fn signal(pgid: u32, signal: Signal) -> bool {
    if RUNNING
        .lock()
        .map_or(true, |running| running.contains(&pgid))
    {
        return false;
    }
    signal_in_session(pgid, signal)
}

/// Sends `signal` to group `pgid` if it still has members in remit's session and is not
/// remit's own (nor 0 or 1, init's); whether it was sent.
fn signal_in_session(pgid: u32, signal: Signal) -> bool {
    let Some((own_group, own_session)) = own_group_and_session() else {
        return false;
    };
    if pgid <= 1 || pgid == own_group || pgid == std::process::id() {
        return false;
    }
    if !has_members_in(pgid, own_session) {
        return false;
    }
    send(pgid, signal)
}

#[cfg(unix)]
fn send(pgid: u32, signal: Signal) -> bool {
    use nix::sys::signal::{Signal as Sig, killpg};
    let Ok(raw) = i32::try_from(pgid) else {
        return false;
    };
    let sig = match signal {
        Signal::Term => Sig::SIGTERM,
        Signal::Kill => Sig::SIGKILL,
    };
    killpg(nix::unistd::Pid::from_raw(raw), sig).is_ok()
}

#[cfg(not(unix))]
fn send(_pgid: u32, _signal: Signal) -> bool {
    false
}

/// remit's own process group and session (`None` where there is no `/proc`).
fn own_group_and_session() -> Option<(u32, u32)> {
    std::fs::read_to_string("/proc/self/stat")
        .ok()
        .as_deref()
        .and_then(group_and_session)
}

/// Whether a live process (not a zombie) has `pgid` as its group and remit's session as its
/// own; none where there is no `/proc`.
fn has_members(pgid: u32) -> bool {
    own_group_and_session().is_some_and(|(_, own_session)| has_members_in(pgid, own_session))
}

/// Whether a live process (not a zombie) has `pgid` as its group and `session` as its own.
fn has_members_in(pgid: u32, session: u32) -> bool {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return false;
    };
    entries.flatten().any(|entry| {
        let is_pid = entry
            .file_name()
            .to_str()
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()));
        is_pid
            && std::fs::read_to_string(entry.path().join("stat"))
                .ok()
                .as_deref()
                .and_then(group_and_session)
                == Some((pgid, session))
    })
}

/// A live process's group and session from its `/proc/PID/stat` (`None` for a zombie).
fn group_and_session(stat: &str) -> Option<(u32, u32)> {
    // the command name may hold spaces and parentheses: the fields start after the last ")"
    let (_, after) = stat.rsplit_once(") ")?;
    let mut fields = after.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None;
    }
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    let session = fields.next()?.parse().ok()?;
    Some((pgrp, session))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_gives_group_and_session_even_with_a_strange_name() {
        let stat = "4242 (a) b (c) S 1 4240 4200 0 -1 4194560 0 0";
        assert_eq!(group_and_session(stat), Some((4240, 4200)));
        assert_eq!(group_and_session("4242 (z) Z 1 4240 4200 0"), None);
    }

    #[test]
    fn remit_own_group_has_members() {
        let own = std::fs::read_to_string("/proc/self/stat").unwrap();
        let (pgrp, _) = group_and_session(&own).unwrap();
        assert!(has_members(pgrp));
    }

    /// A child's pid and its `/proc` group and session, once it has started as `program`.
    fn child(mut command: std::process::Command) -> (std::process::Child, u32, (u32, u32)) {
        let mut child = command.spawn().unwrap();
        let pid = child.id();
        for _ in 0..200 {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
            // `setsid` has become `sleep` once the session is its own
            if stat.contains("(sleep)")
                && let Some(ids) = group_and_session(&stat)
            {
                return (child, pid, ids);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("{command:?} did not start");
    }

    #[test]
    fn a_running_childs_group_is_killed_by_its_upstreams_groups_and_a_dropped_one_is_not() {
        use std::os::unix::process::CommandExt as _;
        let mut sleeper = std::process::Command::new("sleep");
        sleeper.arg("30").process_group(0);
        let (mut sleeper, pid, _) = child(sleeper);
        let groups = Groups::default();
        let group = Group::started(pid, &groups);
        // `end`'s signal leaves a running child's group alone; a shutdown's kill does not
        assert!(!signal(pid, Signal::Term));
        assert!(groups.kill());
        let status = sleeper.wait().unwrap();
        use std::os::unix::process::ExitStatusExt as _;
        assert_eq!(status.signal(), Some(9), "{status:?}");
        drop(group);
        // one whose `Group` is gone (its connection closed and ended) is no longer the
        // upstream's to kill
        let mut other = std::process::Command::new("sleep");
        other.arg("30").process_group(0);
        let (mut other, other_pid, _) = child(other);
        drop(Group::started(other_pid, &groups));
        assert!(!groups.kill());
        assert!(other.try_wait().unwrap().is_none(), "it was signalled");
        let _ = other.kill();
        let _ = other.wait();
    }

    #[test]
    fn a_group_is_signalled_only_within_remit_own_session() {
        use std::os::unix::process::CommandExt as _;
        let (_, own_session) = own_group_and_session().unwrap();
        // its own group in remit's session: an upstream remit started
        let mut mine = std::process::Command::new("sleep");
        mine.arg("30").process_group(0);
        let (mut mine, mine_pid, (mine_group, mine_session)) = child(mine);
        assert_eq!((mine_group, mine_session), (mine_pid, own_session));
        assert!(has_members(mine_group));
        // its own session: what a reused group number would be
        let mut other = std::process::Command::new("setsid");
        other.args(["sleep", "30"]);
        let (mut other, other_pid, (other_group, other_session)) = child(other);
        assert_eq!((other_group, other_session), (other_pid, other_pid));
        assert!(
            has_members_in(other_group, other_session),
            "the group is there"
        );
        assert!(!has_members(other_group), "but not in remit's session");
        assert!(!signal(other_group, Signal::Term));
        assert!(other.try_wait().unwrap().is_none(), "it was not signalled");
        for c in [&mut mine, &mut other] {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
