//! Flow test cases, for `phonetree test`: YAML files in `flows/tests/` that
//! describe a caller (numbers, clock, keys with timing, mocked lookups) and
//! what must happen (prompts heard, nodes visited, outcome). The format is
//! documented in `docs/flows.md` ("Testing flows").
//!
//! Each case runs the same [`Run`] as the live engine on a simulated clock,
//! with the real prompt lengths, through [`drive`]. `drive` is also what
//! `phonetree simulate` uses (scripted or interactive, see [`Caller`]).

use std::collections::{BTreeMap, VecDeque};
use std::fmt::{self, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, MessageFormatter, Spanned};

use super::compile::{FlowId, FlowSet, parse_duration};
use super::diagnostic::Diagnostic;
use super::run::{Action, CallInfo, QueueEvent, QueueRefusal, Run};
use super::sim::{Outcome, parse_digits};
use crate::directory::{
    Account, Appointment, AppointmentStatus, Customer, CustomerRecord, DirectoryRequest,
    DirectoryResponse, Order, PinOutcome,
};
use crate::media::prompt::PromptSet;
use crate::media::types::{Digit, PromptId};

/// Time between the keys of one step, unless a case says otherwise.
pub const DEFAULT_KEY_GAP: Duration = Duration::from_millis(300);
/// A case stops after this much simulated time unless it says otherwise.
pub const DEFAULT_LIMIT: Duration = Duration::from_secs(600);
/// When an agent answers a queued call unless the script says otherwise.
pub const DEFAULT_ANSWER_AFTER: Duration = Duration::from_secs(10);

/// How a simulated queue treats a call that joins it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QueueScript {
    /// The position at the join, or why the queue refuses the call.
    pub joined: Result<usize, QueueRefusal>,
    /// Estimated wait at the join (`None`: the queue has no estimate).
    pub ewt: Option<Duration>,
    /// Periodic announcements; each says one place further ahead (down to 1)
    /// and the estimate minus the time waited.
    pub announce_every: Option<Duration>,
    /// What ends the wait, and when (after the join). `None`: waits on.
    pub end: Option<(Duration, QueueEnd)>,
}

/// The last thing a scripted queue does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueEnd {
    /// An agent answers: the call is bridged.
    Answer,
    /// An agent answers but the bridge fails.
    BridgeFailed,
    Overflow,
    NoAgents,
}

impl Default for QueueScript {
    /// Position 1, no estimate, no announcements, an agent after [`DEFAULT_ANSWER_AFTER`].
    fn default() -> Self {
        QueueScript {
            joined: Ok(1),
            ewt: None,
            announce_every: None,
            end: Some((DEFAULT_ANSWER_AFTER, QueueEnd::Answer)),
        }
    }
}

impl QueueScript {
    /// The answer to the join, and the events after it (time after the join).
    fn events(&self) -> (QueueEvent, Vec<(Duration, QueueEvent)>) {
        let position = match self.joined {
            Ok(p) => p,
            Err(r) => return (QueueEvent::Refused(r), Vec::new()),
        };
        let joined = QueueEvent::Joined {
            position,
            ewt: self.ewt,
        };
        let mut later = Vec::new();
        let until = self.end.map(|(t, _)| t);
        if let Some(every) = self.announce_every.filter(|d| !d.is_zero()) {
            let mut at = every;
            let mut pos = position;
            // Bounded: a script without an end announces until a day has passed.
            while until.is_none_or(|u| at < u) && at <= Duration::from_secs(86_400) {
                pos = pos.saturating_sub(1).max(1);
                later.push((
                    at,
                    QueueEvent::Announce {
                        position: pos,
                        ewt: self.ewt.map(|e| e.saturating_sub(at)),
                    },
                ));
                at += every;
            }
        }
        if let Some((t, end)) = self.end {
            let ev = match end {
                QueueEnd::Answer => QueueEvent::Bridged,
                QueueEnd::BridgeFailed => QueueEvent::BridgeFailed,
                QueueEnd::Overflow => QueueEvent::Overflow,
                QueueEnd::NoAgents => QueueEvent::NoAgents,
            };
            if matches!(end, QueueEnd::Answer | QueueEnd::BridgeFailed) {
                later.push((t, QueueEvent::AgentRinging));
            }
            later.push((t, ev));
        }
        (joined, later)
    }
}

// ---------------------------------------------------------------------------
// Driving a call
// ---------------------------------------------------------------------------

/// One line of a [`Trace`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TraceEvent {
    /// The flow entered a node (`flow.node` inside a subflow).
    Node(String),
    Play {
        prompts: Vec<PromptId>,
        barge_in: bool,
    },
    /// The playing prompt was cut by a key (barge-in).
    Stop,
    Key(Digit),
    /// A no-input, inter-digit or total timer fired.
    Timeout,
    Hangup,
    Transfer(String),
    /// A directory request (ids masked) and the answer given, if any.
    Directory {
        request: String,
        response: Option<String>,
    },
    /// The flow asked to join a queue.
    Enqueue {
        queue: String,
        priority: i32,
        resume: bool,
    },
    /// What the queue told the flow.
    Queue {
        queue: String,
        event: QueueEvent,
    },
    /// A leave key took the call out of the queue (its place kept).
    LeaveQueue,
    /// A callback request and the queue's answer.
    Callback {
        queue: String,
        number: String,
        answer: QueueEvent,
    },
    /// The transfer target could not be reached.
    TransferFailed,
    /// A survey node was left: answered with this score, or (`None`) not answered.
    Survey {
        name: String,
        score: Option<u8>,
    },
    /// The time limit was reached with the flow still running.
    Limit,
}

/// What happened during a driven call.
#[derive(Clone, Debug)]
pub struct Trace {
    /// Events with their time since the call started.
    pub events: Vec<(Duration, TraceEvent)>,
    /// Nodes visited, as in the call record.
    pub path: Vec<String>,
    /// Prompts started, in order (including ones cut by barge-in).
    pub heard: Vec<PromptId>,
    pub outcome: Outcome,
    /// The node the flow was at when the trace ended.
    pub final_node: String,
    /// Every flow variable with its value at the end (`None`: never set).
    pub vars: Vec<(String, Option<String>)>,
    /// Surveys offered, by name, with the score (`None`: not answered), as in the call record.
    pub surveys: Vec<(String, Option<u8>)>,
    /// Simulated time from the start of the call to the end of the trace.
    pub duration: Duration,
}

impl Trace {
    /// Human-readable lines, naming prompts with `name`.
    pub fn lines(&self, name: &dyn Fn(PromptId) -> String) -> Vec<String> {
        self.events
            .iter()
            .map(|(t, e)| format!("{:>8.3}s  {}", t.as_secs_f64(), describe(e, name)))
            .collect()
    }

    /// The outcome as one phrase: `hangup`, `transfer sip:x`, `waiting at main_menu`.
    pub fn outcome_text(&self) -> String {
        match &self.outcome {
            Outcome::Hangup => "hangup".into(),
            Outcome::Transfer(t) => format!("transfer {t}"),
            Outcome::Bridged(q) => format!("bridged {q}"),
            Outcome::TimeLimit => format!("waiting at {}", self.final_node),
        }
    }
}

/// One event as text (`play en/welcome`, `key 1`, `-> main_menu`).
pub fn describe(e: &TraceEvent, name: &dyn Fn(PromptId) -> String) -> String {
    match e {
        TraceEvent::Node(n) => format!("-> {n}"),
        TraceEvent::Play { prompts, barge_in } => format!(
            "play {}{}",
            prompts
                .iter()
                .map(|p| name(*p))
                .collect::<Vec<_>>()
                .join(", "),
            if *barge_in { "  (barge-in)" } else { "" }
        ),
        TraceEvent::Stop => "stop (key barged in)".into(),
        TraceEvent::Key(d) => format!("key {d}"),
        TraceEvent::Timeout => "timeout".into(),
        TraceEvent::Hangup => "hangup".into(),
        TraceEvent::Transfer(t) => format!("transfer {t}"),
        TraceEvent::Directory { request, response } => match response {
            Some(r) => format!("directory {request} -> {r}"),
            None => format!("directory {request} -> no answer (the node times out)"),
        },
        TraceEvent::Enqueue {
            queue,
            priority,
            resume,
        } => format!(
            "join queue {queue} (priority {priority}){}",
            if *resume { ", resuming its place" } else { "" }
        ),
        TraceEvent::Queue { queue, event } => describe_queue(queue, event),
        TraceEvent::LeaveQueue => "left the queue (place kept)".into(),
        TraceEvent::Callback {
            queue,
            number,
            answer,
        } => format!(
            "callback from {queue} to {number} -> {}",
            match answer {
                QueueEvent::CallbackRegistered => "registered",
                QueueEvent::CallbackDuplicate => "duplicate (already registered)",
                _ => "failed",
            }
        ),
        TraceEvent::TransferFailed => "transfer failed".into(),
        TraceEvent::Survey { name, score } => match score {
            Some(n) => format!("survey {name}: {n}"),
            None => format!("survey {name}: no answer"),
        },
        TraceEvent::Limit => "time limit reached, flow still running".into(),
    }
}

/// `about 3 min`, `under a minute`, `no estimate`.
fn wait_text(ewt: Option<Duration>) -> String {
    match ewt {
        None => "no wait estimate".into(),
        Some(d) if d < Duration::from_secs(60) => "estimated wait under a minute".into(),
        Some(d) => format!("estimated wait {} min", d.as_secs().div_ceil(60)),
    }
}

fn describe_queue(queue: &str, e: &QueueEvent) -> String {
    match e {
        QueueEvent::Joined { position, ewt } => {
            format!("queued {queue} (position {position}, {})", wait_text(*ewt))
        }
        QueueEvent::Refused(r) => format!(
            "{queue} refused the call: {}",
            match r {
                QueueRefusal::UnknownQueue => "unknown queue",
                QueueRefusal::Full => "queue full",
                QueueRefusal::NoAgents => "no agents",
                QueueRefusal::Draining => "queue draining",
            }
        ),
        QueueEvent::Announce { position, ewt } => {
            format!("announcement (position {position}, {})", wait_text(*ewt))
        }
        QueueEvent::Overflow => format!("overflow: the longest wait of {queue} was reached"),
        QueueEvent::NoAgents => format!("no agents left in {queue}"),
        QueueEvent::AgentRinging => "an agent's phone rings".into(),
        QueueEvent::Bridged => format!("bridged to an agent of {queue}"),
        QueueEvent::BridgeFailed => "the agent answered but the bridge failed".into(),
        other => format!("{other:?}"),
    }
}

/// The simulated caller: decides when keys are pressed.
pub trait Caller {
    /// Keys to press next, as `(time since call start, key)` in time order.
    /// Asked whenever no key is pending; `listening` is true when the flow
    /// waits for input (a menu, collect or survey whose prompt is over). Return an
    /// empty list to wait for the next event. Times before `now` mean `now`.
    fn keys(&mut self, now: Duration, listening: bool) -> Vec<(Duration, Digit)>;

    /// Told about every event as it happens (for live output).
    fn observe(&mut self, _at: Duration, _event: &TraceEvent) {}

    /// The answer to a directory request (`lookup`, `verify_pin`, `update`
    /// nodes), given at once; `None` leaves it unanswered, so the node
    /// takes its `timeout` branch at its deadline.
    fn directory(&mut self, _request: &DirectoryRequest) -> Option<DirectoryResponse> {
        None
    }

    /// How `queue` treats the call joining it (default: [`QueueScript::default`]).
    fn queue(&mut self, _queue: &str) -> QueueScript {
        QueueScript::default()
    }

    /// The answer to a callback request (default: registered).
    fn callback(&mut self, _queue: &str, _number: &str) -> QueueEvent {
        QueueEvent::CallbackRegistered
    }

    /// Whether a transfer to `target` succeeds (default: yes).
    fn transfer(&mut self, _target: &str) -> bool {
        true
    }
}

/// Runs `flow` on a simulated clock: prompts last `prompt_len`, keys come
/// from `caller`, the run stops when the flow ends or after `limit`.
/// `wall` is the wall-clock time at the start of the call (for `hours`).
pub fn drive(
    set: Arc<FlowSet>,
    flow: FlowId,
    call: CallInfo,
    wall: Option<SystemTime>,
    limit: Duration,
    prompt_len: &dyn Fn(PromptId) -> Duration,
    caller: &mut dyn Caller,
) -> Trace {
    // Any instant will do as the origin: only differences are used.
    let t0 = Instant::now();
    let mut now = t0;
    let mut run = match wall {
        Some(w) => Run::new_at(set.clone(), flow, call, now, w),
        None => Run::new(set.clone(), flow, call, now),
    };
    let mut events: Vec<(Duration, TraceEvent)> = Vec::new();
    let mut emit = |caller: &mut dyn Caller, at: Duration, e: TraceEvent| {
        caller.observe(at, &e);
        events.push((at, e));
    };
    let mut heard = Vec::new();
    let mut nodes_seen = 0;
    let mut playing_until: Option<Instant> = None;
    let mut pending: VecDeque<(Instant, Digit)> = VecDeque::new();
    let mut outcome = Outcome::TimeLimit;
    let mut unanswered = false;
    // The scripted queue's coming events, and which queue the call is in.
    let mut queue_events: VecDeque<(Instant, QueueEvent)> = VecDeque::new();
    let mut queue_name = String::new();
    // A key was the latest input (so a `StopPlayback` is a barge-in).
    let mut by_key = false;
    // Bridged to an agent, or transferred: nothing more to simulate.
    let mut done = false;
    // Per survey (in the run's order): the state last reported as a `Survey` event.
    let mut surveys_told: Vec<Option<Option<u8>>> = Vec::new();
    let limit_at = t0 + limit;
    loop {
        let at = now - t0;
        let actions: Vec<Action> = std::iter::from_fn(|| run.poll_action()).collect();
        // A barge-in stop happened at the key, before the flow moved on.
        for a in &actions {
            if *a == Action::StopPlayback {
                playing_until = None;
                if by_key {
                    emit(caller, at, TraceEvent::Stop);
                }
            }
        }
        for n in run.path().iter().skip(nodes_seen) {
            emit(caller, at, TraceEvent::Node(n.clone()));
        }
        nodes_seen = run.path().len();
        for (i, r) in run.surveys().iter().enumerate() {
            if surveys_told.len() <= i {
                surveys_told.push(None);
            }
            if r.done && surveys_told[i] != Some(r.score) {
                surveys_told[i] = Some(r.score);
                let e = TraceEvent::Survey {
                    name: r.name.clone(),
                    score: r.score,
                };
                emit(caller, at, e);
            }
        }
        let mut answered = false;
        for a in actions {
            match a {
                Action::StopPlayback => {}
                Action::Play { prompts, barge_in } => {
                    let len: Duration = prompts.iter().map(|p| prompt_len(*p)).sum();
                    playing_until = Some(now + len);
                    heard.extend(prompts.iter().copied());
                    emit(caller, at, TraceEvent::Play { prompts, barge_in });
                }
                Action::Hangup => {
                    emit(caller, at, TraceEvent::Hangup);
                    outcome = Outcome::Hangup;
                }
                Action::Transfer { target } => {
                    emit(caller, at, TraceEvent::Transfer(target.clone()));
                    by_key = false;
                    if caller.transfer(&target) {
                        outcome = Outcome::Transfer(target);
                        done = true;
                    } else {
                        emit(caller, at, TraceEvent::TransferFailed);
                        run.handle_queue_event(now, QueueEvent::TransferFailed);
                        answered = true;
                    }
                }
                Action::Directory { id, request } => {
                    let response = caller.directory(&request);
                    let e = TraceEvent::Directory {
                        request: format!("{request:?}"),
                        response: response.as_ref().map(response_name),
                    };
                    emit(caller, at, e);
                    match response {
                        Some(r) => {
                            by_key = false;
                            run.handle_directory_response(now, id, r);
                            answered = true;
                        }
                        None => unanswered = true,
                    }
                }
                Action::Enqueue {
                    queue,
                    priority,
                    resume,
                } => {
                    emit(
                        caller,
                        at,
                        TraceEvent::Enqueue {
                            queue: queue.clone(),
                            priority,
                            resume,
                        },
                    );
                    let (first, later) = caller.queue(&queue).events();
                    queue_events = later.into_iter().map(|(d, e)| (now + d, e)).collect();
                    emit(
                        caller,
                        at,
                        TraceEvent::Queue {
                            queue: queue.clone(),
                            event: first.clone(),
                        },
                    );
                    queue_name = queue;
                    by_key = false;
                    run.handle_queue_event(now, first);
                    answered = true;
                }
                Action::LeaveQueue { .. } => {
                    emit(caller, at, TraceEvent::LeaveQueue);
                    queue_events.clear();
                }
                Action::RequestCallback { queue, number } => {
                    let answer = caller.callback(&queue, &number);
                    emit(
                        caller,
                        at,
                        TraceEvent::Callback {
                            queue,
                            number,
                            answer: answer.clone(),
                        },
                    );
                    by_key = false;
                    run.handle_queue_event(now, answer);
                    answered = true;
                }
            }
        }
        // An answer given at once may have produced more actions.
        if answered {
            continue;
        }
        if run.is_bridged() {
            outcome = Outcome::Bridged(queue_name.clone());
            break;
        }
        if run.is_finished() || done {
            break;
        }
        if pending.is_empty() {
            // Listening: timers run, nothing plays, no directory answer is
            // awaited. (A queue does not listen: leave keys are timed steps.)
            let listening = run.poll_timeout().is_some() && playing_until.is_none() && !unanswered;
            for (t, d) in caller.keys(at, listening) {
                pending.push_back((t0 + t.max(at), d));
            }
        }
        let next_key = pending.front().map(|(t, _)| *t);
        let next_queue = queue_events.front().map(|(t, _)| *t);
        let next = [next_key, playing_until, next_queue, run.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next.filter(|n| *n <= limit_at) else {
            // Nothing more will happen before the limit (or ever).
            now = now.max(limit_at);
            emit(caller, now - t0, TraceEvent::Limit);
            break;
        };
        now = now.max(next);
        if next_key == Some(next) {
            if let Some((_, d)) = pending.pop_front() {
                emit(caller, now - t0, TraceEvent::Key(d));
                by_key = true;
                run.handle_digit(now, d);
            }
        } else if playing_until == Some(next) {
            playing_until = None;
            by_key = false;
            run.handle_playback_finished(now);
        } else if next_queue == Some(next) {
            if let Some((_, ev)) = queue_events.pop_front()
                && (run.is_queued() || run.is_bridged())
            {
                emit(
                    caller,
                    now - t0,
                    TraceEvent::Queue {
                        queue: queue_name.clone(),
                        event: ev.clone(),
                    },
                );
                by_key = false;
                run.handle_queue_event(now, ev);
            }
        } else {
            emit(caller, now - t0, TraceEvent::Timeout);
            unanswered = false;
            by_key = false;
            run.handle_timeout(now);
        }
    }
    let vars = set
        .vars
        .iter()
        .map(|v| (v.clone(), run.var(v).map(str::to_string)))
        .collect();
    Trace {
        events,
        path: run.path().to_vec(),
        heard,
        outcome,
        final_node: run.current_node().to_string(),
        vars,
        surveys: run
            .surveys()
            .iter()
            .map(|r| (r.name.clone(), r.score))
            .collect(),
        duration: now - t0,
    }
}

/// What a scripted caller does, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Step {
    /// Press `keys` `after` the previous step ended (the call start for the first).
    Timed { after: Duration, keys: Vec<Digit> },
    /// Press `keys` once the flow listens for input (a menu, collect or survey whose
    /// prompt has ended), one key gap later.
    OnListen { keys: Vec<Digit> },
    /// Say nothing for this long.
    Silence(Duration),
}

impl Step {
    /// `"1,123456#"`: one [`Step::OnListen`] per comma-separated group, as
    /// `phonetree simulate --digits`.
    pub fn groups(s: &str) -> Result<Vec<Step>, String> {
        Ok(parse_digits(s)?
            .into_iter()
            .map(|keys| Step::OnListen { keys })
            .collect())
    }
}

/// A [`Caller`] following a list of [`Step`]s, then silent. Directory
/// requests are answered from its [`Mocks`], if it has them.
#[derive(Clone, Debug)]
pub struct Scripted {
    steps: Vec<Step>,
    next: usize,
    /// When the previous step ended.
    cursor: Duration,
    gap: Duration,
    mocks: Option<Mocks>,
    /// Per queue name; others get [`QueueScript::default`].
    queues: BTreeMap<String, QueueScript>,
    callback: QueueEvent,
    transfer_ok: bool,
    /// Directory requests the mocks had no answer for.
    pub problems: Vec<String>,
}

impl Scripted {
    pub fn new(steps: Vec<Step>, key_gap: Duration) -> Scripted {
        Scripted {
            steps,
            next: 0,
            cursor: Duration::ZERO,
            gap: key_gap,
            mocks: None,
            queues: BTreeMap::new(),
            callback: QueueEvent::CallbackRegistered,
            transfer_ok: true,
            problems: Vec::new(),
        }
    }

    /// How queues, callbacks and transfers behave (see [`TestCase`]).
    pub fn with_queues(
        mut self,
        queues: BTreeMap<String, QueueScript>,
        callback: QueueEvent,
        transfer_ok: bool,
    ) -> Scripted {
        self.queues = queues;
        self.callback = callback;
        self.transfer_ok = transfer_ok;
        self
    }

    /// Answers directory requests from `mocks`; a request without an answer
    /// is recorded in [`Scripted::problems`] and left unanswered.
    pub fn with_mocks(mut self, mocks: Mocks) -> Scripted {
        self.mocks = Some(mocks);
        self
    }
}

impl Caller for Scripted {
    fn queue(&mut self, queue: &str) -> QueueScript {
        self.queues.get(queue).cloned().unwrap_or_default()
    }

    fn callback(&mut self, _queue: &str, _number: &str) -> QueueEvent {
        self.callback.clone()
    }

    fn transfer(&mut self, _target: &str) -> bool {
        self.transfer_ok
    }

    fn directory(&mut self, request: &DirectoryRequest) -> Option<DirectoryResponse> {
        match self.mocks.as_mut()?.answer(request) {
            Ok(r) => Some(r),
            Err(e) => {
                self.problems.push(e);
                None
            }
        }
    }

    fn keys(&mut self, now: Duration, listening: bool) -> Vec<(Duration, Digit)> {
        loop {
            let Some(step) = self.steps.get(self.next) else {
                return Vec::new();
            };
            let (first, keys) = match step {
                Step::Silence(d) => {
                    self.cursor = self.cursor.max(now) + *d;
                    self.next += 1;
                    continue;
                }
                Step::Timed { after, keys } => ((self.cursor + *after).max(now), keys),
                Step::OnListen { keys } if listening => (self.cursor.max(now) + self.gap, keys),
                Step::OnListen { .. } => return Vec::new(),
            };
            self.next += 1;
            let out: Vec<(Duration, Digit)> = keys
                .iter()
                .enumerate()
                .map(|(i, d)| (first + self.gap * i as u32, *d))
                .collect();
            if let Some((t, _)) = out.last() {
                self.cursor = *t;
            } else {
                self.cursor = first;
            }
            if !out.is_empty() {
                return out;
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Test files
// ---------------------------------------------------------------------------

/// How a case expects the call to end.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ExpectOutcome {
    Hangup,
    Transfer(String),
    /// Talking to an agent of this queue.
    Bridged(String),
    /// Still running at the time limit, anywhere.
    Waiting,
    /// Still running at the time limit, at this node.
    WaitingAt(String),
}

impl fmt::Display for ExpectOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectOutcome::Hangup => f.write_str("hangup"),
            ExpectOutcome::Transfer(t) => write!(f, "transfer {t}"),
            ExpectOutcome::Bridged(q) => write!(f, "bridged {q}"),
            ExpectOutcome::Waiting => f.write_str("waiting"),
            ExpectOutcome::WaitingAt(n) => write!(f, "waiting at {n}"),
        }
    }
}

/// A list expectation: exactly these, or these in order with others between.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ListExpect {
    Exact(Vec<String>),
    InOrder(Vec<String>),
}

/// What a case checks. Absent fields are not checked.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Expect {
    pub prompts: Option<ListExpect>,
    pub path: Option<ListExpect>,
    pub outcome: Option<ExpectOutcome>,
    pub vars: BTreeMap<String, String>,
    /// Survey name → the score expected (`None`: offered, not answered).
    pub surveys: BTreeMap<String, Option<u8>>,
}

/// One test case, checked and ready to run.
#[derive(Clone, Debug)]
pub struct TestCase {
    pub file: PathBuf,
    pub line: usize,
    pub column: usize,
    pub name: String,
    pub caller: String,
    pub dialled: String,
    /// Run this flow instead of routing `dialled`.
    pub flow: Option<String>,
    pub at: Option<SystemTime>,
    pub steps: Vec<Step>,
    pub key_gap: Duration,
    pub limit: Duration,
    /// Answers for directory nodes (`lookup`, `verify_pin`, `update`).
    pub mocks: Mocks,
    /// How each queue treats the call (`queue:`); others: [`QueueScript::default`].
    pub queues: BTreeMap<String, QueueScript>,
    /// The answer to every callback request (`callback:`, default registered).
    pub callback: QueueEvent,
    /// Whether transfers succeed (`transfer: ok | failed`, default ok).
    pub transfer_ok: bool,
    pub expect: Expect,
}

impl TestCase {
    /// `file:line:col: name`.
    pub fn title(&self) -> String {
        format!(
            "{}:{}:{}: {}",
            self.file.display(),
            self.line,
            self.column,
            self.name
        )
    }
}

// The YAML as written. Scalars are read as text and checked below, so a
// mistake is reported with its location.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileYaml {
    #[serde(default)]
    defaults: Option<Settings>,
    #[serde(default)]
    cases: Vec<Spanned<CaseYaml>>,
}

#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct Settings {
    caller: Option<Spanned<String>>,
    dialled: Option<Spanned<String>>,
    flow: Option<Spanned<String>>,
    at: Option<Spanned<String>>,
    key_gap: Option<Spanned<String>>,
    limit: Option<Spanned<String>>,
    mocks: Option<BTreeMap<String, serde_json::Value>>,
    queue: Option<Spanned<BTreeMap<String, QueueYaml>>>,
    callback: Option<Spanned<String>>,
    transfer: Option<Spanned<String>>,
}

/// `queue: { support: { joined: 2, ewt: 3m, announce_every: 30s, answer_after: 45s } }`.
#[derive(Deserialize, Default, Clone)]
#[serde(deny_unknown_fields)]
struct QueueYaml {
    joined: Option<String>,
    refused: Option<String>,
    ewt: Option<String>,
    announce_every: Option<String>,
    answer_after: Option<String>,
    bridge: Option<String>,
    overflow_after: Option<String>,
    no_agents_after: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CaseYaml {
    name: String,
    caller: Option<Spanned<String>>,
    dialled: Option<Spanned<String>>,
    flow: Option<Spanned<String>>,
    at: Option<Spanned<String>>,
    key_gap: Option<Spanned<String>>,
    limit: Option<Spanned<String>>,
    mocks: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
    queue: Option<Spanned<BTreeMap<String, QueueYaml>>>,
    callback: Option<Spanned<String>>,
    transfer: Option<Spanned<String>>,
    digits: Option<Spanned<DigitsYaml>>,
    expect: ExpectYaml,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpectYaml {
    prompts: Option<Vec<String>>,
    prompts_in_order: Option<Vec<String>>,
    path: Option<Vec<String>>,
    path_in_order: Option<Vec<String>>,
    outcome: Option<Spanned<OutcomeYaml>>,
    vars: Option<BTreeMap<String, String>>,
    survey: Option<Spanned<BTreeMap<String, serde_json::Value>>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum OutcomeYaml {
    Hangup,
    Waiting,
    Transfer(String),
    Bridged(String),
    WaitingAt(String),
}

/// `digits: "1,123456#"` or a list of steps.
enum DigitsYaml {
    Groups(String),
    Steps(Vec<Spanned<StepYaml>>),
}

impl<'de> Deserialize<'de> for DigitsYaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = DigitsYaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("keys such as \"1,123456#\", or a list of steps")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<DigitsYaml, E> {
                Ok(DigitsYaml::Groups(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<DigitsYaml, E> {
                Ok(DigitsYaml::Groups(v.to_string()))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<DigitsYaml, E> {
                Ok(DigitsYaml::Groups(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<DigitsYaml, E> {
                Ok(DigitsYaml::Steps(Vec::new()))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<DigitsYaml, A::Error> {
                let mut out = Vec::new();
                while let Some(s) = seq.next_element::<Spanned<StepYaml>>()? {
                    out.push(s);
                }
                Ok(DigitsYaml::Steps(out))
            }
        }
        d.deserialize_any(V)
    }
}

/// `"1"`, `{ keys: "1" }`, `{ after: 2s, keys: "1" }` or `{ silence: 5s }`.
#[derive(Default)]
struct StepYaml {
    after: Option<String>,
    keys: Option<String>,
    silence: Option<String>,
}

impl<'de> Deserialize<'de> for StepYaml {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = StepYaml;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("keys (\"1\"), or a mapping with `after`, `keys`, `silence`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<StepYaml, E> {
                Ok(StepYaml {
                    keys: Some(v.to_string()),
                    ..StepYaml::default()
                })
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<StepYaml, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<StepYaml, E> {
                self.visit_str(&v.to_string())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<StepYaml, A::Error> {
                let mut out = StepYaml::default();
                while let Some(k) = map.next_key::<String>()? {
                    let slot = match k.as_str() {
                        "after" => &mut out.after,
                        "keys" => &mut out.keys,
                        "silence" => &mut out.silence,
                        _ => {
                            return Err(de::Error::custom(format!(
                                "unknown key `{k}` in a step; expected `after`, `keys` or `silence`"
                            )));
                        }
                    };
                    if slot.is_some() {
                        return Err(de::Error::custom(format!("duplicate key `{k}` in a step")));
                    }
                    *slot = Some(map.next_value::<String>()?);
                }
                Ok(out)
            }
        }
        d.deserialize_any(V)
    }
}

/// Reads a time for `at:`: an RFC 3339 time with an offset
/// (`2026-12-25T10:00:00-05:00`), optionally with a zone
/// (`2026-12-25T10:00:00-05:00[America/New_York]`), or a local time with a
/// zone (`2026-12-25T10:00[Europe/Berlin]`). A time with neither is refused:
/// a test must not depend on the machine's time zone.
pub fn parse_at(s: &str) -> Result<SystemTime, String> {
    let s = s.trim();
    if s.contains('[') {
        return s
            .parse::<jiff::Zoned>()
            .map(|z| SystemTime::from(z.timestamp()))
            .map_err(|e| format!("bad time `{s}`: {e}"));
    }
    s.parse::<jiff::Timestamp>()
        .map(SystemTime::from)
        .map_err(|e| {
            format!(
                "bad time `{s}`: {e} (write an offset, `2026-12-25T10:00:00-05:00`, or a zone, \
             `2026-12-25T10:00[Europe/Berlin]`)"
            )
        })
}

fn lc(l: &Location) -> (usize, usize) {
    (l.line() as usize, l.column() as usize)
}

/// Reads one test file. Every mistake found is returned, located.
pub fn parse_file(path: &Path, text: &str) -> Result<Vec<TestCase>, Vec<Diagnostic>> {
    let file: FileYaml = match serde_saphyr::from_str(text) {
        Ok(f) => f,
        Err(e) => {
            let msg = serde_saphyr::DefaultMessageFormatter
                .format_message(e.without_snippet())
                .to_string();
            let (line, col) = e.location().map(|l| lc(&l)).unwrap_or((0, 0));
            return Err(vec![
                Diagnostic::error(path, line, col, format!("YAML: {msg}")).with_source(text),
            ]);
        }
    };
    let errors = std::cell::RefCell::new(Vec::new());
    let err = |at: &Location, msg: String| {
        let (l, c) = lc(at);
        errors
            .borrow_mut()
            .push(Diagnostic::error(path, l, c, msg).with_source(text));
    };
    let defaults = file.defaults.unwrap_or_default();
    let mut cases = Vec::new();
    if file.cases.is_empty() {
        errors.borrow_mut().push(Diagnostic::error(
            path,
            0,
            0,
            "no test cases: write `cases:` with a list of cases",
        ));
    }
    let mut names: BTreeMap<String, Location> = BTreeMap::new();
    for c in file.cases {
        let at_case = c.referenced;
        let (line, column) = lc(&at_case);
        let c = c.value;
        if let Some(first) = names.get(&c.name) {
            err(
                &at_case,
                format!(
                    "duplicate case name `{}` (first at line {})",
                    c.name,
                    first.line()
                ),
            );
        }
        names.insert(c.name.clone(), at_case);
        // A case's own settings beat the file's `defaults`.
        let s = Settings {
            caller: c.caller.or_else(|| defaults.caller.clone()),
            dialled: c.dialled.or_else(|| defaults.dialled.clone()),
            flow: c.flow.or_else(|| defaults.flow.clone()),
            at: c.at.or_else(|| defaults.at.clone()),
            key_gap: c.key_gap.or_else(|| defaults.key_gap.clone()),
            limit: c.limit.or_else(|| defaults.limit.clone()),
            mocks: None,
            queue: None,
            callback: c.callback.or_else(|| defaults.callback.clone()),
            transfer: c.transfer.or_else(|| defaults.transfer.clone()),
        };
        let dur = |v: &Option<Spanned<String>>, default: Duration, what: &str| match v {
            None => default,
            Some(v) => match parse_duration(&v.value) {
                Ok(d) => d,
                Err(e) => {
                    err(&v.referenced, format!("bad {what} `{}`: {e}", v.value));
                    default
                }
            },
        };
        let key_gap = dur(&s.key_gap, DEFAULT_KEY_GAP, "key_gap");
        let limit = dur(&s.limit, DEFAULT_LIMIT, "limit");
        let at = match &s.at {
            None => None,
            Some(v) => match parse_at(&v.value) {
                Ok(t) => Some(t),
                Err(e) => {
                    err(&v.referenced, e);
                    None
                }
            },
        };
        if s.flow.is_none() && s.dialled.is_none() {
            err(
                &at_case,
                format!(
                    "case `{}` needs `dialled` (the number called, routed like a real call) or `flow`",
                    c.name
                ),
            );
        }
        let steps = match c.digits {
            None => Vec::new(),
            Some(d) => match d.value {
                DigitsYaml::Groups(g) => match Step::groups(&g) {
                    Ok(s) => s,
                    Err(e) => {
                        err(&d.referenced, format!("bad digits `{g}`: {e}"));
                        Vec::new()
                    }
                },
                DigitsYaml::Steps(list) => {
                    let mut out = Vec::new();
                    for s in list {
                        match step(&s.value) {
                            Ok(st) => out.push(st),
                            Err(e) => err(&s.referenced, e),
                        }
                    }
                    out
                }
            },
        };
        let e = c.expect;
        let list = |exact: Option<Vec<String>>, ordered: Option<Vec<String>>, what: &str| match (
            exact, ordered,
        ) {
            (Some(_), Some(_)) => {
                err(
                    &at_case,
                    format!(
                        "case `{}`: give `{what}` or `{what}_in_order`, not both",
                        c.name
                    ),
                );
                None
            }
            (Some(x), None) => Some(ListExpect::Exact(x)),
            (None, Some(x)) => Some(ListExpect::InOrder(x)),
            (None, None) => None,
        };
        let prompts = list(e.prompts, e.prompts_in_order, "prompts");
        let path_expect = list(e.path, e.path_in_order, "path");
        let outcome = e.outcome.map(|o| match o.value {
            OutcomeYaml::Hangup => ExpectOutcome::Hangup,
            OutcomeYaml::Waiting => ExpectOutcome::Waiting,
            OutcomeYaml::Transfer(t) => ExpectOutcome::Transfer(t),
            OutcomeYaml::Bridged(q) => ExpectOutcome::Bridged(q),
            OutcomeYaml::WaitingAt(n) => ExpectOutcome::WaitingAt(n),
        });
        let mut surveys = BTreeMap::new();
        // A survey expectation with mistakes is reported as such, not as "checks nothing".
        let wrote_survey = e.survey.is_some();
        if let Some(sv) = &e.survey {
            for (name, v) in &sv.value {
                match survey_expectation(v) {
                    Ok(score) => {
                        surveys.insert(name.clone(), score);
                    }
                    Err(msg) => err(&sv.referenced, format!("survey `{name}`: {msg}")),
                }
            }
            if sv.value.is_empty() {
                err(
                    &sv.referenced,
                    "`survey` names no survey: write `survey: { csat: 4 }`".into(),
                );
            }
        }
        let expect = Expect {
            prompts,
            path: path_expect,
            outcome,
            vars: e.vars.unwrap_or_default(),
            surveys,
        };
        if expect == Expect::default() && !wrote_survey {
            err(
                &at_case,
                format!(
                    "case `{}` checks nothing: give `expect:` with `prompts`, `path`, `outcome`, `vars` or `survey`",
                    c.name
                ),
            );
        }
        let mut mock_map = defaults.mocks.clone().unwrap_or_default();
        let mocks_at = c.mocks.as_ref().map_or(at_case, |m| m.referenced);
        mock_map.extend(c.mocks.map(|m| m.value).unwrap_or_default());
        let mocks = match Mocks::parse(&mock_map) {
            Ok(m) => m,
            Err(e) => {
                err(&mocks_at, e);
                Mocks::default()
            }
        };
        // Queue scripts: the file's, then the case's per queue name.
        let mut queues = BTreeMap::new();
        for q in [defaults.queue.as_ref(), c.queue.as_ref()]
            .into_iter()
            .flatten()
        {
            for (name, y) in &q.value {
                match queue_script(y) {
                    Ok(script) => {
                        queues.insert(name.clone(), script);
                    }
                    Err(e) => err(&q.referenced, format!("queue.{name}: {e}")),
                }
            }
        }
        let callback = match s
            .callback
            .as_ref()
            .map(|v| (v.value.as_str(), v.referenced))
        {
            None | Some(("registered", _)) => QueueEvent::CallbackRegistered,
            Some(("duplicate", _)) => QueueEvent::CallbackDuplicate,
            Some(("failed", _)) => QueueEvent::CallbackFailed,
            Some((other, at)) => {
                err(
                    &at,
                    format!(
                        "callback: expected `registered`, `duplicate` or `failed`, found `{other}`"
                    ),
                );
                QueueEvent::CallbackRegistered
            }
        };
        let transfer_ok = match s
            .transfer
            .as_ref()
            .map(|v| (v.value.as_str(), v.referenced))
        {
            None | Some(("ok", _)) => true,
            Some(("failed", _)) => false,
            Some((other, at)) => {
                err(
                    &at,
                    format!("transfer: expected `ok` or `failed`, found `{other}`"),
                );
                true
            }
        };
        cases.push(TestCase {
            file: path.to_path_buf(),
            line,
            column,
            name: c.name,
            caller: s
                .caller
                .map(|v| v.value)
                .unwrap_or_else(|| "anonymous".into()),
            dialled: s.dialled.map(|v| v.value).unwrap_or_default(),
            flow: s.flow.map(|v| v.value),
            at,
            steps,
            key_gap,
            limit,
            mocks,
            queues,
            callback,
            transfer_ok,
            expect,
        });
    }
    let errors = errors.into_inner();
    if errors.is_empty() {
        Ok(cases)
    } else {
        Err(errors)
    }
}

/// Reads one queue's script; every duration is from the join.
/// `4` (a score 1-9), or `none` / null (offered, not answered).
fn survey_expectation(v: &serde_json::Value) -> Result<Option<u8>, String> {
    let bad = || format!("expected a score from 1 to 9, or `none` for no answer, found {v}");
    match v {
        serde_json::Value::Null => Ok(None),
        serde_json::Value::String(s) if s == "none" => Ok(None),
        serde_json::Value::String(s) => match s.trim().parse::<u8>() {
            Ok(n @ 1..=9) => Ok(Some(n)),
            _ => Err(bad()),
        },
        serde_json::Value::Number(n) => match n.as_u64() {
            Some(n @ 1..=9) => Ok(Some(n as u8)),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

fn queue_script(y: &QueueYaml) -> Result<QueueScript, String> {
    let dur = |what: &str, v: &Option<String>| -> Result<Option<Duration>, String> {
        v.as_ref()
            .map(|v| parse_duration(v).map_err(|e| format!("bad {what} `{v}`: {e}")))
            .transpose()
    };
    let mut script = QueueScript::default();
    match (&y.joined, &y.refused) {
        (Some(_), Some(_)) => return Err("give `joined` or `refused`, not both".into()),
        (Some(j), None) => match j.trim().parse::<usize>() {
            Ok(p) if p >= 1 => script.joined = Ok(p),
            _ => return Err(format!("`joined` is the position (1 or more), found `{j}`")),
        },
        (None, Some(r)) => {
            script.joined = Err(match r.as_str() {
                "no_agents" => QueueRefusal::NoAgents,
                "full" => QueueRefusal::Full,
                "unknown" | "unknown_queue" => QueueRefusal::UnknownQueue,
                "draining" => QueueRefusal::Draining,
                _ => {
                    return Err(format!(
                        "`refused` is `no_agents`, `full`, `unknown_queue` or `draining`, found `{r}`"
                    ));
                }
            });
            script.end = None;
        }
        (None, None) => {}
    }
    script.ewt = dur("ewt", &y.ewt)?;
    script.announce_every = dur("announce_every", &y.announce_every)?;
    let ends = [
        (dur("answer_after", &y.answer_after)?, QueueEnd::Answer),
        (
            dur("overflow_after", &y.overflow_after)?,
            QueueEnd::Overflow,
        ),
        (
            dur("no_agents_after", &y.no_agents_after)?,
            QueueEnd::NoAgents,
        ),
    ];
    let given: Vec<(Duration, QueueEnd)> = ends
        .into_iter()
        .filter_map(|(d, e)| d.map(|d| (d, e)))
        .collect();
    if given.len() > 1 {
        return Err(
            "give one of `answer_after`, `overflow_after`, `no_agents_after` (the wait ends once)"
                .into(),
        );
    }
    if let Some(end) = given.first() {
        if script.joined.is_err() {
            return Err("a refused call does not wait: drop the `..._after`".into());
        }
        script.end = Some(*end);
    }
    match y.bridge.as_deref() {
        None | Some("ok") => {}
        Some("failed") => match &mut script.end {
            Some((_, e @ QueueEnd::Answer)) => *e = QueueEnd::BridgeFailed,
            _ => return Err("`bridge: failed` needs the agent to answer (`answer_after`)".into()),
        },
        Some(other) => return Err(format!("`bridge` is `ok` or `failed`, found `{other}`")),
    }
    Ok(script)
}

fn step(s: &StepYaml) -> Result<Step, String> {
    let keys = |k: &str| -> Result<Vec<Digit>, String> {
        k.chars()
            .filter(|c| !c.is_whitespace())
            .map(|c| Digit::from_char(c).ok_or_else(|| format!("`{c}` is not a DTMF key")))
            .collect()
    };
    let dur = |what: &str, v: &str| parse_duration(v).map_err(|e| format!("bad {what} `{v}`: {e}"));
    match (&s.after, &s.keys, &s.silence) {
        (None, Some(k), None) => Ok(Step::OnListen { keys: keys(k)? }),
        (Some(a), Some(k), None) => Ok(Step::Timed {
            after: dur("after", a)?,
            keys: keys(k)?,
        }),
        (None, None, Some(d)) => Ok(Step::Silence(dur("silence", d)?)),
        _ => Err(
            "a step is `\"1\"`, `{ keys: \"1\" }`, `{ after: 2s, keys: \"1\" }` or `{ silence: 5s }`"
                .into(),
        ),
    }
}

// ---------------------------------------------------------------------------
// Running cases
// ---------------------------------------------------------------------------

/// The result of one case: passed when `failures` is empty.
#[derive(Clone, Debug)]
pub struct CaseResult {
    pub title: String,
    /// One explanation per failed check (expected vs actual).
    pub failures: Vec<String>,
    /// What the simulated caller went through.
    pub transcript: Vec<String>,
}

impl CaseResult {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

/// A prompt's catalog name (`en/welcome`), or `#id` for an unknown id.
pub fn prompt_name(prompts: &PromptSet, id: PromptId) -> String {
    prompts
        .get(id)
        .map(|p| p.name().to_string())
        .unwrap_or_else(|| format!("#{}", id.0))
}

/// `en/welcome` → `welcome` when `en` is a language of the flow set.
fn short_name<'a>(set: &FlowSet, full: &'a str) -> &'a str {
    match full.split_once('/') {
        Some((lang, rest)) if set.languages.iter().any(|l| l == lang) => rest,
        _ => full,
    }
}

/// Runs one case against a compiled flow set with its prompts.
pub fn run_case(set: &Arc<FlowSet>, prompts: &PromptSet, case: &TestCase) -> CaseResult {
    let title = case.title();
    let flow = match &case.flow {
        Some(name) => set.flow_by_name(name).ok_or_else(|| {
            format!(
                "no flow named `{name}` (flows: {})",
                set.flow_names().collect::<Vec<_>>().join(", ")
            )
        }),
        None => set
            .route(&case.dialled)
            .ok_or_else(|| format!("no route for dialled number `{}`", case.dialled)),
    };
    let flow = match flow {
        Ok(f) => f,
        Err(e) => {
            return CaseResult {
                title,
                failures: vec![e],
                transcript: Vec::new(),
            };
        }
    };
    let call = CallInfo {
        caller: case.caller.clone(),
        dialled: case.dialled.clone(),
    };
    let len = |p: PromptId| prompts.get(p).map(|p| p.duration()).unwrap_or_default();
    let mut caller = Scripted::new(case.steps.clone(), case.key_gap)
        .with_mocks(case.mocks.clone())
        .with_queues(case.queues.clone(), case.callback.clone(), case.transfer_ok);
    let trace = drive(
        set.clone(),
        flow,
        call,
        case.at,
        case.limit,
        &len,
        &mut caller,
    );
    let full: Vec<String> = trace
        .heard
        .iter()
        .map(|p| prompt_name(prompts, *p))
        .collect();
    let short: Vec<String> = full
        .iter()
        .map(|f| short_name(set, f).to_string())
        .collect();
    let mut failures = std::mem::take(&mut caller.problems);
    if let Some(e) = &case.expect.prompts {
        let eq = |want: &str, i: usize| want == short[i] || want == full[i];
        if let Some(d) = compare_list("prompts", e, &short, &eq) {
            failures.push(d);
        }
    }
    if let Some(e) = &case.expect.path {
        let eq = |want: &str, i: usize| want == trace.path[i];
        if let Some(d) = compare_list("path", e, &trace.path, &eq) {
            failures.push(d);
        }
    }
    if let Some(want) = &case.expect.outcome {
        let ok = match (want, &trace.outcome) {
            (ExpectOutcome::Hangup, Outcome::Hangup) => true,
            (ExpectOutcome::Transfer(a), Outcome::Transfer(b)) => a == b,
            (ExpectOutcome::Bridged(a), Outcome::Bridged(b)) => a == b,
            (ExpectOutcome::Waiting, Outcome::TimeLimit) => true,
            (ExpectOutcome::WaitingAt(n), Outcome::TimeLimit) => *n == trace.final_node,
            _ => false,
        };
        if !ok {
            failures.push(format!(
                "outcome:\n    expected: {want}\n    actual:   {}",
                trace.outcome_text()
            ));
        }
    }
    for (name, want) in &case.expect.vars {
        match trace.vars.iter().find(|(n, _)| n == name) {
            None => failures.push(format!(
                "vars.{name}: the flows never set a variable `{name}`"
            )),
            Some((_, got)) if got.as_deref() == Some(want.as_str()) => {}
            Some((_, got)) => failures.push(format!(
                "vars.{name}:\n    expected: {want:?}\n    actual:   {}",
                got.as_ref()
                    .map(|g| format!("{g:?}"))
                    .unwrap_or_else(|| "not set".into())
            )),
        }
    }
    let score_text = |s: Option<u8>| s.map_or_else(|| "no answer".to_string(), |n| n.to_string());
    for (name, want) in &case.expect.surveys {
        match trace.surveys.iter().find(|(n, _)| n == name) {
            None => failures.push(format!(
                "survey.{name}:\n    expected: {}\n    actual:   not offered",
                score_text(*want)
            )),
            Some((_, got)) if got == want => {}
            Some((_, got)) => failures.push(format!(
                "survey.{name}:\n    expected: {}\n    actual:   {}",
                score_text(*want),
                score_text(*got)
            )),
        }
    }
    let name = |p: PromptId| prompt_name(prompts, p);
    let mut transcript = trace.lines(&name);
    transcript.push(format!("          outcome: {}", trace.outcome_text()));
    CaseResult {
        title,
        failures,
        transcript,
    }
}

/// `None` when `actual` meets the expectation, else an explanation with a diff.
fn compare_list(
    what: &str,
    expect: &ListExpect,
    actual: &[String],
    eq: &dyn Fn(&str, usize) -> bool,
) -> Option<String> {
    match expect {
        ListExpect::Exact(want) => {
            if want.len() == actual.len() && want.iter().enumerate().all(|(i, w)| eq(w, i)) {
                return None;
            }
            let mut out = format!("{what} differ (- expected, + actual):\n");
            for line in diff(want, actual, eq) {
                let _ = writeln!(out, "    {line}");
            }
            Some(out.trim_end().to_string())
        }
        ListExpect::InOrder(want) => {
            let mut i = 0;
            let mut found = Vec::new();
            for w in want {
                match (i..actual.len()).find(|&j| eq(w, j)) {
                    Some(j) => {
                        found.push(j);
                        i = j + 1;
                    }
                    None => {
                        let after = found
                            .last()
                            .map(|&j| format!(" after `{}` (position {})", actual[j], j + 1))
                            .unwrap_or_default();
                        return Some(format!(
                            "{what}_in_order: `{w}` not found{after}\n    expected, in order: {}\n    actual:             {}",
                            want.join(", "),
                            if actual.is_empty() {
                                "(none)".to_string()
                            } else {
                                actual.join(", ")
                            }
                        ));
                    }
                }
            }
            None
        }
    }
}

/// A line diff (longest common subsequence): `  x` both, `- x` expected
/// only, `+ x` actual only.
fn diff(want: &[String], actual: &[String], eq: &dyn Fn(&str, usize) -> bool) -> Vec<String> {
    let (n, m) = (want.len(), actual.len());
    // lcs[i][j]: longest common subsequence of want[i..] and actual[j..].
    let mut lcs = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[i][j] = if eq(&want[i], j) {
                lcs[i + 1][j + 1] + 1
            } else {
                lcs[i + 1][j].max(lcs[i][j + 1])
            };
        }
    }
    let (mut i, mut j) = (0, 0);
    let mut out = Vec::new();
    while i < n || j < m {
        if i < n && j < m && eq(&want[i], j) {
            out.push(format!("  {}", actual[j]));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[i + 1][j] >= lcs[i][j + 1]) {
            out.push(format!("- {}", want[i]));
            i += 1;
        } else {
            out.push(format!("+ {}", actual[j]));
            j += 1;
        }
    }
    out
}

/// Every case of a run, plus the files that could not be read.
#[derive(Clone, Debug, Default)]
pub struct Suite {
    pub results: Vec<CaseResult>,
    /// Flows that do not compile, test files that do not parse, no cases at all.
    pub errors: Vec<String>,
}

impl Suite {
    pub fn passed(&self) -> usize {
        self.results.iter().filter(|r| r.passed()).count()
    }

    pub fn failed(&self) -> usize {
        self.results.len() - self.passed()
    }

    /// True when every case passed, there was at least one, and nothing failed to load.
    pub fn success(&self) -> bool {
        self.errors.is_empty() && self.failed() == 0 && !self.results.is_empty()
    }

    /// Test-runner output: one line per case, then each failure with its
    /// diff and transcript, then `N passed, M failed`.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for e in &self.errors {
            let _ = writeln!(out, "{e}\n");
        }
        for r in &self.results {
            let status = if r.passed() { "ok" } else { "FAILED" };
            let _ = writeln!(out, "test {} ... {status}", r.title);
        }
        let failed: Vec<&CaseResult> = self.results.iter().filter(|r| !r.passed()).collect();
        if !failed.is_empty() {
            out.push_str("\nfailures:\n");
            for r in failed {
                let _ = writeln!(out, "\n---- {} ----", r.title);
                for f in &r.failures {
                    let _ = writeln!(out, "{f}");
                }
                if !r.transcript.is_empty() {
                    out.push_str("transcript:\n");
                    for l in &r.transcript {
                        let _ = writeln!(out, "  {l}");
                    }
                }
            }
        }
        let _ = writeln!(
            out,
            "\ntest result: {}. {} passed, {} failed{}",
            if self.success() { "ok" } else { "FAILED" },
            self.passed(),
            self.failed(),
            if self.errors.is_empty() {
                String::new()
            } else {
                format!(", {} error(s) loading", self.errors.len())
            }
        );
        out
    }
}

/// The test files of a flows directory: `*.yaml`/`*.yml` under `dir/tests/`, sorted.
pub fn test_files(dir: &Path) -> Vec<PathBuf> {
    fn walk(d: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(d) else {
            return;
        };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(&p, out);
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")) {
                out.push(p);
            }
        }
    }
    let mut out = Vec::new();
    walk(&dir.join("tests"), &mut out);
    out.sort();
    out
}

/// Runs the cases in `files` whose name contains `filter` (all when `None`).
pub fn run_files(
    set: &Arc<FlowSet>,
    prompts: &PromptSet,
    files: &[PathBuf],
    filter: Option<&str>,
) -> Suite {
    let mut suite = Suite::default();
    for f in files {
        let text = match std::fs::read_to_string(f) {
            Ok(t) => t,
            Err(e) => {
                suite
                    .errors
                    .push(format!("{}: cannot read: {e}", f.display()));
                continue;
            }
        };
        match parse_file(f, &text) {
            Ok(cases) => {
                for c in cases {
                    if filter.is_none_or(|flt| c.name.contains(flt)) {
                        suite.results.push(run_case(set, prompts, &c));
                    }
                }
            }
            Err(diags) => suite.errors.push(super::diagnostic::render_all(&diags)),
        }
    }
    if suite.results.is_empty() && suite.errors.is_empty() {
        suite.errors.push(match filter {
            Some(f) => format!("no test case name contains `{f}`"),
            None => "no test cases found".to_string(),
        });
    }
    suite
}

/// `phonetree test`: compiles `flows_dir` with the prompts in `prompts_dir`
/// (as the engine does) and runs every case in `flows_dir/tests/`. Queue
/// names are not checked: see [`run_dir_with`].
pub fn run_dir(flows_dir: &Path, prompts_dir: &Path, filter: Option<&str>) -> Suite {
    run_dir_with(flows_dir, prompts_dir, filter, None)
}

/// [`run_dir`], checking queue names against `queues` (those of `phonetree.yaml`).
pub fn run_dir_with(
    flows_dir: &Path,
    prompts_dir: &Path,
    filter: Option<&str>,
    queues: Option<&std::collections::BTreeSet<String>>,
) -> Suite {
    let options = super::compile::CompileOptions { queues };
    let catalog = match crate::catalog::Catalog::load_with(flows_dir, prompts_dir, 1, &options) {
        Ok(c) => c,
        Err(e) => {
            return Suite {
                results: Vec::new(),
                errors: vec![format!("the flows do not compile:\n{e}")],
            };
        }
    };
    let files = test_files(flows_dir);
    if files.is_empty() {
        return Suite {
            results: Vec::new(),
            errors: vec![format!(
                "no test files: write cases in {}",
                flows_dir.join("tests").join("*.yaml").display()
            )],
        };
    }
    run_files(&catalog.flows, &catalog.prompts, &files, filter)
}

// ---------------------------------------------------------------------------
// Mocked directory answers
// ---------------------------------------------------------------------------

type MockParser = fn(&serde_json::Value) -> Result<DirectoryResponse, String>;

/// A case's `mocks`: answers for `lookup`, `verify_pin` and `update` nodes.
/// Each is one answer, or a list answered in turn (the last one repeats).
#[derive(Clone, Debug, Default)]
pub struct Mocks {
    lookup: Vec<DirectoryResponse>,
    verify_pin: Vec<DirectoryResponse>,
    update: Vec<DirectoryResponse>,
    used: [usize; 3],
}

/// The answer's short name for transcripts (`found C1001`, `not_found`, `pin ok`).
fn response_name(r: &DirectoryResponse) -> String {
    match r {
        DirectoryResponse::Found(rec) => format!("found {}", rec.customer.id),
        DirectoryResponse::NotFound => "not_found".into(),
        DirectoryResponse::Pin(PinOutcome::Ok) => "pin ok".into(),
        DirectoryResponse::Pin(PinOutcome::Wrong { attempts_left }) => {
            format!("pin wrong ({attempts_left} attempts left)")
        }
        DirectoryResponse::Pin(PinOutcome::Locked { .. }) => "pin locked".into(),
        DirectoryResponse::Updated => "updated".into(),
        DirectoryResponse::TimedOut => "timeout".into(),
        DirectoryResponse::Failed(e) => format!("error ({e})"),
    }
}

impl Mocks {
    /// Reads `mocks:`; keys are `lookup`, `verify_pin`, `update`.
    pub fn parse(map: &BTreeMap<String, serde_json::Value>) -> Result<Mocks, String> {
        let mut m = Mocks::default();
        for (k, v) in map {
            let (slot, parse): (&mut Vec<DirectoryResponse>, MockParser) = match k.as_str() {
                "lookup" => (&mut m.lookup, mock_lookup),
                "verify_pin" => (&mut m.verify_pin, mock_pin),
                "update" => (&mut m.update, mock_update),
                _ => {
                    return Err(format!(
                        "unknown mock `{k}`: expected `lookup`, `verify_pin` or `update`"
                    ));
                }
            };
            let items: Vec<&serde_json::Value> = match v {
                serde_json::Value::Array(a) => a.iter().collect(),
                v => vec![v],
            };
            if items.is_empty() {
                return Err(format!("mocks.{k}: give at least one answer"));
            }
            for i in items {
                slot.push(parse(i).map_err(|e| format!("mocks.{k}: {e}"))?);
            }
        }
        Ok(m)
    }

    /// The next answer for `request`; `Err` when the case gave none.
    pub fn answer(&mut self, request: &DirectoryRequest) -> Result<DirectoryResponse, String> {
        let (i, list, name) = match request {
            DirectoryRequest::Lookup { .. } => (0, &self.lookup, "lookup"),
            DirectoryRequest::VerifyPin { .. } => (1, &self.verify_pin, "verify_pin"),
            DirectoryRequest::SetAppointmentStatus { .. } => (2, &self.update, "update"),
        };
        let Some(last) = list.last() else {
            return Err(format!(
                "the flow asked the directory ({request:?}) but the case has no `mocks.{name}`"
            ));
        };
        let r = list.get(self.used[i]).unwrap_or(last).clone();
        self.used[i] += 1;
        Ok(r)
    }
}

fn text(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        serde_json::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// `not_found`, `timeout`, `error`; `None` for anything else.
fn common(v: &serde_json::Value) -> Option<DirectoryResponse> {
    match v.as_str()? {
        "not_found" => Some(DirectoryResponse::NotFound),
        "timeout" => Some(DirectoryResponse::TimedOut),
        "error" => Some(DirectoryResponse::Failed("mocked error".into())),
        _ => None,
    }
}

fn fields<'v>(
    v: &'v serde_json::Value,
    what: &str,
    allowed: &[&str],
) -> Result<&'v serde_json::Map<String, serde_json::Value>, String> {
    let m = v
        .as_object()
        .ok_or_else(|| format!("{what}: expected a mapping"))?;
    if let Some(k) = m.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(format!(
            "{what}: unknown field `{k}` (expected {})",
            allowed.join(", ")
        ));
    }
    Ok(m)
}

fn field(m: &serde_json::Map<String, serde_json::Value>, k: &str) -> Option<String> {
    m.get(k).and_then(text)
}

/// `not_found` | `timeout` | `error` | `{ found: { id, name, language, tier,
/// balance, currency, order: {..}, appointment: {..} } }`.
fn mock_lookup(v: &serde_json::Value) -> Result<DirectoryResponse, String> {
    if let Some(r) = common(v) {
        return Ok(r);
    }
    let outer = fields(v, "lookup", &["found"]).map_err(|_| {
        "expected `not_found`, `timeout`, `error` or `{ found: { id: ..., ... } }`".to_string()
    })?;
    let c = fields(
        outer.get("found").unwrap_or(&serde_json::Value::Null),
        "found",
        &[
            "id",
            "name",
            "language",
            "tier",
            "balance",
            "currency",
            "order",
            "appointment",
        ],
    )?;
    let customer = Customer {
        id: field(c, "id").ok_or("found: `id` is required")?,
        name: field(c, "name").unwrap_or_default(),
        language: field(c, "language").unwrap_or_else(|| "en".into()),
        tier: field(c, "tier").unwrap_or_else(|| "standard".into()),
    };
    let account = match field(c, "balance") {
        None => None,
        Some(b) => Some(Account {
            balance_minor: parse_money(&b)
                .ok_or(format!("found.balance: `{b}` is not an amount"))?,
            currency: field(c, "currency").unwrap_or_else(|| "USD".into()),
        }),
    };
    let last_order = match c.get("order") {
        None => None,
        Some(o) => {
            let o = fields(
                o,
                "found.order",
                &["id", "status", "placed_on", "shipped_on", "eta"],
            )?;
            Some(Order {
                id: field(o, "id").ok_or("found.order: `id` is required")?,
                status: field(o, "status").unwrap_or_else(|| "placed".into()),
                placed_on: field(o, "placed_on").unwrap_or_default(),
                shipped_on: field(o, "shipped_on"),
                eta: field(o, "eta"),
            })
        }
    };
    let next_appointment = match c.get("appointment") {
        None => None,
        Some(a) => {
            let a = fields(a, "found.appointment", &["id", "starts_at", "status"])?;
            let status = field(a, "status").unwrap_or_default();
            let status = AppointmentStatus::parse(&status)
                .ok_or(format!("found.appointment: unknown status `{status}`"))?;
            let starts =
                field(a, "starts_at").ok_or("found.appointment: `starts_at` is required")?;
            Some(
                Appointment::new(
                    &field(a, "id").ok_or("found.appointment: `id` is required")?,
                    &starts,
                    status,
                )
                .ok_or(format!(
                    "found.appointment: `{starts}` is not an RFC 3339 time with an offset"
                ))?,
            )
        }
    };
    Ok(DirectoryResponse::Found(Box::new(CustomerRecord {
        customer,
        account,
        last_order,
        next_appointment,
    })))
}

/// `"123.45"` → 12345.
fn parse_money(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, s) = match s.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty()
        || frac.len() > 2
        || !whole
            .chars()
            .chain(frac.chars())
            .all(|c| c.is_ascii_digit())
    {
        return None;
    }
    let minor =
        whole.parse::<i64>().ok()?.checked_mul(100)? + format!("{frac:0<2}").parse::<i64>().ok()?;
    Some(if neg { -minor } else { minor })
}

/// `ok` | `wrong` | `{ wrong: 2 }` (attempts left) | `locked` | `timeout` | `error`.
fn mock_pin(v: &serde_json::Value) -> Result<DirectoryResponse, String> {
    if let Some(r) = common(v) {
        return Ok(r);
    }
    let bad = || {
        "expected `ok`, `wrong`, `{ wrong: 2 }`, `locked`, `timeout`, `error` or `not_found`"
            .to_string()
    };
    match v {
        serde_json::Value::String(s) => match s.as_str() {
            "ok" => Ok(DirectoryResponse::Pin(PinOutcome::Ok)),
            "wrong" => Ok(DirectoryResponse::Pin(PinOutcome::Wrong {
                attempts_left: 2,
            })),
            "locked" => Ok(DirectoryResponse::Pin(PinOutcome::Locked {
                until_unix_ms: 0,
            })),
            _ => Err(bad()),
        },
        serde_json::Value::Object(m) if m.len() == 1 => {
            let n = m
                .get("wrong")
                .and_then(text)
                .and_then(|t| t.parse::<u32>().ok())
                .ok_or_else(bad)?;
            Ok(DirectoryResponse::Pin(PinOutcome::Wrong {
                attempts_left: n,
            }))
        }
        _ => Err(bad()),
    }
}

/// `updated` | `not_found` | `timeout` | `error`.
fn mock_update(v: &serde_json::Value) -> Result<DirectoryResponse, String> {
    if let Some(r) = common(v) {
        return Ok(r);
    }
    match v.as_str() {
        Some("updated") => Ok(DirectoryResponse::Updated),
        _ => Err("expected `updated`, `not_found`, `timeout` or `error`".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Source, compile};

    /// Prompts of the demo names, each `secs` long.
    fn prompts(secs: u32) -> PromptSet {
        let names = [
            "welcome",
            "main-menu",
            "hours",
            "support",
            "agents-busy",
            "invalid",
            "no-input",
            "goodbye",
        ];
        PromptSet::from_prompts(
            names
                .iter()
                .map(|n| (format!("en/{n}"), vec![100i16; 8000 * secs as usize]))
                .collect(),
        )
    }

    fn set(text: &str, prompts: &PromptSet) -> Arc<FlowSet> {
        let src = Source {
            path: PathBuf::from("flows/x.yaml"),
            text: text.to_string(),
        };
        match compile(&[src], prompts, 1) {
            Ok((s, _)) => Arc::new(s),
            Err(d) => panic!("{}", crate::flow::diagnostic::render_all(&d)),
        }
    }

    fn run(set: &Arc<FlowSet>, p: &PromptSet, cases: &str) -> Vec<CaseResult> {
        parse_file(Path::new("flows/tests/t.yaml"), cases)
            .unwrap_or_else(|d| panic!("{}", crate::flow::diagnostic::render_all(&d)))
            .iter()
            .map(|c| run_case(set, p, c))
            .collect()
    }

    const MENU: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: welcome
    nodes:
      welcome: { play: [welcome], next: menu }
      menu:
        menu:
          prompt: [main-menu]
          timeout: 2s
          options: { "1": hours, "2": sales }
      hours: { play: [hours], next: bye }
      sales: { transfer: "sip:sales@example.com" }
      bye: { hangup: {} }
"#;

    #[test]
    fn mistakes_in_a_test_file_are_located() {
        let text = "cases:\n  - name: a\n    dialled: ivr\n    limit: 5x\n    digits:\n      - { after: 1s }\n      - \"1x\"\n    mocks: { lokup: not_found }\n    expect: { outcome: hangup }\n  - name: a\n    expect: {}\n";
        let errs: Vec<String> = parse_file(Path::new("t.yaml"), text)
            .unwrap_err()
            .iter()
            .map(Diagnostic::headline)
            .collect();
        assert_eq!(
            errs,
            [
                "t.yaml:4:12: error: bad limit `5x`: unknown unit `x` (use ms, s, m or h)",
                "t.yaml:6:9: error: a step is `\"1\"`, `{ keys: \"1\" }`, `{ after: 2s, keys: \"1\" }` or `{ silence: 5s }`",
                "t.yaml:7:9: error: `x` is not a DTMF key",
                "t.yaml:8:12: error: unknown mock `lokup`: expected `lookup`, `verify_pin` or `update`",
                "t.yaml:10:5: error: duplicate case name `a` (first at line 2)",
                "t.yaml:10:5: error: case `a` needs `dialled` (the number called, routed like a real call) or `flow`",
                "t.yaml:10:5: error: case `a` checks nothing: give `expect:` with `prompts`, `path`, `outcome`, `vars` or `survey`",
            ]
        );
        let yaml = parse_file(
            Path::new("t.yaml"),
            "cases:\n  - name: a\n    dialed: ivr\n",
        )
        .unwrap_err();
        assert_eq!(yaml.len(), 1);
        assert!(
            yaml[0].headline().starts_with("t.yaml:3:5: error: YAML: "),
            "{}",
            yaml[0]
        );
        assert!(parse_at("2026-12-25T10:00").is_err(), "no zone: refused");
        assert_eq!(
            parse_at("2026-12-25T16:00[Europe/Berlin]"),
            parse_at("2026-12-25T10:00:00-05:00")
        );
    }

    #[test]
    fn steps_follow_the_clock_and_the_flow() {
        let p = prompts(2);
        let s = set(MENU, &p);
        let r = run(
            &s,
            &p,
            r#"
defaults: { dialled: ivr }
cases:
  - name: typed during the welcome, kept for the menu
    digits: [{ after: 500ms, keys: "2" }]
    expect:
      prompts: [welcome]
      path: [welcome, menu, sales]
      outcome: { transfer: "sip:sales@example.com" }
  - name: bare keys wait until the menu listens
    digits: ["1"]
    expect:
      prompts: [welcome, main-menu, hours]
      outcome: hangup
  - name: silence then keys
    digits: [{ silence: 4500ms }, { after: 0s, keys: "1" }]
    limit: 30s
    expect:
      prompts: [welcome, main-menu, hours]
  - name: waiting when the limit comes
    limit: 3s
    expect: { outcome: { waiting_at: menu } }
  - name: a wrong expectation fails
    digits: "1"
    expect:
      path_in_order: [menu, sales]
      outcome: hangup
"#,
        );
        let failed: Vec<(&str, &Vec<String>)> = r
            .iter()
            .filter(|c| !c.passed())
            .map(|c| (c.title.as_str(), &c.failures))
            .collect();
        assert_eq!(failed.len(), 1, "{failed:#?}");
        assert!(failed[0].0.ends_with("a wrong expectation fails"));
        assert_eq!(
            failed[0].1,
            &[
                "path_in_order: `sales` not found after `menu` (position 2)\n    expected, in order: menu, sales\n    actual:             welcome, menu, hours, bye"
            ]
        );
    }

    const SURVEY: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: rate
    nodes:
      rate:
        survey: { name: csat, prompt: [main-menu], scale: 5, timeout: 2s, retries: 2, invalid: [invalid] }
        next: bye
      bye: { play: [goodbye], next: end }
      end: { hangup: {} }
"#;

    #[test]
    fn survey_expectations_check_the_score_or_no_answer() {
        let p = prompts(1);
        let s = set(SURVEY, &p);
        let r = run(
            &s,
            &p,
            r#"
defaults: { dialled: ivr }
cases:
  - name: answered
    digits: "4"
    expect: { survey: { csat: 4 }, prompts: [main-menu, goodbye] }
  - name: a key outside the scale, then a valid one
    digits: "7,2"
    expect: { survey: { csat: 2 }, prompts: [main-menu, invalid, main-menu, goodbye] }
  - name: silence
    expect: { survey: { csat: none }, outcome: hangup }
  - name: wrong score fails
    digits: "3"
    expect: { survey: { csat: 5 } }
  - name: a survey never offered fails
    digits: "3"
    expect: { survey: { nps: none } }
"#,
        );
        let failed: Vec<(&str, &Vec<String>)> = r
            .iter()
            .filter(|c| !c.passed())
            .map(|c| (c.title.as_str(), &c.failures))
            .collect();
        assert_eq!(failed.len(), 2, "{failed:#?}");
        assert_eq!(
            failed[0].1,
            &["survey.csat:\n    expected: 5\n    actual:   3"]
        );
        assert_eq!(
            failed[1].1,
            &["survey.nps:\n    expected: no answer\n    actual:   not offered"]
        );
        // The transcript says what the caller answered.
        assert!(
            r[0].transcript
                .iter()
                .any(|l| l.ends_with("survey csat: 4")),
            "{:#?}",
            r[0].transcript
        );
        assert!(
            r[2].transcript
                .iter()
                .any(|l| l.ends_with("survey csat: no answer")),
            "{:#?}",
            r[2].transcript
        );
    }

    #[test]
    fn survey_expectations_are_checked_when_read() {
        let errs: Vec<String> = parse_file(
            Path::new("t.yaml"),
            "cases:\n  - name: a\n    dialled: ivr\n    expect:\n      survey: { csat: 12, nps: x }\n",
        )
        .unwrap_err()
        .iter()
        .map(Diagnostic::headline)
        .collect();
        assert_eq!(
            errs,
            [
                "t.yaml:5:15: error: survey `csat`: expected a score from 1 to 9, or `none` for no answer, found 12",
                "t.yaml:5:15: error: survey `nps`: expected a score from 1 to 9, or `none` for no answer, found \"x\"",
            ]
        );
    }

    #[test]
    fn mocks_answer_directory_nodes() {
        let p = prompts(1);
        let s = set(
            r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: find
    nodes:
      find:
        lookup:
          phone: $caller
          on: { found: tier, not_found: unknown, error: unknown, timeout: unknown }
      tier:
        branch:
          cases: [{ var: customer.tier, equals: gold, goto: vip }]
          else: regular
      vip: { transfer: "sip:vip@example.com" }
      regular: { play: [hours], next: bye }
      unknown: { play: [invalid], next: bye }
      bye: { hangup: {} }
"#,
            &p,
        );
        let r = run(
            &s,
            &p,
            r#"
defaults: { dialled: ivr, caller: "+15551234567" }
cases:
  - name: gold customer
    mocks: { lookup: { found: { id: C1, tier: gold, balance: "12.05" } } }
    expect:
      outcome: { transfer: "sip:vip@example.com" }
      vars: { customer.id: C1, customer.tier: gold }
  - name: unknown caller
    mocks: { lookup: not_found }
    expect: { prompts: [invalid], outcome: hangup }
  - name: no mock
    expect: { outcome: hangup }
"#,
        );
        assert!(r[0].passed(), "{:#?}", r[0]);
        assert!(r[1].passed(), "{:#?}", r[1]);
        assert!(!r[2].passed());
        assert!(
            r[2].failures[0].contains("has no `mocks.lookup`"),
            "{:#?}",
            r[2]
        );
        assert!(
            r[0].transcript.iter().any(|l| l.contains("-> found C1")),
            "{:#?}",
            r[0].transcript
        );
        assert_eq!(parse_money("12.5"), Some(1250));
        assert_eq!(parse_money("-3.05"), Some(-305));
        assert_eq!(parse_money("1.234"), None);
    }

    const QUEUE: &str = r#"
routes: [{ number: default, flow: main }]
flows:
  main:
    start: menu
    nodes:
      menu:
        menu:
          prompt: [main-menu]
          timeout: 2s
          options: { "0": wait, "5": xfer }
      wait:
        queue:
          name: support
          priority: 7
          music: [hours]
          announce: { position: false, wait: false }
          leave: { "1": cb }
          on: { overflow: bye, no_agents: busy }
      busy: { play: [agents-busy], next: menu }
      cb:
        callback: { queue: support, number: $caller, on: { registered: bye, failed: menu } }
      xfer: { transfer: { to: "sip:sales@example.com", on: { failed: busy } } }
      bye: { play: [goodbye], next: end }
      end: { hangup: {} }
"#;

    #[test]
    fn scripted_queues_callbacks_and_transfers() {
        let p = prompts(2);
        let s = set(QUEUE, &p);
        let r = run(
            &s,
            &p,
            r#"
defaults: { dialled: ivr, caller: "+15551234567" }
cases:
  - name: default queue, an agent after 10 s
    digits: "0"
    expect: { outcome: { bridged: support }, path: [menu, wait] }
  - name: leave for a callback, then back in the queue resumes
    digits: ["0", { after: 5s, keys: "1" }, "0"]
    callback: failed
    queue: { support: { joined: 2, answer_after: 1m } }
    expect:
      path: [menu, wait, cb, menu, wait]
      outcome: { bridged: support }
  - name: refused
    digits: "0"
    queue: { support: { refused: no_agents } }
    limit: 5s
    expect: { prompts_in_order: [main-menu, agents-busy], path_in_order: [wait, busy] }
  - name: a failed transfer
    digits: "5"
    transfer: failed
    limit: 5s
    expect: { prompts_in_order: [main-menu, agents-busy], path_in_order: [xfer, busy] }
"#,
        );
        for c in &r {
            assert!(c.passed(), "{c:#?}");
        }
        let t = r[1].transcript.join("\n");
        for line in [
            "join queue support (priority 7)\n",
            "queued support (position 2, no wait estimate)",
            "left the queue (place kept)",
            "callback from support to +15551234567 -> failed",
            "join queue support (priority 7), resuming its place",
            "bridged to an agent of support",
        ] {
            assert!(t.contains(line), "{line:?} not in\n{t}");
        }
        assert!(
            r[3].transcript
                .iter()
                .any(|l| l.ends_with("transfer failed"))
        );
    }

    #[test]
    fn queue_scripts_are_checked() {
        let errs: Vec<String> = parse_file(
            Path::new("t.yaml"),
            "cases:\n  - name: a\n    dialled: ivr\n    queue: { support: { joined: 0 } }\n    callback: maybe\n    expect: { outcome: hangup }\n  - name: b\n    dialled: ivr\n    queue: { support: { answer_after: 1m, overflow_after: 2m } }\n    expect: { outcome: hangup }\n",
        )
        .unwrap_err()
        .iter()
        .map(Diagnostic::headline)
        .collect();
        assert_eq!(
            errs,
            [
                "t.yaml:4:12: error: queue.support: `joined` is the position (1 or more), found `0`",
                "t.yaml:5:15: error: callback: expected `registered`, `duplicate` or `failed`, found `maybe`",
                "t.yaml:9:12: error: queue.support: give one of `answer_after`, `overflow_after`, `no_agents_after` (the wait ends once)",
            ]
        );
        let script = QueueScript {
            joined: Ok(3),
            ewt: Some(Duration::from_secs(100)),
            announce_every: Some(Duration::from_secs(30)),
            end: Some((Duration::from_secs(70), QueueEnd::Overflow)),
        };
        let (first, later) = script.events();
        assert_eq!(
            first,
            QueueEvent::Joined {
                position: 3,
                ewt: Some(Duration::from_secs(100))
            }
        );
        assert_eq!(
            later,
            [
                (
                    Duration::from_secs(30),
                    QueueEvent::Announce {
                        position: 2,
                        ewt: Some(Duration::from_secs(70))
                    }
                ),
                (
                    Duration::from_secs(60),
                    QueueEvent::Announce {
                        position: 1,
                        ewt: Some(Duration::from_secs(40))
                    }
                ),
                (Duration::from_secs(70), QueueEvent::Overflow),
            ]
        );
    }

    #[test]
    fn exact_list_diff_marks_missing_and_extra() {
        let want: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        let got: Vec<String> = ["a", "x", "c", "d"].map(String::from).to_vec();
        let eq = |w: &str, i: usize| w == got[i];
        assert_eq!(diff(&want, &got, &eq), ["  a", "- b", "+ x", "  c", "+ d"]);
    }
}
