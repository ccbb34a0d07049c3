-- A TOTP code is good once (RFC 6238 section 5.2): the time step of the last
-- code a user signed in with; a code of that step or an earlier one is refused,
-- even within its window. NULL: no code accepted since the seed was enrolled.
ALTER TABLE users ADD COLUMN totp_last_step bigint;
