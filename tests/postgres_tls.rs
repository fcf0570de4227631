//! TLS to PostgreSQL against the suite's real server (scripts/pg.sh): the test makes a
//! certificate authority, gives the server a certificate for 127.0.0.1 from it, turns `ssl` on
//! with `ALTER SYSTEM` (plaintext clients of the other tests are unaffected), and then connects
//! with each `sslmode`: a wrong authority and a wrong host name are refused with a clear message,
//! a client certificate from another authority is refused by the server, and a sidecar serves
//! decisions over a verified connection.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use support::certs::{Ca, San};
use support::pg;
use support::server::{Server, reply};
use support::wait_until;

/// Installs `ca`'s server certificate (for 127.0.0.1 only) in the PostgreSQL server behind
/// `admin`, trusts `ca` for client certificates, turns TLS on and waits until new connections
/// see it.
async fn enable_ssl(server: &str, ca: &Ca) {
    let admin = pg::connect(server).await;
    let data: String = admin.query_one("SHOW data_directory", &[]).await.unwrap().get(0);
    let data = PathBuf::from(data);
    let owner = std::os::unix::fs::MetadataExt::uid(&std::fs::metadata(&data).unwrap());
    let leaf = ca.server_for(&[San::Ip([127, 0, 0, 1].into())]);
    let (cert, key) = leaf.write(&data, "rolegate-test-server");
    let root = ca.write(&data, "rolegate-test-ca.crt");
    for file in [&cert, &key, &root] {
        std::os::unix::fs::chown(file, Some(owner), None).unwrap();
        std::fs::set_permissions(file, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    }
    for (setting, value) in [("ssl_cert_file", &cert), ("ssl_key_file", &key), ("ssl_ca_file", &root)] {
        admin.batch_execute(&format!("ALTER SYSTEM SET {setting} = '{}'", value.display())).await.unwrap();
    }
    admin.batch_execute("ALTER SYSTEM SET ssl = on").await.unwrap();
    admin.batch_execute("SELECT pg_reload_conf()").await.unwrap();
    wait_until("PostgreSQL to turn ssl on", Duration::from_secs(20), async || {
        let fresh = pg::connect(server).await;
        let ssl: String = fresh.query_one("SHOW ssl", &[]).await.ok()?.get(0);
        (ssl == "on").then_some(())
    })
    .await;
}

/// Runs `rolegate migrate` on `dsn`: whether it succeeded, and its standard error.
fn migrate(dsn: &str) -> (bool, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rolegate")).args(["migrate", "--dsn", dsn]).output().unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn with(dsn: &str, query: &str) -> String {
    format!("{dsn}?{query}")
}

fn path(p: &Path) -> String {
    p.to_str().unwrap().replace('/', "%2F")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_over_tls_checks_the_authority_the_host_and_the_client_certificate() {
    let Some(server) = pg::server() else { return };
    let ca = Ca::new("rolegate test PostgreSQL CA");
    enable_ssl(&server, &ca).await;
    let dir = tempfile::tempdir().unwrap();
    let root = path(&ca.write(dir.path(), "ca.crt"));
    let other = path(&Ca::new("another CA").write(dir.path(), "other.crt"));
    let dsn = pg::fresh(&server, "tls").await;
    let by_name = dsn.replace("127.0.0.1", "localhost");

    let full = with(&dsn, &format!("sslmode=verify-full&sslrootcert={root}"));
    assert_eq!(migrate(&full), (true, String::new()), "verify-full with the right authority and host");
    let (ok, err) = migrate(&with(&dsn, &format!("sslmode=verify-full&sslrootcert={other}")));
    assert!(!ok && err.contains("the server's certificate is not issued by the authority in sslrootcert"), "{err}");
    let (ok, err) = migrate(&with(&by_name, &format!("sslmode=verify-full&sslrootcert={root}")));
    assert!(!ok && err.contains("the server's certificate is not issued for host `localhost`"), "{err}");
    assert!(migrate(&with(&by_name, &format!("sslmode=verify-ca&sslrootcert={root}"))).0, "verify-ca skips the name");
    assert!(migrate(&with(&by_name, "sslmode=require")).0, "require without sslrootcert encrypts only");
    let (ok, err) = migrate(&with(&by_name, &format!("sslmode=require&sslrootcert={other}")));
    assert!(!ok && err.contains("not issued by the authority"), "require with sslrootcert verifies: {err}");
    let (ok, err) = migrate(&with(&dsn, "sslmode=verify-full"));
    assert!(!ok && err.contains("sslrootcert: required"), "{err}");

    // The server verifies a client certificate it is shown: one from its authority passes, one
    // from another is refused.
    let (cert, key) = ca.client(&[San::Dns("rolegate")]).write(dir.path(), "client");
    let mine = format!("{full}&sslcert={}&sslkey={}", path(&cert), path(&key));
    assert!(migrate(&mine).0, "a client certificate from the server's authority");
    let (cert, key) = Ca::new("stranger").client(&[San::Dns("rolegate")]).write(dir.path(), "stranger");
    let (ok, _) = migrate(&format!("{full}&sslcert={}&sslkey={}", path(&cert), path(&key)));
    assert!(!ok, "a client certificate from another authority");

    // A sidecar follows the database over the verified connection.
    let admin = pg::connect(&dsn).await;
    pg::desk(&admin, "desk").await;
    let sidecar = Server::start_postgres(&full, &[]);
    sidecar.ready().await;
    let answer = sidecar.client().await.check(reply("rep", 0)).await.unwrap().into_inner();
    assert!(answer.decision.unwrap().allowed);
    let encrypted = admin
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 'rolegate' AND a.datname = current_database()",
            &[],
        )
        .await
        .unwrap();
    assert!(!encrypted.is_empty(), "the sidecar is connected");
    assert!(encrypted.iter().all(|r| r.get::<_, bool>(0)), "every sidecar connection is encrypted");
}
