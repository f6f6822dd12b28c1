-- limits.*_trunks (values > 0 only), branding.whitelabel, ips.dedicated (quantities.md §1).
SELECT l.account_id AS account_id, 'limits' AS category, 'twoway_trunks' AS item, l.twoway_trunks AS quantity
FROM trunk_limits l JOIN reconcile_scope s ON s.account_id = l.account_id
WHERE l.enabled AND NOT l.deleted AND l.twoway_trunks > 0
UNION ALL
SELECT l.account_id, 'limits', 'inbound_trunks', l.inbound_trunks
FROM trunk_limits l JOIN reconcile_scope s ON s.account_id = l.account_id
WHERE l.enabled AND NOT l.deleted AND l.inbound_trunks > 0
UNION ALL
SELECT l.account_id, 'limits', 'outbound_trunks', l.outbound_trunks
FROM trunk_limits l JOIN reconcile_scope s ON s.account_id = l.account_id
WHERE l.enabled AND NOT l.deleted AND l.outbound_trunks > 0
UNION ALL
SELECT w.account_id, 'branding', 'whitelabel', 1
FROM whitelabels w JOIN reconcile_scope s ON s.account_id = w.account_id
WHERE w.enabled AND NOT w.deleted
UNION ALL
SELECT i.account_id, 'ips', 'dedicated', COUNT(*)
FROM dedicated_ips i JOIN reconcile_scope s ON s.account_id = i.account_id
WHERE i.enabled AND NOT i.deleted
GROUP BY i.account_id
