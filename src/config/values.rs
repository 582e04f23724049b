//! The typed values settings are read into, and how each is read and written.
//!
//! Every setting is deserialized straight into the type the server uses (a `Duration`, a
//! `SocketAddr`, a [`NodeId`], an [`HttpUrl`]), so a value that is wrong for its setting stops
//! start-up at once, and no module parses a setting again. A rule's error is only the reason
//! ("must be greater than 0"); figment adds which setting it is, and [`super::Settings`] words
//! the line operators read.
//!
//! Settings are also written (the defaults go into figment as a serialized `Settings`), each
//! the way operators write it: seconds as a number of seconds, an empty optional as `""`.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

use async_nats::ServerAddr;
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize, Serializer};
use tracing_subscriber::filter::Directive;
use url::Url;

/// A value that must never reach a log line or an error message.
#[derive(Clone, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Secrets given as a TOML list, or in the environment as one string separated by commas.
#[derive(Clone, Default, Serialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secrets(Vec<Secret>);

impl Secrets {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        Self(secrets.into_iter().collect())
    }
    pub fn iter(&self) -> impl Iterator<Item = &Secret> {
        self.0.iter()
    }
}

impl fmt::Debug for Secrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{} redacted]", self.0.len())
    }
}

impl<'de> Deserialize<'de> for Secrets {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let secrets = list::deserialize(d)?;
        Ok(Self(secrets.into_iter().map(Secret).collect()))
    }
}

/// A secret that is either unset (empty) or at least `MIN` characters long. The value is never
/// part of the error.
pub fn secret_of_at_least<'de, const MIN: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<Secret, D::Error> {
    let secret = Secret::deserialize(d)?;
    if !secret.is_empty() && secret.expose().len() < MIN {
        return Err(de::Error::custom(format!(
            "must be at least {MIN} characters"
        )));
    }
    Ok(secret)
}

/// Secrets of at least `MIN` characters each.
pub fn secrets_of_at_least<'de, const MIN: usize, D: Deserializer<'de>>(
    d: D,
) -> Result<Secrets, D::Error> {
    let secrets = Secrets::deserialize(d)?;
    if secrets.iter().any(|s| s.expose().len() < MIN) {
        return Err(de::Error::custom(format!(
            "each must be at least {MIN} characters"
        )));
    }
    Ok(secrets)
}

/// An optional secret: unset when empty.
pub mod optional_secret {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Option<Secret>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(v.as_ref().map_or("", Secret::expose))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Secret>, D::Error> {
        let secret = Secret::deserialize(d)?;
        Ok((!secret.is_empty()).then_some(secret))
    }
}

/// A node's name among the nodes of a cluster: 1 to 64 letters, digits, `_` and `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NodeId(String);

impl NodeId {
    /// A name for a node that was not given one: `node-` and 8 random letters and digits.
    pub fn drawn() -> Self {
        Self(format!("node-{}", fleety_actors::domain::random_token(8)))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for NodeId {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let ok = !raw.is_empty()
            && raw.len() <= 64
            && raw
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if ok {
            Ok(Self(raw.to_owned()))
        } else {
            Err("must be up to 64 letters, digits, '_' or '-'".into())
        }
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An `http` or `https` URL with a host: a server this one calls (the language model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HttpUrl(Url);

impl HttpUrl {
    pub fn as_url(&self) -> &Url {
        &self.0
    }

    /// This URL with `segments` added to its path (`…/v1` and `chat`, `completions` make
    /// `…/v1/chat/completions`), with or without a `/` at its end.
    pub fn join_path(&self, segments: &[&str]) -> Url {
        let mut url = self.0.clone();
        // An http(s) URL always has a host, so it can always be a base: the error is
        // impossible, and would leave the URL as it was.
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }
}

impl FromStr for HttpUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        Url::parse(raw)
            .ok()
            .filter(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
            .map(Self)
            .ok_or_else(|| "must be an http or https URL".into())
    }
}

impl fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0.as_str())
    }
}

/// A `tracing` filter (`info,warp=error`), read directive by directive as `tracing`'s own
/// `EnvFilter` reads it, so that a filter with a typo stops start-up instead of logging at a
/// level nobody asked for.
#[derive(Debug, Clone)]
pub struct LogFilter {
    /// As the operator wrote it, for writing it back.
    text: String,
    directives: Vec<Directive>,
}

impl LogFilter {
    pub fn directives(&self) -> &[Directive] {
        &self.directives
    }
}

impl FromStr for LogFilter {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let directives = raw
            .split(',')
            .filter(|d| !d.is_empty())
            .map(|d| {
                d.parse()
                    .map_err(|e| format!("{d:?} is not a log filter directive: {e}"))
            })
            .collect::<Result<_, _>>()?;
        Ok(Self {
            text: raw.to_owned(),
            directives,
        })
    }
}

impl fmt::Display for LogFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// NATS servers (`cluster_nats_url`): a list, or one string separated by commas.
pub mod nats_servers {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[ServerAddr], s: S) -> Result<S::Ok, S::Error> {
        let urls: Vec<&str> = v.iter().map(ServerAddr::as_url_str).collect();
        s.serialize_str(&urls.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<ServerAddr>, D::Error> {
        list::deserialize(d)?
            .iter()
            .map(|url| url.parse().map_err(de::Error::custom))
            .collect()
    }
}

/// A value read from its text with `FromStr` and written with `Display`. The environment has
/// no types, so figment hands `FLEETY_SCYLLA_REPLICATION=3` over as a number: a number is read
/// as the text it was written as.
pub mod text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        let raw = d.deserialize_any(Text)?;
        raw.parse().map_err(de::Error::custom)
    }

    /// Text, or a number as text.
    pub(super) struct Text;

    impl Visitor<'_> for Text {
        type Value = String;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a string")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
            Ok(v.to_owned())
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
            Ok(v.to_string())
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
            Ok(v.to_string())
        }
    }
}

/// Like [`text`], for a setting that may be left empty: `""` is `None`.
pub mod optional_text {
    use super::*;

    pub fn serialize<T: fmt::Display, S: Serializer>(
        v: &Option<T>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_str(""),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: fmt::Display,
        D: Deserializer<'de>,
    {
        match d.deserialize_any(text::Text)?.as_str() {
            "" => Ok(None),
            raw => raw.parse().map(Some).map_err(de::Error::custom),
        }
    }
}

/// An address to listen on that may be left empty (`metrics_listen`).
pub mod optional_address {
    use super::*;

    pub use super::optional_text::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SocketAddr>, D::Error> {
        let raw: Option<String> = optional_text::deserialize(d)?;
        raw.map(|raw| raw.parse())
            .transpose()
            .map_err(|_| de::Error::custom("must be an address such as 127.0.0.1:9090"))
    }
}

/// A list given as a TOML list, or as one string separated by commas (as the environment must);
/// blank entries are dropped.
pub mod list {
    use super::*;

    pub fn serialize<S: Serializer>(v: &[String], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&v.join(","))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            List(Vec<String>),
            Joined(String),
        }
        let items = match Given::deserialize(d)? {
            Given::List(list) => list,
            Given::Joined(joined) => joined.split(',').map(str::to_owned).collect(),
        };
        Ok(items
            .into_iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect())
    }
}

/// A number greater than 0.
pub fn positive<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: Deserialize<'de> + PartialEq + From<u8>,
    D: Deserializer<'de>,
{
    let n = T::deserialize(d)?;
    if n == T::from(0) {
        return Err(de::Error::custom("must be greater than 0"));
    }
    Ok(n)
}

/// A time written as a whole number of seconds (the settings named `…_secs`).
pub mod secs {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(v.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }

    /// Seconds, more than none.
    pub mod positive {
        use super::*;

        pub use super::serialize;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            super::super::positive::<u64, D>(d).map(Duration::from_secs)
        }
    }
}

/// A time written as a whole number of milliseconds (the settings named `…_ms`).
pub mod millis {
    use super::*;

    pub fn serialize<S: Serializer>(v: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(v.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }

    /// Milliseconds, more than none.
    pub mod positive {
        use super::*;

        pub use super::serialize;

        pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
            super::super::positive::<u64, D>(d).map(Duration::from_millis)
        }
    }
}

/// Boolean settings as people write them: `true`/`false`, `1`/`0`, `yes`/`no`, `on`/`off`, in
/// any case. The environment has no types, so figment hands over `1` as a number and `Yes` as
/// a string; both must mean what they say.
pub mod flag {
    use super::*;

    const EXPECTED: &str = "true/false, 1/0, yes/no or on/off";

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
        d.deserialize_any(Flag)
    }

    /// The word a flag is written as, if it is one.
    fn parse(word: &str) -> Option<bool> {
        const WORDS: [(&str, bool); 8] = [
            ("true", true),
            ("false", false),
            ("1", true),
            ("0", false),
            ("yes", true),
            ("no", false),
            ("on", true),
            ("off", false),
        ];
        let word = word.trim();
        WORDS
            .iter()
            .find(|(w, _)| w.eq_ignore_ascii_case(word))
            .map(|&(_, value)| value)
    }

    struct Flag;

    impl Visitor<'_> for Flag {
        type Value = bool;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(EXPECTED)
        }
        fn visit_bool<E: de::Error>(self, v: bool) -> Result<bool, E> {
            Ok(v)
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<bool, E> {
            match v {
                0 => Ok(false),
                1 => Ok(true),
                _ => Err(E::invalid_value(Unexpected::Unsigned(v), &EXPECTED)),
            }
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<bool, E> {
            match u64::try_from(v) {
                Ok(v) => self.visit_u64(v),
                Err(_) => Err(E::invalid_value(Unexpected::Signed(v), &EXPECTED)),
            }
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<bool, E> {
            parse(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &EXPECTED))
        }
    }
}

/// How the connection to the SMTP server is secured (`?tls=` of `smtp_url`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SmtpTls {
    /// Plain, then `STARTTLS`, which must succeed (port 587 by default).
    StartTls,
    /// TLS from the first byte (port 465 by default).
    Tls,
    /// No encryption at all: a relay on the same host or a test server (port 25 by default).
    None,
}

/// The SMTP server emails go out through: `smtp://user:password@host:port?tls=starttls`,
/// `tls=tls` or `tls=none`. The password never reaches a log line: it is shown as `***`.
#[derive(Clone, PartialEq, Eq)]
pub struct SmtpUrl {
    pub host: String,
    pub port: u16,
    pub tls: SmtpTls,
    /// The user name and password, percent-decoded.
    pub credentials: Option<(String, Secret)>,
    /// As written, for writing it back.
    text: String,
}

impl FromStr for SmtpUrl {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let url = Url::parse(raw.trim())
            .map_err(|_| "must be a URL like smtp://user:password@host:587?tls=starttls")?;
        if url.scheme() != "smtp" {
            return Err("must start with smtp://".into());
        }
        let host = match url.host() {
            Some(url::Host::Domain(d)) => d.to_owned(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => ip.to_string(),
            None => return Err("must name a host".into()),
        };
        let mut tls = SmtpTls::StartTls;
        for (key, value) in url.query_pairs() {
            match (key.as_ref(), value.as_ref()) {
                ("tls", "starttls") => tls = SmtpTls::StartTls,
                ("tls", "tls") => tls = SmtpTls::Tls,
                ("tls", "none") => tls = SmtpTls::None,
                ("tls", other) => {
                    return Err(format!("tls={other}: must be starttls, tls or none"))
                }
                (other, _) => return Err(format!("{other}: the only parameter is tls")),
            }
        }
        if url.path() != "" && url.path() != "/" {
            return Err("must have no path".into());
        }
        let port = url.port().unwrap_or(match tls {
            SmtpTls::StartTls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        });
        let decode = |s: &str| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8()
                .map(|s| s.into_owned())
                .map_err(|_| "the user name and password must be UTF-8".to_owned())
        };
        let credentials = match (url.username(), url.password()) {
            ("", None) => None,
            (user, Some(password)) if !user.is_empty() => {
                Some((decode(user)?, Secret::new(decode(password)?)))
            }
            _ => return Err("give both a user name and a password, or neither".into()),
        };
        Ok(Self {
            host,
            port,
            tls,
            credentials,
            text: raw.trim().to_owned(),
        })
    }
}

impl SmtpUrl {
    /// The URL with its password hidden, for logs.
    pub fn redacted(&self) -> String {
        let user = match &self.credentials {
            Some((user, _)) => format!("{user}:***@"),
            None => String::new(),
        };
        let tls = match self.tls {
            SmtpTls::StartTls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        };
        format!("smtp://{user}{}:{}?tls={tls}", self.host, self.port)
    }
}

impl fmt::Debug for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

/// Written back as given: settings are written only to be read again, never logged.
impl fmt::Display for SmtpUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// An address emails come from, with or without a name: `Fleety <support@example.com>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailFrom(pub lettre::message::Mailbox);

impl MailFrom {
    /// The domain of the address: where the emails' `Message-ID`s live.
    pub fn domain(&self) -> &str {
        self.0.email.domain()
    }
}

impl FromStr for MailFrom {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        raw.trim()
            .parse()
            .map(MailFrom)
            .map_err(|_| "must be an email address, like Fleety <support@example.com>".into())
    }
}

impl fmt::Display for MailFrom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A mail domain (`replies.example.com`): letters, digits, `-` and dots, stored lowercase.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailDomain(String);

impl MailDomain {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for MailDomain {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let domain = raw.trim().to_ascii_lowercase();
        let label = |l: &str| {
            (1..=63).contains(&l.len())
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !l.starts_with('-')
                && !l.ends_with('-')
        };
        let ok = domain.len() <= 253 && domain.contains('.') && domain.split('.').all(label);
        ok.then_some(MailDomain(domain))
            .ok_or_else(|| "must be a mail domain, like replies.example.com".into())
    }
}

impl fmt::Display for MailDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
