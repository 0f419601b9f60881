//! `say` nodes: values spoken by concatenating fragment prompts
//! (`say/7`, `say/hundred`, `say/december`, `say/ord-25`, ...). The words are
//! composed the English way; other languages provide the same fragment names.

use jiff::civil::{Date, Weekday};

use crate::media::types::Digit;

/// What a `say` node reads out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SayAs {
    /// Key by key: `40*#` → four zero star pound.
    Digits,
    /// A whole number: `-1234` → minus one thousand two hundred thirty four.
    Number,
    /// An amount: `12.05` → twelve dollars and five cents.
    Money,
    /// `2026-12-25` or `20261225` → friday december twenty-fifth two thousand twenty six.
    Date,
    /// `14:30` or `1430` → two thirty P M.
    Time,
}

impl SayAs {
    pub(crate) fn key(self) -> &'static str {
        match self {
            SayAs::Digits => "digits",
            SayAs::Number => "number",
            SayAs::Money => "money",
            SayAs::Date => "date",
            SayAs::Time => "time",
        }
    }
}

/// The fragment names a value is spoken with, or `None` when the text is not
/// such a value (a `say` of a bad value plays nothing).
pub(crate) fn words(how: SayAs, text: &str) -> Option<Vec<String>> {
    let text = text.trim();
    match how {
        SayAs::Digits => text
            .chars()
            .map(|c| Digit::from_char(c).map(digit_fragment))
            .collect(),
        SayAs::Number => parse_number(text).map(number_words),
        SayAs::Money => money_words(text),
        SayAs::Date => date_words(text),
        SayAs::Time => time_words(text),
    }
}

/// Every fragment a kind of `say` may need, checked against the catalog by
/// the compiler.
pub(crate) fn fragments(how: SayAs) -> Vec<String> {
    let mut v: Vec<String> = Vec::new();
    let numbers = || -> Vec<String> {
        let mut n: Vec<String> = (0..20).map(|i| format!("say/{i}")).collect();
        n.extend((2..10).map(|i| format!("say/{}", i * 10)));
        n.extend(["say/hundred", "say/thousand", "say/million", "say/minus"].map(String::from));
        n
    };
    match how {
        SayAs::Digits => v.extend((0..10).map(|i| format!("say/{i}"))),
        SayAs::Number => v = numbers(),
        SayAs::Money => {
            v = numbers();
            v.extend(
                [
                    "say/dollar",
                    "say/dollars",
                    "say/cent",
                    "say/cents",
                    "say/and",
                ]
                .map(String::from),
            );
        }
        SayAs::Date => {
            v = numbers();
            v.extend(MONTHS.iter().map(|m| format!("say/{m}")));
            v.extend(WEEKDAYS.iter().map(|d| format!("say/{d}")));
            v.extend((1..=31).map(|i| format!("say/ord-{i}")));
        }
        SayAs::Time => {
            v.extend((0..20).map(|i| format!("say/{i}")));
            v.extend((2..6).map(|i| format!("say/{}", i * 10)));
            v.extend(["say/am", "say/pm", "say/oclock"].map(String::from));
        }
    }
    v
}

/// All fragment names any `say` can use (resolved once per language).
pub(crate) fn all_fragments() -> Vec<String> {
    let mut v: Vec<String> = [SayAs::Digits, SayAs::Money, SayAs::Date, SayAs::Time]
        .into_iter()
        .flat_map(fragments)
        .collect();
    v.extend(Digit::ALL.iter().skip(10).map(|d| digit_fragment(*d)));
    v.extend(currency_fragments(None));
    // Queue wait announcements ("about five minutes").
    v.extend(
        super::compile::QUEUE_WAIT_FRAGMENTS
            .iter()
            .map(|s| s.to_string()),
    );
    v.sort();
    v.dedup();
    v
}

const MONTHS: [&str; 12] = [
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
];

const WEEKDAYS: [&str; 7] = [
    "monday",
    "tuesday",
    "wednesday",
    "thursday",
    "friday",
    "saturday",
    "sunday",
];

pub(crate) fn digit_fragment(d: Digit) -> String {
    match d {
        Digit::Star => "say/star".to_string(),
        Digit::Pound => "say/pound".to_string(),
        d => format!("say/{}", d.as_char().to_ascii_lowercase()),
    }
}

/// A whole number for `say: number` (optional minus sign, at most 16 characters).
pub(crate) fn parse_number(s: &str) -> Option<i64> {
    let t = s.trim();
    if t.is_empty() || t.len() > 16 {
        return None;
    }
    t.parse::<i64>().ok()
}

/// English composition of a whole number (`1234` → one thousand two hundred
/// thirty four). From a billion up, the number is read digit by digit.
pub(crate) fn number_words(n: i64) -> Vec<String> {
    let mut out = Vec::new();
    let mut v = n.unsigned_abs();
    if n < 0 {
        out.push("say/minus".to_string());
    }
    if v >= 1_000_000_000 {
        out.extend(v.to_string().chars().map(|c| format!("say/{c}")));
        return out;
    }
    if v == 0 {
        out.push("say/0".to_string());
        return out;
    }
    for (scale, word) in [(1_000_000, "million"), (1_000, "thousand")] {
        if v >= scale {
            below_thousand(v / scale, &mut out);
            out.push(format!("say/{word}"));
            v %= scale;
        }
    }
    below_thousand(v, &mut out);
    out
}

fn below_thousand(v: u64, out: &mut Vec<String>) {
    if v >= 100 {
        out.push(format!("say/{}", v / 100));
        out.push("say/hundred".to_string());
    }
    let r = v % 100;
    if r >= 20 {
        out.push(format!("say/{}", r / 10 * 10));
        if !r.is_multiple_of(10) {
            out.push(format!("say/{}", r % 10));
        }
    } else if r > 0 {
        out.push(format!("say/{r}"));
    }
}

/// Currencies `say: { money: .., currency: .. }` can speak: ISO 4217 code and
/// fragment names for one and several major units, one and several minor units.
pub(crate) const CURRENCIES: &[(&str, [&str; 4])] = &[
    ("USD", ["dollar", "dollars", "cent", "cents"]),
    ("EUR", ["euro", "euros", "cent", "cents"]),
    (
        "GBP",
        ["pound-sterling", "pounds-sterling", "penny", "pence"],
    ),
];

/// The unit fragments of a currency (`None`: of every supported currency).
/// Empty for an unsupported code.
pub(crate) fn currency_fragments(code: Option<&str>) -> Vec<String> {
    let mut v: Vec<String> = CURRENCIES
        .iter()
        .filter(|(c, _)| code.is_none_or(|code| c.eq_ignore_ascii_case(code.trim())))
        .flat_map(|(_, units)| units.iter().map(|u| format!("say/{u}")))
        .collect();
    v.sort();
    v.dedup();
    v
}

/// An amount in a currency (`12.05`, `EUR` → twelve euros and five cents);
/// `None` for a bad amount or an unsupported currency.
pub(crate) fn money_words_in(text: &str, currency: &str) -> Option<Vec<String>> {
    let (_, units) = CURRENCIES
        .iter()
        .find(|(c, _)| c.eq_ignore_ascii_case(currency.trim()))?;
    money_words_units(text.trim(), units)
}

/// `12.05`, `12`, `0.99`, `-3.5` → dollars and cents.
fn money_words(s: &str) -> Option<Vec<String>> {
    money_words_units(s, &CURRENCIES[0].1)
}

fn money_words_units(s: &str, units: &[&str; 4]) -> Option<Vec<String>> {
    let [one, many, one_minor, many_minor] = units.map(|u| format!("say/{u}"));
    let (neg, s) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = s.split_once('.').unwrap_or((s, ""));
    if whole.is_empty() && frac.is_empty() {
        return None;
    }
    let all_digits = |t: &str| t.chars().all(|c| c.is_ascii_digit());
    if !all_digits(whole) || !all_digits(frac) || frac.len() > 2 || whole.len() > 9 {
        return None;
    }
    let dollars: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let cents: i64 = match frac.len() {
        0 => 0,
        1 => frac.parse::<i64>().ok()? * 10,
        _ => frac.parse().ok()?,
    };
    let mut out = Vec::new();
    if neg {
        out.push("say/minus".to_string());
    }
    if dollars > 0 || cents == 0 {
        out.extend(number_words(dollars));
        out.push(if dollars == 1 { one } else { many });
    }
    if cents > 0 {
        if dollars > 0 {
            out.push("say/and".to_string());
        }
        out.extend(number_words(cents));
        out.push(if cents == 1 { one_minor } else { many_minor });
    }
    Some(out)
}

/// `2026-12-25` or `20261225` → weekday, month, ordinal day, year.
fn date_words(s: &str) -> Option<Vec<String>> {
    let date: Date = if s.len() == 8 && s.chars().all(|c| c.is_ascii_digit()) {
        let y: i16 = s[0..4].parse().ok()?;
        let m: i8 = s[4..6].parse().ok()?;
        let d: i8 = s[6..8].parse().ok()?;
        Date::new(y, m, d).ok()?
    } else {
        s.parse().ok()?
    };
    let weekday = match date.weekday() {
        Weekday::Monday => 0,
        Weekday::Tuesday => 1,
        Weekday::Wednesday => 2,
        Weekday::Thursday => 3,
        Weekday::Friday => 4,
        Weekday::Saturday => 5,
        Weekday::Sunday => 6,
    };
    let month = usize::try_from(date.month() - 1).ok()?;
    let mut out = vec![
        format!("say/{}", WEEKDAYS[weekday]),
        format!("say/{}", MONTHS.get(month)?),
        format!("say/ord-{}", date.day()),
    ];
    out.extend(number_words(i64::from(date.year())));
    Some(out)
}

/// `14:30` / `1430` / `9:05` → two thirty P M, nine zero five A M, noon as 12 P M.
fn time_words(s: &str) -> Option<Vec<String>> {
    let (h, m) = match s.split_once(':') {
        Some((h, m)) => (h, m),
        None if s.len() == 4 && s.is_ascii() => (&s[..2], &s[2..]),
        None => return None,
    };
    if h.is_empty() || h.len() > 2 || m.len() != 2 {
        return None;
    }
    let h: u64 = h.parse().ok()?;
    let m: u64 = m.parse().ok()?;
    if h > 23 || m > 59 {
        return None;
    }
    let h12 = match h % 12 {
        0 => 12,
        x => x,
    };
    let mut out = Vec::new();
    below_thousand(h12, &mut out);
    match m {
        0 => out.push("say/oclock".to_string()),
        1..=9 => {
            out.push("say/0".to_string());
            out.push(format!("say/{m}"));
        }
        _ => below_thousand(m, &mut out),
    }
    out.push(if h < 12 { "say/am" } else { "say/pm" }.to_string());
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn w(how: SayAs, s: &str) -> Vec<String> {
        words(how, s).unwrap_or_default()
    }

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| format!("say/{s}")).collect()
    }

    #[test]
    fn numbers() {
        assert_eq!(number_words(15), names(&["15"]));
        assert_eq!(number_words(40), names(&["40"]));
        assert_eq!(number_words(105), names(&["1", "hundred", "5"]));
        assert_eq!(number_words(2000), names(&["2", "thousand"]));
        assert_eq!(number_words(1_000_000_000).len(), 10);
        assert_eq!(number_words(i64::MIN).len(), 20);
        assert_eq!(w(SayAs::Number, "12a"), Vec::<String>::new());
    }

    #[test]
    fn money() {
        assert_eq!(
            w(SayAs::Money, "12.05"),
            names(&["12", "dollars", "and", "5", "cents"])
        );
        assert_eq!(w(SayAs::Money, "1"), names(&["1", "dollar"]));
        assert_eq!(w(SayAs::Money, "0.5"), names(&["50", "cents"]));
        assert_eq!(w(SayAs::Money, "0"), names(&["0", "dollars"]));
        assert_eq!(w(SayAs::Money, "-0.01"), names(&["minus", "1", "cent"]));
        assert!(words(SayAs::Money, "1.234").is_none());
        assert!(words(SayAs::Money, ".").is_none());
        assert!(words(SayAs::Money, "1e5").is_none());
    }

    #[test]
    fn money_in_other_currencies() {
        let m = |t: &str, c: &str| money_words_in(t, c).unwrap_or_default();
        assert_eq!(
            m("123.45", "USD"),
            names(&[
                "1", "hundred", "20", "3", "dollars", "and", "40", "5", "cents"
            ])
        );
        assert_eq!(
            m("1999.99", "eur"),
            names(&[
                "1", "thousand", "9", "hundred", "90", "9", "euros", "and", "90", "9", "cents"
            ])
        );
        assert_eq!(
            m("1.01", "GBP"),
            names(&["1", "pound-sterling", "and", "1", "penny"])
        );
        assert_eq!(m("0.02", "GBP"), names(&["2", "pence"]));
        assert!(money_words_in("1.00", "XYZ").is_none());
        assert!(money_words_in("1.001", "USD").is_none());
        assert_eq!(
            currency_fragments(Some("usd")),
            names(&["cent", "cents", "dollar", "dollars"])
        );
        assert!(currency_fragments(Some("JPY")).is_empty());
        assert_eq!(currency_fragments(None).len(), 10);
        for f in currency_fragments(None) {
            assert!(all_fragments().contains(&f), "{f}");
        }
    }

    #[test]
    fn dates() {
        assert_eq!(
            w(SayAs::Date, "2026-12-25"),
            names(&["friday", "december", "ord-25", "2", "thousand", "20", "6"])
        );
        assert_eq!(w(SayAs::Date, "20261225"), w(SayAs::Date, "2026-12-25"));
        assert!(words(SayAs::Date, "2026-02-30").is_none());
        assert!(words(SayAs::Date, "20269999").is_none());
    }

    #[test]
    fn times() {
        assert_eq!(w(SayAs::Time, "14:30"), names(&["2", "30", "pm"]));
        assert_eq!(w(SayAs::Time, "0905"), names(&["9", "0", "5", "am"]));
        assert_eq!(w(SayAs::Time, "00:00"), names(&["12", "oclock", "am"]));
        assert_eq!(w(SayAs::Time, "12:15"), names(&["12", "15", "pm"]));
        assert_eq!(w(SayAs::Time, "23:59"), names(&["11", "50", "9", "pm"]));
        assert!(words(SayAs::Time, "24:00").is_none());
        assert!(words(SayAs::Time, "7").is_none());
        assert!(words(SayAs::Time, "1é2").is_none());
        assert!(words(SayAs::Date, "2026-1é-1").is_none());
        assert!(words(SayAs::Money, "1.é").is_none());
    }

    /// Random short strings never panic any of the value parsers.
    #[test]
    fn parsers_never_panic() {
        let alphabet: Vec<char> = "0123456789:-.#*+_[]!XZNé ".chars().collect();
        let mut seed = 7u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            for i in 0..(seed >> 60) {
                let k = (seed >> (i * 5 % 55)) as usize % alphabet.len();
                s.push(alphabet[k]);
            }
            for how in [
                SayAs::Digits,
                SayAs::Number,
                SayAs::Money,
                SayAs::Date,
                SayAs::Time,
            ] {
                let _ = words(how, &s);
            }
            let _ = crate::flow::pattern::Pattern::parse(&s).map(|p| p.matches(&s));
            let _ = crate::flow::compile::parse_duration(&s);
            let _ = crate::flow::calendar::parse_range(&s);
            let _ = crate::flow::calendar::parse_days(&s);
        }
    }

    #[test]
    fn every_word_is_a_known_fragment() {
        let all = all_fragments();
        for (how, s) in [
            (SayAs::Digits, "0123456789*#"),
            (SayAs::Number, "-987654321"),
            (SayAs::Money, "999999.99"),
            (SayAs::Date, "2026-01-31"),
            (SayAs::Time, "23:45"),
        ] {
            for word in w(how, s) {
                assert!(all.contains(&word), "{word}");
                if how != SayAs::Digits {
                    assert!(fragments(how).contains(&word), "{word} for {how:?}");
                }
            }
        }
    }
}
