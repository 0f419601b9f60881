//! Offline simulation of a call through a flow, for `phonetree simulate`
//! and `phonetree test`: the same [`Run`] as the live engine, driven on a
//! simulated clock with scripted keys and known prompt lengths.
//!
//! Script semantics: the caller types one group of keys (`"1"`, `"123456#"`)
//! each time the flow starts listening for input (a menu or collect whose
//! prompt has finished or been interrupted), [`Script::key_gap`] apart. When
//! the groups run out the caller stays silent, so timeouts and retries play
//! out until the flow ends.

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::compile::{FlowId, FlowSet};
use super::run::{Action, CallInfo, Run};
use crate::media::types::{Digit, PromptId};

/// What the simulated caller does.
#[derive(Clone, Debug)]
pub struct Script {
    pub call: CallInfo,
    /// Key groups, typed one per listening node.
    pub groups: Vec<Vec<Digit>>,
    /// Time between keys within a group (and before the first one).
    pub key_gap: Duration,
    /// Wall-clock time at the start of the call (for `hours` nodes).
    pub wall_start: Option<SystemTime>,
    /// The simulation stops after this much simulated time.
    pub limit: Duration,
}

impl Script {
    /// Parses `"1,123456#,1234#"` (groups separated by commas; spaces ignored).
    pub fn parse_digits(s: &str) -> Result<Vec<Vec<Digit>>, String> {
        s.split(',')
            .map(str::trim)
            .filter(|g| !g.is_empty())
            .map(|g| {
                g.chars()
                    .filter(|c| !c.is_whitespace())
                    .map(|c| Digit::from_char(c).ok_or_else(|| format!("`{c}` is not a DTMF key")))
                    .collect()
            })
            .collect()
    }
}

/// How the simulated call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hangup,
    Transfer(String),
    /// Still running when the time limit was reached.
    TimeLimit,
}

/// One line of the transcript.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    Play {
        prompts: Vec<PromptId>,
        barge_in: bool,
    },
    Stop,
    Key(Digit),
    Timeout,
    Hangup,
    Transfer(String),
    /// A directory request (masked); the simulator has no directory, so the
    /// node takes its `timeout` branch.
    Directory(String),
}

#[derive(Clone, Debug)]
pub struct Transcript {
    /// Events with their time since the call started.
    pub events: Vec<(Duration, Event)>,
    pub path: Vec<String>,
    pub outcome: Outcome,
    /// Prompts heard (started), in order.
    pub heard: Vec<PromptId>,
}

impl Transcript {
    /// Human-readable lines, naming prompts with `name`.
    pub fn lines(&self, name: &dyn Fn(PromptId) -> String) -> Vec<String> {
        self.events
            .iter()
            .map(|(t, e)| {
                let what = match e {
                    Event::Play { prompts, .. } => format!(
                        "play {}",
                        prompts
                            .iter()
                            .map(|p| name(*p))
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                    Event::Stop => "stop (barge-in)".to_string(),
                    Event::Key(d) => format!("key {d}"),
                    Event::Timeout => "timeout".to_string(),
                    Event::Hangup => "hangup".to_string(),
                    Event::Transfer(t) => format!("transfer {t}"),
                    Event::Directory(r) => {
                        format!("directory {r} (no directory: waits for timeout)")
                    }
                };
                format!("{:>8.3}s  {what}", t.as_secs_f64())
            })
            .collect()
    }
}

/// Runs `flow` with `script`; `prompt_len` says how long each prompt plays.
pub fn simulate(
    set: Arc<FlowSet>,
    flow: FlowId,
    script: &Script,
    prompt_len: &dyn Fn(PromptId) -> Duration,
) -> Transcript {
    let t0 = Instant::now();
    let mut now = t0;
    let mut run = match script.wall_start {
        Some(w) => Run::new_at(set, flow, script.call.clone(), now, w),
        None => Run::new(set, flow, script.call.clone(), now),
    };
    let mut events = Vec::new();
    let mut heard = Vec::new();
    let mut playing_until: Option<Instant> = None;
    let mut pending_keys: Vec<(Instant, Digit)> = Vec::new();
    let mut groups = script.groups.iter();
    let mut outcome = Outcome::TimeLimit;
    let limit = t0 + script.limit;
    loop {
        while let Some(a) = run.poll_action() {
            let at = now - t0;
            match a {
                Action::Play { prompts, barge_in } => {
                    let len: Duration = prompts.iter().map(|p| prompt_len(*p)).sum();
                    playing_until = Some(now + len);
                    heard.extend(prompts.iter().copied());
                    events.push((at, Event::Play { prompts, barge_in }));
                }
                Action::StopPlayback => {
                    playing_until = None;
                    events.push((at, Event::Stop));
                }
                Action::Hangup => {
                    events.push((at, Event::Hangup));
                    outcome = Outcome::Hangup;
                }
                Action::Transfer { target } => {
                    events.push((at, Event::Transfer(target.clone())));
                    outcome = Outcome::Transfer(target);
                }
                Action::Directory { request, .. } => {
                    events.push((at, Event::Directory(format!("{request:?}"))));
                }
            }
        }
        if run.is_finished() {
            break;
        }
        // The caller answers each listening node with the next group.
        if pending_keys.is_empty()
            && run.poll_timeout().is_some()
            && let Some(g) = groups.next()
        {
            let mut at = now;
            for d in g {
                at += script.key_gap;
                pending_keys.push((at, *d));
            }
        }
        let next_key = pending_keys.first().map(|(t, _)| *t);
        let next = [next_key, playing_until, run.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else {
            break; // cannot happen for a well-formed run; stop rather than spin
        };
        if next > limit {
            break;
        }
        now = now.max(next);
        if next_key == Some(next) {
            let (_, d) = pending_keys.remove(0);
            events.push((now - t0, Event::Key(d)));
            run.handle_digit(now, d);
        } else if playing_until == Some(next) {
            playing_until = None;
            run.handle_playback_finished(now);
        } else {
            events.push((now - t0, Event::Timeout));
            run.handle_timeout(now);
        }
    }
    Transcript {
        events,
        path: run.path().to_vec(),
        outcome,
        heard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{Source, compile};
    use std::collections::HashMap;
    use std::path::PathBuf;

    fn demo() -> (Arc<FlowSet>, HashMap<String, PromptId>) {
        let cat = crate::flow::compile::tests::demo_catalog();
        let src = Source {
            path: PathBuf::from("flows/main.yaml"),
            text: include_str!("../../flows/main.yaml").to_string(),
        };
        (Arc::new(compile(&[src], &cat, 1).unwrap().0), cat)
    }

    fn script(digits: &str) -> Script {
        Script {
            call: CallInfo {
                caller: "+15551234567".into(),
                dialled: "ivr".into(),
            },
            groups: Script::parse_digits(digits).unwrap(),
            key_gap: Duration::from_millis(300),
            wall_start: None,
            limit: Duration::from_secs(600),
        }
    }

    #[test]
    fn demo_caller_picks_hours_then_goes_silent() {
        let (set, cat) = demo();
        let name = |p: PromptId| {
            cat.iter()
                .find(|(_, v)| **v == p)
                .map(|(k, _)| k.clone())
                .unwrap_or_default()
        };
        let t = simulate(set.clone(), FlowId(0), &script("1"), &|_| {
            Duration::from_secs(2)
        });
        assert_eq!(t.outcome, Outcome::Hangup);
        let heard: Vec<String> = t.heard.iter().map(|p| name(*p)).collect();
        assert_eq!(
            heard,
            [
                "en/welcome",
                "en/main-menu",
                "en/hours",
                "en/main-menu",
                "en/no-input",
                "en/main-menu",
                "en/no-input",
                "en/main-menu",
                "en/no-input",
                "en/goodbye"
            ]
        );
        assert_eq!(
            t.path,
            [
                "welcome",
                "main_menu",
                "hours",
                "main_menu",
                "goodbye",
                "end"
            ]
        );
        let lines = t.lines(&name);
        assert_eq!(lines[0], "   0.000s  play en/welcome");
        assert_eq!(lines[2], "   4.300s  key 1");
    }

    #[test]
    fn digits_parse() {
        assert_eq!(
            Script::parse_digits("1, 12#,").unwrap(),
            vec![vec![Digit::D1], vec![Digit::D1, Digit::D2, Digit::Pound]]
        );
        assert!(Script::parse_digits("1x").is_err());
    }
}
