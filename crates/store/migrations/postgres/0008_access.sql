-- Access as calls get it (see creditgate_domain::access): an org is turned off from the first
-- call refused for lack of credits below its cut-off level, and stays off until credits bring
-- it back there (access_cut_off); a "turned off" email is told once per cut-off and answered
-- by one "back on" (access_off_told). A transition caused by a refusal records the refused
-- call (its worst case, hold id and hold reference).
ALTER TABLE orgs ADD COLUMN access_cut_off BIGINT NOT NULL DEFAULT 0;
ALTER TABLE orgs ADD COLUMN access_off_told BIGINT NOT NULL DEFAULT 0;
UPDATE orgs SET access_off_told = 1, access_cut_off = 1
 WHERE access_state = 'depleted'
   AND EXISTS (SELECT 1 FROM notices n WHERE n.org_id = orgs.id AND n.kind = 'access.turned_off');
ALTER TABLE access_transitions ADD COLUMN refused_amount BIGINT;
ALTER TABLE access_transitions ADD COLUMN refused_hold_id TEXT;
ALTER TABLE access_transitions ADD COLUMN refused_reference TEXT;
-- auto_reloads.due: 0 no, 1 the threshold was reached, 2 a call was refused (reload whatever
-- the threshold says; see creditgate_domain::access::ReloadDue).
DROP INDEX auto_reloads_due;
CREATE INDEX auto_reloads_due ON auto_reloads (org_id) WHERE due <> 0;
