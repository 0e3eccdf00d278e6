//! The API objects `kubeadm init` creates after the control plane is up,
//! built as k8s-openapi values with no I/O: the uploaded configuration
//! (upload-config), the control-plane labels and taints (mark-control-plane),
//! bootstrap token Secrets, their RBAC and the public `cluster-info`
//! (bootstrap-token), and the `kubeadm:cluster-admins` binding. Names and
//! contents follow kubeadm's (`phases/uploadconfig`, `phases/markcontrolplane`,
//! `phases/bootstraptoken/*`, constants.go).
//!
//! [`ApiObject`] pairs an object's JSON with the URLs it is created and
//! updated at; [`super::kube`] sends it.

use std::collections::BTreeMap;

use base64::Engine;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::{
    ClusterRole, ClusterRoleBinding, PolicyRule, Role, RoleBinding, RoleRef, Subject,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use k8s_openapi::{ByteString, Metadata, Resource};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::config::{BootstrapToken, BootstrapTokenSpec, Etcd, Settings, Taint};
use crate::error::Error;

/// `kube-system`.
pub const KUBE_SYSTEM: &str = "kube-system";
/// `kube-public`.
pub const KUBE_PUBLIC: &str = "kube-public";
/// The group every default bootstrap token authenticates as (besides `system:bootstrappers`).
pub const NODE_BOOTSTRAP_GROUP: &str = "system:bootstrappers:kubeadm:default-node-token";
/// The group of every node's client certificate.
pub const NODES_GROUP: &str = "system:nodes";
/// The group `admin.conf`'s user belongs to (bound to `cluster-admin`).
pub const CLUSTER_ADMINS_GROUP: &str = "kubeadm:cluster-admins";
/// `kube-system/kubeadm-config`.
pub const KUBEADM_CONFIG: &str = "kubeadm-config";
/// `kube-system/kubelet-config`.
pub const KUBELET_CONFIG: &str = "kubelet-config";
/// `kube-public/cluster-info`.
pub const CLUSTER_INFO: &str = "cluster-info";
/// The control-plane node label (value `""`).
pub const LABEL_CONTROL_PLANE: &str = "node-role.kubernetes.io/control-plane";
/// The label that keeps control-plane nodes out of external load balancers.
pub const LABEL_EXCLUDE_LB: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// The Secret type of bootstrap tokens.
pub const BOOTSTRAP_TOKEN_TYPE: &str = "bootstrap.kubernetes.io/token";
/// The annotation kubeadm puts on the component-config ConfigMaps it generated.
pub const COMPONENT_CONFIG_HASH: &str = "kubeadm.kubernetes.io/component-config.hash";
/// `kube-system/kubeadm-certs`.
pub const KUBEADM_CERTS: &str = "kubeadm-certs";
/// The description of the token that owns `kubeadm-certs` (kubeadm's words).
pub const CERTS_TOKEN_DESCRIPTION: &str = "Proxy for managing TTL for the kubeadm-certs secret";
/// Its TTL: kubeadm's `DefaultCertTokenDuration`, 2 hours.
pub const CERTS_TOKEN_TTL_SECONDS: u64 = 2 * 3600;

/// How an existing object is updated when create says it exists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Update {
    /// Replace it with ours (keeping its resourceVersion).
    Replace,
    /// Set our `data` keys and keep the others (cluster-info keeps the
    /// controller manager's `jws-kubeconfig-<id>` signatures).
    MergeData,
    /// Keep the existing object as it is (kubeadm's `CreateOrRetain`: the
    /// CoreDNS Corefile users edit).
    Retain,
    /// Replace it, but keep its `spec.replicas` (someone scaled it).
    KeepReplicas,
}

/// One object to create or update: its JSON and where it lives.
pub struct ApiObject {
    /// `Kind namespace/name`, for logs and errors.
    pub what: String,
    /// The collection URL path (POST creates here).
    pub collection: String,
    /// The object's URL path (GET/PUT).
    pub item: String,
    /// The object as JSON.
    pub body: Value,
    /// How to update an existing object.
    pub update: Update,
    /// The body holds a secret: never show it, nor the server's answer about it.
    pub sensitive: bool,
}

// Never prints the body: a token Secret's data is in it.
impl std::fmt::Debug for ApiObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiObject")
            .field("what", &self.what)
            .field("item", &self.item)
            .finish_non_exhaustive()
    }
}

/// The collection path of resource `T` in `namespace` (None for cluster-scoped).
pub fn collection_path<T: Resource>(namespace: Option<&str>) -> String {
    let base = if T::GROUP.is_empty() {
        format!("/api/{}", T::VERSION)
    } else {
        format!("/apis/{}/{}", T::GROUP, T::VERSION)
    };
    match namespace {
        Some(ns) => format!("{base}/namespaces/{ns}/{}", T::URL_PATH_SEGMENT),
        None => format!("{base}/{}", T::URL_PATH_SEGMENT),
    }
}

/// Wraps a typed object as an [`ApiObject`].
pub fn object<T>(obj: &T, update: Update) -> ApiObject
where
    T: Resource + Metadata<Ty = ObjectMeta> + serde::Serialize,
{
    let meta = obj.metadata();
    let name = meta.name.clone().unwrap_or_default();
    let ns = meta.namespace.as_deref();
    let collection = collection_path::<T>(ns);
    let what = match ns {
        Some(ns) => format!("{} {ns}/{name}", T::KIND),
        None => format!("{} {name}", T::KIND),
    };
    // k8s-openapi types serialize infallibly (strings, maps, lists); a
    // failure would be a bug, reported as an empty object the server rejects.
    let body = serde_json::to_value(obj).unwrap_or(Value::Null);
    ApiObject {
        what,
        item: format!("{collection}/{name}"),
        collection,
        body,
        update,
        sensitive: T::KIND == "Secret",
    }
}

pub(crate) fn meta(name: &str, namespace: Option<&str>) -> ObjectMeta {
    ObjectMeta {
        name: Some(name.to_string()),
        namespace: namespace.map(str::to_string),
        ..Default::default()
    }
}

pub(crate) fn group(name: &str) -> Subject {
    Subject {
        kind: "Group".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        name: name.into(),
        namespace: None,
    }
}

fn user(name: &str) -> Subject {
    Subject {
        kind: "User".into(),
        api_group: Some("rbac.authorization.k8s.io".into()),
        name: name.into(),
        namespace: None,
    }
}

fn role_ref(kind: &str, name: &str) -> RoleRef {
    RoleRef {
        api_group: Some("rbac.authorization.k8s.io".into()),
        kind: kind.into(),
        name: name.into(),
    }
}

/// A Role allowing `get` on the named ConfigMap, with its RoleBinding to `subjects`.
pub(crate) fn read_configmap(
    name: &str,
    ns: &str,
    cm: &str,
    subjects: Vec<Subject>,
) -> [ApiObject; 2] {
    read_one(name, ns, "configmaps", cm, subjects)
}

/// A Role granting `get` on one named object of `resource`, and its binding.
fn read_one(
    name: &str,
    ns: &str,
    resource: &str,
    target: &str,
    subjects: Vec<Subject>,
) -> [ApiObject; 2] {
    let role = Role {
        metadata: meta(name, Some(ns)),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec![resource.into()]),
            resource_names: Some(vec![target.into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
    };
    let binding = RoleBinding {
        metadata: meta(name, Some(ns)),
        role_ref: role_ref("Role", name),
        subjects: Some(subjects),
    };
    [
        object(&role, Update::Replace),
        object(&binding, Update::Replace),
    ]
}

pub(crate) fn crb(name: &str, cluster_role: &str, subjects: Vec<Subject>) -> ApiObject {
    object(
        &ClusterRoleBinding {
            metadata: meta(name, None),
            role_ref: role_ref("ClusterRole", cluster_role),
            subjects: Some(subjects),
        },
        Update::Replace,
    )
}

/// `kubeadm:cluster-admins`: the group of `admin.conf`'s user → `cluster-admin`.
pub fn cluster_admins_binding() -> ApiObject {
    crb(
        "kubeadm:cluster-admins",
        "cluster-admin",
        vec![group(CLUSTER_ADMINS_GROUP)],
    )
}

/// A Go `time.Duration` string (`8760h0m0s`, `30m0s`, `0s`).
pub fn go_duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    if h > 0 {
        format!("{h}h{m}m{s}s")
    } else if m > 0 {
        format!("{m}m{s}s")
    } else {
        format!("{s}s")
    }
}

fn component(c: &crate::config::Component) -> Value {
    let mut v = serde_json::Map::new();
    if !c.extra_args.is_empty() {
        v.insert("extraArgs".into(), json!(c.extra_args));
    }
    if !c.extra_volumes.is_empty() {
        v.insert("extraVolumes".into(), json!(c.extra_volumes));
    }
    if !c.extra_envs.is_empty() {
        v.insert("extraEnvs".into(), json!(c.extra_envs));
    }
    Value::Object(v)
}

fn joined(nets: &[ipnet::IpNet]) -> String {
    nets.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// `dns` as kubeadm writes it (omitempty fields).
fn dns_config(d: &crate::config::Dns) -> Value {
    let mut m = serde_json::Map::new();
    if let Some(r) = &d.image_repository {
        m.insert("imageRepository".into(), json!(r));
    }
    if let Some(t) = &d.image_tag {
        m.insert("imageTag".into(), json!(t));
    }
    if d.disabled {
        m.insert("disabled".into(), json!(true));
    }
    Value::Object(m)
}

/// kubeadm's `ClusterConfiguration` (`kubeadm.k8s.io/v1beta4`) for these
/// settings, as kubeadm stores it in `kube-system/kubeadm-config`.
pub fn cluster_configuration(s: &Settings) -> Value {
    let c = &s.cluster;
    let mut api_server = component(&c.api_server);
    if !c.cert_sans.is_empty()
        && let Value::Object(m) = &mut api_server
    {
        m.insert("certSANs".into(), json!(c.cert_sans));
    }
    let etcd = match &c.etcd {
        Etcd::Local {
            data_dir,
            server_cert_sans,
            peer_cert_sans,
            image_repository,
            image_tag,
        } => {
            let mut l = serde_json::Map::new();
            l.insert("dataDir".into(), json!(data_dir));
            if let Value::Object(extra) = component(&c.etcd_component) {
                l.extend(extra);
            }
            if !server_cert_sans.is_empty() {
                l.insert("serverCertSANs".into(), json!(server_cert_sans));
            }
            if !peer_cert_sans.is_empty() {
                l.insert("peerCertSANs".into(), json!(peer_cert_sans));
            }
            if let Some(r) = image_repository {
                l.insert("imageRepository".into(), json!(r));
            }
            if let Some(t) = image_tag {
                l.insert("imageTag".into(), json!(t));
            }
            json!({ "local": l })
        }
        Etcd::External {
            endpoints,
            ca_file,
            cert_file,
            key_file,
        } => json!({"external": {
            "endpoints": endpoints, "caFile": ca_file, "certFile": cert_file, "keyFile": key_file,
        }}),
    };
    let mut networking = serde_json::Map::new();
    networking.insert("dnsDomain".into(), json!(c.dns_domain));
    if !c.pod_subnets.is_empty() {
        networking.insert("podSubnet".into(), json!(joined(&c.pod_subnets)));
    }
    networking.insert("serviceSubnet".into(), json!(joined(&c.service_subnets)));
    let mut cc = json!({
        "apiVersion": "kubeadm.k8s.io/v1beta4",
        "kind": "ClusterConfiguration",
        "apiServer": api_server,
        "caCertificateValidityPeriod": go_duration(c.ca_validity_seconds),
        "certificateValidityPeriod": go_duration(c.cert_validity_seconds),
        "certificatesDir": c.certificates_dir,
        "clusterName": c.name,
        "controllerManager": component(&c.controller_manager),
        "dns": dns_config(&c.dns),
        "encryptionAlgorithm": c.key_algorithm.as_str(),
        "etcd": etcd,
        "imageRepository": c.image_repository,
        "kubernetesVersion": c.kubernetes_version,
        "networking": networking,
        "proxy": if c.proxy.disabled { json!({"disabled": true}) } else { json!({}) },
        "scheduler": component(&c.scheduler),
    });
    if let Value::Object(m) = &mut cc {
        if let Some(ep) = &c.control_plane_endpoint {
            m.insert("controlPlaneEndpoint".into(), json!(ep.to_string()));
        }
        if !c.feature_gates.is_empty() {
            let gates: serde_json::Map<String, Value> = c
                .feature_gates
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            m.insert("featureGates".into(), Value::Object(gates));
        }
    }
    cc
}

fn config_map(name: &str, ns: &str, data: BTreeMap<String, String>) -> ConfigMap {
    ConfigMap {
        metadata: meta(name, Some(ns)),
        data: Some(data),
        ..Default::default()
    }
}

/// kubeadm's `ChecksumForConfigMap`: SHA-256 over the `data` values in
/// the byte order of their keys, then the `binaryData` values likewise
/// (keys themselves are not hashed), as `sha256:<hex>`.
pub fn component_config_hash(cm: &ConfigMap) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    // BTreeMap iterates in byte order of the keys, as Go's sort.Strings
    for v in cm.data.iter().flat_map(BTreeMap::values) {
        ctx.update(v.as_bytes());
    }
    for v in cm.binary_data.iter().flat_map(BTreeMap::values) {
        ctx.update(&v.0);
    }
    let hex: String = ctx
        .finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// kubeadm's `SignConfigMap`: annotates a component-config ConfigMap it
/// generated with [`component_config_hash`] (under
/// [`COMPONENT_CONFIG_HASH`]), so `kubeadm upgrade` can tell it was not
/// edited by hand.
pub fn sign_config_map(mut cm: ConfigMap) -> ConfigMap {
    let hash = component_config_hash(&cm);
    cm.metadata
        .annotations
        .get_or_insert_with(BTreeMap::new)
        .insert(COMPONENT_CONFIG_HASH.to_string(), hash);
    cm
}

/// upload-config: `kube-system/kubeadm-config` (key `ClusterConfiguration`,
/// YAML) and `kube-system/kubelet-config` (key `kubelet`: the bytes of the
/// node's `/var/lib/kubelet/config.yaml`), each with the Role and
/// RoleBinding that let nodes and bootstrap tokens read it.
pub fn upload_config(s: &Settings, kubelet_config: &str) -> Result<Vec<ApiObject>, Error> {
    let yaml = crate::yaml::to_string(&cluster_configuration(s))
        .map_err(|e| Error::Failed(format!("ClusterConfiguration does not serialize: {e}")))?;
    let mut out = vec![object(
        &config_map(
            KUBEADM_CONFIG,
            KUBE_SYSTEM,
            BTreeMap::from([("ClusterConfiguration".to_string(), yaml)]),
        ),
        Update::MergeData,
    )];
    out.extend(read_configmap(
        "kubeadm:nodes-kubeadm-config",
        KUBE_SYSTEM,
        KUBEADM_CONFIG,
        vec![group(NODE_BOOTSTRAP_GROUP), group(NODES_GROUP)],
    ));
    // signed, and replaced on update as kubeadm's CreateOrUpdate does (a
    // foreign data key would break the hash)
    out.push(object(
        &sign_config_map(config_map(
            KUBELET_CONFIG,
            KUBE_SYSTEM,
            BTreeMap::from([("kubelet".to_string(), kubelet_config.to_string())]),
        )),
        Update::Replace,
    ));
    out.extend(read_configmap(
        "kubeadm:kubelet-config",
        KUBE_SYSTEM,
        KUBELET_CONFIG,
        vec![group(NODES_GROUP), group(NODE_BOOTSTRAP_GROUP)],
    ));
    Ok(out)
}

/// The Secret `kube-system/bootstrap-token-<id>` for one token, expiring
/// `spec.ttl_seconds` after `now` (never when 0).
pub fn token_secret(
    spec: &BootstrapTokenSpec,
    token: &BootstrapToken,
    now: OffsetDateTime,
) -> Secret {
    let mut data: BTreeMap<String, ByteString> = BTreeMap::new();
    let mut put = |k: &str, v: &str| {
        data.insert(k.to_string(), ByteString(v.as_bytes().to_vec()));
    };
    put("token-id", &token.id);
    put("token-secret", token.secret.expose());
    if let Some(d) = &spec.description {
        put("description", d);
    }
    if spec.ttl_seconds > 0 {
        // a TTL reaching past RFC 3339's last second (year 9999) expires
        // then: `now + ttl` would otherwise overflow (a panic in `time`)
        let at = i64::try_from(spec.ttl_seconds)
            .ok()
            .and_then(|s| {
                now.to_offset(time::UtcOffset::UTC)
                    .checked_add(time::Duration::seconds(s))
            })
            .unwrap_or(time::macros::datetime!(9999-12-31 23:59:59 UTC));
        put("expiration", &rfc3339_seconds(at));
    }
    for u in &spec.usages {
        put(&format!("usage-bootstrap-{u}"), "true");
    }
    if !spec.groups.is_empty() {
        put("auth-extra-groups", &spec.groups.join(","));
    }
    Secret {
        metadata: meta(&format!("bootstrap-token-{}", token.id), Some(KUBE_SYSTEM)),
        type_: Some(BOOTSTRAP_TOKEN_TYPE.into()),
        data: Some(data),
        ..Default::default()
    }
}

/// The token whose Secret owns `kubeadm-certs` (kubeadm's
/// `createShortLivedBootstrapToken`): 2 hours, kubeadm's description, no
/// usages and no groups, so it can neither sign nor authenticate.
pub fn certs_owner_token_spec() -> BootstrapTokenSpec {
    BootstrapTokenSpec {
        token: None,
        description: Some(CERTS_TOKEN_DESCRIPTION.into()),
        ttl_seconds: CERTS_TOKEN_TTL_SECONDS,
        usages: Vec::new(),
        groups: Vec::new(),
    }
}

/// A controller reference to the Secret `name` with `uid`, as
/// `metav1.NewControllerRef(secret, v1/Secret)` makes it: controller and
/// blockOwnerDeletion true.
pub fn secret_controller_ref(name: &str, uid: &str) -> OwnerReference {
    OwnerReference {
        api_version: "v1".into(),
        kind: "Secret".into(),
        name: name.into(),
        uid: uid.into(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

/// The bootstrap-token Secret that controls `secret` (a Secret's JSON),
/// when it has one: the name of its controller reference of kind Secret
/// named `bootstrap-token-*`.
pub fn certs_owner_name(secret: &Value) -> Option<String> {
    secret
        .pointer("/metadata/ownerReferences")?
        .as_array()?
        .iter()
        .filter_map(|r| serde_json::from_value::<OwnerReference>(r.clone()).ok())
        .find(|r| {
            r.controller == Some(true)
                && r.kind == "Secret"
                && r.api_version == "v1"
                && r.name.starts_with("bootstrap-token-")
        })
        .map(|r| r.name)
}

/// The merge patch that makes a bootstrap token expire at `now`: the
/// token cleaner of kube-controller-manager then deletes its Secret.
pub fn expire_token_patch(now: OffsetDateTime) -> Value {
    let at = rfc3339_seconds(now.to_offset(time::UtcOffset::UTC));
    json!({"data": {"expiration": base64::engine::general_purpose::STANDARD.encode(at)}})
}

/// `upload-certs`: the Secret `kube-system/kubeadm-certs` holding the shared
/// files, each already encrypted (nonce ‖ ciphertext ‖ tag, see
/// [`crate::api::certs`]), under kubeadm's data keys, controlled by `owner`
/// (the short-lived token's Secret, so garbage collection deletes it when
/// the token cleaner deletes that); and the Role that lets bootstrap-token
/// holders read it (`kubeadm:kubeadm-certs`).
pub fn kubeadm_certs(encrypted: Vec<(&str, Vec<u8>)>, owner: OwnerReference) -> Vec<ApiObject> {
    let data: BTreeMap<String, ByteString> = encrypted
        .into_iter()
        .map(|(k, v)| (k.to_string(), ByteString(v)))
        .collect();
    let secret = Secret {
        metadata: ObjectMeta {
            owner_references: Some(vec![owner]),
            ..meta(KUBEADM_CERTS, Some(KUBE_SYSTEM))
        },
        type_: Some("Opaque".into()),
        data: Some(data),
        ..Default::default()
    };
    let mut out = vec![object(&secret, Update::Replace)];
    out.extend(read_one(
        "kubeadm:kubeadm-certs",
        KUBE_SYSTEM,
        "secrets",
        KUBEADM_CERTS,
        vec![group(NODE_BOOTSTRAP_GROUP)],
    ));
    out
}

/// RFC 3339 in UTC with whole seconds, as Go's `time.RFC3339` prints it.
fn rfc3339_seconds(t: OffsetDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}Z",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The bootstrap-token RBAC, in kubeadm's order: get-nodes, post CSRs,
/// auto-approve node client CSRs, auto-approve renewals.
pub fn bootstrap_rbac() -> Vec<ApiObject> {
    let get_nodes = ClusterRole {
        metadata: meta("kubeadm:get-nodes", None),
        rules: Some(vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["nodes".into()]),
            verbs: vec!["get".into()],
            ..Default::default()
        }]),
        ..Default::default()
    };
    vec![
        object(&get_nodes, Update::Replace),
        crb(
            "kubeadm:get-nodes",
            "kubeadm:get-nodes",
            vec![group(NODE_BOOTSTRAP_GROUP)],
        ),
        crb(
            "kubeadm:kubelet-bootstrap",
            "system:node-bootstrapper",
            vec![group(NODE_BOOTSTRAP_GROUP)],
        ),
        crb(
            "kubeadm:node-autoapprove-bootstrap",
            "system:certificates.k8s.io:certificatesigningrequests:nodeclient",
            vec![group(NODE_BOOTSTRAP_GROUP)],
        ),
        crb(
            "kubeadm:node-autoapprove-certificate-rotation",
            "system:certificates.k8s.io:certificatesigningrequests:selfnodeclient",
            vec![group(NODES_GROUP)],
        ),
    ]
}

/// The kubeconfig kubeadm publishes in `cluster-info`: one cluster with the
/// empty name, the control-plane endpoint and the embedded CA, written as
/// clientcmd writes it (this exact string is what tokens sign).
pub fn cluster_info_kubeconfig(server: &str, ca_pem: &[u8]) -> String {
    format!(
        "apiVersion: v1\nclusters:\n- cluster:\n    certificate-authority-data: {}\n    server: {server}\n  name: \"\"\ncontexts: null\ncurrent-context: \"\"\nkind: Config\npreferences: {{}}\nusers: null\n",
        base64::engine::general_purpose::STANDARD.encode(ca_pem)
    )
}

/// `kube-public/cluster-info` and the Role/RoleBinding
/// `kubeadm:bootstrap-signer-clusterinfo` that let anyone read it.
pub fn cluster_info(server: &str, ca_pem: &[u8]) -> Vec<ApiObject> {
    let mut out = vec![object(
        &config_map(
            CLUSTER_INFO,
            KUBE_PUBLIC,
            BTreeMap::from([(
                "kubeconfig".to_string(),
                cluster_info_kubeconfig(server, ca_pem),
            )]),
        ),
        Update::MergeData,
    )];
    out.extend(read_configmap(
        "kubeadm:bootstrap-signer-clusterinfo",
        KUBE_PUBLIC,
        CLUSTER_INFO,
        vec![user("system:anonymous")],
    ));
    out
}

/// The fields of a Node kubeboot reads. k8s-openapi's `Node` would do, but
/// its decoder (every field of NodeStatus, NodeSpec, ...) costs some 100 KB
/// of the binary for four fields (docs/building.md); objects kubeboot
/// writes keep k8s-openapi's types. Taints stay JSON so that a patch
/// carries the existing ones back unchanged (timeAdded included).
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct Node {
    /// name, labels, annotations, resourceVersion.
    #[serde(default)]
    pub metadata: NodeMeta,
    /// The taints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spec: Option<NodeSpec>,
    /// The conditions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<NodeStatus>,
}

/// A Node's metadata, as far as kubeboot reads it.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeMeta {
    /// The node name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Labels.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// Annotations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    /// For optimistic concurrency in patches.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resource_version: Option<String>,
}

/// A Node's spec: its taints, as JSON.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct NodeSpec {
    /// Taints (`key`, `value`, `effect`, `timeAdded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub taints: Option<Vec<Value>>,
}

/// A Node's status: its conditions.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct NodeStatus {
    /// Conditions (`Ready`, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conditions: Option<Vec<NodeCondition>>,
}

/// One Node condition.
#[derive(Debug, Default, serde::Deserialize, serde::Serialize)]
pub struct NodeCondition {
    /// `Ready`, `MemoryPressure`, ...
    #[serde(rename = "type", default)]
    pub type_: String,
    /// `True`, `False`, `Unknown`.
    #[serde(default)]
    pub status: String,
}

/// The Node annotation kubeadm (with `NodeLocalCRISocket` off: 1.32 and
/// 1.33 by default) sets in upload-config to remember the CRI socket.
pub const ANNOTATION_CRI_SOCKET: &str = "kubeadm.alpha.kubernetes.io/cri-socket";

/// upload-config (kubeadm's `AnnotateCRISocket`): the JSON merge patch that
/// sets [`ANNOTATION_CRI_SOCKET`] to `socket` on `node`; `None` when it
/// already has that value.
pub fn cri_socket_patch(node: &Node, socket: &str) -> Option<Value> {
    let current = node
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ANNOTATION_CRI_SOCKET));
    (current.map(String::as_str) != Some(socket))
        .then(|| json!({"metadata": {"annotations": {ANNOTATION_CRI_SOCKET: socket}}}))
}

/// mark-control-plane: the JSON merge patch that adds the control-plane
/// labels and `taints` to `node` (existing taints are kept), with the
/// node's resourceVersion so a concurrent change makes it fail with 409.
/// `None` when the node already has them all.
pub fn mark_control_plane_patch(node: &Node, taints: &[Taint]) -> Option<Value> {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    let missing_labels: Vec<&str> = [LABEL_CONTROL_PLANE, LABEL_EXCLUDE_LB]
        .into_iter()
        .filter(|l| labels.get(*l).is_none_or(|v| !v.is_empty()))
        .collect();
    let existing = node
        .spec
        .as_ref()
        .and_then(|s| s.taints.clone())
        .unwrap_or_default();
    let mut all: Vec<Value> = existing.clone();
    let mut added = false;
    for t in taints {
        if !existing
            .iter()
            .any(|e| e["key"] == t.key.as_str() && e["effect"] == t.effect.as_str())
        {
            let mut v = json!({"key": t.key, "effect": t.effect});
            if let (Some(val), Value::Object(m)) = (&t.value, &mut v) {
                m.insert("value".into(), json!(val));
            }
            all.push(v);
            added = true;
        }
    }
    if missing_labels.is_empty() && !added {
        return None;
    }
    let mut metadata = serde_json::Map::new();
    if let Some(rv) = &node.metadata.resource_version {
        metadata.insert("resourceVersion".into(), json!(rv));
    }
    if !missing_labels.is_empty() {
        let l: serde_json::Map<String, Value> = missing_labels
            .iter()
            .map(|k| (k.to_string(), json!("")))
            .collect();
        metadata.insert("labels".into(), Value::Object(l));
    }
    let mut patch = json!({ "metadata": metadata });
    if added && let Value::Object(m) = &mut patch {
        m.insert("spec".into(), json!({ "taints": all }));
    }
    Some(patch)
}

/// The worker join as a kubeboot NodeConfig, without the token secret: the
/// token line names the Secret to read it from.
pub fn join_config(server: &str, token_id: &str, ca_hash: &str) -> String {
    format!(
        "apiVersion: kubeboot.dev/v1alpha1\nrole: worker\nserver: {server}\ntoken: {token_id}.<secret>  # kubectl -n kube-system get secret bootstrap-token-{token_id} -o jsonpath='{{.data.token-secret}}' | base64 -d\ncaCertHash: {ca_hash}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::secret::Secret as S;

    fn token() -> BootstrapToken {
        BootstrapToken {
            id: "abcdef".into(),
            secret: S::new("0123456789abcdef"),
        }
    }

    #[test]
    fn paths_follow_the_resource_types() {
        assert_eq!(
            collection_path::<ConfigMap>(Some("kube-system")),
            "/api/v1/namespaces/kube-system/configmaps"
        );
        assert_eq!(
            collection_path::<ClusterRoleBinding>(None),
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings"
        );
        let o = cluster_admins_binding();
        assert_eq!(
            o.item,
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/kubeadm:cluster-admins"
        );
        assert_eq!(o.body["kind"], "ClusterRoleBinding");
        assert_eq!(o.body["roleRef"]["name"], "cluster-admin");
    }

    #[test]
    fn go_durations() {
        assert_eq!(go_duration(365 * 24 * 3600), "8760h0m0s");
        assert_eq!(go_duration(1800), "30m0s");
        assert_eq!(go_duration(0), "0s");
    }

    #[test]
    fn token_secret_has_kubeadm_fields_and_debug_hides_it() {
        let spec = BootstrapTokenSpec {
            token: None,
            description: None,
            ttl_seconds: 3600,
            usages: crate::config::TokenUsage::ALL.to_vec(),
            groups: vec![NODE_BOOTSTRAP_GROUP.into()],
        };
        let now = time::macros::datetime!(2030-01-02 03:04:05.678 UTC);
        let s = token_secret(&spec, &token(), now);
        let d = s.data.clone().unwrap();
        let get = |k: &str| String::from_utf8(d[k].0.clone()).unwrap();
        assert_eq!(get("token-id"), "abcdef");
        assert_eq!(get("token-secret"), "0123456789abcdef");
        assert_eq!(get("expiration"), "2030-01-02T04:04:05Z");
        assert_eq!(get("usage-bootstrap-signing"), "true");
        assert_eq!(get("auth-extra-groups"), NODE_BOOTSTRAP_GROUP);
        assert!(!d.contains_key("description"));
        let o = object(&s, Update::Replace);
        assert!(o.sensitive);
        let shown = format!("{o:?}");
        assert!(
            shown.starts_with("ApiObject { what: ") && shown.contains("bootstrap-token-abcdef"),
            "{shown}"
        );
        assert!(
            !shown.contains("MDEy") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
        // the longest TTLs the config and `token create --ttl` accept
        // (parse_duration: up to 2^63 s) expire at RFC 3339's last second
        for ttl_seconds in [u64::MAX / 2, 300_000 * 365 * 86400] {
            let far = BootstrapTokenSpec {
                ttl_seconds,
                ..spec.clone()
            };
            let d = token_secret(&far, &token(), now).data.unwrap();
            assert_eq!(d["expiration"].0, b"9999-12-31T23:59:59Z");
        }
        let never = BootstrapTokenSpec {
            ttl_seconds: 0,
            ..spec
        };
        assert!(
            !token_secret(&never, &token(), now)
                .data
                .unwrap()
                .contains_key("expiration")
        );
    }

    /// What a config customises comes back in kubeadm-config's
    /// ClusterConfiguration, and what it leaves empty is left out (kubeadm's
    /// `omitempty`): extra args, volumes and environment of every component,
    /// certSANs, etcd's server and peer SANs, feature gates.
    #[test]
    fn cluster_configuration_keeps_customisations_and_omits_empty_ones() {
        use crate::config::{Arg, Component, EnvVar, ExtraVolume};
        let mut p = crate::config::examples::pki_control_plane();
        p.cluster.cert_sans.clear();
        if let Etcd::Local {
            server_cert_sans,
            peer_cert_sans,
            ..
        } = &mut p.cluster.etcd
        {
            server_cert_sans.clear();
            peer_cert_sans.clear();
        }
        let plain = cluster_configuration(&p);
        for key in ["extraArgs", "extraVolumes", "extraEnvs", "certSANs"] {
            assert!(plain["apiServer"].get(key).is_none(), "{key}: {plain}");
            assert!(plain["scheduler"].get(key).is_none(), "{key}: {plain}");
        }
        for key in ["extraArgs", "serverCertSANs", "peerCertSANs"] {
            assert!(plain["etcd"]["local"].get(key).is_none(), "{key}: {plain}");
        }
        assert!(plain.get("featureGates").is_none(), "{plain}");

        let mut s = crate::config::examples::pki_control_plane();
        let custom = |n: &str| Component {
            extra_args: vec![Arg {
                name: format!("{n}-flag"),
                value: "v".into(),
            }],
            extra_volumes: vec![ExtraVolume {
                name: format!("{n}-vol"),
                host_path: "/srv/a".into(),
                mount_path: "/srv/b".into(),
                read_only: true,
                path_type: String::new(),
            }],
            extra_envs: vec![EnvVar {
                name: format!("{n}_ENV"),
                value: "1".into(),
            }],
        };
        s.cluster.api_server = custom("api");
        s.cluster.scheduler = custom("sched");
        s.cluster.etcd_component = custom("etcd");
        s.cluster.cert_sans = vec!["cp.example.test".into()];
        if let Etcd::Local {
            server_cert_sans,
            peer_cert_sans,
            ..
        } = &mut s.cluster.etcd
        {
            *server_cert_sans = vec!["etcd-s.example.test".into()];
            *peer_cert_sans = vec!["etcd-p.example.test".into()];
        }
        s.cluster.feature_gates.push(("SomeGate".into(), true));
        let cc = cluster_configuration(&s);
        for (field, n) in [
            (&cc["apiServer"], "api"),
            (&cc["scheduler"], "sched"),
            (&cc["etcd"]["local"], "etcd"),
        ] {
            assert_eq!(field["extraArgs"][0]["name"], format!("{n}-flag"), "{cc}");
            assert_eq!(field["extraVolumes"][0]["name"], format!("{n}-vol"), "{cc}");
            assert_eq!(field["extraEnvs"][0]["name"], format!("{n}_ENV"), "{cc}");
        }
        assert_eq!(cc["apiServer"]["certSANs"], json!(["cp.example.test"]));
        assert_eq!(
            cc["etcd"]["local"]["serverCertSANs"],
            json!(["etcd-s.example.test"])
        );
        assert_eq!(
            cc["etcd"]["local"]["peerCertSANs"],
            json!(["etcd-p.example.test"])
        );
        assert_eq!(cc["featureGates"], json!({"SomeGate": true}));
    }

    #[test]
    fn cluster_configuration_is_v1beta4() {
        let mut s = crate::config::examples::pki_control_plane();
        s.cluster.control_plane_endpoint = None;
        let cc = cluster_configuration(&s);
        assert_eq!(cc["apiVersion"], "kubeadm.k8s.io/v1beta4");
        assert_eq!(cc["networking"]["podSubnet"], "10.244.0.0/16");
        assert_eq!(cc["networking"]["serviceSubnet"], "10.96.0.0/12");
        assert_eq!(cc["etcd"]["local"]["dataDir"], "/var/lib/etcd");
        assert_eq!(cc["certificateValidityPeriod"], "8760h0m0s");
        assert_eq!(cc["clusterName"], "kubernetes");
        assert!(cc.get("controlPlaneEndpoint").is_none());
        let objs = upload_config(&s, "kind: KubeletConfiguration\n").unwrap();
        let names: Vec<&str> = objs.iter().map(|o| o.what.as_str()).collect();
        assert_eq!(
            names,
            [
                "ConfigMap kube-system/kubeadm-config",
                "Role kube-system/kubeadm:nodes-kubeadm-config",
                "RoleBinding kube-system/kubeadm:nodes-kubeadm-config",
                "ConfigMap kube-system/kubelet-config",
                "Role kube-system/kubeadm:kubelet-config",
                "RoleBinding kube-system/kubeadm:kubelet-config",
            ]
        );
        let yaml = objs[0].body["data"]["ClusterConfiguration"]
            .as_str()
            .unwrap();
        let back: Value = serde_norway::from_str(yaml).unwrap();
        assert_eq!(back, cc);
    }

    #[test]
    fn component_config_hash_is_kubeadms() {
        // kubeadm: sha256 over the data values in key order, keys not hashed
        let cm = config_map(
            "x",
            KUBE_SYSTEM,
            BTreeMap::from([
                ("b".to_string(), "world".to_string()),
                ("a".to_string(), "hello ".to_string()),
            ]),
        );
        // sha256("hello world")
        assert_eq!(
            component_config_hash(&cm),
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let signed = sign_config_map(cm);
        assert_eq!(
            signed.metadata.annotations.unwrap()[COMPONENT_CONFIG_HASH],
            "sha256:b94d27b9934d3e08a52e52d7da7dabfac484efe37a5380ee9088f7ace2efcde9"
        );
        let s = crate::config::examples::pki_control_plane();
        let objs = upload_config(&s, "kind: KubeletConfiguration\n").unwrap();
        let kc: ConfigMap = serde_json::from_value(objs[3].body.clone()).unwrap();
        assert_eq!(objs[3].update, Update::Replace);
        // sha256:<hex> of any bytes
        let want = crate::pki::spki_hash(b"kind: KubeletConfiguration\n");
        assert_eq!(
            kc.metadata.annotations.unwrap()[COMPONENT_CONFIG_HASH],
            want
        );
        let kadm: ConfigMap = serde_json::from_value(objs[0].body.clone()).unwrap();
        assert!(
            kadm.metadata.annotations.is_none(),
            "kubeadm-config is not signed"
        );
    }

    #[test]
    fn kubeadm_certs_is_owned_by_the_short_lived_token() {
        let spec = certs_owner_token_spec();
        let now = time::macros::datetime!(2030-01-02 03:04:05 UTC);
        let tok = token_secret(&spec, &token(), now);
        let d = tok.data.clone().unwrap();
        let keys: Vec<&str> = d.keys().map(String::as_str).collect();
        assert_eq!(
            keys,
            ["description", "expiration", "token-id", "token-secret"],
            "no usages, no groups"
        );
        assert_eq!(d["expiration"].0, b"2030-01-02T05:04:05Z");
        assert_eq!(d["description"].0, CERTS_TOKEN_DESCRIPTION.as_bytes());
        let owner = secret_controller_ref("bootstrap-token-abcdef", "u-1");
        let objs = kubeadm_certs(vec![("ca.crt", vec![1, 2])], owner);
        // kubeadm's copycerts: an Opaque Secret, the value base64 in `data`
        assert_eq!(objs[0].body["type"], "Opaque");
        assert_eq!(objs[0].body["data"], json!({"ca.crt": "AQI="}));
        assert_eq!(
            objs[0].body["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "Secret", "name": "bootstrap-token-abcdef",
                "uid": "u-1", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(
            certs_owner_name(&objs[0].body).as_deref(),
            Some("bootstrap-token-abcdef")
        );
        let mut foreign = objs[0].body.clone();
        foreign["metadata"]["ownerReferences"][0]["controller"] = json!(false);
        assert!(certs_owner_name(&foreign).is_none());
        assert!(certs_owner_name(&json!({"metadata": {}})).is_none());
        let p = expire_token_patch(now);
        let at = base64::engine::general_purpose::STANDARD
            .decode(p["data"]["expiration"].as_str().unwrap())
            .unwrap();
        assert_eq!(at, b"2030-01-02T03:04:05Z");
    }

    #[test]
    fn cluster_configuration_reflects_the_addons() {
        let mut s = crate::config::examples::pki_control_plane();
        let cc = cluster_configuration(&s);
        assert_eq!((&cc["dns"], &cc["proxy"]), (&json!({}), &json!({})));
        s.cluster.dns = crate::config::Dns {
            disabled: true,
            image_repository: Some("mirror.test/dns".into()),
            image_tag: Some("v9".into()),
        };
        s.cluster.proxy.disabled = true;
        let cc = cluster_configuration(&s);
        assert_eq!(
            cc["dns"],
            json!({"disabled": true, "imageRepository": "mirror.test/dns", "imageTag": "v9"})
        );
        assert_eq!(cc["proxy"], json!({"disabled": true}));
    }

    #[test]
    fn mark_patch_adds_only_what_is_missing() {
        let taint = Taint {
            key: "node-role.kubernetes.io/control-plane".into(),
            value: None,
            effect: crate::config::TaintEffect::NoSchedule,
        };
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "cp-1", "resourceVersion": "7", "labels": {"x": "y"}},
            "spec": {"taints": [{"key": "other", "effect": "NoExecute"}]},
        }))
        .unwrap();
        let p = mark_control_plane_patch(&node, std::slice::from_ref(&taint)).unwrap();
        assert_eq!(p["metadata"]["resourceVersion"], "7");
        assert_eq!(p["metadata"]["labels"][LABEL_CONTROL_PLANE], "");
        assert_eq!(p["metadata"]["labels"][LABEL_EXCLUDE_LB], "");
        assert_eq!(p["spec"]["taints"].as_array().unwrap().len(), 2);
        // applied: nothing more to do
        let mut applied = serde_json::to_value(&node).unwrap();
        json_merge(&mut applied, &p);
        node = serde_json::from_value(applied).unwrap();
        assert!(mark_control_plane_patch(&node, std::slice::from_ref(&taint)).is_none());

        // labelled already, but the taint is there only with another
        // effect: kubeadm matches a taint by key and effect, so it is added
        let labelled: Node = serde_json::from_value(json!({
            "metadata": {"name": "cp-1", "labels": {LABEL_CONTROL_PLANE: "", LABEL_EXCLUDE_LB: ""}},
            "spec": {"taints": [{"key": taint.key, "effect": "PreferNoSchedule"}]},
        }))
        .unwrap();
        let p = mark_control_plane_patch(&labelled, &[taint]).unwrap();
        let taints = p["spec"]["taints"].as_array().unwrap();
        assert_eq!(taints.len(), 2, "{p}");
        assert_eq!(taints[1]["effect"], "NoSchedule", "{p}");
        assert!(
            p["metadata"]
                .get("labels")
                .is_none_or(|l| l.as_object().unwrap().is_empty()),
            "{p}"
        );
    }

    #[test]
    fn cri_socket_patch_sets_the_annotation_once() {
        let sock = "unix:///run/containerd/containerd.sock";
        let mut node: Node = serde_json::from_value(json!({
            "metadata": {"name": "cp-1", "annotations": {"other": "x"}},
        }))
        .unwrap();
        let p = cri_socket_patch(&node, sock).unwrap();
        assert_eq!(
            p,
            json!({"metadata": {"annotations": {"kubeadm.alpha.kubernetes.io/cri-socket": sock}}})
        );
        let mut applied = serde_json::to_value(&node).unwrap();
        json_merge(&mut applied, &p);
        node = serde_json::from_value(applied).unwrap();
        assert_eq!(node.metadata.annotations.as_ref().unwrap()["other"], "x");
        assert!(cri_socket_patch(&node, sock).is_none());
        assert!(cri_socket_patch(&node, "unix:///run/crio/crio.sock").is_some());
    }

    fn json_merge(target: &mut Value, patch: &Value) {
        if let (Value::Object(t), Value::Object(p)) = (&mut *target, patch) {
            for (k, v) in p {
                json_merge(t.entry(k.clone()).or_insert(Value::Null), v);
            }
        } else {
            *target = patch.clone();
        }
    }

    #[test]
    fn cluster_info_round_trips_through_discovery() {
        let key = rcgen::KeyPair::generate().unwrap();
        let ca = rcgen::CertificateParams::new(Vec::<String>::new())
            .unwrap()
            .self_signed(&key)
            .unwrap()
            .pem()
            .into_bytes();
        let objs = cluster_info("https://10.0.0.10:6443", &ca);
        assert_eq!(
            objs[0].item,
            "/api/v1/namespaces/kube-public/configmaps/cluster-info"
        );
        assert_eq!(objs[2].body["subjects"][0]["name"], "system:anonymous");
        let kc = objs[0].body["data"]["kubeconfig"]
            .as_str()
            .unwrap()
            .to_string();
        let mut cm = objs[0].body.clone();
        cm["data"]["jws-kubeconfig-abcdef"] =
            json!(super::super::discovery::sign_detached(&kc, &token()));
        let pin = crate::pki::ca_hash(&ca).unwrap();
        let info = super::super::discovery::verify_cluster_info(
            &serde_json::to_vec(&cm).unwrap(),
            &token(),
            &[pin],
            false,
        )
        .unwrap();
        assert_eq!(info.server, "https://10.0.0.10:6443");
        assert_eq!(info.ca_pem, ca);
    }
}
