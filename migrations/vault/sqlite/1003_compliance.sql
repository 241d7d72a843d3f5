-- Compliance (issue 5): what recipients, mailbox providers and carriers told Herald.

-- Mailman's bounce score of an email address (bounce_score_threshold 5.0, hard +1.0, soft +0.5,
-- one increase a day, reset after bounce_info_stale_after = 7 days). `bounce_last_at` is the
-- time of the last bounce that counted (microseconds since the epoch; 0: none yet), so a
-- score update can be a compare-and-set on it.
ALTER TABLE email_addresses ADD COLUMN bounce_score REAL NOT NULL DEFAULT 0;
ALTER TABLE email_addresses ADD COLUMN bounce_last_at BIGINT NOT NULL DEFAULT 0;

-- Phone numbers that replied STOP (or another opt-out keyword), by the blind index of their
-- E.164 form (the same index as the number's SMS contacts): no plaintext number is kept. While
-- a number is here no SMS of any kind goes to it, whichever account verified it and when.
CREATE TABLE sms_opt_outs (
    number_index  BLOB PRIMARY KEY,
    opted_out_at  BIGINT NOT NULL
);
