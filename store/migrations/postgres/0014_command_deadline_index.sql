-- The sweep that expires locks and unlocks past their time-to-live (every 30 s, on every
-- replica) reads only the queued commands that carry a deadline: wipes never do.
CREATE INDEX commands_past_deadline ON commands (deadline)
    WHERE state = 'queued' AND deadline IS NOT NULL;
