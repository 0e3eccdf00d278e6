//! `kubeboot token create|list|delete`: kubeadm's bootstrap-token Secrets
//! (`kube-system/bootstrap-token-<id>`, type `bootstrap.kubernetes.io/token`),
//! written and read with the fields kubeadm's
//! `cmd/kubeadm/app/apis/bootstraptoken/v1/utils.go` uses
//! (`encodeTokenSecretData` / `BootstrapTokenFromSecret`): `token-id`,
//! `token-secret`, `description`, `expiration` (RFC 3339, UTC),
//! `usage-bootstrap-<usage>: "true"` and `auth-extra-groups` (comma-joined).
//! The client authenticates as `admin.conf`'s user, talking to the server
//! that kubeconfig names.
//!
//! The token secret only ever reaches stdout of `token create` (as kubeadm
//! prints it); `list` shows token ids, and no error carries a secret.

use std::path::Path;
use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::kube::Kube;
use super::objects::{self, BOOTSTRAP_TOKEN_TYPE, KUBE_SYSTEM, Update};
use crate::config::{BootstrapToken, BootstrapTokenSpec, TokenUsage};
use crate::error::{Error, Result};
use crate::host::fs;
use crate::secret::Secret;

/// The Secrets collection of kube-system.
fn secrets_path() -> String {
    format!("/api/v1/namespaces/{KUBE_SYSTEM}/secrets")
}

/// A client for the API server `kubeconfig` names, as its user, each
/// request retried within `budget`.
pub fn client(kubeconfig: &Path, budget: Duration) -> Result<Kube> {
    let bytes = fs::read_optional(kubeconfig)?.ok_or_else(|| {
        Error::Invalid(format!(
            "{}: missing (run this on a control-plane node, or give --kubeconfig)",
            kubeconfig.display()
        ))
    })?;
    let bad = |e: String| Error::Invalid(format!("{}: {e}", kubeconfig.display()));
    let (server, ca) = crate::pki::kubeconfig::server_and_ca(&bytes).map_err(bad)?;
    // client files named relative to / (kubelet-finalize style) resolve on this host
    let paths = crate::host::Paths::new(Path::new("/"));
    let (cert, key) = crate::pki::kubeconfig::client_cert_and_key(&bytes, &paths).map_err(bad)?;
    Kube::new(&server, &ca, &cert, key.expose().as_bytes(), budget)
        .map_err(|e| Error::Invalid(format!("{}: {e}", kubeconfig.display())))
}

/// The worker NodeConfig that joins with `token` (the 5 lines kubeboot reads).
pub fn join_config(server: &str, token: &BootstrapToken, ca_hash: &str) -> String {
    let host_port = server.trim_start_matches("https://").trim_end_matches('/');
    format!(
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: {host_port}\ntoken: {}.{}\ncaCertHash: {ca_hash}\n",
        token.id,
        token.secret.expose()
    )
}

/// Checks `token create`'s options as kubeadm's validation does (token
/// format, known usages, groups only with authentication and under
/// `system:bootstrappers:`) and builds the token spec. The token value is
/// never echoed in an error.
pub fn spec(
    token: Option<&Secret>,
    ttl: &str,
    usages: &[String],
    groups: &[String],
    description: Option<String>,
) -> Result<BootstrapTokenSpec> {
    // `--groups ""` (an empty list) arrives as one empty entry
    let usages: Vec<String> = usages.iter().filter(|u| !u.is_empty()).cloned().collect();
    let groups: Vec<String> = groups.iter().filter(|g| !g.is_empty()).cloned().collect();
    let token = match token {
        Some(t) => Some(crate::config::BootstrapToken::parse(t).ok_or_else(|| {
            Error::Invalid(
                "TOKEN: not of the form [a-z0-9]{6}.[a-z0-9]{16} (value not shown)".into(),
            )
        })?),
        None => None,
    };
    let ttl_seconds = crate::config::resolve::parse_duration(ttl).ok_or_else(|| {
        Error::Invalid(format!(
            "--ttl: {ttl:?} is not a duration like 24h, 30m or 0 (never expires)"
        ))
    })?;
    // the usages kubeadm knows (`bootstrapapi.KnownTokenUsages`)
    let usages = usages
        .iter()
        .map(|u| {
            TokenUsage::parse(u).ok_or_else(|| {
                let known: Vec<&str> = TokenUsage::ALL.iter().map(|k| k.as_str()).collect();
                Error::Invalid(format!(
                    "--usages: {u:?} is not one of {}",
                    known.join(", ")
                ))
            })
        })
        .collect::<Result<Vec<_>>>()?;
    if !groups.is_empty() && !usages.contains(&TokenUsage::Authentication) {
        return Err(Error::Invalid(
            "--groups: extra groups need the authentication usage (--usages authentication)".into(),
        ));
    }
    for g in &groups {
        let ok = g.strip_prefix("system:bootstrappers:").is_some_and(|rest| {
            !rest.is_empty()
                && rest.len() <= 256
                && rest
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b':' || b == b'-')
                && rest
                    .bytes()
                    .last()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        });
        if !ok {
            return Err(Error::Invalid(format!(
                "--groups: {g:?} is not of the form system:bootstrappers:[a-z0-9:-]*[a-z0-9]"
            )));
        }
    }
    if let Some(d) = &description
        && d.contains('\n')
    {
        return Err(Error::Invalid("--description: must be one line".into()));
    }
    Ok(BootstrapTokenSpec {
        token,
        description,
        ttl_seconds,
        usages,
        groups,
    })
}

/// Creates the Secret for `spec` (its token, or a new random one) and
/// returns the token. An existing token with the same id is an error, as
/// with kubeadm.
pub fn create(
    kube: &Kube,
    spec: &BootstrapTokenSpec,
    now: OffsetDateTime,
) -> Result<BootstrapToken> {
    let token = match &spec.token {
        Some(t) => t.clone(),
        None => crate::config::BootstrapToken::generate()?,
    };
    let secret = objects::token_secret(spec, &token, now);
    let obj = objects::object(&secret, Update::Replace);
    let (status, _) = kube.create(&obj)?;
    match status {
        200 | 201 => Ok(token),
        409 => Err(Error::Invalid(format!(
            "a bootstrap token with id {:?} already exists (Secret {KUBE_SYSTEM}/bootstrap-token-{})",
            token.id, token.id
        ))),
        s => Err(Error::Failed(format!(
            "POST {}{}: {} (creating Secret {KUBE_SYSTEM}/bootstrap-token-{}; the server's message is not shown for Secrets)",
            kube.base(),
            obj.collection,
            crate::net::http::status_text(s),
            token.id
        ))),
    }
}

/// One bootstrap token as `token list` shows it (no secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// The public token id.
    pub id: String,
    /// `expiration`, when set.
    pub expires: Option<OffsetDateTime>,
    /// Usages set to "true", sorted.
    pub usages: Vec<String>,
    /// Extra groups.
    pub groups: Vec<String>,
    /// Description.
    pub description: String,
}

fn data_str(data: &serde_json::Map<String, Value>, key: &str) -> Option<String> {
    let b = B64.decode(data.get(key)?.as_str()?).ok()?;
    String::from_utf8(b).ok()
}

/// Reads one bootstrap-token Secret (JSON) as kubeadm's
/// `BootstrapTokenFromSecret` does; the error says what is wrong, never
/// the token secret.
pub fn from_secret(secret: &Value) -> std::result::Result<Listed, String> {
    let name = secret["metadata"]["name"].as_str().unwrap_or_default();
    let empty = serde_json::Map::new();
    let data = secret["data"].as_object().unwrap_or(&empty);
    let id = data_str(data, "token-id")
        .filter(|s| !s.is_empty())
        .ok_or_else(|| format!("Secret {name} has no token-id"))?;
    if name != format!("bootstrap-token-{id}") {
        return Err(format!(
            "Secret {name} is not named bootstrap-token-<token-id> (token-id {id:?})"
        ));
    }
    let secret_ok = data_str(data, "token-secret")
        .map(Secret::new)
        .is_some_and(|s| {
            crate::config::BootstrapToken::parse(&Secret::new(format!("{id}.{}", s.expose())))
                .is_some()
        });
    if !secret_ok {
        return Err(format!("Secret {name} has no valid token-secret"));
    }
    let expires = match data_str(data, "expiration").filter(|s| !s.is_empty()) {
        Some(e) => Some(
            OffsetDateTime::parse(&e, &Rfc3339)
                .map_err(|_| format!("Secret {name}: expiration {e:?} is not RFC 3339"))?,
        ),
        None => None,
    };
    let mut usages: Vec<String> = data
        .keys()
        .filter_map(|k| k.strip_prefix("usage-bootstrap-"))
        .filter(|u| data_str(data, &format!("usage-bootstrap-{u}")).as_deref() == Some("true"))
        .map(str::to_string)
        .collect();
    usages.sort();
    let groups = data_str(data, "auth-extra-groups")
        .filter(|g| !g.is_empty())
        .map(|g| g.split(',').map(str::to_string).collect())
        .unwrap_or_default();
    Ok(Listed {
        id,
        expires,
        usages,
        groups,
        description: data_str(data, "description").unwrap_or_default(),
    })
}

/// Every bootstrap token of the cluster (Secrets of type
/// `bootstrap.kubernetes.io/token` in kube-system, as kubeadm selects them),
/// sorted by id; Secrets that do not read as tokens are logged and skipped.
pub fn list(kube: &Kube) -> Result<Vec<Listed>> {
    let path = format!(
        "{}?fieldSelector=type%3D{}",
        secrets_path(),
        BOOTSTRAP_TOKEN_TYPE.replace('/', "%2F")
    );
    let (status, body) = kube.get(&path)?;
    if status != 200 {
        return Err(Error::Failed(format!(
            "GET {}{path}: {}",
            kube.base(),
            crate::net::http::status_text(status)
        )));
    }
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| Error::Failed(format!("GET {}{path}: not JSON: {e}", kube.base())))?;
    let mut out = Vec::new();
    for item in v["items"].as_array().map(Vec::as_slice).unwrap_or_default() {
        // the field selector is the server's job; check anyway
        if item["type"].as_str() != Some(BOOTSTRAP_TOKEN_TYPE) {
            continue;
        }
        match from_secret(item) {
            Ok(t) => out.push(t),
            Err(e) => log::warn!("skipping {e}"),
        }
    }
    out.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(out)
}

/// The token id named by a `token delete` argument: an id, or a whole
/// token (whose secret is not echoed).
pub fn id_of(arg: &str) -> Result<String> {
    let id_ok = |s: &str| {
        s.len() == 6
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if id_ok(arg) {
        return Ok(arg.to_string());
    }
    match crate::config::BootstrapToken::parse(&Secret::new(arg)) {
        Some(t) => Ok(t.id),
        None => Err(Error::Invalid(
            "token delete: an argument is neither a token id ([a-z0-9]{6}) nor a token (value not shown)"
                .into(),
        )),
    }
}

/// Deletes the Secret of token `id`; a missing one is an error, as with kubeadm.
pub fn delete(kube: &Kube, id: &str) -> Result<()> {
    let path = format!("{}/bootstrap-token-{id}", secrets_path());
    let (status, _) = kube.delete(&path)?;
    match status {
        200 | 202 => Ok(()),
        404 => Err(Error::Invalid(format!(
            "bootstrap token {id:?} not found (no Secret {KUBE_SYSTEM}/bootstrap-token-{id})"
        ))),
        s => Err(Error::Failed(format!(
            "DELETE {}{path}: {}",
            kube.base(),
            crate::net::http::status_text(s)
        ))),
    }
}

/// `kubeadm token list`'s table, with the token id in place of the token:
/// TTL is the time left (`<forever>` without expiration, `<invalid>` once
/// expired).
pub fn format_list(tokens: &[Listed], now: OffsetDateTime) -> String {
    let none = |s: String| {
        if s.is_empty() {
            "<none>".to_string()
        } else {
            s
        }
    };
    let mut rows = vec![vec![
        "TOKEN ID".to_string(),
        "TTL".into(),
        "EXPIRES".into(),
        "USAGES".into(),
        "DESCRIPTION".into(),
        "EXTRA GROUPS".into(),
    ]];
    for t in tokens {
        let (ttl, exp) = match t.expires {
            None => ("<forever>".to_string(), "<never>".to_string()),
            Some(e) => (
                crate::pki::expiry::short_duration(e - now),
                e.format(&Rfc3339).unwrap_or_default(),
            ),
        };
        rows.push(vec![
            t.id.clone(),
            ttl,
            exp,
            t.usages.join(","),
            none(t.description.clone()),
            none(t.groups.join(",")),
        ]);
    }
    crate::pki::expiry::columns(&rows)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(s: &str) -> String {
        B64.encode(s)
    }

    #[test]
    fn spec_checks_like_kubeadm_and_never_echoes_the_token() {
        let s = |t: Option<&str>, ttl: &str, u: &[&str], g: &[&str]| {
            let u: Vec<String> = u.iter().map(|x| x.to_string()).collect();
            let g: Vec<String> = g.iter().map(|x| x.to_string()).collect();
            spec(t.map(Secret::new).as_ref(), ttl, &u, &g, None)
        };
        let ok = s(
            Some("abcdef.0123456789abcdef"),
            "0",
            &["signing", "authentication"],
            &["system:bootstrappers:kubeadm:default-node-token"],
        )
        .unwrap();
        assert_eq!(ok.ttl_seconds, 0);
        assert_eq!(ok.token.unwrap().id, "abcdef");
        let e = s(Some("abcdef.SECRETSECRETSECRE"), "24h", &["signing"], &[]).unwrap_err();
        assert!(!e.to_string().contains("SECRET"), "{e}");
        assert!(s(None, "1 day", &["signing"], &[]).is_err());
        assert!(s(None, "24h", &["sign"], &[]).is_err());
        assert!(s(None, "24h", &["signing"], &["system:bootstrappers:x"]).is_err());
        assert!(s(None, "24h", &["authentication"], &["system:nodes"]).is_err());
        assert!(s(None, "24h", &["authentication"], &["system:bootstrappers:"]).is_err());
        assert_eq!(s(None, "1h30m", &[], &[]).unwrap().ttl_seconds, 5400);
    }

    /// `--groups` is checked as kubeadm checks it: against
    /// `BootstrapGroupPattern` (k8s.io/cluster-bootstrap token/api/types.go,
    /// `\\Asystem:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]\\z`), run here by
    /// Python's `re`, not by kubeboot's code.
    #[test]
    fn groups_are_checked_with_kubeadms_pattern() {
        let long = |n: usize| "a".repeat(n);
        let rests = [
            String::new(),
            "a".into(),
            "1".into(),
            "A".into(),
            "aB1".into(),
            "ab:".into(),
            "ab-".into(),
            "a:b-c".into(),
            "-a".into(),
            ":a".into(),
            "x y".into(),
            "é".into(),
            long(255),
            long(256),
            long(257),
            format!("{}:", long(255)),
        ];
        let groups: Vec<String> = rests
            .iter()
            .map(|r| format!("system:bootstrappers:{r}"))
            .collect();
        let script = "import re, sys\n\
            p = re.compile(r'system:bootstrappers:[a-z0-9:-]{0,255}[a-z0-9]')\n\
            for g in sys.stdin.read().split('\\n'):\n    print(bool(p.fullmatch(g)))\n";
        let python: Vec<bool> = crate::test_util::python_lines(script, &groups.join("\n"))
            .iter()
            .map(|l| l == "True")
            .collect();
        assert_eq!(python.len(), groups.len());
        assert_eq!(python.iter().filter(|b| **b).count(), 7, "{python:?}");
        for (g, want) in groups.iter().zip(python) {
            let got = spec(
                None,
                "24h",
                &["authentication".into()],
                std::slice::from_ref(g),
                None,
            );
            assert_eq!(got.is_ok(), want, "{g}: {got:?}");
        }
    }

    #[test]
    fn reads_secrets_as_kubeadm_does() {
        let secret = json!({"metadata": {"name": "bootstrap-token-abcdef"}, "type": BOOTSTRAP_TOKEN_TYPE,
            "data": {"token-id": b64("abcdef"), "token-secret": b64("0123456789abcdef"),
                "expiration": b64("2027-01-02T03:04:05Z"), "usage-bootstrap-signing": b64("true"),
                "usage-bootstrap-authentication": b64("true"), "usage-bootstrap-other": b64("false"),
                "auth-extra-groups": b64("system:bootstrappers:a,system:bootstrappers:b"),
                "description": b64("fleet")}});
        let t = from_secret(&secret).unwrap();
        assert_eq!(t.id, "abcdef");
        assert_eq!(t.usages, vec!["authentication", "signing"]);
        assert_eq!(t.groups.len(), 2);
        assert_eq!(t.expires.unwrap().year(), 2027);
        let mut bad = secret.clone();
        bad["metadata"]["name"] = json!("bootstrap-token-zzzzzz");
        assert!(from_secret(&bad).is_err());
        let mut bad = secret.clone();
        bad["data"]["token-secret"] = json!(b64("short"));
        let e = from_secret(&bad).unwrap_err();
        assert!(!e.contains("short"), "{e}");
        let now = OffsetDateTime::UNIX_EPOCH;
        let forever = Listed {
            expires: None,
            ..t.clone()
        };
        let table = format_list(&[forever], now);
        assert!(
            table.contains("<forever>") && table.contains("<never>"),
            "{table}"
        );
        assert!(!table.contains("0123456789abcdef"), "{table}");
    }

    #[test]
    fn delete_arguments() {
        assert_eq!(id_of("abcdef").unwrap(), "abcdef");
        assert_eq!(id_of("abcdef.0123456789abcdef").unwrap(), "abcdef");
        let e = id_of("abcdef.0123456789ABCDEF").unwrap_err().to_string();
        assert!(!e.contains("0123456789ABCDEF"), "{e}");
        // kubeadm's BootstrapTokenIDPattern: `\A([a-z0-9]{6})\z`
        for bad in ["ABCDEF", "abcde", "abcdefg", "abc-ef", ""] {
            assert!(id_of(bad).is_err(), "{bad:?}");
        }
        assert_eq!(id_of("0a1b2c").unwrap(), "0a1b2c");
    }

    #[test]
    fn join_config_is_the_worker_node_config() {
        let t = BootstrapToken {
            id: "abcdef".into(),
            secret: Secret::new("0123456789abcdef"),
        };
        let text = join_config("https://10.0.0.1:6443", &t, "sha256:00");
        assert_eq!(text.lines().count(), 5);
        assert!(text.contains("server: 10.0.0.1:6443\n"), "{text}");
        assert!(text.contains("token: abcdef.0123456789abcdef\n"), "{text}");
    }
}
