//! `mint-token`: sign a bearer token for local use with the server's
//! `JWT_SECRET` (and `JWT_ISSUER`, if set) and print it on stdout.
//!
//! ```text
//! export JWT_SECRET=...    # the same secret the server uses
//! cargo run -p ordertrail-api --bin mint-token -- --role customer --sub "$(uuidgen)" --ttl 3600
//! curl -H "Authorization: Bearer $(cargo run -q -p ordertrail-api --bin mint-token -- --role ops --sub alice)" ...
//! ```

use anyhow::Context;
use clap::Parser;
use ordertrail_api::AuthConfig;

/// Mint an HS256 bearer token for the Ordertrail API.
///
/// Signs a token for one role and subject with the server's `JWT_SECRET`
/// (and its `JWT_ISSUER`, `JWT_AUDIENCE` and `JWT_SECRET_KID`, when it has
/// them) and prints it on stdout, for local use with curl or the console.
#[derive(Parser)]
#[command(name = "mint-token", version)]
struct Args {
    /// customer, restaurant, rider, ops or admin.
    #[arg(long)]
    role: String,
    /// The subject: the customer's, restaurant's or rider's UUID; any name for ops and admin.
    #[arg(long)]
    sub: String,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 3600)]
    ttl: i64,
    /// The server's signing secret.
    #[arg(long, env = "JWT_SECRET", hide_env_values = true)]
    jwt_secret: String,
    /// The issuer the server expects, if any.
    #[arg(long, env = "JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// The audience the server expects, if any.
    #[arg(long, env = "JWT_AUDIENCE")]
    jwt_audience: Option<String>,
    /// The `kid` the server knows the secret by, if any.
    #[arg(long, env = "JWT_SECRET_KID")]
    jwt_secret_kid: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let auth = AuthConfig::new(args.jwt_secret.as_bytes(), args.jwt_issuer)
        .with_audience(args.jwt_audience)
        .with_signing_kid(args.jwt_secret_kid);
    let token = auth
        .mint(&args.role, &args.sub, args.ttl)
        .context("minting the token")?;
    println!("{token}");
    Ok(())
}
