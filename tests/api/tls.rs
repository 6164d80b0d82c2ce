//! TLS to PostgreSQL, against the test server's own certificate: `sslmode=require` encrypts
//! and verifies the certificate against POSTGRES_TLS_CA_FILE; a certificate those CAs do not
//! vouch for, or issued to another name, is refused; no `sslmode` stays plain.

use std::path::PathBuf;

use api::db::{DatabaseSettings, pool};
use system_tests::create_database;

/// Debian's bundle of public CAs (package ca-certificates).
const PUBLIC_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The server's certificate file and the host name it is issued to, when the server has TLS
/// on and its certificate is readable (Debian's PostgreSQL does: a self-signed "snakeoil"
/// certificate for `localhost`).
async fn server_certificate(database_url: &str) -> Option<(PathBuf, String)> {
    let (client, connection) = tokio_postgres::connect(database_url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let row = client
        .query_one(
            "SELECT current_setting('ssl'), current_setting('ssl_cert_file')",
            &[],
        )
        .await
        .unwrap();
    let (ssl, file): (String, String) = (row.get(0), row.get(1));
    let path = PathBuf::from(file);
    if ssl != "on" || std::fs::metadata(&path).is_err() {
        return None;
    }
    let out = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-subject", "-nameopt", "multiline", "-in"])
        .arg(&path)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let name = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("commonName"))?
        .trim_start_matches([' ', '='])
        .trim()
        .to_owned();
    Some((path, name))
}

/// `url` pointed at `host` (for the certificate check) while connecting to 127.0.0.1.
fn with_tls(url: &str, host: &str) -> String {
    let rest = url.split_once('@').unwrap().1;
    let (_, path) = rest.split_once('/').unwrap();
    let user = url.split_once("://").unwrap().1.split_once('@').unwrap().0;
    format!("postgres://{user}@{host}:5432/{path}?sslmode=require&hostaddr=127.0.0.1")
}

async fn uses_tls(settings: &DatabaseSettings) -> Result<bool, String> {
    let client = pool(settings)
        .map_err(|e| format!("{e:#}"))?
        .get()
        .await
        .map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    let row = client
        .query_one(
            "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()",
            &[],
        )
        .await
        .map_err(|e| e.to_string())?;
    Ok(row.get(0))
}

#[tokio::test]
async fn sslmode_require_encrypts_and_verifies_the_server_certificate() {
    let url = create_database().await;
    let Some((cert, host)) = server_certificate(&url).await else {
        // A PostgreSQL without TLS cannot show it; Debian's has it on by default.
        eprintln!("skipped: the test PostgreSQL has ssl=off or an unreadable certificate");
        return;
    };

    let plain = DatabaseSettings::for_url(&url);
    assert_eq!(
        uses_tls(&plain).await,
        Ok(false),
        "no sslmode: plain, as before"
    );

    let trusted = DatabaseSettings {
        tls_ca_file: Some(cert.clone()),
        ..DatabaseSettings::for_url(with_tls(&url, &host))
    };
    assert_eq!(
        uses_tls(&trusted).await,
        Ok(true),
        "sslmode=require with the CA"
    );

    // The same server, but its certificate chains to none of the CAs given (the public ones).
    let untrusted = DatabaseSettings {
        tls_ca_file: Some(PUBLIC_CAS.into()),
        ..DatabaseSettings::for_url(with_tls(&url, &host))
    };
    let refused = uses_tls(&untrusted).await.unwrap_err();
    assert!(
        refused.contains("UnknownIssuer"),
        "refused for its certificate: {refused}"
    );

    // The CA is right but the name is not the certificate's.
    let wrong_name = DatabaseSettings {
        tls_ca_file: Some(cert),
        ..DatabaseSettings::for_url(with_tls(&url, "db.invalid"))
    };
    let refused = uses_tls(&wrong_name).await.unwrap_err();
    assert!(
        refused.contains("not valid for name \"db.invalid\""),
        "refused for the host name: {refused}"
    );
}
