-- Prices that match the bills: 1-hour cache writes priced apart from 5-minute ones (until now
-- one cache-write rate, which stays the 1-hour rate of existing versions), fees per server-tool
-- request (web search, web fetch), and optional long-input token rates (every token of a call
-- whose input is above long_above_input_tokens; all six long_ columns set, or none).
ALTER TABLE prices ADD COLUMN cache_write_1h INTEGER;
UPDATE prices SET cache_write_1h = cache_write;
ALTER TABLE prices ADD COLUMN web_search_request INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN web_fetch_request INTEGER NOT NULL DEFAULT 0;
ALTER TABLE prices ADD COLUMN long_above_input_tokens INTEGER;
ALTER TABLE prices ADD COLUMN long_input INTEGER;
ALTER TABLE prices ADD COLUMN long_output INTEGER;
ALTER TABLE prices ADD COLUMN long_cache_write INTEGER;
ALTER TABLE prices ADD COLUMN long_cache_write_1h INTEGER;
ALTER TABLE prices ADD COLUMN long_cache_read INTEGER;
