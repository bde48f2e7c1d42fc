//! The projector runtime is the one consumer runtime of the platform
//! ([`ordertrail_platform::consumer`]), shared with the saga: store catch-up,
//! then Kafka; batches, positions and the sequence guard in one transaction;
//! rebuild and verify ([`replay`]) into shadow tables.

pub use ordertrail_platform::consumer::{
    ApplyError as ProjectionError, EventRef, Handler as Projector, Origin, ReadModelTable,
    RuntimeConfig, RuntimeError, SourcedEvent, StoredPosition, Written, replay, run,
};
