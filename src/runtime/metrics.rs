//! The engine's counters for `/metrics`, owned by the runtime and bumped where things
//! happen (the dispatcher for SIP requests, shards and the dispatcher for responses, the
//! record sink for ended calls and digits, the reload task for reloads).
//!
//! - **Owns:** monotonic counters (prometheus-client families, no per-call labels).
//! - **Gives:** `render`, the Prometheus text format (0.0.4) of the counters plus gauges
//!   taken from the live snapshots at scrape time (active calls, queues, agents).
//! - **Never:** labels a series by call, caller or agent id: label sets stay bounded by
//!   configuration (queues), protocol (methods, codes) and fixed names (outcomes).

use crate::call::CallRecord;
use prometheus_client::encoding::prometheus_text;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::collections::BTreeMap;

type Labels = Vec<(&'static str, String)>;

#[derive(Debug)]
pub struct Metrics {
    calls: Family<Labels, Counter>,
    sip_requests: Family<Labels, Counter>,
    sip_responses: Family<Labels, Counter>,
    flow_reloads: Family<Labels, Counter>,
    dtmf_digits: Family<Labels, Counter>,
    /// Survey answers by survey name (from the flows) and score (1-9, or `none`).
    survey_responses: Family<Labels, Counter>,
    /// Time from joining a queue to an agent answering or the caller leaving.
    queue_wait: Histogram,
    /// Time a directory request (lookup, PIN check, update) took in the store.
    directory_request: Histogram,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            calls: Family::default(),
            sip_requests: Family::default(),
            sip_responses: Family::default(),
            flow_reloads: Family::default(),
            dtmf_digits: Family::default(),
            survey_responses: Family::default(),
            // 1 s … ~34 min: queue waits are seconds to minutes.
            queue_wait: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            // 1 ms … ~4 s: a local SQLite lookup is ~1 ms, an Argon2 PIN check tens of
            // ms, a slow CRM seconds.
            directory_request: Histogram::new(exponential_buckets(0.001, 2.0, 13)),
        }
    }
}

/// The live numbers a scrape adds to the counters.
#[derive(Default, Debug, Clone, PartialEq)]
pub struct Gauges {
    pub active_calls: u64,
    pub draining: bool,
    /// Queue name → callers waiting.
    pub queue_waiting: BTreeMap<String, u64>,
    /// (queue, state) → agents; an agent in two queues counts in both.
    pub agents: BTreeMap<(String, String), u64>,
    /// Totals over the media shards.
    pub rtp_received: u64,
    pub rtp_sent: u64,
    pub late_sweeps: u64,
}

/// SIP methods we name; anything else is `other`, so a hostile peer cannot grow the label
/// set with invented methods.
fn method_label(method: &str) -> String {
    const KNOWN: [&str; 14] = [
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "INFO",
        "UPDATE",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "REFER",
        "MESSAGE",
        "PUBLISH",
    ];
    if KNOWN.contains(&method) {
        method.to_string()
    } else {
        "other".into()
    }
}

impl Metrics {
    /// A SIP request that reached the dispatcher (screened datagrams are not counted here).
    pub fn sip_request(&self, method: &str) {
        self.sip_requests
            .get_or_create(&vec![("method", method_label(method))])
            .inc();
    }

    /// A SIP response we sent (final or provisional; retransmissions by the stack aside).
    pub fn sip_response(&self, code: u16) {
        let code = if (100..700).contains(&code) {
            code.to_string()
        } else {
            "other".into()
        };
        self.sip_responses
            .get_or_create(&vec![("code", code)])
            .inc();
    }

    pub fn flow_reload(&self, ok: bool) {
        let result = if ok { "ok" } else { "refused" };
        self.flow_reloads
            .get_or_create(&vec![("result", result.into())])
            .inc();
    }

    /// A directory request ran for `took` in the store.
    pub fn directory_request(&self, took: std::time::Duration) {
        self.directory_request.observe(took.as_secs_f64());
    }

    /// An ended call: its outcome, its queue wait, and the digits it received, by how
    /// they came.
    pub fn call_ended(&self, record: &CallRecord) {
        if let Some(q) = record.queue.as_ref().filter(|q| !q.queue.is_empty()) {
            self.queue_wait.observe(q.wait_ms as f64 / 1000.0);
        }
        self.calls
            .get_or_create(&vec![("outcome", record.outcome.as_str().into())])
            .inc();
        for d in &record.digits {
            let method = match d.source.as_str() {
                s @ ("rfc4733" | "info" | "inband") => s.to_string(),
                _ => "other".into(),
            };
            self.dtmf_digits
                .get_or_create(&vec![("method", method)])
                .inc();
        }
        for s in &record.surveys {
            // Names come from the flow files and scores are one key: the label set stays
            // bounded by configuration.
            let score = match s.score {
                Some(n @ 1..=9) => n.to_string(),
                _ => "none".into(),
            };
            self.survey_responses
                .get_or_create(&vec![("survey", s.survey.clone()), ("score", score)])
                .inc();
        }
    }

    /// Counters and gauges in the Prometheus text format.
    pub fn render(&self, gauges: &Gauges) -> String {
        let mut registry = Registry::default();
        // Families are handles (Arc inside): registering clones exposes the live counters.
        registry.register(
            "phonetree_calls",
            "Calls ended, by outcome",
            self.calls.clone(),
        );
        registry.register(
            "phonetree_sip_requests",
            "SIP requests received, by method",
            self.sip_requests.clone(),
        );
        registry.register(
            "phonetree_sip_responses",
            "SIP responses sent, by status code",
            self.sip_responses.clone(),
        );
        registry.register(
            "phonetree_flow_reloads",
            "Flow reload attempts, by result",
            self.flow_reloads.clone(),
        );
        registry.register(
            "phonetree_dtmf_digits",
            "DTMF digits received, by method",
            self.dtmf_digits.clone(),
        );
        registry.register(
            "phonetree_survey_responses",
            "Surveys offered at the end of calls, by survey and score (`none`: not answered)",
            self.survey_responses.clone(),
        );
        registry.register(
            "phonetree_queue_wait_seconds",
            "Wait in a queue until an agent answered or the caller left",
            self.queue_wait.clone(),
        );
        registry.register(
            "phonetree_directory_request_seconds",
            "Time a customer-directory request took",
            self.directory_request.clone(),
        );
        // The shards count packets in atomics; a scrape reads the totals.
        let rtp = Family::<Labels, Counter>::default();
        rtp.get_or_create(&vec![("direction", "in".into())])
            .inc_by(gauges.rtp_received);
        rtp.get_or_create(&vec![("direction", "out".into())])
            .inc_by(gauges.rtp_sent);
        registry.register(
            "phonetree_rtp_packets",
            "RTP packets received and sent (relayed ones count both ways)",
            rtp,
        );
        let late: Counter = Counter::default();
        late.inc_by(gauges.late_sweeps);
        registry.register(
            "phonetree_rtp_late_sweeps",
            "Media sweeps that started more than 5 ms after their tick (host too busy)",
            late,
        );
        let active: Gauge = Gauge::default();
        active.set(gauges.active_calls as i64);
        registry.register("phonetree_active_calls", "Calls in progress", active);
        let draining: Gauge = Gauge::default();
        draining.set(gauges.draining as i64);
        registry.register(
            "phonetree_draining",
            "1 while the engine drains (new calls refused)",
            draining,
        );
        // Fresh families per scrape: a queue removed by a reload disappears from the output.
        let waiting = Family::<Labels, Gauge>::default();
        for (queue, n) in &gauges.queue_waiting {
            waiting
                .get_or_create(&vec![("queue", queue.clone())])
                .set(*n as i64);
        }
        registry.register(
            "phonetree_queue_waiting",
            "Callers waiting, by queue",
            waiting,
        );
        let agents = Family::<Labels, Gauge>::default();
        for ((queue, state), n) in &gauges.agents {
            agents
                .get_or_create(&vec![("queue", queue.clone()), ("state", state.clone())])
                .set(*n as i64);
        }
        registry.register("phonetree_agents", "Agents, by queue and state", agents);
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_text::encode(&mut out, &registry);
        out
    }
}

/// Queue and agent gauges from the ACD's snapshot: callers waiting per queue, and agents
/// per (queue, state) for every queue an agent serves.
pub fn gauges_from_acd(acd: &crate::acd::AcdSnapshot, gauges: &mut Gauges) {
    for q in &acd.queues {
        gauges
            .queue_waiting
            .insert(q.name.clone(), q.waiting.len() as u64);
    }
    for a in &acd.agents {
        for (queue, _penalty) in &a.queues {
            *gauges
                .agents
                .entry((queue.clone(), a.state.as_str().to_string()))
                .or_default() += 1;
        }
    }
}

/// A state serialised as `"Available"`, `"available"`, or `{"Paused": {...}}` → snake case.
pub fn state_name(v: Option<&serde_json::Value>) -> String {
    let raw = match v {
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(serde_json::Value::Object(m)) => m
            .get("state")
            .and_then(|s| s.as_str())
            .map(str::to_string)
            .or_else(|| m.keys().next().cloned())
            .unwrap_or_else(|| "unknown".into()),
        _ => "unknown".into(),
    };
    let mut out = String::new();
    for (i, c) in raw.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if i > 0 {
                out.push('_');
            }
            out.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() || c == '_' {
            out.push(c);
        }
    }
    if out.is_empty() {
        "unknown".into()
    } else {
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_and_gauges_render_as_prometheus_text() {
        let m = Metrics::default();
        m.sip_request("INVITE");
        m.sip_request("INVITE");
        m.sip_request("FOOBAR");
        m.sip_response(503);
        m.flow_reload(false);
        let mut g = Gauges {
            active_calls: 3,
            ..Default::default()
        };
        g.queue_waiting.insert("support".into(), 2);
        let text = m.render(&g);
        assert!(
            text.contains("phonetree_sip_requests_total{method=\"INVITE\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("phonetree_sip_requests_total{method=\"other\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("phonetree_sip_responses_total{code=\"503\"} 1\n"),
            "{text}"
        );
        assert!(
            text.contains("phonetree_flow_reloads_total{result=\"refused\"} 1\n"),
            "{text}"
        );
        assert!(text.contains("phonetree_active_calls 3\n"), "{text}");
        assert!(
            text.contains("phonetree_queue_waiting{queue=\"support\"} 2\n"),
            "{text}"
        );
        assert!(
            !text.contains("# EOF"),
            "text format 0.0.4 has no EOF marker"
        );
    }

    #[test]
    fn survey_answers_are_counted_by_survey_and_score() {
        use crate::call::{CallRecord, Outcome, SurveyRecord};
        let survey = |score: Option<u8>| SurveyRecord {
            survey: "csat".into(),
            scale: 5,
            score,
            offered_at_ms: 1_000,
            answered_at_ms: score.map(|_| 2_000),
        };
        let record = |surveys: Vec<SurveyRecord>| CallRecord {
            id: 1,
            call_id: "c".into(),
            caller: "+15550000000".into(),
            dialled: "ivr".into(),
            transport: "udp".into(),
            flow: "main".into(),
            flow_version: 1,
            outcome: Outcome::CallerHangup,
            status: 200,
            started_unix_ms: 0,
            duration_ms: 1,
            talk_ms: 1,
            path: Vec::new(),
            digits: Vec::new(),
            prompts: Vec::new(),
            rtp_packets_sent: 0,
            rtp_packets_received: 0,
            rtp_foreign_dropped: 0,
            queue: None,
            surveys,
        };
        let m = Metrics::default();
        m.call_ended(&record(vec![survey(Some(4))]));
        m.call_ended(&record(vec![survey(Some(4))]));
        m.call_ended(&record(vec![survey(None)]));
        m.call_ended(&record(Vec::new()));
        let text = m.render(&Gauges::default());
        assert!(
            text.contains("phonetree_survey_responses_total{survey=\"csat\",score=\"4\"} 2\n"),
            "{text}"
        );
        assert!(
            text.contains("phonetree_survey_responses_total{survey=\"csat\",score=\"none\"} 1\n"),
            "{text}"
        );
        assert_eq!(text.matches("phonetree_survey_responses_total{").count(), 2);
    }

    #[test]
    fn real_acd_snapshot_gives_agents_per_queue_and_state() {
        let text = "queues:\n  support: {}\n  sales: {}\nagents:\n  \"1001\":\n    password: x\n    queues: {support: 0, sales: 1}\n  \"1002\":\n    password: y\n    queues: {support: 0}\n";
        let config = crate::config::Config::parse(text, std::path::Path::new("t.yaml")).unwrap();
        let now = std::time::Instant::now();
        let mut acd = crate::acd::Acd::new(now, config.acd, 1);
        acd.handle_login(now, "1001").unwrap();
        let mut g = Gauges::default();
        gauges_from_acd(&acd.snapshot(now), &mut g);
        let key = |q: &str, s: &str| (q.to_string(), s.to_string());
        assert_eq!(g.agents.get(&key("support", "available")), Some(&1));
        assert_eq!(g.agents.get(&key("sales", "available")), Some(&1));
        assert_eq!(g.agents.get(&key("support", "logged_out")), Some(&1));
        assert_eq!(g.queue_waiting.get("support"), Some(&0));
    }
}
