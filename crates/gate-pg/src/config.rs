//! A `[[gates.postgres]]` section of the configuration and what it resolves to: where the gate
//! listens, the upstream server it fronts with the credentials only the gate holds, and TLS.

use crate::tls;
use countersign_core::Classification;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

/// One `[[gates.postgres]]` section as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PgGateSection {
    /// The gate's name; its statements touch `Database::"<name>"`.
    pub name: String,
    pub listen: String,
    /// `postgres://user@host:port/database`, optionally `?sslmode=verify-full&sslrootcert=FILE`.
    pub upstream: String,
    /// Environment variable holding the upstream password.
    pub upstream_password_env: Option<String>,
    /// File holding the upstream password (its first line).
    pub upstream_password_file: Option<PathBuf>,
    /// Certificate chain (PEM) offered to clients that ask for TLS.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,
    /// Data classification of tables, which policies see as the table's `classification`:
    /// by qualified name (`public.customers`) or by bare name (`customers`, in any schema).
    #[serde(default)]
    pub tables: BTreeMap<String, Classification>,
    /// Client sessions served at once; more are refused with SQLSTATE 53300. Each session
    /// holds an upstream connection and a few buffers.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

fn default_max_connections() -> usize {
    DEFAULT_MAX_CONNECTIONS
}

/// Sessions a gate serves at once unless configured otherwise.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("gate `{gate}`: {message}")]
    Invalid { gate: String, message: String },
    #[error("gate `{gate}`: {source}")]
    Tls {
        gate: String,
        #[source]
        source: tls::TlsError,
    },
}

/// The upstream server and how to reach it.
#[derive(Clone)]
pub struct Upstream {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub password: Option<String>,
    /// Verify-full TLS towards the upstream, when configured.
    pub tls: Option<Arc<rustls::ClientConfig>>,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("user", &self.user)
            .field("database", &self.database)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("tls", &self.tls.is_some())
            .finish()
    }
}

/// A gate ready to run.
#[derive(Debug, Clone)]
pub struct GateConfig {
    pub name: String,
    pub listen: String,
    pub upstream: Arc<Upstream>,
    /// TLS offered to clients; `None` answers every SSLRequest with `N`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    pub tables: TableClassifications,
    pub max_connections: usize,
}

/// Table names to their classification, matched as PostgreSQL folds identifiers.
#[derive(Debug, Clone, Default)]
pub struct TableClassifications(BTreeMap<String, Classification>);

impl TableClassifications {
    /// The classification of `table` as the classifier names it (`schema.table` or `table`).
    /// A qualified name takes its own entry, else the entry for its bare name. A bare name may
    /// resolve to any schema on the search path, so it takes the most sensitive entry with that
    /// bare name: leaving out the schema never lowers a table's classification.
    pub fn of(&self, table: &str) -> Option<Classification> {
        let bare = |name: &str| name.rsplit('.').next().unwrap_or(name).to_owned();
        if table.contains('.') {
            return self
                .0
                .get(table)
                .or_else(|| self.0.get(&bare(table)))
                .copied();
        }
        self.0
            .iter()
            .filter(|(name, _)| bare(name) == table)
            .map(|(_, c)| *c)
            .max()
    }
}

impl PgGateSection {
    /// Resolves the section: parses the upstream URL, reads the password and loads certificates.
    pub fn resolve(&self) -> Result<GateConfig, ConfigError> {
        let invalid = |message: String| ConfigError::Invalid {
            gate: self.name.clone(),
            message,
        };
        // Table ids are `<gate>/<table>`, so a slash in the name would make them ambiguous.
        if self.name.trim().is_empty() || self.name.contains('/') {
            return Err(invalid(
                "`name` must be non-empty and contain no `/`".into(),
            ));
        }
        if self.max_connections == 0 {
            return Err(invalid("`max_connections` must be at least 1".into()));
        }
        let url =
            UpstreamUrl::parse(&self.upstream).map_err(|e| invalid(format!("upstream: {e}")))?;
        let password = match (&self.upstream_password_env, &self.upstream_password_file) {
            (Some(_), Some(_)) => {
                return Err(invalid(
                    "set upstream_password_env or upstream_password_file, not both".into(),
                ));
            }
            (Some(var), None) => Some(std::env::var(var).map_err(|_| {
                invalid(format!(
                    "environment variable `{var}` (upstream_password_env) is not set"
                ))
            })?),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| invalid(format!("cannot read {}: {e}", path.display())))?;
                Some(text.lines().next().unwrap_or_default().to_owned())
            }
            (None, None) => None,
        };
        let tls_error = |source| ConfigError::Tls {
            gate: self.name.clone(),
            source,
        };
        let upstream_tls = match url.sslmode.as_str() {
            "disable" => None,
            "verify-full" => {
                let roots = url
                    .sslrootcert
                    .clone()
                    .unwrap_or_else(|| PathBuf::from(tls::SYSTEM_ROOTS));
                Some(tls::client_config(&roots).map_err(tls_error)?)
            }
            other => {
                return Err(invalid(format!(
                    "upstream sslmode `{other}` is not supported: use `verify-full` (certificate and host name checked) or `disable`"
                )));
            }
        };
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(tls::server_config(cert, key).map_err(tls_error)?),
            (None, None) => None,
            _ => return Err(invalid("tls_cert and tls_key go together".into())),
        };
        Ok(GateConfig {
            name: self.name.clone(),
            listen: self.listen.clone(),
            upstream: Arc::new(Upstream {
                host: url.host,
                port: url.port,
                user: url.user,
                database: url.database,
                password,
                tls: upstream_tls,
            }),
            tls,
            tables: TableClassifications(
                self.tables
                    .iter()
                    .map(|(name, c)| (fold_identifiers(name), *c))
                    .collect(),
            ),
            max_connections: self.max_connections,
        })
    }
}

/// Folds a configured table name the way PostgreSQL folds unquoted identifiers, so that
/// `Public.Customers` in the configuration matches `public.customers` in a statement.
/// Quoted parts (`"Weird Name"`) keep their case, without the quotes.
fn fold_identifiers(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut quoted = false;
    let mut chars = name.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                chars.next();
                out.push('"');
            }
            '"' => quoted = !quoted,
            c if quoted => out.push(c),
            c => out.push(c.to_ascii_lowercase()),
        }
    }
    out
}

/// The parts of a `postgres://` URL the gate uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamUrl {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub database: String,
    pub sslmode: String,
    pub sslrootcert: Option<PathBuf>,
}

impl UpstreamUrl {
    pub fn parse(url: &str) -> Result<UpstreamUrl, String> {
        let rest = url
            .strip_prefix("postgres://")
            .or_else(|| url.strip_prefix("postgresql://"))
            .ok_or("must start with postgres://")?;
        let (main, query) = rest.split_once('?').unwrap_or((rest, ""));
        let (authority, database) = main.split_once('/').unwrap_or((main, ""));
        let (userinfo, hostport) = authority
            .rsplit_once('@')
            .ok_or("must name the user, as in postgres://user@host/db")?;
        if userinfo.contains(':') {
            return Err(
                "must not carry a password; put it in upstream_password_env or upstream_password_file"
                    .into(),
            );
        }
        // `[v6-address]:port`, `host:port`, or either without the port.
        let (host, port) = match hostport.strip_prefix('[') {
            Some(bracketed) => {
                let (host, rest) = bracketed
                    .split_once(']')
                    .ok_or("an IPv6 address in brackets lacks its `]`")?;
                let port = match rest {
                    "" => None,
                    r => Some(r.strip_prefix(':').ok_or("unexpected text after `]`")?),
                };
                (host, port)
            }
            None => match hostport.rsplit_once(':') {
                Some((h, p)) => (h, Some(p)),
                None => (hostport, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("port `{p}` is not a number"))?,
            None => 5432,
        };
        let user = percent_decode(userinfo)?;
        if host.is_empty() || user.is_empty() {
            return Err("must name a host and a user".into());
        }
        let database = match percent_decode(database)? {
            d if d.is_empty() => user.clone(),
            d => d,
        };
        let mut sslmode = "disable".to_owned();
        let mut sslrootcert = None;
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            match k {
                "sslmode" => sslmode = percent_decode(v)?,
                "sslrootcert" => sslrootcert = Some(PathBuf::from(percent_decode(v)?)),
                other => return Err(format!("unknown parameter `{other}`")),
            }
        }
        Ok(UpstreamUrl {
            host: host.to_owned(),
            port,
            user,
            database,
            sslmode,
            sslrootcert,
        })
    }
}

fn percent_decode(s: &str) -> Result<String, String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("bad percent escape in `{s}`"))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("`{s}` does not decode to UTF-8"))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_gate_serves_at_least_one_session() {
        let section = |max_connections| PgGateSection {
            name: "prod".into(),
            listen: "127.0.0.1:0".into(),
            upstream: "postgres://app@127.0.0.1/app".into(),
            upstream_password_env: None,
            upstream_password_file: None,
            tls_cert: None,
            tls_key: None,
            tables: BTreeMap::new(),
            max_connections,
        };
        let e = section(0).resolve().err().unwrap().to_string();
        assert!(e.contains("max_connections"), "{e}");
        assert_eq!(section(1).resolve().unwrap().max_connections, 1);
    }

    #[test]
    fn parses_upstream_urls() {
        let u = UpstreamUrl::parse("postgres://app@db.internal:6000/prod_db").unwrap();
        assert_eq!(
            (
                u.host.as_str(),
                u.port,
                u.user.as_str(),
                u.database.as_str()
            ),
            ("db.internal", 6000, "app", "prod_db")
        );
        assert_eq!(u.sslmode, "disable");
        let u = UpstreamUrl::parse(
            "postgresql://a%40b@[::1]/d?sslmode=verify-full&sslrootcert=/etc/ca.pem",
        )
        .unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.user.as_str()),
            ("::1", 5432, "a@b")
        );
        assert_eq!(u.sslrootcert, Some(PathBuf::from("/etc/ca.pem")));
        let u = UpstreamUrl::parse("postgres://app@h").unwrap();
        assert_eq!(u.database, "app");
    }

    #[test]
    fn table_classifications_match_qualified_then_bare_names() {
        let tables = TableClassifications(
            [
                ("public.customers", Classification::Restricted),
                ("payments", Classification::Confidential),
            ]
            .into_iter()
            .map(|(k, v)| (fold_identifiers(k), v))
            .collect(),
        );
        assert_eq!(
            tables.of("public.customers"),
            Some(Classification::Restricted)
        );
        // Without its schema a name may be the restricted table: it is treated as such.
        assert_eq!(tables.of("customers"), Some(Classification::Restricted));
        assert_eq!(tables.of("staging.customers"), None);
        assert_eq!(
            tables.of("billing.payments"),
            Some(Classification::Confidential)
        );
        assert_eq!(tables.of("payments"), Some(Classification::Confidential));
        assert_eq!(tables.of("other"), None);
        assert_eq!(
            fold_identifiers("Public.\"Big \"\"Table\""),
            "public.Big \"Table"
        );
    }

    #[test]
    fn refuses_bad_upstream_urls() {
        for (url, needle) in [
            ("mysql://a@h/d", "postgres://"),
            ("postgres://h/d", "user"),
            ("postgres://a:secret@h/d", "password"),
            ("postgres://a@h:port/d", "port"),
            ("postgres://a@h/d?foo=1", "unknown parameter"),
            ("postgres://a@h/%zz", "percent"),
        ] {
            let e = UpstreamUrl::parse(url).unwrap_err();
            assert!(e.contains(needle), "{url}: {e}");
        }
    }
}
