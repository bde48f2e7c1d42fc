-- Which projector instance applied each partition's latest batch
-- (`RuntimeConfig::instance`: host, process id and a random suffix). With
-- several instances in one consumer group this shows how the partitions are
-- split; an idle partition keeps the id of whoever applied it last.
ALTER TABLE projector_offsets ADD COLUMN instance text;

-- The status view also lists those instances (same columns as before, one added at the end).
CREATE OR REPLACE VIEW projector_status AS
SELECT projector,
       count(*)::bigint                                         AS partitions,
       sum(events_applied)::bigint                              AS events_applied,
       sum(greatest(high_watermark - next_offset, 0))::bigint   AS events_behind,
       coalesce(max(CASE
                        WHEN high_watermark > next_offset AND last_recorded_at IS NOT NULL
                            THEN extract(epoch FROM now() - last_recorded_at)
                        ELSE 0 END), 0)::double precision       AS seconds_behind,
       max(last_recorded_at)                                    AS last_recorded_at,
       max(updated_at)                                          AS updated_at,
       array_remove(array_agg(DISTINCT instance), NULL)         AS instances
FROM projector_offsets
GROUP BY projector;
