-- Rate limits of the public pages (issue #15): requests counted per key in fixed
-- windows, in the database so that every engine behind a balancer counts the same
-- requests. Keys: "verify:addr:<client address>" (verifications per address) and
-- "verify:miss:<bill_code>/<bill_no>" (wrong check codes per bill: the check code
-- is only 6 hex digits). Rows older than a day are pruned as counters are hit.
CREATE TABLE rate_counts (
    key text NOT NULL,
    window_start timestamptz NOT NULL,
    n integer NOT NULL,
    PRIMARY KEY (key, window_start)
);
CREATE INDEX rate_counts_window ON rate_counts (window_start);
