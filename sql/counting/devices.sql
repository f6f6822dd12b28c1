-- devices.<device_type>, default sip_device (quantities.md §1).
SELECT d.account_id AS account_id, 'devices' AS category, COALESCE(d.device_type, 'sip_device') AS item,
       COUNT(*) AS quantity
FROM devices d
JOIN reconcile_scope s ON s.account_id = d.account_id
WHERE d.enabled AND NOT d.deleted
GROUP BY d.account_id, COALESCE(d.device_type, 'sip_device')
