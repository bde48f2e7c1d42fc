//! The relay's checkpoint: the commit-order position it has published up to.

use ordertrail_platform::event_log::Position;
use sqlx::PgConnection;

/// The saved position of relay `name`, [`Position::START`] when it never ran.
pub async fn load(conn: &mut PgConnection, name: &str) -> Result<Position, sqlx::Error> {
    let row: Option<(i64, i64)> = sqlx::query_as(
        "SELECT transaction_id::text::bigint, global_position FROM relay_checkpoints
         WHERE relay_name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    Ok(row.map_or(Position::START, |(t, g)| Position {
        transaction_id: t.unsigned_abs(),
        global_position: g,
    }))
}

/// Save the position of relay `name`. Called on the connection that holds the
/// relay's advisory lock, so a relay that lost its lock cannot move it.
pub async fn save(conn: &mut PgConnection, name: &str, at: Position) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO relay_checkpoints (relay_name, transaction_id, global_position)
         VALUES ($1, $2::text::xid8, $3)
         ON CONFLICT (relay_name) DO UPDATE
         SET transaction_id = EXCLUDED.transaction_id,
             global_position = EXCLUDED.global_position,
             updated_at = now()",
    )
    .bind(name)
    .bind(at.transaction_id.to_string())
    .bind(at.global_position)
    .execute(conn)
    .await
    .map(|_| ())
}
