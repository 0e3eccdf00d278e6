//! kubeadm's patches (`patches.directory` in Init/JoinConfiguration,
//! `--patches DIR`), read and applied as kubeadm's
//! `cmd/kubeadm/app/util/patches/patches.go` does:
//!
//! * file names `target[suffix][+patchtype].{json,yaml}`; targets `etcd`,
//!   `kube-apiserver`, `kube-controller-manager`, `kube-scheduler`,
//!   `kubeletconfiguration`, `corednsdeployment`; types `strategic` (the
//!   default), `merge` (RFC 7386), `json` (RFC 6902);
//! * files in the order of a walk of the directory (lexical, as Go's
//!   `filepath.Walk`), each file's YAML documents in order; every patch
//!   for a target applied in that order;
//! * an empty file is skipped; a file whose extension is not `.json` or
//!   `.yaml` is skipped with a warning, as kubeadm does.
//!
//! Stricter than kubeadm, as kubeboot is with config fields: a `.yaml` or
//! `.json` file whose name starts with no known target is an error (kubeadm
//! only logs it), so a misspelt target never silently does nothing.
//!
//! RFC 6902 and RFC 7386 come from the `json-patch` crate. No Rust crate
//! implements Kubernetes' strategic merge patch, so [`strategic`] is
//! kubeboot's own, for the subset kubeadm's targets need: maps merged key
//! by key (`null` deletes), lists of the Pod and Deployment types merged by
//! their `patchMergeKey` (containers, volumes, env, volumeMounts, ports,
//! ...), other lists replaced, the `$patch: replace|delete`,
//! `$retainKeys` and `$deleteFromPrimitiveList/` directives, list order as
//! apimachinery's `normalizeElementOrder`. `$setElementOrder/` directives
//! are accepted and ignored.

use std::path::Path;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::Error;

/// kubeadm's patch targets, in the order its file-name pattern lists them.
pub const TARGETS: [&str; 6] = [
    "etcd",
    "kube-apiserver",
    "kube-controller-manager",
    "kube-scheduler",
    "kubeletconfiguration",
    "corednsdeployment",
];

/// How a patch is applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PatchType {
    /// Kubernetes' strategic merge patch (the default).
    Strategic,
    /// JSON merge patch, RFC 7386.
    Merge,
    /// JSON patch, RFC 6902.
    Json,
}

/// The patches of one file.
#[derive(Debug, Clone, Serialize)]
pub struct PatchFile {
    /// The file (for messages).
    pub file: String,
    /// Its target.
    pub target: &'static str,
    /// Its patch type.
    #[serde(rename = "type")]
    pub kind: PatchType,
    /// Its documents, as JSON.
    pub patches: Vec<Value>,
}

/// Every patch of a patches directory, in kubeadm's order.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Patches {
    /// The directory they came from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub directory: Option<String>,
    /// The files, in order.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<PatchFile>,
}

/// The list shapes a strategic merge patch needs to know for a target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// A `v1.Pod` (the static pods).
    Pod,
    /// An `apps/v1.Deployment` (CoreDNS).
    Deployment,
    /// A type without merge keys (KubeletConfiguration): lists are replaced.
    Plain,
}

impl Schema {
    /// The schema of a target.
    pub fn of(target: &str) -> Schema {
        match target {
            "corednsdeployment" => Schema::Deployment,
            "kubeletconfiguration" => Schema::Plain,
            _ => Schema::Pod,
        }
    }
}

/// What a file name says: `Ok(None)` for a file kubeadm skips (another
/// extension), else its target and patch type.
pub fn parse_name(name: &str) -> Result<Option<(&'static str, PatchType)>, String> {
    let Some(stem) = name
        .strip_suffix(".yaml")
        .or_else(|| name.strip_suffix(".json"))
        .filter(|s| !s.is_empty())
    else {
        return Ok(None);
    };
    // kubeadm's pattern: ^(target)([^.+\n]*)?(\+)?(json|merge|strategic)?
    let Some(target) = TARGETS.iter().copied().find(|t| stem.starts_with(t)) else {
        return Err(format!(
            "not a patch target; the name must start with one of {}",
            TARGETS.join(", ")
        ));
    };
    let rest = &stem[target.len()..];
    let after_suffix = rest.find(['.', '+', '\n']).map_or("", |i| &rest[i..]);
    let Some(kind) = after_suffix.strip_prefix('+') else {
        return Ok(Some((target, PatchType::Strategic)));
    };
    let kind = if kind.starts_with("json") {
        PatchType::Json
    } else if kind.starts_with("merge") {
        PatchType::Merge
    } else if kind.starts_with("strategic") {
        PatchType::Strategic
    } else {
        return Err(
            "unknown or missing patch type after '+'; must be one of json, merge, strategic".into(),
        );
    };
    Ok(Some((target, kind)))
}

/// Reads every patch under `dir` (named `shown` in messages). Errors name
/// the file; warnings (files skipped) are returned.
pub fn load(dir: &Path) -> Result<(Patches, Vec<String>), Error> {
    let shown = dir.display().to_string();
    let files = crate::host::fs::walk_files(dir)
        .map_err(|e| Error::Invalid(format!("patches directory {shown}: {e}")))?;
    let mut out = Patches {
        directory: Some(shown.clone()),
        files: Vec::new(),
    };
    let mut warnings = Vec::new();
    let mut errors = Vec::new();
    for (path, bytes) in files {
        let file = path.display().to_string();
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let (target, kind) = match parse_name(&name) {
            Ok(Some(t)) => t,
            Ok(None) => {
                warnings.push(format!(
                    "{file}: ignored: a patch file's extension must be .json or .yaml"
                ));
                continue;
            }
            Err(e) => {
                errors.push(format!("{file}: {e}"));
                continue;
            }
        };
        if bytes.is_empty() {
            warnings.push(format!("{file}: ignored: empty"));
            continue;
        }
        match documents(&bytes, kind) {
            Ok(patches) => out.files.push(PatchFile {
                file,
                target,
                kind,
                patches,
            }),
            Err(e) => errors.push(format!("{file}: {e}")),
        }
    }
    if !errors.is_empty() {
        return Err(Error::Invalid(errors.join("\n")));
    }
    Ok((out, warnings))
}

/// A file's YAML (or JSON) documents, as JSON, each checked for its type.
fn documents(bytes: &[u8], kind: PatchType) -> Result<Vec<Value>, String> {
    let text = std::str::from_utf8(bytes).map_err(|_| "not UTF-8 text".to_string())?;
    let mut out = Vec::new();
    for (i, doc) in serde_norway::Deserializer::from_str(text).enumerate() {
        let v: serde_norway::Value = serde::Deserialize::deserialize(doc)
            .map_err(|e| format!("document {}: not YAML or JSON: {e}", i + 1))?;
        if v.is_null() {
            continue;
        }
        let v = serde_json::to_value(&v)
            .map_err(|e| format!("document {}: not representable as JSON: {e}", i + 1))?;
        match kind {
            PatchType::Json => {
                serde_json::from_value::<json_patch::Patch>(v.clone())
                    .map_err(|e| format!("document {}: not an RFC 6902 JSON patch: {e}", i + 1))?;
            }
            _ if !v.is_object() => {
                return Err(format!(
                    "document {}: a {} patch must be a mapping",
                    i + 1,
                    if kind == PatchType::Merge {
                        "merge"
                    } else {
                        "strategic merge"
                    }
                ));
            }
            _ => {}
        }
        out.push(v);
    }
    Ok(out)
}

impl Patches {
    /// Whether any patch targets `target`.
    pub fn has(&self, target: &str) -> bool {
        self.files.iter().any(|f| f.target == target)
    }

    /// Applies every patch for `target` to `doc`, in order. An error
    /// (exit 2) names the file.
    pub fn apply(&self, target: &str, doc: &mut Value) -> Result<(), Error> {
        for f in self.files.iter().filter(|f| f.target == target) {
            for (i, p) in f.patches.iter().enumerate() {
                let fail = |e: String| {
                    Error::Invalid(format!(
                        "{}: patch {} for {target} could not be applied: {e}",
                        f.file,
                        i + 1
                    ))
                };
                match f.kind {
                    PatchType::Json => {
                        let patch: json_patch::Patch =
                            serde_json::from_value(p.clone()).map_err(|e| fail(e.to_string()))?;
                        json_patch::patch(doc, &patch).map_err(|e| fail(e.to_string()))?;
                    }
                    PatchType::Merge => json_patch::merge(doc, p),
                    PatchType::Strategic => {
                        let merged = strategic(doc.clone(), p, Schema::of(target), &mut Vec::new())
                            .map_err(fail)?;
                        *doc = merged;
                    }
                }
                log::info!(target: "patches", "applied patch of type {:?} from {} to target {target}", f.kind, f.file);
            }
        }
        Ok(())
    }
}

/// The `patchMergeKey` of the list at `path` (field names from the
/// object's root, list indices left out), from the Kubernetes types'
/// `patchStrategy:"merge"` tags; `None`: the list is replaced.
fn merge_key(schema: Schema, path: &[String]) -> Option<&'static str> {
    let p: Vec<&str> = path.iter().map(String::as_str).collect();
    let pod: &[&str] = match (schema, p.as_slice()) {
        (Schema::Plain, _) => return None,
        (Schema::Deployment, ["spec", "template", rest @ ..]) => rest,
        (Schema::Deployment, _) => return None,
        (Schema::Pod, all) => all,
    };
    const CONTAINERS: [&str; 3] = ["containers", "initContainers", "ephemeralContainers"];
    match pod {
        ["metadata", "ownerReferences"] => Some("uid"),
        ["spec", c] if CONTAINERS.contains(c) => Some("name"),
        [
            "spec",
            "volumes" | "imagePullSecrets" | "resourceClaims" | "schedulingGates",
        ] => Some("name"),
        ["spec", "hostAliases"] => Some("ip"),
        ["spec", "topologySpreadConstraints"] => Some("topologyKey"),
        ["spec", c, field] if CONTAINERS.contains(c) => match *field {
            "env" => Some("name"),
            "volumeMounts" => Some("mountPath"),
            "volumeDevices" => Some("devicePath"),
            "ports" => Some("containerPort"),
            _ => None,
        },
        _ => None,
    }
}

const DIRECTIVE: &str = "$patch";
const RETAIN_KEYS: &str = "$retainKeys";
const SET_ORDER: &str = "$setElementOrder/";
const DELETE_FROM: &str = "$deleteFromPrimitiveList/";

/// Kubernetes' strategic merge patch of `original` by `patch` (a mapping),
/// for the list shapes of `schema`; `path` is where `original` is.
pub fn strategic(
    original: Value,
    patch: &Value,
    schema: Schema,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let Value::Object(patch) = patch else {
        return Ok(patch.clone());
    };
    let mut original = match original {
        Value::Object(m) => m,
        _ => Map::new(),
    };
    if let Some(d) = patch.get(DIRECTIVE) {
        match d.as_str() {
            Some("replace") => {
                let mut p = patch.clone();
                p.remove(DIRECTIVE);
                return Ok(Value::Object(p));
            }
            Some("delete") => return Ok(Value::Object(Map::new())),
            Some("merge") => {}
            _ => return Err(format!("{}: unknown $patch directive {d}", at(path))),
        }
    }
    if let Some(keep) = patch.get(RETAIN_KEYS) {
        let Some(keep) = keep.as_array() else {
            return Err(format!("{}: $retainKeys must be a list", at(path)));
        };
        original.retain(|k, _| keep.iter().any(|x| x.as_str() == Some(k)));
    }
    for (k, pv) in patch {
        if k == DIRECTIVE || k == RETAIN_KEYS || k.starts_with(SET_ORDER) {
            continue;
        }
        if let Some(field) = k.strip_prefix(DELETE_FROM) {
            let Some(gone) = pv.as_array() else {
                return Err(format!("{}: {k} must be a list", at(path)));
            };
            if let Some(Value::Array(list)) = original.get_mut(field) {
                list.retain(|x| !gone.contains(x));
            }
            continue;
        }
        if pv.is_null() {
            original.remove(k);
            continue;
        }
        let Some(ov) = original.remove(k) else {
            original.insert(k.clone(), strip_directives(pv));
            continue;
        };
        path.push(k.clone());
        let merged = match (ov, pv) {
            (ov @ Value::Object(_), pv @ Value::Object(_)) => strategic(ov, pv, schema, path)?,
            (Value::Array(ol), Value::Array(pl)) => match merge_key(schema, path) {
                Some(key) => merge_list(ol, pl, key, schema, path)?,
                None => Value::Array(pl.iter().map(strip_directives).collect()),
            },
            (_, pv) => strip_directives(pv),
        };
        path.pop();
        original.insert(k.clone(), merged);
    }
    Ok(Value::Object(original))
}

/// A patch value taken as it is (nothing to merge it into), without
/// strategic-merge directives.
fn strip_directives(v: &Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.iter()
                .filter(|(k, _)| {
                    !(k.as_str() == DIRECTIVE
                        || k.as_str() == RETAIN_KEYS
                        || k.starts_with(SET_ORDER)
                        || k.starts_with(DELETE_FROM))
                })
                .map(|(k, v)| (k.clone(), strip_directives(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(strip_directives).collect()),
        other => other.clone(),
    }
}

fn at(path: &[String]) -> String {
    if path.is_empty() {
        "(top level)".into()
    } else {
        path.join(".")
    }
}

/// Merges a list of mappings by `key`, as apimachinery's `mergeSlice`:
/// `$patch: replace` replaces the list, `$patch: delete` items remove
/// theirs, others merge into the item with the same key or are added;
/// then items the patch names come in the patch's order, interleaved
/// with the others in their original order (`normalizeElementOrder`).
fn merge_list(
    mut original: Vec<Value>,
    patch: &[Value],
    key: &str,
    schema: Schema,
    path: &mut Vec<String>,
) -> Result<Value, String> {
    let key_of = |v: &Value| v.get(key).cloned();
    for item in patch {
        if !item.is_object() {
            return Err(format!("{}: list items must be mappings", at(path)));
        }
        match item.get(DIRECTIVE).and_then(Value::as_str) {
            Some("replace") => {
                return Ok(Value::Array(
                    patch
                        .iter()
                        .filter(|i| i.get(DIRECTIVE).is_none())
                        .map(strip_directives)
                        .collect(),
                ));
            }
            Some("delete") | Some("merge") | None => {}
            Some(d) => return Err(format!("{}: unknown $patch directive {d:?}", at(path))),
        }
        if key_of(item).is_none() {
            return Err(format!(
                "{}: an item has no {key:?} (this list is merged by {key})",
                at(path)
            ));
        }
    }
    let server_order = original.clone();
    let mut merged_keys = Vec::new();
    for item in patch {
        let k = key_of(item);
        if item.get(DIRECTIVE).and_then(Value::as_str) == Some("delete") {
            original.retain(|o| key_of(o) != k);
            continue;
        }
        match original.iter().position(|o| key_of(o) == k) {
            Some(i) => {
                let o = std::mem::take(&mut original[i]);
                original[i] = strategic(o, item, schema, path)?;
            }
            None => original.push(strip_directives(item)),
        }
        merged_keys.push(k);
    }
    // partition: items the patch names, and the server's others
    let (mut named, others): (Vec<Value>, Vec<Value>) = original
        .into_iter()
        .partition(|o| merged_keys.contains(&key_of(o)));
    let index = |list: &[Value], v: &Value| list.iter().position(|o| key_of(o) == key_of(v));
    named.sort_by_key(|v| index(patch, v).unwrap_or(usize::MAX));
    // mergeSortedSlice(left = others, right = named, serverOrder)
    let mut out = Vec::with_capacity(named.len() + others.len());
    let (mut l, mut r) = (others.into_iter().peekable(), named.into_iter().peekable());
    loop {
        let take_left = match (l.peek(), r.peek()) {
            (None, None) => break,
            (Some(_), None) => true,
            (None, Some(_)) => false,
            (Some(a), Some(b)) => matches!(
                (index(&server_order, a), index(&server_order, b)),
                (Some(ia), Some(ib)) if ia < ib
            ),
        };
        let next = if take_left { l.next() } else { r.next() };
        out.extend(next);
    }
    Ok(Value::Array(out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn file_names_as_kubeadm_reads_them() {
        use PatchType::*;
        for (name, want) in [
            ("etcd.yaml", Some(("etcd", Strategic))),
            (
                "kube-apiserver0+merge.yaml",
                Some(("kube-apiserver", Merge)),
            ),
            (
                "kube-scheduler-extra+json.json",
                Some(("kube-scheduler", Json)),
            ),
            (
                "kubeletconfiguration+strategic.yaml",
                Some(("kubeletconfiguration", Strategic)),
            ),
            (
                "corednsdeployment.json",
                Some(("corednsdeployment", Strategic)),
            ),
            ("README.md", None),
            ("etcd.yml", None),
        ] {
            assert_eq!(parse_name(name).unwrap(), want, "{name}");
        }
        assert!(
            parse_name("kube-apiservr.yaml")
                .unwrap_err()
                .contains("not a patch target")
        );
        assert!(
            parse_name("etcd+strategik.yaml")
                .unwrap_err()
                .contains("after '+'")
        );
        assert!(parse_name("etcd+.yaml").unwrap_err().contains("after '+'"));
    }

    /// Files apply in the order of Go's `filepath.Walk` (bytewise names,
    /// a sub-directory where its name sorts), documents in file order: the
    /// last writer of `spec.priority` wins.
    #[test]
    fn files_apply_in_walk_order() {
        let dir = std::env::temp_dir().join(format!("kubeboot-patch-order-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("sub")).unwrap();
        let put = |name: &str, prio: u32| {
            std::fs::write(dir.join(name), format!("spec: {{priority: {prio}}}\n")).unwrap()
        };
        put("etcd1.yaml", 3);
        put("etcd0+merge.yaml", 2);
        put("sub/etcd.yaml", 4);
        put("etcd+merge.yaml", 1);
        std::fs::write(
            dir.join("etcd2.yaml"),
            "spec: {priority: 5}\n---\nspec: {priority: 6}\n",
        )
        .unwrap();
        std::fs::write(dir.join("notes.txt"), "x").unwrap();
        let (p, warnings) = load(&dir).unwrap();
        let names: Vec<&str> = p
            .files
            .iter()
            .map(|f| f.file.rsplit_once(dir.to_str().unwrap()).unwrap().1)
            .collect();
        assert_eq!(
            names,
            [
                "/etcd+merge.yaml",
                "/etcd0+merge.yaml",
                "/etcd1.yaml",
                "/etcd2.yaml",
                "/sub/etcd.yaml"
            ]
        );
        assert!(
            warnings.len() == 1 && warnings[0].contains("notes.txt"),
            "{warnings:?}"
        );
        let mut pod = json!({"kind": "Pod", "spec": {"priority": 0}});
        p.apply("etcd", &mut pod).unwrap();
        assert_eq!(pod["spec"]["priority"], 4);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn strategic_merges_lists_by_key_and_keeps_apimachinerys_order() {
        let pod = json!({"spec": {
            "containers": [{"name": "a", "image": "a:1", "env": [{"name": "X", "value": "1"}]}],
            "volumes": [{"name": "v1"}, {"name": "v2"}, {"name": "v3"}],
            "tolerations": [{"key": "t"}],
        }});
        let patch = json!({"spec": {
            "containers": [{"name": "a", "env": [{"name": "Y", "value": "2"}]}],
            "volumes": [{"name": "v2", "hostPath": {"path": "/x"}}, {"name": "v9"}, {"name": "v1", "$patch": "delete"}],
            "tolerations": [{"key": "u"}],
        }});
        let out = strategic(pod, &patch, Schema::Pod, &mut vec![]).unwrap();
        assert_eq!(
            out,
            json!({"spec": {
                // a new env item comes before the server's, as apimachinery orders it
                "containers": [{"name": "a", "image": "a:1", "env": [{"name": "Y", "value": "2"}, {"name": "X", "value": "1"}]}],
                "volumes": [{"name": "v2", "hostPath": {"path": "/x"}}, {"name": "v9"}, {"name": "v3"}],
                "tolerations": [{"key": "u"}],
            }})
        );
        // $patch: replace on a list and on a map, null deletes
        let pod = json!({"spec": {"volumes": [{"name": "v1"}], "securityContext": {"a": 1, "b": 2}, "x": 1}});
        let patch = json!({"spec": {"volumes": [{"$patch": "replace"}, {"name": "n"}], "securityContext": {"$patch": "replace", "c": 3}, "x": null}});
        assert_eq!(
            strategic(pod, &patch, Schema::Pod, &mut vec![]).unwrap(),
            json!({"spec": {"volumes": [{"name": "n"}], "securityContext": {"c": 3}}})
        );
        // a merged list item without its key is refused
        let err = strategic(
            json!({"spec": {"containers": []}}),
            &json!({"spec": {"containers": [{"image": "x"}]}}),
            Schema::Pod,
            &mut vec![],
        )
        .unwrap_err();
        assert!(
            err.contains("spec.containers") && err.contains("\"name\""),
            "{err}"
        );
    }
}
