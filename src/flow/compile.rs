//! Flow files as written ([`schema`]) → a checked, immutable [`FlowSet`].
//!
//! Every problem is collected, never only the first: YAML errors (one per
//! file, since the parser stops there), then every semantic error in every
//! file that parsed. Names (nodes, flows, variables, languages, prompts) are
//! resolved to ids here, so the interpreter never looks anything up by name.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

use serde_saphyr::{Location, MessageFormatter, Spanned};

use super::calendar::{self, Calendar};
use super::diagnostic::{Diagnostic, hint};
use super::pattern::Pattern;
use super::say::{self, SayAs};
use super::schema::{
    self, BranchDef, CalendarDef, CallbackDef, CaseDef, CollectDef, FileDef, FlowDef, HoursDef,
    KeyIssue, LookupDef, MenuDef, NODE_KINDS, Names, NodeDef, Pairs, QueueDef, SayDef, Str,
    SurveyDef, TransferDef, UpdateDef, VerifyPinDef,
};
use super::{PromptCatalog, Source};
use crate::directory::AppointmentStatus;
use crate::media::types::{Digit, PromptId};

/// Language used when a flow names none, and the first fallback for prompts.
pub const DEFAULT_LANGUAGE: &str = "en";
/// Prompt played by a menu or collect that runs out of retries without a
/// `max_failures` target (skipped when the catalog has none), before hangup.
pub const DEFAULT_GOODBYE_PROMPT: &str = "goodbye";
/// Menus with more options than this get a warning.
pub const MAX_MENU_OPTIONS: usize = 5;
/// Menus reachable only through more menus than this get a warning.
pub const MAX_MENU_DEPTH: usize = 4;
/// Most retries a menu or collect may have.
pub const MAX_RETRIES: u32 = 10;
/// Shortest and longest timer a flow may set.
pub const MIN_TIMEOUT: Duration = Duration::from_millis(100);
pub const MAX_TIMEOUT: Duration = Duration::from_secs(600);
/// How long `lookup`/`verify_pin`/`update` wait for the directory by default.
pub const DEFAULT_DIRECTORY_TIMEOUT: Duration = Duration::from_secs(3);
/// When a directory node's `filler` starts by default.
pub const DEFAULT_FILLER_AFTER: Duration = Duration::from_millis(800);

/// Music a `queue` node loops when it names none.
pub const DEFAULT_MUSIC_PROMPT: &str = "hold-music";
/// Announcement pieces of a `queue` node: "You are number" N "in the queue".
pub const QUEUE_POSITION_PROMPT: &str = "queue-position";
pub const QUEUE_POSITION_END_PROMPT: &str = "queue-position-end";
/// "Your estimated wait time is about" N "minutes" / "less than a minute".
pub const QUEUE_WAIT_PROMPT: &str = "queue-wait";
/// Said instead of the wait when the queue gives no estimate.
pub const QUEUE_SHORTLY_PROMPT: &str = "queue-shortly";
/// Fragments (like `say`'s) the wait announcement ends with.
pub const QUEUE_WAIT_FRAGMENTS: &[&str] = &[
    "say/about",
    "say/minute",
    "say/minutes",
    "say/less-than-a-minute",
];
/// Highest and lowest `priority` a `queue` node may give (higher is served first).
pub const MAX_PRIORITY: i32 = 1000;
/// Largest `survey` scale: the answer is one key, 1 to 9.
pub const MAX_SURVEY_SCALE: u32 = 9;
/// A survey asks once more after silence or a wrong key by default (two attempts).
pub const DEFAULT_SURVEY_RETRIES: u32 = 2;

/// What the compiler checks besides the flow files themselves.
#[derive(Clone, Copy, Debug, Default)]
pub struct CompileOptions<'a> {
    /// The queues configured in `phonetree.yaml` (`queues:`): a `queue` or
    /// `callback` node naming another is an error. `None`: names are not
    /// checked (tools without a configuration, unit tests).
    pub queues: Option<&'a BTreeSet<String>>,
}

/// Variables a `lookup` sets (and an `update` refreshes), in this order.
pub(crate) const LOOKUP_VARS: &[&str] = &[
    "customer.id",
    "customer.name",
    "customer.language",
    "customer.tier",
    "account.balance",
    "account.currency",
    "account.amount",
    "order.id",
    "order.status",
    "order.placed_on",
    "order.shipped_on",
    "order.eta",
    "appointment.id",
    "appointment.starts_at",
    "appointment.date",
    "appointment.time",
    "appointment.status",
];
/// Index of `appointment.status` in [`LOOKUP_VARS`].
pub(crate) const LOOKUP_APPOINTMENT_STATUS: usize = 16;
/// Variables a `verify_pin` sets.
pub(crate) const PIN_VARS: &[&str] = &["pin.attempts_left"];

// ---------------------------------------------------------------------------
// Compiled form
// ---------------------------------------------------------------------------

/// A flow in a [`FlowSet`]. Only meaningful with the set that issued it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowId(pub u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct NodeId(pub(crate) u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct VarId(pub(crate) u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct LangId(pub(crate) u16);

/// Built-in variables, set when a call starts.
pub(crate) const VAR_CALLER: VarId = VarId(0);
pub(crate) const VAR_DIALLED: VarId = VarId(1);
const BUILTIN_VARS: &[&str] = &["caller", "dialled"];

/// One prompt reference, resolved for every language of the set.
#[derive(Debug, Clone)]
pub(crate) struct Prompt {
    pub(crate) by_lang: Box<[Option<PromptId>]>,
}

impl Prompt {
    pub(crate) fn get(&self, lang: LangId) -> Option<PromptId> {
        self.by_lang.get(lang.0 as usize).copied().flatten()
    }
}

pub(crate) type Prompts = Vec<Prompt>;

/// Shared settings of nodes that wait for keys (`menu`, `collect`).
#[derive(Debug, Clone)]
pub(crate) struct Input {
    pub(crate) prompt: Prompts,
    /// Played instead of `prompt` after a failure or a repeat (menu `short_prompt`).
    pub(crate) reprompt: Option<Prompts>,
    pub(crate) invalid: Prompts,
    pub(crate) no_input: Prompts,
    pub(crate) barge_in: bool,
    pub(crate) retries: u32,
    pub(crate) max_failures: Option<NodeId>,
    pub(crate) timeout: Duration,
    pub(crate) inter_digit: Duration,
    pub(crate) total: Option<Duration>,
}

#[derive(Debug, Clone)]
pub(crate) struct Menu {
    pub(crate) input: Input,
    pub(crate) options: Vec<(Vec<Digit>, NodeId)>,
    pub(crate) max_digits: usize,
    pub(crate) repeat: Option<Digit>,
}

#[derive(Debug, Clone)]
pub(crate) struct Collect {
    pub(crate) input: Input,
    pub(crate) into: VarId,
    pub(crate) min: usize,
    pub(crate) max: usize,
    pub(crate) terminator: Option<Digit>,
    pub(crate) pattern: Option<Pattern>,
    pub(crate) next: NodeId,
}

/// A `survey` node: one key from 1 to `scale`, kept with the call record.
#[derive(Debug, Clone)]
pub(crate) struct Survey {
    /// `max_failures` is always `next`: a survey never hangs up on a caller.
    pub(crate) input: Input,
    /// The id in records and KPIs.
    pub(crate) name: String,
    pub(crate) scale: u8,
    /// Played (without barge-in) after an answer.
    pub(crate) thanks: Prompts,
    /// Where the call goes on, answered or not.
    pub(crate) next: NodeId,
}

#[derive(Debug, Clone)]
pub(crate) enum Value {
    Lit(String),
    Var(VarId),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
}

#[derive(Debug, Clone)]
pub(crate) enum Test {
    Equals(Value),
    NotEquals(Value),
    In(Vec<String>),
    Cmp(CmpOp, f64),
    Pattern(Pattern),
    IsSet(bool),
}

#[derive(Debug, Clone)]
pub(crate) struct Case {
    pub(crate) var: VarId,
    pub(crate) test: Test,
    pub(crate) goto: NodeId,
}

/// How a directory node ended, as written under `on:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Found,
    NotFound,
    Ok,
    Wrong,
    Locked,
    Error,
    Timeout,
}

impl Outcome {
    pub(crate) fn key(self) -> &'static str {
        match self {
            Outcome::Found => "found",
            Outcome::NotFound => "not_found",
            Outcome::Ok => "ok",
            Outcome::Wrong => "wrong",
            Outcome::Locked => "locked",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// What a directory node asks.
#[derive(Debug, Clone)]
pub(crate) enum DirOp {
    /// By customer id (`id:`) or phone number (`phone:`).
    Lookup {
        phone: bool,
        key: Value,
    },
    VerifyPin {
        customer: Value,
        pin: Value,
    },
    Update {
        customer: Value,
        appointment: Value,
        status: AppointmentStatus,
    },
}

impl DirOp {
    pub(crate) fn name(&self) -> &'static str {
        match self {
            DirOp::Lookup { .. } => "lookup",
            DirOp::VerifyPin { .. } => "verify_pin",
            DirOp::Update { .. } => "update",
        }
    }

    /// The outcomes a flow must handle for this node.
    pub(crate) fn outcomes(&self) -> &'static [Outcome] {
        match self {
            DirOp::Lookup { .. } => &[
                Outcome::Found,
                Outcome::NotFound,
                Outcome::Error,
                Outcome::Timeout,
            ],
            DirOp::VerifyPin { .. } => &[
                Outcome::Ok,
                Outcome::Wrong,
                Outcome::Locked,
                Outcome::Error,
                Outcome::Timeout,
            ],
            DirOp::Update { .. } => &[
                Outcome::Ok,
                Outcome::NotFound,
                Outcome::Error,
                Outcome::Timeout,
            ],
        }
    }
}

/// A `lookup`, `verify_pin` or `update` node.
#[derive(Debug, Clone)]
pub(crate) struct DirNode {
    pub(crate) op: DirOp,
    /// The `timeout` branch is taken when no answer came within this.
    pub(crate) timeout: Duration,
    /// Played (once, without barge-in) if the answer takes `filler_after`.
    pub(crate) filler: Prompts,
    pub(crate) filler_after: Duration,
    /// Every outcome of `op.outcomes()`, in that order.
    pub(crate) on: Vec<(Outcome, NodeId)>,
}

impl DirNode {
    pub(crate) fn target(&self, o: Outcome) -> Option<NodeId> {
        self.on.iter().find(|(x, _)| *x == o).map(|(_, n)| *n)
    }
}

/// Text with `$variable` (or `${variable}`) parts, filled in when the node runs.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Part {
    Lit(String),
    Var(VarId, String),
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Template(pub(crate) Vec<Part>);

impl std::fmt::Display for Template {
    /// As written: `sip:$ext@pbx.example.com`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for p in &self.0 {
            match p {
                Part::Lit(l) => f.write_str(&l.replace('$', "$$"))?,
                Part::Var(_, name) => write!(f, "${{{name}}}")?,
            }
        }
        Ok(())
    }
}

/// How a `queue` node ended, as written under `on:`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum QueueOutcome {
    /// The longest wait of the queue was reached.
    Overflow,
    /// No agent is logged in (at join, or all left while the caller waited).
    NoAgents,
    /// The queue holds as many callers as it may.
    Full,
    /// The queue is unusable (unknown at run time) or the bridge failed.
    Failed,
}

impl QueueOutcome {
    pub(crate) const ALL: [QueueOutcome; 4] = [
        QueueOutcome::Overflow,
        QueueOutcome::NoAgents,
        QueueOutcome::Full,
        QueueOutcome::Failed,
    ];

    pub(crate) fn key(self) -> &'static str {
        match self {
            QueueOutcome::Overflow => "overflow",
            QueueOutcome::NoAgents => "no_agents",
            QueueOutcome::Full => "full",
            QueueOutcome::Failed => "failed",
        }
    }
}

/// A `queue` node's `priority`.
#[derive(Debug, Clone)]
pub(crate) enum Priority {
    Fixed(i32),
    /// Read when the node runs; not a whole number → 0.
    Var(VarId),
}

/// What a queue's periodic announcement says.
#[derive(Debug, Clone)]
pub(crate) struct Announce {
    /// "You are number" / "in the queue", around the spoken position.
    pub(crate) position: Option<(Prompt, Prompt)>,
    /// "Your estimated wait time is about" and "We will be with you shortly".
    pub(crate) wait: Option<(Prompt, Prompt)>,
    /// Played after the position and wait (e.g. how to leave the queue).
    pub(crate) extra: Prompts,
}

#[derive(Debug, Clone)]
pub(crate) struct QueueNode {
    pub(crate) queue: String,
    pub(crate) priority: Priority,
    /// Looped while the caller waits.
    pub(crate) music: Prompts,
    pub(crate) announce: Announce,
    /// Keys that leave the queue (keeping the place) for a node.
    pub(crate) leave: Vec<(Digit, NodeId)>,
    /// `overflow`, `no_agents`, `full` always; `failed` when given (else hang up).
    pub(crate) on: Vec<(QueueOutcome, NodeId)>,
}

impl QueueNode {
    pub(crate) fn target(&self, o: QueueOutcome) -> Option<NodeId> {
        self.on.iter().find(|(x, _)| *x == o).map(|(_, n)| *n)
    }
}

/// A `callback` node: ask the queue to call the caller back.
#[derive(Debug, Clone)]
pub(crate) struct CallbackNode {
    pub(crate) queue: String,
    pub(crate) number: Value,
    pub(crate) registered: NodeId,
    pub(crate) duplicate: NodeId,
    pub(crate) failed: NodeId,
}

#[derive(Debug, Clone)]
pub(crate) enum Kind {
    Play {
        prompts: Prompts,
        barge_in: bool,
        next: NodeId,
    },
    Menu(Box<Menu>),
    Collect(Box<Collect>),
    Survey(Box<Survey>),
    Goto(NodeId),
    Hangup,
    Set {
        assign: Vec<(VarId, Value)>,
        next: NodeId,
    },
    Branch {
        cases: Vec<Case>,
        otherwise: NodeId,
    },
    Say {
        how: SayAs,
        value: Value,
        /// `money` only: the currency code (default: dollars).
        currency: Option<Value>,
        barge_in: bool,
        next: NodeId,
    },
    Subflow {
        flow: FlowId,
        next: NodeId,
    },
    Return,
    /// Blind transfer; `failed` is taken when the target cannot be reached
    /// (none: hang up).
    Transfer {
        target: Template,
        failed: Option<NodeId>,
    },
    Queue(Box<QueueNode>),
    Callback(Box<CallbackNode>),
    Language {
        lang: LangId,
        next: NodeId,
    },
    Hours {
        calendar: usize,
        open: NodeId,
        closed: NodeId,
        holiday: Option<NodeId>,
    },
    Directory(Box<DirNode>),
}

impl Kind {
    /// Nodes this one can continue to, within its flow.
    pub(crate) fn successors(&self) -> Vec<NodeId> {
        match self {
            Kind::Play { next, .. }
            | Kind::Set { next, .. }
            | Kind::Say { next, .. }
            | Kind::Subflow { next, .. }
            | Kind::Language { next, .. } => vec![*next],
            Kind::Goto(n) => vec![*n],
            Kind::Survey(s) => vec![s.next],
            Kind::Menu(m) => m
                .options
                .iter()
                .map(|(_, n)| *n)
                .chain(m.input.max_failures)
                .collect(),
            Kind::Collect(c) => std::iter::once(c.next)
                .chain(c.input.max_failures)
                .collect(),
            Kind::Branch { cases, otherwise } => cases
                .iter()
                .map(|c| c.goto)
                .chain(std::iter::once(*otherwise))
                .collect(),
            Kind::Hours {
                open,
                closed,
                holiday,
                ..
            } => [*open, *closed].into_iter().chain(*holiday).collect(),
            Kind::Directory(d) => d.on.iter().map(|(_, n)| *n).collect(),
            Kind::Queue(q) => q
                .leave
                .iter()
                .map(|(_, n)| *n)
                .chain(q.on.iter().map(|(_, n)| *n))
                .collect(),
            Kind::Callback(c) => vec![c.registered, c.duplicate, c.failed],
            Kind::Transfer { failed, .. } => failed.iter().copied().collect(),
            Kind::Hangup | Kind::Return => vec![],
        }
    }

    /// Successors with a label for drawings (`"1"`, `"max failures"`, ...).
    pub(crate) fn labelled_successors(&self) -> Vec<(String, NodeId)> {
        let keys = |k: &[Digit]| k.iter().map(|d| d.as_char()).collect::<String>();
        match self {
            Kind::Menu(m) => m
                .options
                .iter()
                .map(|(k, n)| (keys(k), *n))
                .chain(
                    m.input
                        .max_failures
                        .map(|n| ("max failures".to_string(), n)),
                )
                .collect(),
            Kind::Collect(c) => std::iter::once((String::new(), c.next))
                .chain(
                    c.input
                        .max_failures
                        .map(|n| ("max failures".to_string(), n)),
                )
                .collect(),
            Kind::Branch { cases, otherwise } => cases
                .iter()
                .enumerate()
                .map(|(i, c)| (format!("case {}", i + 1), c.goto))
                .chain(std::iter::once(("else".to_string(), *otherwise)))
                .collect(),
            Kind::Hours {
                open,
                closed,
                holiday,
                ..
            } => [("open".to_string(), *open), ("closed".to_string(), *closed)]
                .into_iter()
                .chain(holiday.map(|h| ("holiday".to_string(), h)))
                .collect(),
            Kind::Directory(d) => {
                d.on.iter()
                    .map(|(o, n)| (o.key().to_string(), *n))
                    .collect()
            }
            Kind::Queue(q) => q
                .leave
                .iter()
                .map(|(k, n)| (format!("leave {}", k.as_char()), *n))
                .chain(q.on.iter().map(|(o, n)| (o.key().to_string(), *n)))
                .collect(),
            Kind::Callback(c) => vec![
                ("registered".to_string(), c.registered),
                ("duplicate".to_string(), c.duplicate),
                ("failed".to_string(), c.failed),
            ],
            Kind::Transfer { failed, .. } => {
                failed.iter().map(|n| ("failed".to_string(), *n)).collect()
            }
            other => other
                .successors()
                .into_iter()
                .map(|n| (String::new(), n))
                .collect(),
        }
    }

    /// Short name of the node kind, as written in YAML.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Kind::Play { .. } => "play",
            Kind::Menu(_) => "menu",
            Kind::Collect(_) => "collect",
            Kind::Survey(_) => "survey",
            Kind::Goto(_) => "goto",
            Kind::Hangup => "hangup",
            Kind::Set { .. } => "set",
            Kind::Branch { .. } => "branch",
            Kind::Say { .. } => "say",
            Kind::Subflow { .. } => "subflow",
            Kind::Return => "return",
            Kind::Transfer { .. } => "transfer",
            Kind::Language { .. } => "language",
            Kind::Hours { .. } => "hours",
            Kind::Directory(d) => d.op.name(),
            Kind::Queue(_) => "queue",
            Kind::Callback(_) => "callback",
        }
    }

    /// Whether the node waits for the caller (a prompt or keys) before moving on.
    fn waits(&self) -> bool {
        matches!(
            self,
            Kind::Play { .. }
                | Kind::Menu(_)
                | Kind::Collect(_)
                | Kind::Survey(_)
                | Kind::Say { .. }
                | Kind::Hangup
                | Kind::Return
                | Kind::Transfer { .. }
                | Kind::Subflow { .. }
                | Kind::Directory(_)
                | Kind::Queue(_)
                | Kind::Callback(_)
        )
    }
}

#[derive(Debug, Clone)]
pub(crate) struct Node {
    pub(crate) name: String,
    /// Discard type-ahead keys when the node starts.
    pub(crate) flush: bool,
    pub(crate) kind: Kind,
}

#[derive(Debug, Clone)]
pub(crate) struct Flow {
    pub(crate) name: String,
    pub(crate) language: LangId,
    pub(crate) start: NodeId,
    pub(crate) nodes: Vec<Node>,
}

/// A checked, immutable set of flows with its routes. Shared by calls as
/// `Arc<FlowSet>`; a reload builds a new one with a new version.
#[derive(Debug)]
pub struct FlowSet {
    version: u64,
    pub(crate) flows: Vec<Flow>,
    exact_routes: HashMap<String, FlowId>,
    pattern_routes: Vec<(Pattern, FlowId)>,
    default_route: Option<FlowId>,
    pub(crate) languages: Vec<String>,
    pub(crate) vars: Vec<String>,
    /// Played before the default hangup when retries run out.
    pub(crate) goodbye: Prompts,
    /// `say` fragments per language: `say/5`, `say/20`, `say/hundred`, ...
    pub(crate) fragments: Vec<HashMap<String, PromptId>>,
    pub(crate) calendars: Vec<Calendar>,
    /// Ids of [`LOOKUP_VARS`] and [`PIN_VARS`], when some node sets them.
    pub(crate) lookup_vars: Vec<Option<VarId>>,
    pub(crate) pin_vars: Vec<Option<VarId>>,
}

impl FlowSet {
    pub fn version(&self) -> u64 {
        self.version
    }

    /// Flow for a dialled user part: exact number, then patterns in file
    /// order, then the `default` route.
    pub fn route(&self, dialled: &str) -> Option<FlowId> {
        if let Some(f) = self.exact_routes.get(dialled) {
            return Some(*f);
        }
        self.pattern_routes
            .iter()
            .find(|(p, _)| p.matches(dialled))
            .map(|(_, f)| *f)
            .or(self.default_route)
    }

    /// Name of a flow; `"?"` for an id from another set.
    pub fn flow_name(&self, id: FlowId) -> &str {
        self.flows
            .get(id.0 as usize)
            .map(|f| f.name.as_str())
            .unwrap_or("?")
    }

    pub fn flow_names(&self) -> impl Iterator<Item = &str> {
        self.flows.iter().map(|f| f.name.as_str())
    }

    /// Looks a flow up by name (for `simulate`, tests and subflows).
    pub fn flow_by_name(&self, name: &str) -> Option<FlowId> {
        self.flows
            .iter()
            .position(|f| f.name == name)
            .map(|i| FlowId(i as u32))
    }

    /// Node names of a flow in file order (for `graph` and tools).
    pub fn node_names(&self, id: FlowId) -> impl Iterator<Item = &str> {
        self.flows
            .get(id.0 as usize)
            .into_iter()
            .flat_map(|f| f.nodes.iter().map(|n| n.name.as_str()))
    }

    /// `(from, to)` node-name edges of a flow, for `graph`.
    pub fn edges(&self, id: FlowId) -> Vec<(&str, &str)> {
        let Some(f) = self.flows.get(id.0 as usize) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for n in &f.nodes {
            for s in n.kind.successors() {
                if let Some(t) = f.nodes.get(s.0 as usize) {
                    out.push((n.name.as_str(), t.name.as_str()));
                }
            }
        }
        out
    }

    /// Names of the calendars, for tools.
    pub fn calendar_names(&self) -> impl Iterator<Item = &str> {
        self.calendars.iter().map(|c| c.name.as_str())
    }

    pub(crate) fn flow(&self, id: FlowId) -> Option<&Flow> {
        self.flows.get(id.0 as usize)
    }
}

// ---------------------------------------------------------------------------
// Compiler
// ---------------------------------------------------------------------------

/// Compiles flow files into a [`FlowSet`]. On success, returns the set and
/// its warnings; on failure, every error and warning, sorted by location.
/// Queue names are not checked: see [`compile_with`].
pub fn compile(
    sources: &[Source],
    catalog: &dyn PromptCatalog,
    version: u64,
) -> Result<(FlowSet, Vec<Diagnostic>), Vec<Diagnostic>> {
    compile_with(sources, catalog, version, &CompileOptions::default())
}

/// [`compile`] with the configuration the flows run under (the queue names).
pub fn compile_with(
    sources: &[Source],
    catalog: &dyn PromptCatalog,
    version: u64,
    options: &CompileOptions<'_>,
) -> Result<(FlowSet, Vec<Diagnostic>), Vec<Diagnostic>> {
    let mut cx = Cx {
        queues: options.queues,
        sources,
        catalog,
        diags: Vec::new(),
        langs: Vec::new(),
        switch_langs: BTreeSet::new(),
        vars: BUILTIN_VARS.iter().map(|s| s.to_string()).collect(),
        warned_translation: HashSet::new(),
        calendars: Vec::new(),
        calendar_ids: HashMap::new(),
        max_menu_options: MAX_MENU_OPTIONS,
        max_menu_depth: MAX_MENU_DEPTH,
        surveys: HashMap::new(),
    };
    let set = cx.run(version);
    let Cx { mut diags, .. } = cx;
    diags.sort_by(|a, b| {
        (a.file.as_path(), a.line, a.column).cmp(&(b.file.as_path(), b.line, b.column))
    });
    diags.dedup();
    if diags.iter().any(Diagnostic::is_error) {
        Err(diags)
    } else {
        Ok((set, diags))
    }
}

struct Cx<'a> {
    sources: &'a [Source],
    catalog: &'a dyn PromptCatalog,
    diags: Vec<Diagnostic>,
    langs: Vec<String>,
    /// Languages a `language` node can switch to: prompts get translation warnings.
    switch_langs: BTreeSet<String>,
    vars: Vec<String>,
    warned_translation: HashSet<(String, String)>,
    calendars: Vec<Calendar>,
    calendar_ids: HashMap<String, usize>,
    /// Menu lint thresholds, from a file's `lint:` section or the defaults.
    max_menu_options: usize,
    max_menu_depth: usize,
    /// Configured queue names (`None`: not checked).
    queues: Option<&'a BTreeSet<String>>,
    /// Survey name → its scale and where it was first given (one scale per name, or
    /// the KPIs would average different scales).
    surveys: HashMap<String, (u8, String)>,
}

/// A flow found in a file, before compilation.
struct FlowSrc<'a> {
    file: usize,
    name: &'a Str,
    def: &'a Spanned<FlowDef>,
}

/// What node compilation needs to know about the flow it is in.
struct FlowCx<'a> {
    file: usize,
    name: &'a str,
    lang: LangId,
    nodes: &'a HashMap<String, NodeId>,
    flows: &'a HashMap<String, FlowId>,
}

/// The settings `menu` and `collect` share, as written.
struct InputFields<'d> {
    prompt: Option<&'d Spanned<Names>>,
    invalid: Option<&'d Spanned<Names>>,
    no_input: Option<&'d Spanned<Names>>,
    retries: Option<&'d Str>,
    max_failures: Option<&'d Str>,
    barge_in: Option<&'d Str>,
    timeout: Option<&'d Str>,
    inter: Option<&'d Str>,
    total: Option<&'d Str>,
}

fn lc(loc: &Location) -> (usize, usize) {
    (loc.line() as usize, loc.column() as usize)
}

impl<'a> Cx<'a> {
    fn path(&self, file: usize) -> &Path {
        self.sources
            .get(file)
            .map(|s| s.path.as_path())
            .unwrap_or(Path::new(""))
    }

    fn push(&mut self, file: usize, d: Diagnostic) {
        let text = self
            .sources
            .get(file)
            .map(|s| s.text.as_str())
            .unwrap_or("");
        self.diags.push(d.with_source(text));
    }

    fn err(&mut self, file: usize, loc: &Location, msg: impl Into<String>) {
        let (l, c) = lc(loc);
        let d = Diagnostic::error(self.path(file), l, c, msg);
        self.push(file, d);
    }

    fn err_note(&mut self, file: usize, loc: &Location, msg: impl Into<String>, note: &str) {
        let (l, c) = lc(loc);
        let d = Diagnostic::error(self.path(file), l, c, msg).with_note(note);
        self.push(file, d);
    }

    fn warn(&mut self, file: usize, loc: &Location, msg: impl Into<String>) {
        let (l, c) = lc(loc);
        let d = Diagnostic::warning(self.path(file), l, c, msg);
        self.push(file, d);
    }

    fn error_count(&self) -> usize {
        self.diags.iter().filter(|d| d.is_error()).count()
    }

    fn where_is(&self, file: usize, loc: &Location) -> String {
        format!(
            "{}:{}:{}",
            self.path(file).display(),
            loc.line(),
            loc.column()
        )
    }

    fn run(&mut self, version: u64) -> FlowSet {
        let mut parsed: Vec<(usize, FileDef)> = Vec::new();
        for (i, src) in self.sources.iter().enumerate() {
            self.lint_text(i, &src.text);
            match schema::parse(&src.text) {
                Ok(f) => parsed.push((i, f)),
                Err(e) => self.yaml_error(i, &src.text, &e),
            }
        }
        if self.sources.is_empty() {
            self.diags.push(Diagnostic::error(
                Path::new("flows"),
                0,
                0,
                "no flow files (*.yaml) found",
            ));
        }

        // Flows across all files, first definition wins.
        let mut flow_srcs: Vec<FlowSrc<'_>> = Vec::new();
        let mut flow_ids: HashMap<String, FlowId> = HashMap::new();
        let mut flow_first: HashMap<String, (usize, Location)> = HashMap::new();
        // Lint thresholds first: menus are checked against them while they compile.
        let mut lint_file: Option<usize> = None;
        for (file, f) in &parsed {
            let Some(lint) = &f.lint else { continue };
            self.key_issues(*file, &lint.value.issues, "in `lint`");
            if let Some(first) = lint_file {
                let first = self.sources[first].path.display().to_string();
                self.err(
                    *file,
                    &lint.referenced,
                    format!("`lint` is already set in {first}; keep the settings in one file"),
                );
                continue;
            }
            lint_file = Some(*file);
            let l = &lint.value;
            let default = MAX_MENU_OPTIONS as u32;
            let n = self.opt_count(
                *file,
                l.max_menu_options.as_ref(),
                "`max_menu_options`",
                1,
                20,
                default,
            );
            self.max_menu_options = n as usize;
            let default = MAX_MENU_DEPTH as u32;
            let n = self.opt_count(
                *file,
                l.max_menu_depth.as_ref(),
                "`max_menu_depth`",
                1,
                20,
                default,
            );
            self.max_menu_depth = n as usize;
        }
        for (file, f) in &parsed {
            self.key_issues(*file, &f.issues, "at the top level of a flow file");
            let Some(flows) = &f.flows else { continue };
            for (name, def) in &flows.value.0 {
                if !valid_name(&name.value) {
                    self.err(
                        *file,
                        &name.referenced,
                        format!(
                            "invalid flow name `{}`: use letters, digits, `_` and `-`",
                            name.value
                        ),
                    );
                }
                if let Some((pf, pl)) = flow_first.get(&name.value) {
                    let prev = self.where_is(*pf, pl);
                    self.err(
                        *file,
                        &name.referenced,
                        format!("duplicate flow `{}` (first defined at {prev})", name.value),
                    );
                    continue;
                }
                flow_first.insert(name.value.clone(), (*file, name.referenced));
                flow_ids.insert(name.value.clone(), FlowId(flow_srcs.len() as u32));
                flow_srcs.push(FlowSrc {
                    file: *file,
                    name,
                    def,
                });
            }
        }

        // Languages and variables first: nodes refer to them across flows.
        self.intern_lang(DEFAULT_LANGUAGE);
        for fs in &flow_srcs {
            let lang = fs
                .def
                .value
                .language
                .as_ref()
                .map(|l| l.value.as_str())
                .unwrap_or(DEFAULT_LANGUAGE);
            if valid_lang(lang) {
                self.intern_lang(lang);
            }
            for (_, node) in nodes_of(&fs.def.value) {
                if let Some(l) = &node.value.language
                    && valid_lang(&l.value)
                {
                    self.intern_lang(&l.value);
                    self.switch_langs.insert(l.value.clone());
                }
                if let Some(c) = &node.value.collect
                    && let Some(into) = &c.value.into
                    && valid_var(&into.value)
                {
                    self.intern_var(&into.value);
                }
                if let Some(set) = &node.value.set {
                    for (k, _) in &set.value.0 {
                        if valid_var(&k.value) {
                            self.intern_var(&k.value);
                        }
                    }
                }
                if node.value.lookup.is_some() || node.value.update.is_some() {
                    for v in LOOKUP_VARS {
                        self.intern_var(v);
                    }
                }
                if node.value.verify_pin.is_some() {
                    for v in PIN_VARS {
                        self.intern_var(v);
                    }
                }
            }
        }
        let var_ids = |cx: &Self, names: &[&str]| -> Vec<Option<VarId>> {
            names
                .iter()
                .map(|n| cx.vars.iter().position(|v| v == n).map(|i| VarId(i as u32)))
                .collect()
        };
        let lookup_vars = var_ids(self, LOOKUP_VARS);
        let pin_vars = var_ids(self, PIN_VARS);

        // Calendars, shared by all flows.
        let mut cal_first: HashMap<String, (usize, Location)> = HashMap::new();
        for (file, f) in &parsed {
            let Some(cals) = &f.calendars else { continue };
            for (name, def) in &cals.value.0 {
                if let Some((pf, pl)) = cal_first.get(&name.value) {
                    let prev = self.where_is(*pf, pl);
                    self.err(
                        *file,
                        &name.referenced,
                        format!(
                            "duplicate calendar `{}` (first defined at {prev})",
                            name.value
                        ),
                    );
                    continue;
                }
                cal_first.insert(name.value.clone(), (*file, name.referenced));
                if let Some(cal) = self.calendar(*file, name, def) {
                    self.calendar_ids
                        .insert(name.value.clone(), self.calendars.len());
                    self.calendars.push(cal);
                }
            }
        }

        let mut flows = Vec::new();
        for (idx, fs) in flow_srcs.iter().enumerate() {
            flows.push(self.flow(fs, FlowId(idx as u32), &flow_ids));
        }

        // Routes.
        let mut exact_routes = HashMap::new();
        let mut exact_first: HashMap<String, (usize, Location)> = HashMap::new();
        let mut pattern_routes = Vec::new();
        let mut default_route: Option<(FlowId, usize, Location)> = None;
        let mut any_route = false;
        for (file, f) in &parsed {
            let Some(routes) = &f.routes else { continue };
            for r in &routes.value.0 {
                any_route = true;
                self.key_issues(*file, &r.value.issues, "in a route");
                let flow = match &r.value.flow {
                    None => {
                        self.err(*file, &r.referenced, "route needs `flow:`");
                        None
                    }
                    Some(name) => match flow_ids.get(&name.value) {
                        Some(id) => Some(*id),
                        None => {
                            let h = hint(&name.value, flow_ids.keys().map(String::as_str));
                            self.err(
                                *file,
                                &name.referenced,
                                format!("route to unknown flow `{}`{h}", name.value),
                            );
                            None
                        }
                    },
                };
                match (&r.value.number, &r.value.pattern) {
                    (Some(_), Some(p)) => self.err(
                        *file,
                        &p.referenced,
                        "a route has either `number:` or `pattern:`, not both",
                    ),
                    (None, None) => self.err(
                        *file,
                        &r.referenced,
                        "route needs `number:` (or `pattern:`, or `number: default`)",
                    ),
                    (Some(n), None) if n.value == "default" => {
                        if let Some((_, pf, pl)) = &default_route {
                            let prev = self.where_is(*pf, pl);
                            self.err(
                                *file,
                                &n.referenced,
                                format!("second default route (first at {prev})"),
                            );
                        } else if let Some(f) = flow {
                            default_route = Some((f, *file, n.referenced));
                        }
                    }
                    (Some(n), None) => {
                        if n.value.is_empty() {
                            self.err(*file, &n.referenced, "empty route number");
                        } else if let Some((pf, pl)) = exact_first.get(&n.value) {
                            let prev = self.where_is(*pf, pl);
                            self.err(
                                *file,
                                &n.referenced,
                                format!(
                                    "duplicate route for number `{}` (first at {prev})",
                                    n.value
                                ),
                            );
                        } else {
                            exact_first.insert(n.value.clone(), (*file, n.referenced));
                            if let Some(f) = flow {
                                exact_routes.insert(n.value.clone(), f);
                            }
                        }
                    }
                    (None, Some(p)) => match Pattern::parse(&p.value) {
                        Ok(pat) => {
                            if let Some(f) = flow {
                                pattern_routes.push((pat, f));
                            }
                        }
                        Err(e) => self.err(
                            *file,
                            &p.referenced,
                            format!("bad route pattern `{}`: {e}", p.value),
                        ),
                    },
                }
            }
        }
        if !any_route && !self.sources.is_empty() && !parsed.is_empty() {
            let file = parsed.first().map(|(f, _)| *f).unwrap_or(0);
            let d = Diagnostic::error(
                self.path(file),
                1,
                1,
                "no route: no call can reach any flow",
            )
            .with_note("add `routes:` with at least `- { number: default, flow: <name> }`");
            self.push(file, d);
        }

        // The default goodbye prompt and `say` fragments, per language.
        let goodbye_by_lang: Box<[Option<PromptId>]> = self
            .langs
            .iter()
            .map(|l| self.resolve(l, DEFAULT_GOODBYE_PROMPT))
            .collect();
        let goodbye = if goodbye_by_lang.iter().any(Option::is_some) {
            vec![Prompt {
                by_lang: goodbye_by_lang,
            }]
        } else {
            Vec::new()
        };
        let fragments = self
            .langs
            .iter()
            .map(|l| {
                say::all_fragments()
                    .into_iter()
                    .filter_map(|f| self.resolve(l, &f).map(|p| (f, p)))
                    .collect()
            })
            .collect();

        FlowSet {
            version,
            flows,
            exact_routes,
            pattern_routes,
            default_route: default_route.map(|(f, _, _)| f),
            languages: self.langs.clone(),
            vars: self.vars.clone(),
            goodbye,
            fragments,
            calendars: std::mem::take(&mut self.calendars),
            lookup_vars,
            pin_vars,
        }
    }

    fn intern_lang(&mut self, l: &str) -> LangId {
        if let Some(i) = self.langs.iter().position(|x| x == l) {
            return LangId(i as u16);
        }
        self.langs.push(l.to_string());
        LangId((self.langs.len() - 1) as u16)
    }

    fn intern_var(&mut self, v: &str) -> VarId {
        if let Some(i) = self.vars.iter().position(|x| x == v) {
            return VarId(i as u32);
        }
        self.vars.push(v.to_string());
        VarId((self.vars.len() - 1) as u32)
    }

    /// Text lints the YAML parser cannot see: `#:` is a comment in YAML, so
    /// an unquoted `#` menu option silently disappears.
    fn lint_text(&mut self, file: usize, text: &str) {
        for (i, line) in text.lines().enumerate() {
            let trimmed = line.trim_start();
            if let Some(rest) = trimmed.strip_prefix("#:")
                && (rest.is_empty() || rest.starts_with(' ') || rest.starts_with('\t'))
            {
                let col = line.chars().count() - trimmed.chars().count() + 1;
                let d = Diagnostic::error(
                    self.path(file),
                    i + 1,
                    col,
                    "unquoted `#` key: YAML reads `#` as the start of a comment, so this option is ignored",
                )
                .with_note("quote DTMF keys: `\"#\": target`");
                self.push(file, d);
            }
        }
    }

    fn yaml_error(&mut self, file: usize, text: &str, e: &serde_saphyr::Error) {
        let inner = e.without_snippet();
        let msg = serde_saphyr::DefaultMessageFormatter
            .format_message(inner)
            .to_string();
        let (line, col) = e.location().map(|l| lc(&l)).unwrap_or((0, 0));
        let mut d = Diagnostic::error(self.path(file), line, col, format!("YAML: {msg}"));
        // `*: x` reads as an alias: explain.
        if line > 0
            && let Some(src) = text.lines().nth(line - 1)
        {
            let at: String = src.chars().skip(col.saturating_sub(1)).take(2).collect();
            if at.starts_with('*') {
                d = d.with_note(
                    "an unquoted `*` starts a YAML alias; quote DTMF keys: `\"*\": target`",
                );
            }
        }
        self.push(file, d);
    }

    fn key_issues(&mut self, file: usize, issues: &[KeyIssue], place: &str) {
        for i in issues {
            match i {
                KeyIssue::Unknown { key, at, expected } => {
                    let h = hint(key, expected.iter().copied());
                    if h.is_empty() {
                        self.err_note(
                            file,
                            at,
                            format!("unknown key `{key}` {place}"),
                            &format!("expected one of: {}", expected.join(", ")),
                        );
                    } else {
                        self.err(file, at, format!("unknown key `{key}` {place}{h}"));
                    }
                }
                KeyIssue::Duplicate { key, at } => {
                    self.err(file, at, format!("duplicate key `{key}` {place}"));
                }
            }
        }
    }

    // -- one flow -----------------------------------------------------------

    fn flow(&mut self, fs: &FlowSrc<'_>, _id: FlowId, flow_ids: &HashMap<String, FlowId>) -> Flow {
        let file = fs.file;
        let def = &fs.def.value;
        let name = fs.name.value.as_str();
        self.key_issues(file, &def.issues, &format!("in flow `{name}`"));

        let lang = match &def.language {
            Some(l) if !valid_lang(&l.value) => {
                self.err(
                    file,
                    &l.referenced,
                    format!(
                        "invalid language `{}`: use a tag like `en` or `pt-BR`",
                        l.value
                    ),
                );
                LangId(0)
            }
            Some(l) => self.intern_lang(&l.value),
            None => LangId(0),
        };

        let errors_before = self.error_count();
        // Node table.
        let mut node_ids: HashMap<String, NodeId> = HashMap::new();
        let mut defs: Vec<(&Str, &Spanned<NodeDef>)> = Vec::new();
        match &def.nodes {
            None => self.err(
                file,
                &fs.name.referenced,
                format!("flow `{name}` has no `nodes:`"),
            ),
            Some(nodes) if nodes.value.0.is_empty() => self.err(
                file,
                &nodes.referenced,
                format!("flow `{name}` has no nodes"),
            ),
            Some(_) => {}
        }
        let mut first_at: HashMap<&str, Location> = HashMap::new();
        for (n, d) in nodes_of(def) {
            if !valid_name(&n.value) {
                self.err(
                    file,
                    &n.referenced,
                    format!(
                        "invalid node name `{}`: use letters, digits, `_` and `-`",
                        n.value
                    ),
                );
            }
            if let Some(prev) = first_at.get(n.value.as_str()) {
                let prev = self.where_is(file, prev);
                self.err(
                    file,
                    &n.referenced,
                    format!("duplicate node `{}` (first defined at {prev})", n.value),
                );
                continue;
            }
            first_at.insert(n.value.as_str(), n.referenced);
            node_ids.insert(n.value.clone(), NodeId(defs.len() as u32));
            defs.push((n, d));
        }

        let start = match &def.start {
            None => {
                self.err(
                    file,
                    &fs.name.referenced,
                    format!("flow `{name}` needs `start:` naming its first node"),
                );
                NodeId(0)
            }
            Some(s) => match node_ids.get(&s.value) {
                Some(id) => *id,
                None => {
                    let h = hint(&s.value, node_ids.keys().map(String::as_str));
                    self.err(
                        file,
                        &s.referenced,
                        format!(
                            "start node `{}` does not exist in flow `{name}`{h}",
                            s.value
                        ),
                    );
                    NodeId(0)
                }
            },
        };

        let fc = FlowCx {
            file,
            name,
            lang,
            nodes: &node_ids,
            flows: flow_ids,
        };
        let mut nodes = Vec::with_capacity(defs.len());
        for (n, d) in &defs {
            nodes.push(self.node(&fc, n, d));
        }

        // Lints over the graph; skipped when errors left placeholder edges.
        if !nodes.is_empty() && self.error_count() == errors_before {
            let mut seen = vec![false; nodes.len()];
            let mut stack = vec![start];
            while let Some(n) = stack.pop() {
                let i = n.0 as usize;
                if i >= nodes.len() || seen[i] {
                    continue;
                }
                seen[i] = true;
                stack.extend(nodes[i].kind.successors());
            }
            for (i, (n, _)) in defs.iter().enumerate() {
                if !seen[i] {
                    self.warn(
                        file,
                        &n.referenced,
                        format!("node `{}` is unreachable from `start`", n.value),
                    );
                }
            }
            self.check_busy_loops(file, &nodes, &defs);
            self.check_menu_depth(file, start, &nodes, &defs, &seen);
            self.check_exits(file, name, &nodes, &defs, &seen);
        }

        Flow {
            name: name.to_string(),
            language: lang,
            start,
            nodes,
        }
    }

    /// Warns about menus the caller can only reach through more than
    /// [`MAX_MENU_DEPTH`] menus (counting the shortest way from `start`).
    fn check_menu_depth(
        &mut self,
        file: usize,
        start: NodeId,
        nodes: &[Node],
        defs: &[(&Str, &Spanned<NodeDef>)],
        reachable: &[bool],
    ) {
        let is_menu = |i: usize| matches!(nodes[i].kind, Kind::Menu(_));
        let mut depth = vec![usize::MAX; nodes.len()];
        let mut queue = std::collections::VecDeque::new();
        let s = start.0 as usize;
        depth[s] = usize::from(is_menu(s));
        queue.push_back(s);
        // 0-1 BFS: entering a menu costs 1, any other node 0.
        while let Some(i) = queue.pop_front() {
            for n in nodes[i].kind.successors() {
                let j = n.0 as usize;
                if j >= nodes.len() {
                    continue;
                }
                let cost = usize::from(is_menu(j));
                if depth[i] + cost < depth[j] {
                    depth[j] = depth[i] + cost;
                    if cost == 0 {
                        queue.push_front(j);
                    } else {
                        queue.push_back(j);
                    }
                }
            }
        }
        for (i, (name, _)) in defs.iter().enumerate() {
            if reachable[i]
                && is_menu(i)
                && depth[i] != usize::MAX
                && depth[i] > self.max_menu_depth
            {
                self.warn(
                    file,
                    &name.referenced,
                    format!(
                        "menu `{}` is {} menus deep; callers get lost beyond {}",
                        name.value, depth[i], self.max_menu_depth
                    ),
                );
            }
        }
    }

    /// Warns about reachable nodes from which the call can never end by
    /// itself (no way to a hangup, transfer, return, subflow or a menu's
    /// default goodbye): only the caller hanging up ends such a loop.
    fn check_exits(
        &mut self,
        file: usize,
        flow: &str,
        nodes: &[Node],
        defs: &[(&Str, &Spanned<NodeDef>)],
        reachable: &[bool],
    ) {
        let n = nodes.len();
        let mut preds: Vec<Vec<usize>> = vec![Vec::new(); n];
        let mut can_end = vec![false; n];
        let mut stack = Vec::new();
        for (i, node) in nodes.iter().enumerate() {
            for s in node.kind.successors() {
                if (s.0 as usize) < n {
                    preds[s.0 as usize].push(i);
                }
            }
            let exit = match &node.kind {
                // A queue ends the flow when the caller is bridged to an agent.
                Kind::Hangup
                | Kind::Transfer { .. }
                | Kind::Queue(_)
                | Kind::Return
                | Kind::Subflow { .. } => true,
                Kind::Menu(m) => m.input.max_failures.is_none(),
                Kind::Collect(c) => c.input.max_failures.is_none(),
                _ => false,
            };
            if exit {
                can_end[i] = true;
                stack.push(i);
            }
        }
        while let Some(i) = stack.pop() {
            for &p in &preds[i] {
                if !can_end[p] {
                    can_end[p] = true;
                    stack.push(p);
                }
            }
        }
        let stuck: Vec<usize> = (0..n).filter(|&i| reachable[i] && !can_end[i]).collect();
        if let Some(&first) = stuck.first() {
            let names: Vec<&str> = stuck.iter().map(|&i| defs[i].0.value.as_str()).collect();
            self.warn(
                file,
                &defs[first].0.referenced,
                format!(
                    "flow `{flow}` can loop forever: from {} no path leads to a hangup, transfer or return",
                    names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", ")
                ),
            );
        }
    }

    /// A cycle made only of nodes that never wait (goto, set, branch,
    /// language) would spin forever: refuse it.
    fn check_busy_loops(
        &mut self,
        file: usize,
        nodes: &[Node],
        defs: &[(&Str, &Spanned<NodeDef>)],
    ) {
        // Iterative DFS colouring over the "immediate" subgraph.
        let n = nodes.len();
        let mut colour = vec![0u8; n]; // 0 new, 1 on stack, 2 done
        let mut reported = vec![false; n];
        for root in 0..n {
            if colour[root] != 0 || nodes[root].kind.waits() {
                continue;
            }
            let mut stack: Vec<(usize, Vec<NodeId>)> = vec![(root, nodes[root].kind.successors())];
            colour[root] = 1;
            while let Some((at, succ)) = stack.last_mut() {
                let at = *at;
                if let Some(next) = succ.pop() {
                    let j = next.0 as usize;
                    if j >= n || nodes[j].kind.waits() {
                        continue;
                    }
                    if colour[j] == 1 {
                        if !reported[j] {
                            reported[j] = true;
                            let (name, _) = defs[j];
                            self.err(
                                file,
                                &name.referenced,
                                format!(
                                    "node `{}` is in a loop that never waits for the caller (only goto/set/branch/language nodes)",
                                    name.value
                                ),
                            );
                        }
                    } else if colour[j] == 0 {
                        colour[j] = 1;
                        stack.push((j, nodes[j].kind.successors()));
                    }
                } else {
                    colour[at] = 2;
                    stack.pop();
                }
            }
        }
    }

    // -- one node -----------------------------------------------------------

    fn node(&mut self, fc: &FlowCx<'_>, name: &Str, def: &Spanned<NodeDef>) -> Node {
        let file = fc.file;
        let d = &def.value;
        self.key_issues(file, &d.issues, &format!("in node `{}`", name.value));
        let kinds = d.kinds();
        if kinds.is_empty() && d.issues.is_empty() {
            self.err_note(
                file,
                &name.referenced,
                format!("node `{}` has no kind", name.value),
                &format!("give it one of: {}", NODE_KINDS.join(", ")),
            );
        } else if kinds.len() > 1 {
            let (k0, _) = kinds[0];
            for (k, at) in &kinds[1..] {
                self.err(
                    file,
                    at,
                    format!(
                        "node `{}` has two kinds, `{k0}` and `{k}`; split it into two nodes",
                        name.value
                    ),
                );
            }
        }
        let kind_name = kinds.first().map(|(k, _)| *k).unwrap_or("");
        let flush = self.opt_bool(file, d.flush.as_ref(), false);

        // `next` only where the kind continues to one node.
        let wants_next = matches!(
            kind_name,
            "play" | "collect" | "survey" | "set" | "say" | "subflow" | "language"
        );
        let next = if wants_next {
            match &d.next {
                Some(n) => self.target(fc, n),
                None => {
                    self.err(
                        file,
                        &name.referenced,
                        format!("`{kind_name}` node `{}` needs `next:`", name.value),
                    );
                    NodeId(0)
                }
            }
        } else {
            if let Some(n) = &d.next
                && !kind_name.is_empty()
            {
                self.err(
                    file,
                    &n.referenced,
                    format!("`next` has no effect on a `{kind_name}` node"),
                );
            }
            NodeId(0)
        };
        if let Some(b) = &d.barge_in
            && !matches!(kind_name, "play" | "say")
            && !kind_name.is_empty()
        {
            let where_ = if matches!(kind_name, "menu" | "collect" | "survey") {
                format!("; put it inside `{kind_name}:`")
            } else {
                String::new()
            };
            self.err(
                file,
                &b.referenced,
                format!("`barge_in` has no effect on a `{kind_name}` node{where_}"),
            );
        }
        let node_barge_in = self.opt_bool(file, d.barge_in.as_ref(), false);

        let kind = match kind_name {
            "play" => {
                let prompts = d
                    .play
                    .as_ref()
                    .map(|p| self.prompts(fc, p))
                    .unwrap_or_default();
                if let Some(p) = &d.play
                    && p.value.0.is_empty()
                {
                    self.err(file, &p.referenced, "`play` needs at least one prompt");
                }
                Kind::Play {
                    prompts,
                    barge_in: node_barge_in,
                    next,
                }
            }
            "menu" => match &d.menu {
                Some(m) => Kind::Menu(Box::new(self.menu(fc, m))),
                None => Kind::Hangup,
            },
            "collect" => match &d.collect {
                Some(c) => Kind::Collect(Box::new(self.collect(fc, c, next))),
                None => Kind::Hangup,
            },
            "survey" => match &d.survey {
                Some(s) => Kind::Survey(Box::new(self.survey(fc, s, next))),
                None => Kind::Hangup,
            },
            "goto" => match &d.goto {
                Some(t) => Kind::Goto(self.target(fc, t)),
                None => Kind::Hangup,
            },
            "hangup" => Kind::Hangup,
            "return" => Kind::Return,
            "set" => {
                let mut assign = Vec::new();
                if let Some(s) = &d.set {
                    if s.value.0.is_empty() {
                        self.err(
                            file,
                            &s.referenced,
                            "`set` needs at least one `variable: value`",
                        );
                    }
                    for (k, v) in &s.value.0 {
                        if BUILTIN_VARS.contains(&k.value.as_str()) {
                            self.err(
                                file,
                                &k.referenced,
                                format!("`{}` is a built-in variable and cannot be set", k.value),
                            );
                        } else if !valid_var(&k.value) {
                            self.err(
                                file,
                                &k.referenced,
                                format!(
                                    "invalid variable name `{}`: use letters, digits and `_`",
                                    k.value
                                ),
                            );
                        }
                        let var = self.intern_var(&k.value);
                        let val = self.value(fc, v);
                        assign.push((var, val));
                    }
                }
                Kind::Set { assign, next }
            }
            "branch" => match &d.branch {
                Some(b) => self.branch(fc, b),
                None => Kind::Hangup,
            },
            "say" => match &d.say {
                Some(s) => self.say(fc, s, node_barge_in, next),
                None => Kind::Hangup,
            },
            "subflow" => match &d.subflow {
                Some(s) => match fc.flows.get(&s.value) {
                    Some(f) => Kind::Subflow { flow: *f, next },
                    None => {
                        let h = hint(&s.value, fc.flows.keys().map(String::as_str));
                        self.err(
                            file,
                            &s.referenced,
                            format!("unknown flow `{}`{h}", s.value),
                        );
                        Kind::Hangup
                    }
                },
                None => Kind::Hangup,
            },
            "transfer" => match &d.transfer {
                Some(t) => self.transfer(fc, t),
                None => Kind::Hangup,
            },
            "queue" => match &d.queue {
                Some(q) => self.queue(fc, q),
                None => Kind::Hangup,
            },
            "callback" => match &d.callback {
                Some(c) => self.callback(fc, c),
                None => Kind::Hangup,
            },
            "language" => match &d.language {
                Some(l) if valid_lang(&l.value) => Kind::Language {
                    lang: self.intern_lang(&l.value),
                    next,
                },
                Some(l) => {
                    self.err(
                        file,
                        &l.referenced,
                        format!(
                            "invalid language `{}`: use a tag like `en` or `pt-BR`",
                            l.value
                        ),
                    );
                    Kind::Hangup
                }
                None => Kind::Hangup,
            },
            "hours" => match &d.hours {
                Some(h) => self.hours(fc, h),
                None => Kind::Hangup,
            },
            "lookup" => match &d.lookup {
                Some(l) => self.lookup(fc, l),
                None => Kind::Hangup,
            },
            "verify_pin" => match &d.verify_pin {
                Some(v) => self.verify_pin(fc, v),
                None => Kind::Hangup,
            },
            "update" => match &d.update {
                Some(u) => self.update(fc, u),
                None => Kind::Hangup,
            },
            _ => Kind::Hangup,
        };
        Node {
            name: name.value.clone(),
            flush,
            kind,
        }
    }

    fn target(&mut self, fc: &FlowCx<'_>, t: &Str) -> NodeId {
        if t.value.is_empty() {
            self.err(fc.file, &t.referenced, "missing node name");
            return NodeId(0);
        }
        match fc.nodes.get(&t.value) {
            Some(id) => *id,
            None => {
                let h = hint(&t.value, fc.nodes.keys().map(String::as_str));
                self.err(
                    fc.file,
                    &t.referenced,
                    format!("unknown node `{}` in flow `{}`{h}", t.value, fc.name),
                );
                NodeId(0)
            }
        }
    }

    fn resolve(&self, lang: &str, name: &str) -> Option<PromptId> {
        self.catalog
            .lookup(&format!("{lang}/{name}"))
            .or_else(|| self.catalog.lookup(&format!("{DEFAULT_LANGUAGE}/{name}")))
            .or_else(|| self.catalog.lookup(name))
    }

    fn prompts(&mut self, fc: &FlowCx<'_>, names: &Spanned<Names>) -> Prompts {
        let mut out = Vec::new();
        for (name, loc) in &names.value.0 {
            let loc = loc.unwrap_or(names.referenced);
            if let Some(p) = self.prompt(fc, name, &loc) {
                out.push(p);
            }
        }
        out
    }

    fn prompt(&mut self, fc: &FlowCx<'_>, name: &str, loc: &Location) -> Option<Prompt> {
        if name.trim().is_empty() {
            self.err(fc.file, loc, "empty prompt name");
            return None;
        }
        let own_lang = self
            .langs
            .get(fc.lang.0 as usize)
            .cloned()
            .unwrap_or_else(|| DEFAULT_LANGUAGE.to_string());
        let own = self.resolve(&own_lang, name);
        if own.is_none() {
            let mut looked = vec![format!("{own_lang}/{name}")];
            if own_lang != DEFAULT_LANGUAGE {
                looked.push(format!("{DEFAULT_LANGUAGE}/{name}"));
            }
            looked.push(name.to_string());
            self.err(
                fc.file,
                loc,
                format!(
                    "unknown prompt `{name}` (looked for {})",
                    looked
                        .iter()
                        .map(|l| format!("`{l}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            );
            return None;
        }
        let langs = self.langs.clone();
        let switch: Vec<String> = self.switch_langs.iter().cloned().collect();
        for l in &switch {
            if *l != own_lang
                && self.catalog.lookup(&format!("{l}/{name}")).is_none()
                && self
                    .warned_translation
                    .insert((l.clone(), name.to_string()))
            {
                self.warn(
                    fc.file,
                    loc,
                    format!("missing translation `{l}/{name}`: callers in `{l}` hear the fallback"),
                );
            }
        }
        let by_lang = langs
            .iter()
            .map(|l| self.resolve(l, name).or(own))
            .collect();
        Some(Prompt { by_lang })
    }

    fn opt_prompts(&mut self, fc: &FlowCx<'_>, names: Option<&Spanned<Names>>) -> Prompts {
        names.map(|n| self.prompts(fc, n)).unwrap_or_default()
    }

    fn opt_bool(&mut self, file: usize, v: Option<&Str>, default: bool) -> bool {
        let Some(v) = v else { return default };
        match v.value.to_ascii_lowercase().as_str() {
            "true" | "yes" | "on" => true,
            "false" | "no" | "off" => false,
            _ => {
                self.err(
                    file,
                    &v.referenced,
                    format!("expected `true` or `false`, found `{}`", v.value),
                );
                default
            }
        }
    }

    fn opt_duration(&mut self, file: usize, v: Option<&Str>, default: Duration) -> Duration {
        let Some(v) = v else { return default };
        match parse_duration(&v.value) {
            Ok(d) if d < MIN_TIMEOUT || d > MAX_TIMEOUT => {
                self.err(
                    file,
                    &v.referenced,
                    format!("timeout `{}` is out of range (100ms to 10m)", v.value),
                );
                default
            }
            Ok(d) => d,
            Err(e) => {
                self.err(
                    file,
                    &v.referenced,
                    format!("bad duration `{}`: {e}", v.value),
                );
                default
            }
        }
    }

    fn opt_count(
        &mut self,
        file: usize,
        v: Option<&Str>,
        what: &str,
        lo: u32,
        hi: u32,
        default: u32,
    ) -> u32 {
        let Some(v) = v else { return default };
        match v.value.trim().parse::<i64>() {
            Ok(n) if n >= i64::from(lo) && n <= i64::from(hi) => n as u32,
            Ok(n) => {
                self.err(
                    file,
                    &v.referenced,
                    format!("{what} must be between {lo} and {hi}, found {n}"),
                );
                default
            }
            Err(_) => {
                self.err(
                    file,
                    &v.referenced,
                    format!("{what} must be a whole number, found `{}`", v.value),
                );
                default
            }
        }
    }

    fn opt_key(&mut self, file: usize, v: Option<&Str>, what: &str) -> Option<Digit> {
        let v = v?;
        let mut chars = v.value.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) => match Digit::from_char(c) {
                Some(d) => Some(d),
                None => {
                    self.err(
                        file,
                        &v.referenced,
                        format!("{what} `{}` is not a DTMF key (0-9 * # A-D)", v.value),
                    );
                    None
                }
            },
            _ => {
                self.err(
                    file,
                    &v.referenced,
                    format!("{what} must be one DTMF key, found `{}`", v.value),
                );
                None
            }
        }
    }

    fn input_common(
        &mut self,
        fc: &FlowCx<'_>,
        f: InputFields<'_>,
        at: &Location,
        what: &str,
    ) -> Input {
        let file = fc.file;
        let prompt_list = self.opt_prompts(fc, f.prompt);
        if f.prompt.is_none() {
            self.err(file, at, format!("`{what}` needs a `prompt:`"));
        }
        Input {
            prompt: prompt_list,
            reprompt: None,
            invalid: self.opt_prompts(fc, f.invalid),
            no_input: self.opt_prompts(fc, f.no_input),
            barge_in: self.opt_bool(file, f.barge_in, true),
            retries: self.opt_count(file, f.retries, "`retries`", 1, MAX_RETRIES, 3),
            max_failures: f.max_failures.map(|t| self.target(fc, t)),
            timeout: self.opt_duration(file, f.timeout, Duration::from_secs(5)),
            inter_digit: self.opt_duration(file, f.inter, Duration::from_secs(3)),
            total: f
                .total
                .map(|t| self.opt_duration(file, Some(t), Duration::from_secs(30))),
        }
    }

    fn menu(&mut self, fc: &FlowCx<'_>, m: &Spanned<MenuDef>) -> Menu {
        let file = fc.file;
        let d = &m.value;
        self.key_issues(file, &d.issues, "in `menu`");
        let fields = InputFields {
            prompt: d.prompt.as_ref(),
            invalid: d.invalid.as_ref(),
            no_input: d.no_input.as_ref(),
            retries: d.retries.as_ref(),
            max_failures: d.max_failures.as_ref(),
            barge_in: d.barge_in.as_ref(),
            timeout: d.timeout.as_ref(),
            inter: d.inter_digit_timeout.as_ref(),
            total: None,
        };
        let mut input = self.input_common(fc, fields, &m.referenced, "menu");
        if let Some(sp) = &d.short_prompt {
            input.reprompt = Some(self.prompts(fc, sp));
        }
        let max_digits =
            self.opt_count(file, d.max_digits.as_ref(), "`max_digits`", 1, 20, 1) as usize;
        let repeat = self.opt_key(file, d.repeat.as_ref(), "`repeat`");

        let mut options: Vec<(Vec<Digit>, NodeId)> = Vec::new();
        let mut first_at: HashMap<Vec<Digit>, Location> = HashMap::new();
        match &d.options {
            None if !d.issues.is_empty() => {}
            None => self.err_note(
                file,
                &m.referenced,
                "menu has no `options:`",
                "options map keys to nodes, e.g. `\"1\": hours`",
            ),
            Some(o) if o.value.0.is_empty() => self.err_note(
                file,
                &o.referenced,
                "menu has no options",
                "an unquoted `#` key is a YAML comment: quote keys, e.g. `\"#\": target`",
            ),
            Some(_) => {}
        }
        for (key, target) in d.options.iter().flat_map(|o| o.value.0.iter()) {
            let tgt = self.target(fc, target);
            let k = key.value.as_str();
            let digits: Option<Vec<Digit>> = k.chars().map(Digit::from_char).collect();
            let Some(digits) = digits.filter(|d| !d.is_empty()) else {
                let msg = match k {
                    "" => "empty DTMF key".to_string(),
                    "~" | "null" => format!("invalid DTMF key `{k}` (YAML null)"),
                    _ => format!("invalid DTMF key `{k}`"),
                };
                self.err_note(
                    file,
                    &key.referenced,
                    msg,
                    "keys are 0-9, *, #, A-D; quote them: `\"*\": target`",
                );
                continue;
            };
            if digits.len() > max_digits {
                self.err_note(
                    file,
                    &key.referenced,
                    format!(
                        "option `{k}` has {} keys but this menu takes {max_digits}",
                        digits.len()
                    ),
                    "set `max_digits:` on the menu for multi-digit options",
                );
                continue;
            }
            if let Some(prev) = first_at.get(&digits) {
                let prev = self.where_is(file, prev);
                self.err(
                    file,
                    &key.referenced,
                    format!("duplicate option `{k}` (first at {prev})"),
                );
                continue;
            }
            if repeat.is_some() && digits.len() == 1 && Some(digits[0]) == repeat {
                self.err(
                    file,
                    &key.referenced,
                    format!("option `{k}` is also the menu's `repeat` key"),
                );
            }
            first_at.insert(digits.clone(), key.referenced);
            options.push((digits, tgt));
        }
        if options.len() > self.max_menu_options
            && let Some(o) = &d.options
        {
            self.warn(
                file,
                &o.referenced,
                format!(
                    "menu has {} options; callers remember at most {}, consider splitting it",
                    options.len(),
                    self.max_menu_options
                ),
            );
        }
        Menu {
            input,
            options,
            max_digits,
            repeat,
        }
    }

    fn collect(&mut self, fc: &FlowCx<'_>, c: &Spanned<CollectDef>, next: NodeId) -> Collect {
        let file = fc.file;
        let d = &c.value;
        self.key_issues(file, &d.issues, "in `collect`");
        let fields = InputFields {
            prompt: d.prompt.as_ref(),
            invalid: d.invalid.as_ref(),
            no_input: d.no_input.as_ref(),
            retries: d.retries.as_ref(),
            max_failures: d.max_failures.as_ref(),
            barge_in: d.barge_in.as_ref(),
            timeout: d.timeout.as_ref(),
            inter: d.inter_digit_timeout.as_ref(),
            total: d.total_timeout.as_ref(),
        };
        let input = self.input_common(fc, fields, &c.referenced, "collect");
        let into = match &d.into {
            None => {
                self.err(
                    file,
                    &c.referenced,
                    "`collect` needs `into:` naming a variable",
                );
                VarId(0)
            }
            Some(v) if BUILTIN_VARS.contains(&v.value.as_str()) => {
                self.err(
                    file,
                    &v.referenced,
                    format!("`{}` is a built-in variable", v.value),
                );
                VarId(0)
            }
            Some(v) if !valid_var(&v.value) => {
                self.err(
                    file,
                    &v.referenced,
                    format!(
                        "invalid variable name `{}`: use letters, digits and `_`",
                        v.value
                    ),
                );
                VarId(0)
            }
            Some(v) => self.intern_var(&v.value),
        };
        let (mut min, mut max) = (1u32, 20u32);
        if let Some(exact) = &d.digits {
            if d.min.is_some() || d.max.is_some() {
                self.err(
                    file,
                    &exact.referenced,
                    "use either `digits:` or `min:`/`max:`, not both",
                );
            }
            let n = self.opt_count(file, Some(exact), "`digits`", 1, 64, 1);
            (min, max) = (n, n);
        } else {
            min = self.opt_count(file, d.min.as_ref(), "`min`", 0, 64, min);
            max = self.opt_count(file, d.max.as_ref(), "`max`", 1, 64, max.max(min));
            if min > max
                && let Some(m) = &d.min
            {
                self.err(
                    file,
                    &m.referenced,
                    format!("`min` ({min}) is larger than `max` ({max})"),
                );
            }
        }
        let terminator = match &d.terminator {
            Some(t) if t.value.is_empty() || t.value == "none" => None,
            Some(t) => self.opt_key(file, Some(t), "`terminator`"),
            None => Some(Digit::Pound),
        };
        let pattern = match &d.pattern {
            Some(p) => match Pattern::parse(&p.value) {
                Ok(pat) => {
                    if pat.max_len().is_some_and(|m| m < min as usize)
                        || pat.min_len() > max as usize
                    {
                        self.err(
                            file,
                            &p.referenced,
                            format!(
                                "pattern `{}` can never match between {min} and {max} digits",
                                p.value
                            ),
                        );
                    }
                    Some(pat)
                }
                Err(e) => {
                    self.err(
                        file,
                        &p.referenced,
                        format!("bad pattern `{}`: {e}", p.value),
                    );
                    None
                }
            },
            None => None,
        };
        Collect {
            input,
            into,
            min: min as usize,
            max: max as usize,
            terminator,
            pattern,
            next,
        }
    }

    fn survey(&mut self, fc: &FlowCx<'_>, s: &Spanned<SurveyDef>, next: NodeId) -> Survey {
        let file = fc.file;
        let d = &s.value;
        // The common slip: `next` written inside, as in a menu's options.
        let (next_inside, others): (Vec<KeyIssue>, Vec<KeyIssue>) = d
            .issues
            .iter()
            .cloned()
            .partition(|i| matches!(i, KeyIssue::Unknown { key, .. } if key == "next"));
        self.key_issues(file, &others, "in `survey`");
        for i in &next_inside {
            if let KeyIssue::Unknown { at, .. } = i {
                self.err_note(
                    file,
                    at,
                    "`next` of a survey goes beside `survey:`, not inside it",
                    "as for `collect`: `rate_us: { survey: { .. }, next: goodbye }`",
                );
            }
        }
        let fields = InputFields {
            prompt: d.prompt.as_ref(),
            invalid: d.invalid.as_ref(),
            no_input: d.no_input.as_ref(),
            retries: None,
            max_failures: None,
            barge_in: d.barge_in.as_ref(),
            timeout: d.timeout.as_ref(),
            inter: None,
            total: None,
        };
        let mut input = self.input_common(fc, fields, &s.referenced, "survey");
        input.retries = self.opt_count(
            file,
            d.retries.as_ref(),
            "`retries`",
            1,
            MAX_RETRIES,
            DEFAULT_SURVEY_RETRIES,
        );
        input.max_failures = Some(next);
        let name = match &d.name {
            None => {
                self.err_note(
                    file,
                    &s.referenced,
                    "`survey` needs `name:`",
                    "the name groups the answers in the call records and the KPIs, e.g. `name: csat`",
                );
                String::new()
            }
            Some(n) if !valid_name(&n.value) => {
                self.err(
                    file,
                    &n.referenced,
                    format!(
                        "invalid survey name `{}`: use letters, digits, `_` and `-`",
                        n.value
                    ),
                );
                String::new()
            }
            Some(n) => n.value.clone(),
        };
        if d.scale.is_none() {
            self.err_note(
                file,
                &s.referenced,
                "`survey` needs `scale:`",
                "the highest key accepted, 1 to 9, as the prompt says: `scale: 5` takes 1-5",
            );
        }
        let errors_before = self.error_count();
        let scale = self.opt_count(
            file,
            d.scale.as_ref(),
            "`scale`",
            1,
            MAX_SURVEY_SCALE,
            MAX_SURVEY_SCALE,
        ) as u8;
        let scale_ok = self.error_count() == errors_before;
        if let (false, true, Some(v)) = (name.is_empty(), scale_ok, &d.scale) {
            match self.surveys.get(&name) {
                Some((other, first)) if *other != scale => {
                    let msg = format!(
                        "survey `{name}` has scale {scale} here but {other} at {first}: \
                         one survey name, one scale"
                    );
                    self.err(file, &v.referenced, msg);
                }
                Some(_) => {}
                None => {
                    let first = self.where_is(file, &v.referenced);
                    self.surveys.insert(name.clone(), (scale, first));
                }
            }
        }
        Survey {
            input,
            name,
            scale,
            thanks: self.opt_prompts(fc, d.thanks.as_ref()),
            next,
        }
    }

    fn value(&mut self, fc: &FlowCx<'_>, v: &Str) -> Value {
        match v.value.strip_prefix('$') {
            Some(name) if !name.starts_with('$') => {
                Value::Var(self.var_ref(fc.file, name, &v.referenced))
            }
            // `$$x` is the literal text `$x`.
            Some(lit) => Value::Lit(lit.to_string()),
            None => Value::Lit(v.value.clone()),
        }
    }

    fn var_ref(&mut self, file: usize, name: &str, at: &Location) -> VarId {
        match self.vars.iter().position(|x| x == name) {
            Some(i) => VarId(i as u32),
            None => {
                let h = hint(
                    name,
                    self.vars.iter().map(String::as_str).collect::<Vec<_>>(),
                );
                self.err(file, at, format!("unknown variable `{name}`{h}"));
                VarId(0)
            }
        }
    }

    fn hours(&mut self, fc: &FlowCx<'_>, h: &Spanned<HoursDef>) -> Kind {
        let file = fc.file;
        let d = &h.value;
        self.key_issues(file, &d.issues, "in `hours`");
        let calendar = match &d.calendar {
            None => {
                self.err(file, &h.referenced, "`hours` needs `calendar:`");
                0
            }
            Some(c) => match self.calendar_ids.get(&c.value) {
                Some(i) => *i,
                None => {
                    let h = hint(&c.value, self.calendar_ids.keys().map(String::as_str));
                    self.err(
                        file,
                        &c.referenced,
                        format!("unknown calendar `{}`{h}", c.value),
                    );
                    0
                }
            },
        };
        let need = |this: &mut Self, v: &Option<Str>, key: &str| match v {
            Some(t) => this.target(fc, t),
            None => {
                this.err(file, &h.referenced, format!("`hours` needs `{key}:`"));
                NodeId(0)
            }
        };
        let open = need(self, &d.open, "open");
        let closed = need(self, &d.closed, "closed");
        let holiday = d.holiday.as_ref().map(|t| self.target(fc, t));
        Kind::Hours {
            calendar,
            open,
            closed,
            holiday,
        }
    }

    fn calendar(
        &mut self,
        file: usize,
        name: &Str,
        def: &Spanned<CalendarDef>,
    ) -> Option<Calendar> {
        let d = &def.value;
        self.key_issues(file, &d.issues, &format!("in calendar `{}`", name.value));
        let tz = match &d.timezone {
            None => {
                self.err(
                    file,
                    &name.referenced,
                    format!(
                        "calendar `{}` needs `timezone:` (e.g. `Europe/Berlin`)",
                        name.value
                    ),
                );
                return None;
            }
            Some(t) => match calendar::time_zone(&t.value) {
                Ok(tz) => tz,
                Err(e) => {
                    self.err(file, &t.referenced, e);
                    return None;
                }
            },
        };
        let mut cal = Calendar::new(&name.value, tz);
        let mut seen_days: HashMap<jiff::civil::Weekday, Location> = HashMap::new();
        for (days, ranges) in d.weekly.iter().flat_map(|w| w.value.0.iter()) {
            let days_list = match calendar::parse_days(&days.value) {
                Ok(l) => l,
                Err(e) => {
                    self.err(file, &days.referenced, e);
                    continue;
                }
            };
            let r = self.ranges(file, ranges);
            for day in days_list {
                if let Some(prev) = seen_days.get(&day) {
                    let prev = self.where_is(file, prev);
                    self.err(
                        file,
                        &days.referenced,
                        format!("{day:?} is already scheduled at {prev}"),
                    );
                    continue;
                }
                seen_days.insert(day, days.referenced);
                cal.set_day(day, r.clone());
            }
        }
        for date in d.holidays.iter().flat_map(|h| h.value.0.iter()) {
            match calendar::parse_date(&date.value) {
                Ok(dt) => cal.add_holiday(dt),
                Err(e) => self.err(file, &date.referenced, e),
            }
        }
        for (date, ranges) in d.overrides.iter().flat_map(|o| o.value.0.iter()) {
            match calendar::parse_date(&date.value) {
                Ok(dt) => {
                    let r = self.ranges(file, ranges);
                    cal.set_override(dt, r);
                }
                Err(e) => self.err(file, &date.referenced, e),
            }
        }
        Some(cal)
    }

    fn ranges(&mut self, file: usize, names: &Spanned<Names>) -> Vec<calendar::Range> {
        let mut out = Vec::new();
        for (r, loc) in &names.value.0 {
            let loc = loc.unwrap_or(names.referenced);
            match calendar::parse_range(r) {
                Ok(Some(range)) => out.push(range),
                Ok(None) => {}
                Err(e) => self.err(file, &loc, e),
            }
        }
        out
    }

    fn branch(&mut self, fc: &FlowCx<'_>, b: &Spanned<BranchDef>) -> Kind {
        let file = fc.file;
        let d = &b.value;
        self.key_issues(file, &d.issues, "in `branch`");
        let mut cases = Vec::new();
        for c in d.cases.iter().flat_map(|c| c.value.0.iter()) {
            if let Some(case) = self.case(fc, c) {
                cases.push(case);
            }
        }
        if cases.is_empty() && d.cases.as_ref().is_none_or(|c| c.value.0.is_empty()) {
            self.err(
                file,
                &b.referenced,
                "`branch` needs `cases:` (a list of tests)",
            );
        }
        let otherwise = match &d.otherwise {
            Some(t) => self.target(fc, t),
            None => {
                self.err(
                    file,
                    &b.referenced,
                    "`branch` needs `else:` for when no case matches",
                );
                NodeId(0)
            }
        };
        Kind::Branch { cases, otherwise }
    }

    fn case(&mut self, fc: &FlowCx<'_>, c: &Spanned<CaseDef>) -> Option<Case> {
        let file = fc.file;
        let d = &c.value;
        self.key_issues(file, &d.issues, "in a branch case");
        let var = match &d.var {
            Some(v) => self.var_ref(file, v.value.trim_start_matches('$'), &v.referenced),
            None => {
                self.err(file, &c.referenced, "case needs `var:`");
                VarId(0)
            }
        };
        let goto = match &d.goto {
            Some(t) => self.target(fc, t),
            None => {
                self.err(file, &c.referenced, "case needs `goto:`");
                NodeId(0)
            }
        };
        let mut tests: Vec<(Test, Location)> = Vec::new();
        if let Some(v) = &d.equals {
            tests.push((Test::Equals(self.value(fc, v)), v.referenced));
        }
        if let Some(v) = &d.not_equals {
            tests.push((Test::NotEquals(self.value(fc, v)), v.referenced));
        }
        if let Some(v) = &d.one_of {
            tests.push((
                Test::In(v.value.0.iter().map(|s| s.value.clone()).collect()),
                v.referenced,
            ));
        }
        for (op, v) in [
            (CmpOp::Lt, &d.lt),
            (CmpOp::Le, &d.le),
            (CmpOp::Gt, &d.gt),
            (CmpOp::Ge, &d.ge),
        ] {
            if let Some(v) = v {
                match v.value.trim().parse::<f64>() {
                    Ok(n) if n.is_finite() => tests.push((Test::Cmp(op, n), v.referenced)),
                    _ => self.err(
                        file,
                        &v.referenced,
                        format!("expected a number, found `{}`", v.value),
                    ),
                }
            }
        }
        if let Some(p) = &d.pattern {
            match Pattern::parse(&p.value) {
                Ok(pat) => tests.push((Test::Pattern(pat), p.referenced)),
                Err(e) => self.err(
                    file,
                    &p.referenced,
                    format!("bad pattern `{}`: {e}", p.value),
                ),
            }
        }
        if let Some(v) = &d.is_set {
            let b = self.opt_bool(file, Some(v), true);
            tests.push((Test::IsSet(b), v.referenced));
        }
        if tests.len() > 1 {
            self.err(
                file,
                &tests[1].1,
                "a case has one test (equals, not_equals, in, lt, le, gt, ge, pattern, is_set); use another case",
            );
        }
        match tests.into_iter().next() {
            Some((test, _)) => Some(Case { var, test, goto }),
            None => {
                self.err(
                    file,
                    &c.referenced,
                    "case needs a test: equals, not_equals, in, lt, le, gt, ge, pattern or is_set",
                );
                None
            }
        }
    }

    fn say(&mut self, fc: &FlowCx<'_>, s: &Spanned<SayDef>, barge_in: bool, next: NodeId) -> Kind {
        let file = fc.file;
        let d = &s.value;
        self.key_issues(file, &d.issues, "in `say`");
        let given: Vec<(SayAs, &Str)> = [
            (SayAs::Digits, &d.digits),
            (SayAs::Number, &d.number),
            (SayAs::Money, &d.money),
            (SayAs::Date, &d.date),
            (SayAs::Time, &d.time),
        ]
        .into_iter()
        .filter_map(|(how, v)| v.as_ref().map(|v| (how, v)))
        .collect();
        let Some(&(how, v)) = given.first() else {
            self.err(
                file,
                &s.referenced,
                "`say` needs one of `digits:`, `number:`, `money:`, `date:` or `time:`",
            );
            return Kind::Hangup;
        };
        if let Some((_, extra)) = given.get(1) {
            self.err(
                file,
                &extra.referenced,
                "`say` takes one of `digits:`, `number:`, `money:`, `date:` or `time:`",
            );
        }
        let value = self.value(fc, v);
        if let Value::Lit(l) = &value
            && say::words(how, l).is_none()
        {
            self.err(
                file,
                &v.referenced,
                format!("cannot say `{l}` as `{}`", how.key()),
            );
        }
        let currency = match &d.currency {
            None => None,
            Some(c) => {
                if how != SayAs::Money {
                    self.err(file, &c.referenced, "`currency` only goes with `money:`");
                }
                let cv = self.value(fc, c);
                if let Value::Lit(l) = &cv
                    && say::currency_fragments(Some(l)).is_empty()
                {
                    let known: Vec<&str> = say::CURRENCIES.iter().map(|(c, _)| *c).collect();
                    self.err(
                        file,
                        &c.referenced,
                        format!("cannot say currency `{l}` (known: {})", known.join(", ")),
                    );
                }
                Some(cv)
            }
        };
        // Every fragment must exist in the flow's language.
        let lang = self
            .langs
            .get(fc.lang.0 as usize)
            .cloned()
            .unwrap_or_default();
        let mut needed = say::fragments(how);
        match &currency {
            None => {}
            // A variable may hold any supported currency.
            Some(Value::Var(_)) => needed.extend(say::currency_fragments(None)),
            Some(Value::Lit(l)) => needed.extend(say::currency_fragments(Some(l))),
        }
        needed.sort();
        needed.dedup();
        let missing: Vec<String> = needed
            .into_iter()
            .filter(|f| self.resolve(&lang, f).is_none())
            .collect();
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(6).map(String::as_str).collect();
            let more = if missing.len() > 6 { ", ..." } else { "" };
            self.err(
                file,
                &s.referenced,
                format!(
                    "`say` needs {} fragment prompts that are missing for `{lang}`: {}{more}",
                    missing.len(),
                    shown.join(", ")
                ),
            );
        }
        Kind::Say {
            how,
            value,
            currency,
            barge_in,
            next,
        }
    }

    // -- transfer, queue, callback ------------------------------------------

    fn transfer(&mut self, fc: &FlowCx<'_>, t: &Spanned<TransferDef>) -> Kind {
        let file = fc.file;
        let (to, at, on) = match &t.value {
            TransferDef::Uri(u) => (Some(u.as_str()), t.referenced, None),
            TransferDef::Full(m) => {
                self.key_issues(file, &m.issues, "in `transfer`");
                let to = m.to.as_ref().map(|v| (v.value.as_str(), v.referenced));
                if to.is_none() {
                    self.err(
                        file,
                        &t.referenced,
                        "`transfer` needs `to:` with a `sip:`, `sips:` or `tel:` URI",
                    );
                }
                (
                    to.map(|(v, _)| v),
                    to.map_or(t.referenced, |(_, l)| l),
                    m.on.as_ref(),
                )
            }
        };
        let target = match to {
            Some(v) => self.uri_template(fc, v, &at),
            None => Template(Vec::new()),
        };
        let mut failed = None;
        for (key, node) in on.iter().flat_map(|o| o.value.0.iter()) {
            let tgt = self.target(fc, node);
            if key.value == "failed" {
                if failed.is_some() {
                    self.err(file, &key.referenced, "outcome `failed` is handled twice");
                }
                failed = Some(tgt);
            } else {
                let h = hint(&key.value, ["failed"]);
                let msg = if h.is_empty() {
                    format!(
                        "`transfer` has no outcome `{}` (its outcome: failed)",
                        key.value
                    )
                } else {
                    format!("`transfer` has no outcome `{}`{h}", key.value)
                };
                self.err(file, &key.referenced, msg);
            }
        }
        Kind::Transfer { target, failed }
    }

    /// A transfer target: a `sip:`, `sips:` or `tel:` URI whose scheme is
    /// written out, with `$var` / `${var}` parts filled in at run time.
    fn uri_template(&mut self, fc: &FlowCx<'_>, text: &str, at: &Location) -> Template {
        let v = text.trim();
        let lower = v.to_ascii_lowercase();
        let scheme_ok = ["sip:", "sips:", "tel:"]
            .iter()
            .any(|p| v.len() > p.len() && lower.starts_with(p));
        if !scheme_ok {
            self.err(
                fc.file,
                at,
                format!("transfer target `{text}` must be a `sip:`, `sips:` or `tel:` URI"),
            );
            return Template(vec![Part::Lit(v.to_string())]);
        }
        if let Some(c) = v
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '<' | '>' | '"'))
        {
            self.err(
                fc.file,
                at,
                format!("transfer target `{text}` contains {c:?}, which a URI cannot hold"),
            );
        }
        let mut parts = Vec::new();
        let mut lit = String::new();
        let mut rest = v;
        while let Some(i) = rest.find('$') {
            lit.push_str(&rest[..i]);
            rest = &rest[i + 1..];
            if let Some(r) = rest.strip_prefix('$') {
                lit.push('$');
                rest = r;
                continue;
            }
            let (name, after) = if let Some(r) = rest.strip_prefix('{') {
                match r.find('}') {
                    Some(j) => (&r[..j], &r[j + 1..]),
                    None => {
                        self.err(fc.file, at, format!("`${{` without `}}` in `{text}`"));
                        (r, "")
                    }
                }
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == '.'))
                    .unwrap_or(rest.len());
                // A trailing dot ends the sentence, not the name.
                let name = rest[..end].trim_end_matches('.');
                (name, &rest[name.len()..])
            };
            if name.is_empty() {
                self.err(
                    fc.file,
                    at,
                    format!(
                        "`$` without a variable name in `{text}` (write `$$` for a dollar sign)"
                    ),
                );
            } else {
                if !lit.is_empty() {
                    parts.push(Part::Lit(std::mem::take(&mut lit)));
                }
                let var = self.var_ref(fc.file, name, at);
                parts.push(Part::Var(var, name.to_string()));
            }
            rest = after;
        }
        lit.push_str(rest);
        if !lit.is_empty() {
            parts.push(Part::Lit(lit));
        }
        Template(parts)
    }

    /// Checks a queue name against `phonetree.yaml` (when the names are known).
    fn queue_name(&mut self, file: usize, name: &Str) -> String {
        let n = name.value.trim();
        if n.is_empty() {
            self.err(file, &name.referenced, "empty queue name");
        } else if let Some(known) = self.queues
            && !known.contains(n)
        {
            let h = hint(n, known.iter().map(String::as_str));
            let configured = if known.is_empty() {
                " (it has none)".to_string()
            } else {
                format!(
                    " (queues: {})",
                    known
                        .iter()
                        .map(|q| format!("`{q}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            };
            if h.is_empty() {
                self.err(
                    file,
                    &name.referenced,
                    format!("queue `{n}` is not defined in phonetree.yaml `queues:`{configured}"),
                );
            } else {
                self.err(
                    file,
                    &name.referenced,
                    format!("queue `{n}` is not defined in phonetree.yaml `queues:`{h}"),
                );
            }
        }
        n.to_string()
    }

    /// Fragments (e.g. `say/7`, `say/minutes`) missing for the flow's language.
    fn missing_fragments(&self, fc: &FlowCx<'_>, names: &[String]) -> Vec<String> {
        let lang = self
            .langs
            .get(fc.lang.0 as usize)
            .cloned()
            .unwrap_or_default();
        names
            .iter()
            .filter(|f| self.resolve(&lang, f).is_none())
            .cloned()
            .collect()
    }

    fn queue(&mut self, fc: &FlowCx<'_>, q: &Spanned<QueueDef>) -> Kind {
        let file = fc.file;
        let d = &q.value;
        self.key_issues(file, &d.issues, "in `queue`");
        let queue = match &d.name {
            Some(n) => self.queue_name(file, n),
            None => {
                self.err_note(
                    file,
                    &q.referenced,
                    "`queue` needs `name:`, one of the queues in phonetree.yaml",
                    "`queue: { name: support, on: { overflow: .., no_agents: .. } }`",
                );
                String::new()
            }
        };
        let priority = match &d.priority {
            None => Priority::Fixed(0),
            Some(p) => match self.value(fc, p) {
                Value::Var(v) => Priority::Var(v),
                Value::Lit(l) => match l.trim().parse::<i64>() {
                    Ok(n) if n.abs() <= i64::from(MAX_PRIORITY) => Priority::Fixed(n as i32),
                    _ => {
                        self.err(
                            file,
                            &p.referenced,
                            format!(
                                "`priority` must be a whole number from -{MAX_PRIORITY} to {MAX_PRIORITY} or a `$variable`, found `{l}`"
                            ),
                        );
                        Priority::Fixed(0)
                    }
                },
            },
        };
        let music = match &d.music {
            Some(m) => {
                if m.value.0.is_empty() {
                    self.err(
                        file,
                        &m.referenced,
                        "`music` needs at least one prompt: callers take silence for a dropped call",
                    );
                }
                self.prompts(fc, m)
            }
            None => {
                let lang = self
                    .langs
                    .get(fc.lang.0 as usize)
                    .cloned()
                    .unwrap_or_default();
                if self.resolve(&lang, DEFAULT_MUSIC_PROMPT).is_some() {
                    self.prompt(fc, DEFAULT_MUSIC_PROMPT, &q.referenced)
                        .into_iter()
                        .collect()
                } else {
                    self.err_note(
                        file,
                        &q.referenced,
                        format!("`queue` needs `music:` (there is no `{DEFAULT_MUSIC_PROMPT}` prompt to use by default)"),
                        "`music: [hold-music]` names the prompts looped while the caller waits",
                    );
                    Vec::new()
                }
            }
        };
        let announce = self.announce(fc, q);
        // Leave keys.
        let mut leave: Vec<(Digit, NodeId)> = Vec::new();
        let mut leave_at: Vec<(Digit, Location)> = Vec::new();
        for (key, target) in d.leave.iter().flat_map(|l| l.value.0.iter()) {
            let tgt = self.target(fc, target);
            let mut chars = key.value.chars();
            let digit = match (chars.next(), chars.next()) {
                (Some(c), None) => Digit::from_char(c),
                _ => None,
            };
            let Some(digit) = digit else {
                self.err_note(
                    file,
                    &key.referenced,
                    format!("leave key `{}` is not one DTMF key", key.value),
                    "keys are 0-9, *, #, A-D; quote them: `\"1\": callback_offer`",
                );
                continue;
            };
            if let Some((_, prev)) = leave_at.iter().find(|(k, _)| *k == digit) {
                let prev = self.where_is(file, prev);
                self.err(
                    file,
                    &key.referenced,
                    format!("duplicate leave key `{}` (first at {prev})", key.value),
                );
                continue;
            }
            leave_at.push((digit, key.referenced));
            leave.push((digit, tgt));
        }
        // Outcomes: `overflow` and `no_agents` are required, `full` falls back
        // to `no_agents`, `failed` to hanging up.
        let mut given: Vec<(QueueOutcome, NodeId, Location)> = Vec::new();
        match &d.on {
            None => self.err_note(
                file,
                &q.referenced,
                "`queue` needs `on:` with at least `overflow` and `no_agents`",
                "callers must never wait forever: `on: { overflow: voicemail, no_agents: closed }`",
            ),
            Some(on) => {
                for (key, target) in &on.value.0 {
                    let tgt = self.target(fc, target);
                    let names: Vec<&str> = QueueOutcome::ALL.iter().map(|o| o.key()).collect();
                    let Some(o) = QueueOutcome::ALL.iter().find(|o| o.key() == key.value) else {
                        let h = hint(&key.value, names.iter().copied());
                        let msg = if h.is_empty() {
                            format!(
                                "`queue` has no outcome `{}` (its outcomes: {})",
                                key.value,
                                names.join(", ")
                            )
                        } else {
                            format!("`queue` has no outcome `{}`{h}", key.value)
                        };
                        self.err(file, &key.referenced, msg);
                        continue;
                    };
                    if let Some((_, _, prev)) = given.iter().find(|(x, _, _)| x == o) {
                        let prev = self.where_is(file, prev);
                        self.err(
                            file,
                            &key.referenced,
                            format!("outcome `{}` is handled twice (first at {prev})", key.value),
                        );
                        continue;
                    }
                    given.push((*o, tgt, key.referenced));
                }
                let missing: Vec<&str> = [QueueOutcome::Overflow, QueueOutcome::NoAgents]
                    .into_iter()
                    .filter(|o| !given.iter().any(|(x, _, _)| x == o))
                    .map(|o| o.key())
                    .collect();
                if !missing.is_empty() {
                    self.err_note(
                        file,
                        &on.referenced,
                        format!(
                            "`queue` does not handle {}",
                            missing
                                .iter()
                                .map(|m| format!("`{m}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        "callers must never wait forever: every queue needs `overflow` and `no_agents` (`full` defaults to `no_agents`)",
                    );
                }
            }
        }
        let get = |o: QueueOutcome| given.iter().find(|(x, _, _)| *x == o).map(|(_, n, _)| *n);
        let mut on = Vec::new();
        for o in [QueueOutcome::Overflow, QueueOutcome::NoAgents] {
            on.push((o, get(o).unwrap_or(NodeId(0))));
        }
        on.push((
            QueueOutcome::Full,
            get(QueueOutcome::Full)
                .or(get(QueueOutcome::NoAgents))
                .unwrap_or(NodeId(0)),
        ));
        if let Some(f) = get(QueueOutcome::Failed) {
            on.push((QueueOutcome::Failed, f));
        }
        Kind::Queue(Box::new(QueueNode {
            queue,
            priority,
            music,
            announce,
            leave,
            on,
        }))
    }

    /// `announce:` of a queue (both parts on by default), with its prompts checked.
    fn announce(&mut self, fc: &FlowCx<'_>, q: &Spanned<QueueDef>) -> Announce {
        let file = fc.file;
        let a = q.value.announce.as_ref();
        if let Some(a) = a {
            self.key_issues(file, &a.value.issues, "in `announce`");
        }
        let at = a.map_or(q.referenced, |a| a.referenced);
        let position = self.opt_bool(file, a.and_then(|a| a.value.position.as_ref()), true);
        let wait = self.opt_bool(file, a.and_then(|a| a.value.wait.as_ref()), true);
        let extra = self.opt_prompts(fc, a.and_then(|a| a.value.prompts.as_ref()));
        let pair = |this: &mut Self, first: &str, second: &str| {
            let p1 = this.prompt(fc, first, &at);
            let p2 = this.prompt(fc, second, &at);
            p1.zip(p2)
        };
        let position_prompts = if position {
            pair(self, QUEUE_POSITION_PROMPT, QUEUE_POSITION_END_PROMPT)
        } else {
            None
        };
        let wait_prompts = if wait {
            pair(self, QUEUE_WAIT_PROMPT, QUEUE_SHORTLY_PROMPT)
        } else {
            None
        };
        let mut needed: Vec<String> = Vec::new();
        if position || wait {
            needed.extend(say::fragments(SayAs::Number));
        }
        if wait {
            needed.extend(QUEUE_WAIT_FRAGMENTS.iter().map(|s| s.to_string()));
        }
        let missing = self.missing_fragments(fc, &needed);
        if !missing.is_empty() {
            let shown: Vec<&str> = missing.iter().take(6).map(String::as_str).collect();
            let more = if missing.len() > 6 { ", ..." } else { "" };
            self.err(
                file,
                &at,
                format!(
                    "queue announcements need {} fragment prompts that are missing: {}{more}",
                    missing.len(),
                    shown.join(", ")
                ),
            );
        }
        Announce {
            position: position_prompts,
            wait: wait_prompts,
            extra,
        }
    }

    fn callback(&mut self, fc: &FlowCx<'_>, c: &Spanned<CallbackDef>) -> Kind {
        let file = fc.file;
        let d = &c.value;
        self.key_issues(file, &d.issues, "in `callback`");
        let queue = match &d.queue {
            Some(n) => self.queue_name(file, n),
            None => {
                self.err(
                    file,
                    &c.referenced,
                    "`callback` needs `queue:`, the queue whose agents call back",
                );
                String::new()
            }
        };
        let number = match &d.number {
            Some(n) => self.value(fc, n),
            None => {
                self.err(
                    file,
                    &c.referenced,
                    "`callback` needs `number:` (e.g. `$caller`, or a collected number)",
                );
                Value::Lit(String::new())
            }
        };
        const OUTCOMES: [&str; 3] = ["registered", "duplicate", "failed"];
        let mut given: Vec<(&str, NodeId, Location)> = Vec::new();
        match &d.on {
            None => self.err_note(
                file,
                &c.referenced,
                "`callback` needs `on:` with `registered` and `failed`",
                "`on: { registered: thanks, duplicate: thanks, failed: main_menu }`",
            ),
            Some(on) => {
                for (key, target) in &on.value.0 {
                    let tgt = self.target(fc, target);
                    let Some(o) = OUTCOMES.iter().find(|o| **o == key.value) else {
                        let h = hint(&key.value, OUTCOMES);
                        let msg = if h.is_empty() {
                            format!(
                                "`callback` has no outcome `{}` (its outcomes: {})",
                                key.value,
                                OUTCOMES.join(", ")
                            )
                        } else {
                            format!("`callback` has no outcome `{}`{h}", key.value)
                        };
                        self.err(file, &key.referenced, msg);
                        continue;
                    };
                    if let Some((_, _, prev)) = given.iter().find(|(x, _, _)| x == o) {
                        let prev = self.where_is(file, prev);
                        self.err(
                            file,
                            &key.referenced,
                            format!("outcome `{}` is handled twice (first at {prev})", key.value),
                        );
                        continue;
                    }
                    given.push((o, tgt, key.referenced));
                }
                let missing: Vec<String> = ["registered", "failed"]
                    .into_iter()
                    .filter(|o| !given.iter().any(|(x, _, _)| x == o))
                    .map(|o| format!("`{o}`"))
                    .collect();
                if !missing.is_empty() {
                    self.err_note(
                        file,
                        &on.referenced,
                        format!("`callback` does not handle {}", missing.join(", ")),
                        "`duplicate` (already registered) defaults to `registered`",
                    );
                }
            }
        }
        let get = |o: &str| given.iter().find(|(x, _, _)| *x == o).map(|(_, n, _)| *n);
        let registered = get("registered").unwrap_or(NodeId(0));
        Kind::Callback(Box::new(CallbackNode {
            queue,
            number,
            registered,
            duplicate: get("duplicate").unwrap_or(registered),
            failed: get("failed").unwrap_or(NodeId(0)),
        }))
    }

    // -- directory nodes ------------------------------------------------------

    fn lookup(&mut self, fc: &FlowCx<'_>, l: &Spanned<LookupDef>) -> Kind {
        let file = fc.file;
        let d = &l.value;
        self.key_issues(file, &d.issues, "in `lookup`");
        let key = match (&d.id, &d.phone) {
            (Some(id), None) => (false, self.value(fc, id)),
            (None, Some(p)) => (true, self.value(fc, p)),
            (Some(_), Some(p)) => {
                self.err(
                    file,
                    &p.referenced,
                    "`lookup` takes `id:` or `phone:`, not both",
                );
                (true, Value::Lit(String::new()))
            }
            (None, None) => {
                self.err_note(
                    file,
                    &l.referenced,
                    "`lookup` needs `id:` (e.g. `$customer_id`) or `phone:` (e.g. `$caller`)",
                    "`lookup: { phone: $caller, on: { found: .., not_found: .., error: .., timeout: .. } }`",
                );
                (false, Value::Lit(String::new()))
            }
        };
        let op = DirOp::Lookup {
            phone: key.0,
            key: key.1,
        };
        self.dir_node(
            fc,
            &l.referenced,
            op,
            d.timeout.as_ref(),
            d.filler.as_ref(),
            d.filler_after.as_ref(),
            d.on.as_ref(),
        )
    }

    fn verify_pin(&mut self, fc: &FlowCx<'_>, v: &Spanned<VerifyPinDef>) -> Kind {
        let file = fc.file;
        let d = &v.value;
        self.key_issues(file, &d.issues, "in `verify_pin`");
        let pin = match &d.pin {
            Some(p) => self.value(fc, p),
            None => {
                self.err(
                    file,
                    &v.referenced,
                    "`verify_pin` needs `pin:` naming the collected PIN (e.g. `$pin`)",
                );
                Value::Lit(String::new())
            }
        };
        let customer = self.customer_value(fc, d.customer.as_ref(), &v.referenced, "verify_pin");
        self.dir_node(
            fc,
            &v.referenced,
            DirOp::VerifyPin { customer, pin },
            d.timeout.as_ref(),
            d.filler.as_ref(),
            d.filler_after.as_ref(),
            d.on.as_ref(),
        )
    }

    fn update(&mut self, fc: &FlowCx<'_>, u: &Spanned<UpdateDef>) -> Kind {
        let file = fc.file;
        let d = &u.value;
        self.key_issues(file, &d.issues, "in `update`");
        let status = match &d.status {
            Some(s) => match s.value.trim() {
                "confirmed" => AppointmentStatus::Confirmed,
                "cancelled" => AppointmentStatus::Cancelled,
                other => {
                    self.err(
                        file,
                        &s.referenced,
                        format!("`status` must be `confirmed` or `cancelled`, found `{other}`"),
                    );
                    AppointmentStatus::Confirmed
                }
            },
            None => {
                self.err(
                    file,
                    &u.referenced,
                    "`update` needs `status:` (`confirmed` or `cancelled`)",
                );
                AppointmentStatus::Confirmed
            }
        };
        let customer = self.customer_value(fc, d.customer.as_ref(), &u.referenced, "update");
        let appointment = match &d.appointment {
            Some(a) => self.value(fc, a),
            None => Value::Var(self.var_ref(file, "appointment.id", &u.referenced)),
        };
        self.dir_node(
            fc,
            &u.referenced,
            DirOp::Update {
                customer,
                appointment,
                status,
            },
            d.timeout.as_ref(),
            d.filler.as_ref(),
            d.filler_after.as_ref(),
            d.on.as_ref(),
        )
    }

    /// `customer:` as written, or `$customer.id` (set by a `lookup`).
    fn customer_value(
        &mut self,
        fc: &FlowCx<'_>,
        given: Option<&Str>,
        at: &Location,
        what: &str,
    ) -> Value {
        if let Some(c) = given {
            return self.value(fc, c);
        }
        match self.vars.iter().position(|v| v == "customer.id") {
            Some(i) => Value::Var(VarId(i as u32)),
            None => {
                self.err(
                    fc.file,
                    at,
                    format!(
                        "`{what}` needs `customer:`, or a `lookup` node that sets `customer.id`"
                    ),
                );
                Value::Lit(String::new())
            }
        }
    }

    /// Settings every directory node shares: timeout, filler and `on:` branches.
    #[allow(clippy::too_many_arguments)]
    fn dir_node(
        &mut self,
        fc: &FlowCx<'_>,
        at: &Location,
        op: DirOp,
        timeout: Option<&Str>,
        filler: Option<&Spanned<Names>>,
        filler_after: Option<&Str>,
        on: Option<&Spanned<Pairs<String>>>,
    ) -> Kind {
        let file = fc.file;
        let what = op.name();
        let timeout = self.opt_duration(file, timeout, DEFAULT_DIRECTORY_TIMEOUT);
        let filler_prompts = self.opt_prompts(fc, filler);
        let after = self.opt_duration(file, filler_after, DEFAULT_FILLER_AFTER);
        match (filler, filler_after) {
            (None, Some(fa)) => {
                self.err(file, &fa.referenced, "`filler_after` without `filler:`");
            }
            (Some(f), _) if after >= timeout => self.warn(
                file,
                &f.referenced,
                format!(
                    "the filler never plays: `filler_after` ({after:?}) is not before `timeout` ({timeout:?})"
                ),
            ),
            _ => {}
        }
        let wanted = op.outcomes();
        let mut branches: Vec<(Outcome, NodeId, Location)> = Vec::new();
        match on {
            None => self.err_note(
                file,
                at,
                format!("`{what}` needs `on:` with a node for each outcome"),
                &format!(
                    "outcomes of `{what}`: {}",
                    wanted
                        .iter()
                        .map(|o| o.key())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            ),
            Some(on) => {
                for (key, target) in &on.value.0 {
                    let tgt = self.target(fc, target);
                    let Some(o) = wanted.iter().find(|o| o.key() == key.value) else {
                        let names: Vec<&str> = wanted.iter().map(|o| o.key()).collect();
                        let h = hint(&key.value, names.iter().copied());
                        let msg = if h.is_empty() {
                            format!(
                                "`{what}` has no outcome `{}` (its outcomes: {})",
                                key.value,
                                names.join(", ")
                            )
                        } else {
                            format!("`{what}` has no outcome `{}`{h}", key.value)
                        };
                        self.err(file, &key.referenced, msg);
                        continue;
                    };
                    if let Some((_, _, prev)) = branches.iter().find(|(x, _, _)| x == o) {
                        let prev = self.where_is(file, prev);
                        self.err(
                            file,
                            &key.referenced,
                            format!("outcome `{}` is handled twice (first at {prev})", key.value),
                        );
                        continue;
                    }
                    branches.push((*o, tgt, key.referenced));
                }
                let missing: Vec<&str> = wanted
                    .iter()
                    .filter(|o| !branches.iter().any(|(x, _, _)| x == *o))
                    .map(|o| o.key())
                    .collect();
                if !missing.is_empty() {
                    self.err_note(
                        file,
                        &on.referenced,
                        format!(
                            "`{what}` does not handle {}",
                            missing
                                .iter()
                                .map(|m| format!("`{m}`"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                        "every outcome needs a node under `on:`, e.g. `timeout: agent`",
                    );
                }
            }
        }
        let on = wanted
            .iter()
            .filter_map(|o| {
                branches
                    .iter()
                    .find(|(x, _, _)| x == o)
                    .map(|(_, n, _)| (*o, *n))
            })
            .collect();
        Kind::Directory(Box::new(DirNode {
            op,
            timeout,
            filler: filler_prompts,
            filler_after: after,
            on,
        }))
    }
}

fn nodes_of(def: &FlowDef) -> impl Iterator<Item = &(Str, Spanned<NodeDef>)> {
    def.nodes.iter().flat_map(|n| n.value.0.iter())
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn valid_var(s: &str) -> bool {
    let mut c = s.chars();
    matches!(c.next(), Some(f) if f.is_ascii_alphabetic() || f == '_')
        && c.all(|c| c.is_ascii_alphanumeric() || c == '_')
        && s.len() <= 64
}

fn valid_lang(s: &str) -> bool {
    (2..=12).contains(&s.len())
        && s.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

/// `5s`, `500ms`, `1.5s`, `2m`, `1m30s`, `1h`. A unit is required.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if s.is_empty() {
        return Err("empty; write e.g. `5s` or `500ms`".into());
    }
    let mut total = 0f64;
    let mut rest = s;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        if num_len == 0 {
            return Err("expected a number; write e.g. `5s` or `500ms`".into());
        }
        let n: f64 = rest[..num_len]
            .parse()
            .map_err(|_| format!("`{}` is not a number", &rest[..num_len]))?;
        rest = &rest[num_len..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let mult = match unit {
            "ms" => 0.001,
            "s" => 1.0,
            "m" | "min" => 60.0,
            "h" => 3600.0,
            "" => return Err("missing unit; write e.g. `5s` or `500ms`".into()),
            u => return Err(format!("unknown unit `{u}` (use ms, s, m or h)")),
        };
        total += n * mult;
    }
    if !total.is_finite() || total > 86_400.0 {
        return Err("too long".into());
    }
    Ok(Duration::from_secs_f64(total))
}

#[cfg(test)]
pub(crate) mod tests;
