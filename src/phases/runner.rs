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

/// Checks that every name in `names` is a phase of `phases`.
pub fn check_names<C>(phases: &[Phase<C>], names: &[String], what: &str) -> Result<(), Error> {
    for n in names {
        if !phases.iter().any(|p| p.name == n) {
            let known: Vec<&str> = phases.iter().map(|p| p.name).collect();
            return Err(Error::Invalid(format!(
                "{what}: {n:?} is not a phase; phases are: {}",
                known.join(", ")
            )));
        }
    }
    Ok(())
}

/// Runs `phases` in order. Returns every phase's record and the first failure.
pub fn run<C>(
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
        let selected = only.is_none_or(|o| o == p.name);
        if !selected || skip.iter().any(|s| s == p.name) {
            if selected {
                log::info!(target: p.name, "skipped on request");
            }
            records.push(PhaseRecord {
                name: p.name,
                outcome: Outcome::Skipped,
                millis: 0.0,
            });
            continue;
        }
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
            },
            Phase {
                name: "b",
                summary: "conditional",
                run_if: |c| c.applies,
                run: |c| {
                    c.ran.push("b");
                    Ok(())
                },
            },
            Phase {
                name: "c",
                summary: "fails",
                run_if: |_| true,
                run: |c| {
                    c.ran.push("c");
                    Err(Error::Failed("disk on fire".into()))
                },
            },
            Phase {
                name: "d",
                summary: "after",
                run_if: |_| true,
                run: |c| {
                    c.ran.push("d");
                    Ok(())
                },
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
}
