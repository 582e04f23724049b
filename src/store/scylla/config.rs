//! How the store reaches the cluster: the `scylla_*` settings, read straight into their types
//! (the settings' `scylla` group is a [`ScyllaConfig`]).

use std::fmt;
use std::str::FromStr;

use scylla::statement::Consistency;
use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize, Serializer};

use crate::config::values::{self, Secret};

/// Connection settings, from `FLEETY_SCYLLA_*`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ScyllaConfig {
    /// Contact points, `host:port`: a list, or one string separated by commas.
    #[serde(with = "nodes")]
    pub nodes: Vec<String>,
    /// Spliced into statements, so only a plain identifier (stored lowercase).
    #[serde(deserialize_with = "keyspace")]
    pub keyspace: String,
    #[serde(with = "consistency")]
    pub consistency: Consistency,
    /// Set together with `password` when the cluster requires authentication.
    #[serde(with = "values::optional_text")]
    pub username: Option<String>,
    #[serde(with = "values::optional_secret")]
    pub password: Option<Secret>,
    /// The replication of a keyspace that `fleety migrate` creates.
    #[serde(with = "values::text")]
    pub replication: Replication,
    /// Apply pending migrations when the server starts.
    #[serde(deserialize_with = "values::flag::deserialize")]
    pub auto_migrate: bool,
}

impl Default for ScyllaConfig {
    fn default() -> Self {
        Self {
            nodes: vec!["127.0.0.1:9042".into()],
            keyspace: "fleety".into(),
            consistency: Consistency::LocalQuorum,
            username: None,
            password: None,
            replication: Replication::Factor(1),
            auto_migrate: false,
        }
    }
}

mod nodes {
    use super::*;

    pub use crate::config::values::list::serialize;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
        let nodes = values::list::deserialize(d)?;
        if nodes.is_empty() {
            return Err(de::Error::custom("list at least one host:port"));
        }
        Ok(nodes)
    }
}

fn keyspace<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    parse_keyspace(&String::deserialize(d)?).map_err(de::Error::custom)
}

/// Keyspace names are spliced into statements, so only plain identifiers are accepted.
pub fn parse_keyspace(raw: &str) -> Result<String, String> {
    let ok = !raw.is_empty()
        && raw.len() <= 48
        && raw.starts_with(|c: char| c.is_ascii_alphabetic())
        && raw.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if ok {
        Ok(raw.to_ascii_lowercase())
    } else {
        Err(format!(
            "{raw:?} must be 1-48 letters, digits or '_', starting with a letter"
        ))
    }
}

/// The consistency levels a statement may ask for, as CQL names them.
const CONSISTENCIES: [(&str, Consistency); 8] = [
    ("ONE", Consistency::One),
    ("TWO", Consistency::Two),
    ("THREE", Consistency::Three),
    ("QUORUM", Consistency::Quorum),
    ("ALL", Consistency::All),
    ("LOCAL_QUORUM", Consistency::LocalQuorum),
    ("EACH_QUORUM", Consistency::EachQuorum),
    ("LOCAL_ONE", Consistency::LocalOne),
];

pub fn parse_consistency(raw: &str) -> Result<Consistency, String> {
    CONSISTENCIES
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(raw))
        .map(|&(_, level)| level)
        .ok_or_else(|| {
            format!(
                "{raw:?} is not one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE"
            )
        })
}

mod consistency {
    use super::*;

    pub fn serialize<S: Serializer>(level: &Consistency, s: S) -> Result<S::Ok, S::Error> {
        let name = CONSISTENCIES
            .iter()
            .find(|(_, l)| l == level)
            .map_or("", |(name, _)| name);
        s.serialize_str(name)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Consistency, D::Error> {
        parse_consistency(&String::deserialize(d)?).map_err(de::Error::custom)
    }
}

/// The replicas of the keyspace, always with NetworkTopologyStrategy, which both ScyllaDB and
/// Cassandra accept: `3` gives every data centre 3 replicas; `dc1:3,dc2:2` names each one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Replication {
    Factor(u8),
    PerDataCentre(Vec<(String, u8)>),
}

impl Replication {
    /// The keyspace's `replication` map in CQL.
    pub fn cql_map(&self) -> String {
        match self {
            Self::Factor(n) => {
                format!("{{'class': 'NetworkTopologyStrategy', 'replication_factor': {n}}}")
            }
            Self::PerDataCentre(dcs) => {
                let parts: Vec<String> = dcs.iter().map(|(dc, n)| format!("'{dc}': {n}")).collect();
                format!(
                    "{{'class': 'NetworkTopologyStrategy', {}}}",
                    parts.join(", ")
                )
            }
        }
    }
}

impl FromStr for Replication {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, String> {
        let bad =
            || format!("{raw:?} must be a replica count like 3, or data centres like dc1:3,dc2:3");
        let raw = raw.trim();
        if let Ok(n) = raw.parse::<u8>() {
            return match n {
                0 => Err(bad()),
                n => Ok(Self::Factor(n)),
            };
        }
        let mut dcs = Vec::new();
        for entry in raw.split(',') {
            let (dc, n) = entry.trim().split_once(':').ok_or_else(bad)?;
            let dc = dc.trim();
            let n: u8 = n.trim().parse().map_err(|_| bad())?;
            let dc_ok = !dc.is_empty()
                && dc
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
            if !dc_ok || n == 0 {
                return Err(bad());
            }
            dcs.push((dc.to_owned(), n));
        }
        Ok(Self::PerDataCentre(dcs))
    }
}

/// As operators write it.
impl fmt::Display for Replication {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Factor(n) => write!(f, "{n}"),
            Self::PerDataCentre(dcs) => {
                for (i, (dc, n)) in dcs.iter().enumerate() {
                    let comma = if i > 0 { "," } else { "" };
                    write!(f, "{comma}{dc}:{n}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_and_consistency_settings_are_checked() {
        let replication = |raw: &str| raw.parse::<Replication>().map(|r| r.cql_map());
        assert_eq!(
            replication("3").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            replication("dc1:3, dc2:2").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert!(replication("0").is_err());
        assert!(replication("dc1:3'; DROP").is_err());
        assert!(matches!(
            parse_consistency("local_quorum"),
            Ok(Consistency::LocalQuorum)
        ));
        assert!(parse_consistency("most").is_err());
        assert!(parse_keyspace("fleety").is_ok());
        assert!(parse_keyspace("fleety; DROP").is_err());
    }

    #[test]
    fn replication_is_written_back_as_operators_write_it() {
        for raw in ["3", "dc1:3,dc2:2"] {
            assert_eq!(raw.parse::<Replication>().unwrap().to_string(), raw);
        }
        let level = |raw: &str| {
            let level = parse_consistency(raw).unwrap();
            let written = serde_json::to_value(ScyllaConfig {
                consistency: level,
                ..ScyllaConfig::default()
            })
            .unwrap();
            written["consistency"].as_str().unwrap().to_owned()
        };
        assert_eq!(level("each_quorum"), "EACH_QUORUM");
        assert_eq!(level("ONE"), "ONE");
    }
}
