//! `/api/stats`: contact-centre KPIs over the call records of a time window.
//!
//! A pure function of the records ([`compute`]): the handler reads the file, this module
//! counts. Records are read leniently (as in `/api/records`): a field an older engine did
//! not write counts as absent, a record whose fields have the wrong type is skipped.
//!
//! Definitions (also in `docs/admin.md`), per queue and in total:
//! - *offered*: calls that reached the queue (every record with a queue part);
//! - *answered* / *abandoned*: the queue part's `result` is `answered` / `abandoned`;
//! - *abandonment rate*: abandoned ÷ offered;
//! - *service level*: answered with `wait_ms` ≤ threshold ÷ offered (callers who
//!   overflowed, left or took a callback count against it: they were not answered in time);
//! - *ASA*: mean `wait_ms` of answered calls; *average talk*: mean `agent_talk_ms` of
//!   answered calls;
//! - *EWT error*: mean |`first_ewt_ms` − `wait_ms`| over answered calls that were given an
//!   estimate (how far the announced wait was from the real one).
//!
//! Over all calls: *containment* = answered calls (status 200) that never entered a queue
//! nor were bridged to a transfer target ÷ answered calls.
//!
//! Per survey name (the flow's `survey` nodes, from the records' `surveys` part):
//! - *offered*: calls that reached the survey; *responses*: those that pressed a score;
//! - *response rate*: responses ÷ offered; *average score*: mean of the scores;
//! - *distribution*: responses per score, 1 to the survey's scale (the largest seen,
//!   should a flow change it). An entry whose score is outside 1..scale is not counted.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Service-level threshold when the request names none (the common 80/20 target's 20 s).
pub const DEFAULT_THRESHOLD_S: u64 = 20;
/// Longest threshold accepted (one hour).
pub const MAX_THRESHOLD_S: u64 = 3600;

/// The query string as given.
#[derive(Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
pub struct RawQuery {
    pub from: Option<String>,
    pub to: Option<String>,
    pub threshold_s: Option<u64>,
}

/// A checked query: times in unix ms, `from` inclusive, `to` exclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatsQuery {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub threshold_ms: u64,
}

impl StatsQuery {
    pub fn parse(raw: &RawQuery) -> Result<StatsQuery, String> {
        let threshold_s = raw.threshold_s.unwrap_or(DEFAULT_THRESHOLD_S);
        if threshold_s > MAX_THRESHOLD_S {
            return Err(format!("threshold_s: at most {MAX_THRESHOLD_S}"));
        }
        Ok(StatsQuery {
            from: raw
                .from
                .as_deref()
                .map(|s| super::records::parse_time("from", s))
                .transpose()?,
            to: raw
                .to
                .as_deref()
                .map(|s| super::records::parse_time("to", s))
                .transpose()?,
            threshold_ms: threshold_s * 1000,
        })
    }

    fn contains(&self, started_unix_ms: u64) -> bool {
        self.from.is_none_or(|f| started_unix_ms >= f)
            && self.to.is_none_or(|t| started_unix_ms < t)
    }
}

/// The fields of a record the KPIs need.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Rec {
    status: u16,
    outcome: String,
    started_unix_ms: u64,
    queue: Option<QueuePart>,
    surveys: Vec<SurveyPart>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct SurveyPart {
    survey: String,
    scale: u8,
    score: Option<u8>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct QueuePart {
    queue: String,
    wait_ms: u64,
    agent_talk_ms: u64,
    first_ewt_ms: Option<u64>,
    result: String,
}

/// KPIs of one queue, or of all queues together.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct QueueKpis {
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    /// Answered within the threshold.
    pub answered_in_threshold: u64,
    /// abandoned ÷ offered; null when nothing was offered.
    pub abandonment_rate: Option<f64>,
    /// answered_in_threshold ÷ offered; null when nothing was offered.
    pub service_level: Option<f64>,
    /// Average speed of answer: mean wait of answered calls.
    pub asa_ms: Option<u64>,
    /// Mean time answered calls talked with the agent.
    pub avg_talk_ms: Option<u64>,
    /// Mean absolute error of the first announced wait estimate, answered calls only.
    pub ewt_error_ms: Option<u64>,
    /// Answered calls that had an estimate (the EWT error's sample size).
    pub ewt_samples: u64,
    #[serde(skip)]
    wait_sum: u64,
    #[serde(skip)]
    talk_sum: u64,
    #[serde(skip)]
    ewt_error_sum: u64,
}

impl QueueKpis {
    fn add(&mut self, q: &QueuePart, threshold_ms: u64) {
        self.offered += 1;
        match q.result.as_str() {
            "answered" => {
                self.answered += 1;
                self.wait_sum += q.wait_ms;
                self.talk_sum += q.agent_talk_ms;
                if q.wait_ms <= threshold_ms {
                    self.answered_in_threshold += 1;
                }
                if let Some(ewt) = q.first_ewt_ms {
                    self.ewt_samples += 1;
                    self.ewt_error_sum += ewt.abs_diff(q.wait_ms);
                }
            }
            "abandoned" => self.abandoned += 1,
            _ => {}
        }
    }

    fn finish(&mut self) {
        let ratio = |n: u64, d: u64| (d > 0).then(|| n as f64 / d as f64);
        let mean = |sum: u64, n: u64| (n > 0).then(|| (sum as f64 / n as f64).round() as u64);
        self.abandonment_rate = ratio(self.abandoned, self.offered);
        self.service_level = ratio(self.answered_in_threshold, self.offered);
        self.asa_ms = mean(self.wait_sum, self.answered);
        self.avg_talk_ms = mean(self.talk_sum, self.answered);
        self.ewt_error_ms = mean(self.ewt_error_sum, self.ewt_samples);
    }
}

/// The answers to one survey.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct SurveyKpis {
    /// Scores go from 1 to this.
    pub scale: u8,
    /// Calls that reached the survey.
    pub offered: u64,
    /// Calls that answered it.
    pub responses: u64,
    /// responses ÷ offered; null when nothing was offered.
    pub response_rate: Option<f64>,
    /// Mean score of the responses; null without responses.
    pub avg_score: Option<f64>,
    /// Responses per score, `"1"` to `scale` (zeros included).
    pub distribution: BTreeMap<u8, u64>,
    #[serde(skip)]
    score_sum: u64,
}

impl SurveyKpis {
    fn add(&mut self, p: &SurveyPart) {
        if p.score.is_some_and(|n| n == 0 || n > p.scale) || p.scale == 0 {
            return;
        }
        self.scale = self.scale.max(p.scale);
        self.offered += 1;
        if let Some(n) = p.score {
            self.responses += 1;
            self.score_sum += u64::from(n);
            *self.distribution.entry(n).or_default() += 1;
        }
    }

    fn finish(&mut self) {
        for n in 1..=self.scale {
            self.distribution.entry(n).or_default();
        }
        self.response_rate =
            (self.offered > 0).then(|| self.responses as f64 / self.offered as f64);
        self.avg_score =
            (self.responses > 0).then(|| self.score_sum as f64 / self.responses as f64);
    }
}

/// Everything `/api/stats` answers.
#[derive(Serialize, Debug, Default, Clone, PartialEq)]
pub struct Stats {
    pub from: Option<u64>,
    pub to: Option<u64>,
    pub threshold_s: u64,
    /// Records in the window.
    pub calls: u64,
    /// Calls the engine answered (status 200).
    pub answered_calls: u64,
    /// Answered calls that ended without entering a queue or a transfer.
    pub self_service: u64,
    /// self_service ÷ answered_calls; null without answered calls.
    pub containment: Option<f64>,
    /// Records that could not be read as records (fields of the wrong type).
    pub skipped_records: u64,
    pub total: QueueKpis,
    pub queues: BTreeMap<String, QueueKpis>,
    /// Survey name → its answers.
    pub surveys: BTreeMap<String, SurveyKpis>,
}

/// Outcomes of a call that was bridged: to an agent, or to a transfer target.
fn bridged(outcome: &str) -> bool {
    matches!(outcome, "caller_hangup_bridged" | "agent_hangup")
}

/// The KPIs of the records that started inside the query's window.
pub fn compute<'a>(records: impl IntoIterator<Item = &'a Value>, q: &StatsQuery) -> Stats {
    let mut c = Counter::new(q);
    records.into_iter().for_each(|r| c.add(r));
    c.finish()
}

/// [`compute`] one record at a time, so a large file is counted while it is read.
pub struct Counter {
    query: StatsQuery,
    stats: Stats,
}

impl Counter {
    pub fn new(q: &StatsQuery) -> Counter {
        Counter {
            query: *q,
            stats: Stats {
                from: q.from,
                to: q.to,
                threshold_s: q.threshold_ms / 1000,
                ..Stats::default()
            },
        }
    }

    pub fn add(&mut self, v: &Value) {
        let s = &mut self.stats;
        let Ok(r) = Rec::deserialize(v) else {
            s.skipped_records += 1;
            return;
        };
        if !self.query.contains(r.started_unix_ms) {
            return;
        }
        s.calls += 1;
        if r.status == 200 {
            s.answered_calls += 1;
            if r.queue.is_none() && !bridged(&r.outcome) {
                s.self_service += 1;
            }
        }
        if let Some(part) = &r.queue {
            let threshold = self.query.threshold_ms;
            s.total.add(part, threshold);
            s.queues
                .entry(part.queue.clone())
                .or_default()
                .add(part, threshold);
        }
        for p in r.surveys.iter().filter(|p| !p.survey.is_empty()) {
            s.surveys.entry(p.survey.clone()).or_default().add(p);
        }
    }

    pub fn finish(mut self) -> Stats {
        let s = &mut self.stats;
        s.total.finish();
        s.queues.values_mut().for_each(QueueKpis::finish);
        s.surveys.values_mut().for_each(SurveyKpis::finish);
        // A name whose every entry was unusable has nothing to show.
        s.surveys.retain(|_, k| k.offered > 0);
        s.containment =
            (s.answered_calls > 0).then(|| s.self_service as f64 / s.answered_calls as f64);
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn rec(started: u64, status: u16, outcome: &str, queue: Option<Value>) -> Value {
        let mut v = json!({ "id": started, "started_unix_ms": started, "status": status,
            "outcome": outcome, "caller": "+15550000000", "talk_ms": 1000 });
        if let Some(q) = queue {
            v["queue"] = q;
        }
        v
    }

    fn q(name: &str, result: &str, wait_ms: u64, talk_ms: u64, ewt: Option<u64>) -> Value {
        json!({ "queue": name, "enqueued_at_ms": 3000, "wait_ms": wait_ms,
            "answered_by": (result == "answered").then_some("alice"), "ring_attempts": 1,
            "agent_talk_ms": talk_ms, "abandoned_at_ms": null, "first_ewt_ms": ewt,
            "callback": false, "result": result })
    }

    /// Ten calls by hand, all inside the window except the last two.
    fn fixture() -> Vec<Value> {
        vec![
            // Self-service: answered, no queue, no transfer.
            rec(1_000, 200, "caller_hangup", None),
            rec(2_000, 200, "engine_hangup", None),
            rec(3_000, 200, "rtp_timeout", None),
            // Transferred (bridged, no queue): answered, not contained.
            rec(4_000, 200, "caller_hangup_bridged", None),
            // Never answered: not in the containment base.
            rec(5_000, 487, "cancelled", None),
            // support: 3 answered (waits 10 s, 30 s, 20 s = the threshold), 1 abandoned.
            rec(
                6_000,
                200,
                "agent_hangup",
                Some(q("support", "answered", 10_000, 60_000, Some(16_000))),
            ),
            rec(
                7_000,
                200,
                "caller_hangup_bridged",
                Some(q("support", "answered", 30_000, 120_000, Some(20_000))),
            ),
            rec(
                8_000,
                200,
                "agent_hangup",
                Some(q("support", "answered", 20_000, 90_000, None)),
            ),
            rec(
                9_000,
                200,
                "abandoned",
                Some(q("support", "abandoned", 45_000, 0, Some(30_000))),
            ),
            // sales: 1 overflow (neither answered nor abandoned), 1 answered.
            rec(
                10_000,
                200,
                "engine_hangup",
                Some(q("sales", "overflow", 120_000, 0, None)),
            ),
            rec(
                11_000,
                200,
                "agent_hangup",
                Some(q("sales", "answered", 5_000, 30_000, Some(9_000))),
            ),
            // Outside the window (to = 12_000 exclusive).
            rec(12_000, 200, "caller_hangup", None),
            rec(
                13_000,
                200,
                "agent_hangup",
                Some(q("support", "answered", 1_000, 1_000, None)),
            ),
        ]
    }

    fn window() -> StatsQuery {
        StatsQuery {
            from: Some(1_000),
            to: Some(12_000),
            threshold_ms: 20_000,
        }
    }

    #[test]
    fn kpis_per_queue_match_the_hand_computed_fixture() {
        let s = compute(&fixture(), &window());
        let support = &s.queues["support"];
        assert_eq!(
            (support.offered, support.answered, support.abandoned),
            (4, 3, 1)
        );
        // 10 s and 20 s are within 20 s; 30 s is not: 2 of 4 offered.
        assert_eq!(support.answered_in_threshold, 2);
        assert_eq!(support.service_level, Some(0.5));
        assert_eq!(support.abandonment_rate, Some(0.25));
        // (10 + 30 + 20) / 3 = 20 s.
        assert_eq!(support.asa_ms, Some(20_000));
        // (60 + 120 + 90) / 3 = 90 s.
        assert_eq!(support.avg_talk_ms, Some(90_000));
        // |16 − 10| = 6, |20 − 30| = 10 → 8 s; the abandoned call's estimate is not counted.
        assert_eq!(support.ewt_error_ms, Some(8_000));
        assert_eq!(support.ewt_samples, 2);

        let sales = &s.queues["sales"];
        assert_eq!((sales.offered, sales.answered, sales.abandoned), (2, 1, 0));
        assert_eq!(sales.service_level, Some(0.5));
        assert_eq!(sales.abandonment_rate, Some(0.0));
        assert_eq!(sales.asa_ms, Some(5_000));
        assert_eq!(sales.avg_talk_ms, Some(30_000));
        assert_eq!(sales.ewt_error_ms, Some(4_000));
        assert_eq!(s.queues.len(), 2);
    }

    #[test]
    fn totals_and_containment_match_the_hand_computed_fixture() {
        let s = compute(&fixture(), &window());
        assert_eq!(s.calls, 11);
        assert_eq!(s.threshold_s, 20);
        let t = &s.total;
        assert_eq!((t.offered, t.answered, t.abandoned), (6, 4, 1));
        assert_eq!(t.answered_in_threshold, 3);
        assert_eq!(t.service_level, Some(0.5));
        // 1 / 6 = 0.1666…
        assert!((t.abandonment_rate.unwrap() - 1.0 / 6.0).abs() < 1e-12);
        // (10 + 30 + 20 + 5) / 4 = 16.25 s.
        assert_eq!(t.asa_ms, Some(16_250));
        // (60 + 120 + 90 + 30) / 4 = 75 s.
        assert_eq!(t.avg_talk_ms, Some(75_000));
        // (6 + 10 + 4) / 3 = 6.666… s, rounded to the millisecond.
        assert_eq!(t.ewt_error_ms, Some(6_667));
        assert_eq!(t.ewt_samples, 3);
        // Answered: 10 of the 11 (not the cancelled one). Self-service: the first three.
        assert_eq!(s.answered_calls, 10);
        assert_eq!(s.self_service, 3);
        assert_eq!(s.containment, Some(0.3));
    }

    fn survey(name: &str, scale: u8, score: Option<u8>) -> Value {
        json!({ "survey": name, "scale": scale, "score": score, "offered_at_ms": 60_000,
            "answered_at_ms": score.map(|_| 65_000) })
    }

    fn with_surveys(mut r: Value, surveys: Vec<Value>) -> Value {
        r["surveys"] = Value::Array(surveys);
        r
    }

    /// Survey answers by hand: csat (1-5) offered 6 times in the window, nps (1-9) twice.
    fn survey_fixture() -> Vec<Value> {
        let self_service = |t| rec(t, 200, "caller_hangup", None);
        vec![
            with_surveys(self_service(1_000), vec![survey("csat", 5, Some(4))]),
            with_surveys(self_service(2_000), vec![survey("csat", 5, Some(5))]),
            with_surveys(self_service(3_000), vec![survey("csat", 5, Some(4))]),
            with_surveys(self_service(4_000), vec![survey("csat", 5, Some(1))]),
            // Offered, not answered (silence, or the caller hung up).
            with_surveys(self_service(5_000), vec![survey("csat", 5, None)]),
            with_surveys(
                self_service(6_000),
                vec![survey("csat", 5, None), survey("nps", 9, Some(9))],
            ),
            with_surveys(self_service(7_000), vec![survey("nps", 9, Some(6))]),
            // A score above the scale is not a usable entry.
            with_surveys(self_service(8_000), vec![survey("csat", 5, Some(7))]),
            // No survey at all.
            self_service(9_000),
            // Outside the window.
            with_surveys(self_service(12_000), vec![survey("csat", 5, Some(1))]),
        ]
    }

    #[test]
    fn survey_kpis_match_the_hand_computed_fixture() {
        let s = compute(&survey_fixture(), &window());
        assert_eq!(s.calls, 9);
        assert_eq!(s.skipped_records, 0);
        let csat = &s.surveys["csat"];
        assert_eq!(csat.scale, 5);
        // 4 answered of 6 offered (the score of 7 is not counted at all).
        assert_eq!((csat.offered, csat.responses), (6, 4));
        assert!((csat.response_rate.unwrap() - 4.0 / 6.0).abs() < 1e-12);
        // (4 + 5 + 4 + 1) / 4 = 3.5.
        assert_eq!(csat.avg_score, Some(3.5));
        let dist: Vec<(u8, u64)> = csat.distribution.iter().map(|(k, v)| (*k, *v)).collect();
        assert_eq!(dist, [(1, 1), (2, 0), (3, 0), (4, 2), (5, 1)]);

        let nps = &s.surveys["nps"];
        assert_eq!((nps.scale, nps.offered, nps.responses), (9, 2, 2));
        assert_eq!(nps.response_rate, Some(1.0));
        // (9 + 6) / 2 = 7.5.
        assert_eq!(nps.avg_score, Some(7.5));
        assert_eq!(nps.distribution.len(), 9);
        assert_eq!(nps.distribution[&9], 1);
        assert_eq!(nps.distribution[&6], 1);
        assert_eq!(nps.distribution.values().sum::<u64>(), 2);
        assert_eq!(s.surveys.len(), 2);

        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["surveys"]["csat"]["distribution"]["4"], 2);
        assert_eq!(json["surveys"]["csat"]["distribution"]["2"], 0);
        assert!(json["surveys"]["csat"].get("score_sum").is_none());
    }

    #[test]
    fn a_survey_offered_but_never_answered_has_no_average() {
        let records = vec![with_surveys(
            rec(2_000, 200, "caller_hangup", None),
            vec![survey("csat", 5, None)],
        )];
        let s = compute(&records, &window());
        let csat = &s.surveys["csat"];
        assert_eq!((csat.offered, csat.responses), (1, 0));
        assert_eq!(csat.response_rate, Some(0.0));
        assert_eq!(csat.avg_score, None);
        assert_eq!(csat.distribution.values().sum::<u64>(), 0);
        assert_eq!(csat.distribution.len(), 5);
        // Records from before surveys existed count as none offered.
        let s = compute(&fixture(), &window());
        assert!(s.surveys.is_empty());
    }

    #[test]
    fn the_threshold_moves_the_service_level() {
        let mut w = window();
        w.threshold_ms = 30_000;
        let s = compute(&fixture(), &w);
        // Now 30 s counts too: 3 of 4 in support.
        assert_eq!(s.queues["support"].service_level, Some(0.75));
        w.threshold_ms = 0;
        let s = compute(&fixture(), &w);
        assert_eq!(s.queues["support"].service_level, Some(0.0));
    }

    #[test]
    fn no_records_give_counts_of_zero_and_no_ratios() {
        let s = compute(&[], &window());
        assert_eq!(s.calls, 0);
        assert_eq!(s.containment, None);
        assert_eq!(s.total.service_level, None);
        assert_eq!(s.total.asa_ms, None);
        assert!(s.queues.is_empty());
        let json = serde_json::to_value(&s).unwrap();
        assert_eq!(json["total"]["abandonment_rate"], Value::Null);
        assert!(json["total"].get("wait_sum").is_none(), "sums stay private");
    }

    #[test]
    fn records_with_wrong_field_types_are_skipped_not_counted() {
        let records = vec![
            json!({ "started_unix_ms": 2_000, "status": "ok" }),
            json!({ "started_unix_ms": 2_000, "status": 200, "queue": { "queue": "x", "wait_ms": -5 } }),
            rec(2_000, 200, "caller_hangup", None),
        ];
        let s = compute(&records, &window());
        assert_eq!(s.skipped_records, 2);
        assert_eq!(s.calls, 1);
        assert_eq!(s.containment, Some(1.0));
    }

    #[test]
    fn query_parses_times_and_bounds_the_threshold() {
        let q = StatsQuery::parse(&RawQuery {
            from: Some("1970-01-01T00:00:02Z".into()),
            to: Some("4000".into()),
            threshold_s: None,
        })
        .unwrap();
        assert_eq!(
            q,
            StatsQuery {
                from: Some(2_000),
                to: Some(4_000),
                threshold_ms: 20_000
            }
        );
        assert!(
            StatsQuery::parse(&RawQuery {
                threshold_s: Some(3601),
                ..RawQuery::default()
            })
            .is_err()
        );
        assert!(
            StatsQuery::parse(&RawQuery {
                from: Some("yesterday".into()),
                ..RawQuery::default()
            })
            .is_err()
        );
    }
}
