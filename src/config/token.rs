//! The bootstrap token `<id>.<secret>`: its one home. Generated here for
//! an init node that was given none, parsed here from userdata.

use ring::rand::SecureRandom;
use serde::Serialize;

use crate::error::Error;
use crate::secret::Secret;

/// kubeadm's token alphabet (`[a-z0-9]`).
const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";

/// A bootstrap token `<id>.<secret>`; the secret half never prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootstrapToken {
    /// The public six-character id.
    pub id: String,
    /// The sixteen-character secret.
    pub secret: Secret,
}

impl BootstrapToken {
    /// A new random token from the system CSPRNG, with kubeadm's alphabet
    /// and lengths (`[a-z0-9]{6}.[a-z0-9]{16}`).
    pub fn generate() -> Result<BootstrapToken, Error> {
        let rng = ring::rand::SystemRandom::new();
        let mut out = String::with_capacity(22);
        while out.len() < 22 {
            let mut buf = [0u8; 32];
            rng.fill(&mut buf)
                .map_err(|_| Error::Failed("the system random number generator failed".into()))?;
            // rejection sampling keeps the distribution uniform: 252 = 7 * 36
            for b in buf {
                if b < 252 && out.len() < 22 {
                    out.push(ALPHABET[(b % 36) as usize] as char);
                }
            }
        }
        let (id, secret) = out.split_at(6);
        Ok(BootstrapToken {
            id: id.to_string(),
            secret: Secret::new(secret),
        })
    }

    /// Parses `<id>.<secret>` with kubeadm's alphabet and lengths; `None`
    /// for anything else (the caller names the field).
    pub fn parse(t: &Secret) -> Option<BootstrapToken> {
        let s = t.expose();
        let (id, secret) = s.split_once('.')?;
        let ok = |p: &str, n: usize| p.len() == n && p.bytes().all(|b| ALPHABET.contains(&b));
        if ok(id, 6) && ok(secret, 16) {
            Some(BootstrapToken {
                id: id.to_string(),
                secret: Secret::new(secret),
            })
        } else {
            None
        }
    }

    /// The full `<id>.<secret>` string, for the API and bootstrap kubeconfig only.
    pub fn expose(&self) -> String {
        format!("{}.{}", self.id, self.secret.expose())
    }
}

impl Serialize for BootstrapToken {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&format_args!("{}.<redacted>", self.id))
    }
}
