//! How the store reaches the cluster: the `FLEETY_SCYLLA_*` settings.

use scylla::statement::Consistency;

use crate::config::ScyllaSettings;

/// Connection settings, from `FLEETY_SCYLLA_*`.
#[derive(Debug, Clone)]
pub struct ScyllaConfig {
    pub nodes: Vec<String>,
    pub keyspace: String,
    pub consistency: Consistency,
    pub username: Option<String>,
    pub password: Option<String>,
    pub replication: String,
}

impl ScyllaConfig {
    pub fn from_settings(s: &ScyllaSettings) -> Result<Self, String> {
        let nodes: Vec<String> = s
            .nodes
            .split(',')
            .map(str::trim)
            .filter(|n| !n.is_empty())
            .map(String::from)
            .collect();
        if nodes.is_empty() {
            return Err("configuration error in scylla_nodes (FLEETY_SCYLLA_NODES): list at least one host:port".into());
        }
        Ok(Self {
            nodes,
            keyspace: parse_keyspace(&s.keyspace)?,
            consistency: parse_consistency(&s.consistency)?,
            username: (!s.username.is_empty()).then(|| s.username.clone()),
            password: (!s.password.is_empty()).then(|| s.password.expose().to_owned()),
            replication: replication_map(&s.replication)?,
        })
    }
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
            "configuration error in scylla_keyspace (FLEETY_SCYLLA_KEYSPACE): {raw:?} must be 1-48 letters, digits or '_', starting with a letter"
        ))
    }
}

pub fn parse_consistency(raw: &str) -> Result<Consistency, String> {
    Ok(match raw.to_ascii_uppercase().as_str() {
        "ONE" => Consistency::One,
        "TWO" => Consistency::Two,
        "THREE" => Consistency::Three,
        "QUORUM" => Consistency::Quorum,
        "ALL" => Consistency::All,
        "LOCAL_QUORUM" => Consistency::LocalQuorum,
        "EACH_QUORUM" => Consistency::EachQuorum,
        "LOCAL_ONE" => Consistency::LocalOne,
        _ => {
            return Err(format!(
                "configuration error in scylla_consistency (FLEETY_SCYLLA_CONSISTENCY): {raw:?} is not one of ONE, TWO, THREE, QUORUM, ALL, LOCAL_QUORUM, EACH_QUORUM, LOCAL_ONE"
            ))
        }
    })
}

/// `3` → every data centre gets 3 replicas; `dc1:3,dc2:2` → per data centre. Always
/// NetworkTopologyStrategy, which both ScyllaDB and Cassandra accept.
pub fn replication_map(raw: &str) -> Result<String, String> {
    let bad = || {
        format!(
            "configuration error in scylla_replication (FLEETY_SCYLLA_REPLICATION): {raw:?} must be a replica count like 3, or data centres like dc1:3,dc2:3"
        )
    };
    let raw = raw.trim();
    if let Ok(n) = raw.parse::<u8>() {
        if n == 0 {
            return Err(bad());
        }
        return Ok(format!(
            "{{'class': 'NetworkTopologyStrategy', 'replication_factor': {n}}}"
        ));
    }
    let mut parts = Vec::new();
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
        parts.push(format!("'{dc}': {n}"));
    }
    Ok(format!(
        "{{'class': 'NetworkTopologyStrategy', {}}}",
        parts.join(", ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_and_consistency_settings_are_checked() {
        assert_eq!(
            replication_map("3").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'replication_factor': 3}"
        );
        assert_eq!(
            replication_map("dc1:3, dc2:2").unwrap(),
            "{'class': 'NetworkTopologyStrategy', 'dc1': 3, 'dc2': 2}"
        );
        assert!(replication_map("0").is_err());
        assert!(replication_map("dc1:3'; DROP").is_err());
        assert!(matches!(
            parse_consistency("local_quorum"),
            Ok(Consistency::LocalQuorum)
        ));
        assert!(parse_consistency("most").is_err());
        assert!(parse_keyspace("fleety").is_ok());
        assert!(parse_keyspace("fleety; DROP").is_err());
    }
}
