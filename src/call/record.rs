//! The call record: what happened on one call, written when it ends.

use crate::media::types::{Digit, DigitSource};
use serde::Serialize;
use std::time::Duration;

/// How a call ended. Names are stable: they appear in logs, records and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The caller sent BYE.
    CallerHangup,
    /// The flow ended the call (hangup node, or retries exhausted) and we sent BYE.
    EngineHangup,
    /// CANCEL before we answered (487).
    Cancelled,
    /// Answered, but the ACK never came (RFC 3261 §13.3.1.4): we sent BYE.
    NoAck,
    /// No RTP from the caller for the configured time: we sent BYE.
    RtpTimeout,
    /// Refused before answer (404 no flow, 488 no common codec, 420, 503 ...).
    Rejected,
    /// The offer/answer in the ACK was unusable (RFC 3264): we sent BYE.
    MediaFailed,
    /// The engine shut down with the call in progress.
    Shutdown,
    /// Bridged to an agent (or a transfer target); the caller hung up.
    CallerHangupBridged,
    /// Bridged to an agent (or a transfer target); the far end hung up.
    AgentHangup,
    /// The caller hung up while waiting in a queue (or while an agent rang).
    Abandoned,
    /// A callback's customer did not answer (busy, no answer, unreachable).
    CallbackUnreached,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::CallerHangup => "caller_hangup",
            Outcome::CallbackUnreached => "callback_unreached",
            Outcome::EngineHangup => "engine_hangup",
            Outcome::Cancelled => "cancelled",
            Outcome::NoAck => "no_ack",
            Outcome::RtpTimeout => "rtp_timeout",
            Outcome::Rejected => "rejected",
            Outcome::MediaFailed => "media_failed",
            Outcome::Shutdown => "shutdown",
            Outcome::CallerHangupBridged => "caller_hangup_bridged",
            Outcome::AgentHangup => "agent_hangup",
            Outcome::Abandoned => "abandoned",
        }
    }
}

impl std::fmt::Display for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One digit as the call received it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DigitRecord {
    pub digit: char,
    pub source: String,
    /// Milliseconds since the call was answered.
    pub at_ms: u64,
}

impl DigitRecord {
    pub fn new(digit: Digit, source: DigitSource, at: Duration) -> DigitRecord {
        DigitRecord {
            digit: digit.as_char(),
            source: source.to_string(),
            at_ms: at.as_millis() as u64,
        }
    }
}

#[derive(Clone, Debug, Serialize)]
pub struct CallRecord {
    /// Engine-local call number.
    pub id: u64,
    /// SIP Call-ID.
    pub call_id: String,
    pub caller: String,
    pub dialled: String,
    pub transport: String,
    pub flow: String,
    pub flow_version: u64,
    pub outcome: Outcome,
    /// SIP status of the final response to the INVITE (200 when answered).
    pub status: u16,
    /// Unix time (ms) the INVITE arrived; filled by the runtime, which owns the clock.
    pub started_unix_ms: u64,
    /// From INVITE to end.
    pub duration_ms: u64,
    /// From ACK to end (0 when never answered).
    pub talk_ms: u64,
    /// Nodes visited, in order.
    pub path: Vec<String>,
    pub digits: Vec<DigitRecord>,
    /// Prompt names started, in order (capped).
    pub prompts: Vec<String>,
    pub rtp_packets_sent: u64,
    pub rtp_packets_received: u64,
    /// RTP packets dropped on the caller's leg because they came from a source that does
    /// not own the call (injection or reflection attempts, a stray stream).
    pub rtp_foreign_dropped: u64,
    /// The queue part of the call, when it entered one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub queue: Option<QueueRecord>,
    /// The `survey` nodes the call reached, one per survey name, answered or not.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub surveys: Vec<SurveyRecord>,
}

/// A survey offered to the caller and what they answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct SurveyRecord {
    /// The survey's `name` in the flow.
    pub survey: String,
    /// Answers were 1 to `scale`.
    pub scale: u8,
    /// The key pressed; null: offered but not answered (silence, wrong keys, hung up).
    pub score: Option<u8>,
    /// Milliseconds from the INVITE to the survey node.
    pub offered_at_ms: u64,
    /// Milliseconds from the INVITE to the answer.
    pub answered_at_ms: Option<u64>,
}

/// What happened to a call in a queue and on its agent leg.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct QueueRecord {
    pub queue: String,
    /// Milliseconds from the INVITE to joining the queue.
    pub enqueued_at_ms: u64,
    /// Time waited until an agent answered, or until the caller left.
    pub wait_ms: u64,
    /// The agent who answered.
    pub answered_by: Option<String>,
    /// Agents rung (each INVITE sent counts one).
    pub ring_attempts: u32,
    /// Time bridged to the agent.
    pub agent_talk_ms: u64,
    /// Milliseconds from the INVITE to the caller hanging up while waiting.
    pub abandoned_at_ms: Option<u64>,
    /// The first wait estimate announced (None: none was reliable / announced).
    pub first_ewt_ms: Option<u64>,
    /// The caller asked for a callback.
    pub callback: bool,
    /// How the queue part ended: answered, abandoned, overflow, no_agents, full, left,
    /// callback, failed.
    pub result: String,
}
