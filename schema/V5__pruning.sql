-- The pruner (api/src/outbox/prune.rs) deletes published outbox rows and applied-event
-- records once they are older than their retention; these indexes let it find them without
-- scanning the tables. Only published rows are in the first: unpublished ones are never
-- pruned.
CREATE INDEX outbox_published_at_idx ON outbox (published_at) WHERE published_at IS NOT NULL;
CREATE INDEX applied_events_applied_at_idx ON applied_events (applied_at);
