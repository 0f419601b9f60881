//! ACD behaviours on a fake clock: `now` is an `Instant` the tests advance.

use super::*;
use std::collections::BTreeMap;

const S: Duration = Duration::from_secs(1);

fn agent(id: &str, queues: &[(&str, u32)]) -> AgentConfig {
    AgentConfig {
        id: id.into(),
        name: Some(format!("Agent {id}")),
        username: id.into(),
        secret: AgentSecret::Password("x".into()),
        queues: queues.iter().map(|(q, p)| (q.to_string(), *p)).collect(),
        skills: Vec::new(),
        auto_login: false,
    }
}

/// One queue `q` with these agents (penalty 0), wrap-up 0 unless changed.
fn one_queue(strategy: Strategy, agents: &[&str]) -> AcdConfig {
    let mut queues = BTreeMap::new();
    queues.insert(
        "q".to_string(),
        QueueConfig {
            strategy,
            wrap_up: Duration::ZERO,
            announce_every: Duration::ZERO,
            ..QueueConfig::default()
        },
    );
    AcdConfig {
        queues,
        agents: agents
            .iter()
            .map(|a| (a.to_string(), agent(a, &[("q", 0)])))
            .collect(),
    }
}

struct H {
    acd: Acd,
    now: Instant,
}

impl H {
    fn new(config: AcdConfig) -> H {
        let now = Instant::now();
        H {
            acd: Acd::new(now, config, 7),
            now,
        }
    }

    /// Logs agents in one second apart (so longest-idle order is the given order).
    fn login(&mut self, agents: &[&str]) {
        for a in agents {
            self.acd.handle_login(self.now, a).unwrap();
            self.now += Duration::from_millis(1);
        }
    }

    fn advance(&mut self, d: Duration) {
        let target = self.now + d;
        while let Some(t) = self.acd.poll_timeout() {
            if t > target {
                break;
            }
            self.now = self.now.max(t);
            self.acd.handle_timeout(self.now);
        }
        self.now = target;
        self.acd.handle_timeout(self.now);
    }

    fn drain(&mut self) -> Vec<Output> {
        std::iter::from_fn(|| self.acd.poll_output()).collect()
    }

    /// The (call, agent) offers emitted since the last drain.
    fn offers(&mut self) -> Vec<(u64, String)> {
        self.drain()
            .into_iter()
            .filter_map(|o| match o {
                Output::Offer { call, agent, .. } => Some((call, agent)),
                _ => None,
            })
            .collect()
    }

    fn join(&mut self, call: u64, priority: i32) -> Joined {
        self.join_resume(call, priority, None)
    }

    fn join_resume(&mut self, call: u64, priority: i32, resume: Option<u64>) -> Joined {
        self.acd
            .handle_enqueue(
                self.now,
                Enqueue {
                    call,
                    queue: "q".into(),
                    priority,
                    caller: format!("+1555{call}"),
                    resume,
                },
            )
            .unwrap()
    }

    fn result(&mut self, call: u64, agent: &str, r: OfferResult) {
        self.acd.handle_offer_result(self.now, call, agent, r);
    }

    fn state(&self, agent: &str) -> AgentState {
        self.agent_snap(agent).state
    }

    fn agent_snap(&self, agent: &str) -> AgentSnapshot {
        self.acd
            .snapshot(self.now)
            .agents
            .into_iter()
            .find(|a| a.id == agent)
            .expect("agent in snapshot")
    }

    fn queue_snap(&self, name: &str) -> QueueSnapshot {
        self.acd
            .snapshot(self.now)
            .queues
            .into_iter()
            .find(|q| q.name == name)
            .expect("queue in snapshot")
    }

    fn line(&self) -> Vec<u64> {
        self.queue_snap("q")
            .waiting
            .iter()
            .map(|w| w.call)
            .collect()
    }

    /// Answers and immediately ends a call (wrap-up as configured).
    fn take(&mut self, call: u64, agent: &str) {
        self.result(call, agent, OfferResult::Answered);
        self.now += S;
        self.acd.handle_call_ended(self.now, call);
    }
}

fn offer(call: u64, agent: &str) -> (u64, String) {
    (call, agent.to_string())
}

fn cfg_mut(c: &mut AcdConfig) -> &mut QueueConfig {
    c.queues.get_mut("q").unwrap()
}

// ---------------------------------------------------------------------------------------
// Strategies

#[test]
fn longest_idle_offers_the_agent_idle_longest() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b", "c"]));
    h.login(&["b", "c", "a"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "b")]);
    h.take(1, "b");
    // b's idle time restarts when its call ends: c is now idle longest.
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "c")]);
}

#[test]
fn round_robin_continues_after_the_last_agent_offered() {
    let mut h = H::new(one_queue(Strategy::RoundRobin, &["a", "b", "c"]));
    h.login(&["c", "b", "a"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    h.result(1, "a", OfferResult::Answered);
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "b")]);
    h.result(2, "b", OfferResult::Answered);
    h.acd.handle_call_ended(h.now, 1);
    h.join(3, 0);
    assert_eq!(h.offers(), vec![offer(3, "c")]);
    h.acd.handle_call_ended(h.now, 2);
    h.result(3, "c", OfferResult::Answered);
    // After c the turn wraps to a (a and b both free).
    h.join(4, 0);
    assert_eq!(h.offers(), vec![offer(4, "a")]);
}

#[test]
fn ring_all_rings_everyone_and_cancels_the_others_on_answer() {
    let mut config = one_queue(Strategy::RingAll, &["a", "b", "c"]);
    cfg_mut(&mut config).max_no_answer = 1;
    let mut h = H::new(config);
    h.login(&["a", "b", "c"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(
        h.offers(),
        vec![offer(1, "a"), offer(1, "b"), offer(1, "c")]
    );
    h.result(1, "b", OfferResult::Answered);
    let out = h.drain();
    assert!(out.contains(&Output::CancelOffer {
        call: 1,
        agent: "a".into()
    }));
    assert!(out.contains(&Output::CancelOffer {
        call: 1,
        agent: "c".into()
    }));
    assert_eq!(h.state("b"), AgentState::OnCall);
    assert_eq!(h.state("a"), AgentState::Available);
    // The cancelled legs still report (no answer): that must not count against them.
    h.result(1, "a", OfferResult::NoAnswer);
    h.result(1, "c", OfferResult::NoAnswer);
    assert_eq!(h.state("a"), AgentState::Available);
    assert_eq!(h.state("c"), AgentState::Available);
}

#[test]
fn fewest_calls_prefers_the_agent_with_fewest_answered_then_longest_idle() {
    let mut h = H::new(one_queue(Strategy::FewestCalls, &["a", "b", "c"]));
    h.login(&["a", "b"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    h.take(1, "a");
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "b")], "b has fewer calls");
    h.take(2, "b");
    h.join(3, 0);
    assert_eq!(h.offers(), vec![offer(3, "a")], "tie: a idle longer");
    h.take(3, "a");
    h.login(&["c"]);
    h.drain();
    h.join(4, 0);
    assert_eq!(
        h.offers(),
        vec![offer(4, "c")],
        "c has none, though idle least"
    );
}

#[test]
fn random_is_reproducible_from_the_seed_and_reaches_every_agent() {
    let run = |seed: u64| {
        let now = Instant::now();
        let mut acd = Acd::new(
            now,
            one_queue(Strategy::Random, &["a", "b", "c", "d"]),
            seed,
        );
        for a in ["a", "b", "c", "d"] {
            acd.handle_login(now, a).unwrap();
        }
        let mut picks = Vec::new();
        for call in 0..40 {
            acd.handle_enqueue(
                now,
                Enqueue {
                    call,
                    queue: "q".into(),
                    priority: 0,
                    caller: String::new(),
                    resume: None,
                },
            )
            .unwrap();
            while let Some(o) = acd.poll_output() {
                if let Output::Offer { agent, .. } = o {
                    picks.push(agent.clone());
                    acd.handle_offer_result(now, call, &agent, OfferResult::Answered);
                    acd.handle_call_ended(now, call);
                }
            }
        }
        picks
    };
    let p = run(42);
    assert_eq!(p.len(), 40);
    assert_eq!(p, run(42));
    for a in ["a", "b", "c", "d"] {
        assert!(p.iter().any(|x| x == a), "{a} never picked in {p:?}");
    }
    assert_ne!(p, run(43));
}

#[test]
fn higher_penalty_agent_rings_only_when_no_lower_one_is_free() {
    let mut config = one_queue(Strategy::LongestIdle, &[]);
    config
        .agents
        .insert("low".into(), agent("low", &[("q", 0)]));
    config
        .agents
        .insert("high".into(), agent("high", &[("q", 5)]));
    let mut h = H::new(config);
    h.login(&["high", "low"]); // high is idle longer, but has the higher penalty
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "low")]);
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "high")]);
}

#[test]
fn queue_skills_admit_only_agents_with_all_of_them() {
    let mut config = one_queue(Strategy::LongestIdle, &["plain", "fr"]);
    cfg_mut(&mut config).skills = vec!["french".into()];
    config.agents.get_mut("fr").unwrap().skills = vec!["french".into(), "billing".into()];
    let mut h = H::new(config);
    h.login(&["plain", "fr"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "fr")]);
    assert!(h.agent_snap("plain").queues.is_empty());
    h.join(2, 0);
    assert!(
        h.offers().is_empty(),
        "the agent without the skill is not offered"
    );
}

// ---------------------------------------------------------------------------------------
// Order and offers

#[test]
fn vip_caller_is_offered_first() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "lunch").unwrap();
    assert_eq!(h.join(1, 0).position, 1);
    assert_eq!(h.join(2, 0).position, 2);
    assert_eq!(h.join(3, 10).position, 1);
    assert_eq!(h.line(), vec![3, 1, 2]);
    h.drain();
    h.acd.handle_unpause(h.now, "a").unwrap();
    assert_eq!(h.offers(), vec![offer(3, "a")]);
}

#[test]
fn with_n_free_agents_the_first_n_callers_ring() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    for c in 1..=3 {
        h.join(c, 0);
    }
    h.drain();
    h.acd.handle_unpause(h.now, "a").unwrap();
    h.login(&["b"]);
    assert_eq!(h.offers(), vec![offer(1, "a"), offer(2, "b")]);
}

#[test]
fn ring_timeout_moves_the_caller_to_the_next_agent() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    h.advance(15 * S);
    h.result(1, "a", OfferResult::NoAnswer);
    assert_eq!(h.offers(), vec![offer(1, "b")]);
    assert_eq!(h.state("a"), AgentState::Available);
}

#[test]
fn a_lone_agent_that_failed_is_rung_again_after_the_retry_delay() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    h.result(1, "a", OfferResult::Busy);
    assert!(h.offers().is_empty());
    h.advance(Duration::from_millis(999));
    assert!(h.offers().is_empty());
    h.advance(Duration::from_millis(1));
    assert_eq!(h.offers(), vec![offer(1, "a")]);
}

#[test]
fn agent_is_paused_after_max_no_answer_consecutive_no_answers() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_no_answer = 2;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    h.result(1, "a", OfferResult::NoAnswer);
    assert_eq!(h.state("a"), AgentState::Available);
    h.advance(S);
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    h.result(1, "a", OfferResult::NoAnswer);
    let out = h.drain();
    assert!(out.contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::Paused,
        cause: Cause::AutoPaused
    }));
    assert_eq!(h.agent_snap("a").reason.as_deref(), Some("no answer"));
    h.advance(10 * S);
    assert!(h.offers().is_empty(), "paused agents get no offers");
    h.acd.handle_unpause(h.now, "a").unwrap();
    assert_eq!(h.offers(), vec![offer(1, "a")]);
}

#[test]
fn wrap_up_blocks_offers_until_it_is_over() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).wrap_up = 10 * S;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    h.take(1, "a");
    assert_eq!(h.state("a"), AgentState::WrapUp);
    h.join(2, 0);
    h.advance(9 * S);
    assert!(h.offers().is_empty());
    h.advance(S);
    let out = h.drain();
    assert!(out.contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::Available,
        cause: Cause::WrapUpOver
    }));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer { call: 2, .. }))
    );
}

#[test]
fn every_offer_result_other_than_answered_frees_the_agent() {
    for r in [
        OfferResult::Busy,
        OfferResult::Rejected,
        OfferResult::Failed,
    ] {
        let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
        h.login(&["a", "b"]);
        h.join(1, 0);
        h.drain();
        h.result(1, "a", r);
        assert_eq!(h.state("a"), AgentState::Available, "{r:?}");
        assert_eq!(h.offers(), vec![offer(1, "b")], "{r:?}");
    }
}

#[test]
fn caller_abandoning_while_the_agent_rings_cancels_the_offer_without_penalty() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_no_answer = 1;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    h.acd.handle_leave(h.now, 1, false);
    let out = h.drain();
    assert!(out.contains(&Output::CancelOffer {
        call: 1,
        agent: "a".into()
    }));
    assert!(out.contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::Available,
        cause: Cause::CallerGone
    }));
    // The caller side still reports the cancelled offer; it is not a no-answer.
    h.result(1, "a", OfferResult::CallerGone);
    assert_eq!(h.state("a"), AgentState::Available);
    assert_eq!(h.queue_snap("q").counters.abandoned, 1);
}

#[test]
fn answer_arriving_after_the_caller_left_is_treated_as_caller_gone() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    h.acd.handle_leave(h.now, 1, false);
    h.drain();
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(h.state("a"), AgentState::Available);
    assert_eq!(h.agent_snap("a").calls_taken, 0);
    // Not stuck: the next caller rings the agent.
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "a")]);
}

#[test]
fn missing_offer_result_is_cancelled_by_the_guard_timer() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.join(1, 0);
    h.drain();
    h.advance(19 * S);
    assert!(h.drain().is_empty());
    h.advance(S + Duration::from_millis(1));
    let out = h.drain();
    assert!(out.contains(&Output::CancelOffer {
        call: 1,
        agent: "a".into()
    }));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer { call: 1, agent, .. } if agent == "b"))
    );
    assert_eq!(h.state("a"), AgentState::Available);
}

// ---------------------------------------------------------------------------------------
// Leaving the queue

#[test]
fn caller_overflows_at_max_wait_and_a_ringing_offer_is_cancelled() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_wait = 60 * S;
    cfg_mut(&mut config).ring_timeout = 100 * S;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.join(1, 0);
    h.advance(30 * S);
    h.acd.handle_unpause(h.now, "a").unwrap();
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    h.advance(30 * S);
    let out = h.drain();
    let cancel = out
        .iter()
        .position(|o| {
            *o == Output::CancelOffer {
                call: 1,
                agent: "a".into(),
            }
        })
        .expect("cancel");
    let overflow = out
        .iter()
        .position(|o| {
            *o == Output::Overflow {
                call: 1,
                queue: "q".into(),
            }
        })
        .expect("overflow");
    assert!(cancel < overflow);
    assert_eq!(h.state("a"), AgentState::Available);
    assert_eq!(h.queue_snap("q").counters.overflowed, 1);
    assert!(h.line().is_empty());
}

#[test]
fn leaving_with_a_leave_key_and_returning_keeps_the_place() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_wait = 600 * S;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    for c in 1..=3 {
        h.join(c, 0);
        h.now += S;
    }
    h.acd.handle_leave(h.now, 1, true);
    assert_eq!(h.line(), vec![2, 3]);
    h.advance(60 * S);
    // Returns as a new call id naming the old one.
    assert_eq!(h.join_resume(11, 0, Some(1)).position, 1);
    assert_eq!(h.line(), vec![11, 2, 3]);
    // Without resume: the back of the line.
    h.acd.handle_leave(h.now, 2, false);
    assert_eq!(h.join_resume(12, 0, Some(2)).position, 3);
}

#[test]
fn a_remembered_place_expires() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_wait = 100 * S;
    let mut h = H::new(config);
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.join(1, 0);
    h.acd.handle_leave(h.now, 1, true);
    h.advance(50 * S);
    h.join(2, 0);
    h.advance(51 * S);
    h.join(3, 0);
    assert_eq!(h.line(), vec![2, 3]);
    assert_eq!(h.join_resume(4, 0, Some(1)).position, 3);
}

#[test]
fn last_agent_logging_out_makes_waiting_callers_exit() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.acd.handle_pause(h.now, "b", "x").unwrap();
    h.join(1, 0);
    h.join(2, 0);
    h.acd.handle_logout(h.now, "a").unwrap();
    assert!(!h.drain().iter().any(|o| matches!(o, Output::Exit { .. })));
    h.acd.handle_logout(h.now, "b").unwrap();
    let exits: Vec<u64> = h
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::Exit { call, .. } => Some(call),
            _ => None,
        })
        .collect();
    assert_eq!(exits, vec![1, 2]);
    assert!(h.line().is_empty());
}

#[test]
fn joining_is_refused_when_full_unknown_or_unstaffed() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).max_len = 1;
    let mut h = H::new(config);
    let e = |call: u64, queue: &str| Enqueue {
        call,
        queue: queue.into(),
        priority: 0,
        caller: String::new(),
        resume: None,
    };
    assert_eq!(
        h.acd.handle_enqueue(h.now, e(1, "q")),
        Err(Refused::NoAgents)
    );
    assert_eq!(
        h.acd.handle_enqueue(h.now, e(1, "nope")),
        Err(Refused::UnknownQueue)
    );
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap(); // paused still counts as logged in
    assert!(h.acd.handle_enqueue(h.now, e(1, "q")).is_ok());
    assert_eq!(h.acd.handle_enqueue(h.now, e(2, "q")), Err(Refused::Full));

    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).join_when_empty = true;
    let mut h = H::new(config);
    assert!(h.acd.handle_enqueue(h.now, e(1, "q")).is_ok());
}

// ---------------------------------------------------------------------------------------
// Callbacks

#[test]
fn callback_keeps_the_callers_place_and_is_deduplicated() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.join(1, 0);
    h.now += S;
    h.join(2, 0);
    let cb = h
        .acd
        .handle_callback_request(h.now, 1, "q", "+15550001")
        .unwrap();
    assert!(cb >= CALLBACK_ID_BASE);
    assert_eq!(h.line(), vec![cb, 2], "the callback holds call 1's place");
    assert_eq!(
        h.acd.handle_callback_request(h.now, 2, "q", "+15550001"),
        Err(CallbackError::Duplicate)
    );
    assert_eq!(
        h.acd.handle_callback_request(h.now, 2, "nope", "+1"),
        Err(CallbackError::UnknownQueue)
    );
    h.drain();
    h.acd.handle_unpause(h.now, "a").unwrap();
    let out = h.drain();
    assert!(out.contains(&Output::DialCallback {
        callback: cb,
        queue: "q".into(),
        number: "+15550001".into()
    }));
    assert!(!out.iter().any(|o| matches!(o, Output::Offer { .. })));
    assert_eq!(h.state("a"), AgentState::Reserved);
    h.acd.handle_callback_result(h.now, cb, true);
    assert_eq!(h.offers(), vec![offer(cb, "a")]);
    h.result(cb, "a", OfferResult::Answered);
    assert_eq!(h.state("a"), AgentState::OnCall);
    h.acd.handle_call_ended(h.now, cb);
    assert_eq!(h.queue_snap("q").pending_callbacks, 0);
    // Served: the same number may ask again.
    assert!(
        h.acd
            .handle_callback_request(h.now, 9, "q", "+15550001")
            .is_ok()
    );
}

#[test]
fn callback_after_leaving_with_keep_place_uses_the_remembered_place() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.join(1, 0);
    h.now += S;
    h.join(2, 0);
    h.acd.handle_leave(h.now, 1, true);
    let cb = h.acd.handle_callback_request(h.now, 1, "q", "+1").unwrap();
    assert_eq!(h.line(), vec![cb, 2]);
    // A caller with no place gets the back of the line.
    let cb2 = h.acd.handle_callback_request(h.now, 77, "q", "+2").unwrap();
    assert_eq!(h.line(), vec![cb, 2, cb2]);
}

#[test]
fn unreached_callback_is_retried_then_reported_failed() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).callback = CallbackConfig {
        retries: 1,
        retry_after: 120 * S,
        max_pending: 1,
        ..CallbackConfig::default()
    };
    let mut h = H::new(config);
    h.login(&["a"]);
    let cb = h.acd.handle_callback_request(h.now, 1, "q", "+1").unwrap();
    assert_eq!(
        h.acd.handle_callback_request(h.now, 2, "q", "+2"),
        Err(CallbackError::Full)
    );
    assert!(
        h.drain()
            .iter()
            .any(|o| matches!(o, Output::DialCallback { .. }))
    );
    h.acd.handle_callback_result(h.now, cb, false);
    assert_eq!(h.state("a"), AgentState::Available);
    h.advance(119 * S);
    assert!(
        !h.drain()
            .iter()
            .any(|o| matches!(o, Output::DialCallback { .. }))
    );
    h.advance(S);
    assert!(
        h.drain()
            .iter()
            .any(|o| matches!(o, Output::DialCallback { callback, .. } if *callback == cb))
    );
    h.acd.handle_callback_result(h.now, cb, false);
    let out = h.drain();
    assert!(out.contains(&Output::CallbackFailed {
        callback: cb,
        number: "+1".into()
    }));
    assert_eq!(h.queue_snap("q").pending_callbacks, 0);
    assert_eq!(h.state("a"), AgentState::Available);
}

// ---------------------------------------------------------------------------------------
// Wait estimates

#[test]
fn ewt_follows_the_handle_time_history_and_is_scored_against_the_wait() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).wrap_up = 10 * S;
    cfg_mut(&mut config).announce_every = 30 * S;
    let mut h = H::new(config);
    h.login(&["a"]);
    // No history: no estimate.
    assert_eq!(h.join(1, 0).ewt, None);
    h.result(1, "a", OfferResult::Answered);
    h.advance(50 * S);
    h.acd.handle_call_ended(h.now, 1); // handle 50 + 10 = 60 s
    h.advance(10 * S);
    h.join(2, 0);
    h.result(2, "a", OfferResult::Answered);
    h.advance(110 * S);
    h.acd.handle_call_ended(h.now, 2); // handle 110 + 10 = 120 s
    assert_eq!(h.queue_snap("q").avg_handle_ms, Some(90_000));
    // The agent is in wrap-up: staffed 1, available 0.
    let j = h.join(3, 0);
    assert_eq!((j.position, j.ewt), (1, Some(45 * S)));
    let j = h.join(4, 0);
    assert_eq!((j.position, j.ewt), (2, Some(135 * S)));
    let out = h.drain();
    assert!(out.contains(&Output::Prediction {
        call: 4,
        queue: "q".into(),
        predicted: Some(135 * S)
    }));
    // Wrap-up ends at 10 s: call 3 rings; call 4 hears its new position at 30 s.
    h.advance(10 * S);
    h.result(3, "a", OfferResult::Answered);
    h.advance(20 * S);
    let out = h.drain();
    assert!(
        out.contains(&Output::Announce {
            call: 4,
            position: 1,
            ewt: Some(45 * S)
        }),
        "{out:?}"
    );
    // Call 1 had no estimate; call 2 joined with the agent free (0 s, waited 0 s);
    // call 3 waited 10 s against 45 s predicted.
    let p = h.queue_snap("q").prediction;
    assert_eq!(p.unpredicted, 1);
    assert_eq!(p.samples, 2);
    assert_eq!(p.mean_abs_error_ms, Some(17_500));
}

// ---------------------------------------------------------------------------------------
// Reload, registration, drift

#[test]
fn reload_keeps_agent_states_and_the_queue_order() {
    let mut config = one_queue(Strategy::LongestIdle, &["a", "b"]);
    let mut h = H::new(config.clone());
    h.login(&["a", "b"]);
    h.join(1, 0);
    h.result(1, "a", OfferResult::Answered);
    h.acd.handle_pause(h.now, "b", "coffee").unwrap();
    for c in [2, 3, 4] {
        h.join(c, 0);
        h.now += S;
    }
    h.join(5, 3);
    let before = h.line();
    h.drain();
    cfg_mut(&mut config).strategy = Strategy::RoundRobin;
    cfg_mut(&mut config).wrap_up = 5 * S;
    config.agents.insert("c".into(), agent("c", &[("q", 0)]));
    h.acd.reconfigure(h.now, config);
    assert!(
        !h.drain()
            .iter()
            .any(|o| matches!(o, Output::AgentState { .. } | Output::Exit { .. })),
        "nobody changes state on reload"
    );
    assert_eq!(h.line(), before);
    assert_eq!(h.state("a"), AgentState::OnCall);
    assert_eq!(h.state("b"), AgentState::Paused);
    assert_eq!(h.agent_snap("b").reason.as_deref(), Some("coffee"));
    assert_eq!(h.state("c"), AgentState::LoggedOut);
    // The new wrap-up applies to the call in progress.
    h.acd.handle_call_ended(h.now, 1);
    assert_eq!(h.state("a"), AgentState::WrapUp);
}

#[test]
fn agent_removed_by_reload_is_logged_out_after_their_call() {
    let config = one_queue(Strategy::LongestIdle, &["a", "b"]);
    let mut h = H::new(config);
    h.login(&["a", "b"]);
    h.join(1, 0);
    h.result(1, "a", OfferResult::Answered);
    h.drain();
    h.acd
        .reconfigure(h.now, one_queue(Strategy::LongestIdle, &["b"]));
    assert_eq!(h.state("a"), AgentState::OnCall);
    h.acd.handle_call_ended(h.now, 1);
    assert!(h.drain().contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::LoggedOut,
        cause: Cause::Reload
    }));
    assert_eq!(
        h.acd.handle_login(h.now, "a"),
        Err(AgentError::UnknownAgent)
    );
    assert!(h.acd.snapshot(h.now).agents.iter().all(|x| x.id != "a"));
}

#[test]
fn removed_queue_drains_its_callers_and_takes_no_new_ones() {
    let mut two = one_queue(Strategy::LongestIdle, &[]);
    two.queues.insert("other".into(), QueueConfig::default());
    two.agents
        .insert("a".into(), agent("a", &[("q", 0), ("other", 0)]));
    let mut h = H::new(two.clone());
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.join(1, 0);
    let mut only_other = two.clone();
    only_other.queues.remove("q");
    only_other
        .agents
        .insert("a".into(), agent("a", &[("other", 0)]));
    h.acd.reconfigure(h.now, only_other);
    assert!(h.queue_snap("q").draining);
    let refused = h.acd.handle_enqueue(
        h.now,
        Enqueue {
            call: 2,
            queue: "q".into(),
            priority: 0,
            caller: String::new(),
            resume: None,
        },
    );
    assert_eq!(refused, Err(Refused::Draining));
    h.drain();
    h.acd.handle_unpause(h.now, "a").unwrap();
    assert_eq!(
        h.offers(),
        vec![offer(1, "a")],
        "the waiting caller is still served"
    );
    h.result(1, "a", OfferResult::Answered);
    assert!(h.acd.snapshot(h.now).queues.iter().all(|q| q.name != "q"));
    h.acd.handle_call_ended(h.now, 1);
    assert_eq!(h.agent_snap("a").queues, vec![("other".to_string(), 0)]);
}

#[test]
fn registration_logs_auto_login_agents_in_and_out_after_their_call() {
    let mut config = one_queue(Strategy::LongestIdle, &["a", "b"]);
    config.agents.get_mut("a").unwrap().auto_login = true;
    let mut h = H::new(config);
    h.acd.handle_agent_registered(h.now, "a", true);
    h.acd.handle_agent_registered(h.now, "b", true);
    assert_eq!(h.state("a"), AgentState::Available);
    assert_eq!(h.state("b"), AgentState::LoggedOut, "b has no auto_login");
    h.join(1, 0);
    h.result(1, "a", OfferResult::Answered);
    h.acd.handle_agent_registered(h.now, "a", false);
    assert_eq!(h.state("a"), AgentState::OnCall);
    h.drain();
    h.acd.handle_call_ended(h.now, 1);
    assert!(h.drain().contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::LoggedOut,
        cause: Cause::Unregistered
    }));
}

#[test]
fn reconcile_frees_an_agent_stuck_on_a_dead_call() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.join(1, 0);
    h.join(2, 0);
    h.result(2, "b", OfferResult::Answered);
    h.drain();
    assert_eq!(h.state("a"), AgentState::Reserved);
    // Both calls are gone and nobody told the ACD.
    h.acd.reconcile(h.now, &HashSet::new());
    let out = h.drain();
    assert!(out.contains(&Output::AgentState {
        agent: "a".into(),
        state: AgentState::Available,
        cause: Cause::Reconciled
    }));
    assert!(out.contains(&Output::AgentState {
        agent: "b".into(),
        state: AgentState::Available,
        cause: Cause::Reconciled
    }));
    assert!(h.line().is_empty());
    assert_eq!(h.queue_snap("q").counters.reconciled, 1);
    // A live call is kept.
    h.join(3, 0);
    h.acd.reconcile(h.now, &HashSet::from([3]));
    assert_eq!(h.state("a"), AgentState::Reserved);
}

#[test]
fn logout_while_ringing_cancels_the_offer_and_the_caller_rings_the_next_agent() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.join(1, 0);
    h.drain();
    h.acd.handle_logout(h.now, "a").unwrap();
    let out = h.drain();
    assert!(out.contains(&Output::CancelOffer {
        call: 1,
        agent: "a".into()
    }));
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer { call: 1, agent, .. } if agent == "b"))
    );
    assert_eq!(h.state("a"), AgentState::LoggedOut);
    assert_eq!(
        h.acd.handle_logout(h.now, "a"),
        Err(AgentError::NotLoggedIn)
    );
    assert_eq!(h.acd.handle_unpause(h.now, "b"), Err(AgentError::NotPaused));
}

#[test]
fn every_transition_is_reported_with_its_cause() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.join(1, 0);
    h.take(1, "a");
    let states: Vec<(AgentState, Cause)> = h
        .drain()
        .into_iter()
        .filter_map(|o| match o {
            Output::AgentState { state, cause, .. } => Some((state, cause)),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        vec![
            (AgentState::Available, Cause::Login),
            (AgentState::Reserved, Cause::Offered),
            (AgentState::OnCall, Cause::Answered),
            (AgentState::Available, Cause::CallEnded),
        ]
    );
}

#[test]
fn a_long_random_run_keeps_every_invariant_and_never_strands_an_agent() {
    // Two queues sharing agents, every strategy, every input in random order.
    let strategies = [
        Strategy::LongestIdle,
        Strategy::RoundRobin,
        Strategy::RingAll,
        Strategy::FewestCalls,
        Strategy::Random,
    ];
    for (n, strategy) in strategies.into_iter().enumerate() {
        let mut config = one_queue(strategy, &[]);
        cfg_mut(&mut config).wrap_up = 2 * S;
        cfg_mut(&mut config).max_wait = 120 * S;
        cfg_mut(&mut config).announce_every = 20 * S;
        cfg_mut(&mut config).callback.retry_after = 10 * S;
        config.queues.insert(
            "r".into(),
            QueueConfig {
                strategy: Strategy::RoundRobin,
                join_when_empty: true,
                ..QueueConfig::default()
            },
        );
        let ids = ["a", "b", "c", "d", "e"];
        for (i, id) in ids.iter().enumerate() {
            let mut qs = vec![("q", (i % 2) as u32)];
            if i % 2 == 0 {
                qs.push(("r", 0));
            }
            config.agents.insert(id.to_string(), agent(id, &qs));
        }
        let mut h = H::new(config.clone());
        let mut rng = Rng::seeded(n as u64);
        let mut ringing: Vec<(u64, String)> = Vec::new();
        let mut talking: Vec<u64> = Vec::new();
        let mut dialing: Vec<u64> = Vec::new();
        let mut live: HashSet<u64> = HashSet::new();
        let mut next_call = 0u64;
        for step in 0..4000 {
            let r = rng.next();
            let agent = ids[(r >> 8) as usize % ids.len()];
            match r % 16 {
                0..=3 => {
                    next_call += 1;
                    let queue = if r & 0x10000 == 0 { "q" } else { "r" };
                    let joined = h.acd.handle_enqueue(
                        h.now,
                        Enqueue {
                            call: next_call,
                            queue: queue.into(),
                            priority: (r >> 20) as i32 % 3,
                            caller: String::new(),
                            resume: (r & 0x200000 != 0).then(|| next_call.saturating_sub(3)),
                        },
                    );
                    if joined.is_ok() {
                        live.insert(next_call);
                    }
                }
                4..=6 if !ringing.is_empty() => {
                    let (call, a) = ringing.remove((r >> 32) as usize % ringing.len());
                    let res = [
                        OfferResult::Answered,
                        OfferResult::Answered,
                        OfferResult::NoAnswer,
                        OfferResult::Busy,
                        OfferResult::CallerGone,
                        OfferResult::Failed,
                    ][(r >> 40) as usize % 6];
                    h.result(call, &a, res);
                    if res == OfferResult::Answered {
                        talking.push(call);
                    }
                }
                7 if !talking.is_empty() => {
                    let call = talking.swap_remove((r >> 32) as usize % talking.len());
                    h.acd.handle_call_ended(h.now, call);
                    live.remove(&call);
                }
                8 => {
                    let call = 1 + (r >> 32) % next_call.max(1);
                    h.acd.handle_leave(h.now, call, r & 0x100 != 0);
                }
                9 => {
                    let _ = h.acd.handle_login(h.now, agent);
                }
                10 => {
                    let _ = match (r >> 12) % 3 {
                        0 => h.acd.handle_logout(h.now, agent),
                        1 => h.acd.handle_pause(h.now, agent, "x"),
                        _ => h.acd.handle_unpause(h.now, agent),
                    };
                }
                11 => {
                    let call = 1 + (r >> 32) % next_call.max(1);
                    let _ = h
                        .acd
                        .handle_callback_request(h.now, call, "q", &format!("+{}", r % 5));
                }
                12 if !dialing.is_empty() => {
                    let cb = dialing.swap_remove(0);
                    h.acd.handle_callback_result(h.now, cb, r & 0x100 != 0);
                    live.insert(cb);
                }
                13 => h.acd.handle_agent_registered(h.now, agent, r & 0x100 != 0),
                14 if step % 50 == 0 => {
                    let mut c = config.clone();
                    if r & 0x100 != 0 {
                        c.agents.remove(agent);
                    }
                    h.acd.reconfigure(h.now, c);
                }
                15 if step % 40 == 0 => {
                    talking.retain(|c| live.contains(c));
                    h.acd.reconcile(h.now, &live);
                }
                _ => h.advance(Duration::from_millis(r % 3000)),
            }
            for o in h.drain() {
                match o {
                    Output::Offer { call, agent, .. } => ringing.push((call, agent)),
                    Output::CancelOffer { call, agent } => {
                        // The caller side still reports; here it reports at once.
                        ringing.retain(|x| *x != (call, agent.clone()));
                        h.result(call, &agent, OfferResult::CallerGone);
                    }
                    Output::DialCallback { callback, .. } => dialing.push(callback),
                    Output::Overflow { call, .. } | Output::Exit { call, .. } => {
                        live.remove(&call);
                    }
                    _ => {}
                }
            }
            h.acd.check_invariants();
        }
        // Wind down: everything ringing is answered and ended, then time passes.
        for _ in 0..200 {
            for (call, a) in std::mem::take(&mut ringing) {
                h.result(call, &a, OfferResult::NoAnswer);
            }
            for cb in std::mem::take(&mut dialing) {
                h.acd.handle_callback_result(h.now, cb, false);
            }
            for call in std::mem::take(&mut talking) {
                h.acd.handle_call_ended(h.now, call);
            }
            for call in 0..=next_call {
                h.acd.handle_leave(h.now, call, false);
            }
            h.advance(300 * S);
            for o in h.drain() {
                match o {
                    Output::Offer { call, agent, .. } => ringing.push((call, agent)),
                    Output::DialCallback { callback, .. } => dialing.push(callback),
                    _ => {}
                }
            }
            h.acd.check_invariants();
        }
        let snap = h.acd.snapshot(h.now);
        let q = &snap.queues.iter().find(|q| q.name == "q").unwrap().counters;
        assert!(
            q.answered > 50 && q.ring_attempts > 100 && q.callbacks_requested > 5,
            "{strategy:?}: the run exercised too little: {q:?}"
        );
        for a in snap.agents {
            assert!(
                !matches!(a.state, AgentState::Reserved | AgentState::OnCall),
                "{strategy:?}: {} stranded in {:?}",
                a.id,
                a.state
            );
        }
    }
}

#[test]
fn an_agent_in_two_queues_takes_the_caller_who_waited_longest() {
    let mut config = one_queue(Strategy::LongestIdle, &[]);
    config.queues.insert(
        "r".into(),
        QueueConfig {
            wrap_up: Duration::ZERO,
            ..QueueConfig::default()
        },
    );
    config
        .agents
        .insert("a".into(), agent("a", &[("q", 0), ("r", 0)]));
    let mut h = H::new(config);
    h.login(&["a"]);
    h.acd.handle_pause(h.now, "a", "x").unwrap();
    h.acd
        .handle_enqueue(
            h.now,
            Enqueue {
                call: 1,
                queue: "r".into(),
                priority: 0,
                caller: String::new(),
                resume: None,
            },
        )
        .unwrap();
    h.now += S;
    h.join(2, 0);
    h.drain();
    h.acd.handle_unpause(h.now, "a").unwrap();
    let out = h.drain();
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Offer { call: 1, queue, .. } if queue == "r"))
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::Offer { call: 2, .. }))
    );
}

#[test]
fn ring_all_rings_only_the_lowest_penalty_tier() {
    let mut config = one_queue(Strategy::RingAll, &[]);
    for (id, p) in [("a", 0), ("b", 0), ("c", 1)] {
        config.agents.insert(id.into(), agent(id, &[("q", p)]));
    }
    let mut h = H::new(config);
    h.login(&["c", "a", "b"]);
    h.drain();
    h.join(1, 0);
    assert_eq!(h.offers(), vec![offer(1, "a"), offer(1, "b")]);
    h.join(2, 0);
    assert_eq!(h.offers(), vec![offer(2, "c")]);
}

#[test]
fn poll_timeout_names_the_earliest_deadline() {
    let mut config = one_queue(Strategy::LongestIdle, &["a"]);
    cfg_mut(&mut config).wrap_up = 7 * S;
    cfg_mut(&mut config).announce_every = 30 * S;
    let mut h = H::new(config);
    assert_eq!(h.acd.poll_timeout(), None);
    h.login(&["a"]);
    let t = h.now;
    h.join(1, 0);
    // The ring guard (15 s + 5 s) comes before the announcement (30 s).
    assert_eq!(h.acd.poll_timeout(), Some(t + 20 * S));
    h.take(1, "a");
    assert_eq!(h.acd.poll_timeout(), Some(h.now + 7 * S));
}

#[test]
fn snapshot_shows_waiting_callers_agents_and_serializes() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a", "b"]));
    h.login(&["a", "b"]);
    h.acd.handle_pause(h.now, "b", "training").unwrap();
    h.join(1, 0);
    h.join(2, 5);
    h.now += 3 * S;
    let snap = h.acd.snapshot(h.now);
    let q = &snap.queues[0];
    assert_eq!((q.logged_in, q.staffed, q.available), (2, 1, 0));
    let w: Vec<(u64, usize, WaitState)> = q
        .waiting
        .iter()
        .map(|w| (w.call, w.position, w.state))
        .collect();
    // Call 1 rang the free agent before the VIP arrived; the VIP is still first in line.
    assert_eq!(
        w,
        vec![(2, 1, WaitState::Waiting), (1, 2, WaitState::Ringing)]
    );
    assert_eq!(q.waiting[0].waited_ms, 3000);
    let b = snap.agents.iter().find(|a| a.id == "b").unwrap();
    assert_eq!(
        (b.state, b.reason.as_deref()),
        (AgentState::Paused, Some("training"))
    );
    let json = serde_json::to_string(&snap).unwrap();
    assert!(json.contains("\"strategy\":\"longest_idle\""), "{json}");
    assert!(json.contains("\"state\":\"Reserved\""), "{json}");
}

#[test]
fn the_late_result_of_a_cancelled_offer_is_not_taken_for_the_next_offer() {
    let mut h = H::new(one_queue(Strategy::LongestIdle, &["a"]));
    h.login(&["a"]);
    h.join(1, 0);
    h.drain();
    // No result within ring timeout + 5 s: cancelled, and (alone) re-offered after retry.
    h.advance(20 * S);
    assert!(h.drain().contains(&Output::CancelOffer {
        call: 1,
        agent: "a".into()
    }));
    h.advance(S);
    assert_eq!(h.offers(), vec![offer(1, "a")]);
    // The first offer's result arrives late: it must not end the second offer.
    h.result(1, "a", OfferResult::NoAnswer);
    assert_eq!(h.state("a"), AgentState::Reserved);
    h.result(1, "a", OfferResult::Answered);
    assert_eq!(h.state("a"), AgentState::OnCall);
}
