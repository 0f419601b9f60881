//! The flow interpreter: one [`Run`] per call, sans-IO.
//!
//! Feed it events with the current time (`handle_digit`,
//! `handle_playback_finished`, `handle_timeout`), then drain `poll_action`
//! and re-arm a timer at `poll_timeout`. It never reads the clock, never
//! blocks and never panics, whatever digits arrive in whatever order.
//!
//! Timing model (VoiceXML 2.0 Appendix D style; see `docs/flows.md`):
//! - A `menu`/`collect` plays its prompt; with `barge_in` (the default) a key
//!   stops it ([`Action::StopPlayback`]) and counts as input. The no-input
//!   (first-digit) timer starts only when the prompt has finished.
//! - Keys pressed while nothing listens (during a `play`, a feedback prompt
//!   without barge-in, or between nodes) go to a type-ahead buffer that the
//!   next `menu`/`collect` consumes first; a node with `flush: true` empties it.
//! - A failure (invalid key, no input) plays the `invalid`/`no_input` prompt
//!   followed by the prompt again; after `retries` failures the feedback plays
//!   and the flow goes to `max_failures` (or says goodbye and hangs up).
//! - A `lookup`/`verify_pin`/`update` node emits [`Action::Directory`] and
//!   waits for [`Run::handle_directory_response`] with the same id; after
//!   `filler_after` its `filler` plays; at `timeout` it takes the `timeout`
//!   branch and a later answer is ignored. Keys meanwhile are typed ahead.
//! - A `queue` node emits [`Action::Enqueue`]; the ACD answers through
//!   [`Run::handle_queue_event`]. While queued the run owns what the caller
//!   hears: an announcement at the join and at every [`QueueEvent::Announce`],
//!   the node's music looped in between. Leave keys barge in
//!   ([`Action::LeaveQueue`], then their node); other keys are dropped, not
//!   typed ahead. The ACD owns all wait timing: the run keeps no queue timer.
//!   Once [`QueueEvent::Bridged`], the run only waits for the call to end.
//! - A `survey` node listens like a one-key menu: keys 1 to `scale` are the
//!   answer (kept in [`Run::surveys`], then `thanks` plays and the flow goes
//!   to `next`); any other key is an invalid failure, silence a no-input one;
//!   out of attempts it goes to `next` unanswered. A survey answered once in
//!   a call is not asked again: entering it again goes straight to `next`.
//! - A `callback` node emits [`Action::RequestCallback`] and waits (at most
//!   [`CALLBACK_TIMEOUT`]) for the answer; a `transfer` emits
//!   [`Action::Transfer`] and takes its `failed` branch on
//!   [`QueueEvent::TransferFailed`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::calendar::Status;
use super::compile::{
    Case, CmpOp, Collect, DirNode, DirOp, FlowId, FlowSet, Input, Kind, LOOKUP_APPOINTMENT_STATUS,
    LangId, MAX_PRIORITY, Menu, NodeId, Outcome, Part, Priority, Prompts, QueueNode, QueueOutcome,
    Survey, Template, Test, VAR_CALLER, VAR_DIALLED, Value, VarId,
};
use super::say::{self, SayAs};
use crate::directory::{
    CustomerRecord, DirectoryRequest, DirectoryResponse, LookupKey, PinOutcome,
};
use crate::media::types::{Digit, PromptId};

/// Keys kept in the type-ahead buffer; further keys are dropped until it drains.
pub const TYPEAHEAD_LIMIT: usize = 32;
/// Nodes entered in a row without waiting for anything before the run gives up.
pub const MAX_STEPS: usize = 1000;
/// Deepest `subflow` nesting.
pub const MAX_SUBFLOW_DEPTH: usize = 8;
/// Longest path kept for the call record.
pub const MAX_PATH: usize = 512;
/// How long a `callback` node waits for the queue's answer before its `failed` branch.
pub const CALLBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// Who is calling whom, as seen by the flow (`$caller`, `$dialled`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CallInfo {
    pub caller: String,
    pub dialled: String,
}

/// One `survey` offered during the call, for its record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SurveyResult {
    /// The survey's `name` (its id in records and KPIs).
    pub name: String,
    /// Keys 1 to `scale` were accepted.
    pub scale: u8,
    /// The key pressed; `None`: not answered (silence, wrong keys, or the caller hung up).
    pub score: Option<u8>,
    /// When the survey node was first entered.
    pub offered_at: Instant,
    pub answered_at: Option<Instant>,
    /// The node was left: answered, or out of attempts. False while it still
    /// listens (a call that ends then was offered the survey and did not answer).
    pub done: bool,
}

/// What the call should do next. Drain with [`Run::poll_action`] after every event.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Start playing these prompts in order, replacing whatever plays. When
    /// they end on their own, call [`Run::handle_playback_finished`].
    /// `barge_in`: a key will interrupt them (the run then emits `StopPlayback`).
    Play {
        prompts: Vec<PromptId>,
        barge_in: bool,
    },
    /// Stop the current playback now (barge-in). No playback-finished event follows.
    StopPlayback,
    /// The flow ended: hang up (send BYE).
    Hangup,
    /// Blind transfer to a SIP/tel URI; the flow is over.
    Transfer { target: String },
    /// Ask the customer directory (off the media thread, e.g. with
    /// [`crate::directory::execute`]) and pass the answer to
    /// [`Run::handle_directory_response`] with this `id`. The run keeps its
    /// own deadline: no answer in time takes the node's `timeout` branch.
    Directory { id: u64, request: DirectoryRequest },
    /// Join `queue` (higher `priority` is served first); answer with
    /// [`Run::handle_queue_event`]: [`QueueEvent::Joined`] or
    /// [`QueueEvent::Refused`], then announcements, and finally a bridge or
    /// an exit. `resume`: this call left the queue earlier with a leave key
    /// (the ACD kept its place), so it asks for that place back.
    Enqueue {
        queue: String,
        priority: i32,
        resume: bool,
    },
    /// The caller pressed a leave key: take the call out of the queue it is
    /// in, keeping its place when `keep_place` (always, for leave keys). The
    /// run goes on to the key's node.
    LeaveQueue { keep_place: bool },
    /// Ask `queue` to call `number` back (`+` and digits only); answer with
    /// [`QueueEvent::CallbackRegistered`], `CallbackDuplicate` or `CallbackFailed`.
    RequestCallback { queue: String, number: String },
}

/// What the ACD (or the outbound leg of a transfer) tells the run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum QueueEvent {
    /// The call is in the queue at `position` (1 = next), with the
    /// estimated wait when the queue has one.
    Joined {
        position: usize,
        ewt: Option<Duration>,
    },
    /// The queue did not take the call.
    Refused(QueueRefusal),
    /// Time for a periodic announcement.
    Announce {
        position: usize,
        ewt: Option<Duration>,
    },
    /// The queue's longest wait was reached: the call left the queue.
    Overflow,
    /// Every agent logged out while the caller waited: the call left the queue.
    NoAgents,
    /// An agent's phone rings for this call (the caller keeps hearing music).
    AgentRinging,
    /// The caller talks to an agent.
    Bridged,
    /// The agent answered but the call could not be connected.
    BridgeFailed,
    CallbackRegistered,
    /// This number already waits for a callback from this queue.
    CallbackDuplicate,
    CallbackFailed,
    /// The transfer target was busy, did not answer or could not be reached.
    TransferFailed,
}

/// Why a queue refused a call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueueRefusal {
    /// No such queue (any more): the flow's `failed` branch.
    UnknownQueue,
    /// As many callers wait as the queue allows: `full`.
    Full,
    /// No agent is logged in: `no_agents`.
    NoAgents,
    /// The queue is shutting down and takes no new calls: `no_agents`.
    Draining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// A prompt (the node's, or feedback + reprompt) is playing.
    Prompt,
    /// Waiting for keys; timers run.
    Listen,
}

#[derive(Debug, Clone)]
struct InputState {
    phase: Phase,
    failures: u32,
    buf: Vec<Digit>,
    first: Option<Instant>,
    inter: Option<Instant>,
    total: Option<Instant>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    Node(NodeId),
    Hangup,
}

#[derive(Debug, Clone)]
enum State {
    /// A `play` or `say` node's prompts are playing.
    Playing { barge_in: bool, next: NodeId },
    /// A `menu` or `collect` node is prompting or listening.
    Input(InputState),
    /// Out of retries: the last feedback plays, then `then`.
    Leaving { then: After },
    /// A directory node waits for the answer to request `id`.
    Waiting {
        id: u64,
        deadline: Instant,
        filler_at: Option<Instant>,
    },
    /// A `queue` node: waiting for an agent.
    Queued(QueueState),
    /// Talking to an agent; only a hangup (or a failed bridge) follows.
    Bridged,
    /// A `callback` node waits for the queue's answer.
    CallingBack { deadline: Instant },
    /// A `transfer` was asked for; a failure takes `failed` (none: hang up).
    Transferring { failed: Option<NodeId> },
    /// Hung up or transferred.
    Finished,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct QueueState {
    /// The queue confirmed the join (music plays from then on).
    joined: bool,
    /// What our latest `Play` is.
    hearing: Hearing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hearing {
    Nothing,
    Announcement,
    Music,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failure {
    Invalid,
    NoInput,
}

/// One call's progress through a [`FlowSet`].
#[derive(Debug)]
pub struct Run {
    set: Arc<FlowSet>,
    root: FlowId,
    flow: FlowId,
    node: NodeId,
    /// Return points of `subflow` calls.
    stack: Vec<(FlowId, NodeId)>,
    lang: LangId,
    vars: Vec<Option<String>>,
    typeahead: VecDeque<Digit>,
    actions: VecDeque<Action>,
    path: Vec<String>,
    state: State,
    /// A `Play` we issued has not finished or been stopped.
    playing: bool,
    /// Node to enter next (set by transitions, consumed by `settle`).
    pending: Option<NodeId>,
    /// Wall-clock time at `started`, for `hours` nodes.
    wall_start: Option<SystemTime>,
    started: Instant,
    /// Id of the latest directory request.
    last_request: u64,
    /// Queues this call left with a leave key (the ACD keeps its place).
    left_queues: Vec<String>,
    /// Surveys offered, in the order first offered; one entry per survey name.
    surveys: Vec<SurveyResult>,
}

impl Run {
    /// Starts `flow` for a call; the first actions are ready to poll.
    /// An id not from `set` ends the call at once (`Hangup`).
    ///
    /// Without a wall clock an `hours` node takes its `closed` branch: the
    /// runtime should use [`Run::new_at`].
    pub fn new(set: Arc<FlowSet>, flow: FlowId, call: CallInfo, now: Instant) -> Run {
        Run::start(set, flow, call, now, None)
    }

    /// Like [`Run::new`], with the wall-clock time at `now` (read by the
    /// runtime, injected by tests) so `hours` nodes can consult calendars.
    pub fn new_at(
        set: Arc<FlowSet>,
        flow: FlowId,
        call: CallInfo,
        now: Instant,
        wall: SystemTime,
    ) -> Run {
        Run::start(set, flow, call, now, Some(wall))
    }

    fn start(
        set: Arc<FlowSet>,
        flow: FlowId,
        call: CallInfo,
        now: Instant,
        wall: Option<SystemTime>,
    ) -> Run {
        let (lang, start) = match set.flow(flow) {
            Some(f) => (f.language, Some(f.start)),
            None => (LangId(0), None),
        };
        let mut vars = vec![None; set.vars.len().max(2)];
        vars[VAR_CALLER.0 as usize] = Some(call.caller);
        vars[VAR_DIALLED.0 as usize] = Some(call.dialled);
        let mut run = Run {
            set,
            root: flow,
            flow,
            node: NodeId(0),
            stack: Vec::new(),
            lang,
            vars,
            typeahead: VecDeque::new(),
            actions: VecDeque::new(),
            path: Vec::new(),
            state: State::Finished,
            playing: false,
            pending: None,
            wall_start: wall,
            started: now,
            last_request: 0,
            left_queues: Vec::new(),
            surveys: Vec::new(),
        };
        match start {
            Some(start) => {
                run.state = State::Leaving {
                    then: After::Hangup,
                };
                run.pending = Some(start);
                run.settle(now);
            }
            None => {
                run.state = State::Leaving {
                    then: After::Hangup,
                };
                run.hang_up();
            }
        }
        run
    }

    // -- getters --------------------------------------------------------------

    /// True once the flow has nothing more to run: it hung up, or it
    /// transferred the call without a `failed` branch (a failed transfer
    /// then only hangs up).
    pub fn is_finished(&self) -> bool {
        matches!(
            self.state,
            State::Finished | State::Transferring { failed: None }
        )
    }

    /// True while the call waits in a queue (from the `Enqueue` until it is
    /// bridged, leaves, or is turned away).
    pub fn is_queued(&self) -> bool {
        matches!(self.state, State::Queued(_))
    }

    /// True while the caller talks to an agent: no prompts, no timers, keys ignored.
    pub fn is_bridged(&self) -> bool {
        matches!(self.state, State::Bridged)
    }

    /// The queue the call waits in or was bridged from.
    pub fn queue(&self) -> Option<&str> {
        if !matches!(self.state, State::Queued(_) | State::Bridged) {
            return None;
        }
        match self.kind_in(&self.set) {
            Some(Kind::Queue(q)) => Some(q.queue.as_str()),
            _ => None,
        }
    }

    /// Node names visited, in order (`flow.node` inside subflows), for the call record.
    pub fn path(&self) -> &[String] {
        &self.path
    }

    pub fn flow_set(&self) -> &Arc<FlowSet> {
        &self.set
    }

    /// The flow the call started in.
    pub fn flow_id(&self) -> FlowId {
        self.root
    }

    /// Name of the node the run is at.
    pub fn current_node(&self) -> &str {
        self.set
            .flow(self.flow)
            .and_then(|f| f.nodes.get(self.node.0 as usize))
            .map(|n| n.name.as_str())
            .unwrap_or("")
    }

    /// True while the call is at a `menu` node, where keys are navigation. Anywhere else a
    /// key may be (or be typed ahead into) a PIN or an account number, so calls keep such
    /// keys out of records and logs.
    pub fn is_at_menu(&self) -> bool {
        // Only while the menu itself takes input: once it is leaving (retries spent), keys
        // are typed ahead for whatever node comes next, perhaps a PIN `collect`.
        matches!(self.state, State::Input(_))
            && self
                .set
                .flow(self.flow)
                .and_then(|f| f.nodes.get(self.node.0 as usize))
                .is_some_and(|n| matches!(n.kind, crate::flow::compile::Kind::Menu(_)))
    }

    /// Current prompt language (`en`, `fr`, ...).
    pub fn language(&self) -> &str {
        self.set
            .languages
            .get(self.lang.0 as usize)
            .map(String::as_str)
            .unwrap_or("")
    }

    /// A flow variable's value (`caller`, `dialled`, `collect` results, `set` values).
    pub fn var(&self, name: &str) -> Option<&str> {
        let i = self.set.vars.iter().position(|v| v == name)?;
        self.vars.get(i)?.as_deref()
    }

    /// The id of the directory request the run waits for, if any.
    pub fn awaiting_directory(&self) -> Option<u64> {
        match self.state {
            State::Waiting { id, .. } => Some(id),
            _ => None,
        }
    }

    /// The surveys offered so far (answered or not), for the call record.
    pub fn surveys(&self) -> &[SurveyResult] {
        &self.surveys
    }

    /// Keys waiting in the type-ahead buffer.
    pub fn typeahead(&self) -> impl Iterator<Item = Digit> + '_ {
        self.typeahead.iter().copied()
    }

    // -- events ---------------------------------------------------------------

    /// A key from the caller (any DTMF source).
    pub fn handle_digit(&mut self, now: Instant, digit: Digit) {
        match &self.state {
            State::Finished => return,
            State::Playing { barge_in, next } => {
                let (barge_in, next) = (*barge_in, *next);
                self.buffer(digit);
                if barge_in {
                    self.stop_playback();
                    self.pending = Some(next);
                }
            }
            State::Leaving { .. } | State::Waiting { .. } | State::CallingBack { .. } => {
                self.buffer(digit)
            }
            State::Input(_) => self.input_digit(now, digit),
            State::Queued(_) => self.queue_digit(digit),
            // Talking to an agent, or handed to another party: keys are theirs.
            State::Bridged | State::Transferring { .. } => return,
        }
        self.settle(now);
    }

    /// The playback started by the latest `Play` ended on its own. Ignored
    /// when nothing of ours is playing (e.g. after `StopPlayback`).
    pub fn handle_playback_finished(&mut self, now: Instant) {
        if !self.playing {
            return;
        }
        self.playing = false;
        match &mut self.state {
            State::Playing { next, .. } => self.pending = Some(*next),
            State::Input(st) => {
                if st.phase == Phase::Prompt {
                    self.listen(now);
                }
            }
            State::Leaving { then } => match *then {
                After::Node(n) => self.pending = Some(n),
                After::Hangup => self.hang_up(),
            },
            State::Queued(q) => {
                if q.hearing != Hearing::Nothing {
                    // The announcement ended, or the music came round: (re)start
                    // the music; back-to-back plays loop without a gap.
                    self.play_music();
                }
            }
            // The filler ended before the answer came: wait on in silence.
            State::Waiting { .. }
            | State::CallingBack { .. }
            | State::Bridged
            | State::Transferring { .. }
            | State::Finished => {}
        }
        self.settle(now);
    }

    /// The answer to the [`Action::Directory`] with this `id`. Ignored when the
    /// run no longer waits for it (it timed out, or the call moved on).
    pub fn handle_directory_response(
        &mut self,
        now: Instant,
        id: u64,
        response: DirectoryResponse,
    ) {
        let State::Waiting { id: want, .. } = self.state else {
            return;
        };
        if want != id {
            return;
        }
        let set = Arc::clone(&self.set);
        let Some(Kind::Directory(d)) = self.kind_in(&set) else {
            return self.hang_up();
        };
        let outcome = self.apply_response(d, response);
        self.leave_directory(d, outcome);
        self.settle(now);
    }

    /// Call at (or after) the instant from [`Run::poll_timeout`]. Early calls are ignored.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let State::CallingBack { deadline } = self.state {
            if deadline <= now {
                let set = Arc::clone(&self.set);
                if let Some(Kind::Callback(c)) = self.kind_in(&set) {
                    self.go(c.failed);
                } else {
                    self.hang_up();
                }
                self.settle(now);
            }
            return;
        }
        if let State::Waiting {
            deadline,
            filler_at,
            ..
        } = self.state
        {
            let set = Arc::clone(&self.set);
            let Some(Kind::Directory(d)) = self.kind_in(&set) else {
                return;
            };
            if deadline <= now {
                self.leave_directory(d, Outcome::Timeout);
            } else if filler_at.is_some_and(|t| t <= now) {
                if let State::Waiting { filler_at, .. } = &mut self.state {
                    *filler_at = None;
                }
                let ids = self.resolve(&d.filler);
                if !ids.is_empty() {
                    self.play(ids, false);
                }
            }
            self.settle(now);
            return;
        }
        let State::Input(st) = &self.state else {
            return;
        };
        if st.phase != Phase::Listen {
            return;
        }
        let due = |t: Option<Instant>| t.is_some_and(|t| t <= now);
        let (total, inter, first) = (due(st.total), due(st.inter), due(st.first));
        let empty = st.buf.is_empty();
        let set = Arc::clone(&self.set);
        let Some(kind) = self.kind_in(&set) else {
            return;
        };
        if total || inter {
            match kind {
                Kind::Menu(m) => self.menu_complete(now, m),
                Kind::Collect(c) if empty => {
                    let _ = c;
                    self.failure(now, Failure::NoInput)
                }
                Kind::Collect(c) => self.collect_complete(now, c),
                _ => {}
            }
        } else if first {
            self.failure(now, Failure::NoInput);
        }
        self.settle(now);
    }

    // -- output ---------------------------------------------------------------

    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// The next instant `handle_timeout` must be called, if any timer runs.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match &self.state {
            State::Input(st) if st.phase == Phase::Listen => {
                [st.first, st.inter, st.total].into_iter().flatten().min()
            }
            State::Waiting {
                deadline,
                filler_at,
                ..
            } => Some(filler_at.map_or(*deadline, |f| f.min(*deadline))),
            State::CallingBack { deadline } => Some(*deadline),
            _ => None,
        }
    }

    // -- internals ------------------------------------------------------------

    fn kind_in<'s>(&self, set: &'s FlowSet) -> Option<&'s Kind> {
        set.flow(self.flow)
            .and_then(|f| f.nodes.get(self.node.0 as usize))
            .map(|n| &n.kind)
    }

    fn input_of(kind: &Kind) -> Option<&Input> {
        match kind {
            Kind::Menu(m) => Some(&m.input),
            Kind::Collect(c) => Some(&c.input),
            Kind::Survey(s) => Some(&s.input),
            _ => None,
        }
    }

    fn buffer(&mut self, d: Digit) {
        if self.typeahead.len() < TYPEAHEAD_LIMIT {
            self.typeahead.push_back(d);
        }
    }

    fn play(&mut self, prompts: Vec<PromptId>, barge_in: bool) {
        self.actions.push_back(Action::Play { prompts, barge_in });
        self.playing = true;
    }

    fn stop_playback(&mut self) {
        if self.playing {
            self.actions.push_back(Action::StopPlayback);
            self.playing = false;
        }
    }

    fn hang_up(&mut self) {
        self.pending = None;
        if !matches!(self.state, State::Finished) {
            self.actions.push_back(Action::Hangup);
        }
        self.playing = false;
        self.state = State::Finished;
    }

    fn resolve(&self, prompts: &Prompts) -> Vec<PromptId> {
        prompts.iter().filter_map(|p| p.get(self.lang)).collect()
    }

    fn record(&mut self, name: &str) {
        if self.path.len() < MAX_PATH {
            let entry = if self.flow == self.root {
                name.to_string()
            } else {
                format!("{}.{name}", self.set.flow_name(self.flow))
            };
            self.path.push(entry);
        } else if self.path.len() == MAX_PATH {
            self.path.push("...".to_string());
        }
    }

    /// Enters pending nodes until the run waits for something.
    fn settle(&mut self, now: Instant) {
        let mut steps = 0;
        loop {
            self.drain_typeahead(now);
            let Some(node) = self.pending.take() else {
                return;
            };
            steps += 1;
            if steps > MAX_STEPS {
                self.hang_up();
                return;
            }
            self.enter(now, node);
        }
    }

    /// Feeds buffered keys to a listening (or barge-in prompting) input node.
    fn drain_typeahead(&mut self, now: Instant) {
        while self.pending.is_none() {
            let ready = match &self.state {
                State::Input(st) => {
                    st.phase == Phase::Listen
                        || Self::input_of_current(&self.set, self.flow, self.node)
                            .is_some_and(|i| i.barge_in)
                }
                _ => false,
            };
            if !ready {
                return;
            }
            let Some(d) = self.typeahead.pop_front() else {
                return;
            };
            self.input_digit(now, d);
        }
    }

    fn input_of_current(set: &FlowSet, flow: FlowId, node: NodeId) -> Option<&Input> {
        set.flow(flow)
            .and_then(|f| f.nodes.get(node.0 as usize))
            .and_then(|n| Self::input_of(&n.kind))
    }

    fn enter(&mut self, now: Instant, node: NodeId) {
        let set = Arc::clone(&self.set);
        let Some(flow) = set.flow(self.flow) else {
            return self.hang_up();
        };
        let Some(n) = flow.nodes.get(node.0 as usize) else {
            return self.hang_up();
        };
        self.node = node;
        self.record(&n.name);
        if n.flush {
            self.typeahead.clear();
        }
        match &n.kind {
            Kind::Goto(t) => self.pending = Some(*t),
            Kind::Hangup => self.hang_up(),
            Kind::Transfer { target, failed } => self.start_transfer(target, *failed),
            Kind::Queue(q) => self.start_queue(q),
            Kind::Callback(c) => {
                match callback_number(&self.eval(&c.number)) {
                    Some(number) => {
                        self.actions.push_back(Action::RequestCallback {
                            queue: c.queue.clone(),
                            number,
                        });
                        self.state = State::CallingBack {
                            deadline: now.checked_add(CALLBACK_TIMEOUT).unwrap_or(now),
                        };
                    }
                    // Nothing a queue could dial (e.g. an anonymous caller).
                    None => self.go(c.failed),
                }
            }
            Kind::Set { assign, next } => {
                for (var, val) in assign {
                    let v = self.eval(val);
                    self.set_var(*var, v);
                }
                self.pending = Some(*next);
            }
            Kind::Branch { cases, otherwise } => {
                let to = cases
                    .iter()
                    .find(|c| self.test(c))
                    .map(|c| c.goto)
                    .unwrap_or(*otherwise);
                self.pending = Some(to);
            }
            Kind::Language { lang, next } => {
                self.lang = *lang;
                self.pending = Some(*next);
            }
            Kind::Subflow { flow: f, next } => match set.flow(*f) {
                Some(sub) if self.stack.len() < MAX_SUBFLOW_DEPTH => {
                    self.stack.push((self.flow, *next));
                    self.flow = *f;
                    self.pending = Some(sub.start);
                }
                _ => self.hang_up(),
            },
            Kind::Return => match self.stack.pop() {
                Some((f, next)) => {
                    self.flow = f;
                    self.pending = Some(next);
                }
                None => self.hang_up(),
            },
            Kind::Hours {
                calendar,
                open,
                closed,
                holiday,
            } => {
                let status = match (self.wall_start, set.calendars.get(*calendar)) {
                    (Some(wall), Some(cal)) => {
                        cal.status(wall + now.saturating_duration_since(self.started))
                    }
                    _ => Status::Closed,
                };
                self.pending = Some(match status {
                    Status::Open => *open,
                    Status::Holiday => holiday.unwrap_or(*closed),
                    Status::Closed => *closed,
                });
            }
            Kind::Play {
                prompts,
                barge_in,
                next,
            } => {
                let ids = self.resolve(prompts);
                self.start_playing(ids, *barge_in, *next);
            }
            Kind::Say {
                how,
                value,
                currency,
                barge_in,
                next,
            } => {
                let text = self.eval(value);
                let currency = currency.as_ref().map(|c| self.eval(c));
                let ids = self.say(*how, &text, currency.as_deref());
                self.start_playing(ids, *barge_in, *next);
            }
            Kind::Directory(d) => self.start_directory(now, d),
            Kind::Menu(m) => self.start_input(now, &m.input),
            Kind::Collect(c) => self.start_input(now, &c.input),
            Kind::Survey(s) => self.start_survey(now, s),
        }
    }

    fn start_survey(&mut self, now: Instant, s: &Survey) {
        match self.surveys.iter_mut().find(|r| r.name == s.name) {
            // Asking a caller who already answered again would count them twice.
            Some(r) if r.score.is_some() => {
                self.pending = Some(s.next);
                return;
            }
            Some(r) => r.done = false,
            None => self.surveys.push(SurveyResult {
                name: s.name.clone(),
                scale: s.scale,
                score: None,
                offered_at: now,
                answered_at: None,
                done: false,
            }),
        }
        self.start_input(now, &s.input);
    }

    /// A key at a survey: 1 to `scale` answers it, anything else is invalid.
    fn survey_digit(&mut self, now: Instant, s: &Survey, d: Digit) {
        let score = d
            .as_char()
            .to_digit(10)
            .filter(|n| (1..=u32::from(s.scale)).contains(n));
        let Some(score) = score else {
            return self.failure(now, Failure::Invalid);
        };
        if let Some(r) = self.surveys.iter_mut().find(|r| r.name == s.name) {
            r.score = Some(score as u8);
            r.answered_at = Some(now);
            r.done = true;
        }
        // Keys during the thanks are typed ahead, as during any `play`.
        let ids = self.resolve(&s.thanks);
        self.start_playing(ids, false, s.next);
    }

    fn start_playing(&mut self, ids: Vec<PromptId>, barge_in: bool, next: NodeId) {
        if ids.is_empty() || (barge_in && !self.typeahead.is_empty()) {
            // Nothing to play, or the caller already typed ahead past it.
            self.pending = Some(next);
            return;
        }
        self.play(ids, barge_in);
        self.state = State::Playing { barge_in, next };
    }

    fn start_input(&mut self, now: Instant, input: &Input) {
        self.state = State::Input(InputState {
            phase: Phase::Prompt,
            failures: 0,
            buf: Vec::new(),
            first: None,
            inter: None,
            total: None,
        });
        let ids = self.resolve(&input.prompt);
        if ids.is_empty() || (input.barge_in && !self.typeahead.is_empty()) {
            self.listen(now);
        } else {
            self.play(ids, input.barge_in);
        }
    }

    /// Prompt over: start the timers. Buffered keys are fed by `drain_typeahead`.
    fn listen(&mut self, now: Instant) {
        let set = Arc::clone(&self.set);
        let Some(input) = Self::input_of_current(&set, self.flow, self.node) else {
            return;
        };
        if let State::Input(st) = &mut self.state {
            st.phase = Phase::Listen;
            if st.buf.is_empty() {
                st.first = now.checked_add(input.timeout);
            }
            if st.total.is_none() {
                st.total = input.total.and_then(|t| now.checked_add(t));
            }
        }
    }

    fn input_digit(&mut self, now: Instant, d: Digit) {
        let set = Arc::clone(&self.set);
        let Some(kind) = self.kind_in(&set) else {
            return;
        };
        let Some(input) = Self::input_of(kind) else {
            return;
        };
        let State::Input(st) = &self.state else {
            return;
        };
        if st.phase == Phase::Prompt {
            if !input.barge_in {
                self.buffer(d);
                return;
            }
            self.stop_playback();
            self.listen(now);
        }
        match kind {
            Kind::Menu(m) => self.menu_digit(now, m, d),
            Kind::Collect(c) => self.collect_digit(now, c, d),
            Kind::Survey(s) => self.survey_digit(now, s, d),
            _ => {}
        }
    }

    fn menu_digit(&mut self, now: Instant, m: &Menu, d: Digit) {
        let State::Input(st) = &mut self.state else {
            return;
        };
        if st.buf.is_empty() && m.repeat == Some(d) {
            // Repeat key: hear the menu again, not a failure.
            st.phase = Phase::Prompt;
            (st.first, st.inter) = (None, None);
            let prompts = m.input.reprompt.as_ref().unwrap_or(&m.input.prompt);
            let ids = self.resolve(prompts);
            if ids.is_empty() {
                self.listen(now);
            } else {
                self.play(ids, m.input.barge_in);
            }
            return;
        }
        st.buf.push(d);
        st.first = None;
        let buf = st.buf.clone();
        let longer = buf.len() < m.max_digits
            && m.options
                .iter()
                .any(|(k, _)| k.len() > buf.len() && k.starts_with(&buf));
        if longer {
            st.inter = now.checked_add(m.input.inter_digit);
            return;
        }
        self.menu_complete(now, m);
    }

    /// The caller finished typing (no longer option possible, or inter-digit timeout).
    fn menu_complete(&mut self, now: Instant, m: &Menu) {
        let State::Input(st) = &self.state else {
            return;
        };
        let buf = &st.buf;
        let exact = |b: &[Digit]| m.options.iter().find(|(k, _)| k == b).map(|(_, n)| *n);
        let chosen = exact(buf).or_else(|| {
            // `#` ends a multi-digit entry early.
            match buf.split_last() {
                Some((Digit::Pound, rest)) if !rest.is_empty() => exact(rest),
                _ => None,
            }
        });
        match chosen {
            Some(n) => self.pending = Some(n),
            None if buf.is_empty() => self.failure(now, Failure::NoInput),
            None => self.failure(now, Failure::Invalid),
        }
    }

    fn collect_digit(&mut self, now: Instant, c: &Collect, d: Digit) {
        let State::Input(st) = &mut self.state else {
            return;
        };
        if c.terminator == Some(d) {
            return self.collect_complete(now, c);
        }
        st.buf.push(d);
        st.first = None;
        if st.buf.len() >= c.max {
            return self.collect_complete(now, c);
        }
        st.inter = now.checked_add(c.input.inter_digit);
    }

    fn collect_complete(&mut self, now: Instant, c: &Collect) {
        let State::Input(st) = &self.state else {
            return;
        };
        let value: String = st.buf.iter().map(|d| d.as_char()).collect();
        let ok = st.buf.len() >= c.min
            && st.buf.len() <= c.max
            && c.pattern.as_ref().is_none_or(|p| p.matches(&value));
        if ok {
            self.set_var(c.into, value);
            self.pending = Some(c.next);
        } else {
            self.failure(now, Failure::Invalid);
        }
    }

    fn failure(&mut self, now: Instant, why: Failure) {
        let set = Arc::clone(&self.set);
        let Some(input) = Self::input_of_current(&set, self.flow, self.node) else {
            return self.hang_up();
        };
        let State::Input(st) = &mut self.state else {
            return;
        };
        st.failures += 1;
        st.buf.clear();
        (st.first, st.inter, st.total) = (None, None, None);
        let failures = st.failures;
        let mut ids = self.resolve(match why {
            Failure::Invalid => &input.invalid,
            Failure::NoInput => &input.no_input,
        });
        if failures >= input.retries {
            if let Some(Kind::Survey(s)) = self.kind_in(&set)
                && let Some(r) = self.surveys.iter_mut().find(|r| r.name == s.name)
            {
                r.done = true;
            }
            let then = match input.max_failures {
                Some(n) => After::Node(n),
                None => {
                    ids.extend(self.resolve(&set.goodbye));
                    After::Hangup
                }
            };
            if ids.is_empty() {
                match then {
                    After::Node(n) => self.pending = Some(n),
                    After::Hangup => self.hang_up(),
                }
            } else {
                self.play(ids, false);
                self.state = State::Leaving { then };
            }
            return;
        }
        if let State::Input(st) = &mut self.state {
            st.phase = Phase::Prompt;
        }
        if input.barge_in && !self.typeahead.is_empty() {
            // The caller is already typing again: skip the feedback.
            self.listen(now);
            return;
        }
        ids.extend(self.resolve(input.reprompt.as_ref().unwrap_or(&input.prompt)));
        if ids.is_empty() {
            self.listen(now);
        } else {
            self.play(ids, input.barge_in);
        }
    }

    fn set_var(&mut self, var: VarId, value: String) {
        let i = var.0 as usize;
        if i >= self.vars.len() {
            self.vars.resize(i + 1, None);
        }
        self.vars[i] = Some(value);
    }

    fn get_var(&self, var: VarId) -> Option<&str> {
        self.vars.get(var.0 as usize).and_then(|v| v.as_deref())
    }

    fn eval(&self, v: &Value) -> String {
        match v {
            Value::Lit(s) => s.clone(),
            Value::Var(var) => self.get_var(*var).unwrap_or("").to_string(),
        }
    }

    fn test(&self, c: &Case) -> bool {
        let val = self.get_var(c.var);
        match &c.test {
            Test::Equals(v) => val.unwrap_or("") == self.eval(v),
            Test::NotEquals(v) => val.unwrap_or("") != self.eval(v),
            Test::In(list) => val.is_some_and(|x| list.iter().any(|l| l == x)),
            Test::Cmp(op, n) => match val.and_then(|x| x.trim().parse::<f64>().ok()) {
                Some(x) => match op {
                    CmpOp::Lt => x < *n,
                    CmpOp::Le => x <= *n,
                    CmpOp::Gt => x > *n,
                    CmpOp::Ge => x >= *n,
                },
                None => false,
            },
            Test::Pattern(p) => val.is_some_and(|x| p.matches(x)),
            Test::IsSet(want) => val.is_some_and(|x| !x.is_empty()) == *want,
        }
    }

    fn fragment(&self, name: &str) -> Option<PromptId> {
        self.set
            .fragments
            .get(self.lang.0 as usize)
            .and_then(|m| m.get(name).copied())
    }

    fn say(&self, how: SayAs, text: &str, currency: Option<&str>) -> Vec<PromptId> {
        let words = match (how, currency) {
            (SayAs::Money, Some(c)) => say::money_words_in(text, c),
            _ => say::words(how, text),
        };
        words
            .unwrap_or_default()
            .iter()
            .filter_map(|n| self.fragment(n))
            .collect()
    }
}

impl Run {
    // -- queue, callback, transfer --------------------------------------------

    /// An answer from the ACD (or the transfer leg). Ignored when the run is
    /// not in the state the event belongs to (e.g. a late `Announce` after
    /// the caller left the queue).
    pub fn handle_queue_event(&mut self, now: Instant, ev: QueueEvent) {
        let set = Arc::clone(&self.set);
        let kind = self.kind_in(&set);
        match (&self.state, kind, ev) {
            (
                State::Queued(_),
                Some(Kind::Queue(q)),
                QueueEvent::Joined { position, ewt } | QueueEvent::Announce { position, ewt },
            ) => {
                if let State::Queued(st) = &mut self.state {
                    st.joined = true;
                }
                let ids = self.announcement(q, position, ewt);
                if ids.is_empty() {
                    // Nothing to say: keep the music going (or start it).
                    if !matches!(
                        self.state,
                        State::Queued(QueueState {
                            hearing: Hearing::Music,
                            ..
                        })
                    ) {
                        self.play_music();
                    }
                } else {
                    // Replaces the music; the music resumes when it ends.
                    self.play(ids, !q.leave.is_empty());
                    self.set_hearing(Hearing::Announcement);
                }
            }
            (State::Queued(_), Some(Kind::Queue(q)), QueueEvent::Refused(r)) => {
                let outcome = match r {
                    QueueRefusal::UnknownQueue => QueueOutcome::Failed,
                    QueueRefusal::Full => QueueOutcome::Full,
                    QueueRefusal::NoAgents | QueueRefusal::Draining => QueueOutcome::NoAgents,
                };
                self.leave_queue_for(q, outcome);
            }
            (State::Queued(_), Some(Kind::Queue(q)), QueueEvent::Overflow) => {
                self.leave_queue_for(q, QueueOutcome::Overflow)
            }
            (State::Queued(_), Some(Kind::Queue(q)), QueueEvent::NoAgents) => {
                self.leave_queue_for(q, QueueOutcome::NoAgents)
            }
            // The music goes on until the agent picks up.
            (State::Queued(_), _, QueueEvent::AgentRinging) => {}
            (State::Queued(_), Some(Kind::Queue(_)), QueueEvent::Bridged) => {
                self.stop_playback();
                self.state = State::Bridged;
            }
            (State::Queued(_) | State::Bridged, Some(Kind::Queue(q)), QueueEvent::BridgeFailed) => {
                self.leave_queue_for(q, QueueOutcome::Failed)
            }
            (State::CallingBack { .. }, Some(Kind::Callback(c)), ev) => {
                let to = match ev {
                    QueueEvent::CallbackRegistered => c.registered,
                    QueueEvent::CallbackDuplicate => c.duplicate,
                    QueueEvent::CallbackFailed => c.failed,
                    _ => return,
                };
                self.go(to);
            }
            (State::Transferring { failed }, _, QueueEvent::TransferFailed) => match *failed {
                Some(n) => self.go(n),
                None => self.hang_up(),
            },
            _ => return,
        }
        self.settle(now);
    }

    /// Enters a `queue` node: ask to join; the music starts once joined.
    fn start_queue(&mut self, q: &QueueNode) {
        // Keys typed before the queue must not take a leave key by surprise.
        self.typeahead.clear();
        let priority = match q.priority {
            Priority::Fixed(n) => n,
            Priority::Var(v) => self
                .get_var(v)
                .and_then(|s| s.trim().parse::<i64>().ok())
                .map_or(0, |n| {
                    n.clamp(-i64::from(MAX_PRIORITY), i64::from(MAX_PRIORITY)) as i32
                }),
        };
        let resume = match self.left_queues.iter().position(|x| *x == q.queue) {
            Some(i) => {
                self.left_queues.remove(i);
                true
            }
            None => false,
        };
        self.actions.push_back(Action::Enqueue {
            queue: q.queue.clone(),
            priority,
            resume,
        });
        self.state = State::Queued(QueueState {
            joined: false,
            hearing: Hearing::Nothing,
        });
    }

    /// A key while queued: a leave key leaves (keeping the place); any other is dropped.
    fn queue_digit(&mut self, d: Digit) {
        let set = Arc::clone(&self.set);
        let Some(Kind::Queue(q)) = self.kind_in(&set) else {
            return;
        };
        let Some((_, to)) = q.leave.iter().find(|(k, _)| *k == d) else {
            return;
        };
        self.stop_playback();
        self.actions
            .push_back(Action::LeaveQueue { keep_place: true });
        self.left_queues.retain(|x| *x != q.queue);
        self.left_queues.push(q.queue.clone());
        self.go(*to);
    }

    /// The call is out of the queue (the ACD removed it): stop the music and
    /// take the branch for `outcome` (no `failed` branch: hang up).
    fn leave_queue_for(&mut self, q: &QueueNode, outcome: QueueOutcome) {
        self.stop_playback();
        match q.target(outcome) {
            Some(n) => self.go(n),
            None => self.hang_up(),
        }
    }

    fn set_hearing(&mut self, h: Hearing) {
        if let State::Queued(st) = &mut self.state {
            st.hearing = h;
        }
    }

    fn play_music(&mut self) {
        let set = Arc::clone(&self.set);
        let Some(Kind::Queue(q)) = self.kind_in(&set) else {
            return;
        };
        let ids = self.resolve(&q.music);
        if ids.is_empty() {
            self.set_hearing(Hearing::Nothing);
            return;
        }
        self.play(ids, !q.leave.is_empty());
        self.set_hearing(Hearing::Music);
    }

    /// "You are number 3 in the queue. Your estimated wait time is about
    /// five minutes." plus the node's extra prompts; empty when it says nothing.
    fn announcement(&self, q: &QueueNode, position: usize, ewt: Option<Duration>) -> Vec<PromptId> {
        let mut ids = Vec::new();
        if let Some((pre, post)) = &q.announce.position {
            let n = self.say(SayAs::Number, &position.max(1).to_string(), None);
            if !n.is_empty() {
                ids.extend(pre.get(self.lang));
                ids.extend(n);
                ids.extend(post.get(self.lang));
            }
        }
        if let Some((wait, shortly)) = &q.announce.wait {
            match ewt {
                None => ids.extend(shortly.get(self.lang)),
                Some(d) if d < Duration::from_secs(60) => {
                    ids.extend(wait.get(self.lang));
                    ids.extend(self.fragment("say/less-than-a-minute"));
                }
                Some(d) => {
                    // Rounded up: "about 2 minutes" for 61 s.
                    let secs = d.as_secs() + u64::from(d.subsec_nanos() > 0);
                    let mins = secs.div_ceil(60);
                    ids.extend(wait.get(self.lang));
                    ids.extend(self.fragment("say/about"));
                    ids.extend(self.say(SayAs::Number, &mins.to_string(), None));
                    ids.extend(self.fragment(if mins == 1 {
                        "say/minute"
                    } else {
                        "say/minutes"
                    }));
                }
            }
        }
        if !ids.is_empty() {
            ids.extend(self.resolve(&q.announce.extra));
        }
        ids
    }

    /// Enters a `transfer`: fill in the target, or take `failed` when a
    /// variable cannot go into a URI.
    fn start_transfer(&mut self, target: &Template, failed: Option<NodeId>) {
        match self.expand(target) {
            Some(target) => {
                self.actions.push_back(Action::Transfer { target });
                self.playing = false;
                self.state = State::Transferring { failed };
            }
            None => match failed {
                Some(n) => self.go(n),
                None => self.hang_up(),
            },
        }
    }

    /// The target with its variables; `None` when one is empty or holds a
    /// character other than letters, digits and `+ - _ . ~ *` (a caller
    /// must not be able to steer a transfer with what they typed).
    fn expand(&self, t: &Template) -> Option<String> {
        let mut out = String::new();
        for p in &t.0 {
            match p {
                Part::Lit(l) => out.push_str(l),
                Part::Var(v, _) => {
                    let val = self.get_var(*v)?.trim();
                    let ok = !val.is_empty()
                        && val.chars().all(|c| {
                            c.is_ascii_alphanumeric()
                                || matches!(c, '+' | '-' | '_' | '.' | '~' | '*')
                        });
                    if !ok {
                        return None;
                    }
                    out.push_str(val);
                }
            }
        }
        Some(out)
    }

    /// Continues at `n` (the current state is over).
    fn go(&mut self, n: NodeId) {
        self.state = State::Leaving {
            then: After::Node(n),
        };
        self.pending = Some(n);
    }
}

/// A number a queue can call back: `+` and 3 to 20 digits, spaces, dashes,
/// dots and brackets removed; `None` for anything else (`anonymous`, SIP URIs).
fn callback_number(s: &str) -> Option<String> {
    let n: String = s
        .trim()
        .chars()
        .filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')'))
        .collect();
    let digits = n.strip_prefix('+').unwrap_or(&n);
    ((3..=20).contains(&digits.len()) && digits.chars().all(|c| c.is_ascii_digit())).then_some(n)
}

impl Run {
    // -- directory nodes ------------------------------------------------------

    fn start_directory(&mut self, now: Instant, d: &DirNode) {
        let request = match &d.op {
            DirOp::Lookup { phone, key } => {
                let k = self.eval(key);
                DirectoryRequest::Lookup {
                    by: if *phone {
                        LookupKey::Phone(k)
                    } else {
                        LookupKey::Id(k)
                    },
                }
            }
            DirOp::VerifyPin { customer, pin } => DirectoryRequest::VerifyPin {
                customer_id: self.eval(customer),
                pin: self.eval(pin),
                // The store throttles failures per calling number; the call adds its source.
                origin: crate::directory::Origin {
                    caller: self.get_var(VAR_CALLER).unwrap_or("").to_string(),
                    source: None,
                },
            },
            DirOp::Update {
                customer,
                appointment,
                status,
            } => DirectoryRequest::SetAppointmentStatus {
                customer_id: self.eval(customer),
                appointment_id: self.eval(appointment),
                status: *status,
            },
        };
        self.last_request = self.last_request.wrapping_add(1);
        let id = self.last_request;
        self.actions.push_back(Action::Directory { id, request });
        let filler_at = if d.filler.is_empty() {
            None
        } else {
            now.checked_add(d.filler_after)
        };
        self.state = State::Waiting {
            id,
            // Saturates far in the future rather than never timing out.
            deadline: now.checked_add(d.timeout).unwrap_or(now),
            filler_at,
        };
    }

    /// Stops the filler and continues at the branch for `outcome`.
    fn leave_directory(&mut self, d: &DirNode, outcome: Outcome) {
        self.stop_playback();
        match d.target(outcome) {
            Some(n) => {
                // Not waiting any more: a late answer finds no `Waiting` state.
                self.state = State::Leaving {
                    then: After::Node(n),
                };
                self.pending = Some(n);
            }
            None => self.hang_up(),
        }
    }

    /// Sets the variables an answer carries and picks the outcome.
    fn apply_response(&mut self, d: &DirNode, response: DirectoryResponse) -> Outcome {
        match (&d.op, response) {
            (_, DirectoryResponse::TimedOut) => Outcome::Timeout,
            (_, DirectoryResponse::Failed(_)) => Outcome::Error,
            (DirOp::Lookup { .. }, DirectoryResponse::Found(rec)) => {
                self.set_record(Some(&rec));
                Outcome::Found
            }
            (DirOp::Lookup { .. }, DirectoryResponse::NotFound) => {
                self.set_record(None);
                Outcome::NotFound
            }
            (DirOp::VerifyPin { .. }, DirectoryResponse::Pin(p)) => match p {
                PinOutcome::Ok => Outcome::Ok,
                PinOutcome::Wrong { attempts_left } => {
                    self.set_pin_left(Some(attempts_left));
                    Outcome::Wrong
                }
                PinOutcome::Locked { .. } => {
                    self.set_pin_left(Some(0));
                    Outcome::Locked
                }
            },
            // An unknown customer is a wrong PIN: callers cannot probe ids.
            (DirOp::VerifyPin { .. }, DirectoryResponse::NotFound) => {
                self.set_pin_left(None);
                Outcome::Wrong
            }
            (DirOp::Update { status, .. }, DirectoryResponse::Updated) => {
                if let Some(Some(v)) = self.set.lookup_vars.get(LOOKUP_APPOINTMENT_STATUS) {
                    let v = *v;
                    self.set_var(v, status.as_str().to_string());
                }
                Outcome::Ok
            }
            (DirOp::Update { .. }, DirectoryResponse::NotFound) => Outcome::NotFound,
            // An answer of the wrong kind: the runtime mixed something up.
            _ => Outcome::Error,
        }
    }

    fn set_pin_left(&mut self, left: Option<u32>) {
        if let Some(Some(v)) = self.set.pin_vars.first() {
            let v = *v;
            match left {
                Some(n) => self.set_var(v, n.to_string()),
                None => self.clear_var(v),
            }
        }
    }

    /// Sets (or, for `None`, clears) every `customer.*`, `account.*`,
    /// `order.*` and `appointment.*` variable; missing parts are cleared.
    fn set_record(&mut self, rec: Option<&CustomerRecord>) {
        let mut values: Vec<Option<String>> = Vec::with_capacity(17);
        let c = rec.map(|r| &r.customer);
        values.push(c.map(|c| c.id.clone()));
        values.push(c.map(|c| c.name.clone()));
        values.push(c.map(|c| c.language.clone()));
        values.push(c.map(|c| c.tier.clone()));
        let a = rec.and_then(|r| r.account.as_ref());
        values.push(a.map(|a| a.balance_minor.to_string()));
        values.push(a.map(|a| a.currency.clone()));
        values.push(a.map(|a| a.amount()));
        let o = rec.and_then(|r| r.last_order.as_ref());
        values.push(o.map(|o| o.id.clone()));
        values.push(o.map(|o| o.status.clone()));
        values.push(o.map(|o| o.placed_on.clone()));
        values.push(o.and_then(|o| o.shipped_on.clone()));
        values.push(o.and_then(|o| o.eta.clone()));
        let ap = rec.and_then(|r| r.next_appointment.as_ref());
        let local = ap.and_then(|a| a.local_date_time());
        values.push(ap.map(|a| a.id.clone()));
        values.push(ap.map(|a| a.starts_at.clone()));
        values.push(local.as_ref().map(|(d, _)| d.clone()));
        values.push(local.as_ref().map(|(_, t)| t.clone()));
        values.push(ap.map(|a| a.status.as_str().to_string()));
        let ids = self.set.lookup_vars.clone();
        for (var, value) in ids.into_iter().zip(values) {
            let Some(var) = var else { continue };
            match value {
                Some(v) => self.set_var(var, v),
                None => self.clear_var(var),
            }
        }
    }

    fn clear_var(&mut self, var: VarId) {
        if let Some(v) = self.vars.get_mut(var.0 as usize) {
            *v = None;
        }
    }
}

#[allow(dead_code)]
const _ASSERT_SEND_SYNC: fn() = || {
    fn check<T: Send + Sync>() {}
    check::<FlowSet>();
    check::<Run>();
};

#[cfg(test)]
mod tests;
