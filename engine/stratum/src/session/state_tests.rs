//! The exported state against the live session: a round trip through JSON loses nothing that
//! changes what the session answers next, and a state that does not fit is refused.

use proptest::prelude::*;

use super::test_fixture::{ADDRESS, NOW_MS};
use super::*;

/// The fixture's job on a block of its own per id.
fn job(id: u64) -> Arc<Job> {
    super::test_fixture::job(id, id as u8, 0x1d00_ffff)
}

/// Difficulties so low that every hash is a share (below 2^-32), with vardiff retargeting often,
/// a short job history and few workers and suggestions, so the limits are reached.
fn config() -> SessionConfig {
    let mut limits = SessionLimits {
        max_workers: 2,
        max_invalid_streak: 30,
        max_suggestions_per_minute: 3,
        session_save_interval_ms: 2_000,
        ..SessionLimits::default()
    };
    limits.max_failed_authorize = 4;
    SessionConfig {
        start_difficulty: Difficulty::new(1e-12).unwrap(),
        min_difficulty: Difficulty::new(1e-12).unwrap(),
        max_difficulty: Difficulty::new(2e-11).unwrap(),
        vardiff: Some(VardiffConfig {
            retarget_shares: 3,
            retarget_interval_ms: 5_000,
            ..VardiffConfig::default()
        }),
        limits,
        job_history: 4,
        duplicate_limits: DuplicateLimits {
            max_jobs: 4,
            max_shares_per_job: 3,
        },
        ..SessionConfig::new(Network::Regtest)
    }
}

#[derive(Debug, Clone)]
enum Op {
    Subscribe {
        session_id: bool,
    },
    Configure {
        mask: u32,
        minimum: u8,
    },
    Authorize {
        rig: u8,
        password: u8,
        bad: bool,
    },
    /// A share on the `job`-th newest job of the book at this extranonce2 (nonce 0: at these
    /// difficulties every hash is one).
    Submit {
        job: u8,
        extranonce2: u8,
        rolled: bool,
        rig: u8,
    },
    SubmitUnknownJob,
    SubmitBadNtime,
    Suggest(u8),
    ExtranonceSubscribe,
    Garbage,
    PushJob,
    Tick(u64),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => any::<bool>().prop_map(|session_id| Op::Subscribe { session_id }),
        1 => (
            prop_oneof![Just(0x1fff_e000), Just(0x0000_6000), Just(0xffff_ffff)],
            0u8..3
        )
            .prop_map(|(mask, minimum)| Op::Configure { mask, minimum }),
        1 => (0u8..3, 0u8..3, prop::bool::weighted(0.2))
            .prop_map(|(rig, password, bad)| Op::Authorize { rig, password, bad }),
        4 => (0u8..3, 0u8..5, prop::bool::weighted(0.3), prop::sample::select(vec![0u8, 0, 0, 1, 2])).prop_map(|(job, extranonce2, rolled, rig)| {
            Op::Submit { job, extranonce2, rolled, rig }
        }),
        1 => Just(Op::SubmitUnknownJob),
        1 => Just(Op::SubmitBadNtime),
        1 => (0u8..4).prop_map(Op::Suggest),
        1 => Just(Op::ExtranonceSubscribe),
        1 => Just(Op::Garbage),
        2 => Just(Op::PushJob),
        2 => (0u64..4_000).prop_map(Op::Tick),
    ]
}

/// The surroundings both sessions share: the job book and the clock.
struct World {
    book: JobBook,
    next_job: u64,
    now: u64,
}

impl World {
    fn new() -> World {
        let mut book = JobBook::new(config().job_history);
        book.push(job(1));
        World {
            book,
            next_job: 2,
            now: NOW_MS,
        }
    }

    /// What the op does to the world, and the line it sends, if any.
    fn prepare(&mut self, op: &Op) -> Option<String> {
        let worker = |rig: u8| format!("{ADDRESS}.rig{rig}");
        Some(match op {
            Op::Subscribe { session_id } => {
                let id = if *session_id {
                    r#","00000000000000ab""#
                } else {
                    ""
                };
                format!(r#"{{"id":1,"method":"mining.subscribe","params":["miner/1"{id}]}}"#)
            }
            Op::Configure { mask, minimum } => format!(
                r#"{{"id":2,"method":"mining.configure","params":[["version-rolling","minimum-difficulty"],{{"version-rolling.mask":"{mask:08x}","version-rolling.min-bit-count":2,"minimum-difficulty.value":{}}}]}}"#,
                [1e-12, 5e-12, 1.0][*minimum as usize]
            ),
            Op::Authorize { rig, password, bad } => {
                let name = if *bad {
                    "not-an-address".to_owned()
                } else {
                    worker(*rig)
                };
                let password = ["x", "d=0.000000000003", "d=1"][*password as usize];
                format!(
                    r#"{{"id":3,"method":"mining.authorize","params":["{name}","{password}"]}}"#
                )
            }
            Op::Submit {
                job,
                extranonce2,
                rolled,
                rig,
            } => {
                let jobs: Vec<_> = self.book.jobs().collect();
                let job = jobs[jobs.len() - 1 - (*job as usize % jobs.len())];
                let en2 = u32::from(*extranonce2).to_be_bytes();
                let version = if *rolled { r#","00002000""# } else { "" };
                format!(
                    r#"{{"id":4,"method":"mining.submit","params":["{}","{}","{}","{:08x}","00000000"{version}]}}"#,
                    worker(*rig),
                    job.id,
                    sluice_core::hex::encode(&en2),
                    job.ntime
                )
            }
            Op::SubmitUnknownJob => format!(
                r#"{{"id":5,"method":"mining.submit","params":["{}","ffff","00000000","{:08x}","00000000"]}}"#,
                worker(0),
                NOW_MS / 1000
            ),
            Op::SubmitBadNtime => format!(
                r#"{{"id":6,"method":"mining.submit","params":["{}","{}","00000000","00000001","00000000"]}}"#,
                worker(0),
                self.book.current().unwrap().id
            ),
            Op::Suggest(d) => format!(
                r#"{{"id":7,"method":"mining.suggest_difficulty","params":[{}]}}"#,
                [1e-12, 4e-12, 1e-11, -1.0][*d as usize]
            ),
            Op::ExtranonceSubscribe => {
                r#"{"id":8,"method":"mining.extranonce.subscribe","params":[]}"#.to_owned()
            }
            Op::Garbage => "{not json".to_owned(),
            Op::PushJob => {
                self.book.push(job(self.next_job));
                self.next_job += 1;
                return None;
            }
            Op::Tick(ms) => {
                self.now += ms;
                return None;
            }
        })
    }
}

/// Everything one call of the session gave back, comparable.
#[derive(Debug, PartialEq)]
struct Answer {
    out: Vec<u8>,
    flow: Option<Flow>,
    events: Vec<String>,
}

/// Applies an op (already prepared into `line`) to one session.
fn apply(session: &mut Session, world: &World, op: &Op, line: Option<&str>) -> Answer {
    let ctx = Context::new(&world.book, world.now);
    let mut out = Vec::new();
    let mut events = Vec::new();
    let flow = match (op, line) {
        (_, Some(line)) => {
            let flow = session.handle_line(line.as_bytes(), &ctx, &mut out, &mut events);
            if let Flow::Resume(_) = flow {
                // As the I/O layer does when the store has no such session.
                session.answer_subscribe(&ctx, &mut out, &mut events);
            }
            Some(flow)
        }
        (Op::PushJob, None) => {
            session.push_job(world.book.current().unwrap(), &mut out);
            None
        }
        (_, None) => Some(session.tick(world.now, &mut events)),
    };
    Answer {
        out,
        flow,
        events: events.iter().map(|e| format!("{e:?}")).collect(),
    }
}

/// Drives a session through `ops`, stopping where it closes; whether it did.
fn drive(world: &mut World, session: &mut Session, ops: &[Op]) -> bool {
    for op in ops {
        let line = world.prepare(op);
        let answer = apply(session, world, op, line.as_deref());
        if let Some(Flow::Close(_)) = answer.flow {
            return true;
        }
    }
    false
}

fn fresh(resume: bool) -> Session {
    let mut session = Session::new(
        Arc::new(config()),
        Extranonce1::new(&[0, 0, 0, 42]).unwrap(),
        0xabc,
        NOW_MS,
    );
    if resume {
        session.allow_resume();
    }
    session
}

fn round_trip(session: &Session, book: &JobBook) -> Session {
    let json = serde_json::to_string(&session.export(book).unwrap()).unwrap();
    let state: SessionState = serde_json::from_str(&json).unwrap();
    Session::restore(state, Arc::clone(session.config()), book).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_restored_session_is_the_session(
        resume in any::<bool>(),
        handshake in prop::bool::weighted(0.8),
        before in prop::collection::vec(op(), 0..40),
        after in prop::collection::vec(op(), 1..30),
    ) {
        let mut world = World::new();
        let mut original = fresh(resume);
        // A subscribe naming a session id keeps it pending between two calls; `drive` answers it
        // at once, as the I/O layer does, so the state is never exported in between.
        if handshake {
            let ops = [
                Op::Subscribe { session_id: false },
                Op::Authorize { rig: 0, password: 0, bad: false },
            ];
            assert!(!drive(&mut world, &mut original, &ops));
        }
        if drive(&mut world, &mut original, &before) {
            // A closed session goes nowhere.
            return Ok(());
        }
        let state = original.export(&world.book).unwrap();
        let mut restored = round_trip(&original, &world.book);
        prop_assert_eq!(&restored.export(&world.book).unwrap(), &state);
        prop_assert_eq!(
            serde_json::to_string(&restored.export(&world.book).unwrap()).unwrap(),
            serde_json::to_string(&state).unwrap()
        );
        for op in &after {
            let line = world.prepare(op);
            let a = apply(&mut original, &world, op, line.as_deref());
            let b = apply(&mut restored, &world, op, line.as_deref());
            prop_assert_eq!(&a, &b, "after {:?}", op);
            if let Some(Flow::Close(_)) = a.flow {
                break;
            }
        }
        prop_assert_eq!(original.export(&world.book), restored.export(&world.book));
    }
}

/// A session that has subscribed, authorized and had one share accepted.
fn with_a_share() -> (World, Session) {
    let mut world = World::new();
    let mut session = fresh(false);
    let ops = [
        Op::Subscribe { session_id: false },
        Op::Authorize {
            rig: 0,
            password: 0,
            bad: false,
        },
        Op::Submit {
            job: 0,
            extranonce2: 1,
            rolled: false,
            rig: 0,
        },
    ];
    assert!(!drive(&mut world, &mut session, &ops));
    assert_eq!(session.accepted(), 1);
    (world, session)
}

#[test]
fn an_accepted_share_is_a_duplicate_on_both() {
    let (world, mut original) = with_a_share();
    let mut restored = round_trip(&original, &world.book);
    let op = Op::Submit {
        job: 0,
        extranonce2: 1,
        rolled: false,
        rig: 0,
    };
    let line = World::new().prepare(&op).unwrap();
    for session in [&mut original, &mut restored] {
        let answer = apply(session, &world, &op, Some(&line));
        let reply: serde_json::Value = serde_json::from_slice(&answer.out).unwrap();
        assert_eq!(reply["error"][0], 22, "a duplicate: {reply}");
    }
}

#[test]
fn a_state_that_does_not_fit_is_refused() {
    let (world, session) = with_a_share();
    let config = Arc::clone(session.config());
    let restore = |edit: &dyn Fn(&mut SessionState)| {
        let mut state = session.export(&world.book).unwrap();
        edit(&mut state);
        Session::restore(state, Arc::clone(&config), &world.book).map(|_| ())
    };
    assert_eq!(restore(&|_| {}), Ok(()));
    assert_eq!(
        restore(&|s| s.version = 1),
        Err(RestoreError::Version { found: 1 })
    );
    assert_eq!(
        restore(&|s| s.extranonce1 = vec![1, 2]),
        Err(RestoreError::Extranonce1 {
            found: 2,
            expected: 4
        })
    );
    assert!(matches!(
        restore(&|s| s.difficulty = 0.0),
        Err(RestoreError::Difficulty { .. })
    ));
    assert!(matches!(
        restore(&|s| s.version_mask = VersionMask(0xffff_ffff)),
        Err(RestoreError::VersionMask { .. })
    ));
    assert!(matches!(
        restore(&|s| s.workers = vec!["x".into(); 3]),
        Err(RestoreError::TooManyWorkers { found: 3, max: 2 })
    ));
    assert!(matches!(
        restore(&|s| s.workers = vec!["not-an-address".into()]),
        Err(RestoreError::Worker { .. })
    ));
    assert_eq!(
        restore(&|s| s.sent.push(s.sent[0])),
        Err(RestoreError::JobSentTwice(1))
    );
    assert!(matches!(
        restore(&|s| s.duplicates.jobs.push(s.duplicates.jobs[0].clone())),
        Err(RestoreError::DuplicatesTwice(_))
    ));
    // A job of the book not sent on this connection (its set came with a resume) keeps its set:
    // another engine may still send it.
    let mut book = world.book.clone();
    book.push(job(2));
    let unsent = book.current().unwrap().fingerprint;
    let mut state = session.export(&world.book).unwrap();
    state.duplicates.jobs[0].0 = unsent;
    let restored = Session::restore(state, Arc::clone(&config), &book).unwrap();
    assert_eq!(restored.export(&book).unwrap().duplicates.jobs[0].0, unsent);
    // A job no longer in this book cannot be submitted against: its set is dropped.
    let mut state = session.export(&world.book).unwrap();
    state.duplicates.jobs[0].0 = 99;
    let restored = Session::restore(state, Arc::clone(&config), &world.book).unwrap();
    assert!(restored.export(&world.book).unwrap().duplicates.is_empty());
    assert_eq!(
        restore(&|s| s.duplicates.jobs[0].1 = vec![1, 2, 3, 4]),
        Err(RestoreError::TooManyDuplicates)
    );
    assert!(matches!(
        restore(&|s| s.invalid_streak = 30),
        Err(RestoreError::Closed { max: 30, .. })
    ));
    assert!(matches!(
        restore(&|s| s.failed_authorize = u32::MAX),
        Err(RestoreError::Closed { .. })
    ));
    let message = restore(&|s| s.version = 7).unwrap_err().to_string();
    assert!(message.contains("version 7"), "{message}");
}
