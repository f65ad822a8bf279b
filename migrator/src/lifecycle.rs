//! A job's life as a table: which command may run in which phase, and for
//! every refusal, the next step. The commands check here before they touch
//! anything, so no phase has a command that half works (a `cancel` after a
//! rollback dropping the new tables, a `verify` after one reporting the
//! rows that moved on as differences).

use crate::error::MigrateError;
use crate::state::Phase;
use std::fmt;

/// What a person can ask of an existing job (`status` always answers).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    Resume,
    Verify,
    Cutover,
    Rollback,
    Complete,
    Cancel,
}

impl Command {
    pub const ALL: [Command; 6] = [
        Command::Resume,
        Command::Verify,
        Command::Cutover,
        Command::Rollback,
        Command::Complete,
        Command::Cancel,
    ];
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Command::Resume => "resume",
            Command::Verify => "verify",
            Command::Cutover => "cut over",
            Command::Rollback => "roll back",
            Command::Complete => "complete",
            Command::Cancel => "cancel",
        })
    }
}

const UNFINISHED: &str = "the copy is not finished and verified yet: `resume` copies, catches up \
                          and verifies until the job is ready (`status` shows where it is)";
const NOTHING_TO_ROLL_BACK: &str =
    "nothing to roll back: the old layout is still the live one; `cancel` drops the new tables";
const NOT_CUT_OVER: &str = "until a cutover the old layout's tables are the live ones: `cutover` \
                            first, or `cancel` the job";
const INTERRUPTED: &str = "a switch was interrupted: `resume` finishes or undoes it first";
const ROLLED_BACK: &str =
    "rolled back: the old layout serves again; `verify` checks that it holds \
                           every row (the new tables catch up with it first), `complete` drops \
                           them, then start a new job to try again";
const FAILED: &str = "a switch failed and could not be undone: the job's last error (`status`) \
                      names what to check; put the proxies' rules and the tables right by hand, \
                      then start a new job";
const NEW_JOB: &str = "start a new job for another change";

/// Ok when `command` may run on a job in `phase`; otherwise the next step
/// to take, for the refusal's message.
pub fn check(command: Command, phase: Phase) -> Result<(), &'static str> {
    use Command::*;
    use Phase::*;
    match phase {
        Planned | Creating | Copying | CatchingUp | Verifying => match command {
            Resume | Cancel => Ok(()),
            Verify | Cutover => Err(UNFINISHED),
            Rollback => Err(NOTHING_TO_ROLL_BACK),
            Complete => Err(NOT_CUT_OVER),
        },
        Ready => match command {
            Resume | Verify | Cutover | Cancel => Ok(()),
            Rollback => Err(NOTHING_TO_ROLL_BACK),
            Complete => Err(NOT_CUT_OVER),
        },
        CuttingOver | RollingBack => match command {
            Resume => Ok(()),
            _ => Err(INTERRUPTED),
        },
        CutOver => match command {
            Resume | Verify | Rollback | Complete => Ok(()),
            Cutover => {
                Err("already cut over: `complete` drops the old tables, `rollback` goes back")
            }
            Cancel => Err(
                "the new layout is live: `rollback` returns to the old one, then `complete` \
                 drops the new tables",
            ),
        },
        RolledBack => match command {
            Verify | Complete => Ok(()),
            _ => Err(ROLLED_BACK),
        },
        Completed => match command {
            Rollback => Err(
                "completed: the old layout's tables are dropped; a new job with the old config \
                 as its target moves the rows back",
            ),
            _ => Err(NEW_JOB),
        },
        // `cancel` again drops what an interrupted cancel left.
        Cancelled => match command {
            Cancel => Ok(()),
            _ => Err(NEW_JOB),
        },
        Failed => Err(FAILED),
    }
}

/// [`check`] as the command's error: the job, its phase, the command
/// refused and the next step.
pub fn ensure(job: &str, command: Command, phase: Phase) -> Result<(), MigrateError> {
    check(command, phase).map_err(|next| MigrateError::WrongPhase {
        job: job.to_string(),
        phase,
        command,
        next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use Command::*;
    use Phase::*;

    const PHASES: [Phase; 13] = [
        Planned,
        Creating,
        Copying,
        CatchingUp,
        Verifying,
        Ready,
        CuttingOver,
        CutOver,
        RollingBack,
        RolledBack,
        Completed,
        Failed,
        Cancelled,
    ];

    /// The whole table: for each phase, the commands allowed in it.
    #[test]
    fn every_command_in_every_phase() {
        let allowed_in = |phase: Phase| -> Vec<Command> {
            match phase {
                Planned | Creating | Copying | CatchingUp | Verifying => vec![Resume, Cancel],
                Ready => vec![Resume, Verify, Cutover, Cancel],
                CuttingOver | RollingBack => vec![Resume],
                CutOver => vec![Resume, Verify, Rollback, Complete],
                RolledBack => vec![Verify, Complete],
                Cancelled => vec![Cancel],
                Completed | Failed => vec![],
            }
        };
        for phase in PHASES {
            for command in Command::ALL {
                let expected = allowed_in(phase).contains(&command);
                assert_eq!(
                    check(command, phase).is_ok(),
                    expected,
                    "{command} in phase {phase}: {:?}",
                    check(command, phase)
                );
            }
        }
    }

    /// A refusal always names a next step: a command to run, or a new job.
    #[test]
    fn every_refusal_says_what_to_do() {
        for phase in PHASES {
            for command in Command::ALL {
                if let Err(next) = check(command, phase) {
                    assert!(
                        next.contains('`') || next.contains("new job"),
                        "{command} in {phase}: {next}"
                    );
                }
            }
        }
    }

    #[test]
    fn after_a_rollback_the_way_on_is_complete_then_a_new_job() {
        assert!(check(Cancel, RolledBack)
            .unwrap_err()
            .contains("`complete` drops them"));
        assert!(check(Cutover, RolledBack)
            .unwrap_err()
            .contains("start a new job"));
        assert!(check(Complete, Cancelled).unwrap_err().contains("new job"));
    }
}
