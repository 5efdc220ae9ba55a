//! The `sluice-suite` package holds no code of its own: it owns the workspace's integration tests
//! (`tests/`) and criterion benches (`benches/`), which use the `sluice` library from outside, through
//! its public interface.
