-- voicemails.mailbox, voicemails.transcription, faxes.mailbox, conferences.conference,
-- qubicle.<offering>_queue (quantities.md §1).
SELECT v.account_id AS account_id, 'voicemails' AS category, 'mailbox' AS item, COUNT(*) AS quantity
FROM vmboxes v JOIN reconcile_scope s ON s.account_id = v.account_id
WHERE v.enabled AND NOT v.deleted
GROUP BY v.account_id
UNION ALL
SELECT v.account_id, 'voicemails', 'transcription', COUNT(*)
FROM vmboxes v JOIN reconcile_scope s ON s.account_id = v.account_id
WHERE v.enabled AND NOT v.deleted AND v.transcribe
GROUP BY v.account_id
UNION ALL
SELECT f.account_id, 'faxes', 'mailbox', COUNT(*)
FROM faxboxes f JOIN reconcile_scope s ON s.account_id = f.account_id
WHERE f.enabled AND NOT f.deleted
GROUP BY f.account_id
UNION ALL
SELECT c.account_id, 'conferences', 'conference', COUNT(*)
FROM conferences c JOIN reconcile_scope s ON s.account_id = c.account_id
WHERE c.enabled AND NOT c.deleted
GROUP BY c.account_id
UNION ALL
SELECT q.account_id, 'qubicle', COALESCE(q.offering, 'basic') || '_queue', COUNT(*)
FROM qubicle_queues q JOIN reconcile_scope s ON s.account_id = q.account_id
WHERE q.enabled AND NOT q.deleted
GROUP BY q.account_id, COALESCE(q.offering, 'basic')
