//! `phonetree.yaml` → a checked `Config`. Pure: text in, value or located errors out.

use crate::acd::AcdConfig;
use crate::acd::config::{RawAgent, RawQueue};
use crate::call::CallSettings;
use crate::directory::DirectoryConfig;
use crate::media::types::Codec;
use serde::Deserialize;
use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{path}: {message}")]
    Read { path: String, message: String },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

/// The engine's configuration, checked.
#[derive(Clone, Debug)]
pub struct Config {
    /// UDP and TCP on the same address (RFC 3261 §18: a UAS listens on both).
    pub sip_listen: SocketAddr,
    /// Address put in Contact/Via when the listen address is a wildcard.
    pub sip_advertise: Option<IpAddr>,
    pub http_listen: SocketAddr,
    /// Bearer tokens of the admin API (`http.tokens`), plus `PHONETREE_ADMIN_TOKEN` when the
    /// command line adds it (`add_admin_token`).
    pub http_tokens: Vec<HttpToken>,
    /// Inclusive range; RTP uses the even ports of it (RFC 3550 §11).
    pub rtp_ports: (u16, u16),
    /// IP the RTP sockets bind to.
    pub rtp_bind: IpAddr,
    /// IP written in SDP `c=`; defaults to the SIP advertise/listen address.
    pub media_advertise: Option<IpAddr>,
    /// Media shard threads; 0 = one per core.
    pub media_threads: usize,
    pub flows_dir: PathBuf,
    pub prompts_dir: PathBuf,
    pub data_dir: PathBuf,
    pub max_calls: usize,
    pub call: CallSettings,
    /// Write each call record as a JSON line to `data_dir/call-records.jsonl`.
    pub call_records_file: bool,
    /// The customer directory (SQLite by default).
    pub directory: DirectoryConfig,
    /// Queues and agents (the `queues:` and `agents:` sections).
    pub acd: AcdConfig,
    /// Digest algorithms agents' phones are challenged with, most preferred first.
    pub sip_auth_algorithms: Vec<crate::sip::digest::Algorithm>,
    /// The file this configuration was read from (`Config::load`), re-read on reload for
    /// its queues and agents; `None` for a configuration built in code.
    pub source: Option<PathBuf>,
}

/// What an admin API token may do: `read` sees everything (caller numbers masked),
/// `admin` also acts (POST) and sees caller numbers in full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TokenRole {
    Read,
    Admin,
}

/// One admin API token: only its SHA-256 is kept, so the configuration file does not hold
/// a usable secret.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpToken {
    pub name: String,
    pub role: TokenRole,
    pub sha256: [u8; 32],
}

impl std::fmt::Debug for HttpToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Even the hash stays out of debug output (a weak token could be guessed from it).
        write!(f, "HttpToken({}, {:?})", self.name, self.role)
    }
}

impl Config {
    /// The configured queue names (flows are compiled against them).
    pub fn queue_names(&self) -> BTreeSet<String> {
        self.acd.queues.keys().cloned().collect()
    }

    /// The registrar's view of the agents: who may register, with which credential.
    pub fn registrar_config(&self) -> crate::sip::registrar::RegistrarConfig {
        use crate::acd::config::AgentSecret;
        use crate::sip::registrar::{Account, RegistrarConfig, Secret};
        RegistrarConfig {
            accounts: self
                .acd
                .agents
                .values()
                .map(|a| Account {
                    agent: a.id.clone(),
                    username: a.username.clone(),
                    secret: match &a.secret {
                        AgentSecret::Password(p) => Secret::Password(p.clone()),
                        AgentSecret::Ha1 { md5, sha256 } => Secret::Ha1 {
                            md5: md5.clone(),
                            sha256: sha256.clone(),
                        },
                    },
                })
                .collect(),
            algorithms: self.sip_auth_algorithms.clone(),
            ..RegistrarConfig::default()
        }
    }

    /// Agents still using the demo passwords of the shipped `phonetree.yaml`.
    pub fn demo_password_agents(&self) -> Vec<&str> {
        self.acd
            .agents
            .values()
            .filter(|a| {
                matches!(&a.secret, crate::acd::config::AgentSecret::Password(p)
                    if p.strip_prefix("demo").is_some_and(|rest| rest == a.username))
            })
            .map(|a| a.id.as_str())
            .collect()
    }

    /// Adds an admin token given in clear (`PHONETREE_ADMIN_TOKEN`); blank adds nothing.
    pub fn add_admin_token(&mut self, name: &str, token: &str) {
        let token = token.trim();
        if token.is_empty() {
            return;
        }
        use sha2::Digest;
        self.http_tokens.push(HttpToken {
            name: name.to_string(),
            role: TokenRole::Admin,
            sha256: sha2::Sha256::digest(token.as_bytes()).into(),
        });
    }

    /// Defaults for tests: everything on 127.0.0.1 with OS-chosen SIP/HTTP ports.
    pub fn for_tests(flows_dir: PathBuf, prompts_dir: PathBuf) -> Config {
        let mut c = Config::parse("", Path::new("<tests>")).expect("empty config is valid");
        c.sip_listen = "127.0.0.1:0".parse().expect("literal");
        c.http_listen = "127.0.0.1:0".parse().expect("literal");
        c.rtp_bind = "127.0.0.1".parse().expect("literal");
        c.flows_dir = flows_dir;
        c.prompts_dir = prompts_dir;
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        c.data_dir =
            std::env::temp_dir().join(format!("phonetree-test-{}-{n}", std::process::id()));
        c.directory.path = c.data_dir.join("phonetree.db");
        c.directory.import =
            Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/customers.csv"));
        c.call_records_file = false;
        c.media_threads = 1;
        c
    }

    /// Reads and checks a config file; a missing default file means all defaults.
    pub fn load(path: &Path, must_exist: bool) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !must_exist => String::new(),
            Err(e) => {
                return Err(ConfigError::Read {
                    path: path.display().to_string(),
                    message: e.to_string(),
                });
            }
        };
        let mut config = Config::parse(&text, path)?;
        config.source = Some(path.to_path_buf());
        // Relative directories are relative to the config file's folder.
        let base = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        for dir in [
            &mut config.flows_dir,
            &mut config.prompts_dir,
            &mut config.data_dir,
        ] {
            if dir.is_relative() && base != Path::new(".") {
                *dir = base.join(&*dir);
            }
        }
        if config
            .directory
            .import
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            config.directory.import = None;
        }
        Ok(config)
    }

    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            path: path.display().to_string(),
            message,
        };
        let raw: RawConfig = if text.trim().is_empty() {
            RawConfig::default()
        } else {
            serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?
        };
        let mut errors = Vec::new();
        let mut addr = |what: &str, s: &str| -> SocketAddr {
            s.parse().unwrap_or_else(|_| {
                errors.push(format!("{what}: `{s}` is not an address like 0.0.0.0:5060"));
                SocketAddr::from(([0, 0, 0, 0], 0))
            })
        };
        let sip_listen = addr("sip.listen", &raw.sip.listen);
        let http_listen = addr("http.listen", &raw.http.listen);
        let mut http_tokens = Vec::new();
        for (i, t) in raw.http.tokens.iter().enumerate() {
            let mut sha256 = [0u8; 32];
            let hex = t.sha256.trim();
            let ok = hex.len() == 64
                && hex.is_ascii()
                && (0..32).all(|k| {
                    u8::from_str_radix(&hex[2 * k..2 * k + 2], 16)
                        .map(|b| sha256[k] = b)
                        .is_ok()
                });
            if !ok {
                errors.push(format!(
                    "http.tokens[{i}].sha256: must be 64 hex digits (sha256sum of the token)"
                ));
            }
            if t.name.trim().is_empty() {
                errors.push(format!("http.tokens[{i}].name: must not be empty"));
            }
            http_tokens.push(HttpToken {
                name: t.name.clone(),
                role: t.role,
                sha256,
            });
        }
        let mut ip = |what: &str, s: &Option<String>| -> Option<IpAddr> {
            s.as_ref().and_then(|s| {
                s.parse()
                    .map_err(|_| errors.push(format!("{what}: `{s}` is not an IP address")))
                    .ok()
            })
        };
        let sip_advertise = ip("sip.advertise", &raw.sip.advertise);
        let media_advertise = ip("media.advertise", &raw.media.advertise);
        let rtp_bind =
            ip("media.bind", &Some(raw.media.bind.clone())).unwrap_or(IpAddr::from([0, 0, 0, 0]));
        let rtp_ports = match parse_port_range(&raw.media.rtp_ports) {
            Ok(r) => r,
            Err(e) => {
                errors.push(format!("media.rtp_ports: {e}"));
                (10000, 20000)
            }
        };
        // `positive`: zero would hang up every call at once (or never notice a dead caller,
        // if read as "off"), so it is refused rather than guessed at.
        let mut dur = |what: &str, s: &str, positive: bool| -> Duration {
            match parse_duration(s) {
                Ok(d) if positive && d.is_zero() => {
                    errors.push(format!("{what}: must be above 0 (`{s}`)"));
                    d
                }
                Ok(d) => d,
                Err(e) => {
                    errors.push(format!("{what}: {e}"));
                    Duration::ZERO
                }
            }
        };
        let rtp_timeout = dur("media.rtp_timeout", &raw.media.rtp_timeout, true);
        let latch_window = dur("media.latch_window", &raw.media.latch_window, false);
        let answer_delay = dur("sip.answer_delay", &raw.sip.answer_delay, false);
        let max_call_duration = dur(
            "limits.max_call_duration",
            &raw.limits.max_call_duration,
            true,
        );
        let inband_dtmf = match raw.media.inband_dtmf.as_str() {
            "auto" => crate::media::session::InbandDtmf::Auto,
            "always" => crate::media::session::InbandDtmf::Always,
            "never" => crate::media::session::InbandDtmf::Never,
            other => {
                errors.push(format!(
                    "media.inband_dtmf: `{other}` is not auto, always or never"
                ));
                crate::media::session::InbandDtmf::Auto
            }
        };
        let mut codecs = Vec::new();
        for c in &raw.media.codecs {
            match c.to_ascii_uppercase().as_str() {
                "PCMU" => codecs.push(Codec::Pcmu),
                "PCMA" => codecs.push(Codec::Pcma),
                other => errors.push(format!(
                    "media.codecs: `{other}` is not supported (PCMU, PCMA)"
                )),
            }
        }
        if codecs.is_empty() && errors.is_empty() {
            errors.push("media.codecs: at least one codec is needed".into());
        }
        if !(96..=127).contains(&raw.media.telephone_event_pt) {
            errors.push("media.telephone_event_pt: must be a dynamic payload type 96-127".into());
        }
        // The SIP port inside the RTP range: a call's RTP socket could take the SIP port
        // (or fail to bind), and RTP sent to it would be read as SIP.
        let sip_port = sip_listen.port();
        if sip_port != 0 && (rtp_ports.0..=rtp_ports.1).contains(&sip_port) {
            errors.push(format!(
                "media.rtp_ports: {}-{} contains the SIP port {sip_port} (sip.listen)",
                rtp_ports.0, rtp_ports.1
            ));
        }
        if raw.limits.max_calls == 0 {
            errors.push("limits.max_calls: must be at least 1".into());
        }
        errors.extend(
            crate::directory::config_problems(&raw.directory)
                .into_iter()
                .map(|e| format!("directory.{e}")),
        );
        let mut sip_auth_algorithms = Vec::new();
        for a in &raw.sip.auth_algorithms {
            match crate::sip::digest::Algorithm::parse(a) {
                Some(alg) if !sip_auth_algorithms.contains(&alg) => sip_auth_algorithms.push(alg),
                Some(_) => errors.push(format!("sip.auth_algorithms: `{a}` is listed twice")),
                None => errors.push(format!(
                    "sip.auth_algorithms: `{a}` is not supported (MD5, SHA-256)"
                )),
            }
        }
        if sip_auth_algorithms.is_empty() && raw.sip.auth_algorithms.is_empty() {
            errors.push("sip.auth_algorithms: at least one algorithm is needed".into());
        }
        let acd = crate::acd::config::compile(&raw.queues, &raw.agents).unwrap_or_else(|es| {
            errors.extend(es);
            AcdConfig::default()
        });
        if !errors.is_empty() {
            return Err(invalid(errors.join("; ")));
        }
        Ok(Config {
            sip_listen,
            sip_advertise,
            http_listen,
            http_tokens,
            rtp_ports,
            rtp_bind,
            media_advertise,
            media_threads: raw.media.threads,
            flows_dir: PathBuf::from(raw.flows_dir),
            prompts_dir: PathBuf::from(raw.prompts_dir),
            data_dir: PathBuf::from(raw.data_dir),
            max_calls: raw.limits.max_calls,
            call: CallSettings {
                codecs,
                rtp_timeout,
                answer_delay,
                symmetric_rtp: raw.media.symmetric_rtp,
                telephone_event_pt: raw.media.telephone_event_pt,
                max_call_duration,
                inband_dtmf,
                trust_sdp_address: raw.media.trust_sdp_address,
                latch_window,
                own_ports: Vec::new(),
            },
            call_records_file: raw.call_records_file,
            directory: raw.directory,
            acd,
            sip_auth_algorithms,
            source: None,
        })
    }

    /// Number of media shards to run.
    pub fn media_shards(&self) -> usize {
        if self.media_threads > 0 {
            self.media_threads
        } else {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        }
    }
}

/// `"10000-20000"` → (10000, 20000).
pub fn parse_port_range(s: &str) -> Result<(u16, u16), String> {
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}` is not a range like 10000-20000"))?;
    let lo: u16 = lo
        .trim()
        .parse()
        .map_err(|_| format!("`{lo}` is not a port"))?;
    let hi: u16 = hi
        .trim()
        .parse()
        .map_err(|_| format!("`{hi}` is not a port"))?;
    if lo == 0 || hi <= lo {
        return Err(format!("`{s}`: need 0 < low < high"));
    }
    Ok((lo, hi))
}

/// `"250ms"`, `"5s"`, `"2m"`, `"1h"`, `"1.5s"`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration like 5s or 250ms"))?;
    let secs = match unit.trim() {
        "ms" => n / 1000.0,
        "s" | "" if !unit.is_empty() => n,
        "m" | "min" => n * 60.0,
        "h" => n * 3600.0,
        _ => return Err(format!("`{s}` has no unit (ms, s, m, h)")),
    };
    if !secs.is_finite() || secs < 0.0 || secs > 86_400.0 * 7.0 {
        return Err(format!("`{s}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawConfig {
    sip: RawSip,
    http: RawHttp,
    media: RawMedia,
    flows_dir: String,
    prompts_dir: String,
    data_dir: String,
    limits: RawLimits,
    call_records_file: bool,
    directory: DirectoryConfig,
    queues: BTreeMap<String, RawQueue>,
    agents: BTreeMap<String, RawAgent>,
}

impl Default for RawConfig {
    fn default() -> Self {
        RawConfig {
            sip: RawSip::default(),
            http: RawHttp::default(),
            media: RawMedia::default(),
            flows_dir: "flows".into(),
            prompts_dir: "prompts".into(),
            data_dir: "data".into(),
            limits: RawLimits::default(),
            call_records_file: true,
            directory: DirectoryConfig::default(),
            queues: BTreeMap::new(),
            agents: BTreeMap::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawSip {
    listen: String,
    advertise: Option<String>,
    answer_delay: String,
    auth_algorithms: Vec<String>,
}

impl Default for RawSip {
    fn default() -> Self {
        RawSip {
            listen: "0.0.0.0:5060".into(),
            advertise: None,
            answer_delay: "0ms".into(),
            auth_algorithms: vec!["MD5".into()],
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawHttp {
    listen: String,
    tokens: Vec<RawToken>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawToken {
    name: String,
    role: TokenRole,
    sha256: String,
}

impl Default for RawHttp {
    fn default() -> Self {
        RawHttp {
            listen: "127.0.0.1:8080".into(),
            tokens: Vec::new(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawMedia {
    rtp_ports: String,
    bind: String,
    advertise: Option<String>,
    rtp_timeout: String,
    threads: usize,
    codecs: Vec<String>,
    telephone_event_pt: u8,
    symmetric_rtp: bool,
    inband_dtmf: String,
    /// Send to the SDP address before RTP came from it, whatever its IP.
    trust_sdp_address: bool,
    /// How long after the answer RTP from the SIP source's IP may latch (NAT).
    latch_window: String,
}

impl Default for RawMedia {
    fn default() -> Self {
        RawMedia {
            rtp_ports: "10000-30000".into(),
            bind: "0.0.0.0".into(),
            advertise: None,
            rtp_timeout: "30s".into(),
            threads: 0,
            codecs: vec!["PCMU".into(), "PCMA".into()],
            telephone_event_pt: 101,
            symmetric_rtp: true,
            inband_dtmf: "auto".into(),
            trust_sdp_address: false,
            latch_window: "10s".into(),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawLimits {
    max_calls: usize,
    max_call_duration: String,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_calls: 10_000,
            max_call_duration: "4h".into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        let c = Config::parse("", Path::new("x.yaml")).unwrap();
        assert_eq!(c.sip_listen.port(), 5060);
        assert_eq!(c.rtp_ports, (10000, 30000));
        assert_eq!(c.call.rtp_timeout, Duration::from_secs(30));
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let text = "sip:\n  listen: nowhere\nmedia:\n  rtp_ports: 5-1\n  rtp_timeout: 5x\n";
        let err = Config::parse(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("sip.listen"), "{err}");
        assert!(err.contains("media.rtp_ports"), "{err}");
        assert!(err.contains("media.rtp_timeout"), "{err}");
    }

    #[test]
    fn directory_mistakes_are_reported_with_the_rest() {
        let text = "limits:\n  max_calls: 0\ndirectory:\n  caller_window: often\n  max_pin_attempts_per_caller: 5\n";
        let err = Config::parse(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_calls"), "{err}");
        assert!(err.contains("directory.caller_window"), "{err}");
    }

    #[test]
    fn unknown_key_is_refused_with_location() {
        let err = Config::parse("sip:\n  lisen: 1.2.3.4:5\n", Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("lisen"), "{err}");
    }

    #[test]
    fn queues_and_agents_are_checked_with_the_rest() {
        let text = "limits:\n  max_calls: 0\nqueues:\n  support:\n    wrap_up: soon\nagents:\n  1001:\n    password: x\n    queues: {sales: 0}\n";
        let err = Config::parse(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("limits.max_calls"), "{err}");
        assert!(err.contains("queues.support.wrap_up"), "{err}");
        assert!(err.contains("agents.1001.queues: `sales`"), "{err}");
    }

    #[test]
    fn shipped_config_has_the_support_queue_and_two_demo_agents() {
        let text = include_str!("../phonetree.yaml");
        let c = Config::parse(text, Path::new("phonetree.yaml")).unwrap();
        assert_eq!(
            c.queue_names().into_iter().collect::<Vec<_>>(),
            vec!["support".to_string()]
        );
        let q = &c.acd.queues["support"];
        assert_eq!(q.announce_every, Duration::from_secs(30));
        assert_eq!(q.max_wait, Duration::from_secs(600));
        assert_eq!(c.acd.agents["1002"].queues["support"], 0);
        assert!(c.acd.agents["1001"].auto_login);
        assert_eq!(c.demo_password_agents(), vec!["1001", "1002"]);
        let reg = c.registrar_config();
        assert_eq!(reg.accounts.len(), 2);
        assert_eq!(reg.accounts[0].username, "1001");
    }

    #[test]
    fn http_tokens_are_read_as_hashes_with_roles() {
        // sha256("abc"), FIPS 180-2 appendix B.1.
        let text = "http:\n  listen: 0.0.0.0:8080\n  tokens:\n    - name: ops\n      role: admin\n      sha256: BA7816BF8F01CFEA414140DE5DAE2223B00361A396177A9CB410FF61F20015AD\n    - name: wall\n      role: read\n      sha256: ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\n";
        let c = Config::parse(text, Path::new("p.yaml")).unwrap();
        assert_eq!(c.http_tokens.len(), 2);
        assert_eq!(c.http_tokens[0].role, TokenRole::Admin);
        assert_eq!(c.http_tokens[1].role, TokenRole::Read);
        assert_eq!(c.http_tokens[0].sha256[0], 0xba);
        assert_eq!(c.http_tokens[0].sha256, c.http_tokens[1].sha256);
        assert_eq!(c.http_listen.port(), 8080);
    }

    #[test]
    fn bad_token_hash_and_role_are_refused() {
        let text = "http:\n  tokens:\n    - name: x\n      role: admin\n      sha256: 1234\n";
        let err = Config::parse(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("http.tokens[0].sha256"), "{err}");
        let text = "http:\n  tokens:\n    - name: x\n      role: root\n      sha256: 1234\n";
        assert!(Config::parse(text, Path::new("p.yaml")).is_err());
    }

    #[test]
    fn env_admin_token_is_stored_hashed_and_blank_is_ignored() {
        let mut c = Config::parse("", Path::new("p.yaml")).unwrap();
        c.add_admin_token("env", "  ");
        assert!(c.http_tokens.is_empty());
        c.add_admin_token("env", "abc\n");
        assert_eq!(c.http_tokens.len(), 1);
        assert_eq!(c.http_tokens[0].sha256[..2], [0xba, 0x78]);
        assert!(!format!("{:?}", c.http_tokens[0]).contains("ba78"));
    }

    #[test]
    fn zero_durations_and_rtp_over_the_sip_port_are_refused_all_at_once() {
        let text = "sip:\n  listen: 0.0.0.0:10002\nmedia:\n  rtp_ports: 10000-20000\n  rtp_timeout: 0s\nlimits:\n  max_call_duration: 0s\ndirectory:\n  lockout: 0s\n";
        let err = Config::parse(text, Path::new("p.yaml"))
            .unwrap_err()
            .to_string();
        for what in [
            "media.rtp_timeout: must be above 0",
            "limits.max_call_duration: must be above 0",
            "directory.lockout must be above 0",
            "contains the SIP port 10002",
        ] {
            assert!(err.contains(what), "{what} missing from: {err}");
        }
        // The demo's own values stay valid.
        let demo =
            std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("phonetree.yaml"))
                .unwrap();
        Config::parse(&demo, Path::new("phonetree.yaml")).unwrap();
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("1.5s").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_duration("2m").unwrap(), Duration::from_secs(120));
        assert!(parse_duration("5").is_err());
        assert!(parse_duration("-1s").is_err());
    }
}
