//! Job sources: where templates come from and where solved blocks go. For now the simulated chain
//! that `sluice run` embeds; real nodes arrive with issue 4.

pub mod simulated;
