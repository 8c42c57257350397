CREATE TABLE audit_log (
  id text PRIMARY KEY,
  api_key_id text NOT NULL,
  action text NOT NULL,
  resource_type text NOT NULL,
  resource_id text,
  request_id text,
  status integer NOT NULL,
  at timestamptz NOT NULL
);
CREATE INDEX audit_log_resource ON audit_log (resource_id, id);
CREATE INDEX audit_log_api_key ON audit_log (api_key_id, id);
