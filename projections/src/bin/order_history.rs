//! The order-history projector.

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    ordertrail_projections::cli::main(|_| ordertrail_projections::ProjectorKind::OrderHistory).await
}
