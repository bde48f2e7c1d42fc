//! The rider-ETA projector.

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    ordertrail_projections::cli::main(|args| {
        ordertrail_projections::ProjectorKind::RiderEtas(args.eta_settings())
    })
    .await
}
