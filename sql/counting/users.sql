-- users.<priv_level> and qubicle.<offering>_recipient (quantities.md §1).
SELECT u.account_id AS account_id, 'users' AS category, u.priv_level AS item, COUNT(*) AS quantity
FROM users u
JOIN reconcile_scope s ON s.account_id = u.account_id
WHERE u.enabled AND NOT u.deleted
GROUP BY u.account_id, u.priv_level
UNION ALL
SELECT u.account_id, 'qubicle', COALESCE(u.qubicle_offering, 'basic') || '_recipient', COUNT(*)
FROM users u
JOIN reconcile_scope s ON s.account_id = u.account_id
WHERE u.enabled AND NOT u.deleted AND u.qubicle_enabled
GROUP BY u.account_id, COALESCE(u.qubicle_offering, 'basic')
