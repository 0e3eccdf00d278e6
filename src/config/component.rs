//! kubeadm's component configurations: `KubeletConfiguration`
//! (`kubelet.config.k8s.io/v1beta1`) and `KubeProxyConfiguration`
//! (`kubeproxy.config.k8s.io/v1alpha1`) documents given next to the
//! kubeadm (or kubeboot) documents.
//!
//! Each is checked typed against the field table `component_fields.txt`,
//! generated from the Go types (`tools/component-fields`, from
//! k8s.io/kubelet `config/v1beta1/types.go` and k8s.io/kube-proxy
//! `config/v1alpha1/types.go` at v0.34.1): a name that is not a field is an
//! error naming it (with a did-you-mean), as is a value of the wrong type.
//! The checked document is kept as JSON; the kubelet and kube-proxy
//! renderers merge it over kubeadm's defaults with [`merge_over`].

use serde_json::Value;

/// The kubelet's component-config group/version.
pub const KUBELET_API: &str = "kubelet.config.k8s.io/v1beta1";
/// kube-proxy's component-config group/version.
pub const KUBE_PROXY_API: &str = "kubeproxy.config.k8s.io/v1alpha1";
/// The kubelet's kind.
pub const KUBELET_KIND: &str = "KubeletConfiguration";
/// kube-proxy's kind.
pub const KUBE_PROXY_KIND: &str = "KubeProxyConfiguration";

/// `Kind<TAB>path<TAB>type` lines; `path[]` is a list item, `path{}` a map value.
const FIELDS: &str = include_str!("component_fields.txt");

/// The type of `path` in `kind`, from [`FIELDS`].
fn type_of(kind: &str, path: &str) -> Option<&'static str> {
    FIELDS.lines().find_map(|l| {
        let mut it = l.split('\t');
        (it.next() == Some(kind) && it.next() == Some(path)).then(|| it.next().unwrap_or("any"))
    })
}

/// The field names directly under `prefix` (for a did-you-mean).
fn children(kind: &str, prefix: &str) -> Vec<&'static str> {
    FIELDS
        .lines()
        .filter_map(|l| {
            let mut it = l.split('\t');
            if it.next() != Some(kind) {
                return None;
            }
            let path = it.next()?;
            let rest = if prefix.is_empty() {
                path
            } else {
                path.strip_prefix(prefix)?.strip_prefix('.')?
            };
            (!rest.contains(['.', '[', '{'])).then_some(rest)
        })
        .collect()
}

/// Checks `doc` (a `kind` document, as JSON) against the field table.
/// Returns `(field, message)` for every unknown name and wrong type;
/// `field` is `Kind.path` (list items as `path[i]`).
pub fn check(kind: &str, doc: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    walk(kind, "", "", "object", doc, &mut out);
    out
}

fn walk(kind: &str, path: &str, shown: &str, ty: &str, v: &Value, out: &mut Vec<(String, String)>) {
    let at = |shown: &str| {
        if shown.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{shown}")
        }
    };
    if v.is_null() {
        return;
    }
    let ok = match ty {
        "string" => v.is_string(),
        "bool" => v.is_boolean(),
        "int" => v.is_i64() || v.is_u64(),
        "float" => v.is_number(),
        "duration" => v.as_str().is_some_and(is_go_duration),
        "list" => v.is_array(),
        "map" | "object" => v.is_object(),
        _ => true,
    };
    if !ok {
        let want = match ty {
            "duration" => "a Go duration such as \"10s\" or \"1m30s\"",
            "int" => "an integer",
            "float" => "a number",
            "bool" => "true or false",
            "list" => "a list",
            "map" | "object" => "a mapping",
            _ => "a string",
        };
        out.push((at(shown), format!("expected {want}")));
        return;
    }
    match (ty, v) {
        ("object", Value::Object(m)) => {
            for (k, child) in m {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                let s = if shown.is_empty() {
                    k.clone()
                } else {
                    format!("{shown}.{k}")
                };
                match type_of(kind, &p) {
                    Some(t) => walk(kind, &p, &s, t, child, out),
                    None => out.push((at(&s), unknown(kind, path, k))),
                }
            }
        }
        ("map", Value::Object(m)) => {
            let item = format!("{path}{{}}");
            let t = type_of(kind, &item).unwrap_or("any");
            for (k, child) in m {
                walk(kind, &item, &format!("{shown}.{k}"), t, child, out);
            }
        }
        ("list", Value::Array(a)) => {
            let item = format!("{path}[]");
            let t = type_of(kind, &item).unwrap_or("any");
            for (i, child) in a.iter().enumerate() {
                walk(kind, &item, &format!("{shown}[{i}]"), t, child, out);
            }
        }
        _ => {}
    }
}

/// Whether `s` is what Go's `time.ParseDuration` accepts (`1m30s`,
/// `-1.5h`, `0`, `300ms`), as metav1.Duration decodes it.
fn is_go_duration(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    if s == "0" {
        return true;
    }
    let mut rest = s;
    if rest.is_empty() {
        return false;
    }
    while !rest.is_empty() {
        let n = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let num = &rest[..n];
        if num.is_empty() || num == "." || num.matches('.').count() > 1 {
            return false;
        }
        rest = &rest[n..];
        let u = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        if !matches!(
            &rest[..u],
            "ns" | "us" | "µs" | "μs" | "ms" | "s" | "m" | "h"
        ) {
            return false;
        }
        rest = &rest[u..];
    }
    true
}

/// Edit distance (insert, delete, substitute), case-insensitive.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.to_lowercase().chars().collect();
    let b: Vec<char> = b.to_lowercase().chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.iter().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let sub = prev[j] + usize::from(ca != cb);
            cur[j + 1] = sub.min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

/// Why `name` under `prefix` is not a field of `kind`, with a did-you-mean.
fn unknown(kind: &str, prefix: &str, name: &str) -> String {
    let api = if kind == KUBELET_KIND {
        KUBELET_API
    } else {
        KUBE_PROXY_API
    };
    let mut msg = format!("not a field of {api} {kind}");
    let best = children(kind, prefix)
        .into_iter()
        .map(|c| (distance(c, name), c))
        .min();
    if let Some((d, c)) = best
        && d <= 2.max(name.len() / 5)
    {
        msg.push_str(&format!("; did you mean {c:?}?"));
    }
    msg
}

/// Merges a user component config over defaults, as kubeadm decodes the
/// user's document and then fills only what is unset
/// (`cmd/kubeadm/app/componentconfigs/kubelet.go`, `kubeproxy.go`,
/// `Default()`): mappings are merged key by key; any other value the user
/// gives replaces the default; `null` and `""` count as unset (Go decodes
/// them to the zero value, which kubeadm's defaulting then fills).
pub fn merge_over(defaults: &mut Value, user: &Value) {
    match (defaults, user) {
        (Value::Object(d), Value::Object(u)) => {
            for (k, uv) in u {
                if uv.is_null() || uv.as_str() == Some("") {
                    continue;
                }
                match d.get_mut(k) {
                    Some(dv) if dv.is_object() && uv.is_object() => merge_over(dv, uv),
                    _ => {
                        d.insert(k.clone(), uv.clone());
                    }
                }
            }
        }
        (d, u) => *d = u.clone(),
    }
}

/// kubeadm's warnings for a KubeletConfiguration value that differs from
/// what kubeadm sets (`warnDefaultComponentConfigValue` in
/// `componentconfigs/kubelet.go`): `(field, recommended)` pairs for the
/// fields the user set to something else. The user's value is kept.
pub fn kubelet_deviations(user: &Value, recommended: &Value) -> Vec<(String, String)> {
    deviations(user, recommended, KUBELET_WATCHED)
}

/// The same for a KubeProxyConfiguration (`componentconfigs/kubeproxy.go`).
pub fn kube_proxy_deviations(user: &Value, recommended: &Value) -> Vec<(String, String)> {
    deviations(
        user,
        recommended,
        &["bindAddress", "clusterCIDR", "clientConnection.kubeconfig"],
    )
}

const KUBELET_WATCHED: &[&str] = &[
    "staticPodPath",
    "clusterDNS",
    "clusterDomain",
    "authentication.x509.clientCAFile",
    "authentication.anonymous.enabled",
    "authorization.mode",
    "authentication.webhook.enabled",
    "healthzBindAddress",
    "healthzPort",
    "readOnlyPort",
];

/// `(field, recommended)` for each of `watched` the user set to another
/// value than `recommended` has (absent there: 0).
fn deviations(user: &Value, recommended: &Value, watched: &[&str]) -> Vec<(String, String)> {
    let get = |v: &Value, p: &str| -> Option<Value> {
        let mut cur = v;
        for part in p.split('.') {
            cur = cur.get(part)?;
        }
        (!cur.is_null()).then(|| cur.clone())
    };
    watched
        .iter()
        .filter_map(|p| {
            let u = get(user, p)?;
            if u.as_str() == Some("") {
                return None;
            }
            let r = get(recommended, p).unwrap_or(Value::from(0));
            (u != r).then(|| (p.to_string(), r.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn table_is_parsed_and_has_both_kinds() {
        assert_eq!(type_of(KUBELET_KIND, "cgroupDriver"), Some("string"));
        assert_eq!(
            type_of(KUBELET_KIND, "authentication.anonymous.enabled"),
            Some("bool")
        );
        assert_eq!(
            type_of(KUBE_PROXY_KIND, "conntrack.maxPerCore"),
            Some("int")
        );
        assert_eq!(type_of(KUBE_PROXY_KIND, "cgroupDriver"), None);
        for l in FIELDS.lines() {
            assert_eq!(l.split('\t').count(), 3, "{l}");
        }
    }

    #[test]
    fn unknown_fields_and_wrong_types_are_named() {
        let doc = json!({
            "apiVersion": KUBELET_API, "kind": KUBELET_KIND,
            "maxPods": 50,
            "cgroupDrivr": "systemd",
            "authentication": {"anonymous": {"enabled": "no"}, "x509": {"clientCaFile": "/x"}},
            "syncFrequency": "soon",
            "registerWithTaints": [{"key": "a", "effect": "NoSchedule", "colour": "red"}],
            "evictionHard": {"memory.available": 5},
        });
        let errs = check(KUBELET_KIND, &doc);
        let fields: Vec<&str> = errs.iter().map(|(f, _)| f.as_str()).collect();
        assert_eq!(
            fields,
            [
                "KubeletConfiguration.authentication.anonymous.enabled",
                "KubeletConfiguration.authentication.x509.clientCaFile",
                "KubeletConfiguration.cgroupDrivr",
                "KubeletConfiguration.evictionHard.memory.available",
                "KubeletConfiguration.registerWithTaints[0].colour",
                "KubeletConfiguration.syncFrequency",
            ],
            "{errs:?}"
        );
        assert!(
            errs[2].1.contains("did you mean \"cgroupDriver\""),
            "{errs:?}"
        );
        assert!(
            errs[1].1.contains("did you mean \"clientCAFile\""),
            "{errs:?}"
        );
        assert!(
            check(
                KUBE_PROXY_KIND,
                &json!({"mode": "ipvs", "ipvs": {"strictARP": true}})
            )
            .is_empty()
        );
    }

    #[test]
    fn go_durations() {
        for ok in ["0", "1m30s", "2m0s", "-1.5h", "300ms", "10us", "1h0m0s"] {
            assert!(is_go_duration(ok), "{ok}");
        }
        for bad in ["", "soon", "10", "1d", "m", "1.2.3s", "-"] {
            assert!(!is_go_duration(bad), "{bad}");
        }
    }

    #[test]
    fn merge_keeps_defaults_the_user_did_not_set() {
        let mut d = json!({"a": {"b": 1, "c": 2}, "l": [1, 2], "s": "x", "t": "y"});
        merge_over(
            &mut d,
            &json!({"a": {"c": 3}, "l": [9], "s": null, "t": "", "n": true}),
        );
        assert_eq!(
            d,
            json!({"a": {"b": 1, "c": 3}, "l": [9], "s": "x", "t": "y", "n": true})
        );
    }
}
