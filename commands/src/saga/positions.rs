//! The saga's Kafka positions (`saga_offsets`): per consumer group and topic
//! partition, the first offset whose commands are not known to be done.

use std::collections::HashMap;
use std::sync::Arc;

use sqlx::{PgExecutor, PgPool};

/// Stored positions of `partitions` (absent ones are not in the map).
pub async fn load(
    pool: &PgPool,
    group_id: &str,
    partitions: &[(String, i32)],
) -> Result<HashMap<(String, i32), i64>, sqlx::Error> {
    let topics: Vec<&str> = partitions.iter().map(|(t, _)| t.as_str()).collect();
    let numbers: Vec<i32> = partitions.iter().map(|(_, p)| *p).collect();
    let rows: Vec<(String, i32, i64)> = sqlx::query_as(
        "SELECT o.topic, o.partition, o.next_offset
         FROM saga_offsets o
         JOIN unnest($2::text[], $3::int[]) AS x(t, p) ON o.topic = x.t AND o.partition = x.p
         WHERE o.group_id = $1",
    )
    .bind(group_id)
    .bind(&topics)
    .bind(&numbers)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(|(t, p, n)| ((t, p), n)).collect())
}

/// Store `next_offset` for a partition; a position never moves backwards.
pub async fn save<'e>(
    executor: impl PgExecutor<'e>,
    group_id: &str,
    topic: &str,
    partition: i32,
    next_offset: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO saga_offsets (group_id, topic, partition, next_offset)
         VALUES ($1, $2, $3, $4)
         ON CONFLICT (group_id, topic, partition) DO UPDATE
         SET next_offset = greatest(saga_offsets.next_offset, EXCLUDED.next_offset),
             updated_at = now()",
    )
    .bind(group_id)
    .bind(topic)
    .bind(partition)
    .bind(next_offset)
    .execute(executor)
    .await?;
    Ok(())
}

/// Where a partition stands in this process.
#[derive(Debug, Clone, Copy)]
struct Slot {
    /// First offset not handled yet.
    next: i64,
    /// What PostgreSQL holds.
    stored: i64,
}

/// The positions of the partitions this instance owns, cached from
/// PostgreSQL. Positions of events that sent commands are written at once;
/// those of events without commands are written by [`Positions::flush`]
/// (losing them only means handling those events again, which does nothing).
#[derive(Debug)]
pub(crate) struct Positions {
    group_id: String,
    slots: HashMap<(Arc<str>, i32), Slot>,
}

impl Positions {
    pub fn new(group_id: String) -> Self {
        Self {
            group_id,
            slots: HashMap::new(),
        }
    }

    /// Remember stored positions (on assignment).
    pub fn assigned(&mut self, stored: impl IntoIterator<Item = ((String, i32), i64)>) {
        for ((topic, partition), next) in stored {
            self.slots.insert(
                (Arc::from(topic.as_str()), partition),
                Slot { next, stored: next },
            );
        }
    }

    /// Forget partitions this instance no longer owns.
    pub fn revoked(&mut self, partitions: &[(String, i32)]) {
        for (topic, partition) in partitions {
            self.slots.remove(&(Arc::from(topic.as_str()), *partition));
        }
    }

    /// The first offset not handled yet, loading it when unknown.
    pub async fn next(
        &mut self,
        pool: &PgPool,
        topic: &Arc<str>,
        partition: i32,
    ) -> Result<i64, sqlx::Error> {
        if let Some(slot) = self.slots.get(&(topic.clone(), partition)) {
            return Ok(slot.next);
        }
        let stored = load(pool, &self.group_id, &[(topic.to_string(), partition)])
            .await?
            .into_values()
            .next()
            .unwrap_or(0);
        self.slots.insert(
            (topic.clone(), partition),
            Slot {
                next: stored,
                stored,
            },
        );
        Ok(stored)
    }

    /// The message at `offset` is handled. With `persist`, the position is
    /// written now; otherwise at the next [`Positions::flush`].
    pub async fn advance(
        &mut self,
        pool: &PgPool,
        topic: &Arc<str>,
        partition: i32,
        offset: i64,
        persist: bool,
    ) -> Result<(), sqlx::Error> {
        let next = offset.saturating_add(1);
        let slot = self
            .slots
            .entry((topic.clone(), partition))
            .or_insert(Slot { next, stored: 0 });
        slot.next = slot.next.max(next);
        if persist {
            save(pool, &self.group_id, topic, partition, slot.next).await?;
            slot.stored = slot.next;
        }
        Ok(())
    }

    /// Write every position that moved since it was last written.
    pub async fn flush(&mut self, pool: &PgPool) -> Result<(), sqlx::Error> {
        for ((topic, partition), slot) in &mut self.slots {
            if slot.next > slot.stored {
                save(pool, &self.group_id, topic, *partition, slot.next).await?;
                slot.stored = slot.next;
            }
        }
        Ok(())
    }

    /// Write the positions of `partitions` (before giving them up).
    pub async fn flush_partitions(
        &mut self,
        pool: &PgPool,
        partitions: &[(String, i32)],
    ) -> Result<(), sqlx::Error> {
        for (topic, partition) in partitions {
            if let Some(slot) = self.slots.get_mut(&(Arc::from(topic.as_str()), *partition))
                && slot.next > slot.stored
            {
                save(pool, &self.group_id, topic, *partition, slot.next).await?;
                slot.stored = slot.next;
            }
        }
        Ok(())
    }
}
