-- Cards a portal session asked to attach (ADR 0024): counted before each attach reaches the
-- provider, declined and refused ones included, and capped per session, so a leaked link is no
-- card-testing tool. Counted on the row, in one conditional UPDATE: every node sees the same count.
ALTER TABLE portal_sessions
  ADD COLUMN card_attaches integer NOT NULL DEFAULT 0 CHECK (card_attaches >= 0);
