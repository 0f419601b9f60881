//! The flow files as written: every value keeps its YAML location
//! ([`Spanned`]) so the compiler can point at it.
//!
//! Scalars are read as strings and parsed by the compiler, so a bad number or
//! duration is a located error that does not stop the rest of the file from
//! being checked. Mappings are read leniently: unknown and repeated keys are
//! recorded (with their location) instead of aborting the parse, and maps whose
//! keys are user names (nodes, flows, DTMF options) keep every entry in order,
//! duplicates included, so the compiler reports them all.

use std::fmt;
use std::marker::PhantomData;

use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_saphyr::{Location, Spanned};

/// A string scalar with its location.
pub type Str = Spanned<String>;

/// A key that is not a field of the mapping it appears in, or appears twice.
#[derive(Debug, Clone)]
pub enum KeyIssue {
    Unknown {
        key: String,
        at: Location,
        expected: &'static [&'static str],
    },
    Duplicate {
        key: String,
        at: Location,
    },
}

/// Defines a struct read from a YAML mapping with a fixed set of keys. Every
/// field is `Option<Spanned<T>>`; unknown and duplicate keys go to `issues`.
macro_rules! lenient_struct {
    ($(#[$m:meta])* pub struct $name:ident { $( $(#[$fm:meta])* $field:ident = $key:literal : $ty:ty ),* $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Default)]
        pub struct $name {
            $( $(#[$fm])* pub $field: Option<Spanned<$ty>>, )*
            /// Unknown or repeated keys, reported by the compiler.
            pub issues: Vec<KeyIssue>,
        }

        impl $name {
            pub const FIELDS: &'static [&'static str] = &[$($key),*];
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl<'de> Visitor<'de> for V {
                    type Value = $name;
                    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                        write!(f, "a mapping with keys {}", $name::FIELDS.join(", "))
                    }
                    fn visit_unit<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                    fn visit_none<E: de::Error>(self) -> Result<$name, E> {
                        Ok($name::default())
                    }
                    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<$name, A::Error> {
                        let mut out = $name::default();
                        while let Some(key) = map.next_key::<Spanned<String>>()? {
                            match key.value.as_str() {
                                $( $key => {
                                    let v = map.next_value::<Spanned<$ty>>()?;
                                    if out.$field.is_some() {
                                        out.issues.push(KeyIssue::Duplicate { key: key.value, at: key.referenced });
                                    } else {
                                        out.$field = Some(v);
                                    }
                                } )*
                                _ => {
                                    map.next_value::<IgnoredAny>()?;
                                    out.issues.push(KeyIssue::Unknown {
                                        key: key.value,
                                        at: key.referenced,
                                        expected: $name::FIELDS,
                                    });
                                }
                            }
                        }
                        Ok(out)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}

/// A mapping from user-chosen names to values, in file order, duplicates kept.
/// A null value (`options:` with nothing after it) reads as empty.
#[derive(Debug)]
pub struct Pairs<V>(pub Vec<(Str, Spanned<V>)>);

impl<V> Default for Pairs<V> {
    fn default() -> Self {
        Pairs(Vec::new())
    }
}

impl<'de, V: Deserialize<'de>> Deserialize<'de> for Pairs<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct PV<V>(PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for PV<V> {
            type Value = Pairs<V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a mapping")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Pairs<V>, E> {
                Ok(Pairs::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Pairs<V>, E> {
                Ok(Pairs::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pairs<V>, A::Error> {
                let mut out = Vec::new();
                while let Some(kv) = map.next_entry::<Str, Spanned<V>>()? {
                    out.push(kv);
                }
                Ok(Pairs(out))
            }
        }
        d.deserialize_any(PV(PhantomData))
    }
}

/// A sequence (null reads as empty).
#[derive(Debug)]
pub struct Seq<T>(pub Vec<Spanned<T>>);

impl<T> Default for Seq<T> {
    fn default() -> Self {
        Seq(Vec::new())
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Seq<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct SV<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for SV<T> {
            type Value = Seq<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a list")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Seq<T>, E> {
                Ok(Seq::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Seq<T>, E> {
                Ok(Seq::default())
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Seq<T>, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Spanned<T>>()? {
                    out.push(v);
                }
                Ok(Seq(out))
            }
        }
        d.deserialize_any(SV(PhantomData))
    }
}

/// A list of names (`[welcome, main-menu]`) or one bare name (`welcome`).
/// A single name has no location of its own: the compiler uses the field's.
#[derive(Debug, Default)]
pub struct Names(pub Vec<(String, Option<Location>)>);

impl<'de> Deserialize<'de> for Names {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct NV;
        impl<'de> Visitor<'de> for NV {
            type Value = Names;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a name or a list of names")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Names, E> {
                Ok(Names::default())
            }
            fn visit_none<E: de::Error>(self) -> Result<Names, E> {
                Ok(Names::default())
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Names, E> {
                Ok(Names(vec![(v.to_string(), None)]))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Names, E> {
                Ok(Names(vec![(v.to_string(), None)]))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Names, E> {
                Ok(Names(vec![(v.to_string(), None)]))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Names, A::Error> {
                let mut out = Vec::new();
                while let Some(v) = seq.next_element::<Str>()? {
                    out.push((v.value, Some(v.referenced)));
                }
                Ok(Names(out))
            }
        }
        d.deserialize_any(NV)
    }
}

/// A value that only marks presence: `hangup: {}`, `hangup:`, `hangup: true`.
#[derive(Debug, Default, Clone, Copy)]
pub struct Flag;

impl<'de> Deserialize<'de> for Flag {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct FV;
        impl<'de> Visitor<'de> for FV {
            type Value = Flag;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("`{}`, `true` or nothing")
            }
            fn visit_unit<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag)
            }
            fn visit_none<E: de::Error>(self) -> Result<Flag, E> {
                Ok(Flag)
            }
            fn visit_bool<E: de::Error>(self, v: bool) -> Result<Flag, E> {
                if v {
                    Ok(Flag)
                } else {
                    Err(E::custom(
                        "`false` is not allowed here; remove the key instead",
                    ))
                }
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Flag, A::Error> {
                if let Some(k) = map.next_key::<String>()? {
                    return Err(de::Error::custom(format!(
                        "unexpected key `{k}`: this node takes no settings, write `{{}}`"
                    )));
                }
                Ok(Flag)
            }
        }
        d.deserialize_any(FV)
    }
}

lenient_struct! {
    /// One `*.yaml` file.
    pub struct FileDef {
        routes = "routes": Seq<RouteDef>,
        flows = "flows": Pairs<FlowDef>,
        calendars = "calendars": Pairs<CalendarDef>,
        lint = "lint": LintDef,
    }
}

lenient_struct! {
    /// `lint: { max_menu_options: 5, max_menu_depth: 4 }`: when `check` warns about menus.
    pub struct LintDef {
        max_menu_options = "max_menu_options": String,
        max_menu_depth = "max_menu_depth": String,
    }
}

lenient_struct! {
    /// `- number: "ivr"` / `- pattern: "_1555XXXX"` / `- number: default`, with `flow:`.
    pub struct RouteDef {
        number = "number": String,
        pattern = "pattern": String,
        flow = "flow": String,
    }
}

lenient_struct! {
    pub struct FlowDef {
        description = "description": String,
        language = "language": String,
        start = "start": String,
        nodes = "nodes": Pairs<NodeDef>,
    }
}

lenient_struct! {
    /// A node: exactly one kind key (`play`, `menu`, ...) plus modifiers.
    pub struct NodeDef {
        // kinds
        play = "play": Names,
        menu = "menu": MenuDef,
        goto = "goto": String,
        hangup = "hangup": Flag,
        collect = "collect": CollectDef,
        set = "set": Pairs<String>,
        branch = "branch": BranchDef,
        say = "say": SayDef,
        subflow = "subflow": String,
        ret = "return": Flag,
        transfer = "transfer": TransferDef,
        hours = "hours": HoursDef,
        language = "language": String,
        lookup = "lookup": LookupDef,
        verify_pin = "verify_pin": VerifyPinDef,
        update = "update": UpdateDef,
        queue = "queue": QueueDef,
        callback = "callback": CallbackDef,
        survey = "survey": SurveyDef,
        // modifiers
        next = "next": String,
        barge_in = "barge_in": String,
        flush = "flush": String,
        description = "description": String,
    }
}

impl NodeDef {
    /// The kind keys present, with their locations, in schema order.
    pub fn kinds(&self) -> Vec<(&'static str, Location)> {
        let mut out = Vec::new();
        macro_rules! k {
            ($($f:ident = $n:literal),*) => {$(
                if let Some(v) = &self.$f { out.push(($n, v.referenced)); }
            )*};
        }
        k!(
            play = "play",
            menu = "menu",
            goto = "goto",
            hangup = "hangup",
            collect = "collect",
            set = "set",
            branch = "branch",
            say = "say",
            subflow = "subflow",
            ret = "return",
            transfer = "transfer",
            hours = "hours",
            language = "language",
            lookup = "lookup",
            verify_pin = "verify_pin",
            update = "update",
            queue = "queue",
            callback = "callback",
            survey = "survey"
        );
        out
    }
}

/// Names of the node kinds, for messages.
pub const NODE_KINDS: &[&str] = &[
    "play",
    "menu",
    "goto",
    "hangup",
    "collect",
    "set",
    "branch",
    "say",
    "subflow",
    "return",
    "transfer",
    "hours",
    "language",
    "lookup",
    "verify_pin",
    "update",
    "queue",
    "callback",
    "survey",
];

lenient_struct! {
    pub struct MenuDef {
        prompt = "prompt": Names,
        short_prompt = "short_prompt": Names,
        timeout = "timeout": String,
        inter_digit_timeout = "inter_digit_timeout": String,
        retries = "retries": String,
        invalid = "invalid": Names,
        no_input = "no_input": Names,
        options = "options": Pairs<String>,
        max_failures = "max_failures": String,
        max_digits = "max_digits": String,
        repeat = "repeat": String,
        barge_in = "barge_in": String,
    }
}

lenient_struct! {
    pub struct CollectDef {
        prompt = "prompt": Names,
        into = "into": String,
        digits = "digits": String,
        min = "min": String,
        max = "max": String,
        terminator = "terminator": String,
        timeout = "timeout": String,
        inter_digit_timeout = "inter_digit_timeout": String,
        total_timeout = "total_timeout": String,
        pattern = "pattern": String,
        retries = "retries": String,
        invalid = "invalid": Names,
        no_input = "no_input": Names,
        max_failures = "max_failures": String,
        barge_in = "barge_in": String,
    }
}

lenient_struct! {
    /// `survey: { name: csat, prompt: [survey-rate], scale: 5, thanks: [survey-thanks] }`,
    /// with `next:` beside it as for `collect`.
    pub struct SurveyDef {
        name = "name": String,
        prompt = "prompt": Names,
        scale = "scale": String,
        timeout = "timeout": String,
        retries = "retries": String,
        invalid = "invalid": Names,
        no_input = "no_input": Names,
        thanks = "thanks": Names,
        barge_in = "barge_in": String,
    }
}

lenient_struct! {
    pub struct BranchDef {
        cases = "cases": Seq<CaseDef>,
        otherwise = "else": String,
    }
}

lenient_struct! {
    /// `{ var: tier, equals: gold, goto: vip }`: one test, one target.
    pub struct CaseDef {
        var = "var": String,
        equals = "equals": String,
        not_equals = "not_equals": String,
        one_of = "in": Seq<String>,
        lt = "lt": String,
        le = "le": String,
        gt = "gt": String,
        ge = "ge": String,
        pattern = "pattern": String,
        is_set = "is_set": String,
        goto = "goto": String,
    }
}

lenient_struct! {
    /// `say: { digits: "$account" }`, `{ number: .. }`, `{ money: .. }`, `{ date: .. }`, `{ time: .. }`.
    pub struct SayDef {
        digits = "digits": String,
        number = "number": String,
        money = "money": String,
        date = "date": String,
        time = "time": String,
        currency = "currency": String,
    }
}

lenient_struct! {
    /// `lookup: { id: $customer_id, on: { found: .., not_found: .., error: .., timeout: .. } }`
    /// or `lookup: { phone: $caller, .. }`.
    pub struct LookupDef {
        id = "id": String,
        phone = "phone": String,
        timeout = "timeout": String,
        filler = "filler": Names,
        filler_after = "filler_after": String,
        on = "on": Pairs<String>,
    }
}

lenient_struct! {
    /// `verify_pin: { pin: $pin, customer: $customer.id, on: { ok: .., wrong: .., locked: .., error: .., timeout: .. } }`.
    pub struct VerifyPinDef {
        customer = "customer": String,
        pin = "pin": String,
        timeout = "timeout": String,
        filler = "filler": Names,
        filler_after = "filler_after": String,
        on = "on": Pairs<String>,
    }
}

lenient_struct! {
    /// `update: { appointment: $appointment.id, status: confirmed, on: { ok: .., not_found: .., error: .., timeout: .. } }`.
    pub struct UpdateDef {
        customer = "customer": String,
        appointment = "appointment": String,
        status = "status": String,
        timeout = "timeout": String,
        filler = "filler": Names,
        filler_after = "filler_after": String,
        on = "on": Pairs<String>,
    }
}

/// `transfer: "sip:sales@pbx.example.com"`, or with a branch for a failed
/// transfer: `transfer: { to: "sip:$ext@pbx.example.com", on: { failed: sorry } }`.
#[derive(Debug)]
pub enum TransferDef {
    /// The short form: only the target.
    Uri(String),
    Full(TransferMap),
}

lenient_struct! {
    /// The long form of `transfer`.
    pub struct TransferMap {
        to = "to": String,
        on = "on": Pairs<String>,
    }
}

impl<'de> Deserialize<'de> for TransferDef {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct TV;
        impl<'de> Visitor<'de> for TV {
            type Value = TransferDef;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a SIP or tel URI, or a mapping with `to` and `on`")
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<TransferDef, E> {
                Ok(TransferDef::Uri(v.to_string()))
            }
            fn visit_unit<E: de::Error>(self) -> Result<TransferDef, E> {
                Ok(TransferDef::Uri(String::new()))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<TransferDef, A::Error> {
                TransferMap::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(TransferDef::Full)
            }
        }
        d.deserialize_any(TV)
    }
}

lenient_struct! {
    /// `queue: { name: support, priority: $p, music: [hold-music], announce: {..}, leave: {..}, on: {..} }`.
    pub struct QueueDef {
        name = "name": String,
        priority = "priority": String,
        music = "music": Names,
        announce = "announce": AnnounceDef,
        leave = "leave": Pairs<String>,
        on = "on": Pairs<String>,
    }
}

lenient_struct! {
    /// `announce: { position: true, wait: true, prompts: [queue-leave-hint] }`.
    pub struct AnnounceDef {
        position = "position": String,
        wait = "wait": String,
        prompts = "prompts": Names,
    }
}

lenient_struct! {
    /// `callback: { queue: support, number: $caller, on: { registered: .., duplicate: .., failed: .. } }`.
    pub struct CallbackDef {
        queue = "queue": String,
        number = "number": String,
        on = "on": Pairs<String>,
    }
}

lenient_struct! {
    pub struct HoursDef {
        calendar = "calendar": String,
        open = "open": String,
        closed = "closed": String,
        holiday = "holiday": String,
    }
}

lenient_struct! {
    /// A named calendar (see `docs/flows.md`).
    pub struct CalendarDef {
        timezone = "timezone": String,
        weekly = "weekly": Pairs<Names>,
        holidays = "holidays": Seq<String>,
        overrides = "overrides": Pairs<Names>,
    }
}

/// Parser options: duplicate keys reach our visitors (which report them with
/// the location of the second occurrence) and empty values read as `""`.
pub fn parse_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        duplicate_keys: serde_saphyr::DuplicateKeyPolicy::PassThrough,
        null_as_string: true,
    }
}

/// Parses one file. A YAML error is returned with its location.
pub fn parse(text: &str) -> Result<FileDef, serde_saphyr::Error> {
    serde_saphyr::from_str_with_options::<FileDef>(text, parse_options())
}
