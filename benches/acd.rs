//! ACD dispatch throughput: 1,000 agents, 10,000 waiting callers, one offer per iteration
//! (answer → call ends → the freed agent is offered the head caller → a new caller joins
//! at the back). Criterion reports elements/s = offers/s. Nothing here asserts a time.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use phonetree::acd::{
    Acd, AcdConfig, AgentConfig, AgentSecret, Enqueue, OfferResult, Output, QueueConfig, Strategy,
};
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

const AGENTS: usize = 1_000;
const WAITING: u64 = 10_000;

fn config(strategy: Strategy, announce_every: Duration, max_wait: Duration) -> AcdConfig {
    let mut queues = BTreeMap::new();
    queues.insert(
        "q".to_string(),
        QueueConfig {
            strategy,
            wrap_up: Duration::ZERO,
            announce_every,
            max_wait,
            ..QueueConfig::default()
        },
    );
    let agents = (0..AGENTS)
        .map(|i| {
            let id = format!("a{i:04}");
            let cfg = AgentConfig {
                id: id.clone(),
                name: None,
                username: id.clone(),
                secret: AgentSecret::Password("x".into()),
                queues: BTreeMap::from([("q".to_string(), (i % 3) as u32)]),
                skills: Vec::new(),
                auto_login: false,
            };
            (id, cfg)
        })
        .collect();
    AcdConfig { queues, agents }
}

struct World {
    acd: Acd,
    now: Instant,
    next_call: u64,
    ringing: VecDeque<(u64, String)>,
}

impl World {
    fn new(config: AcdConfig) -> World {
        let now = Instant::now();
        let mut acd = Acd::new(now, config, 1);
        for i in 0..AGENTS {
            acd.handle_login(now, &format!("a{i:04}")).unwrap();
        }
        let mut w = World {
            acd,
            now,
            next_call: 0,
            ringing: VecDeque::new(),
        };
        for _ in 0..WAITING + AGENTS as u64 {
            w.join();
        }
        w.collect();
        assert_eq!(w.ringing.len(), AGENTS);
        w
    }

    fn join(&mut self) {
        self.next_call += 1;
        self.acd
            .handle_enqueue(
                self.now,
                Enqueue {
                    call: self.next_call,
                    queue: "q".into(),
                    priority: self.next_call.is_multiple_of(7) as i32,
                    caller: String::new(),
                    resume: None,
                },
            )
            .unwrap();
    }

    fn collect(&mut self) {
        while let Some(o) = self.acd.poll_output() {
            if let Output::Offer { call, agent, .. } = o {
                self.ringing.push_back((call, agent));
            }
        }
    }

    /// One offer: the oldest ringing agent answers and hangs up; its next offer follows.
    fn cycle(&mut self, step: Duration) {
        self.now += step;
        if self.acd.poll_timeout().is_some_and(|t| t <= self.now) {
            self.acd.handle_timeout(self.now);
        }
        let (call, agent) = self.ringing.pop_front().expect("an offer is ringing");
        self.acd
            .handle_offer_result(self.now, call, &agent, OfferResult::Answered);
        self.acd.handle_call_ended(self.now, call);
        self.join();
        self.collect();
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("acd");
    g.throughput(Throughput::Elements(1));
    for (name, strategy) in [
        ("offer_longest_idle", Strategy::LongestIdle),
        ("offer_round_robin", Strategy::RoundRobin),
        ("offer_fewest_calls", Strategy::FewestCalls),
    ] {
        let mut w = World::new(config(strategy, Duration::ZERO, Duration::ZERO));
        g.bench_function(name, |b| b.iter(|| w.cycle(Duration::from_millis(1))));
    }
    // With every timer on: announcements every 45 s and max wait for 10,000 callers.
    let mut w = World::new(config(
        Strategy::LongestIdle,
        Duration::from_secs(45),
        Duration::from_secs(3600),
    ));
    g.bench_function("offer_longest_idle_with_timers", |b| {
        b.iter(|| w.cycle(Duration::from_millis(1)))
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
