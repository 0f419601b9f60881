//! Dial-plan style patterns for route numbers, `collect` input and `branch`
//! tests (Asterisk-like, no regular expressions):
//!
//! | token | matches |
//! |---|---|
//! | `X` | any digit 0-9 |
//! | `Z` | 1-9 |
//! | `N` | 2-9 |
//! | `[1-5#]` | one character from the class (ranges allowed) |
//! | `.` | one or more of anything (only at the end) |
//! | `!` | zero or more of anything (only at the end) |
//! | anything else | itself (`*`, `#`, `+`, other digits, letters) |
//!
//! A leading `_` (Asterisk habit) is ignored.

use std::fmt;

#[derive(Clone, Debug, PartialEq, Eq)]
enum Tok {
    Lit(char),
    Class(Vec<(char, char)>),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Tail {
    None,
    OneOrMore,
    ZeroOrMore,
}

/// A compiled pattern; matching is linear in the input, never backtracks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pattern {
    source: String,
    toks: Vec<Tok>,
    tail: Tail,
}

impl fmt::Display for Pattern {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.source)
    }
}

impl Pattern {
    pub fn parse(src: &str) -> Result<Pattern, String> {
        let body = src.strip_prefix('_').unwrap_or(src);
        if body.is_empty() {
            return Err("empty pattern".into());
        }
        let mut toks = Vec::new();
        let mut tail = Tail::None;
        let mut chars = body.chars().peekable();
        while let Some(c) = chars.next() {
            if tail != Tail::None {
                return Err(format!(
                    "`.` and `!` may only end a pattern, found `{c}` after them"
                ));
            }
            match c {
                'X' | 'x' => toks.push(Tok::Class(vec![('0', '9')])),
                'Z' | 'z' => toks.push(Tok::Class(vec![('1', '9')])),
                'N' | 'n' => toks.push(Tok::Class(vec![('2', '9')])),
                '.' => tail = Tail::OneOrMore,
                '!' => tail = Tail::ZeroOrMore,
                '[' => {
                    let mut ranges = Vec::new();
                    let mut closed = false;
                    while let Some(c) = chars.next() {
                        if c == ']' {
                            closed = true;
                            break;
                        }
                        if chars.peek() == Some(&'-') {
                            chars.next();
                            match chars.next() {
                                Some(']') | None => {
                                    return Err("unfinished range in `[...]`".into());
                                }
                                Some(hi) if hi < c => {
                                    return Err(format!("range `{c}-{hi}` is backwards"));
                                }
                                Some(hi) => ranges.push((c, hi)),
                            }
                        } else {
                            ranges.push((c, c));
                        }
                    }
                    if !closed {
                        return Err("`[` without `]`".into());
                    }
                    if ranges.is_empty() {
                        return Err("empty `[]`".into());
                    }
                    toks.push(Tok::Class(ranges));
                }
                ']' => return Err("`]` without `[`".into()),
                c => toks.push(Tok::Lit(c)),
            }
        }
        Ok(Pattern {
            source: src.to_string(),
            toks,
            tail,
        })
    }

    pub fn matches(&self, s: &str) -> bool {
        let mut it = s.chars();
        for t in &self.toks {
            let Some(c) = it.next() else { return false };
            let ok = match t {
                Tok::Lit(l) => *l == c,
                Tok::Class(r) => r.iter().any(|(lo, hi)| (*lo..=*hi).contains(&c)),
            };
            if !ok {
                return false;
            }
        }
        let rest = it.count();
        match self.tail {
            Tail::None => rest == 0,
            Tail::OneOrMore => rest >= 1,
            Tail::ZeroOrMore => true,
        }
    }

    /// Fewest characters an input must have to match.
    pub fn min_len(&self) -> usize {
        self.toks.len() + usize::from(self.tail == Tail::OneOrMore)
    }

    /// Most characters a match can have (`None`: unbounded).
    pub fn max_len(&self) -> Option<usize> {
        match self.tail {
            Tail::None => Some(self.toks.len()),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matching() {
        let p = Pattern::parse("_1555XXXX").unwrap();
        assert!(p.matches("15551234"));
        assert!(!p.matches("1555123"));
        assert!(!p.matches("155512345"));
        let p = Pattern::parse("+49.").unwrap();
        assert!(p.matches("+4930123"));
        assert!(!p.matches("+49"));
        let p = Pattern::parse("[1-3#]N!").unwrap();
        assert!(p.matches("#2"));
        assert!(p.matches("2999"));
        assert!(!p.matches("41"));
        assert!(!p.matches("11"));
        assert_eq!(p.min_len(), 2);
    }

    #[test]
    fn errors() {
        assert!(Pattern::parse("1.2").is_err());
        assert!(Pattern::parse("[1-").is_err());
        assert!(Pattern::parse("[9-1]").is_err());
        assert!(Pattern::parse("").is_err());
    }
}
