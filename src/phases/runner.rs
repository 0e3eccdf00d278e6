//! The phase runner: phases are data (name, one-line summary, run-if, run);
//! the runner owns their order, `--skip-phases`, single-phase runs,
//! dry-run listings, timings, and the "phase X failed: ..." wrapping.

use std::time::Instant;

use serde::Serialize;

use crate::error::Error;

/// One step of `init` or `join`.
pub struct Phase<C> {
    /// kubeadm-style name (`certs`, `kubelet-start`, ...).
    pub name: &'static str,
    /// One line saying what it does.
    pub summary: &'static str,
    /// Whether the phase applies to this node (e.g. `etcd` only with local etcd).
    pub run_if: fn(&C) -> bool,
    /// The work.
    pub run: fn(&mut C) -> Result<(), Error>,
    /// kubeadm's sub-phases (`certs/apiserver`), in order; empty when the
    /// phase has none. `NAME/all` names them all.
    pub subs: &'static [Sub],
    /// A phase kubeboot has and kubeadm does not.
    pub kubeboot: bool,
}

/// A sub-phase: its name (after `PHASE/`) and what it does.
#[derive(Debug, Clone, Copy)]
pub struct Sub {
    /// Name.
    pub name: &'static str,
    /// One line.
    pub summary: &'static str,
}

/// A context the runner can tell which sub-phases of the phase about to
/// run were selected (every one, unless `phase NAME/SUB` or a skip says
/// otherwise).
pub trait SubPhases {
    /// Called before each phase runs.
    fn select_subs(&mut self, subs: Vec<&'static str>);
}

/// The sub-phases of `p` to run given `skip` and `only`; `None` when the
/// phase does not run at all.
pub fn chosen<C>(p: &Phase<C>, skip: &[String], only: Option<&str>) -> Option<Vec<&'static str>> {
    let all: Vec<&'static str> = p.subs.iter().map(|s| s.name).collect();
    let whole = |n: &str| n == p.name || n.strip_prefix(p.name) == Some("/all");
    let sub_of = |n: &str| {
        n.strip_prefix(p.name)
            .and_then(|r| r.strip_prefix('/'))
            .and_then(|r| all.iter().find(|s| **s == r).copied())
    };
    let mut want = match only {
        None => all.clone(),
        Some(o) if whole(o) => all.clone(),
        Some(o) => vec![sub_of(o)?],
    };
    if skip.iter().any(|s| whole(s)) {
        return None;
    }
    want.retain(|w| !skip.iter().any(|s| sub_of(s) == Some(w)));
    if !all.is_empty() && want.is_empty() {
        return None;
    }
    Some(want)
}

/// Every name `phase`, `--skip-phases` and `skipPhases` accept, in order:
/// `NAME`, then `NAME/all` and `NAME/SUB` for a phase with sub-phases.
pub fn names<C>(phases: &[Phase<C>]) -> Vec<String> {
    let mut out = Vec::new();
    for p in phases {
        out.push(p.name.to_string());
        if !p.subs.is_empty() {
            out.push(format!("{}/all", p.name));
            out.extend(p.subs.iter().map(|s| format!("{}/{}", p.name, s.name)));
        }
    }
    out
}

/// The phase tree as `phase list` prints it (kubeboot's own phases marked).
pub fn tree<C>(phases: &[Phase<C>]) -> String {
    let mut out = String::new();
    for p in phases {
        let mark = if p.kubeboot { " [kubeboot]" } else { "" };
        out.push_str(&format!("{:<32} {}{mark}\n", p.name, p.summary));
        if !p.subs.is_empty() {
            out.push_str(&format!("  /{:<29} {}\n", "all", "every sub-phase below"));
        }
        for s in p.subs {
            out.push_str(&format!("  /{:<29} {}\n", s.name, s.summary));
        }
    }
    out
}

/// What happened to a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    /// It ran and succeeded.
    Done,
    /// Skipped on request (`--skip-phases` or the config's skipPhases).
    Skipped,
    /// Does not apply to this node.
    NotApplicable,
    /// It ran and failed.
    Failed,
    /// Not reached because an earlier phase failed.
    NotRun,
}

/// One phase's record, for the status file.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseRecord {
    /// Phase name.
    pub name: &'static str,
    /// Outcome.
    pub outcome: Outcome,
    /// Wall time in milliseconds (fractional).
    pub millis: f64,
}

/// A phase failure: the phase name and its error.
#[derive(Debug, thiserror::Error)]
#[error("phase {phase} failed: {error}")]
pub struct PhaseError {
    /// The failing phase.
    pub phase: &'static str,
    /// Why.
    #[source]
    pub error: Error,
}

/// Checks that every name in `given` is a phase or sub-phase of `phases`.
pub fn check_names<C>(phases: &[Phase<C>], given: &[String], what: &str) -> Result<(), Error> {
    let known = names(phases);
    for n in given {
        if !known.iter().any(|k| k == n) {
            return Err(Error::Invalid(format!(
                "{what}: {n:?} is not a phase; phases are: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs `phases` in order. Returns every phase's record and the first failure.
pub fn run<C: SubPhases>(
    phases: &[Phase<C>],
    ctx: &mut C,
    skip: &[String],
    only: Option<&str>,
) -> (Vec<PhaseRecord>, Result<(), PhaseError>) {
    let mut records = Vec::with_capacity(phases.len());
    let mut result = Ok(());
    for p in phases {
        if result.is_err() {
            // a phase that would not have applied is not-applicable, not not-run
            let outcome = if (p.run_if)(ctx) {
                Outcome::NotRun
            } else {
                Outcome::NotApplicable
            };
            records.push(PhaseRecord {
                name: p.name,
                outcome,
                millis: 0.0,
            });
            continue;
        }
        let subs = chosen(p, &[], only);
        let selected = subs.is_some();
        let Some(subs) = chosen(p, skip, only) else {
            if selected {
                log::info!(target: p.name, "skipped on request");
            }
            records.push(PhaseRecord {
                name: p.name,
                outcome: Outcome::Skipped,
                millis: 0.0,
            });
            continue;
        };
        if !(p.run_if)(ctx) {
            log::debug!(target: p.name, "does not apply to this node");
            records.push(PhaseRecord {
                name: p.name,
                outcome: Outcome::NotApplicable,
                millis: 0.0,
            });
            continue;
        }
        log::info!(target: p.name, "start: {}", p.summary);
        if !p.subs.is_empty() && subs.len() < p.subs.len() {
            log::info!(target: p.name, "sub-phases: {}", subs.join(", "));
        }
        ctx.select_subs(subs);
        let t = Instant::now();
        let r = (p.run)(ctx);
        let millis = t.elapsed().as_secs_f64() * 1000.0;
        match r {
            Ok(()) => {
                log::info!(target: p.name, "done in {millis:.1} ms");
                records.push(PhaseRecord {
                    name: p.name,
                    outcome: Outcome::Done,
                    millis,
                });
            }
            Err(error) => {
                log::error!(target: p.name, "failed after {millis:.1} ms");
                records.push(PhaseRecord {
                    name: p.name,
                    outcome: Outcome::Failed,
                    millis,
                });
                result = Err(PhaseError {
                    phase: p.name,
                    error,
                });
            }
        }
    }
    (records, result)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Ctx {
        ran: Vec<&'static str>,
        applies: bool,
        subs: Vec<&'static str>,
    }

    impl SubPhases for Ctx {
        fn select_subs(&mut self, subs: Vec<&'static str>) {
            self.subs = subs;
        }
    }

    fn phases() -> Vec<Phase<Ctx>> {
        vec![
            Phase {
                name: "a",
                summary: "first",
                run_if: |_| true,
                run: |c| {
                    c.ran.push("a");
                    Ok(())
                },
                subs: &[],
                kubeboot: false,
            },
            Phase {
                name: "b",
                summary: "conditional",
                run_if: |c| c.applies,
                run: |c| {
                    c.ran.push("b");
                    Ok(())
                },
                subs: &[],
                kubeboot: false,
            },
            Phase {
                name: "c",
                summary: "fails",
                run_if: |_| true,
                run: |c| {
                    c.ran.push("c");
                    Err(Error::Failed("disk on fire".into()))
                },
                subs: &[],
                kubeboot: false,
            },
            Phase {
                name: "d",
                summary: "after",
                run_if: |_| true,
                run: |c| {
                    c.ran.push("d");
                    Ok(())
                },
                subs: &[],
                kubeboot: false,
            },
        ]
    }

    #[test]
    fn order_run_if_failure_and_not_run() {
        let mut c = Ctx::default();
        let (rec, r) = run(&phases(), &mut c, &[], None);
        assert_eq!(c.ran, vec!["a", "c"]);
        let e = r.unwrap_err();
        assert_eq!(e.to_string(), "phase c failed: disk on fire");
        let outcomes: Vec<Outcome> = rec.iter().map(|r| r.outcome).collect();
        assert_eq!(
            outcomes,
            vec![
                Outcome::Done,
                Outcome::NotApplicable,
                Outcome::Failed,
                Outcome::NotRun
            ]
        );
    }

    #[test]
    fn skip_and_only() {
        let mut c = Ctx {
            applies: true,
            ..Default::default()
        };
        let (_, r) = run(&phases(), &mut c, &["c".into()], None);
        assert!(r.is_ok());
        assert_eq!(c.ran, vec!["a", "b", "d"]);
        let mut c = Ctx {
            applies: true,
            ..Default::default()
        };
        let (rec, r) = run(&phases(), &mut c, &[], Some("b"));
        assert!(r.is_ok());
        assert_eq!(c.ran, vec!["b"]);
        assert_eq!(rec.iter().filter(|r| r.outcome == Outcome::Done).count(), 1);
        assert!(
            check_names(&phases(), &["x".into()], "--skip-phases")
                .unwrap_err()
                .to_string()
                .contains("a, b, c, d")
        );
    }

    /// Issue 11 item 2: `phase NAME/SUB`, `NAME/all`, and skipping single
    /// sub-phases (the form kubeadm's `skipPhases: [addon/kube-proxy]` has).
    #[test]
    fn sub_phases_select_and_skip() {
        const SUBS: &[Sub] = &[
            Sub {
                name: "coredns",
                summary: "",
            },
            Sub {
                name: "kube-proxy",
                summary: "",
            },
        ];
        let p: Phase<Ctx> = Phase {
            name: "addon",
            summary: "",
            run_if: |_| true,
            run: |_| Ok(()),
            subs: SUBS,
            kubeboot: false,
        };
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert_eq!(chosen(&p, &[], None), Some(vec!["coredns", "kube-proxy"]));
        assert_eq!(
            chosen(&p, &s(&["addon/kube-proxy"]), None),
            Some(vec!["coredns"])
        );
        assert_eq!(chosen(&p, &s(&["addon/all"]), None), None);
        assert_eq!(
            chosen(&p, &s(&["addon/coredns", "addon/kube-proxy"]), None),
            None
        );
        assert_eq!(
            chosen(&p, &[], Some("addon/kube-proxy")),
            Some(vec!["kube-proxy"])
        );
        assert_eq!(
            chosen(&p, &[], Some("addon/all")),
            Some(vec!["coredns", "kube-proxy"])
        );
        assert_eq!(chosen(&p, &[], Some("certs")), None);
        assert_eq!(chosen(&p, &[], Some("addon/nope")), None);
        let list = vec![p];
        assert!(check_names(&list, &s(&["addon/kube-proxy", "addon/all", "addon"]), "x").is_ok());
        let e = check_names(&list, &s(&["addon/nope"]), "skipPhases")
            .unwrap_err()
            .to_string();
        assert!(e.contains("addon/coredns"), "{e}");
        let mut c = Ctx::default();
        let (rec, r) = run(&list, &mut c, &s(&["addon/coredns"]), None);
        assert!(r.is_ok());
        assert_eq!(rec[0].outcome, Outcome::Done);
        assert_eq!(c.subs, vec!["kube-proxy"]);
        assert!(tree(&list).contains("  /kube-proxy"));
    }
}
