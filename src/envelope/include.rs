//! cloud-init include lists (`#include`, `#include-once`, and the MIME
//! types `text/x-include-url`, `text/x-include-once-url`): refused.
//!
//! cloud-init fetches every URL of the list at boot and treats what it gets
//! as more userdata, in any format — which may carry the kubeadm config or
//! the cluster's CA files. kubeboot does not fetch URLs named inside
//! userdata: ignoring the list would boot a node without whatever it holds
//! (a fresh CA instead of the cluster's, say), so the list is refused with
//! the alternatives instead. Scripts are different: kubeboot never runs
//! code, so ignoring a script loses nothing kubeboot would have honoured.
//!
//! The URLs are counted the way cloud-init reads the list (one per line,
//! `#include`/`#include-once` prefixes stripped, `#` comment lines and
//! blank lines skipped) but never quoted: a presigned URL is a credential.

use super::{EnvelopeError, Unwrapped};

/// The MIME content types of include lists.
pub(crate) const TYPES: &[&str] = &["text/x-include-url", "text/x-include-once-url"];

/// How many URLs cloud-init would fetch from this list.
pub(crate) fn url_count(text: &str) -> usize {
    text.lines()
        .filter(|line| {
            let lower = line.to_ascii_lowercase();
            let rest = if lower.starts_with("#include-once") {
                line.get("#include-once".len()..).unwrap_or("")
            } else if lower.starts_with("#include") {
                line.get("#include".len()..).unwrap_or("")
            } else {
                line
            };
            let rest = rest.trim();
            !rest.is_empty() && !rest.starts_with('#')
        })
        .count()
}

/// An include list, named `what` (`#include userdata`, `text/x-include-url
/// part`): refused when it names a URL, a warning when it names none.
pub(crate) fn refuse(what: &str, text: &str) -> Result<Unwrapped, EnvelopeError> {
    let n = url_count(text);
    if n == 0 {
        let mut u = Unwrapped::new(what.to_string());
        u.warnings
            .push(format!("{what} names no URL and was ignored"));
        return Ok(u);
    }
    let urls = if n == 1 { "1 URL" } else { "URLs" };
    Err(EnvelopeError(format!(
        "{what} is not supported: it lists {} that cloud-init would fetch at boot, and kubeboot \
         does not fetch URLs named in userdata (what they hold would be missing from the node); \
         put the content in the userdata itself (a MIME multipart or #cloud-config-archive), or \
         name one config with kubeboot.config=<url> and kubeboot.config.sha256=<hex> on the \
         kernel command line",
        if n == 1 {
            urls.to_string()
        } else {
            format!("{n} {urls}")
        }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_urls_like_cloud_init() {
        assert_eq!(
            url_count("#include\nhttp://a/1\n\n# note\nhttps://b/2\n"),
            2
        );
        assert_eq!(url_count("#include http://a/1\n"), 1);
        assert_eq!(url_count("#include-once\n#include-once https://a/x\n"), 1);
        assert_eq!(url_count("#INCLUDE\n   \n#comment\n"), 0);
        assert_eq!(url_count(""), 0);
        // Multi-byte text right after the prefix does not panic.
        assert_eq!(url_count("#includeé\n#include-onceé x\n#includé\n"), 2);
    }

    #[test]
    fn refusal_names_the_envelope_and_never_the_url() {
        let e = refuse(
            "#include userdata",
            "#include\nhttps://bucket.example/u?X-Amz-Signature=abc\n",
        )
        .unwrap_err()
        .0;
        assert!(
            e.starts_with("#include userdata is not supported: it lists 1 URL that cloud-init"),
            "{e}"
        );
        assert!(e.contains("kubeboot.config=<url>"), "{e}");
        assert!(!e.contains("bucket") && !e.contains("Signature"), "{e}");
        let e = refuse("text/x-include-url part", "http://a\nhttp://b\n")
            .unwrap_err()
            .0;
        assert!(e.contains("it lists 2 URLs"), "{e}");
        let u = refuse("#include userdata", "#include\n# nothing yet\n").unwrap();
        assert_eq!(
            u.warnings,
            ["#include userdata names no URL and was ignored"]
        );
    }
}
