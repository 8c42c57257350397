-- Small key/value facts about this deployment (e.g. when the demo catalog was seeded).
CREATE TABLE reprise_meta (
  key text PRIMARY KEY,
  value jsonb NOT NULL,
  updated_at timestamptz NOT NULL DEFAULT now()
);
