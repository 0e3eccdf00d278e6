//! From config documents (found by the envelope layer) to one raw
//! [`NodeConfig`], with the field names messages should use.
//!
//! Accepted: one kubeboot NodeConfig, or kubeadm documents (at most one of
//! each of InitConfiguration, ClusterConfiguration, JoinConfiguration), or
//! `kubeboot.*` kernel arguments. Mixing a kubeboot NodeConfig with kubeadm
//! documents is refused: two sources of truth for one node is a mistake.

use std::collections::BTreeMap;

use serde::de::DeserializeOwned;
use serde_norway::Value;

use super::component;
use super::kubeadm::{self, Kind};
use super::model::{ComponentConfigs, Warning};
use super::raw::{self, NodeConfig, RawCluster, RawNode};
use crate::envelope::{DocBody, Document};
use crate::error::Error;
use crate::secret::Secret;

/// Which format the configuration was written in.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// kubeboot's NodeConfig.
    Kubeboot,
    /// kubeadm `kubeadm.k8s.io/<version>` documents.
    Kubeadm(String),
    /// `kubeboot.*` kernel arguments.
    KernelArgs,
}

/// A raw configuration and how to name its fields in messages.
#[derive(Debug)]
pub struct Parsed {
    /// The merged raw configuration.
    pub raw: NodeConfig,
    /// The format it came in.
    pub format: Format,
    /// Where it came from (for messages).
    pub origin: String,
    /// Prefix for every field path (e.g. `kubeboot.`).
    pub prefix: String,
    /// Canonical kubeboot field path → the name the user wrote.
    pub names: BTreeMap<String, String>,
    /// Warnings (fields not acted on, documents ignored).
    pub warnings: Vec<Warning>,
    /// KubeletConfiguration / KubeProxyConfiguration documents, checked.
    pub components: ComponentConfigs,
}

impl Parsed {
    /// The user-facing name of a canonical field path.
    pub fn name(&self, canonical: &str) -> String {
        match self.names.get(canonical) {
            Some(n) => n.clone(),
            None => format!("{}{}", self.prefix, canonical),
        }
    }
}

fn invalid(origin: &str, field: &str, msg: impl std::fmt::Display) -> Error {
    if field.is_empty() {
        Error::Invalid(format!("{origin}: {msg}"))
    } else {
        Error::Invalid(format!("{origin}: {field}: {msg}"))
    }
}

/// Deserializes `value` into `T`, recording ignored fields as warnings and
/// naming the failing field path in errors.
fn typed<T: DeserializeOwned>(
    value: Value,
    origin: &str,
    prefix: &str,
    warnings: &mut Vec<Warning>,
    ignored_note: &str,
) -> Result<T, Error> {
    let mut ignored = Vec::new();
    // serde_ignored spells an Option layer as `?`; users never wrote it.
    let mut record = |p: serde_ignored::Path<'_>| {
        ignored.push(p.to_string().replace(".?", "").replace("?.", ""))
    };
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let out: T = serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." {
            prefix.trim_end_matches('.').to_string()
        } else {
            format!("{prefix}{path}")
        };
        invalid(origin, &field, e.into_inner())
    })?;
    for p in ignored {
        warnings.push(Warning {
            field: format!("{prefix}{p}"),
            message: ignored_note.to_string(),
        });
    }
    Ok(out)
}

fn str_field<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    v.get(key).and_then(Value::as_str)
}

/// One YAML document, classified.
enum Doc {
    Kubeboot(Box<NodeConfig>),
    /// A kubeadm document (checked against the field table), its version
    /// and the field-name errors found in it.
    Kubeadm(Kind, Value, String, Vec<String>),
    /// A component configuration (`KubeletConfiguration` or
    /// `KubeProxyConfiguration`) as JSON, and the errors found in it.
    Component(&'static str, serde_json::Value, Vec<String>),
}

fn classify(
    value: Value,
    origin: &str,
    prefix: &str,
    implicit_kubeboot: bool,
    warnings: &mut Vec<Warning>,
) -> Result<Option<Doc>, Error> {
    if value.is_null() {
        return Ok(None);
    }
    if !value.is_mapping() {
        return Err(invalid(
            origin,
            prefix.trim_end_matches('.'),
            "expected a mapping (a YAML object) at the top level",
        ));
    }
    let api = str_field(&value, "apiVersion").map(str::to_owned);
    let kind = str_field(&value, "kind").map(str::to_owned);
    match api.as_deref() {
        None if implicit_kubeboot || kind.is_none() => {
            let c: NodeConfig = typed(value, origin, prefix, warnings, "")?;
            Ok(Some(Doc::Kubeboot(Box::new(c))))
        }
        Some(raw::API_VERSION) => {
            if let Some(k) = kind.as_deref().filter(|k| *k != raw::KIND) {
                return Err(invalid(
                    origin,
                    &format!("{prefix}kind"),
                    format!("{k:?} is not a kubeboot kind; expected {:?}", raw::KIND),
                ));
            }
            let c: NodeConfig = typed(value, origin, prefix, warnings, "")?;
            Ok(Some(Doc::Kubeboot(Box::new(c))))
        }
        Some(v) if kubeadm::VERSIONS.contains(&v) => {
            let version = v.trim_start_matches("kubeadm.k8s.io/").to_string();
            match kind.as_deref() {
                Some(k @ ("ResetConfiguration" | "UpgradeConfiguration")) => {
                    warnings.push(Warning {
                        field: k.into(),
                        message: "document not used by kubeboot; ignored".into(),
                    });
                    Ok(None)
                }
                other => {
                    let Some(k) = other.and_then(Kind::from_name) else {
                        return Err(invalid(
                            origin,
                            "kind",
                            format!(
                                "{:?} is not a kubeadm kind kubeboot reads (InitConfiguration, ClusterConfiguration, JoinConfiguration)",
                                other.unwrap_or("")
                            ),
                        ));
                    };
                    let mut value = value;
                    let checked = kubeadm::check(k, &version, &mut value);
                    warnings.extend(checked.warnings);
                    let errors = checked
                        .errors
                        .iter()
                        .map(|(f, m)| format!("{origin}: {f}: {m}"))
                        .collect();
                    Ok(Some(Doc::Kubeadm(k, value, version, errors)))
                }
            }
        }
        Some(v) if v.starts_with(kubeadm::GROUP) => Err(invalid(
            origin,
            "apiVersion",
            format!(
                "{v:?} is not supported; kubeboot reads kubeadm.k8s.io/v1beta3 and kubeadm.k8s.io/v1beta4"
            ),
        )),
        Some(v @ (component::KUBELET_API | component::KUBE_PROXY_API)) => {
            let want = if v == component::KUBELET_API {
                component::KUBELET_KIND
            } else {
                component::KUBE_PROXY_KIND
            };
            if kind.as_deref() != Some(want) {
                return Err(invalid(
                    origin,
                    "kind",
                    format!(
                        "{:?} is not a kind kubeboot reads in {v}; expected {want:?}",
                        kind.unwrap_or_default()
                    ),
                ));
            }
            let json = serde_json::to_value(&value)
                .map_err(|e| invalid(origin, want, format!("not representable as JSON: {e}")))?;
            let errors = component::check(want, &json)
                .into_iter()
                .map(|(f, m)| format!("{origin}: {f}: {m}"))
                .collect();
            Ok(Some(Doc::Component(want, json, errors)))
        }
        Some(v) => Err(invalid(
            origin,
            "apiVersion",
            format!(
                "{v:?} is not a config kubeboot reads; expected {} or kubeadm.k8s.io/v1beta3|v1beta4",
                raw::API_VERSION
            ),
        )),
        None => Err(invalid(
            origin,
            "apiVersion",
            "missing (a document with a kind must say its apiVersion)",
        )),
    }
}

/// Parses YAML text into its documents.
fn yaml_documents(text: &str, origin: &str) -> Result<Vec<Value>, Error> {
    let mut out = Vec::new();
    for doc in serde_norway::Deserializer::from_str(text) {
        let v: Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| invalid(origin, "", format!("not valid YAML: {e}")))?;
        out.push(v);
    }
    Ok(out)
}

/// Parses the documents found in one piece of userdata into one raw config.
pub fn parse_documents(docs: &[Document]) -> Result<Parsed, Error> {
    let mut found = Found::default();
    for d in docs {
        found.add(d)?;
    }
    // every misnamed field of every kubeadm document, reported together
    if !found.kubeadm.errors.is_empty() {
        return Err(Error::Invalid(found.kubeadm.errors.join("\n")));
    }
    found.only_one_source()?;
    let Found {
        warnings,
        kubeboot,
        kernel,
        kubeadm,
        components,
    } = found;
    let with = |p: Result<Parsed, Error>| {
        p.map(|mut p| {
            p.components = components.clone();
            p
        })
    };
    if let Some((raw, origin, prefix)) = kubeboot {
        return with(from_kubeboot(raw, origin, prefix, warnings));
    }
    if let Some((raw, origin)) = kernel {
        let names = KERNEL_NAMES
            .iter()
            .map(|(canon, arg)| (canon.to_string(), format!("kubeboot.{arg}")))
            .collect();
        return with(Ok(Parsed {
            raw,
            format: Format::KernelArgs,
            origin,
            prefix: "kubeboot.".into(),
            names,
            warnings,
            components: ComponentConfigs::default(),
        }));
    }
    if kubeadm.any() {
        return with(kubeadm.into_parsed(warnings));
    }
    let origins: Vec<&str> = docs.iter().map(|d| d.origin.as_str()).collect();
    Err(Error::Invalid(if origins.is_empty() {
        "no kubeboot or kubeadm configuration was found in the userdata".to_string()
    } else {
        format!(
            "no kubeboot or kubeadm configuration was found in {}",
            origins.join(", ")
        )
    }))
}

/// The configuration documents found so far, by kind.
#[derive(Default)]
struct Found {
    warnings: Vec<Warning>,
    /// A kubeboot NodeConfig, where it came from and its field prefix.
    kubeboot: Option<(NodeConfig, String, String)>,
    /// `kubeboot.*` kernel arguments and where they came from.
    kernel: Option<(NodeConfig, String)>,
    kubeadm: KubeadmDocs,
    components: ComponentConfigs,
}

/// kubeadm's documents (at most one of each kind).
#[derive(Default)]
struct KubeadmDocs {
    init: Option<Value>,
    cluster: Option<Value>,
    join: Option<Value>,
    /// Field-name errors of every document (see [`kubeadm::check`]).
    errors: Vec<String>,
    /// The API version of the last one (`v1beta4`).
    version: String,
    /// Where the last one came from.
    origin: String,
}

impl Found {
    /// Classifies the documents of `d` into their kinds; a kind found twice
    /// is refused.
    fn add(&mut self, d: &Document) -> Result<(), Error> {
        let values = match &d.body {
            DocBody::Yaml(text) => yaml_documents(text, &d.origin)?,
            DocBody::Value(v) => vec![v.clone()],
            DocBody::KernelArgs(args) => {
                let c = kernel_args(args, &d.origin, &mut self.warnings)?;
                if self.kernel.replace((c, d.origin.clone())).is_some() {
                    return Err(invalid(&d.origin, "", "kernel arguments given twice"));
                }
                return Ok(());
            }
        };
        let implicit = matches!(d.body, DocBody::Value(_))
            || d.origin.contains(crate::host::paths::KUBEBOOT_CONFIG_PATH);
        for v in values {
            crate::secret::remember_in(&v);
            let doc = classify(v, &d.origin, &d.field_prefix, implicit, &mut self.warnings)?;
            let k = &mut self.kubeadm;
            let (what, seen) = match doc {
                None => continue,
                Some(Doc::Kubeboot(c)) => {
                    if let Some((_, o, _)) = &self.kubeboot {
                        return Err(invalid(
                            &d.origin,
                            "",
                            format!(
                                "a second kubeboot NodeConfig was found (the first came from {o}); give exactly one"
                            ),
                        ));
                    }
                    self.kubeboot = Some((*c, d.origin.clone(), d.field_prefix.clone()));
                    continue;
                }
                Some(Doc::Component(kind, value, errors)) => {
                    k.errors.extend(errors);
                    let slot = if kind == component::KUBELET_KIND {
                        &mut self.components.kubelet
                    } else {
                        &mut self.components.kube_proxy
                    };
                    (kind, slot.replace(value).is_some())
                }
                Some(Doc::Kubeadm(kind, value, v, errors)) => {
                    k.version = v;
                    k.errors.extend(errors);
                    let slot = match kind {
                        Kind::Init => &mut k.init,
                        Kind::Cluster => &mut k.cluster,
                        _ => &mut k.join,
                    };
                    (kind.name(), slot.replace(value).is_some())
                }
            };
            if seen {
                return Err(invalid(
                    &d.origin,
                    "",
                    format!("a second {what} was found; give exactly one"),
                ));
            }
            k.origin = d.origin.clone();
        }
        Ok(())
    }

    /// Refuses userdata that holds more than one node configuration.
    fn only_one_source(&self) -> Result<(), Error> {
        let mut found = Vec::new();
        if let Some((_, o, _)) = &self.kubeboot {
            found.push(format!("a kubeboot NodeConfig ({o})"));
        }
        if self.kubeadm.any() {
            found.push(format!("kubeadm documents ({})", self.kubeadm.origin));
        }
        if let Some((_, o)) = &self.kernel {
            found.push(format!("kubeboot.* kernel arguments ({o})"));
        }
        if found.len() > 1 {
            return Err(Error::Invalid(format!(
                "the userdata holds more than one node configuration: {}; keep one",
                found.join(" and ")
            )));
        }
        Ok(())
    }
}

fn from_kubeboot(
    raw: NodeConfig,
    origin: String,
    prefix: String,
    warnings: Vec<Warning>,
) -> Result<Parsed, Error> {
    if let Some(v) = raw
        .api_version
        .as_deref()
        .filter(|v| *v != raw::API_VERSION)
    {
        return Err(invalid(
            &origin,
            &format!("{prefix}apiVersion"),
            format!("{v:?} is not {:?}", raw::API_VERSION),
        ));
    }
    Ok(Parsed {
        raw,
        format: Format::Kubeboot,
        origin,
        prefix,
        names: BTreeMap::new(),
        warnings,
        components: ComponentConfigs::default(),
    })
}

impl KubeadmDocs {
    fn any(&self) -> bool {
        self.init.is_some() || self.cluster.is_some() || self.join.is_some()
    }

    /// One raw configuration from kubeadm's documents: an Init or a Join
    /// (not both), with or without a ClusterConfiguration.
    fn into_parsed(self, mut warnings: Vec<Warning>) -> Result<Parsed, Error> {
        let origin = self.origin;
        if self.init.is_some() && self.join.is_some() {
            return Err(Error::Invalid(format!(
                "{origin}: both an InitConfiguration and a JoinConfiguration were found; a node either inits or joins"
            )));
        }
        let is_join = self.join.is_some();
        if self.cluster.is_some() && is_join {
            warnings.push(Warning {
                field: "ClusterConfiguration".into(),
                message: "a joining node takes the cluster's settings from its kube-system/kubeadm-config (kubeadm join ignores this document); what is set here wins over the cluster's, with a warning where they differ".into(),
            });
        }
        if self.init.is_none() && self.join.is_none() {
            return Err(Error::Invalid(format!(
                "{origin}: a ClusterConfiguration alone does not say what this node does; add an InitConfiguration (first control plane) or a JoinConfiguration"
            )));
        }
        let names = kubeadm::names(self.init.is_some(), is_join);
        let value = kubeadm::to_raw(
            self.init.as_ref(),
            self.cluster.as_ref(),
            self.join.as_ref(),
        )
        .map_err(|errs| {
            Error::Invalid(
                errs.into_iter()
                    .map(|(f, m)| format!("{origin}: {f}: {m}"))
                    .collect::<Vec<_>>()
                    .join("\n"),
            )
        })?;
        let raw: NodeConfig = serde_path_to_error::deserialize(value).map_err(|e| {
            let field = kubeadm::rename(&names, &e.path().to_string());
            invalid(&origin, &field, e.into_inner())
        })?;
        Ok(Parsed {
            raw,
            format: Format::Kubeadm(self.version),
            origin,
            prefix: String::new(),
            names,
            warnings,
            components: ComponentConfigs::default(),
        })
    }
}

/// Canonical field → kernel argument name (without `kubeboot.`).
const KERNEL_NAMES: &[(&str, &str)] = &[
    ("role", "role"),
    ("server", "server"),
    ("token", "token"),
    ("caCertHash", "ca-cert-hash"),
    ("caCertHashes", "ca-cert-hash"),
    ("certificateKey", "certificate-key"),
    ("unsafeSkipCAVerification", "unsafe-skip-ca-verification"),
    ("node.name", "node-name"),
    ("node.advertiseAddress", "advertise-address"),
    ("node.criSocket", "cri-socket"),
    ("cluster.kubernetesVersion", "kubernetes-version"),
];

/// Kernel arguments kubeboot reads elsewhere (not node configuration).
const KERNEL_OTHER: &[&str] = &["platform", "config", "config.sha256", "config.ca"];

fn kernel_args(
    args: &[(String, String)],
    origin: &str,
    warnings: &mut Vec<Warning>,
) -> Result<NodeConfig, Error> {
    let mut c = NodeConfig::default();
    let mut node = RawNode::default();
    let mut cluster = RawCluster::default();
    let mut hashes = Vec::new();
    for (k, v) in args {
        let field = format!("kubeboot.{k}");
        match k.as_str() {
            "role" => c.role = Some(v.clone()),
            "server" => c.server = Some(v.clone()),
            "token" => c.token = Some(Secret::new(v.clone())),
            "ca-cert-hash" => hashes.extend(v.split(',').map(str::to_owned)),
            "certificate-key" => c.certificate_key = Some(Secret::new(v.clone())),
            "unsafe-skip-ca-verification" => {
                c.unsafe_skip_ca_verification = Some(match v.as_str() {
                    "true" | "1" | "yes" => true,
                    "false" | "0" | "no" => false,
                    _ => {
                        return Err(invalid(
                            origin,
                            &field,
                            format!("{v:?} is not true or false"),
                        ));
                    }
                })
            }
            "node-name" => node.name = Some(v.clone()),
            "advertise-address" => node.advertise_address = Some(v.clone()),
            "cri-socket" => node.cri_socket = Some(v.clone()),
            "kubernetes-version" => cluster.kubernetes_version = Some(v.clone()),
            k if KERNEL_OTHER.contains(&k) => {}
            _ => warnings.push(Warning {
                field,
                message: "unknown kubeboot kernel argument; ignored".into(),
            }),
        }
    }
    if !hashes.is_empty() {
        c.ca_cert_hashes = Some(hashes);
    }
    c.node = Some(node);
    c.cluster = Some(cluster);
    Ok(c)
}
