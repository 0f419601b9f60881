//! ACD (automatic call distribution): queues of waiting callers, agents, and who rings whom.
//!
//! - Owns: every queue's line of waiting callers (and pending callbacks), every agent's
//!   state (logged out, available, reserved, on call, wrap-up, paused), the offers in
//!   flight, the queue counters, the handle-time history behind wait estimates, and the
//!   timers for all of it (announcements, max wait, ring guard, retry delay, wrap-up,
//!   callback retry, remembered-place expiry).
//! - Takes: `handle_*(now, ..)` calls from the agents task (callers joining and leaving,
//!   offer results, calls ending, REGISTER bindings, agent commands, config reloads) and
//!   `handle_timeout(now)` when [`Acd::poll_timeout`] is due.
//! - Gives: [`Output`]s from [`Acd::poll_output`] (offers to ring, cancels, announcements,
//!   overflows, callbacks to dial, every agent state transition with its cause), and an
//!   [`AcdSnapshot`] for the admin API.
//! - Never: does IO, reads the clock, spawns, logs secrets, or panics on any input order.
//!   It holds ids (call ids, agent ids), never sockets or calls.
//!
//! # Design notes
//!
//! - A queue's line is a `BTreeMap` keyed by `(Reverse(priority), enqueue time, seq)`, so
//!   the head is O(log n) and a kept place (leave and return, callbacks) is just the old key.
//!   A second map holds the entries ready for an offer (not ringing, not dialing).
//! - Each queue keeps the set of its *available* agents ordered for its strategy, with the
//!   penalty first, so picking an agent is O(log n) (random and ring_all walk the lowest
//!   tier only).
//! - Callbacks are entries in the line whose id is `CALLBACK_ID_BASE + n`. When one
//!   reaches the head and an agent is free, the agent is reserved and `DialCallback` is
//!   emitted; once the customer is reached the callback id is used as the call id of the
//!   customer's call: `Offer`, `OfferResult`, `handle_call_ended`, `handle_leave` and
//!   `reconcile` all take it like any call id.
//! - Late results: every `Offer` gets exactly one `OfferResult`, also a cancelled one. The
//!   ACD remembers per agent which cancelled offers still owe a result and drops that
//!   result when it comes, so it is never taken for a later offer of the same call. A
//!   result that matches no reservation is ignored. In particular an `Answered` arriving
//!   after `handle_leave` for that call is treated as `CallerGone`: the agent was already
//!   made available at the leave, and the runtime hangs up the agent leg of a call that is
//!   gone.
//! - Timers are a binary heap with lazy deletion: each timer is checked against the
//!   deadline stored in its owner when it fires. `poll_timeout` can therefore name a
//!   stale instant; waking for it is harmless.

pub mod config;
#[cfg(test)]
mod tests;

pub use config::{AcdConfig, AgentConfig, AgentSecret, CallbackConfig, QueueConfig, Strategy};

use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

/// Callback ids start here so they never collide with the runtime's call ids.
pub const CALLBACK_ID_BASE: u64 = 1 << 63;
/// An offer with no result this long after its ring timeout is cancelled.
const GUARD_SLACK: Duration = Duration::from_secs(5);
/// Dialing a callback customer with no `handle_callback_result` this long counts as
/// not reached (the reserved agent must not wait forever).
const CALLBACK_DIAL_GUARD: Duration = Duration::from_secs(90);
/// Cancelled offers whose results an agent remembers (see `Acd::cancelled`).
const MAX_OWED: usize = 8;
/// Handle times kept per queue for the wait estimate.
const HANDLE_WINDOW: usize = 20;
/// How long a kept place is remembered when the queue has no max_wait.
const PLACE_MEMORY_DEFAULT: Duration = Duration::from_secs(600);

/// A caller asks to join a queue.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Enqueue {
    pub call: u64,
    pub queue: String,
    /// Higher first.
    pub priority: i32,
    /// Caller id, for the snapshot.
    pub caller: String,
    /// The call id that earlier left this queue with `keep_place`: its place is given back.
    pub resume: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// 1 = next.
    pub position: usize,
    pub ewt: Option<Duration>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("no such queue")]
    UnknownQueue,
    #[error("the queue is full")]
    Full,
    #[error("no agent is logged in")]
    NoAgents,
    #[error("the queue is being removed")]
    Draining,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum OfferResult {
    Answered,
    Busy,
    Rejected,
    NoAnswer,
    Failed,
    CallerGone,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallbackError {
    #[error("a callback to this number is already pending in this queue")]
    Duplicate,
    #[error("no such queue")]
    UnknownQueue,
    #[error("the queue has too many pending callbacks")]
    Full,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AgentError {
    #[error("no such agent")]
    UnknownAgent,
    #[error("the agent is not logged in")]
    NotLoggedIn,
    #[error("the agent is already logged in")]
    AlreadyLoggedIn,
    #[error("the agent is not paused")]
    NotPaused,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum AgentState {
    LoggedOut,
    Available,
    Reserved,
    OnCall,
    WrapUp,
    Paused,
}

impl AgentState {
    /// The state's name in metrics labels and logs (snake case, stable).
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::LoggedOut => "logged_out",
            AgentState::Available => "available",
            AgentState::Reserved => "reserved",
            AgentState::OnCall => "on_call",
            AgentState::WrapUp => "wrap_up",
            AgentState::Paused => "paused",
        }
    }
}

/// Why an agent changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Cause {
    Login,
    Logout,
    Registered,
    Unregistered,
    /// Reserved for an offer (or a callback being dialed).
    Offered,
    Answered,
    NoAnswer,
    Busy,
    Rejected,
    Failed,
    /// The caller left while the agent rang; no penalty.
    CallerGone,
    /// Another agent answered (ring_all); no penalty.
    OfferCancelled,
    /// No offer result came within ring timeout + 5 s; no penalty.
    OfferTimeout,
    /// max_no_answer consecutive no-answers.
    AutoPaused,
    WrapUpOver,
    Pause(String),
    Unpause,
    CallEnded,
    /// The callback customer was not reached.
    CallbackNotReached,
    /// `reconcile` found the agent's call gone.
    Reconciled,
    /// The agent was removed from the config.
    Reload,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// Ring this agent for this call; exactly one `OfferResult` is expected per Offer,
    /// also when it was cancelled. `waited` counts from the caller's place in line (a kept
    /// place includes the earlier wait).
    Offer {
        call: u64,
        agent: String,
        queue: String,
        ring_timeout: Duration,
        waited: Duration,
    },
    /// Stop ringing (ring_all: another agent answered; the caller left; guard timer).
    CancelOffer {
        call: u64,
        agent: String,
    },
    /// Position and estimate for a waiting caller (skipped while the caller's offer rings).
    Announce {
        call: u64,
        position: usize,
        ewt: Option<Duration>,
    },
    /// Waited max_wait: the call has left the queue.
    Overflow {
        call: u64,
        queue: String,
    },
    /// leave_when_empty: the last agent logged out; the call has left the queue.
    Exit {
        call: u64,
        queue: String,
    },
    /// Dial the customer; an agent is reserved. Answer with `handle_callback_result`.
    DialCallback {
        callback: u64,
        queue: String,
        number: String,
    },
    CallbackFailed {
        callback: u64,
        number: String,
    },
    AgentState {
        agent: String,
        state: AgentState,
        cause: Cause,
    },
    /// The wait estimate given at join, to measure it against the actual wait.
    Prediction {
        call: u64,
        queue: String,
        predicted: Option<Duration>,
    },
}

// ---------------------------------------------------------------------------------------
// Snapshot

#[derive(Serialize, Clone, Debug)]
pub struct AcdSnapshot {
    pub queues: Vec<QueueSnapshot>,
    pub agents: Vec<AgentSnapshot>,
}

#[derive(Serialize, Clone, Debug)]
pub struct QueueSnapshot {
    pub name: String,
    pub strategy: Strategy,
    /// Removed from the config; serving its waiting callers only.
    pub draining: bool,
    /// In line order (callbacks waiting for a retry last).
    pub waiting: Vec<WaitingSnapshot>,
    pub logged_in: usize,
    /// Logged in and not paused.
    pub staffed: usize,
    pub available: usize,
    pub counters: QueueCounters,
    pub avg_handle_ms: Option<u64>,
    /// The estimate a caller joining now would get.
    pub ewt_ms: Option<u64>,
    pub prediction: PredictionStats,
    pub pending_callbacks: usize,
}

#[derive(Serialize, Clone, Debug)]
pub struct WaitingSnapshot {
    pub call: u64,
    /// 1 = next; 0 for a callback waiting for its retry time (not in line).
    pub position: usize,
    pub priority: i32,
    pub waited_ms: u64,
    pub state: WaitState,
    pub caller: String,
    pub callback: bool,
}

#[derive(Serialize, Clone, Copy, Debug, PartialEq, Eq)]
pub enum WaitState {
    Waiting,
    Ringing,
    DialingCallback,
    CallbackRetry,
}

/// Per-queue counts since start.
#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct QueueCounters {
    /// Callers that joined (including returns) plus callbacks requested.
    pub offered: u64,
    pub answered: u64,
    /// Left without keeping their place (hung up, or left to the flow).
    pub abandoned: u64,
    /// Left with a leave key, keeping their place.
    pub left_keep_place: u64,
    pub overflowed: u64,
    /// leave_when_empty exits.
    pub exited: u64,
    pub callbacks_requested: u64,
    pub callbacks_failed: u64,
    /// `Offer` outputs (ring attempts).
    pub ring_attempts: u64,
    /// Entries dropped by `reconcile`.
    pub reconciled: u64,
}

#[derive(Serialize, Clone, Debug, Default, PartialEq, Eq)]
pub struct PredictionStats {
    /// Answered calls that had an estimate.
    pub samples: u64,
    /// Answered calls that had none (no history or no staff at join).
    pub unpredicted: u64,
    pub mean_abs_error_ms: Option<u64>,
}

#[derive(Serialize, Clone, Debug)]
pub struct AgentSnapshot {
    pub id: String,
    pub name: Option<String>,
    pub state: AgentState,
    pub since_ms: u64,
    pub reason: Option<String>,
    pub calls_taken: u64,
    /// (queue, penalty)
    pub queues: Vec<(String, u32)>,
    pub call: Option<u64>,
    pub registered: bool,
}

// ---------------------------------------------------------------------------------------
// Internal state

/// Line order: priority desc, then enqueue time, then join sequence.
type Key = (Reverse<i32>, Instant, u64);

/// A queue's available-agent order. The meaning of `a` and `at` depends on the strategy
/// (see `Acd::avail_key`); the penalty always comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
struct AvailKey {
    penalty: u32,
    a: u64,
    at: Instant,
    idx: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Announce(u64),
    MaxWait(u64),
    Retry(u64),
    CallbackHold(u64),
    Guard(u32),
    WrapUp(u32),
    Place(u64, usize),
}

#[derive(Clone, Copy, Debug)]
struct Member {
    queue: usize,
    penalty: u32,
    /// Position among the queue's agents in id order (round_robin, random, ring_all).
    pos: u32,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum AfterCall {
    Nothing,
    Logout(Cause),
    Pause(String),
}

struct Agent {
    id: String,
    cfg: AgentConfig,
    state: AgentState,
    since: Instant,
    reason: Option<String>,
    idle_since: Instant,
    calls_taken: u64,
    no_answer: u32,
    /// The call (or callback) the agent is reserved for or talking to.
    call: Option<u64>,
    /// The queue of that call; kept through wrap-up.
    queue: Option<usize>,
    answered_at: Option<Instant>,
    wrap_until: Option<Instant>,
    guard_at: Option<Instant>,
    registered: bool,
    /// Gone from the config: dropped once logged out.
    removed: bool,
    after_call: AfterCall,
    members: Vec<Member>,
    in_avail: bool,
    /// Calls whose offers to this agent were cancelled and whose result has not come yet.
    owed: Vec<u64>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum EntryState {
    /// In line, ready for an offer.
    Waiting,
    /// Ringing these agents.
    Offering(Vec<u32>),
    /// A callback being dialed with this agent reserved.
    Dialing(u32),
    /// A callback waiting for its retry time, out of the line (keeps its key).
    Held,
}

struct CallbackInfo {
    number: String,
    attempts: u32,
    /// The customer is on the line: from here on the entry is a call.
    connected: bool,
    held_until: Option<Instant>,
}

struct Entry {
    queue: usize,
    key: Key,
    priority: i32,
    caller: String,
    joined: Instant,
    state: EntryState,
    last_failed: Option<u32>,
    retry_at: Option<Instant>,
    /// The retry timer already in the heap (so re-checks do not stack timers).
    retry_armed: Option<Instant>,
    predicted: Option<Duration>,
    announce_at: Option<Instant>,
    max_wait_at: Option<Instant>,
    callback: Option<CallbackInfo>,
}

impl Entry {
    /// A caller on the line (not a callback still to be dialed).
    fn on_line(&self) -> bool {
        self.callback.as_ref().is_none_or(|c| c.connected)
    }
}

struct Remembered {
    enqueued: Instant,
    seq: u64,
    priority: i32,
    expires: Instant,
}

struct Queue {
    name: String,
    cfg: QueueConfig,
    draining: bool,
    dead: bool,
    line: BTreeMap<Key, u64>,
    ready: BTreeMap<Key, u64>,
    avail: BTreeSet<AvailKey>,
    logged_in: usize,
    staffed: usize,
    rr_last: Option<(u32, u64)>,
    handle_times: VecDeque<Duration>,
    handle_sum: Duration,
    counters: QueueCounters,
    pred_samples: u64,
    pred_unpredicted: u64,
    pred_err_sum_ms: u128,
    callback_numbers: HashSet<String>,
}

impl Queue {
    fn new(name: String, cfg: QueueConfig) -> Queue {
        Queue {
            name,
            cfg,
            draining: false,
            dead: false,
            line: BTreeMap::new(),
            ready: BTreeMap::new(),
            avail: BTreeSet::new(),
            logged_in: 0,
            staffed: 0,
            rr_last: None,
            handle_times: VecDeque::new(),
            handle_sum: Duration::ZERO,
            counters: QueueCounters::default(),
            pred_samples: 0,
            pred_unpredicted: 0,
            pred_err_sum_ms: 0,
            callback_numbers: HashSet::new(),
        }
    }

    fn avg_handle(&self) -> Option<Duration> {
        let n = self.handle_times.len() as u32;
        (n > 0).then(|| self.handle_sum / n)
    }

    /// 1-based rank of `key` in the line, walking from whichever end is nearer (joins
    /// land at the back, VIPs near the front: both are cheap).
    fn position(&self, key: &Key) -> usize {
        let mut front = self.line.range(..*key);
        let mut back = self.line.range(*key..).rev();
        let (mut before, mut from_key) = (0usize, 0usize);
        loop {
            if front.next().is_none() {
                return before + 1;
            }
            before += 1;
            if back.next().is_none() {
                return self.line.len() - from_key + 1;
            }
            from_key += 1;
        }
    }
}

/// xorshift64*: small, seeded, good enough to spread calls.
struct Rng(u64);

impl Rng {
    /// splitmix64 of the seed, so nearby seeds give unrelated streams (and never 0).
    fn seeded(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)).max(1))
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

/// The ACD state machine. See the module documentation.
pub struct Acd {
    epoch: Instant,
    queues: Vec<Queue>,
    queue_ix: HashMap<String, usize>,
    agents: Vec<Agent>,
    agent_ix: HashMap<String, u32>,
    entries: HashMap<u64, Entry>,
    on_call: HashMap<u64, u32>,
    remembered: HashMap<(u64, usize), Remembered>,
    timers: BinaryHeap<Reverse<(Instant, Timer)>>,
    out: VecDeque<Output>,
    dirty: Vec<usize>,
    seq: u64,
    next_callback: u64,
    rng: Rng,
}

impl Acd {
    pub fn new(now: Instant, config: AcdConfig, seed: u64) -> Acd {
        let mut acd = Acd {
            epoch: now,
            queues: Vec::new(),
            queue_ix: HashMap::new(),
            agents: Vec::new(),
            agent_ix: HashMap::new(),
            entries: HashMap::new(),
            on_call: HashMap::new(),
            remembered: HashMap::new(),
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            dirty: Vec::new(),
            seq: 0,
            next_callback: 0,
            rng: Rng::seeded(seed),
        };
        acd.reconfigure(now, config);
        acd
    }

    // -----------------------------------------------------------------------------------
    // Reload

    /// Applies a new config without logging agents out or touching waiting callers.
    /// Removed queues drain; removed agents are logged out (cause Reload) once free.
    pub fn reconfigure(&mut self, now: Instant, config: AcdConfig) {
        for ai in 0..self.agents.len() {
            self.unindex(ai as u32);
        }
        for (name, qc) in &config.queues {
            match self.queue_ix.get(name) {
                Some(&qi) => {
                    let q = &mut self.queues[qi];
                    q.cfg = qc.clone();
                    q.draining = false;
                }
                None => {
                    self.queues.push(Queue::new(name.clone(), qc.clone()));
                    self.queue_ix.insert(name.clone(), self.queues.len() - 1);
                }
            }
        }
        for (name, &qi) in &self.queue_ix {
            if !config.queues.contains_key(name) && !self.queues[qi].draining {
                tracing::info!(queue = %name, "queue removed from config: draining");
                self.queues[qi].draining = true;
            }
        }
        for (id, ac) in &config.agents {
            match self.agent_ix.get(id) {
                Some(&ai) => {
                    let a = &mut self.agents[ai as usize];
                    a.cfg = ac.clone();
                    a.removed = false;
                    if a.after_call == AfterCall::Logout(Cause::Reload) {
                        a.after_call = AfterCall::Nothing;
                    }
                }
                None => {
                    self.agents.push(Agent {
                        id: id.clone(),
                        cfg: ac.clone(),
                        state: AgentState::LoggedOut,
                        since: now,
                        reason: None,
                        idle_since: now,
                        calls_taken: 0,
                        no_answer: 0,
                        call: None,
                        queue: None,
                        answered_at: None,
                        wrap_until: None,
                        guard_at: None,
                        registered: false,
                        removed: false,
                        after_call: AfterCall::Nothing,
                        members: Vec::new(),
                        in_avail: false,
                        owed: Vec::new(),
                    });
                    self.agent_ix
                        .insert(id.clone(), (self.agents.len() - 1) as u32);
                }
            }
        }
        // Memberships: the configured queues (with skills), plus the old memberships of
        // draining queues so their callers are still served.
        let mut pos: HashMap<usize, u32> = HashMap::new();
        for (id, ac) in &config.agents {
            let ai = self.agent_ix[id] as usize;
            let mut members: Vec<Member> = self.agents[ai]
                .members
                .iter()
                .filter(|m| self.queues[m.queue].draining && !self.queues[m.queue].dead)
                .copied()
                .collect();
            for (qname, &penalty) in &ac.queues {
                let Some(&qi) = self.queue_ix.get(qname) else {
                    continue;
                };
                let q = &self.queues[qi];
                if q.cfg.skills.iter().all(|s| ac.skills.contains(s)) {
                    let p = pos.entry(qi).or_insert(0);
                    members.push(Member {
                        queue: qi,
                        penalty,
                        pos: *p,
                    });
                    *p += 1;
                }
            }
            self.agents[ai].members = members;
        }
        let removed: Vec<u32> = self
            .agent_ix
            .iter()
            .filter(|(id, _)| !config.agents.contains_key(*id))
            .map(|(_, &ai)| ai)
            .collect();
        for &ai in &removed {
            let a = &mut self.agents[ai as usize];
            a.removed = true;
            a.members.clear();
        }
        self.recount();
        for ai in 0..self.agents.len() {
            self.reindex(ai as u32);
        }
        for ai in removed {
            let a = &mut self.agents[ai as usize];
            tracing::info!(agent = %a.id, "agent removed from config");
            match a.state {
                AgentState::LoggedOut => self.drop_agent(ai),
                AgentState::OnCall | AgentState::Reserved => {
                    a.after_call = AfterCall::Logout(Cause::Reload);
                }
                _ => {
                    self.set_state(now, ai, AgentState::LoggedOut, Cause::Reload);
                    self.drop_agent(ai);
                }
            }
        }
        let qis: Vec<usize> = self.queue_ix.values().copied().collect();
        for qi in qis {
            self.mark_dirty(qi);
            self.maybe_drop_queue(qi);
        }
        self.dispatch(now);
    }

    /// Per-queue logged-in and staffed counts from scratch.
    fn recount(&mut self) {
        for q in &mut self.queues {
            q.logged_in = 0;
            q.staffed = 0;
        }
        for a in &self.agents {
            for m in &a.members {
                let q = &mut self.queues[m.queue];
                if a.state != AgentState::LoggedOut {
                    q.logged_in += 1;
                    if a.state != AgentState::Paused {
                        q.staffed += 1;
                    }
                }
            }
        }
    }

    fn drop_agent(&mut self, ai: u32) {
        let a = &self.agents[ai as usize];
        if a.removed && a.state == AgentState::LoggedOut && self.agent_ix.get(&a.id) == Some(&ai) {
            self.agent_ix.remove(&a.id);
        }
    }

    fn maybe_drop_queue(&mut self, qi: usize) {
        let q = &self.queues[qi];
        if !q.draining || q.dead || !q.line.is_empty() || !q.callback_numbers.is_empty() {
            return;
        }
        tracing::info!(queue = %q.name, "drained queue removed");
        self.queues[qi].dead = true;
        let name = self.queues[qi].name.clone();
        if self.queue_ix.get(&name) == Some(&qi) {
            self.queue_ix.remove(&name);
        }
        for ai in 0..self.agents.len() {
            if self.agents[ai].members.iter().any(|m| m.queue == qi) {
                self.unindex(ai as u32);
                self.agents[ai].members.retain(|m| m.queue != qi);
                self.reindex(ai as u32);
            }
        }
        self.remembered.retain(|(_, q), _| *q != qi);
    }

    // -----------------------------------------------------------------------------------
    // Callers

    pub fn handle_enqueue(&mut self, now: Instant, e: Enqueue) -> Result<Joined, Refused> {
        let &qi = self.queue_ix.get(&e.queue).ok_or(Refused::UnknownQueue)?;
        let q = &self.queues[qi];
        if q.draining {
            return Err(Refused::Draining);
        }
        if q.cfg.max_len > 0 && q.line.len() >= q.cfg.max_len {
            return Err(Refused::Full);
        }
        if !q.cfg.join_when_empty && q.logged_in == 0 {
            return Err(Refused::NoAgents);
        }
        if self.entries.contains_key(&e.call) {
            // Moving to another queue (or re-joining): the old place is given up.
            self.remove_entry(now, e.call, Removal::Abandoned);
        }
        let key = match e.resume.and_then(|r| self.remembered.remove(&(r, qi))) {
            Some(r) => (Reverse(e.priority), r.enqueued, r.seq),
            None => (Reverse(e.priority), now, self.next_seq()),
        };
        let q = &mut self.queues[qi];
        q.line.insert(key, e.call);
        q.ready.insert(key, e.call);
        q.counters.offered += 1;
        let position = q.position(&key);
        let ewt = self.ewt(qi, position);
        let q = &self.queues[qi];
        let announce_at = (!q.cfg.announce_every.is_zero()).then(|| now + q.cfg.announce_every);
        let max_wait_at = (!q.cfg.max_wait.is_zero()).then(|| now + q.cfg.max_wait);
        if let Some(t) = announce_at {
            self.timers.push(Reverse((t, Timer::Announce(e.call))));
        }
        if let Some(t) = max_wait_at {
            self.timers.push(Reverse((t, Timer::MaxWait(e.call))));
        }
        self.entries.insert(
            e.call,
            Entry {
                queue: qi,
                key,
                priority: e.priority,
                caller: e.caller,
                joined: now,
                state: EntryState::Waiting,
                last_failed: None,
                retry_at: None,
                retry_armed: None,
                predicted: ewt,
                announce_at,
                max_wait_at,
                callback: None,
            },
        );
        self.out.push_back(Output::Prediction {
            call: e.call,
            queue: e.queue,
            predicted: ewt,
        });
        self.mark_dirty(qi);
        self.dispatch(now);
        Ok(Joined { position, ewt })
    }

    pub fn handle_leave(&mut self, now: Instant, call: u64, keep_place: bool) {
        let Some(e) = self.entries.get(&call) else {
            return;
        };
        let why = if keep_place && e.callback.is_none() {
            let qi = e.queue;
            let q = &self.queues[qi];
            let memory = if q.cfg.max_wait.is_zero() {
                PLACE_MEMORY_DEFAULT
            } else {
                q.cfg.max_wait
            };
            let expires = now + memory;
            self.remembered.insert(
                (call, qi),
                Remembered {
                    enqueued: e.key.1,
                    seq: e.key.2,
                    priority: e.priority,
                    expires,
                },
            );
            self.timers.push(Reverse((expires, Timer::Place(call, qi))));
            Removal::KeptPlace
        } else {
            Removal::Abandoned
        };
        self.remove_entry(now, call, why);
        self.dispatch(now);
    }

    pub fn handle_callback_request(
        &mut self,
        now: Instant,
        call: u64,
        queue: &str,
        number: &str,
    ) -> Result<u64, CallbackError> {
        let &qi = self
            .queue_ix
            .get(queue)
            .ok_or(CallbackError::UnknownQueue)?;
        let q = &self.queues[qi];
        if q.draining {
            return Err(CallbackError::UnknownQueue);
        }
        if q.callback_numbers.contains(number) {
            return Err(CallbackError::Duplicate);
        }
        if q.callback_numbers.len() >= q.cfg.callback.max_pending {
            return Err(CallbackError::Full);
        }
        let (enqueued, seq, priority) = match self.entries.get(&call) {
            Some(e) if e.queue == qi && e.callback.is_none() => {
                let place = (e.key.1, e.key.2, e.priority);
                self.remove_entry(now, call, Removal::KeptPlace);
                place
            }
            _ => match self.remembered.remove(&(call, qi)) {
                Some(r) => (r.enqueued, r.seq, r.priority),
                None => (now, self.next_seq(), 0),
            },
        };
        let id = CALLBACK_ID_BASE + self.next_callback;
        self.next_callback += 1;
        let key = (Reverse(priority), enqueued, seq);
        let q = &mut self.queues[qi];
        q.line.insert(key, id);
        q.ready.insert(key, id);
        q.callback_numbers.insert(number.to_string());
        q.counters.offered += 1;
        q.counters.callbacks_requested += 1;
        self.entries.insert(
            id,
            Entry {
                queue: qi,
                key,
                priority,
                caller: number.to_string(),
                joined: now,
                state: EntryState::Waiting,
                last_failed: None,
                retry_at: None,
                retry_armed: None,
                predicted: None,
                announce_at: None,
                max_wait_at: None,
                callback: Some(CallbackInfo {
                    number: number.to_string(),
                    attempts: 0,
                    connected: false,
                    held_until: None,
                }),
            },
        );
        self.mark_dirty(qi);
        self.dispatch(now);
        Ok(id)
    }

    pub fn handle_callback_result(&mut self, now: Instant, callback: u64, reached: bool) {
        let Some(e) = self.entries.get(&callback) else {
            return;
        };
        let EntryState::Dialing(ai) = e.state else {
            tracing::debug!(callback, "callback result without a dial in progress");
            return;
        };
        if reached {
            let qi = e.queue;
            let (ring, max_wait) = {
                let c = &self.queues[qi].cfg;
                (c.ring_timeout, c.max_wait)
            };
            let waited = now.saturating_duration_since(e.key.1);
            let e = self.entries.get_mut(&callback).expect("checked above");
            e.state = EntryState::Offering(vec![ai]);
            if let Some(cb) = &mut e.callback {
                cb.connected = true;
            }
            if !max_wait.is_zero() {
                e.max_wait_at = Some(now + max_wait);
                self.timers
                    .push(Reverse((now + max_wait, Timer::MaxWait(callback))));
            }
            let guard = now + ring + GUARD_SLACK;
            self.agents[ai as usize].guard_at = Some(guard);
            self.timers.push(Reverse((guard, Timer::Guard(ai))));
            let q = &mut self.queues[qi];
            q.counters.ring_attempts += 1;
            self.out.push_back(Output::Offer {
                call: callback,
                agent: self.agents[ai as usize].id.clone(),
                queue: q.name.clone(),
                ring_timeout: ring,
                waited,
            });
        } else {
            self.callback_not_reached(now, callback, ai);
        }
        self.dispatch(now);
    }

    fn callback_not_reached(&mut self, now: Instant, callback: u64, ai: u32) {
        self.free_agent(now, ai, Cause::CallbackNotReached);
        let Some(e) = self.entries.get_mut(&callback) else {
            return;
        };
        let qi = e.queue;
        let cfg = self.queues[qi].cfg.callback.clone();
        let cb = e.callback.as_mut().expect("dialing entries are callbacks");
        cb.attempts += 1;
        e.state = EntryState::Waiting;
        if cb.attempts > cfg.retries {
            let number = cb.number.clone();
            self.queues[qi].counters.callbacks_failed += 1;
            self.remove_entry(now, callback, Removal::CallbackFailed);
            self.out
                .push_back(Output::CallbackFailed { callback, number });
        } else {
            let at = now + cfg.retry_after;
            cb.held_until = Some(at);
            e.state = EntryState::Held;
            let key = e.key;
            self.queues[qi].line.remove(&key);
            self.timers
                .push(Reverse((at, Timer::CallbackHold(callback))));
        }
    }

    fn next_seq(&mut self) -> u64 {
        self.seq += 1;
        self.seq
    }

    /// Estimated wait for a caller at `position` (1 = next), or None when unreliable (no
    /// handle-time history yet, or nobody staffed). Callers that available agents will
    /// take right away wait 0; the rest wait for `ceil(n / staffed)` rounds of the
    /// average handle time, the first round half-done on average.
    fn ewt(&self, qi: usize, position: usize) -> Option<Duration> {
        let q = &self.queues[qi];
        let avg = q.avg_handle()?;
        if q.staffed == 0 {
            return None;
        }
        let available = q.avail.len();
        if position <= available {
            return Some(Duration::ZERO);
        }
        let n = (position - available) as u64;
        let rounds = n.div_ceil(q.staffed as u64);
        Some(avg.mul_f64(rounds as f64 - 0.5))
    }

    // -----------------------------------------------------------------------------------
    // Offers

    pub fn handle_offer_result(
        &mut self,
        now: Instant,
        call: u64,
        agent: &str,
        result: OfferResult,
    ) {
        let Some(&ai) = self.agent_ix.get(agent) else {
            tracing::debug!(call, agent, "offer result for an unknown agent");
            return;
        };
        let a = &mut self.agents[ai as usize];
        if let Some(i) = a.owed.iter().position(|&c| c == call) {
            // The result of an offer we cancelled (every Offer gets one result).
            a.owed.remove(i);
            tracing::debug!(call, agent, ?result, "result of a cancelled offer ignored");
            return;
        }
        if a.state != AgentState::Reserved || a.call != Some(call) {
            // Cancelled earlier (caller left, ring_all lost, guard timer): already free.
            tracing::debug!(call, agent, ?result, "late offer result ignored");
            return;
        }
        let ringing = matches!(
            self.entries.get(&call).map(|e| &e.state),
            Some(EntryState::Offering(v)) if v.contains(&ai)
        );
        if !ringing {
            tracing::warn!(
                call,
                agent,
                "agent reserved for a call not ringing it: freed"
            );
            self.free_agent(now, ai, Cause::Reconciled);
            self.dispatch(now);
            return;
        }
        match result {
            OfferResult::Answered => self.answered(now, call, ai),
            OfferResult::CallerGone => {
                self.take_offer(now, call, ai);
                self.free_agent(now, ai, Cause::CallerGone);
                self.remove_entry(now, call, Removal::Abandoned);
            }
            OfferResult::NoAnswer
            | OfferResult::Busy
            | OfferResult::Rejected
            | OfferResult::Failed => {
                self.take_offer(now, call, ai);
                let cause = match result {
                    OfferResult::NoAnswer => Cause::NoAnswer,
                    OfferResult::Busy => Cause::Busy,
                    OfferResult::Rejected => Cause::Rejected,
                    _ => Cause::Failed,
                };
                let a = &mut self.agents[ai as usize];
                let max = a.queue.map_or(0, |qi| self.queues[qi].cfg.max_no_answer);
                if result == OfferResult::NoAnswer {
                    a.no_answer += 1;
                    if max > 0 && a.no_answer >= max && a.after_call == AfterCall::Nothing {
                        a.after_call = AfterCall::Pause("no answer".into());
                        self.free_agent(now, ai, Cause::AutoPaused);
                        self.dispatch(now);
                        return;
                    }
                }
                self.free_agent(now, ai, cause);
            }
        }
        self.dispatch(now);
    }

    /// Removes `ai` from the call's ringing set; when none is left the caller is back in
    /// line, remembering who failed it.
    fn take_offer(&mut self, now: Instant, call: u64, ai: u32) {
        let Some(e) = self.entries.get_mut(&call) else {
            return;
        };
        if let EntryState::Offering(v) = &mut e.state {
            v.retain(|&x| x != ai);
            if v.is_empty() {
                e.state = EntryState::Waiting;
                e.last_failed = Some(ai);
                e.retry_at = Some(now + self.queues[e.queue].cfg.retry);
                let qi = e.queue;
                self.queues[qi].ready.insert(e.key, call);
                self.mark_dirty(qi);
            }
        }
    }

    fn answered(&mut self, now: Instant, call: u64, ai: u32) {
        let Some(e) = self.entries.remove(&call) else {
            return;
        };
        let qi = e.queue;
        let q = &mut self.queues[qi];
        q.line.remove(&e.key);
        q.ready.remove(&e.key);
        q.counters.answered += 1;
        if let Some(cb) = &e.callback {
            q.callback_numbers.remove(&cb.number);
        } else {
            let actual = now.saturating_duration_since(e.joined);
            match e.predicted {
                Some(p) => {
                    q.pred_samples += 1;
                    q.pred_err_sum_ms += actual.abs_diff(p).as_millis();
                }
                None => q.pred_unpredicted += 1,
            }
        }
        if let EntryState::Offering(others) = e.state {
            for o in others.into_iter().filter(|&o| o != ai) {
                self.cancelled(call, o);
                self.free_agent(now, o, Cause::OfferCancelled);
            }
        }
        let a = &mut self.agents[ai as usize];
        a.no_answer = 0;
        a.calls_taken += 1;
        a.answered_at = Some(now);
        a.guard_at = None;
        self.on_call.insert(call, ai);
        self.set_state(now, ai, AgentState::OnCall, Cause::Answered);
        self.maybe_drop_queue(qi);
    }

    pub fn handle_call_ended(&mut self, now: Instant, call: u64) {
        let Some(ai) = self.on_call.remove(&call) else {
            if self.entries.contains_key(&call) {
                // Hung up while waiting and nobody told us it left: same thing.
                self.remove_entry(now, call, Removal::Abandoned);
                self.dispatch(now);
            }
            return;
        };
        let a = &mut self.agents[ai as usize];
        let wrap = a
            .queue
            .map_or(Duration::ZERO, |qi| self.queues[qi].cfg.wrap_up);
        if let (Some(qi), Some(t)) = (a.queue, a.answered_at) {
            let q = &mut self.queues[qi];
            let handle = now.saturating_duration_since(t) + wrap;
            q.handle_times.push_back(handle);
            q.handle_sum += handle;
            if q.handle_times.len() > HANDLE_WINDOW
                && let Some(old) = q.handle_times.pop_front()
            {
                q.handle_sum -= old;
            }
        }
        a.call = None;
        a.answered_at = None;
        if a.after_call == AfterCall::Nothing && !wrap.is_zero() {
            let until = now + wrap;
            a.wrap_until = Some(until);
            self.timers.push(Reverse((until, Timer::WrapUp(ai))));
            self.set_state(now, ai, AgentState::WrapUp, Cause::CallEnded);
        } else {
            self.free_agent(now, ai, Cause::CallEnded);
        }
        self.dispatch(now);
    }

    /// Ends the agent's reservation, call or wrap-up: Available, or what was asked while
    /// it was busy (logout, pause).
    fn free_agent(&mut self, now: Instant, ai: u32, cause: Cause) {
        let a = &mut self.agents[ai as usize];
        a.call = None;
        a.queue = None;
        a.guard_at = None;
        a.wrap_until = None;
        a.answered_at = None;
        let (state, cause) = match std::mem::replace(&mut a.after_call, AfterCall::Nothing) {
            AfterCall::Nothing => {
                if matches!(
                    cause,
                    Cause::CallEnded | Cause::WrapUpOver | Cause::Reconciled
                ) {
                    a.idle_since = now;
                }
                (AgentState::Available, cause)
            }
            AfterCall::Logout(c) => (AgentState::LoggedOut, c),
            AfterCall::Pause(r) => {
                a.reason = Some(r.clone());
                let c = if cause == Cause::AutoPaused {
                    cause
                } else {
                    Cause::Pause(r)
                };
                (AgentState::Paused, c)
            }
        };
        self.set_state(now, ai, state, cause);
        if state == AgentState::LoggedOut {
            self.drop_agent(ai);
        }
    }

    /// Emits CancelOffer and remembers that the cancelled offer's result is still owed, so
    /// that result is not taken for a later offer of the same call to the same agent.
    fn cancelled(&mut self, call: u64, ai: u32) {
        let a = &mut self.agents[ai as usize];
        if a.owed.len() >= MAX_OWED {
            // A caller side that never reports cancelled offers must not grow this.
            a.owed.remove(0);
        }
        a.owed.push(call);
        self.out.push_back(Output::CancelOffer {
            call,
            agent: a.id.clone(),
        });
    }

    /// Stops the ringing of `ai` (CancelOffer) and frees it without penalty.
    fn cancel_offer(&mut self, now: Instant, ai: u32, cause: Cause) {
        let a = &self.agents[ai as usize];
        let Some(call) = a.call else {
            return;
        };
        match self.entries.get(&call).map(|e| &e.state) {
            Some(EntryState::Offering(v)) if v.contains(&ai) => {
                self.cancelled(call, ai);
                self.take_offer(now, call, ai);
                self.free_agent(now, ai, cause);
            }
            Some(EntryState::Dialing(x)) if *x == ai => {
                // The customer is being dialed for this agent: let that finish; whatever
                // was asked (logout, pause) applies when the agent is freed.
            }
            _ => self.free_agent(now, ai, cause),
        }
    }

    /// Takes an entry out of its queue, cancelling any ringing and freeing reserved agents.
    fn remove_entry(&mut self, now: Instant, id: u64, why: Removal) {
        let Some(e) = self.entries.remove(&id) else {
            return;
        };
        let qi = e.queue;
        let q = &mut self.queues[qi];
        q.line.remove(&e.key);
        q.ready.remove(&e.key);
        if let Some(cb) = &e.callback {
            q.callback_numbers.remove(&cb.number);
        }
        let c = &mut q.counters;
        match why {
            Removal::Abandoned => c.abandoned += 1,
            Removal::KeptPlace => c.left_keep_place += 1,
            Removal::Overflow => c.overflowed += 1,
            Removal::Exit => c.exited += 1,
            Removal::Reconciled => c.reconciled += 1,
            Removal::CallbackFailed => {}
        }
        let cause = if why == Removal::Reconciled {
            Cause::Reconciled
        } else {
            Cause::CallerGone
        };
        match e.state {
            EntryState::Offering(v) => {
                for ai in v {
                    self.cancelled(id, ai);
                    self.free_agent(now, ai, cause.clone());
                }
            }
            EntryState::Dialing(ai) => self.free_agent(now, ai, cause),
            EntryState::Waiting | EntryState::Held => {}
        }
        self.maybe_drop_queue(qi);
    }

    // -----------------------------------------------------------------------------------
    // Dispatch

    fn mark_dirty(&mut self, qi: usize) {
        if !self.dirty.contains(&qi) {
            self.dirty.push(qi);
        }
    }

    /// Offers waiting callers to available agents until no dirty queue can make an offer.
    /// Across queues the oldest (highest priority) head goes first.
    fn dispatch(&mut self, now: Instant) {
        while !self.dirty.is_empty() {
            let mut best: Option<(Key, usize)> = None;
            self.dirty.retain(|&qi| !self.queues[qi].ready.is_empty());
            for &qi in &self.dirty {
                if let Some((k, _)) = self.queues[qi].ready.first_key_value()
                    && best.is_none_or(|(bk, _)| *k < bk)
                {
                    best = Some((*k, qi));
                }
            }
            let Some((_, qi)) = best else {
                break;
            };
            if !self.dispatch_one(now, qi) {
                self.dirty.retain(|&x| x != qi);
            }
        }
    }

    fn dispatch_one(&mut self, now: Instant, qi: usize) -> bool {
        let Some((&key, &id)) = self.queues[qi].ready.first_key_value() else {
            return false;
        };
        let e = &self.entries[&id];
        let (excl, retry_at) = (e.last_failed, e.retry_at);
        let q = &self.queues[qi];
        let Some(first) = q.avail.iter().find(|k| Some(k.idx) != excl).copied() else {
            // Only the agent that just failed this caller is free: ring it again after
            // the retry delay (the rest of the line has the same agents, so it waits too).
            let Some(ex) = excl.filter(|&x| q.avail.iter().next().is_some_and(|k| k.idx == x))
            else {
                return false;
            };
            match retry_at {
                Some(t) if now < t => {
                    let e = self.entries.get_mut(&id).expect("ready entries exist");
                    if e.retry_armed != Some(t) {
                        e.retry_armed = Some(t);
                        self.timers.push(Reverse((t, Timer::Retry(id))));
                    }
                    return false;
                }
                _ => {
                    self.offer(now, qi, key, id, vec![ex]);
                    return true;
                }
            }
        };
        let tier_start = AvailKey {
            penalty: first.penalty,
            a: 0,
            at: self.epoch,
            idx: 0,
        };
        let in_tier = |k: &&AvailKey| k.penalty == first.penalty && Some(k.idx) != excl;
        let picked = match q.cfg.strategy {
            Strategy::LongestIdle | Strategy::FewestCalls => vec![first.idx],
            Strategy::RoundRobin => {
                let after = match q.rr_last {
                    Some((p, pos)) if p == first.penalty => pos + 1,
                    _ => 0,
                };
                let from = AvailKey {
                    a: after,
                    ..tier_start
                };
                let next = q
                    .avail
                    .range(from..)
                    .take_while(|k| k.penalty == first.penalty)
                    .find(|k| Some(k.idx) != excl)
                    .unwrap_or(&first);
                vec![next.idx]
            }
            Strategy::Random => {
                let tier: Vec<u32> = q
                    .avail
                    .range(tier_start..)
                    .take_while(|k| k.penalty == first.penalty)
                    .filter(|k| in_tier(k))
                    .map(|k| k.idx)
                    .collect();
                let i = (self.rng.next() % tier.len() as u64) as usize;
                vec![tier[i]]
            }
            Strategy::RingAll => q
                .avail
                .range(tier_start..)
                .take_while(|k| k.penalty == first.penalty)
                .filter(|k| in_tier(k))
                .map(|k| k.idx)
                .collect(),
        };
        self.offer(now, qi, key, id, picked);
        true
    }

    fn offer(&mut self, now: Instant, qi: usize, key: Key, id: u64, agents: Vec<u32>) {
        let q = &mut self.queues[qi];
        q.ready.remove(&key);
        let ring = q.cfg.ring_timeout;
        let qname = q.name.clone();
        if let Some(&last) = agents.last()
            && let Some(m) = self.agents[last as usize]
                .members
                .iter()
                .find(|m| m.queue == qi)
        {
            q.rr_last = Some((m.penalty, m.pos as u64));
        }
        let e = self.entries.get_mut(&id).expect("ready entries exist");
        let waited = now.saturating_duration_since(e.key.1);
        let dial = e
            .callback
            .as_ref()
            .filter(|c| !c.connected)
            .map(|c| c.number.clone());
        e.state = match dial {
            Some(_) => EntryState::Dialing(agents[0]),
            None => EntryState::Offering(agents.clone()),
        };
        let agents = if dial.is_some() {
            vec![agents[0]]
        } else {
            agents
        };
        for &ai in &agents {
            let a = &mut self.agents[ai as usize];
            a.call = Some(id);
            a.queue = Some(qi);
            let guard = now
                + if dial.is_some() {
                    CALLBACK_DIAL_GUARD
                } else {
                    ring + GUARD_SLACK
                };
            a.guard_at = Some(guard);
            self.timers.push(Reverse((guard, Timer::Guard(ai))));
            self.set_state(now, ai, AgentState::Reserved, Cause::Offered);
        }
        match dial {
            Some(number) => self.out.push_back(Output::DialCallback {
                callback: id,
                queue: qname,
                number,
            }),
            None => {
                self.queues[qi].counters.ring_attempts += agents.len() as u64;
                for ai in agents {
                    self.out.push_back(Output::Offer {
                        call: id,
                        agent: self.agents[ai as usize].id.clone(),
                        queue: qname.clone(),
                        ring_timeout: ring,
                        waited,
                    });
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Agent index and state

    fn avail_key(&self, a: &Agent, ai: u32, m: &Member) -> AvailKey {
        let (ak, at) = match self.queues[m.queue].cfg.strategy {
            Strategy::LongestIdle => (0, a.idle_since),
            Strategy::FewestCalls => (a.calls_taken, a.idle_since),
            Strategy::RoundRobin | Strategy::Random | Strategy::RingAll => {
                (m.pos as u64, self.epoch)
            }
        };
        AvailKey {
            penalty: m.penalty,
            a: ak,
            at,
            idx: ai,
        }
    }

    fn unindex(&mut self, ai: u32) {
        let a = &self.agents[ai as usize];
        if !a.in_avail {
            return;
        }
        for m in &a.members {
            let k = self.avail_key(a, ai, m);
            self.queues[m.queue].avail.remove(&k);
        }
        self.agents[ai as usize].in_avail = false;
    }

    fn reindex(&mut self, ai: u32) {
        let a = &self.agents[ai as usize];
        if a.in_avail || a.state != AgentState::Available || a.removed {
            return;
        }
        let keys: Vec<(usize, AvailKey)> = a
            .members
            .iter()
            .map(|m| (m.queue, self.avail_key(a, ai, m)))
            .collect();
        for (qi, k) in keys {
            self.queues[qi].avail.insert(k);
            self.mark_dirty(qi);
        }
        self.agents[ai as usize].in_avail = true;
    }

    /// The one place an agent changes state: indexes, counts, and the AgentState output.
    fn set_state(&mut self, now: Instant, ai: u32, state: AgentState, cause: Cause) {
        self.unindex(ai);
        let a = &mut self.agents[ai as usize];
        let old = a.state;
        let was_in = old != AgentState::LoggedOut;
        let was_staffed = was_in && old != AgentState::Paused;
        let is_in = state != AgentState::LoggedOut;
        let is_staffed = is_in && state != AgentState::Paused;
        a.state = state;
        a.since = now;
        if state != AgentState::Paused {
            a.reason = None;
        }
        if state != AgentState::WrapUp {
            a.wrap_until = None;
        }
        if state == AgentState::LoggedOut {
            a.after_call = AfterCall::Nothing;
        }
        let mut emptied = Vec::new();
        for m in &a.members {
            let q = &mut self.queues[m.queue];
            if was_in && !is_in {
                q.logged_in -= 1;
                if q.logged_in == 0 && q.cfg.leave_when_empty {
                    emptied.push(m.queue);
                }
            } else if !was_in && is_in {
                q.logged_in += 1;
            }
            if was_staffed && !is_staffed {
                q.staffed -= 1;
            } else if !was_staffed && is_staffed {
                q.staffed += 1;
            }
        }
        self.out.push_back(Output::AgentState {
            agent: a.id.clone(),
            state,
            cause,
        });
        self.reindex(ai);
        for qi in emptied {
            self.empty_queue(now, qi);
        }
    }

    /// leave_when_empty: every caller on the line leaves (callbacks stay pending).
    fn empty_queue(&mut self, now: Instant, qi: usize) {
        let ids: Vec<u64> = self.queues[qi].line.values().copied().collect();
        for id in ids {
            if self.entries.get(&id).is_some_and(|e| e.on_line()) {
                self.remove_entry(now, id, Removal::Exit);
                self.out.push_back(Output::Exit {
                    call: id,
                    queue: self.queues[qi].name.clone(),
                });
            }
        }
    }

    fn agent(&self, agent: &str) -> Result<u32, AgentError> {
        self.agent_ix
            .get(agent)
            .copied()
            .ok_or(AgentError::UnknownAgent)
    }

    pub fn handle_agent_registered(&mut self, now: Instant, agent: &str, registered: bool) {
        let Ok(ai) = self.agent(agent) else {
            tracing::debug!(agent, "registration of an unknown agent");
            return;
        };
        let a = &mut self.agents[ai as usize];
        a.registered = registered;
        if registered {
            if a.cfg.auto_login && a.state == AgentState::LoggedOut {
                a.idle_since = now;
                a.no_answer = 0;
                self.set_state(now, ai, AgentState::Available, Cause::Registered);
            }
        } else {
            self.logout(now, ai, Cause::Unregistered);
        }
        self.dispatch(now);
    }

    pub fn handle_login(&mut self, now: Instant, agent: &str) -> Result<(), AgentError> {
        let ai = self.agent(agent)?;
        let a = &mut self.agents[ai as usize];
        if a.state != AgentState::LoggedOut {
            return Err(AgentError::AlreadyLoggedIn);
        }
        a.idle_since = now;
        a.no_answer = 0;
        self.set_state(now, ai, AgentState::Available, Cause::Login);
        self.dispatch(now);
        Ok(())
    }

    pub fn handle_logout(&mut self, now: Instant, agent: &str) -> Result<(), AgentError> {
        let ai = self.agent(agent)?;
        if self.agents[ai as usize].state == AgentState::LoggedOut {
            return Err(AgentError::NotLoggedIn);
        }
        self.logout(now, ai, Cause::Logout);
        self.dispatch(now);
        Ok(())
    }

    /// Logs out now, or after the current call (on call: after it ends; ringing: the
    /// offer is cancelled).
    fn logout(&mut self, now: Instant, ai: u32, cause: Cause) {
        let a = &mut self.agents[ai as usize];
        match a.state {
            AgentState::LoggedOut => {}
            AgentState::OnCall => a.after_call = AfterCall::Logout(cause),
            AgentState::Reserved => {
                a.after_call = AfterCall::Logout(cause.clone());
                self.cancel_offer(now, ai, cause);
            }
            _ => self.set_state(now, ai, AgentState::LoggedOut, cause),
        }
    }

    pub fn handle_pause(
        &mut self,
        now: Instant,
        agent: &str,
        reason: &str,
    ) -> Result<(), AgentError> {
        let ai = self.agent(agent)?;
        let a = &mut self.agents[ai as usize];
        match a.state {
            AgentState::LoggedOut => return Err(AgentError::NotLoggedIn),
            AgentState::OnCall => {
                if !matches!(a.after_call, AfterCall::Logout(_)) {
                    a.after_call = AfterCall::Pause(reason.to_string());
                }
            }
            AgentState::Reserved => {
                if !matches!(a.after_call, AfterCall::Logout(_)) {
                    a.after_call = AfterCall::Pause(reason.to_string());
                }
                self.cancel_offer(now, ai, Cause::Pause(reason.to_string()));
            }
            AgentState::Available | AgentState::WrapUp | AgentState::Paused => {
                a.reason = Some(reason.to_string());
                self.set_state(
                    now,
                    ai,
                    AgentState::Paused,
                    Cause::Pause(reason.to_string()),
                );
            }
        }
        self.dispatch(now);
        Ok(())
    }

    pub fn handle_unpause(&mut self, now: Instant, agent: &str) -> Result<(), AgentError> {
        let ai = self.agent(agent)?;
        let a = &mut self.agents[ai as usize];
        match a.state {
            AgentState::LoggedOut => Err(AgentError::NotLoggedIn),
            AgentState::Paused => {
                a.idle_since = now;
                a.no_answer = 0;
                self.set_state(now, ai, AgentState::Available, Cause::Unpause);
                self.dispatch(now);
                Ok(())
            }
            _ if matches!(a.after_call, AfterCall::Pause(_)) => {
                a.after_call = AfterCall::Nothing;
                Ok(())
            }
            _ => Err(AgentError::NotPaused),
        }
    }

    // -----------------------------------------------------------------------------------
    // Time

    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    pub fn poll_output(&mut self) -> Option<Output> {
        self.out.pop_front()
    }

    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(&Reverse((t, timer))) = self.timers.peek() {
            if t > now {
                break;
            }
            self.timers.pop();
            self.fire(now, t, timer);
        }
        self.dispatch(now);
    }

    fn fire(&mut self, now: Instant, t: Instant, timer: Timer) {
        match timer {
            Timer::Announce(id) => {
                let Some(e) = self.entries.get(&id) else {
                    return;
                };
                if e.announce_at != Some(t) {
                    return;
                }
                let qi = e.queue;
                let every = self.queues[qi].cfg.announce_every;
                let next = (!every.is_zero()).then(|| now + every);
                let announce = (e.state == EntryState::Waiting).then(|| {
                    let position = self.queues[qi].position(&e.key);
                    (position, self.ewt(qi, position))
                });
                if let Some(e) = self.entries.get_mut(&id) {
                    e.announce_at = next;
                }
                if let Some(n) = next {
                    self.timers.push(Reverse((n, Timer::Announce(id))));
                }
                if let Some((position, ewt)) = announce {
                    self.out.push_back(Output::Announce {
                        call: id,
                        position,
                        ewt,
                    });
                }
            }
            Timer::MaxWait(id) => {
                let Some(e) = self.entries.get(&id) else {
                    return;
                };
                if e.max_wait_at != Some(t) {
                    return;
                }
                let queue = self.queues[e.queue].name.clone();
                self.remove_entry(now, id, Removal::Overflow);
                self.out.push_back(Output::Overflow { call: id, queue });
            }
            Timer::Retry(id) => {
                if let Some(e) = self.entries.get(&id)
                    && e.retry_at == Some(t)
                {
                    self.mark_dirty(e.queue);
                }
            }
            Timer::CallbackHold(id) => {
                let Some(e) = self.entries.get_mut(&id) else {
                    return;
                };
                if e.state != EntryState::Held
                    || e.callback.as_ref().and_then(|c| c.held_until) != Some(t)
                {
                    return;
                }
                e.state = EntryState::Waiting;
                if let Some(c) = &mut e.callback {
                    c.held_until = None;
                }
                let q = &mut self.queues[e.queue];
                q.line.insert(e.key, id);
                q.ready.insert(e.key, id);
                let qi = e.queue;
                self.mark_dirty(qi);
            }
            Timer::Guard(ai) => {
                let a = &self.agents[ai as usize];
                if a.guard_at != Some(t) || a.state != AgentState::Reserved {
                    return;
                }
                let Some(call) = a.call else {
                    return;
                };
                if matches!(self.entries.get(&call).map(|e| &e.state), Some(EntryState::Dialing(x)) if *x == ai)
                {
                    tracing::warn!(
                        callback = call,
                        "no callback dial result: counted as not reached"
                    );
                    self.callback_not_reached(now, call, ai);
                } else {
                    tracing::warn!(call, agent = %a.id, "no offer result: offer cancelled");
                    self.cancel_offer(now, ai, Cause::OfferTimeout);
                }
            }
            Timer::WrapUp(ai) => {
                let a = &self.agents[ai as usize];
                if a.state == AgentState::WrapUp && a.wrap_until == Some(t) {
                    self.free_agent(now, ai, Cause::WrapUpOver);
                }
            }
            Timer::Place(call, qi) => {
                if self
                    .remembered
                    .get(&(call, qi))
                    .is_some_and(|r| r.expires == t)
                {
                    self.remembered.remove(&(call, qi));
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------
    // Drift

    /// Drops whatever refers to calls that no longer exist: callers in line, offers, and
    /// agents reserved for or talking to them. Callbacks not yet connected are not calls
    /// and are kept.
    pub fn reconcile(&mut self, now: Instant, live_calls: &HashSet<u64>) {
        let mut dead: Vec<u64> = self
            .entries
            .iter()
            .filter(|(id, e)| {
                e.on_line()
                    && !live_calls.contains(id)
                    && !matches!(e.state, EntryState::Dialing(_))
            })
            .map(|(&id, _)| id)
            .collect();
        dead.sort_unstable();
        for id in dead {
            tracing::warn!(call = id, "reconcile: queued call no longer exists");
            self.remove_entry(now, id, Removal::Reconciled);
        }
        let mut gone: Vec<(u64, u32)> = self
            .on_call
            .iter()
            .filter(|(c, _)| !live_calls.contains(c))
            .map(|(&c, &a)| (c, a))
            .collect();
        gone.sort_unstable();
        for (call, ai) in gone {
            tracing::warn!(call, agent = %self.agents[ai as usize].id, "reconcile: agent on a call that no longer exists");
            self.on_call.remove(&call);
            self.free_agent(now, ai, Cause::Reconciled);
        }
        for ai in 0..self.agents.len() as u32 {
            let a = &self.agents[ai as usize];
            let consistent = match (a.state, a.call) {
                (AgentState::Reserved, Some(c)) => {
                    matches!(
                        self.entries.get(&c).map(|e| &e.state),
                        Some(EntryState::Offering(v)) if v.contains(&ai)
                    ) || matches!(
                        self.entries.get(&c).map(|e| &e.state),
                        Some(EntryState::Dialing(x)) if *x == ai
                    )
                }
                (AgentState::OnCall, Some(c)) => self.on_call.get(&c) == Some(&ai),
                (AgentState::Reserved | AgentState::OnCall, None) => false,
                _ => true,
            };
            if !consistent {
                tracing::warn!(agent = %a.id, state = ?a.state, call = ?a.call, "reconcile: agent state had no matching call");
                if let Some(c) = a.call
                    && self.on_call.get(&c) == Some(&ai)
                {
                    self.on_call.remove(&c);
                }
                self.free_agent(now, ai, Cause::Reconciled);
            }
        }
        self.dispatch(now);
    }

    // -----------------------------------------------------------------------------------
    // Snapshot

    pub fn snapshot(&self, now: Instant) -> AcdSnapshot {
        let ms = |d: Duration| d.as_millis().min(u64::MAX as u128) as u64;
        let mut queues = Vec::new();
        let mut names: Vec<(&String, &usize)> = self.queue_ix.iter().collect();
        names.sort();
        for (_, &qi) in names {
            let q = &self.queues[qi];
            let mut waiting: Vec<WaitingSnapshot> = Vec::with_capacity(q.line.len());
            let mut push = |id: u64, position: usize, e: &Entry| {
                waiting.push(WaitingSnapshot {
                    call: id,
                    position,
                    priority: e.priority,
                    waited_ms: ms(now.saturating_duration_since(e.key.1)),
                    state: match e.state {
                        EntryState::Waiting => WaitState::Waiting,
                        EntryState::Offering(_) => WaitState::Ringing,
                        EntryState::Dialing(_) => WaitState::DialingCallback,
                        EntryState::Held => WaitState::CallbackRetry,
                    },
                    caller: e.caller.clone(),
                    callback: e.callback.is_some(),
                })
            };
            for (i, id) in q.line.values().enumerate() {
                push(*id, i + 1, &self.entries[id]);
            }
            let mut held: Vec<(&u64, &Entry)> = self
                .entries
                .iter()
                .filter(|(_, e)| e.queue == qi && e.state == EntryState::Held)
                .collect();
            held.sort_by_key(|(_, e)| e.key);
            for (id, e) in held {
                push(*id, 0, e);
            }
            queues.push(QueueSnapshot {
                name: q.name.clone(),
                strategy: q.cfg.strategy,
                draining: q.draining,
                waiting,
                logged_in: q.logged_in,
                staffed: q.staffed,
                available: q.avail.len(),
                counters: q.counters.clone(),
                avg_handle_ms: q.avg_handle().map(ms),
                ewt_ms: self.ewt(qi, q.line.len() + 1).map(ms),
                prediction: PredictionStats {
                    samples: q.pred_samples,
                    unpredicted: q.pred_unpredicted,
                    mean_abs_error_ms: (q.pred_samples > 0)
                        .then(|| (q.pred_err_sum_ms / q.pred_samples as u128) as u64),
                },
                pending_callbacks: q.callback_numbers.len(),
            });
        }
        let mut agents: Vec<AgentSnapshot> = self
            .agent_ix
            .values()
            .map(|&ai| {
                let a = &self.agents[ai as usize];
                AgentSnapshot {
                    id: a.id.clone(),
                    name: a.cfg.name.clone(),
                    state: a.state,
                    since_ms: ms(now.saturating_duration_since(a.since)),
                    reason: a.reason.clone(),
                    calls_taken: a.calls_taken,
                    queues: a
                        .members
                        .iter()
                        .map(|m| (self.queues[m.queue].name.clone(), m.penalty))
                        .collect(),
                    call: a.call,
                    registered: a.registered,
                }
            })
            .collect();
        agents.sort_by(|a, b| a.id.cmp(&b.id));
        AcdSnapshot { queues, agents }
    }
}

#[cfg(test)]
impl Acd {
    /// Panics if the internal indexes disagree with the states they index.
    pub(crate) fn check_invariants(&self) {
        for (id, &ai) in &self.agent_ix {
            let a = &self.agents[ai as usize];
            assert_eq!(&a.id, id);
            match a.state {
                AgentState::Reserved => {
                    let c = a.call.expect("a reserved agent has a call");
                    let ok = match self.entries.get(&c).map(|e| &e.state) {
                        Some(EntryState::Offering(v)) => v.contains(&ai),
                        Some(EntryState::Dialing(x)) => *x == ai,
                        _ => false,
                    };
                    assert!(ok, "{id} reserved for {c} which does not ring it");
                }
                AgentState::OnCall => {
                    let c = a.call.expect("an agent on call has a call");
                    assert_eq!(self.on_call.get(&c), Some(&ai), "{id} on call {c}");
                }
                _ => assert_eq!(a.call, None, "{id} in {:?} holds a call", a.state),
            }
            assert_eq!(
                a.in_avail,
                a.state == AgentState::Available && !a.removed,
                "{id} availability index"
            );
            for m in &a.members {
                let k = self.avail_key(a, ai, m);
                assert_eq!(self.queues[m.queue].avail.contains(&k), a.in_avail, "{id}");
            }
        }
        for (&c, &ai) in &self.on_call {
            assert_eq!(self.agents[ai as usize].call, Some(c));
            assert_eq!(self.agents[ai as usize].state, AgentState::OnCall);
        }
        for (&id, e) in &self.entries {
            let q = &self.queues[e.queue];
            assert_eq!(
                q.line.get(&e.key) == Some(&id),
                e.state != EntryState::Held,
                "{id}"
            );
            assert_eq!(
                q.ready.get(&e.key) == Some(&id),
                e.state == EntryState::Waiting,
                "{id}"
            );
            if let EntryState::Offering(v) = &e.state {
                assert!(!v.is_empty());
                for &ai in v {
                    let a = &self.agents[ai as usize];
                    assert_eq!((a.state, a.call), (AgentState::Reserved, Some(id)));
                }
            }
        }
        for (qi, q) in self.queues.iter().enumerate() {
            if q.dead {
                continue;
            }
            assert_eq!(
                q.line.len(),
                q.line
                    .values()
                    .filter(|id| self.entries.get(id).is_some_and(|e| e.queue == qi))
                    .count()
            );
            let members = self
                .agents
                .iter()
                .filter(|a| a.members.iter().any(|m| m.queue == qi));
            let logged_in = members
                .clone()
                .filter(|a| a.state != AgentState::LoggedOut)
                .count();
            let staffed = members
                .clone()
                .filter(|a| !matches!(a.state, AgentState::LoggedOut | AgentState::Paused))
                .count();
            assert_eq!((q.logged_in, q.staffed), (logged_in, staffed), "{}", q.name);
            assert_eq!(q.avail.len(), members.filter(|a| a.in_avail).count());
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Removal {
    Abandoned,
    KeptPlace,
    Overflow,
    Exit,
    Reconciled,
    CallbackFailed,
}
