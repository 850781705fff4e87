-- Rate limits per org and per key: requests, input tokens and output tokens per minute
-- (NULL: unlimited). Enforced by each node before a call is held; never used for billing.
ALTER TABLE orgs ADD COLUMN rate_requests_per_minute BIGINT;
ALTER TABLE orgs ADD COLUMN rate_input_tokens_per_minute BIGINT;
ALTER TABLE orgs ADD COLUMN rate_output_tokens_per_minute BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_requests_per_minute BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_input_tokens_per_minute BIGINT;
ALTER TABLE api_keys ADD COLUMN rate_output_tokens_per_minute BIGINT;
