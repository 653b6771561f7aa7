-- Issue 13: admin lifecycle, two-person issuance, idempotency keys that cannot be squatted,
-- and enrollment tokens that offboarding withdraws for good.

-- A token offboarding withdrew is refused whatever the redeeming clock says.
ALTER TABLE enrollment_tokens ADD COLUMN withdrawn_at BIGINT;
