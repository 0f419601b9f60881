//! The `queues:` and `agents:` sections of `phonetree.yaml`: raw serde types as written,
//! and [`compile`] that checks them into plain [`AcdConfig`] data, reporting every problem
//! at once.

use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Queues and agents, checked. Plain data: the [`crate::acd::Acd`] takes it at start and
/// on every reload.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct AcdConfig {
    pub queues: BTreeMap<String, QueueConfig>,
    pub agents: BTreeMap<String, AgentConfig>,
}

/// How a queue picks among its available agents (always within the lowest penalty tier
/// that has an available agent).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// The agent idle the longest (since their last call, login or unpause).
    #[default]
    LongestIdle,
    /// The next agent after the last one offered in this queue, in config order.
    RoundRobin,
    /// Every available agent at once; the first to answer wins.
    RingAll,
    /// The agent who answered the fewest calls since start; ties → longest idle.
    FewestCalls,
    /// A seeded pseudo-random pick.
    Random,
}

impl Strategy {
    pub fn parse(s: &str) -> Option<Strategy> {
        Some(match s {
            "longest_idle" => Strategy::LongestIdle,
            "round_robin" => Strategy::RoundRobin,
            "ring_all" => Strategy::RingAll,
            "fewest_calls" => Strategy::FewestCalls,
            "random" => Strategy::Random,
            _ => return None,
        })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::LongestIdle => "longest_idle",
            Strategy::RoundRobin => "round_robin",
            Strategy::RingAll => "ring_all",
            Strategy::FewestCalls => "fewest_calls",
            Strategy::Random => "random",
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct QueueConfig {
    pub strategy: Strategy,
    /// How long one offer rings an agent (the caller side enforces it and reports NoAnswer).
    pub ring_timeout: Duration,
    /// After a call ends the agent gets this long before the next offer.
    pub wrap_up: Duration,
    /// Consecutive no-answers before the agent is paused ("no answer"); 0 = never.
    pub max_no_answer: u32,
    /// A caller waiting this long overflows (leaves the queue); zero = never.
    pub max_wait: Duration,
    /// Waiting callers at most; 0 = unlimited.
    pub max_len: usize,
    /// Position/EWT announcement period per waiting caller; zero = never.
    pub announce_every: Duration,
    /// Accept callers when no agent is logged in.
    pub join_when_empty: bool,
    /// When the last agent logs out, waiting callers leave (Exit).
    pub leave_when_empty: bool,
    /// Delay before re-offering a caller to the agent that just failed it, when no other
    /// agent is available.
    pub retry: Duration,
    /// Agents need all of these skills to take calls from this queue.
    pub skills: Vec<String>,
    pub callback: CallbackConfig,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            strategy: Strategy::LongestIdle,
            ring_timeout: Duration::from_secs(15),
            wrap_up: Duration::from_secs(10),
            max_no_answer: 3,
            max_wait: Duration::from_secs(600),
            max_len: 0,
            announce_every: Duration::from_secs(45),
            join_when_empty: false,
            leave_when_empty: true,
            retry: Duration::from_secs(1),
            skills: Vec::new(),
            callback: CallbackConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CallbackConfig {
    /// Extra dial attempts after the first one fails to reach the customer.
    pub retries: u32,
    pub retry_after: Duration,
    /// Pending callbacks at most in this queue; 0 = callbacks refused.
    pub max_pending: usize,
    /// Where to call the customer back: a SIP URI template with `{number}` (the number the
    /// caller left, `+` and digits), e.g. `sip:{number}@trunk.example.net:5060`. Without
    /// it the queue takes no callback requests (nothing could dial them).
    pub dial: Option<String>,
    /// The user part of our From when dialling a callback (what the customer's phone
    /// shows, if the trunk passes it on).
    pub caller_id: Option<String>,
}

impl Default for CallbackConfig {
    fn default() -> Self {
        CallbackConfig {
            retries: 2,
            retry_after: Duration::from_secs(120),
            max_pending: 100,
            dial: None,
            caller_id: None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct AgentConfig {
    pub id: String,
    pub name: Option<String>,
    /// SIP user name the agent's phone registers with (default: the id).
    pub username: String,
    pub secret: AgentSecret,
    /// Queue name → penalty (lower is offered first).
    pub queues: BTreeMap<String, u32>,
    pub skills: Vec<String>,
    /// Log in as soon as the phone registers.
    pub auto_login: bool,
}

/// The agent's SIP digest credential: a password, or precomputed HA1 values
/// (RFC 7616 §3.4.2: `H(username:realm:password)`) so the password is not in the file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentSecret {
    Password(String),
    Ha1 {
        md5: Option<String>,
        sha256: Option<String>,
    },
}

/// One queue as written.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawQueue {
    pub strategy: String,
    pub ring_timeout: String,
    pub wrap_up: String,
    pub max_no_answer: u32,
    pub max_wait: String,
    pub max_len: usize,
    pub announce_every: String,
    pub join_when_empty: bool,
    pub leave_when_empty: bool,
    pub retry: String,
    pub skills: Vec<String>,
    pub callback: RawCallback,
}

impl Default for RawQueue {
    fn default() -> Self {
        RawQueue {
            strategy: "longest_idle".into(),
            ring_timeout: "15s".into(),
            wrap_up: "10s".into(),
            max_no_answer: 3,
            max_wait: "10m".into(),
            max_len: 0,
            announce_every: "45s".into(),
            join_when_empty: false,
            leave_when_empty: true,
            retry: "1s".into(),
            skills: Vec::new(),
            callback: RawCallback::default(),
        }
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawCallback {
    pub retries: u32,
    pub retry_after: String,
    pub max_pending: usize,
    pub dial: Option<String>,
    pub caller_id: Option<String>,
}

impl Default for RawCallback {
    fn default() -> Self {
        RawCallback {
            retries: 2,
            retry_after: "2m".into(),
            max_pending: 100,
            dial: None,
            caller_id: None,
        }
    }
}

/// One agent as written.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAgent {
    pub name: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub ha1: Option<RawHa1>,
    pub queues: BTreeMap<String, u32>,
    pub skills: Vec<String>,
    pub auto_login: bool,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawHa1 {
    pub md5: Option<String>,
    pub sha256: Option<String>,
}

/// Names are used in YAML flows, logs and URLs: keep them plain.
fn plain_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
}

fn is_hex(s: &str, len: usize) -> bool {
    s.len() == len && s.chars().all(|c| c.is_ascii_hexdigit())
}

/// Checks queues and agents together; every problem is reported, each prefixed with
/// where it is (`queues.support.wrap_up: ...`).
pub fn compile(
    raw_queues: &BTreeMap<String, RawQueue>,
    raw_agents: &BTreeMap<String, RawAgent>,
) -> Result<AcdConfig, Vec<String>> {
    let mut errors = Vec::new();
    let mut queues = BTreeMap::new();
    for (name, rq) in raw_queues {
        let at = format!("queues.{name}");
        if !plain_name(name) {
            errors.push(format!(
                "{at}: queue names use letters, digits, `_`, `-`, `.` (at most 64)"
            ));
        }
        let mut dur = |what: &str, s: &str| -> Duration {
            crate::config::parse_duration(s).unwrap_or_else(|e| {
                errors.push(format!("{at}.{what}: {e}"));
                Duration::ZERO
            })
        };
        let ring_timeout = dur("ring_timeout", &rq.ring_timeout);
        let wrap_up = dur("wrap_up", &rq.wrap_up);
        let max_wait = dur("max_wait", &rq.max_wait);
        let announce_every = dur("announce_every", &rq.announce_every);
        let retry = dur("retry", &rq.retry);
        let retry_after = dur("callback.retry_after", &rq.callback.retry_after);
        let strategy = Strategy::parse(&rq.strategy).unwrap_or_else(|| {
            errors.push(format!(
                "{at}.strategy: `{}` is not longest_idle, round_robin, ring_all, fewest_calls or random",
                rq.strategy
            ));
            Strategy::LongestIdle
        });
        if ring_timeout.is_zero() && crate::config::parse_duration(&rq.ring_timeout).is_ok() {
            errors.push(format!("{at}.ring_timeout: must be more than 0"));
        }
        if let Some(d) = &rq.callback.dial {
            if !(d.starts_with("sip:") && d.contains("{number}") && d.len() <= 256)
                || d.chars()
                    .any(|c| c.is_whitespace() || c == '<' || c == '>' || c == '"')
            {
                errors.push(format!(
                    "{at}.callback.dial: `{d}` must be a SIP URI with `{{number}}`, e.g. sip:{{number}}@trunk.example.net"
                ));
            }
        }
        if let Some(c) = &rq.callback.caller_id {
            if c.is_empty()
                || !c
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || "+-_.".contains(ch))
            {
                errors.push(format!(
                    "{at}.callback.caller_id: `{c}` must be digits, letters, `+-_.`"
                ));
            }
        }
        for s in &rq.skills {
            if !plain_name(s) {
                errors.push(format!("{at}.skills: `{s}` is not a plain name"));
            }
        }
        queues.insert(
            name.clone(),
            QueueConfig {
                strategy,
                ring_timeout,
                wrap_up,
                max_no_answer: rq.max_no_answer,
                max_wait,
                max_len: rq.max_len,
                announce_every,
                join_when_empty: rq.join_when_empty,
                leave_when_empty: rq.leave_when_empty,
                retry,
                skills: rq.skills.clone(),
                callback: CallbackConfig {
                    retries: rq.callback.retries,
                    retry_after,
                    max_pending: rq.callback.max_pending,
                    dial: rq.callback.dial.clone(),
                    caller_id: rq.callback.caller_id.clone(),
                },
            },
        );
    }

    let mut agents = BTreeMap::new();
    let mut usernames: BTreeMap<String, String> = BTreeMap::new();
    for (id, ra) in raw_agents {
        let at = format!("agents.{id}");
        if !plain_name(id) {
            errors.push(format!(
                "{at}: agent ids use letters, digits, `_`, `-`, `.` (at most 64)"
            ));
        }
        let username = ra.username.clone().unwrap_or_else(|| id.clone());
        // The user part of a SIP URI (RFC 3261 §25.1 `user`); we keep to the safe subset.
        if username.is_empty()
            || username.chars().any(|c| {
                c.is_whitespace()
                    || c.is_control()
                    || matches!(c, '@' | ':' | ';' | '<' | '>' | '"')
            })
        {
            errors.push(format!(
                "{at}.username: `{username}` is not a SIP user name"
            ));
        } else if let Some(other) = usernames.insert(username.to_ascii_lowercase(), id.clone()) {
            errors.push(format!(
                "{at}.username: `{username}` is already used by agent {other}"
            ));
        }
        let secret = match (&ra.password, &ra.ha1) {
            (Some(_), Some(_)) => {
                errors.push(format!("{at}: give password or ha1, not both"));
                AgentSecret::Password(String::new())
            }
            (Some(p), None) => {
                if p.is_empty() {
                    errors.push(format!("{at}.password: must not be empty"));
                }
                AgentSecret::Password(p.clone())
            }
            (None, Some(h)) => {
                if h.md5.is_none() && h.sha256.is_none() {
                    errors.push(format!("{at}.ha1: needs md5 or sha256"));
                }
                if let Some(m) = &h.md5
                    && !is_hex(m, 32)
                {
                    errors.push(format!("{at}.ha1.md5: must be 32 hex digits"));
                }
                if let Some(s) = &h.sha256
                    && !is_hex(s, 64)
                {
                    errors.push(format!("{at}.ha1.sha256: must be 64 hex digits"));
                }
                AgentSecret::Ha1 {
                    md5: h.md5.as_ref().map(|s| s.to_ascii_lowercase()),
                    sha256: h.sha256.as_ref().map(|s| s.to_ascii_lowercase()),
                }
            }
            (None, None) => {
                errors.push(format!("{at}: needs a password or ha1"));
                AgentSecret::Password(String::new())
            }
        };
        if ra.queues.is_empty() {
            errors.push(format!("{at}.queues: the agent is in no queue"));
        }
        for q in ra.queues.keys() {
            if !raw_queues.contains_key(q) {
                errors.push(format!("{at}.queues: `{q}` is not a configured queue"));
            }
        }
        let skills: BTreeSet<&String> = ra.skills.iter().collect();
        for s in &skills {
            if !plain_name(s) {
                errors.push(format!("{at}.skills: `{s}` is not a plain name"));
            }
        }
        agents.insert(
            id.clone(),
            AgentConfig {
                id: id.clone(),
                name: ra.name.clone(),
                username,
                secret,
                queues: ra.queues.clone(),
                skills: skills.into_iter().cloned().collect(),
                auto_login: ra.auto_login,
            },
        );
    }
    if errors.is_empty() {
        Ok(AcdConfig { queues, agents })
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<AcdConfig, Vec<String>> {
        #[derive(Deserialize)]
        struct Both {
            #[serde(default)]
            queues: BTreeMap<String, RawQueue>,
            #[serde(default)]
            agents: BTreeMap<String, RawAgent>,
        }
        let b: Both = serde_saphyr::from_str(yaml).expect("yaml");
        compile(&b.queues, &b.agents)
    }

    #[test]
    fn defaults_apply_to_a_bare_queue() {
        let c = parse("queues:\n  support: {}\n").unwrap();
        assert_eq!(c.queues["support"], QueueConfig::default());
    }

    #[test]
    fn every_problem_is_reported() {
        let yaml = "queues:\n  support:\n    strategy: loudest\n    wrap_up: 10x\nagents:\n  a1:\n    password: x\n    queues: {sales: 0}\n  a2:\n    username: a1\n    ha1: {md5: abc}\n    queues: {support: 1}\n  a3:\n    queues: {support: 0}\n";
        let errs = parse(yaml).unwrap_err().join("\n");
        for needle in [
            "queues.support.strategy",
            "queues.support.wrap_up",
            "`sales` is not a configured queue",
            "agents.a2.username: `a1` is already used",
            "agents.a2.ha1.md5: must be 32 hex digits",
            "agents.a3: needs a password or ha1",
        ] {
            assert!(errs.contains(needle), "missing {needle} in\n{errs}");
        }
    }

    #[test]
    fn ha1_agent_compiles_lowercased() {
        let yaml = format!(
            "queues:\n  q: {{}}\nagents:\n  7:\n    ha1: {{md5: {}}}\n    queues: {{q: 2}}\n",
            "ABCDEF0123456789abcdef0123456789"
        );
        let c = parse(&yaml).unwrap();
        let a = &c.agents["7"];
        assert_eq!(a.username, "7");
        assert_eq!(a.queues["q"], 2);
        assert_eq!(
            a.secret,
            AgentSecret::Ha1 {
                md5: Some("abcdef0123456789abcdef0123456789".into()),
                sha256: None
            }
        );
    }

    #[test]
    fn unknown_key_is_refused() {
        #[derive(Deserialize, Debug)]
        #[allow(dead_code)]
        struct Q {
            queues: BTreeMap<String, RawQueue>,
        }
        let r: Result<Q, _> = serde_saphyr::from_str("queues:\n  q:\n    ringtimeout: 5s\n");
        assert!(r.is_err());
    }
}
