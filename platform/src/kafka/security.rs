//! How Kafka clients encrypt and authenticate: the `KAFKA_SECURITY_PROTOCOL`, `KAFKA_SASL_*`
//! and `KAFKA_SSL_*` settings, turned into librdkafka's configuration in one place.
//!
//! Managed clusters (Amazon MSK, Confluent Cloud, Aiven, Redpanda Cloud) need TLS and most
//! need SASL (PLAIN or SCRAM) or a client certificate; a local broker needs neither. Broker
//! certificates are always verified, host name included: there is no setting to turn that
//! off, because a client that trusts any certificate leaks its SASL password to whoever
//! answers.

use std::{fmt, path::PathBuf, str::FromStr};

use anyhow::{Context, bail};
use rdkafka::ClientConfig;

use crate::env;

/// `security.protocol`: whether traffic is encrypted and whether SASL authenticates it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL: a local broker or a private network.
    #[default]
    Plaintext,
    /// TLS; the client may authenticate with a certificate.
    Ssl,
    /// SASL without TLS: the credentials and records cross the network readable.
    SaslPlaintext,
    /// SASL over TLS: what managed clusters ask for.
    SaslSsl,
}

impl SecurityProtocol {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    fn uses_tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    fn uses_sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "plaintext" => Ok(Self::Plaintext),
            "ssl" => Ok(Self::Ssl),
            "sasl_plaintext" => Ok(Self::SaslPlaintext),
            "sasl_ssl" => Ok(Self::SaslSsl),
            _ => Err("expected plaintext, ssl, sasl_plaintext or sasl_ssl".to_owned()),
        }
    }
}

/// `sasl.mechanisms`: the ones librdkafka implements without extra system libraries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// The password itself, sent to the broker (only ever over TLS in practice).
    Plain,
    /// Salted challenge-response; the password never crosses the network.
    ScramSha256,
    /// As SCRAM-SHA-256 with SHA-512 (Amazon MSK's SCRAM).
    ScramSha512,
}

impl SaslMechanism {
    fn as_str(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err("expected PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512".to_owned()),
        }
    }
}

/// SASL credentials. `Debug` leaves the password out, so settings can be logged.
#[derive(Clone, PartialEq, Eq)]
pub struct Sasl {
    /// `KAFKA_SASL_MECHANISM`.
    pub mechanism: SaslMechanism,
    /// `KAFKA_SASL_USERNAME`.
    pub username: String,
    /// `KAFKA_SASL_PASSWORD`.
    pub password: String,
}

impl fmt::Debug for Sasl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sasl")
            .field("mechanism", &self.mechanism)
            .field("username", &self.username)
            .field("password", &"***")
            .finish()
    }
}

/// A client certificate and its private key, both PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientCertificate {
    /// `KAFKA_SSL_CERT_FILE`.
    pub cert_file: PathBuf,
    /// `KAFKA_SSL_KEY_FILE`.
    pub key_file: PathBuf,
}

/// Encryption and authentication of every Kafka client of a binary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KafkaSecurity {
    /// `KAFKA_SECURITY_PROTOCOL` (default `plaintext`).
    pub protocol: SecurityProtocol,
    /// With `sasl_*`: the mechanism and credentials.
    pub sasl: Option<Sasl>,
    /// With `ssl`/`sasl_ssl`: a PEM file of the CAs broker certificates must chain to
    /// (`KAFKA_SSL_CA_FILE`); none: the system's CAs.
    pub ca_file: Option<PathBuf>,
    /// With `ssl`/`sasl_ssl`: a client certificate for brokers that authenticate clients by
    /// certificate (mutual TLS, e.g. Aiven or MSK's TLS authentication).
    pub client_certificate: Option<ClientCertificate>,
}

impl KafkaSecurity {
    /// Reads and checks the settings: every combination that cannot work is refused at start
    /// with a message naming the keys, instead of failing later at the first connection.
    pub fn from_env() -> anyhow::Result<Self> {
        let protocol = env::parse("KAFKA_SECURITY_PROTOCOL", SecurityProtocol::Plaintext)?;
        let mechanism = env::optional("KAFKA_SASL_MECHANISM");
        let username = env::optional("KAFKA_SASL_USERNAME");
        let password = env::optional("KAFKA_SASL_PASSWORD");
        let sasl = match (protocol.uses_sasl(), mechanism, username, password) {
            (false, None, None, None) => None,
            (false, ..) => bail!(
                "KAFKA_SASL_MECHANISM/USERNAME/PASSWORD are set but KAFKA_SECURITY_PROTOCOL is {}: \
                 set it to sasl_ssl (or sasl_plaintext) to use them",
                protocol.as_str()
            ),
            (true, Some(mechanism), Some(username), Some(password)) => Some(Sasl {
                mechanism: mechanism
                    .parse()
                    .map_err(|e| anyhow::anyhow!("KAFKA_SASL_MECHANISM={mechanism:?}: {e}"))?,
                username,
                password,
            }),
            (true, ..) => bail!(
                "KAFKA_SECURITY_PROTOCOL={} needs KAFKA_SASL_MECHANISM, KAFKA_SASL_USERNAME and \
                 KAFKA_SASL_PASSWORD",
                protocol.as_str()
            ),
        };
        let ca_file = env::optional("KAFKA_SSL_CA_FILE").map(PathBuf::from);
        let client_certificate = match (
            env::optional("KAFKA_SSL_CERT_FILE"),
            env::optional("KAFKA_SSL_KEY_FILE"),
        ) {
            (None, None) => None,
            (Some(cert), Some(key)) => Some(ClientCertificate {
                cert_file: cert.into(),
                key_file: key.into(),
            }),
            _ => {
                bail!("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together: set both or neither")
            }
        };
        let security = Self {
            protocol,
            sasl,
            ca_file,
            client_certificate,
        };
        security.check_files()?;
        Ok(security)
    }

    /// The TLS files must be readable, and only make sense with TLS on.
    fn check_files(&self) -> anyhow::Result<()> {
        let files = [
            ("KAFKA_SSL_CA_FILE", self.ca_file.as_ref()),
            (
                "KAFKA_SSL_CERT_FILE",
                self.client_certificate.as_ref().map(|c| &c.cert_file),
            ),
            (
                "KAFKA_SSL_KEY_FILE",
                self.client_certificate.as_ref().map(|c| &c.key_file),
            ),
        ];
        for (key, path) in files {
            let Some(path) = path else { continue };
            if !self.protocol.uses_tls() {
                bail!(
                    "{key} is set but KAFKA_SECURITY_PROTOCOL is {}: set it to ssl or sasl_ssl",
                    self.protocol.as_str()
                );
            }
            std::fs::metadata(path)
                .with_context(|| format!("{key} {} cannot be read", path.display()))?;
        }
        Ok(())
    }

    /// Sets the librdkafka properties for these settings on `config`.
    pub fn apply(&self, config: &mut ClientConfig) {
        config.set("security.protocol", self.protocol.as_str());
        if self.protocol.uses_tls() {
            // Verify the broker's certificate and that it is issued to the broker's host name
            // (librdkafka's defaults, set here so no other setting can weaken them).
            config
                .set("enable.ssl.certificate.verification", "true")
                .set("ssl.endpoint.identification.algorithm", "https");
            match &self.ca_file {
                Some(path) => config.set("ssl.ca.location", path.to_string_lossy()),
                // Look for the system's CA bundle where distributions keep it.
                None => config.set("ssl.ca.location", "probe"),
            };
            if let Some(certificate) = &self.client_certificate {
                config
                    .set(
                        "ssl.certificate.location",
                        certificate.cert_file.to_string_lossy(),
                    )
                    .set("ssl.key.location", certificate.key_file.to_string_lossy());
            }
        }
        if let Some(sasl) = &self.sasl {
            config
                .set("sasl.mechanisms", sasl.mechanism.as_str())
                .set("sasl.username", &sasl.username)
                .set("sasl.password", &sasl.password);
        }
    }

    /// A short description for the settings log line, without secrets, e.g.
    /// `sasl_ssl SCRAM-SHA-512 as catalog`.
    pub fn describe(&self) -> String {
        let mut text = self.protocol.as_str().to_owned();
        if let Some(sasl) = &self.sasl {
            text.push_str(&format!(
                " {} as {}",
                sasl.mechanism.as_str(),
                sasl.username
            ));
        }
        if self.client_certificate.is_some() {
            text.push_str(" with a client certificate");
        }
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(security: &KafkaSecurity) -> ClientConfig {
        let mut config = ClientConfig::new();
        security.apply(&mut config);
        config
    }

    /// The properties in key order, secrets replaced by rdkafka's placeholder.
    fn properties(security: &KafkaSecurity) -> Vec<(String, String)> {
        config(security)
            .config_map()
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_owned(), v.to_owned())
    }

    #[test]
    fn plaintext_sets_only_the_protocol() {
        assert_eq!(
            properties(&KafkaSecurity::default()),
            [pair("security.protocol", "plaintext")]
        );
    }

    #[test]
    fn sasl_ssl_verifies_the_broker_and_sends_the_credentials() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(Sasl {
                mechanism: SaslMechanism::ScramSha512,
                username: "catalog".into(),
                password: "s3cret".into(),
            }),
            ca_file: None,
            client_certificate: None,
        };
        assert_eq!(config(&security).get("sasl.password"), Some("s3cret"));
        assert_eq!(
            properties(&security),
            [
                pair("enable.ssl.certificate.verification", "true"),
                pair("sasl.mechanisms", "SCRAM-SHA-512"),
                pair("sasl.password", "[sanitized for safety]"),
                pair("sasl.username", "catalog"),
                pair("security.protocol", "sasl_ssl"),
                pair("ssl.ca.location", "probe"),
                pair("ssl.endpoint.identification.algorithm", "https"),
            ]
        );
    }

    #[test]
    fn ssl_with_a_ca_file_and_a_client_certificate_names_the_files() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            sasl: None,
            ca_file: Some("/etc/kafka/ca.pem".into()),
            client_certificate: Some(ClientCertificate {
                cert_file: "/etc/kafka/client.pem".into(),
                key_file: "/etc/kafka/client.key".into(),
            }),
        };
        let properties = properties(&security);
        for expected in [
            pair("ssl.ca.location", "/etc/kafka/ca.pem"),
            pair("ssl.certificate.location", "/etc/kafka/client.pem"),
            pair("ssl.key.location", "/etc/kafka/client.key"),
        ] {
            assert!(
                properties.contains(&expected),
                "{expected:?} in {properties:?}"
            );
        }
    }

    #[test]
    fn the_password_is_neither_debugged_nor_described() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::SaslSsl,
            sasl: Some(Sasl {
                mechanism: SaslMechanism::Plain,
                username: "catalog".into(),
                password: "s3cret".into(),
            }),
            ..KafkaSecurity::default()
        };
        assert!(!format!("{security:?}").contains("s3cret"));
        assert_eq!(security.describe(), "sasl_ssl PLAIN as catalog");
    }

    #[test]
    fn protocol_and_mechanism_names_parse_in_any_case() {
        assert_eq!("SASL_SSL".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("scram-sha-256".parse(), Ok(SaslMechanism::ScramSha256));
        assert!("tls".parse::<SecurityProtocol>().is_err());
        assert!("GSSAPI".parse::<SaslMechanism>().is_err());
    }

    #[test]
    fn a_tls_file_without_tls_is_refused() {
        let security = KafkaSecurity {
            ca_file: Some("/etc/ssl/certs/ca-certificates.crt".into()),
            ..KafkaSecurity::default()
        };
        let error = security.check_files().unwrap_err().to_string();
        assert!(error.contains("KAFKA_SSL_CA_FILE"), "{error}");
    }

    #[test]
    fn a_missing_ca_file_is_named() {
        let security = KafkaSecurity {
            protocol: SecurityProtocol::Ssl,
            ca_file: Some("/nonexistent/ca.pem".into()),
            ..KafkaSecurity::default()
        };
        let error = format!("{:#}", security.check_files().unwrap_err());
        assert!(
            error.contains("KAFKA_SSL_CA_FILE /nonexistent/ca.pem"),
            "{error}"
        );
    }
}
