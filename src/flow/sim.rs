//! Pieces shared by the offline drivers of a flow (`phonetree simulate` and `phonetree test`,
//! both in [`super::testcase`]): the key-script syntax and how a simulated call ends.
//!
//! Script semantics: the caller types one group of keys (`"1"`, `"123456#"`) each time the
//! flow starts listening for input (a menu, collect or survey whose prompt has finished or been
//! interrupted). When the groups run out the caller stays silent, so timeouts and retries
//! play out until the flow ends.
//!
//! Queues are scripted too ([`super::testcase::QueueScript`]): by default a queue
//! takes the call at position 1 and an agent answers after
//! [`super::testcase::DEFAULT_ANSWER_AFTER`]; callbacks are registered and
//! transfers succeed.

use crate::media::types::Digit;

/// Parses `"1,123456#,1234#"`: key groups separated by commas, spaces ignored.
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

/// How a simulated call ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    Hangup,
    Transfer(String),
    /// Talking to an agent of this queue.
    Bridged(String),
    /// Still running when the time limit was reached.
    TimeLimit,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digits_parse() {
        assert_eq!(
            parse_digits("1, 12#,").unwrap(),
            vec![vec![Digit::D1], vec![Digit::D1, Digit::D2, Digit::Pound]]
        );
        assert!(parse_digits("1x").is_err());
    }
}
