//! TLS fixtures for the `rediss://` tests: a throwaway CA with a server certificate for the
//! loopback address and a client certificate, made at run time by the `openssl` CLI (installed by
//! scripts/setup.sh), so no key or certificate is ever committed and nothing needs the network;
//! and [`RedisServer::start_tls`], a real `redis-server` speaking TLS only.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{RedisServer, TempDir};

/// A CA and the certificates it signed, PEM files in a directory removed on drop.
pub struct Pki {
    dir: TempDir,
}

impl Pki {
    /// A new CA (EC P-256: quick to make) and its server certificate for `127.0.0.1` and
    /// `localhost`, and its client certificate.
    pub fn new() -> Pki {
        let pki = Pki {
            dir: TempDir::new("pki"),
        };
        pki.openssl(&[
            "req",
            "-x509",
            "-new",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=sluice-test-ca",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ]);
        pki.leaf(
            "server",
            "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n",
        );
        pki.leaf("client", "extendedKeyUsage=clientAuth\n");
        pki
    }

    /// A key and a certificate `NAME.key`, `NAME.crt` signed by the CA, with `extensions`.
    fn leaf(&self, name: &str, extensions: &str) {
        let ext = format!("{name}.ext");
        std::fs::write(
            self.dir.path().join(&ext),
            format!("basicConstraints=CA:FALSE\n{extensions}"),
        )
        .unwrap();
        let (key, csr, crt) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.crt"),
        );
        let subject = format!("/CN=sluice-test-{name}");
        self.openssl(&[
            "req",
            "-new",
            "-nodes",
            "-subj",
            &subject,
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-keyout",
            &key,
            "-out",
            &csr,
        ]);
        self.openssl(&[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-set_serial",
            if name == "server" { "2" } else { "3" },
            "-days",
            "2",
            "-extfile",
            &ext,
            "-out",
            &crt,
        ]);
    }

    fn openssl(&self, args: &[&str]) {
        let out = Command::new("openssl")
            .args(args)
            .current_dir(self.dir.path())
            .output()
            .expect("openssl is not installed: apt-get install openssl (scripts/setup.sh does)");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The CA certificate, what `redis.tls_ca_file` names.
    pub fn ca(&self) -> PathBuf {
        self.file("ca.crt")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.file("server.crt")
    }

    pub fn server_key(&self) -> PathBuf {
        self.file("server.key")
    }

    /// The client certificate, what `redis.tls_cert_file` names.
    pub fn client_cert(&self) -> PathBuf {
        self.file("client.crt")
    }

    /// Its key, what `redis.tls_key_file` names.
    pub fn client_key(&self) -> PathBuf {
        self.file("client.key")
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// What the `redis` crate takes to trust this CA (and, with `client`, to show the client
    /// certificate).
    pub fn certificates(&self, client: bool) -> redis::TlsCertificates {
        let read = |p: PathBuf| std::fs::read(p).unwrap();
        redis::TlsCertificates {
            client_tls: client.then(|| redis::ClientTlsConfig {
                client_cert: read(self.client_cert()),
                client_key: read(self.client_key()),
            }),
            root_cert: Some(read(self.ca())),
        }
    }
}

impl Default for Pki {
    fn default() -> Pki {
        Pki::new()
    }
}

/// How a [`RedisServer`] speaks TLS.
pub(crate) struct TlsMode {
    /// Shared: a replica speaks TLS with its master's certificates ([`RedisServer::start_replica_of`]).
    pub(crate) pki: std::sync::Arc<Pki>,
    /// `tls-auth-clients yes`: a client without a certificate signed by the CA is refused.
    pub(crate) auth_clients: bool,
}

impl TlsMode {
    /// The server's directives: TLS on its port, no plain port.
    pub(crate) fn args(&self, port: u16) -> Vec<String> {
        let path = |p: PathBuf| p.to_str().unwrap().to_owned();
        vec![
            "--port".into(),
            "0".into(),
            "--tls-port".into(),
            port.to_string(),
            "--tls-cert-file".into(),
            path(self.pki.server_cert()),
            "--tls-key-file".into(),
            path(self.pki.server_key()),
            "--tls-ca-cert-file".into(),
            path(self.pki.ca()),
            "--tls-auth-clients".into(),
            if self.auth_clients { "yes" } else { "no" }.into(),
        ]
    }
}

impl RedisServer {
    /// A server on TLS only, with a new [`Pki`] ([`RedisServer::pki`]): its [`RedisServer::url`]
    /// is `rediss://127.0.0.1:PORT`. With `auth_clients` it refuses a client without the PKI's
    /// client certificate.
    pub fn start_tls(auth_clients: bool) -> RedisServer {
        RedisServer::launch_new(
            &[],
            Some(TlsMode {
                pki: std::sync::Arc::new(Pki::new()),
                auth_clients,
            }),
        )
    }

    /// The certificates of a server from [`RedisServer::start_tls`].
    pub fn pki(&self) -> &Pki {
        &self.tls.as_ref().expect("a server from start_tls").pki
    }
}
